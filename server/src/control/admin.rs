//! The admin API, guarded by the admin key (`Authorization: Bearer KEY`,
//! compared in constant time): publish to a room, broadcast to every
//! connection, a room's member count and presence, the number of
//! connections online,
//! token revocation by user and the list of revocations, drain, and TLS
//! certificate reload.
//! Messages are encoded once here and handed to every shard as one shared
//! internal frame.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use corecast_cluster::admin_api::{
    api_error, presence_json, require_admin_key, room_push, AdminKey, PresenceQuery, PublishQuery,
};
use corecast_proto::internal::{InternalFrame, InternalFrameBytes};
use serde::Deserialize;
use serde_json::json;

use super::ControlState;
use crate::shard::{owner_shard, ShardCommand};

/// How far ahead of this node's clock a router's revocation time may be
/// (clock skew between hosts).
const MAX_FUTURE_REVOCATION_SECS: u64 = 60;
/// How long a query waits for the shards' answers.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The admin routes, behind the admin key.
pub fn routes(state: ControlState) -> Router<ControlState> {
    Router::new()
        .route("/v1/admin/rooms/{room}/publish", post(publish))
        .route("/v1/admin/rooms/{room}", get(room_members))
        .route("/v1/admin/rooms/{room}/presence", get(room_presence))
        .route("/v1/admin/broadcast", post(broadcast))
        .route("/v1/admin/online", get(online))
        .route("/v1/admin/users/{user}/revoke", post(revoke))
        .route("/v1/admin/revocations", get(revocations))
        .route("/v1/admin/drain", post(drain))
        .route("/v1/admin/tls/reload", post(reload_tls))
        .route_layer(middleware::from_fn_with_state(AdminKey(state.admin_key), require_admin_key))
}

/// Hands one shared frame to every shard; returns how many took it.
fn to_every_shard(state: &ControlState, frame: InternalFrame) -> usize {
    let frame = InternalFrameBytes::encode(&frame);
    state.mesh.all().filter(|(_, s)| s.try_send(ShardCommand::Deliver(frame.clone())).is_ok()).count()
}

async fn publish(
    State(state): State<ControlState>,
    Path(room): Path<String>,
    Query(query): Query<PublishQuery>,
    payload: Bytes,
) -> Response {
    if state.rooms.options_for(&room).is_some_and(|o| o.has_stream()) {
        return publish_to_stream(&state, room, query.from, payload.to_vec());
    }
    match room_push(&room, &query.from, &payload) {
        Ok(frame) => {
            let shards = to_every_shard(&state, frame);
            Json(json!({ "room": room, "shards": shards })).into_response()
        }
        Err(e) => corecast_cluster::admin_api::too_large(e),
    }
}

/// An operator's message to a room with history goes to the room's owner
/// shard, which gives it its position like any member's. In a cluster the
/// routers own such rooms: publish through a router's admin API.
fn publish_to_stream(state: &ControlState, room: String, from: String, payload: Vec<u8>) -> Response {
    if state.core.is_none() {
        return api_error(StatusCode::CONFLICT, "in a cluster, publish to a room with history through a router");
    }
    let owner = owner_shard(&room, state.mesh.len());
    let frame =
        InternalFrameBytes::encode(&InternalFrame::RoomPublish { room: room.clone(), from, except_conn: 0, payload });
    match state.mesh.to(owner).try_send(ShardCommand::Deliver(frame)) {
        Ok(()) => Json(json!({ "room": room, "shards": 1 })).into_response(),
        Err(_) => api_error(StatusCode::SERVICE_UNAVAILABLE, "the room's owner shard is overloaded"),
    }
}

/// Who is in a room with presence: totals and a page of users with their
/// connection counts, from the room's owner shard (single node; in a
/// cluster ask a router).
async fn room_presence(
    State(state): State<ControlState>,
    Path(room): Path<String>,
    Query(query): Query<PresenceQuery>,
) -> Response {
    if !state.rooms.options_for(&room).is_some_and(|o| o.has_presence()) {
        return api_error(StatusCode::NOT_FOUND, "this room keeps no presence");
    }
    if state.core.is_none() {
        return api_error(StatusCode::CONFLICT, "in a cluster, ask a router for a room's presence");
    }
    let owner = owner_shard(&room, state.mesh.len());
    let (tx, rx) = flume::bounded(1);
    let command = ShardCommand::PresencePage { room: room.clone(), after: query.after, limit: query.limit, reply: tx };
    if state.mesh.to(owner).send_async(command).await.is_err() {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "the room's owner shard is gone");
    }
    match tokio::time::timeout(QUERY_TIMEOUT, rx.recv_async()).await {
        Ok(Ok(page)) => Json(presence_json(&room, &page)).into_response(),
        _ => api_error(StatusCode::SERVICE_UNAVAILABLE, "the room's owner shard did not answer"),
    }
}

async fn broadcast(State(state): State<ControlState>, payload: Bytes) -> Response {
    match corecast_cluster::admin_api::broadcast(&payload) {
        Ok(frame) => Json(json!({ "shards": to_every_shard(&state, frame) })).into_response(),
        Err(e) => corecast_cluster::admin_api::too_large(e),
    }
}

/// Asks every shard and collects one number from each.
pub(super) async fn ask_shards(
    state: &ControlState,
    make: impl Fn(flume::Sender<usize>) -> ShardCommand,
) -> Option<Vec<usize>> {
    let mut answers = Vec::with_capacity(state.mesh.len());
    for (_, sender) in state.mesh.all() {
        let (tx, rx) = flume::bounded(1);
        sender.send_async(make(tx)).await.ok()?;
        answers.push(tokio::time::timeout(QUERY_TIMEOUT, rx.recv_async()).await.ok()?.ok()?);
    }
    Some(answers)
}

async fn room_members(State(state): State<ControlState>, Path(room): Path<String>) -> Response {
    let room_name = room.clone();
    match ask_shards(&state, |reply| ShardCommand::CountRoomMembers { room: room_name.clone(), reply }).await {
        Some(counts) => Json(json!({ "room": room, "members": counts.iter().sum::<usize>() })).into_response(),
        None => api_error(StatusCode::SERVICE_UNAVAILABLE, "a shard did not answer"),
    }
}

async fn online(State(state): State<ControlState>) -> Response {
    match ask_shards(&state, |reply| ShardCommand::CountConnections { reply }).await {
        Some(counts) => {
            Json(json!({ "connections": counts.iter().sum::<usize>(), "per_shard": counts })).into_response()
        }
        None => api_error(StatusCode::SERVICE_UNAVAILABLE, "a shard did not answer"),
    }
}

#[derive(Deserialize)]
struct RevokeQuery {
    /// Revoke tokens issued up to this second (the routers pass the time
    /// they recorded); now when absent.
    before: Option<u64>,
}

/// Refuses the user's tokens issued until now (or `before`), keeps that in
/// the node's revocation list, and closes the user's connections with
/// CLOSE kicked.
async fn revoke(
    State(state): State<ControlState>,
    Path(user): Path<String>,
    Query(query): Query<RevokeQuery>,
) -> Response {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let before = query.before.unwrap_or(now);
    if before > now + MAX_FUTURE_REVOCATION_SECS {
        return api_error(StatusCode::BAD_REQUEST, "before is in the future");
    }
    // The list is fsynced: on a blocking thread, not the control plane's.
    let revocations = state.verifier.revocations().clone();
    let entry = (user.clone(), before);
    let saved = tokio::task::spawn_blocking(move || revocations.apply([entry], now))
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the revocation task failed: {e}")));
    let name = user.clone();
    let Some(kicked) = ask_shards(&state, |reply| ShardCommand::Kick { user: name.clone(), reply }).await else {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "a shard did not answer");
    };
    if let Err(e) = saved {
        tracing::error!("{e:#}");
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "revoked until restart: the list could not be saved");
    }
    let kicked: usize = kicked.iter().sum();
    Json(json!({ "user": user, "revoked_before": before, "kicked": kicked })).into_response()
}

/// Every revocation in force on this node, by user.
async fn revocations(State(state): State<ControlState>) -> Response {
    Json(state.verifier.revocations().snapshot()).into_response()
}

/// Drains the node as SIGTERM does: stop accepting, CLOSE every connection
/// with shutting_down and a jittered reconnect hint, exit once they are gone
/// or the grace period is over.
async fn drain(State(state): State<ControlState>) -> Response {
    tracing::info!("drain requested through the admin API");
    state.status.start_draining();
    let mut shards = 0;
    for (_, sender) in state.mesh.all() {
        if sender.send_async(ShardCommand::Shutdown).await.is_ok() {
            shards += 1;
        }
    }
    Json(json!({ "draining_shards": shards })).into_response()
}

/// Reads the TLS certificate and key files again (as SIGHUP does).
async fn reload_tls(State(state): State<ControlState>) -> Response {
    let stores = state.cert_stores();
    if stores.is_empty() {
        return api_error(StatusCode::NOT_FOUND, "this node does not serve TLS");
    }
    for certs in stores {
        if let Err(e) = certs.reload() {
            return api_error(StatusCode::UNPROCESSABLE_ENTITY, &format!("{e:#}; the current certificate stays"));
        }
    }
    Json(json!({ "reloaded": true })).into_response()
}
