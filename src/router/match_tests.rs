//! The route table's tests for query-parameter, cookie and path-regex conditions: how
//! each matches, where regexes rank, how the conditions count in ties, and the errors
//! of building them.

use super::tests::{assert_routes, build, exact, find, find_with, pattern, prefix, req, route};
use super::*;
use bumpalo::Bump;

fn regex(r: &str) -> PathSpec {
    PathSpec::Regex(r.into())
}

fn present(n: &str) -> PairCond {
    PairCond::Present(n.into())
}

fn equals(n: &str, v: &str) -> PairCond {
    PairCond::Equals(n.into(), v.into())
}

#[test]
fn query_conditions_match_decoded_parameters() {
    let mut v2 = route(None, prefix("/api"));
    v2.query = vec![equals("version", "2")];
    let mut debug = route(None, prefix("/api"));
    debug.query = vec![present("debug")];
    let mut both = route(None, prefix("/api"));
    both.query = vec![equals("version", "2"), present("debug")];
    let mut spaced = route(None, prefix("/api"));
    spaced.query = vec![equals("q", "a b&c")];
    let router = build(vec![route(None, prefix("/api")), v2, debug, both, spaced]);
    assert_routes(
        &router,
        vec![
            (req(None, "/api"), Some(0)),
            (req(None, "/api").query("version=2"), Some(1)),
            (req(None, "/api").query("a=1&version=2&b"), Some(1)),
            (req(None, "/api").query("version=3&version=2"), Some(1)),
            (req(None, "/api").query("%76ersion=%32"), Some(1)),
            (req(None, "/api").query("version=2 "), Some(0)),
            (req(None, "/api").query("Version=2"), Some(0)),
            (req(None, "/api").query("debug"), Some(2)),
            (req(None, "/api").query("debug="), Some(2)),
            (req(None, "/api").query("debug=0&version=2"), Some(3)),
            (req(None, "/api").query("q=a%20b%26c"), Some(4)),
            (req(None, "/api").query("q=a+b%26c"), Some(0)),
            // Hostile or malformed queries simply do not match.
            (req(None, "/api").query(""), Some(0)),
            (req(None, "/api").query("&&=x&==&a==b&%&%%%"), Some(0)),
            (req(None, "/api").query("version==2"), Some(0)),
            (req(None, "/api").query("version=%FF%fe%"), Some(0)),
        ],
    );
    let huge: &'static str = Box::leak(format!("{}&version=2", "a=b&".repeat(20_000)).into());
    assert_eq!(find(&router, req(None, "/api").query(huge)), Some(1));
}

#[test]
fn cookie_conditions_read_every_cookie_field() {
    let mut canary = route(None, prefix("/"));
    canary.cookies = vec![equals("canary", "always")];
    let mut session = route(None, prefix("/"));
    session.cookies = vec![present("session")];
    let router = build(vec![route(None, prefix("/")), canary, session]);
    assert_routes(
        &router,
        vec![
            (req(None, "/"), Some(0)),
            (req(None, "/").header("cookie", "canary=always"), Some(1)),
            (
                req(None, "/").header("cookie", "a=1;  canary=always ;b=2"),
                Some(1),
            ),
            // HTTP/2 may send one field per cookie.
            (
                req(None, "/")
                    .header("cookie", "a=1")
                    .header("cookie", "canary=always"),
                Some(1),
            ),
            (req(None, "/").header("cookie", "canary=never"), Some(0)),
            (req(None, "/").header("cookie", "Canary=always"), Some(0)),
            (
                req(None, "/").header("cookie", "canary=\"always\""),
                Some(0),
            ),
            (req(None, "/").header("cookie", "canary=alwaysx"), Some(0)),
            (req(None, "/").header("x-cookie", "canary=always"), Some(0)),
            (req(None, "/").header("cookie", "session"), Some(2)),
            (req(None, "/").header("cookie", "session="), Some(2)),
            // Malformed fields simply do not match.
            (
                req(None, "/").header("cookie", ";;=;=always;canary"),
                Some(0),
            ),
            (req(None, "/").header("cookie", "canary==always"), Some(0)),
        ],
    );
}

#[test]
fn non_utf8_cookie_bytes_do_not_match_or_panic() {
    let mut canary = route(None, PathSpec::Any);
    canary.cookies = vec![equals("canary", "always")];
    let router = build(vec![route(None, PathSpec::Any), canary]);
    let mut map = http::HeaderMap::new();
    map.append(
        http::header::COOKIE,
        HeaderValue::from_bytes(b"\xffcanary=always\xfe").unwrap(),
    );
    map.append(
        http::header::COOKIE,
        HeaderValue::from_bytes(b"x=\xff; canary=always").unwrap(),
    );
    let headers = Headers::from_map(map);
    let bump = Bump::new();
    let mut params = BumpVec::new_in(&bump);
    let input = RouteInput {
        method: &Method::GET,
        host: None,
        path: "/",
        query: None,
        headers: &headers,
    };
    assert_eq!(router.find(&input, &mut params), Some(1));
}

#[test]
fn query_and_cookie_conditions_count_like_headers() {
    let mut header = route(None, PathSpec::Any);
    header.headers = vec![HeaderCond::Present(HeaderName::from_static("x-canary"))];
    let mut cookie_and_query = route(None, PathSpec::Any);
    cookie_and_query.cookies = vec![present("canary")];
    cookie_and_query.query = vec![present("beta")];
    let mut with_method = route(None, PathSpec::Any);
    with_method.methods = vec![Method::GET];
    let router = build(vec![header, cookie_and_query, with_method]);
    assert_routes(
        &router,
        vec![
            (
                req(None, "/")
                    .method(Method::POST)
                    .header("x-canary", "1")
                    .header("cookie", "canary=1")
                    .query("beta"),
                Some(1),
            ),
            (
                req(None, "/").method(Method::POST).header("x-canary", "1"),
                Some(0),
            ),
            // A method condition still outranks any number of them.
            (req(None, "/").header("x-canary", "1"), Some(2)),
        ],
    );
}

#[test]
fn regex_ranks_after_pattern_before_prefix() {
    let router = build(vec![
        route(None, prefix("/")),
        route(None, prefix("/v1")),
        route(None, regex(r"/v[0-9]+/items/(?P<id>[0-9]+)")),
        route(None, pattern("/v1/items/{id}")),
        route(None, exact("/v1/items/0")),
        route(None, regex(r"/v[0-9]+/.*")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(None, "/v1/items/0"), Some(4)),
            (req(None, "/v1/items/7"), Some(3)),
            (req(None, "/v2/items/7"), Some(2)),
            // Earlier regex first; both match.
            (req(None, "/v2/items/7/"), Some(5)),
            (req(None, "/v1/other"), Some(5)),
            (req(None, "/v1"), Some(1)),
            (req(None, "/x"), Some(0)),
        ],
    );
    let (id, caps) = find_with(&router, &req(None, "/v9/items/42"));
    assert_eq!((id, caps), (Some(2), vec![("id".into(), "42".into())]));
}

#[test]
fn exact_host_regex_beats_hostless_exact() {
    let router = build(vec![
        route(None, exact("/a/1")),
        route(Some("api.example.com"), regex("/a/[0-9]")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(Some("api.example.com"), "/a/1"), Some(1)),
            (req(Some("www.example.com"), "/a/1"), Some(0)),
        ],
    );
}

#[test]
fn build_reports_bad_regexes_and_pair_conditions() {
    let mut bad_cookie = route(None, PathSpec::Any);
    bad_cookie.cookies = vec![present("a b")];
    let mut bad_query = route(None, PathSpec::Any);
    bad_query.query = vec![equals("", "1")];
    let errors = Router::build(vec![route(None, regex("/(a")), bad_cookie, bad_query])
        .expect_err("invalid routes");
    let want: Vec<(usize, String)> = vec![
        (
            0,
            r#"invalid path_regex "/(a": unclosed group (at byte 1)"#.into(),
        ),
        (
            1,
            r#"invalid cookie name "a b": expected a token such as "canary""#.into(),
        ),
        (
            2,
            r#"empty query parameter name: expected a name like "version""#.into(),
        ),
    ];
    assert_eq!(errors, want);
}

#[test]
fn query_names_and_values_compare_whole_and_decoded() {
    let mut empty = route(None, PathSpec::Any);
    empty.query = vec![equals("flag", "")];
    let mut ver = route(None, PathSpec::Any);
    ver.query = vec![present("ver")];
    let mut spaced = route(None, PathSpec::Any);
    spaced.query = vec![equals("name", "a b/c")];
    let router = build(vec![route(None, PathSpec::Any), empty, ver, spaced]);
    assert_routes(
        &router,
        vec![
            // No query at all, and one whose parameters are all others.
            (req(None, "/"), Some(0)),
            (req(None, "/").query("x=1"), Some(0)),
            // An empty value: written without `=` or with nothing after it.
            (req(None, "/").query("flag"), Some(1)),
            (req(None, "/").query("flag="), Some(1)),
            (req(None, "/").query("flag=1"), Some(0)),
            (req(None, "/").query("flag=1&flag"), Some(1)),
            // A name is compared whole, never as a prefix of another.
            (req(None, "/").query("version=2"), Some(0)),
            (req(None, "/").query("xver=1"), Some(0)),
            (req(None, "/").query("ver=1"), Some(2)),
            (req(None, "/").query("v%65r"), Some(2)),
            // The configured value is plain text; the request's is decoded.
            (req(None, "/").query("name=a%20b%2Fc"), Some(3)),
            (req(None, "/").query("name=a%20b/c"), Some(3)),
            (req(None, "/").query("name=a%20b%2fc"), Some(3)),
            (req(None, "/").query("name=a%20b%2Fcd"), Some(0)),
        ],
    );
}

#[test]
fn cookie_names_compare_whole_and_values_as_sent() {
    let mut canary = route(None, PathSpec::Any);
    canary.cookies = vec![present("canary")];
    let mut quoted = route(None, PathSpec::Any);
    quoted.cookies = vec![equals("q", "\"x\"")];
    let mut empty = route(None, PathSpec::Any);
    empty.cookies = vec![equals("e", "")];
    let router = build(vec![route(None, PathSpec::Any), canary, quoted, empty]);
    assert_routes(
        &router,
        vec![
            (req(None, "/").header("cookie", "canaryx=1"), Some(0)),
            (req(None, "/").header("cookie", "xcanary=1"), Some(0)),
            (req(None, "/").header("cookie", "can=1"), Some(0)),
            (req(None, "/").header("cookie", "a=canary"), Some(0)),
            (req(None, "/").header("cookie", "a=1; canary=1"), Some(1)),
            (req(None, "/").header("cookie", "a=1;\tcanary"), Some(1)),
            // Quotes are part of the value: a quoted condition needs them.
            (req(None, "/").header("cookie", "q=\"x\""), Some(2)),
            (req(None, "/").header("cookie", "q=x"), Some(0)),
            (req(None, "/").header("cookie", "e="), Some(3)),
            (req(None, "/").header("cookie", "e"), Some(3)),
            (req(None, "/").header("cookie", "e=1"), Some(0)),
        ],
    );
}

#[test]
fn a_regex_matches_the_whole_path_only() {
    let router = build(vec![
        route(None, prefix("/")),
        route(None, regex("/a|/b")),
        route(None, regex("(?m)^/c$")),
        route(None, regex("/d$|")),
        route(None, regex(r"/e\z.*")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(None, "/a"), Some(1)),
            (req(None, "/b"), Some(1)),
            // Each side of a top-level alternation is anchored too.
            (req(None, "/a/x"), Some(0)),
            (req(None, "/x/b"), Some(0)),
            (req(None, "/ab"), Some(0)),
            (req(None, "/c"), Some(2)),
            // Multi-line anchors cannot end or start the match at a newline.
            (req(None, "/c\n/x"), Some(0)),
            (req(None, "/x\n/c"), Some(0)),
            (req(None, "/c/"), Some(0)),
            (req(None, "/d"), Some(3)),
            // An empty branch matches only the empty path, which no request has.
            (req(None, "/d/x"), Some(0)),
            (req(None, "/e"), Some(4)),
            (req(None, "/e/x"), Some(0)),
        ],
    );
}

#[test]
fn named_groups_are_params_and_unnamed_ones_are_not() {
    let router = build(vec![route(
        None,
        regex(r"/(v[0-9]+)/(?P<kind>users|teams)/(?<id>[0-9]+)(?:\.(?P<format>json|xml))?"),
    )]);
    let owned = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        find_with(&router, &req(None, "/v2/users/42.json")),
        (
            Some(0),
            owned(&[("kind", "users"), ("id", "42"), ("format", "json")])
        )
    );
    // An optional group that took no part captures "".
    assert_eq!(
        find_with(&router, &req(None, "/v2/teams/7")),
        (
            Some(0),
            owned(&[("kind", "teams"), ("id", "7"), ("format", "")])
        )
    );
    assert_eq!(
        find_with(&router, &req(None, "/v2/teams/x")),
        (None, Vec::new())
    );
    assert_eq!(
        regex(r"/(v[0-9]+)/(?P<kind>a)/(?<id>b)").param_names(),
        ["kind", "id"]
    );
}

#[test]
fn conditions_break_ties_between_regexes() {
    let mut canary = route(None, regex("/app/.*"));
    canary.cookies = vec![equals("canary", "1")];
    let mut posts = route(None, regex("/app/.*"));
    posts.methods = vec![Method::POST];
    let router = build(vec![
        route(None, prefix("/")),
        route(None, regex("/app/.*")),
        canary,
        posts,
        // A longer prefix still ranks below any regex.
        route(None, prefix("/app/very/long/prefix")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(None, "/app/x"), Some(1)),
            (req(None, "/app/x").header("cookie", "canary=1"), Some(2)),
            (req(None, "/app/x").header("cookie", "canary=2"), Some(1)),
            (
                req(None, "/app/x")
                    .method(Method::POST)
                    .header("cookie", "canary=1"),
                Some(3),
            ),
            (req(None, "/app/very/long/prefix/x"), Some(1)),
            (req(None, "/app"), Some(0)),
        ],
    );
}

#[test]
fn the_path_ladder_holds_for_each_host_class() {
    let host = Some("api.example.com");
    let router = build(vec![
        route(host, prefix("/")),
        route(host, regex("/v1/.*")),
        route(host, pattern("/v1/{id}")),
        route(host, exact("/v1/me")),
        route(None, regex("/v1/.*")),
    ]);
    assert_routes(
        &router,
        vec![
            (req(host, "/v1/me"), Some(3)),
            (req(host, "/v1/42"), Some(2)),
            (req(host, "/v1/42/x"), Some(1)),
            (req(host, "/v2"), Some(0)),
            (req(Some("other.example.com"), "/v1/42"), Some(4)),
        ],
    );
}

#[test]
fn hostile_regexes_are_refused_at_build() {
    let errors = Router::build(vec![
        route(None, regex(r"/\w{1000}")),
        route(None, regex(r"/((a{100}){100}){100}")),
        route(
            None,
            regex(&format!("/{}a{}", "(".repeat(300), ")".repeat(300))),
        ),
        route(None, regex(&"(x)".repeat(40))),
        route(None, regex("/(?P<a>x)(?P<a>y)")),
    ])
    .expect_err("hostile regexes");
    let ids: Vec<usize> = errors.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4], "{errors:#?}");
    let size = |p: &str| {
        format!(
            "path_regex {p:?} compiles to more than the size limit of 1048576 bytes: use \
             fewer or smaller repetitions, or ASCII classes such as (?-u:\\w) instead of \
             Unicode ones"
        )
    };
    assert_eq!(errors[0].1, size(r"/\w{1000}"));
    assert_eq!(errors[1].1, size(r"/((a{100}){100}){100}"));
    assert!(
        errors[2].1.contains("exceed") && errors[2].1.contains("nest"),
        "{}",
        errors[2].1
    );
    assert!(
        errors[3].1.ends_with(
            "has 40 capture groups: expected at most 31 (use (?:...) for groups that capture nothing)"
        ),
        "{}",
        errors[3].1
    );
    assert_eq!(
        errors[4].1,
        r#"invalid path_regex "/(?P<a>x)(?P<a>y)": duplicate capture group name (at byte 13)"#
    );
    // A hundred Unicode word characters are already too many (the constant's doc).
    assert!(Router::build(vec![route(None, regex(r"/\w{100}"))]).is_err());
    // The same regex in ASCII fits.
    assert!(Router::build(vec![route(None, regex(r"/(?-u:\w{1000})"))]).is_ok());
}

#[test]
fn each_router_keeps_its_own_regex_caches() {
    // Interleaved on one thread, three tables' regexes (more than a worker keeps) at the
    // same indices never use each other's caches.
    let routers: Vec<Router> = ["/a/[0-9]+", "/b/(?P<id>[a-z]+)", "/c/.*"]
        .iter()
        .map(|r| build(vec![route(None, regex("/x")), route(None, regex(r))]))
        .collect();
    for _ in 0..3 {
        for (router, (hit, miss)) in
            routers
                .iter()
                .zip([("/a/12", "/b/xy"), ("/b/xy", "/a/12"), ("/c/q/r", "/b/xy")])
        {
            assert_eq!(find(router, req(None, "/x")), Some(0));
            assert_eq!(find(router, req(None, hit)), Some(1));
            assert_eq!(find(router, req(None, miss)), None);
        }
    }
    // And on other threads, each with its own caches.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| assert_eq!(find(&routers[1], req(None, "/b/ok")), Some(1)));
        }
    });
}
