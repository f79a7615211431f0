//! Reading and writing length-prefixed internal frames on a link.
//!
//! A frame is `len u32 (big-endian) | rkyv archive of len bytes`. The
//! length is checked against [`MAX_LINK_FRAME_LEN`] before anything is
//! allocated; the archive is read straight into a 16-byte aligned buffer
//! (rkyv's requirement for in-place access) and validated once, so every
//! later reader (shards, the router core) trusts it. Writers batch: a
//! writer task drains everything queued into one buffer per write.

use bytes::{BufMut, Bytes, BytesMut};
use corecast_proto::internal::{InternalFrameBytes, InvalidInternalFrame, MAX_LINK_FRAME_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a link stopped.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket failed.
    #[error("link I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame longer than the limit.
    #[error("link frame of {0} bytes is over the limit of {MAX_LINK_FRAME_LEN}")]
    TooLarge(u32),
    /// The peer sent bytes that are not a valid internal frame.
    #[error(transparent)]
    Invalid(#[from] InvalidInternalFrame),
}

/// Reads one frame; `Ok(None)` when the peer closed the link between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<InternalFrameBytes>, LinkError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_LINK_FRAME_LEN {
        return Err(LinkError::TooLarge(len));
    }
    let mut archive = rkyv::util::AlignedVec::<16>::with_capacity(len as usize);
    archive.resize(len as usize, 0);
    reader.read_exact(&mut archive).await?;
    Ok(Some(InternalFrameBytes::validate(Bytes::from_owner(archive))?))
}

/// Appends one frame with its length prefix to `out`.
pub fn put_frame(frame: &InternalFrameBytes, out: &mut BytesMut) {
    let bytes = frame.as_bytes();
    out.put_u32(bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// Most bytes gathered into one write.
const WRITE_BATCH: usize = 256 * 1024;

/// Writes every frame from `frames` until the channel closes or the socket
/// fails, batching what is already queued into one write.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frames: &flume::Receiver<InternalFrameBytes>,
) -> Result<(), LinkError> {
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    while let Ok(frame) = frames.recv_async().await {
        put_frame(&frame, &mut buf);
        while buf.len() < WRITE_BATCH {
            match frames.try_recv() {
                Ok(frame) => put_frame(&frame, &mut buf),
                Err(_) => break,
            }
        }
        writer.write_all(&buf).await?;
        // A TLS writer holds what it is given until flushed.
        writer.flush().await?;
        buf.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast_proto::internal::{ArchivedInternalFrame, InternalFrame};

    #[tokio::test]
    async fn frames_cross_a_pipe_and_garbage_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let (tx, rx) = flume::unbounded();
        for room in ["one", "two"] {
            tx.send(InternalFrameBytes::encode(&InternalFrame::RoomInterest {
                room: room.into(),
                joined: true,
                id: 7,
            }))
            .unwrap();
        }
        drop(tx);
        write_frames(&mut a, &rx).await.unwrap();
        for expected in ["one", "two"] {
            let frame = read_frame(&mut b).await.unwrap().unwrap();
            match frame.archived() {
                ArchivedInternalFrame::RoomInterest { room, .. } => assert_eq!(room.as_str(), expected),
                other => panic!("unexpected {other:?}"),
            }
        }
        a.write_all(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
        assert!(matches!(read_frame(&mut b).await, Err(LinkError::Invalid(_))));
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(read_frame(&mut b).await, Err(LinkError::TooLarge(_))));
        drop(a);
        assert!(read_frame(&mut b).await.unwrap().is_none());
    }
}
