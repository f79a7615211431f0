//! Criterion benchmark: one room message fanned out to 10,000 local members
//! of a shard (queued by reference; the writers' later release of the
//! references is timed too).

use corecast_server::shard::bench_support::FanoutFixture;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn fanout(c: &mut Criterion) {
    const MEMBERS: usize = 10_000;
    let fixture = FanoutFixture::new(MEMBERS);
    fixture.deliver();
    assert_eq!(fixture.drain(), MEMBERS * fixture.push().len(), "every member got the PUSH once");
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(MEMBERS as u64));
    group.bench_function("room_push_to_10000_local_members", |b| {
        b.iter(|| {
            fixture.deliver();
            fixture.drain()
        })
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
