//! Persistent chat against the real server with the embedded store on disk:
//! offline delivery with UNREAD/SYNC/ACK, multi-device echo, idempotent
//! resends, small (write fan-out) and large (read fan-out) groups,
//! refusal of non-members, and of malformed conversation ids in the admin
//! history.

mod common;

use common::{token, Client, Reply, Server};
use corecast_proto::{ClientRequest, ErrorCode, PushKind};

fn send(client: &mut Client, kind: u8, to: &str, client_msg_id: u64, payload: &[u8]) -> (String, u64) {
    let rid = client.send(0, &ClientRequest::Send { kind, to, client_msg_id, payload });
    loop {
        match client.recv() {
            Reply::Sent { rid: got, conv, seq } if got == rid => return (conv, seq),
            Reply::Push(_) => continue,
            other => panic!("expected SENT for rid {rid}, got {other:?}"),
        }
    }
}

/// SYNCs a conversation from `after` and returns (seq, payload) pairs.
fn sync(client: &mut Client, conv: &str, after: u64) -> Vec<(u64, Vec<u8>)> {
    let rid = client.send(0, &ClientRequest::Sync { conv, after_seq: after, limit: 100 });
    let mut got = Vec::new();
    loop {
        match client.recv() {
            Reply::Push(p) if p.rid == rid => {
                assert_eq!(p.conv, conv);
                got.push((p.seq, p.payload));
            }
            Reply::SyncEnd { rid: r, last_seq, more, .. } if r == rid => {
                assert!(!more);
                assert_eq!(last_seq, got.last().map_or(after, |(seq, _)| *seq));
                return got;
            }
            other => panic!("unexpected {other:?} during SYNC"),
        }
    }
}

fn unread(client: &mut Client) -> Vec<(String, u64, u64)> {
    let rid = client.send(0, &ClientRequest::Unread);
    match client.recv() {
        Reply::Unread { rid: r, entries, .. } if r == rid => entries,
        other => panic!("expected UNREAD_LIST, got {other:?}"),
    }
}

fn expect_error(client: &mut Client, rid: u32, code: ErrorCode) {
    match client.recv() {
        Reply::Error { rid: r, code: c, .. } => assert_eq!((r, c), (rid, code.as_u16())),
        other => panic!("expected ERROR {code:?}, got {other:?}"),
    }
}

#[test]
fn offline_recipient_learns_of_unread_syncs_in_order_and_acks() {
    let server = Server::start(&[]);
    let (mut alice, _) = server.user("alice");
    let sent: Vec<(String, u64)> = (1..=3).map(|i| send(&mut alice, 2, "bob", i, format!("m{i}").as_bytes())).collect();
    let conv = sent[0].0.clone();
    assert!(sent.windows(2).all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1), "{sent:?}");

    let mut bob = server.connect();
    bob.auth_device(&token("bob", 3600, None), "phone");
    assert_eq!(unread(&mut bob), vec![(conv.clone(), sent[2].1, 0)]);
    let messages = sync(&mut bob, &conv, 0);
    let seqs: Vec<u64> = messages.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, sent.iter().map(|(_, s)| *s).collect::<Vec<_>>());
    assert_eq!(messages[2].1, b"m3");
    // Partial sync from a cursor.
    assert_eq!(sync(&mut bob, &conv, sent[0].1).len(), 2);
    bob.expect_ok(&ClientRequest::Ack { conv: &conv, seq: sent[2].1 });
    assert!(unread(&mut bob).is_empty());
    // Another device of bob has its own cursor.
    let mut tablet = server.connect();
    tablet.auth_device(&token("bob", 3600, None), "tablet");
    assert_eq!(unread(&mut tablet).len(), 1);
}

#[test]
fn online_devices_of_both_users_get_the_push_with_its_seq() {
    let server = Server::start(&[]);
    let (mut alice_phone, _) = server.user("alice");
    let (mut alice_laptop, _) = server.user("alice");
    let (mut bob, _) = server.user("bob");
    let (conv, seq) = send(&mut alice_phone, 2, "bob", 42, b"hi bob");
    for client in [&mut alice_laptop, &mut bob] {
        let push = client.next_push();
        assert_eq!(
            (push.kind, push.conv.as_str(), push.from.as_str(), push.seq),
            (PushKind::Direct, conv.as_str(), "alice", seq)
        );
        assert_eq!(push.payload, b"hi bob");
    }
    // The sending connection got SENT, not a PUSH of its own message.
    alice_phone.send(0, &ClientRequest::Ping);
    assert!(matches!(alice_phone.recv(), Reply::Pong { .. }));
    let presence = server.admin_get("/v1/admin/users/alice/presence");
    assert_eq!(presence["devices"].as_array().unwrap().len(), 2);
}

#[test]
fn resending_a_client_msg_id_returns_the_original_and_stores_nothing() {
    let server = Server::start(&[]);
    let (mut alice, _) = server.user("alice");
    let first = send(&mut alice, 2, "carol", 7, b"once");
    let again = send(&mut alice, 2, "carol", 7, b"once");
    assert_eq!(first, again);
    send(&mut alice, 2, "carol", 8, b"twice");
    let history = server.admin_get(&format!("/v1/admin/conversations/{}/messages", first.0));
    let ids: Vec<u64> =
        history["messages"].as_array().unwrap().iter().map(|m| m["client_msg_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![7, 8]);
}

fn group_scenario(server: &Server, group: &str) {
    let members = ["gail", "hank", "ivy"];
    let reply = server
        .admin_post_json("/v1/admin/groups", &format!(r#"{{"group":"{group}","members":["gail","hank","ivy"]}}"#));
    assert_eq!(reply["group"], group);
    let (mut gail, _) = server.user(members[0]);
    let (mut hank, _) = server.user(members[1]);
    let (conv, seq1) = send(&mut gail, 3, group, 1, b"hello group");
    let push = hank.next_push();
    assert_eq!((push.kind, push.conv.as_str(), push.seq), (PushKind::Group, conv.as_str(), seq1));
    let (_, seq2) = send(&mut hank, 3, group, 1, b"hi gail");
    assert_eq!(gail.next_push().seq, seq2);

    // ivy was offline: she sees the group unread and syncs both, in order.
    let (mut ivy, _) = server.user("ivy");
    assert_eq!(unread(&mut ivy), vec![(conv.clone(), seq2, 0)]);
    let got = sync(&mut ivy, &conv, 0);
    assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![seq1, seq2]);

    // A non-member can neither send nor sync.
    let (mut mallory, _) = server.user("mallory");
    let rid = mallory.send(0, &ClientRequest::Send { kind: 3, to: group, client_msg_id: 1, payload: b"spam" });
    expect_error(&mut mallory, rid, ErrorCode::Forbidden);
    let rid = mallory.send(0, &ClientRequest::Sync { conv: &conv, after_seq: 0, limit: 10 });
    expect_error(&mut mallory, rid, ErrorCode::Forbidden);
    // Nor read someone else's direct conversation.
    let (direct, _) = send(&mut gail, 2, "hank", 2, b"private");
    let rid = mallory.send(0, &ClientRequest::Sync { conv: &direct, after_seq: 0, limit: 10 });
    expect_error(&mut mallory, rid, ErrorCode::Forbidden);
}

#[test]
fn small_group_fans_out_on_write() {
    let server = Server::start(&["--small-group-limit", "200"]);
    group_scenario(&server, "book-club");
}

#[test]
fn large_group_fans_out_on_read() {
    // With a limit of 2, a 3-member group takes the read fan-out path.
    let server = Server::start(&["--small-group-limit", "2"]);
    group_scenario(&server, "town-hall");
}

#[test]
fn a_note_to_self_reaches_each_other_device_once() {
    let server = Server::start(&[]);
    let (mut phone, _) = server.user("alice");
    let (mut laptop, _) = server.user("alice");
    let (_, seq) = send(&mut phone, 2, "alice", 1, b"remember the milk");
    assert_eq!(laptop.next_push().seq, seq);
    // Exactly once: the next frame is the answer to this PING.
    let rid = laptop.send(0, &ClientRequest::Ping);
    assert_eq!(laptop.recv(), Reply::Pong { rid });
}

#[test]
fn ack_outside_ones_conversations_is_refused() {
    let server = Server::start(&[]);
    let (mut alice, _) = server.user("alice");
    let (conv, _) = send(&mut alice, 2, "bob", 1, b"hi");
    let (mut eve, _) = server.user("eve");
    let rid = eve.send(0, &ClientRequest::Ack { conv: &conv, seq: 1 << 60 });
    expect_error(&mut eve, rid, ErrorCode::Forbidden);
    let rid = eve.send(0, &ClientRequest::Ack { conv: "not-a-conversation", seq: 1 });
    expect_error(&mut eve, rid, ErrorCode::NotFound);
}

#[test]
fn unknown_group_and_bad_kind_are_refused() {
    let server = Server::start(&[]);
    let (mut alice, _) = server.user("alice");
    let rid = alice.send(0, &ClientRequest::Send { kind: 3, to: "nope", client_msg_id: 1, payload: b"x" });
    expect_error(&mut alice, rid, ErrorCode::NotFound);
    let rid = alice.send(0, &ClientRequest::Send { kind: 9, to: "bob", client_msg_id: 2, payload: b"x" });
    expect_error(&mut alice, rid, ErrorCode::LimitExceeded);
}

#[test]
fn admin_sends_as_a_user_and_manages_groups() {
    let server = Server::start(&[]);
    let (mut bob, _) = server.user("bob");
    let receipt = server.admin_post_json(
        "/v1/admin/messages",
        r#"{"from":"shop","kind":"direct","to":"bob","payload":"your order shipped"}"#,
    );
    let push = bob.next_push();
    assert_eq!((push.from.as_str(), push.seq), ("shop", receipt["seq"].as_u64().unwrap()));
    server.admin_post_json("/v1/admin/groups", r#"{"group":"ops","members":["a","b"]}"#);
    server.admin_post_json("/v1/admin/groups/ops/members", r#"{"add":["c"],"remove":["a"]}"#);
    assert_eq!(server.admin_get("/v1/admin/groups/ops")["members"], serde_json::json!(["b", "c"]));
    assert_eq!(server.admin_get("/v1/admin/groups")["groups"], serde_json::json!(["ops"]));
}

#[test]
fn admin_history_refuses_malformed_conversation_ids_and_says_why() {
    let server = Server::start(&[]);
    let history = |conv: &str| server.admin_get_status(&format!("/v1/admin/conversations/{conv}/messages"));
    for (conv, why) in [
        ("d:alice:shop", "'alice' is not the length of the first user id"),
        ("d:4:shopalice", "'shop' sorts after 'alice'; the lesser user id comes first"),
        ("d:40:aliceshop", "40 bytes do not split 'aliceshop' into two user ids"),
        ("alice", "must start with 'd:' (direct) or 'g:' (group)"),
        ("g:", "no group id after 'g:'"),
    ] {
        let (status, body) = history(conv);
        assert_eq!(status, 400, "{conv}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(&format!("conversation id '{conv}': {why}")), "{conv}: {error}");
    }
    // Well-formed ids without messages are empty, not errors.
    for conv in ["d:5:aliceshop", "g:nobody"] {
        assert_eq!(history(conv), (200, serde_json::json!({ "conv": conv, "messages": [] })), "{conv}");
    }
}

#[test]
fn unread_follows_a_group_that_grows_past_the_small_group_limit() {
    let server = Server::start(&["--small-group-limit", "3"]);
    server.admin_post_json("/v1/admin/groups", r#"{"group":"club","members":["ann","ben","cat"]}"#);
    let (mut ann, _) = server.user("ann");
    let (conv, _) = send(&mut ann, 3, "club", 1, b"while small");
    server.admin_post_json("/v1/admin/groups/club/members", r#"{"add":["dan"]}"#);
    let (_, seq) = send(&mut ann, 3, "club", 2, b"now large");
    let (mut cat, _) = server.user("cat");
    assert_eq!(unread(&mut cat), vec![(conv.clone(), seq, 0)]);
    let got = sync(&mut cat, &conv, 0);
    assert_eq!(got.last().map(|(s, _)| *s), Some(seq));
}

#[test]
fn a_group_that_was_large_keeps_every_message_readable_after_it_shrinks() {
    let server = Server::start(&["--small-group-limit", "3"]);
    let members = |change: &str| server.admin_post_json("/v1/admin/groups/club/members", change);
    server.admin_post_json("/v1/admin/groups", r#"{"group":"club","members":["ann","ben","cat"]}"#);
    let (mut ann, _) = server.user("ann");
    let (conv, small) = send(&mut ann, 3, "club", 1, b"small");
    members(r#"{"add":["dan"]}"#);
    let (_, large) = send(&mut ann, 3, "club", 2, b"large");
    members(r#"{"remove":["dan"]}"#);
    let (_, shrunk) = send(&mut ann, 3, "club", 3, b"shrunk");
    let (mut cat, _) = server.user("cat");
    let seqs = |got: Vec<(u64, Vec<u8>)>| got.into_iter().map(|(seq, _)| seq).collect::<Vec<_>>();
    assert_eq!(seqs(sync(&mut cat, &conv, 0)), vec![small, large, shrunk]);

    // It stays read-fanned-out: a member who joins now reads its history,
    // as in any large group.
    members(r#"{"remove":["ben"],"add":["eve"]}"#);
    let (_, later) = send(&mut ann, 3, "club", 4, b"later");
    let (mut eve, _) = server.user("eve");
    assert_eq!(seqs(sync(&mut eve, &conv, 0)), vec![small, large, shrunk, later]);
    assert_eq!(cat.next_push().seq, later, "cat, online, got it live");
    assert_eq!(seqs(sync(&mut cat, &conv, shrunk)), vec![later]);
}
