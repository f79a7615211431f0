//! The MQTT 3.1.1 adapter, QoS 0 only: CONNECT (clean session, keep-alive
//! twice the heartbeat) answered by CONNACK, SUBSCRIBE answered by SUBACK,
//! PUBLISH both ways, PINGREQ answered by PINGRESP. Topics are
//! `bench/room/N`. Publishers do not subscribe.

use super::{Adapter, Event};

/// Largest packet accepted (remaining length).
const MAX_PACKET: usize = 64 * 1024 * 1024;

/// The MQTT adapter.
pub struct Mqtt {
    run_id: String,
    keep_alive_s: u16,
}

impl Mqtt {
    /// Client ids are `{run_id}-{g}`; keep-alive is twice `heartbeat_ms`.
    pub fn new(run_id: &str, heartbeat_ms: u64) -> Mqtt {
        let keep_alive_s = (heartbeat_ms.saturating_mul(2) / 1000).clamp(1, u16::MAX as u64) as u16;
        Mqtt { run_id: run_id.to_string(), keep_alive_s }
    }
}

fn put_remaining_len(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return;
        }
    }
}

fn put_str(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&s[..s.len().min(u16::MAX as usize)]);
}

/// Reads a remaining-length varint: `Ok(None)` when more bytes are needed.
fn remaining_len(buf: &[u8]) -> Result<Option<(usize, usize)>, String> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else { return Ok(None) };
        value += ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err("MQTT remaining length longer than 4 bytes".into())
}

impl Adapter for Mqtt {
    fn hello(&self, g: usize, out: &mut Vec<u8>) -> Result<(), String> {
        let client_id = format!("{}-{g}", self.run_id);
        out.push(0x10);
        put_remaining_len(10 + 2 + client_id.len(), out);
        put_str(b"MQTT", out);
        out.push(4); // protocol level 3.1.1
        out.push(0x02); // clean session
        out.extend_from_slice(&self.keep_alive_s.to_be_bytes());
        put_str(client_id.as_bytes(), out);
        Ok(())
    }

    fn subscribe(&self, room: &str, _since: u64, out: &mut Vec<u8>) {
        out.push(0x82);
        put_remaining_len(2 + 2 + room.len() + 1, out);
        out.extend_from_slice(&1u16.to_be_bytes()); // packet id
        put_str(room.as_bytes(), out);
        out.push(0); // QoS 0
    }

    fn publish(&self, room: &str, payload: &[u8], out: &mut Vec<u8>) {
        out.push(0x30);
        put_remaining_len(2 + room.len() + payload.len(), out);
        put_str(room.as_bytes(), out);
        out.extend_from_slice(payload);
    }

    fn heartbeat_while_subscribing(&self) -> bool {
        true
    }

    fn heartbeat(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0xc0, 0x00]);
    }

    fn room_name(&self, room: usize) -> String {
        format!("bench/room/{room}")
    }

    fn parse(&self, buf: &[u8], on: &mut dyn FnMut(Event<'_>)) -> Result<usize, String> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            let Some(&first) = rest.first() else { return Ok(at) };
            let Some((len, len_bytes)) = remaining_len(&rest[1..])? else { return Ok(at) };
            if len > MAX_PACKET {
                return Err(format!("MQTT packet of {len} bytes"));
            }
            let start = 1 + len_bytes;
            if rest.len() < start + len {
                return Ok(at);
            }
            let body = &rest[start..start + len];
            match first >> 4 {
                2 => match body.get(1) {
                    Some(0) => on(Event::Ack),
                    Some(rc) => on(Event::Refused(format!("CONNACK return code {rc}"))),
                    None => return Err("short CONNACK".into()),
                },
                9 => match body.get(2) {
                    Some(0x80) => on(Event::Refused("SUBACK failure".into())),
                    Some(_) => on(Event::Ack),
                    None => return Err("short SUBACK".into()),
                },
                13 => on(Event::Pong),
                3 => {
                    let qos = (first >> 1) & 3;
                    let topic_len = body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize);
                    let skip = topic_len.map(|t| 2 + t + if qos > 0 { 2 } else { 0 });
                    match skip.and_then(|s| body.get(s..)) {
                        Some(payload) => on(Event::Message { payload, position: 0 }),
                        None => return Err("short PUBLISH".into()),
                    }
                }
                _ => {}
            }
            at += start + len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_round_trips() {
        for len in [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
            let mut out = Vec::new();
            put_remaining_len(len, &mut out);
            assert_eq!(remaining_len(&out).unwrap(), Some((len, out.len())));
        }
        assert_eq!(remaining_len(&[0x80]).unwrap(), None);
        assert!(remaining_len(&[0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    }

    #[test]
    fn parses_connack_suback_publish_and_partial() {
        let adapter = Mqtt::new("t", 15_000);
        let mut wire = vec![0x20, 2, 0, 0, 0x90, 3, 0, 1, 0];
        adapter.publish("bench/room/0", b"hello", &mut wire);
        wire.extend_from_slice(&[0x20, 2, 0, 5, 0x30]);
        let mut seen = Vec::new();
        let used = adapter.parse(&wire, &mut |e| seen.push(format!("{e:?}"))).unwrap();
        assert_eq!(seen[..3], ["Ack", "Ack", "Message { payload: [104, 101, 108, 108, 111], position: 0 }"]);
        assert_eq!(seen[3], "Refused(\"CONNACK return code 5\")");
        assert_eq!(used, wire.len() - 1);
    }
}
