//! Compiles `[upstreams.NAME]`: endpoints (names resolved through `Names`),
//! balancing, protocol, DNS settings, timeouts, limits and the pool's transport
//! key. Hashing, health checks, outlier detection and TLS are left to `hash`,
//! `checks` and `tls`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use toml::Spanned;

use super::{span, Compiler};
use crate::balance::{BalanceKind, BalancePolicy};
use crate::config::intern;
use crate::config::parse::{parse_endpoint, EndpointAddr};
use crate::config::raw::{RawEndpoint, RawUpstream};
use crate::upstream::{
    self, DnsSpec, EndpointSpec, Family, Http2Settings, NameSpec, PoolSettings, Protocol,
    RetryBudget, UpstreamSpec,
};

impl Compiler<'_, '_> {
    pub(super) fn upstreams(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<RawUpstream>>,
    ) -> (
        Vec<UpstreamSpec>,
        Vec<BalancePolicy>,
        HashMap<String, usize>,
    ) {
        let mut specs = Vec::new();
        let mut policies = Vec::new();
        let mut ids = HashMap::new();
        for (name, up) in raw {
            if let Some((spec, policy)) = self.upstream(name.get_ref(), up) {
                ids.insert(name.get_ref().clone(), specs.len());
                specs.push(spec);
                policies.push(policy);
            } else {
                // Known but broken: routes pointing to it get no second error.
                ids.insert(name.get_ref().clone(), usize::MAX);
            }
        }
        (specs, policies, ids)
    }

    /// One upstream: its spec, and how its endpoints are picked.
    fn upstream(
        &mut self,
        name: &str,
        raw: &Spanned<RawUpstream>,
    ) -> Option<(UpstreamSpec, BalancePolicy)> {
        let before = self.error_count();
        let up = raw.get_ref();
        if up.endpoints.is_empty() {
            // Allowed on purpose (an upstream emptied for maintenance): its
            // routes answer 503 "no upstream endpoint available".
            tracing::warn!(
                upstream = name,
                "upstream has no endpoints: its routes will answer 503"
            );
        }
        let what = |k: &str| format!("upstreams.{name}.{k}");
        let dns = self.dns(up, &what);
        let mut endpoints: Vec<EndpointSpec> = Vec::new();
        // The host name each endpoint was written with (none for an IP).
        let mut hosts: Vec<Option<Box<str>>> = Vec::new();
        let mut names: Vec<NameSpec> = Vec::new();
        for ep in &up.endpoints {
            let (address, weight) = match ep.get_ref() {
                RawEndpoint::Address(a) => (a.as_str(), 1),
                RawEndpoint::Detailed(d) => (d.address.as_str(), d.weight.unwrap_or(1)),
            };
            if !(1..=10_000).contains(&weight) {
                self.d.at(
                    span(ep),
                    format!("endpoint {address:?} of upstream {name:?}: weight {weight} is out of range: expected 1 to 10000"),
                );
                continue;
            }
            let weight = weight as u32;
            match parse_endpoint(address) {
                Ok(EndpointAddr::Ip(addr)) => {
                    endpoints.push(endpoint(addr, weight, &addr.to_string()));
                    hosts.push(None);
                }
                Ok(EndpointAddr::Name(host, port)) => {
                    match self.names.lookup(name, &host, port, dns.family) {
                        Ok(addrs) => {
                            // Every address of the name is an endpoint; one the
                            // upstream already lists is not added twice. The
                            // name is their Host (with `preserve_host = false`).
                            for &addr in &addrs {
                                if !endpoints.iter().any(|e| e.addr == addr) {
                                    endpoints.push(endpoint(addr, weight, address));
                                    hosts.push(Some(host.as_str().into()));
                                }
                            }
                            if !names.iter().any(|n| *n.host == *host && n.port == port) {
                                names.push(NameSpec {
                                    host: host.into(),
                                    port,
                                    weight,
                                    addrs: addrs.into(),
                                });
                            }
                        }
                        Err(msg) => self.d.at(span(ep), format!("upstream {name:?}: {msg}")),
                    }
                }
                Err(msg) => self.d.at(span(ep), format!("upstream {name:?}: {msg}")),
            }
        }
        // Unequal weights imply weighted balancing unless the file says otherwise.
        let weighted = endpoints.iter().any(|e| e.weight != 1);
        let balance = match &up.balance {
            None if weighted => BalanceKind::Weighted,
            None => BalanceKind::RoundRobin,
            Some(b) => match BalanceKind::parse(b.get_ref()) {
                Ok(kind) => {
                    if weighted && !kind.uses_weights() {
                        tracing::warn!(
                            upstream = name,
                            "balance = \"{}\" ignores the endpoint weights",
                            kind.name()
                        );
                    }
                    kind
                }
                Err(msg) => {
                    self.d.at(span(b), msg);
                    BalanceKind::RoundRobin
                }
            },
        };
        let hash = self.hash_policy(name, up, balance, &endpoints);
        let (protocol, http2) = self.protocol(up, &what);
        let (tls, transport) = self.upstream_tls(name, up, protocol, &endpoints, &hosts);
        let spec = UpstreamSpec {
            name: name.into(),
            endpoints: endpoints.into(),
            connect_timeout: self.duration(
                &up.connect_timeout,
                upstream::DEFAULT_CONNECT_TIMEOUT,
                &what("connect_timeout"),
            ),
            response_header_timeout: self.duration(
                &up.response_header_timeout,
                upstream::DEFAULT_RESPONSE_HEADER_TIMEOUT,
                &what("response_header_timeout"),
            ),
            body_idle_timeout: self.duration(
                &up.body_idle_timeout,
                upstream::DEFAULT_BODY_IDLE_TIMEOUT,
                &what("body_idle_timeout"),
            ),
            pool: PoolSettings {
                idle_timeout: self.duration(
                    &up.idle_timeout,
                    upstream::DEFAULT_IDLE_TIMEOUT,
                    &what("idle_timeout"),
                ),
                max_idle_per_endpoint: self.int_in(
                    &up.max_idle_per_endpoint,
                    upstream::DEFAULT_MAX_IDLE_PER_ENDPOINT as i64,
                    0..100_001,
                    &what("max_idle_per_endpoint"),
                ) as usize,
            },
            health_check: up.health_check.as_ref().map(|h| self.health_check(name, h)),
            max_requests: up.max_requests.as_ref().map(|m| {
                self.int_in(&Some(m.clone()), 1, 1..1_000_001, &what("max_requests")) as u32
            }),
            max_connections: up.max_connections.as_ref().map(|m| {
                self.int_in(&Some(m.clone()), 1, 1..1_000_001, &what("max_connections")) as u32
            }),
            max_pending: match (&up.max_pending, &up.max_connections) {
                (Some(p), None) => {
                    self.d.at(
                        span(p),
                        format!(
                            "{} applies only with max_connections (requests wait for a connection only when that limit is reached)",
                            what("max_pending")
                        ),
                    );
                    upstream::DEFAULT_MAX_PENDING
                }
                (p, _) => self.int_in(
                    p,
                    i64::from(upstream::DEFAULT_MAX_PENDING),
                    0..1_000_001,
                    &what("max_pending"),
                ) as u32,
            },
            outlier: up
                .outlier_detection
                .as_ref()
                .map(|o| self.outlier(name, o.get_ref())),
            retry_budget: match &up.retry_budget {
                None => RetryBudget::default(),
                Some(b) => {
                    let b = b.get_ref();
                    let d = RetryBudget::default();
                    RetryBudget {
                        percent: self.int_in(
                            &b.percent,
                            i64::from(d.percent),
                            0..1001,
                            &what("retry_budget.percent"),
                        ) as u32,
                        min_per_second: self.int_in(
                            &b.min_per_second,
                            i64::from(d.min_per_second),
                            0..100_001,
                            &what("retry_budget.min_per_second"),
                        ) as u32,
                    }
                }
            },
            connect_failover: up.connect_failover.unwrap_or(true),
            names: names.into(),
            dns,
            protocol,
            http2,
            tls,
            transport,
        };
        let policy = BalancePolicy {
            kind: balance,
            hash,
        };
        (self.error_count() == before).then_some((spec, policy))
    }

    /// `protocol` and the `http2_*` limits of an upstream.
    fn protocol(
        &mut self,
        up: &RawUpstream,
        what: &dyn Fn(&str) -> String,
    ) -> (Protocol, Http2Settings) {
        let (protocol, known) = match &up.protocol {
            None => (Protocol::Http1, true),
            Some(p) => match Protocol::parse(p.get_ref()) {
                Ok(protocol) => (protocol, true),
                Err(msg) => {
                    self.d.at(span(p), format!("{}: {msg}", what("protocol")));
                    (Protocol::Http1, false)
                }
            },
        };
        let defaults = Http2Settings::default();
        let http2 = Http2Settings {
            max_concurrent_streams: self.int_in(
                &up.http2_max_concurrent_streams,
                i64::from(defaults.max_concurrent_streams),
                1..100_001,
                &what("http2_max_concurrent_streams"),
            ) as u32,
            max_connections: self.int_in(
                &up.http2_max_connections,
                i64::from(defaults.max_connections),
                1..1_001,
                &what("http2_max_connections"),
            ) as u32,
        };
        if protocol == Protocol::Http1 && known {
            for (key, value) in [
                (
                    "http2_max_concurrent_streams",
                    &up.http2_max_concurrent_streams,
                ),
                ("http2_max_connections", &up.http2_max_connections),
            ] {
                if let Some(v) = value {
                    self.d.at(
                        span(v),
                        format!(
                            "{} applies only to HTTP/2: set protocol = \"h2c\", \"h2\" or \"auto\"",
                            what(key)
                        ),
                    );
                }
            }
        }
        (protocol, http2)
    }

    /// `dns_refresh` and `dns_family`.
    fn dns(&mut self, up: &RawUpstream, what: &dyn Fn(&str) -> String) -> DnsSpec {
        let mut refresh = self.duration(
            &up.dns_refresh,
            upstream::DEFAULT_DNS_REFRESH,
            &what("dns_refresh"),
        );
        let (min, max) = (upstream::MIN_DNS_REFRESH, upstream::MAX_DNS_REFRESH);
        if let Some(raw) = &up.dns_refresh {
            if !(min..=max).contains(&refresh) {
                self.d.at(
                    span(raw),
                    format!(
                        "{} = {:?} is out of range: expected 1s to 1h",
                        what("dns_refresh"),
                        raw.get_ref()
                    ),
                );
                refresh = upstream::DEFAULT_DNS_REFRESH;
            }
        }
        let family = match &up.dns_family {
            None => Family::Any,
            Some(f) => Family::parse(f.get_ref()).unwrap_or_else(|msg| {
                self.d.at(span(f), format!("{}: {msg}", what("dns_family")));
                Family::Any
            }),
        };
        DnsSpec { refresh, family }
    }
}

/// The transport part of a pool key: 0 for plain HTTP/1.1 (so upstreams
/// sharing an address share those connections), else a hash of how the
/// connection is made (protocol, and the TLS settings and server name),
/// stable across reloads that keep them.
pub(super) fn transport_key(protocol: Protocol, tls: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let protocol = match (protocol, tls) {
        // Cleartext `auto` is HTTP/1.1.
        (Protocol::Auto, None) => Protocol::Http1,
        (p, _) => p,
    };
    if protocol == Protocol::Http1 && tls.is_none() {
        return 0;
    }
    let mut h = rustc_hash::FxHasher::default();
    protocol.hash(&mut h);
    tls.hash(&mut h);
    h.finish() | 1
}

/// An endpoint at `addr`, with `host` as its `Host` value (interned).
fn endpoint(addr: SocketAddr, weight: u32, host: &str) -> EndpointSpec {
    let host_value =
        intern::header_value(host).unwrap_or_else(|| http::HeaderValue::from_static("localhost"));
    EndpointSpec {
        addr,
        weight,
        host_value,
    }
}
