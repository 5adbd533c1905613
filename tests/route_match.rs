//! Query, cookie and path-regex route conditions over real sockets: canary routes by
//! cookie and by query parameter beside a `/` catch-all, a regex route whose captured
//! parameter a `rewrite` uses, and the conditions as `/config` shows them. Table-style:
//! client request → which origin answered (and the path it saw) → what the client got.
//! The rules under test are in `src/router/mod.rs` and `src/router/pairs.rs`.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::json;

/// The origins, one per route target.
struct Origins {
    stable: Origin,
    canary: Origin,
    v2: Origin,
    items: Origin,
}

impl Origins {
    fn start() -> Origins {
        Origins {
            stable: Origin::fixed("stable", 200, "stable"),
            canary: Origin::fixed("canary", 200, "canary"),
            v2: Origin::fixed("v2", 200, "v2"),
            items: Origin::echo(),
        }
    }

    /// The catch-all first, so file order cannot explain the results.
    fn config(&self) -> String {
        let upstream = |name: &str, addr: SocketAddr| {
            format!("[upstreams.{name}]\nendpoints = [\"{addr}\"]\nconnect_timeout = \"1s\"\nresponse_header_timeout = \"2s\"\n\n")
        };
        format!(
            r#"
[[listeners]]
address = "127.0.0.1:0"

{}{}{}{}
[middlewares.item_path]
type = "rewrite"
path = "/internal/items/{{id}}"

[[routes]]
name = "catch-all"
match = {{ path_prefix = "/" }}
upstream = "stable"

[[routes]]
name = "canary-cookie"
match = {{ path_prefix = "/", cookies = [{{ name = "canary", value = "1" }}] }}
upstream = "canary"

[[routes]]
name = "v2-query"
match = {{ path_prefix = "/", query = [{{ name = "version", value = "2" }}, {{ name = "beta" }}] }}
upstream = "v2"

[[routes]]
name = "items"
match = {{ path_regex = "/v[0-9]+/items/(?P<id>[0-9]+)" }}
middlewares = ["item_path"]
upstream = "items"
"#,
            upstream("stable", self.stable.addr),
            upstream("canary", self.canary.addr),
            upstream("v2", self.v2.addr),
            upstream("items", self.items.addr),
        )
    }
}

/// One case: what it shows, the request target, its headers, who should answer.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// Who answered: a fixed origin's name, or `items <path>?<query>` as the echo saw it.
fn answered_by(reply: &Reply) -> String {
    match reply.headers.get("x-origin") {
        Some(o) => o.to_str().unwrap().to_string(),
        None if reply.status == 200 => {
            let seen = reply.json();
            match seen["query"].as_str() {
                Some(q) => format!("items {}?{q}", seen["path"].as_str().unwrap()),
                None => format!("items {}", seen["path"].as_str().unwrap()),
            }
        }
        None => format!("status {}", reply.status.as_u16()),
    }
}

#[tokio::test]
async fn canaries_by_cookie_and_query_and_a_regex_with_a_rewrite() {
    let origins = Origins::start();
    let gw = gateway(&origins.config());
    let cases: &[Case] = &[
        ("no condition holds: the catch-all", "/", &[], "stable"),
        ("canary cookie", "/app", &[("cookie", "canary=1")], "canary"),
        (
            "canary cookie among others",
            "/app",
            &[("cookie", "session=abc; canary=1; theme=dark")],
            "canary",
        ),
        (
            "another canary value",
            "/app",
            &[("cookie", "canary=0")],
            "stable",
        ),
        (
            "a cookie whose name only starts the same",
            "/app",
            &[("cookie", "canaryx=1")],
            "stable",
        ),
        (
            "the cookie in another header",
            "/app",
            &[("x-cookie", "canary=1")],
            "stable",
        ),
        ("version 2 and beta", "/app?version=2&beta", &[], "v2"),
        (
            "percent-encoded, any order",
            "/app?beta=&x=1&%76ersion=%32",
            &[],
            "v2",
        ),
        ("version 2 without beta", "/app?version=2", &[], "stable"),
        ("version 20", "/app?version=20&beta", &[], "stable"),
        (
            "a tie between one cookie and two query conditions: more conditions win",
            "/app?version=2&beta",
            &[("cookie", "canary=1")],
            "v2",
        ),
        (
            "regex, the id rewritten",
            "/v3/items/42",
            &[],
            "items /internal/items/42",
        ),
        (
            "the query is kept",
            "/v1/items/7?x=1",
            &[],
            "items /internal/items/7?x=1",
        ),
        (
            "a regex beats the prefix whatever its conditions",
            "/v1/items/7?version=2&beta",
            &[("cookie", "canary=1")],
            "items /internal/items/7?version=2&beta",
        ),
        (
            "the regex matches whole paths only",
            "/v1/items/7/x",
            &[],
            "stable",
        ),
        ("nor a path it only ends", "/x/v1/items/7", &[], "stable"),
        ("its group needs digits", "/v1/items/abc", &[], "stable"),
    ];
    let mut client = H1::connect(gw.addr()).await;
    let mut failures = Vec::new();
    for (name, path, headers, want) in cases {
        let reply = client.send(request("GET", path, headers)).await;
        let got = answered_by(&reply);
        if got != *want {
            failures.push(format!(
                "{name}: GET {path} {headers:?}: expected {want:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(origins.canary.requests(), 2);
    assert_eq!(origins.v2.requests(), 3);
    assert_eq!(origins.items.requests(), 3);
}

#[tokio::test]
async fn config_shows_the_conditions() {
    let origins = Origins::start();
    let gw = gateway_with_admin(&origins.config(), 1);
    let admin = gw.admin_addr().expect("the admin API is on");
    let reply = get(admin, "/config", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let config = reply.json();
    let matches: Vec<_> = config["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].clone(), r["match"].clone()))
        .collect();
    assert_eq!(
        matches,
        [
            (json!("catch-all"), json!({ "path_prefix": "/" })),
            (
                json!("canary-cookie"),
                json!({ "path_prefix": "/", "cookies": [{ "name": "canary", "value": "1" }] })
            ),
            (
                json!("v2-query"),
                json!({
                    "path_prefix": "/",
                    "query": [{ "name": "version", "value": "2" }, { "name": "beta" }]
                })
            ),
            (
                json!("items"),
                json!({ "path_regex": "/v[0-9]+/items/(?P<id>[0-9]+)" })
            ),
        ]
    );
}

#[tokio::test]
async fn a_credential_like_cookie_value_is_redacted_in_config() {
    let origin = Origin::fixed("app", 200, "app");
    let gw = gateway_with_admin(
        &format!(
            r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.app]
endpoints = ["{}"]

[[routes]]
name = "internal"
match = {{ cookies = [{{ name = "session", value = "s3cr3t" }}], query = [{{ name = "api_key", value = "k" }}, {{ name = "debug" }}] }}
upstream = "app"
"#,
            origin.addr
        ),
        1,
    );
    let admin = gw.admin_addr().expect("the admin API is on");
    let config = get(admin, "/config", &[]).await.json();
    let m = &config["routes"][0]["match"];
    assert_eq!(
        m["cookies"],
        json!([{ "name": "session", "value": "[redacted]" }])
    );
    assert_eq!(
        m["query"],
        json!([{ "name": "api_key", "value": "[redacted]" }, { "name": "debug" }])
    );
    // The route still matches on the real values.
    let reply = get(
        gw.addr(),
        "/?debug&api_key=k",
        &[("cookie", "session=s3cr3t")],
    )
    .await;
    assert_eq!(answered_by(&reply), "app");
    assert_eq!(get(gw.addr(), "/?debug&api_key=k", &[]).await.status, 404);
}
