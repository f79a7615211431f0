//! Fuzz target: what a WebSocket client sends before and after the
//! handshake. The bytes are read as an opening handshake request (with and
//! without an Origin allowlist) and as a stream of client frames, the way
//! the shard reads them: header, then the payload unmasked in pieces.
//! Nothing may panic, and every accepted length must fit the input.
#![no_main]

use corecast_proto::ws::{parse_handshake, read_header, unmask};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let allowed = ["http://good.test".to_string()];
    for origins in [&[][..], &allowed[..]] {
        if let Ok(Some(handshake)) = parse_handshake(data, "/ws", origins) {
            assert!(handshake.len <= data.len());
            let _ = corecast_proto::ws::handshake_response(&handshake);
        }
    }
    let mut at = 0;
    while at < data.len() {
        let header = match read_header(&data[at..], 1 << 20) {
            Ok(Some(header)) => header,
            Ok(None) | Err(_) => break,
        };
        at += header.header_len;
        let end = (at as u64).saturating_add(header.payload_len).min(data.len() as u64) as usize;
        let mut payload = data[at..end].to_vec();
        let split = payload.len() / 2;
        let (first, second) = payload.split_at_mut(split);
        unmask(first, header.mask, 0);
        unmask(second, header.mask, split);
        at = end;
    }
});
