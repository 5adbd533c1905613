//! The admin API (control plane): a small HTTP/1.1 server on its own listener,
//! served by the control thread, never by a worker.
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/` | HTML status page |
//! | GET | `/status` | version, uptime, configuration generation, workers, listeners, last reload |
//! | GET | `/config` | the effective configuration, secrets redacted ([`config`]) |
//! | GET | `/upstreams` | per endpoint: health, in flight, requests, failures, pool; endpoint names and their last look-up |
//! | GET | `/metrics` | Prometheus text exposition ([`metrics`]) |
//! | POST | `/reload` | reads the configuration file again and publishes it |
//!
//! With `[admin] token` set, every request needs `Authorization: Bearer
//! TOKEN`. Everything here reads the published snapshot and sums the workers'
//! metric shards; nothing writes to what the workers read, and nothing here
//! makes a worker wait. docs/admin-api.md documents each answer.

mod config;
mod metrics;
mod page;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};

use super::{Control, ReloadError, ReloadReport};
use crate::config::names::NameKey;
use crate::metrics::{sum_classes, STATUS_CLASSES};
use crate::util::time::iso_string;

/// Time allowed for a complete request head; also closes idle keep-alive
/// connections after this long.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

type Body = Full<Bytes>;

/// What every admin connection shares.
struct Admin {
    control: Arc<Control>,
    exposition: metrics::Exposition,
    /// The bearer token required, if any (fixed at start: a reload does not
    /// change `[admin]`).
    token: Option<Box<str>>,
}

/// Serves the admin API on `listener` until the control thread stops.
pub(crate) async fn serve(control: Arc<Control>, listener: tokio::net::TcpListener) {
    let token = control.snapshot().admin.token.as_deref().map(Box::from);
    let admin = Arc::new(Admin {
        exposition: metrics::Exposition::new(control.clone()),
        control,
        token,
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: do not spin.
                tracing::warn!(error = %e, "admin API: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req, peer).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(client = %peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}

/// The admin API's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Page,
    Status,
    Config,
    Upstreams,
    Metrics,
    Reload,
}

impl Endpoint {
    const ALL: [(&'static str, Endpoint); 6] = [
        ("/", Endpoint::Page),
        ("/status", Endpoint::Status),
        ("/config", Endpoint::Config),
        ("/upstreams", Endpoint::Upstreams),
        ("/metrics", Endpoint::Metrics),
        ("/reload", Endpoint::Reload),
    ];

    fn find(path: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .iter()
            .find(|(p, _)| *p == path)
            .map(|&(_, e)| e)
    }

    /// The `Allow` header value.
    fn allow(self) -> &'static str {
        match self {
            Endpoint::Reload => "POST",
            _ => "GET, HEAD",
        }
    }

    fn allows(self, method: &Method) -> bool {
        match self {
            Endpoint::Reload => method == Method::POST,
            _ => method == Method::GET || method == Method::HEAD,
        }
    }
}

impl Admin {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if let Some(denied) = self.denied(req.headers(), peer) {
            return denied;
        }
        let path = req.uri().path();
        let Some(endpoint) = Endpoint::find(path) else {
            let known: Vec<&str> = Endpoint::ALL.iter().map(|(p, _)| *p).collect();
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": format!("no admin endpoint {path}"), "endpoints": known }),
            );
        };
        if !endpoint.allows(req.method()) {
            let mut resp = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!(
                    "{} {path} is not allowed: use {}",
                    req.method(),
                    endpoint.allow()
                ),
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(endpoint.allow()));
            return resp;
        }
        match endpoint {
            Endpoint::Page => {
                let html = page::render(&self.status(), &self.upstreams());
                response(StatusCode::OK, "text/html; charset=utf-8", html.into())
            }
            Endpoint::Status => json_response(StatusCode::OK, &self.status()),
            Endpoint::Config => {
                json_response(StatusCode::OK, &config::describe(&self.control.snapshot()))
            }
            Endpoint::Upstreams => json_response(StatusCode::OK, &self.upstreams()),
            Endpoint::Metrics => self.metrics(req.headers()),
            Endpoint::Reload => self.reload(peer).await,
        }
    }

    /// The 401 answer, unless no token is configured or the request
    /// carries it.
    fn denied(&self, headers: &HeaderMap, peer: SocketAddr) -> Option<Response<Body>> {
        let token = self.token.as_deref()?;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
        let (message, challenge) = match presented {
            Some(p) if constant_time_eq(p, token.as_bytes()) => return None,
            Some(_) => {
                tracing::warn!(client = %peer, "admin API: request with a wrong bearer token");
                (
                    "invalid bearer token",
                    r#"Bearer realm="strait-admin", error="invalid_token""#,
                )
            }
            None => (
                "missing bearer token: send Authorization: Bearer TOKEN ([admin] token)",
                r#"Bearer realm="strait-admin""#,
            ),
        };
        let mut resp = error_response(StatusCode::UNAUTHORIZED, message);
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        Some(resp)
    }

    /// `GET /status`.
    fn status(&self) -> Value {
        let c = &self.control;
        let snapshot = c.snapshot();
        let (loaded_at, last_reload, listeners) = {
            let state = c.state();
            let listeners: Vec<Value> = state
                .listeners
                .iter()
                .map(|l| {
                    let tls = snapshot
                        .listeners
                        .iter()
                        .any(|s| s.addr == l.spec && s.tls.is_some());
                    json!({
                        "name": l.name,
                        "address": l.addr.to_string(),
                        "configured": l.spec.to_string(),
                        "tls": tls,
                    })
                })
                .collect();
            (
                state.loaded_at,
                state.last_reload.as_ref().map(reload_report),
                listeners,
            )
        };
        let (ok, failed) = c.metrics.reloads();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": iso_string(c.started_at),
            "uptime_seconds": c.started.elapsed().as_secs(),
            "generation": snapshot.generation,
            "loaded_at": iso_string(loaded_at),
            "source": snapshot.source,
            "config_file": c.config_path.as_ref().map(|p| p.display().to_string()),
            "workers": c.workers,
            "listeners": listeners,
            "admin": {
                "address": c.admin_addr.map(|a| a.to_string()),
                "token_required": self.token.is_some(),
            },
            "last_reload": last_reload,
            "reloads": { "ok": ok, "failed": failed },
        })
    }

    /// `GET /upstreams`.
    fn upstreams(&self) -> Value {
        let snapshot = self.control.snapshot();
        let stats = &snapshot.stats;
        let table = self.control.name_table();
        let upstreams: Vec<Value> = snapshot
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, up)| {
                let mut totals = [0u64; 4]; // healthy, in flight, requests, failures
                let now_ms = crate::upstream::outlier::unix_ms();
                let endpoints: Vec<Value> = up
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(j, ep)| {
                        let s = stats.endpoints.get(i).and_then(|e| e.get(j));
                        let st = snapshot.endpoint_states.get(i).and_then(|e| e.get(j));
                        let healthy = st.map_or(true, |s| s.health.0.is_healthy());
                        let in_flight = s.map_or(0, |s| s.in_flight());
                        let requests = s.map_or(0, |s| s.shards.sum(|c| c.requests.get()));
                        let failures = s.map_or(0, |s| s.shards.sum(|c| c.failures.get()));
                        let last_failure = s
                            .and_then(|s| s.last_failure_ms())
                            .map(|ms| iso_string(UNIX_EPOCH + Duration::from_millis(ms)));
                        let (idle, active) = stats
                            .pools
                            .get(&ep.addr)
                            .map_or((0, 0), |p| p.connections());
                        totals[0] += u64::from(healthy);
                        totals[1] += in_flight.unsigned_abs();
                        totals[2] += requests;
                        totals[3] += failures;
                        let ejected_until = st
                            .map(|s| s.ejected_until_ms.0.load(Ordering::Relaxed))
                            .filter(|&ms| ms > now_ms)
                            .map(|ms| iso_string(UNIX_EPOCH + Duration::from_millis(ms)));
                        json!({
                            "address": ep.addr.to_string(),
                            "weight": ep.weight,
                            "healthy": healthy,
                            "health_checked": st.is_some_and(|s| s.health.0.is_checked()),
                            "ejected_until": ejected_until,
                            "ejections": st.map_or(0, |s| s.ejections.load(Ordering::Relaxed)),
                            "in_flight": in_flight,
                            "requests": requests,
                            "failures": failures,
                            "last_failure": last_failure,
                            "pool": { "idle": idle, "active": active },
                        })
                    })
                    .collect();
                let u = stats.upstreams.get(i);
                let classes = u.map_or([0; 5], |u| sum_classes(&u.shards, |c| &c.responses));
                let responses: serde_json::Map<String, Value> = STATUS_CLASSES
                    .iter()
                    .zip(classes)
                    .map(|(class, n)| (class.to_string(), n.into()))
                    .collect();
                let sum = |f: fn(&crate::metrics::UpstreamCounters) -> u64| {
                    u.map_or(0, |u| u.shards.sum(f))
                };
                let dns: Vec<Value> = up
                    .names
                    .iter()
                    .map(|n| {
                        let key = NameKey {
                            upstream: up.name.clone(),
                            host: n.host.clone(),
                            port: n.port,
                        };
                        let st = table.get(&key);
                        json!({
                            "host": n.endpoint(),
                            "addresses": n.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            "weight": n.weight,
                            "last_error": st.and_then(|s| s.last_error.clone()),
                            "last_refresh": st.and_then(|s| s.last_refresh).map(iso_string),
                            "refreshes": st.map_or(0, |s| s.refreshes),
                            "failures": st.map_or(0, |s| s.failures),
                        })
                    })
                    .collect();
                let mut v = json!({
                    "name": up.name,
                    "dns": dns,
                    "balance": config::balance_name(snapshot.balancing[i].kind),
                    "health_check": up.health_check.is_some(),
                    "endpoints": endpoints,
                    "totals": {
                        "endpoints": up.endpoints.len(),
                        "healthy": totals[0],
                        "in_flight": totals[1],
                        "requests": totals[2],
                        "failures": totals[3],
                    },
                    "responses": responses,
                    "max_requests": up.max_requests,
                    "outlier_detection": up.outlier.is_some(),
                    "max_connections": up.max_connections,
                    "limit_rejections": {
                        "max_requests": sum(|c| c.limit_rejections.get()),
                        "max_connections": sum(|c| c.max_connections_rejections.get()),
                        "max_pending": sum(|c| c.max_pending_rejections.get()),
                    },
                    "retries": sum(|c| c.retries.get()),
                    "retry_budget_exhausted": sum(|c| c.retry_budget_exhausted.get()),
                    "connect_failures": sum(|c| c.connect_failures.get()),
                    "timeouts": sum(|c| c.timeouts.get()),
                    "connections": {
                        "reused": sum(|c| c.pool_reused.get()),
                        "new": sum(|c| c.pool_new.get()),
                    },
                });
                config::transport(up, &mut v);
                v
            })
            .collect();
        json!({ "generation": snapshot.generation, "upstreams": upstreams })
    }

    /// `GET /metrics`: OpenMetrics when the scraper asks for it (Prometheus
    /// does), the classic text format (0.0.4) otherwise.
    fn metrics(&self, headers: &HeaderMap) -> Response<Body> {
        let openmetrics = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        match self.exposition.render(openmetrics) {
            Ok((text, content_type)) => response(StatusCode::OK, content_type, text.into()),
            Err(_) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded",
            ),
        }
    }

    /// `POST /reload`: compiles off the control thread's event loop, so the
    /// admin API and the health checks carry on meanwhile.
    async fn reload(&self, peer: SocketAddr) -> Response<Body> {
        tracing::info!(client = %peer, "reload requested through the admin API");
        let control = self.control.clone();
        match tokio::task::spawn_blocking(move || control.reload_file("admin")).await {
            Ok(Ok(generation)) => json_response(
                StatusCode::OK,
                &json!({ "ok": true, "generation": generation }),
            ),
            Ok(Err(e)) => reload_error(&e),
            Err(e) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the reload did not finish: {e}"),
            ),
        }
    }
}

/// The answer to a refused reload: the status says whose fault it is, the
/// body carries the same messages as the log and `strait check`.
fn reload_error(e: &ReloadError) -> Response<Body> {
    let (status, kind) = match e {
        ReloadError::Config(_) => (StatusCode::UNPROCESSABLE_ENTITY, "config"),
        ReloadError::NoFile => (StatusCode::CONFLICT, "no_file"),
        ReloadError::Read { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "read"),
        ReloadError::Bind { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "bind"),
    };
    let mut body = json!({ "ok": false, "kind": kind, "error": e.to_string() });
    if let ReloadError::Config(errors) = e {
        body["errors"] = errors
            .0
            .iter()
            .map(|e| {
                json!({
                    "file": e.file,
                    "line": e.line,
                    "column": e.column,
                    "message": e.message,
                    "text": e.to_string(),
                })
            })
            .collect();
    }
    json_response(status, &body)
}

fn reload_report(r: &ReloadReport) -> Value {
    let mut v = json!({ "at": iso_string(r.at), "trigger": r.trigger, "ok": r.result.is_ok() });
    match &r.result {
        Ok(generation) => v["generation"] = (*generation).into(),
        Err(error) => v["error"] = error.as_str().into(),
    }
    v
}

/// The credentials of an `Authorization: Bearer TOKEN` value (the scheme is
/// case-insensitive, RFC 9110 §11.1).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares a presented token with the expected one in time that depends on
/// the expected token's length only, not on where they first differ.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ presented.get(i).copied().unwrap_or(!e);
    }
    std::hint::black_box(diff) == 0
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Live state, possibly behind a token: never cached.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    response(status, "application/json", body.into())
}

fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearerabc"), None);
    }

    #[test]
    fn token_comparison() {
        let t = b"0123456789abcdef";
        assert!(constant_time_eq(t, t));
        assert!(!constant_time_eq(b"0123456789abcdeF", t));
        assert!(!constant_time_eq(b"0123456789abcde", t));
        assert!(!constant_time_eq(b"0123456789abcdef0", t));
        assert!(!constant_time_eq(b"", t));
        // A presented byte equal to the inverse of the expected one where the
        // presented token is short must not pass either.
        assert!(!constant_time_eq(&[!b'0'], b"0"));
    }

    #[test]
    fn endpoints_and_methods() {
        assert_eq!(Endpoint::find("/"), Some(Endpoint::Page));
        assert_eq!(Endpoint::find("/reload"), Some(Endpoint::Reload));
        assert_eq!(Endpoint::find("/status/"), None);
        assert!(Endpoint::Reload.allows(&Method::POST));
        assert!(!Endpoint::Reload.allows(&Method::GET));
        assert!(Endpoint::Metrics.allows(&Method::HEAD));
        assert!(!Endpoint::Status.allows(&Method::POST));
    }
}
