//! The validation and compile pass: raw configuration → `Snapshot`. Every check
//! records its error with the location of the offending value and goes on, so
//! one run reports every problem; a snapshot is built only when there is none.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use toml::Spanned;

use super::intern;
use super::raw::{
    RawAdmin, RawConfig, RawConnect, RawEndpoint, RawHealthCheck, RawListenerTls, RawMatch,
    RawMiddleware, RawOutlierDetection, RawRetry, RawRoute, RawServer, RawUpstream,
};
use super::snapshot::{
    AdminSettings, ConnectSettings, ConnectTarget, ListenerSpec, Route, ServerSettings, Snapshot,
};
use super::validate::{self as v, ConfigErrors, Diagnostics};
use crate::balance::{self, BalanceKind, HashFallback, HashKey, HashTable};
use crate::control::dns::Names;
use crate::control::log_writer::Sink;
use crate::data::retry::{self, RetryPolicy};
use crate::middleware::{
    AccessLog, CustomRegistry, HeaderOps, HttpsRedirect, LogFormat, Middleware, RequestId, Rewrite,
    StripPrefix,
};
use crate::router::{HeaderCond, PathSpec, RouteSpec, Router};
use crate::tls::server as tls;
use crate::upstream::{
    self, DnsSpec, EndpointSpec, Family, HashPolicy, HealthCheckSpec, Http2Settings, NameSpec,
    OutlierSpec, PoolSettings, Probe, Protocol, RetryBudget, UpstreamSpec, UpstreamTls,
    UpstreamTlsSummary,
};

/// Opens access-log outputs (the control plane's writer threads; a detached
/// stand-in for `strait check`).
pub(crate) trait SinkOpener {
    fn open(&self, output: &str) -> Result<Arc<Sink>, String>;
}

const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
const DEFAULT_MAX_HEADERS: usize = 100;
const DEFAULT_H2_STREAMS: u32 = 256;
const MAX_WORKERS: i64 = 1024;
const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Compiles `source` (read from `file`) into a snapshot, or returns every error.
pub(crate) fn compile(
    file: &str,
    source: &str,
    generation: u64,
    registry: &CustomRegistry,
    sinks: &dyn SinkOpener,
    names: &Names<'_>,
) -> Result<Snapshot, ConfigErrors> {
    let mut d = Diagnostics::new(file, source);
    let raw: RawConfig = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(e) => {
            match e.span() {
                Some(span) => d.at(span, humanize(e.message())),
                None => d.global(humanize(e.message())),
            }
            return Err(d.finish());
        }
    };
    let mut c = Compiler {
        d,
        registry,
        sinks,
        names,
    };
    let server = c.server(&raw.server);
    let listeners = c.listeners(&raw, &server);
    let admin = c.admin(&raw.admin);
    let (upstreams, upstream_ids) = c.upstreams(&raw.upstreams);
    let middlewares = c.middlewares(&raw.middlewares);
    let fallback_log = c.fallback_log(&raw.server, &middlewares);
    let (router, routes) = c.routes(&raw.routes, &upstream_ids, &middlewares);
    let connect = raw.connect.as_ref().map(|raw| c.connect(raw.get_ref()));
    if !c.d.is_empty() {
        return Err(c.d.finish());
    }
    // The router is missing only when it reported errors, handled above.
    let Some(router) = router else {
        return Err(c.d.finish());
    };
    Ok(Snapshot {
        generation,
        source: file.to_string(),
        server,
        listeners,
        router,
        routes,
        upstreams,
        fallback_log,
        admin,
        stats: Default::default(),
        connect,
    })
}

/// A middleware definition after checking, ready to be put into chains.
enum Defined {
    Ready(Middleware),
    /// Defined but invalid: already reported; routes using it add no error.
    Broken,
}

struct Compiler<'s, 'r> {
    d: Diagnostics<'s>,
    registry: &'r CustomRegistry,
    sinks: &'r dyn SinkOpener,
    names: &'r Names<'r>,
}

fn span<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

impl Compiler<'_, '_> {
    fn duration(
        &mut self,
        value: &Option<Spanned<String>>,
        default: Duration,
        what: &str,
    ) -> Duration {
        let Some(value) = value else { return default };
        match v::parse_duration(value.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.d
                    .at(span(value), format!("{what} must be greater than zero"));
                default
            }
            Ok(d) => d,
            Err(msg) => {
                self.d.at(span(value), format!("{what}: {msg}"));
                default
            }
        }
    }

    fn int_in(
        &mut self,
        value: &Option<Spanned<i64>>,
        default: i64,
        range: Range<i64>,
        what: &str,
    ) -> i64 {
        let Some(value) = value else { return default };
        let n = *value.get_ref();
        if range.contains(&n) {
            n
        } else {
            self.d.at(
                span(value),
                format!(
                    "{what} = {n} is out of range: expected {} to {}",
                    range.start,
                    range.end - 1
                ),
            );
            default
        }
    }

    fn server(&mut self, raw: &RawServer) -> ServerSettings {
        let workers = self.int_in(&raw.workers, 0, 0..MAX_WORKERS + 1, "server.workers") as usize;
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            workers
        };
        let mut trusted_proxies = Vec::new();
        for entry in &raw.trusted_proxies {
            match v::parse_cidr(entry.get_ref()) {
                Ok(net) => trusted_proxies.push(net),
                Err(msg) => self.d.at(span(entry), msg),
            }
        }
        ServerSettings {
            workers,
            trusted_proxies,
            header_read_timeout: self.duration(
                &raw.header_read_timeout,
                DEFAULT_HEADER_READ_TIMEOUT,
                "server.header_read_timeout",
            ),
            max_header_bytes: self.int_in(
                &raw.max_header_bytes,
                DEFAULT_MAX_HEADER_BYTES as i64,
                8192..(1 << 20) + 1,
                "server.max_header_bytes",
            ) as usize,
            max_headers: self.int_in(
                &raw.max_headers,
                DEFAULT_MAX_HEADERS as i64,
                1..1001,
                "server.max_headers",
            ) as usize,
            http2_max_concurrent_streams: self.int_in(
                &raw.http2_max_concurrent_streams,
                i64::from(DEFAULT_H2_STREAMS),
                1..65536,
                "server.http2_max_concurrent_streams",
            ) as u32,
            add_forwarded_headers: raw.add_forwarded_headers.unwrap_or(true),
            preserve_host: raw.preserve_host.unwrap_or(true),
            drain_timeout: self.duration(
                &raw.drain_timeout,
                DEFAULT_DRAIN_TIMEOUT,
                "server.drain_timeout",
            ),
            watch_config: raw.watch_config.unwrap_or(true),
        }
    }

    fn admin(&mut self, raw: &RawAdmin) -> AdminSettings {
        let token = match &raw.token {
            Some(t) if t.get_ref().trim().is_empty() => {
                self.d.at(
                    span(t),
                    "admin.token is empty: remove it or set a secret of at least 16 characters",
                );
                None
            }
            Some(t) if t.get_ref().len() < 16 => {
                self.d.at(
                    span(t),
                    "admin.token is too short: expected at least 16 characters",
                );
                None
            }
            Some(t) => Some(t.get_ref().clone()),
            None => None,
        };
        if raw.enabled == Some(false) {
            return AdminSettings {
                listen: None,
                token,
            };
        }
        let text = raw
            .listen
            .as_ref()
            .map_or(super::snapshot::DEFAULT_ADMIN_LISTEN, |l| l.get_ref());
        let listen = match v::parse_listen_addr(text) {
            Ok(addr) => Some(addr),
            Err(msg) => {
                if let Some(l) = &raw.listen {
                    self.d.at(span(l), format!("admin.listen: {msg}"));
                }
                None
            }
        };
        if let (Some(addr), None, false) = (listen, &token, raw.token.is_some()) {
            if !addr.ip().is_loopback() {
                let msg = super::snapshot::admin_exposed_message(addr);
                match &raw.listen {
                    Some(l) => self.d.at(span(l), msg),
                    None => self.d.global(msg),
                }
            }
        }
        AdminSettings { listen, token }
    }

    fn listeners(&mut self, raw: &RawConfig, server: &ServerSettings) -> Vec<ListenerSpec> {
        if raw.listeners.is_empty() {
            self.d.global(
                "no [[listeners]]: expected at least one, e.g. address = \"127.0.0.1:8080\"",
            );
        }
        let mut out: Vec<ListenerSpec> = Vec::new();
        let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
        for (i, l) in raw.listeners.iter().enumerate() {
            let l = l.get_ref();
            let name = l
                .name
                .as_ref()
                .map_or_else(|| format!("listener-{}", i + 1), |n| n.get_ref().clone());
            if let Some(n) = &l.name {
                if out.iter().any(|o| o.name == *n.get_ref()) {
                    self.d.at(
                        span(n),
                        format!("duplicate listener name {:?}", n.get_ref()),
                    );
                }
            }
            match v::parse_listen_addr(l.address.get_ref()) {
                Ok(addr) => {
                    if let Some(prev) = seen.insert(addr, i) {
                        self.d.at(
                            span(&l.address),
                            format!(
                                "listener address {addr} is already used by listener {}",
                                prev + 1
                            ),
                        );
                    }
                    let tls = l
                        .tls
                        .as_ref()
                        .and_then(|t| self.listener_tls(&name, t, server));
                    out.push(ListenerSpec { name, addr, tls });
                }
                Err(msg) => self.d.at(span(&l.address), msg),
            }
        }
        out
    }

    /// `[listeners.tls]`: reads and checks every certificate, key and client
    /// CA, and builds the listener's rustls configuration.
    fn listener_tls(
        &mut self,
        listener: &str,
        raw: &Spanned<RawListenerTls>,
        server: &ServerSettings,
    ) -> Option<Arc<tls::ServerTls>> {
        let before = self.error_count();
        let t = raw.get_ref();
        let at = |what: &str| format!("listener {listener:?}: {what}");
        let tls13_only = match &t.min_version {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "1.2" => false,
                "1.3" => true,
                other => {
                    self.d.at(
                        span(v),
                        at(&format!("tls.min_version = {other:?} is not supported: expected \"1.2\" or \"1.3\"")),
                    );
                    false
                }
            },
        };
        let alpn = match &t.alpn {
            None => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.d.at(
                        span(list),
                        at("tls.alpn is empty: expected one or both of \"h2\", \"http/1.1\" (omit it for both)"),
                    );
                }
                let mut alpn: Vec<Vec<u8>> = Vec::new();
                for p in list.get_ref() {
                    match p.get_ref().as_str() {
                        proto @ ("h2" | "http/1.1") => {
                            if !alpn.iter().any(|a| a == proto.as_bytes()) {
                                alpn.push(proto.as_bytes().to_vec());
                            }
                        }
                        other => self.d.at(
                            span(p),
                            at(&format!("unknown ALPN protocol {other:?} in tls.alpn: expected \"h2\" or \"http/1.1\"")),
                        ),
                    }
                }
                alpn
            }
        };
        let handshake_timeout = self.duration(
            &t.handshake_timeout,
            server.header_read_timeout,
            &at("tls.handshake_timeout"),
        );
        let required = match (&t.client_auth, &t.client_ca) {
            (Some(a), None) => {
                self.d.at(
                    span(a),
                    at("tls.client_auth is set but tls.client_ca is not: client certificates are verified against client_ca"),
                );
                true
            }
            (Some(a), Some(_)) => {
                match a.get_ref().as_str() {
                    "required" => true,
                    "optional" => false,
                    other => {
                        self.d.at(
                        span(a),
                        at(&format!("tls.client_auth = {other:?}: expected \"required\" or \"optional\"")),
                    );
                        true
                    }
                }
            }
            (None, _) => true,
        };
        let client_auth_name = match (&t.client_ca, required) {
            (None, _) => "none",
            (Some(_), true) => "required",
            (Some(_), false) => "optional",
        };
        let client_auth =
            t.client_ca
                .as_ref()
                .and_then(|ca| match tls::read_client_roots(ca.get_ref()) {
                    Ok(roots) => Some(tls::ClientAuth { roots, required }),
                    Err(msg) => {
                        self.d.at(span(ca), at(&msg));
                        None
                    }
                });

        if t.certificates.is_empty() {
            self.d.at(
                span(raw),
                at("[listeners.tls] has no certificates: expected at least one [[listeners.tls.certificates]] with cert and key"),
            );
        }
        // The default: the one marked `default = true`, else the first.
        let mut default = None;
        for (i, c) in t.certificates.iter().enumerate() {
            if let Some(d) = &c.get_ref().default {
                if *d.get_ref() {
                    match default {
                        Some(first) => self.d.at(
                            span(d),
                            at(&format!("more than one certificate has default = true (certificate {} and {}): expected at most one", first + 1, i + 1)),
                        ),
                        None => default = Some(i),
                    }
                }
            }
        }
        let default = default.unwrap_or(0);
        let now = tls::now();
        let mut certs = Vec::new();
        let mut summaries = Vec::new();
        // Name → the certificate (1-based) that serves it.
        let mut served: HashMap<String, usize> = HashMap::new();
        for (i, c) in t.certificates.iter().enumerate() {
            let c = c.get_ref();
            let cert_path = c.cert.get_ref().as_str();
            let mut names: Vec<(String, Option<Range<usize>>)> = Vec::new();
            for n in c.names.iter().flatten() {
                match tls::parse_name(n.get_ref()) {
                    Ok(name) => names.push((name, Some(span(n)))),
                    Err(msg) => self.d.at(span(n), at(&msg)),
                }
            }
            let chain = tls::read_certificates(cert_path, "certificate")
                .map_err(|msg| self.d.at(span(&c.cert), at(&msg)))
                .ok();
            let key = tls::read_private_key(c.key.get_ref())
                .map_err(|msg| self.d.at(span(&c.key), at(&msg)))
                .ok();
            let (Some(chain), Some(key)) = (chain, key) else {
                continue;
            };
            let leaf = match tls::inspect(&chain[0], cert_path) {
                Ok(leaf) => leaf,
                Err(msg) => {
                    self.d.at(span(&c.cert), at(&msg));
                    continue;
                }
            };
            if let Some(msg) = leaf.validity_error(now, cert_path) {
                self.d.at(span(&c.cert), at(&msg));
            }
            for (name, name_at) in &names {
                if !leaf.covers(name) {
                    let at_name = name_at.clone().unwrap_or_else(|| span(&c.cert));
                    self.d.at(
                        at_name,
                        at(&format!(
                            "name {name:?} is not covered by certificate {cert_path:?}: its DNS names are {:?} (a mismatched certificate)",
                            leaf.dns_names
                        )),
                    );
                }
            }
            if c.names.is_none() {
                names = leaf.dns_names.iter().map(|n| (n.clone(), None)).collect();
                if names.is_empty() && i != default {
                    self.d.at(
                        span(&c.cert),
                        at(&format!("certificate {cert_path:?} has no DNS names (subjectAltName) and no names: it would never be chosen; set names or make it the default")),
                    );
                }
            }
            for (name, name_at) in &names {
                if let Some(prev) = served.insert(name.clone(), i + 1) {
                    if prev != i + 1 {
                        self.d.at(
                            name_at.clone().unwrap_or_else(|| span(&c.cert)),
                            at(&format!("name {name:?} is served by certificates {prev} and {}: expected each name once per listener", i + 1)),
                        );
                    }
                }
            }
            let names: Vec<String> = names.into_iter().map(|(n, _)| n).collect();
            summaries.push(tls::CertificateSummary {
                cert: cert_path.to_string(),
                names: names.clone(),
                default: i == default,
                not_after: leaf.not_after,
            });
            match tls::certified_key(chain, key, c.key.get_ref(), cert_path) {
                Ok(key) => certs.push((key, names)),
                Err(msg) => self.d.at(span(&c.key), at(&msg)),
            }
        }
        if self.error_count() > before {
            return None;
        }
        let summary = tls::ServerTlsSummary {
            min_version: if tls13_only { "1.3" } else { "1.2" },
            alpn: alpn
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
            client_auth: client_auth_name,
            client_ca: t.client_ca.as_ref().map(|ca| ca.get_ref().clone()),
            certificates: summaries,
        };
        let resolver = tls::CertResolver::new(certs, default);
        match tls::server_config(resolver, tls13_only, alpn, client_auth) {
            Ok(config) => Some(Arc::new(tls::ServerTls {
                config: Arc::new(config),
                handshake_timeout,
                listener: listener.into(),
                summary,
            })),
            Err(msg) => {
                self.d.at(span(raw), at(&msg));
                None
            }
        }
    }

    fn upstreams(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<RawUpstream>>,
    ) -> (Vec<UpstreamSpec>, HashMap<String, usize>) {
        let mut specs = Vec::new();
        let mut ids = HashMap::new();
        for (name, up) in raw {
            if let Some(spec) = self.upstream(name.get_ref(), up) {
                ids.insert(name.get_ref().clone(), specs.len());
                specs.push(spec);
            } else {
                // Known but broken: routes pointing to it get no second error.
                ids.insert(name.get_ref().clone(), usize::MAX);
            }
        }
        (specs, ids)
    }

    fn upstream(&mut self, name: &str, raw: &Spanned<RawUpstream>) -> Option<UpstreamSpec> {
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
            match v::parse_endpoint(address) {
                Ok(v::EndpointAddr::Ip(addr)) => {
                    endpoints.push(endpoint(addr, weight, &addr.to_string()));
                    hosts.push(None);
                }
                Ok(v::EndpointAddr::Name(host, port)) => {
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
            balance,
            hash,
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
            names: names.into(),
            dns,
            protocol,
            http2,
            tls,
            transport,
        };
        (self.error_count() == before).then_some(spec)
    }

    /// `[upstreams.NAME.tls]`: the client configuration and, per endpoint,
    /// the name it is verified against and its pool key; and the pool key
    /// of cleartext connections. Also checks that `protocol` fits (h2c is
    /// cleartext, h2 needs TLS).
    fn upstream_tls(
        &mut self,
        name: &str,
        up: &RawUpstream,
        protocol: Protocol,
        endpoints: &[EndpointSpec],
        hosts: &[Option<Box<str>>],
    ) -> (Option<Box<UpstreamTls>>, u64) {
        let cleartext = transport_key(protocol, None);
        let what = |k: &str| format!("upstreams.{name}.tls.{k}");
        let Some(raw) = &up.tls else {
            if let (Protocol::H2, Some(p)) = (protocol, &up.protocol) {
                self.d.at(
                    span(p),
                    format!("upstreams.{name}.protocol = \"h2\" needs TLS ([upstreams.{name}.tls]): for HTTP/2 without TLS use \"h2c\""),
                );
            }
            return (None, cleartext);
        };
        if let (Protocol::H2c, Some(p)) = (protocol, &up.protocol) {
            self.d.at(
                span(p),
                format!("upstreams.{name}.protocol = \"h2c\" is cleartext HTTP/2 and cannot be used with [upstreams.{name}.tls]: use \"h2\" or \"auto\" for HTTP/2 over TLS"),
            );
            return (None, cleartext);
        }
        let t = raw.get_ref();
        let client_auth = match (&t.client_cert, &t.client_key) {
            (Some(cert), Some(key)) => Some((cert.get_ref().as_str(), key.get_ref().as_str())),
            (None, None) => None,
            (Some(cert), None) => {
                self.d.at(
                    span(cert),
                    format!(
                        "{} needs {} (the certificate's private key)",
                        what("client_cert"),
                        what("client_key")
                    ),
                );
                return (None, cleartext);
            }
            (None, Some(key)) => {
                self.d.at(
                    span(key),
                    format!(
                        "{} needs {} (the certificate it belongs to)",
                        what("client_key"),
                        what("client_cert")
                    ),
                );
                return (None, cleartext);
            }
        };
        let configured = match &t.server_name {
            None => None,
            Some(n) => match crate::tls::client::server_name(n.get_ref()) {
                Ok(sn) => Some(sn),
                Err(msg) => {
                    self.d
                        .at(span(n), format!("{}: {msg}", what("server_name")));
                    return (None, cleartext);
                }
            },
        };
        let insecure = t.insecure_skip_verify.unwrap_or(false);
        let settings = crate::tls::client::ClientSettings {
            ca_file: t.ca_file.as_ref().map(|f| f.get_ref().as_str()),
            client_auth,
            insecure_skip_verify: insecure,
            alpn: protocol.alpn(),
        };
        let config = match crate::tls::client::client_config(&settings) {
            Ok(config) => config,
            Err(e) => {
                let at = match e.key {
                    "ca_file" => t.ca_file.as_ref().map(span),
                    "client_cert" => t.client_cert.as_ref().map(span),
                    "client_key" => t.client_key.as_ref().map(span),
                    _ => None,
                }
                .unwrap_or_else(|| span(raw));
                self.d.at(at, format!("{}: {}", what(e.key), e.message));
                return (None, cleartext);
            }
        };
        if insecure {
            tracing::warn!(
                upstream = name,
                "upstreams.{name}.tls.insecure_skip_verify = true: the endpoints' certificates are NOT verified (for test setups only)"
            );
        }
        // What the pool key distinguishes: the settings as written.
        let identity = format!(
            "{:?} {:?} {:?} {insecure}",
            settings.ca_file,
            t.client_cert.as_ref().map(|c| c.get_ref()),
            t.client_key.as_ref().map(|k| k.get_ref())
        );
        let mut server_names = Vec::with_capacity(endpoints.len());
        let mut keys = Vec::with_capacity(endpoints.len());
        for (ep, host) in endpoints.iter().zip(hosts) {
            let sn = match (&configured, host) {
                (Some(sn), _) => sn.clone(),
                (None, Some(host)) => match crate::tls::client::server_name(host) {
                    Ok(sn) => sn,
                    Err(msg) => {
                        self.d.at(
                            span(raw),
                            format!(
                                "upstream {name:?}: endpoint host {msg}: set {}",
                                what("server_name")
                            ),
                        );
                        return (None, cleartext);
                    }
                },
                (None, None) => rustls::pki_types::ServerName::IpAddress(ep.addr.ip().into()),
            };
            keys.push(transport_key(
                protocol,
                Some(&format!("{identity} {}", sn.to_str())),
            ));
            server_names.push(sn);
        }
        // Upgrades (WebSocket) need HTTP/1.1 whatever the upstream's
        // protocol: the same settings with ALPN offering only http/1.1.
        let http1_config = {
            let mut c = (*config).clone();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            std::sync::Arc::new(c)
        };
        let tls = UpstreamTls {
            config,
            http1_config,
            server_names: server_names.into(),
            keys: keys.into(),
            summary: UpstreamTlsSummary {
                ca_file: settings.ca_file.map(str::to_string),
                server_name: t.server_name.as_ref().map(|n| n.get_ref().clone()),
                client_cert: t.client_cert.as_ref().map(|c| c.get_ref().clone()),
                insecure_skip_verify: insecure,
            },
        };
        (Some(Box::new(tls)), cleartext)
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

    fn retry(&mut self, route: &str, r: &RawRetry) -> RetryPolicy {
        let what = |k: &str| format!("route {route:?}: retry.{k}");
        let mut policy = RetryPolicy {
            attempts: self.int_in(
                &r.attempts,
                i64::from(retry::DEFAULT_ATTEMPTS),
                2..11,
                &what("attempts"),
            ) as u32,
            per_try_timeout: r
                .per_try_timeout
                .as_ref()
                .map(|t| self.duration(&Some(t.clone()), Duration::ZERO, &what("per_try_timeout"))),
            on_connect_failure: false,
            on_reset: false,
            on_timeout: false,
            on_statuses: Vec::new(),
            non_idempotent: r.non_idempotent.unwrap_or(false),
            replay_limit: self.int_in(
                &r.replay_limit,
                retry::DEFAULT_REPLAY_LIMIT as i64,
                0..(16 << 20) + 1,
                &what("replay_limit"),
            ) as u64,
            backoff_base: self.duration(
                &r.backoff_base,
                retry::DEFAULT_BACKOFF_BASE,
                &what("backoff_base"),
            ),
            backoff_max: self.duration(
                &r.backoff_max,
                retry::DEFAULT_BACKOFF_MAX,
                &what("backoff_max"),
            ),
        };
        if r.on.is_empty() {
            policy.on_connect_failure = true;
            policy.on_reset = true;
            policy.on_statuses = vec![502, 503, 504];
        }
        for cond in &r.on {
            match cond.get_ref().as_str() {
                "connect_failure" => policy.on_connect_failure = true,
                "reset" => policy.on_reset = true,
                "timeout" => policy.on_timeout = true,
                other => match other.parse::<u16>() {
                    Ok(status) if (500..=599).contains(&status) => policy.on_statuses.push(status),
                    _ => self.d.at(
                        span(cond),
                        format!(
                            "{}: unknown condition {other:?}: expected one of {:?} or a 5xx status like \"503\"",
                            what("on"),
                            retry::CONDITIONS
                        ),
                    ),
                },
            }
        }
        if policy.backoff_max < policy.backoff_base {
            if let Some(m) = &r.backoff_max {
                self.d.at(
                    span(m),
                    format!(
                        "{} ({:?}) is shorter than backoff_base ({:?})",
                        what("backoff_max"),
                        policy.backoff_max,
                        policy.backoff_base
                    ),
                );
            }
        }
        policy
    }

    fn outlier(&mut self, upstream: &str, o: &RawOutlierDetection) -> OutlierSpec {
        let what = |k: &str| format!("upstreams.{upstream}.outlier_detection.{k}");
        let spec = OutlierSpec {
            consecutive_5xx: self.int_in(
                &o.consecutive_5xx,
                i64::from(upstream::DEFAULT_CONSECUTIVE_5XX),
                0..1001,
                &what("consecutive_5xx"),
            ) as u32,
            consecutive_connect_failures: self.int_in(
                &o.consecutive_connect_failures,
                i64::from(upstream::DEFAULT_CONSECUTIVE_CONNECT_FAILURES),
                0..1001,
                &what("consecutive_connect_failures"),
            ) as u32,
            base_ejection_time: self.duration(
                &o.base_ejection_time,
                upstream::DEFAULT_BASE_EJECTION_TIME,
                &what("base_ejection_time"),
            ),
            max_ejection_time: self.duration(
                &o.max_ejection_time,
                upstream::DEFAULT_MAX_EJECTION_TIME.max(
                    o.base_ejection_time
                        .as_ref()
                        .and_then(|b| v::parse_duration(b.get_ref()).ok())
                        .unwrap_or_default(),
                ),
                &what("max_ejection_time"),
            ),
            max_ejection_percent: self.int_in(
                &o.max_ejection_percent,
                i64::from(upstream::DEFAULT_MAX_EJECTION_PERCENT),
                0..101,
                &what("max_ejection_percent"),
            ) as u32,
        };
        if spec.max_ejection_time < spec.base_ejection_time {
            if let Some(m) = &o.max_ejection_time {
                self.d.at(
                    span(m),
                    format!(
                        "{} ({:?}) is shorter than base_ejection_time ({:?})",
                        what("max_ejection_time"),
                        spec.max_ejection_time,
                        spec.base_ejection_time
                    ),
                );
            }
        }
        spec
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

    /// The hashing of a `ring` or `maglev` upstream (its key, fallback and
    /// table, built here once), or `None` for the other algorithms, which
    /// refuse the hashing keys.
    fn hash_policy(
        &mut self,
        name: &str,
        up: &RawUpstream,
        balance: BalanceKind,
        endpoints: &[EndpointSpec],
    ) -> Option<HashPolicy> {
        let what = |k: &str| format!("upstreams.{name}.{k}");
        let only_for = |key: &str, applies: &str| {
            format!(
                "{} applies to balance = {applies} only, not \"{}\"",
                what(key),
                balance.name()
            )
        };
        if balance != BalanceKind::Ring {
            if let Some(v) = &up.virtual_nodes {
                self.d.at(span(v), only_for("virtual_nodes", "\"ring\""));
            }
        }
        if balance != BalanceKind::Maglev {
            if let Some(v) = &up.maglev_table_size {
                self.d
                    .at(span(v), only_for("maglev_table_size", "\"maglev\""));
            }
        }
        if !balance.is_hash() {
            if let Some(k) = &up.hash_key {
                self.d
                    .at(span(k), only_for("hash_key", "\"ring\" or \"maglev\""));
            }
            if let Some(f) = &up.hash_fallback {
                self.d
                    .at(span(f), only_for("hash_fallback", "\"ring\" or \"maglev\""));
            }
            return None;
        }
        let key = match &up.hash_key {
            Some(k) => match HashKey::parse(k.get_ref()) {
                Ok(key) => Some(key),
                Err(msg) => {
                    self.d.at(span(k), format!("{}: {msg}", what("hash_key")));
                    None
                }
            },
            None => {
                // `balance` is set: a hashing kind is never the default.
                if let Some(b) = &up.balance {
                    self.d.at(
                        span(b),
                        format!(
                            "upstream {name:?}: balance = \"{}\" needs hash_key: expected \"header:NAME\", \"cookie:NAME\", \"client_ip\" or \"path\"",
                            balance.name()
                        ),
                    );
                }
                None
            }
        };
        let fallback = match &up.hash_fallback {
            None => HashFallback::RoundRobin,
            Some(f) => HashFallback::parse(f.get_ref()).unwrap_or_else(|msg| {
                self.d
                    .at(span(f), format!("{}: {msg}", what("hash_fallback")));
                HashFallback::RoundRobin
            }),
        };
        let (size, table) = if balance == BalanceKind::Ring {
            let vnodes = self.int_in(
                &up.virtual_nodes,
                i64::from(balance::DEFAULT_VIRTUAL_NODES),
                1..10_001,
                &what("virtual_nodes"),
            ) as u32;
            let total_weight: u64 = endpoints.iter().map(|e| u64::from(e.weight)).sum();
            let points = total_weight * u64::from(vnodes);
            if points > balance::MAX_RING_POINTS {
                let at = up
                    .virtual_nodes
                    .as_ref()
                    .map(span)
                    .or(up.balance.as_ref().map(span));
                let msg = format!(
                    "upstream {name:?}: the ring would have {points} points (virtual_nodes {vnodes} × total weight {total_weight}): expected at most {}; lower virtual_nodes or the weights",
                    balance::MAX_RING_POINTS
                );
                match at {
                    Some(at) => self.d.at(at, msg),
                    None => self.d.global(msg),
                }
                return None;
            }
            (vnodes, HashTable::ring(endpoints, vnodes))
        } else {
            let size = self.int_in(
                &up.maglev_table_size,
                i64::from(balance::DEFAULT_MAGLEV_TABLE_SIZE),
                7..i64::from(balance::MAX_MAGLEV_TABLE_SIZE) + 1,
                &what("maglev_table_size"),
            ) as u32;
            // The place to blame: the size if given, else `balance`.
            let at = up
                .maglev_table_size
                .as_ref()
                .map(span)
                .or(up.balance.as_ref().map(span));
            let set = up.maglev_table_size.as_ref().map(|v| *v.get_ref());
            let problem = if set.is_some_and(|n| n as u32 == size)
                && !balance::is_prime(u64::from(size))
            {
                Some(format!(
                    "{} = {size} is not a prime: expected a prime such as 65537 or 251",
                    what("maglev_table_size")
                ))
            } else if (size as usize) < endpoints.len() * 10 {
                Some(format!(
                    "{} = {size} is too small for {} endpoints: expected at least 10 slots per endpoint",
                    what("maglev_table_size"),
                    endpoints.len()
                ))
            } else {
                None
            };
            if let Some(msg) = problem {
                match at {
                    Some(at) => self.d.at(at, msg),
                    None => self.d.global(msg),
                }
                return None;
            }
            (size, HashTable::maglev(endpoints, size))
        };
        Some(HashPolicy {
            key: key?,
            fallback,
            size,
            table,
        })
    }

    fn health_check(&mut self, upstream: &str, raw: &Spanned<RawHealthCheck>) -> HealthCheckSpec {
        let h = raw.get_ref();
        let what = |k: &str| format!("upstreams.{upstream}.health_check.{k}");
        let kind = h.kind.as_ref().map_or("http", |k| k.get_ref().as_str());
        let probe = match kind {
            "tcp" => {
                for (set, key) in [
                    (h.method.as_ref().map(span), "method"),
                    (h.path.as_ref().map(span), "path"),
                    (h.host.as_ref().map(span), "host"),
                    (h.expected_statuses.first().map(span), "expected_statuses"),
                ] {
                    if let Some(at) = set {
                        self.d.at(
                            at,
                            format!("{} applies to type = \"http\" only, not \"tcp\"", what(key)),
                        );
                    }
                }
                Probe::Tcp
            }
            "http" => {
                let method = match &h.method {
                    None => Method::GET,
                    Some(m) => match Method::from_bytes(m.get_ref().as_bytes()) {
                        Ok(m) => m,
                        Err(_) => {
                            self.d.at(
                                span(m),
                                format!(
                                    "{}: invalid method {:?}: expected a token like \"GET\"",
                                    what("method"),
                                    m.get_ref()
                                ),
                            );
                            Method::GET
                        }
                    },
                };
                let path = match &h.path {
                    None => "/".to_string(),
                    Some(p)
                        if p.get_ref().starts_with('/')
                            && http::uri::PathAndQuery::try_from(p.get_ref().as_str()).is_ok() =>
                    {
                        p.get_ref().clone()
                    }
                    Some(p) => {
                        self.d.at(
                            span(p),
                            format!(
                                "{}: invalid path {:?}: expected an absolute path like \"/healthz\"",
                                what("path"),
                                p.get_ref()
                            ),
                        );
                        "/".to_string()
                    }
                };
                let host = match &h.host {
                    None => None,
                    Some(v)
                        if http::HeaderValue::from_str(v.get_ref()).is_ok()
                            && !v.get_ref().is_empty() =>
                    {
                        Some(v.get_ref().clone())
                    }
                    Some(v) => {
                        self.d.at(
                            span(v),
                            format!("{}: invalid host {:?}", what("host"), v.get_ref()),
                        );
                        None
                    }
                };
                let mut statuses = Vec::new();
                for s in &h.expected_statuses {
                    match parse_status_range(s.get_ref()) {
                        Ok(r) => statuses.push(r),
                        Err(msg) => self
                            .d
                            .at(span(s), format!("{}: {msg}", what("expected_statuses"))),
                    }
                }
                if statuses.is_empty() {
                    statuses.push((200, 399));
                }
                Probe::Http {
                    method,
                    path,
                    host,
                    statuses,
                }
            }
            other => {
                if let Some(k) = &h.kind {
                    self.d.at(
                        span(k),
                        format!(
                            "{}: unknown type {other:?}: expected \"http\" or \"tcp\"",
                            what("type")
                        ),
                    );
                }
                Probe::Tcp
            }
        };
        let interval = self.duration(
            &h.interval,
            upstream::DEFAULT_HEALTH_INTERVAL,
            &what("interval"),
        );
        let timeout = self.duration(
            &h.timeout,
            upstream::DEFAULT_HEALTH_TIMEOUT,
            &what("timeout"),
        );
        if timeout > interval {
            if let Some(t) = &h.timeout {
                self.d.at(
                    span(t),
                    format!(
                        "{} ({timeout:?}) is longer than the interval ({interval:?}): probes would overlap",
                        what("timeout")
                    ),
                );
            }
        }
        HealthCheckSpec {
            probe,
            interval,
            timeout,
            healthy_threshold: self.int_in(
                &h.healthy_threshold,
                i64::from(upstream::DEFAULT_HEALTHY_THRESHOLD),
                1..101,
                &what("healthy_threshold"),
            ) as u32,
            unhealthy_threshold: self.int_in(
                &h.unhealthy_threshold,
                i64::from(upstream::DEFAULT_UNHEALTHY_THRESHOLD),
                1..101,
                &what("unhealthy_threshold"),
            ) as u32,
            fail_open: h.fail_open.unwrap_or(false),
        }
    }

    /// Diagnostics only grows; comparing counts tells whether a part added errors.
    fn error_count(&self) -> usize {
        self.d.len()
    }

    fn middlewares(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<RawMiddleware>>,
    ) -> HashMap<String, Defined> {
        let mut out = HashMap::new();
        for (name, def) in raw {
            let built = match self.middleware(name.get_ref(), def.get_ref()) {
                Ok(m) => Defined::Ready(m),
                Err(msg) => {
                    self.d
                        .at(span(def), format!("middleware {:?}: {msg}", name.get_ref()));
                    Defined::Broken
                }
            };
            out.insert(name.get_ref().clone(), built);
        }
        out
    }

    fn middleware(&mut self, _name: &str, raw: &RawMiddleware) -> Result<Middleware, String> {
        Ok(match raw {
            RawMiddleware::RequestId {
                header,
                response,
                trust_incoming,
            } => {
                let header_text = header.as_deref().unwrap_or("x-request-id");
                let header = intern::header_name(header_text)
                    .ok_or_else(|| format!("invalid header name {header_text:?}: expected a token such as \"x-request-id\""))?;
                Middleware::RequestId(RequestId {
                    header,
                    response: response.unwrap_or(true),
                    trust_incoming: trust_incoming.unwrap_or(true),
                })
            }
            RawMiddleware::Headers {
                request_set,
                request_append,
                request_remove,
                response_set,
                response_append,
                response_remove,
            } => {
                let mut ops = HeaderOps {
                    request: Default::default(),
                    response: Default::default(),
                };
                ops.request.set = header_pairs(request_set)?;
                ops.request.append = header_pairs(request_append)?;
                ops.request.remove = header_names(request_remove)?;
                ops.response.set = header_pairs(response_set)?;
                ops.response.append = header_pairs(response_append)?;
                ops.response.remove = header_names(response_remove)?;
                Middleware::Headers(ops)
            }
            RawMiddleware::StripPrefix { prefix } => {
                if !prefix.starts_with('/')
                    || (prefix.len() > 1 && prefix.ends_with('/'))
                    || prefix == "/"
                {
                    return Err(format!(
                        "strip_prefix prefix {prefix:?} is invalid: expected a path starting with '/' and not ending with '/', e.g. \"/api\""
                    ));
                }
                Middleware::StripPrefix(StripPrefix {
                    prefix: prefix.as_str().into(),
                })
            }
            RawMiddleware::Rewrite { path } => {
                if !path.starts_with('/') {
                    return Err(format!("rewrite path {path:?} must start with '/'"));
                }
                Middleware::Rewrite(Rewrite::parse(path)?)
            }
            RawMiddleware::AccessLog { format, output } => {
                self.access_log(format.as_deref(), output.as_deref())?
            }
            RawMiddleware::HttpsRedirect { port, status } => {
                let port = port.unwrap_or(443);
                let port = u16::try_from(port)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| {
                        format!("https_redirect port = {port} is out of range: expected 1 to 65535")
                    })?;
                let status = status.unwrap_or(301);
                if ![301, 302, 307, 308].contains(&status) {
                    return Err(format!(
                        "https_redirect status = {status} is not a redirect status: expected 301, 302, 307 or 308"
                    ));
                }
                Middleware::HttpsRedirect(HttpsRedirect::new(port, status as u16))
            }
            RawMiddleware::Custom { name, settings } => {
                let factory = self.registry.get(name).ok_or_else(|| {
                    let known = self.registry.names();
                    if known.is_empty() {
                        format!("custom middleware {name:?} is not registered (no custom middlewares are registered in this build)")
                    } else {
                        format!("custom middleware {name:?} is not registered: expected one of {known:?}")
                    }
                })?;
                Middleware::Custom(factory.build(settings)?)
            }
        })
    }

    fn access_log(
        &mut self,
        format: Option<&str>,
        output: Option<&str>,
    ) -> Result<Middleware, String> {
        let format = match format.unwrap_or("combined") {
            "combined" => LogFormat::Combined,
            "json" => LogFormat::Json,
            other => {
                return Err(format!(
                    "unknown access log format {other:?}: expected \"combined\" or \"json\""
                ))
            }
        };
        let output = output.unwrap_or("stdout");
        if output.is_empty() {
            return Err(
                "access log output is empty: expected \"stdout\", \"stderr\" or a file path".into(),
            );
        }
        let sink = self.sinks.open(output)?;
        Ok(Middleware::AccessLog(AccessLog { format, sink }))
    }

    /// A middleware by name: a definition, or a built-in used with its defaults.
    fn lookup(
        &mut self,
        name: &str,
        defined: &HashMap<String, Defined>,
    ) -> Result<Option<Middleware>, String> {
        match defined.get(name) {
            Some(Defined::Ready(m)) => Ok(Some(m.clone())),
            Some(Defined::Broken) => Ok(None),
            None => match name {
                "request_id" => self
                    .middleware(
                        name,
                        &RawMiddleware::RequestId {
                            header: None,
                            response: None,
                            trust_incoming: None,
                        },
                    )
                    .map(Some),
                "access_log" => self.access_log(None, None).map(Some),
                _ => {
                    let mut known: Vec<&str> = defined.keys().map(String::as_str).collect();
                    known.extend(["request_id", "access_log"]);
                    known.sort_unstable();
                    known.dedup();
                    Err(format!("unknown middleware {name:?}: expected one of {known:?} (define it under [middlewares.{name}])"))
                }
            },
        }
    }

    fn fallback_log(
        &mut self,
        raw: &RawServer,
        defined: &HashMap<String, Defined>,
    ) -> Option<AccessLog> {
        let name = raw.access_log.as_ref()?;
        match self.lookup(name.get_ref(), defined) {
            Ok(Some(Middleware::AccessLog(log))) => Some(log),
            Ok(Some(_)) => {
                self.d.at(
                    span(name),
                    format!(
                        "server.access_log = {:?} is not an access_log middleware",
                        name.get_ref()
                    ),
                );
                None
            }
            Ok(None) => None,
            Err(msg) => {
                self.d.at(span(name), format!("server.access_log: {msg}"));
                None
            }
        }
    }

    fn routes(
        &mut self,
        raw: &[Spanned<RawRoute>],
        upstream_ids: &HashMap<String, usize>,
        defined: &HashMap<String, Defined>,
    ) -> (Option<Router>, Vec<Route>) {
        if raw.is_empty() {
            self.d.global("no [[routes]]: every request would get 404; expected at least one route with an upstream");
        }
        let mut specs = Vec::new();
        let mut routes = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, spanned) in raw.iter().enumerate() {
            let r = spanned.get_ref();
            let name = r
                .name
                .as_ref()
                .map_or_else(|| format!("route-{}", i + 1), |n| n.get_ref().clone());
            if let Some(prev) = names.insert(name.clone(), i) {
                let at = r.name.as_ref().map_or_else(|| span(spanned), span);
                self.d.at(
                    at,
                    format!("duplicate route name {name:?} (also route {})", prev + 1),
                );
            }
            let (spec, params) = self.route_match(&name, r.matcher.as_ref());
            let upstream = match upstream_ids.get(r.upstream.get_ref()) {
                Some(&id) => id,
                None => {
                    let mut known: Vec<&str> = upstream_ids.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    self.d.at(
                        span(&r.upstream),
                        format!(
                            "route {name:?}: unknown upstream {:?}: expected one of {known:?}",
                            r.upstream.get_ref()
                        ),
                    );
                    usize::MAX
                }
            };
            let mut chain = Vec::new();
            let mut middleware_names = Vec::new();
            for m in &r.middlewares {
                match self.lookup(m.get_ref(), defined) {
                    Ok(Some(mw)) => {
                        if let Some(names) = mw.rewrite_params() {
                            for p in names {
                                if !params.iter().any(|q| q == p) {
                                    self.d.at(
                                        span(m),
                                        format!(
                                            "route {name:?}: middleware {:?} uses parameter {{{p}}} that the route's path_pattern does not capture",
                                            m.get_ref()
                                        ),
                                    );
                                }
                            }
                        }
                        chain.push(mw);
                        middleware_names.push(m.get_ref().as_str().into());
                    }
                    Ok(None) => {}
                    Err(msg) => self.d.at(span(m), format!("route {name:?}: {msg}")),
                }
            }
            specs.push(spec.clone());
            let timeout = r.timeout.as_ref().map(|t| {
                self.duration(
                    &Some(t.clone()),
                    Duration::ZERO,
                    &format!("route {name:?}: timeout"),
                )
            });
            let retry = r
                .retry
                .as_ref()
                .map(|raw| Box::new(self.retry(&name, raw.get_ref())));
            let upgrades = self.upgrades(&name, r.upgrades.as_deref());
            let tunnel_idle_timeout = self.duration(
                &r.tunnel_idle_timeout,
                DEFAULT_TUNNEL_IDLE_TIMEOUT,
                &format!("route {name:?}: tunnel_idle_timeout"),
            );
            routes.push(Route {
                name: name.into(),
                chain: chain.into(),
                upstream,
                timeout,
                retry,
                matcher: spec,
                middleware_names: middleware_names.into(),
                upgrades,
                tunnel_idle_timeout,
            });
        }
        let router = match Router::build(specs) {
            Ok(router) => Some(router),
            Err(errors) => {
                for (i, msg) in errors {
                    let r = &raw[i];
                    let at = r.get_ref().matcher.as_ref().map_or_else(|| span(r), span);
                    self.d.at(at, format!("route {:?}: {msg}", routes[i].name));
                }
                None
            }
        };
        (router, routes)
    }

    /// `upgrades = [...]` of a route: protocol tokens (`name` or
    /// `name/version`, RFC 9110 §7.8), lowercased; absent: websocket only.
    fn upgrades(&mut self, route: &str, raw: Option<&[Spanned<String>]>) -> Box<[Box<str>]> {
        let Some(raw) = raw else {
            return Box::new(["websocket".into()]);
        };
        let mut out: Vec<Box<str>> = Vec::new();
        for p in raw {
            let text = p.get_ref();
            let valid = match text.split_once('/') {
                Some((name, version)) => is_token(name) && is_token(version),
                None => is_token(text),
            };
            if !valid {
                self.d.at(
                    span(p),
                    format!("route {route:?}: invalid upgrade protocol {text:?}: expected a token such as \"websocket\" (or name/version)"),
                );
                continue;
            }
            let lower: Box<str> = text.to_ascii_lowercase().into();
            if !out.contains(&lower) {
                out.push(lower);
            }
        }
        out.into()
    }

    /// `[connect]`: the allowed destinations and the tunnel's timeouts.
    fn connect(&mut self, raw: &RawConnect) -> ConnectSettings {
        let mut allow = Vec::new();
        for entry in &raw.allow {
            match parse_connect_target(entry.get_ref()) {
                Ok(t) => allow.push(t),
                Err(msg) => self.d.at(span(entry), msg),
            }
        }
        ConnectSettings {
            allow: allow.into(),
            connect_timeout: self.duration(
                &raw.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT,
                "connect.connect_timeout",
            ),
            idle_timeout: self.duration(
                &raw.idle_timeout,
                DEFAULT_TUNNEL_IDLE_TIMEOUT,
                "connect.idle_timeout",
            ),
        }
    }

    /// The route's match conditions, and the parameter names its pattern captures.
    fn route_match(
        &mut self,
        route: &str,
        m: Option<&Spanned<RawMatch>>,
    ) -> (RouteSpec, Vec<String>) {
        let mut spec = RouteSpec {
            host: None,
            path: PathSpec::Any,
            methods: Vec::new(),
            headers: Vec::new(),
        };
        let mut params = Vec::new();
        let Some(m) = m else { return (spec, params) };
        let at = span(m);
        let m = m.get_ref();
        spec.host = m.host.as_ref().map(|h| h.get_ref().clone());
        let paths = [&m.path, &m.path_prefix, &m.path_pattern]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if paths > 1 {
            self.d.at(
                at.clone(),
                format!("route {route:?}: a route matches one path form: expected only one of path, path_prefix, path_pattern"),
            );
        }
        if let Some(p) = &m.path {
            spec.path = PathSpec::Exact(p.get_ref().clone());
        } else if let Some(p) = &m.path_prefix {
            spec.path = PathSpec::Prefix(p.get_ref().clone());
        } else if let Some(p) = &m.path_pattern {
            spec.path = PathSpec::Pattern(p.get_ref().clone());
            params = pattern_params(p.get_ref());
        }
        for method in &m.methods {
            let upper = method.get_ref().to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(mt) if !upper.is_empty() => spec.methods.push(mt),
                _ => self.d.at(
                    span(method),
                    format!(
                        "route {route:?}: invalid method {:?}: expected a token like \"GET\"",
                        method.get_ref()
                    ),
                ),
            }
        }
        for h in &m.headers {
            let raw = h.get_ref();
            let Some(name) = intern::header_name(&raw.name) else {
                self.d.at(
                    span(h),
                    format!(
                        "invalid header name {:?}: expected a token such as \"x-canary\"",
                        raw.name
                    ),
                );
                continue;
            };
            match &raw.value {
                None => spec.headers.push(HeaderCond::Present(name)),
                Some(value) => match intern::header_value(value) {
                    Some(v) => spec.headers.push(HeaderCond::Equals(name, v)),
                    None => self.d.at(
                        span(h),
                        format!("invalid value {value:?} for header {:?}", raw.name),
                    ),
                },
            }
        }
        (spec, params)
    }
}

/// The transport part of a pool key: 0 for plain HTTP/1.1 (so upstreams
/// sharing an address share those connections), else a hash of how the
/// connection is made (protocol, and the TLS settings and server name),
/// stable across reloads that keep them.
fn transport_key(protocol: Protocol, tls: Option<&str>) -> u64 {
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

/// `{name}` and `{*name}` captures of a path pattern (validity is the router's job).
/// `200`, `"200-399"` or `"2xx"` as an inclusive range of statuses.
fn parse_status_range(v: &toml::Value) -> Result<(u16, u16), String> {
    let valid = |n: i64| (100..=599).contains(&n);
    match v {
        toml::Value::Integer(n) if valid(*n) => Ok((*n as u16, *n as u16)),
        toml::Value::String(s) => {
            let bad = || format!("invalid status {s:?}: expected a status like 200, a range like \"200-399\", or a class like \"2xx\"");
            let t = s.trim();
            if let Some(class) = t.strip_suffix("xx") {
                let c: i64 = class.parse().map_err(|_| bad())?;
                if !(1..=5).contains(&c) {
                    return Err(bad());
                }
                return Ok(((c * 100) as u16, (c * 100 + 99) as u16));
            }
            let (a, b) = t.split_once('-').unwrap_or((t, t));
            let a: i64 = a.trim().parse().map_err(|_| bad())?;
            let b: i64 = b.trim().parse().map_err(|_| bad())?;
            if valid(a) && valid(b) && a <= b {
                Ok((a as u16, b as u16))
            } else {
                Err(bad())
            }
        }
        other => Err(format!(
            "invalid status {other}: expected a status from 100 to 599, a range like \"200-399\", or a class like \"2xx\""
        )),
    }
}

fn pattern_params(pattern: &str) -> Vec<String> {
    pattern
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|n| n.trim_start_matches('*').to_string())
        .collect()
}

fn header_pairs(
    map: &BTreeMap<String, String>,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
    map.iter()
        .map(|(k, val)| {
            let name = intern::header_name(k)
                .ok_or_else(|| format!("invalid header name {k:?}: expected a token such as \"x-env\""))?;
            let value = intern::header_value(val)
                .ok_or_else(|| format!("invalid value for header {k:?}: {val:?} has characters not allowed in a header value"))?;
            Ok((name, value))
        })
        .collect()
}

fn header_names(list: &[String]) -> Result<Vec<http::HeaderName>, String> {
    list.iter()
        .map(|k| {
            intern::header_name(k).ok_or_else(|| {
                format!("invalid header name {k:?}: expected a token such as \"x-debug\"")
            })
        })
        .collect()
}

/// An HTTP token (RFC 9110 §5.6.2).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A `[connect] allow` entry: `host:port`, `IP:port` (`[v6]:port`) or
/// `CIDR:port`.
fn parse_connect_target(text: &str) -> Result<ConnectTarget, String> {
    let bad = || {
        format!("connect.allow: invalid entry {text:?}: expected host:port, IP:port or CIDR:port with a port 1-65535, e.g. \"db.internal:5432\" or \"10.0.0.0/8:443\"")
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(bad()),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(net) = host.parse::<ipnet::IpNet>() {
        return Ok(ConnectTarget::Net(net.trunc(), port));
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ConnectTarget::Net(ip.into(), port));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(bad());
    }
    Ok(ConnectTarget::Name(name.to_ascii_lowercase().into(), port))
}

/// Serde's type names mean little to an operator: say "an integer", not "i64".
fn humanize(message: &str) -> String {
    message
        .trim_end()
        .replace("expected i64", "expected an integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected a boolean", "expected true or false")
}
