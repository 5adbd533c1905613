//! Opening a new upstream connection: TCP connect with a timeout, then the
//! HTTP/1.1 handshake, with the connection driven by a task on this worker.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::data::body::RequestBody;
use crate::data::error::ProxyError;

/// The sending half of an upstream HTTP/1.1 connection.
pub(crate) type Sender = http1::SendRequest<RequestBody>;

/// Connects to `addr` and returns a sender; the connection runs on this
/// worker, holding `open` (if any) until it closes.
pub(crate) async fn connect<G: 'static>(
    addr: SocketAddr,
    timeout: Duration,
    open: G,
) -> Result<Sender, ProxyError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ProxyError::ConnectTimeout),
        Ok(Err(e)) => return Err(classify(&e)),
        Ok(Ok(s)) => s,
    };
    // Small writes (heads) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ProxyError::ConnectFailed)?;
    tokio::task::spawn_local(async move {
        let _open = open;
        if let Err(e) = conn.await {
            tracing::debug!(upstream = %addr, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

fn classify(e: &io::Error) -> ProxyError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ProxyError::ConnectRefused,
        io::ErrorKind::TimedOut => ProxyError::ConnectTimeout,
        _ => ProxyError::ConnectFailed,
    }
}
