//! The failover default: a request whose upstream connection could not be
//! made (nothing was sent) goes to another endpoint, whatever its method,
//! with no retry policy on the route; `connect_failover = false` turns it
//! off. As nginx's `proxy_next_upstream error timeout`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http::StatusCode;

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("the test hung")
}

fn config(endpoints: &[SocketAddr], extra: &str) -> String {
    simple_config(endpoints, "").replace(
        "connect_timeout = \"1s\"",
        &format!("connect_timeout = \"1s\"\n{extra}"),
    )
}

#[tokio::test]
async fn a_dead_endpoint_is_passed_over_for_every_request_and_method() {
    let live = Origin::echo();
    let dead = dead_addr();
    // A budget that covers a retry for every request: half of them meet
    // the dead endpoint (round robin), and nothing ejects it here.
    let budget = "retry_budget = { percent = 100, min_per_second = 1000 }";
    let gw = gateway_with_admin(&config(&[dead, live.addr], budget), 1);
    let mut client = H1::connect(gw.addr()).await;
    for i in 0..100 {
        let req = match i % 3 {
            0 => request("GET", "/", &[]),
            1 => post("/p", "a body that is not replayable by a policy"),
            _ => request("DELETE", "/d", &[]),
        };
        let r = within(client.send(req)).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text());
    }
    assert_eq!(live.requests(), 100);
    // The failed connections count as the dead endpoint's, the retries as
    // the upstream's.
    let admin = gw.admin_addr().unwrap();
    let retries = within(metric(
        admin,
        r#"strait_upstream_retries_total{upstream="backend"}"#,
    ))
    .await;
    assert!(retries >= 40.0, "{retries} retries");
    let shown = within(get(admin, "/config", &[])).await.json();
    assert_eq!(shown["upstreams"]["backend"]["connect_failover"], true);
}

#[tokio::test]
async fn connect_failover_can_be_turned_off() {
    let live = Origin::echo();
    let dead = dead_addr();
    let gw = gateway_with(&config(&[dead, live.addr], "connect_failover = false"), 1);
    let mut client = H1::connect(gw.addr()).await;
    let mut bad = 0;
    for _ in 0..20 {
        let r = within(client.get("/")).await;
        if r.status == StatusCode::BAD_GATEWAY {
            bad += 1;
        }
    }
    // Round robin over two: every other request meets the dead one.
    assert!(bad >= 5, "{bad} of 20 answered 502");
}

#[tokio::test]
async fn every_endpoint_dead_is_one_502_after_trying_each() {
    let gw = gateway(&config(&[dead_addr(), dead_addr(), dead_addr()], ""));
    let r = within(get(gw.addr(), "/", &[])).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn failover_is_bounded_by_the_retry_budget() {
    let live = Origin::echo();
    let dead = dead_addr();
    // The default budget: 20 % of requests, and 3 a second at least.
    let gw = gateway_with_admin(&config(&[dead, live.addr], ""), 1);
    let mut client = H1::connect(gw.addr()).await;
    let mut ok = 0;
    for _ in 0..40 {
        if within(client.get("/")).await.status == StatusCode::OK {
            ok += 1;
        }
    }
    // Every request that met the live endpoint first, and those of the
    // dead one's the budget saved: more than half, fewer than all.
    assert!((23..40).contains(&ok), "{ok} of 40 answered 200");
    let admin = gw.admin_addr().unwrap();
    let exhausted = within(metric(
        admin,
        r#"strait_upstream_retry_budget_exhausted_total{upstream="backend"}"#,
    ))
    .await;
    assert!(exhausted >= 1.0, "the budget was never exhausted");
}
