//! Rooms: `sub` joins rooms and prints what is published to them; `pub`
//! joins a room (PUBLISH requires membership) and publishes to it, without
//! the message echoed back; `history` prints a room's stored messages and
//! `presence` who is in it (rooms the server's `[[rooms]]` rules give a
//! history or presence).

use std::collections::HashSet;

use anyhow::{bail, Result};
use corecast_proto::{ClientRequest, PushKind, ServerMessage, PUBLISH_EXCLUDE_SELF};

use crate::conn::Conn;
use crate::output::Printer;

/// Joins `rooms` and prints each PUSH until `count` messages have arrived
/// (forever without one; presence events are printed but not counted).
/// Says on stderr once every JOIN is in effect.
pub fn sub(conn: &mut Conn, out: Printer, rooms: &[String], count: Option<u64>) -> Result<()> {
    let mut joining = HashSet::new();
    for room in rooms {
        joining.insert(conn.request(0, &ClientRequest::Join { room, since: 0 })?);
    }
    let mut received = 0;
    while count.is_none_or(|count| received < count) {
        let frame = conn.next()?;
        let frame = frame.get();
        match frame.message {
            ServerMessage::Push { kind, .. } => {
                out.push(&frame.message);
                if kind != PushKind::Presence {
                    received += 1;
                }
            }
            ServerMessage::Ok | ServerMessage::Joined { .. } if joining.remove(&frame.rid) && joining.is_empty() => {
                eprintln!("listening on {}", rooms.join(", "));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Publishes `message` to `room`; returns once the server said OK.
pub fn publish(conn: &mut Conn, out: Printer, room: &str, message: &str) -> Result<()> {
    expect_ok(conn, 0, &ClientRequest::Join { room, since: 0 })?;
    let payload = message.as_bytes();
    expect_ok(conn, PUBLISH_EXCLUDE_SELF, &ClientRequest::Publish { room, payload })?;
    let json = serde_json::json!({ "type": "published", "room": room, "bytes": payload.len() });
    out.emit(format!("published {} bytes to {room}", payload.len()), json);
    Ok(())
}

/// Prints up to `limit` of `room`'s newest stored messages, oldest first,
/// and says on stderr whether the history still reaches back to the
/// room's first message.
pub fn history(conn: &mut Conn, out: Printer, room: &str, limit: u16) -> Result<()> {
    let rid = conn.request(0, &ClientRequest::History { room, since: 0, limit })?;
    loop {
        let frame = conn.reply(rid)?;
        let frame = frame.get();
        match frame.message {
            ServerMessage::Push { .. } => out.push(&frame.message),
            ServerMessage::HistoryEnd { position, complete, .. } => {
                let whole = if complete { "the whole history" } else { "older messages are gone" };
                eprintln!("{room} at position {position} ({whole})");
                return Ok(());
            }
            other => bail!("unexpected answer to HISTORY: {other:?}"),
        }
    }
}

/// Prints who is in `room`: a line per user with their connections, every
/// page of it, then the totals.
pub fn presence(conn: &mut Conn, out: Printer, room: &str) -> Result<()> {
    let mut after = String::new();
    loop {
        let frame = conn.call(0, &ClientRequest::Presence { room, after: &after, limit: 1_000 })?;
        let ServerMessage::PresenceList { users, conns, entries, next, .. } = frame.get().message else {
            bail!("unexpected answer to PRESENCE: {:?}", frame.get().message);
        };
        for entry in &entries {
            let json =
                serde_json::json!({ "type": "member", "room": room, "user": entry.user, "connections": entry.devices });
            out.emit(format!("{} ({} connections)", entry.user, entry.devices), json);
        }
        if next.is_empty() {
            let json = serde_json::json!({ "type": "presence", "room": room, "users": users, "connections": conns });
            out.emit(format!("{room}: {users} users, {conns} connections"), json);
            return Ok(());
        }
        after = next.to_string();
    }
}

fn expect_ok(conn: &mut Conn, flags: u16, request: &ClientRequest<'_>) -> Result<()> {
    match conn.call(flags, request)?.get().message {
        // JOIN of a room with history is answered JOINED.
        ServerMessage::Ok | ServerMessage::Joined { .. } => Ok(()),
        other => bail!("unexpected answer to {request:?}: {other:?}"),
    }
}
