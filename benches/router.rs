//! Route matching: `Router::find` on a 50-route table shaped like a small
//! gateway (5 exact hosts, 2 wildcard hosts, host-less routes), for a hit on
//! each host class, the catch-all fallback, and a miss that walks every class.
//! Also `Router::build` of that table, which runs once per config load, and a
//! canary table on query, cookie and path-regex conditions beside a catch-all.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use strait::bench::{HeaderCond, PairCond, PathSpec, RouteInput, RouteSpec, Router};
use strait::Headers;

const EXACT_HOSTS: [&str; 5] = [
    "api.example.com",
    "www.example.com",
    "admin.example.com",
    "static.example.com",
    "auth.example.com",
];

fn spec(host: Option<&str>, path: PathSpec) -> RouteSpec {
    RouteSpec {
        host: host.map(str::to_owned),
        path,
        methods: Vec::new(),
        headers: Vec::new(),
        query: Vec::new(),
        cookies: Vec::new(),
    }
}

fn with_methods(mut s: RouteSpec, methods: &[Method]) -> RouteSpec {
    s.methods = methods.to_vec();
    s
}

fn with_header(mut s: RouteSpec, cond: HeaderCond) -> RouteSpec {
    s.headers.push(cond);
    s
}

fn exact(p: &str) -> PathSpec {
    PathSpec::Exact(p.into())
}

fn prefix(p: &str) -> PathSpec {
    PathSpec::Prefix(p.into())
}

fn pattern(p: &str) -> PathSpec {
    PathSpec::Pattern(p.into())
}

/// 50 routes: 7 per exact host, 5 per wildcard host, 5 host-less.
fn routes() -> Vec<RouteSpec> {
    let canary = HeaderName::from_static("x-canary");
    let version = HeaderName::from_static("x-api-version");
    let mut out = Vec::new();
    for host in EXACT_HOSTS {
        let h = Some(host);
        out.push(spec(h, exact("/healthz")));
        out.push(spec(h, pattern("/v1/users/{id}")));
        out.push(spec(h, pattern("/v1/users/{id}/posts/{post}")));
        out.push(with_methods(
            spec(h, pattern("/v1/orders/{id}/{*rest}")),
            &[Method::POST, Method::PUT],
        ));
        out.push(with_header(
            spec(h, prefix("/v1")),
            HeaderCond::Equals(version.clone(), HeaderValue::from_static("2")),
        ));
        out.push(spec(h, prefix("/v1")));
        out.push(with_methods(
            spec(h, prefix("/static")),
            &[Method::GET, Method::HEAD],
        ));
    }
    for host in ["*.example.com", "*.apps.example.net"] {
        let h = Some(host);
        out.push(spec(h, exact("/robots.txt")));
        out.push(spec(h, pattern("/{tenant}/dashboard")));
        out.push(with_header(
            spec(h, prefix("/assets")),
            HeaderCond::Present(canary.clone()),
        ));
        out.push(spec(h, prefix("/assets")));
        out.push(with_methods(
            spec(h, prefix("/api")),
            &[Method::GET, Method::POST],
        ));
    }
    out.push(spec(None, exact("/healthz")));
    out.push(spec(None, exact("/metrics")));
    out.push(spec(None, pattern("/.well-known/{*rest}")));
    out.push(with_header(
        spec(None, prefix("/")),
        HeaderCond::Present(canary),
    ));
    // The catch-all only serves reads, so a write to an unknown path can miss.
    out.push(with_methods(
        spec(None, prefix("/")),
        &[Method::GET, Method::HEAD],
    ));
    assert_eq!(out.len(), 50);
    out
}

struct Case {
    name: &'static str,
    method: Method,
    host: Option<&'static str>,
    path: &'static str,
    query: Option<&'static str>,
    headers: Headers<'static>,
    want: Option<usize>,
}

fn cases(router: &Router) -> Vec<Case> {
    let mut versioned = HeaderMap::new();
    versioned.insert("accept", HeaderValue::from_static("application/json"));
    versioned.insert("x-api-version", HeaderValue::from_static("2"));
    let mut browser = HeaderMap::new();
    browser.insert("accept", HeaderValue::from_static("text/html"));
    browser.insert("user-agent", HeaderValue::from_static("Mozilla/5.0"));
    let cases = vec![
        Case {
            name: "exact_host_pattern",
            method: Method::GET,
            host: Some("api.example.com"),
            path: "/v1/users/42/posts/7",
            query: None,
            headers: versioned.clone().into(),
            want: Some(2),
        },
        Case {
            name: "exact_host_header_prefix",
            method: Method::GET,
            host: Some("auth.example.com:443"),
            path: "/v1/sessions",
            query: None,
            headers: versioned.into(),
            want: Some(4 * 7 + 4),
        },
        Case {
            name: "wildcard_prefix",
            method: Method::GET,
            host: Some("Tenant-7.Apps.Example.NET:8443"),
            path: "/assets/css/site.css",
            query: None,
            headers: browser.clone().into(),
            want: Some(35 + 8),
        },
        Case {
            name: "fallback_catch_all",
            method: Method::GET,
            host: Some("unknown.example.org"),
            path: "/some/page/that/nobody/routes",
            query: None,
            headers: browser.clone().into(),
            want: Some(49),
        },
        Case {
            name: "miss",
            method: Method::DELETE,
            host: Some("www.example.com"),
            path: "/nope/not/here",
            query: None,
            headers: browser.into(),
            want: None,
        },
    ];
    check(router, &cases);
    cases
}

/// Guards the tables: a bench that measures the wrong route is worse than none.
fn check(router: &Router, cases: &[Case]) {
    let bump = Bump::new();
    for c in cases {
        let mut params = BumpVec::new_in(&bump);
        let got = router.find(&input(c), &mut params);
        assert_eq!(got, c.want, "case {}", c.name);
    }
}

/// A catch-all, canaries by cookie and by query, and versioned items by regex.
fn condition_routes() -> Vec<RouteSpec> {
    let mut canary = spec(None, prefix("/"));
    canary.cookies = vec![PairCond::Equals("canary".into(), "1".into())];
    let mut v2 = spec(None, prefix("/"));
    v2.query = vec![PairCond::Equals("version".into(), "2".into())];
    vec![
        spec(None, prefix("/")),
        canary,
        v2,
        spec(
            None,
            PathSpec::Regex(r"/v[0-9]+/items/(?P<id>[0-9]+)".into()),
        ),
        spec(None, PathSpec::Regex(r"/static/.*\.(?:css|js)".into())),
    ]
}

fn condition_cases(router: &Router) -> Vec<Case> {
    let mut cookies = HeaderMap::new();
    cookies.insert("accept", HeaderValue::from_static("text/html"));
    cookies.insert(
        "cookie",
        HeaderValue::from_static("session=4f1c2b; theme=dark; canary=1; _ga=GA1.2.3"),
    );
    let get = |name, path, query, headers: &HeaderMap, want| Case {
        name,
        method: Method::GET,
        host: Some("app.example.com"),
        path,
        query,
        headers: headers.clone().into(),
        want: Some(want),
    };
    let plain = HeaderMap::new();
    let mut stable = HeaderMap::new();
    stable.insert(
        "cookie",
        HeaderValue::from_static("session=4f1c2b; theme=dark; canary=0; _ga=GA1.2.3"),
    );
    let cases = vec![
        get("regex_capture", "/v2/items/12345", None, &plain, 3),
        get("cookie_canary", "/account", None, &cookies, 1),
        get(
            "query_canary",
            "/search",
            Some("q=rust+proxy&page=2&version=2"),
            &plain,
            2,
        ),
        // Every condition read to its end, none holding: the catch-all answers.
        get(
            "conditions_fall_back",
            "/search",
            Some("q=rust&page=2"),
            &stable,
            0,
        ),
    ];
    check(router, &cases);
    cases
}

fn input(c: &Case) -> RouteInput<'_, '_> {
    RouteInput {
        method: &c.method,
        host: c.host,
        path: c.path,
        query: c.query,
        headers: &c.headers,
    }
}

fn bench_find(cr: &mut Criterion) {
    let router = Router::build(routes()).expect("bench routes are valid");
    let cases = cases(&router);
    let mut group = cr.benchmark_group("router_find");
    for c in &cases {
        let bump = Bump::new();
        // Reused across iterations: `find` clears it, as the worker's arena does.
        let mut params = BumpVec::new_in(&bump);
        let input = input(c);
        group.bench_function(c.name, |b| {
            b.iter(|| router.find(black_box(&input), &mut params))
        });
    }
    group.finish();
}

fn bench_conditions(cr: &mut Criterion) {
    let router = Router::build(condition_routes()).expect("bench routes are valid");
    let cases = condition_cases(&router);
    let mut group = cr.benchmark_group("router_find_conditions");
    for c in &cases {
        let bump = Bump::new();
        let mut params = BumpVec::new_in(&bump);
        let input = input(c);
        group.bench_function(c.name, |b| {
            b.iter(|| router.find(black_box(&input), &mut params))
        });
    }
    group.finish();
}

fn bench_build(cr: &mut Criterion) {
    let specs = routes();
    cr.bench_function("router_build_50_routes", |b| {
        b.iter(|| Router::build(black_box(specs.clone())).map(|r| r.len()))
    });
}

criterion_group!(benches, bench_find, bench_conditions, bench_build);
criterion_main!(benches);
