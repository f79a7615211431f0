//! Key layouts of the embedded store.
//!
//! Every key is a concatenation of fields, each encoded so that byte order
//! equals the natural order of the values and no field can run into the next:
//!
//! - a string is its UTF-8 bytes with every `0x00` escaped as `0x00 0xFF`,
//!   followed by the terminator `0x00 0x01`. After a `0x00` comes either
//!   `0xFF` (an escaped NUL inside the string) or `0x01` (its end), so the
//!   encoding is prefix-free (conv `"a"` followed by a seq can never read as
//!   conv `"a\0…"`), and since `0x01 < 0xFF` and the terminator sorts below
//!   any other byte that can follow, encoded strings sort exactly like the
//!   strings (`"a"` < `"a\0"` < `"a\x01"` < `"ab"`).
//! - a `u64` is its 8 big-endian bytes, so keys of one prefix sort by number.
//!
//! Layouts (see `docs/STORAGE.md`):
//!
//! | table | key | value |
//! |---|---|---|
//! | `timeline` | conv, seq | message |
//! | `inbox` | user, conv, seq | message |
//! | `dedup` | sender, client_msg_id | timeline key of the message |
//! | `conversations` | conv | last seq (u64 BE) |
//! | `user_conversations` | user, conv | last seq (u64 BE) |
//! | `cursors` | user, device, conv | seq (u64 BE) |
//! | `groups` | group | empty, or `[1]` once the group is read-fan-out |
//! | `group_members` | group, user | empty |
//! | `user_groups` | user, group | empty |
//! | `meta` | `"epoch"` | last epoch handed out (u64 BE) |
//! | `meta` | `"fence"`, conv | appends of conv below this seq fail (u64 BE) |

use crate::StoreError;

/// The key of the epoch counter in the `meta` table.
pub(crate) const EPOCH_KEY: &[u8] = b"epoch";

/// Byte that introduces an escape or a terminator inside an encoded string.
const ESCAPE: u8 = 0x00;
/// Follows [`ESCAPE`] for a NUL byte that is part of the string.
const ESCAPED_NUL: u8 = 0xFF;
/// Follows [`ESCAPE`] at the end of a string.
const TERMINATOR: u8 = 0x01;

/// Builds a key field by field.
#[derive(Debug, Default)]
pub(crate) struct KeyBuilder(Vec<u8>);

impl KeyBuilder {
    /// An empty key.
    pub(crate) fn new() -> Self {
        Self(Vec::with_capacity(48))
    }

    /// Appends an order-preserving, prefix-free string field.
    pub(crate) fn str(mut self, s: &str) -> Self {
        for &b in s.as_bytes() {
            if b == ESCAPE {
                self.0.extend_from_slice(&[ESCAPE, ESCAPED_NUL]);
            } else {
                self.0.push(b);
            }
        }
        self.0.extend_from_slice(&[ESCAPE, TERMINATOR]);
        self
    }

    /// Appends a big-endian `u64` field.
    pub(crate) fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// The finished key.
    pub(crate) fn build(self) -> Vec<u8> {
        self.0
    }
}

/// Reads the fields of a stored key back, failing with
/// [`StoreError::Internal`] on bytes no [`KeyBuilder`] produced.
#[derive(Debug)]
pub(crate) struct KeyReader<'a> {
    rest: &'a [u8],
}

impl<'a> KeyReader<'a> {
    /// Starts reading `key`.
    pub(crate) fn new(key: &'a [u8]) -> Self {
        Self { rest: key }
    }

    /// Skips `n` bytes already known to the caller (a scanned prefix).
    pub(crate) fn skip(mut self, n: usize) -> Result<Self, StoreError> {
        self.rest = self.rest.get(n..).ok_or_else(|| corrupt("key shorter than its prefix"))?;
        Ok(self)
    }

    /// Reads a string field.
    pub(crate) fn str(&mut self) -> Result<String, StoreError> {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            match self.rest.get(i) {
                None => return Err(corrupt("unterminated string field")),
                Some(&ESCAPE) => match self.rest.get(i + 1) {
                    Some(&ESCAPED_NUL) => {
                        out.push(0);
                        i += 2;
                    }
                    Some(&TERMINATOR) => {
                        self.rest = self.rest.get(i + 2..).unwrap_or_default();
                        return String::from_utf8(out).map_err(|_| corrupt("string field is not UTF-8"));
                    }
                    _ => return Err(corrupt("bad escape in string field")),
                },
                Some(&b) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
    }

    /// Reads a big-endian `u64` field (the store itself never needs to:
    /// seqs are read from values).
    #[cfg(test)]
    pub(crate) fn u64(&mut self) -> Result<u64, StoreError> {
        let (head, rest) = self.rest.split_first_chunk::<8>().ok_or_else(|| corrupt("truncated u64 field"))?;
        self.rest = rest;
        Ok(u64::from_be_bytes(*head))
    }

    /// Checks that the whole key was read.
    pub(crate) fn finish(self) -> Result<(), StoreError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(corrupt("trailing bytes after the last field"))
        }
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("corrupt key: {what}"))
}

/// `timeline`: conv, seq.
pub(crate) fn timeline(conv: &str, seq: u64) -> Vec<u8> {
    KeyBuilder::new().str(conv).u64(seq).build()
}

/// Prefix of every `timeline` key of `conv`.
#[cfg(test)]
pub(crate) fn timeline_prefix(conv: &str) -> Vec<u8> {
    KeyBuilder::new().str(conv).build()
}

/// `inbox`: user, conv, seq.
pub(crate) fn inbox(user: &str, conv: &str, seq: u64) -> Vec<u8> {
    KeyBuilder::new().str(user).str(conv).u64(seq).build()
}

/// `dedup`: sender, client_msg_id.
pub(crate) fn dedup(sender: &str, client_msg_id: u64) -> Vec<u8> {
    KeyBuilder::new().str(sender).u64(client_msg_id).build()
}

/// `conversations`: conv.
pub(crate) fn conversation(conv: &str) -> Vec<u8> {
    KeyBuilder::new().str(conv).build()
}

/// `user_conversations`: user, conv.
pub(crate) fn user_conversation(user: &str, conv: &str) -> Vec<u8> {
    KeyBuilder::new().str(user).str(conv).build()
}

/// `cursors`: user, device, conv.
pub(crate) fn cursor(user: &str, device: &str, conv: &str) -> Vec<u8> {
    KeyBuilder::new().str(user).str(device).str(conv).build()
}

/// Prefix of every `cursors` key of one device.
pub(crate) fn cursors_prefix(user: &str, device: &str) -> Vec<u8> {
    KeyBuilder::new().str(user).str(device).build()
}

/// `meta`: the fence of `conv`.
pub(crate) fn fence(conv: &str) -> Vec<u8> {
    KeyBuilder::new().str("fence").str(conv).build()
}

/// `groups`: group.
pub(crate) fn group(group: &str) -> Vec<u8> {
    KeyBuilder::new().str(group).build()
}

/// `group_members`: group, user.
pub(crate) fn group_member(group: &str, user: &str) -> Vec<u8> {
    KeyBuilder::new().str(group).str(user).build()
}

/// `user_groups`: user, group.
pub(crate) fn user_group(user: &str, group: &str) -> Vec<u8> {
    KeyBuilder::new().str(user).str(group).build()
}

/// Prefix of keys that start with one string field (`user_conversations`
/// and `user_groups` of a user, `group_members` of a group).
pub(crate) fn str_prefix(s: &str) -> Vec<u8> {
    KeyBuilder::new().str(s).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short strings over an alphabet that includes the escape bytes' neighbours.
    fn samples() -> Vec<String> {
        let alphabet = ["", "\0", "\x01", "a", "\u{7f}", "é"];
        let mut out = Vec::new();
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    out.push(format!("{a}{b}{c}"));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn strings_round_trip() {
        for s in samples() {
            let key = KeyBuilder::new().str(&s).u64(7).build();
            let mut r = KeyReader::new(&key);
            assert_eq!(r.str().unwrap(), s);
            assert_eq!(r.u64().unwrap(), 7);
            r.finish().unwrap();
        }
    }

    #[test]
    fn string_encoding_preserves_order() {
        let samples = samples();
        for a in &samples {
            for b in &samples {
                let ka = KeyBuilder::new().str(a).build();
                let kb = KeyBuilder::new().str(b).build();
                assert_eq!(a.cmp(b), ka.cmp(&kb), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn string_encoding_is_prefix_free() {
        let samples = samples();
        for a in &samples {
            for b in &samples {
                if a != b {
                    let ka = KeyBuilder::new().str(a).build();
                    let kb = KeyBuilder::new().str(b).build();
                    assert!(!kb.starts_with(&ka), "{a:?} is a prefix of {b:?}");
                }
            }
        }
    }

    #[test]
    fn conv_then_seq_cannot_collide_with_longer_conv() {
        // Every seq whose first byte could be mistaken for a continuation.
        for seq in [0, 1, u64::MAX, 0xFF00_0000_0000_0000, 0x0100_0000_0000_0000, 0x00FF_0000_0000_0000] {
            let short = timeline("a", seq);
            for long in ["a\0", "a\0b", "a\x01", "a\0\x01"] {
                for other_seq in [0, 1, seq, u64::MAX] {
                    assert_ne!(short, timeline(long, other_seq), "{seq:#x} vs {long:?}/{other_seq:#x}");
                }
                assert!(!timeline(long, 0).starts_with(&timeline_prefix("a")));
            }
            assert!(short.starts_with(&timeline_prefix("a")));
        }
    }

    #[test]
    fn seqs_sort_numerically_within_a_conversation() {
        let seqs = [0u64, 1, 255, 256, 1 << 40, (1 << 40) | 1, u64::MAX - 1, u64::MAX];
        let keys: Vec<_> = seqs.iter().map(|&s| timeline("conv", s)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        // And every key of a conversation sorts before the next conversation's.
        assert!(timeline("conv", u64::MAX) < timeline("conv\0", 0));
        assert!(timeline("conv", u64::MAX) < timeline("conva", 0));
    }

    #[test]
    fn compound_keys_round_trip() {
        let key = inbox("u\0ser", "d:a:b", 42);
        let mut r = KeyReader::new(&key);
        assert_eq!(r.str().unwrap(), "u\0ser");
        assert_eq!(r.str().unwrap(), "d:a:b");
        assert_eq!(r.u64().unwrap(), 42);
        r.finish().unwrap();

        let key = cursor("alice", "phone", "g:team");
        let mut r = KeyReader::new(&key).skip(cursors_prefix("alice", "phone").len()).unwrap();
        assert_eq!(r.str().unwrap(), "g:team");
        r.finish().unwrap();
    }

    #[test]
    fn malformed_keys_are_errors_not_panics() {
        for bad in [&b""[..], b"abc", b"a\0", b"a\0\x02", b"\xff\xfe\0\x01", b"a\0\x01\x00"] {
            let mut r = KeyReader::new(bad);
            let res = r.str().and_then(|_| r.u64());
            assert!(matches!(res, Err(StoreError::Internal(_))), "{bad:?}");
        }
        assert!(KeyReader::new(b"ab").skip(3).is_err());
        let mut r = KeyReader::new(b"a\0\x01z");
        r.str().unwrap();
        assert!(r.finish().is_err());
    }
}
