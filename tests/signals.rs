//! The `strait` binary's signals and its own log, against the real process:
//! SIGUSR1 reopens the access-log files and the `--log-file` after a
//! rotation (the process lives, the rotated files get nothing more), SIGQUIT
//! drains and exits 0 as SIGTERM does (SIGUSR2, the binary upgrade, is
//! tests/upgrade.rs's); and the WARN line h2 and rustls write for each misbehaving connection
//! stays out of the default diagnostics (`RUST_LOG` brings it back).

mod common;
#[path = "common/origins.rs"]
mod origins;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::*;

/// How long any one wait in these tests may take.
const LIMIT: Duration = Duration::from_secs(10);

/// The binary with its configuration, its stderr in a file, and the
/// directory they live in. Dropping it sends SIGTERM, then kills it if it
/// has not exited within 5 s.
struct Strait {
    child: Child,
    stderr: PathBuf,
    dir: TempDir,
}

impl Strait {
    /// Starts `strait --config FILE ARGS` on `config` (written to a new
    /// directory) with `RUST_LOG` set to `rust_log`, or unset for the
    /// default filter, and waits until its workers started (read from
    /// `ready_in`, a file of the directory: `stderr.log` unless the
    /// diagnostics go elsewhere).
    async fn start(
        dir: TempDir,
        config: &str,
        args: &[&str],
        rust_log: Option<&str>,
        ready_in: &str,
    ) -> Strait {
        let config_path = dir.write("strait.toml", config);
        let stderr = dir.path("stderr.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_strait"));
        command
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let strait = Strait {
            child: command.spawn().unwrap(),
            stderr,
            dir,
        };
        wait_for(&strait.dir.path(ready_in), "workers started").await;
        strait
    }

    /// Sends `SIGNAME` (e.g. `"USR1"`) to the process.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Panics if the process has exited.
    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "strait exited ({status}); its stderr:\n{}",
                read(&self.stderr)
            );
        }
    }

    /// Waits up to `limit` for the process to exit and returns its status.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Strait {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits up to [`LIMIT`] for the file at `path` to exist and contain
/// `needle`; returns its text.
async fn wait_for(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.contains(needle) {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never contained {needle:?}; it reads:\n{}\n(stderr.log beside it:\n{})",
            path.display(),
            read(path),
            read(&path.with_file_name("stderr.log"))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One worker, no admin API, `listeners` (TOML), every request to `origin`
/// through `middlewares`; `extra` holds middleware definitions.
fn config(listeners: &str, origin: SocketAddr, middlewares: &str, extra: &str) -> String {
    format!(
        "[server]\nworkers = 1\nwatch_config = false\n\n[admin]\nenabled = false\n\n{listeners}\n\
         {extra}\n[upstreams.app]\nendpoints = [\"{origin}\"]\n\n\
         [[routes]]\nmiddlewares = {middlewares}\nupstream = \"app\"\n"
    )
}

fn plain_listener(addr: SocketAddr) -> String {
    format!("[[listeners]]\naddress = \"{addr}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_a_rotated_access_log_file() {
    let origin = Origin::fixed("app", 200, "ok");
    let listen = free_addr();
    let dir = TempDir::new("sigusr1-access");
    let access = dir.path("access.log");
    let rotated = dir.path("access.log.1");
    let log = format!(
        "[middlewares.log]\ntype = \"access_log\"\noutput = {:?}\n",
        access.to_str().unwrap()
    );
    let toml = config(&plain_listener(listen), origin.addr, "[\"log\"]", &log);
    let mut strait = Strait::start(dir, &toml, &[], Some("info"), "stderr.log").await;

    assert_eq!(get(listen, "/before", &[]).await.status, 200);
    wait_for(&access, "/before").await;
    std::fs::rename(&access, &rotated).unwrap();

    strait.signal("USR1");
    let stderr = wait_for(&strait.stderr, "SIGUSR1: log files reopened").await;
    assert!(stderr.contains("access_logs=1"), "{stderr}");
    // The writer made the new file at once, before any line for it.
    wait_for(&access, "").await;
    assert_eq!(get(listen, "/after", &[]).await.status, 200);
    let fresh = wait_for(&access, "/after").await;
    assert_eq!(fresh.lines().count(), 1, "{fresh}");
    let old = read(&rotated);
    assert_eq!(old.lines().count(), 1, "the rotated file got more: {old}");
    assert!(old.contains("/before"), "{old}");
    strait.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_a_rotated_log_file() {
    let origin = Origin::fixed("app", 200, "ok");
    let listen = free_addr();
    let dir = TempDir::new("sigusr1-log-file");
    let log_file = dir.path("strait.log");
    let rotated = dir.path("strait.log.1");
    let toml = config(&plain_listener(listen), origin.addr, "[]", "");
    let args = ["--log-file", log_file.to_str().unwrap()];
    let mut strait = Strait::start(dir, &toml, &args, Some("info"), "strait.log").await;
    assert!(
        !read(&strait.stderr).contains("workers started"),
        "with --log-file, diagnostics go to the file only"
    );

    std::fs::rename(&log_file, &rotated).unwrap();
    strait.signal("USR1");
    let fresh = wait_for(&log_file, "SIGUSR1: log files reopened").await;
    assert!(fresh.contains("log_file="), "{fresh}");
    // More diagnostics after the reopen: they reach the new file only.
    strait.signal("HUP");
    wait_for(&log_file, "SIGHUP: reloading the configuration").await;
    let old = read(&rotated);
    assert!(old.contains("workers started"), "{old}");
    assert!(
        !old.contains("SIGUSR1") && !old.contains("SIGHUP"),
        "the rotated log file got more lines:\n{old}"
    );
    assert_eq!(get(listen, "/", &[]).await.status, 200);
    strait.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_finishes_the_request_in_flight_then_exits_0() {
    let origin = Origin::slow(Duration::from_millis(800), "finished after the signal");
    let listen = free_addr();
    let toml = config(&plain_listener(listen), origin.addr, "[]", "");
    let dir = TempDir::new("sigquit");
    let mut strait = Strait::start(dir, &toml, &[], Some("info"), "stderr.log").await;
    let in_flight = tokio::spawn(async move { get(listen, "/slow", &[]).await });
    // Let the request reach the origin, then ask the proxy to stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    strait.signal("QUIT");
    let reply = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the in-flight response must finish")
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "finished after the signal");
    let status = tokio::task::block_in_place(|| strait.wait_exit(Duration::from_secs(5)));
    let stderr = read(&strait.stderr);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGQUIT drains and exits 0 (exit status {status:?}); stderr:\n{stderr}"
    );
    assert!(stderr.contains("SIGQUIT: shutting down"), "{stderr}");
}

/// The client side of a Rapid Reset: the HTTP/2 preface, then 50 requests
/// each cancelled (RST_STREAM) in the same write, before the server can
/// accept them. h2 allows 20 such streams per connection, then sends GOAWAY
/// ENHANCE_YOUR_CALM; returns whether it did.
async fn rapid_reset(addr: SocketAddr) -> bool {
    fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[]); // SETTINGS, empty
    for i in 0..50 {
        let stream = 1 + 2 * i;
        // HEADERS, END_STREAM | END_HEADERS: GET, http, / (HPACK static table).
        frame(&mut out, 0x1, 0x5, stream, &[0x82, 0x86, 0x84]);
        frame(&mut out, 0x3, 0, stream, &8u32.to_be_bytes()); // RST_STREAM CANCEL
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&out).await.unwrap();
    let mut got = Vec::new();
    // Until the server closes; a reset (it closed with our frames unread)
    // ends it too, after what was already received.
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut got))
        .await
        .expect("the server closes a Rapid Reset connection");
    let mut at = 0;
    while at + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
        let (kind, payload) = (got[at + 3], at + 9);
        if kind == 0x7 && payload + 8 <= got.len() {
            let code = &got[payload + 4..payload + 8];
            return u32::from_be_bytes(code.try_into().unwrap()) == 0xb;
        }
        at = payload + len;
    }
    false
}

/// A TLS scan that never finishes a handshake: one warning-level alert
/// record where a ClientHello should be (rustls logs "TLS alert warning
/// received" at WARN), then end of stream.
async fn tls_scan(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // Alert record, TLS 1.2, 2 bytes: level warning (1), unexpected_message (10).
    s.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x0a])
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut rest))
        .await
        .expect("the server closes a failed handshake");
}

/// The WARN lines of `crate_name` (`h2`, `rustls`) in `log`.
fn warnings<'a>(log: &'a str, crate_name: &str) -> Vec<&'a str> {
    let target = format!(" WARN {crate_name}::");
    log.lines().filter(|l| l.contains(&target)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_clients_leave_no_h2_or_rustls_warnings_by_default() {
    let origin = Origin::fixed("app", 200, "ok");
    let ca = origins::TestCa::new("signals");
    let mut runs = Vec::new();
    // The default filter, then RUST_LOG=info: the same clients must have
    // produced the lines the default keeps out.
    for rust_log in [None, Some("info")] {
        let dir = TempDir::new("floods");
        let pem = ca.server(&["localhost"]).write(&dir, "server");
        let (plain, tls) = (free_addr(), free_addr());
        let listeners = format!(
            "{}\n[[listeners]]\nname = \"tls\"\naddress = \"{tls}\"\n\n[listeners.tls]\n\
             [[listeners.tls.certificates]]\ncert = {:?}\nkey = {:?}\n",
            plain_listener(plain),
            pem.cert,
            pem.key
        );
        let toml = config(&listeners, origin.addr, "[]", "");
        let mut strait = Strait::start(dir, &toml, &[], rust_log, "stderr.log").await;
        let mut calmed = 0;
        for _ in 0..200 {
            calmed += usize::from(rapid_reset(plain).await);
        }
        assert_eq!(calmed, 200, "each Rapid Reset connection hit h2's limit");
        for _ in 0..50 {
            tls_scan(tls).await;
        }
        // Every line of those connections was queued before this one.
        strait.signal("HUP");
        let log = wait_for(&strait.stderr, "SIGHUP: reloading").await;
        strait.assert_alive();
        let (h2, rustls) = (warnings(&log, "h2").len(), warnings(&log, "rustls").len());
        runs.push((rust_log, h2, rustls, log));
    }
    let (_, h2, rustls, log) = &runs[0];
    assert_eq!(
        (*h2, *rustls),
        (0, 0),
        "h2 and rustls WARN lines with the default filter:\n{}",
        [warnings(log, "h2"), warnings(log, "rustls")]
            .concat()
            .join("\n")
    );
    let (_, h2, rustls, _) = &runs[1];
    assert!(
        *h2 >= 200 && *rustls >= 50,
        "with RUST_LOG=info, one WARN per connection: h2 {h2} (expected 200), rustls {rustls} (expected 50)"
    );
}
