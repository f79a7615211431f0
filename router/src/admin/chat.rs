//! The admin API for persistent chat, behind the admin key: send a direct or
//! group message as a given user (for business backends), read a
//! conversation's history, a user's presence, and manage groups.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use corecast_router::conversation::{KIND_DIRECT, KIND_GROUP};
use corecast_router::ChatError;
use serde::Deserialize;
use serde_json::json;

use super::admin::{api_error, require_admin_key};
use super::ControlState;

/// The chat admin routes, behind the admin key.
pub fn routes(state: ControlState) -> Router<ControlState> {
    Router::new()
        .route("/v1/admin/messages", post(send))
        .route("/v1/admin/conversations/{conv}/messages", get(history))
        .route("/v1/admin/users/{user}/presence", get(presence))
        .route("/v1/admin/groups", post(create_group).get(list_groups))
        .route("/v1/admin/groups/{group}", get(group))
        .route("/v1/admin/groups/{group}/members", post(change_members))
        .route_layer(middleware::from_fn_with_state(state, require_admin_key))
}

fn chat_error(e: ChatError) -> Response {
    let status = match e {
        ChatError::Forbidden(_) => StatusCode::FORBIDDEN,
        ChatError::NotFound(_) => StatusCode::NOT_FOUND,
        ChatError::Invalid(_) => StatusCode::BAD_REQUEST,
        ChatError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ChatError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    api_error(status, &e.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Direct,
    Group,
}

#[derive(Deserialize)]
struct SendBody {
    /// Sender user id.
    from: String,
    kind: Kind,
    /// Recipient user or group id.
    to: String,
    /// Idempotency key; a random one when absent.
    client_msg_id: Option<u64>,
    /// UTF-8 payload.
    payload: String,
}

async fn send(State(state): State<ControlState>, Json(body): Json<SendBody>) -> Response {
    let kind = match body.kind {
        Kind::Direct => KIND_DIRECT,
        Kind::Group => KIND_GROUP,
    };
    let client_msg_id = body.client_msg_id.unwrap_or_else(rand::random);
    match state.core.send(&body.from, kind, &body.to, client_msg_id, body.payload.as_bytes(), None).await {
        Ok(receipt) => Json(receipt).into_response(),
        Err(e) => chat_error(e),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    after_seq: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

async fn history(
    State(state): State<ControlState>,
    Path(conv): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    match state.core.history(&conv, q.after_seq, q.limit.min(1000)).await {
        Ok(messages) => {
            let messages: Vec<_> = messages
                .iter()
                .map(|m| {
                    json!({
                        "seq": m.seq,
                        "from": m.sender,
                        "client_msg_id": m.client_msg_id,
                        "ts_ms": m.ts_ms,
                        "payload": String::from_utf8_lossy(&m.payload),
                    })
                })
                .collect();
            Json(json!({ "conv": conv, "messages": messages })).into_response()
        }
        Err(e) => chat_error(e),
    }
}

async fn presence(State(state): State<ControlState>, Path(user): Path<String>) -> Response {
    let devices: Vec<_> =
        state.core.presence(&user).into_iter().map(|c| json!({ "conn_id": c.conn_id, "device": c.device })).collect();
    Json(json!({ "user": user, "online": !devices.is_empty(), "devices": devices })).into_response()
}

#[derive(Deserialize)]
struct CreateGroup {
    group: String,
    #[serde(default)]
    members: Vec<String>,
}

async fn create_group(State(state): State<ControlState>, Json(body): Json<CreateGroup>) -> Response {
    match state.core.create_group(&body.group, &body.members).await {
        Ok(()) => (StatusCode::CREATED, Json(json!({ "group": body.group }))).into_response(),
        Err(e) => chat_error(e),
    }
}

async fn list_groups(State(state): State<ControlState>) -> Response {
    match state.core.list_groups().await {
        Ok(groups) => Json(json!({ "groups": groups })).into_response(),
        Err(e) => chat_error(e),
    }
}

async fn group(State(state): State<ControlState>, Path(group): Path<String>) -> Response {
    match state.core.group(&group).await {
        Ok(Some(info)) => Json(info).into_response(),
        Ok(None) => api_error(StatusCode::NOT_FOUND, "no such group"),
        Err(e) => chat_error(e),
    }
}

#[derive(Deserialize)]
struct ChangeMembers {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

async fn change_members(
    State(state): State<ControlState>,
    Path(group): Path<String>,
    Json(body): Json<ChangeMembers>,
) -> Response {
    match state.core.change_members(&group, &body.add, &body.remove).await {
        Ok(()) => Json(json!({ "group": group })).into_response(),
        Err(e) => chat_error(e),
    }
}
