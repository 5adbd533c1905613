//! The route table: compiled once per configuration from [`RouteSpec`]s, immutable
//! afterwards, and read lock-free by worker threads to pick the route for each request.
//!
//! # Precedence
//!
//! The most specific matching route wins; ties go to the route earlier in the file.
//!
//! 1. Host: an exact host beats a wildcard host, a longer wildcard suffix beats a shorter
//!    one (`*.a.example.com` before `*.example.com`), and any wildcard beats a route with
//!    no host condition. When no route of the best host class matches on its other
//!    conditions, the next class is tried, so an exact-host route for `/admin` does not
//!    hide a host-less catch-all for other paths.
//! 2. Path: exact > pattern (more literal segments first, then more segments, a trailing
//!    `{*rest}` counting as a segment) > prefix (longer prefix first) > no path condition.
//! 3. A route with a method condition beats one without; then more header conditions beat
//!    fewer.
//! 4. Earlier in the file wins.
//!
//! Matching uses the raw path as received (no percent-decoding, no query). Hosts match
//! case-insensitively after dropping the port and one trailing dot. Header `Equals`
//! holds when any value of that header equals the given value byte for byte.

mod host;
mod pattern;

use std::cmp::Reverse;
use std::collections::HashMap;

use bumpalo::collections::Vec as BumpVec;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use host::{HostMatcher, MAX_HOST_LEN};
use pattern::PathMatcher;

/// One configured route; its position in the list given to [`Router::build`] is its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// `None` matches any host; `"api.example.com"` matches exactly (case-insensitive);
    /// `"*.example.com"` matches any subdomain at any depth but not `example.com` itself.
    pub host: Option<String>,
    /// The path condition.
    pub path: PathSpec,
    /// Empty matches any method.
    pub methods: Vec<Method>,
    /// All must hold.
    pub headers: Vec<HeaderCond>,
}

/// The path condition of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSpec {
    /// No path condition.
    Any,
    /// The whole path, e.g. `"/healthz"`.
    Exact(String),
    /// A prefix ending on a segment boundary: `"/api"` matches `/api`, `/api/` and
    /// `/api/x` but not `/apix`; `"/api/"` matches `/api/` and `/api/x`; `"/"` matches
    /// every path.
    Prefix(String),
    /// Segments compared literally, `{name}` capturing exactly one non-empty segment and a
    /// trailing `{*name}` capturing the remainder (possibly empty, possibly with `/`), e.g.
    /// `"/users/{id}/files/{*rest}"`. `"/files/{*rest}"` also matches `/files` with an empty
    /// `rest`; a path with a trailing slash has an extra, empty segment.
    Pattern(String),
}

/// A header condition of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderCond {
    /// Holds when the header is present, whatever its value.
    Present(HeaderName),
    /// Holds when any value of the header equals this one byte for byte.
    Equals(HeaderName, HeaderValue),
}

/// The parts of a request the router looks at.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'p, 'h> {
    /// The request method.
    pub method: &'p Method,
    /// As received: may carry a port, any case, or a trailing dot.
    pub host: Option<&'p str>,
    /// The raw path without the query.
    pub path: &'p str,
    /// The request headers (for header conditions).
    pub headers: &'h HeaderMap,
}

/// The compiled, immutable route table.
#[derive(Debug)]
pub struct Router {
    /// Indexed by route id.
    routes: Vec<Route>,
    /// Keyed by lowercase host; each list is sorted most specific first, as are the others.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// Keyed by lowercase suffix with its leading dot, longest suffix first.
    wildcard: Vec<(Box<str>, Vec<usize>)>,
    any_host: Vec<usize>,
}

#[derive(Debug)]
struct Route {
    path: PathMatcher,
    methods: Box<[Method]>,
    headers: Box<[HeaderCond]>,
}

impl Route {
    /// Sort key for precedence within a host class: a higher key is more specific.
    fn specificity(&self) -> ((u8, usize, usize), bool, usize) {
        (
            self.path.specificity(),
            !self.methods.is_empty(),
            self.headers.len(),
        )
    }

    fn matches_method_and_headers(&self, input: &RouteInput<'_, '_>) -> bool {
        (self.methods.is_empty() || self.methods.contains(input.method))
            && self.headers.iter().all(|cond| match cond {
                HeaderCond::Present(name) => input.headers.contains_key(name),
                HeaderCond::Equals(name, value) => {
                    input.headers.get_all(name).iter().any(|v| v == value)
                }
            })
    }
}

impl Router {
    /// Compiles the table, or returns every invalid spec as (route index, message).
    pub fn build(specs: Vec<RouteSpec>) -> Result<Router, Vec<(usize, String)>> {
        let mut errors = Vec::new();
        let mut routes = Vec::with_capacity(specs.len());
        let mut hosts = Vec::with_capacity(specs.len());
        for (id, spec) in specs.into_iter().enumerate() {
            let host = HostMatcher::compile(spec.host.as_deref())
                .map_err(|e| errors.push((id, e)))
                .ok();
            let path = PathMatcher::compile(&spec.path)
                .map_err(|e| errors.push((id, e)))
                .ok();
            if let (Some(host), Some(path)) = (host, path) {
                hosts.push(host);
                routes.push(Route {
                    path,
                    methods: spec.methods.into(),
                    headers: spec.headers.into(),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        // A stable sort on descending specificity keeps file order among equals.
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by_key(|&id| Reverse(routes[id].specificity()));

        let mut exact: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut wildcard: Vec<(Box<str>, Vec<usize>)> = Vec::new();
        let mut any_host = Vec::new();
        for id in order {
            match &hosts[id] {
                HostMatcher::Any => any_host.push(id),
                HostMatcher::Exact(h) => exact.entry(h.clone()).or_default().push(id),
                HostMatcher::Wildcard(suffix) => {
                    match wildcard.iter_mut().find(|(s, _)| s == suffix) {
                        Some((_, list)) => list.push(id),
                        None => wildcard.push((suffix.clone(), vec![id])),
                    }
                }
            }
        }
        wildcard.sort_by_key(|(suffix, _)| Reverse(suffix.len()));

        Ok(Router {
            routes,
            exact,
            wildcard,
            any_host,
        })
    }

    /// Finds the most specific matching route. On success `params` holds the captures of
    /// its path pattern as (name, value) in pattern order; otherwise it is left empty.
    pub fn find<'r, 'p>(
        &'r self,
        input: &RouteInput<'p, '_>,
        params: &mut BumpVec<'_, (&'r str, &'p str)>,
    ) -> Option<usize> {
        params.clear();
        let mut buf = [0u8; MAX_HOST_LEN];
        if let Some(host) = input.host.and_then(|h| host::normalize(h, &mut buf)) {
            if let Some(id) = self
                .exact
                .get(host)
                .and_then(|list| self.first_match(list, input, params))
            {
                return Some(id);
            }
            for (suffix, list) in &self.wildcard {
                if host::wildcard_matches(host, suffix) {
                    if let Some(id) = self.first_match(list, input, params) {
                        return Some(id);
                    }
                }
            }
        }
        self.first_match(&self.any_host, input, params)
    }

    fn first_match<'r, 'p>(
        &'r self,
        candidates: &[usize],
        input: &RouteInput<'p, '_>,
        params: &mut BumpVec<'_, (&'r str, &'p str)>,
    ) -> Option<usize> {
        for &id in candidates {
            let route = &self.routes[id];
            // Cheap checks first so the path only captures for viable candidates.
            if !route.matches_method_and_headers(input) {
                continue;
            }
            if route.path.matches(input.path, params) {
                return Some(id);
            }
            params.clear();
        }
        None
    }

    /// Number of routes in the table.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bumpalo::Bump;

    fn route(host: Option<&str>, path: PathSpec) -> RouteSpec {
        RouteSpec {
            host: host.map(str::to_owned),
            path,
            methods: Vec::new(),
            headers: Vec::new(),
        }
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

    fn build(specs: Vec<RouteSpec>) -> Router {
        Router::build(specs).expect("valid routes")
    }

    struct Req {
        method: Method,
        host: Option<&'static str>,
        path: &'static str,
        headers: HeaderMap,
    }

    fn req(host: Option<&'static str>, path: &'static str) -> Req {
        Req {
            method: Method::GET,
            host,
            path,
            headers: HeaderMap::new(),
        }
    }

    impl Req {
        fn method(mut self, m: Method) -> Req {
            self.method = m;
            self
        }

        fn header(mut self, name: &'static str, value: &'static str) -> Req {
            self.headers.append(name, HeaderValue::from_static(value));
            self
        }
    }

    /// Route id and captures, owned so the arena can be dropped.
    fn find_with(router: &Router, r: &Req) -> (Option<usize>, Vec<(String, String)>) {
        let bump = Bump::new();
        let mut params = BumpVec::new_in(&bump);
        let input = RouteInput {
            method: &r.method,
            host: r.host,
            path: r.path,
            headers: &r.headers,
        };
        let id = router.find(&input, &mut params);
        let caps = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (id, caps)
    }

    fn find(router: &Router, r: Req) -> Option<usize> {
        find_with(router, &r).0
    }

    fn assert_routes(router: &Router, cases: Vec<(Req, Option<usize>)>) {
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
        let (method, headers) = (Method::GET, HeaderMap::new());
        let bump = Bump::new();
        let mut params = BumpVec::new_in(&bump);
        params.push(("stale", "value"));
        let input = RouteInput {
            method: &method,
            host: None,
            path: "/users/42/comments",
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
}
