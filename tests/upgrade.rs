//! Zero-downtime upgrade of the real binary: `strait upgrade` (SIGUSR2) makes
//! the running process start the binary on disk, hand it the listening
//! sockets and drain. Under load no request fails; a new process that cannot
//! serve (invalid configuration, a successor that answers garbage or another
//! protocol version, or exits) leaves the old one serving; a handover the new
//! process cannot accept is refused with a precise line; the worker count
//! may change across an upgrade.
//!
//! Every process is killed by its id when a test ends, even on a panic or
//! the watchdog (`Fleet`'s drop). This test process is a child subreaper,
//! so an upgraded process whose parent has exited becomes its child and is
//! reaped here with its exit status.

#[path = "upgrade/client.rs"]
mod client;
mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use client::{join_all, keep_alive_client, short_client};
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use socket2::{Domain, Socket, Type};

/// The whole of one test, after which it fails with a message.
const WATCHDOG: Duration = Duration::from_secs(90);

async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    if tokio::time::timeout(WATCHDOG, test).await.is_err() {
        panic!("watchdog: the test did not finish within {WATCHDOG:?}");
    }
}

fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER"));
}

fn config(workers: usize, listen: SocketAddr, admin: SocketAddr, origin: SocketAddr) -> String {
    format!(
        "[server]\nworkers = {workers}\nwatch_config = false\ndrain_timeout = \"3s\"\n\n\
         [admin]\nlisten = \"{admin}\"\n\n[[listeners]]\naddress = \"{listen}\"\n\n\
         [upstreams.app]\nendpoints = [\"{origin}\"]\n\n[[routes]]\nupstream = \"app\"\n"
    )
}

/// One gateway and its successors, run from a hard link to the built
/// binary in the test's directory (so the "binary on disk" can be replaced
/// under a running process), all writing one log.
struct Fleet {
    dir: TempDir,
    exe: PathBuf,
    config: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
    /// Every gateway process started, in order; killed on drop.
    pids: Vec<u32>,
    reaped: Vec<u32>,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Fleet {
    fn start(tag: &str, workers: usize, origin: SocketAddr) -> Fleet {
        become_subreaper();
        let dir = TempDir::new(tag);
        let exe = dir.path("strait");
        link_binary(&exe);
        let (listen, admin) = (free_addr(), free_addr());
        let config = dir.write("strait.toml", &config(workers, listen, admin, origin));
        let pid_file = dir.path("strait.pid");
        let log = dir.path("strait.log");
        let child = Command::new(&exe)
            .arg("--config")
            .arg(&config)
            .arg("--pid-file")
            .arg(&pid_file)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("STRAIT_UPGRADE_FD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start strait");
        let pid = child.id();
        // Waited for by id (waitpid), like its successors.
        drop(child);
        let fleet = Fleet {
            dir,
            exe,
            config,
            pid_file,
            log,
            pids: vec![pid],
            reaped: Vec::new(),
            listen,
            admin,
        };
        fleet.wait_pid_file(pid);
        fleet.wait_log("admin API listening");
        fleet
    }

    fn current(&self) -> u32 {
        *self.pids.last().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 20 s for the log to contain `needle`.
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "log never said {needle:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_pid_file(&self, pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while strait::read_pid_file(&self.pid_file).ok() != Some(pid) {
            assert!(
                Instant::now() < deadline,
                "the pid file never named {pid}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// Replaces the binary on disk (a rename over it, as a package manager
    /// does) with the built binary again, or with a script.
    fn replace_binary(&self, script: Option<&str>) {
        let next = self.dir.path("strait.next");
        let _ = std::fs::remove_file(&next);
        match script {
            None => link_binary(&next),
            Some(text) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(&next, text).unwrap();
                std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        std::fs::rename(&next, &self.exe).unwrap();
    }

    /// `strait upgrade --pid-file FILE`: its exit status, stdout and stderr.
    async fn upgrade_command(&self) -> (bool, String, String) {
        let pid_file = self.pid_file.clone();
        let run = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_strait"))
                .arg("upgrade")
                .arg("--pid-file")
                .arg(&pid_file)
                .stdin(Stdio::null())
                .output()
        });
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("strait upgrade did not return within 60 s")
            .unwrap()
            .expect("run strait upgrade");
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    /// Upgrades with the command; the new process's id, checked to be new
    /// and named by the pid file.
    async fn upgrade(&mut self) -> u32 {
        let (ok, out, err) = self.upgrade_command().await;
        assert!(ok, "strait upgrade failed: {out} {err}\n{}", self.log());
        let pid: u32 = out
            .strip_prefix("upgraded: process ")
            .and_then(|s| s.strip_suffix(" serves"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected output of strait upgrade: {out:?}"));
        assert!(
            !self.pids.contains(&pid),
            "pid {pid} again: {:?}",
            self.pids
        );
        assert_eq!(strait::read_pid_file(&self.pid_file).unwrap(), pid);
        self.pids.push(pid);
        pid
    }

    /// The exit code of `pid` (a gateway of this fleet) within `limit`.
    fn wait_exit(&mut self, pid: u32, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            // ECHILD until its parent has exited and it became ours.
            match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.reaped.push(pid);
                    return code;
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    self.reaped.push(pid);
                    return -(signal as i32);
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "process {pid} did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn alive(&self, pid: u32) -> bool {
        // A zombie still answers kill(0): look at its state.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for &pid in &self.pids {
            if !self.reaped.contains(&pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for &pid in &self.pids {
            while !self.reaped.contains(&pid) && Instant::now() < deadline {
                match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Ok(_) => break,
                }
            }
        }
    }
}

/// A hard link to the built binary (no 140 MB copy), or a copy across file
/// systems.
fn link_binary(to: &std::path::Path) {
    let built = env!("CARGO_BIN_EXE_strait");
    if std::fs::hard_link(built, to).is_err() {
        std::fs::copy(built, to).unwrap();
    }
}

/// Until `/status` reports `n` workers (for a moment after an upgrade the
/// old process, still accepting on the shared admin socket, may answer).
async fn workers_become(admin: SocketAddr, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get(admin, "/status", &[]).await.json();
        if status["workers"] == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "workers never became {n}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_under_load_fail_no_request() {
    bounded(async {
        let origin = Origin::fixed("app", 200, "ok");
        let mut fleet = Fleet::start("upgrade-load", 2, origin.addr);
        let first = fleet.current();
        let until = Instant::now() + Duration::from_secs(10);
        let clients: Vec<_> = (0..8)
            .map(|_| tokio::spawn(keep_alive_client(fleet.listen, until)))
            .collect();
        // And a few opening a connection per request: they go through the
        // accept queues, which must move with the sockets.
        let short: Vec<_> = (0..4)
            .map(|_| tokio::spawn(short_client(fleet.listen, until)))
            .collect();
        let started = Instant::now();
        for i in 1..=5u32 {
            // Spread over the ten seconds, the last one well before the end.
            tokio::time::sleep_until((started + Duration::from_millis(1500 * u64::from(i))).into())
                .await;
            fleet.upgrade().await;
        }
        let total = join_all(clients).await;
        let short = join_all(short).await;
        let pids = fleet.pids.clone();
        for &old in &pids[..pids.len() - 1] {
            assert_eq!(
                fleet.wait_exit(old, Duration::from_secs(20)),
                0,
                "process {old}"
            );
        }
        let last = fleet.current();
        assert!(fleet.alive(last));
        println!(
            "upgrade under load: 8 keep-alive clients for 10 s, 5 upgrades (pids {pids:?}): \
             {} requests ok, {} retried (a reused connection closed before any response byte), \
             {} failed; and 4 clients with a connection per request: {} requests ok, {} failed",
            total.ok,
            total.retried,
            total.failures.len(),
            short.ok,
            short.failures.len()
        );
        for tally in [&total, &short] {
            let failures = &tally.failures;
            assert!(
                failures.is_empty(),
                "failures: {:?}",
                &failures[..failures.len().min(20)]
            );
        }
        assert!(
            total.ok > 200,
            "too little traffic to show anything: {total:?}"
        );
        assert_ne!(first, last);
        // The last process serves, with the admin API handed over too.
        workers_become(fleet.admin, 2).await;
        let log = fleet.log();
        assert_eq!(
            log.matches("upgrade: the new process serves; this one stops accepting and drains")
                .count(),
            5,
            "{log}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_upgrade_to_an_invalid_configuration_leaves_the_old_process_serving() {
    bounded(async {
        let origin = Origin::fixed("app", 200, "ok");
        let mut fleet = Fleet::start("upgrade-invalid", 1, origin.addr);
        let old = fleet.current();
        let good = std::fs::read_to_string(&fleet.config).unwrap();
        fleet.write_config(&good.replace("upstream = \"app\"", "upstream = \"ap\""));
        let (ok, out, err) = fleet.upgrade_command().await;
        assert!(!ok, "{out}");
        assert_eq!(err, format!("strait upgrade: the upgrade failed; process {old} serves on (its log says why)"));
        let log = fleet.wait_log("upgrade failed, this process serves on");
        let expected = format!(
            "refused the handover: invalid configuration:\n{}:16:12: route \"route-1\": unknown upstream \"ap\": expected one of [\"app\"]; it exited with exit status: 1",
            fleet.config.display()
        );
        assert!(log.contains(&expected), "the log lacks {expected:?}:\n{log}");
        assert!(fleet.alive(old));
        assert_eq!(strait::read_pid_file(&fleet.pid_file).unwrap(), old);
        let mut h1 = H1::connect(fleet.listen).await;
        assert_eq!(h1.get("/x").await.status, 200);
        assert_eq!(get(fleet.admin, "/status", &[]).await.status, 200);

        // Mended, the next upgrade goes through.
        fleet.write_config(&good);
        let new = fleet.upgrade().await;
        assert_eq!(fleet.wait_exit(old, Duration::from_secs(20)), 0);
        assert!(fleet.alive(new));
        assert_eq!(get(fleet.listen, "/x", &[]).await.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_count_may_change_across_an_upgrade() {
    bounded(async {
        let origin = Origin::fixed("app", 200, "ok");
        let mut fleet = Fleet::start("upgrade-workers", 1, origin.addr);
        let until = Instant::now() + Duration::from_secs(6);
        let clients: Vec<_> = (0..16)
            .map(|_| tokio::spawn(short_client(fleet.listen, until)))
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (listen, admin) = (fleet.listen, fleet.admin);
        let text = |n| config(n, listen, admin, origin.addr);

        // 1 -> 2: the one socket handed over, one more bound beside it.
        fleet.write_config(&text(2));
        fleet.upgrade().await;
        workers_become(fleet.admin, 2).await;
        fleet.wait_log("upgrade: more workers than sockets handed over: bound more beside them");
        tokio::time::sleep(Duration::from_secs(2)).await;

        // 2 -> 1: both sockets kept (closing one would reset its queue).
        fleet.write_config(&text(1));
        let new = fleet.upgrade().await;
        // The old process had 2 as well: wait until it has exited.
        let old = fleet.pids[fleet.pids.len() - 2];
        assert_eq!(fleet.wait_exit(old, Duration::from_secs(20)), 0);
        assert!(fleet.alive(new));
        workers_become(fleet.admin, 2).await;
        fleet.wait_log("upgrade: 2 sockets per listener were handed over, so 2 workers run, not 1");

        let total = join_all(clients).await;
        println!(
            "worker count 1 -> 2 -> 1 under 16 new-connection-per-request clients: {} requests ok, {} failed",
            total.ok,
            total.failures.len()
        );
        assert!(total.failures.is_empty(), "failures: {:?}", &total.failures[..total.failures.len().min(20)]);
        assert!(total.ok > 100, "too little traffic to show anything: {total:?}");
        let pids = fleet.pids.clone();
        for &old in &pids[..1] {
            assert_eq!(fleet.wait_exit(old, Duration::from_secs(20)), 0, "process {old}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_successor_that_answers_wrong_or_exits_is_refused_and_the_old_process_serves_on() {
    bounded(async {
        let origin = Origin::fixed("app", 200, "ok");
        let mut fleet = Fleet::start("upgrade-hostile-successor", 1, origin.addr);
        let old = fleet.current();
        // `exec`, so that the old process's kill ends the script itself.
        let cases = [
            (
                "#!/bin/bash\nprintf 'garbage' >&0\nexec sleep 30\n",
                "answered what this process cannot accept: its answer is not JSON (expected value at line 1 column 1): \"garbage\"; it was killed",
            ),
            (
                "#!/bin/bash\nprintf '{\"strait_upgrade\":9,\"serving\":{\"pid\":1}}' >&0\nexec sleep 30\n",
                "answered what this process cannot accept: its answer speaks upgrade protocol version 9, this binary speaks version 1; it was killed",
            ),
            (
                "#!/bin/bash\nprintf '{\"strait_upgrade\":1}' >&0\nexec sleep 30\n",
                "answered neither \"serving\" nor \"refused\" (exactly one is expected); it was killed",
            ),
            ("#!/bin/bash\nexit 3\n", "it exited with exit status: 3"),
        ];
        for (n, (script, expected)) in cases.iter().enumerate() {
            fleet.replace_binary(Some(script));
            kill(Pid::from_raw(old as i32), Signal::SIGUSR2).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let log = fleet.log();
                let failures: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("upgrade failed, this process serves on"))
                    .collect();
                if failures.len() > n {
                    let line = failures[n];
                    assert!(line.contains(expected), "case {n}: {line:?} lacks {expected:?}");
                    break;
                }
                assert!(Instant::now() < deadline, "case {n}: no failure logged:\n{log}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(fleet.alive(old));
            assert_eq!(get(fleet.listen, "/x", &[]).await.status, 200, "case {n}");
            assert_eq!(strait::read_pid_file(&fleet.pid_file).unwrap(), old);
        }
        // The real binary back on disk: the upgrade goes through.
        fleet.replace_binary(None);
        fleet.upgrade().await;
        assert_eq!(fleet.wait_exit(old, Duration::from_secs(20)), 0);
        assert_eq!(get(fleet.listen, "/x", &[]).await.status, 200);
    })
    .await;
}

/// One message on the upgrade socket and the descriptors beside it.
type Message = (Vec<u8>, Vec<OwnedFd>);

/// The real binary as the new process, this test as the old one: sends
/// `messages` (each with the descriptors beside it) on the upgrade socket.
/// Returns the refusal it answers, its exit code and its log.
fn hostile_handover(listen: SocketAddr, messages: Vec<Message>) -> (String, i32, String) {
    let dir = TempDir::new("upgrade-hostile-handover");
    let origin = free_addr();
    let cfg = dir.write(
        "strait.toml",
        &format!(
            "[admin]\nenabled = false\n\n[[listeners]]\naddress = \"{listen}\"\n\n\
             [upstreams.app]\nendpoints = [\"{origin}\"]\n\n[[routes]]\nupstream = \"app\"\n"
        ),
    );
    let log = dir.path("strait.log");
    let (ours, theirs) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_strait"))
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("STRAIT_UPGRADE_FD", "0")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    for (bytes, fds) in &messages {
        let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let rights = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
        let cmsgs: &[_] = if raw.is_empty() { &[] } else { &rights };
        // The new process may have refused (and closed) already.
        let _ = nix::sys::socket::sendmsg::<()>(
            ours.as_raw_fd(),
            &[std::io::IoSlice::new(bytes)],
            cmsgs,
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            None,
        );
    }
    ours.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = (&ours).read(&mut buf).expect("no answer within 20 s");
    let answer: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(answer["strait_upgrade"], 1, "{answer}");
    let refused = answer["refused"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_string();
    let code = child.exit_within(Duration::from_secs(20));
    (
        refused,
        code,
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

/// A direct child, killed and reaped on drop if it is still running.
struct Reaped(std::process::Child);

impl Reaped {
    fn exit_within(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not exit within {limit:?}",
                self.0.id()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn header(listen: SocketAddr, sockets: usize) -> Vec<u8> {
    format!(
        "{{\"strait_upgrade\":1,\"from_pid\":1,\"listeners\":[{{\"spec\":\"{listen}\",\"addr\":\"{listen}\",\"sockets\":{sockets}}}],\"admin\":null}}"
    )
    .into_bytes()
}

#[test]
fn a_handover_the_new_process_cannot_accept_is_refused_precisely_and_nothing_is_bound() {
    let listen = free_addr();
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_addr = elsewhere.local_addr().unwrap();
    let file = std::fs::File::open(env!("CARGO_BIN_EXE_strait")).unwrap();
    let cases: Vec<(Vec<Message>, String)> = vec![
        (
            vec![(b"hello".to_vec(), vec![])],
            "the handover message is not JSON (expected value at line 1 column 1): \"hello\"".into(),
        ),
        (
            vec![(br#"{"strait_upgrade":2,"sockets":[3]}"#.to_vec(), vec![])],
            "the handover message speaks upgrade protocol version 2, this binary speaks version 1".into(),
        ),
        (
            vec![(header(listen, 1), vec![]), (b"socket".to_vec(), vec![])],
            format!("handover message 1 of 1 carries no descriptor: expected the listening socket bound to {listen}"),
        ),
        (
            vec![(header(listen, 1), vec![]), (b"socket".to_vec(), vec![OwnedFd::from(elsewhere)])],
            format!("descriptor 1 of 1 is bound to {elsewhere_addr}, expected {listen}"),
        ),
        (
            vec![(header(listen, 1), vec![]), (b"socket".to_vec(), vec![OwnedFd::from(file)])],
            format!("descriptor 1 of 1 is not a listening TCP socket: expected one bound to {listen}"),
        ),
    ];
    for (messages, expected) in cases {
        let (refused, code, log) = hostile_handover(listen, messages);
        assert_eq!(refused, expected);
        assert_eq!(code, 1, "{log}");
        let line = format!("strait: upgrade refused: {expected}");
        assert!(log.contains(&line), "the log lacks {line:?}:\n{log}");
        // It refused before binding anything.
        std::net::TcpListener::bind(listen)
            .unwrap_or_else(|e| panic!("{listen} was bound: {e}\n{log}"));
    }

    // A value other than 0 is refused before anything is read or bound.
    let dir = TempDir::new("upgrade-variable");
    let log = dir.path("strait.log");
    let child = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args([
            "proxy",
            "--listen",
            &listen.to_string(),
            "--to",
            "127.0.0.1:9",
        ])
        .env("STRAIT_UPGRADE_FD", "5")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let code = Reaped(child).exit_within(Duration::from_secs(20));
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, 1, "{log}");
    let line = "strait: upgrade refused: STRAIT_UPGRADE_FD=\"5\": expected 0 (the upgrade socket comes as standard input)";
    assert!(log.contains(line), "the log lacks {line:?}:\n{log}");
}

#[test]
fn strait_upgrade_does_not_signal_a_process_that_would_die_of_it() {
    // A stale pid file naming another program: SIGUSR2 would terminate it.
    let mut other = Reaped(
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dir = TempDir::new("upgrade-stale-pid");
    let pid_file = dir.write("strait.pid", &format!("{}\n", other.0.id()));
    let err = dir.path("err");
    let mut command = Reaped(
        Command::new(env!("CARGO_BIN_EXE_strait"))
            .arg("upgrade")
            .arg("--pid-file")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap(),
    );
    assert_eq!(command.exit_within(Duration::from_secs(20)), 1);
    let err = std::fs::read_to_string(&err).unwrap();
    assert_eq!(
        err.trim(),
        format!(
            "strait upgrade: process {} does not handle SIGUSR2 (not a strait gateway, or not started): not signalled",
            other.0.id()
        )
    );
    assert!(
        other.0.try_wait().unwrap().is_none(),
        "the other process died"
    );
}
