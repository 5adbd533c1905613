//! Retries over real origins on 127.0.0.1: a retry hides a dead endpoint or
//! a 503 by going to another endpoint; a request whose body is over the
//! replay limit, or whose method is not idempotent, is not retried; the
//! retry budget bounds the extra load on a failing upstream; the access log
//! shows the attempts.

mod common;

use std::net::SocketAddr;

use common::*;

#[track_caller]
fn start(toml: &str) -> common::TestGateway {
    common::watched(
        strait::Gateway::builder()
            .workers(1)
            .admin_listen(Some("127.0.0.1:0".parse().unwrap()))
            .start_toml("retries.toml", toml)
            .unwrap_or_else(|e| panic!("gateway did not start: {e}\n{toml}")),
    )
}

fn config(endpoints: &[SocketAddr], retry: &str, upstream_extra: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[upstreams.app]\nendpoints = [{}]\n{upstream_extra}\n\
         [[routes]]\nname = \"app\"\nupstream = \"app\"\nretry = {{ {retry} }}\n",
        eps.join(", ")
    )
}

#[tokio::test]
async fn a_retry_hides_a_dead_endpoint_and_goes_elsewhere() {
    let good = Origin::fixed("good", 200, "good");
    // Two dead endpoints and one live: with 3 attempts every request must
    // reach the live one, so each retry goes to an endpoint not tried yet.
    let gw = start(&config(
        &[dead_addr(), dead_addr(), good.addr],
        "attempts = 3, on = [\"connect_failure\"], backoff_base = \"1ms\", backoff_max = \"5ms\"",
        "retry_budget = { percent = 100, min_per_second = 1000 }\n",
    ));
    for i in 0..30 {
        let r = get(gw.addr(), "/", &[]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    assert_eq!(good.requests(), 30);
    let retries = metric_sum(&gw, "strait_upstream_retries_total", &[]).await;
    // One worker, round robin over three: the picks of one request take
    // consecutive turns, so each request meets the dead endpoints that come
    // before the live one in the rotation.
    assert!((20.0..=60.0).contains(&retries), "retries sent: {retries}");
}

#[tokio::test]
async fn a_503_is_retried_on_another_endpoint() {
    let busy = Origin::fixed("busy", 503, "busy");
    let good = Origin::fixed("good", 200, "good");
    let gw = start(&config(
        &[busy.addr, good.addr],
        "attempts = 2, on = [\"503\"], backoff_base = \"1ms\", backoff_max = \"2ms\"",
        "retry_budget = { percent = 100, min_per_second = 1000 }\n",
    ));
    for _ in 0..20 {
        assert_eq!(get(gw.addr(), "/", &[]).await.text(), "good");
    }
    // One worker, round robin over two: each request's first pick is `busy`
    // (its retry takes the other turn), so every request is retried once.
    assert_eq!((busy.requests(), good.requests()), (20, 20));
    assert_eq!(
        metric_sum(&gw, "strait_upstream_retries_total", &[]).await,
        20.0
    );
}

#[tokio::test]
async fn bodies_over_the_replay_limit_and_non_idempotent_methods_are_not_retried() {
    let echo = Origin::echo();
    let dead = dead_addr();
    let gw = start(&config(
        &[dead, echo.addr],
        "attempts = 2, replay_limit = 64, on = [\"connect_failure\"], backoff_base = \"1ms\"",
        // The route's policy alone: without the upstream's failover on a
        // failed connection (tests/failover.rs), which would save these.
        "retry_budget = { percent = 100, min_per_second = 1000 }\nconnect_failover = false\n",
    ));
    let mut statuses = Vec::new();
    // POST is not idempotent: the request that meets the dead endpoint fails.
    for _ in 0..2 {
        statuses.push(
            H1::connect(gw.addr())
                .await
                .send(post("/", vec![b'x'; 10]))
                .await
                .status
                .as_u16(),
        );
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 502]);

    // PUT is, but a body over the replay limit is never kept for a retry.
    let put = |n: usize| {
        let mut r = post("/", vec![b'x'; n]);
        *r.method_mut() = http::Method::PUT;
        r
    };
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(
            H1::connect(gw.addr())
                .await
                .send(put(100))
                .await
                .status
                .as_u16(),
        );
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 502]);

    assert_eq!(
        metric_sum(&gw, "strait_upstream_retries_total", &[]).await,
        0.0
    );

    // Within the limit it is replayed whole on the second endpoint (each
    // request starts on the dead one: the retry takes the other turn).
    for _ in 0..2 {
        let r = H1::connect(gw.addr()).await.send(put(50)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["body_bytes"], 50);
    }
    assert_eq!(
        metric_sum(&gw, "strait_upstream_retries_total", &[]).await,
        2.0
    );
}

#[tokio::test]
async fn the_retry_budget_bounds_the_load_on_a_failing_upstream() {
    let failing = Origin::fixed("failing", 503, "down");
    const REQUESTS: usize = 300;
    // Every attempt fails; without a budget each request would be tried 3
    // times (amplification 3). The budget allows retries worth 20 % of the
    // requests (min_per_second = 0 keeps the bound exact for the test).
    let gw = start(&config(
        &[failing.addr],
        "attempts = 3, on = [\"503\"], backoff_base = \"1ms\", backoff_max = \"1ms\"",
        "retry_budget = { percent = 20, min_per_second = 0 }\n",
    ));
    let mut client = H1::connect(gw.addr()).await;
    for _ in 0..REQUESTS {
        assert_eq!(client.get("/").await.status, 503);
    }
    let amplification = failing.requests() as f64 / REQUESTS as f64;
    let exhausted = metric_sum(&gw, "strait_upstream_retry_budget_exhausted_total", &[]).await;
    println!(
        "retry budget 20 %: {REQUESTS} requests reached the failing origin {} times \
         (amplification {amplification:.3}; {exhausted} retries refused by the budget)",
        failing.requests()
    );
    assert!(
        amplification > 1.1,
        "retries must still happen: {amplification}"
    );
    assert!(
        amplification <= 1.21,
        "the budget did not hold: {amplification}"
    );
}

#[tokio::test]
async fn the_access_log_shows_the_attempts() {
    let good = Origin::fixed("good", 200, "good");
    let dir = TempDir::new("retries");
    let log = dir.path("access.log");
    // The first request's first pick is the live endpoint; the second's is
    // the dead one, and its retry goes to the live one.
    let toml = config(
        &[good.addr, dead_addr()],
        "attempts = 2, on = [\"connect_failure\"], backoff_base = \"1ms\"",
        "",
    )
    .replace(
        "upstream = \"app\"\nretry",
        "middlewares = [\"log\"]\nupstream = \"app\"\nretry",
    ) + &format!(
        "\n[middlewares.log]\ntype = \"access_log\"\nformat = \"json\"\noutput = {log:?}\n"
    );
    let gw = start(&toml);
    for _ in 0..2 {
        assert_eq!(get(gw.addr(), "/", &[]).await.status, 200);
    }
    gw.shutdown();
    let text = std::fs::read_to_string(&log).unwrap();
    let mut attempts: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["attempts"]
                .as_u64()
                .unwrap()
        })
        .collect();
    attempts.sort_unstable();
    assert_eq!(attempts, [1, 2], "{text}");
}

#[tokio::test]
async fn a_post_over_the_replay_limit_is_not_retried_even_when_posts_may_be() {
    let echo = Origin::echo();
    let gw = start(&config(
        &[dead_addr(), echo.addr],
        "attempts = 2, non_idempotent = true, replay_limit = 64, on = [\"connect_failure\"], backoff_base = \"1ms\"",
        // The route's policy alone, as above.
        "retry_budget = { percent = 100, min_per_second = 1000 }\nconnect_failover = false\n",
    ));
    // Over the limit: the request that meets the dead endpoint fails.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(
            H1::connect(gw.addr())
                .await
                .send(post("/", vec![b'x'; 100]))
                .await
                .status
                .as_u16(),
        );
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 502]);
    assert_eq!(
        metric_sum(&gw, "strait_upstream_retries_total", &[]).await,
        0.0
    );
    // Within it, a POST is retried (non_idempotent = true) with its body whole.
    for _ in 0..2 {
        let r = H1::connect(gw.addr())
            .await
            .send(post("/", vec![b'x'; 60]))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["body_bytes"], 60);
    }
    assert!(metric_sum(&gw, "strait_upstream_retries_total", &[]).await >= 1.0);
}
