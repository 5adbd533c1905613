//! The admin API over real sockets: every endpoint answers with its documented
//! shape, the bearer token is enforced on all of them, a non-loopback admin
//! listener without a token is refused, `POST /reload` publishes a valid file
//! and refuses an invalid one with the precise messages, `/config` redacts
//! secrets, `/config` and `/upstreams` show TLS listeners (certificates with
//! their names and expiry, never keys), upstream protocols and TLS, route
//! upgrades and `[connect]`, and `/metrics` parses as Prometheus text and
//! counts exactly the requests the test made.

mod common;
#[path = "common/origins.rs"]
mod origins;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use prometheus_parse::{LineInfo, Scrape, Value as Sample};
use serde_json::{json, Value};
use strait::{ConfigError, CustomRegistry, Gateway};

const TOKEN: &str = "s3cret-admin-token-0123";

/// A configuration file `NAME.toml`, in a directory that goes with it.
struct ConfigFile {
    path: PathBuf,
    _dir: TempDir,
}

impl ConfigFile {
    fn new(name: &str, text: &str) -> ConfigFile {
        let dir = TempDir::new("admin");
        ConfigFile {
            path: dir.write(&format!("{name}.toml"), text),
            _dir: dir,
        }
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// Starts a gateway from `file` with 2 workers and the admin API on an
/// ephemeral loopback port.
#[track_caller]
fn start(file: &ConfigFile) -> common::TestGateway {
    common::watched(
        Gateway::builder()
            .workers(2)
            .admin_listen(Some("127.0.0.1:0".parse().unwrap()))
            .start_file(&file.path)
            .unwrap_or_else(|e| panic!("gateway did not start: {e}")),
    )
}

fn admin(gw: &Gateway) -> SocketAddr {
    gw.admin_addr().expect("the admin API is on")
}

/// One admin request on a new connection, with `Authorization: Bearer token`
/// when given.
async fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    call_with(addr, method, path, &headers).await
}

async fn call_with(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    H1::connect(addr)
        .await
        .send(request(method, path, headers))
        .await
}

fn content_type(r: &Reply) -> &str {
    r.headers
        .get("content-type")
        .map_or("", |v| v.to_str().unwrap())
}

/// A config with one listener and a catch-all route to `origin`; the file is
/// not watched, so only `POST /reload` reloads it.
fn simple(origin: SocketAddr, admin: &str) -> String {
    format!(
        r#"[server]
watch_config = false

[[listeners]]
name = "main"
address = "127.0.0.1:0"

[upstreams.app]
endpoints = ["{origin}"]

[[routes]]
name = "app"
upstream = "app"
{admin}"#
    )
}

/// A parsed scrape: every sample line was understood by the parser.
struct Metrics {
    text: String,
    scrape: Scrape,
    values: HashMap<String, f64>,
}

impl Metrics {
    fn parse(text: String) -> Metrics {
        for line in text.lines() {
            assert!(
                !matches!(LineInfo::parse(line), LineInfo::Ignored),
                "a line the Prometheus parser does not understand: {line:?}\n{text}"
            );
        }
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"));
        let values = scrape
            .samples
            .iter()
            .filter_map(|s| {
                let v = match s.value {
                    Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => v,
                    _ => return None,
                };
                let labels: Vec<(&str, &str)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                Some((key(&s.metric, &labels), v))
            })
            .collect();
        Metrics {
            text,
            scrape,
            values,
        }
    }

    fn try_get(&self, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.values.get(&key(metric, labels)).copied()
    }

    fn get(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.try_get(metric, labels).unwrap_or_else(|| {
            panic!(
                "no sample {} in the scrape:\n{}",
                key(metric, labels),
                self.text
            )
        })
    }

    /// The cumulative buckets of a histogram, `(le, count)`.
    fn buckets(&self, metric: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let want = key(metric, labels);
        let s = self
            .scrape
            .samples
            .iter()
            .find(|s| {
                let l: Vec<(&str, &str)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                key(&s.metric, &l) == want
            })
            .unwrap_or_else(|| panic!("no histogram {want} in:\n{}", self.text));
        let Sample::Histogram(b) = &s.value else {
            panic!("{want} is not a histogram: {:?}", s.value)
        };
        b.iter().map(|b| (b.less_than, b.count)).collect()
    }
}

/// `name{a="x",b="y"}` with the labels sorted.
fn key(metric: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    l.sort();
    format!("{metric}{{{}}}", l.join(","))
}

async fn scrape(addr: SocketAddr, token: Option<&str>) -> Metrics {
    let r = call(addr, "GET", "/metrics", token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(content_type(&r), "text/plain; version=0.0.4; charset=utf-8");
    Metrics::parse(r.text())
}

/// Scrapes until `done` holds (the workers count a request when its response
/// body has ended, a moment after the client read it) or 5 s pass; returns
/// the last scrape either way, for the assertions to explain.
async fn scrape_until(addr: SocketAddr, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(addr, None).await;
        if done(&m) || Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Milliseconds since the Unix epoch of an admin timestamp
/// (`2024-05-06T07:08:09.010Z`), panicking on any other form: a test then
/// holds the value between two clock readings, which a local time, a wrong
/// epoch or seconds for milliseconds would all miss.
fn unix_ms(t: &str) -> u64 {
    let b = t.as_bytes();
    let shape_ok = b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(
        shape_ok,
        "not an RFC 3339 UTC time with milliseconds: {t:?}"
    );
    let n = |from: usize, to: usize| t[from..to].parse::<i64>().unwrap();
    let (year, month, day) = (n(0, 4), n(5, 7), n(8, 10));
    // Days from 1970-01-01 in the proleptic Gregorian calendar, counting
    // years from March so that the leap day ends a year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let ms = ((days * 24 + n(11, 13)) * 60 + n(14, 16)) * 60_000 + n(17, 19) * 1000 + n(20, 23);
    u64::try_from(ms).unwrap()
}

/// `t` in milliseconds since the Unix epoch, as the admin API rounds it.
fn ms_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn unix_ms_reads_admin_timestamps() {
    assert_eq!(unix_ms("1970-01-01T00:00:00.000Z"), 0);
    assert_eq!(unix_ms("2000-03-01T00:00:00.001Z"), 951_868_800_001);
    assert_eq!(unix_ms("2024-02-29T23:59:59.999Z"), 1_709_251_199_999);
}

#[tokio::test]
async fn every_endpoint_answers_with_its_documented_shape() {
    let origin = Origin::fixed("app", 200, "hello");
    let file = ConfigFile::new("shape", &simple(origin.addr, ""));
    let (before_start, clock_before_start) = (SystemTime::now(), Instant::now());
    let gw = start(&file);
    let after_start = SystemTime::now();
    let addr = admin(&gw);
    assert_eq!(get(gw.addr(), "/x", &[]).await.status, 200);

    // GET /: the HTML page.
    let page = call(addr, "GET", "/", None).await;
    assert_eq!(page.status, 200);
    assert_eq!(content_type(&page), "text/html; charset=utf-8");
    let html = page.text();
    assert!(html.starts_with("<!doctype html>"), "{html}");
    for needle in [
        env!("CARGO_PKG_VERSION"),
        "generation 1",
        "<h3>app</h3>",
        &origin.addr.to_string(),
        &gw.addr().to_string(),
        "href=\"/metrics\"",
    ] {
        assert!(html.contains(needle), "no {needle:?} in the page:\n{html}");
    }
    assert_eq!(
        page.headers.get("cache-control").unwrap(),
        "no-store",
        "admin answers are never cached"
    );

    // GET /status.
    let r = call(addr, "GET", "/status", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(content_type(&r), "application/json");
    let s = r.json();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    let uptime = s["uptime_seconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("{s}"));
    assert!(
        uptime <= clock_before_start.elapsed().as_secs(),
        "uptime {uptime} s, longer than the test has run: {s}"
    );
    for t in ["started_at", "loaded_at"] {
        let v = s[t].as_str().unwrap_or_else(|| panic!("{t}: {s}"));
        let at = unix_ms(v);
        assert!(
            (ms_of(before_start)..=ms_of(after_start)).contains(&at),
            "{t} = {v}, not while the gateway started"
        );
    }
    assert_eq!(s["generation"], 1);
    assert_eq!(s["source"], file.name());
    assert_eq!(s["config_file"], file.name());
    assert_eq!(s["workers"], 2);
    assert_eq!(
        s["listeners"],
        json!([{ "name": "main", "address": gw.addr().to_string(), "configured": "127.0.0.1:0", "tls": false }])
    );
    assert_eq!(
        s["admin"],
        json!({ "address": addr.to_string(), "token_required": false })
    );
    assert_eq!(s["last_reload"], Value::Null);
    assert_eq!(s["reloads"], json!({ "ok": 0, "failed": 0 }));

    // HEAD answers the head only.
    let head = call(addr, "HEAD", "/status", None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // GET /config: the effective configuration, defaults filled in.
    let r = call(addr, "GET", "/config", None).await;
    assert_eq!(r.status, 200);
    let c = r.json();
    assert_eq!(c["generation"], 1);
    assert_eq!(c["server"]["workers"], 2);
    assert_eq!(c["server"]["header_read_timeout"], "30s");
    assert_eq!(c["server"]["drain_timeout"], "30s");
    assert_eq!(c["server"]["max_header_bytes"], 65536);
    assert_eq!(c["server"]["watch_config"], false);
    assert_eq!(c["server"]["access_log"], Value::Null);
    assert_eq!(
        c["listeners"],
        json!([{ "name": "main", "address": "127.0.0.1:0", "tls": null }])
    );
    assert_eq!(
        c["admin"],
        json!({ "enabled": true, "listen": "127.0.0.1:0", "token": null })
    );
    assert_eq!(
        c["upstreams"]["app"],
        json!({
            "endpoints": [{ "address": origin.addr.to_string(), "weight": 1 }],
            "balance": "round_robin",
            "hash": null,
            "connect_timeout": "5s",
            "response_header_timeout": "1m",
            "body_idle_timeout": "1m",
            "idle_timeout": "1m",
            "max_idle_per_endpoint": 64,
            "health_check": null,
            "max_requests": null,
            "max_connections": null,
            "max_pending": null,
            "retry_budget": { "percent": 20, "min_per_second": 3 },
            "connect_failover": true,
            "outlier_detection": null,
            "dns_refresh": "30s",
            "dns_family": "any",
            "protocol": "http1",
            "http2_max_concurrent_streams": null,
            "http2_max_connections": null,
            "tls": null,
        })
    );
    assert_eq!(
        c["routes"],
        json!([{
            "name": "app",
            "match": {},
            "middlewares": [],
            "upstream": "app",
            "timeout": null,
            "retry": null,
            "upgrades": ["websocket"],
            "tunnel_idle_timeout": "5m",
        }])
    );
    assert_eq!(c["middlewares"], json!({}));
    assert_eq!(c["connect"], Value::Null);

    // GET /upstreams, once the request to /x is counted (when its response
    // body has ended, a moment after the client read it) and its connection
    // is back in the pool: then every counter has a known value.
    let endpoint = origin.addr.to_string();
    scrape_until(addr, |m| {
        m.try_get(
            "strait_endpoint_requests_total",
            &[("upstream", "app"), ("endpoint", &endpoint)],
        ) == Some(1.0)
            && m.try_get(
                "strait_endpoint_in_flight",
                &[("upstream", "app"), ("endpoint", &endpoint)],
            ) == Some(0.0)
            && m.try_get("strait_pool_idle_connections", &[("endpoint", &endpoint)]) == Some(1.0)
    })
    .await;
    let r = call(addr, "GET", "/upstreams", None).await;
    assert_eq!(r.status, 200);
    let u = r.json();
    assert_eq!(u["generation"], 1);
    let app = &u["upstreams"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["balance"], "round_robin");
    assert_eq!(app["health_check"], false);
    assert_eq!(app["dns"], json!([]), "no endpoint names");
    assert_eq!(app["protocol"], "http1");
    assert_eq!(app["http2_max_concurrent_streams"], Value::Null);
    assert_eq!(app["http2_max_connections"], Value::Null);
    assert_eq!(app["tls"], Value::Null);
    let ep = &app["endpoints"][0];
    assert_eq!(ep["address"], origin.addr.to_string());
    assert_eq!(ep["weight"], 1);
    assert_eq!(ep["healthy"], true);
    assert_eq!(ep["health_checked"], false);
    assert_eq!(ep["in_flight"], 0, "{ep}");
    assert_eq!(ep["requests"], 1, "{ep}");
    assert_eq!(ep["failures"], 0, "{ep}");
    assert!(ep["last_failure"].is_null(), "{ep}");
    assert_eq!(ep["pool"], json!({ "idle": 1, "active": 0 }), "{ep}");
    assert_eq!(app["totals"]["endpoints"], 1);
    assert_eq!(app["totals"]["healthy"], 1);
    assert_eq!(
        app["responses"],
        json!({ "1xx": 0, "2xx": 1, "3xx": 0, "4xx": 0, "5xx": 0 }),
        "{app}"
    );
    assert_eq!(app["connect_failures"], 0, "{app}");
    assert_eq!(app["timeouts"], 0, "{app}");
    assert_eq!(
        app["connections"],
        json!({ "reused": 0, "new": 1 }),
        "{app}"
    );

    // GET /metrics: classic text by default, OpenMetrics when asked for.
    let m = scrape(addr, None).await;
    assert_eq!(
        m.get(
            "strait_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(m.get("strait_workers", &[]), 2.0);
    assert_eq!(m.get("strait_config_generation", &[]), 1.0);
    let om = call_with(
        addr,
        "GET",
        "/metrics",
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
    )
    .await;
    assert_eq!(om.status, 200);
    assert_eq!(
        content_type(&om),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.text().ends_with("# EOF\n"));

    // POST /reload (the file is unchanged: a new generation all the same).
    let r = call(addr, "POST", "/reload", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "ok": true, "generation": 2 }));
    assert_eq!(gw.generation(), 2);

    // Wrong method: 405 naming the allowed ones; unknown path: 404.
    let r = call(addr, "GET", "/reload", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers.get("allow").unwrap(), "POST");
    assert!(r.json()["error"].as_str().unwrap().contains("use POST"));
    let r = call(addr, "POST", "/status", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers.get("allow").unwrap(), "GET, HEAD");
    let r = call(addr, "GET", "/nope", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(content_type(&r), "application/json");
    assert_eq!(r.json()["error"], "no admin endpoint /nope");
    assert_eq!(
        r.json()["endpoints"],
        json!([
            "/",
            "/status",
            "/config",
            "/upstreams",
            "/metrics",
            "/reload"
        ])
    );
}

#[tokio::test]
async fn the_token_is_required_on_every_endpoint() {
    let origin = Origin::fixed("app", 200, "hello");
    let file = ConfigFile::new(
        "token",
        &simple(origin.addr, &format!("\n[admin]\ntoken = \"{TOKEN}\"\n")),
    );
    let gw = start(&file);
    let addr = admin(&gw);
    let mut almost = TOKEN.to_string();
    almost.pop();
    almost.push('4');
    let basic = format!("Basic {TOKEN}");
    let endpoints = [
        ("GET", "/", 200),
        ("GET", "/status", 200),
        ("GET", "/config", 200),
        ("GET", "/upstreams", 200),
        ("GET", "/metrics", 200),
        ("POST", "/reload", 200),
        ("GET", "/reload", 405),
        ("GET", "/nope", 404),
    ];
    for (method, path, ok) in endpoints {
        // Missing.
        let r = call(addr, method, path, None).await;
        assert_eq!(r.status, 401, "{method} {path} without a token");
        assert_eq!(
            r.headers.get("www-authenticate").unwrap(),
            r#"Bearer realm="strait-admin""#
        );
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("missing bearer token"),
            "{}",
            r.text()
        );
        // Wrong: another token, one character off, a prefix, another scheme.
        for wrong in ["wrong-token-wrong-token", &almost, &TOKEN[..10]] {
            let r = call(addr, method, path, Some(wrong)).await;
            assert_eq!(r.status, 401, "{method} {path} with token {wrong:?}");
            assert_eq!(
                r.headers.get("www-authenticate").unwrap(),
                r#"Bearer realm="strait-admin", error="invalid_token""#
            );
            assert_eq!(r.json()["error"], "invalid bearer token");
        }
        let r = call_with(addr, method, path, &[("authorization", &basic)]).await;
        assert_eq!(r.status, 401, "{method} {path} with Basic");
        // Right (the scheme is case-insensitive).
        let r = call(addr, method, path, Some(TOKEN)).await;
        assert_eq!(r.status, ok, "{method} {path} with the token: {}", r.text());
        let lower = format!("bearer {TOKEN}");
        let r = call_with(addr, method, path, &[("authorization", &lower)]).await;
        assert_eq!(r.status, ok, "{method} {path} with `bearer`");
    }

    // The token is never shown.
    let config = call(addr, "GET", "/config", Some(TOKEN)).await;
    assert_eq!(config.json()["admin"]["token"], "[redacted]");
    let status = call(addr, "GET", "/status", Some(TOKEN)).await;
    assert_eq!(status.json()["admin"]["token_required"], true);
    for r in [&config, &status] {
        assert!(!r.text().contains(TOKEN), "{}", r.text());
    }
    // Unauthorized requests reloaded nothing: 2 reloads per authorized POST.
    assert_eq!(gw.generation(), 3);
}

const EXPOSED: &str = r#"[[listeners]]
address = "127.0.0.1:0"

[upstreams.a]
endpoints = ["127.0.0.1:9"]

[[routes]]
upstream = "a"

[admin]
listen = "0.0.0.0:9901"
"#;

#[test]
fn a_non_loopback_admin_listener_without_a_token_is_refused() {
    let message = "admin.listen = \"0.0.0.0:9901\" is not a loopback address and admin.token is not set: anyone who can reach it could reload the configuration; set admin.token, or listen on 127.0.0.1";
    let errors = strait::check("admin.toml", EXPOSED, &CustomRegistry::default())
        .err()
        .expect("refused");
    assert_eq!(
        errors.0,
        [ConfigError {
            file: "admin.toml".into(),
            line: 11,
            column: 10,
            message: message.into(),
        }]
    );
    let e = Gateway::builder()
        .workers(1)
        .start_toml("admin.toml", EXPOSED)
        .err()
        .expect("the gateway must not start");
    assert_eq!(
        e.to_string(),
        format!("invalid configuration:\nadmin.toml:11:10: {message}")
    );

    // IPv6 "any" too.
    let v6 = EXPOSED.replace("0.0.0.0:9901", "[::]:9901");
    let errors = strait::check("admin.toml", &v6, &CustomRegistry::default())
        .err()
        .expect("refused");
    assert!(
        errors.0[0]
            .message
            .starts_with("admin.listen = \"[::]:9901\" is not a loopback address"),
        "{errors}"
    );

    // An address given to the builder is held to the same rule.
    let loopback = EXPOSED.replace("0.0.0.0:9901", "127.0.0.1:0");
    let e = Gateway::builder()
        .workers(1)
        .admin_listen(Some("0.0.0.0:0".parse().unwrap()))
        .start_toml("admin.toml", &loopback)
        .err()
        .expect("the gateway must not start");
    assert_eq!(
        e.to_string(),
        "invalid configuration:\nadmin.toml: admin.listen = \"0.0.0.0:0\" is not a loopback address and admin.token is not set: anyone who can reach it could reload the configuration; set admin.token, or listen on 127.0.0.1"
    );

    // With a token it is accepted; a short token is not.
    let with_token = format!("{EXPOSED}token = \"{TOKEN}\"\n");
    assert!(strait::check("admin.toml", &with_token, &CustomRegistry::default()).is_ok());
    let short = format!("{EXPOSED}token = \"short\"\n");
    let errors = strait::check("admin.toml", &short, &CustomRegistry::default())
        .err()
        .expect("refused");
    assert_eq!(
        errors.0,
        [ConfigError {
            file: "admin.toml".into(),
            line: 12,
            column: 9,
            message: "admin.token is too short: expected at least 16 characters".into(),
        }]
    );
}

fn routed(origin: SocketAddr, prefix: &str) -> String {
    format!(
        "[server]\nwatch_config = false\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
         [upstreams.a]\nendpoints = [\"{origin}\"]\n\n\
         [[routes]]\nname = \"r\"\nmatch = {{ path_prefix = \"{prefix}\" }}\nupstream = \"a\"\n"
    )
}

#[tokio::test]
async fn post_reload_publishes_a_valid_file_and_refuses_an_invalid_one() {
    let origin = Origin::fixed("a", 200, "a");
    let file = ConfigFile::new("reload", &routed(origin.addr, "/old"));
    let gw = start(&file);
    let addr = admin(&gw);
    assert_eq!(get(gw.addr(), "/old/x", &[]).await.status, 200);

    // A valid edit: published, the routes change.
    file.write(&routed(origin.addr, "/new"));
    let r = call(addr, "POST", "/reload", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "ok": true, "generation": 2 }));
    assert_eq!(get(gw.addr(), "/new/x", &[]).await.status, 200);
    assert_eq!(get(gw.addr(), "/old/x", &[]).await.status, 404);

    // An invalid edit: 422 with the `strait check` messages; nothing changes.
    let broken =
        routed(origin.addr, "/newer").replace("upstream = \"a\"", "upstream = \"nowhere\"");
    file.write(&broken);
    let r = call(addr, "POST", "/reload", None).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.json();
    let line = format!(
        "{}:13:12: route \"r\": unknown upstream \"nowhere\": expected one of [\"a\"]",
        file.name()
    );
    assert_eq!(body["ok"], false);
    assert_eq!(body["kind"], "config");
    assert_eq!(body["error"], format!("invalid configuration:\n{line}"));
    assert_eq!(
        body["errors"],
        json!([{
            "file": file.name(),
            "line": 13,
            "column": 12,
            "message": "route \"r\": unknown upstream \"nowhere\": expected one of [\"a\"]",
            "text": line,
        }])
    );
    assert_eq!(
        get(gw.addr(), "/new/x", &[]).await.status,
        200,
        "old config serves"
    );
    assert_eq!(get(gw.addr(), "/newer/x", &[]).await.status, 404);
    assert_eq!(gw.generation(), 2);

    // The same error in /status and in the metrics.
    let s = call(addr, "GET", "/status", None).await.json();
    assert_eq!(s["generation"], 2);
    assert_eq!(s["reloads"], json!({ "ok": 1, "failed": 1 }));
    let last = &s["last_reload"];
    assert_eq!(last["ok"], false);
    assert_eq!(last["trigger"], "admin");
    assert_eq!(last["error"], format!("invalid configuration:\n{line}"));
    assert!(last.get("generation").is_none(), "{last}");
    let m = scrape(addr, None).await;
    assert_eq!(m.get("strait_reloads_total", &[("result", "failed")]), 1.0);
    assert_eq!(m.get("strait_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(m.get("strait_config_generation", &[]), 2.0);

    // A TOML syntax error: the parser's position.
    file.write("[[routes]\nupstream = \"a\"\n");
    let r = call(addr, "POST", "/reload", None).await;
    assert_eq!(r.status, 422);
    let e = &r.json()["errors"][0];
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(1), Some(9)),
        "{e}"
    );

    // An unreadable file: 500, kind "read".
    std::fs::remove_file(&file.path).unwrap();
    let r = call(addr, "POST", "/reload", None).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["kind"], "read");
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .starts_with(&format!("cannot read configuration file {:?}", file.name())));
    assert_eq!(get(gw.addr(), "/new/x", &[]).await.status, 200);
    let m = scrape(addr, None).await;
    assert_eq!(m.get("strait_reloads_total", &[("result", "failed")]), 3.0);

    // A gateway started from text has no file to read: 409.
    let from_text = Gateway::builder()
        .workers(1)
        .admin_listen(Some("127.0.0.1:0".parse().unwrap()))
        .start_toml("text.toml", &routed(origin.addr, "/"))
        .unwrap();
    let r = call(admin(&from_text), "POST", "/reload", None).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["kind"], "no_file");
    assert_eq!(
        r.json()["error"],
        "the gateway was not started from a configuration file: nothing to reload"
    );
}

#[tokio::test]
async fn config_shows_the_effective_settings_and_redacts_secrets() {
    let origin = Origin::fixed("a", 200, "a");
    let text = format!(
        r#"[server]
watch_config = false
trusted_proxies = ["10.0.0.0/8"]
access_log = "log"

[[listeners]]
address = "127.0.0.1:0"

[admin]
token = "{TOKEN}"

[upstreams.a]
endpoints = [{{ address = "{origin}", weight = 3 }}]
connect_timeout = "1500ms"

[upstreams.a.health_check]
type = "tcp"
interval = "1h"
timeout = "1m30s"

[middlewares.auth]
type = "headers"
request_set = {{ authorization = "Bearer upstream-secret-1", "x-api-key" = "key-secret-2", "x-env" = "prod" }}
response_set = {{ "set-cookie" = "sid=secret-3" }}
request_remove = ["x-debug"]

[middlewares.log]
type = "access_log"
format = "json"
output = "stderr"

[middlewares.v2]
type = "rewrite"
path = "/v2/{{id}}"

[[routes]]
name = "users"
match = {{ host = "api.example.com", path_pattern = "/users/{{id}}", methods = ["get", "POST"], headers = [{{ name = "x-api-key", value = "match-secret-4" }}, {{ name = "x-canary" }}] }}
middlewares = ["auth", "v2", "request_id"]
upstream = "a"
"#,
        origin = origin.addr
    );
    let file = ConfigFile::new("redact", &text);
    let gw = start(&file);
    let r = call(admin(&gw), "GET", "/config", Some(TOKEN)).await;
    assert_eq!(r.status, 200);
    let body = r.text();
    for secret in [
        TOKEN,
        "upstream-secret-1",
        "key-secret-2",
        "sid=secret-3",
        "match-secret-4",
    ] {
        assert!(!body.contains(secret), "{secret} shown in:\n{body}");
    }
    let c = r.json();
    assert_eq!(c["admin"]["token"], "[redacted]");
    assert_eq!(c["server"]["trusted_proxies"], json!(["10.0.0.0/8"]));
    assert_eq!(
        c["server"]["access_log"],
        json!({ "type": "access_log", "format": "json", "output": "stderr" })
    );
    let a = &c["upstreams"]["a"];
    assert_eq!(a["balance"], "weighted", "unequal weights imply weighted");
    assert_eq!(a["endpoints"][0]["weight"], 3);
    assert_eq!(a["connect_timeout"], "1500ms");
    assert_eq!(
        a["health_check"],
        json!({
            "type": "tcp",
            "interval": "1h",
            "timeout": "1m30s",
            "healthy_threshold": 2,
            "unhealthy_threshold": 3,
            "fail_open": false,
        })
    );
    assert_eq!(
        c["middlewares"],
        json!({
            "auth": {
                "type": "headers",
                "request_set": { "authorization": "[redacted]", "x-api-key": "[redacted]", "x-env": "prod" },
                "request_append": {},
                "request_remove": ["x-debug"],
                "response_set": { "set-cookie": "[redacted]" },
                "response_append": {},
                "response_remove": [],
            },
            "v2": { "type": "rewrite", "path": "/v2/{id}" },
            "request_id": {
                "type": "request_id",
                "header": "x-request-id",
                "response": true,
                "trust_incoming": true,
            },
        })
    );
    assert_eq!(
        c["routes"],
        json!([{
            "name": "users",
            "match": {
                "host": "api.example.com",
                "path_pattern": "/users/{id}",
                "methods": ["GET", "POST"],
                "headers": [{ "name": "x-api-key", "value": "[redacted]" }, { "name": "x-canary" }],
            },
            "middlewares": ["auth", "v2", "request_id"],
            "upstream": "a",
            "timeout": null,
            "retry": null,
            "upgrades": ["websocket"],
            "tunnel_idle_timeout": "5m",
        }])
    );
}

#[tokio::test]
async fn config_and_upstreams_show_tls_http2_and_tunnels() {
    let ca = origins::TestCa::new("admin test CA");
    let pem = TempDir::new("admin-tls");
    let ca_file = pem.write("ca.pem", &ca.cert_pem).display().to_string();
    let files = |leaf: &origins::Leaf, name| {
        let f = leaf.write(&pem, name);
        (f.cert.display().to_string(), f.key.display().to_string())
    };
    let api = ca.server(&["api.example.com", "*.api.example.com"]);
    let (api_cert, api_key) = files(&api, "api");
    let www = ca.server(&["www.example.com", "example.com"]);
    let (www_cert, www_key) = files(&www, "www");
    let client = ca.leaf(&["proxy.internal"], false, true);
    let (client_cert, client_key) = files(&client, "client");
    let text = format!(
        r#"[server]
watch_config = false

[[listeners]]
name = "public"
address = "127.0.0.1:0"

[listeners.tls]
min_version = "1.3"
alpn = ["http/1.1"]
handshake_timeout = "2500ms"
client_ca = "{ca_file}"
client_auth = "optional"

[[listeners.tls.certificates]]
cert = "{api_cert}"
key = "{api_key}"

[[listeners.tls.certificates]]
cert = "{www_cert}"
key = "{www_key}"
names = ["www.example.com"]
default = true

[[listeners]]
name = "plain"
address = "127.0.0.2:0"

[connect]
allow = ["DB.internal:5432", "10.1.2.3/8:443", "127.0.0.1:6379", "[::1]:22", "[fd00::/8]:443"]
idle_timeout = "90s"

[upstreams.grpc]
endpoints = ["127.0.0.1:50051", "127.0.0.2:50051"]
protocol = "h2"
http2_max_concurrent_streams = 50
http2_max_connections = 2

[upstreams.grpc.tls]
ca_file = "{ca_file}"
client_cert = "{client_cert}"
client_key = "{client_key}"

[upstreams.web]
endpoints = ["127.0.0.1:8443"]
protocol = "auto"

[upstreams.web.tls]
server_name = "web.internal"
insecure_skip_verify = true

[upstreams.h2c]
endpoints = ["127.0.0.1:9000"]
protocol = "h2c"

[middlewares.to_https]
type = "https_redirect"
port = 8443
status = 308

[[routes]]
name = "ws"
match = {{ path_prefix = "/ws" }}
middlewares = ["to_https"]
upstream = "web"
upgrades = ["WebSocket", "chat/2"]
tunnel_idle_timeout = "90s"

[[routes]]
name = "grpc"
upstream = "grpc"
upgrades = []
"#
    );
    let file = ConfigFile::new("tls", &text);
    let gw = start(&file);
    let addr = admin(&gw);
    let r = call(addr, "GET", "/config", None).await;
    assert_eq!(r.status, 200);
    let body = r.text();
    for secret in [&api.key_pem, &www.key_pem, &client.key_pem] {
        let line = secret.lines().nth(1).unwrap();
        assert!(!body.contains(line), "key material shown in:\n{body}");
    }
    let c = r.json();
    // rcgen's default validity ends on 4096-01-01.
    let not_after = "4096-01-01T00:00:00.000Z";
    assert_eq!(
        c["listeners"],
        json!([
            {
                "name": "public",
                "address": "127.0.0.1:0",
                "tls": {
                    "min_version": "1.3",
                    "alpn": ["http/1.1"],
                    "handshake_timeout": "2500ms",
                    "client_auth": "optional",
                    "client_ca": ca_file,
                    "certificates": [
                        {
                            "cert": api_cert,
                            "names": ["api.example.com", "*.api.example.com"],
                            "default": false,
                            "not_after": not_after,
                        },
                        {
                            "cert": www_cert,
                            "names": ["www.example.com"],
                            "default": true,
                            "not_after": not_after,
                        },
                    ],
                },
            },
            { "name": "plain", "address": "127.0.0.2:0", "tls": null },
        ])
    );
    let transport = |u: &Value| {
        json!({
            "protocol": u["protocol"],
            "http2_max_concurrent_streams": u["http2_max_concurrent_streams"],
            "http2_max_connections": u["http2_max_connections"],
            "tls": u["tls"],
        })
    };
    let grpc = json!({
        "protocol": "h2",
        "http2_max_concurrent_streams": 50,
        "http2_max_connections": 2,
        "tls": {
            "ca": ca_file,
            "server_name": null,
            "server_names": ["127.0.0.1", "127.0.0.2"],
            "client_certificate": client_cert,
            "insecure_skip_verify": false,
        },
    });
    let web = json!({
        "protocol": "auto",
        "http2_max_concurrent_streams": 100,
        "http2_max_connections": 4,
        "tls": {
            "ca": "webpki-roots",
            "server_name": "web.internal",
            "server_names": ["web.internal"],
            "client_certificate": null,
            "insecure_skip_verify": true,
        },
    });
    let h2c = json!({
        "protocol": "h2c",
        "http2_max_concurrent_streams": 100,
        "http2_max_connections": 4,
        "tls": null,
    });
    assert_eq!(transport(&c["upstreams"]["grpc"]), grpc);
    assert_eq!(transport(&c["upstreams"]["web"]), web);
    assert_eq!(transport(&c["upstreams"]["h2c"]), h2c);
    assert_eq!(
        c["connect"],
        json!({
            "allow": ["db.internal:5432", "10.0.0.0/8:443", "127.0.0.1:6379", "[::1]:22", "[fd00::/8]:443"],
            "connect_timeout": "5s",
            "idle_timeout": "1m30s",
        })
    );
    assert_eq!(
        c["middlewares"],
        json!({ "to_https": { "type": "https_redirect", "port": 8443, "status": 308 } })
    );
    let routes: Vec<Value> = c["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["name"], r["upgrades"], r["tunnel_idle_timeout"]]))
        .collect();
    assert_eq!(
        routes,
        vec![
            json!(["ws", ["websocket", "chat/2"], "1m30s"]),
            json!(["grpc", [], "5m"])
        ]
    );

    // GET /status: which listeners terminate TLS.
    let s = call(addr, "GET", "/status", None).await.json();
    let tls: Vec<(&str, bool)> = s["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l["tls"].as_bool().unwrap()))
        .collect();
    assert_eq!(tls, [("public", true), ("plain", false)]);

    // GET /upstreams: the same transport per upstream.
    let u = call(addr, "GET", "/upstreams", None).await.json();
    let by_name = |name: &str| {
        u["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("no upstream {name}: {u}"))
            .clone()
    };
    assert_eq!(transport(&by_name("grpc")), grpc);
    assert_eq!(transport(&by_name("web")), web);
    assert_eq!(transport(&by_name("h2c")), h2c);
}

/// Depends on the data plane counting into its shards (route, upstream,
/// endpoint and client-connection counters); the exposition itself is
/// unit-tested in `src/control/admin/metrics/tests.rs`.
#[tokio::test]
async fn metrics_parse_and_count_the_requests_made() {
    let origin = Origin::fixed("a", 200, "hello");
    let dead = dead_addr();
    let text = format!(
        r#"[server]
watch_config = false

[[listeners]]
address = "127.0.0.1:0"

[upstreams.a]
endpoints = ["{a}"]

[upstreams.dead]
endpoints = ["{dead}"]
connect_timeout = "1s"

[[routes]]
name = "a"
match = {{ path_prefix = "/a" }}
upstream = "a"

[[routes]]
name = "dead"
match = {{ path_prefix = "/dead" }}
upstream = "dead"
"#,
        a = origin.addr
    );
    let file = ConfigFile::new("metrics", &text);
    let before_start = Instant::now();
    let gw = start(&file);
    let after_start = Instant::now();
    let addr = admin(&gw);
    let (a, d) = (origin.addr.to_string(), dead.to_string());

    // Before any request: every series is there, at zero.
    let m = scrape(addr, None).await;
    assert_eq!(
        m.get(
            "strait_route_responses_total",
            &[("route", "a"), ("class", "2xx")]
        ),
        0.0
    );
    assert_eq!(
        m.get(
            "strait_endpoint_healthy",
            &[("upstream", "dead"), ("endpoint", &d)]
        ),
        1.0
    );
    assert_eq!(
        m.get("strait_pool_idle_connections", &[("endpoint", &a)]),
        0.0
    );

    // 7 requests to route a over one keep-alive connection (3 with a 100-byte
    // body), 3 to route dead (connection refused: 502) over another.
    let mut client_a = H1::connect(gw.addr()).await;
    let mut sent_a = 0;
    for i in 0..7 {
        let r = if i % 2 == 1 {
            client_a.send(post("/a/x", vec![b'x'; 100])).await
        } else {
            client_a.get("/a/x").await
        };
        assert_eq!(r.status, 200);
        sent_a += r.body.len();
    }
    let mut client_d = H1::connect(gw.addr()).await;
    let mut sent_d = 0;
    let before_failures = SystemTime::now();
    for _ in 0..3 {
        let r = client_d.get("/dead/x").await;
        assert_eq!(r.status, 502);
        sent_d += r.body.len();
    }
    assert_eq!(sent_a, 35);

    let route = |name| [("route", name)];
    let m = scrape_until(addr, |m| {
        m.try_get(
            "strait_route_responses_total",
            &[("route", "a"), ("class", "2xx")],
        ) == Some(7.0)
            && m.try_get(
                "strait_route_responses_total",
                &[("route", "dead"), ("class", "5xx")],
            ) == Some(3.0)
            && m.try_get(
                "strait_endpoint_in_flight",
                &[("upstream", "a"), ("endpoint", &a)],
            ) == Some(0.0)
    })
    .await;
    // Once the failures are counted, their time is set too.
    let after_failures = SystemTime::now();
    let responses = |r: &str, class: &str| {
        m.get(
            "strait_route_responses_total",
            &[("route", r), ("class", class)],
        )
    };
    assert_eq!(responses("a", "2xx"), 7.0);
    assert_eq!(responses("a", "5xx"), 0.0);
    assert_eq!(responses("dead", "5xx"), 3.0);
    assert_eq!(responses("dead", "2xx"), 0.0);
    assert_eq!(
        m.get("strait_route_received_bytes_total", &route("a")),
        300.0
    );
    assert_eq!(
        m.get("strait_route_received_bytes_total", &route("dead")),
        0.0
    );
    assert_eq!(
        m.get("strait_route_sent_bytes_total", &route("a")),
        sent_a as f64
    );
    assert_eq!(
        m.get("strait_route_sent_bytes_total", &route("dead")),
        sent_d as f64
    );
    assert_eq!(
        m.get("strait_route_request_duration_seconds_count", &route("a")),
        7.0
    );
    assert_eq!(
        m.get(
            "strait_route_request_duration_seconds_count",
            &route("dead")
        ),
        3.0
    );
    let buckets = m.buckets("strait_route_request_duration_seconds", &route("a"));
    assert_eq!(buckets.len(), 15);
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, 7.0)));
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");

    let up = |name| [("upstream", name)];
    let up_class = |u: &str, class: &str| {
        m.get(
            "strait_upstream_responses_total",
            &[("upstream", u), ("class", class)],
        )
    };
    assert_eq!(up_class("a", "2xx"), 7.0);
    assert_eq!(up_class("dead", "5xx"), 3.0);
    assert_eq!(
        m.get("strait_upstream_response_duration_seconds_count", &up("a")),
        7.0
    );
    assert_eq!(
        m.get(
            "strait_upstream_response_duration_seconds_count",
            &up("dead")
        ),
        0.0
    );
    assert_eq!(
        m.get("strait_upstream_connect_failures_total", &up("dead")),
        3.0
    );
    assert_eq!(
        m.get("strait_upstream_connect_failures_total", &up("a")),
        0.0
    );
    assert_eq!(m.get("strait_upstream_timeouts_total", &up("a")), 0.0);
    // One client connection is served by one worker, whose pool opened one
    // upstream connection and reused it.
    let opened = origin.connections() as f64;
    assert_eq!(opened, 1.0);
    let conns = |reused| {
        m.get(
            "strait_upstream_connections_total",
            &[("upstream", "a"), ("reused", reused)],
        )
    };
    assert_eq!(conns("false"), opened);
    assert_eq!(conns("true"), 7.0 - opened);

    let get_ep =
        |metric: &str, u: &str, e: &str| m.get(metric, &[("upstream", u), ("endpoint", e)]);
    assert_eq!(get_ep("strait_endpoint_requests_total", "a", &a), 7.0);
    assert_eq!(get_ep("strait_endpoint_failures_total", "a", &a), 0.0);
    assert_eq!(get_ep("strait_endpoint_requests_total", "dead", &d), 3.0);
    assert_eq!(get_ep("strait_endpoint_failures_total", "dead", &d), 3.0);
    assert_eq!(get_ep("strait_endpoint_in_flight", "a", &a), 0.0);
    assert_eq!(get_ep("strait_endpoint_in_flight", "dead", &d), 0.0);
    assert_eq!(get_ep("strait_endpoint_healthy", "a", &a), 1.0);
    assert_eq!(
        m.get("strait_pool_idle_connections", &[("endpoint", &a)]),
        opened
    );
    assert_eq!(
        m.get("strait_pool_active_connections", &[("endpoint", &a)]),
        0.0
    );
    assert_eq!(
        m.get("strait_pool_idle_connections", &[("endpoint", &d)]),
        0.0
    );

    // The admin API's own connections are not client connections.
    assert_eq!(m.get("strait_client_connections_total", &[]), 2.0);
    assert_eq!(m.get("strait_client_connections_active", &[]), 2.0);
    assert_eq!(m.get("strait_reloads_total", &[("result", "ok")]), 0.0);
    assert_eq!(m.get("strait_reloads_total", &[("result", "failed")]), 0.0);
    assert_eq!(m.get("strait_config_generation", &[]), 1.0);
    assert_eq!(m.get("strait_workers", &[]), 2.0);
    // Uptime counts from the start in seconds, in /status too (whole ones,
    // on the same clock), and moves between two scrapes (fractional).
    let earliest = after_start.elapsed().as_secs_f64();
    let first = scrape(addr, None).await.get("strait_uptime_seconds", &[]);
    let status = call(addr, "GET", "/status", None).await.json()["uptime_seconds"]
        .as_u64()
        .expect("uptime_seconds");
    let second = scrape(addr, None).await.get("strait_uptime_seconds", &[]);
    let latest = before_start.elapsed().as_secs_f64();
    assert!(
        earliest <= first && first < second && second <= latest,
        "uptime {first} s then {second} s; the gateway has run between {earliest} s and {latest} s"
    );
    assert!(
        first.floor() as u64 <= status && status <= second.floor() as u64,
        "/status says {status} s between scrapes saying {first} s and {second} s"
    );

    // /upstreams tells the same.
    let u = call(addr, "GET", "/upstreams", None).await.json();
    let (ua, ud) = (&u["upstreams"][0], &u["upstreams"][1]);
    assert_eq!(ua["endpoints"][0]["requests"], 7);
    assert_eq!(
        ua["endpoints"][0]["pool"],
        json!({ "idle": 1, "active": 0 })
    );
    assert_eq!(ua["responses"]["2xx"], 7);
    assert_eq!(ua["connections"], json!({ "reused": 6, "new": 1 }));
    assert_eq!(ud["endpoints"][0]["failures"], 3);
    let last_failure = ud["endpoints"][0]["last_failure"]
        .as_str()
        .unwrap_or_else(|| panic!("{ud}"));
    assert!(
        (ms_of(before_failures)..=ms_of(after_failures)).contains(&unix_ms(last_failure)),
        "last_failure {last_failure}, not while the failing requests ran"
    );
    assert_eq!(ud["connect_failures"], 3);
    assert_eq!(ud["totals"]["failures"], 3);

    // Closed client connections leave the gauge.
    drop(client_a);
    drop(client_d);
    let m = scrape_until(addr, |m| {
        m.try_get("strait_client_connections_active", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(m.get("strait_client_connections_active", &[]), 0.0);
    assert_eq!(m.get("strait_client_connections_total", &[]), 2.0);
}
