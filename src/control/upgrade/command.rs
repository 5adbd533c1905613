//! `strait upgrade` and the pid file: the command signals the running
//! gateway (SIGUSR2) and follows the outcome in its pid file, which the new
//! process writes once it serves and the old one writes again when an
//! upgrade fails.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{preview, UpgradeError, SERVE_TIMEOUT};

/// Reads a pid file (`--pid-file`): one decimal process id.
pub fn read_pid_file(path: &Path) -> Result<u32, UpgradeError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UpgradeError::Request(format!("cannot read the pid file {}: {e}", path.display()))
    })?;
    text.trim().parse().map_err(|_| {
        UpgradeError::Request(format!(
            "the pid file {} holds {:?}, expected a process id",
            path.display(),
            preview(text.as_bytes())
        ))
    })
}

/// Writes `pid` to `path` so that a reader never sees half of it (a
/// temporary file beside it, then a rename).
pub(crate) fn write_pid_file(path: &Path, pid: u32) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    std::fs::write(&temporary, format!("{pid}\n"))?;
    std::fs::rename(&temporary, path)
}

/// SIGUSR2 terminates a process that does not catch it. Waits (briefly:
/// a gateway installs its handler right after it writes its pid file) until
/// `pid` catches it, by its `SigCgt` mask in `/proc/PID/status`, so that a
/// stale pid file naming another program, or a gateway still starting, is
/// not killed by the signal meant to upgrade it.
fn await_handler(pid: u32) -> Result<(), UpgradeError> {
    const SIGUSR2_BIT: u64 = 1 << (12 - 1);
    let path = format!("/proc/{pid}/status");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = std::fs::read_to_string(&path).map_err(|e| {
            UpgradeError::Request(format!("process {pid} cannot be looked at ({path}: {e})"))
        })?;
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok());
        match caught {
            Some(mask) if mask & SIGUSR2_BIT != 0 => return Ok(()),
            // Not Linux's /proc: nothing to check by.
            None => return Ok(()),
            Some(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Some(_) => {
                return Err(UpgradeError::Request(format!(
                    "process {pid} does not handle SIGUSR2 (not a strait gateway, or not started): not signalled"
                )))
            }
        }
    }
}

/// `strait upgrade`: sends SIGUSR2 to the gateway (`pid`, or the one its pid
/// file names) and, given the pid file, waits for the outcome: the file
/// names the new process once it serves (returned), or the old process
/// writes its own id there again when the upgrade failed (an error; its log
/// says why). Without a pid file it returns once the signal is sent.
pub fn request_upgrade(
    pid: Option<u32>,
    pid_file: Option<&Path>,
) -> Result<Option<u32>, UpgradeError> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let old = match (pid, pid_file) {
        (Some(pid), _) => pid,
        (None, Some(file)) => read_pid_file(file)?,
        (None, None) => {
            return Err(UpgradeError::Request(
                "name the running gateway: --pid PID or --pid-file FILE".into(),
            ))
        }
    };
    let target = Pid::from_raw(
        i32::try_from(old)
            .map_err(|_| UpgradeError::Request(format!("{old} is not a process id")))?,
    );
    let stamp = |file: &Path| std::fs::metadata(file).and_then(|m| m.modified()).ok();
    let before = pid_file.and_then(stamp);
    await_handler(old)?;
    kill(target, Signal::SIGUSR2)
        .map_err(|e| UpgradeError::Request(format!("cannot send SIGUSR2 to process {old}: {e}")))?;
    let Some(file) = pid_file else {
        return Ok(None);
    };
    // The old process answers within its own timeout; a little more here.
    let deadline = Instant::now() + SERVE_TIMEOUT + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = read_pid_file(file).ok();
        match now {
            Some(new) if new != old => return Ok(Some(new)),
            Some(_) if stamp(file) != before => {
                return Err(UpgradeError::Request(format!(
                    "the upgrade failed; process {old} serves on (its log says why)"
                )))
            }
            _ => {}
        }
        if kill(target, None).is_err() {
            return Err(UpgradeError::Request(format!(
                "process {old} exited, and the pid file {} names no new process",
                file.display()
            )));
        }
        if Instant::now() > deadline {
            return Err(UpgradeError::Request(format!(
                "the pid file {} still names process {old} after {} s",
                file.display(),
                (SERVE_TIMEOUT + Duration::from_secs(10)).as_secs()
            )));
        }
    }
}
