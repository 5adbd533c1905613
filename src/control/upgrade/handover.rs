//! The old process's side of an upgrade: starts the binary now on disk
//! ([`Relaunch`]) with the upgrade socket as its standard input, sends the
//! handover message and every listening socket, and waits (bounded) for
//! the answer; a new process that fails is reaped or killed, and this one
//! serves on.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::{
    decode, encode, io_error, send, AdminEntry, Answer, Handover, ListenerEntry, Serving,
    UpgradeError, MAX_MESSAGE, PROTOCOL, SERVE_TIMEOUT, UPGRADE_FD_VAR,
};
use crate::control::{BoundListener, Control};

/// How this process was started, so that an upgrade starts the binary now
/// on disk the same way: `argv[0]` as given (made absolute against the
/// working directory if it is a relative path; a bare name is looked up in
/// `PATH` again, as the shell did), then the same arguments. After a package
/// upgrade that path names the new file, while `/proc/self/exe` names the
/// old one, with " (deleted)" appended once it is replaced; that link is
/// only the fallback when `argv[0]` is empty.
#[derive(Debug, Clone)]
pub(crate) struct Relaunch {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Relaunch {
    pub(crate) fn this_process() -> Relaunch {
        let mut argv = std::env::args_os();
        let first = argv.next().filter(|a| !a.is_empty()).map(PathBuf::from);
        let args = argv.collect();
        let program = match first {
            Some(p) if p.is_relative() && p.components().count() > 1 => {
                std::env::current_dir().map_or(p.clone(), |dir| dir.join(p))
            }
            Some(p) => p,
            None => std::env::current_exe()
                .map(|exe| strip_deleted(&exe))
                .unwrap_or_else(|_| PathBuf::from("strait")),
        };
        Relaunch { program, args }
    }
}

/// `/proc/self/exe` of a replaced binary ends in " (deleted)".
fn strip_deleted(exe: &Path) -> PathBuf {
    let text = exe.as_os_str().to_string_lossy();
    match text.strip_suffix(" (deleted)") {
        Some(original) => PathBuf::from(original),
        None => exe.to_path_buf(),
    }
}

/// The new process while it is not yet known to serve: killed (and
/// reaped) when the upgrade fails.
struct Successor {
    child: Child,
    pid: u32,
}

impl Successor {
    /// The error for `why`, with how the process ended: its exit status if
    /// it exits within a moment, else it is killed.
    fn fail(mut self, why: String) -> UpgradeError {
        let ended = match wait_exit(&mut self.child, Duration::from_secs(2)) {
            Some(status) => format!("; it exited with {status}"),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                "; it was killed".to_string()
            }
        };
        UpgradeError::NotServing {
            pid: self.pid,
            why: format!("{why}{ended}"),
        }
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

impl Control {
    /// Starts the binary this process was started from and hands it every
    /// listening socket; returns the new process's id once it serves. No
    /// reload runs meanwhile, so the sockets handed over are the ones in
    /// force. On an error the new process has exited or been killed, and
    /// this one serves on.
    pub(crate) fn upgrade(&self) -> Result<u32, UpgradeError> {
        let _no_reload = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let listeners: Vec<BoundListener> = self.state().listeners.clone();
        let admin = {
            let admin = self.admin_socket.lock().unwrap_or_else(|p| p.into_inner());
            match (admin.as_ref(), self.admin_addr) {
                (Some(socket), Some(addr)) => Some((
                    socket
                        .try_clone()
                        .map_err(io_error("copying the admin socket"))?,
                    addr,
                )),
                _ => None,
            }
        };
        let handover = Handover {
            strait_upgrade: PROTOCOL,
            from_pid: std::process::id(),
            listeners: listeners
                .iter()
                .map(|l| ListenerEntry {
                    spec: l.spec,
                    addr: l.addr,
                    sockets: l.sockets.len(),
                })
                .collect(),
            admin: admin.as_ref().map(|(_, addr)| AdminEntry {
                spec: self.snapshot().admin.listen.unwrap_or(*addr),
                addr: *addr,
            }),
        };
        let fds: Vec<RawFd> = listeners
            .iter()
            .flat_map(|l| l.sockets.iter().map(|s| s.as_raw_fd()))
            .chain(admin.as_ref().map(|(s, _)| s.as_raw_fd()))
            .collect();

        let (ours, theirs) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None)
            .map_err(io_error("creating the socket pair"))?;
        let relaunch = &self.relaunch;
        let mut command = Command::new(&relaunch.program);
        command
            .args(&relaunch.args)
            .env(UPGRADE_FD_VAR, "0")
            .stdin(Stdio::from(OwnedFd::from(theirs)));
        let child = command.spawn().map_err(|error| UpgradeError::Spawn {
            program: relaunch.program.clone(),
            error,
        })?;
        // Our copy of its end goes with the command: when the new process
        // exits, its end closes and our read sees the end of the stream.
        drop(command);
        let pid = child.id();
        let successor = Successor { child, pid };
        tracing::info!(
            pid,
            program = %relaunch.program.display(),
            sockets = fds.len(),
            "upgrade: started the new binary; handing over the listening sockets"
        );

        let sent = ours
            .set_write_timeout(Some(SERVE_TIMEOUT))
            .and_then(|()| send(&ours, &encode(&handover), &[]))
            .and_then(|()| fds.iter().try_for_each(|fd| send(&ours, b"socket", &[*fd])));
        if let Err(e) = sent {
            return Err(successor.fail(format!("did not take the handover ({e})")));
        }
        // The sockets are in flight or received: our copies may go.
        drop(admin);

        if let Err(e) = ours.set_read_timeout(Some(SERVE_TIMEOUT)) {
            return Err(successor.fail(format!("cannot wait for its answer ({e})")));
        }
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        let len = match (&ours).read(&mut buf) {
            Ok(0) => {
                return Err(successor
                    .fail("closed the upgrade socket without answering (its log says why)".into()))
            }
            Ok(len) if len > MAX_MESSAGE => {
                return Err(successor.fail(format!(
                    "answered with more than {} KiB",
                    MAX_MESSAGE / 1024
                )))
            }
            Ok(len) => len,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(successor.fail(format!(
                    "did not answer within {} s",
                    SERVE_TIMEOUT.as_secs()
                )))
            }
            Err(e) => return Err(successor.fail(format!("cannot be read from ({e})"))),
        };
        let answer: Answer = match decode(&buf[..len], "its answer") {
            Ok(a) => a,
            Err(e) => {
                return Err(successor.fail(format!("answered what this process cannot accept: {e}")))
            }
        };
        match answer {
            Answer {
                serving: Some(Serving { pid: serving }),
                refused: None,
                ..
            } => {
                tracing::info!(
                    pid = serving,
                    "upgrade: the new process serves; this one stops accepting and drains"
                );
                // It runs on; not ours to wait for.
                drop(successor);
                Ok(serving)
            }
            Answer {
                serving: None,
                refused: Some(why),
                ..
            } => Err(successor.fail(format!("refused the handover: {why}"))),
            _ => Err(successor.fail(
                "answered neither \"serving\" nor \"refused\" (exactly one is expected)".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_binary_loses_its_deleted_suffix() {
        assert_eq!(
            strip_deleted(Path::new("/usr/bin/strait (deleted)")),
            PathBuf::from("/usr/bin/strait")
        );
        assert_eq!(
            strip_deleted(Path::new("/usr/bin/strait")),
            PathBuf::from("/usr/bin/strait")
        );
    }
}
