//! Counters the data plane writes and the control plane reads.
//!
//! Every figure is sharded by worker: worker `i` only ever writes shard `i`
//! (a relaxed load and store, no locked instruction, its own cache lines), and
//! the control plane sums the shards when the admin API is asked. Nothing here
//! is written by two threads, so the request path never contends on a line.
//!
//! The statistics of a route, an upstream, an endpoint and a policy
//! middleware live in `Arc`s that the control plane carries from one
//! snapshot to the next by name (`control/publish.rs`), so counters keep
//! counting across reloads and requests still running on an old snapshot
//! count into the same place.
//!
//! `shard.rs` holds the counter lines, `counters.rs` what a worker counts,
//! `stats.rs` where a snapshot's figures live and how a request reaches them.

mod counters;
mod shard;
mod stats;

pub(crate) use counters::{PoolCounters, Refusal, UpstreamCounters, WorkerCounters};
pub(crate) use shard::{status_class, sum_classes, HistogramSum, Padded, Shards, STATUS_CLASSES};
pub(crate) use stats::{
    EndpointStats, HoldsStats, Metrics, PolicyStats, PoolStats, RequestOutcome, RouteStats,
    SnapshotStats, StatIds, StatsRef, UpstreamStats,
};
