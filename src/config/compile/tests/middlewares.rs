//! Middlewares: definitions and built-ins in a chain, the fallback log, and errors.

use super::{assert_errors, compiled, route};
use crate::middleware::{LogFormat, Middleware};

#[test]
fn middlewares_in_a_chain() {
    let snap = compiled(&[
        "[middlewares.rid]",
        r#"type = "request_id""#,
        r#"header = "X-Trace""#,
        "response = false",
        "[middlewares.strip]",
        r#"type = "strip_prefix""#,
        r#"prefix = "/api""#,
        "[middlewares.tag]",
        r#"type = "headers""#,
        r#"request_set = { x-env = "test" }"#,
        r#"response_remove = ["server"]"#,
        "[middlewares.log]",
        r#"type = "access_log""#,
        r#"format = "json""#,
        r#"output = "stderr""#,
        "[middlewares.redirect]",
        r#"type = "https_redirect""#,
        "[server]",
        r#"access_log = "log""#,
        "[[routes]]",
        r#"name = "api""#,
        r#"match = { path_prefix = "/api" }"#,
        r#"middlewares = ["request_id", "rid", "strip", "tag", "log", "redirect", "access_log"]"#,
        r#"upstream = "base""#,
    ]);
    let api = route(&snap, "api");
    let names: Vec<&str> = api.middleware_names.iter().map(|n| &**n).collect();
    assert_eq!(
        names,
        [
            "request_id",
            "rid",
            "strip",
            "tag",
            "log",
            "redirect",
            "access_log"
        ]
    );
    let [builtin_id, rid, strip, tag, log, redirect, builtin_log] = &*api.chain else {
        panic!("expected 7 middlewares, got {}", api.chain.len());
    };
    // Used by name without a definition: the built-ins with their defaults.
    let Middleware::RequestId(id) = builtin_id else {
        panic!("request_id")
    };
    assert_eq!(
        (id.header.as_str(), id.response, id.trust_incoming),
        ("x-request-id", true, true)
    );
    let Middleware::AccessLog(l) = builtin_log else {
        panic!("access_log")
    };
    assert_eq!((l.format, &*l.sink.output), (LogFormat::Combined, "stdout"));

    let Middleware::RequestId(id) = rid else {
        panic!("rid")
    };
    assert_eq!(
        (id.header.as_str(), id.response, id.trust_incoming),
        ("x-trace", false, true)
    );
    let Middleware::StripPrefix(s) = strip else {
        panic!("strip")
    };
    assert_eq!(&*s.prefix, "/api");
    let Middleware::Headers(ops) = tag else {
        panic!("tag")
    };
    let set: Vec<(&str, &[u8])> = ops
        .request
        .set
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    assert_eq!(set, [("x-env", &b"test"[..])]);
    assert!(ops.request.append.is_empty() && ops.request.remove.is_empty());
    assert_eq!(ops.response.remove, [http::header::SERVER]);
    let Middleware::AccessLog(l) = log else {
        panic!("log")
    };
    assert_eq!((l.format, &*l.sink.output), (LogFormat::Json, "stderr"));
    let Middleware::HttpsRedirect(r) = redirect else {
        panic!("redirect")
    };
    assert_eq!((r.port, r.status.as_u16()), (443, 301));

    let fallback = snap.fallback_log.as_ref().unwrap();
    assert_eq!(
        (fallback.format, &*fallback.sink.output),
        (LogFormat::Json, "stderr")
    );
}

#[test]
fn policy_middlewares_are_indexed_for_their_counters() {
    let snap = compiled(&[
        "[middlewares.gate]",
        r#"type = "ip_filter""#,
        r#"allow = ["10.0.0.0/8", "::1"]"#,
        "[middlewares.limits]",
        r#"type = "request_limits""#,
        "max_body = 2048",
        r#"methods = ["GET", "PROPFIND"]"#,
        "[middlewares.tag]",
        r#"type = "headers""#,
        "[middlewares.upload]",
        r#"type = "request_limits""#,
        r#"max_body = "10MiB""#,
        "[[routes]]",
        r#"middlewares = ["gate", "tag", "limits", "upload"]"#,
        r#"upstream = "base""#,
    ]);
    // In name order, policies only: the index each counts refusals under.
    let policies: Vec<(&str, &str)> = snap.policies.iter().map(|(n, k)| (&**n, *k)).collect();
    assert_eq!(
        policies,
        [
            ("gate", "ip_filter"),
            ("limits", "request_limits"),
            ("upload", "request_limits")
        ]
    );
    let chain = &snap.routes[0].chain;
    let Middleware::IpFilter(gate) = &chain[0] else {
        panic!("gate")
    };
    let allow: Vec<String> = gate.allow().iter().map(|n| n.to_string()).collect();
    assert_eq!(allow, ["10.0.0.0/8", "::1/128"]);
    assert!(gate.deny().is_empty());
    let (Middleware::RequestLimits(limits), Middleware::RequestLimits(upload)) =
        (&chain[2], &chain[3])
    else {
        panic!("limits")
    };
    assert_eq!((limits.policy, limits.max_body), (1, Some(2048)));
    assert_eq!(limits.allow.as_ref().unwrap(), "GET, PROPFIND");
    assert_eq!(limits.max_url_length, None);
    assert_eq!((upload.policy, upload.max_body), (2, Some(10 << 20)));
    assert!(upload.methods.is_empty() && upload.allow.is_none());
}

#[test]
fn middleware_errors() {
    assert_errors(&[
        (
            &[
                "[middlewares]",
                r#"a = { type = "strip_prefix", prefix = "/api/" }"#,
                r#"b = { type = "rewrite", path = "users" }"#,
                r#"c = { type = "access_log", format = "xml" }"#,
                r#"d = { type = "access_log", output = "" }"#,
                r#"e = { type = "request_id", header = "bad header" }"#,
                r#"f = { type = "headers", request_set = { "x-ok" = "line\nbreak" } }"#,
                r#"g = { type = "headers", response_remove = ["bad header"] }"#,
                r#"h = { type = "https_redirect", port = 0 }"#,
                r#"i = { type = "custom", name = "auth" }"#,
            ],
            &[
                r#"2:5: middleware "a": strip_prefix prefix "/api/" is invalid: expected a path starting with '/' and not ending with '/', e.g. "/api""#,
                r#"3:5: middleware "b": rewrite path "users" must start with '/'"#,
                r#"4:5: middleware "c": unknown access log format "xml": expected "combined" or "json""#,
                r#"5:5: middleware "d": access log output is empty: expected "stdout", "stderr" or a file path"#,
                r#"6:5: middleware "e": invalid header name "bad header": expected a token such as "x-request-id""#,
                r#"7:5: middleware "f": invalid value for header "x-ok": "line\nbreak" has characters not allowed in a header value"#,
                r#"8:5: middleware "g": invalid header name "bad header": expected a token such as "x-debug""#,
                r#"9:5: middleware "h": https_redirect port = 0 is out of range: expected 1 to 65535"#,
                r#"10:5: middleware "i": custom middleware "auth" is not registered (no custom middlewares are registered in this build)"#,
            ],
        ),
        (
            &[
                "[server]",
                r#"access_log = "strip""#,
                "[middlewares.strip]",
                r#"type = "strip_prefix""#,
                r#"prefix = "/api""#,
            ],
            &[r#"2:14: server.access_log = "strip" is not an access_log middleware"#],
        ),
        (
            &["[server]", r#"access_log = "missing""#],
            &[
                r#"2:14: server.access_log: unknown middleware "missing": expected one of ["access_log", "request_id"] (define it under [middlewares.missing])"#,
            ],
        ),
        // A broken definition is reported once, not again by each route using it.
        (
            &[
                "[middlewares]",
                r#"bad = { type = "rewrite", path = "x" }"#,
                "[[routes]]",
                r#"middlewares = ["bad"]"#,
                r#"upstream = "base""#,
            ],
            &[r#"2:7: middleware "bad": rewrite path "x" must start with '/'"#],
        ),
    ]);
}

#[test]
fn limit_middlewares_are_compiled_with_their_defaults() {
    let snap = compiled(&[
        "[middlewares.per_client]",
        r#"type = "rate_limit""#,
        r#"rate = "600/m""#,
        "burst = 4",
        "[middlewares.spaced]",
        r#"type = "rate_limit""#,
        r#"rate = "3/s""#,
        "burst = 4",
        "delay = 1",
        r#"key = ["header:X-Tenant", "cookie:sid", "route", "consumer", "claim:sub"]"#,
        "max_keys = 10",
        "status = 503",
        "[middlewares.in_flight]",
        r#"type = "connection_limit""#,
        "max = 3",
        "[[routes]]",
        r#"middlewares = ["per_client", "spaced", "in_flight"]"#,
        r#"upstream = "base""#,
    ]);
    let chain = &snap.routes[0].chain;
    let (Middleware::RateLimit(a), Middleware::RateLimit(b), Middleware::ConnectionLimit(c)) =
        (&chain[0], &chain[1], &chain[2])
    else {
        panic!("the limits")
    };
    let a = &a.settings;
    assert_eq!((a.count, a.burst, a.delay, a.max_keys), (600, 4, 4, 65_536));
    assert_eq!(a.delay_us, 4 * 100_000, "nodelay: the whole burst at once");
    assert_eq!(a.status, http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.key.sources.len(), 1);
    assert_eq!(a.policy_value, r#""per_client";q=600;w=60"#);
    assert_eq!(a.table.slots(), 65_536);
    let b = &b.settings;
    // 3/s: an interval of 333,333 µs (to the nearest microsecond).
    assert_eq!((b.delay, b.delay_us), (1, 333_333));
    assert_eq!(b.status, http::StatusCode::SERVICE_UNAVAILABLE);
    let key: Vec<String> = b.key.sources.iter().map(|s| s.text()).collect();
    assert_eq!(
        key,
        [
            "header:x-tenant",
            "cookie:sid",
            "route",
            "consumer",
            "claim:sub"
        ]
    );
    assert_eq!(b.table.slots(), 12, "10 keys: 3 sets of 4");
    let c = &c.settings;
    assert_eq!((c.max, c.max_keys), (3, 65_536));
    assert_eq!(c.key.sources[0].text(), "client_ip");
}
