//! The frame header and the length check that runs before any allocation.
//!
//! Every frame starts with `len u32 | ver u8 | op u8 | flags u16 | rid u32`,
//! big-endian, where `len` counts the whole frame including the header.
//! [`peek_frame`] looks at the bytes received so far and says whether a whole
//! frame is there, how many bytes are still missing, or that the stream is
//! broken (bad length, too large, wrong version); it reads the length from
//! the first four bytes so an oversized frame is refused before its body is
//! buffered.

use thiserror::Error;

use crate::error_code::ErrorCode;

/// Size of the fixed frame header in bytes.
pub const HEADER_LEN: usize = 12;
/// The only protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Default largest frame (header included) a peer may send: 64 KiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 64 * 1024;

/// The fixed 12-byte header of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Length of the whole frame, header included.
    pub len: u32,
    /// Protocol version, always [`VERSION`] on frames this crate accepts.
    pub ver: u8,
    /// Operation code.
    pub op: u8,
    /// Per-op flag bits.
    pub flags: u16,
    /// Request id chosen by the client and echoed in the reply; 0 on pushes.
    pub rid: u32,
}

impl Header {
    /// Reads a header from the first [`HEADER_LEN`] bytes, without checks.
    /// Returns `None` when fewer bytes are given.
    pub fn read(buf: &[u8]) -> Option<Header> {
        let b: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header {
            len: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            ver: b[4],
            op: b[5],
            flags: u16::from_be_bytes([b[6], b[7]]),
            rid: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }

    /// The header of the last whole frame in `frames` (frames written back
    /// to back, such as a reply of several frames), or `None` when they do
    /// not end on a frame boundary.
    pub fn of_last(frames: &[u8]) -> Option<Header> {
        let mut rest = frames;
        let mut last = None;
        while !rest.is_empty() {
            let header = Header::read(rest)?;
            let len = header.len as usize;
            if len < HEADER_LEN || len > rest.len() {
                return None;
            }
            last = Some(header);
            rest = &rest[len..];
        }
        last
    }

    /// Appends the header's 12 bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.len.to_be_bytes());
        out.push(self.ver);
        out.push(self.op);
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.rid.to_be_bytes());
    }
}

/// Why a byte stream or a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The length field is smaller than the header itself.
    #[error("frame length {0} is shorter than the 12-byte header")]
    LengthTooSmall(u32),
    /// The length field exceeds the configured maximum.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Length announced by the frame.
        len: u32,
        /// Configured maximum.
        max: u32,
    },
    /// The version byte is not [`VERSION`].
    #[error("unsupported protocol version {0}")]
    BadVersion(u8),
    /// The op code is not one this side accepts.
    #[error("unknown op 0x{0:02x}")]
    UnknownOp(u8),
    /// The body ends before a field it must hold.
    #[error("frame body ends inside field `{0}`")]
    Truncated(&'static str),
    /// A string field is not UTF-8.
    #[error("field `{0}` is not valid UTF-8")]
    BadUtf8(&'static str),
    /// A field holds a value outside its allowed set.
    #[error("field `{0}` has an invalid value")]
    BadValue(&'static str),
    /// Bytes are left over after the last field of a fixed-size body.
    #[error("{0} unexpected bytes after the last field")]
    TrailingBytes(usize),
}

impl FrameError {
    /// The error code a server reports to the client for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::UnknownOp(_) => ErrorCode::UnknownOp,
            _ => ErrorCode::BadFrame,
        }
    }

    /// Whether the server closes the connection after reporting this error.
    /// Only an unknown op leaves it open: the frame was well delimited and a
    /// newer client may probe for ops this server lacks. Any other error
    /// means the client does not speak the protocol (or the stream is out of
    /// step), so it gets ERROR, then CLOSE.
    pub fn closes_connection(&self) -> bool {
        !matches!(self, FrameError::UnknownOp(_))
    }

    /// Whether this is a header-level error (bad length or version), after
    /// which the byte stream can no longer be split into frames. These are
    /// the only errors [`peek_frame`] returns.
    pub fn breaks_stream(&self) -> bool {
        matches!(self, FrameError::LengthTooSmall(_) | FrameError::TooLarge { .. } | FrameError::BadVersion(_))
    }
}

/// What [`peek_frame`] found at the start of a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Not enough bytes yet. `frame_len` is the whole frame's length once the
    /// length field has arrived, so the caller can size its buffer once.
    NeedMore {
        /// Length of the frame being received, when known.
        frame_len: Option<u32>,
    },
    /// A whole frame of `header.len` bytes starts at offset 0.
    Complete(Header),
}

/// Looks at the start of `buf` and reports whether a whole, plausible frame is
/// there. The length is checked against `max_len` as soon as its four bytes
/// have arrived, before the rest of the frame is read or buffered.
pub fn peek_frame(buf: &[u8], max_len: u32) -> Result<Peek, FrameError> {
    let Some(len_bytes) = buf.get(..4) else {
        return Ok(Peek::NeedMore { frame_len: None });
    };
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    if len < HEADER_LEN as u32 {
        return Err(FrameError::LengthTooSmall(len));
    }
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    if let Some(&ver) = buf.get(4) {
        if ver != VERSION {
            return Err(FrameError::BadVersion(ver));
        }
    }
    if buf.len() < len as usize {
        return Ok(Peek::NeedMore { frame_len: Some(len) });
    }
    match Header::read(buf) {
        Some(header) => Ok(Peek::Complete(header)),
        None => Ok(Peek::NeedMore { frame_len: Some(len) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_of_several_frames_is_found_and_a_cut_one_refused() {
        let mut frames = Vec::new();
        for (op, rid) in [(0x90, 0), (0x84, 7)] {
            Header { len: HEADER_LEN as u32 + 2, ver: VERSION, op, flags: 0, rid }.write(&mut frames);
            frames.extend_from_slice(&[1, 2]);
        }
        let last = Header::of_last(&frames).unwrap();
        assert_eq!((last.op, last.rid), (0x84, 7));
        assert_eq!(Header::of_last(&frames[..frames.len() - 1]), None);
        assert_eq!(Header::of_last(&[]), None);
    }

    #[test]
    fn oversized_length_is_refused_from_four_bytes() {
        let buf = 70_000u32.to_be_bytes();
        assert_eq!(
            peek_frame(&buf, DEFAULT_MAX_FRAME_LEN),
            Err(FrameError::TooLarge { len: 70_000, max: DEFAULT_MAX_FRAME_LEN })
        );
    }

    #[test]
    fn partial_frame_reports_its_length() {
        let mut buf = Vec::new();
        Header { len: 20, ver: VERSION, op: 2, flags: 0, rid: 7 }.write(&mut buf);
        assert_eq!(peek_frame(&buf, 1024), Ok(Peek::NeedMore { frame_len: Some(20) }));
        buf.extend_from_slice(&[0; 8]);
        assert!(matches!(peek_frame(&buf, 1024), Ok(Peek::Complete(h)) if h.rid == 7));
    }

    #[test]
    fn short_length_and_bad_version_close_the_connection() {
        assert!(peek_frame(&5u32.to_be_bytes(), 1024).unwrap_err().closes_connection());
        assert!(!FrameError::UnknownOp(0x42).closes_connection());
        let mut buf = Vec::new();
        Header { len: 12, ver: 9, op: 2, flags: 0, rid: 0 }.write(&mut buf);
        assert_eq!(peek_frame(&buf, 1024), Err(FrameError::BadVersion(9)));
    }
}
