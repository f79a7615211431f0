//! Live rooms against the real server with members on both shards: every
//! member receives every message exactly once and in publish order per
//! publisher, LEAVE takes effect, exclude-self works, the admin API
//! broadcasts and counts, and `/metrics` shows one encode per message.

mod common;

use std::collections::HashMap;

use common::{AuthOk, Client, Reply, Server};
use corecast_proto::{ClientRequest, PushKind, PUBLISH_EXCLUDE_SELF, PUBLISH_NO_REPLY};

/// Connects clients until both shards hold at least `per_shard` of them.
fn clients_on_both_shards(server: &Server, per_shard: usize) -> Vec<(Client, AuthOk)> {
    let mut clients = Vec::new();
    for i in 0..200 {
        let on = |s: u16| clients.iter().filter(|(_, ok): &&(Client, AuthOk)| ok.shard == s).count();
        if on(0) >= per_shard && on(1) >= per_shard {
            return clients;
        }
        clients.push(server.user(&format!("user{i}")));
    }
    panic!("the kernel never spread connections over both shards");
}

/// Collects `count` pushes from `client`, skipping OK replies.
fn pushes(client: &mut Client, count: usize) -> Vec<common::Push> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        match client.recv() {
            Reply::Push(p) => got.push(p),
            Reply::Ok { .. } => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    got
}

#[test]
fn every_member_on_every_shard_gets_each_message_once_in_order() {
    let server = Server::start(&[]);
    let mut clients = clients_on_both_shards(&server, 3);
    for (client, _) in clients.iter_mut() {
        client.join("arena");
    }
    assert_eq!(server.admin_get("/v1/admin/rooms/arena")["members"], clients.len());

    // One publisher on each shard, one with replies and one without.
    let p0 = clients.iter().position(|(_, ok)| ok.shard == 0).unwrap();
    let p1 = clients.iter().position(|(_, ok)| ok.shard == 1).unwrap();
    const PER_PUBLISHER: usize = 60;
    for n in 0..PER_PUBLISHER {
        for (p, flags) in [(p0, 0), (p1, PUBLISH_NO_REPLY)] {
            let payload = format!("{p}:{n}");
            clients[p].0.send(flags, &ClientRequest::Publish { room: "arena", payload: payload.as_bytes() });
        }
    }
    for (client, ok) in clients.iter_mut() {
        let got = pushes(client, 2 * PER_PUBLISHER);
        let mut next: HashMap<String, usize> = HashMap::new();
        for push in got {
            assert_eq!((push.kind, push.conv.as_str(), push.seq), (PushKind::Room, "arena", 0));
            let text = String::from_utf8(push.payload).unwrap();
            let (publisher, n) = text.split_once(':').unwrap();
            let expected = next.entry(publisher.to_string()).or_insert(0);
            assert_eq!(
                n.parse::<usize>().unwrap(),
                *expected,
                "conn {} on shard {}: out of order",
                ok.conn_id,
                ok.shard
            );
            *expected += 1;
        }
        assert_eq!(next.values().copied().collect::<Vec<_>>(), vec![PER_PUBLISHER; 2]);
    }
}

#[test]
fn leave_stops_delivery_and_exclude_self_skips_the_publisher() {
    let server = Server::start(&[]);
    let mut clients = clients_on_both_shards(&server, 2);
    for (client, _) in clients.iter_mut() {
        client.join("stage");
        client.join("side");
    }
    let publisher = clients.iter().position(|(_, ok)| ok.shard == 0).unwrap();
    let leaver = clients.iter().position(|(_, ok)| ok.shard == 1).unwrap();
    clients[leaver].0.expect_ok(&ClientRequest::Leave { room: "stage" });
    assert_eq!(server.admin_get("/v1/admin/rooms/stage")["members"], clients.len() - 1);

    let (pub_client, _) = &mut clients[publisher];
    pub_client.send(PUBLISH_EXCLUDE_SELF, &ClientRequest::Publish { room: "stage", payload: b"after-leave" });
    pub_client.send(0, &ClientRequest::Publish { room: "side", payload: b"sentinel" });

    for (i, (client, _)) in clients.iter_mut().enumerate() {
        let first = pushes(client, 1).remove(0);
        if i == leaver || i == publisher {
            // Same path and order as "after-leave", so had it been delivered
            // it would have come first.
            assert_eq!((first.conv.as_str(), first.payload.as_slice()), ("side", &b"sentinel"[..]));
        } else {
            assert_eq!((first.conv.as_str(), first.payload.as_slice()), ("stage", &b"after-leave"[..]));
        }
    }
}

#[test]
fn admin_broadcast_reaches_every_connection_and_publish_reaches_the_room() {
    let server = Server::start(&[]);
    let mut clients = clients_on_both_shards(&server, 3);
    clients[0].0.join("news");
    clients[1].0.join("news");
    let online = server.admin_get("/v1/admin/online");
    assert_eq!(online["connections"], clients.len());

    let reply = server.admin_post("/v1/admin/broadcast", b"maintenance at noon");
    assert_eq!(reply["shards"], 2);
    for (client, _) in clients.iter_mut() {
        let push = pushes(client, 1).remove(0);
        assert_eq!(push.kind, PushKind::Broadcast);
        assert_eq!(push.payload, b"maintenance at noon");
    }
    server.admin_post("/v1/admin/rooms/news/publish?from=editor", b"headline");
    for (client, _) in clients.iter_mut().take(2) {
        let push = pushes(client, 1).remove(0);
        assert_eq!((push.kind, push.conv.as_str(), push.from.as_str()), (PushKind::Room, "news", "editor"));
    }
}

#[test]
fn admin_api_requires_the_key() {
    let server = Server::start(&[]);
    let status = |key: Option<&str>| {
        let mut req = ureq::get(&format!("http://{}/v1/admin/online", server.control));
        if let Some(key) = key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        match req.call() {
            Ok(resp) => resp.status().as_u16(),
            Err(ureq::Error::StatusCode(code)) => code,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(status(None), 401);
    assert_eq!(status(Some("wrong-key-wrong-key")), 401);
    assert_eq!(status(Some(common::ADMIN_KEY)), 200);
}

#[test]
fn metrics_show_one_encode_per_message_and_many_deliveries() {
    let server = Server::start(&[]);
    let mut clients = clients_on_both_shards(&server, 3);
    for (client, _) in clients.iter_mut() {
        client.join("stats");
    }
    for n in 0..10u8 {
        clients[0].0.send(PUBLISH_NO_REPLY, &ClientRequest::Publish { room: "stats", payload: &[n] });
    }
    for (client, _) in clients.iter_mut() {
        pushes(client, 10);
    }
    let encodes = server.metric_sum("corecast_encodes_total");
    let deliveries = server.metric_sum("corecast_deliveries_total");
    assert_eq!(encodes, 10.0);
    assert_eq!(deliveries, 10.0 * clients.len() as f64);
    assert!(server.metrics().contains("corecast_connections"));
}
