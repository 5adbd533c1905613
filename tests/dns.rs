//! Upstream names: an endpoint written as `host:port` stands for every address
//! the name resolves to, resolved at load and every `dns_refresh` on the
//! control plane, never by a worker. The names are answered by a fake
//! resolver (`GatewayBuilder::resolver`) whose answers the tests change; it
//! answers with the socket addresses of real origins on 127.0.0.1 (each on
//! its own port), so traffic still crosses real sockets. Every wait is
//! bounded; the limits carry slack because the tests share two cores with
//! other builds.

mod common;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use strait::Gateway;

/// `dns_refresh` of the tests (the minimum).
const REFRESH: Duration = Duration::from_secs(1);
/// The longest any single wait may take before the test fails.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// A name's answer: its addresses, or the error the resolver returns.
type Answer = Result<Vec<SocketAddr>, String>;

/// A resolver whose answers the test sets; it also records which threads
/// asked, to show that no worker ever resolves.
#[derive(Clone, Default)]
struct FakeDns {
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    lookups: Arc<AtomicUsize>,
    threads: Arc<Mutex<HashSet<String>>>,
}

impl FakeDns {
    fn set(&self, host: &str, addrs: &[SocketAddr]) {
        self.answers
            .lock()
            .unwrap()
            .insert(host.into(), Ok(addrs.to_vec()));
    }

    fn fail(&self, host: &str, error: &str) {
        self.answers
            .lock()
            .unwrap()
            .insert(host.into(), Err(error.into()));
    }

    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl strait::Resolve for FakeDns {
    fn resolve(&self, host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let thread = std::thread::current().name().unwrap_or("").to_string();
        self.threads.lock().unwrap().insert(thread);
        match self.answers.lock().unwrap().get(host) {
            Some(Ok(addrs)) => Ok(addrs.clone()),
            Some(Err(e)) => Err(io::Error::other(e.clone())),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
        }
    }
}

fn config(endpoint: &str, extra: &str) -> String {
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.backend]
endpoints = ["{endpoint}"]
dns_refresh = "1s"
connect_timeout = "1s"
response_header_timeout = "2s"
{extra}

[[routes]]
name = "all"
upstream = "backend"
"#
    )
}

#[track_caller]
fn start(dns: &FakeDns, toml: &str, admin: bool) -> common::TestGateway {
    let admin = admin.then(|| "127.0.0.1:0".parse().unwrap());
    common::watched(
        Gateway::builder()
            .workers(2)
            .admin_listen(admin)
            .resolver(dns.clone())
            .start_toml("test.toml", toml)
            .unwrap_or_else(|e| panic!("gateway did not start: {e}")),
    )
}

/// The `x-origin` of `n` requests over one keep-alive connection.
async fn origins(client: &mut H1, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let r = client.get("/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        seen.push(
            r.headers
                .get("x-origin")
                .map_or("?", |v| v.to_str().unwrap())
                .to_string(),
        );
    }
    seen
}

fn set_of(seen: &[String]) -> HashSet<&str> {
    seen.iter().map(String::as_str).collect()
}

/// Sends rounds of requests until a round sees exactly `want`; returns when
/// that first happened (after `since`).
async fn until_origins(client: &mut H1, want: &[&str], since: Instant) -> Duration {
    let want: HashSet<&str> = want.iter().copied().collect();
    loop {
        let seen = origins(client, 6).await;
        if set_of(&seen) == want {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < WAIT_LIMIT,
            "traffic did not move to {want:?}: last round {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn admin_json(gw: &Gateway, path: &str) -> serde_json::Value {
    get(gw.admin_addr().unwrap(), path, &[]).await.json()
}

/// The `dns` entry of the upstream `backend` in `GET /upstreams`.
async fn dns_state(gw: &Gateway) -> serde_json::Value {
    let v = admin_json(gw, "/upstreams").await;
    v["upstreams"][0]["dns"][0].clone()
}

fn assert_no_worker_resolved(dns: &FakeDns) {
    let threads = dns.threads.lock().unwrap();
    assert!(
        !threads.iter().any(|t| t.starts_with("strait-worker")),
        "a worker resolved a name: {threads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_balances_over_every_address_it_resolves_to() {
    let (a, b) = (Origin::fixed("a", 200, "a"), Origin::fixed("b", 200, "b"));
    let dns = FakeDns::default();
    // Listed twice and out of order: one endpoint per address.
    dns.set("svc.test", &[b.addr, a.addr, b.addr]);
    let gw = start(&dns, &config("svc.test:80", ""), false);
    let mut client = H1::connect(gw.addr()).await;
    let seen = origins(&mut client, 10).await;
    assert_eq!(set_of(&seen), HashSet::from(["a", "b"]), "{seen:?}");
    // Round robin over the two addresses: five each.
    assert_eq!(seen.iter().filter(|o| *o == "a").count(), 5, "{seen:?}");
    assert_no_worker_resolved(&dns);
    gw.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_answer_moves_traffic_and_keeps_warm_connections() {
    let (a, b, c) = (
        Origin::fixed("a", 200, "a"),
        Origin::fixed("b", 200, "b"),
        Origin::fixed("c", 200, "c"),
    );
    let dns = FakeDns::default();
    dns.set("svc.test", &[a.addr, b.addr]);
    let gw = start(&dns, &config("svc.test:80", ""), true);
    let mut client = H1::connect(gw.addr()).await;
    let seen = origins(&mut client, 10).await;
    assert_eq!(set_of(&seen), HashSet::from(["a", "b"]), "{seen:?}");

    // The same addresses in another order: nothing is published.
    let generation = gw.generation();
    dns.set("svc.test", &[b.addr, a.addr]);
    let lookups = dns.lookups();
    let t = Instant::now();
    while dns.lookups() < lookups + 2 {
        assert!(t.elapsed() < WAIT_LIMIT, "no refresh");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.generation(), generation, "an unchanged answer published");

    // One address added, one removed.
    let a_connections = a.connections();
    assert_eq!(a_connections, 1, "one warm connection to a");
    dns.set("svc.test", &[c.addr, a.addr]);
    let changed = Instant::now();
    let latency = until_origins(&mut client, &["a", "c"], changed).await;
    eprintln!("refresh latency (dns_refresh = 1s): {latency:?}");
    assert!(latency < REFRESH + Duration::from_secs(3), "{latency:?}");
    assert_eq!(gw.generation(), generation + 1, "one publish");
    // The settled traffic: only a and c.
    let seen = origins(&mut client, 10).await;
    assert_eq!(set_of(&seen), HashSet::from(["a", "c"]), "{seen:?}");
    // a kept its warm connection; b's idle one was closed.
    assert_eq!(a.connections(), a_connections, "a new connection to a");
    let t = Instant::now();
    while b.open_connections() > 0 {
        assert!(t.elapsed() < WAIT_LIMIT, "b's idle connection stayed open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let state = dns_state(&gw).await;
    assert_eq!(state["host"], "svc.test:80");
    let mut want = vec![a.addr.to_string(), c.addr.to_string()];
    want.sort();
    let got: Vec<String> = state["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "{state}");
    assert!(state["last_error"].is_null(), "{state}");
    assert!(state["last_refresh"].is_string(), "{state}");
    assert_no_worker_resolved(&dns);
    gw.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_name_keeps_its_last_good_addresses_and_is_reported() {
    let (a, b) = (Origin::fixed("a", 200, "a"), Origin::fixed("b", 200, "b"));
    let dns = FakeDns::default();
    dns.set("svc.test", &[a.addr, b.addr]);
    let gw = start(&dns, &config("svc.test:80", ""), true);
    let admin = gw.admin_addr().unwrap();
    let mut client = H1::connect(gw.addr()).await;
    assert_eq!(
        set_of(&origins(&mut client, 4).await),
        HashSet::from(["a", "b"])
    );
    let generation = gw.generation();
    let failures = r#"strait_dns_resolution_failures_total{upstream="backend",host="svc.test:80"}"#;
    assert_eq!(metric(admin, failures).await, 0.0);

    // An error, then an empty answer: both failures, both keep a and b.
    dns.fail("svc.test", "SERVFAIL");
    let t = Instant::now();
    while metric(admin, failures).await < 1.0 {
        assert!(t.elapsed() < WAIT_LIMIT, "the failure was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = dns_state(&gw).await;
    assert!(
        state["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("SERVFAIL")),
        "{state}"
    );
    assert_eq!(state["addresses"].as_array().unwrap().len(), 2, "{state}");
    dns.set("svc.test", &[]);
    while metric(admin, failures).await < 2.0 {
        assert!(t.elapsed() < WAIT_LIMIT, "the empty answer was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = dns_state(&gw).await;
    assert_eq!(
        state["last_error"], "endpoint host \"svc.test\" resolved to no address",
        "{state}"
    );
    assert_eq!(
        set_of(&origins(&mut client, 6).await),
        HashSet::from(["a", "b"])
    );
    assert_eq!(gw.generation(), generation, "a failure published");
    let refreshes = r#"strait_dns_refreshes_total{upstream="backend",host="svc.test:80"}"#;
    assert!(metric(admin, refreshes).await >= 2.0);

    // A reload while the name fails keeps its last good addresses too.
    gw.reload_toml("test.toml", &config("svc.test:80", ""))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        set_of(&origins(&mut client, 6).await),
        HashSet::from(["a", "b"])
    );

    // It recovers with one address.
    dns.set("svc.test", &[b.addr]);
    until_origins(&mut client, &["b"], Instant::now()).await;
    let state = dns_state(&gw).await;
    assert!(state["last_error"].is_null(), "{state}");
    assert_eq!(state["addresses"], serde_json::json!([b.addr.to_string()]));
    assert_no_worker_resolved(&dns);
    gw.shutdown();
}

#[test]
fn names_and_ip_endpoints_mix_and_families_filter() {
    let dns = FakeDns::default();
    let v4: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let v6: SocketAddr = "[::1]:9001".parse().unwrap();
    dns.set("svc.test", &[v6, v4]);
    let toml = |extra: &str| {
        format!(
            r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.backend]
endpoints = ["127.0.0.1:9001", {{ address = "svc.test:9001", weight = 3 }}]
{extra}

[[routes]]
upstream = "backend"
"#
        )
    };
    let endpoints = |gw: &Gateway| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(admin_json(gw, "/config"))["upstreams"]["backend"]["endpoints"].clone()
    };
    // The IP endpoint stays; the name adds only the address not listed yet.
    let gw = start(&dns, &toml(""), true);
    assert_eq!(
        endpoints(&gw),
        serde_json::json!([
            { "address": "127.0.0.1:9001", "weight": 1 },
            { "address": "[::1]:9001", "weight": 3 },
        ])
    );
    gw.shutdown();
    let gw = start(&dns, &toml("dns_family = \"ipv4\""), true);
    assert_eq!(
        endpoints(&gw),
        serde_json::json!([{ "address": "127.0.0.1:9001", "weight": 1 }])
    );
    gw.shutdown();
    // A name with no address of the family is an error at load.
    let err = Gateway::builder()
        .workers(1)
        .admin_listen(None)
        .resolver({
            let d = FakeDns::default();
            d.set("svc.test", &[v4]);
            d
        })
        .start_toml("test.toml", &toml("dns_family = \"ipv6\""))
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "invalid configuration:\ntest.toml:6:32: upstream \"backend\": endpoint host \"svc.test\" resolved to no IPv6 address (dns_family = \"ipv6\")"
    );
}

#[test]
fn a_name_that_does_not_resolve_at_load_is_a_config_error() {
    let dns = FakeDns::default();
    let err = Gateway::builder()
        .workers(1)
        .admin_listen(None)
        .resolver(dns.clone())
        .start_toml("test.toml", &config("nowhere.test:8080", ""))
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "invalid configuration:\ntest.toml:6:14: upstream \"backend\": cannot resolve endpoint host \"nowhere.test\": no such host"
    );
    // A reload that adds a name that does not resolve is refused the same way.
    let o = Origin::fixed("o", 200, "o");
    dns.set("svc.test", &[o.addr]);
    let gw = start(&dns, &config("svc.test:80", ""), false);
    let err = gw
        .reload_toml("test.toml", &config("nowhere.test:8080", ""))
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("cannot resolve endpoint host \"nowhere.test\": no such host"),
        "{err}"
    );
    gw.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_preserve_host_off_a_name_is_the_host_sent_upstream() {
    let echo = Origin::echo();
    let dns = FakeDns::default();
    dns.set("svc.test", &[echo.addr]);
    let toml = config("svc.test:8080", "").replace(
        "[[listeners]]",
        "[server]\npreserve_host = false\n\n[[listeners]]",
    );
    let gw = start(&dns, &toml, false);
    let r = get(gw.addr(), "/", &[]).await;
    assert_eq!(r.seen("host"), vec!["svc.test:8080"]);
    gw.shutdown();
}
