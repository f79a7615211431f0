//! The router's HTTP API. Public: `GET /health` and `GET /v1/dispatch`.
//! Admin listener (loopback by default): `GET /metrics`, and behind the
//! admin key the cluster's admin API: publish to a room (sent only to the
//! nodes with members; to a room with history, through the room's owner),
//! broadcast (every node), room member counts and connections online
//! (asked of the nodes), a room's presence (from its owner), revocation
//! (passed to every node), and the persistent-chat routes of the router
//! core.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use corecast_cluster::admin_api::{
    api_error, presence_json, require_admin_key, room_push, AdminKey, PresenceQuery, PublishQuery,
};
use corecast_proto::internal::InternalFrameBytes;
use corecast_settings::build_info;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::Tier;

type Shared = Arc<Tier>;

/// Serves `/health` and `/v1/dispatch`.
pub async fn serve_public(listener: TcpListener, tier: Shared) {
    let app = Router::new().route("/health", get(health)).route("/v1/dispatch", get(dispatch)).with_state(tier);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("public HTTP server stopped: {e}");
    }
}

/// Serves `/metrics` and the admin API.
pub async fn serve_admin(listener: TcpListener, tier: Shared) {
    let registry = tier.registry.clone();
    let group_changed: crate::admin_chat::GroupChanged = Arc::new(move |group: &str| {
        let (registry, message) = (registry.clone(), format!("group:{group}"));
        tokio::spawn(async move {
            if let Err(e) = registry.publish_invalidation(&message).await {
                tracing::warn!("could not tell the other routers of a group change: {e}");
            }
        });
    });
    let admin = Router::new()
        .route("/v1/admin/rooms/{room}/publish", post(publish))
        .route("/v1/admin/rooms/{room}", get(room_members))
        .route("/v1/admin/rooms/{room}/presence", get(room_presence))
        .route("/v1/admin/broadcast", post(broadcast))
        .route("/v1/admin/online", get(online))
        .route("/v1/admin/users/{user}/revoke", post(revoke))
        .merge(crate::admin_chat::routes(tier.core.clone(), group_changed))
        .route_layer(middleware::from_fn_with_state(AdminKey(tier.admin_key.clone()), require_admin_key));
    let app = Router::new().route("/metrics", get(metrics)).merge(admin).with_state(tier);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("admin HTTP server stopped: {e}");
    }
}

async fn health(State(tier): State<Shared>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "router": tier.id,
        "epoch": tier.core.epoch(),
        "linked_nodes": tier.hub.linked_nodes().len(),
        "version": build_info::VERSION,
        "commit": build_info::COMMIT,
    }))
}

async fn dispatch(State(tier): State<Shared>) -> Response {
    // Public and read-only: pages served from any origin may ask.
    ([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], Json(tier.dispatch())).into_response()
}

async fn metrics(State(tier): State<Shared>) -> String {
    tier.prometheus.render()
}

async fn publish(
    State(tier): State<Shared>,
    Path(room): Path<String>,
    Query(query): Query<PublishQuery>,
    payload: Bytes,
) -> Response {
    if tier.hub.streams().has_stream(&room) {
        return publish_to_stream(&tier, &room, &query.from, &payload);
    }
    let frame = match room_push(&room, &query.from, &payload) {
        Ok(frame) => InternalFrameBytes::encode(&frame),
        Err(e) => return corecast_cluster::admin_api::too_large(e),
    };
    let nodes = tier.hub.publish_room(&room, &frame, None);
    Json(json!({ "room": room, "nodes": nodes })).into_response()
}

/// A message for a room with history gets its position from the room's
/// owner, which sends it to every member. It goes to the owner the way a
/// member's message does: through a linked node, whose uplink picks the
/// owner among the routers it is linked to (this one or another).
fn publish_to_stream(tier: &Tier, room: &str, from: &str, payload: &[u8]) -> Response {
    // Checked here, as the owner would refuse it unseen.
    if let Err(e) = room_push(room, from, payload) {
        return corecast_cluster::admin_api::too_large(e);
    }
    match tier.hub.relay_publish(room, from, payload) {
        Some(node) => Json(json!({ "room": room, "via_node": node })).into_response(),
        None => api_error(StatusCode::SERVICE_UNAVAILABLE, "no server node is linked to this router to relay it"),
    }
}

/// Who is in a room with presence, answered by the router that owns the
/// room. Another router answers 421 Misdirected Request naming the owner
/// (its id, and its public HTTP address from the registry), since only
/// the owner hears the room's joins and leaves.
async fn room_presence(
    State(tier): State<Shared>,
    Path(room): Path<String>,
    Query(query): Query<PresenceQuery>,
) -> Response {
    let owner = tier.room_owner(&room);
    if owner != tier.id {
        let http_addr = match tier.registry.routers().await {
            Ok(routers) => routers.into_iter().find(|r| r.id == owner).map(|r| r.http_addr),
            Err(_) => None,
        };
        let body = json!({
            "error": format!("router {owner} owns this room; ask its admin API"),
            "owner": owner,
            "owner_http_addr": http_addr,
        });
        return (StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response();
    }
    match tier.hub.streams().presence_page(&room, &query.after, query.limit) {
        Some(page) => Json(presence_json(&room, &page)).into_response(),
        None => api_error(StatusCode::NOT_FOUND, "this room keeps no presence"),
    }
}

async fn broadcast(State(tier): State<Shared>, payload: Bytes) -> Response {
    let frame = match corecast_cluster::admin_api::broadcast(&payload) {
        Ok(frame) => InternalFrameBytes::encode(&frame),
        Err(e) => return corecast_cluster::admin_api::too_large(e),
    };
    let nodes = tier.hub.broadcast(&frame, None);
    Json(json!({ "nodes": nodes })).into_response()
}

/// Calls the admin API of each node in `nodes` (by id) and returns the JSON
/// answers of those that answered, by node id.
async fn ask_nodes(tier: &Tier, nodes: &[String], method: reqwest::Method, path: &str) -> Vec<(String, Value)> {
    let registered = tier.nodes();
    let calls = registered.into_iter().filter(|n| nodes.contains(&n.id)).map(|node| {
        let request = tier.http.request(method.clone(), node.control_url(path)).bearer_auth(&*tier.admin_key);
        let path = path.to_string();
        async move {
            let answer = async { request.send().await?.error_for_status()?.json::<Value>().await }.await;
            match answer {
                Ok(value) => Some((node.id, value)),
                Err(e) => {
                    tracing::warn!(node = %node.id, "node admin call {path} failed: {e}");
                    None
                }
            }
        }
    });
    let mut answers = Vec::new();
    let mut set = tokio::task::JoinSet::new();
    for call in calls {
        set.spawn(call);
    }
    while let Some(joined) = set.join_next().await {
        if let Ok(Some(answer)) = joined {
            answers.push(answer);
        }
    }
    answers
}

fn path_segment(s: &str) -> String {
    // Room and user names go into a URL path: escape everything but the
    // unreserved characters.
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn room_members(State(tier): State<Shared>, Path(room): Path<String>) -> Response {
    let nodes = tier.hub.nodes_with_room(&room);
    let path = format!("/v1/admin/rooms/{}", path_segment(&room));
    let answers = ask_nodes(&tier, &nodes, reqwest::Method::GET, &path).await;
    if answers.len() < nodes.len() {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "a node with members did not answer");
    }
    let per_node: serde_json::Map<String, Value> =
        answers.iter().map(|(id, v)| (id.clone(), v.get("members").cloned().unwrap_or(json!(0)))).collect();
    let members: u64 = per_node.values().filter_map(Value::as_u64).sum();
    Json(json!({ "room": room, "members": members, "per_node": per_node })).into_response()
}

async fn online(State(tier): State<Shared>) -> Response {
    let nodes: Vec<String> = tier.nodes().into_iter().map(|n| n.id).collect();
    let answers = ask_nodes(&tier, &nodes, reqwest::Method::GET, "/v1/admin/online").await;
    if answers.len() < nodes.len() {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "a node did not answer");
    }
    let per_node: serde_json::Map<String, Value> =
        answers.iter().map(|(id, v)| (id.clone(), v.get("connections").cloned().unwrap_or(json!(0)))).collect();
    let connections: u64 = per_node.values().filter_map(Value::as_u64).sum();
    Json(json!({ "connections": connections, "per_node": per_node })).into_response()
}

/// Records the revocation in Redis, where every node (also one that starts
/// later) reads it, then tells each node at once so it kicks the user's
/// connections. 503 when Redis or a node did not take it; calling again
/// is harmless.
async fn revoke(State(tier): State<Shared>, Path(user): Path<String>) -> Response {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let recorded = tier.registry.record_revocations(&[(user.clone(), now)], now).await;
    if let Err(e) = &recorded {
        tracing::warn!(%user, "could not record a revocation in Redis: {e}");
    }
    let nodes: Vec<String> = tier.nodes().into_iter().map(|n| n.id).collect();
    let path = format!("/v1/admin/users/{}/revoke?before={now}", path_segment(&user));
    let answers = ask_nodes(&tier, &nodes, reqwest::Method::POST, &path).await;
    let kicked: u64 = answers.iter().filter_map(|(_, v)| v.get("kicked").and_then(Value::as_u64)).sum();
    let complete = recorded.is_ok() && answers.len() == nodes.len();
    let status = if complete { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "user": user,
        "revoked_before": now,
        "recorded": recorded.is_ok(),
        "nodes": answers.len(),
        "of": nodes.len(),
        "kicked": kicked,
    });
    (status, Json(body)).into_response()
}
