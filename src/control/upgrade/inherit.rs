//! The new process's side of an upgrade: takes the upgrade socket from
//! standard input, receives the listening sockets (checking each against
//! the handover message), and answers "serving" or "refused" once the
//! gateway started on them, or could not.

use std::fmt;
use std::io::IoSliceMut;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use socket2::{Domain, SockRef, Socket, Type};

use super::{
    decode, encode, io_error, nix_error, send, set_cloexec, AdminEntry, Answer, Handover, Serving,
    UpgradeError, HANDOVER_TIMEOUT, MAX_MESSAGE, MAX_SOCKETS, PROTOCOL, SCM_MAX_FD, UPGRADE_FD_VAR,
};

/// Listening sockets handed over by the process this one replaces, and the
/// socket to answer it on. Made by [`Inherited::from_env`], given to
/// [`GatewayBuilder::inherit`](super::GatewayBuilder::inherit): the gateway
/// starts on these sockets, binds only what the new configuration adds,
/// closes what it dropped, then answers "serving" (or, if it cannot start,
/// "refused" with the reason, and the old process keeps serving).
pub struct Inherited {
    channel: Socket,
    from_pid: u32,
    listeners: Vec<InheritedListener>,
    admin: Option<(AdminEntry, TcpListener)>,
}

struct InheritedListener {
    spec: SocketAddr,
    addr: SocketAddr,
    sockets: Vec<TcpListener>,
}

impl fmt::Debug for Inherited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inherited")
            .field("from_pid", &self.from_pid)
            .field("listeners", &self.listeners.len())
            .field("admin", &self.admin.as_ref().map(|a| a.0.addr))
            .finish()
    }
}

impl Inherited {
    /// Takes over from the process being replaced if `STRAIT_UPGRADE_FD` is
    /// set (to `0`: the upgrade socket is standard input); `None` when it is
    /// not set. A handover this side cannot accept (not JSON, another
    /// version, missing or wrong descriptors) is answered "refused" with
    /// the same reason as the error, so the old process logs it and keeps
    /// serving.
    ///
    /// Call it before starting threads that open files: descriptor 0 is
    /// kept free while the sockets arrive (see the module documentation),
    /// and one that lands elsewhere is closed and refused.
    pub fn from_env() -> Result<Option<Inherited>, UpgradeError> {
        let Some(value) = std::env::var_os(UPGRADE_FD_VAR) else {
            return Ok(None);
        };
        if value != "0" {
            return Err(UpgradeError::Variable(value.to_string_lossy().into_owned()));
        }
        let channel = take_channel()?;
        match receive_handover(&channel) {
            Ok((handover, sockets)) => {
                let inherited = Inherited::new(channel, handover, sockets);
                tracing::info!(
                    from_pid = inherited.from_pid,
                    listeners = inherited.listeners.len(),
                    admin = inherited.admin.is_some(),
                    "upgrade: received the listening sockets"
                );
                Ok(Some(inherited))
            }
            Err(e) => {
                answer(&channel, Err(&e.to_string()));
                Err(e)
            }
        }
    }

    fn new(channel: Socket, handover: Handover, sockets: Vec<TcpListener>) -> Inherited {
        let mut sockets = sockets.into_iter();
        let listeners = handover
            .listeners
            .into_iter()
            .map(|l| InheritedListener {
                spec: l.spec,
                addr: l.addr,
                sockets: sockets.by_ref().take(l.sockets).collect(),
            })
            .collect();
        let admin = handover.admin.and_then(|a| Some((a, sockets.next()?)));
        Inherited {
            channel,
            from_pid: handover.from_pid,
            listeners,
            admin,
        }
    }

    /// The sockets of the listener configured at `spec`: the old listener
    /// with that configured address, or else bound at that address.
    pub(crate) fn take_listener(&mut self, spec: SocketAddr) -> Option<Vec<TcpListener>> {
        let i = self
            .listeners
            .iter()
            .position(|l| l.spec == spec)
            .or_else(|| self.listeners.iter().position(|l| l.addr == spec))?;
        Some(self.listeners.remove(i).sockets)
    }

    /// The admin API's socket, if the new configuration listens where the
    /// old one did.
    pub(crate) fn take_admin(&mut self, spec: Option<SocketAddr>) -> Option<TcpListener> {
        let spec = spec?;
        match &self.admin {
            Some((a, _)) if a.spec == spec || a.addr == spec => self.admin.take().map(|a| a.1),
            _ => None,
        }
    }

    /// Tells the old process that this one serves. What the new
    /// configuration did not take is closed here (the old process still has
    /// it open until it exits).
    pub(crate) fn serving(self) {
        for l in &self.listeners {
            tracing::info!(addr = %l.addr, "upgrade: closing an inherited listener the configuration no longer has");
        }
        if let Some((a, _)) = &self.admin {
            tracing::info!(addr = %a.addr, "upgrade: closing the inherited admin listener (the admin address changed)");
        }
        if answer(&self.channel, Ok(std::process::id())) {
            tracing::info!(
                from_pid = self.from_pid,
                "upgrade: serving; the old process drains and exits"
            );
        }
    }

    /// Tells the old process that this one cannot serve, and why.
    pub(crate) fn refuse(self, why: &str) {
        answer(&self.channel, Err(why));
    }
}

/// Sends the answer; false (and a warning) if the old process is gone.
fn answer(channel: &Socket, outcome: Result<u32, &str>) -> bool {
    let message = match outcome {
        Ok(pid) => Answer {
            strait_upgrade: PROTOCOL,
            serving: Some(Serving { pid }),
            refused: None,
        },
        Err(why) => Answer {
            strait_upgrade: PROTOCOL,
            serving: None,
            refused: Some(why.to_string()),
        },
    };
    match send(channel, &encode(&message), &[]) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "upgrade: cannot answer the old process");
            false
        }
    }
}

/// The upgrade socket, taken from standard input.
fn take_channel() -> Result<Socket, UpgradeError> {
    let fd = nix::unistd::dup(std::io::stdin()).map_err(nix_error("taking standard input"))?;
    set_cloexec(&fd)?;
    let channel = Socket::from(fd);
    match (channel.domain(), channel.r#type()) {
        (Ok(Domain::UNIX), Ok(Type::SEQPACKET)) => Ok(channel),
        _ => Err(UpgradeError::Protocol(format!(
            "{UPGRADE_FD_VAR} is set but standard input is not the upgrade socket (a Unix \
             SOCK_SEQPACKET socket, set up by the process being replaced)"
        ))),
    }
}

/// Keeps descriptor 0 free while descriptors arrive, and puts `/dev/null`
/// back on it when dropped.
struct Landing;

impl Landing {
    fn free() -> Result<Landing, UpgradeError> {
        nix::unistd::close(0).map_err(nix_error("freeing descriptor 0"))?;
        Ok(Landing)
    }

    /// Owns what one message carried: nothing, or one descriptor, which
    /// must have landed on 0. Anything else is closed.
    fn own(&self, raw: &[RawFd]) -> Result<Option<OwnedFd>, String> {
        match raw {
            [] => Ok(None),
            [0] => {
                let owned = nix::unistd::dup(std::io::stdin());
                let _ = nix::unistd::close(0);
                let owned = owned.map_err(|e| format!("cannot take a descriptor: {e}"))?;
                set_cloexec(&owned).map_err(|e| e.to_string())?;
                Ok(Some(owned))
            }
            _ => {
                for &fd in raw {
                    let _ = nix::unistd::close(fd);
                }
                Err(if raw.len() > 1 {
                    format!(
                        "a handover message carries {} descriptors, expected at most one",
                        raw.len()
                    )
                } else {
                    format!(
                        "a descriptor arrived as number {}, not 0 (another thread opened a file during the handover)",
                        raw[0]
                    )
                })
            }
        }
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        if let Ok(null) = std::fs::File::open("/dev/null") {
            let _ = nix::unistd::dup2_stdin(&null);
        }
    }
}

/// Receives one message and what it carried. An empty message is the end of
/// the stream (the exchange never sends one).
fn receive(
    channel: &Socket,
    landing: &Landing,
) -> Result<(Vec<u8>, Option<OwnedFd>), UpgradeError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    let (len, truncated, raw) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            channel.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| match e {
            nix::Error::EAGAIN => UpgradeError::Protocol(format!(
                "no handover message from the old process within {} s",
                HANDOVER_TIMEOUT.as_secs()
            )),
            e => nix_error("receiving the handover")(e),
        })?;
        let mut raw = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    raw.extend(fds);
                }
            }
        }
        (msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC), raw)
    };
    let fd = landing.own(&raw).map_err(UpgradeError::Protocol)?;
    if truncated {
        return Err(UpgradeError::Protocol(format!(
            "a handover message is longer than {} KiB",
            MAX_MESSAGE / 1024
        )));
    }
    buf.truncate(len);
    Ok((buf, fd))
}

/// Reads the handover: the description, then each socket, checked against
/// it (a listening TCP socket bound where the description says).
fn receive_handover(channel: &Socket) -> Result<(Handover, Vec<TcpListener>), UpgradeError> {
    channel
        .set_read_timeout(Some(HANDOVER_TIMEOUT))
        .map_err(io_error("setting a timeout"))?;
    let landing = Landing::free()?;
    let (header, fd) = receive(channel, &landing)?;
    if fd.is_some() {
        return Err(UpgradeError::Protocol(
            "the handover message carries a descriptor; the sockets come one per message after it"
                .into(),
        ));
    }
    if header.is_empty() {
        return Err(UpgradeError::Protocol(
            "the old process closed the upgrade socket before the handover message".into(),
        ));
    }
    let handover: Handover =
        decode(&header, "the handover message").map_err(UpgradeError::Protocol)?;
    // The addresses each descriptor must be bound to, in order.
    let mut expected = Vec::new();
    for l in &handover.listeners {
        if l.sockets == 0 || l.sockets > MAX_SOCKETS {
            return Err(UpgradeError::Protocol(format!(
                "the handover message announces {} sockets for listener {}, expected 1 to {MAX_SOCKETS}",
                l.sockets, l.spec
            )));
        }
        expected.extend(std::iter::repeat(l.addr).take(l.sockets));
        if expected.len() > MAX_SOCKETS {
            return Err(UpgradeError::Protocol(format!(
                "the handover message announces more than {MAX_SOCKETS} sockets"
            )));
        }
    }
    expected.extend(handover.admin.as_ref().map(|a| a.addr));
    let total = expected.len();
    let mut sockets = Vec::with_capacity(total);
    for (i, addr) in expected.into_iter().enumerate() {
        let n = i + 1;
        let (bytes, fd) = receive(channel, &landing)?;
        let Some(fd) = fd else {
            return Err(UpgradeError::Protocol(if bytes.is_empty() {
                format!("the old process closed the upgrade socket after {i} of {total} sockets")
            } else {
                format!("handover message {n} of {total} carries no descriptor: expected the listening socket bound to {addr}")
            }));
        };
        sockets.push(check_listener(fd, addr, n, total)?);
    }
    drop(landing);
    Ok((handover, sockets))
}

/// `fd` as a listener, if it is a listening TCP socket bound to `addr`.
fn check_listener(
    fd: OwnedFd,
    addr: SocketAddr,
    n: usize,
    total: usize,
) -> Result<TcpListener, UpgradeError> {
    let socket = SockRef::from(&fd);
    let listening = matches!(socket.r#type(), Ok(Type::STREAM))
        && matches!(socket.is_listener(), Ok(true))
        && matches!(socket.domain(), Ok(Domain::IPV4 | Domain::IPV6));
    if !listening {
        return Err(UpgradeError::Protocol(format!(
            "descriptor {n} of {total} is not a listening TCP socket: expected one bound to {addr}"
        )));
    }
    let bound = socket.local_addr().ok().and_then(|a| a.as_socket());
    if bound != Some(addr) {
        let bound = bound.map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
        return Err(UpgradeError::Protocol(format!(
            "descriptor {n} of {total} is bound to {bound}, expected {addr}"
        )));
    }
    let listener = TcpListener::from(fd);
    listener
        .set_nonblocking(true)
        .map_err(io_error("making an inherited socket non-blocking"))?;
    Ok(listener)
}
