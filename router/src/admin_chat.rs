//! The admin API for persistent chat: send a direct or group message as a
//! given user (for business backends), read a conversation's history, a
//! user's presence, and manage groups. The caller puts it behind the admin
//! key; a router also tells the other routers when a group changes.

use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use corecast_cluster::admin_api::api_error;
use corecast_cluster::conversation::{KIND_DIRECT, KIND_GROUP};
use serde::Deserialize;
use serde_json::json;

use crate::{ChatError, RouterCore};

/// Called with a group's id after the group changed here.
pub type GroupChanged = Arc<dyn Fn(&str) + Send + Sync>;

/// The chat admin routes over `core`; `group_changed` hears of every
/// group created or changed through them.
pub fn routes<S: Clone + Send + Sync + 'static>(core: Arc<RouterCore>, group_changed: GroupChanged) -> Router<S> {
    Router::new()
        .route("/v1/admin/messages", post(send))
        .route("/v1/admin/conversations/{conv}/messages", get(history))
        .route("/v1/admin/users/{user}/presence", get(presence))
        .route("/v1/admin/groups", post(create_group).get(list_groups))
        .route("/v1/admin/groups/{group}", get(group))
        .route("/v1/admin/groups/{group}/members", post(change_members))
        .layer(Extension(core))
        .layer(Extension(group_changed))
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

async fn send(Extension(core): Extension<Arc<RouterCore>>, Json(body): Json<SendBody>) -> Response {
    let kind = match body.kind {
        Kind::Direct => KIND_DIRECT,
        Kind::Group => KIND_GROUP,
    };
    let client_msg_id = body.client_msg_id.unwrap_or_else(rand::random);
    match core.send(&body.from, kind, &body.to, client_msg_id, body.payload.as_bytes(), None).await {
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
    Extension(core): Extension<Arc<RouterCore>>,
    Path(conv): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    match core.history(&conv, q.after_seq, q.limit.min(1000)).await {
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

async fn presence(Extension(core): Extension<Arc<RouterCore>>, Path(user): Path<String>) -> Response {
    let devices: Vec<_> = core
        .presence(&user)
        .await
        .iter()
        .map(|c| json!({ "node": c.node, "conn_id": c.conn_id, "device": c.device }))
        .collect();
    Json(json!({ "user": user, "online": !devices.is_empty(), "devices": devices })).into_response()
}

#[derive(Deserialize)]
struct CreateGroup {
    group: String,
    #[serde(default)]
    members: Vec<String>,
}

async fn create_group(
    Extension(core): Extension<Arc<RouterCore>>,
    Extension(group_changed): Extension<GroupChanged>,
    Json(body): Json<CreateGroup>,
) -> Response {
    match core.create_group(&body.group, &body.members).await {
        Ok(()) => {
            group_changed(&body.group);
            (StatusCode::CREATED, Json(json!({ "group": body.group }))).into_response()
        }
        Err(e) => chat_error(e),
    }
}

async fn list_groups(Extension(core): Extension<Arc<RouterCore>>) -> Response {
    match core.list_groups().await {
        Ok(groups) => Json(json!({ "groups": groups })).into_response(),
        Err(e) => chat_error(e),
    }
}

async fn group(Extension(core): Extension<Arc<RouterCore>>, Path(group): Path<String>) -> Response {
    match core.group(&group).await {
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
    Extension(core): Extension<Arc<RouterCore>>,
    Extension(group_changed): Extension<GroupChanged>,
    Path(group): Path<String>,
    Json(body): Json<ChangeMembers>,
) -> Response {
    let result = core.change_members(&group, &body.add, &body.remove).await;
    // Partly applied changes are changes too.
    group_changed(&group);
    match result {
        Ok(()) => Json(json!({ "group": group })).into_response(),
        Err(e) => chat_error(e),
    }
}
