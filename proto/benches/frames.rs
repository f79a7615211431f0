//! Criterion benchmarks for the wire codec and internal frames: encode a
//! PUSH, decode a PUBLISH, and read an internal frame in place.

use corecast_proto::internal::{InternalFrame, InternalFrameBytes};
use corecast_proto::{decode_client, encode_client, encode_server, ClientRequest, PushKind, ServerMessage};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn push_message(payload: &[u8]) -> ServerMessage<'_> {
    ServerMessage::Push {
        kind: PushKind::Room,
        conv: "room-42",
        from: "alice",
        seq: 0,
        ts_ms: 1_700_000_000_000,
        payload,
    }
}

fn codec(c: &mut Criterion) {
    let payload = [7u8; 100];
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_push_100b", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            encode_server(0, 0, black_box(&push_message(&payload)), &mut out).unwrap();
            black_box(out.len())
        })
    });
    let mut publish = Vec::new();
    encode_client(1, 0, &ClientRequest::Publish { room: "room-42", payload: &payload }, &mut publish).unwrap();
    group.bench_function("decode_publish_100b", |b| b.iter(|| black_box(decode_client(black_box(&publish)).unwrap())));
    group.finish();
}

fn internal(c: &mut Criterion) {
    let mut push = Vec::new();
    encode_server(0, 0, &push_message(&[7u8; 100]), &mut push).unwrap();
    let frame = InternalFrame::RoomPush { room: "room-42".into(), except_conn: 0, push };
    let mut group = c.benchmark_group("internal");
    group.bench_function("encode_room_push", |b| b.iter(|| black_box(InternalFrameBytes::encode(black_box(&frame)))));
    let bytes = InternalFrameBytes::encode(&frame);
    group.bench_function("access_and_slice_push", |b| b.iter(|| black_box(black_box(&bytes).wire_push())));
    group.finish();
}

criterion_group!(benches, codec, internal);
criterion_main!(benches);
