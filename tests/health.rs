//! Active health checks against real origins on 127.0.0.1: an origin that
//! stops (listener closed, connections dropped) is marked down within its
//! thresholds and gets no more traffic, and is marked up again when it comes
//! back on the same port; HTTP checks with expected statuses and a configured
//! Host; TCP checks; 503 when every endpoint is down, or fail open; health
//! state across reloads. Every wait is bounded; the time limits carry a
//! generous slack because the tests share two cores with other builds.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use strait::Gateway;

/// Scheduling slack on top of what the thresholds allow.
const SLACK: Duration = Duration::from_millis(1500);
/// The longest any single wait may take before the test fails.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A restartable origin: each life runs on its own thread and runtime; a stop
// closes the listener and drops every connection (the runtime is dropped),
// and a restart binds the same port again.

/// What an origin saw, across its lives.
#[derive(Clone, Default)]
struct Seen {
    /// Requests other than health probes (proxied traffic).
    requests: Arc<AtomicUsize>,
    /// Requests to `/healthz`.
    probes: Arc<AtomicUsize>,
    /// Method, Host, User-Agent and Connection of the last probe.
    last_probe: Arc<Mutex<Option<[String; 4]>>>,
    /// The status `/healthz` answers.
    health: Arc<AtomicU16>,
}

struct Backend {
    name: &'static str,
    addr: SocketAddr,
    seen: Seen,
    life: Option<Server>,
}

impl Backend {
    /// Serves `name` on any path (200), and `/healthz` with 200 until told
    /// otherwise.
    fn start(name: &'static str) -> Backend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let seen = Seen::default();
        seen.health.store(200, Ordering::SeqCst);
        let mut b = Backend {
            name,
            addr: listener.local_addr().unwrap(),
            seen,
            life: None,
        };
        b.run(listener);
        b
    }

    fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    fn probes(&self) -> usize {
        self.seen.probes.load(Ordering::SeqCst)
    }

    fn set_health(&self, status: u16) {
        self.seen.health.store(status, Ordering::SeqCst);
    }

    fn last_probe(&self) -> Option<[String; 4]> {
        self.seen.last_probe.lock().unwrap().clone()
    }

    /// Closes the listener and every connection, and waits until they are.
    fn stop(&mut self) {
        if let Some(mut server) = self.life.take() {
            server.stop();
        }
    }

    /// Listens on the same port again.
    fn restart(&mut self) {
        assert!(self.life.is_none());
        let started = Instant::now();
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        started.elapsed() < WAIT_LIMIT,
                        "cannot bind {} again: {e}",
                        self.addr
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        self.run(listener);
    }

    fn run(&mut self, listener: std::net::TcpListener) {
        let (seen, name) = (self.seen.clone(), self.name);
        self.life = Some(Server::on(listener, 0, move |stream, _| {
            let seen = seen.clone();
            async move {
                let service = hyper::service::service_fn(move |req| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(answer(name, &seen, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        }));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    name: &'static str,
    seen: &Seen,
    req: http::Request<hyper::body::Incoming>,
) -> Response<OriginBody> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    let status = if req.uri().path() == "/healthz" {
        seen.probes.fetch_add(1, Ordering::SeqCst);
        *seen.last_probe.lock().unwrap() = Some([
            req.method().to_string(),
            header("host"),
            header("user-agent"),
            header("connection"),
        ]);
        seen.health.load(Ordering::SeqCst)
    } else {
        seen.requests.fetch_add(1, Ordering::SeqCst);
        200
    };
    drain(req).await;
    let mut resp = Response::new(full(name));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp.headers_mut().insert("x-origin", name.parse().unwrap());
    resp
}

// ---------------------------------------------------------------------------
// Helpers.

/// Polls `done` every 5 ms until it holds; returns how long it took. Fails
/// the test after `WAIT_LIMIT`.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if done() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < WAIT_LIMIT,
            "still waiting after {WAIT_LIMIT:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn healthy(gw: &Gateway, upstream: &str, addr: SocketAddr) -> bool {
    gw.endpoint_health(upstream, addr)
        .unwrap_or_else(|| panic!("no endpoint {addr} in upstream {upstream}"))
        .healthy
}

/// Sends `n` requests over one connection; returns how many each origin
/// answered (by `x-origin`), failing on anything but 200.
async fn spread(gw: &Gateway, path: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut client = H1::connect(gw.addr()).await;
    let mut by = std::collections::BTreeMap::new();
    for i in 0..n {
        let r = client.get(path).await;
        assert_eq!(r.status, 200, "request {i} of {n} to {path}: {}", r.text());
        let origin = r.headers["x-origin"].to_str().unwrap().to_string();
        *by.entry(origin).or_insert(0) += 1;
    }
    by
}

fn health_check(kind: &str, extra: &str) -> String {
    format!(
        "type = \"{kind}\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\n\
         healthy_threshold = 2\nunhealthy_threshold = 2\n{extra}"
    )
}

/// One upstream `backend` over `endpoints` with `[health_check]` = `check`
/// (none if empty), routed from every path.
fn config(endpoints: &[SocketAddr], check: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let mut toml = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
         [upstreams.backend]\nendpoints = [{}]\nconnect_timeout = \"1s\"\n\n\
         [[routes]]\nupstream = \"backend\"\n",
        eps.join(", ")
    );
    if !check.is_empty() {
        toml.push_str(&format!("\n[upstreams.backend.health_check]\n{check}"));
    }
    toml
}

/// Log lines about endpoint `addr` containing `text`.
fn logged_about(addr: SocketAddr, text: &str) -> Vec<String> {
    let field = format!("endpoint={addr}");
    logged(text)
        .into_iter()
        .filter(|l| l.split_whitespace().any(|w| w == field))
        .collect()
}

// ---------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn a_stopped_origin_is_marked_down_within_its_thresholds_and_up_when_it_returns() {
    capture_logs();
    let a = Backend::start("a");
    let mut b = Backend::start("b");
    let (interval, timeout, threshold) =
        (Duration::from_millis(100), Duration::from_millis(100), 2u32);
    let gw = gateway_with(
        &config(
            &[a.addr, b.addr],
            &health_check("http", "path = \"/healthz\"\n"),
        ),
        2,
    );
    // Both probed and up; traffic goes to both.
    wait_for("probes of both origins", || {
        a.probes() >= 2 && b.probes() >= 2
    })
    .await;
    let h = gw.endpoint_health("backend", b.addr).unwrap();
    assert!(h.healthy && h.checked && h.last_error.is_none(), "{h:?}");
    let by = spread(&gw, "/x", 20).await;
    assert_eq!((by["a"], by["b"]), (10, 10), "{by:?}");
    // The default Host is the endpoint's address.
    assert_eq!(
        b.last_probe().unwrap(),
        [
            "GET".to_string(),
            b.addr.to_string(),
            "strait-health-check".to_string(),
            "close".to_string()
        ]
    );

    // b stops: listener closed, connections dropped.
    b.stop();
    let down = wait_for("b marked down", || !healthy(&gw, "backend", b.addr)).await;
    // The next probe is due within one interval; `threshold` failures in a
    // row, each ending within the timeout.
    let bound = interval * threshold + timeout + SLACK;
    println!("stopped origin marked down after {down:?} (bound {bound:?})");
    assert!(down <= bound, "marked down after {down:?}, bound {bound:?}");
    let h = gw.endpoint_health("backend", b.addr).unwrap();
    assert_eq!(h.last_error.as_deref(), Some("connection refused"), "{h:?}");

    // No more traffic to b: every request answered 200 by a, no 502.
    let by = spread(&gw, "/x", 50).await;
    assert_eq!(by.get("a"), Some(&50), "{by:?}");
    assert!(healthy(&gw, "backend", a.addr));

    // b returns on the same port.
    let before = b.requests();
    b.restart();
    let up = wait_for("b marked up", || healthy(&gw, "backend", b.addr)).await;
    let bound = interval * threshold + timeout + SLACK;
    println!("returned origin marked up after {up:?} (bound {bound:?})");
    assert!(up <= bound, "marked up after {up:?}, bound {bound:?}");
    let by = spread(&gw, "/x", 40).await;
    assert_eq!((by["a"], by["b"]), (20, 20), "{by:?}");
    assert_eq!(b.requests(), before + 20);

    // Each change of state logged once, not once per probe; a stayed quiet.
    let down_lines = logged_about(b.addr, "endpoint marked down");
    assert_eq!(down_lines.len(), 1, "{down_lines:#?}");
    assert!(down_lines[0].contains("WARN"), "{}", down_lines[0]);
    assert!(
        down_lines[0].contains("cause=connection refused")
            && down_lines[0].contains("upstream=backend"),
        "{}",
        down_lines[0]
    );
    let up_lines = logged_about(b.addr, "endpoint marked up");
    assert_eq!(up_lines.len(), 1, "{up_lines:#?}");
    assert!(up_lines[0].contains("INFO"), "{}", up_lines[0]);
    assert!(logged_about(a.addr, "endpoint marked").is_empty());
    gw.shutdown();
}

#[tokio::test]
async fn http_check_expects_statuses_and_sends_the_configured_host() {
    capture_logs();
    let a = Backend::start("a");
    let b = Backend::start("b");
    a.set_health(204);
    b.set_health(503);
    let check = health_check(
        "http",
        "method = \"HEAD\"\npath = \"/healthz\"\nhost = \"health.example\"\n\
         expected_statuses = [\"2xx\", 302]\n",
    );
    let gw = gateway_with(&config(&[a.addr, b.addr], &check), 2);
    let started = Instant::now();
    wait_for("b marked down", || !healthy(&gw, "backend", b.addr)).await;
    println!("503 origin marked down after {:?}", started.elapsed());
    let h = gw.endpoint_health("backend", b.addr).unwrap();
    assert_eq!(h.last_error.as_deref(), Some("status 503"));
    let h = gw.endpoint_health("backend", a.addr).unwrap();
    assert!(h.healthy && h.last_error.is_none(), "{h:?}");
    for origin in [&a, &b] {
        assert_eq!(
            origin.last_probe().unwrap(),
            [
                "HEAD".to_string(),
                "health.example".to_string(),
                "strait-health-check".to_string(),
                "close".to_string()
            ]
        );
    }
    let by = spread(&gw, "/y", 30).await;
    assert_eq!(by.get("a"), Some(&30), "{by:?}");
    assert_eq!(b.requests(), 0);

    // A listed single status passes too.
    b.set_health(302);
    wait_for("b marked up", || healthy(&gw, "backend", b.addr)).await;
    let by = spread(&gw, "/y", 30).await;
    assert_eq!((by["a"], by["b"]), (15, 15), "{by:?}");
    assert_eq!(
        logged_about(b.addr, "endpoint marked down")
            .iter()
            .filter(|l| l.contains("cause=status 503"))
            .count(),
        1
    );
    // a was never marked down.
    assert!(logged_about(a.addr, "endpoint marked").is_empty());
    gw.shutdown();
}

#[tokio::test]
async fn tcp_check_marks_a_closed_port_down_and_up_again() {
    capture_logs();
    let a = Backend::start("a");
    let mut b = Backend::start("b");
    let gw = gateway_with(&config(&[a.addr, b.addr], &health_check("tcp", "")), 2);
    // TCP probes connect and send nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(healthy(&gw, "backend", b.addr));
    assert_eq!(
        (a.probes(), a.requests(), b.probes(), b.requests()),
        (0, 0, 0, 0)
    );

    b.stop();
    let down = wait_for("b marked down", || !healthy(&gw, "backend", b.addr)).await;
    println!("tcp: stopped origin marked down after {down:?}");
    let bound = Duration::from_millis(100) * 2 + Duration::from_millis(100) + SLACK;
    assert!(down <= bound, "marked down after {down:?}, bound {bound:?}");
    assert_eq!(
        gw.endpoint_health("backend", b.addr)
            .unwrap()
            .last_error
            .as_deref(),
        Some("connection refused")
    );
    let by = spread(&gw, "/z", 30).await;
    assert_eq!(by.get("a"), Some(&30), "{by:?}");

    b.restart();
    let up = wait_for("b marked up", || healthy(&gw, "backend", b.addr)).await;
    println!("tcp: returned origin marked up after {up:?}");
    let by = spread(&gw, "/z", 30).await;
    assert_eq!((by["a"], by["b"]), (15, 15), "{by:?}");
    gw.shutdown();
}

#[tokio::test]
async fn all_endpoints_down_answers_503_unless_the_check_fails_open() {
    capture_logs();
    let a = Backend::start("a");
    let b = Backend::start("b");
    a.set_health(500);
    b.set_health(500);
    let check = health_check("http", "path = \"/healthz\"\n");
    let eps = format!("[\"{}\", \"{}\"]", a.addr, b.addr);
    let toml = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
         [upstreams.strict]\nendpoints = {eps}\n\
         [upstreams.strict.health_check]\n{check}\n\
         [upstreams.open]\nendpoints = {eps}\n\
         [upstreams.open.health_check]\n{check}fail_open = true\n\n\
         [[routes]]\nmatch = {{ path_prefix = \"/strict\" }}\nupstream = \"strict\"\n\n\
         [[routes]]\nmatch = {{ path_prefix = \"/open\" }}\nupstream = \"open\"\n"
    );
    let gw = gateway_with(&toml, 2);
    wait_for("every endpoint marked down", || {
        ["strict", "open"]
            .iter()
            .all(|u| !healthy(&gw, u, a.addr) && !healthy(&gw, u, b.addr))
    })
    .await;

    let mut client = H1::connect(gw.addr()).await;
    for _ in 0..5 {
        let r = client.get("/strict/x").await;
        assert_eq!(r.status, 503);
        assert_eq!(
            r.text(),
            "503 Service Unavailable: no healthy upstream endpoint\n"
        );
        assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    }
    assert_eq!(
        a.requests() + b.requests(),
        0,
        "nothing reached the origins"
    );

    // Failing open: balanced over all of them as if healthy.
    let by = spread(&gw, "/open/x", 20).await;
    assert_eq!((by["a"], by["b"]), (10, 10), "{by:?}");

    // One recovers: the strict upstream sends everything there.
    a.set_health(200);
    wait_for("a marked up", || healthy(&gw, "strict", a.addr)).await;
    let by = spread(&gw, "/strict/x", 10).await;
    assert_eq!(by.get("a"), Some(&10), "{by:?}");
    gw.shutdown();
}

#[tokio::test]
async fn health_state_survives_reloads_and_the_checker_follows_them() {
    capture_logs();
    let a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    b.set_health(503);
    let check = health_check("http", "path = \"/healthz\"\n");
    let gw = gateway_with(&config(&[a.addr, b.addr], &check), 2);
    wait_for("b marked down", || !healthy(&gw, "backend", b.addr)).await;

    // A reload that keeps b (and its check) and adds c: b stays down at once
    // (no new probe needed), c starts up and is probed.
    let c_probes = c.probes();
    gw.reload_toml("reload.toml", &config(&[a.addr, b.addr, c.addr], &check))
        .unwrap();
    assert!(
        !healthy(&gw, "backend", b.addr),
        "b's state was lost by the reload"
    );
    assert!(
        healthy(&gw, "backend", c.addr),
        "a new endpoint starts healthy"
    );
    assert!(gw.endpoint_health("backend", c.addr).unwrap().checked);
    wait_for("c probed", || c.probes() > c_probes).await;
    assert!(!healthy(&gw, "backend", b.addr));
    // b comes back through probes, exactly once.
    b.set_health(200);
    wait_for("b marked up", || healthy(&gw, "backend", b.addr)).await;
    assert_eq!(logged_about(b.addr, "endpoint marked up").len(), 1);

    // c goes down; a reload that changes only the check's settings keeps
    // the state (the probe task restarts with the new settings).
    c.set_health(503);
    wait_for("c marked down", || !healthy(&gw, "backend", c.addr)).await;
    let slower = check.replace("interval = \"100ms\"", "interval = \"150ms\"");
    gw.reload_toml("reload.toml", &config(&[a.addr, b.addr, c.addr], &slower))
        .unwrap();
    assert!(!healthy(&gw, "backend", c.addr));
    let by = spread(&gw, "/w", 20).await;
    assert_eq!((by["a"], by["b"], by.get("c")), (10, 10, None), "{by:?}");

    // Removing b stops its probes.
    gw.reload_toml("reload.toml", &config(&[a.addr, c.addr], &slower))
        .unwrap();
    assert!(gw.endpoint_health("backend", b.addr).is_none());
    // A probe already under way may still arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b_probes = b.probes();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.probes(), b_probes, "a removed endpoint is still probed");
    let by = spread(&gw, "/w", 10).await;
    assert_eq!(by.get("a"), Some(&10), "{by:?}");

    // Removing the health check: c is marked up and gets traffic again, and
    // nothing is probed any more.
    gw.reload_toml("reload.toml", &config(&[a.addr, c.addr], ""))
        .unwrap();
    let h = wait_for("c marked up without a check", || {
        healthy(&gw, "backend", c.addr)
    })
    .await;
    assert!(h < WAIT_LIMIT);
    assert!(!gw.endpoint_health("backend", c.addr).unwrap().checked);
    let by = spread(&gw, "/w", 20).await;
    assert_eq!((by["a"], by["c"]), (10, 10), "{by:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probes = a.probes() + c.probes();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        a.probes() + c.probes(),
        probes,
        "probes after the check was removed"
    );
    gw.shutdown();
}
