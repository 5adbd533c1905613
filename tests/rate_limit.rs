//! `type = "rate_limit"` and `type = "connection_limit"` over real sockets,
//! on a gateway of 2 workers: a burst then the rate for one client on one
//! keep-alive connection and for many clients on many connections sharing
//! one key (within 5 % of `rate × t + burst + 1`), the 429's `Retry-After`
//! and IETF RateLimit fields, each HTTP/2 stream counted, keys that do not
//! share a limit, `delay`
//! spacing a burst instead of refusing it, a table kept by a reload that
//! leaves the definition alone and started afresh by one that changes it,
//! the refusals in `/metrics` and the settings in `/config`; and
//! `connection_limit` refusing the request past `max` while an origin holds
//! the others, then taking one once they are done, and counting a request
//! until its response body ends (not its head) or is dropped with its
//! client gone; a table of 16 slots under 1,000 keys. The tables' bound
//! under 100,000 keys is a unit test of `limit/` (`rate.rs`, `conns.rs`);
//! load errors are in `tests/config_errors.rs` (`bad_rate_limit.toml`).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(30);

/// How long the timed tests send for.
const WINDOW: Duration = Duration::from_secs(2);

/// A gateway config with one catch-all route to `origin` through the
/// middleware `per_client` of `kind` with these keys.
fn config(origin: SocketAddr, kind: &str, keys: &str) -> String {
    format!(
        "[middlewares.per_client]\ntype = \"{kind}\"\n{keys}\n{}",
        simple_config(&[origin], r#""per_client""#)
    )
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("the test hung")
}

/// `got` is within 5 % of `want` (and at least 2 requests: one interval's
/// rounding at each end of the window).
#[track_caller]
fn within_5_percent(got: usize, want: f64) {
    let slack = (want * 0.05).max(2.0);
    eprintln!("{got} accepted, expected {want:.1} ± {slack:.1}");
    assert!(
        (got as f64 - want).abs() <= slack,
        "{got} accepted, expected {want:.1} ± {slack:.1}"
    );
}

/// Sends requests on one connection until `until`, with `headers`: how
/// many were accepted (200) and refused (429).
async fn send_until(addr: SocketAddr, headers: &[(&str, &str)], until: Instant) -> (usize, usize) {
    let mut client = H1::connect(addr).await;
    let (mut ok, mut refused) = (0, 0);
    while Instant::now() < until {
        let r = client.send(request("GET", "/", headers)).await;
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    (ok, refused)
}

#[tokio::test]
async fn one_connection_gets_the_burst_at_once_then_429() {
    let origin = Origin::echo();
    // 1/s: the burst is all that passes in the time 200 requests take.
    let gw = gateway(&config(
        origin.addr,
        "rate_limit",
        "rate = \"1/s\"\nburst = 99",
    ));
    let mut client = H1::connect(gw.addr()).await;
    let start = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..200 {
        statuses.push(within(client.get("/")).await.status);
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        statuses[..100].iter().all(|s| *s == StatusCode::OK),
        "the burst of 100 was not served at once: {statuses:?}"
    );
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    within_5_percent(ok, 100.0 + elapsed);
    assert_eq!(statuses[100], StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(origin.requests(), ok, "a refused request went upstream");
}

#[tokio::test]
async fn one_client_on_one_connection_gets_the_rate_and_the_burst() {
    let origin = Origin::echo();
    let gw = gateway(&config(
        origin.addr,
        "rate_limit",
        "rate = \"50/s\"\nburst = 10",
    ));
    let start = Instant::now();
    let (ok, refused) = within(send_until(gw.addr(), &[], start + WINDOW)).await;
    let t = start.elapsed().as_secs_f64();
    // One connection lands on one worker: the limit is the process's, so
    // it gets the whole rate, not a worker's share of it.
    within_5_percent(ok, 50.0 * t + 11.0);
    assert!(refused > 0, "the client never went over the rate");
}

#[tokio::test]
async fn many_clients_sharing_a_key_share_one_limit_across_the_workers() {
    let origin = Origin::echo();
    let gw = gateway(&config(
        origin.addr,
        "rate_limit",
        "rate = \"100/s\"\nburst = 20\nkey = \"header:x-tenant\"",
    ));
    // 16 connections: the two workers each accept some of them.
    let start = Instant::now();
    let until = start + WINDOW;
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let addr = gw.addr();
            tokio::spawn(async move { send_until(addr, &[("x-tenant", "acme")], until).await })
        })
        .collect();
    let mut ok = 0;
    for c in clients {
        ok += within(c).await.unwrap().0;
    }
    let t = start.elapsed().as_secs_f64();
    within_5_percent(ok, 100.0 * t + 21.0);
}

#[tokio::test]
async fn a_refusal_carries_retry_after_and_the_ratelimit_fields() {
    let origin = Origin::echo();
    let gw = gateway(&config(
        origin.addr,
        "rate_limit",
        "rate = \"6/m\"\nburst = 1",
    ));
    let mut client = H1::connect(gw.addr()).await;
    for _ in 0..2 {
        assert_eq!(within(client.get("/")).await.status, StatusCode::OK);
    }
    let r = within(client.get("/")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.text(),
        "429 Too Many Requests: over this route's rate limit\n"
    );
    // 6/m: one request every 10 s; the burst is spent, so the next passes
    // in at most 10 s (rounded up to whole seconds).
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((9..=10).contains(&retry), "Retry-After: {retry}");
    assert_eq!(r.headers["ratelimit-policy"], r#""per_client";q=6;w=60"#);
    assert_eq!(
        r.headers["ratelimit"].to_str().unwrap(),
        format!(r#""per_client";r=0;t={retry}"#)
    );
    // The connection serves the next request.
    assert_eq!(
        within(client.get("/")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn different_keys_have_their_own_limits() {
    let origin = Origin::echo();
    let gw = gateway(&config(
        origin.addr,
        "rate_limit",
        "rate = \"1/m\"\nkey = [\"header:x-api-key\", \"route\"]",
    ));
    let mut client = H1::connect(gw.addr()).await;
    let send = |key: &'static str| request("GET", "/", &[("x-api-key", key)]);
    assert_eq!(within(client.send(send("a"))).await.status, StatusCode::OK);
    assert_eq!(
        within(client.send(send("a"))).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(within(client.send(send("b"))).await.status, StatusCode::OK);
    assert_eq!(
        within(client.send(send("b"))).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Without the header every part of the key is missing but the route:
    // such requests share the key of an empty header.
    assert_eq!(within(client.get("/")).await.status, StatusCode::OK);
    assert_eq!(
        within(client.get("/")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_request_without_its_key_is_not_limited() {
    let origin = Origin::echo();
    let gw = gateway(&config(
        origin.addr,
        "rate_limit",
        "rate = \"1/m\"\nkey = \"cookie:session\"",
    ));
    let mut client = H1::connect(gw.addr()).await;
    for _ in 0..5 {
        assert_eq!(within(client.get("/")).await.status, StatusCode::OK);
    }
    let with = || request("GET", "/", &[("cookie", "theme=dark; session=s1")]);
    assert_eq!(within(client.send(with())).await.status, StatusCode::OK);
    assert_eq!(
        within(client.send(with())).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// `n` requests at once, one connection each (opened first): each
/// one's status and when its answer came, from when they were sent.
async fn at_once(addr: SocketAddr, n: usize) -> Vec<(StatusCode, Duration)> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(H1::connect(addr).await);
    }
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { (c.get("/").await.status, start.elapsed()) }))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(within(t).await.unwrap());
    }
    out.sort_by_key(|&(_, at)| at);
    out
}

#[tokio::test]
async fn delay_spaces_a_burst_instead_of_refusing_it() {
    let origin = Origin::echo();
    // 10/s, a burst of 5, delay 2: 3 pass at once, the next 3 wait for
    // their turn (100, 200, 300 ms), the last 2 are over the burst.
    let gw = gateway(&config(
        origin.addr,
        "rate_limit",
        "rate = \"10/s\"\nburst = 5\ndelay = 2",
    ));
    let answers = at_once(gw.addr(), 8).await;
    let ok: Vec<Duration> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|&(_, at)| at)
        .collect();
    let refused = answers.len() - ok.len();
    assert_eq!((ok.len(), refused), (6, 2), "{answers:?}");
    assert!(
        ok[2] < Duration::from_millis(90),
        "the first 3 waited: {ok:?}"
    );
    assert!(
        ok[5] >= Duration::from_millis(280) && ok[5] < Duration::from_secs(2),
        "the last of the burst did not wait for its turn: {ok:?}"
    );
    // The refused were answered at once, not after the wait.
    let refused_at = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .map(|&(_, at)| at);
    assert!(refused_at
        .into_iter()
        .all(|at| at < Duration::from_millis(90)));
}

#[tokio::test]
async fn a_reload_keeps_an_unchanged_limit_and_restarts_a_changed_one() {
    let origin = Origin::echo();
    let keys = "rate = \"1/m\"\nkey = \"header:x-api-key\"";
    let gw = gateway(&config(origin.addr, "rate_limit", keys));
    let mut client = H1::connect(gw.addr()).await;
    let send = || request("GET", "/", &[("x-api-key", "k")]);
    assert_eq!(within(client.send(send())).await.status, StatusCode::OK);
    // The same definition (another route added): the key is still over.
    let same = format!(
        "{}\n[[routes]]\nname = \"other\"\nmatch = {{ path_prefix = \"/other\" }}\nupstream = \"backend\"\n",
        config(origin.addr, "rate_limit", keys)
    );
    gw.reload_toml("test.toml", &same).expect("reload");
    assert_eq!(
        within(client.send(send())).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A changed rate starts afresh.
    let changed = config(
        origin.addr,
        "rate_limit",
        "rate = \"2/m\"\nkey = \"header:x-api-key\"",
    );
    gw.reload_toml("test.toml", &changed).expect("reload");
    assert_eq!(within(client.send(send())).await.status, StatusCode::OK);
}

#[tokio::test]
async fn refusals_are_counted_and_the_settings_shown() {
    let origin = Origin::echo();
    let gw = gateway_with_admin(
        &config(
            origin.addr,
            "rate_limit",
            "rate = \"600/m\"\nburst = 2\ndelay = 1\nkey = [\"client_ip\", \"consumer\"]\nmax_keys = 1000\nstatus = 503",
        ),
        2,
    );
    // Sent at once: 1 passes, 1 is delayed, the burst's last too, 7 are
    // refused with the configured status.
    let answers = at_once(gw.addr(), 10).await;
    let refused = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(refused, 7, "{answers:?}");
    let admin = gw.admin_addr().unwrap();
    let sample = r#"strait_middleware_refusals_total{middleware="per_client",type="rate_limit",reason="rate_limited"}"#;
    assert_eq!(
        within(metric_becomes(admin, sample, refused as f64, LIMIT)).await,
        refused as f64
    );
    // One key (the loopback client) in a table of 1000 slots.
    let keys = r#"strait_limit_keys{middleware="per_client",type="rate_limit"}"#;
    assert_eq!(within(metric(admin, keys)).await, 1.0);
    let slots = r#"strait_limit_key_slots{middleware="per_client",type="rate_limit"}"#;
    assert_eq!(within(metric(admin, slots)).await, 1000.0);
    let config = within(get(admin, "/config", &[])).await.json();
    assert_eq!(
        config["middlewares"]["per_client"],
        serde_json::json!({
            "type": "rate_limit",
            "rate": "600/m",
            "burst": 2,
            "delay": 1,
            "key": ["client_ip", "consumer"],
            "max_keys": 1000,
            "status": 503,
        })
    );
}

#[tokio::test]
async fn the_table_holds_at_most_max_keys_and_evicts_the_oldest() {
    let origin = Origin::echo();
    let gw = gateway_with_admin(
        &config(
            origin.addr,
            "rate_limit",
            "rate = \"1/m\"\nkey = \"header:x-api-key\"\nmax_keys = 16",
        ),
        2,
    );
    let mut client = H1::connect(gw.addr()).await;
    let mut ok = 0;
    for i in 0..1000 {
        let key = format!("k{i}");
        let r = within(client.send(request("GET", "/", &[("x-api-key", &key)]))).await;
        ok += usize::from(r.status == StatusCode::OK);
    }
    // Each new key passes (a fingerprint shared with one of the 3 others
    // of its set, 3 in 2^20, would not).
    assert!(ok >= 998, "{ok} of 1000 new keys passed");
    let admin = gw.admin_addr().unwrap();
    let keys = r#"strait_limit_keys{middleware="per_client",type="rate_limit"}"#;
    let slots = r#"strait_limit_key_slots{middleware="per_client",type="rate_limit"}"#;
    assert_eq!(within(metric(admin, slots)).await, 16.0);
    let held = within(metric(admin, keys)).await;
    assert!((12.0..=16.0).contains(&held), "{held} keys held");
    // The first key was evicted long ago: it starts again; the last one
    // is still held.
    let again = |key: &'static str| request("GET", "/", &[("x-api-key", key)]);
    assert_eq!(
        within(client.send(again("k0"))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        within(client.send(again("k999"))).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn streams_of_one_http2_connection_each_count() {
    use http_body_util::Full;
    let origin = Origin::echo();
    let gw = gateway(&config(
        origin.addr,
        "rate_limit",
        "rate = \"1/m\"\nburst = 2",
    ));
    let h2 = h2_connect::<Full<bytes::Bytes>>(gw.addr()).await;
    let streams: Vec<_> = (0..5)
        .map(|_| {
            let mut h2 = h2.clone();
            tokio::spawn(async move {
                let req = http::Request::builder()
                    .uri("http://h2.test/")
                    .version(http::Version::HTTP_2)
                    .body(Full::new(bytes::Bytes::new()))
                    .unwrap();
                h2.ready().await.unwrap();
                let resp = h2.send_request(req).await.unwrap();
                (resp.status(), resp.headers().contains_key("ratelimit"))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for s in streams {
        answers.push(within(s).await.unwrap());
    }
    answers.sort();
    assert_eq!(
        answers,
        [
            (StatusCode::OK, false),
            (StatusCode::OK, false),
            (StatusCode::OK, false),
            (StatusCode::TOO_MANY_REQUESTS, true),
            (StatusCode::TOO_MANY_REQUESTS, true),
        ]
    );
}

/// An origin that holds every response until `release` is notified.
fn holding_origin(release: Arc<tokio::sync::Semaphore>) -> Origin {
    Origin::start(Arc::new(move |req| {
        let release = release.clone();
        Box::pin(async move {
            drain(req).await;
            release.acquire().await.unwrap().forget();
            http::Response::new(full("done"))
        })
    }))
}

#[tokio::test]
async fn connection_limit_refuses_past_max_until_one_is_done() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let origin = holding_origin(release.clone());
    let gw = gateway_with_admin(
        &config(
            origin.addr,
            "connection_limit",
            "max = 2\nkey = \"header:x-tenant\"",
        ),
        2,
    );
    let addr = gw.addr();
    let tenant = [("x-tenant", "acme")];
    let held: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = H1::connect(addr).await;
                c.send(request("GET", "/", &tenant)).await.status
            })
        })
        .collect();
    let deadline = Instant::now() + LIMIT;
    while origin.requests() < 2 {
        assert!(Instant::now() < deadline, "the origin never got 2 requests");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Two in flight for acme: a third is refused, another tenant passes
    // the limit (and is held by the origin too).
    let r = within(get(addr, "/", &tenant)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.text(),
        "429 Too Many Requests: too many requests in flight on this route\n"
    );
    let other = tokio::spawn(async move { get(addr, "/", &[("x-tenant", "other")]).await.status });
    while origin.requests() < 3 {
        assert!(Instant::now() < deadline, "the other tenant was refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let admin = gw.admin_addr().unwrap();
    let in_flight = r#"strait_connection_limit_in_flight{middleware="per_client"}"#;
    assert_eq!(within(metric(admin, in_flight)).await, 3.0);
    let keys = r#"strait_limit_keys{middleware="per_client",type="connection_limit"}"#;
    assert_eq!(within(metric(admin, keys)).await, 2.0);
    release.add_permits(3);
    for h in held {
        assert_eq!(within(h).await.unwrap(), StatusCode::OK);
    }
    assert_eq!(within(other).await.unwrap(), StatusCode::OK);
    // Their bodies are done: the counts are back, one more passes.
    release.add_permits(1);
    assert_eq!(within(get(addr, "/", &tenant)).await.status, StatusCode::OK);
    let sample = r#"strait_middleware_refusals_total{middleware="per_client",type="connection_limit",reason="too_many_in_flight"}"#;
    assert_eq!(within(metric_becomes(admin, sample, 1.0, LIMIT)).await, 1.0);
    assert_eq!(
        within(metric_becomes(admin, in_flight, 0.0, LIMIT)).await,
        0.0
    );
}

/// A response body the test feeds (and ends by dropping the sender).
struct Fed(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl http_body::Body for Fed {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}

/// Sends `GET path` on a new connection and reads only the response head:
/// the connection and the status.
async fn head_only(addr: SocketAddr, path: &str) -> (tokio::net::TcpStream, u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the head");
        head.extend_from_slice(&buf[..n]);
    }
    let status = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
    (s, status)
}

#[tokio::test]
async fn connection_limit_counts_a_request_until_its_body_ends_or_is_dropped() {
    type Senders = Arc<std::sync::Mutex<Vec<tokio::sync::mpsc::Sender<bytes::Bytes>>>>;
    let senders: Senders = Arc::default();
    let feeds = senders.clone();
    // Answers at once with a head, and a body the test sends.
    let origin = Origin::start(Arc::new(move |req| {
        let feeds = feeds.clone();
        Box::pin(async move {
            drain(req).await;
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            feeds.lock().unwrap().push(tx);
            http::Response::new(http_body_util::combinators::BoxBody::new(Fed(rx)))
        })
    }));
    let gw = gateway(&config(origin.addr, "connection_limit", "max = 1"));
    let addr = gw.addr();
    let take = |i: usize| senders.lock().unwrap()[i].clone();
    // A: its head arrives, its body does not end: still counted.
    let (a, status) = within(head_only(addr, "/a")).await;
    assert_eq!(status, 200);
    assert_eq!(
        within(get(addr, "/b", &[])).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A's body ends: the count is given back, C passes.
    let feed = take(0);
    feed.send(bytes::Bytes::from_static(b"a")).await.unwrap();
    drop(feed);
    senders.lock().unwrap().remove(0);
    let deadline = Instant::now() + LIMIT;
    let (c, status) = loop {
        let (c, status) = within(head_only(addr, "/c")).await;
        if status == 200 || Instant::now() > deadline {
            break (c, status);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status, 200, "the count outlived A's body");
    drop(a);
    // C's client goes away mid-body: the gateway finds out when it writes
    // to it (the first write after the FIN draws a reset, the next fails),
    // drops the body and gives the count back.
    drop(c);
    let feed = take(0);
    for _ in 0..2 {
        let _ = feed.send(bytes::Bytes::from_static(b"c")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (d, status) = loop {
        let (d, status) = within(head_only(addr, "/d")).await;
        if status == 200 || Instant::now() > deadline {
            break (d, status);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status, 200, "the count outlived C's dropped body");
    // D's body ends, so the shutdown has nothing to drain.
    senders.lock().unwrap().clear();
    drop(d);
}
