//! The cluster on loopback: a real `redis-server` for routes (started by
//! the harness on a free port), a second persistent one as the routers'
//! shared message store, two `corecast-router` processes and three
//! `corecast-server` nodes A, B and C. Cross-node chat with correct seqs,
//! room routing only to nodes with members (shown with the nodes' link
//! metrics), admin broadcast, cluster-wide presence, dispatch by load,
//! ceiling and drain, links over TLS, node control planes over HTTPS, revocations that reach every node (also one started
//! later, also after Redis lost them), and three faults: a router killed
//! while clients send, Redis restarted, a node killed.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::cluster::{eventually, Cluster, Node, RouterProc};
use common::https::key;
use common::{token, Client, Reply, WAIT};
use corecast_cluster::registry::redis::Registry;
use corecast_cluster::registry::KEY_PREFIX;
use corecast_proto::{ClientRequest, ErrorCode, PushKind, PUBLISH_NO_REPLY};
use corecast_testkit::redis_server::RedisServer;

const DIRECT: u8 = 2;
const GROUP: u8 = 3;

fn user_on(node: &common::cluster::Node, user: &str) -> Client {
    let mut client = node.server.connect();
    client.auth(&token(user, 3600, None));
    client
}

fn next_chat_push(client: &mut Client) -> common::Push {
    loop {
        let push = client.next_push();
        if push.kind != PushKind::Room && push.kind != PushKind::Broadcast {
            return push;
        }
    }
}

#[test]
fn cross_node_chat_rooms_broadcast_and_presence() {
    corecast_testkit::redis_server::require();
    let cluster = Cluster::start(2, &[("a", &[]), ("b", &[]), ("c", &[])]);
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let router = cluster.router();
    let mut alice = user_on(a, "alice");
    let mut bob = user_on(b, "bob");
    let mut carol = user_on(c, "carol");

    // Presence: every user online, each on its node; three connections.
    eventually("presence of bob shows node b", || {
        router.admin_get("/v1/admin/users/bob/presence")["devices"][0]["node"] == b.id.as_str()
    });
    assert_eq!(router.admin_get("/v1/admin/online")["connections"], 3);

    // Direct messages across nodes, seqs increasing and matching.
    let (conv, seq1) = common::send_acked(&mut alice, DIRECT, "bob", 1, b"hello bob");
    let push = next_chat_push(&mut bob);
    assert_eq!((push.conv.as_str(), push.seq, push.from.as_str()), (conv.as_str(), seq1, "alice"));
    assert_eq!(push.payload, b"hello bob");
    let (_, seq2) = common::send_acked(&mut bob, DIRECT, "alice", 2, b"hi alice");
    assert!(seq2 > seq1);
    assert_eq!(next_chat_push(&mut alice).seq, seq2);

    // A group spread over the three nodes.
    router.admin_post_json("/v1/admin/groups", r#"{"group":"trio","members":["alice","bob","carol"]}"#);
    let (gconv, gseq) = common::send_acked(&mut carol, GROUP, "trio", 3, b"group hello");
    for client in [&mut alice, &mut bob] {
        let push = next_chat_push(client);
        assert_eq!((push.conv.as_str(), push.seq), (gconv.as_str(), gseq));
    }
    let history = router.admin_get(&format!("/v1/admin/conversations/{gconv}/messages"));
    assert_eq!(history["messages"][0]["seq"], gseq);

    // A room with members on A and B only.
    alice.join("stage");
    bob.join("stage");
    let mut members = router.admin_get("/v1/admin/rooms/stage");
    assert_eq!(members["members"], 2, "{members}");
    let pushes_on_c = c.server.metric_sum("corecast_uplink_frames_in_total");
    alice.send(PUBLISH_NO_REPLY, &ClientRequest::Publish { room: "stage", payload: b"on stage" });
    let push = bob.next_push();
    assert_eq!((push.kind, push.conv.as_str(), push.payload.as_slice()), (PushKind::Room, "stage", &b"on stage"[..]));
    // An operator publish goes the same way.
    router.admin_post("/v1/admin/rooms/stage/publish", b"from ops");
    assert_eq!(bob.next_push().payload, b"from ops");
    assert_eq!(alice.next_push().payload, b"on stage");
    assert_eq!(alice.next_push().payload, b"from ops");
    let room_frames = |node: &common::cluster::Node| {
        node.server
            .metrics()
            .lines()
            .filter(|l| l.starts_with("corecast_uplink_frames_in_total{") && l.contains("kind=\"room_push\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(room_frames(b) >= 2.0, "node b got the room pushes");
    assert_eq!(room_frames(c), 0.0, "node c has no members of the room and got no room push");

    // Broadcast reaches every node's connections.
    router.admin_post("/v1/admin/broadcast", b"to everyone");
    for client in [&mut alice, &mut bob, &mut carol] {
        let push = loop {
            let push = client.next_push();
            if push.kind == PushKind::Broadcast {
                break push;
            }
        };
        assert_eq!(push.payload, b"to everyone");
    }
    assert!(c.server.metric_sum("corecast_uplink_frames_in_total") > pushes_on_c);

    // Leaving updates the count across nodes.
    bob.expect_ok(&ClientRequest::Leave { room: "stage" });
    eventually("the room count drops to 1", || {
        members = router.admin_get("/v1/admin/rooms/stage");
        members["members"] == 1
    });
}

fn client_addr(router: &common::cluster::RouterProc, node: &str) -> SocketAddr {
    let answer = router.dispatch();
    let entry = answer["nodes"].as_array().unwrap().iter().find(|n| n["node"] == node).expect("node in dispatch");
    entry["addr"].as_str().unwrap().parse().unwrap()
}

#[test]
fn dispatch_prefers_the_less_loaded_and_drops_killed_and_full_nodes() {
    corecast_testkit::redis_server::require();
    let mut cluster = Cluster::start(2, &[("a", &[]), ("b", &["--max-connections", "3"]), ("c", &[])]);
    let ids: Vec<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();
    let router = &cluster.routers[0];
    eventually("dispatch lists all three nodes", || router.dispatch_order().len() == 3);
    let answer = router.dispatch();
    assert!(answer["reconnect"]["base_ms"].as_u64().unwrap() > 0, "{answer}");
    // Browsers are told each node's WebSocket URL.
    for node in &cluster.nodes {
        let entry = answer["nodes"].as_array().unwrap().iter().find(|n| n["node"] == node.id.as_str()).unwrap();
        assert_eq!(entry["ws_url"], format!("ws://{}/ws", node.server.ws), "{answer}");
    }

    // Two clients on a, one on b: c is the least loaded, then b.
    let _on_a: Vec<Client> = (0..2).map(|i| user_on(&cluster.nodes[0], &format!("a{i}"))).collect();
    let _on_b = user_on(&cluster.nodes[1], "b0");
    eventually("dispatch orders c, b, a", || {
        router.dispatch_order() == vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]
    });

    // b reaches its ceiling of 3: never handed out, however light.
    let _more_b: Vec<Client> = (1..3).map(|i| user_on(&cluster.nodes[1], &format!("b{i}"))).collect();
    eventually("full node b leaves dispatch", || router.dispatch_order() == vec![ids[2].clone(), ids[0].clone()]);

    // a drains: it leaves dispatch at once, before its clients are gone.
    cluster.nodes[0].server.admin_post("/v1/admin/drain", b"");
    eventually("draining node a leaves dispatch", || router.dispatch_order() == vec![ids[2].clone()]);

    // c killed: gone within a few health pulls.
    let addr_c = client_addr(router, &ids[2]);
    cluster.nodes[2].server.kill();
    eventually("killed node c leaves dispatch", || router.dispatch_order().is_empty());
    assert!(std::net::TcpStream::connect(addr_c).is_err());
}

#[test]
fn a_router_killed_while_clients_send_loses_nothing_acknowledged() {
    corecast_testkit::redis_server::require();
    let mut cluster = Cluster::start(2, &[("a", &[]), ("b", &[]), ("c", &[])]);
    // Six senders over the three nodes, each writing to a peer on another node.
    let pairs = [("s0", "t0"), ("s1", "t1"), ("s2", "t2"), ("s3", "t3"), ("s4", "t4"), ("s5", "t5")];
    let mut senders: Vec<Client> =
        pairs.iter().enumerate().map(|(i, (s, _))| user_on(&cluster.nodes[i % 3], s)).collect();
    let _receivers: Vec<Client> =
        pairs.iter().enumerate().map(|(i, (_, t))| user_on(&cluster.nodes[(i + 1) % 3], t)).collect();

    const PER_SENDER: u64 = 60;
    let mut acked: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for n in 1..=PER_SENDER {
        if n == PER_SENDER / 3 {
            cluster.routers[0].kill();
        }
        for (i, sender) in senders.iter_mut().enumerate() {
            let (conv, seq) = common::send_acked(sender, DIRECT, pairs[i].1, n, format!("m{n}").as_bytes());
            acked.entry(conv).or_default().push((n, seq));
        }
    }
    let survivor = &cluster.routers[1];
    for (conv, sent) in &acked {
        // The sender saw seqs strictly increasing in send order.
        assert!(sent.windows(2).all(|w| w[0].1 < w[1].1), "{conv}: {sent:?}");
        let history = survivor.admin_get(&format!("/v1/admin/conversations/{conv}/messages?limit=1000"));
        let stored: Vec<(u64, u64)> = history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["client_msg_id"].as_u64().unwrap(), m["seq"].as_u64().unwrap()))
            .collect();
        // Every acknowledged message is stored once, under the seq it was
        // acknowledged with, and nothing else is.
        assert_eq!(&stored, sent, "{conv}");
    }
}

#[test]
fn after_a_redis_restart_nodes_register_again_and_routing_recovers() {
    corecast_testkit::redis_server::require();
    let mut cluster = Cluster::start(2, &[("a", &[]), ("b", &[]), ("c", &[])]);
    let mut alice = user_on(&cluster.nodes[0], "alice");
    let mut bob = user_on(&cluster.nodes[1], "bob");
    let (_, before) = common::send_acked(&mut alice, DIRECT, "bob", 1, b"before");
    assert_eq!(next_chat_push(&mut bob).seq, before);

    cluster.routes_redis.restart();
    for node in &cluster.nodes {
        eventually("the node registers again", || node.server.metric_sum("corecast_node_reregistrations_total") >= 1.0);
    }
    let router = cluster.router();
    eventually("bob's route is back", || router.admin_get("/v1/admin/users/bob/presence")["online"] == true);
    eventually("dispatch lists all nodes again", || router.dispatch_order().len() == 3);
    let (_, after) = common::send_acked(&mut alice, DIRECT, "bob", 2, b"after");
    assert!(after > before);
    assert_eq!(next_chat_push(&mut bob).seq, after);
    // A login after the restart is routed too.
    let mut dave = user_on(&cluster.nodes[2], "dave");
    eventually("dave is online", || router.admin_get("/v1/admin/users/dave/presence")["online"] == true);
    let (_, seq) = common::send_acked(&mut alice, DIRECT, "dave", 3, b"welcome");
    assert_eq!(next_chat_push(&mut dave).seq, seq);
}

#[test]
fn routes_outlive_their_ttl_while_connected_the_node_rewriting_them_from_its_shards() {
    corecast_testkit::redis_server::require();
    // Routes live 900 ms; the node rewrites them every 300 ms, reading them
    // from its two shards' connection records (it keeps no copy).
    let cluster = Cluster::start(1, &[("a", &["--route-ttl-ms", "900"])]);
    let users: Vec<String> = (0..40).map(|i| format!("viewer-{i}")).collect();
    let clients: Vec<Client> = users.iter().map(|user| user_on(&cluster.nodes[0], user)).collect();
    // What Redis holds, read as the routers read it.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let registry = runtime.block_on(Registry::connect(&cluster.routes_redis.url(), KEY_PREFIX)).unwrap();
    let routed = || -> Vec<(String, Vec<u64>)> {
        let routes = runtime.block_on(registry.routes(&users)).unwrap();
        routes.into_iter().map(|(user, routes)| (user, routes.iter().map(|r| r.conn_id).collect())).collect()
    };
    eventually("every viewer is routed", || routed().iter().all(|(_, conns)| conns.len() == 1));
    let node = &cluster.nodes[0].server;
    let before = node.metric_sum("corecast_route_refreshes_total");
    // Four more refreshes take at least 1.2 s: longer than a route lives
    // unless it is rewritten.
    eventually("four more route refreshes", || node.metric_sum("corecast_route_refreshes_total") >= before + 4.0);
    let lapsed: Vec<String> =
        routed().into_iter().filter(|(_, conns)| conns.len() != 1).map(|(user, _)| user).collect();
    assert!(lapsed.is_empty(), "routes lapsed while connected: {lapsed:?}");
    drop(clients);
}

#[test]
fn a_killed_node_s_routes_expire_and_its_clients_reconnect_via_dispatch() {
    corecast_testkit::redis_server::require();
    let mut cluster = Cluster::start(2, &[("a", &[]), ("b", &[]), ("c", &[])]);
    let mut alice = user_on(&cluster.nodes[0], "alice");
    let mut carol = user_on(&cluster.nodes[2], "carol");
    let router = cluster.router();
    eventually("carol is online", || router.admin_get("/v1/admin/users/carol/presence")["online"] == true);
    let dead = cluster.nodes[2].id.clone();

    cluster.nodes[2].server.kill();
    // Carol's connection is gone.
    carol.recv_until_eof();
    let router = cluster.router();
    eventually("carol's route expired", || router.admin_get("/v1/admin/users/carol/presence")["online"] == false);

    // Carol asks dispatch where to go, as a client would, and comes back.
    let answer = router.dispatch();
    let nodes = answer["nodes"].as_array().unwrap();
    assert!(!nodes.is_empty() && nodes.iter().all(|n| n["node"] != dead.as_str()), "{answer}");
    let addr: SocketAddr = nodes[0]["addr"].as_str().unwrap().parse().unwrap();
    let mut carol = Client::connect(addr);
    carol.auth(&token("carol", 3600, None));
    eventually("carol is online again", || router.admin_get("/v1/admin/users/carol/presence")["online"] == true);
    let (_, seq) = common::send_acked(&mut alice, DIRECT, "carol", 1, b"welcome back");
    assert_eq!(next_chat_push(&mut carol).seq, seq);
}

#[test]
fn a_link_without_the_cluster_key_is_refused() {
    corecast_testkit::redis_server::require();
    use std::io::{Read, Write};
    let cluster = Cluster::start(1, &[("a", &[])]);
    let router = &cluster.routers[0];
    let hello = corecast_proto::internal::InternalFrame::NodeHello {
        node: "intruder".into(),
        key: "not-the-cluster-key".into(),
        rooms: vec!["stage".into()],
    };
    let bytes = corecast_proto::internal::InternalFrameBytes::encode(&hello);
    let mut link = std::net::TcpStream::connect(router.link).unwrap();
    link.set_read_timeout(Some(WAIT)).unwrap();
    link.write_all(&(bytes.as_bytes().len() as u32).to_be_bytes()).unwrap();
    link.write_all(bytes.as_bytes()).unwrap();
    // The router closes the link without a word; the real node stays linked.
    let mut rest = Vec::new();
    assert_eq!(link.read_to_end(&mut rest).unwrap_or(0), 0);
    assert_eq!(router.metric_sum("corecast_router_link_refusals_total"), 1.0);
    assert_eq!(router.health().unwrap()["linked_nodes"], 1);
}

/// Whether `node` refuses `token` at AUTH.
fn refuses(node: &common::cluster::Node, token: &str) -> bool {
    let mut client = node.server.connect();
    client.send(0, &ClientRequest::Auth { token, device: "" });
    matches!(client.recv(), Reply::Error { code, .. } if code == ErrorCode::AuthFailed.as_u16())
}

#[test]
fn a_revocation_reaches_every_node_also_one_started_later_and_after_redis_lost_it() {
    corecast_testkit::redis_server::require();
    let mut cluster = Cluster::start(1, &[("a", &[]), ("b", &[])]);
    let old_token = token("mallory", 3600, None);
    let mut on_a = cluster.nodes[0].server.connect();
    on_a.auth(&old_token);
    let mut on_b = cluster.nodes[1].server.connect();
    on_b.auth(&old_token);

    // The router passes revocations to the nodes it has pulled from the registry.
    eventually("the router knows both nodes", || cluster.router().dispatch_order().len() == 2);
    let reply = cluster.router().admin_post("/v1/admin/users/mallory/revoke", b"");
    assert_eq!(
        (reply["recorded"].as_bool(), reply["nodes"].as_u64(), reply["kicked"].as_u64()),
        (Some(true), Some(2), Some(2))
    );
    for client in [&mut on_a, &mut on_b] {
        let frames = client.recv_until_eof();
        assert!(
            matches!(frames.last(), Some(Reply::Close { code, .. }) if *code == ErrorCode::Kicked.as_u16()),
            "{frames:?}"
        );
    }

    // A node that joins later learns it from Redis.
    let redis_url = cluster.routes_redis.url();
    let late = common::cluster::Node::start("late", &redis_url, &[]);
    eventually("the late node has the revocation", || {
        late.server.admin_get("/v1/admin/revocations")["mallory"].is_u64()
    });
    assert!(refuses(&late, &old_token));
    user_on(&late, "bob");

    // Redis restarts empty; the nodes write back what it lost, so a node
    // that joins after that learns it too.
    cluster.routes_redis.restart();
    let later = common::cluster::Node::start("later", &redis_url, &[]);
    eventually("the revocation is back in Redis and reaches the new node", || {
        later.server.admin_get("/v1/admin/revocations")["mallory"].is_u64()
    });
    assert!(refuses(&later, &old_token));
    cluster.nodes.extend([late, later]);
}

#[test]
fn links_over_tls_carry_chat_and_rooms_and_refuse_nodes_without_the_ca() {
    corecast_testkit::redis_server::require();
    let (routes_redis, store_redis) = (RedisServer::start(), RedisServer::start_persistent());
    let (cert, private_key) = (key("tls_cert.pem"), key("tls_key.pem"));
    let tls =
        [("CORECAST_ROUTER_LINK_TLS_CERT_FILE", cert.as_path()), ("CORECAST_ROUTER_LINK_TLS_KEY_FILE", &private_key)];
    let router = RouterProc::start_with_env("r1", &routes_redis.url(), &store_redis.url(), &tls);
    let ca = key("tls_ca.pem");
    let trusting = ["--link-tls-ca-file", ca.to_str().unwrap()];
    let (a, b) = (Node::start("a", &routes_redis.url(), &trusting), Node::start("b", &routes_redis.url(), &trusting));
    router.wait_until(|r| r.health().is_some_and(|h| h["linked_nodes"] == 2), "both nodes linked over TLS");
    router.wait_until(|r| r.metric_sum("corecast_router_routers") == 1.0, "the router serves");
    for node in [&a, &b] {
        eventually("the node sees its link up", || node.server.metric_sum("corecast_uplink_routers") == 1.0);
    }

    let (mut alice, mut bob) = (user_on(&a, "alice"), user_on(&b, "bob"));
    eventually("bob is online", || router.admin_get("/v1/admin/users/bob/presence")["online"] == true);
    let (conv, seq) = common::send_acked(&mut alice, DIRECT, "bob", 1, b"over tls links");
    let push = next_chat_push(&mut bob);
    assert_eq!((push.conv, push.seq, push.payload), (conv, seq, b"over tls links".to_vec()));
    alice.join("tls-stage");
    bob.join("tls-stage");
    alice.send(PUBLISH_NO_REPLY, &ClientRequest::Publish { room: "tls-stage", payload: b"encrypted hop" });
    assert_eq!(bob.next_push().payload, b"encrypted hop");

    // A node speaking plain TCP, and one trusting another CA, cannot link.
    let refusals = || router.metric_sum("corecast_router_link_refusals_total");
    let plain = Node::start("plain", &routes_redis.url(), &[]);
    eventually("the plain link is refused", || refusals() >= 1.0);
    let other_ca = key("tls_ca_2.pem");
    let wary = Node::start("wary", &routes_redis.url(), &["--link-tls-ca-file", other_ca.to_str().unwrap()]);
    let before = refusals();
    eventually("the wary node's handshake fails", || refusals() > before);
    assert_eq!(router.health().unwrap()["linked_nodes"], 2);
    for node in [&plain, &wary] {
        assert_eq!(node.server.metric_sum("corecast_uplink_routers"), 0.0, "node {} linked", node.id);
    }
}

#[test]
fn routers_reach_an_https_control_plane_only_trusting_its_ca() {
    corecast_testkit::redis_server::require();
    let (routes_redis, store_redis) = (RedisServer::start(), RedisServer::start_persistent());
    let (ca, other_ca) = (key("tls_ca.pem"), key("tls_ca_2.pem"));
    let trusting = RouterProc::start_with_env(
        "r1",
        &routes_redis.url(),
        &store_redis.url(),
        &[("CORECAST_ROUTER_CONTROL_TLS_CA_FILE", ca.as_path())],
    );
    let wary = RouterProc::start_with_env(
        "r2",
        &routes_redis.url(),
        &store_redis.url(),
        &[("CORECAST_ROUTER_CONTROL_TLS_CA_FILE", other_ca.as_path())],
    );
    let node = Node::start_with_control_tls("secure", &routes_redis.url(), &[]);
    let plain = ureq::get(&format!("http://{}/health", node.server.control)).call();
    assert!(plain.is_err(), "the control plane answered plain HTTP: {plain:?}");

    // Health pulled over HTTPS: dispatch hands the node out.
    trusting.wait_until(|r| r.dispatch_order() == [node.id.clone()], "the node is dispatched");
    // The cluster admin API reaches the node's admin API over HTTPS.
    let (_alice, _) = node.server.user("alice");
    eventually("the router counts alice", || trusting.admin_get("/v1/admin/online")["connections"] == 1);

    // A router trusting another CA fails every pull and never dispatches it.
    wary.wait_until(|r| r.metric_sum("corecast_health_pulls_total") >= 2.0, "the wary router pulled");
    assert_eq!(wary.metric_sum("corecast_nodes_healthy"), 0.0);
    assert!(wary.dispatch_order().is_empty(), "dispatched a node it cannot verify");
}
