//! Strait: a thread-per-core, zero-copy reverse proxy and API gateway.
//!
//! # Layout
//!
//! Each module in one line, in the order a request meets them. Dependencies
//! point one way, down this list: a module imports only modules below it
//! (`config` is the exception that proves the rule: the compiler at its top
//! builds the snapshot out of the layers below it, and nothing below it
//! imports the snapshot). docs/architecture.md tells the life of a request.
//!
//! - `control`: the control plane. `Gateway` and its builder; compiling,
//!   publishing and reloading configuration, binding listeners, health
//!   checks, DNS, access-log writers, the admin API, the zero-downtime
//!   upgrade (listening sockets handed to a new binary).
//! - `worker`: one thread per core: accept, detect the protocol, run the TLS
//!   handshake, hand each request (with the current snapshot) to the proxy,
//!   count it in flight, drain on shutdown.
//! - `proxy`: one request, its phases in order (route, request filter,
//!   upstream peer, connect, send, response filter), retries, headers, gRPC,
//!   errors, tunnels.
//! - `config`: raw TOML → validated → the immutable `Snapshot` the
//!   workers read.
//! - `router`: the route table and its match.
//! - `middleware`: one file per built-in middleware, and the `Custom` trait.
//! - `balance`: the per-worker balancer set and one file per algorithm.
//! - `upstream`: compiled upstreams, the per-worker pool, the one connector,
//!   the exchange, outlier detection.
//! - `context`: what every phase sees: `RequestContext`, the arena, the
//!   request's `Headers`, the bodies, `Flow`, `LogInfo`, `TlsInfo`, the
//!   worker's tools.
//! - `limit`: the process-wide tables of `rate_limit` and
//!   `connection_limit` (one compare-and-swap per request, shared by the
//!   workers) and the control plane's registry that keeps them across
//!   reloads.
//! - `http1`: HTTP/1.1 of our own: the codec (RFC 9112, on httparse: heads
//!   checked strictly, chunked decoding and encoding, no allocation, no
//!   copy, no I/O), the stream an upstream connection runs over, that
//!   connection and the bodies read off connections of our own.
//! - `metrics`: per-worker counter shards and the statistics a snapshot
//!   counts into.
//! - `tls`: rustls configurations for listeners and upstreams.
//! - `log`: the access log's plumbing (sinks, per-worker buffers, line tails).
//! - `util`: time formatting, the local executor, the published-value cell.

#![forbid(unsafe_code)]

mod balance;
mod config;
mod context;
mod control;
/// Public, but not part of the supported API, so the differential test and the
/// fuzz targets reach the codec: nothing outside the crate should call it.
#[doc(hidden)]
pub mod http1;
mod limit;
mod log;
mod metrics;
mod middleware;
mod proxy;
mod router;
mod tls;
mod upstream;
mod util;
mod worker;

pub use config::{ConfigError, ConfigErrors, Snapshot, DEFAULT_CONFIG};
pub use context::{
    BodyError, Field, Flow, HeaderKey, Headers, LogInfo, ProxyBody, RequestContext, TlsInfo,
    UpstreamRequest,
};
pub use control::{
    check, read_config, read_pid_file, request_upgrade, EndpointHealth, Gateway, GatewayBuilder,
    Inherited, ReloadError, Resolve, StartError, SystemResolver, UpgradeError, UPGRADE_FD_VAR,
};
pub use middleware::{Custom, CustomFactory, CustomRegistry, PhaseFuture};
pub use proxy::error::ProxyError;

/// What the criterion benches and the fuzz targets drive directly: the route
/// table, the balancers and their endpoints, the limit tables. Not part of
/// the supported API.
#[doc(hidden)]
pub mod bench {
    pub use crate::balance::{
        hash_bytes, BalanceKind, Balancer, HashTable, DEFAULT_MAGLEV_TABLE_SIZE,
        DEFAULT_VIRTUAL_NODES,
    };
    pub use crate::limit::{Acquired, ConnTable, RateTable, Verdict};
    pub use crate::router::{HeaderCond, PairCond, PathSpec, RouteInput, RouteSpec, Router};
    pub use crate::upstream::EndpointSpec;
}
