//! The NATS adapter (core NATS text protocol): `CONNECT` + `PING` as the
//! hello (the `PONG` proves the connection is accepted), `SUB` + `PING`
//! (the `PONG` proves the subscription is in place), `PUB`, and `MSG` as
//! deliveries. Server `PING`s are answered with `PONG`; `INFO` and `+OK`
//! are ignored; `-ERR` is a refusal. Publishers do not subscribe.

use super::{find_crlf, Adapter, Event};

/// Longest control line accepted before the stream is declared broken.
const MAX_CONTROL_LINE: usize = 64 * 1024;
/// Largest message payload accepted.
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// The NATS adapter.
pub struct Nats;

impl Adapter for Nats {
    fn hello(&self, _g: usize, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(
            br#"CONNECT {"verbose":false,"pedantic":false,"echo":false,"name":"corecast-bench","lang":"rust","version":"0.1.0","protocol":1}"#,
        );
        out.extend_from_slice(b"\r\nPING\r\n");
        Ok(())
    }

    fn subscribe(&self, room: &str, _since: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("SUB {room} 1\r\nPING\r\n").as_bytes());
    }

    fn publish(&self, room: &str, payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(b"PUB ");
        out.extend_from_slice(room.as_bytes());
        out.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
    }

    fn heartbeat(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"PING\r\n");
    }

    fn pong(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"PONG\r\n");
    }

    fn room_name(&self, room: usize) -> String {
        format!("bench.room.{room}")
    }

    fn parse(&self, buf: &[u8], on: &mut dyn FnMut(Event<'_>)) -> Result<usize, String> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            let Some(eol) = find_crlf(rest) else {
                if rest.len() > MAX_CONTROL_LINE {
                    return Err("NATS control line too long".into());
                }
                return Ok(at);
            };
            let line = &rest[..eol];
            let op_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
            let op = line[..op_end].to_ascii_uppercase();
            match op.as_slice() {
                b"MSG" => {
                    // MSG <subject> <sid> [reply-to] <#bytes>
                    let len_field = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
                    let len: usize = std::str::from_utf8(len_field)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .filter(|&n| n <= MAX_PAYLOAD)
                        .ok_or_else(|| format!("bad MSG line: {}", String::from_utf8_lossy(line)))?;
                    let start = eol + 2;
                    if rest.len() < start + len + 2 {
                        return Ok(at);
                    }
                    on(Event::Message { payload: &rest[start..start + len], position: 0 });
                    at += start + len + 2;
                }
                b"PING" => {
                    on(Event::ServerPing);
                    at += eol + 2;
                }
                b"PONG" => {
                    on(Event::Ack);
                    at += eol + 2;
                }
                b"INFO" | b"+OK" => at += eol + 2,
                b"-ERR" => {
                    on(Event::Refused(String::from_utf8_lossy(line).into_owned()));
                    at += eol + 2;
                }
                _ => return Err(format!("unexpected NATS line: {}", String::from_utf8_lossy(line))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(wire: &[u8]) -> (usize, Vec<String>) {
        let mut seen = Vec::new();
        let used = Nats.parse(wire, &mut |e| seen.push(format!("{e:?}"))).unwrap();
        (used, seen)
    }

    #[test]
    fn parses_info_pong_msg_and_ping() {
        let wire = b"INFO {\"x\":1}\r\nPONG\r\nMSG a.b 1 5\r\nhe\r\no\r\nPING\r\nMSG a 1 3\r\nab";
        let (used, seen) = events(wire);
        assert_eq!(seen, vec!["Ack", "Message { payload: [104, 101, 13, 10, 111], position: 0 }", "ServerPing"]);
        assert_eq!(&wire[used..], b"MSG a 1 3\r\nab");
    }

    #[test]
    fn msg_with_reply_subject_and_errors() {
        let (_, seen) = events(b"MSG s 1 inbox.x 2\r\nhi\r\n-ERR 'Authorization Violation'\r\n");
        assert_eq!(
            seen,
            vec!["Message { payload: [104, 105], position: 0 }", "Refused(\"-ERR 'Authorization Violation'\")"]
        );
        assert!(Nats.parse(b"MSG s 1 x\r\n", &mut |_| {}).is_err());
        assert!(Nats.parse(b"WHAT\r\n", &mut |_| {}).is_err());
    }
}
