//! Graceful shutdown of the `strait` binary: SIGTERM lets a slow response in
//! flight finish and then exits 0; idle keep-alive connections do not hold the
//! drain up; a second signal exits at once.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The gateway as a child process, killed if a test fails midway.
struct Proxy {
    child: Child,
    addr: std::net::SocketAddr,
    /// Its configuration file's, gone once it is.
    _dir: TempDir,
}

impl Proxy {
    fn start(origin: std::net::SocketAddr, drain_timeout: &str) -> Proxy {
        let addr = free_addr();
        let config = format!(
            "[server]\nworkers = 1\ndrain_timeout = \"{drain_timeout}\"\n\n[admin]\nenabled = false\n\n[[listeners]]\naddress = \"{addr}\"\n\n\
             [upstreams.slow]\nendpoints = [\"{origin}\"]\n\n[[routes]]\nupstream = \"slow\"\n"
        );
        let dir = TempDir::new("shutdown");
        let path = dir.write("strait.toml", &config);
        let child = Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(["--config", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "strait did not start listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Proxy {
            child,
            addr,
            _dir: dir,
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (off the test's runtime) up to `limit` for the process to exit.
    async fn exited(mut self, limit: Duration) -> std::process::ExitStatus {
        tokio::task::spawn_blocking(move || self.wait_exit(limit))
            .await
            .unwrap()
    }

    /// Waits up to `limit` for the process to exit and returns its status.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "strait did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_slow_response_in_flight_then_exits_0() {
    let origin = Origin::slow(Duration::from_millis(800), "finished after the signal");
    let proxy = Proxy::start(origin.addr, "10s");
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/slow", &[]).await });
    // Let the request reach the origin, then ask the proxy to stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.signal("TERM");
    let reply = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the in-flight response must finish")
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "finished after the signal");
    let status = proxy.exited(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_do_not_hold_the_drain() {
    let origin = Origin::echo();
    let proxy = Proxy::start(origin.addr, "10s");
    // A keep-alive connection that served one request and now sits idle.
    let mut idle = H1::connect(proxy.addr).await;
    assert_eq!(idle.get("/once").await.status, 200);
    let started = Instant::now();
    proxy.signal("TERM");
    let status = proxy.exited(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "an idle connection held the drain for {:?}",
        started.elapsed()
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let origin = Origin::slow(Duration::from_secs(20), "finished after the signal");
    let proxy = Proxy::start(origin.addr, "30s");
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        // The proxy dies under it: an error, not a reply.
        sender
            .send_request(request("GET", "/stuck", &[]))
            .await
            .is_err()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    proxy.signal("INT");
    let status = proxy.exited(Duration::from_secs(3)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_ne!(status.code(), Some(0), "a forced exit is not a clean one");
    assert!(tokio::time::timeout(Duration::from_secs(3), in_flight)
        .await
        .unwrap()
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_the_wait() {
    let origin = Origin::slow(Duration::from_secs(20), "finished after the signal");
    let proxy = Proxy::start(origin.addr, "500ms");
    let addr = proxy.addr;
    let _stuck = tokio::spawn(async move { get(addr, "/stuck", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    proxy.signal("TERM");
    let status = proxy.exited(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "drain took {took:?}"
    );
}
