//! Binding listeners: one SO_REUSEPORT socket per worker per listener, so the
//! kernel spreads connections over the workers with no shared accept queue.
//! Done by the control plane, at start and when a reload adds a listener;
//! the workers only accept on what they are given.

use std::io;
use std::net::SocketAddr;

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
}
