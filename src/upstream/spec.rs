//! An upstream as compiled (part of the snapshot): its endpoints, how
//! connections to them are made and pooled, its limits, timeouts, health
//! check, passive health and names, with the defaults of each. How its
//! endpoints are picked is the balancer's (`balance::BalancePolicy`). Built
//! by the config compiler, read by the workers; nothing here does any I/O.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

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
    pub(crate) connect_timeout: Duration,
    pub(crate) response_header_timeout: Duration,
    pub(crate) body_idle_timeout: Duration,
    pub(crate) pool: PoolSettings,
    /// The active health check, if configured.
    pub(crate) health_check: Option<HealthCheckSpec>,
    /// Concurrent requests to the upstream (`max_requests`), shared out over
    /// the workers (each allows its share, rounded up); `None`: no limit.
    pub(crate) max_requests: Option<u32>,
    /// Connections to the upstream's endpoints this upstream opened
    /// (`max_connections`), shared out over the workers like `max_requests`.
    pub(crate) max_connections: Option<u32>,
    /// Requests waiting for a connection when `max_connections` is reached
    /// (`max_pending`, default 1024), shared out over the workers.
    pub(crate) max_pending: u32,
    /// Passive health, if configured.
    pub(crate) outlier: Option<OutlierSpec>,
    /// How many retries the upstream accepts.
    pub(crate) retry_budget: RetryBudget,
    /// Whether a request whose connection to an endpoint could not be made
    /// (nothing was sent) goes to another endpoint, whatever its method
    /// and route (`connect_failover`, on by default, as nginx's
    /// `proxy_next_upstream error timeout`).
    pub(crate) connect_failover: bool,
    /// The endpoints given as `host:port`, each with the addresses it expanded
    /// to in `endpoints` (empty when every endpoint is an IP).
    pub(crate) names: Box<[NameSpec]>,
    /// How those names are refreshed.
    pub(crate) dns: DnsSpec,
    /// HTTP/1.1, HTTP/2 or the endpoint's choice (`protocol`).
    pub(crate) protocol: Protocol,
    /// HTTP/2 connection limits (used only by HTTP/2 connections).
    pub(crate) http2: Http2Settings,
    /// TLS to the endpoints (`[upstreams.NAME.tls]`), if on.
    pub(crate) tls: Option<Box<UpstreamTls>>,
    /// Identifies how this upstream's cleartext connections are made (its
    /// protocol): part of the pool key, so upstreams sharing an address
    /// share connections only when they speak the same way.
    pub(crate) transport: u64,
}

impl UpstreamSpec {
    /// The pool key of endpoint `index`: its address and how connections to
    /// it are made (protocol, TLS settings, server name).
    #[inline]
    pub(crate) fn pool_key(&self, index: usize, addr: SocketAddr) -> PoolKey {
        let transport = match &self.tls {
            None => self.transport,
            Some(tls) => tls.keys.get(index).copied().unwrap_or(self.transport),
        };
        (addr, transport)
    }

    /// Whether connections to this upstream may be HTTP/2 (and so go to the
    /// multiplexed part of the pool).
    #[inline]
    pub(crate) fn may_use_http2(&self) -> bool {
        match self.protocol {
            Protocol::Http1 => false,
            Protocol::H2c | Protocol::H2 => true,
            Protocol::Auto => self.tls.is_some(),
        }
    }
}

/// What the per-worker pool files a connection under: the endpoint's address
/// and the identity of the way it is reached (0 for plain HTTP/1.1).
pub(crate) type PoolKey = (SocketAddr, u64);

/// `protocol` of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Protocol {
    /// HTTP/1.1 (the default); with TLS, ALPN offers only `http/1.1`.
    Http1,
    /// HTTP/2 with prior knowledge, cleartext.
    H2c,
    /// HTTP/2 only; with TLS, ALPN offers only `h2`.
    H2,
    /// With TLS, ALPN offers `h2` and `http/1.1` and the endpoint chooses;
    /// cleartext: HTTP/1.1.
    Auto,
}

impl Protocol {
    pub(crate) fn parse(text: &str) -> Result<Protocol, String> {
        match text {
            "http1" => Ok(Protocol::Http1),
            "h2c" => Ok(Protocol::H2c),
            "h2" => Ok(Protocol::H2),
            "auto" => Ok(Protocol::Auto),
            other => Err(format!(
                "unknown protocol {other:?}: expected \"http1\", \"h2c\", \"h2\" or \"auto\""
            )),
        }
    }

    /// The configuration's name for it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2c => "h2c",
            Protocol::H2 => "h2",
            Protocol::Auto => "auto",
        }
    }

    /// The ALPN protocols offered over TLS.
    pub(crate) fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Protocol::Http1 | Protocol::H2c => vec![b"http/1.1".to_vec()],
            Protocol::H2 => vec![b"h2".to_vec()],
            Protocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// HTTP/2 limits of an upstream, per worker and per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Http2Settings {
    /// Streams in flight on one connection (`http2_max_concurrent_streams`);
    /// the endpoint's SETTINGS may lower it (requests beyond its limit then
    /// queue inside the connection).
    pub(crate) max_concurrent_streams: u32,
    /// Multiplexed connections to one endpoint (`http2_max_connections`).
    pub(crate) max_connections: u32,
}

impl Default for Http2Settings {
    fn default() -> Self {
        Http2Settings {
            max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            max_connections: DEFAULT_HTTP2_MAX_CONNECTIONS,
        }
    }
}

/// `[upstreams.NAME.tls]` as compiled: one rustls configuration for the
/// upstream (built, files read and checked, by the control plane) and the
/// name each endpoint is verified against.
#[derive(Debug)]
pub(crate) struct UpstreamTls {
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// The same with ALPN offering only http/1.1, for upgrades (tunnels).
    pub(crate) http1_config: Arc<rustls::ClientConfig>,
    /// The SNI sent to endpoint `i` and the name its certificate must be valid
    /// for: `server_name`, else the host name the endpoint was written with,
    /// else its IP address.
    pub(crate) server_names: Box<[rustls::pki_types::ServerName<'static>]>,
    /// Pool key part of endpoint `i` (protocol, TLS settings, server name).
    pub(crate) keys: Box<[u64]>,
    /// The settings as configured, for the admin API (never read by a
    /// worker).
    pub(crate) summary: UpstreamTlsSummary,
}

/// What the admin API shows of `[upstreams.NAME.tls]`: file paths and
/// flags as configured (never key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamTlsSummary {
    /// `ca_file`; `None`: the Mozilla roots (webpki-roots).
    pub(crate) ca_file: Option<String>,
    /// `server_name` as configured.
    pub(crate) server_name: Option<String>,
    /// `client_cert`'s path.
    pub(crate) client_cert: Option<String>,
    pub(crate) insecure_skip_verify: bool,
}

/// `retry_budget` as compiled: retries may add `percent` % to the requests
/// an upstream gets, plus `min_per_second` (shared out over the workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryBudget {
    pub(crate) percent: u32,
    pub(crate) min_per_second: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            percent: 20,
            min_per_second: 3,
        }
    }
}

/// `[upstreams.NAME.outlier_detection]` as compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutlierSpec {
    /// Consecutive 5xx responses that eject an endpoint; 0: not counted.
    pub(crate) consecutive_5xx: u32,
    /// Consecutive connection failures that eject an endpoint; 0: not counted.
    pub(crate) consecutive_connect_failures: u32,
    /// The first ejection's length; the n-th lasts n times as long…
    pub(crate) base_ejection_time: Duration,
    /// …up to this.
    pub(crate) max_ejection_time: Duration,
    /// Never more than this share of the upstream's endpoints ejected at once.
    pub(crate) max_ejection_percent: u32,
}

/// An endpoint given as a name, and the addresses it stands for in this
/// snapshot (sorted, deduplicated, of the configured family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameSpec {
    pub(crate) host: Box<str>,
    pub(crate) port: u16,
    pub(crate) weight: u32,
    pub(crate) addrs: Box<[SocketAddr]>,
}

impl NameSpec {
    /// `host:port` as written in the configuration.
    pub(crate) fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `dns_refresh` and `dns_family` of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DnsSpec {
    pub(crate) refresh: Duration,
    pub(crate) family: Family,
}

/// Which addresses of a name are used (`dns_family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Any,
    Ipv4,
    Ipv6,
}

impl Family {
    pub(crate) fn parse(text: &str) -> Result<Family, String> {
        match text {
            "any" => Ok(Family::Any),
            "ipv4" => Ok(Family::Ipv4),
            "ipv6" => Ok(Family::Ipv6),
            other => Err(format!(
                "unknown dns_family {other:?}: expected \"any\", \"ipv4\" or \"ipv6\""
            )),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Any => "any",
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// The addresses of this family from a resolver's answer, sorted and
    /// deduplicated: resolvers rotate the order of their answers, which must
    /// not look like a change.
    pub(crate) fn select(self, answer: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = answer
            .into_iter()
            .filter(|a| match self {
                Family::Any => true,
                Family::Ipv4 => a.is_ipv4(),
                Family::Ipv6 => a.is_ipv6(),
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
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
pub(crate) const DEFAULT_MAX_PENDING: u32 = 1024;
pub(crate) const DEFAULT_CONSECUTIVE_5XX: u32 = 5;
pub(crate) const DEFAULT_CONSECUTIVE_CONNECT_FAILURES: u32 = 3;
pub(crate) const DEFAULT_BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
pub(crate) const DEFAULT_MAX_EJECTION_PERCENT: u32 = 50;
pub(crate) const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
pub(crate) const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
pub(crate) const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
pub(crate) const DEFAULT_HTTP2_MAX_CONNECTIONS: u32 = 4;
pub(crate) const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);
/// `dns_refresh` bounds: a faster refresh only loads the resolver, a slower
/// one follows a moved service too late.
pub(crate) const MIN_DNS_REFRESH: Duration = Duration::from_secs(1);
pub(crate) const MAX_DNS_REFRESH: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_select_sorted_and_deduplicated() {
        let answer = vec![
            addr("[::1]:80"),
            addr("10.0.0.2:80"),
            addr("10.0.0.1:80"),
            addr("10.0.0.2:80"),
        ];
        assert_eq!(
            Family::Any.select(answer.clone()),
            vec![addr("10.0.0.1:80"), addr("10.0.0.2:80"), addr("[::1]:80")]
        );
        assert_eq!(
            Family::Ipv4.select(answer.clone()),
            vec![addr("10.0.0.1:80"), addr("10.0.0.2:80")]
        );
        assert_eq!(Family::Ipv6.select(answer), vec![addr("[::1]:80")]);
    }
}
