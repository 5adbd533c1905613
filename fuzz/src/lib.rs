//! The logic of Strait's fuzz targets: each function takes the fuzzer's bytes,
//! turns them into input for one pure hot path, and panics only when Strait
//! does (or breaks an invariant checked here). The libFuzzer binaries in
//! `fuzz_targets/` and the stable smoke test in `tests/smoke.rs` both call these.

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::sync::OnceLock;

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use strait::bench::{HeaderCond, PairCond, PathSpec, RouteInput, RouteSpec, Router};
use strait::Headers;

pub mod http1_model;

/// `strait::check` on the bytes as a config file: it must answer `Ok` or a list
/// of errors, never panic.
///
/// Invalid UTF-8 is skipped, as `read_config` refuses it before `check` runs.
/// Endpoint addresses of the form `host:port` are resolved by `check`, so a
/// fuzzer that finds such an input spends time in the system resolver.
pub fn config(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = strait::check("fuzz.toml", source, &strait::CustomRegistry::new()) {
        // Every error is reported with text; formatting them must not panic either.
        assert!(
            !errors.0.is_empty(),
            "check failed with an empty error list"
        );
        let _ = errors.to_string();
    }
}

/// `strait::http1::parse_request` and the reference of `http1_model` (httparse,
/// `http::Uri`, hyper's framing rules, Strait's stricter rules as filters) on
/// the bytes as a request head: they must agree on accept, refuse or
/// incomplete, and on method, target, fields, framing and keep-alive.
pub fn http1_request(data: &[u8]) {
    http1_model::check(data);
}

/// `strait::http1::parse_response` and the reference of `http1_model`
/// (httparse, hyper's client framing rules, Strait's stricter rules) on the
/// bytes as a response head, the first byte saying what the request was
/// (bit 0: HEAD, bit 1: CONNECT): they must agree as `http1_request`'s do,
/// and on status, reason and framing.
pub fn http1_response(data: &[u8]) {
    http1_model::check_response(data);
}

/// `Router::find` on a fixed table with a request decoded from the bytes.
///
/// The bytes are read as lines: method, host (empty for none), path (a `?` in it
/// starts the query), then one `name: value` header per line (`cookie: ...` for
/// the cookie conditions); invalid methods become `GET`, invalid headers are
/// skipped, and non-UTF-8 host and path bytes are replaced, so every input
/// reaches the router.
pub fn router(data: &[u8]) {
    let router = fixed_router();
    let mut lines = data.split(|&b| b == b'\n');
    let method = lines
        .next()
        .and_then(|m| Method::from_bytes(m).ok())
        .unwrap_or(Method::GET);
    let host = lines.next().unwrap_or_default();
    let host = (!host.is_empty()).then(|| String::from_utf8_lossy(host));
    let target = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (&*target, None),
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let mut parts = line.splitn(2, |&b| b == b':');
        let name = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default().trim_ascii_start();
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    let headers = Headers::from_map(headers);
    find_checked(router, &method, host.as_deref(), path, query, &headers);
}

/// `Router::build` with one route whose host and path come from the bytes: it
/// must return `Ok` or `Err`, never panic. A table that builds is then asked
/// for the route's own path and a few neighbours of it.
///
/// The first byte picks the path kind (exact, prefix, pattern, any; bit 6: a
/// regex instead) and whether the route has a method, a header (bit 5) and a
/// query and a cookie condition (bit 7); the rest is `host\npath`, an empty
/// host meaning none.
pub fn route_spec(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let (host, path) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    let host = (!host.is_empty()).then(|| String::from_utf8_lossy(host).into_owned());
    let path = String::from_utf8_lossy(path).into_owned();
    let regex = first & 0x40 != 0;
    let spec_path = match first % 4 {
        _ if regex => PathSpec::Regex(path.clone()),
        0 => PathSpec::Exact(path.clone()),
        1 => PathSpec::Prefix(path.clone()),
        2 => PathSpec::Pattern(path.clone()),
        _ => PathSpec::Any,
    };
    let mut spec = RouteSpec {
        host: host.clone(),
        path: spec_path,
        methods: Vec::new(),
        headers: Vec::new(),
        query: Vec::new(),
        cookies: Vec::new(),
    };
    if first & 0x10 != 0 {
        spec.methods = vec![Method::GET, Method::POST];
    }
    if first & 0x20 != 0 {
        spec.headers = vec![HeaderCond::Present(HeaderName::from_static("x-canary"))];
    }
    if first & 0x80 != 0 {
        spec.query = vec![PairCond::Equals("v".into(), "2".into())];
        spec.cookies = vec![PairCond::Present("canary".into())];
    }
    let specs = vec![
        spec,
        route(None, PathSpec::Pattern("/{a}/{*rest}".into())),
        route(Some("*.example.com"), PathSpec::Prefix("/".into())),
    ];
    let Ok(router) = Router::build(specs) else {
        return;
    };
    assert_eq!(router.len(), 3, "a table that builds keeps every route");
    let mut headers = HeaderMap::new();
    headers.insert("x-canary", HeaderValue::from_static("1"));
    headers.insert("cookie", HeaderValue::from_static("a=b; canary=1"));
    let headers = Headers::from_map(headers);
    let query = Some("v=%32");

    // A route must match its own path (a pattern matches itself literally) from
    // a host of its own, ahead of the two fixed routes: an exact host is the only
    // route of its class; a wildcard host shares its class at most with the
    // fixed `*.example.com` + prefix "/", which loses or ties (earlier wins)
    // unless the fuzzed route has no path condition; host-less, only an exact path
    // beats the fixed pattern. Method, header, query and cookie conditions are
    // met by GET, x-canary, v=%32 and canary=1. A regex need not match its own
    // text, so it is only routed, not checked for winning.
    let own_host = match &host {
        _ if regex => None,
        None => (first % 4 == 0).then_some(None),
        Some(h) => match h.strip_prefix('*') {
            None => Some(Some(h.clone())),
            Some(suffix) if first % 4 != 3 => Some(Some(format!("z{suffix}"))),
            Some(_) => None,
        },
    };
    if let Some(own_host) = own_host {
        let bump = Bump::new();
        let mut params = BumpVec::new_in(&bump);
        let input = RouteInput {
            method: &Method::GET,
            host: own_host.as_deref(),
            path: &path,
            query,
            headers: &headers,
        };
        let got = router.find(&input, &mut params);
        assert_eq!(
            got,
            Some(0),
            "route (host {host:?}, path kind {}, path {path:?}) does not win for its own \
             host {own_host:?} and path",
            first % 4
        );
    }

    let with_slash = format!("{path}/");
    let with_segment = format!("{path}/x/y");
    let trimmed = path.trim_end_matches('/');
    for p in [path.as_str(), &with_slash, &with_segment, trimmed, "/", ""] {
        for h in [host.as_deref(), None, Some("a.example.com:80")] {
            find_checked(&router, &Method::GET, h, p, query, &headers);
        }
    }
}

/// Runs `find` and checks what the router promises about its answer.
fn find_checked(
    router: &Router,
    method: &Method,
    host: Option<&str>,
    path: &str,
    query: Option<&str>,
    headers: &Headers<'_>,
) {
    let bump = Bump::new();
    let mut params = BumpVec::new_in(&bump);
    params.push(("stale", "stale"));
    let input = RouteInput {
        method,
        host,
        path,
        query,
        headers,
    };
    match router.find(&input, &mut params) {
        Some(id) => {
            assert!(id < router.len(), "route id {id} out of range");
            for (name, value) in params.iter() {
                assert!(!name.is_empty(), "capture with an empty name");
                assert!(
                    path.contains(value),
                    "capture {name}={value:?} is not part of the path {path:?}"
                );
            }
        }
        None => assert!(params.is_empty(), "params left after a miss: {params:?}"),
    }
}

fn route(host: Option<&str>, path: PathSpec) -> RouteSpec {
    RouteSpec {
        host: host.map(str::to_owned),
        path,
        methods: Vec::new(),
        headers: Vec::new(),
        query: Vec::new(),
        cookies: Vec::new(),
    }
}

/// A table using every feature of the router, built once per process.
fn fixed_router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let canary = HeaderName::from_static("x-canary");
        let version = HeaderName::from_static("x-api-version");
        let exact = |p: &str| PathSpec::Exact(p.into());
        let prefix = |p: &str| PathSpec::Prefix(p.into());
        let pattern = |p: &str| PathSpec::Pattern(p.into());
        let mut specs = vec![
            route(Some("api.example.com"), exact("/healthz")),
            route(Some("api.example.com"), pattern("/v1/users/{id}")),
            route(
                Some("api.example.com"),
                pattern("/v1/users/{id}/posts/{post}"),
            ),
            route(Some("api.example.com"), pattern("/files/{*rest}")),
            route(Some("API.Example.com"), prefix("/v1")),
            route(Some("api.example.com"), prefix("/api/")),
            route(Some("[::1]"), prefix("/")),
            route(Some("127.0.0.1"), pattern("/{a}/{b}/{c}")),
            route(Some("trailing.example.org."), PathSpec::Any),
            route(Some("*.example.com"), pattern("/{tenant}/dashboard")),
            route(Some("*.a.example.com"), prefix("/deep")),
            route(Some("*.example.com"), prefix("/assets")),
            route(None, exact("/")),
            route(None, pattern("/.well-known/{*rest}")),
            route(None, pattern("/{x}")),
            route(None, prefix("/")),
        ];
        let mut post = route(Some("api.example.com"), pattern("/v1/orders/{id}"));
        post.methods = vec![Method::POST, Method::PUT];
        specs.push(post);
        let mut versioned = route(Some("api.example.com"), prefix("/v1"));
        versioned.headers = vec![
            HeaderCond::Present(canary.clone()),
            HeaderCond::Equals(version, HeaderValue::from_static("2")),
        ];
        specs.push(versioned);
        let mut deletes = route(None, PathSpec::Any);
        deletes.methods = vec![Method::DELETE];
        deletes.headers = vec![HeaderCond::Present(canary)];
        specs.push(deletes);
        let regex = |r: &str| PathSpec::Regex(r.into());
        specs.push(route(
            Some("api.example.com"),
            regex(r"/v[0-9]+/items/(?P<id>[0-9]+)(?:\.(?P<format>json|xml))?"),
        ));
        specs.push(route(None, regex(r"(?i)/static/.*\.(css|js)")));
        let mut by_query = route(None, prefix("/"));
        by_query.query = vec![
            PairCond::Equals("version".into(), "2".into()),
            PairCond::Present("debug".into()),
        ];
        specs.push(by_query);
        let mut by_cookie = route(None, regex("/app/.*"));
        by_cookie.cookies = vec![
            PairCond::Equals("canary".into(), "1".into()),
            PairCond::Present("session".into()),
        ];
        specs.push(by_cookie);
        Router::build(specs).expect("the fuzz router's table is valid")
    })
}

/// Text for an input, for panic reports: UTF-8 where it is, escaped elsewhere.
pub fn describe(data: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(data) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(data.escape_ascii().to_string()),
    }
}
