//! The live-room demo: the page (`clients/js/demo.html`) and the client
//! module (`clients/js/corecast.js`) compiled into the binary, where the
//! page should connect, and demo tokens for any name when the node allows
//! them (`demo_tokens`, or a generated development secret), or else how to
//! allow them; and the page's icon.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::WebState;
use crate::auth::mint_token;

const PAGE: &str = include_str!("../../../clients/js/demo.html");
const CLIENT: &str = include_str!("../../../clients/js/corecast.js");
/// The icon, a dot in the page's accent colour: browsers ask for
/// `/favicon.ico` and log a 404 without it.
const ICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#2563eb"/></svg>"##;
/// Why `/demo/token` refuses on a node with a JWT secret, and what allows it.
const TOKENS_OFF: &str = concat!(
    "demo tokens are off on this node (it has a JWT secret); to allow them, for development only, ",
    "set demo_tokens = true in its config file (or CORECAST_DEMO_TOKENS=true) and restart it",
);
/// Lifetime of a demo token.
const DEMO_TOKEN_SECS: u64 = 24 * 3600;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn icon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], ICON).into_response()
}

pub async fn client_module() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], CLIENT).into_response()
}

/// Where the page connects, built from the host the browser used.
pub async fn config(State(state): State<WebState>, headers: HeaderMap) -> Json<serde_json::Value> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let hostname = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let (ws, http) = if state.tls.is_some() { ("wss", "https") } else { ("ws", "http") };
    Json(json!({
        "ws_url": format!("{ws}://{hostname}:{}{}", state.ws_port, state.ws_path),
        "sse_url": format!("{http}://{host}/v1/sse"),
        "send_url": format!("{http}://{host}/v1/send"),
    }))
}

#[derive(Deserialize)]
pub struct TokenRequest {
    name: String,
}

/// A token for any name (1..=32 letters, digits, `-`, `_`).
pub async fn token(State(state): State<WebState>, Json(request): Json<TokenRequest>) -> Response {
    let Some(secret) = &state.demo_secret else {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": TOKENS_OFF }))).into_response();
    };
    let name = request.name.trim();
    let valid = (1..=32).contains(&name.len()) && name.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    if !valid {
        let error = "name: 1 to 32 letters, digits, '-' or '_'";
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    }
    match mint_token(secret.as_bytes(), name, DEMO_TOKEN_SECS, None) {
        Ok(token) => Json(json!({ "token": token, "user": name })).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": e.to_string() }))).into_response(),
    }
}
