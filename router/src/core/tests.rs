//! Router core tests on a real embedded store in a temporary directory: a
//! stored message reaches every online device but the sender's connection
//! as one frame per node, a conversation another router owns is refused,
//! and a store that can no longer write makes SEND fail with `unavailable`
//! while reads keep working; admin history refuses malformed conversation
//! ids. The ordering tests put a gate in front of the real store's appends
//! ([`GatedStore`]) to finish them out of order.

mod gated_store;
mod ordering;

use std::sync::{Arc, Mutex};

use corecast_cluster::conversation::KIND_DIRECT;
use corecast_cluster::ownership::{owner_of, Ownership};
use corecast_cluster::registry::Route;
use corecast_proto::internal::{ArchivedInternalFrame, InternalFrameBytes};
use corecast_proto::ServerMessage;
use corecast_storage::embedded::{Durability, EmbeddedStore};
use corecast_storage::MessageStore;

use super::{ChatError, CoreConfig, Origin, RouterCore};
use crate::presence::InMemoryRouteTable;
use crate::routes::{ConnSink, RouteTable};

/// Records what the core hands to each node.
#[derive(Default)]
struct RecordingSink(Mutex<Vec<(String, InternalFrameBytes)>>);

impl ConnSink for RecordingSink {
    fn to_node(&self, node: &str, frame: InternalFrameBytes) {
        self.0.lock().unwrap().push((node.to_string(), frame));
    }
}

fn route(node: &str, conn_id: u64, device: &str) -> Route {
    Route { node: node.into(), conn_id, device: device.into() }
}

async fn core_on(store: Arc<dyn MessageStore>) -> (Arc<RouterCore>, Arc<RecordingSink>, Arc<InMemoryRouteTable>) {
    core_with(store, CoreConfig::default()).await
}

async fn core_with(
    store: Arc<dyn MessageStore>,
    config: CoreConfig,
) -> (Arc<RouterCore>, Arc<RecordingSink>, Arc<InMemoryRouteTable>) {
    let sink = Arc::new(RecordingSink::default());
    let routes = Arc::new(InMemoryRouteTable::default());
    let core = RouterCore::start(store, routes.clone(), sink.clone(), config, "test").await.unwrap();
    (core, sink, routes)
}

/// The connection ids and the decoded client frames of a connection frame.
fn conn_frames(frame: &InternalFrameBytes) -> (Vec<u64>, bool, Vec<ServerMessage<'_>>) {
    match frame.archived() {
        ArchivedInternalFrame::ConnFrames { conn_ids, frames, reply } => {
            let ids = conn_ids.iter().map(|id| id.to_native()).collect();
            let mut messages = Vec::new();
            let mut rest: &[u8] = frames.as_slice();
            while !rest.is_empty() {
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                messages.push(corecast_proto::decode_server(&rest[..len]).unwrap().message);
                rest = &rest[len..];
            }
            (ids, *reply, messages)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn stored_message_goes_once_to_each_node_with_a_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Strict).unwrap());
    let (core, sink, routes) = core_on(store).await;
    routes.online("alice", route("a", 1, "phone"));
    routes.online("alice", route("b", 1, "laptop"));
    routes.online("bob", route("b", 3, ""));
    routes.online("carol", route("a", 4, ""));

    let origin = Origin { node: "a".into(), conn_id: 1, rid: 7 };
    let receipt = core.send("alice", KIND_DIRECT, "bob", 9, b"hi", Some(origin)).await.unwrap();
    let sent = sink.0.lock().unwrap();
    // alice's phone on node a sent it and gets the SENT; her laptop and bob
    // are both on b and get one PUSH frame.
    assert_eq!(sent.len(), 2);
    let (node, frame) = &sent[0];
    assert_eq!(node, "a");
    let (ids, reply, messages) = conn_frames(frame);
    assert_eq!((ids, reply), (vec![1], true));
    assert!(matches!(messages[..], [ServerMessage::Sent { seq, .. }] if seq == receipt.seq));
    let (node, frame) = &sent[1];
    assert_eq!(node, "b");
    let (ids, reply, _) = conn_frames(frame);
    assert_eq!((ids, reply), (vec![1, 3], false));
    let push = frame.wire_push();
    let decoded = corecast_proto::decode_server(&push).unwrap();
    assert!(matches!(decoded.message, corecast_proto::ServerMessage::Push { seq, .. } if seq == receipt.seq));
}

#[tokio::test]
async fn a_conversation_owned_elsewhere_is_refused_and_a_new_epoch_goes_higher() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Strict).unwrap());
    let routers = vec!["r1".to_string(), "r2".to_string()];
    let (core, _sink, _routes) = core_on(store).await;
    let first = core.send("alice", KIND_DIRECT, "bob", 1, b"one", None).await.unwrap();
    let owner = owner_of(&first.conv, &routers).unwrap().to_string();
    let other = routers.iter().find(|r| **r != owner).unwrap().clone();

    core.renew(core.epoch() + 1, Ownership::Share { me: other, routers: routers.clone() });
    let refused = core.send("alice", KIND_DIRECT, "bob", 2, b"two", None).await;
    assert!(matches!(refused, Err(ChatError::Unavailable(_))), "{refused:?}");

    core.renew(core.epoch() + 1, Ownership::Share { me: owner, routers });
    let second = core.send("alice", KIND_DIRECT, "bob", 2, b"two", None).await.unwrap();
    assert!(second.seq > first.seq, "{} !> {}", second.seq, first.seq);
}

#[tokio::test]
async fn a_store_that_cannot_write_makes_send_unavailable_and_reads_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Strict).unwrap());
    // The refused SEND waits out the store timeout: keep it short.
    let config = CoreConfig { store_timeout: std::time::Duration::from_millis(300), ..CoreConfig::default() };
    let (core, _sink, _routes) = core_with(store.clone(), config).await;
    let first = core.send("alice", KIND_DIRECT, "bob", 1, b"stored", None).await.unwrap();
    // A resend of a stored message gets the original receipt and stores nothing.
    let again = core.send("alice", KIND_DIRECT, "bob", 1, b"stored", None).await.unwrap();
    assert_eq!(again, first);
    store.close().unwrap();
    let refused = core.send("alice", KIND_DIRECT, "bob", 2, b"refused", None).await;
    assert!(matches!(refused, Err(ChatError::Unavailable(_))), "{refused:?}");
    // Nothing of the refused message was stored; the first one still reads.
    let history = core.history(&first.conv, 0, 10).await.unwrap();
    assert_eq!(history.iter().map(|m| m.client_msg_id).collect::<Vec<_>>(), vec![1]);
}

#[tokio::test]
async fn history_refuses_a_malformed_conversation_id_and_reads_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Strict).unwrap());
    let (core, _sink, _routes) = core_on(store).await;
    let refused = core.history("d:alice:shop", 0, 10).await;
    assert!(
        matches!(&refused, Err(ChatError::Invalid(why)) if why.contains("'alice' is not the length")),
        "{refused:?}"
    );
    assert!(core.history("d:5:aliceshop", 0, 10).await.unwrap().is_empty());
}
