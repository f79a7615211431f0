//! Room streams in a cluster: a real `redis-server` (started by the
//! harness), two `corecast-router`s and two nodes A and B, all four with
//! the same `[[rooms]]` rules. A member dropped while a publisher on the
//! other node keeps publishing gets every message it missed once, in order,
//! from the room's owner router, then the live ones; a gap longer than the
//! history is reported as such; killing the owner router (SIGKILL) and
//! starting it again moves the room's epoch on each time, and the other
//! router does not take up a stream it held before, so an old position is
//! never taken for a complete one; who is in a room, with join
//! and leave events, holds across nodes, also when a node is killed or
//! frozen (its registration lapses, the routers close its links) and back.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{eventually, require_redis_server, Cluster, Node, RouterOpts, RouterProc};
use common::{token, Client, Push, Reply, ADMIN_KEY};
use corecast_cluster::ownership::owner_of;
use corecast_proto::{
    position_epoch, position_offset, ClientRequest, ErrorCode, PushKind, PUBLISH_EXCLUDE_SELF, PUBLISH_NO_REPLY,
};
use serde_json::Value;

/// The rules of every node and router: `live-*` rooms keep 1,000 messages
/// and presence with join and leave events; `short-*` rooms keep 10.
const RULES: &str = r#"
[[rooms]]
pattern = "live-*"
history_size = 1000
presence = true
join_leave_events = true

[[rooms]]
pattern = "short-*"
history_size = 10
"#;

/// The rules file, removed with the test.
struct Rules {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Rules {
    fn write() -> Rules {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rooms.toml");
        std::fs::write(&path, RULES).unwrap();
        Rules { _dir: dir, path }
    }
}

/// Routers r1 and r2, nodes a and b, all with `rules`.
fn start(rules: &Rules) -> Cluster {
    let path = rules.path.to_str().unwrap();
    let node_args: &[&str] = &["--config", path];
    let opts = RouterOpts::default().env("CORECAST_ROUTER_CONFIG", path);
    Cluster::start_with(2, &[("a", node_args), ("b", node_args)], &opts)
}

fn user_on(node: &Node, user: &str) -> Client {
    let mut client = node.server.connect();
    client.auth(&token(user, 3600, None));
    client
}

/// JOIN `room` after `since` (0: none): the messages replayed before
/// JOINED, and JOINED's position and `recovered`.
fn join_since(client: &mut Client, room: &str, since: u64) -> (Vec<Push>, u64, bool) {
    let rid = client.send(0, &ClientRequest::Join { room, since });
    let mut replayed = Vec::new();
    loop {
        match client.recv() {
            Reply::Push(push) if push.kind == PushKind::Room => {
                assert_eq!(push.rid, 0, "a replayed message carries rid 0");
                replayed.push(push);
            }
            Reply::Push(push) if push.kind == PushKind::Presence => {}
            Reply::Joined { rid: got, position, recovered, .. } if got == rid => {
                return (replayed, position, recovered)
            }
            other => panic!("expected the catch-up of JOIN {rid}, got {other:?}"),
        }
    }
}

/// The next room message, skipping presence events.
fn next_message(client: &mut Client) -> Push {
    loop {
        let push = client.next_push();
        if push.kind == PushKind::Room {
            return push;
        }
    }
}

/// The next presence event as (user, joined), skipping room messages.
fn next_presence_event(client: &mut Client) -> (String, bool) {
    loop {
        let push = client.next_push();
        if push.kind == PushKind::Presence {
            return (push.from, push.payload == [1]);
        }
    }
}

/// One member's reading of a room whose messages are "0", "1", ...:
/// every message must be the next position and the next number.
struct Reading {
    position: u64,
    next: u64,
}

impl Reading {
    /// From a JOINED at `position` of a room whose first message is `first`.
    fn from(position: u64, first: u64) -> Reading {
        Reading { position, next: first }
    }

    fn take(&mut self, push: &Push) {
        assert_eq!(position_epoch(push.seq), position_epoch(self.position), "epoch changed: {push:?}");
        assert_eq!(
            position_offset(push.seq),
            position_offset(self.position) + 1,
            "a gap or a duplicate after {}: {push:?}",
            position_offset(self.position)
        );
        let number: u64 = std::str::from_utf8(&push.payload).unwrap().parse().unwrap();
        assert_eq!(number, self.next, "message out of order: {push:?}");
        self.position = push.seq;
        self.next += 1;
    }

    /// Reads `count` live messages.
    fn read(&mut self, client: &mut Client, count: u64) {
        for _ in 0..count {
            self.take(&next_message(client));
        }
    }

    /// Reads until the message numbered `last` arrived.
    fn read_through(&mut self, client: &mut Client, last: u64) {
        while self.next <= last {
            self.take(&next_message(client));
        }
    }
}

/// Publishes "0", "1", ... to `room` in bursts of eight without waiting for
/// answers, until `stop`; then one more with an answer, so every earlier
/// one was taken. Returns the number of the last message.
fn keep_publishing(mut client: Client, room: &'static str, published: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..8 {
            let payload = n.to_string();
            let request = ClientRequest::Publish { room, payload: payload.as_bytes() };
            assert!(client.try_send(PUBLISH_NO_REPLY | PUBLISH_EXCLUDE_SELF, &request), "publisher cut off");
            n += 1;
        }
        published.store(n, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(10));
    }
    let payload = n.to_string();
    let rid = client.send(PUBLISH_EXCLUDE_SELF, &ClientRequest::Publish { room, payload: payload.as_bytes() });
    loop {
        match client.recv() {
            Reply::Ok { rid: got } if got == rid => return n,
            Reply::Push(push) if push.kind == PushKind::Presence => {}
            other => panic!("the publisher got {other:?}: a message was refused"),
        }
    }
}

/// Publishes `payloads` and waits for the last one's OK.
fn publish_all(client: &mut Client, room: &str, payloads: impl IntoIterator<Item = String>) {
    let mut last = 0;
    for payload in payloads {
        last = client.send(PUBLISH_EXCLUDE_SELF, &ClientRequest::Publish { room, payload: payload.as_bytes() });
    }
    loop {
        match client.recv() {
            Reply::Ok { rid } if rid == last => return,
            Reply::Ok { .. } | Reply::Push(_) => {}
            other => panic!("a publish was refused: {other:?}"),
        }
    }
}

#[test]
fn a_member_dropped_while_another_node_publishes_recovers_every_message_once() {
    require_redis_server();
    let rules = Rules::write();
    let cluster = start(&rules);
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    const ROOM: &str = "live-recover";

    let mut publisher = user_on(b, "publisher");
    join_since(&mut publisher, ROOM, 0);
    // Two members on A: one comes back to A, the other to B.
    let mut members: Vec<(Client, Reading)> = ["m1", "m2"]
        .into_iter()
        .map(|user| {
            let mut client = user_on(a, user);
            let (replayed, position, recovered) = join_since(&mut client, ROOM, 0);
            assert!(replayed.is_empty() && !recovered);
            (client, Reading::from(position, 0))
        })
        .collect();

    let (published, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let publishing = {
        let (published, stop) = (published.clone(), stop.clone());
        std::thread::spawn(move || keep_publishing(publisher, ROOM, published, stop))
    };

    // Each member reads a while, then its connection drops.
    let mut readings = Vec::new();
    for (i, (mut client, mut reading)) in members.drain(..).enumerate() {
        reading.read(&mut client, 100 * (i as u64 + 1));
        drop(client);
        readings.push(reading);
    }
    // Publishing goes on while they are away.
    let away_from = published.load(Ordering::Relaxed);
    eventually("300 more messages are published", || published.load(Ordering::Relaxed) >= away_from + 300);

    let mut back = Vec::new();
    for (reading, (node, user)) in readings.iter_mut().zip([(a, "m1"), (b, "m2")]) {
        let mut client = user_on(node, user);
        let (replayed, position, recovered) = join_since(&mut client, ROOM, reading.position);
        assert!(recovered, "{user} was away for less than the history holds");
        assert!(!replayed.is_empty(), "{user} missed messages while away");
        for push in &replayed {
            reading.take(push);
        }
        assert_eq!(position, reading.position, "JOINED is at the last message replayed");
        back.push(client);
    }
    // Live messages follow without a gap or a duplicate.
    for (client, reading) in back.iter_mut().zip(readings.iter_mut()) {
        reading.read(client, 50);
    }
    stop.store(true, Ordering::Relaxed);
    let last = publishing.join().expect("publisher");
    for (client, reading) in back.iter_mut().zip(readings.iter_mut()) {
        reading.read_through(client, last);
    }
}

#[test]
fn a_gap_longer_than_the_history_is_reported_and_operators_publish_through_the_owner() {
    require_redis_server();
    let rules = Rules::write();
    let cluster = start(&rules);
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    const ROOM: &str = "short-gap";

    let mut publisher = user_on(b, "publisher");
    join_since(&mut publisher, ROOM, 0);
    let mut watcher = user_on(b, "watcher");
    let (_, start_position, _) = join_since(&mut watcher, ROOM, 0);
    let mut watching = Reading::from(start_position, 0);
    let mut member = user_on(a, "member");
    let (_, position, _) = join_since(&mut member, ROOM, 0);
    let mut reading = Reading::from(position, 0);

    publish_all(&mut publisher, ROOM, (0..3).map(|n| n.to_string()));
    reading.read(&mut member, 3);
    drop(member);
    // 20 more while it is away: more than the 10 the room keeps.
    publish_all(&mut publisher, ROOM, (3..23).map(|n| n.to_string()));
    watching.read_through(&mut watcher, 22);

    let mut member = user_on(a, "member");
    let (replayed, position, recovered) = join_since(&mut member, ROOM, reading.position);
    assert!(!recovered, "the history no longer holds what it missed");
    assert!(replayed.is_empty(), "nothing is replayed when recovery is impossible: {replayed:?}");
    assert_eq!(position, watching.position, "JOINED gives the room's current position");
    let mut reading = Reading::from(position, 23);
    publish_all(&mut publisher, ROOM, ["23".to_string()]);
    reading.read(&mut member, 1);
    watching.read(&mut watcher, 1);

    // HISTORY from the old position: the newest ten, marked incomplete.
    let rid = member.send(0, &ClientRequest::History { room: ROOM, since: position - 20, limit: 100 });
    let mut offsets = Vec::new();
    loop {
        match member.recv() {
            Reply::Push(push) if push.rid == rid => offsets.push(position_offset(push.seq)),
            Reply::HistoryEnd { rid: got, complete, .. } if got == rid => {
                assert!(!complete);
                break;
            }
            other => panic!("expected HISTORY's answer, got {other:?}"),
        }
    }
    assert_eq!(offsets, (15..=24).collect::<Vec<u64>>());

    // An operator's messages, through either router, take the next
    // positions from the room's owner like any member's.
    for (router, text) in cluster.routers.iter().zip(["24", "25"]) {
        let answer = router.admin_post(&format!("/v1/admin/rooms/{ROOM}/publish?from=ops"), text.as_bytes());
        assert!(answer["via_node"].is_string(), "{answer}");
    }
    let got: Vec<Push> = (0..2).map(|_| next_message(&mut member)).collect();
    assert_eq!(got.iter().map(|p| position_offset(p.seq)).collect::<Vec<_>>(), vec![25, 26], "{got:?}");
    let mut texts: Vec<&[u8]> = got.iter().map(|p| p.payload.as_slice()).collect();
    texts.sort();
    assert_eq!(texts, vec![b"24", b"25"]);
}

#[test]
fn the_owner_router_killed_and_restarted_moves_the_epoch_on() {
    require_redis_server();
    let rules = Rules::write();
    let mut cluster = start(&rules);
    const ROOM: &str = "live-failover";
    let ids: Vec<String> = cluster.routers.iter().map(|r| r.id.clone()).collect();
    let owner = ids.iter().position(|id| Some(id.as_str()) == owner_of(ROOM, &ids)).unwrap();

    let mut publisher = user_on(&cluster.nodes[1], "publisher");
    join_since(&mut publisher, ROOM, 0);
    let mut watcher = user_on(&cluster.nodes[0], "watcher");
    join_since(&mut watcher, ROOM, 0);
    let mut member = user_on(&cluster.nodes[0], "member");
    join_since(&mut member, ROOM, 0);

    publish_all(&mut publisher, ROOM, (0..5).map(|n| n.to_string()));
    let first_epoch = position_epoch(next_message(&mut watcher).seq);
    let before: Vec<u64> = (0..5).map(|_| next_message(&mut member).seq).collect();
    drop(member);
    for _ in 1..5 {
        next_message(&mut watcher);
    }

    // A JOIN whose catch-up the owner holds (frozen) when it is SIGKILLed
    // fails at once with the lost link, and the connection is no member.
    cluster.routers[owner].pause();
    let asked = stream_requests(&cluster.nodes[0]);
    let mut late = user_on(&cluster.nodes[0], "late");
    let rid = late.send(0, &ClientRequest::Join { room: ROOM, since: 0 });
    eventually("the late JOIN's catch-up went to the owner", || stream_requests(&cluster.nodes[0]) > asked);
    // SIGKILL the owner: the other router takes the room, with a new epoch.
    cluster.routers[owner].kill();
    match late.recv() {
        Reply::Error { rid: got, code, message } => {
            assert_eq!((got, code), (rid, ErrorCode::Unavailable.as_u16()));
            assert!(message.contains("link was lost"), "failed by the lost link, not a deadline: {message}");
        }
        other => panic!("expected ERROR unavailable for the JOIN, got {other:?}"),
    }
    for node in &cluster.nodes {
        eventually("the node has lost its link to the killed router", || {
            node.server.metric_sum("corecast_uplink_routers") == 1.0
        });
    }
    publish_all(&mut publisher, ROOM, (5..10).map(|n| n.to_string()));
    let during: Vec<u64> = (0..5).map(|_| next_message(&mut watcher).seq).collect();
    let second_epoch = position_epoch(during[0]);
    assert_ne!(second_epoch, first_epoch, "the new owner starts a new epoch");
    assert_eq!(during.iter().map(|&p| position_offset(p)).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);

    // The failed JOIN left no member behind: the room's members report
    // themselves to the new owner, and "late" is not among them.
    let mut asker = user_on(&cluster.nodes[1], "asker");
    let members = entries(&[("publisher", 1), ("watcher", 1)]);
    eventually("the new owner knows the members", || presence(&mut asker, ROOM, "", 10).2 == members);
    // Its connection goes on at once: a new JOIN is answered next.
    let (_, position, recovered) = join_since(&mut late, ROOM, 0);
    assert!(!recovered && position_epoch(position) != first_epoch);

    // A member coming back with its old position is told it missed messages.
    let mut member = user_on(&cluster.nodes[1], "member");
    let (replayed, position, recovered) = join_since(&mut member, ROOM, before[4]);
    assert!(!recovered && replayed.is_empty(), "{replayed:?}");
    assert_eq!(position, during[4], "the current position, in the new epoch");
    drop(member);

    // The killed router comes back: it owns the room again, with nothing of
    // it, so the room's epoch moves on once more.
    cluster.routers[owner].restart();
    cluster.wait_linked();
    publish_all(&mut publisher, ROOM, ["10".to_string()]);
    let after = next_message(&mut watcher).seq;
    assert!(![first_epoch, second_epoch].contains(&position_epoch(after)), "a third epoch");
    assert_eq!(position_offset(after), 1);
    let mut member = user_on(&cluster.nodes[0], "member");
    let (replayed, position, recovered) = join_since(&mut member, ROOM, during[4]);
    assert!(!recovered && replayed.is_empty());
    assert_eq!(position, after);
    drop(member);

    // Killed again: the other router must not take up the stream it had
    // before, which lacks what was published meanwhile ("10").
    cluster.routers[owner].kill();
    for node in &cluster.nodes {
        eventually("the node has lost its link to the killed router", || {
            node.server.metric_sum("corecast_uplink_routers") == 1.0
        });
    }
    let mut member = user_on(&cluster.nodes[0], "member");
    let (replayed, _, recovered) = join_since(&mut member, ROOM, during[4]);
    assert!(!recovered && replayed.is_empty(), "message 10 was missed: {replayed:?}");
}

/// `StreamRequest`s the node sent to a router (JOIN catch-ups and HISTORY).
fn stream_requests(node: &Node) -> f64 {
    let page = node.server.metrics();
    let lines: Vec<&str> = page.lines().filter(|l| l.contains(r#"kind="stream_request""#)).collect();
    common::sum_metric(&lines.join("\n"), "corecast_uplink_owner_frames_total")
}

/// What "at once" may take on a loaded test machine: the router sees the
/// link close, then the admin API is asked again.
const AT_ONCE: Duration = Duration::from_secs(2);

/// How soon the members of a node that stopped without closing its links
/// leave, as OPERATIONS.md says: the node's registry_ttl_ms + the router's
/// registry_ttl_ms + two node polls of the router (health_pull_ms +
/// health_timeout_ms, 500 ms by default, each).
fn vanished_node_bound() -> Duration {
    let ttl: u64 = common::cluster::REGISTRY_TTL_MS.parse().unwrap();
    let pull: u64 = common::cluster::HEALTH_PULL_MS.parse().unwrap();
    Duration::from_millis(2 * ttl + 2 * (pull + 500))
}

/// Polls `check` until `deadline`: the documented time a change may take.
fn within(deadline: Instant, what: &str, mut check: impl FnMut() -> bool) {
    while !check() {
        assert!(Instant::now() < deadline, "not within the documented time: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` on a router's admin API: status and JSON body.
fn router_get(router: &RouterProc, path: &str) -> (u16, Value) {
    let mut resp = ureq::get(&format!("http://{}{path}", router.admin))
        .header("Authorization", &format!("Bearer {ADMIN_KEY}"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("router admin GET");
    (resp.status().as_u16(), serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap())
}

/// PRESENCE: (users, connections, [(user, devices)], next).
fn presence(client: &mut Client, room: &str, after: &str, limit: u16) -> (u32, u32, Vec<(String, u16)>, String) {
    let rid = client.send(0, &ClientRequest::Presence { room, after, limit });
    loop {
        match client.recv() {
            Reply::Presence { rid: got, users, conns, entries, next } if got == rid => {
                return (users, conns, entries, next)
            }
            Reply::Push(_) => {}
            other => panic!("expected PRESENCE_LIST, got {other:?}"),
        }
    }
}

fn entries(list: &[(&str, u16)]) -> Vec<(String, u16)> {
    list.iter().map(|(user, devices)| (user.to_string(), *devices)).collect()
}

#[test]
fn presence_and_join_leave_events_span_nodes_and_a_killed_node_s_members_leave() {
    require_redis_server();
    let rules = Rules::write();
    let mut cluster = start(&rules);
    const ROOM: &str = "live-presence";
    let ids: Vec<String> = cluster.routers.iter().map(|r| r.id.clone()).collect();
    let owner_id = owner_of(ROOM, &ids).unwrap().to_string();
    let owner = ids.iter().position(|id| *id == owner_id).unwrap();
    let admin_presence = format!("/v1/admin/rooms/{ROOM}/presence");

    // Asks PRESENCE without being a member (the token grants the room).
    let mut asker = user_on(&cluster.nodes[1], "asker");
    let mut watcher = user_on(&cluster.nodes[0], "watcher");
    join_since(&mut watcher, ROOM, 0);
    let mut joined = Vec::new();
    for (node, user) in [(0, "alice"), (1, "alice"), (1, "bob"), (0, "carol")] {
        let mut client = user_on(&cluster.nodes[node], user);
        join_since(&mut client, ROOM, 0);
        joined.push(client);
    }
    let [alice_a, alice_b, mut bob, mut carol]: [Client; 4] = joined.try_into().ok().unwrap();
    // One join event per user, for its first connection only.
    let mut events: Vec<(String, bool)> = (0..3).map(|_| next_presence_event(&mut watcher)).collect();
    events.sort();
    assert_eq!(events, vec![("alice".into(), true), ("bob".into(), true), ("carol".into(), true)]);

    // PRESENCE on node B sees the members of both nodes, paged.
    let everyone = entries(&[("alice", 2), ("bob", 1), ("carol", 1), ("watcher", 1)]);
    eventually("PRESENCE lists every connection", || {
        presence(&mut asker, ROOM, "", 10) == (4, 5, everyone.clone(), String::new())
    });
    let (_, _, page, next) = presence(&mut asker, ROOM, "", 2);
    assert_eq!((page, next.as_str()), (entries(&[("alice", 2), ("bob", 1)]), "bob"));
    let (_, _, page, next) = presence(&mut asker, ROOM, &next, 2);
    assert_eq!((page, next.as_str()), (entries(&[("carol", 1), ("watcher", 1)]), ""));

    // The owner router's admin API answers; the other one names the owner.
    let (status, body) = router_get(&cluster.routers[owner], &admin_presence);
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["users"].as_u64(), body["connections"].as_u64()), (Some(4), Some(5)), "{body}");
    assert_eq!(body["page"][0], serde_json::json!({ "user": "alice", "connections": 2 }));
    let (status, body) = router_get(&cluster.routers[1 - owner], &admin_presence);
    assert_eq!(status, 421, "{body}");
    assert_eq!(body["owner"], owner_id.as_str());

    // A LEAVE is an event; a user's other device going is not, only its last.
    carol.send(0, &ClientRequest::Leave { room: ROOM });
    assert_eq!(next_presence_event(&mut watcher), ("carol".into(), false));
    drop(alice_b);
    let mut dave = user_on(&cluster.nodes[1], "dave");
    join_since(&mut dave, ROOM, 0);
    assert_eq!(next_presence_event(&mut watcher), ("dave".into(), true), "alice is still here, on A");
    drop(alice_a);
    let seen: Vec<(String, bool)> = (0..4).map(|_| next_presence_event(&mut bob)).collect();
    let expected = [("carol", true), ("carol", false), ("dave", true), ("alice", false)];
    assert_eq!(seen, expected.map(|(user, joined)| (user.to_string(), joined)));

    // Node A killed: its last member (watcher) leaves as soon as the
    // routers see its links close, and the others are told.
    let killed = Instant::now();
    cluster.nodes[0].server.kill();
    assert_eq!(next_presence_event(&mut bob), ("watcher".into(), false));
    let remaining = entries(&[("bob", 1), ("dave", 1)]);
    within(killed + AT_ONCE, "the killed node's members have left the owner's list", || {
        let (_, body) = router_get(&cluster.routers[owner], &admin_presence);
        body["users"] == 2 && body["page"][0]["user"] == "bob" && body["page"][1]["user"] == "dave"
    });
    assert_eq!(presence(&mut asker, ROOM, "", 10), (2, 2, remaining.clone(), String::new()));

    // Node B frozen (SIGSTOP): its links stay open, but its registration
    // lapses, so the owner takes its members out of the list.
    let b = cluster.nodes[1].server.child.id() as i32;
    let frozen = Instant::now();
    assert_eq!(unsafe { libc::kill(b, libc::SIGSTOP) }, 0, "SIGSTOP node b");
    within(frozen + vanished_node_bound() + AT_ONCE, "a frozen node's members have left the owner's list", || {
        router_get(&cluster.routers[owner], &admin_presence).1["users"] == 0
    });
    // Back (SIGCONT): it finds its registration lost, registers again and
    // its shards report their members.
    assert_eq!(unsafe { libc::kill(b, libc::SIGCONT) }, 0, "SIGCONT node b");
    eventually("the node's members are back in the owner's list", || {
        router_get(&cluster.routers[owner], &admin_presence).1["users"] == 2
    });
    assert_eq!(presence(&mut asker, ROOM, "", 10), (2, 2, remaining, String::new()));
    // Bob's link stayed open: the leave events of the freeze reach him
    // first (his node held them), then the joins of who is back.
    let mut joins = Vec::new();
    while joins.len() < 2 {
        match next_presence_event(&mut bob) {
            (user, true) => joins.push(user),
            (user, false) => assert!(joins.is_empty(), "{user} left after the joins of the return"),
        }
    }
    joins.sort();
    assert_eq!(joins, vec!["bob".to_string(), "dave".to_string()], "members are told who is back");
}
