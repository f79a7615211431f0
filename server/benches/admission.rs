//! Criterion benchmark of admission: a connection accepted, its AUTH (an
//! HS256 token) verified, AUTH_OK written and its presence batched, then
//! the connection closed; no sockets. A counting allocator reports how
//! many heap allocations one admitted connection costs, and how many of
//! them it keeps while it stays connected.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use corecast_server::shard::bench_support::CoreFixture;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn admission(c: &mut Criterion) {
    const SAMPLE: usize = 10_000;
    let fixture = CoreFixture::new();
    let tokens: Vec<String> = (0..SAMPLE).map(|n| CoreFixture::token(&format!("user{n}"))).collect();
    // Warm the tables so their growth is not charged to the sample.
    let warm: Vec<u64> = tokens.iter().map(|t| fixture.admit(t)).collect();
    fixture.drain();
    warm.into_iter().for_each(|id| fixture.close(id));
    let (before, live_before) = (ALLOCATIONS.load(Ordering::Relaxed), LIVE.load(Ordering::Relaxed));
    let ids: Vec<u64> = tokens.iter().map(|t| fixture.admit(t)).collect();
    fixture.drain();
    let allocations = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / SAMPLE as f64;
    let kept = (LIVE.load(Ordering::Relaxed) as f64 - live_before as f64) / SAMPLE as f64;
    println!("admission: {allocations:.1} heap allocations per admitted connection, {kept:.1} kept while connected");
    ids.into_iter().for_each(|id| fixture.close(id));

    let mut group = c.benchmark_group("admission");
    group.throughput(Throughput::Elements(1));
    let mut next = 0;
    group.bench_function("accept_auth_hs256_auth_ok_close", |b| {
        b.iter(|| {
            let id = fixture.admit(&tokens[next % SAMPLE]);
            next += 1;
            let written = fixture.drain();
            fixture.close(id);
            written
        })
    });
    group.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
