//! The middleware chain over real sockets: request ids, header edits, path
//! rewrites, the onion order of the chain, a custom middleware that answers by
//! itself, and the access log in both formats (read back from a file after
//! `shutdown` flushed it).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::Full;
use strait::{Custom, Flow, PhaseFuture, ProxyBody, RequestContext, UpstreamRequest};

const LIMIT: Duration = Duration::from_secs(5);

async fn send(client: &mut H1, req: Request<Full<Bytes>>) -> Reply {
    tokio::time::timeout(LIMIT, client.send(req))
        .await
        .expect("request timed out")
}

/// A gateway with `definitions` (TOML `[middlewares.*]` tables) and one
/// catch-all route through `chain` to `origin`.
fn chain_config(origin: SocketAddr, definitions: &str, chain: &str) -> String {
    format!("{definitions}\n{}", simple_config(&[origin], chain))
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------- request_id

#[tokio::test]
async fn request_id_is_generated_and_sent_both_ways() {
    let origin = Origin::echo();
    let gw = gateway(&simple_config(&[origin.addr], r#""request_id""#));
    let mut client = H1::connect(gw.addr()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = send(&mut client, request("GET", "/", &[])).await;
        let id = r.headers["x-request-id"].to_str().unwrap().to_string();
        assert!(is_generated_id(&id), "{id:?}");
        assert_eq!(r.seen("x-request-id"), [id.as_str()]);
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "ids repeat: {ids:?}");
}

#[tokio::test]
async fn well_formed_incoming_request_id_is_kept_and_others_replaced() {
    let origin = Origin::echo();
    let gw = gateway(&simple_config(&[origin.addr], r#""request_id""#));
    let mut client = H1::connect(gw.addr()).await;

    let r = send(
        &mut client,
        request("GET", "/", &[("x-request-id", "abc-123")]),
    )
    .await;
    assert_eq!(r.seen("x-request-id"), ["abc-123"]);
    assert_eq!(r.headers["x-request-id"], "abc-123");

    let long = "a".repeat(129);
    for bad in ["has space", "quote\"d", long.as_str()] {
        let r = send(&mut client, request("GET", "/", &[("x-request-id", bad)])).await;
        let id = r.headers["x-request-id"].to_str().unwrap();
        assert!(is_generated_id(id), "{bad:?} was replaced by {id:?}");
        // Replaced, not added beside the client's value.
        assert_eq!(r.seen("x-request-id"), [id]);
    }
}

#[tokio::test]
async fn repeated_incoming_request_id_reaches_the_origin_once() {
    let origin = Origin::echo();
    let gw = gateway(&simple_config(&[origin.addr], r#""request_id""#));
    let r = get(
        gw.addr(),
        "/",
        &[("x-request-id", "abc-123"), ("x-request-id", "def-456")],
    )
    .await;
    // The origin, the client and the log must agree on one id.
    assert_eq!(r.headers["x-request-id"], "abc-123");
    assert_eq!(r.seen("x-request-id"), ["abc-123"]);
}

#[tokio::test]
async fn untrusted_incoming_request_id_is_replaced() {
    let origin = Origin::echo();
    let gw = gateway(&chain_config(
        origin.addr,
        "[middlewares.rid]\ntype = \"request_id\"\ntrust_incoming = false\n",
        r#""rid""#,
    ));
    let r = get(gw.addr(), "/", &[("x-request-id", "abc-123")]).await;
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert!(is_generated_id(id), "{id:?}");
    assert_eq!(r.seen("x-request-id"), [id]);
}

#[tokio::test]
async fn request_id_in_a_custom_header_and_without_echo() {
    let origin = Origin::echo();
    let gw = gateway(&format!(
        r#"
[middlewares.trace]
type = "request_id"
header = "x-trace"

[middlewares.quiet]
type = "request_id"
response = false

[upstreams.backend]
endpoints = ["{origin}"]

[[listeners]]
address = "127.0.0.1:0"

[[routes]]
match = {{ path_prefix = "/trace" }}
middlewares = ["trace"]
upstream = "backend"

[[routes]]
match = {{ path_prefix = "/quiet" }}
middlewares = ["quiet"]
upstream = "backend"
"#,
        origin = origin.addr
    ));
    let mut client = H1::connect(gw.addr()).await;

    let r = send(&mut client, request("GET", "/trace", &[("x-trace", "t-1")])).await;
    assert_eq!(r.seen("x-trace"), ["t-1"]);
    assert_eq!(r.headers["x-trace"], "t-1");
    let r = send(&mut client, request("GET", "/trace", &[])).await;
    let id = r.headers["x-trace"].to_str().unwrap();
    assert!(is_generated_id(id), "{id:?}");
    assert_eq!(r.seen("x-trace"), [id]);
    assert!(r.seen("x-request-id").is_empty());
    assert!(r.headers.get("x-request-id").is_none());

    let r = send(&mut client, request("GET", "/quiet", &[])).await;
    assert!(is_generated_id(&r.seen("x-request-id")[0]));
    assert!(r.headers.get("x-request-id").is_none());
}

// ---------------------------------------------------------------- headers

const HEADER_EDITS: &str = r#"
[middlewares.edit]
type = "headers"
request_set = { "x-env" = "prod" }
request_append = { "x-tag" = "gw" }
request_remove = ["x-drop", "authorization"]
response_set = { "x-served-by" = "strait" }
response_append = { "x-resp-tag" = "gw" }
response_remove = ["x-origin-secret", "server"]
"#;

#[tokio::test]
async fn headers_middleware_edits_the_request() {
    let origin = Origin::echo();
    let gw = gateway(&chain_config(origin.addr, HEADER_EDITS, r#""edit""#));
    let r = get(
        gw.addr(),
        "/",
        &[
            ("x-env", "dev"),
            ("x-env", "staging"),
            ("x-tag", "client"),
            ("x-drop", "1"),
            ("authorization", "Bearer secret"),
            ("x-untouched", "1"),
        ],
    )
    .await;
    assert_eq!(r.seen("x-env"), ["prod"], "set replaces every value");
    assert_eq!(
        r.seen("x-tag"),
        ["client", "gw"],
        "append keeps the client's"
    );
    assert!(r.seen("x-drop").is_empty());
    assert!(r.seen("authorization").is_empty());
    assert_eq!(r.seen("x-untouched"), ["1"]);
    // Set also adds a header the client did not send.
    let r = get(gw.addr(), "/", &[]).await;
    assert_eq!(r.seen("x-env"), ["prod"]);
    assert_eq!(r.seen("x-tag"), ["gw"]);
}

#[tokio::test]
async fn headers_middleware_edits_the_response() {
    let origin = Origin::start(Arc::new(|req| {
        Box::pin(async move {
            drain(req).await;
            let mut resp = Response::new(full("ok"));
            let h = resp.headers_mut();
            h.insert("x-served-by", "origin".parse().unwrap());
            h.insert("x-resp-tag", "origin".parse().unwrap());
            h.insert("x-origin-secret", "s3cr3t".parse().unwrap());
            h.insert("server", "origin/1.0".parse().unwrap());
            h.insert("x-other", "kept".parse().unwrap());
            resp
        })
    }));
    let gw = gateway(&chain_config(origin.addr, HEADER_EDITS, r#""edit""#));
    let r = get(gw.addr(), "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-served-by"], "strait");
    let tags: Vec<_> = r.headers.get_all("x-resp-tag").iter().collect();
    assert_eq!(tags, ["origin", "gw"]);
    assert!(r.headers.get("x-origin-secret").is_none());
    assert!(r.headers.get("server").is_none());
    assert_eq!(r.headers["x-other"], "kept");
}

// ---------------------------------------------------------------- rewrites

#[tokio::test]
async fn strip_prefix_only_strips_whole_segments() {
    let origin = Origin::echo();
    let gw = gateway(&chain_config(
        origin.addr,
        "[middlewares.strip]\ntype = \"strip_prefix\"\nprefix = \"/api\"\n",
        r#""strip""#,
    ));
    let mut client = H1::connect(gw.addr()).await;
    for (sent, path, query) in [
        ("/api/users", "/users", None),
        ("/api/users/7?x=1&y=2", "/users/7", Some("x=1&y=2")),
        ("/api", "/", None),
        ("/api?q=1", "/", Some("q=1")),
        ("/api/", "/", None),
        ("/apix", "/apix", None),
        ("/apix/users", "/apix/users", None),
        ("/other/api/users", "/other/api/users", None),
    ] {
        let r = send(&mut client, request("GET", sent, &[])).await;
        let j = r.json();
        assert_eq!(j["path"], path, "{sent}");
        assert_eq!(j["query"].as_str(), query, "{sent}");
    }
}

#[tokio::test]
async fn rewrite_fills_the_template_from_pattern_params() {
    let origin = Origin::echo();
    let gw = gateway(&format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.backend]
endpoints = ["{origin}"]

[middlewares.v2]
type = "rewrite"
path = "/v2/u/{{id}}/{{rest}}"

[middlewares.strip]
type = "strip_prefix"
prefix = "/old"

[[routes]]
match = {{ path_pattern = "/users/{{id}}/posts/{{*rest}}" }}
middlewares = ["v2"]
upstream = "backend"

[[routes]]
match = {{ path_prefix = "/old" }}
middlewares = ["strip"]
upstream = "backend"
"#,
        origin = origin.addr
    ));
    let mut client = H1::connect(gw.addr()).await;
    for (sent, path, query) in [
        ("/users/42/posts/7", "/v2/u/42/7", None),
        (
            "/users/42/posts/7/comments?sort=new&page=2",
            "/v2/u/42/7/comments",
            Some("sort=new&page=2"),
        ),
        ("/users/a%20b/posts/x", "/v2/u/a%20b/x", None),
        ("/users/42/posts", "/v2/u/42/", None),
        ("/old/thing?k=v", "/thing", Some("k=v")),
    ] {
        let r = send(&mut client, request("GET", sent, &[])).await;
        assert_eq!(r.status, 200, "{sent}: {}", r.text());
        let j = r.json();
        assert_eq!(j["path"], path, "{sent}");
        assert_eq!(j["query"].as_str(), query, "{sent}");
    }
}

// ---------------------------------------------------------------- chain order

#[tokio::test]
async fn chain_runs_like_an_onion() {
    let origin = Origin::echo();
    let definitions = r#"
[middlewares.outer]
type = "headers"
request_set = { "x-req-layer" = "outer" }
request_append = { "x-req-trail" = "outer" }
response_set = { "x-layer" = "outer" }
response_append = { "x-trail" = "outer" }

[middlewares.inner]
type = "headers"
request_set = { "x-req-layer" = "inner" }
request_append = { "x-req-trail" = "inner" }
response_set = { "x-layer" = "inner" }
response_append = { "x-trail" = "inner" }
"#;
    let gw = gateway(&chain_config(
        origin.addr,
        definitions,
        r#""outer", "inner""#,
    ));
    let r = get(gw.addr(), "/", &[]).await;
    // Request phases run in list order: the inner one acts last.
    assert_eq!(r.seen("x-req-layer"), ["inner"]);
    assert_eq!(r.seen("x-req-trail"), ["outer", "inner"]);
    // Response phases run in reverse: the outer one acts last and wins.
    assert_eq!(r.headers["x-layer"], "outer");
    let trail: Vec<_> = r.headers.get_all("x-trail").iter().collect();
    assert_eq!(trail, ["inner", "outer"]);
}

// ---------------------------------------------------------------- custom

/// Answers 401 when the configured header is missing; otherwise marks the
/// response so the test sees that both of its phases ran.
struct Deny {
    header: HeaderName,
}

impl Custom for Deny {
    fn on_request<'f>(
        &'f self,
        ctx: &'f mut RequestContext<'_>,
        req: &'f mut UpstreamRequest<'_>,
    ) -> PhaseFuture<'f, Flow> {
        let flow = if req.headers.contains(&self.header) {
            ctx.set_var("deny", "passed");
            // What an authentication middleware does: name the consumer.
            ctx.consumer = Some("holder");
            Flow::Continue
        } else {
            let mut resp = Response::new(ProxyBody::full(Bytes::from_static(
                b"401 Unauthorized: missing credentials\n",
            )));
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            resp.headers_mut()
                .insert("www-authenticate", "Key".parse().unwrap());
            Flow::respond(resp)
        };
        Box::pin(async move { flow })
    }

    fn on_response<'f>(
        &'f self,
        ctx: &'f mut RequestContext<'_>,
        resp: &'f mut Response<ProxyBody>,
    ) -> PhaseFuture<'f, ()> {
        if let Some(v) = ctx.var("deny") {
            resp.headers_mut().insert("x-deny", v.parse().unwrap());
        }
        Box::pin(async {})
    }
}

fn deny_factory(
    built: Arc<AtomicUsize>,
) -> impl Fn(&toml::Table) -> Result<Arc<dyn Custom>, String> + Send + Sync + 'static {
    move |settings: &toml::Table| -> Result<Arc<dyn Custom>, String> {
        let name = settings
            .get("header")
            .and_then(|v| v.as_str())
            .ok_or("settings.header is required: the header that must be present")?;
        let header = HeaderName::try_from(name).map_err(|e| format!("settings.header: {e}"))?;
        built.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(Deny { header }))
    }
}

const DENY_DEFS: &str = r#"
[middlewares.deny]
type = "custom"
name = "deny"
settings = { header = "x-api-key" }

[middlewares.before]
type = "headers"
response_set = { "x-before" = "1" }

[middlewares.after]
type = "headers"
response_set = { "x-after" = "1" }
"#;

#[tokio::test]
async fn custom_middleware_answers_early_and_the_origin_is_not_called() {
    let origin = Origin::echo();
    let built = Arc::new(AtomicUsize::new(0));
    let gw = strait::Gateway::builder()
        .admin_listen(None)
        .workers(2)
        .custom("deny", deny_factory(built.clone()))
        .start_toml(
            "test.toml",
            &chain_config(origin.addr, DENY_DEFS, r#""before", "deny", "after""#),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(built.load(Ordering::SeqCst), 1, "built once per definition");
    let mut client = H1::connect(gw.addr()).await;

    let r = send(&mut client, request("GET", "/private", &[])).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), "401 Unauthorized: missing credentials\n");
    assert_eq!(r.headers["www-authenticate"], "Key");
    // Middlewares that ran before it see the early answer; later ones never ran.
    assert_eq!(r.headers["x-before"], "1");
    assert!(r.headers.get("x-after").is_none());
    assert!(r.headers.get("x-deny").is_none());
    assert_eq!(origin.requests(), 0, "the origin was called");

    let r = send(
        &mut client,
        request("GET", "/private", &[("x-api-key", "k")]),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/private");
    assert_eq!(r.headers["x-deny"], "passed");
    assert_eq!(r.headers["x-before"], "1");
    assert_eq!(r.headers["x-after"], "1");
    assert_eq!(origin.requests(), 1);

    // Still answers 401 on the same connection afterwards.
    let r = send(&mut client, request("GET", "/private", &[])).await;
    assert_eq!(r.status, 401);
    assert_eq!(origin.requests(), 1);
}

/// The log lines of an unauthenticated request (`/anon`, 401) and one the
/// custom middleware named a consumer for (`/known`), in `format`.
async fn consumer_log_lines(format: &str) -> (String, String) {
    let origin = Origin::fixed("o", 200, "ok");
    let dir = TempDir::new("consumer-log");
    let log = dir.path("access.log");
    let defs = format!(
        "{DENY_DEFS}\n[middlewares.log]\ntype = \"access_log\"\nformat = {format:?}\noutput = {log:?}\n"
    );
    let gw = strait::Gateway::builder()
        .admin_listen(None)
        .custom("deny", deny_factory(Arc::new(AtomicUsize::new(0))))
        .start_toml(
            "test.toml",
            &chain_config(origin.addr, &defs, r#""log", "deny""#),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mut client = H1::connect(gw.addr()).await;
    let r = send(&mut client, request("GET", "/anon", &[])).await;
    assert_eq!(r.status, 401);
    let r = send(&mut client, request("GET", "/known", &[("x-api-key", "k")])).await;
    assert_eq!(r.status, 200);
    gw.shutdown();
    let lines = lines_of(&log);
    let line = |path: &str| {
        lines
            .iter()
            .find(|l| l.contains(path))
            .unwrap_or_else(|| panic!("no line for {path}: {lines:?}"))
            .clone()
    };
    (line("/anon"), line("/known"))
}

#[tokio::test]
async fn the_consumer_a_middleware_names_is_in_both_access_log_formats() {
    let (anon, known) = consumer_log_lines("json").await;
    let consumer =
        |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap()["consumer"].clone();
    assert!(consumer(&anon).is_null(), "{anon}");
    assert_eq!(consumer(&known), "holder", "{known}");
    // Apache's %u: the consumer, `-` without one.
    let (anon, known) = consumer_log_lines("combined").await;
    assert!(anon.starts_with("127.0.0.1 - - ["), "{anon}");
    assert!(known.starts_with("127.0.0.1 - holder ["), "{known}");
}

#[tokio::test]
async fn custom_middleware_settings_errors_and_unregistered_names_refuse_the_config() {
    let origin = Origin::echo();
    let defs = "[middlewares.deny]\ntype = \"custom\"\nname = \"deny\"\nsettings = { }\n";
    let toml = chain_config(origin.addr, defs, r#""deny""#);
    let err = match strait::Gateway::builder()
        .admin_listen(None)
        .custom("deny", deny_factory(Arc::new(AtomicUsize::new(0))))
        .start_toml("test.toml", &toml)
    {
        Ok(_) => panic!("a custom middleware without its settings was accepted"),
        Err(strait::StartError::Config(errors)) => errors,
        Err(e) => panic!("unexpected error {e}"),
    };
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(
        err.0[0].message,
        "middleware \"deny\": settings.header is required: the header that must be present"
    );
    // The definition's table header, the first line of this file.
    assert_eq!((err.0[0].line, err.0[0].column), (1, 1));

    let err = strait::check("test.toml", &toml, &strait::CustomRegistry::new())
        .err()
        .expect("unregistered custom middleware accepted");
    assert_eq!(
        err.0[0].message,
        "middleware \"deny\": custom middleware \"deny\" is not registered (no custom middlewares are registered in this build)"
    );
}

// ---------------------------------------------------------------- access log

/// The lines of a log the gateway wrote (its shutdown flushed them).
fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn json_access_log_records_every_request_including_404() {
    let origin = Origin::echo();
    let dir = TempDir::new("access-log");
    let log = dir.path("json.log");
    let toml = format!(
        r#"
[server]
access_log = "log"

[[listeners]]
address = "127.0.0.1:0"

[upstreams.backend]
endpoints = ["{origin}"]

[middlewares.log]
type = "access_log"
format = "json"
output = {path:?}

[[routes]]
name = "api"
match = {{ path_prefix = "/api" }}
middlewares = ["log", "request_id"]
upstream = "backend"
"#,
        origin = origin.addr,
        path = log
    );
    let gw = gateway(&toml);
    let mut client = H1::connect(gw.addr()).await;
    let a = send(
        &mut client,
        request("GET", "/api/a?x=1", &[("user-agent", "log-test/1.0")]),
    )
    .await;
    let b = send(&mut client, request("POST", "/api/b", &[])).await;
    let missing = send(&mut client, request("GET", "/nope", &[])).await;
    assert_eq!(
        [a.status, b.status, missing.status].map(|s| s.as_u16()),
        [200, 200, 404]
    );
    gw.shutdown();

    let lines = lines_of(&log);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let by_path = |p: &str| {
        records
            .iter()
            .find(|r| r["path"] == p)
            .unwrap_or_else(|| panic!("no line for {p}: {lines:#?}"))
    };

    for (reply, path, method) in [(&a, "/api/a", "GET"), (&b, "/api/b", "POST")] {
        let rec = by_path(path);
        assert_eq!(rec["method"], method);
        assert_eq!(rec["status"], 200);
        assert_eq!(rec["route"], "api");
        assert_eq!(rec["upstream"], "backend");
        assert_eq!(rec["endpoint"], origin.addr.to_string());
        assert_eq!(
            rec["request_id"],
            reply.headers["x-request-id"].to_str().unwrap()
        );
        assert_eq!(rec["bytes_sent"], reply.body.len() as u64);
        assert_eq!(rec["completed"], true);
        assert_eq!(rec["host"], "test.local");
        assert_eq!(rec["protocol"], "HTTP/1.1");
        assert!(rec["cause"].is_null());
        let ms = rec["duration_ms"]
            .as_f64()
            .expect("duration_ms is a number");
        assert!((0.0..5000.0).contains(&ms), "{ms}");
        assert!(rec["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(rec["time"].as_str().unwrap().ends_with('Z'));
    }
    let a_rec = by_path("/api/a");
    // A new upstream connection's connect time is measured; the pooled one
    // the second request took has none (nginx's `$upstream_connect_time`).
    assert_eq!(a_rec["reused_connection"], false);
    assert!(a_rec["upstream_connect_ms"].as_f64().is_some(), "{a_rec}");
    let b_rec = by_path("/api/b");
    assert_eq!(b_rec["reused_connection"], true, "{b_rec}");
    assert_eq!(b_rec["upstream_connect_ms"], 0.0, "{b_rec}");
    assert_eq!(a_rec["query"], "x=1");
    assert_eq!(a_rec["user_agent"], "log-test/1.0");
    assert!(by_path("/api/b")["query"].is_null());

    let nf = by_path("/nope");
    assert_eq!(nf["method"], "GET");
    assert_eq!(nf["status"], 404);
    assert_eq!(nf["cause"], "no_route");
    assert_eq!(nf["bytes_sent"], missing.body.len() as u64);
    assert!(nf["endpoint"].is_null());
    assert!(nf["request_id"].is_null());
}

#[tokio::test]
async fn combined_access_log_line_shape() {
    let origin = Origin::fixed("o", 201, "created!");
    let dir = TempDir::new("access-log");
    let log = dir.path("combined.log");
    let defs = format!("[middlewares.log]\ntype = \"access_log\"\noutput = {log:?}\n");
    let gw = gateway(&chain_config(origin.addr, &defs, r#""log""#));
    let r = get(
        gw.addr(),
        "/c?q=1",
        &[
            ("referer", "https://ref.example/"),
            ("user-agent", "agent \"quoted\"/1.0"),
        ],
    )
    .await;
    assert_eq!(r.status, 201);
    let bare = get(gw.addr(), "/d", &[]).await;
    assert_eq!(bare.status, 201);
    gw.shutdown();

    let lines = lines_of(&log);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let line = lines
        .iter()
        .find(|l| l.contains("/c?q=1"))
        .expect("line for /c");
    // 127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /c?q=1 HTTP/1.1" 201 8 "ref" "ua"
    let (head, rest) = line.split_once(" [").expect("time opens with [");
    assert_eq!(head, "127.0.0.1 - -");
    let (time, rest) = rest.split_once("] ").expect("time closes with ]");
    let (date, zone) = time.split_once(' ').unwrap();
    assert_eq!(zone, "+0000");
    let parts: Vec<&str> = date.split(['/', ':']).collect();
    assert_eq!(parts.len(), 6, "{time}");
    assert_eq!(parts[0].len(), 2);
    assert!(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            .contains(&parts[1])
    );
    assert_eq!(parts[2].len(), 4);
    assert!(parts.iter().all(|p| p.len() >= 2));
    let rest = rest
        .strip_prefix("\"GET /c?q=1 HTTP/1.1\" ")
        .unwrap_or_else(|| panic!("request line: {line}"));
    let (status, rest) = rest.split_once(' ').unwrap();
    assert_eq!(status, "201");
    let (bytes, rest) = rest.split_once(' ').unwrap();
    assert_eq!(bytes, "8");
    // Quotes inside a field are escaped as nginx does (`\x22`), so the field
    // boundaries stay unambiguous.
    assert_eq!(
        rest, r#""https://ref.example/" "agent \x22quoted\x22/1.0""#,
        "{line}"
    );

    let line = lines
        .iter()
        .find(|l| l.contains("/d"))
        .expect("line for /d");
    assert!(
        line.ends_with("\"GET /d HTTP/1.1\" 201 8 \"-\" \"-\""),
        "{line}"
    );
}
