//! `[[routes]]`: match conditions, chains, retry policies, upgrades, timeouts, and
//! errors.

use std::time::Duration;

use http::Method;

use super::{assert_errors, compiled, route, secs};
use crate::config::RetryPolicy;
use crate::middleware::Middleware;
use crate::router::{HeaderCond, PathSpec, RouteSpec};

#[test]
fn route_match_chain_and_defaults() {
    let snap = compiled(&[
        "[middlewares.strip]",
        r#"type = "strip_prefix""#,
        r#"prefix = "/api""#,
        "[[routes]]",
        r#"match = { host = "api.example.com", path_prefix = "/api", methods = ["get", "POST"], headers = [{ name = "X-Canary" }, { name = "x-env", value = "test" }] }"#,
        r#"middlewares = ["request_id", "strip"]"#,
        r#"upstream = "base""#,
    ]);
    let names: Vec<&str> = snap.routes.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["route-1", "base"]);
    let r = &snap.routes[0];
    let matcher = RouteSpec {
        host: Some("api.example.com".into()),
        path: PathSpec::Prefix("/api".into()),
        methods: vec![Method::GET, Method::POST],
        headers: vec![
            HeaderCond::Present(http::HeaderName::from_static("x-canary")),
            HeaderCond::Equals(
                http::HeaderName::from_static("x-env"),
                http::HeaderValue::from_static("test"),
            ),
        ],
        query: Vec::new(),
        cookies: Vec::new(),
    };
    assert_eq!(r.matcher, matcher);
    assert_eq!(&*snap.upstreams[r.upstream].name, "base");
    assert!(matches!(
        &*r.chain,
        [Middleware::RequestId(_), Middleware::StripPrefix(_)]
    ));
    assert_eq!(r.timeout, None);
    assert!(r.retry.is_none());
    assert_eq!(&*r.upgrades, [Box::<str>::from("websocket")]);
    assert_eq!(r.tunnel_idle_timeout, secs(300));
    assert_eq!(
        snap.routes[1].matcher.path,
        PathSpec::Prefix("/base".into())
    );
}

#[test]
fn route_retry_timeouts_and_upgrades() {
    let snap = compiled(&[
        "[[routes]]",
        r#"name = "default-retry""#,
        r#"match = { path = "/a" }"#,
        r#"upstream = "base""#,
        "retry = {}",
        "[[routes]]",
        r#"name = "custom""#,
        r#"match = { path_pattern = "/users/{id}" }"#,
        r#"upstream = "base""#,
        r#"timeout = "10s""#,
        r#"upgrades = ["WebSocket", "h2c/1", "websocket"]"#,
        r#"tunnel_idle_timeout = "1m""#,
        r#"retry = { attempts = 10, per_try_timeout = "500ms", on = ["timeout", "503", "reset"], non_idempotent = true, replay_limit = 0, backoff_base = "1s", backoff_max = "1s" }"#,
        "[[routes]]",
        r#"name = "no-upgrades""#,
        r#"match = { path = "/b" }"#,
        r#"upstream = "base""#,
        "upgrades = []",
    ]);
    let default = RetryPolicy {
        attempts: 2,
        per_try_timeout: None,
        on_connect_failure: true,
        on_reset: true,
        on_timeout: false,
        on_statuses: vec![502, 503, 504],
        non_idempotent: false,
        replay_limit: 64 * 1024,
        backoff_base: Duration::from_millis(25),
        backoff_max: Duration::from_millis(250),
    };
    assert_eq!(
        route(&snap, "default-retry").retry.as_deref(),
        Some(&default)
    );

    let custom = route(&snap, "custom");
    let policy = RetryPolicy {
        attempts: 10,
        per_try_timeout: Some(Duration::from_millis(500)),
        on_connect_failure: false,
        on_reset: true,
        on_timeout: true,
        on_statuses: vec![503],
        non_idempotent: true,
        replay_limit: 0,
        backoff_base: secs(1),
        backoff_max: secs(1),
    };
    assert_eq!(custom.retry.as_deref(), Some(&policy));
    assert_eq!(custom.timeout, Some(secs(10)));
    let upgrades: Vec<&str> = custom.upgrades.iter().map(|u| &**u).collect();
    assert_eq!(upgrades, ["websocket", "h2c/1"]);
    assert_eq!(custom.tunnel_idle_timeout, secs(60));
    assert_eq!(custom.matcher.path, PathSpec::Pattern("/users/{id}".into()));
    assert!(route(&snap, "no-upgrades").upgrades.is_empty());
}

#[test]
fn route_errors() {
    assert_errors(&[
        (
            &[
                "[middlewares.rw]",
                r#"type = "rewrite""#,
                r#"path = "/v2/{id}""#,
                "[[routes]]",
                r#"name = "a""#,
                r#"match = { path = "/a", path_prefix = "/a" }"#,
                r#"middlewares = ["rw", "nope"]"#,
                r#"upstream = "missing""#,
                "[[routes]]",
                r#"name = "a""#,
                r#"match = { path = "/b", methods = ["GET", "G E T"] }"#,
                r#"upstream = "base""#,
                r#"timeout = "0s""#,
                r#"upgrades = ["web socket"]"#,
                r#"tunnel_idle_timeout = "forever""#,
                r#"retry = { attempts = 1, on = ["404"], backoff_base = "1s", backoff_max = "100ms" }"#,
            ],
            &[
                r#"6:9: route "a": a route matches one path form: expected only one of path, path_prefix, path_pattern, path_regex"#,
                r#"7:16: route "a": middleware "rw" uses parameter {id} that the route's path_pattern or path_regex does not capture"#,
                r#"7:22: route "a": unknown middleware "nope": expected one of ["access_log", "request_id", "rw"] (define it under [middlewares.nope])"#,
                r#"8:12: route "a": unknown upstream "missing": expected one of ["base"]"#,
                r#"10:8: duplicate route name "a" (also route 1)"#,
                r#"11:42: route "a": invalid method "G E T": expected a token like "GET""#,
                r#"13:11: route "a": timeout must be greater than zero"#,
                r#"14:13: route "a": invalid upgrade protocol "web socket": expected a token such as "websocket" (or name/version)"#,
                r#"15:23: route "a": tunnel_idle_timeout: invalid duration "forever": expected a number with a unit (ms, s, m, h), e.g. "500ms" or "30s""#,
                r#"16:22: route "a": retry.attempts = 1 is out of range: expected 2 to 10"#,
                r#"16:31: route "a": retry.on: unknown condition "404": expected one of ["connect_failure", "reset", "timeout"] or a 5xx status like "503""#,
                r#"16:74: route "a": retry.backoff_max (100ms) is shorter than backoff_base (1s)"#,
            ],
        ),
        // The router's own complaints are placed at the route's match.
        (
            &[
                "[[routes]]",
                r#"name = "p""#,
                r#"match = { path_pattern = "/u/{}" }"#,
                r#"upstream = "base""#,
            ],
            &[r#"3:9: route "p": empty parameter name in path pattern "/u/{}""#],
        ),
        // A rewrite may use a regex's named groups, not its numbered ones; query and
        // cookie conditions are placed at their own entries.
        (
            &[
                "[middlewares.rw]",
                r#"type = "rewrite""#,
                r#"path = "/v2/{id}""#,
                "[[routes]]",
                r#"name = "named""#,
                r#"match = { path_regex = "/u/(?P<id>[0-9]+)" }"#,
                r#"middlewares = ["rw"]"#,
                r#"upstream = "base""#,
                "[[routes]]",
                r#"name = "numbered""#,
                r#"match = { path_regex = "/u/([0-9]+)" }"#,
                r#"middlewares = ["rw"]"#,
                r#"upstream = "base""#,
                "[[routes]]",
                r#"name = "pairs""#,
                r#"match = { query = [{ name = "" }], cookies = [{ name = "a", value = " b" }] }"#,
                r#"upstream = "base""#,
            ],
            &[
                r#"12:16: route "numbered": middleware "rw" uses parameter {id} that the route's path_pattern or path_regex does not capture"#,
                r#"16:20: route "pairs": empty query parameter name: expected a name like "version""#,
                r#"16:47: route "pairs": value " b" of cookie "a" can never match: it starts or ends with whitespace"#,
            ],
        ),
    ]);
}
