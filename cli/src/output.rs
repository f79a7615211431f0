//! How results reach stdout: a line of text for people, or with `--json`
//! one JSON object per line (each with a `type`) for scripts.

use std::fmt::Display;

use corecast_proto::{PushKind, ServerMessage};

/// Prints results in the format the user chose.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// One JSON object per line instead of text.
    pub json: bool,
}

impl Printer {
    /// Prints one result: `text`, or `json` with `--json`.
    pub fn emit(&self, text: impl Display, json: serde_json::Value) {
        if self.json {
            println!("{json}");
        } else {
            println!("{text}");
        }
    }

    /// Prints a PUSH: `[room] from: payload`, with the seq for stored
    /// messages. Any other message is ignored.
    pub fn push(&self, message: &ServerMessage<'_>) {
        let ServerMessage::Push { kind, conv, from, seq, ts_ms, payload } = message else { return };
        let payload = String::from_utf8_lossy(payload);
        let (kind, text) = match kind {
            PushKind::Room => ("room", format!("[{conv}] {from}: {payload}")),
            PushKind::Direct => ("direct", format!("[{conv} #{seq}] {from}: {payload}")),
            PushKind::Group => ("group", format!("[{conv} #{seq}] {from}: {payload}")),
            PushKind::Broadcast => ("broadcast", format!("[broadcast] {payload}")),
            PushKind::Presence => {
                let event = if payload == "\u{1}" { "joined" } else { "left" };
                ("presence", format!("[{conv}] {from} {event}"))
            }
        };
        let json = serde_json::json!({
            "type": "push", "kind": kind, "conv": conv, "from": from, "seq": seq, "ts_ms": ts_ms, "payload": payload,
        });
        self.emit(text, json);
    }
}
