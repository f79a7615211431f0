//! A cluster whose Redis is Sentinel-managed, across a failover: a router
//! and two nodes reach the route table, the registry and the message store
//! through one `redis+sentinel://` URL (a primary, a replica and three
//! `redis-sentinel` processes the test starts); the router's store waits
//! for one replica after each write. The primary is SIGKILLed while alice
//! keeps sending to bob; the sentinels promote the replica and the old
//! primary comes back as its replica. Dispatch answers throughout, every
//! message alice was told was stored reaches bob and is in the promoted
//! Redis, and seqs keep growing.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{eventually, Node, RouterProc};
use common::{token, Client};
use corecast_proto::PushKind;
use corecast_testkit::redis_sentinel::{query, Sentinels};

const DIRECT: u8 = 2;

fn user_on(node: &Node, user: &str) -> Client {
    let mut client = node.server.connect();
    client.auth(&token(user, 3600, None));
    client
}

/// Asks for dispatch every 100 ms until `stop` (at most 1,200 times),
/// counting answers and failures.
fn probe_dispatch(router: &RouterProc, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, usize)> {
    let url = format!("http://{}/v1/dispatch", router.http);
    std::thread::spawn(move || {
        let (mut answered, mut failures) = (0, 0);
        for _ in 0..1_200 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match ureq::get(&url).call() {
                Ok(response) if response.status() == 200 => answered += 1,
                _ => failures += 1,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (answered, failures)
    })
}

#[test]
fn chat_and_dispatch_follow_a_redis_failover() {
    let redis = Sentinels::start();
    let url = redis.url();
    let one_replica = [("CORECAST_ROUTER_STORE_REDIS_MIN_REPLICAS", Path::new("1"))];
    let router = RouterProc::start_with_env("r1", &url, &url, &one_replica);
    let (a, b) = (Node::start("a", &url, &[]), Node::start("b", &url, &[]));
    router.wait_until(|r| r.health().is_some_and(|h| h["linked_nodes"] == 2), "both nodes linked");
    router.wait_until(|r| r.metric_sum("corecast_router_routers") == 1.0, "the router serves");
    let (mut alice, mut bob) = (user_on(&a, "alice"), user_on(&b, "bob"));
    eventually("bob is online", || router.admin_get("/v1/admin/users/bob/presence")["online"] == true);

    let mut sent = Vec::new();
    for id in 1..=3 {
        sent.push(common::send_acked(&mut alice, DIRECT, "bob", id, format!("before {id}").as_bytes()));
    }
    pushed_to(&mut bob, &sent);
    // Routes and registrations do not wait for the replica: let them arrive.
    redis.wait_replicated();

    // The primary dies, the sentinels promote the replica, and the old
    // primary comes back as its replica, while alice keeps sending.
    let stop = Arc::new(AtomicBool::new(false));
    let dispatch = probe_dispatch(&router, stop.clone());
    let failover = std::thread::spawn(move || {
        let mut redis = redis;
        let old = redis.kill_primary();
        let new = redis.wait_failover(old);
        redis.server(old).restart_as_replica_of(new);
        (redis, new)
    });
    for id in 4..=8 {
        sent.push(common::send_acked(&mut alice, DIRECT, "bob", id, format!("during {id}").as_bytes()));
    }
    let (redis, new) = failover.join().expect("the failover");
    let mut after = Vec::new();
    for id in 9..=10 {
        after.push(common::send_acked(&mut alice, DIRECT, "bob", id, format!("after {id}").as_bytes()));
    }
    // Pushes are best effort while Redis fails over (a route lookup may
    // fail; clients catch up with SYNC); once it is back they flow again.
    pushed_to(&mut bob, &after);
    sent.extend(after);
    stop.store(true, Ordering::Relaxed);
    let (answered, failures) = dispatch.join().unwrap();
    assert!(answered > 0 && failures == 0, "dispatch answered {answered} times and failed {failures} times");
    eventually("dispatch lists both nodes", || router.dispatch_order().len() == 2);

    // Seqs only grew, and every acknowledged message is in the promoted
    // Redis.
    let seqs: Vec<u64> = sent.iter().map(|(_, seq)| *seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs grow across the failover: {seqs:?}");
    let conv = &sent[0].0;
    let stored = query(new, &["ZRANGE", &format!("ccs:tl:{conv}"), "0", "-1"]).expect("read the promoted primary");
    let stored: Vec<u64> = stored.iter().map(|hex| u64::from_str_radix(hex, 16).unwrap()).collect();
    let missing: Vec<u64> = seqs.iter().copied().filter(|seq| !stored.contains(seq)).collect();
    assert!(missing.is_empty(), "acknowledged messages missing from the promoted Redis: {missing:?}");
    drop((alice, bob, a, b, router, redis));
}

/// Reads bob's pushes until each of `sent` (conv, seq) has come.
fn pushed_to(bob: &mut Client, sent: &[(String, u64)]) {
    let mut waiting: Vec<&(String, u64)> = sent.iter().collect();
    while !waiting.is_empty() {
        let push = bob.next_push();
        if push.kind == PushKind::Direct {
            waiting.retain(|(conv, seq)| (conv, *seq) != (&push.conv, push.seq));
        }
    }
}
