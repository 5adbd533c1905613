//! A gateway out of descriptors: failed accepts are counted and logged at
//! most once a second (they were logged every 50 ms, about 40 lines a
//! second for as long as the flood lasted), the oldest idle connection is
//! closed to get a descriptor back, and the gateway serves again once the
//! flood has gone. Alone in its test binary: it lowers the process's own
//! descriptor limit, which no other test may share.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::resource::{setrlimit, Resource};
use tokio::net::TcpStream;

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_accept_errors_are_counted_and_logged_once_a_second() {
    capture_logs();
    let origin = Origin::fixed("o", 200, "ok");
    let gw = gateway_with_admin(&simple_config(&[origin.addr], ""), 1);
    let admin = gw.admin_addr().unwrap();
    assert_eq!(get(gw.addr(), "/", &[]).await.status, 200);
    // Room for 80 more descriptors in the whole process (clients and
    // gateway alike); the gateway raised its limit at start, so this is set
    // after it started.
    let limit = open_descriptors() + 80;
    setrlimit(Resource::RLIMIT_NOFILE, limit, limit).unwrap();
    let started = Instant::now();
    // For two seconds, a client that takes every descriptor it can get:
    // each one the gateway frees by closing its oldest connection is taken
    // again, so the gateway stays at the limit.
    let mut flood = Vec::new();
    let mut refused = 0;
    while started.elapsed() < Duration::from_secs(2) && flood.len() < 2000 {
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(gw.addr())).await {
            Ok(Ok(s)) => flood.push(s),
            _ => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    assert!(refused > 0, "the process never ran out of descriptors");
    let lines = logged("accept failed");
    let elapsed = started.elapsed().as_secs() + 1;
    drop(flood);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Serving again, and every failure was counted.
    let errors = metric(admin, "strait_accept_errors_total").await;
    assert!(errors >= 2.0, "accept errors counted: {errors}");
    assert!(
        lines.len() as u64 <= elapsed,
        "{} lines in {elapsed} s for {errors} failed accepts:\n{lines:#?}",
        lines.len()
    );
    assert_eq!(get(gw.addr(), "/", &[]).await.status, 200);
    // The oldest connections were closed to make room.
    let room = metric(
        admin,
        "strait_client_connections_closed_total{reason=\"room\"}",
    )
    .await;
    assert!(room >= 1.0, "closed for room: {room}");
    gw.shutdown();
}
