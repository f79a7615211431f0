//! Seqs become visible in order: appends that finish out of order, appends
//! whose outcome is unknown, and appends of an earlier owner still in
//! flight when a new owner takes the conversation over.

use std::sync::Arc;
use std::time::Duration;

use corecast_storage::embedded::{Durability, EmbeddedStore};
use corecast_storage::{Fanout, MessageStore, StoreError, StoredMessage};

use corecast_cluster::conversation::KIND_DIRECT;
use corecast_cluster::ownership::Ownership;
use corecast_proto::ServerMessage;

use super::gated_store::{Gate, GatedStore};
use super::{conn_frames, core_on, route, RecordingSink};
use crate::core::{ChatError, CoreConfig, RouterCore};
use crate::presence::InMemoryRouteTable;
use crate::routes::RouteTable;

const CONV: &str = "d:5:alicebob";

fn open_store(dir: &tempfile::TempDir) -> Arc<EmbeddedStore> {
    Arc::new(EmbeddedStore::open(dir.path(), Durability::Strict).unwrap())
}

/// Waits (bounded) until `check` holds, yielding to the runtime.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Seqs of the PUSH frames the sink handed to node `node`, in order.
fn pushed_seqs(sink: &RecordingSink, node: &str) -> Vec<u64> {
    let frames = sink.0.lock().unwrap();
    let mut seqs = Vec::new();
    for (_, frame) in frames.iter().filter(|(to, _)| to == node) {
        for message in conn_frames(frame).2 {
            if let ServerMessage::Push { seq, .. } = message {
                seqs.push(seq);
            }
        }
    }
    seqs
}

#[tokio::test]
async fn a_later_seq_stays_invisible_until_the_earlier_one_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let inner = open_store(&dir);
    let store = GatedStore::new(inner.clone());
    let (core, sink, routes) = core_on(store.clone()).await;
    routes.online("bob", route("b", 5, "phone"));
    let open_first = store.gate(1);

    let first = tokio::spawn({
        let core = core.clone();
        async move { core.send("alice", KIND_DIRECT, "bob", 1, b"one", None).await }
    });
    until("the first append waits at its gate", || !store.is_gated(1)).await;
    let second = tokio::spawn({
        let core = core.clone();
        async move { core.send("alice", KIND_DIRECT, "bob", 2, b"two", None).await }
    });
    // Only the second append can run: the first waits at its gate.
    let mut stored = Vec::new();
    for _ in 0..200 {
        stored = inner.read_timeline(CONV, 0, 10).await.unwrap();
        if !stored.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stored_second = stored.first().expect("the second append ran").clone();
    assert_eq!(stored_second.client_msg_id, 2);

    let early = core.sync("bob", CONV, 0, 50).await.unwrap();
    assert!(early.messages.is_empty(), "seq {} shown before the seq below it", stored_second.seq);
    assert!(early.visible_seq < stored_second.seq);
    assert!(core.unread("bob", "phone").await.unwrap().is_empty(), "UNREAD showed a seq not yet visible");
    assert!(pushed_seqs(&sink, "b").is_empty(), "a PUSH left before the seq below it");
    assert!(!second.is_finished(), "SENT before the seq below it was stored");

    open_first.send(Gate::Pass).ok();
    let (first, second) = (first.await.unwrap().unwrap(), second.await.unwrap().unwrap());
    assert!(first.seq < second.seq);
    assert_eq!(pushed_seqs(&sink, "b"), [first.seq, second.seq], "PUSHes leave in seq order");
    let late = core.sync("bob", CONV, 0, 50).await.unwrap();
    assert_eq!(late.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [first.seq, second.seq]);
    assert_eq!(late.visible_seq, second.seq);
    assert_eq!(core.unread("bob", "phone").await.unwrap(), [(CONV.to_string(), second.seq, 0)]);
}

#[tokio::test]
async fn an_append_whose_reply_was_lost_is_read_back_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = GatedStore::new(open_store(&dir));
    let (core, _sink, _routes) = core_on(store.clone()).await;
    store.gate(1).send(Gate::LoseReply).ok();
    let receipt = core.send("alice", KIND_DIRECT, "bob", 1, b"one", None).await.unwrap();
    let shown = core.sync("bob", CONV, 0, 50).await.unwrap();
    assert_eq!(shown.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [receipt.seq]);
}

#[tokio::test]
async fn an_append_that_never_ran_is_a_gap_that_can_never_be_filled() {
    let dir = tempfile::tempdir().unwrap();
    let inner = open_store(&dir);
    let store = GatedStore::new(inner.clone());
    let (core, _sink, _routes) = core_on(store.clone()).await;
    store.gate(1).send(Gate::Refuse).ok();
    let refused = core.send("alice", KIND_DIRECT, "bob", 1, b"one", None).await;
    assert!(matches!(refused, Err(ChatError::Unavailable(_))), "{refused:?}");
    let after = core.send("alice", KIND_DIRECT, "bob", 2, b"two", None).await.unwrap();
    let shown = core.sync("bob", CONV, 0, 50).await.unwrap();
    assert_eq!(shown.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [after.seq]);
    assert_eq!(shown.visible_seq, after.seq, "the gap below is settled");

    // The refused seq was fenced: it can never be stored late.
    let gap = after.seq - 1;
    let late = StoredMessage {
        conv: CONV.into(),
        seq: gap,
        sender: "alice".into(),
        client_msg_id: 1,
        ts_ms: 0,
        kind: KIND_DIRECT,
        payload: b"one".to_vec(),
    };
    let fanout = Fanout::Timeline { members: vec!["alice".into(), "bob".into()] };
    assert!(matches!(inner.append(&late, &fanout).await, Err(StoreError::Fenced(_))));
    // Its resend gets a new, higher seq.
    let resent = core.send("alice", KIND_DIRECT, "bob", 1, b"one", None).await.unwrap();
    assert!(resent.seq > after.seq);
}

#[tokio::test]
async fn a_new_owner_fences_out_appends_the_old_owner_still_has_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let store = GatedStore::new(open_store(&dir));
    let routes: Arc<dyn RouteTable> = Arc::new(InMemoryRouteTable::default());
    let sink = Arc::new(RecordingSink::default());
    let config = CoreConfig::default();
    let old = RouterCore::with_epoch(store.clone(), routes.clone(), sink.clone(), config.clone(), 1, Ownership::All);
    let new = RouterCore::with_epoch(store.clone(), routes, sink, config, 2, Ownership::All);

    let open = store.gate(1);
    let in_flight = tokio::spawn({
        let old = old.clone();
        async move { old.send("alice", KIND_DIRECT, "bob", 1, b"late", None).await }
    });
    until("the old owner's append waits at its gate", || !store.is_gated(1)).await;
    let shown = new.sync("bob", CONV, 0, 50).await.unwrap();
    assert!(shown.messages.is_empty());

    open.send(Gate::Pass).ok();
    let late = in_flight.await.unwrap();
    assert!(matches!(late, Err(ChatError::Unavailable(_))), "{late:?}");
    let resent = new.send("alice", KIND_DIRECT, "bob", 1, b"late", None).await.unwrap();
    let shown = new.sync("bob", CONV, 0, 50).await.unwrap();
    assert_eq!(shown.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [resent.seq]);
}
