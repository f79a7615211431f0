//! Ephemeral rooms: `sub` joins rooms and prints what is published to
//! them; `pub` joins a room (PUBLISH requires membership) and publishes to
//! it, without the message echoed back.

use std::collections::HashSet;

use anyhow::{bail, Result};
use corecast_proto::{ClientRequest, ServerMessage, PUBLISH_EXCLUDE_SELF};

use crate::conn::Conn;
use crate::output::Printer;

/// Joins `rooms` and prints each PUSH until `count` have arrived (forever
/// without one). Says on stderr once every JOIN is in effect.
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
            ServerMessage::Push { .. } => {
                out.push(&frame.message);
                received += 1;
            }
            ServerMessage::Ok if joining.remove(&frame.rid) && joining.is_empty() => {
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

fn expect_ok(conn: &mut Conn, flags: u16, request: &ClientRequest<'_>) -> Result<()> {
    match conn.call(flags, request)?.get().message {
        ServerMessage::Ok => Ok(()),
        other => bail!("unexpected answer to {request:?}: {other:?}"),
    }
}
