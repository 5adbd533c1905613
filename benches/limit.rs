//! The limit tables' one decision per request: `RateTable::check` passing
//! (one compare-and-swap) and refusing (reads only) for one key, over
//! 100,000 keys rotating through a 64 Ki-slot table (the cache misses a
//! large key set costs), and with a second thread hammering the same key
//! (the line bouncing between cores: the cost of one limit shared by the
//! workers); and `ConnTable::acquire` with its `release` (what a request's
//! guard does when its body ends). Hashing the
//! key (SipHash over its bytes) is measured apart, for a 16-byte key.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hash::Hasher;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use strait::bench::{Acquired, ConnTable, RateTable, Verdict};

/// 1,000,000/s with a burst of 10^12: every check passes (a CAS each).
fn passing() -> RateTable {
    RateTable::new(65_536, 1, 1 << 40)
}

fn hashes(table: &RateTable, n: u64) -> Vec<u64> {
    (0..n)
        .map(|k| {
            let mut h = table.seed().hasher();
            h.write(&k.to_le_bytes());
            h.finish()
        })
        .collect()
}

fn bench_rate(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_check");
    let table = passing();
    let key = hashes(&table, 1)[0];
    group.bench_function("pass_one_key", |b| {
        b.iter(|| black_box(table.check(black_box(key), Instant::now())))
    });
    // 1/s, no burst: after the first, every check is refused.
    let strict = RateTable::new(65_536, 1_000_000, 0);
    let now = Instant::now();
    strict.check(key, now);
    group.bench_function("refuse_one_key", |b| {
        b.iter(|| black_box(strict.check(black_box(key), now)))
    });
    let many = hashes(&table, 100_000);
    let mut i = 0;
    group.bench_function("pass_100k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % many.len();
            black_box(table.check(many[i], Instant::now()))
        })
    });
    // Another core passing the same key all the while.
    let shared = Arc::new(passing());
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(shared.check(key, Instant::now()));
            }
        })
    };
    group.bench_function("pass_one_key_contended", |b| {
        b.iter(|| black_box(shared.check(black_box(key), Instant::now())))
    });
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
    group.finish();
    assert!(matches!(strict.check(key, now), Verdict::Refuse { .. }));
}

fn bench_hash(c: &mut Criterion) {
    let table = passing();
    let key = *b"203.0.113.7:abcd";
    c.bench_function("limit_key_hash_16_bytes", |b| {
        b.iter(|| {
            let mut h = table.seed().hasher();
            h.write(black_box(&key));
            black_box(h.finish())
        })
    });
}

fn bench_conns(c: &mut Criterion) {
    let table = ConnTable::new(65_536);
    let key = {
        let mut h = table.seed().hasher();
        h.write(b"tenant");
        h.finish()
    };
    c.bench_function("conn_acquire_and_release", |b| {
        b.iter(|| match table.acquire(black_box(key), 1_000) {
            Acquired::Held(slot) => table.release(black_box(slot)),
            _ => unreachable!("one request in flight at a time"),
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_rate, bench_hash, bench_conns
}
criterion_main!(benches);
