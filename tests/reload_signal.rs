//! The `strait` binary reloads its file on SIGHUP. An invalid file is refused
//! and reported through all three channels (the log, the admin API's
//! `/status`, the `strait_reloads_total{result="failed"}` metric) while the
//! running configuration keeps serving; a valid one is published.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The binary, killed on drop; then its configuration and log go with
/// their directory.
struct Strait {
    child: Child,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Drop for Strait {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Strait {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to 10 s for the log to contain `needle`.
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
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
}

fn config(listen: SocketAddr, admin: SocketAddr, origin: SocketAddr, path: &str) -> String {
    format!(
        "[server]\nworkers = 1\nwatch_config = false\n\n[admin]\nlisten = \"{admin}\"\n\n\
         [[listeners]]\naddress = \"{listen}\"\n\n[upstreams.app]\nendpoints = [\"{origin}\"]\n\n\
         [[routes]]\nmatch = {{ path_prefix = \"{path}\" }}\nupstream = \"app\"\n"
    )
}

#[tokio::test]
async fn sighup_reloads_and_an_invalid_file_is_reported_three_ways() {
    let origin = Origin::fixed("app", 200, "app");
    let (listen, admin) = (free_addr(), free_addr());
    let dir = TempDir::new("sighup");
    let config_path = dir.write("strait.toml", &config(listen, admin, origin.addr, "/v1"));
    let log_path = dir.path("strait.log");
    let child = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["--config", config_path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let strait = Strait {
        child,
        log: log_path,
        _dir: dir,
    };
    strait.wait_log("admin API listening");
    strait.wait_log("workers started");
    assert_eq!(get(listen, "/v1/x", &[]).await.status, 200);

    // An invalid file: refused, reported three ways, the old routes serve.
    std::fs::write(
        &config_path,
        config(listen, admin, origin.addr, "/v2")
            .replace("upstream = \"app\"", "upstream = \"ap\""),
    )
    .unwrap();
    strait.hup();
    let expected = format!(
        "{}:16:12: route \"route-1\": unknown upstream \"ap\": expected one of [\"app\"]",
        config_path.display()
    );
    let log = strait.wait_log("reload refused");
    assert!(
        log.contains(&expected),
        "the log lacks {expected:?}:\n{log}"
    );

    let status = get(admin, "/status", &[]).await.json();
    let last = &status["last_reload"];
    assert_eq!(last["ok"], false, "{status}");
    assert_eq!(last["trigger"], "signal", "{status}");
    assert!(
        last["error"].as_str().unwrap_or("").contains(&expected),
        "{status}"
    );
    assert_eq!(status["generation"], 1);
    assert_eq!(
        metric(admin, "strait_reloads_total{result=\"failed\"}").await,
        1.0
    );
    assert_eq!(get(listen, "/v1/x", &[]).await.status, 200);
    assert_eq!(get(listen, "/v2/x", &[]).await.status, 404);

    // A valid file: published.
    std::fs::write(&config_path, config(listen, admin, origin.addr, "/v2")).unwrap();
    strait.hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get(admin, "/status", &[]).await.json();
        // The generation is published before the outcome is recorded:
        // wait for both.
        if status["generation"] == 2 && status["last_reload"]["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(listen, "/v2/x", &[]).await.status, 200);
    assert_eq!(get(listen, "/v1/x", &[]).await.status, 404);
    assert_eq!(
        metric(admin, "strait_reloads_total{result=\"ok\"}").await,
        1.0
    );
}
