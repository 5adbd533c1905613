//! Balancer picks: one pick per request for every algorithm over 4 and 16
//! endpoints, all healthy and with every other endpoint marked down (the
//! health predicate reads one atomic per candidate, as the worker's does;
//! `least_request` and `peak_ewma` also read one in-flight atomic per
//! candidate). Weighted is O(endpoints) per pick, the others O(1) while all
//! are healthy (ring: O(log points)); these numbers say when that starts to
//! matter. `ring` and `maglev` include hashing a 16-byte key.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use strait::bench::EndpointSpec;
use strait::bench::{
    hash_bytes, BalanceKind, Balancer, HashTable, DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_VIRTUAL_NODES,
};

/// `n` endpoints on 127.0.0.1 with weights 1..=5 in turn (ignored by round
/// robin and random).
fn endpoints(n: u16) -> Vec<EndpointSpec> {
    (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([127, 0, 0, 1], 9000 + i));
            EndpointSpec::new(addr, u32::from(i % 5) + 1)
        })
        .collect()
}

fn bench_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("balance_pick");
    for kind in [
        "round_robin",
        "weighted",
        "random",
        "least_request",
        "peak_ewma",
        "ring",
        "maglev",
    ] {
        let parsed = BalanceKind::parse(kind).expect("known algorithm");
        for n in [4u16, 16] {
            let eps = endpoints(n);
            let table = match parsed {
                BalanceKind::Ring => Some(HashTable::ring(&eps, DEFAULT_VIRTUAL_NODES)),
                BalanceKind::Maglev => Some(HashTable::maglev(&eps, DEFAULT_MAGLEV_TABLE_SIZE)),
                _ => None,
            };
            for (label, half_down) in [("", false), ("/half_down", true)] {
                // Half down: every odd endpoint.
                let health: Vec<AtomicBool> = (0..eps.len())
                    .map(|i| AtomicBool::new(!(half_down && i % 2 == 1)))
                    .collect();
                let in_flight: Vec<AtomicI64> = (0..eps.len())
                    .map(|i| AtomicI64::new(i as i64 % 3))
                    .collect();
                let healthy = |i: usize| health[i].load(Ordering::Relaxed);
                let load = |i: usize| in_flight[i].load(Ordering::Relaxed).max(0) as u64;
                // Seed 1, as worker 1 would: any seed gives the same cost.
                let mut balancer = Balancer::new(parsed, &eps, 1);
                if let Balancer::PeakEwma(_) = balancer {
                    let now = std::time::Instant::now();
                    for i in 0..eps.len() {
                        let rtt = std::time::Duration::from_micros(200 + 50 * i as u64);
                        balancer.observe(i, rtt, now);
                    }
                }
                let id = BenchmarkId::new(format!("{kind}{label}"), n);
                let mut key = 0u64;
                group.bench_with_input(id, &eps, |b, eps| match &table {
                    Some(t) => b.iter(|| {
                        key = key.wrapping_add(1);
                        let mut raw = [0u8; 16];
                        raw[..8].copy_from_slice(&key.to_le_bytes());
                        t.pick(hash_bytes(black_box(&raw)), healthy)
                    }),
                    None => b.iter(|| balancer.pick(black_box(eps), healthy, load)),
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_pick);
criterion_main!(benches);
