//! Persistent chat: `send` stores a direct message and prints its SENT,
//! `sync` prints a conversation's stored messages batch by batch until the
//! last SYNC_END, `unread` prints the UNREAD_LIST.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use anyhow::{bail, Result};
use corecast_proto::{ClientRequest, PushKind, ServerMessage};

use crate::conn::Conn;
use crate::output::Printer;

/// SEND kind of a direct message.
const DIRECT: u8 = PushKind::Direct as u8;
/// Messages asked for per SYNC (the server's cap).
const SYNC_BATCH: u16 = 200;

/// Sends `message` to user `to` and prints the conversation and seq.
pub fn send(conn: &mut Conn, out: Printer, to: &str, message: &str) -> Result<()> {
    // A fresh random idempotency key per invocation (PROTOCOL.md §10.3).
    let client_msg_id = RandomState::new().hash_one(message);
    let request = ClientRequest::Send { kind: DIRECT, to, client_msg_id, payload: message.as_bytes() };
    match conn.call(0, &request)?.get().message {
        ServerMessage::Sent { conv, seq, ts_ms } => {
            let json = serde_json::json!({ "type": "sent", "conv": conv, "seq": seq, "ts_ms": ts_ms });
            out.emit(format!("sent {conv} #{seq}"), json);
            Ok(())
        }
        other => bail!("unexpected answer to SEND: {other:?}"),
    }
}

/// Prints the messages of `conv` after seq `after`, all of them.
pub fn sync(conn: &mut Conn, out: Printer, conv: &str, mut after: u64) -> Result<()> {
    loop {
        let rid = conn.request(0, &ClientRequest::Sync { conv, after_seq: after, limit: SYNC_BATCH })?;
        loop {
            let frame = conn.reply(rid)?;
            match frame.get().message {
                message @ ServerMessage::Push { .. } => out.push(&message),
                ServerMessage::SyncEnd { last_seq, more: true, .. } => {
                    after = last_seq;
                    break;
                }
                ServerMessage::SyncEnd { .. } => return Ok(()),
                other => bail!("unexpected answer to SYNC: {other:?}"),
            }
        }
    }
}

/// Prints the conversations with messages past this device's cursors.
pub fn unread(conn: &mut Conn, out: Printer) -> Result<()> {
    let frame = conn.call(0, &ClientRequest::Unread)?;
    let ServerMessage::UnreadList { entries, more } = frame.get().message else {
        bail!("unexpected answer to UNREAD: {:?}", frame.get().message);
    };
    for entry in entries {
        let json = serde_json::json!({
            "type": "unread", "conv": entry.conv, "last_seq": entry.last_seq, "read_seq": entry.read_seq,
        });
        out.emit(format!("{} last_seq={} read_seq={}", entry.conv, entry.last_seq, entry.read_seq), json);
    }
    if more {
        eprintln!("more conversations are unread than one answer lists");
    }
    Ok(())
}
