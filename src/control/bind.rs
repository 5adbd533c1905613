//! Binding listeners: one SO_REUSEPORT socket per worker per listener, so the
//! kernel spreads connections over the workers with no shared accept queue.
//! Done by the control plane, at start and when a reload adds a listener;
//! the workers only accept on what they are given. The control plane keeps a
//! copy of each descriptor (`copies`) so that an upgrade (`upgrade.rs`) can
//! hand the very sockets, with their accept queues, to a new process.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of each socket.
const BACKLOG: i32 = 4096;

/// Binds `count` sockets to `addr` with SO_REUSEPORT. With port 0 the first
/// socket picks the port and the others join it.
pub(crate) fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    let first = bind_one(addr)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..count.max(1) {
        all.push(bind_one(actual)?);
    }
    Ok(all)
}

/// Binds more sockets beside `sockets` (at least one, all bound to one
/// address with SO_REUSEPORT, e.g. handed over by an upgrade) until there
/// are `count`. The kernel lets them join while the others are open, for
/// the same user.
pub(crate) fn bind_more(sockets: &mut Vec<std::net::TcpListener>, count: usize) -> io::Result<()> {
    let Some(first) = sockets.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no socket to bind beside",
        ));
    };
    let actual = first.local_addr()?;
    while sockets.len() < count {
        sockets.push(bind_one(actual)?);
    }
    Ok(())
}

/// A second descriptor for each socket (`dup`, close-on-exec), for the
/// control plane to keep while the workers own the first. The socket stays
/// open until both are closed.
pub(crate) fn copies(
    sockets: &[std::net::TcpListener],
) -> io::Result<Arc<[std::net::TcpListener]>> {
    sockets.iter().map(|s| s.try_clone()).collect()
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_binds_all_sockets_to_one_port() {
        let socks = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = socks[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(socks.iter().all(|s| s.local_addr().unwrap().port() == port));
    }

    #[test]
    fn more_sockets_join_the_port_while_the_first_is_open() {
        let mut socks = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let addr = socks[0].local_addr().unwrap();
        bind_more(&mut socks, 3).unwrap();
        assert_eq!(socks.len(), 3);
        assert!(socks.iter().all(|s| s.local_addr().unwrap() == addr));
        // Already enough: nothing bound, nothing closed.
        bind_more(&mut socks, 2).unwrap();
        assert_eq!(socks.len(), 3);
    }
}
