//! The router's end of the links: it accepts a link from each server node,
//! keeps which node holds members of which room (from the nodes' first-join
//! and last-leave announcements, re-sent in full when a link comes back),
//! hands chat requests to the router core, hands frames for a room's owner
//! to the room streams it owns (`room_streams.rs`), and sends frames to
//! nodes.
//!
//! A link must open with the node's hello carrying the cluster key (the
//! admin key, compared in constant time); others are closed at once.
//! Everything here can be rebuilt from the nodes' announcements: a router
//! that restarts learns it all again as the nodes reconnect. A node whose
//! registration has been gone from Redis for a registration lifetime has
//! its members taken out of the rooms' presence (a vanished host leaves no
//! connection to see closing); its link and room interest stay, since a
//! node that only missed its renewals under load must lose no message, and
//! it reports its members again when it finds its registration lost.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use corecast_cluster::interest::{Interest, PeerList};
use corecast_cluster::link::codec::{read_frame, write_frames, LinkError};
use corecast_cluster::link::tls::{self, LinkReader, LinkWriter};
use corecast_proto::internal::{ArchivedInternalFrame, InternalFrame, InternalFrameBytes};
use rustc_hash::FxHashMap;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::core::RouterCore;
use crate::room_streams::RoomStreams;
use crate::routes::{ConnSink, RouteTable};

/// Frames queued to one node before new ones are dropped (and counted).
const NODE_QUEUE_FRAMES: usize = 64 * 1024;

struct NodeLink {
    frames: flume::Sender<InternalFrameBytes>,
    generation: u64,
    /// Since when the node's registration has been missing, if it is.
    missing_since: Option<Instant>,
    /// Its presence was forgotten for that (once per absence).
    presence_forgotten: bool,
}

#[derive(Default)]
struct HubState {
    nodes: FxHashMap<String, NodeLink>,
    /// Which nodes have members of which room.
    rooms: Interest<PeerList<Arc<str>>>,
    next_generation: u64,
}

impl HubState {
    fn set_interest(&mut self, room: &str, node: &str, joined: bool) {
        let node: Arc<str> = node.into();
        if joined {
            self.rooms.join(room, node);
        } else {
            self.rooms.leave(room, &node);
        }
    }

    fn forget_node(&mut self, node: &str) {
        self.rooms.forget(&Arc::from(node));
    }
}

/// Every node linked to this router.
pub struct LinkHub {
    state: Mutex<HubState>,
    /// The cluster key (the admin key) every node must present.
    key: Arc<str>,
    /// When set, links must speak TLS.
    tls: Option<TlsAcceptor>,
    /// The room streams this router owns.
    streams: RoomStreams,
}

impl LinkHub {
    /// A hub that accepts nodes presenting `key`, over TLS when `tls` is
    /// set, and owns the streams of the rooms nodes send it.
    pub fn new(key: Arc<str>, tls: Option<TlsAcceptor>, streams: RoomStreams) -> LinkHub {
        LinkHub { state: Mutex::new(HubState::default()), key, tls, streams }
    }

    /// The room streams this router owns.
    pub fn streams(&self) -> &RoomStreams {
        &self.streams
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock leaves plain maps behind.
        corecast_proto::sync::lock(&self.state)
    }

    /// Accepts node links on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, core: Arc<RouterCore>, routes: Arc<dyn RouteTable>) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (hub, core, routes) = (self.clone(), core.clone(), routes.clone());
                    tokio::spawn(async move {
                        let halves = match &hub.tls {
                            None => tls::plain(stream),
                            Some(acceptor) => match tls::accept(acceptor, stream).await {
                                Ok(halves) => halves,
                                Err(e) => {
                                    tracing::warn!(%peer, "a node link's TLS handshake failed: {e}");
                                    metrics::counter!("corecast_router_link_refusals_total").increment(1);
                                    return;
                                }
                            },
                        };
                        if let Err(e) = hub.run_link(halves, core, routes).await {
                            tracing::warn!(%peer, "node link ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors or similar: wait instead of spinning.
                    tracing::error!("accepting a node link failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn run_link(
        self: Arc<Self>,
        (mut reader, mut writer): (LinkReader, LinkWriter),
        core: Arc<RouterCore>,
        routes: Arc<dyn RouteTable>,
    ) -> Result<(), LinkError> {
        let Some(hello) = read_frame(&mut reader).await? else { return Ok(()) };
        let ArchivedInternalFrame::NodeHello { node, key, rooms } = hello.archived() else {
            tracing::warn!("a node link did not start with NodeHello; closing it");
            return Ok(());
        };
        if !bool::from(key.as_bytes().ct_eq(self.key.as_bytes())) {
            tracing::warn!(node = %node, "a node link presented a wrong cluster key; closing it");
            metrics::counter!("corecast_router_link_refusals_total").increment(1);
            return Ok(());
        }
        let node: Arc<str> = Arc::from(node.as_str());
        let (frames_tx, frames_rx) = flume::bounded(NODE_QUEUE_FRAMES);
        let generation = {
            let mut state = self.state();
            state.next_generation += 1;
            let generation = state.next_generation;
            state.forget_node(&node);
            for room in rooms.iter() {
                state.set_interest(room.as_str(), &node, true);
            }
            let link = NodeLink { frames: frames_tx, generation, missing_since: None, presence_forgotten: false };
            state.nodes.insert(node.to_string(), link);
            generation
        };
        // What the node reported on an earlier link is stale: its shards
        // report their members again once this link is up.
        self.forget_node_presence(&node);
        tracing::info!(%node, rooms = rooms.len(), "node linked");
        metrics::gauge!("corecast_router_linked_nodes").increment(1);
        let writer_task = tokio::spawn(async move { write_frames(&mut writer, &frames_rx).await });
        let result = self.read_link(&node, &mut reader, &core, &routes).await;
        let current = {
            let mut state = self.state();
            let current = state.nodes.get(&*node).is_some_and(|link| link.generation == generation);
            if current {
                state.nodes.remove(&*node);
                state.forget_node(&node);
            }
            current
        };
        if current {
            self.forget_node_presence(&node);
        }
        writer_task.abort();
        metrics::gauge!("corecast_router_linked_nodes").decrement(1);
        tracing::info!(%node, "node unlinked");
        result
    }

    async fn read_link(
        &self,
        node: &Arc<str>,
        reader: &mut LinkReader,
        core: &Arc<RouterCore>,
        routes: &Arc<dyn RouteTable>,
    ) -> Result<(), LinkError> {
        while let Some(frame) = read_frame(reader).await? {
            metrics::counter!("corecast_router_link_frames_in_total", "kind" => frame.archived().kind()).increment(1);
            match frame.archived() {
                ArchivedInternalFrame::Chat(_) => {
                    let (core, node) = (core.clone(), node.clone());
                    tokio::spawn(async move { core.handle(&node, &frame).await });
                }
                ArchivedInternalFrame::RoomInterest { room, joined, id } => {
                    self.state().set_interest(room.as_str(), node, *joined);
                    let ack = InternalFrameBytes::encode(&InternalFrame::InterestAck { id: id.to_native() });
                    self.to_node(node, ack);
                }
                ArchivedInternalFrame::RouteChanged { users } => {
                    for user in users.iter() {
                        routes.forget(user.as_str());
                    }
                }
                ArchivedInternalFrame::RoomPush { room, except_conn, push } => {
                    // The excluded connection is the origin node's own; the
                    // origin delivered locally, so others get the push as is.
                    let frame = if except_conn.to_native() == 0 {
                        frame.clone()
                    } else {
                        InternalFrameBytes::encode(&InternalFrame::RoomPush {
                            room: room.to_string(),
                            except_conn: 0,
                            push: push.to_vec(),
                        })
                    };
                    self.publish_room(room.as_str(), &frame, Some(node));
                }
                ArchivedInternalFrame::Broadcast { .. } => {
                    self.broadcast(&frame, Some(node));
                }
                ArchivedInternalFrame::RoomPublish { .. }
                | ArchivedInternalFrame::StreamRequest { .. }
                | ArchivedInternalFrame::RoomPresence { .. }
                | ArchivedInternalFrame::RoomPresenceSnapshot { .. }
                | ArchivedInternalFrame::PresenceQuery { .. } => self.to_owner(node, &frame),
                _ => {}
            }
        }
        Ok(())
    }

    /// Sends a room push to every node with members of `room` except
    /// `origin`; returns how many nodes it went to.
    pub fn publish_room(&self, room: &str, frame: &InternalFrameBytes, origin: Option<&str>) -> usize {
        let targets: Vec<Arc<str>> =
            self.state().rooms.peers(room).iter().filter(|n| Some(&***n) != origin).cloned().collect();
        for node in &targets {
            self.to_node(node, frame.clone());
        }
        targets.len()
    }

    /// Sends a broadcast to every linked node except `origin`; returns how
    /// many nodes it went to.
    pub fn broadcast(&self, frame: &InternalFrameBytes, origin: Option<&str>) -> usize {
        let targets: Vec<String> = self.state().nodes.keys().filter(|n| Some(n.as_str()) != origin).cloned().collect();
        for node in &targets {
            self.to_node(node, frame.clone());
        }
        targets.len()
    }

    /// Records whether `node` has members of `room`.
    pub(crate) fn set_interest(&self, room: &str, node: &str, joined: bool) {
        self.state().set_interest(room, node, joined);
    }

    /// The nodes with members of `room`, as shared ids.
    pub(crate) fn room_nodes(&self, room: &str) -> Vec<Arc<str>> {
        self.state().rooms.peers(room).to_vec()
    }

    /// Queues a frame to `node`; false when it is not linked or its queue
    /// is full (counted as dropped).
    pub(crate) fn try_to_node(&self, node: &str, frame: InternalFrameBytes) -> bool {
        let sent = match self.state().nodes.get(node) {
            Some(link) => link.frames.try_send(frame).is_ok(),
            None => false,
        };
        let kind = if sent { "sent" } else { "dropped" };
        metrics::counter!("corecast_router_link_frames_out_total", "result" => kind).increment(1);
        sent
    }

    /// Takes the members of nodes whose registration has been missing from
    /// the registry (`registered`, a successful listing) for `grace` out of
    /// the rooms' presence, with leave events: a node whose host vanished
    /// leaves no connection to notice closing. The link stays: a node that
    /// was only too slow to renew keeps getting its rooms' messages, and
    /// reports its members again once it registers anew. The grace outlasts
    /// a Redis restart, after which live nodes register again within a
    /// third of their registration's lifetime.
    pub fn forget_unregistered(&self, registered: &[String], grace: Duration) {
        let now = Instant::now();
        let gone: Vec<Arc<str>> = {
            let mut state = self.state();
            let mut gone = Vec::new();
            for (node, link) in state.nodes.iter_mut() {
                if registered.contains(node) {
                    (link.missing_since, link.presence_forgotten) = (None, false);
                    continue;
                }
                let since = *link.missing_since.get_or_insert(now);
                if now.duration_since(since) >= grace && !link.presence_forgotten {
                    link.presence_forgotten = true;
                    gone.push(Arc::from(node.as_str()));
                }
            }
            gone
        };
        for node in gone {
            tracing::warn!(%node, "the node's registration is gone: its members leave the rooms' presence");
            metrics::counter!("corecast_router_unregistered_presence_forgotten_total").increment(1);
            self.forget_node_presence(&node);
        }
    }

    /// Nodes with members of `room`.
    pub fn nodes_with_room(&self, room: &str) -> Vec<String> {
        self.state().rooms.peers(room).iter().map(|node| node.to_string()).collect()
    }

    /// Every linked node.
    pub fn linked_nodes(&self) -> Vec<String> {
        self.state().nodes.keys().cloned().collect()
    }
}

impl ConnSink for LinkHub {
    fn to_node(&self, node: &str, frame: InternalFrameBytes) {
        self.try_to_node(node, frame);
    }
}

#[cfg(test)]
impl LinkHub {
    /// Links `node` as its hello would (with no rooms); returns its queue.
    pub(crate) fn link_for_test(&self, node: &str) -> flume::Receiver<InternalFrameBytes> {
        let (frames, queued) = flume::unbounded();
        let mut state = self.state();
        state.next_generation += 1;
        let generation = state.next_generation;
        let link = NodeLink { frames, generation, missing_since: None, presence_forgotten: false };
        state.nodes.insert(node.to_string(), link);
        queued
    }
}
