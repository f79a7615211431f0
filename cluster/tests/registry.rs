//! The Redis registry against a real `redis-server` started on a free port:
//! registrations expire without renewal, a node learns that Redis lost its
//! registration, epochs only grow, routes are written, read, refreshed and
//! pruned, revocations keep the latest second per user and drop expired
//! ones, group changes reach subscribers, and calls work again after
//! Redis restarts.

use std::time::{Duration, Instant};

use corecast_cluster::registry::redis::{subscribe_invalidations, Registry};
use corecast_cluster::registry::{NodeInfo, Route, RouterInfo, REVOCATION_RETENTION_SECS};
use corecast_testkit::redis_server;
use redis_server::RedisServer;

const TTL: Duration = Duration::from_millis(300);

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        client_addr: "127.0.0.1:1".into(),
        ws_url: Some("ws://127.0.0.1:3/ws".into()),
        control_addr: "127.0.0.1:2".into(),
        control_tls: false,
        weight: 1,
        ceiling: 10,
    }
}

fn route(node: &str, conn_id: u64, device: &str) -> Route {
    Route { node: node.into(), conn_id, device: device.into() }
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_expire_and_a_restart_is_noticed() {
    redis_server::require();
    let mut redis = RedisServer::start();
    let registry = Registry::connect(&redis.url(), "t:").await.unwrap();
    let router = RouterInfo { id: "r1".into(), link_addr: "l".into(), http_addr: "h".into(), epoch: 7 };
    registry.register_router(&router, TTL).await.unwrap();
    assert!(!registry.register_node(&node("b"), TTL).await.unwrap(), "new node");
    assert!(registry.register_node(&node("b"), TTL).await.unwrap(), "renewed node");
    registry.register_node(&node("a"), Duration::from_secs(30)).await.unwrap();
    assert_eq!(registry.routers().await.unwrap(), vec![router]);
    assert_eq!(registry.nodes().await.unwrap().iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);

    // Without renewal r1 and b expire; a stays.
    tokio::time::sleep(TTL * 2).await;
    assert!(registry.routers().await.unwrap().is_empty());
    assert_eq!(registry.nodes().await.unwrap(), vec![node("a")]);
    registry.unregister_node("a").await.unwrap();
    assert!(registry.nodes().await.unwrap().is_empty());

    // Redis restarts empty: a node renewing learns its registration is gone.
    registry.register_node(&node("c"), Duration::from_secs(30)).await.unwrap();
    redis.restart();
    eventually("the registry answers again", || async { registry.nodes().await.is_ok() }).await;
    assert!(!registry.register_node(&node("c"), Duration::from_secs(30)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_only_grow_and_honour_a_floor() {
    redis_server::require();
    let redis = RedisServer::start();
    let registry = Registry::connect(&redis.url(), "t:").await.unwrap();
    let first = registry.next_epoch(0).await.unwrap();
    let second = registry.next_epoch(0).await.unwrap();
    assert!(second > first);
    assert_eq!(registry.next_epoch(1000).await.unwrap(), 1000);
    assert_eq!(registry.next_epoch(5).await.unwrap(), 1001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_written_read_refreshed_and_pruned() {
    redis_server::require();
    let redis = RedisServer::start();
    let registry = Registry::connect(&redis.url(), "t:").await.unwrap();
    let long = Duration::from_secs(30);
    registry.add_route("alice", &route("node-a", 1, "phone"), long).await.unwrap();
    registry.add_route("alice", &route("node/b", 2 << 48, "laptop"), long).await.unwrap();
    registry.add_route("bob", &route("node-a", 3, ""), long).await.unwrap();
    let users = vec!["alice".to_string(), "bob".to_string(), "carol".to_string()];
    let mut found = registry.routes(&users).await.unwrap();
    found[0].1.sort_by_key(|r| r.conn_id);
    assert_eq!(found[0], ("alice".into(), vec![route("node-a", 1, "phone"), route("node/b", 2 << 48, "laptop")]));
    assert_eq!(found[1], ("bob".into(), vec![route("node-a", 3, "")]));
    assert_eq!(found[2], ("carol".into(), vec![]));

    registry.remove_route("alice", "node-a", 1).await.unwrap();
    registry.prune_routes("bob", &[route("node-a", 3, "")]).await.unwrap();
    let found = registry.routes(&users[..2]).await.unwrap();
    assert_eq!(found[0].1, vec![route("node/b", 2 << 48, "laptop")]);
    assert!(found[1].1.is_empty());

    // Routes expire unless refreshed.
    let dave = [("dave", 9, "")];
    registry.refresh_node_routes("n", &dave, TTL).await.unwrap();
    tokio::time::sleep(TTL / 2).await;
    registry.refresh_node_routes("n", &dave, TTL).await.unwrap();
    tokio::time::sleep(TTL / 2).await;
    assert_eq!(registry.routes(&["dave".to_string()]).await.unwrap()[0].1.len(), 1, "refreshed route lives");
    tokio::time::sleep(TTL * 2).await;
    assert!(registry.routes(&["dave".to_string()]).await.unwrap()[0].1.is_empty(), "route expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_changes_reach_every_subscriber() {
    redis_server::require();
    let redis = RedisServer::start();
    let registry = Registry::connect(&redis.url(), "t:").await.unwrap();
    let mut first = subscribe_invalidations(&redis.url(), "t:").await.unwrap();
    let mut second = subscribe_invalidations(&redis.url(), "t:").await.unwrap();
    registry.publish_invalidation("group:g1").await.unwrap();
    for subscriber in [&mut first, &mut second] {
        let got = tokio::time::timeout(Duration::from_secs(10), subscriber.recv()).await.unwrap();
        assert_eq!(got.as_deref(), Some("group:g1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_keep_the_latest_second_and_drop_expired_ones() {
    redis_server::require();
    let redis = RedisServer::start();
    let registry = Registry::connect(&redis.url(), "t:").await.unwrap();
    let now = 1_800_000_000;
    let entries = [("alice".to_string(), now - 50), ("bob".to_string(), now - 40)];
    registry.record_revocations(&entries, now).await.unwrap();
    // An older revocation of alice does not undo the newer one.
    registry.record_revocations(&[("alice".to_string(), now - 90), ("carol".to_string(), now)], now).await.unwrap();
    let all = registry.revocations_since(0).await.unwrap();
    assert_eq!(all, vec![("alice".into(), now - 50), ("bob".into(), now - 40), ("carol".into(), now)]);
    assert_eq!(registry.revocations_since(now - 45).await.unwrap(), all[1..].to_vec());

    // Only alice is older than the retention at `later`.
    let later = now - 45 + REVOCATION_RETENTION_SECS;
    registry.record_revocations(&[("dave".to_string(), later)], later).await.unwrap();
    let kept: Vec<String> = registry.revocations_since(0).await.unwrap().into_iter().map(|(user, _)| user).collect();
    assert_eq!(kept, vec!["bob", "carol", "dave"]);
    // A node prunes by its own clock before counting: ten seconds on, bob goes too.
    assert_eq!(registry.prune_and_count_revocations(later + 10).await.unwrap(), 2);
}
