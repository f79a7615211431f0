//! A server node's part in a cluster (when `redis_url` is set): the uplink.
//!
//! It runs on the control plane's tokio runtime and takes the place of the
//! in-process router core. It registers the node in Redis (address, weight,
//! connection ceiling) with a heartbeat that expires, writes the route of
//! every connection that authenticates and refreshes them while they stay,
//! and keeps a link to every router found in Redis. Chat requests go to the
//! router that owns their conversation (rendezvous hashing over the routers
//! with a link up); room pushes go to the router that owns the room, which
//! passes them to the other nodes with members; the node's first join and
//! last leave of each room are announced to every router. Frames for the
//! owner of a room with history or presence (messages, catch-ups, HISTORY,
//! PRESENCE, member reports) go to the router that owns the room the same
//! way. Frames from the routers are handed to the shards that need them.
//!
//! It also keeps the node's token revocations in step with the list the
//! routers record in Redis.
//!
//! When a link drops, every request still waiting on it is answered with
//! `unavailable`, so clients resend (SEND is idempotent by client message
//! id) and the request reaches the router that takes over.

mod registration;
mod revocation_sync;
mod router_link;
mod state;

use std::sync::Arc;
use std::time::Duration;

use corecast_cluster::conversation::{Conversation, KIND_DIRECT, KIND_GROUP};
use corecast_cluster::registry::redis::Registry;
use corecast_cluster::registry::{NodeInfo, KEY_PREFIX};
use corecast_proto::internal::{ArchivedChatRequest, ArchivedInternalFrame, InternalFrameBytes};

use crate::revocations::Revocations;
use crate::shard::{CoreCommand, Mesh};
use crate::status::NodeStatus;
pub use state::Uplink;

/// What the uplink needs to know about this node.
#[derive(Clone)]
pub struct ClusterSettings {
    /// The node as published in Redis (its id carries a per-start suffix).
    pub node: NodeInfo,
    /// Redis URL.
    pub redis_url: String,
    /// Lifetime of the node's registration.
    pub registry_ttl: Duration,
    /// Lifetime of a route.
    pub route_ttl: Duration,
    /// The cluster key routers require on a link (the admin key).
    pub cluster_key: String,
    /// Links over TLS, trusting the configured CAs; plain links when none.
    pub link_tls: Option<tokio_rustls::TlsConnector>,
}

/// The conversation (or, for UNREAD, the user) whose owner answers a request.
fn ownership_key(request: &ArchivedChatRequest) -> Option<String> {
    match request {
        ArchivedChatRequest::Send { user, kind, to, .. } => match *kind {
            KIND_DIRECT => Some(Conversation::direct(user.as_str(), to.as_str()).id()),
            KIND_GROUP => Some(Conversation::group(to.as_str()).id()),
            // Any router answers a bad kind with an error.
            _ => Some(to.to_string()),
        },
        ArchivedChatRequest::Sync { conv, .. } | ArchivedChatRequest::Ack { conv, .. } => Some(conv.to_string()),
        ArchivedChatRequest::Unread { user, .. } => Some(format!("u:{user}")),
        ArchivedChatRequest::Presence { .. } => None,
    }
}

/// Connects to the cluster's Redis. The node does this before it starts
/// its shards: a node that cannot reach Redis fails at start (exit code 1),
/// before it says it listens.
pub async fn connect(settings: &ClusterSettings) -> anyhow::Result<Registry> {
    Registry::connect(&settings.redis_url, KEY_PREFIX)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to Redis at {}: {e}", settings.redis_url))
}

/// Runs the uplink on `registry` (from [`connect`]) until the shards'
/// channel closes. Redis and router outages after the start are retried,
/// never fatal.
pub async fn run(
    settings: ClusterSettings,
    registry: Registry,
    mesh: Mesh,
    status: Arc<NodeStatus>,
    revocations: Arc<Revocations>,
    inbox: flume::Receiver<CoreCommand>,
) {
    let uplink = Arc::new(Uplink::new(settings.clone(), mesh.clone()));
    let routes = registration::start(uplink.clone(), registry.clone(), mesh.clone(), status);
    tokio::spawn(revocation_sync::follow(registry.clone(), revocations, settings.registry_ttl / 3));
    tokio::spawn(router_link::discover(uplink.clone(), registry.clone()));
    while let Ok(command) = inbox.recv_async().await {
        match command {
            CoreCommand::Request(frame) => handle_request(&uplink, &routes, frame),
            CoreCommand::Publish(frame) => uplink.publish(frame),
            CoreCommand::ToOwner(frame) => uplink.to_owner(frame),
            CoreCommand::RoomInterest { room, shard, joined, ack } => uplink.room_interest(&room, shard, joined, ack),
        }
    }
}

fn handle_request(uplink: &Arc<Uplink>, routes: &registration::RouteWriter, frame: InternalFrameBytes) {
    let ArchivedInternalFrame::Chat(request) = frame.archived() else { return };
    match request {
        ArchivedChatRequest::Presence { changes } => {
            for change in changes.iter() {
                let (conn_id, user) = (change.conn_id.to_native(), change.user.as_str());
                if change.online {
                    routes.online(user, conn_id, change.device.as_str());
                } else {
                    routes.offline(user, conn_id);
                }
            }
        }
        _ => {
            if let Some(key) = ownership_key(request) {
                uplink.forward_request(&key, frame.clone());
            }
        }
    }
}
