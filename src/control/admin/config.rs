//! `GET /config`: the effective configuration, read back from the compiled
//! snapshot (so every default is filled in) in the shape of the file, with
//! secrets redacted: the admin token, and configured header values whose name
//! looks like a credential.

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

use crate::balance::{BalanceKind, BalancePolicy};
use crate::config::{ConnectSettings, ConnectTarget, ServerSettings, Snapshot};
use crate::middleware::{AccessLog, LimitKey, LogFormat, Middleware};
use crate::router::{HeaderCond, PairCond, PathSpec, RouteSpec};
use crate::tls::server::ServerTls;
use crate::upstream::{HealthCheckSpec, Probe, UpstreamSpec, UpstreamTls};

/// What a redacted value is replaced with.
pub(super) const REDACTED: &str = "[redacted]";

/// The whole effective configuration.
pub(super) fn describe(snap: &Snapshot) -> Value {
    let upstreams: Map<String, Value> = snap
        .upstreams
        .iter()
        .zip(&snap.balancing)
        .map(|(u, b)| (u.name.to_string(), upstream(u, b)))
        .collect();
    let mut middlewares = Map::new();
    let routes: Vec<Value> = snap
        .routes
        .iter()
        .map(|r| {
            for (name, m) in r.middleware_names.iter().zip(r.chain.iter()) {
                if !middlewares.contains_key(&**name) {
                    middlewares.insert(name.to_string(), middleware(m));
                }
            }
            json!({
                "name": r.name,
                "match": matcher(&r.matcher),
                "middlewares": r.middleware_names,
                "upstream": snap.upstreams.get(r.upstream).map(|u| &*u.name),
                "timeout": r.timeout.map(duration),
                "retry": r.retry.as_deref().map(|p| json!({
                    "attempts": p.attempts,
                    "per_try_timeout": p.per_try_timeout.map(duration),
                    "on_connect_failure": p.on_connect_failure,
                    "on_reset": p.on_reset,
                    "on_timeout": p.on_timeout,
                    "on_statuses": p.on_statuses,
                    "non_idempotent": p.non_idempotent,
                    "replay_limit": p.replay_limit,
                    "backoff_base": duration(p.backoff_base),
                    "backoff_max": duration(p.backoff_max),
                })),
                "upgrades": r.upgrades,
                "tunnel_idle_timeout": duration(r.tunnel_idle_timeout),
            })
        })
        .collect();
    json!({
        "generation": snap.generation,
        "source": snap.source,
        "server": server(&snap.server, snap.fallback_log.as_ref()),
        "listeners": snap
            .listeners
            .iter()
            .map(|l| json!({
                "name": l.name,
                "address": l.addr.to_string(),
                "tls": l.tls.as_deref().map(listener_tls),
            }))
            .collect::<Vec<_>>(),
        "admin": {
            "enabled": snap.admin.listen.is_some(),
            "listen": snap.admin.listen.map(|a| a.to_string()),
            "token": snap.admin.token.as_ref().map(|_| REDACTED),
        },
        "upstreams": upstreams,
        "middlewares": middlewares,
        "routes": routes,
        "connect": snap.connect.as_ref().map(connect),
    })
}

/// `[listeners.tls]` as compiled: settings, and per certificate its file,
/// the names it is chosen for and when it expires (never the key).
fn listener_tls(t: &ServerTls) -> Value {
    let s = &t.summary;
    let certificates: Vec<Value> = s
        .certificates
        .iter()
        .map(|c| {
            json!({
                "cert": c.cert,
                "names": c.names,
                "default": c.default,
                "not_after": unix_time(c.not_after),
            })
        })
        .collect();
    json!({
        "min_version": s.min_version,
        "alpn": s.alpn,
        "handshake_timeout": duration(t.handshake_timeout),
        "client_auth": s.client_auth,
        "client_ca": s.client_ca,
        "certificates": certificates,
    })
}

/// Unix seconds as `2026-01-31T12:00:00.000Z` (times before 1970 as 1970).
fn unix_time(secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    crate::util::time::iso_string(t)
}

/// How an upstream's connections are made: `protocol`, the HTTP/2 limits
/// (`null` unless its connections may be HTTP/2) and `tls` (`null` without
/// TLS). Shown by `/config` and `/upstreams` alike.
pub(super) fn transport(u: &UpstreamSpec, v: &mut Value) {
    let h2 = u.may_use_http2();
    v["protocol"] = u.protocol.name().into();
    v["http2_max_concurrent_streams"] = h2.then_some(u.http2.max_concurrent_streams).into();
    v["http2_max_connections"] = h2.then_some(u.http2.max_connections).into();
    v["tls"] = u.tls.as_deref().map_or(Value::Null, upstream_tls);
}

/// `[upstreams.NAME.tls]` as compiled: the trust anchors (`ca_file`, or the
/// built-in Mozilla roots), the name each endpoint is verified against, the
/// client certificate's file.
fn upstream_tls(t: &UpstreamTls) -> Value {
    let s = &t.summary;
    let server_names: Vec<String> = t
        .server_names
        .iter()
        .map(|n| n.to_str().into_owned())
        .collect();
    json!({
        "ca": s.ca_file.as_deref().unwrap_or("webpki-roots"),
        "server_name": s.server_name,
        "server_names": server_names,
        "client_certificate": s.client_cert,
        "insecure_skip_verify": s.insecure_skip_verify,
    })
}

fn connect(c: &ConnectSettings) -> Value {
    json!({
        "allow": c.allow.iter().map(connect_target).collect::<Vec<_>>(),
        "connect_timeout": duration(c.connect_timeout),
        "idle_timeout": duration(c.idle_timeout),
    })
}

/// An `allow` entry as it could be written: `host:port`, `IP:port`,
/// `CIDR:port` (IPv6 in brackets).
fn connect_target(t: &ConnectTarget) -> String {
    match t {
        ConnectTarget::Name(host, port) => format!("{host}:{port}"),
        ConnectTarget::Net(net, port) if net.prefix_len() == net.max_prefix_len() => {
            std::net::SocketAddr::new(net.addr(), *port).to_string()
        }
        ConnectTarget::Net(ipnet::IpNet::V6(net), port) => format!("[{net}]:{port}"),
        ConnectTarget::Net(net, port) => format!("{net}:{port}"),
    }
}

fn server(s: &ServerSettings, fallback_log: Option<&AccessLog>) -> Value {
    json!({
        "workers": s.workers,
        "trusted_proxies": s.trusted_proxies.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "header_read_timeout": duration(s.header_read_timeout),
        "keepalive_timeout": duration(s.keepalive_timeout),
        "http2_idle_timeout": duration(s.http2_idle_timeout),
        "http2_keepalive_interval": duration(s.http2_keepalive_interval),
        "http2_keepalive_timeout": duration(s.http2_keepalive_timeout),
        // null: derived from the descriptor limit (the metric
        // strait_client_connections_limit has the number).
        "max_connections": s.max_connections,
        "max_connections_per_ip": s.max_connections_per_ip,
        "max_requests_per_connection": s.max_requests_per_connection,
        "max_header_bytes": s.max_header_bytes,
        "max_headers": s.max_headers,
        "http2_max_concurrent_streams": s.http2_max_concurrent_streams,
        "add_forwarded_headers": s.add_forwarded_headers,
        "preserve_host": s.preserve_host,
        "drain_timeout": duration(s.drain_timeout),
        "watch_config": s.watch_config,
        "access_log": fallback_log.map(access_log),
    })
}

pub(super) fn balance_name(kind: BalanceKind) -> &'static str {
    kind.name()
}

fn upstream(u: &UpstreamSpec, b: &BalancePolicy) -> Value {
    let mut v = json!({
        "endpoints": u
            .endpoints
            .iter()
            .map(|e| json!({ "address": e.addr.to_string(), "weight": e.weight }))
            .collect::<Vec<_>>(),
        "balance": balance_name(b.kind),
        "hash": b.hash.as_ref().map(|h| json!({
            "key": h.key.describe(),
            "fallback": h.fallback.name(),
            "size": h.size,
        })),
        "connect_timeout": duration(u.connect_timeout),
        "response_header_timeout": duration(u.response_header_timeout),
        "body_idle_timeout": duration(u.body_idle_timeout),
        "idle_timeout": duration(u.pool.idle_timeout),
        "max_idle_per_endpoint": u.pool.max_idle_per_endpoint,
        "health_check": u.health_check.as_ref().map(health_check),
        "max_requests": u.max_requests,
        "max_connections": u.max_connections,
        "max_pending": u.max_connections.map(|_| u.max_pending),
        "retry_budget": json!({
            "percent": u.retry_budget.percent,
            "min_per_second": u.retry_budget.min_per_second,
        }),
        "connect_failover": u.connect_failover,
        "outlier_detection": u.outlier.as_ref().map(|o| json!({
            "consecutive_5xx": o.consecutive_5xx,
            "consecutive_connect_failures": o.consecutive_connect_failures,
            "base_ejection_time": duration(o.base_ejection_time),
            "max_ejection_time": duration(o.max_ejection_time),
            "max_ejection_percent": o.max_ejection_percent,
        })),
        "dns_refresh": duration(u.dns.refresh),
        "dns_family": u.dns.family.name(),
    });
    transport(u, &mut v);
    v
}

fn health_check(h: &HealthCheckSpec) -> Value {
    let mut v = match &h.probe {
        Probe::Tcp => json!({ "type": "tcp" }),
        Probe::Http {
            method,
            path,
            host,
            statuses,
        } => json!({
            "type": "http",
            "method": method.as_str(),
            "path": path,
            "host": host,
            "expected_statuses": statuses
                .iter()
                .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
                .collect::<Vec<_>>(),
        }),
    };
    v["interval"] = duration(h.interval).into();
    v["timeout"] = duration(h.timeout).into();
    v["healthy_threshold"] = h.healthy_threshold.into();
    v["unhealthy_threshold"] = h.unhealthy_threshold.into();
    v["fail_open"] = h.fail_open.into();
    v
}

fn matcher(m: &RouteSpec) -> Value {
    let mut v = Map::new();
    if let Some(host) = &m.host {
        v.insert("host".into(), host.as_str().into());
    }
    match &m.path {
        PathSpec::Any => {}
        PathSpec::Exact(p) => {
            v.insert("path".into(), p.as_str().into());
        }
        PathSpec::Prefix(p) => {
            v.insert("path_prefix".into(), p.as_str().into());
        }
        PathSpec::Pattern(p) => {
            v.insert("path_pattern".into(), p.as_str().into());
        }
        PathSpec::Regex(p) => {
            v.insert("path_regex".into(), p.as_str().into());
        }
    }
    if !m.methods.is_empty() {
        let methods: Vec<&str> = m.methods.iter().map(|m| m.as_str()).collect();
        v.insert("methods".into(), methods.into());
    }
    if !m.headers.is_empty() {
        let headers: Vec<Value> = m
            .headers
            .iter()
            .map(|c| match c {
                HeaderCond::Present(name) => json!({ "name": name.as_str() }),
                HeaderCond::Equals(name, value) => {
                    json!({ "name": name.as_str(), "value": header_value(name, value) })
                }
            })
            .collect();
        v.insert("headers".into(), headers.into());
    }
    for (key, conds) in [("query", &m.query), ("cookies", &m.cookies)] {
        if !conds.is_empty() {
            let list: Vec<Value> = conds.iter().map(pair).collect();
            v.insert(key.into(), list.into());
        }
    }
    Value::Object(v)
}

/// A query or cookie condition as configured; a value whose name looks like a
/// credential (`session`, `api_key`, ...) is redacted as a header's would be.
fn pair(c: &PairCond) -> Value {
    match c {
        PairCond::Present(name) => json!({ "name": name }),
        PairCond::Equals(name, _) if is_secret_header(name) => {
            json!({ "name": name, "value": REDACTED })
        }
        PairCond::Equals(name, value) => json!({ "name": name, "value": value }),
    }
}

fn middleware(m: &Middleware) -> Value {
    match m {
        Middleware::RequestId(r) => json!({
            "type": "request_id",
            "header": r.header.as_str(),
            "response": r.response,
            "trust_incoming": r.trust_incoming,
        }),
        Middleware::Headers(h) => {
            let pairs = |list: &[(HeaderName, HeaderValue)]| -> Map<String, Value> {
                list.iter()
                    .map(|(n, v)| (n.as_str().to_string(), header_value(n, v).into()))
                    .collect()
            };
            json!({
                "type": "headers",
                "request_set": pairs(&h.request.set),
                "request_append": pairs(&h.request.append),
                "request_remove": header_names(&h.request.remove),
                "response_set": pairs(&h.response.set),
                "response_append": pairs(&h.response.append),
                "response_remove": header_names(&h.response.remove),
            })
        }
        Middleware::StripPrefix(s) => json!({ "type": "strip_prefix", "prefix": &*s.prefix }),
        Middleware::Rewrite(r) => json!({ "type": "rewrite", "path": r.template() }),
        Middleware::AccessLog(a) => access_log(a),
        Middleware::HttpsRedirect(r) => {
            json!({ "type": "https_redirect", "port": r.port, "status": r.status.as_u16() })
        }
        Middleware::IpFilter(f) => json!({
            "type": "ip_filter",
            "allow": f.allow().iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "deny": f.deny().iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        }),
        Middleware::RequestLimits(l) => json!({
            "type": "request_limits",
            "max_body": l.max_body,
            "methods": (!l.methods.is_empty())
                .then(|| l.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>()),
            "max_header_count": l.max_header_count,
            "max_header_bytes": l.max_header_bytes,
            "max_url_length": l.max_url_length,
        }),
        Middleware::Cors(c) => {
            let s = &c.settings;
            json!({
                "type": "cors",
                "allow_origins": s.origins.iter().map(|o| &**o).collect::<Vec<_>>(),
                "allow_methods": s.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                "allow_headers": s.any_header.then_some("*").into_iter()
                    .chain(header_names(&s.headers))
                    .collect::<Vec<_>>(),
                "expose_headers": header_names(&s.expose_names),
                "allow_credentials": s.credentials,
                "max_age": s.max_age,
            })
        }
        // Never a hash nor a key: the file, the counts, the names.
        Middleware::BasicAuth(b) => {
            let s = b.settings();
            json!({
                "type": "basic_auth",
                "realm": &*s.realm,
                "htpasswd": &*s.htpasswd,
                "users": s.users.len(),
                "consumer_header": s.consumer_header.as_ref().map(HeaderName::as_str),
                "forward_credentials": s.forward_credentials,
                "max_verifications": s.max_verifications,
            })
        }
        Middleware::ApiKey(k) => {
            let s = k.settings();
            json!({
                "type": "api_key",
                "keys_file": s.keys_file.as_deref(),
                "keys": s.keys.len(),
                "header": s.header.as_ref().map(HeaderName::as_str),
                "query": s.query.as_deref(),
                "realm": &*s.realm,
                "consumer_header": s.consumer_header.as_ref().map(HeaderName::as_str),
                "forward_credentials": s.forward_credentials,
            })
        }
        // The key files and the URL, never a secret.
        Middleware::Jwt(j) => {
            let s = j.settings();
            let algorithms: Vec<&str> = s
                .algorithms
                .iter()
                .map(|a| crate::middleware::jwt::algorithm_name(*a))
                .collect();
            let headers: serde_json::Map<String, Value> = s
                .claims_to_headers
                .iter()
                .map(|(c, h)| (c.to_string(), Value::from(h.as_str())))
                .collect();
            let remote = s.remote.as_ref().map(|r| {
                let keys = r.keys.load();
                json!({
                    "url": &*r.url,
                    "refresh_seconds": r.refresh.as_secs(),
                    "cooldown_seconds": r.cooldown.as_secs(),
                    "kids": keys.kids(),
                })
            });
            json!({
                "type": "jwt",
                "key_files": s.key_files.iter().map(|f| &**f).collect::<Vec<_>>(),
                "keys": s.local.keys.len(),
                "secret": s.has_secret.then_some("[redacted]"),
                "jwks_url": remote,
                "algorithms": algorithms,
                "issuer": s.issuers.iter().map(|i| &**i).collect::<Vec<_>>(),
                "audiences": s.audiences.iter().map(|a| &**a).collect::<Vec<_>>(),
                "leeway_seconds": s.leeway,
                "require_exp": s.require_exp,
                "required_claims": s.required_claims.iter().map(|c| &**c).collect::<Vec<_>>(),
                "token_header": s.sources.header,
                "token_cookie": s.sources.cookie.as_deref(),
                "token_query": s.sources.query.as_deref(),
                "consumer_claim": s.consumer_claim.as_deref(),
                "claims_to_headers": headers,
                "forward_credentials": s.forward_credentials,
                "realm": &*s.realm,
            })
        }
        Middleware::Compress(c) => {
            let s = c.settings();
            json!({
                "type": "compress",
                "encodings": s.codings.iter().map(|c| c.token()).collect::<Vec<_>>(),
                "min_size": s.min_size,
                "types": s.types.iter().map(|t| &**t).collect::<Vec<_>>(),
                "gzip_level": s.levels.gzip,
                "brotli_level": s.levels.brotli,
                "zstd_level": s.levels.zstd,
                "max_streams": s.max_streams,
            })
        }
        Middleware::ForwardAuth(f) => {
            let s = f.settings();
            fn list(l: &[HeaderName]) -> Vec<&str> {
                l.iter().map(HeaderName::as_str).collect()
            }
            json!({
                "type": "forward_auth",
                "url": &*s.url,
                "address": s.addr.to_string(),
                "timeout_ms": s.timeout.as_millis() as u64,
                "request_headers": match &s.request_headers {
                    None => json!("*"),
                    Some(l) => json!(list(l)),
                },
                "response_headers": list(&s.response_headers),
                "consumer_header": s.consumer_header.as_ref().map(HeaderName::as_str),
                "fail_open": s.fail_open,
            })
        }
        Middleware::RateLimit(r) => {
            let s = &r.settings;
            json!({
                "type": "rate_limit",
                "rate": format!("{}/{}", s.count, s.per.suffix()),
                "burst": s.burst,
                "delay": s.delay,
                "key": limit_key(&s.key),
                "max_keys": s.max_keys,
                "status": s.status.as_u16(),
            })
        }
        Middleware::ConnectionLimit(c) => {
            let s = &c.settings;
            json!({
                "type": "connection_limit",
                "max": s.max,
                "key": limit_key(&s.key),
                "max_keys": s.max_keys,
                "status": s.status.as_u16(),
            })
        }
        // The compiled instance keeps neither its registered name nor its
        // settings (which may hold secrets).
        Middleware::Custom(_) => json!({ "type": "custom" }),
    }
}

/// A limit's key as its sources, as written.
fn limit_key(key: &LimitKey) -> Vec<String> {
    key.sources.iter().map(|s| s.text()).collect()
}

fn header_names(list: &[HeaderName]) -> Vec<&str> {
    list.iter().map(HeaderName::as_str).collect()
}

fn access_log(a: &AccessLog) -> Value {
    json!({
        "type": "access_log",
        "format": match a.format {
            LogFormat::Combined => "combined",
            LogFormat::Json => "json",
        },
        "output": &*a.sink.output,
    })
}

/// A configured header value, or [`REDACTED`] when the header carries
/// credentials.
fn header_value(name: &HeaderName, value: &HeaderValue) -> String {
    if is_secret_header(name.as_str()) {
        REDACTED.to_string()
    } else {
        String::from_utf8_lossy(value.as_bytes()).into_owned()
    }
}

/// Whether a header's value is likely a credential: `Authorization`,
/// cookies, API keys, tokens, secrets, passwords, signatures, sessions.
/// Errs on the side of redacting.
pub(super) fn is_secret_header(name: &str) -> bool {
    const EXACT: [&str; 4] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    ];
    const PARTS: [&str; 10] = [
        "auth",
        "token",
        "secret",
        "password",
        "passwd",
        "api-key",
        "apikey",
        "session",
        "credential",
        "signature",
    ];
    let name = name.to_ascii_lowercase();
    EXACT.contains(&name.as_str())
        || PARTS.iter().any(|p| name.contains(p))
        || name.ends_with("key")
}

/// A duration in the configuration's syntax: `"500ms"`, `"30s"`, `"1m30s"`.
pub(super) fn duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_config_syntax() {
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::from_secs(30)), "30s");
        assert_eq!(duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(duration(Duration::from_secs(3600)), "1h");
        assert_eq!(duration(Duration::from_secs(7265)), "2h1m5s");
        assert_eq!(duration(Duration::ZERO), "0s");
    }

    #[test]
    fn secret_headers() {
        for name in [
            "authorization",
            "Proxy-Authorization",
            "cookie",
            "set-cookie",
            "x-api-key",
            "X-Auth-Token",
            "x-amz-security-token",
            "x-client-secret",
            "x-session-id",
            "x-signature",
            "ocp-apim-subscription-key",
        ] {
            assert!(is_secret_header(name), "{name} should be redacted");
        }
        for name in [
            "x-env",
            "x-request-id",
            "accept",
            "cache-control",
            "keep-alive",
        ] {
            assert!(!is_secret_header(name), "{name} should be shown");
        }
    }
}
