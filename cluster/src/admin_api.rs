//! Pieces of the admin HTTP API shared by a single node's control plane and
//! the routers: the admin-key guard (constant-time comparison), JSON errors,
//! and encoding an operator's PUSH. (The persistent-chat admin routes run
//! over a router core and live with it in `corecast-router`.)

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use corecast_proto::internal::InternalFrame;
use corecast_proto::{encode_server, EncodeError, PushKind, ServerMessage};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::room_stream::PresencePage;

/// The key that guards the admin API.
#[derive(Clone)]
pub struct AdminKey(pub Arc<str>);

/// A JSON error body with `status`.
pub fn api_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Refuses requests without the admin key (`Authorization: Bearer KEY`,
/// compared in constant time). Use with
/// `axum::middleware::from_fn_with_state(AdminKey(..), require_admin_key)`.
pub async fn require_admin_key(State(key): State<AdminKey>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if presented.as_bytes().ct_eq(key.0.as_bytes()).into() {
        next.run(request).await
    } else {
        api_error(StatusCode::UNAUTHORIZED, "missing or wrong admin key")
    }
}

/// The query of `POST /v1/admin/rooms/{room}/publish`.
#[derive(serde::Deserialize)]
pub struct PublishQuery {
    /// Sender shown in the PUSH; empty for the operator.
    #[serde(default)]
    pub from: String,
}

/// An operator's room message as the internal frame every node or shard
/// takes.
pub fn room_push(room: &str, from: &str, payload: &[u8]) -> Result<InternalFrame, EncodeError> {
    let push = encode_push(PushKind::Room, room, from, payload)?;
    Ok(InternalFrame::RoomPush { room: room.to_string(), except_conn: 0, push })
}

/// An operator's broadcast as an internal frame.
pub fn broadcast(payload: &[u8]) -> Result<InternalFrame, EncodeError> {
    Ok(InternalFrame::Broadcast { push: encode_push(PushKind::Broadcast, "", "", payload)? })
}

/// The query of a room's presence page: `?after=USER&limit=N`.
#[derive(serde::Deserialize)]
pub struct PresenceQuery {
    /// Users after this id.
    #[serde(default)]
    pub after: String,
    /// At most this many (1,000 at most).
    #[serde(default = "default_presence_limit")]
    pub limit: usize,
}

fn default_presence_limit() -> usize {
    100
}

/// A room's presence page as the admin APIs (node and router) answer it.
pub fn presence_json(room: &str, page: &PresencePage) -> serde_json::Value {
    let users: Vec<serde_json::Value> =
        page.entries.iter().map(|(user, conns)| json!({ "user": &**user, "connections": conns })).collect();
    json!({ "room": room, "users": page.users, "connections": page.conns, "page": users, "next": page.next })
}

/// The answer to a message that does not fit a PUSH.
pub fn too_large(e: EncodeError) -> Response {
    api_error(StatusCode::BAD_REQUEST, &e.to_string())
}

/// Encodes an operator's PUSH (seq 0: not stored) once.
fn encode_push(kind: PushKind, conv: &str, from: &str, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut push = Vec::new();
    encode_server(0, 0, &ServerMessage::Push { kind, conv, from, seq: 0, ts_ms, payload }, &mut push)?;
    metrics::counter!("corecast_encodes_total", "shard" => "control").increment(1);
    Ok(push)
}
