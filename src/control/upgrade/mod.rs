//! Zero-downtime binary upgrade. The running process starts the binary now
//! at the path it was started from, with the same arguments, and hands it
//! every listening socket (the listeners' and the admin API's) over a Unix
//! socket pair with SCM_RIGHTS; the new process takes them
//! ([`Inherited::from_env`]), starts its gateway on them and answers
//! "serving"; only then does the old one stop accepting and drain. The very
//! sockets move, so the connections waiting in their accept queues move with
//! them. This file holds the exchange's messages and errors; the new
//! process's side is `inherit.rs`, the old one's (and the command that
//! starts the new binary) `handover.rs`, `strait upgrade` `command.rs`;
//! `control/mod.rs` starts a gateway on what was inherited.
//!
//! The exchange, one message per `send` on a `SOCK_SEQPACKET` pair (the new
//! process gets its end as standard input, with `STRAIT_UPGRADE_FD=0`):
//!
//! ```text
//! old -> new  {"strait_upgrade":1,"from_pid":P,"listeners":[{"spec":A,"addr":B,"sockets":N}...],"admin":{"spec":A,"addr":B}|null}
//! old -> new  one message per socket, listeners in order then the admin one, each with exactly one descriptor
//! new -> old  {"strait_upgrade":1,"serving":{"pid":P}}   or   {"strait_upgrade":1,"refused":"why"}
//! ```
//!
//! `strait_upgrade` is the protocol's version: a side that reads another
//! refuses, names both versions, and the old process keeps serving.
//!
//! Why standard input: the crate has no `unsafe`, and the only descriptors
//! a process can own without it are its standard streams. nix hands
//! received descriptors over as bare numbers, so the new process keeps
//! descriptor 0 free while they arrive (the kernel gives a received
//! descriptor the lowest free number), takes each one through
//! `std::io::stdin()` (a `dup`), and puts `/dev/null` back on 0 at the end.

mod command;
mod handover;
mod inherit;

use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use socket2::Socket;

pub(crate) use command::write_pid_file;
pub use command::{read_pid_file, request_upgrade};
pub(crate) use handover::Relaunch;
pub use inherit::Inherited;

/// The environment variable that tells a new process it is taking over:
/// its value is the descriptor of the upgrade socket, always `0` (standard
/// input).
pub const UPGRADE_FD_VAR: &str = "STRAIT_UPGRADE_FD";
/// The version of the exchange; both sides must speak the same.
pub(crate) const PROTOCOL: u64 = 1;
/// How long the old process waits for the new one to serve (it compiles its
/// configuration, resolves names, binds what is new).
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the new process waits for each message of the handover, which
/// the old one sends at once.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest message read; a longer one is refused.
const MAX_MESSAGE: usize = 64 * 1024;
/// The most sockets a handover may announce (listeners times workers).
const MAX_SOCKETS: usize = 4096;
/// The most descriptors one message can carry (Linux's `SCM_MAX_FD`): the
/// control buffer has room for all of them, so none is installed unseen.
const SCM_MAX_FD: usize = 253;

/// Why an upgrade did not happen. The running process keeps serving.
#[derive(Debug)]
pub enum UpgradeError {
    /// `STRAIT_UPGRADE_FD` has another value than `0`.
    Variable(String),
    /// A system call on the upgrade socket failed.
    Io {
        /// What was being done.
        doing: &'static str,
        /// The cause.
        error: io::Error,
    },
    /// The other process sent something this one does not accept.
    Protocol(String),
    /// The new binary could not be started.
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        error: io::Error,
    },
    /// The new process started but did not take over.
    NotServing {
        /// Its process id.
        pid: u32,
        /// What it did instead, and how it ended.
        why: String,
    },
    /// `strait upgrade`: the running process could not be named or signalled,
    /// or no new process took over.
    Request(String),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Variable(value) => write!(
                f,
                "{UPGRADE_FD_VAR}={value:?}: expected 0 (the upgrade socket comes as standard input)"
            ),
            UpgradeError::Io { doing, error } => write!(f, "upgrade socket: {doing}: {error}"),
            UpgradeError::Protocol(message) => f.write_str(message),
            UpgradeError::Spawn { program, error } => {
                write!(f, "cannot start {}: {error}", program.display())
            }
            UpgradeError::NotServing { pid, why } => {
                write!(f, "the new process (pid {pid}) {why}")
            }
            UpgradeError::Request(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for UpgradeError {}

fn io_error(doing: &'static str) -> impl Fn(io::Error) -> UpgradeError {
    move |error| UpgradeError::Io { doing, error }
}

fn nix_error(doing: &'static str) -> impl Fn(nix::Error) -> UpgradeError {
    move |errno| UpgradeError::Io {
        doing,
        error: io::Error::from(errno),
    }
}

/// The first message: what the sockets that follow are.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Handover {
    strait_upgrade: u64,
    from_pid: u32,
    listeners: Vec<ListenerEntry>,
    admin: Option<AdminEntry>,
}

/// A data-plane listener: `sockets` descriptors follow, one per worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerEntry {
    /// The address in the old configuration (port 0 stays 0).
    spec: SocketAddr,
    /// The address bound.
    addr: SocketAddr,
    sockets: usize,
}

/// The admin API's listener: one descriptor follows.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminEntry {
    spec: SocketAddr,
    addr: SocketAddr,
}

/// The new process's answer: exactly one of the two.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    strait_upgrade: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    serving: Option<Serving>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Serving {
    pid: u32,
}

/// Reads `bytes` as the message `what`: JSON, this protocol's version, then
/// the fields of `T`.
fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("{what} is not JSON ({e}): {}", preview(bytes)))?;
    match value.get("strait_upgrade") {
        None => Err(format!(
            "{what} has no \"strait_upgrade\" version field: {}",
            preview(bytes)
        )),
        Some(v) if v.as_u64() == Some(PROTOCOL) => {
            serde_json::from_value(value).map_err(|e| format!("{what}: {e}"))
        }
        Some(v) => Err(format!(
            "{what} speaks upgrade protocol version {v}, this binary speaks version {PROTOCOL}"
        )),
    }
}

fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Our own plain structs: serialising them cannot fail.
    serde_json::to_vec(message).unwrap_or_default()
}

/// The start of a message, for an error line.
fn preview(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(80)];
    let more = if bytes.len() > head.len() { "..." } else { "" };
    format!("{:?}{more}", String::from_utf8_lossy(head))
}

/// Sends one message, with `fds` attached.
fn send(channel: &Socket, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(
        channel.as_raw_fd(),
        &[IoSlice::new(bytes)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
    .map_err(io::Error::from)
}

fn set_cloexec(fd: &OwnedFd) -> Result<(), UpgradeError> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map(drop)
        .map_err(nix_error("setting close-on-exec"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_of_another_version_is_refused_naming_both() {
        let e = decode::<Answer>(br#"{"strait_upgrade":2,"serving":{"pid":1}}"#, "its answer")
            .unwrap_err();
        assert_eq!(
            e,
            "its answer speaks upgrade protocol version 2, this binary speaks version 1"
        );
        let e = decode::<Answer>(br#"{"serving":{"pid":1}}"#, "its answer").unwrap_err();
        assert!(
            e.starts_with("its answer has no \"strait_upgrade\" version field"),
            "{e}"
        );
        let e = decode::<Answer>(b"hello", "its answer").unwrap_err();
        assert!(e.starts_with("its answer is not JSON"), "{e}");
        assert!(e.ends_with("\"hello\""), "{e}");
        let e = decode::<Answer>(br#"{"strait_upgrade":1,"servin":{}}"#, "its answer").unwrap_err();
        assert!(e.contains("unknown field `servin`"), "{e}");
    }

    #[test]
    fn answers_round_trip() {
        let a = Answer {
            strait_upgrade: PROTOCOL,
            serving: Some(Serving { pid: 7 }),
            refused: None,
        };
        assert_eq!(encode(&a), br#"{"strait_upgrade":1,"serving":{"pid":7}}"#);
        let back: Answer = decode(&encode(&a), "x").unwrap();
        assert_eq!(back.serving.map(|s| s.pid), Some(7));
    }
}
