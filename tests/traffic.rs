//! Traffic management over real origins on 127.0.0.1: outlier detection
//! ejects a failing endpoint for every worker and lets it back after its
//! ejection time (longer each time), never beyond the allowed share;
//! `max_requests` answers 503 naming the limit and recovers; a route's
//! `timeout` bounds the wait for the response head.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

#[track_caller]
fn start(toml: &str, workers: usize) -> common::TestGateway {
    common::watched(
        strait::Gateway::builder()
            .workers(workers)
            .admin_listen(Some("127.0.0.1:0".parse().unwrap()))
            .start_toml("traffic.toml", toml)
            .unwrap_or_else(|e| panic!("gateway did not start: {e}\n{toml}")),
    )
}

fn upstream_config(endpoints: &[SocketAddr], extra: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[upstreams.app]\nendpoints = [{}]\n{extra}\n\
         [[routes]]\nname = \"app\"\nupstream = \"app\"\n",
        eps.join(", ")
    )
}

#[tokio::test]
async fn outlier_detection_ejects_a_failing_endpoint_and_lets_it_back() {
    let good_a = Origin::fixed("a", 200, "a");
    let good_b = Origin::fixed("b", 200, "b");
    let bad = Origin::fixed("bad", 500, "bad");
    let toml = upstream_config(
        &[good_a.addr, good_b.addr, bad.addr],
        "\n[upstreams.app.outlier_detection]\nconsecutive_5xx = 3\nbase_ejection_time = \"1s\"\nmax_ejection_time = \"10s\"\nmax_ejection_percent = 50\n",
    );
    let gw = start(&toml, 2);
    let addr = gw.addr();

    // Round robin sends every third request of each worker to `bad`; once
    // one worker has seen 3 failures in a row there, every worker skips it.
    let mut before_ejection = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(&gw, "strait_endpoint_ejected", &[]).await < 1.0 {
        assert!(Instant::now() < deadline, "never ejected");
        let r = get(addr, "/", &[]).await;
        before_ejection += usize::from(r.status == 500);
    }
    assert!(
        (3..=6).contains(&bad.requests()),
        "bad saw {} requests before its ejection (3 in a row per worker)",
        bad.requests()
    );
    let seen_by_bad = bad.requests();
    for _ in 0..60 {
        assert_eq!(
            get(addr, "/", &[]).await.status,
            200,
            "an ejected endpoint got traffic"
        );
    }
    assert_eq!(bad.requests(), seen_by_bad);
    assert_eq!(
        metric_sum(
            &gw,
            "strait_endpoint_ejections_total",
            &[("endpoint", &bad.addr.to_string())]
        )
        .await,
        1.0
    );

    // After its ejection time it is back, fails again, and the second
    // ejection lasts twice as long.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(&gw, "strait_endpoint_ejections_total", &[]).await < 2.0 {
        assert!(
            Instant::now() < deadline,
            "not let back, or not ejected again"
        );
        get(addr, "/", &[]).await;
    }
    assert!(bad.requests() > seen_by_bad, "the endpoint was let back");
    let ejected_again = bad.requests();
    tokio::time::sleep(Duration::from_millis(1400)).await;
    for _ in 0..30 {
        assert_eq!(get(addr, "/", &[]).await.status, 200);
    }
    assert_eq!(
        bad.requests(),
        ejected_again,
        "the second ejection (2 s) outlasts the first (1 s)"
    );
    println!(
        "outlier detection: {before_ejection} failed responses before the first ejection, \
         {} requests reached the bad endpoint in all",
        bad.requests()
    );
}

#[tokio::test]
async fn the_ejection_share_is_never_exceeded() {
    let bad_a = Origin::fixed("a", 503, "a");
    let bad_b = Origin::fixed("b", 503, "b");
    let toml = upstream_config(
        &[bad_a.addr, bad_b.addr],
        "\n[upstreams.app.outlier_detection]\nconsecutive_5xx = 2\nbase_ejection_time = \"30s\"\nmax_ejection_percent = 50\n",
    );
    let gw = start(&toml, 1);
    for _ in 0..40 {
        assert_eq!(get(gw.addr(), "/", &[]).await.status, 503);
    }
    assert_eq!(metric_sum(&gw, "strait_endpoint_ejected", &[]).await, 1.0);
    // The one left in keeps getting the traffic.
    let (a, b) = (bad_a.requests(), bad_b.requests());
    for _ in 0..10 {
        get(gw.addr(), "/", &[]).await;
    }
    assert_eq!(bad_a.requests() + bad_b.requests(), a + b + 10);
    assert!(bad_a.requests() == a || bad_b.requests() == b);
}

#[tokio::test]
async fn connect_failures_eject_a_dead_endpoint() {
    let good = Origin::fixed("good", 200, "good");
    let dead = dead_addr();
    let outlier = "\n[upstreams.app.outlier_detection]\nconsecutive_connect_failures = 2\nbase_ejection_time = \"30s\"\n";
    // Failover off, so that each failed connection is an answer the
    // client sees.
    let toml = upstream_config(
        &[good.addr, dead],
        &format!("connect_failover = false\n{outlier}"),
    );
    let gw = start(&toml, 1);
    let mut failed = 0;
    for _ in 0..40 {
        if get(gw.addr(), "/", &[]).await.status != 200 {
            failed += 1;
        }
    }
    assert_eq!(failed, 2, "two connect failures in a row, then ejected");
    // With it (the default), the client sees none of them, and the dead
    // endpoint is ejected all the same.
    let gw = start(&upstream_config(&[good.addr, dead], outlier), 1);
    for _ in 0..40 {
        assert_eq!(get(gw.addr(), "/", &[]).await.status, 200);
    }
    assert_eq!(metric_sum(&gw, "strait_endpoint_ejected", &[]).await, 1.0);
}

#[tokio::test]
async fn max_requests_answers_503_naming_the_limit_and_recovers() {
    let origin = Origin::slow(Duration::from_millis(400), "slow");
    let gw = start(&upstream_config(&[origin.addr], "max_requests = 2\n"), 1);
    let addr = gw.addr();
    let replies: Vec<Reply> = futures_join(
        (0..5)
            .map(|_| tokio::spawn(async move { get(addr, "/", &[]).await }))
            .collect(),
    )
    .await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let limited: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!((ok, limited.len()), (2, 3), "{replies:?}");
    assert_eq!(
        limited[0].text(),
        "503 Service Unavailable: upstream max_requests limit reached\n"
    );
    assert_eq!(
        metric_sum(
            &gw,
            "strait_upstream_limit_rejections_total",
            &[("upstream", "app"), ("limit", "max_requests")]
        )
        .await,
        3.0
    );
    // Recovered once the requests in flight ended.
    assert_eq!(get(addr, "/", &[]).await.status, 200);
    assert_eq!(metric_sum(&gw, "strait_upstream_in_flight", &[]).await, 0.0);
}

/// Awaits every task, in order.
async fn futures_join(tasks: Vec<tokio::task::JoinHandle<Reply>>) -> Vec<Reply> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_route_timeout_bounds_the_wait_for_the_response_head() {
    let origin = Origin::slow(Duration::from_secs(2), "slow");
    let toml = upstream_config(&[origin.addr], "").replace(
        "upstream = \"app\"\n",
        "upstream = \"app\"\ntimeout = \"300ms\"\n",
    );
    let gw = start(&toml, 1);
    let started = Instant::now();
    let r = get(gw.addr(), "/", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), "504 Gateway Timeout: route timeout reached\n");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1900),
        "answered after {took:?}"
    );
    assert_eq!(
        metric_sum(
            &gw,
            "strait_upstream_timeouts_total",
            &[("upstream", "app")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn max_connections_queues_up_to_max_pending_then_answers_503() {
    // Every request holds its connection for 400 ms.
    let origin = Origin::slow(Duration::from_millis(400), "slow");
    let gw = start(
        &upstream_config(
            &[origin.addr],
            "max_connections = 2\nmax_pending = 1\nconnect_timeout = \"2s\"\n",
        ),
        1,
    );
    let addr = gw.addr();
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(async move {
                // Staggered, so the two first take the connections, the third
                // waits and the fourth finds the queue full.
                tokio::time::sleep(Duration::from_millis(30 * i)).await;
                get(addr, "/", &[]).await
            })
        })
        .collect();
    let replies = futures_join(tasks).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 503], "{replies:?}");
    assert_eq!(
        replies[3].text(),
        "503 Service Unavailable: upstream max_pending limit reached\n"
    );
    // The waiting request reused a connection: the origin saw only two.
    assert_eq!(origin.connections(), 2);
    assert_eq!(
        metric_sum(
            &gw,
            "strait_upstream_limit_rejections_total",
            &[("limit", "max_pending")]
        )
        .await,
        1.0
    );
    assert_eq!(
        metric_sum(&gw, "strait_upstream_open_connections", &[]).await,
        2.0
    );
    assert_eq!(metric_sum(&gw, "strait_upstream_pending", &[]).await, 0.0);
    // Recovered.
    assert_eq!(get(addr, "/", &[]).await.status, 200);
}

#[tokio::test]
async fn max_connections_answers_503_when_no_connection_frees_up_in_time() {
    let origin = Origin::slow(Duration::from_millis(1500), "slow");
    let gw = start(
        &upstream_config(
            &[origin.addr],
            "max_connections = 1\nconnect_timeout = \"300ms\"\n",
        ),
        1,
    );
    let addr = gw.addr();
    let first = tokio::spawn(async move { get(addr, "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let second = get(addr, "/", &[]).await;
    let waited = started.elapsed();
    assert_eq!(second.status, 503);
    assert_eq!(
        second.text(),
        "503 Service Unavailable: upstream max_connections limit reached\n"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1400),
        "answered after {waited:?}"
    );
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(
        metric_sum(
            &gw,
            "strait_upstream_limit_rejections_total",
            &[("limit", "max_connections")]
        )
        .await,
        1.0
    );
    // Recovered: the connection is free again.
    assert_eq!(get(addr, "/", &[]).await.status, 200);
    assert_eq!(origin.connections(), 1);
}
