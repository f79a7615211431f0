//! Room streams on a single node with two shards, against the real server:
//! positions, gap-free recovery while publishers keep publishing on both
//! shards, recovery refused when the gap outruns the history or the owner
//! restarted, HISTORY, the budget's evictions, and presence with join and
//! leave events across shards.

mod common;

use std::collections::BTreeSet;
use std::thread;

use common::{AuthOk, Client, DataDir, Reply, Server};
use corecast_proto::{position_epoch, position_offset, ClientRequest, PushKind, PUBLISH_NO_REPLY};

/// Rules for these tests: a big history, a small one, presence.
const RULES: &str = r#"
publish_rate_per_sec = 100000
publish_burst = 100000
publish_bytes_per_sec = 100000000
publish_bytes_burst = 100000000

[[rooms]]
pattern = "live-*"
history_size = 5000

[[rooms]]
pattern = "small-*"
history_size = 5

[[rooms]]
pattern = "hall-*"
history_size = 10
presence = true
join_leave_events = true
"#;

/// Starts a server with [`RULES`] plus `extra` settings, its store in `dir`.
fn server_with_rules(dir: &DataDir, extra: &str) -> Server {
    let config = dir.0.join("rooms.toml");
    std::fs::write(&config, format!("{extra}\n{RULES}")).unwrap();
    Server::start(&["--config", config.to_str().unwrap()])
}

/// Connects users until both shards hold at least `per_shard`.
fn users_on_both_shards(server: &Server, prefix: &str, per_shard: usize) -> Vec<(Client, AuthOk)> {
    let mut clients: Vec<(Client, AuthOk)> = Vec::new();
    for i in 0..200 {
        let on = |s: u16| clients.iter().filter(|(_, ok)| ok.shard == s).count();
        if on(0) >= per_shard && on(1) >= per_shard {
            return clients;
        }
        clients.push(server.user(&format!("{prefix}{i}")));
    }
    panic!("the kernel never spread connections over both shards");
}

/// What a JOIN in a room with history got: the replayed pushes, then JOINED.
struct Joined {
    replayed: Vec<common::Push>,
    position: u64,
    recovered: bool,
}

/// Sends JOIN (with `since` when not 0) and reads up to its JOINED.
fn join_stream(client: &mut Client, room: &str, since: u64) -> Joined {
    let rid = client.send(0, &ClientRequest::Join { room, since });
    let mut replayed = Vec::new();
    loop {
        match client.recv() {
            Reply::Push(push) if push.conv == room => replayed.push(push),
            Reply::Push(_) => {}
            Reply::Joined { rid: got, position, recovered, .. } => {
                assert_eq!(got, rid);
                return Joined { replayed, position, recovered };
            }
            other => panic!("expected PUSH or JOINED, got {other:?}"),
        }
    }
}

/// Reads room pushes of `room` until one at offset `last`, returning the
/// offsets seen (other frames are skipped).
fn offsets_until(client: &mut Client, room: &str, last: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        match client.recv() {
            Reply::Push(push) if push.conv == room && push.kind == PushKind::Room => {
                let offset = position_offset(push.seq);
                seen.push(offset);
                if offset >= last {
                    return seen;
                }
            }
            Reply::Push(_) | Reply::Ok { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Publishes `count` messages to `room` from `client` without replies.
fn publish_many(client: &mut Client, room: &str, count: usize) {
    for n in 0..count {
        let payload = format!("m{n}");
        client.send(PUBLISH_NO_REPLY, &ClientRequest::Publish { room, payload: payload.as_bytes() });
    }
}

#[test]
fn messages_in_a_room_with_history_get_one_position_each_for_every_member() {
    let dir = DataDir::new();
    let server = server_with_rules(&dir, "");
    let mut clients = users_on_both_shards(&server, "pos", 2);
    let mut starts = Vec::new();
    for (client, _) in clients.iter_mut() {
        let joined = join_stream(client, "live-positions", 0);
        assert!(!joined.recovered, "nothing to recover without since");
        assert!(joined.replayed.is_empty());
        starts.push(joined.position);
    }
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "one stream: {starts:?}");
    assert_ne!(position_epoch(starts[0]), 0);
    // Both shards publish at once, many in flight.
    let (a, b) = (0, clients.iter().position(|(_, ok)| ok.shard != clients[0].1.shard).unwrap());
    publish_many(&mut clients[a].0, "live-positions", 200);
    publish_many(&mut clients[b].0, "live-positions", 200);
    let first = position_offset(starts[0]);
    for (client, ok) in clients.iter_mut() {
        let offsets = offsets_until(client, "live-positions", first + 400);
        let expected: Vec<u64> = (first + 1..=first + 400).collect();
        assert_eq!(offsets, expected, "shard {} member got a gap, a duplicate or disorder", ok.shard);
    }
}

#[test]
fn a_member_that_reconnects_gets_every_missed_message_once_and_in_order() {
    const TOTAL: u64 = 3_000;
    let dir = DataDir::new();
    let server = server_with_rules(&dir, "");
    let room = "live-recovery";
    let mut clients = users_on_both_shards(&server, "rec", 2);
    let mut epoch = 0;
    for (client, _) in clients.iter_mut() {
        epoch = position_epoch(join_stream(client, room, 0).position);
    }
    // A publisher on each shard keeps publishing while members drop and
    // come back.
    let on_shard = |clients: &Vec<(Client, AuthOk)>, shard: u16| clients.iter().position(|(_, ok)| ok.shard == shard);
    let first = clients.remove(on_shard(&clients, 0).unwrap());
    let second = clients.remove(on_shard(&clients, 1).unwrap());
    let handles: Vec<_> = [first, second]
        .into_iter()
        .map(|(mut client, _)| {
            thread::spawn(move || {
                publish_many(&mut client, room, TOTAL as usize / 2);
                // Kept open: closing with unread pushes would reset the
                // connection and lose its last frames in the server.
                client
            })
        })
        .collect();
    for (i, (member, ok)) in clients.iter_mut().enumerate() {
        // Read a while, then drop the connection mid-stream and come back
        // (on whichever shard the kernel picks) with the last position.
        let before = offsets_until(member, room, (200 + 300 * i as u64).min(TOTAL - 1));
        let last = *before.last().unwrap();
        let mut fresh = server.connect();
        fresh.auth(&common::token(&ok.user, 3600, None));
        *member = fresh;
        let joined = join_stream(member, room, corecast_proto::position(epoch, last));
        assert!(joined.recovered, "the history covers the gap");
        let mut all = before;
        all.extend(joined.replayed.iter().map(|p| position_offset(p.seq)));
        if position_offset(joined.position) < TOTAL {
            all.extend(offsets_until(member, room, TOTAL));
        }
        let expected: Vec<u64> = (1..=TOTAL).collect();
        assert_eq!(all.len(), expected.len(), "member {i}: lost or repeated messages");
        assert_eq!(all, expected, "member {i}: not every message exactly once, in order");
    }
    let _publishers: Vec<Client> = handles.into_iter().map(|h| h.join().unwrap()).collect();
}

#[test]
fn a_gap_longer_than_the_history_is_reported_not_recovered() {
    let dir = DataDir::new();
    let server = server_with_rules(&dir, "");
    let (mut member, _) = server.user("late");
    let (mut publisher, _) = server.user("talker");
    let start = join_stream(&mut member, "small-room", 0).position;
    join_stream(&mut publisher, "small-room", 0);
    drop(member);
    publish_many(&mut publisher, "small-room", 12);
    let top = *offsets_until(&mut publisher, "small-room", position_offset(start) + 12).last().unwrap();
    let (mut back, _) = server.user("late");
    let joined = join_stream(&mut back, "small-room", start);
    assert!(!joined.recovered, "7 of the 12 missed messages are gone");
    assert!(joined.replayed.is_empty(), "nothing is replayed when recovery fails");
    assert_eq!(position_offset(joined.position), top);
    assert_eq!(position_epoch(joined.position), position_epoch(start));
    // Within the history it works again.
    let (mut other, _) = server.user("other");
    let since = corecast_proto::position(position_epoch(start), top - 3);
    let joined = join_stream(&mut other, "small-room", since);
    assert!(joined.recovered);
    let replayed: Vec<u64> = joined.replayed.iter().map(|p| position_offset(p.seq)).collect();
    assert_eq!(replayed, vec![top - 2, top - 1, top]);
}

#[test]
fn history_pages_through_the_backlog_with_the_request_rid() {
    let dir = DataDir::new();
    let server = server_with_rules(&dir, "");
    let (mut client, _) = server.user("reader");
    let start = join_stream(&mut client, "live-backlog", 0).position;
    publish_many(&mut client, "live-backlog", 30);
    offsets_until(&mut client, "live-backlog", position_offset(start) + 30);
    let history = |client: &mut Client, since: u64, limit: u16| {
        let rid = client.send(0, &ClientRequest::History { room: "live-backlog", since, limit });
        let mut offsets = Vec::new();
        loop {
            match client.recv() {
                Reply::Push(push) => {
                    assert_eq!(push.rid, rid, "history pushes carry the request's rid");
                    offsets.push(position_offset(push.seq));
                }
                Reply::HistoryEnd { rid: got, complete, position, .. } => {
                    assert_eq!(got, rid);
                    return (offsets, complete, position);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    let (newest, complete, position) = history(&mut client, 0, 10);
    assert_eq!(newest, (21..=30).collect::<Vec<u64>>());
    assert!(complete, "the history still holds the first message");
    assert_eq!(position_offset(position), 30);
    let since = corecast_proto::position(position_epoch(start), 5);
    let (page, complete, _) = history(&mut client, since, 10);
    assert_eq!(page, (6..=15).collect::<Vec<u64>>());
    assert!(complete);
    // A plain room has no history.
    let rid = client.send(0, &ClientRequest::History { room: "lobby", since: 0, limit: 10 });
    match client.recv() {
        Reply::Error { rid: got, code, .. } => {
            assert_eq!((got, code), (rid, corecast_proto::ErrorCode::NotFound.as_u16()));
        }
        other => panic!("expected ERROR not_found, got {other:?}"),
    }
}

#[test]
fn a_restarted_owner_starts_a_new_epoch_and_says_recovery_failed() {
    let dir = DataDir::new();
    let mut server = server_with_rules(&dir, "");
    let (mut client, _) = server.user("survivor");
    let start = join_stream(&mut client, "live-restart", 0).position;
    publish_many(&mut client, "live-restart", 3);
    let last = *offsets_until(&mut client, "live-restart", position_offset(start) + 3).last().unwrap();
    server.kill();
    let server = server_with_rules(&dir, "");
    let (mut back, _) = server.user("survivor");
    let joined = join_stream(&mut back, "live-restart", corecast_proto::position(position_epoch(start), last));
    assert!(!joined.recovered, "the history died with the process");
    assert_ne!(position_epoch(joined.position), position_epoch(start), "a new epoch tells clients");
}

#[test]
fn the_budget_evicts_whole_histories_and_moves_their_epoch_on() {
    let dir = DataDir::new();
    // 4,000 bytes for two shards: each holds about three 500-byte messages.
    let server = server_with_rules(&dir, "room_history_budget_bytes = 4000");
    let (mut client, _) = server.user("filler");
    let payload = vec![b'x'; 500];
    let first = join_stream(&mut client, "live-evicted", 0).position;
    client.send(PUBLISH_NO_REPLY, &ClientRequest::Publish { room: "live-evicted", payload: &payload });
    let kept = *offsets_until(&mut client, "live-evicted", position_offset(first) + 1).last().unwrap();
    for r in 0..20 {
        let room = format!("live-filler-{r}");
        let start = join_stream(&mut client, &room, 0).position;
        for _ in 0..3 {
            client.send(PUBLISH_NO_REPLY, &ClientRequest::Publish { room: &room, payload: &payload });
        }
        offsets_until(&mut client, &room, position_offset(start) + 3);
    }
    assert!(server.metric_sum("corecast_room_history_evictions_total") > 0.0);
    let (mut back, _) = server.user("back");
    let joined = join_stream(&mut back, "live-evicted", corecast_proto::position(position_epoch(first), kept));
    assert!(!joined.recovered, "its history was evicted");
    assert_ne!(position_epoch(joined.position), position_epoch(first));
}

#[test]
fn presence_lists_members_of_both_shards_and_events_reach_members() {
    let dir = DataDir::new();
    let server = server_with_rules(&dir, "");
    let room = "hall-presence";
    let mut clients = users_on_both_shards(&server, "guest", 2);
    for (client, _) in clients.iter_mut() {
        join_stream(client, room, 0);
    }
    let users: BTreeSet<String> = clients.iter().map(|(_, ok)| ok.user.clone()).collect();
    // Everyone's list, asked from a member on each shard.
    for (client, _) in clients.iter_mut() {
        let rid = client.send(0, &ClientRequest::Presence { room, after: "", limit: 100 });
        let listed = loop {
            match client.recv() {
                Reply::Presence { rid: got, users, conns, entries, next } if got == rid => {
                    assert_eq!((users as usize, conns as usize), (entries.len(), entries.len()));
                    assert_eq!(next, "");
                    break entries.into_iter().map(|(user, _)| user).collect::<BTreeSet<_>>();
                }
                Reply::Push(push) if push.kind == PushKind::Presence => {}
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(listed, users);
    }
    let admin = server.admin_get(&format!("/v1/admin/rooms/{room}/presence?limit=1"));
    assert_eq!(admin["users"], users.len());
    assert_eq!(admin["page"].as_array().unwrap().len(), 1);
    assert_eq!(admin["next"], *users.iter().next().unwrap());
    // A newcomer's join and a leaver's leave reach a member on each shard.
    let (mut newcomer, _) = server.user("newcomer");
    join_stream(&mut newcomer, room, 0);
    let leaver = clients.pop().unwrap();
    let leaver_user = leaver.1.user.clone();
    drop(leaver);
    for (client, ok) in clients.iter_mut() {
        let mut events = BTreeSet::new();
        while events.len() < 2 {
            match client.recv() {
                Reply::Push(push) if push.kind == PushKind::Presence => {
                    events.insert((push.from.clone(), push.payload.clone()));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let expected: BTreeSet<(String, Vec<u8>)> =
            [("newcomer".to_string(), vec![1]), (leaver_user.clone(), vec![0])].into();
        assert_eq!(events, expected, "member on shard {}", ok.shard);
    }
    let admin = server.admin_get(&format!("/v1/admin/rooms/{room}/presence"));
    assert_eq!(admin["users"], users.len(), "one joined, one left");
}
