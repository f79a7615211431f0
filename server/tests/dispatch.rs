//! `GET /v1/dispatch` as clients meet it: a single node answers in the
//! routers' shape (connections, ceiling, weight) with an address a client
//! reaches also when it listens on a wildcard; a router whose Redis is
//! down keeps answering with the last known nodes its health pulls find
//! healthy, says the answer is stale and raises `corecast_dispatch_stale`.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::cluster::{eventually, require_redis_server, Cluster};
use common::{token, Client, Host, Server};
use serde_json::Value;

fn single_dispatch(server: &Server) -> Value {
    let (status, body) = server.control_get("/v1/dispatch").expect("GET /v1/dispatch");
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_single_node_answers_like_a_router_with_an_address_clients_reach() {
    let wildcard = Host { ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED), netns: None };
    let server = Server::start_on(&wildcard, &["--weight", "7", "--max-connections", "1000"]);
    let answer = single_dispatch(&server);
    let entry = &answer["nodes"][0];
    for field in ["node", "addr", "ws_url", "weight", "connections", "ceiling"] {
        assert!(!entry[field].is_null(), "dispatch entry without `{field}`: {answer}");
    }
    assert_eq!(answer["stale"], false, "{answer}");
    assert!(answer["reconnect"]["base_ms"].is_u64(), "{answer}");
    assert_eq!((entry["weight"].as_u64(), entry["ceiling"].as_u64()), (Some(7), Some(1000)), "{answer}");
    assert_eq!(entry["connections"], 0, "{answer}");

    let addr: SocketAddr = entry["addr"].as_str().unwrap().parse().expect("addr is host:port");
    assert!(!addr.ip().is_unspecified(), "dispatch names the wildcard: {answer}");
    assert_eq!(addr.port(), server.addr.port());
    let ws_url = entry["ws_url"].as_str().unwrap();
    assert!(ws_url.starts_with(&format!("ws://{}:{}/", addr.ip(), server.ws.port())), "{ws_url}");

    let mut client = Client::connect(addr);
    client.auth(&token("dispatched", 3600, None));
    let answer = single_dispatch(&server);
    assert_eq!(answer["nodes"][0]["connections"], 1, "the client is counted: {answer}");
}

#[test]
fn with_redis_down_a_router_dispatches_the_last_known_healthy_nodes_as_stale() {
    require_redis_server();
    let no_flags: &[&str] = &[];
    let mut cluster = Cluster::start(1, &[("a", no_flags), ("b", no_flags)]);
    let router = cluster.router();
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    let (a, b) = (cluster.nodes[0].id.clone(), cluster.nodes[1].id.clone());
    eventually("both nodes dispatched", || sorted(router.dispatch_order()) == sorted(vec![a.clone(), b.clone()]));
    assert_eq!(router.dispatch()["stale"], false);
    assert_eq!(router.metric_sum("corecast_dispatch_stale"), 0.0);

    cluster.routes_redis.kill();
    let router = cluster.router();
    eventually("dispatch marked stale", || router.dispatch()["stale"] == true);
    assert_eq!(sorted(router.dispatch_order()), sorted(vec![a.clone(), b.clone()]), "the last known nodes stay");
    assert_eq!(router.metric_sum("corecast_dispatch_stale"), 1.0);

    // Health is still pulled: a node that dies leaves the answer.
    cluster.nodes[1].server.kill();
    let router = cluster.router();
    eventually("the dead node left dispatch", || router.dispatch_order() == vec![a.clone()]);
    assert_eq!(router.dispatch()["stale"], true);

    cluster.routes_redis.restart();
    let router = cluster.router();
    eventually("dispatch current again", || router.dispatch()["stale"] == false);
    eventually("the live node re-registered", || router.dispatch_order() == vec![a.clone()]);
    assert_eq!(router.metric_sum("corecast_dispatch_stale"), 0.0);
}
