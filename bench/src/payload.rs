//! The stamp every benchmark payload starts with, so a receiver can compute
//! end-to-end latency and detect loss without any side channel:
//! `magic "CCB1" | sent_ns u64 | publisher u32 | seq u64`, little-endian,
//! followed by filler up to the requested payload size. `sent_ns` is
//! [`crate::clock::now_ns`] of the sender; `seq` starts at 1 per publisher.

/// Bytes taken by the stamp; payloads are at least this long.
pub const STAMP_LEN: usize = 24;
const MAGIC: [u8; 4] = *b"CCB1";
/// Publisher id used by the parent for admin broadcasts.
pub const BROADCAST_PUBLISHER: u32 = u32::MAX;

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Sender's monotonic clock when the message was handed to its socket.
    pub sent_ns: u64,
    /// Global id of the publishing connection.
    pub publisher: u32,
    /// Per-publisher sequence number, from 1.
    pub seq: u64,
}

impl Stamp {
    /// Writes the stamp over the first [`STAMP_LEN`] bytes of `payload`
    /// (which must be at least that long; [`filler`] makes such buffers).
    pub fn write_into(&self, payload: &mut [u8]) {
        if payload.len() < STAMP_LEN {
            return;
        }
        payload[0..4].copy_from_slice(&MAGIC);
        payload[4..12].copy_from_slice(&self.sent_ns.to_le_bytes());
        payload[12..16].copy_from_slice(&self.publisher.to_le_bytes());
        payload[16..24].copy_from_slice(&self.seq.to_le_bytes());
    }

    /// Reads the stamp of a received payload; `None` for anything else.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let head = payload.get(..STAMP_LEN)?;
        if head[0..4] != MAGIC {
            return None;
        }
        Some(Stamp {
            sent_ns: u64::from_le_bytes(head[4..12].try_into().ok()?),
            publisher: u32::from_le_bytes(head[12..16].try_into().ok()?),
            seq: u64::from_le_bytes(head[16..24].try_into().ok()?),
        })
    }
}

/// A payload buffer of `len` bytes (at least [`STAMP_LEN`]) with printable filler.
pub fn filler(len: usize) -> Vec<u8> {
    (0..len.max(STAMP_LEN)).map(|i| b'a' + (i % 26) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_foreign_payloads_are_refused() {
        let mut buf = filler(100);
        let stamp = Stamp { sent_ns: 123_456_789, publisher: 7, seq: 42 };
        stamp.write_into(&mut buf);
        assert_eq!(buf.len(), 100);
        assert_eq!(Stamp::read(&buf), Some(stamp));
        assert_eq!(Stamp::read(&buf[..20]), None);
        assert_eq!(Stamp::read(b"hello world, this is not a stamp"), None);
    }

    #[test]
    fn filler_is_never_shorter_than_the_stamp() {
        assert_eq!(filler(3).len(), STAMP_LEN);
    }
}
