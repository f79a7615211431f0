//! The conformance suite of [`MessageStore`]: one set of checks of every
//! method's contract, run against every backend.
//!
//! - `conformance_embedded_strict` / `conformance_embedded_batched`: the
//!   embedded store in a temporary directory, in both durability modes,
//!   including a close and reopen of the same directory.
//! - `conformance_scylla`: the ScyllaDB store against the node named by
//!   `CORECAST_SCYLLA` (`host:port`; keyspace `CORECAST_SCYLLA_KEYSPACE`,
//!   default `corecast_conformance`, replication factor 1), including a
//!   disconnect and reconnect. `#[ignore]`d, as no ScyllaDB node can run
//!   where the suite usually runs: `CORECAST_SCYLLA=host:port cargo test
//!   -p corecast-storage --test conformance -- --ignored`. Run that way
//!   without the variable, it fails saying so.
//! - `conformance_redis`: the Redis store against a real `redis-server`
//!   the test starts on a free port with `appendfsync always`, including a
//!   restart of that server (the data comes back from its append-only file).
//! - `conformance_redis_sentinel`: the Redis store through a
//!   `redis+sentinel://` URL (a primary, a replica and three sentinels the
//!   test starts), waiting for the replica after every write (`WAIT`).
//!
//! Every id the suite uses starts with a per-run namespace, so runs against
//! a shared cluster do not see each other's data.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use corecast_storage::embedded::{Durability, EmbeddedStore};
use corecast_storage::redis::{RedisStore, ReplicaAcks};
use corecast_storage::scylla::ScyllaStore;
use corecast_storage::{AppendOutcome, Fanout, GroupInfo, MessageStore, StoreError, StoredMessage, UserConversation};
use corecast_testkit::{redis_sentinel, redis_server};

type Store = Arc<dyn MessageStore>;

// ---------------------------------------------------------------- backends

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_embedded_strict() {
    embedded(Durability::Strict).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_embedded_batched() {
    embedded(Durability::Batched { interval_ms: 5 }).await;
}

async fn embedded(durability: Durability) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ns = Ns::new();
    let store: Store = Arc::new(EmbeddedStore::open(dir.path(), durability).expect("open"));
    run_suite(&store, &ns).await;
    let before = write_before_reopen(&store, &ns).await;
    drop(store);
    let store: Store = Arc::new(EmbeddedStore::open(dir.path(), durability).expect("reopen"));
    check_after_reopen(&store, &ns, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_redis() {
    redis_server::require();
    let mut server = redis_server::RedisServer::start_persistent();
    let ns = Ns::new();
    let store: Store = Arc::new(RedisStore::connect(&server.url(), "conformance:").await.expect("connect"));
    run_suite(&store, &ns).await;
    let before = write_before_reopen(&store, &ns).await;
    drop(store);
    server.restart();
    let store: Store = Arc::new(RedisStore::connect(&server.url(), "conformance:").await.expect("reconnect"));
    check_after_reopen(&store, &ns, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_redis_sentinel() {
    let sentinels = tokio::task::spawn_blocking(redis_sentinel::Sentinels::start).await.expect("sentinels");
    let acks = ReplicaAcks { replicas: 1, timeout: std::time::Duration::from_secs(2) };
    let store = RedisStore::connect(&sentinels.url(), "conformance:").await.expect("connect through the sentinels");
    let store: Store = Arc::new(store.with_replica_acks(acks));
    run_suite(&store, &Ns::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a ScyllaDB node: set CORECAST_SCYLLA=host:port and run with --ignored"]
async fn conformance_scylla() {
    let node = match std::env::var("CORECAST_SCYLLA") {
        Ok(node) if !node.trim().is_empty() => node,
        _ => panic!("CORECAST_SCYLLA is not set: name a ScyllaDB node (host:port) to run this suite against"),
    };
    let keyspace = std::env::var("CORECAST_SCYLLA_KEYSPACE").unwrap_or_else(|_| "corecast_conformance".into());
    let nodes = vec![node.trim().to_owned()];
    let ns = Ns::new();
    let store: Store = Arc::new(ScyllaStore::connect(&nodes, &keyspace, 1).await.expect("connect to ScyllaDB"));
    run_suite(&store, &ns).await;
    let before = write_before_reopen(&store, &ns).await;
    drop(store);
    let store: Store = Arc::new(ScyllaStore::connect(&nodes, &keyspace, 1).await.expect("reconnect to ScyllaDB"));
    check_after_reopen(&store, &ns, &before).await;
    let _ = writeln!(std::io::stderr(), "conformance[scylla]: passed against {node} (keyspace {keyspace})");
}

// ------------------------------------------------------------------ suite

/// Every contract check, in one run against one store.
async fn run_suite(store: &Store, ns: &Ns) {
    timeline_order_limit_and_after(store, ns).await;
    timelines_walk_far_apart_seqs(store, ns).await;
    duplicates_store_nothing_new(store, ns).await;
    concurrent_appends_and_duplicates(store, ns).await;
    inbox_fanout(store, ns).await;
    user_conversations_track_last_seq(store, ns).await;
    cursors_never_move_back(store, ns).await;
    groups(store, ns).await;
    groups_once_large_stay_read_fanout(store, ns).await;
    fences_refuse_appends_below_them(store, ns).await;
    epochs_strictly_increase(store).await;
}

async fn timeline_order_limit_and_after(store: &Store, ns: &Ns) {
    let conv = ns.id("d:alice:bob");
    let members = Fanout::Timeline { members: vec![ns.id("alice"), ns.id("bob")] };
    // Appended out of order: reads are in seq order anyway.
    for seq in [1, 2, 3, 5, 4] {
        let m = msg(&conv, seq, &ns.id("alice"), 1000 + seq, &format!("hello {seq}"));
        assert_eq!(store.append(&m, &members).await.unwrap(), AppendOutcome::Stored);
    }
    // A conversation whose id extends this one's must not leak into it.
    let longer = format!("{conv}:x");
    store.append(&msg(&longer, 1, &ns.id("alice"), 2000, "other"), &members).await.unwrap();

    let all = store.read_timeline(&conv, 0, 100).await.unwrap();
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all[2], msg(&conv, 3, &ns.id("alice"), 1003, "hello 3"), "messages round-trip whole");
    assert_eq!(seqs(&store.read_timeline(&conv, 2, 100).await.unwrap()), [3, 4, 5], "after_seq is exclusive");
    assert_eq!(seqs(&store.read_timeline(&conv, 0, 2).await.unwrap()), [1, 2], "limit");
    assert_eq!(seqs(&store.read_timeline(&conv, 3, 1).await.unwrap()), [4], "after_seq and limit");
    assert!(store.read_timeline(&conv, 5, 100).await.unwrap().is_empty());
    assert!(store.read_timeline(&conv, 0, 0).await.unwrap().is_empty(), "limit 0");
    assert!(store.read_timeline(&conv, u64::MAX, 10).await.unwrap().is_empty());
    assert!(store.read_timeline(&ns.id("d:nobody:none"), 0, 10).await.unwrap().is_empty());
    assert_eq!(seqs(&store.read_timeline(&longer, 0, 10).await.unwrap()), [1]);

    assert_eq!(store.last_seq(&conv).await.unwrap(), 5);
    assert_eq!(store.last_seq(&ns.id("d:nobody:none")).await.unwrap(), 0);
}

async fn timelines_walk_far_apart_seqs(store: &Store, ns: &Ns) {
    // seq = epoch << 40 | counter, and runs across 2^20 boundaries.
    let conv = ns.id("d:far:apart");
    let fanout = Fanout::Timeline { members: vec![] };
    let wanted = [(1 << 20) - 1, 1 << 20, (1 << 20) + 1, (1 << 40) | 1, (2 << 40) | 7, (40 << 40) | 3];
    for (i, &seq) in wanted.iter().enumerate() {
        store.append(&msg(&conv, seq, &ns.id("far"), i as u64, "x"), &fanout).await.unwrap();
    }
    assert_eq!(seqs(&store.read_timeline(&conv, 0, 100).await.unwrap()), wanted);
    assert_eq!(seqs(&store.read_timeline(&conv, 0, 2).await.unwrap()), wanted[..2]);
    assert_eq!(seqs(&store.read_timeline(&conv, (1 << 20) - 1, 3).await.unwrap()), wanted[1..4]);
    assert_eq!(seqs(&store.read_timeline(&conv, (1 << 40) | 1, 100).await.unwrap()), wanted[4..]);
    assert_eq!(store.last_seq(&conv).await.unwrap(), (40 << 40) | 3);
}

async fn duplicates_store_nothing_new(store: &Store, ns: &Ns) {
    let conv = ns.id("d:carol:dave");
    let carol = ns.id("carol");
    let fanout = Fanout::Timeline { members: vec![carol.clone(), ns.id("dave")] };
    let original = msg(&conv, 10, &carol, 77, "first");
    assert_eq!(store.append(&original, &fanout).await.unwrap(), AppendOutcome::Stored);

    // The resend got a new seq and time from the owner: the original wins.
    let resend = StoredMessage { seq: 11, ts_ms: original.ts_ms + 5, payload: b"second".to_vec(), ..original.clone() };
    assert_eq!(store.append(&resend, &fanout).await.unwrap(), AppendOutcome::Duplicate(original.clone()));
    assert_eq!(store.append(&original, &fanout).await.unwrap(), AppendOutcome::Duplicate(original.clone()));
    assert_eq!(
        store.read_timeline(&conv, 0, 100).await.unwrap(),
        std::slice::from_ref(&original),
        "one message stored"
    );
    assert_eq!(store.last_seq(&conv).await.unwrap(), 10, "the duplicate's seq is not recorded");
    let index = store.user_conversations(&carol).await.unwrap();
    assert_eq!(last_seqs(&index).get(&conv), Some(&10));

    // A duplicate fanned out to inboxes writes no inbox copy either.
    let group_conv = ns.id("g:dups");
    let inboxes = Fanout::Inboxes { members: vec![ns.id("erin"), ns.id("frank")] };
    let first = msg(&group_conv, 1, &ns.id("erin"), 5, "one");
    store.append(&first, &inboxes).await.unwrap();
    let again = StoredMessage { seq: 2, ..first.clone() };
    assert_eq!(store.append(&again, &inboxes).await.unwrap(), AppendOutcome::Duplicate(first.clone()));
    assert_eq!(store.read_inbox(&ns.id("frank"), &group_conv, 0, 10).await.unwrap(), std::slice::from_ref(&first));
    assert_eq!(store.read_timeline(&group_conv, 0, 10).await.unwrap(), [first]);

    // The same client id from another sender is another message.
    let other = msg(&conv, 12, &ns.id("dave"), 77, "dave's");
    assert_eq!(store.append(&other, &fanout).await.unwrap(), AppendOutcome::Stored);
}

async fn concurrent_appends_and_duplicates(store: &Store, ns: &Ns) {
    // 32 messages, each sent twice at once with different seqs: exactly one
    // of each pair is stored, and the other reports it.
    let conv = ns.id("d:many:at_once");
    let sender = ns.id("many");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32u64 {
        for attempt in 0..2u64 {
            let store = Arc::clone(store);
            let m = msg(&conv, 1 + i * 2 + attempt, &sender, 500 + i, &format!("m{i}"));
            tasks.spawn(async move {
                let fanout = Fanout::Timeline { members: vec![] };
                (i, store.append(&m, &fanout).await.unwrap())
            });
        }
    }
    let mut stored_seq = BTreeMap::new();
    let mut duplicates = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, outcome) = joined.expect("task");
        match outcome {
            AppendOutcome::Stored => assert!(stored_seq.insert(i, ()).is_none(), "message {i} stored twice"),
            AppendOutcome::Duplicate(original) => duplicates.push((i, original)),
        }
    }
    assert_eq!(stored_seq.len(), 32);
    assert_eq!(duplicates.len(), 32);
    let stored = store.read_timeline(&conv, 0, 1000).await.unwrap();
    assert_eq!(stored.len(), 32, "one copy of each message");
    for (i, original) in duplicates {
        assert_eq!(original.client_msg_id, 500 + i);
        assert!(stored.contains(&original), "the duplicate reported the stored original");
    }
}

async fn inbox_fanout(store: &Store, ns: &Ns) {
    let conv = ns.id("g:small");
    let members = vec![ns.id("gina"), ns.id("hal"), ns.id("ivy")];
    let fanout = Fanout::Inboxes { members: members.clone() };
    for seq in 1..=3 {
        store.append(&msg(&conv, seq, &ns.id("gina"), 300 + seq, &format!("g{seq}")), &fanout).await.unwrap();
    }
    for member in &members {
        let inbox = store.read_inbox(member, &conv, 0, 10).await.unwrap();
        assert_eq!(seqs(&inbox), [1, 2, 3], "{member}'s inbox");
        assert_eq!(inbox[0], msg(&conv, 1, &ns.id("gina"), 301, "g1"));
        assert_eq!(seqs(&store.read_inbox(member, &conv, 1, 1).await.unwrap()), [2], "after_seq and limit");
        assert!(store.read_inbox(member, &conv, 3, 10).await.unwrap().is_empty());
    }
    assert!(store.read_inbox(&ns.id("stranger"), &conv, 0, 10).await.unwrap().is_empty());
    assert_eq!(seqs(&store.read_timeline(&conv, 0, 10).await.unwrap()), [1, 2, 3], "timeline kept too");
    // Timeline fan-out writes no inbox copies.
    assert!(store.read_inbox(&ns.id("alice"), &ns.id("d:alice:bob"), 0, 10).await.unwrap().is_empty());
}

async fn user_conversations_track_last_seq(store: &Store, ns: &Ns) {
    let (jo, kim) = (ns.id("jo"), ns.id("kim"));
    let direct = ns.id("d:jo:kim");
    let group = ns.id("g:jo-team");
    let large = ns.id("g:jo-large");
    let both = Fanout::Timeline { members: vec![jo.clone(), kim.clone()] };
    store.append(&msg(&direct, 3, &jo, 1, "a"), &both).await.unwrap();
    store.append(&msg(&group, 8, &kim, 2, "b"), &Fanout::Inboxes { members: vec![jo.clone()] }).await.unwrap();
    // Read fan-out: nobody's index changes.
    store.append(&msg(&large, 4, &kim, 3, "c"), &Fanout::Timeline { members: vec![] }).await.unwrap();

    let index = last_seqs(&store.user_conversations(&jo).await.unwrap());
    assert_eq!(index, BTreeMap::from([(direct.clone(), 3), (group.clone(), 8)]));
    let index = last_seqs(&store.user_conversations(&kim).await.unwrap());
    assert_eq!(index, BTreeMap::from([(direct.clone(), 3)]), "kim is not in the group's fan-out");

    store.append(&msg(&direct, 9, &kim, 4, "d"), &both).await.unwrap();
    // A late append with a lower seq moves nothing back.
    store.append(&msg(&direct, 5, &kim, 5, "e"), &both).await.unwrap();
    assert_eq!(last_seqs(&store.user_conversations(&jo).await.unwrap()).get(&direct), Some(&9));
    assert_eq!(last_seqs(&store.user_conversations(&kim).await.unwrap()).get(&direct), Some(&9));
    assert_eq!(store.last_seq(&direct).await.unwrap(), 9);
    assert!(store.user_conversations(&ns.id("nobody")).await.unwrap().is_empty());
}

async fn cursors_never_move_back(store: &Store, ns: &Ns) {
    let (lee, conv, other) = (ns.id("lee"), ns.id("d:lee:max"), ns.id("g:lee-team"));
    assert!(store.cursors(&lee, "phone").await.unwrap().is_empty());
    store.set_cursor(&lee, "phone", &conv, 5).await.unwrap();
    assert_eq!(store.cursors(&lee, "phone").await.unwrap(), [(conv.clone(), 5)]);
    store.set_cursor(&lee, "phone", &conv, 3).await.unwrap();
    assert_eq!(store.cursors(&lee, "phone").await.unwrap(), [(conv.clone(), 5)], "never backwards");
    store.set_cursor(&lee, "phone", &conv, 9).await.unwrap();
    store.set_cursor(&lee, "phone", &other, 2).await.unwrap();
    store.set_cursor(&lee, "laptop", &conv, 1).await.unwrap();
    let mut phone = store.cursors(&lee, "phone").await.unwrap();
    phone.sort();
    assert_eq!(phone, [(conv.clone(), 9), (other, 2)]);
    assert_eq!(store.cursors(&lee, "laptop").await.unwrap(), [(conv, 1)], "devices are independent");
}

async fn groups(store: &Store, ns: &Ns) {
    let (g, missing) = (ns.id("team"), ns.id("no-such-group"));
    let (a, b, c) = (ns.id("ann"), ns.id("ben"), ns.id("cat"));
    store.create_group(&g, &[b.clone(), a.clone()], LIMIT).await.unwrap();
    assert_eq!(
        store.group(&g).await.unwrap(),
        Some(GroupInfo { group: g.clone(), members: vec![a.clone(), b.clone()], read_fanout: false })
    );
    assert!(matches!(store.create_group(&g, std::slice::from_ref(&c), LIMIT).await, Err(StoreError::AlreadyExists(_))));
    assert_eq!(
        store.group(&g).await.unwrap().unwrap().members,
        [a.clone(), b.clone()],
        "failed create changed nothing"
    );

    store.add_members(&g, &[c.clone(), a.clone()], LIMIT).await.unwrap();
    assert_eq!(store.group(&g).await.unwrap().unwrap().members, [a.clone(), b.clone(), c.clone()]);
    store.remove_members(&g, &[a.clone(), ns.id("not-a-member")]).await.unwrap();
    assert_eq!(store.group(&g).await.unwrap().unwrap().members, [b.clone(), c.clone()]);

    assert!(matches!(store.add_members(&missing, std::slice::from_ref(&a), LIMIT).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.remove_members(&missing, std::slice::from_ref(&a)).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.group(&missing).await.unwrap(), None);
    assert!(store.user_groups(&a).await.unwrap().is_empty(), "a non-member got no group");

    let empty = ns.id("empty");
    store.create_group(&empty, &[], LIMIT).await.unwrap();
    assert_eq!(
        store.group(&empty).await.unwrap(),
        Some(GroupInfo { group: empty.clone(), members: vec![], read_fanout: false })
    );
    let second = ns.id("second");
    store.create_group(&second, std::slice::from_ref(&c), LIMIT).await.unwrap();

    let listed: Vec<String> = store.list_groups().await.unwrap();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "list_groups is sorted");
    let ours: Vec<&String> = listed.iter().filter(|id| id.starts_with(&ns.0)).collect();
    assert_eq!(ours, [&empty, &second, &g]);
    assert_eq!(store.user_groups(&c).await.unwrap(), [second, g.clone()]);
    assert_eq!(store.user_groups(&b).await.unwrap(), [g]);
}

/// Write fan-out limit of the group checks.
const LIMIT: usize = 3;

async fn groups_once_large_stay_read_fanout(store: &Store, ns: &Ns) {
    let members = |names: &[&str]| names.iter().map(|n| ns.id(n)).collect::<Vec<_>>();
    let read_fanout = |g: String| async move { store.group(&g).await.unwrap().unwrap().read_fanout };

    let growing = ns.id("growing");
    store.create_group(&growing, &members(&["m1", "m2", "m3"]), LIMIT).await.unwrap();
    assert!(!read_fanout(growing.clone()).await, "at the limit: write fan-out");
    store.add_members(&growing, &members(&["m3"]), LIMIT).await.unwrap();
    assert!(!read_fanout(growing.clone()).await, "re-adding a member does not count twice");
    store.add_members(&growing, &members(&["m4"]), LIMIT).await.unwrap();
    assert!(read_fanout(growing.clone()).await, "past the limit: read fan-out");
    store.remove_members(&growing, &members(&["m1", "m2", "m3"])).await.unwrap();
    assert!(read_fanout(growing.clone()).await, "shrinking back keeps read fan-out");

    let born_large = ns.id("born-large");
    store.create_group(&born_large, &members(&["m1", "m2", "m3", "m4"]), LIMIT).await.unwrap();
    assert!(read_fanout(born_large).await, "created past the limit");
}

async fn fences_refuse_appends_below_them(store: &Store, ns: &Ns) {
    let conv = format!("d:{}:{}", ns.id("fa"), ns.id("fb"));
    let sender = ns.id("fa");
    let stored = msg(&conv, 5, &sender, 1, "before the fence");
    let fanout = Fanout::Timeline { members: vec![sender.clone()] };
    store.append(&stored, &fanout).await.unwrap();

    store.fence(&conv, 10).await.unwrap();
    store.fence(&conv, 7).await.unwrap();
    let below = store.append(&msg(&conv, 9, &sender, 2, "below the fence"), &fanout).await;
    assert!(matches!(below, Err(StoreError::Fenced(_))), "a fence never moves down: {below:?}");
    assert_eq!(seqs(&store.read_timeline(&conv, 0, 10).await.unwrap()), [5], "a fenced append stores nothing");
    let resend = store.append(&stored, &fanout).await.unwrap();
    assert_eq!(resend, AppendOutcome::Duplicate(stored.clone()), "a stored message is still found");
    let at = msg(&conv, 10, &sender, 3, "at the fence");
    assert_eq!(store.append(&at, &fanout).await.unwrap(), AppendOutcome::Stored);
    assert_eq!(seqs(&store.read_timeline(&conv, 0, 10).await.unwrap()), [5, 10]);
}

async fn epochs_strictly_increase(store: &Store) {
    let mut last = 0;
    for owner in ["router-a", "router-b", "router-a"] {
        let epoch = store.next_epoch(owner).await.unwrap();
        assert!(epoch > last, "epoch {epoch} after {last}");
        last = epoch;
    }
}

// ------------------------------------------------------ across a reopen

/// What the store held when it was closed.
struct Before {
    epoch: u64,
    messages: Vec<StoredMessage>,
    inbox: Vec<StoredMessage>,
}

async fn write_before_reopen(store: &Store, ns: &Ns) -> Before {
    let conv = ns.id("d:persist:ent");
    let group_conv = ns.id("g:persist");
    let members = vec![ns.id("persist"), ns.id("ent")];
    let mut messages = Vec::new();
    for seq in 1..=20 {
        let m = msg(&conv, seq, &ns.id("persist"), 9000 + seq, &format!("durable {seq}"));
        store.append(&m, &Fanout::Timeline { members: members.clone() }).await.unwrap();
        messages.push(m);
    }
    let g = msg(&group_conv, 1, &ns.id("ent"), 1, "to the group");
    store.append(&g, &Fanout::Inboxes { members: members.clone() }).await.unwrap();
    store.set_cursor(&ns.id("ent"), "phone", &conv, 7).await.unwrap();
    store.create_group(&ns.id("persisted-group"), &members, LIMIT).await.unwrap();
    let epoch = store.next_epoch("before-reopen").await.unwrap();
    Before { epoch, messages, inbox: vec![g] }
}

async fn check_after_reopen(store: &Store, ns: &Ns, before: &Before) {
    let conv = ns.id("d:persist:ent");
    assert_eq!(store.read_timeline(&conv, 0, 100).await.unwrap(), before.messages, "messages survive");
    assert_eq!(store.last_seq(&conv).await.unwrap(), 20);
    assert_eq!(store.read_inbox(&ns.id("persist"), &ns.id("g:persist"), 0, 10).await.unwrap(), before.inbox);
    assert_eq!(store.cursors(&ns.id("ent"), "phone").await.unwrap(), [(conv.clone(), 7)]);
    let index = last_seqs(&store.user_conversations(&ns.id("ent")).await.unwrap());
    assert_eq!(index.get(&conv), Some(&20));
    let group = store.group(&ns.id("persisted-group")).await.unwrap().expect("group survives");
    assert_eq!(group.members, [ns.id("ent"), ns.id("persist")]);

    // Dedup records survive: a resend after the restart stores nothing.
    let original = &before.messages[4];
    let resend = StoredMessage { seq: 1000, ..original.clone() };
    let fanout = Fanout::Timeline { members: vec![] };
    assert_eq!(store.append(&resend, &fanout).await.unwrap(), AppendOutcome::Duplicate(original.clone()));
    assert_eq!(store.read_timeline(&conv, 0, 100).await.unwrap().len(), 20);

    let epoch = store.next_epoch("after-reopen").await.unwrap();
    assert!(epoch > before.epoch, "epoch {epoch} after reopen, {} before", before.epoch);
}

// ---------------------------------------------------------------- helpers

/// A per-run prefix for every id.
struct Ns(String);

impl Ns {
    fn new() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        Ns(format!("t{}-{nanos}-", std::process::id()))
    }

    fn id(&self, name: &str) -> String {
        format!("{}{name}", self.0)
    }
}

fn msg(conv: &str, seq: u64, sender: &str, client_msg_id: u64, text: &str) -> StoredMessage {
    StoredMessage {
        conv: conv.to_owned(),
        seq,
        sender: sender.to_owned(),
        client_msg_id,
        ts_ms: 1_700_000_000_000 + seq,
        kind: if conv.contains("g:") { 3 } else { 2 },
        payload: text.as_bytes().to_vec(),
    }
}

fn seqs(messages: &[StoredMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

fn last_seqs(index: &[UserConversation]) -> BTreeMap<String, u64> {
    index.iter().map(|c| (c.conv.clone(), c.last_seq)).collect()
}
