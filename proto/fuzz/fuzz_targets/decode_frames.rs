//! Feeds the input to the streaming reader a connection runs: `peek_frame`
//! delimits frames under a small maximum, and every complete frame is decoded
//! as both a client and a server frame. Whatever decodes must re-encode to a
//! frame that decodes to the same value (and, the wire form being canonical,
//! to the same bytes). Nothing may panic.
//!
//! The first input byte picks how the rest is cut into reads, so the reader
//! also sees frames arriving in pieces.

#![no_main]

use corecast_proto::{decode_client, decode_server, encode_client, encode_server, peek_frame, Peek};
use libfuzzer_sys::fuzz_target;

/// A small maximum, so the too-large path is reached with small inputs.
const MAX_FRAME_LEN: u32 = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&chunking, stream)) = data.split_first() else { return };
    // 0 = the whole stream in one read, otherwise reads of 1..=255 bytes.
    let read_size = if chunking == 0 { stream.len().max(1) } else { chunking as usize };

    let mut buf: Vec<u8> = Vec::new();
    let mut announced: Option<u32> = None;
    for read in stream.chunks(read_size) {
        buf.extend_from_slice(read);
        loop {
            match peek_frame(&buf, MAX_FRAME_LEN) {
                Ok(Peek::Complete(header)) => {
                    let len = header.len as usize;
                    assert!(header.len <= MAX_FRAME_LEN && len <= buf.len() && len >= corecast_proto::HEADER_LEN);
                    if let Some(expected) = announced.take() {
                        assert_eq!(expected, header.len, "frame length changed after it was announced");
                    }
                    check_frame(&buf[..len]);
                    buf.drain(..len);
                }
                Ok(Peek::NeedMore { frame_len }) => {
                    if let Some(len) = frame_len {
                        assert!(len <= MAX_FRAME_LEN && (len as usize) > buf.len());
                        announced = Some(len);
                    }
                    break;
                }
                // The stream is broken; a server reports it and closes.
                Err(e) => {
                    assert!(e.breaks_stream(), "peek_frame returned a non-stream error {e:?}");
                    return;
                }
            }
        }
    }
});

fn check_frame(frame: &[u8]) {
    if let Ok(decoded) = decode_client(frame) {
        let mut again = Vec::new();
        encode_client(decoded.rid, decoded.flags, &decoded.request, &mut again).expect("re-encode client frame");
        assert_eq!(decode_client(&again).as_ref(), Ok(&decoded));
        assert_eq!(again, frame, "client frame is not canonical");
    }
    if let Ok(decoded) = decode_server(frame) {
        let mut again = Vec::new();
        encode_server(decoded.rid, decoded.flags, &decoded.message, &mut again).expect("re-encode server frame");
        assert_eq!(decode_server(&again).as_ref(), Ok(&decoded));
        assert_eq!(again, frame, "server frame is not canonical");
    }
}
