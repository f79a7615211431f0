//! Persistent chat under concurrent SENDs, without faults: several sender
//! connections per conversation keep SENDs in flight while readers SYNC
//! from their cursors and a phone reconnects before each SYNC
//! (`common::chat_load`). On a single node (a direct conversation, a group
//! at the small-group limit's side of write fan-out, one above it) and on a
//! cluster of two routers and two nodes with the Redis store (all three at
//! once), every acknowledged message must be stored once at its seq, seqs
//! must be unique and in SENT order per connection, no reader's cursor may
//! pass a message it did not get, and every member's full SYNC must have
//! every message. Each case takes well under 20 s.

mod common;

use std::time::Duration;

use common::chat_load::{verdict, Conv, Endpoints, Workload};
use common::cluster::{require_redis_server, Cluster, RouterOpts};
use common::Server;

/// `small_group_limit` of these runs: groups of 6 fan out on write, of 12
/// on read.
const SMALL_GROUP_LIMIT: &str = "8";

fn workload() -> Workload {
    Workload { senders: 6, in_flight: 16, rate: 300, readers: 2, sending: Duration::from_secs(6) }
}

fn single_node(label: &str, conv: Conv) {
    let server = Server::start(&["--small-group-limit", SMALL_GROUP_LIMIT]);
    if let Some(body) = conv.group_body() {
        server.admin_post_json("/v1/admin/groups", &body);
    }
    let endpoints = Endpoints::new(vec![server.addr]);
    let history = workload().start(&[conv], &endpoints).finish();
    let (violations, report) = verdict(label, &history, &endpoints);
    assert!(history.acked() > 0, "nothing was acknowledged: {report}");
    assert!(violations.is_empty(), "{report}");
}

#[test]
fn single_node_direct_conversation() {
    single_node("single node, direct", Conv::direct("duo"));
}

#[test]
fn single_node_group_at_most_the_small_group_limit() {
    single_node("single node, group of 6 (write fan-out)", Conv::group("small", 6));
}

#[test]
fn single_node_group_above_the_small_group_limit() {
    single_node("single node, group of 12 (read fan-out)", Conv::group("large", 12));
}

/// The control: one sender per conversation, one SEND at a time, so
/// nothing races. The same readers, phone and checker find nothing, on
/// today's server too: a violation here is the checker's fault.
#[test]
fn one_send_at_a_time_per_conversation_is_clean() {
    let server = Server::start(&["--small-group-limit", SMALL_GROUP_LIMIT]);
    let convs = [Conv::direct("duo"), Conv::group("small", 6), Conv::group("large", 12)];
    for body in convs.iter().filter_map(Conv::group_body) {
        server.admin_post_json("/v1/admin/groups", &body);
    }
    let endpoints = Endpoints::new(vec![server.addr]);
    let serial = Workload { senders: 1, in_flight: 1, ..workload() };
    let history = serial.start(&convs, &endpoints).finish();
    let (violations, report) = verdict("single node, one SEND at a time", &history, &endpoints);
    assert!(history.acked() > 0, "nothing was acknowledged: {report}");
    assert!(violations.is_empty(), "{report}");
}

#[test]
fn cluster_of_two_routers_and_two_nodes() {
    require_redis_server();
    let opts = RouterOpts::default().env("CORECAST_ROUTER_SMALL_GROUP_LIMIT", SMALL_GROUP_LIMIT);
    let cluster = Cluster::start_with(2, &[("a", &[]), ("b", &[])], &opts);
    let convs = [Conv::direct("duo"), Conv::group("small", 6), Conv::group("large", 12)];
    for body in convs.iter().filter_map(Conv::group_body) {
        cluster.router().admin_post_json("/v1/admin/groups", &body);
    }
    let endpoints = Endpoints::new(cluster.nodes.iter().map(|node| node.server.addr).collect());
    let history = workload().start(&convs, &endpoints).finish();
    let (violations, report) = verdict("cluster, 2 routers, 2 nodes", &history, &endpoints);
    assert!(history.acked() > 0, "nothing was acknowledged: {report}");
    assert!(violations.is_empty(), "{report}");
}
