//! Upstreams: the compiled description of an upstream and its endpoints (part of
//! the snapshot), the per-worker keep-alive pool, and connection set-up.

pub(crate) mod connect;
pub(crate) mod pool;

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderValue;

use crate::balance::{BalanceKind, HashFallback, HashKey, HashTable};

/// One endpoint of an upstream.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub(crate) addr: SocketAddr,
    pub(crate) weight: u32,
    /// `ip:port` as a Host value, for `preserve_host = false` (interned).
    pub(crate) host_value: HeaderValue,
}

impl EndpointSpec {
    /// An endpoint at `addr` with balancing weight `weight` (for benches and tests;
    /// the config compiler interns `host_value` instead).
    pub fn new(addr: SocketAddr, weight: u32) -> EndpointSpec {
        // A socket address prints as digits, '.', ':', '[', ']' and '%', all valid
        // in a header value; the fallback only keeps this free of a panic path.
        let host_value = HeaderValue::from_str(&addr.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        EndpointSpec {
            addr,
            weight,
            host_value,
        }
    }
}

/// An upstream as compiled from `[upstreams.NAME]`.
#[derive(Debug)]
pub(crate) struct UpstreamSpec {
    pub(crate) name: Box<str>,
    pub(crate) endpoints: Box<[EndpointSpec]>,
    pub(crate) balance: BalanceKind,
    /// Consistent hashing (`ring`, `maglev`): the key and the table.
    pub(crate) hash: Option<HashPolicy>,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_header_timeout: Duration,
    pub(crate) body_idle_timeout: Duration,
    pub(crate) pool: PoolSettings,
    /// The active health check, if configured.
    pub(crate) health_check: Option<HealthCheckSpec>,
}

/// How a `ring` or `maglev` upstream hashes: built once by the control
/// plane, read by every worker.
#[derive(Debug)]
pub(crate) struct HashPolicy {
    pub(crate) key: HashKey,
    /// What picks for requests without a key.
    pub(crate) fallback: HashFallback,
    /// Virtual nodes per weight unit (ring) or table size (maglev).
    pub(crate) size: u32,
    pub(crate) table: HashTable,
}

/// `[upstreams.NAME.health_check]` as compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthCheckSpec {
    pub(crate) probe: Probe,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    /// Consecutive passed probes that mark an unhealthy endpoint healthy.
    pub(crate) healthy_threshold: u32,
    /// Consecutive failed probes that mark a healthy endpoint unhealthy.
    pub(crate) unhealthy_threshold: u32,
    /// When every endpoint is unhealthy, balance over all of them anyway
    /// instead of answering 503.
    pub(crate) fail_open: bool,
}

/// What a health probe does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Probe {
    /// A TCP connect that succeeds.
    Tcp,
    /// An HTTP/1.1 request whose status is in one of `statuses` (inclusive).
    Http {
        method: http::Method,
        path: String,
        host: Option<String>,
        statuses: Vec<(u16, u16)>,
    },
}

/// Keep-alive pool limits of one upstream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    /// Idle connections kept per endpoint per worker.
    pub(crate) max_idle_per_endpoint: usize,
    /// An idle connection older than this is closed.
    pub(crate) idle_timeout: Duration,
}

pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_MAX_IDLE_PER_ENDPOINT: usize = 64;
pub(crate) const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
pub(crate) const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
