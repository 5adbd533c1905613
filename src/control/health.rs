//! Active health checks (control plane). One probe task per (upstream with a
//! `health_check`, endpoint address) runs on the control thread: every
//! `interval` it connects (`type = "tcp"`) or sends one HTTP request
//! (`type = "http"`), bounded by `timeout`. An HTTP probe goes the way the
//! upstream's requests go: over TLS with the upstream's configuration and
//! the endpoint's server name, in HTTP/2 for `h2c` and when ALPN chose `h2`,
//! else HTTP/1.1. A TCP probe is a TCP connect only. `unhealthy_threshold` failures in a
//! row mark a healthy endpoint down, `healthy_threshold` passes in a row mark
//! an unhealthy one up. The state lives in the endpoint's [`Health`], which
//! the snapshot references and the balancers read with one relaxed load, so
//! results reach the workers without a lock and without a new snapshot. A
//! change of state is logged once (warn when down, info when up), never a
//! probe.
//!
//! Passive health (outlier detection) is decided on the workers; the one
//! thing left to the control plane is [`watch_returns`], which clears
//! ejections that have ended and logs each return once.
//!
//! The checker follows reloads: a task whose (upstream name, address, check
//! settings) did not change keeps running, and the endpoint's state with it
//! (`control/publish.rs` hands the same `Health` to the new snapshot); changed
//! and removed ones are stopped, new ones started. An upstream that loses its
//! `health_check` has its endpoints marked up again.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use super::{Control, Gateway};
use crate::config::Snapshot;
use crate::upstream::connect::{self, OpenError, Transport};
use crate::upstream::health_state::{EndpointState, Health};
use crate::upstream::{outlier, HealthCheckSpec, Probe, Protocol, UpstreamSpec};

/// `Health::last_probe` values.
const PASSED: u8 = 1;
const FAILED: u8 = 2;

/// The `User-Agent` of HTTP probes.
const USER_AGENT: &str = "strait-health-check";

/// At most this much of a probe response's body is read (and discarded), so
/// the origin sees a clean close rather than a reset; the rest is not waited
/// for.
const DRAIN_LIMIT: usize = 64 * 1024;

/// One running probe task; dropping it stops the task.
struct Check {
    spec: HealthCheckSpec,
    state: Arc<EndpointState>,
    /// How the endpoint is reached (the pool key's transport part): a
    /// change of protocol or TLS settings restarts the probe.
    transport: u64,
    task: JoinHandle<()>,
}

/// How an HTTP probe reaches its endpoint.
#[derive(Clone)]
pub(crate) struct ProbeTransport {
    /// The upstream's TLS configuration and the endpoint's server name.
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    protocol: Protocol,
}

impl ProbeTransport {
    fn of(up: &UpstreamSpec, index: usize) -> Self {
        ProbeTransport {
            tls: up
                .tls
                .as_ref()
                .and_then(|t| Some((t.config.clone(), t.server_names.get(index)?.clone()))),
            protocol: up.protocol,
        }
    }

    /// Plain HTTP/1.1.
    #[cfg(test)]
    fn plain() -> Self {
        ProbeTransport {
            tls: None,
            protocol: Protocol::Http1,
        }
    }
}

impl Drop for Check {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Identifies a probe task across reloads.
type Key = (Box<str>, SocketAddr);

/// Runs the health checks of the current snapshot, following reloads.
pub(crate) async fn run(control: Arc<Control>) {
    let mut generations = control.generations.subscribe();
    let mut checks: HashMap<Key, Check> = HashMap::new();
    let random = RandomState::new();
    loop {
        // Mark the generation seen before reading the snapshot, so a reload
        // published meanwhile is not missed.
        generations.borrow_and_update();
        reconcile(&control.snapshot(), &mut checks, &random);
        if generations.changed().await.is_err() {
            return;
        }
    }
}

/// Makes the running tasks match `snap`: keeps those whose upstream, address
/// and settings are unchanged, stops the others and starts the missing ones.
fn reconcile(snap: &Snapshot, checks: &mut HashMap<Key, Check>, random: &RandomState) {
    let mut next: HashMap<Key, Check> = HashMap::new();
    for (u, up) in snap.upstreams.iter().enumerate() {
        let Some(states) = snap.endpoint_states.get(u) else {
            continue;
        };
        for (i, (ep, st)) in up.endpoints.iter().zip(states).enumerate() {
            let key: Key = (up.name.clone(), ep.addr);
            if next.contains_key(&key) {
                // Listed twice: one probe, one shared state.
                continue;
            }
            let Some(spec) = &up.health_check else {
                // No check (any more): never down.
                if st.health.0.set_healthy(true) {
                    tracing::info!(
                        upstream = %up.name,
                        endpoint = %ep.addr,
                        "endpoint marked up: its upstream no longer has a health check"
                    );
                }
                reset(&st.health.0);
                continue;
            };
            let transport = up.pool_key(i, ep.addr).1;
            let check = match checks.remove(&key) {
                Some(c)
                    if c.spec == *spec && Arc::ptr_eq(&c.state, st) && c.transport == transport =>
                {
                    c
                }
                old => {
                    // New, or its settings changed: start over (the state
                    // stays; only the counting restarts).
                    drop(old);
                    reset(&st.health.0);
                    let first = jitter(random, &key, spec.interval);
                    let how = ProbeTransport::of(up, i);
                    Check {
                        spec: spec.clone(),
                        state: st.clone(),
                        transport,
                        task: tokio::spawn(watch(
                            up.name.clone(),
                            spec.clone(),
                            how,
                            st.clone(),
                            first,
                        )),
                    }
                }
            };
            next.insert(key, check);
        }
    }
    // What is left was removed from the configuration: dropping stops it.
    *checks = next;
}

fn reset(h: &Health) {
    h.streak.store(0, Ordering::Relaxed);
    h.last_probe.store(0, Ordering::Relaxed);
}

/// A delay in `[0, interval / 2)` before an endpoint's first probe, so many
/// endpoints (and the upstreams sharing an address) do not probe in lockstep.
fn jitter(random: &RandomState, key: &Key, interval: Duration) -> Duration {
    let r = random.hash_one((key, Instant::now()));
    let half = interval / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(r % nanos)
}

/// Probes one endpoint every `spec.interval` until stopped, updating its
/// health and logging each change of state.
async fn watch(
    upstream: Box<str>,
    spec: HealthCheckSpec,
    how: ProbeTransport,
    state: Arc<EndpointState>,
    first: Duration,
) {
    tokio::time::sleep(first).await;
    let addr = state.addr;
    let health = &state.health.0;
    // The timeout is at most the interval (the compiler refuses longer), so
    // a probe always ends before the next is due.
    let mut tick = tokio::time::interval(spec.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let outcome = probe(addr, &spec, &how).await;
        let passed = outcome.is_ok();
        if let Err(cause) = &outcome {
            health.set_last_error(Some(cause.clone()));
        }
        match (record(health, &spec, passed), outcome) {
            (Some(false), Err(cause)) => tracing::warn!(
                upstream = %upstream,
                endpoint = %addr,
                cause = %cause,
                "endpoint marked down: {} health checks failed in a row",
                spec.unhealthy_threshold
            ),
            (Some(true), _) => tracing::info!(
                upstream = %upstream,
                endpoint = %addr,
                "endpoint marked up: {} health checks passed in a row",
                spec.healthy_threshold
            ),
            _ => {}
        }
    }
}

/// Counts one probe result; returns the new state if this result changed it.
fn record(h: &Health, spec: &HealthCheckSpec, passed: bool) -> Option<bool> {
    let outcome = if passed { PASSED } else { FAILED };
    let streak = if h.last_probe.swap(outcome, Ordering::Relaxed) == outcome {
        h.streak.load(Ordering::Relaxed).saturating_add(1)
    } else {
        1
    };
    h.streak.store(streak, Ordering::Relaxed);
    let threshold = if passed {
        spec.healthy_threshold
    } else {
        spec.unhealthy_threshold
    };
    (h.is_healthy() != passed && streak >= u64::from(threshold) && h.set_healthy(passed))
        .then_some(passed)
}

/// One probe, bounded by `spec.timeout`: `Ok` if it passed, else its cause.
async fn probe(
    addr: SocketAddr,
    spec: &HealthCheckSpec,
    how: &ProbeTransport,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let timed_out = || format!("timed out after {:?}", spec.timeout);
    match &spec.probe {
        // A TCP probe is a TCP connect only, never TLS.
        Probe::Tcp => match tokio::time::timeout_at(deadline, connect::open(addr, None)).await {
            Err(_) => Err(timed_out()),
            Ok(Err(OpenError::Tcp(e) | OpenError::Tls(e))) => Err(connect_cause(&e)),
            Ok(Ok(_stream)) => Ok(()),
        },
        Probe::Http {
            method,
            path,
            host,
            statuses,
        } => {
            let exchange = http_exchange(addr, method, path, host.as_deref(), how);
            let (status, body, connection) = match tokio::time::timeout_at(deadline, exchange).await
            {
                Err(_) => return Err(timed_out()),
                Ok(result) => result?,
            };
            // The outcome is decided by the head. Read what the origin sends
            // (bounded, within the same deadline), so it closes cleanly
            // rather than seeing a reset.
            drain(body, deadline).await;
            drop(connection);
            if statuses.iter().any(|&(lo, hi)| (lo..=hi).contains(&status)) {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
    }
}

/// Connects (and runs the TLS handshake, if any) through the same connector
/// as the data plane's exchanges, and sends `method path`; returns the
/// response status, its body and the task driving the connection (stopped
/// when dropped).
async fn http_exchange(
    addr: SocketAddr,
    method: &http::Method,
    path: &str,
    host: Option<&str>,
    how: &ProbeTransport,
) -> Result<(u16, Incoming, AbortOnDrop), String> {
    let tls = how.tls.as_ref().map(|(config, name)| (config, name));
    let transport = connect::open(addr, tls).await.map_err(|e| match &e {
        OpenError::Tcp(io) => connect_cause(io),
        OpenError::Tls(io) => {
            let detail = e.rustls().map_or_else(|| io.to_string(), |r| r.to_string());
            format!("TLS handshake failed: {detail}")
        }
    })?;
    let host = match host {
        Some(h) => HeaderValue::from_str(h),
        None => HeaderValue::from_str(&addr.to_string()),
    }
    .map_err(|e| format!("invalid Host header: {e}"))?;
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::HOST, host)
        .header(header::USER_AGENT, USER_AGENT)
        .body(Empty::new())
        .map_err(|e| format!("invalid request: {e}"))?;
    let h2 = transport.speaks_h2(how.protocol);
    match transport {
        Transport::Plain(tcp) if h2 => {
            connect::http2_target(&mut request, false);
            send_h2(tcp, request).await
        }
        Transport::Plain(tcp) => send_h1(tcp, request).await,
        Transport::Tls(tls) if h2 => {
            connect::http2_target(&mut request, true);
            send_h2(tls, request).await
        }
        Transport::Tls(tls) => send_h1(tls, request).await,
    }
}

async fn send_h1<IO>(io: IO, mut request: Request<Empty<Bytes>>) -> Exchanged
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake failed: {e}"))?;
    let connection = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    request
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    Ok((status, response.into_body(), connection))
}

async fn send_h2<IO>(io: IO, request: Request<Empty<Bytes>>) -> Exchanged
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
    let connection = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    Ok((status, response.into_body(), connection))
}

/// A probe's response status, its body, and its connection's task.
type Exchanged = Result<(u16, Incoming, AbortOnDrop), String>;

/// Reads and discards up to [`DRAIN_LIMIT`] bytes of `body`, until it ends,
/// fails or `deadline` passes.
async fn drain(mut body: Incoming, deadline: tokio::time::Instant) {
    let mut read = 0;
    while read < DRAIN_LIMIT {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

/// Stops the probe's connection task when the probe ends (or is cancelled by
/// its timeout or a reload).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn connect_cause(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => format!("connect failed: {e}"),
    }
}

/// How often ejected endpoints are looked at.
const RETURNS_TICK: Duration = Duration::from_millis(250);

/// Outlier detection's control side: clears the ejections that have ended
/// and logs each return once (a worker ejects; nobody needs to act for the
/// endpoint to come back).
pub(crate) async fn watch_returns(control: Arc<Control>) {
    let mut tick = tokio::time::interval(RETURNS_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snap = control.snapshot();
        outlier::clear_returned(&snap.upstreams, &snap.endpoint_states, outlier::unix_ms());
    }
}

/// What the health checker knows of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    /// Whether the balancers send it requests. Endpoints start healthy.
    pub healthy: bool,
    /// Whether an active health check runs for it.
    pub checked: bool,
    /// Why the last failed probe failed, e.g. `"connection refused"`,
    /// `"status 503"` or `"timed out after 200ms"`; `None` if none has.
    pub last_error: Option<String>,
}

impl Gateway {
    /// The health of `endpoint` of upstream `upstream` in the running
    /// configuration; `None` if it has no such endpoint.
    pub fn endpoint_health(&self, upstream: &str, endpoint: SocketAddr) -> Option<EndpointHealth> {
        let snap = self.control().snapshot();
        let u = snap.upstreams.iter().position(|up| &*up.name == upstream)?;
        let i = snap.upstreams[u]
            .endpoints
            .iter()
            .position(|ep| ep.addr == endpoint)?;
        let h = &snap.endpoint_states.get(u)?.get(i)?.health.0;
        Some(EndpointHealth {
            healthy: h.is_healthy(),
            checked: h.is_checked(),
            last_error: h.last_error(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(healthy: u32, unhealthy: u32) -> HealthCheckSpec {
        HealthCheckSpec {
            probe: Probe::Tcp,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            fail_open: false,
        }
    }

    #[test]
    fn thresholds_count_consecutive_results_and_report_changes_once() {
        let h = Health::default();
        let s = spec(2, 3);
        assert!(h.is_healthy(), "endpoints start healthy");
        // Failures interrupted by a pass start counting again.
        assert_eq!(record(&h, &s, false), None);
        assert_eq!(record(&h, &s, false), None);
        assert_eq!(record(&h, &s, true), None);
        assert_eq!(record(&h, &s, false), None);
        assert_eq!(record(&h, &s, false), None);
        assert!(h.is_healthy());
        assert_eq!(record(&h, &s, false), Some(false));
        assert!(!h.is_healthy());
        // Further failures change nothing and report nothing.
        for _ in 0..5 {
            assert_eq!(record(&h, &s, false), None);
        }
        assert_eq!(record(&h, &s, true), None);
        assert_eq!(record(&h, &s, false), None);
        assert_eq!(record(&h, &s, true), None);
        assert!(!h.is_healthy());
        assert_eq!(record(&h, &s, true), Some(true));
        assert!(h.is_healthy());
        assert_eq!(record(&h, &s, true), None);
    }

    #[test]
    fn thresholds_of_one_flip_on_each_change() {
        let h = Health::default();
        let s = spec(1, 1);
        assert_eq!(record(&h, &s, true), None);
        assert_eq!(record(&h, &s, false), Some(false));
        assert_eq!(record(&h, &s, true), Some(true));
    }

    #[test]
    fn jitter_stays_within_half_an_interval() {
        let random = RandomState::new();
        let key: Key = ("a".into(), ([127, 0, 0, 1], 80).into());
        for ms in [0, 1, 100, 5000] {
            let interval = Duration::from_millis(ms);
            for _ in 0..50 {
                assert!(jitter(&random, &key, interval) <= interval / 2);
            }
        }
    }

    #[tokio::test]
    async fn probe_causes_name_what_failed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = listener.local_addr().unwrap();
        drop(listener);
        let s = spec(1, 1);
        assert_eq!(
            probe(refused, &s, &ProbeTransport::plain()).await,
            Err("connection refused".to_string())
        );
        let http = HealthCheckSpec {
            probe: Probe::Http {
                method: http::Method::GET,
                path: "/".into(),
                host: None,
                statuses: vec![(200, 399)],
            },
            ..s.clone()
        };
        assert_eq!(
            probe(refused, &http, &ProbeTransport::plain()).await,
            Err("connection refused".to_string())
        );

        // Accepts but never answers: the timeout names itself.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = silent.accept().await {
                conns.push(c);
            }
        });
        let started = Instant::now();
        assert_eq!(
            probe(addr, &http, &ProbeTransport::plain()).await,
            Err("timed out after 100ms".to_string())
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // A TCP check passes on the same listener.
        assert_eq!(probe(addr, &s, &ProbeTransport::plain()).await, Ok(()));
        held.abort();
    }
}
