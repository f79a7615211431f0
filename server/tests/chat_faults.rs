//! Persistent chat through faults: the workload of `common::chat_load` runs
//! on a cluster of two routers and two nodes (Redis routes, Redis store)
//! while one fault is injected and healed — router r1 SIGKILLed and
//! restarted; node b SIGKILLed (its clients move to node a) and started
//! again; r1 SIGSTOPped for longer than the registry TTL, then SIGCONTed;
//! the routes Redis stopped for a while and restarted empty; the link
//! between node a and r1 cut by a network partition (node a runs in a
//! network namespace of the test's own and reaches r1 over a veth pair
//! whose link goes down), then healed; and, on a cluster whose Redis is
//! Sentinel-managed, the primary SIGKILLed and the replica promoted.
//! The conversations are named so that r1 owns all of them. Each test:
//! warm-up, the fault while the workload runs, heal, the workload's end,
//! the checker; it prints operations, acknowledged messages, violations and
//! the recovery time (from the heal until no sender is stuck any more: the
//! end of the last gap of over a second between two SENTs of one sender)
//! and asserts zero violations. The runs take turns (each measures its own
//! recovery); `CORECAST_FAULT_SECS=<n>` makes each send for n seconds
//! instead of 15. A missing part (redis-server; for the partition, root
//! and `ip`) fails the test, naming it.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::chat_load::{verdict, Conv, Endpoints, History, Workload};
use common::cluster::{require_redis_server, wait_linked, Cluster, Node, RouterOpts, RouterProc};
use common::netns::Netns;
use corecast_cluster::ownership::owner_of;
use corecast_testkit::redis_sentinel::Sentinels;
use corecast_testkit::redis_server::RedisServer;

/// `small_group_limit` of the routers: groups of 6 fan out on write, of 12
/// on read.
const SMALL_GROUP_LIMIT: &str = "8";

/// A sender waiting this long between two SENTs was stuck (it gets about
/// 30 a second otherwise).
const STALL: Duration = Duration::from_secs(1);

/// Taken by each test for its whole run.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    corecast_proto::sync::lock(&TURN)
}

/// How long the workload sends (`CORECAST_FAULT_SECS`, at least 15 s): a
/// fifth of it warm-up, two fifths the fault (longer than a client waits
/// for an answer before it resends on a new connection), the rest after.
struct Timing {
    sending: Duration,
    warmup: Duration,
    fault: Duration,
}

fn timing() -> Timing {
    let secs = match std::env::var("CORECAST_FAULT_SECS") {
        Ok(secs) => secs.parse::<u64>().expect("CORECAST_FAULT_SECS is a number of seconds"),
        Err(_) => 15,
    };
    let sending = Duration::from_secs(secs.max(15));
    Timing { sending, warmup: sending / 5, fault: sending * 2 / 5 }
}

fn router_opts() -> RouterOpts {
    RouterOpts::default().env("CORECAST_ROUTER_SMALL_GROUP_LIMIT", SMALL_GROUP_LIMIT)
}

/// The first of `base0`, `base1`, ... that router r1 owns.
fn owned_by_r1(base: &str, make: impl Fn(&str) -> Conv) -> Conv {
    (0..)
        .map(|n| make(&format!("{base}{n}")))
        .find(|conv| owner_of(&conv.id(), &["r1", "r2"]) == Some("r1"))
        .expect("some name hashes to r1")
}

fn conversations() -> Vec<Conv> {
    vec![
        owned_by_r1("duo", Conv::direct),
        owned_by_r1("small", |name| Conv::group(name, 6)),
        owned_by_r1("large", |name| Conv::group(name, 12)),
    ]
}

fn cluster() -> Cluster {
    require_redis_server();
    Cluster::start_with(2, &[("a", &[]), ("b", &[])], &router_opts())
}

fn endpoints(cluster: &Cluster) -> Endpoints {
    Endpoints::new(cluster.nodes.iter().map(|node| node.server.addr).collect())
}

/// What a fault is injected into: a cluster with a router to create the
/// groups through.
trait Faulted {
    fn admin(&self) -> &RouterProc;
}

impl Faulted for Cluster {
    fn admin(&self) -> &RouterProc {
        self.router()
    }
}

/// Runs the workload on `cluster`; after the warm-up, `fault` breaks
/// something, waits the time it is given and heals or restarts what it
/// broke. Then the checker runs over the whole history, and `felt` must
/// hold of it: the fault reached the workload. Asserts zero violations.
fn run<C: Faulted>(
    label: &str,
    cluster: &mut C,
    endpoints: &Endpoints,
    fault: impl FnOnce(&mut C, &Endpoints, Duration),
    felt: impl FnOnce(&C, &History) -> bool,
) {
    let timing = timing();
    let convs = conversations();
    for body in convs.iter().filter_map(Conv::group_body) {
        cluster.admin().admin_post_json("/v1/admin/groups", &body);
    }
    let workload = Workload { senders: 3, in_flight: 4, rate: 30, readers: 2, sending: timing.sending };
    let running = workload.start(&convs, endpoints);
    std::thread::sleep(timing.warmup);
    fault(cluster, endpoints, timing.fault);
    let healed = Instant::now();
    let history = running.finish();
    let stalls = history.stalls(STALL);
    let recovery = stalls.iter().filter(|(_, to)| *to > healed).map(|(_, to)| *to - healed).max().unwrap_or_default();
    let longest = match stalls.iter().map(|(from, to)| *to - *from).max() {
        Some(longest) => format!("a sender waited up to {:.1}s for a SENT", longest.as_secs_f64()),
        None => format!("no sender waited over {STALL:?} for a SENT"),
    };
    let recovery = format!("recovery: SENTs flowed again {:.1}s after the heal; {longest}", recovery.as_secs_f64());
    let (violations, report) = verdict(&format!("{label}; {recovery}"), &history, endpoints);
    assert!(history.acked() > 0, "nothing was acknowledged: {report}");
    assert!(felt(cluster, &history), "the fault did not reach the workload: {report}");
    assert!(violations.is_empty(), "{report}");
}

#[test]
fn a_router_killed_and_restarted() {
    let _turn = one_at_a_time();
    let mut cluster = cluster();
    let endpoints = endpoints(&cluster);
    run(
        "router r1 SIGKILLed, restarted",
        &mut cluster,
        &endpoints,
        |cluster, _, down| {
            cluster.routers[0].kill();
            std::thread::sleep(down);
            cluster.routers[0].restart();
        },
        // SENDs to the dead owner were answered unavailable or not at all.
        |_, history| history.resends() > 0,
    );
}

#[test]
fn a_node_killed_and_started_again() {
    let _turn = one_at_a_time();
    let mut cluster = cluster();
    let endpoints = endpoints(&cluster);
    run(
        "node b SIGKILLed, started again",
        &mut cluster,
        &endpoints,
        |cluster, endpoints, down| {
            cluster.nodes[1].server.kill();
            std::thread::sleep(down);
            let node = Node::start("b", &cluster.routes_redis.url(), &[]);
            endpoints.replace(1, node.server.addr);
            cluster.nodes[1] = node;
        },
        // The clients of node b lost their connections.
        |_, history| history.sender_reconnects() > 0,
    );
}

#[test]
fn a_router_stopped_for_longer_than_the_registry_ttl() {
    let _turn = one_at_a_time();
    let mut cluster = cluster();
    let endpoints = endpoints(&cluster);
    run(
        "router r1 SIGSTOPped past its registry TTL, SIGCONTed",
        &mut cluster,
        &endpoints,
        |cluster, _, stopped| {
            let ttl = Duration::from_millis(common::cluster::REGISTRY_TTL_MS.parse().unwrap());
            assert!(stopped > 2 * ttl, "the stop ({stopped:?}) must outlast the registry TTL ({ttl:?})");
            cluster.routers[0].pause();
            std::thread::sleep(stopped);
            cluster.routers[0].resume();
        },
        // SENDs to the frozen owner went unanswered.
        |_, history| history.resends() > 0,
    );
}

#[test]
fn the_routes_redis_restarted_empty() {
    let _turn = one_at_a_time();
    let mut cluster = cluster();
    let endpoints = endpoints(&cluster);
    run(
        "routes Redis down, restarted empty",
        &mut cluster,
        &endpoints,
        |cluster, _, down| {
            cluster.routes_redis.restart_after(down);
        },
        // Every node found its registration gone and wrote it again.
        |cluster, _| {
            cluster.nodes.iter().all(|node| node.server.metric_sum("corecast_node_reregistrations_total") >= 1.0)
        },
    );
}

/// Node a runs in `netns`: it reaches router r1's link over pair 0 (which
/// the partition takes down) and everything else — Redis, r2's link, the
/// routers' health pulls, its clients — over pair 1. Node b and both
/// routers run in the test's own namespace.
fn partitioned_cluster(netns: &Netns) -> Cluster {
    let routes_redis = RedisServer::start_also_on(netns.outside(1));
    let store_redis = RedisServer::start_persistent();
    let (redis, store) = (routes_redis.url(), store_redis.url());
    let linked_at = |pair: usize| RouterOpts { link_ip: Some(netns.outside(pair)), ..router_opts() };
    let routers = vec![
        RouterProc::start_with("r1", &redis, &store, &linked_at(0)),
        RouterProc::start_with("r2", &redis, &store, &linked_at(1)),
    ];
    let nodes = vec![
        Node::start_on(&netns.host(1), "a", &routes_redis.url_on(netns.outside(1)), &[]),
        Node::start("b", &redis, &[]),
    ];
    let cluster = Cluster { nodes, routers, routes_redis, store_redis };
    cluster.wait_linked();
    cluster
}

#[test]
fn a_network_partition_between_a_node_and_a_router() {
    let _turn = one_at_a_time();
    require_redis_server();
    // Created first, so dropped last: after the processes running in it.
    let netns = Netns::create(2);
    let mut cluster = partitioned_cluster(&netns);
    let endpoints = endpoints(&cluster);
    run(
        "node a cut off from router r1, healed",
        &mut cluster,
        &endpoints,
        |_, _, cut| {
            netns.set_link(0, false);
            std::thread::sleep(cut);
            netns.set_link(0, true);
        },
        // SENDs from node a's clients went unanswered.
        |_, history| history.resends() > 0,
    );
}

/// Two routers and two nodes whose routes, registry and message store are
/// all behind one `redis+sentinel://` URL: a primary, a replica and three
/// sentinels. The routers' store waits for the replica after each write,
/// so a failover loses nothing acknowledged.
struct SentinelCluster {
    nodes: Vec<Node>,
    routers: Vec<RouterProc>,
    redis: Option<Sentinels>,
}

impl Faulted for SentinelCluster {
    fn admin(&self) -> &RouterProc {
        &self.routers[0]
    }
}

impl SentinelCluster {
    fn start() -> SentinelCluster {
        let redis = Sentinels::start();
        let url = redis.url();
        let opts = router_opts().env("CORECAST_ROUTER_STORE_REDIS_MIN_REPLICAS", "1");
        let routers: Vec<RouterProc> =
            ["r1", "r2"].iter().map(|id| RouterProc::start_with(id, &url, &url, &opts)).collect();
        let nodes = vec![Node::start("a", &url, &[]), Node::start("b", &url, &[])];
        wait_linked(&routers, &nodes);
        SentinelCluster { nodes, routers, redis: Some(redis) }
    }
}

#[test]
fn the_redis_primary_fails_over() {
    let _turn = one_at_a_time();
    require_redis_server();
    let mut cluster = SentinelCluster::start();
    let endpoints = Endpoints::new(cluster.nodes.iter().map(|node| node.server.addr).collect());
    run(
        "Redis primary SIGKILLed, a sentinel promotes the replica, the old primary returns as its replica",
        &mut cluster,
        &endpoints,
        |cluster, _, _| {
            let redis = cluster.redis.as_mut().expect("the sentinels");
            let old = redis.kill_primary();
            let new = redis.wait_failover(old);
            redis.server(old).restart_as_replica_of(new);
        },
        // Writes to the dead primary failed: their SENDs were resent.
        |_, history| history.resends() > 0,
    );
}
