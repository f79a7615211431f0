//! Field-level reading and writing shared by the client and server codecs:
//! big-endian integers, `str` (u16 length + UTF-8) and the trailing payload.
//! The reader never indexes past the slice it was given, so malformed input
//! turns into a [`FrameError`], never a panic.

use thiserror::Error;

use crate::frame::{FrameError, Header, HEADER_LEN, VERSION};

/// Why a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A `str` field is longer than the 65,535 bytes its u16 length can say.
    #[error("field `{0}` is longer than 65535 bytes")]
    StringTooLong(&'static str),
    /// The whole frame is longer than a u32 length can say.
    #[error("frame is longer than 4 GiB")]
    FrameTooLong,
}

/// Reads fields from a frame body front to back.
pub(crate) struct FieldReader<'a> {
    rest: &'a [u8],
}

impl<'a> FieldReader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        FieldReader { rest: body }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < n {
            return Err(FrameError::Truncated(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, FrameError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, FrameError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn str(&mut self, field: &'static str) -> Result<&'a str, FrameError> {
        let len = self.u16(field)? as usize;
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map_err(|_| FrameError::BadUtf8(field))
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The rest of the frame: a trailing payload.
    pub(crate) fn payload(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Checks a fixed-size body was consumed exactly.
    pub(crate) fn finish(self) -> Result<(), FrameError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(FrameError::TrailingBytes(self.rest.len()))
        }
    }
}

/// Writes a frame: header first with a placeholder length, fields, then the
/// length is patched in by [`FrameWriter::finish`].
pub(crate) struct FrameWriter<'o> {
    out: &'o mut Vec<u8>,
    start: usize,
}

impl<'o> FrameWriter<'o> {
    pub(crate) fn begin(out: &'o mut Vec<u8>, op: u8, flags: u16, rid: u32, body_hint: usize) -> Self {
        out.reserve(HEADER_LEN + body_hint);
        let start = out.len();
        Header { len: 0, ver: VERSION, op, flags, rid }.write(out);
        FrameWriter { out, start }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn str(&mut self, v: &str, field: &'static str) -> Result<(), EncodeError> {
        let len = u16::try_from(v.len()).map_err(|_| EncodeError::StringTooLong(field))?;
        self.u16(len);
        self.out.extend_from_slice(v.as_bytes());
        Ok(())
    }

    pub(crate) fn payload(&mut self, v: &[u8]) {
        self.out.extend_from_slice(v);
    }

    pub(crate) fn finish(self) -> Result<(), EncodeError> {
        let len = self.out.len() - self.start;
        let Ok(len) = u32::try_from(len) else {
            self.out.truncate(self.start);
            return Err(EncodeError::FrameTooLong);
        };
        self.out[self.start..self.start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Drops the partly written frame, leaving `out` as it was.
    pub(crate) fn abandon(self) {
        self.out.truncate(self.start);
    }
}

/// Runs `write_fields` inside a frame and patches the length, or leaves `out`
/// untouched when a field cannot be encoded.
pub(crate) fn write_frame(
    out: &mut Vec<u8>,
    op: u8,
    flags: u16,
    rid: u32,
    body_hint: usize,
    write_fields: impl FnOnce(&mut FrameWriter<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let mut w = FrameWriter::begin(out, op, flags, rid, body_hint);
    match write_fields(&mut w) {
        Ok(()) => w.finish(),
        Err(e) => {
            w.abandon();
            Err(e)
        }
    }
}

/// Splits a complete frame into its header and body, checking that the
/// length field matches the slice and the version is ours.
pub(crate) fn split_frame(frame: &[u8]) -> Result<(Header, &[u8]), FrameError> {
    let header = Header::read(frame).ok_or(FrameError::Truncated("header"))?;
    if (header.len as usize) < HEADER_LEN {
        return Err(FrameError::LengthTooSmall(header.len));
    }
    if header.len as usize != frame.len() {
        return Err(FrameError::BadValue("len"));
    }
    if header.ver != VERSION {
        return Err(FrameError::BadVersion(header.ver));
    }
    Ok((header, &frame[HEADER_LEN..]))
}
