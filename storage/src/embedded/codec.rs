//! Value encodings of the embedded store.
//!
//! A message is stored as one format byte ([`MESSAGE_FORMAT`]) followed by
//! the `postcard` encoding of [`StoredMessage`]. postcard is a well-kept
//! serde codec with a frozen, documented wire format (1.x): varint integers
//! and length-prefixed strings and bytes, so a small chat message costs a few
//! bytes of framing, and decoding a malformed value is an error, never a
//! panic. The format byte lets a later release change the layout and still
//! read old data. Counters (last seq, cursors, the epoch) are 8 big-endian
//! bytes, the same as in keys.

use crate::{StoreError, StoredMessage};

/// Format byte of the current message encoding.
pub(crate) const MESSAGE_FORMAT: u8 = 1;

/// Encodes a message for the `timeline` and `inbox` tables.
pub(crate) fn encode_message(message: &StoredMessage) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(message.payload.len() + message.conv.len() + message.sender.len() + 32);
    out.push(MESSAGE_FORMAT);
    postcard::to_io(message, &mut out).map_err(|e| StoreError::Internal(format!("encoding a message: {e}")))?;
    Ok(out)
}

/// Decodes a stored message.
pub(crate) fn decode_message(bytes: &[u8]) -> Result<StoredMessage, StoreError> {
    match bytes.split_first() {
        Some((&MESSAGE_FORMAT, body)) => {
            postcard::from_bytes(body).map_err(|e| StoreError::Internal(format!("corrupt stored message: {e}")))
        }
        Some((format, _)) => Err(StoreError::Internal(format!("stored message has unknown format {format}"))),
        None => Err(StoreError::Internal("stored message is empty".into())),
    }
}

/// Encodes a counter value.
pub(crate) fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Decodes a counter value.
pub(crate) fn decode_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Internal(format!("corrupt counter: {} bytes, expected 8", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> StoredMessage {
        StoredMessage {
            conv: "d:alice:bob".into(),
            seq: (3 << 40) | 17,
            sender: "alice".into(),
            client_msg_id: u64::MAX,
            ts_ms: 1_700_000_000_000,
            kind: 2,
            payload: b"hello \0 bob".to_vec(),
        }
    }

    #[test]
    fn message_round_trips_compactly() {
        let m = message();
        let bytes = encode_message(&m).unwrap();
        assert_eq!(decode_message(&bytes).unwrap(), m);
        let text = m.conv.len() + m.sender.len() + m.payload.len();
        assert!(bytes.len() < text + 32, "{} bytes for {text} bytes of text", bytes.len());
    }

    #[test]
    fn corrupt_messages_are_errors() {
        let bytes = encode_message(&message()).unwrap();
        assert!(decode_message(&[]).is_err());
        assert!(decode_message(&[9, 1, 2]).is_err());
        for cut in 1..bytes.len() {
            assert!(matches!(decode_message(&bytes[..cut]), Err(StoreError::Internal(_))), "cut at {cut}");
        }
    }

    #[test]
    fn counters_round_trip_and_reject_bad_lengths() {
        assert_eq!(decode_u64(&encode_u64(0xDEAD_BEEF)).unwrap(), 0xDEAD_BEEF);
        assert!(decode_u64(&[1, 2, 3]).is_err());
    }
}
