//! What an idle connection holds: its record and nothing else.

use corecast_proto::ClientRequest;

use super::{config, Harness};

#[test]
fn an_idle_authenticated_connection_holds_no_queue_and_no_buffer() {
    let mut h = Harness::new(1, config());
    let id = h.user("u");
    // A frame split over two reads is held only until it is complete.
    let mut ping = Vec::new();
    corecast_proto::encode_client(5, 0, &ClientRequest::Ping, &mut ping).unwrap();
    h.bytes(id, &ping[..3]);
    assert!(h.core.held(id).1, "the first half of a frame is held");
    h.bytes(id, &ping[3..]);
    h.written(id);
    assert_eq!(h.core.held(id), (false, false), "(queue, input) after it went");
}

#[test]
fn presence_of_a_round_goes_to_the_router_core_as_one_batch() {
    let mut h = Harness::new(1, config());
    let token = crate::auth::mint_token(super::SECRET, "many", 3600, None).unwrap();
    let ids: Vec<u64> = (0..50).map(|_| h.connect()).collect();
    let now = h.now();
    for &id in &ids {
        let mut frame = Vec::new();
        corecast_proto::encode_client(1, 0, &ClientRequest::Auth { token: &token, device: "phone" }, &mut frame)
            .unwrap();
        h.core.on_bytes(now, id, &frame);
    }
    h.core.end_round();
    assert_eq!(h.presence_batches(), vec![(50, 0)]);
}
