//! Route selection over real sockets: table-style cases (client request → which
//! origin answered, or which status the gateway gave), one fixed origin per
//! route target so the answering origin names the route that won.
//! The precedence rules under test are the ones in `src/router/mod.rs`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;

/// What the client should get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Proxied to the origin of this name (its `x-origin` header and body).
    Origin(&'static str),
    /// Answered by the gateway itself with this status.
    Status(u16),
}

/// One client request and its expected outcome.
struct Case {
    name: &'static str,
    method: &'static str,
    host: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
}

/// A GET with default Host, for the tables where only the path matters.
fn get_case(name: &'static str, path: &'static str, expect: Expect) -> Case {
    Case {
        name,
        method: "GET",
        host: "test.local",
        path,
        headers: &[],
        expect,
    }
}

/// A gateway whose routes are `routes` in file order, each `(origin, match)`:
/// `origin` names the fixed origin (and upstream) the route goes to, `match` is
/// the TOML inline table of its match conditions (`""` for none).
struct Table {
    gw: common::TestGateway,
    origins: BTreeMap<&'static str, Origin>,
}

impl Table {
    fn new(routes: &[(&'static str, &str)]) -> Table {
        let mut origins = BTreeMap::new();
        for (name, _) in routes {
            origins
                .entry(*name)
                .or_insert_with(|| Origin::fixed(name, 200, name));
        }
        let mut toml = String::from("[[listeners]]\naddress = \"127.0.0.1:0\"\n\n");
        for (name, origin) in &origins {
            toml.push_str(&format!(
                "[upstreams.{name}]\nendpoints = [\"{}\"]\nconnect_timeout = \"1s\"\nresponse_header_timeout = \"2s\"\n\n",
                origin.addr
            ));
        }
        for (i, (name, matcher)) in routes.iter().enumerate() {
            toml.push_str(&format!(
                "[[routes]]\nname = \"r{}-{name}\"\nupstream = \"{name}\"\n",
                i + 1
            ));
            if !matcher.is_empty() {
                toml.push_str(&format!("match = {matcher}\n"));
            }
            toml.push('\n');
        }
        Table {
            gw: gateway(&toml),
            origins,
        }
    }

    /// Runs every case over one keep-alive connection and reports all mismatches at once.
    async fn check(&self, cases: &[Case]) {
        let mut client = H1::connect(self.gw.addr()).await;
        let mut failures = Vec::new();
        for case in cases {
            let mut b = Request::builder()
                .method(case.method)
                .uri(case.path)
                .header("host", case.host);
            for (k, v) in case.headers {
                b = b.header(*k, *v);
            }
            let req = b.body(Full::new(Bytes::new())).unwrap();
            let reply = tokio::time::timeout(Duration::from_secs(5), client.send(req))
                .await
                .unwrap_or_else(|_| panic!("case {:?} timed out", case.name));
            let got = match reply.headers.get("x-origin") {
                Some(o) => format!("origin {}", o.to_str().unwrap()),
                None => format!("status {}", reply.status.as_u16()),
            };
            let ok = match case.expect {
                Expect::Origin(o) => {
                    reply.status == 200 && got == format!("origin {o}") && reply.text() == o
                }
                Expect::Status(s) => reply.status == s && reply.headers.get("x-origin").is_none(),
            };
            if !ok {
                failures.push(format!(
                    "{}: {} {} (host {:?}, headers {:?}): expected {:?}, got {got} {:?}",
                    case.name,
                    case.method,
                    case.path,
                    case.host,
                    case.headers,
                    case.expect,
                    reply.text()
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }

    fn requests(&self, origin: &str) -> usize {
        self.origins[origin].requests()
    }
}

use Expect::{Origin as O, Status};

#[tokio::test]
async fn path_kinds_rank_exact_then_pattern_then_prefix_then_any() {
    // Least specific first in the file, so file order cannot explain the results.
    let t = Table::new(&[
        ("any", ""),
        ("api", r#"{ path_prefix = "/api" }"#),
        ("api-v2", r#"{ path_prefix = "/api/v2" }"#),
        ("user", r#"{ path_pattern = "/api/v2/users/{id}" }"#),
        ("me", r#"{ path = "/api/v2/users/me" }"#),
        ("files", r#"{ path_pattern = "/files/{*rest}" }"#),
        ("slash", r#"{ path_prefix = "/docs/" }"#),
    ]);
    t.check(&[
        get_case("exact beats pattern", "/api/v2/users/me", O("me")),
        get_case("pattern beats prefix", "/api/v2/users/42", O("user")),
        get_case(
            "query is not part of the path",
            "/api/v2/users/me?x=1",
            O("me"),
        ),
        get_case(
            "pattern needs its segment count",
            "/api/v2/users/42/x",
            O("api-v2"),
        ),
        get_case(
            "pattern segment must be non-empty",
            "/api/v2/users/",
            O("api-v2"),
        ),
        get_case("longer prefix wins", "/api/v2/things", O("api-v2")),
        get_case("prefix matches itself", "/api/v2", O("api-v2")),
        get_case("prefix stops at a segment boundary", "/api/v20", O("api")),
        get_case("shorter prefix", "/api/users", O("api")),
        get_case("prefix matches bare", "/api", O("api")),
        get_case("prefix matches with slash", "/api/", O("api")),
        get_case("/api does not claim /apix", "/apix", O("any")),
        get_case("/api does not claim /apix/y", "/apix/y", O("any")),
        get_case("no path condition catches the rest", "/other", O("any")),
        get_case("root", "/", O("any")),
        get_case("catch-all with empty rest", "/files", O("files")),
        get_case("catch-all with deep rest", "/files/a/b/c.txt", O("files")),
        get_case("catch-all needs its literal", "/filesx", O("any")),
        get_case("trailing-slash prefix needs the slash", "/docs", O("any")),
        get_case("trailing-slash prefix", "/docs/intro", O("slash")),
        get_case("paths are case-sensitive", "/API", O("any")),
        get_case("paths are not percent-decoded", "/%61pi", O("any")),
    ])
    .await;
}

#[tokio::test]
async fn hosts_rank_exact_then_longer_wildcard_then_none_with_fall_through() {
    let t = Table::new(&[
        ("nohost", ""),
        ("wild", r#"{ host = "*.example.com" }"#),
        ("wild-a", r#"{ host = "*.a.example.com" }"#),
        ("admin", r#"{ host = "api.example.com", path = "/admin" }"#),
        ("v1", r#"{ host = "api.example.com", path_prefix = "/v1" }"#),
        ("upper", r#"{ host = "Shop.Example.ORG" }"#),
        ("ip", r#"{ host = "127.0.0.1" }"#),
    ]);
    let case = |name, host, path, expect| Case {
        name,
        method: "GET",
        host,
        path,
        headers: &[],
        expect,
    };
    t.check(&[
        case(
            "exact host, exact path",
            "api.example.com",
            "/admin",
            O("admin"),
        ),
        case(
            "exact host, prefix",
            "api.example.com",
            "/v1/users",
            O("v1"),
        ),
        case(
            "exact host misses on path: falls to wildcard",
            "api.example.com",
            "/other",
            O("wild"),
        ),
        case("wildcard", "www.example.com", "/", O("wild")),
        case("wildcard at depth", "x.y.example.com", "/", O("wild")),
        case(
            "longer wildcard beats shorter",
            "x.a.example.com",
            "/admin",
            O("wild-a"),
        ),
        case(
            "wildcard does not match its bare domain",
            "example.com",
            "/",
            O("nohost"),
        ),
        case("unrelated host", "other.org", "/admin", O("nohost")),
        case(
            "host with port",
            "api.example.com:8080",
            "/admin",
            O("admin"),
        ),
        case(
            "host in upper case",
            "API.EXAMPLE.COM",
            "/admin",
            O("admin"),
        ),
        case("mixed case and port", "Api.Example.Com:443", "/v1", O("v1")),
        case("trailing dot", "api.example.com.", "/admin", O("admin")),
        case(
            "upper-case config host",
            "shop.example.org",
            "/",
            O("upper"),
        ),
        case(
            "wildcard with port and case",
            "WWW.EXAMPLE.COM:80",
            "/",
            O("wild"),
        ),
        case("IP host with port", "127.0.0.1:9999", "/", O("ip")),
    ])
    .await;
}

#[tokio::test]
async fn method_and_header_conditions_filter_and_rank() {
    let t = Table::new(&[
        ("svc", r#"{ path_prefix = "/svc" }"#),
        (
            "write",
            r#"{ path_prefix = "/svc", methods = ["POST", "put"] }"#,
        ),
        (
            "canary",
            r#"{ path_prefix = "/svc", headers = [{ name = "x-canary", value = "1" }] }"#,
        ),
        (
            "canary-debug",
            r#"{ path_prefix = "/svc", headers = [{ name = "x-canary", value = "1" }, { name = "x-debug" }] }"#,
        ),
        (
            "delete-debug",
            r#"{ path_prefix = "/svc", methods = ["DELETE"], headers = [{ name = "x-debug" }] }"#,
        ),
        ("health", r#"{ path = "/svc/health" }"#),
        ("get-only", r#"{ path = "/get-only", methods = ["GET"] }"#),
    ]);
    let case = |name, method, headers, path, expect| Case {
        name,
        method,
        host: "test.local",
        path,
        headers,
        expect,
    };
    t.check(&[
        case("plain GET", "GET", &[], "/svc/x", O("svc")),
        case("POST has a method route", "POST", &[], "/svc/x", O("write")),
        case(
            "method in config is case-insensitive",
            "PUT",
            &[],
            "/svc",
            O("write"),
        ),
        case("PATCH is not listed", "PATCH", &[], "/svc", O("svc")),
        case(
            "header equals",
            "GET",
            &[("x-canary", "1")],
            "/svc/x",
            O("canary"),
        ),
        case(
            "header name is case-insensitive",
            "GET",
            &[("X-Canary", "1")],
            "/svc/x",
            O("canary"),
        ),
        case(
            "header value must equal exactly",
            "GET",
            &[("x-canary", "2")],
            "/svc/x",
            O("svc"),
        ),
        case(
            "header value must match whole",
            "GET",
            &[("x-canary", "11")],
            "/svc/x",
            O("svc"),
        ),
        case(
            "more header conditions win",
            "GET",
            &[("x-canary", "1"), ("x-debug", "anything")],
            "/svc/x",
            O("canary-debug"),
        ),
        case(
            "presence condition accepts an empty value",
            "GET",
            &[("x-canary", "1"), ("x-debug", "")],
            "/svc/x",
            O("canary-debug"),
        ),
        case(
            "all header conditions must hold",
            "GET",
            &[("x-debug", "1")],
            "/svc/x",
            O("svc"),
        ),
        case(
            "a method condition beats header conditions",
            "POST",
            &[("x-canary", "1"), ("x-debug", "1")],
            "/svc/x",
            O("write"),
        ),
        case(
            "method and header together",
            "DELETE",
            &[("x-debug", "1")],
            "/svc/x",
            O("delete-debug"),
        ),
        case(
            "method without its header",
            "DELETE",
            &[],
            "/svc/x",
            O("svc"),
        ),
        case(
            "path specificity outranks conditions",
            "POST",
            &[("x-canary", "1")],
            "/svc/health",
            O("health"),
        ),
        case(
            "method-only route matches",
            "GET",
            &[],
            "/get-only",
            O("get-only"),
        ),
        case(
            "method-only route refuses others: 404",
            "POST",
            &[],
            "/get-only",
            Status(404),
        ),
    ])
    .await;
}

#[tokio::test]
async fn ties_go_to_the_route_earlier_in_the_file() {
    let t = Table::new(&[
        ("first", r#"{ path_prefix = "/same" }"#),
        ("second", r#"{ path_prefix = "/same" }"#),
        ("pat-a", r#"{ path_pattern = "/{a}/x" }"#),
        ("pat-b", r#"{ path_pattern = "/y/{b}" }"#),
        ("host-1", r#"{ host = "h.example.com", path = "/e" }"#),
        ("host-2", r#"{ host = "H.EXAMPLE.COM", path = "/e" }"#),
    ]);
    let host_case = Case {
        name: "same host written twice",
        method: "GET",
        host: "h.example.com",
        path: "/e",
        headers: &[],
        expect: O("host-1"),
    };
    t.check(&[
        get_case("identical prefixes", "/same/y", O("first")),
        get_case("patterns of equal rank", "/y/x", O("pat-a")),
        get_case("only the second pattern", "/y/z", O("pat-b")),
        host_case,
    ])
    .await;
    assert_eq!(t.requests("second"), 0);
    assert_eq!(t.requests("host-2"), 0);
}

#[tokio::test]
async fn no_matching_route_is_404_with_a_plain_reason() {
    let t = Table::new(&[
        (
            "api",
            r#"{ host = "api.example.com", path_prefix = "/api" }"#,
        ),
        ("health", r#"{ path = "/healthz" }"#),
    ]);
    let on_host = |name, host, path, expect| Case {
        name,
        method: "GET",
        host,
        path,
        headers: &[],
        expect,
    };
    t.check(&[
        on_host(
            "right host, wrong path",
            "api.example.com",
            "/other",
            Status(404),
        ),
        on_host(
            "wrong host, right path",
            "web.example.com",
            "/api",
            Status(404),
        ),
        on_host(
            "exact path plus slash",
            "test.local",
            "/healthz/",
            Status(404),
        ),
        on_host(
            "exact path with a suffix",
            "test.local",
            "/healthzz",
            Status(404),
        ),
        on_host("matching route", "api.example.com", "/api/x", O("api")),
        on_host(
            "host-less route",
            "web.example.com",
            "/healthz",
            O("health"),
        ),
    ])
    .await;

    let r = get(t.gw.addr(), "/nothing/here?x=1", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "404 Not Found: no route matches this request\n");
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        r.headers["content-length"],
        r.body.len().to_string().as_str()
    );
    // Only the two matching cases above reached an origin.
    assert_eq!(t.requests("api") + t.requests("health"), 2);
}

#[tokio::test]
async fn request_without_host_reaches_only_host_less_routes() {
    let t = Table::new(&[
        ("hosted", r#"{ host = "api.example.com" }"#),
        ("open", r#"{ path = "/open" }"#),
    ]);
    // HTTP/1.0 allows a request without Host; build it by hand.
    let reply = raw(t.gw.addr(), b"GET /open HTTP/1.0\r\n\r\n").await;
    assert!(
        reply.starts_with("HTTP/1.") && reply[8..].starts_with(" 200 "),
        "{reply}"
    );
    assert!(reply.contains("x-origin: open"), "{reply}");
    let reply = raw(t.gw.addr(), b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(
        reply.starts_with("HTTP/1.") && reply[8..].starts_with(" 404 "),
        "{reply}"
    );
    assert!(
        reply.ends_with("404 Not Found: no route matches this request\n"),
        "{reply}"
    );
}
