//! Live reload: under load nothing fails and every response comes from the
//! configuration live when its request started; an invalid file changes
//! nothing; pools of kept upstreams survive and pools of removed ones close;
//! listeners are opened and closed without re-binding the others; the file
//! watch reloads on a change.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn config(origin: SocketAddr, path: &str) -> String {
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[upstreams.a]\nendpoints = [\"{origin}\"]\n\n\
         [[routes]]\nmatch = {{ path_prefix = \"{path}\" }}\nupstream = \"a\"\n"
    )
}

/// Replaces the content of `path` the way editors do: write a sibling,
/// rename it over.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[track_caller]
fn start_file(path: &std::path::Path, workers: usize) -> common::TestGateway {
    common::watched(
        strait::Gateway::builder()
            .workers(workers)
            .admin_listen(None)
            .start_file(path)
            .unwrap_or_else(|e| panic!("gateway did not start: {e}")),
    )
}

#[tokio::test]
async fn reload_publishes_routes_refuses_bad_files_and_keeps_pools() {
    let origin = Origin::fixed("a", 200, "a");
    let gw = gateway_with(&config(origin.addr, "/old"), 1);
    let mut client = H1::connect(gw.addr()).await;
    assert_eq!(client.get("/old/x").await.status, 200);
    assert_eq!(client.get("/new/x").await.status, 404);
    let connections = origin.connections();

    // Alternate two route sets; the upstream stays.
    for round in 0..20 {
        let (live, gone) = if round % 2 == 0 {
            ("/new", "/old")
        } else {
            ("/old", "/new")
        };
        let generation = gw
            .reload_toml("reload.toml", &config(origin.addr, live))
            .unwrap();
        assert_eq!(generation, round + 2);
        assert_eq!(
            client.get(&format!("{live}/x")).await.status,
            200,
            "round {round}"
        );
        assert_eq!(
            client.get(&format!("{gone}/x")).await.status,
            404,
            "round {round}"
        );
    }
    assert_eq!(
        origin.connections(),
        connections,
        "reloads reconnected to an unchanged upstream"
    );

    // An invalid file: a precise error, and the running routes stay.
    let errors = gw
        .reload_toml("bad.toml", "[[routes]]\nupstream = \"nowhere\"\n")
        .unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("bad.toml:2:12: route \"route-1\": unknown upstream \"nowhere\""),
        "{errors}"
    );
    assert_eq!(gw.generation(), 21);
    assert_eq!(client.get("/old/x").await.status, 200);
}

/// Route set `n`: even sets send `/svc` to origin A, odd ones to origin B, and
/// every response is marked with the set that produced it.
fn route_set(n: u64, a: SocketAddr, b: SocketAddr) -> String {
    let upstream = if n % 2 == 0 { "a" } else { "b" };
    format!(
        "[server]\nwatch_config = false\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
         [upstreams.a]\nendpoints = [\"{a}\"]\n\n[upstreams.b]\nendpoints = [\"{b}\"]\n\n\
         [middlewares.mark]\ntype = \"headers\"\nresponse_set = {{ \"x-config\" = \"{n}\" }}\n\n\
         [[routes]]\nname = \"svc-{n}\"\nmatch = {{ path_prefix = \"/svc\" }}\nmiddlewares = [\"mark\"]\nupstream = \"{upstream}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_nothing_and_never_misroutes() {
    const CLIENTS: usize = 8;
    const RELOADS: u64 = 24;
    const LOAD_FOR: Duration = Duration::from_secs(5);

    let a = Origin::fixed("a", 200, "A");
    let b = Origin::fixed("b", 200, "B");
    let dir = TempDir::new("reload");
    let file = dir.write("load.toml", &route_set(0, a.addr, b.addr));
    let gw = Arc::new(start_file(&file, 2));
    let addr = gw.addr();

    // Reload counters: a request that starts after `done` reloads completed
    // runs on set `done` or later; one that ends before `started` reloads
    // began cannot have seen a later set.
    let started = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (started, done, stop) = (started.clone(), done.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut conn = H1::connect(addr).await;
            let (mut ok, mut failed, mut misrouted, mut out_of_window) = (0u64, 0u64, 0u64, 0u64);
            let deadline = Instant::now() + LOAD_FOR + Duration::from_secs(10);
            let mut seen_sets = std::collections::BTreeSet::new();
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let low = done.load(Ordering::SeqCst);
                let reply = conn.get("/svc/item").await;
                let high = started.load(Ordering::SeqCst);
                if reply.status != 200 {
                    failed += 1;
                    continue;
                }
                let set: u64 = reply
                    .headers
                    .get("x-config")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(u64::MAX);
                let expected = if set % 2 == 0 { "A" } else { "B" };
                if set == u64::MAX || reply.text() != expected {
                    misrouted += 1;
                } else if set < low || set > high {
                    out_of_window += 1;
                } else {
                    ok += 1;
                }
                seen_sets.insert(set);
            }
            (ok, failed, misrouted, out_of_window, seen_sets.len())
        }));
    }

    // Reload while the clients run, spread over the load period.
    let reloader = {
        let (gw, started, done) = (gw.clone(), started.clone(), done.clone());
        let (a, b) = (a.addr, b.addr);
        let path = file.clone();
        tokio::task::spawn_blocking(move || {
            let pause = LOAD_FOR / (RELOADS as u32 + 1);
            let mut refused = 0;
            for n in 1..=RELOADS {
                std::thread::sleep(pause);
                std::fs::write(&path, route_set(n, a, b)).unwrap();
                started.store(n, Ordering::SeqCst);
                match gw.reload() {
                    Ok(generation) => assert_eq!(generation, n + 1),
                    Err(e) => {
                        refused += 1;
                        eprintln!("reload {n} refused: {e}");
                    }
                }
                done.store(n, Ordering::SeqCst);
            }
            refused
        })
    };
    let refused = reloader.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);

    let (mut ok, mut failed, mut misrouted, mut out_of_window, mut most_sets) = (0, 0, 0, 0, 0);
    for c in clients {
        let (o, f, m, w, sets) = c.await.expect("a client connection failed or was reset");
        ok += o;
        failed += f;
        misrouted += m;
        out_of_window += w;
        most_sets = most_sets.max(sets);
    }
    println!(
        "reload under load: {CLIENTS} keep-alive clients, {RELOADS} reloads in {LOAD_FOR:?}: \
         {ok} requests served by the live set, {failed} failed, {misrouted} misrouted, \
         {out_of_window} from a set not live during the request; one client saw up to {most_sets} sets"
    );
    assert_eq!(refused, 0, "every reload must be published");
    assert_eq!(failed, 0, "failed requests during reloads");
    assert_eq!(misrouted, 0, "misrouted requests during reloads");
    assert_eq!(
        out_of_window, 0,
        "responses from a set not live during their request"
    );
    assert!(
        ok >= 1000,
        "too little load to show anything: {ok} requests"
    );
    assert!(
        most_sets >= RELOADS as usize / 2,
        "the clients did not see the reloads: {most_sets} sets"
    );
    assert_eq!(gw.generation(), RELOADS + 1);
    // Both upstreams stayed in every set: their pools were never rebuilt.
    assert!(a.connections() <= 2 * CLIENTS && b.connections() <= 2 * CLIENTS);
}

#[tokio::test]
async fn a_removed_upstream_s_pool_closes_and_a_kept_one_survives() {
    let kept = Origin::fixed("kept", 200, "kept");
    let gone = Origin::fixed("gone", 200, "gone");
    let both = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[upstreams.kept]\nendpoints = [\"{}\"]\n\n\
         [upstreams.gone]\nendpoints = [\"{}\"]\n\n\
         [[routes]]\nmatch = {{ path_prefix = \"/kept\" }}\nupstream = \"kept\"\n\n\
         [[routes]]\nmatch = {{ path_prefix = \"/gone\" }}\nupstream = \"gone\"\n",
        kept.addr, gone.addr
    );
    let gw = gateway_with(&both, 1);
    let mut client = H1::connect(gw.addr()).await;
    assert_eq!(client.get("/kept").await.text(), "kept");
    assert_eq!(client.get("/gone").await.text(), "gone");
    assert_eq!(
        gone.open_connections(),
        1,
        "the pooled connection to `gone`"
    );

    let only_kept = both
        .split("\n\n[upstreams.gone]")
        .next()
        .unwrap()
        .to_string()
        + "\n\n[[routes]]\nmatch = { path_prefix = \"/kept\" }\nupstream = \"kept\"\n";
    gw.reload_toml("only-kept.toml", &only_kept).unwrap();
    // The worker notices the new generation with its next request.
    assert_eq!(client.get("/kept").await.text(), "kept");
    let deadline = Instant::now() + Duration::from_secs(5);
    while gone.open_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gone.open_connections(),
        0,
        "the removed upstream's pool did not close"
    );
    assert_eq!(kept.connections(), 1, "the kept upstream was reconnected");
    assert_eq!(kept.open_connections(), 1);
    assert_eq!(client.get("/gone").await.status, 404);
}

#[tokio::test]
async fn listeners_are_opened_and_closed_and_the_others_never_rebound() {
    let origin = Origin::fixed("o", 200, "o");
    let one = config(origin.addr, "/");
    // Another loopback address, so no other test can take its port once closed.
    let two = format!("[[listeners]]\nname = \"extra\"\naddress = \"127.0.0.2:0\"\n\n{one}");
    let gw = gateway_with(&one, 2);
    let main = gw.addr();
    let mut kept = H1::connect(main).await;
    assert_eq!(kept.get("/").await.status, 200);

    gw.reload_toml("two.toml", &two).unwrap();
    let addrs = gw.listen_addrs();
    let extra = addrs[0];
    assert_eq!(addrs, vec![extra, main], "in file order");
    assert_eq!(extra.ip().to_string(), "127.0.0.2");
    let mut on_extra = H1::connect(extra).await;
    assert_eq!(on_extra.get("/").await.status, 200);
    assert_eq!(
        kept.get("/").await.status,
        200,
        "the unchanged listener's connection"
    );
    assert_eq!(get(main, "/", &[]).await.status, 200);

    gw.reload_toml("one.toml", &one).unwrap();
    assert_eq!(gw.listen_addrs(), vec![main]);
    // Closed for new connections (each worker closes its socket when it reads
    // the command; allow a moment).
    // Refused three times in a row: every worker has closed its socket.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    while refused < 3 && Instant::now() < deadline {
        match tokio::net::TcpStream::connect(extra).await {
            Ok(_) => refused = 0,
            Err(_) => refused += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refused, 3, "the removed listener still accepts");
    // Connections accepted before stay served, like nginx's old workers.
    assert_eq!(on_extra.get("/").await.status, 200);
    assert_eq!(kept.get("/").await.status, 200);

    // A listener that cannot be bound refuses the whole reload.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap();
    let clash = format!("[[listeners]]\naddress = \"{taken}\"\n\n{one}");
    let generation = gw.generation();
    let err = gw.reload_toml("clash.toml", &clash).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot listen on {taken}: ")),
        "{err}"
    );
    assert_eq!(gw.generation(), generation);
    assert_eq!(gw.listen_addrs(), vec![main]);
}

#[tokio::test]
async fn the_file_watch_reloads_a_changed_file_and_keeps_serving_a_broken_one() {
    let origin = Origin::fixed("o", 200, "o");
    let dir = TempDir::new("reload");
    let file = dir.write("watch.toml", &config(origin.addr, "/first"));
    let gw = start_file(&file, 1);
    assert_eq!(get(gw.addr(), "/first", &[]).await.status, 200);

    let wait_for_generation = |want: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while gw.generation() < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        gw.generation()
    };

    // An editor's save: write a sibling and rename it over the file.
    replace(&file, &config(origin.addr, "/second"));
    assert_eq!(wait_for_generation(2), 2, "the change was not picked up");
    assert_eq!(get(gw.addr(), "/second", &[]).await.status, 200);
    assert_eq!(get(gw.addr(), "/first", &[]).await.status, 404);

    // A write burst (truncate, then partial writes) settles into one reload.
    let final_text = config(origin.addr, "/third");
    let (head, tail) = final_text.split_at(final_text.len() / 2);
    std::fs::write(&file, "").unwrap();
    std::fs::write(&file, head).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(&file, format!("{head}{tail}")).unwrap();
    assert_eq!(wait_for_generation(3), 3);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(gw.generation(), 3, "one burst, one reload");
    assert_eq!(get(gw.addr(), "/third", &[]).await.status, 200);

    // A broken save: refused, the running configuration stays.
    replace(&file, "[[routes]]\nupstream = \"nowhere\"\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(gw.generation(), 3);
    assert_eq!(get(gw.addr(), "/third", &[]).await.status, 200);

    // A touch without a change reloads nothing.
    replace(&file, &config(origin.addr, "/fourth"));
    assert_eq!(wait_for_generation(4), 4);
    replace(&file, &config(origin.addr, "/fourth"));
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(gw.generation(), 4);
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_configuration_it_started_with() {
    // Slow enough for a reload to land mid-request.
    let origin = Origin::slow(Duration::from_millis(500), "slow");
    let marked = |set: &str| {
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[upstreams.a]\nendpoints = [\"{}\"]\n\n\
             [middlewares.mark]\ntype = \"headers\"\nresponse_set = {{ \"x-config\" = \"{set}\" }}\n\n\
             [[routes]]\nmiddlewares = [\"mark\"]\nupstream = \"a\"\n",
            origin.addr
        )
    };
    let gw = Arc::new(gateway_with(&marked("old"), 1));
    let addr = gw.addr();
    let in_flight = tokio::spawn(async move { get(addr, "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(origin.requests(), 1, "the request reached the origin");
    let generation = gw.reload_toml("new.toml", &marked("new")).unwrap();
    assert_eq!(generation, 2);
    let late = tokio::spawn(async move { get(addr, "/", &[]).await });
    let early = in_flight.await.unwrap();
    assert_eq!(early.status, 200);
    assert_eq!(
        early.headers["x-config"], "old",
        "ran on the snapshot it started with"
    );
    let late = late.await.unwrap();
    assert_eq!(late.headers["x-config"], "new");
}
