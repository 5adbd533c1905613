//! Balancing algorithms end to end, with real origins on 127.0.0.1 and a
//! gateway with two workers: the distribution of each algorithm over many
//! requests (with stated tolerances), consistent hashing (same key, same
//! endpoint, on both workers; one endpoint added or removed moves few keys;
//! the fallback for requests without a key), and least_request / peak_ewma
//! sending clearly fewer requests than round robin to an origin slowed down
//! on purpose. Every loop is bounded in count and in time.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// No test waits longer than this for its requests.
const DEADLINE: Duration = Duration::from_secs(60);

/// `n` origins named `o0`, `o1`, … answering 200 with `x-origin: oN`.
fn origins(n: usize) -> Vec<Origin> {
    (0..n)
        .map(|i| {
            let name: &'static str = Box::leak(format!("o{i}").into_boxed_str());
            Origin::fixed(name, 200, "ok")
        })
        .collect()
}

/// One catch-all route to `backend` whose endpoints are `eps`
/// (`(address, weight)`) and whose other keys are `extra` TOML lines.
fn config(eps: &[(SocketAddr, u32)], extra: &str) -> String {
    let list: Vec<String> = eps
        .iter()
        .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
        .collect();
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.backend]
endpoints = [{}]
connect_timeout = "1s"
response_header_timeout = "5s"
{extra}

[[routes]]
name = "all"
upstream = "backend"
"#,
        list.join(", ")
    )
}

fn addrs(os: &[Origin], weights: &[u32]) -> Vec<(SocketAddr, u32)> {
    os.iter().zip(weights).map(|(o, &w)| (o.addr, w)).collect()
}

fn origin_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.headers["x-origin"].to_str().unwrap().to_string()
}

/// Sends `n` requests over `conns` keep-alive connections in turn (the
/// kernel spreads connections over both workers); `headers(i)` gives
/// request `i`'s extra headers. Returns each request's origin.
async fn run(
    addr: SocketAddr,
    n: usize,
    conns: usize,
    headers: impl Fn(usize) -> Vec<(String, String)>,
) -> Vec<String> {
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..conns {
        clients.push(H1::connect(addr).await);
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        assert!(
            started.elapsed() < DEADLINE,
            "too slow: {i} of {n} requests"
        );
        let h = headers(i);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let reply = clients[i % conns].send(request("GET", "/", &h)).await;
        out.push(origin_of(&reply));
    }
    out
}

fn count(picks: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for p in picks {
        *m.entry(p.clone()).or_insert(0) += 1;
    }
    m
}

/// Asserts each origin `oI`'s share of `picks` is within `tol` (absolute)
/// of `want[I]`, printing the shares.
fn assert_shares(what: &str, picks: &[String], want: &[f64], tol: f64) {
    let c = count(picks);
    let shares: Vec<f64> = (0..want.len())
        .map(|i| *c.get(&format!("o{i}")).unwrap_or(&0) as f64 / picks.len() as f64)
        .collect();
    eprintln!("{what}: shares {shares:.3?} (want {want:.3?} ± {tol})");
    for (i, (got, w)) in shares.iter().zip(want).enumerate() {
        assert!(
            (got - w).abs() <= tol,
            "{what}: o{i} got {got:.3}, want {w:.3} ± {tol}"
        );
    }
}

const N: usize = 2000;

#[tokio::test]
async fn distribution_of_each_algorithm() {
    let os = origins(4);
    let even = [0.25; 4];
    // Round robin: exact per worker, so within 2 requests per origin overall
    // (tolerance 1 %).
    let gw = gateway_with(
        &config(&addrs(&os, &[1; 4]), r#"balance = "round_robin""#),
        2,
    );
    let picks = run(gw.addr(), N, 4, |_| vec![]).await;
    assert_shares("round_robin", &picks, &even, 0.01);
    gw.shutdown();

    // Smooth weighted 3:2:1:4: exact per worker cycle; tolerance 3 %.
    let gw = gateway_with(
        &config(&addrs(&os, &[3, 2, 1, 4]), r#"balance = "weighted""#),
        2,
    );
    let picks = run(gw.addr(), N, 4, |_| vec![]).await;
    assert_shares("weighted 3:2:1:4", &picks, &[0.3, 0.2, 0.1, 0.4], 0.03);
    gw.shutdown();

    // Random: binomial, σ of a share ≈ 0.97 % at 2,000 requests; ±5 % is
    // more than 5σ.
    let gw = gateway_with(&config(&addrs(&os, &[1; 4]), r#"balance = "random""#), 2);
    let picks = run(gw.addr(), N, 4, |_| vec![]).await;
    assert_shares("random", &picks, &even, 0.05);
    gw.shutdown();

    // Least request, one request at a time: every load is 0 at each pick,
    // so it is the first of two random draws: uniform, same bound.
    let gw = gateway_with(
        &config(&addrs(&os, &[1; 4]), r#"balance = "least_request""#),
        2,
    );
    let picks = run(gw.addr(), N, 4, |_| vec![]).await;
    assert_shares("least_request", &picks, &even, 0.05);
    gw.shutdown();

    // Peak EWMA over equal origins: the latencies differ only by noise, so
    // the shares are uneven by design (measured runs: 843, 559, 424, 174 of
    // 2,000, and once under 2 % for one origin on a loaded machine: an
    // origin that answered slowly once is avoided until its average decays,
    // with a 10 s time constant, longer than this test). What must hold is
    // that every origin is tried: an unmeasured one costs nothing.
    let gw = gateway_with(&config(&addrs(&os, &[1; 4]), r#"balance = "peak_ewma""#), 2);
    let picks = run(gw.addr(), N, 4, |_| vec![]).await;
    let c = count(&picks);
    eprintln!("peak_ewma over 4 equal origins: {c:?}");
    for i in 0..4 {
        let n = *c.get(&format!("o{i}")).unwrap_or(&0);
        assert!(n >= 1, "peak_ewma: o{i} was never tried");
    }
    gw.shutdown();

    // Consistent hashing of 2,000 distinct keys with weights 1:1:1:1 and
    // 3:1:1:1: within 5 % of the weight share. The origins' ports differ
    // from run to run, and so do the ring's points: with the default 160
    // points per weight unit an endpoint's arc varies by about 8 % of its
    // share (1/√160), enough to break 5 % now and then; 1,000 points make
    // it 3 %, so the bound holds with a wide margin. Maglev: 65,537 slots.
    for algo in ["ring", "maglev"] {
        for (weights, want) in [
            ([1, 1, 1, 1], even),
            ([3, 1, 1, 1], [0.5, 1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0]),
        ] {
            let mut extra = format!("balance = \"{algo}\"\nhash_key = \"header:x-user\"");
            if algo == "ring" {
                extra.push_str("\nvirtual_nodes = 1000");
            }
            let gw = gateway_with(&config(&addrs(&os, &weights), &extra), 2);
            let picks = run(gw.addr(), N, 4, |i| {
                vec![("x-user".into(), format!("user-{i}"))]
            })
            .await;
            assert_shares(&format!("{algo} {weights:?}"), &picks, &want, 0.05);
            gw.shutdown();
        }
    }
}

#[tokio::test]
async fn hashing_is_stable_per_key_on_both_workers_with_a_fallback() {
    let os = origins(4);
    for (algo, key, header) in [
        ("ring", "header:x-user", "x-user"),
        ("maglev", "cookie:session", "cookie"),
    ] {
        let extra = format!("balance = \"{algo}\"\nhash_key = \"{key}\"");
        let gw = gateway_with(&config(&addrs(&os, &[1; 4]), &extra), 2);
        let value = |k: usize| match header {
            "cookie" => format!("theme=dark; session=s{k}; lang=en"),
            _ => format!("u{k}"),
        };
        // 100 keys, each sent 4 times, every time on a new connection: the
        // kernel spreads them over both workers, which share the table.
        let mut placed: HashMap<usize, String> = HashMap::new();
        let started = Instant::now();
        for round in 0..4 {
            for k in 0..100 {
                assert!(started.elapsed() < DEADLINE);
                let v = value(k);
                let o = origin_of(&get(gw.addr(), "/", &[(header, v.as_str())]).await);
                match placed.get(&k) {
                    None => {
                        placed.insert(k, o);
                    }
                    Some(first) => assert_eq!(*first, o, "{algo}: key {k} moved in round {round}"),
                }
            }
        }
        let used = count(&placed.values().cloned().collect::<Vec<_>>());
        eprintln!("{algo}: 100 keys over {used:?}");
        assert_eq!(used.len(), 4, "{algo}: 100 keys use every endpoint");
        // No key: the fallback (round robin by default) spreads evenly, within
        // 2 requests per origin per worker.
        let picks = run(gw.addr(), 400, 4, |_| vec![]).await;
        assert_shares(
            &format!("{algo} without a key (round robin)"),
            &picks,
            &[0.25; 4],
            0.02,
        );
        gw.shutdown();
    }
    // hash_fallback = "random": requests without a key still spread.
    let extra = "balance = \"ring\"\nhash_key = \"path\"\nhash_fallback = \"random\"";
    let gw = gateway_with(&config(&addrs(&os, &[1; 4]), extra), 2);
    let picks = run(gw.addr(), 40, 2, |_| vec![]).await;
    // "path" is always present: all 40 requests for "/" land on one origin.
    assert_eq!(count(&picks).len(), 1, "{picks:?}");
    gw.shutdown();
}

/// Where each of `keys` keys lands (by origin name) on `gw`.
async fn placement(addr: SocketAddr, keys: usize) -> Vec<String> {
    run(addr, keys, 2, |i| {
        vec![("x-user".into(), format!("key-{i}"))]
    })
    .await
}

#[tokio::test]
async fn adding_or_removing_an_endpoint_moves_few_keys() {
    const KEYS: usize = 1000;
    let os = origins(11);
    for algo in ["ring", "maglev"] {
        let extra = format!("balance = \"{algo}\"\nhash_key = \"header:x-user\"");
        let ten = config(&addrs(&os[..10], &[1; 10]), &extra);
        let gw = gateway_with(&ten, 2);
        let before = placement(gw.addr(), KEYS).await;
        // Add o10: at most 1/11 + 4 % of the keys move, and (nearly) only
        // to o10.
        gw.reload_toml("test.toml", &config(&addrs(&os, &[1; 11]), &extra))
            .expect("reload");
        let after = placement(gw.addr(), KEYS).await;
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        let elsewhere = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| a != b && *b != "o10")
            .count();
        eprintln!("{algo}: 10 -> 11 endpoints: {moved} of {KEYS} keys moved, {elsewhere} not to the new one");
        assert!(
            moved as f64 / KEYS as f64 <= 1.0 / 11.0 + 0.04,
            "{algo}: {moved}"
        );
        assert!(moved > 0, "{algo}: the new endpoint gets keys");
        // Ring: exactly none elsewhere; Maglev: its table shifts a few slots
        // between old endpoints (0.2 % measured on 100,000 keys); allow 2 %.
        assert!(elsewhere as f64 / KEYS as f64 <= if algo == "ring" { 0.0 } else { 0.02 });

        // Remove o3 from the ten: only o3's keys move.
        let mut nine = addrs(&os[..10], &[1; 10]);
        nine.remove(3);
        gw.reload_toml("test.toml", &config(&nine, &extra))
            .expect("reload");
        let removed = placement(gw.addr(), KEYS).await;
        let of_o3 = before.iter().filter(|o| *o == "o3").count();
        let others_moved = before
            .iter()
            .zip(&removed)
            .filter(|(a, b)| a != b && *a != "o3")
            .count();
        assert!(removed.iter().all(|o| o != "o3"));
        eprintln!("{algo}: removing o3 ({of_o3} keys): {others_moved} other keys moved");
        assert!(others_moved as f64 / KEYS as f64 <= if algo == "ring" { 0.0 } else { 0.02 });
        gw.shutdown();
    }
}

/// Sends `total` requests from `clients` concurrent keep-alive clients and
/// returns how many the slow origin got.
async fn load_with_a_slow_origin(balance: &str, fast: &Origin, slow: &Origin) -> (usize, usize) {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 40;
    let eps = [(fast.addr, 1), (slow.addr, 1)];
    let gw = gateway_with(&config(&eps, &format!("balance = \"{balance}\"")), 2);
    let addr = gw.addr();
    let (f0, s0) = (fast.requests(), slow.requests());
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = H1::connect(addr).await;
                for _ in 0..PER_CLIENT {
                    if started.elapsed() > DEADLINE {
                        break;
                    }
                    assert_eq!(c.get("/").await.status, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (f, s) = (fast.requests() - f0, slow.requests() - s0);
    eprintln!(
        "{balance}: fast {f}, slow {s} of {} ({:.1} % slow) in {:?}",
        f + s,
        100.0 * s as f64 / (f + s) as f64,
        started.elapsed()
    );
    assert_eq!(f + s, CLIENTS * PER_CLIENT);
    gw.shutdown();
    (f, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_request_and_peak_ewma_avoid_a_slow_origin() {
    let fast = Origin::fixed("fast", 200, "ok");
    let slow = Origin::slow(Duration::from_millis(50), "slow");
    let (_, rr) = load_with_a_slow_origin("round_robin", &fast, &slow).await;
    let (_, lr) = load_with_a_slow_origin("least_request", &fast, &slow).await;
    let (_, pe) = load_with_a_slow_origin("peak_ewma", &fast, &slow).await;
    // Round robin gives the slow origin half (160 of 320, each worker
    // alternating). Least request sends it less than half of that (one run:
    // 47 of 320): with 4 clients per worker, the slow origin still wins
    // whenever its in-flight count is not above the fast one's. Peak EWMA,
    // which also sees the latency, less than a quarter (one run: 4 of 320).
    assert!(rr >= 150, "round_robin: slow got {rr}");
    assert!(
        lr * 2 < rr,
        "least_request: slow got {lr}, round robin {rr}"
    );
    assert!(pe * 4 < rr, "peak_ewma: slow got {pe}, round robin {rr}");
}
