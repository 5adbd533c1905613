//! Balancer picks: one `Balancer::pick` per request, for round robin and smooth
//! weighted round robin over 4 and 32 endpoints, all healthy and with every
//! other endpoint marked down (the health predicate reads one atomic per
//! candidate, as the worker's does). Weighted is O(endpoints) per pick, round
//! robin O(1) while all are healthy; these numbers say when that starts to
//! matter.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use strait::balance::{BalanceKind, Balancer};
use strait::upstream::EndpointSpec;

/// `n` endpoints on 127.0.0.1 with weights 1..=5 in turn (ignored by round robin).
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
    for kind in ["round_robin", "weighted"] {
        let parsed = BalanceKind::parse(kind).expect("known algorithm");
        for n in [4u16, 32] {
            let eps = endpoints(n);
            for (label, half_down) in [("", false), ("/half_down", true)] {
                // Half down: every odd endpoint.
                let health: Vec<AtomicBool> = (0..eps.len())
                    .map(|i| AtomicBool::new(!(half_down && i % 2 == 1)))
                    .collect();
                // Seed 1, as worker 1 would: any seed gives the same cost.
                let mut balancer = Balancer::new(parsed, &eps, 1);
                let id = BenchmarkId::new(format!("{kind}{label}"), n);
                group.bench_with_input(id, &eps, |b, eps| {
                    b.iter(|| balancer.pick(black_box(eps), |i| health[i].load(Ordering::Relaxed)))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_pick);
criterion_main!(benches);
