//! The Redis pub/sub adapter (RESP2): `PING` as the hello, `SUBSCRIBE`
//! (its confirmation array is the ack), `PUBLISH` (its integer reply is
//! ignored), and `message` arrays as deliveries. Publishers use their own
//! connections since a subscribed RESP2 connection cannot publish.

use super::{find_crlf, Adapter, Event};

/// Largest bulk string accepted.
const MAX_BULK: usize = 64 * 1024 * 1024;
/// Longest simple line accepted before the stream is declared broken.
const MAX_LINE: usize = 64 * 1024;

/// The Redis adapter.
pub struct Redis;

fn put_bulk(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

/// One RESP value, borrowing bulk strings.
#[derive(Debug)]
enum Value<'a> {
    Simple,
    Error(&'a [u8]),
    Bulk(&'a [u8]),
    Array(Vec<Value<'a>>),
}

/// Parses one value at the start of `buf`: `Ok(None)` when incomplete.
fn value(buf: &[u8], depth: usize) -> Result<Option<(Value<'_>, usize)>, String> {
    let Some(eol) = find_crlf(buf) else {
        return if buf.len() > MAX_LINE { Err("RESP line too long".into()) } else { Ok(None) };
    };
    let line = &buf[1..eol];
    let number = || -> Result<i64, String> {
        std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()).ok_or_else(|| "bad RESP number".to_string())
    };
    let after = eol + 2;
    match buf.first() {
        Some(b'+') | Some(b':') => Ok(Some((Value::Simple, after))),
        Some(b'-') => Ok(Some((Value::Error(line), after))),
        Some(b'$') => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Value::Simple, after)));
            }
            let len = len as usize;
            if len > MAX_BULK {
                return Err("RESP bulk string too large".into());
            }
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            Ok(Some((Value::Bulk(&buf[after..after + len]), after + len + 2)))
        }
        Some(b'*') if depth < 4 => {
            let n = number()?.clamp(0, 1024) as usize;
            let mut items = Vec::with_capacity(n.min(8));
            let mut at = after;
            for _ in 0..n {
                let Some((item, used)) = value(&buf[at..], depth + 1)? else { return Ok(None) };
                items.push(item);
                at += used;
            }
            Ok(Some((Value::Array(items), at)))
        }
        _ => Err(format!("unexpected RESP byte {:?}", buf.first())),
    }
}

impl Adapter for Redis {
    fn hello(&self, _g: usize, out: &mut Vec<u8>) -> Result<(), String> {
        self.heartbeat(out);
        Ok(())
    }

    fn subscribe(&self, room: &str, _since: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"*2\r\n");
        put_bulk(b"SUBSCRIBE", out);
        put_bulk(room.as_bytes(), out);
    }

    fn publish(&self, room: &str, payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(b"*3\r\n");
        put_bulk(b"PUBLISH", out);
        put_bulk(room.as_bytes(), out);
        put_bulk(payload, out);
    }

    fn heartbeat(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    }

    fn room_name(&self, room: usize) -> String {
        format!("bench.room.{room}")
    }

    fn parse(&self, buf: &[u8], on: &mut dyn FnMut(Event<'_>)) -> Result<usize, String> {
        let mut at = 0;
        while let Some((v, used)) = value(&buf[at..], 0)? {
            at += used;
            match v {
                Value::Array(items) => match items.as_slice() {
                    [Value::Bulk(kind), _, Value::Bulk(payload)] if kind.eq_ignore_ascii_case(b"message") => {
                        on(Event::Message { payload, position: 0 })
                    }
                    _ => on(Event::Ack),
                },
                Value::Error(e) => on(Event::Refused(String::from_utf8_lossy(e).into_owned())),
                Value::Simple | Value::Bulk(_) => on(Event::Ack),
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pong_subscribe_message_and_partial() {
        let wire = b"+PONG\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nr\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\nr\r\n$2\r\nhi\r\n*3\r\n$7\r\nmess";
        let mut seen = Vec::new();
        let used = Redis.parse(wire, &mut |e| seen.push(format!("{e:?}"))).unwrap();
        assert_eq!(seen, vec!["Ack", "Ack", "Message { payload: [104, 105], position: 0 }"]);
        assert_eq!(&wire[used..], b"*3\r\n$7\r\nmess");
    }

    #[test]
    fn errors_are_refusals_and_garbage_is_an_error() {
        let mut seen = Vec::new();
        Redis.parse(b"-ERR max number of clients reached\r\n", &mut |e| seen.push(format!("{e:?}"))).unwrap();
        assert_eq!(seen, vec!["Refused(\"ERR max number of clients reached\")"]);
        assert!(Redis.parse(b"?what\r\n", &mut |_| {}).is_err());
    }
}
