//! The route table's tests: precedence, captures, hosts, conditions, and the errors of building it.

use super::*;
use bumpalo::Bump;

pub(super) fn route(host: Option<&str>, path: PathSpec) -> RouteSpec {
    RouteSpec {
        host: host.map(str::to_owned),
        path,
        methods: Vec::new(),
        headers: Vec::new(),
        query: Vec::new(),
        cookies: Vec::new(),
    }
}

pub(super) fn exact(p: &str) -> PathSpec {
    PathSpec::Exact(p.into())
}

pub(super) fn prefix(p: &str) -> PathSpec {
    PathSpec::Prefix(p.into())
}

pub(super) fn pattern(p: &str) -> PathSpec {
    PathSpec::Pattern(p.into())
}

pub(super) fn build(specs: Vec<RouteSpec>) -> Router {
    Router::build(specs).expect("valid routes")
}

pub(super) struct Req {
    method: Method,
    host: Option<&'static str>,
    path: &'static str,
    query: Option<&'static str>,
    /// As sent: routed once from a map and once from an HTTP/1.1 head.
    headers: Vec<(&'static str, &'static str)>,
}

pub(super) fn req(host: Option<&'static str>, path: &'static str) -> Req {
    Req {
        method: Method::GET,
        host,
        path,
        query: None,
        headers: Vec::new(),
    }
}

impl Req {
    pub(super) fn method(mut self, m: Method) -> Req {
        self.method = m;
        self
    }

    pub(super) fn query(mut self, q: &'static str) -> Req {
        self.query = Some(q);
        self
    }

    pub(super) fn header(mut self, name: &'static str, value: &'static str) -> Req {
        self.headers.push((name, value));
        self
    }
}

/// Route id and captures, owned so the arena can be dropped; the same
/// whether the headers are a map or an HTTP/1.1 head's fields.
pub(super) fn find_with(router: &Router, r: &Req) -> (Option<usize>, Vec<(String, String)>) {
    let bump = Bump::new();
    let mut map = http::HeaderMap::new();
    for (name, value) in &r.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        map.append(name, HeaderValue::from_static(value));
    }
    let map = Headers::from_map(map);
    let fields = bump.alloc_slice_fill_iter(r.headers.iter().map(|&(name, value)| {
        let value = value.as_bytes();
        crate::context::Field { name, value }
    }));
    let wire = Headers::wire(fields, &bump);
    let mut found = [&map, &wire].map(|headers| {
        let mut params = BumpVec::new_in(&bump);
        let input = RouteInput {
            method: &r.method,
            host: r.host,
            path: r.path,
            query: r.query,
            headers,
        };
        let id = router.find(&input, &mut params);
        let caps: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (id, caps)
    });
    assert_eq!(found[0], found[1], "a map and an HTTP/1.1 head route alike");
    std::mem::take(&mut found[0])
}

pub(super) fn find(router: &Router, r: Req) -> Option<usize> {
    find_with(router, &r).0
}

pub(super) fn assert_routes(router: &Router, cases: Vec<(Req, Option<usize>)>) {
    for (r, want) in cases {
        let desc = format!("{} host={:?} path={:?}", r.method, r.host, r.path);
        assert_eq!(find(router, r), want, "{desc}");
    }
}

#[test]
fn path_kinds_rank_exact_pattern_prefix_any() {
    let router = build(vec![
        route(None, PathSpec::Any),
        route(None, prefix("/users")),
        route(None, pattern("/users/{id}")),
        route(None, exact("/users/me")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(None, "/users/me"), Some(3)),
            (req(None, "/users/42"), Some(2)),
            (req(None, "/users/42/posts"), Some(1)),
            (req(None, "/users"), Some(1)),
            (req(None, "/other"), Some(0)),
        ],
    );
}

#[test]
fn longer_prefix_wins_regardless_of_order() {
    let router = build(vec![
        route(None, prefix("/")),
        route(None, prefix("/api")),
        route(None, prefix("/api/v2")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(None, "/api/v2/x"), Some(2)),
            (req(None, "/api/v2"), Some(2)),
            (req(None, "/api/v20"), Some(1)),
            (req(None, "/api"), Some(1)),
            (req(None, "/apix"), Some(0)),
            (req(None, "/"), Some(0)),
        ],
    );
}

#[test]
fn patterns_rank_by_literals_then_segments() {
    let router = build(vec![
        route(None, pattern("/{a}/{b}")),
        route(None, pattern("/{a}/{b}/{c}")),
        route(None, pattern("/users/{id}")),
        route(None, pattern("/users/{id}/posts")),
        route(None, pattern("/{*all}")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(None, "/users/1/posts"), Some(3)),
            (req(None, "/users/1"), Some(2)),
            (req(None, "/x/1"), Some(0)),
            (req(None, "/x/1/y"), Some(1)),
            (req(None, "/x"), Some(4)),
            (req(None, "/x/1/y/z"), Some(4)),
        ],
    );
}

#[test]
fn find_returns_captures_of_the_matched_route() {
    let router = build(vec![
        route(None, pattern("/users/{id}/posts/{post}")),
        route(None, pattern("/static/{*rest}")),
    ]);
    let (id, caps) = find_with(&router, &req(None, "/users/42/posts/7"));
    assert_eq!(id, Some(0));
    assert_eq!(
        caps,
        [("id".into(), "42".into()), ("post".into(), "7".into())]
    );
    let (id, caps) = find_with(&router, &req(None, "/static/css/site.css"));
    assert_eq!(id, Some(1));
    assert_eq!(caps, [("rest".into(), "css/site.css".into())]);
}

#[test]
fn params_are_cleared_after_failed_candidates_and_on_miss() {
    // The first candidate captures "id" before failing on its last literal segment.
    let router = build(vec![
        route(None, pattern("/users/{id}/posts")),
        route(None, prefix("/users")),
    ]);
    let (id, caps) = find_with(&router, &req(None, "/users/42/comments"));
    assert_eq!((id, caps), (Some(1), vec![]));

    let router = build(vec![route(None, pattern("/users/{id}/posts"))]);
    let (method, headers) = (Method::GET, Headers::default());
    let bump = Bump::new();
    let mut params = BumpVec::new_in(&bump);
    params.push(("stale", "value"));
    let input = RouteInput {
        method: &method,
        host: None,
        path: "/users/42/comments",
        query: None,
        headers: &headers,
    };
    assert_eq!(router.find(&input, &mut params), None);
    assert!(params.is_empty());
}

#[test]
fn exact_host_beats_wildcard_beats_any() {
    let router = build(vec![
        route(None, prefix("/")),
        route(Some("*.example.com"), prefix("/")),
        route(Some("api.example.com"), prefix("/")),
        route(Some("*.a.example.com"), prefix("/")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(Some("api.example.com"), "/"), Some(2)),
            (req(Some("www.example.com"), "/"), Some(1)),
            (req(Some("x.y.example.com"), "/"), Some(1)),
            (req(Some("x.a.example.com"), "/"), Some(3)),
            (req(Some("a.example.com"), "/"), Some(1)),
            (req(Some("example.com"), "/"), Some(0)),
            (req(Some("other.org"), "/"), Some(0)),
            (req(None, "/"), Some(0)),
        ],
    );
}

#[test]
fn host_class_beats_path_specificity() {
    let router = build(vec![
        route(None, exact("/admin")),
        route(Some("*.example.com"), prefix("/")),
    ]);
    assert_routes(
        &router,
        vec![(req(Some("a.example.com"), "/admin"), Some(1))],
    );
}

#[test]
fn host_classes_fall_through_when_other_conditions_fail() {
    let router = build(vec![
        route(None, prefix("/")),
        route(Some("*.example.com"), prefix("/app")),
        route(Some("api.example.com"), exact("/admin")),
        route(Some("*.a.example.com"), exact("/deep")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(Some("api.example.com"), "/admin"), Some(2)),
            (req(Some("api.example.com"), "/app/x"), Some(1)),
            (req(Some("api.example.com"), "/other"), Some(0)),
            (req(Some("x.a.example.com"), "/deep"), Some(3)),
            (req(Some("x.a.example.com"), "/app"), Some(1)),
            (req(Some("x.a.example.com"), "/"), Some(0)),
        ],
    );
}

#[test]
fn host_is_normalised_before_matching() {
    let router = build(vec![
        route(Some("API.example.com"), PathSpec::Any),
        route(Some("*.example.com"), PathSpec::Any),
        route(Some("[::1]"), PathSpec::Any),
        route(Some("127.0.0.1"), PathSpec::Any),
        route(Some("trailing.example.org."), PathSpec::Any),
    ]);
    assert_routes(
        &router,
        vec![
            (req(Some("api.example.com:8080"), "/"), Some(0)),
            (req(Some("Api.Example.COM"), "/"), Some(0)),
            (req(Some("api.example.com."), "/"), Some(0)),
            (req(Some("api.example.com.:443"), "/"), Some(0)),
            (req(Some("WWW.EXAMPLE.COM:80"), "/"), Some(1)),
            (req(Some("www.example.com."), "/"), Some(1)),
            (req(Some("[::1]:8080"), "/"), Some(2)),
            (req(Some("[::1]"), "/"), Some(2)),
            (req(Some("[::2]"), "/"), None),
            (req(Some("127.0.0.1:3000"), "/"), Some(3)),
            (req(Some("trailing.example.org"), "/"), Some(4)),
        ],
    );
}

#[test]
fn overlong_or_missing_host_only_reaches_hostless_routes() {
    let long: &'static str = Box::leak(format!("{}.example.com", "a".repeat(300)).into());
    let router = build(vec![
        route(Some("*.example.com"), PathSpec::Any),
        route(None, exact("/fallback")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(Some(long), "/"), None),
            (req(Some(long), "/fallback"), Some(1)),
            (req(None, "/"), None),
            (req(None, "/fallback"), Some(1)),
        ],
    );
}

#[test]
fn method_condition_beats_none_and_filters() {
    let mut post = route(None, prefix("/api"));
    post.methods = vec![Method::POST, Method::PUT];
    let router = build(vec![route(None, prefix("/api")), post]);
    assert_routes(
        &router,
        vec![
            (req(None, "/api").method(Method::POST), Some(1)),
            (req(None, "/api").method(Method::PUT), Some(1)),
            (req(None, "/api").method(Method::GET), Some(0)),
        ],
    );

    let mut only_delete = route(None, PathSpec::Any);
    only_delete.methods = vec![Method::DELETE];
    let router = build(vec![only_delete]);
    assert_routes(
        &router,
        vec![
            (req(None, "/").method(Method::DELETE), Some(0)),
            (req(None, "/"), None),
        ],
    );
}

#[test]
fn path_specificity_outranks_method_condition() {
    let mut get_any = route(None, prefix("/"));
    get_any.methods = vec![Method::GET];
    let router = build(vec![get_any, route(None, exact("/x"))]);
    assert_routes(&router, vec![(req(None, "/x"), Some(1))]);
}

#[test]
fn more_header_conditions_win_and_all_must_hold() {
    let x_ver = HeaderName::from_static("x-version");
    let x_beta = HeaderName::from_static("x-beta");
    let mut one = route(None, PathSpec::Any);
    one.headers = vec![HeaderCond::Present(x_beta.clone())];
    let mut two = route(None, PathSpec::Any);
    two.headers = vec![
        HeaderCond::Present(x_beta),
        HeaderCond::Equals(x_ver, HeaderValue::from_static("2")),
    ];
    let router = build(vec![route(None, PathSpec::Any), one, two]);
    assert_routes(
        &router,
        vec![
            (req(None, "/").header("x-beta", "1"), Some(1)),
            (
                req(None, "/").header("x-beta", "").header("x-version", "2"),
                Some(2),
            ),
            (
                req(None, "/")
                    .header("x-beta", "1")
                    .header("x-version", "3"),
                Some(1),
            ),
            (req(None, "/").header("x-version", "2"), Some(0)),
            (req(None, "/"), Some(0)),
        ],
    );
}

#[test]
fn header_equals_checks_every_value_exactly() {
    let mut spec = route(None, PathSpec::Any);
    spec.headers = vec![HeaderCond::Equals(
        HeaderName::from_static("x-tenant"),
        HeaderValue::from_static("acme"),
    )];
    let router = build(vec![spec]);
    assert_routes(
        &router,
        vec![
            (
                req(None, "/")
                    .header("x-tenant", "other")
                    .header("x-tenant", "acme"),
                Some(0),
            ),
            (req(None, "/").header("X-Tenant", "acme"), Some(0)),
            (req(None, "/").header("x-tenant", "ACME"), None),
            (req(None, "/").header("x-tenant", "acme "), None),
        ],
    );
}

#[test]
fn method_outranks_header_count() {
    let mut with_method = route(None, PathSpec::Any);
    with_method.methods = vec![Method::GET];
    let mut with_headers = route(None, PathSpec::Any);
    with_headers.headers = vec![
        HeaderCond::Present(HeaderName::from_static("a")),
        HeaderCond::Present(HeaderName::from_static("b")),
    ];
    let router = build(vec![with_headers, with_method]);
    assert_routes(
        &router,
        vec![(req(None, "/").header("a", "1").header("b", "1"), Some(1))],
    );
}

#[test]
fn ties_go_to_the_earlier_route() {
    let router = build(vec![
        route(None, pattern("/{a}/x")),
        route(None, pattern("/y/{b}")),
        route(None, prefix("/z")),
        route(None, prefix("/z")),
        route(Some("h.example.com"), exact("/e")),
        route(Some("H.EXAMPLE.COM"), exact("/e")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(None, "/y/x"), Some(0)),
            (req(None, "/z/1"), Some(2)),
            (req(Some("h.example.com"), "/e"), Some(4)),
        ],
    );
}

#[test]
fn no_match_returns_none() {
    let router = build(vec![
        route(Some("api.example.com"), prefix("/api")),
        route(None, exact("/healthz")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(Some("api.example.com"), "/other"), None),
            (req(Some("web.example.com"), "/api"), None),
            (req(None, "/healthz/"), None),
            (req(None, ""), None),
        ],
    );
    let empty = build(Vec::new());
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    assert_eq!(find(&empty, req(None, "/")), None);
}

#[test]
fn len_counts_all_routes() {
    let router = build(vec![
        route(None, PathSpec::Any),
        route(Some("a.example.com"), PathSpec::Any),
        route(Some("*.example.com"), PathSpec::Any),
    ]);
    assert_eq!(router.len(), 3);
    assert!(!router.is_empty());
}

#[test]
fn build_reports_every_invalid_route() {
    let errors = Router::build(vec![
        route(None, pattern("/ok/{id}")),
        route(None, pattern("/a/{}/b")),
        route(Some("*."), prefix("/")),
        route(Some("bad host"), pattern("/{*rest}/x")),
        route(None, pattern("/{id}/{id}")),
        route(None, exact("healthz")),
    ])
    .expect_err("invalid routes");
    let want: Vec<(usize, String)> = vec![
        (1, r#"empty parameter name in path pattern "/a/{}/b""#.into()),
        (
            2,
            r#"wildcard host "*." needs a domain after "*.", as in "*.example.com""#.into(),
        ),
        (
            3,
            r#"host "bad host" contains ' ': expected letters, digits, '-', '_' or '.' (use punycode for international names)"#.into(),
        ),
        (
            3,
            r#"{*rest} must be the last segment in path pattern "/{*rest}/x""#.into(),
        ),
        (
            4,
            r#"duplicate parameter name "id" in path pattern "/{id}/{id}""#.into(),
        ),
        (5, r#"exact path "healthz" must start with '/'"#.into()),
    ];
    assert_eq!(errors, want);
}

#[test]
fn router_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Router>();
}
