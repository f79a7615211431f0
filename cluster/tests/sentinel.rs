//! The registry, the invalidation subscription and the Redis message store
//! through a `redis+sentinel://` URL, across a real failover: a primary, a
//! replica and three `redis-sentinel` processes on free loopback ports
//! (`corecast_testkit::redis_sentinel`). The primary is SIGKILLed while a task
//! keeps appending; once the sentinels have promoted the replica, the same
//! `Registry`, subscription and `RedisStore` objects work again, nothing
//! the store acknowledged is missing, and the store (waiting for one
//! replica after each write) refuses writes until a replica is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corecast_cluster::registry::redis::{subscribe_invalidations, Registry};
use corecast_cluster::registry::{NodeInfo, Route};
use corecast_storage::redis::{RedisStore, ReplicaAcks};
use corecast_storage::{AppendOutcome, Fanout, MessageStore, StoreError, StoredMessage};
use corecast_testkit::redis_sentinel;
use redis_sentinel::Sentinels;
use tokio::sync::mpsc;

const LONG: Duration = Duration::from_secs(600);
const CONV: &str = "d:alice:bob";

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        client_addr: "127.0.0.1:1".into(),
        ws_url: None,
        control_addr: "127.0.0.1:2".into(),
        control_tls: false,
        weight: 1,
        ceiling: 10,
    }
}

fn message(seq: u64) -> StoredMessage {
    StoredMessage {
        conv: CONV.into(),
        seq,
        sender: "alice".into(),
        client_msg_id: seq,
        ts_ms: 1_700_000_000_000 + seq,
        kind: 2,
        payload: format!("message {seq}").into_bytes(),
    }
}

async fn append(store: &RedisStore, seq: u64) -> Result<AppendOutcome, StoreError> {
    store.append(&message(seq), &Fanout::Timeline { members: vec!["alice".into(), "bob".into()] }).await
}

/// Polls `check` every 50 ms for up to a minute; panics naming `what`.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `op` until the store stops refusing it as unavailable (a replica
/// that acknowledged after the 500 ms wait, as happens on a loaded machine
/// right after it came back), for up to a minute; panics naming `what` on
/// any other error.
async fn once_available<T, F: std::future::Future<Output = Result<T, StoreError>>>(
    what: &str,
    mut op: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match op().await {
            Ok(value) => return value,
            Err(StoreError::Unavailable(e)) if Instant::now() < deadline => {
                eprintln!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// The next announcement equal to `wanted`, skipping others, within a minute.
async fn announced(changes: &mut mpsc::Receiver<String>, wanted: &str) {
    let wait = async {
        while let Some(what) = changes.recv().await {
            if what == wanted {
                return;
            }
        }
        panic!("the invalidation subscription ended");
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("no {wanted:?} announcement within a minute"));
}

/// Appends seq after seq (20 ms apart) until `stop`, noting in `acked`
/// the seqs the store acknowledged.
fn keep_appending(
    store: Arc<RedisStore>,
    first: u64,
    acked: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Bounded: 5,000 attempts at most.
        for seq in first..first + 5_000 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(AppendOutcome::Stored) = append(&store, seq).await {
                acked.lock().unwrap().push(seq);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("fixture call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_subscription_and_store_follow_a_failover() {
    let redis = blocking(Sentinels::start).await;
    let url = redis.url();
    let registry = Registry::connect(&url, "t:").await.expect("registry through the sentinels");
    let mut changes = subscribe_invalidations(&url, "t:").await.expect("subscription through the sentinels");
    let acks = ReplicaAcks { replicas: 1, timeout: Duration::from_millis(500) };
    let store =
        Arc::new(RedisStore::connect(&url, "s:").await.expect("store through the sentinels").with_replica_acks(acks));

    // Before: everything works through the sentinels' primary.
    registry.register_node(&node("a"), LONG).await.unwrap();
    let alice = Route { node: "a".into(), conn_id: 1, device: "phone".into() };
    registry.add_route("alice", &alice, LONG).await.unwrap();
    let cluster_epoch = registry.next_epoch(0).await.unwrap();
    let store_epoch = store.next_epoch("r1").await.unwrap();
    for seq in 1..=20 {
        assert_eq!(append(&store, seq).await.unwrap(), AppendOutcome::Stored);
    }
    registry.publish_invalidation("group:before").await.unwrap();
    announced(&mut changes, "group:before").await;
    // The registry's writes do not wait for the replica: let them arrive.
    let redis = blocking(move || {
        redis.wait_replicated();
        redis
    })
    .await;

    // The primary dies while appends keep coming.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let traffic = keep_appending(store.clone(), 1_000, acked.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut redis, old, new) = blocking(move || {
        let mut redis = redis;
        let old = redis.kill_primary();
        let new = redis.wait_failover(old);
        (redis, old, new)
    })
    .await;
    assert_ne!(old, new, "the sentinels promoted the replica");

    // The same registry object answers again, with what was written before.
    eventually("the registry answers through the new primary", || async { registry.nodes().await.is_ok() }).await;
    assert_eq!(registry.nodes().await.unwrap(), vec![node("a")]);
    assert_eq!(registry.routes(&["alice".to_string()]).await.unwrap()[0].1, vec![alice]);
    assert!(registry.next_epoch(0).await.unwrap() > cluster_epoch, "epochs still grow");
    registry.register_node(&node("b"), LONG).await.unwrap();
    let ids: Vec<String> = registry.nodes().await.unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(ids, ["a", "b"]);

    // The subscription resubscribed on the new primary ("*": forget
    // everything) and hears announcements again.
    announced(&mut changes, "*").await;
    registry.publish_invalidation("group:after").await.unwrap();
    announced(&mut changes, "group:after").await;

    // Reads of the store work at once; writes wait for a replica, and the
    // new primary has none until the old one comes back as its replica.
    let before: Vec<u64> = store.read_timeline(CONV, 0, 20).await.unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(before, (1..=20).collect::<Vec<_>>(), "every acknowledged append survived the failover");
    eventually("the store refuses writes no replica acknowledged", || async {
        matches!(store.fence("refused", 1).await, Err(StoreError::Unavailable(e)) if e.contains("0 of 1 replicas"))
    })
    .await;
    let redis = blocking(move || {
        redis.server(old).restart_as_replica_of(new);
        redis
    })
    .await;
    eventually("the store writes again", || async { store.fence("accepted", 1).await.is_ok() }).await;
    let epoch = once_available("the next store epoch", || store.next_epoch("r1")).await;
    assert!(epoch > store_epoch, "store epochs still grow");
    assert_eq!(append(&store, 21).await.unwrap(), AppendOutcome::Stored);

    // Traffic resumed, and nothing it was told stored is missing.
    let so_far = acked.lock().unwrap().len();
    eventually("the appending task gets appends through again", || async { acked.lock().unwrap().len() > so_far })
        .await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let stored: Vec<u64> = store.read_timeline(CONV, 999, 10_000).await.unwrap().iter().map(|m| m.seq).collect();
    let missing: Vec<u64> = acked.iter().copied().filter(|seq| !stored.contains(seq)).collect();
    assert!(missing.is_empty(), "acknowledged appends lost in the failover: {missing:?}");
    assert!(!acked.is_empty(), "the appending task got appends through");
    drop(redis);
}
