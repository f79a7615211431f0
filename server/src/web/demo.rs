//! The live-room demo: the page (`clients/js/demo.html`) and the client
//! module (`clients/js/corecast.js`) compiled into the binary, where the
//! page should connect, and demo tokens for any name when the node allows
//! them (`demo_tokens`, or a generated development secret).

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
/// Lifetime of a demo token.
const DEMO_TOKEN_SECS: u64 = 24 * 3600;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
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
        return (StatusCode::NOT_FOUND, Json(json!({ "error": "demo tokens are off on this node" }))).into_response();
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
