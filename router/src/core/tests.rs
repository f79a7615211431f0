//! Router core tests on a real embedded store in a temporary directory: a
//! stored message reaches every online device but the sender's connection
//! as one frame per shard, and a store that can no longer write makes SEND
//! fail with `unavailable` while reads keep working.

use std::sync::{Arc, Mutex};

use corecast_proto::internal::{ArchivedInternalFrame, InternalFrameBytes};
use corecast_storage::embedded::{Durability, EmbeddedStore};

use super::{ChatError, ConnSink, CoreConfig, RouterCore};
use crate::conversation::KIND_DIRECT;

/// Records what the core hands to each shard.
#[derive(Default)]
struct RecordingSink(Mutex<Vec<(u16, InternalFrameBytes)>>);

impl ConnSink for RecordingSink {
    fn to_shard(&self, shard: u16, frame: InternalFrameBytes) {
        self.0.lock().unwrap().push((shard, frame));
    }
}

fn conn(shard: u16, n: u64) -> u64 {
    (shard as u64) << 48 | n
}

async fn core_on(store: Arc<EmbeddedStore>) -> (Arc<RouterCore>, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::default());
    let core = RouterCore::start(store, sink.clone(), CoreConfig::default(), "test").await.unwrap();
    (core, sink)
}

#[tokio::test]
async fn stored_message_goes_once_to_each_shard_with_a_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Strict).unwrap());
    let (core, sink) = core_on(store).await;
    core.online("alice", conn(0, 1), "phone");
    core.online("alice", conn(1, 2), "laptop");
    core.online("bob", conn(1, 3), "");
    core.online("carol", conn(0, 4), "");

    let receipt = core.send("alice", KIND_DIRECT, "bob", 9, b"hi", Some(conn(0, 1))).await.unwrap();
    let sent = sink.0.lock().unwrap();
    // alice's phone sent it; her laptop and bob are both on shard 1.
    assert_eq!(sent.len(), 1);
    let (shard, frame) = &sent[0];
    assert_eq!(*shard, 1);
    match frame.archived() {
        ArchivedInternalFrame::ConnFrames { conn_ids, reply, .. } => {
            let ids: Vec<u64> = conn_ids.iter().map(|id| id.to_native()).collect();
            assert_eq!(ids, vec![conn(1, 2), conn(1, 3)]);
            assert!(!*reply);
        }
        other => panic!("unexpected {other:?}"),
    }
    let push = frame.wire_push();
    let decoded = corecast_proto::decode_server(&push).unwrap();
    assert!(matches!(decoded.message, corecast_proto::ServerMessage::Push { seq, .. } if seq == receipt.seq));
}

#[tokio::test]
async fn a_store_that_cannot_write_makes_send_unavailable_and_reads_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Strict).unwrap());
    let (core, _sink) = core_on(store.clone()).await;
    let first = core.send("alice", KIND_DIRECT, "bob", 1, b"stored", None).await.unwrap();
    store.close().unwrap();
    let refused = core.send("alice", KIND_DIRECT, "bob", 2, b"refused", None).await;
    assert!(matches!(refused, Err(ChatError::Unavailable(_))), "{refused:?}");
    // Nothing of the refused message was stored; the first one still reads.
    let history = core.history(&first.conv, 0, 10).await.unwrap();
    assert_eq!(history.iter().map(|m| m.client_msg_id).collect::<Vec<_>>(), vec![1]);
    // A resend of a stored message is answered from the store.
    let again = core.send("alice", KIND_DIRECT, "bob", 1, b"stored", None).await.unwrap();
    assert_eq!(again, first);
}
