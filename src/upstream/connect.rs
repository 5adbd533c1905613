//! Opening a new upstream connection: TCP connect, then the TLS handshake if
//! the upstream has TLS, then the HTTP/1.1 or HTTP/2 handshake (chosen by the
//! upstream's `protocol` and, over TLS, by ALPN), all within the connect
//! timeout. The connection is driven by a task on this worker.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{Http2Settings, Protocol};
use crate::data::body::RequestBody;
use crate::data::error::ProxyError;
use crate::data::worker::LocalExec;

/// The sending half of an upstream HTTP/1.1 connection.
pub(crate) type Sender = http1::SendRequest<RequestBody>;

/// The request body on an HTTP/2 connection: hyper's HTTP/2 client wants an
/// `Unpin` body, and `RequestBody` holds a timer (one allocation per
/// HTTP/2 request).
pub(crate) type H2Body = Pin<Box<RequestBody>>;

/// The sending half of an upstream HTTP/2 connection, and the flag its
/// reader sets when the endpoint announces GOAWAY (no new streams then).
pub(crate) struct H2Sender {
    pub(crate) sender: http2::SendRequest<H2Body>,
    pub(crate) going_away: Rc<Cell<bool>>,
}

/// A new connection, as the handshake turned out.
pub(crate) enum Connected {
    Http1(Sender),
    Http2(H2Sender),
}

/// Where and how to connect.
pub(crate) struct Target<'a> {
    pub(crate) addr: SocketAddr,
    pub(crate) protocol: Protocol,
    /// The upstream's TLS configuration and the endpoint's server name.
    pub(crate) tls: Option<(&'a Arc<rustls::ClientConfig>, &'a ServerName<'static>)>,
    pub(crate) http2: Http2Settings,
    pub(crate) timeout: Duration,
}

/// Connects to `target` and returns a sender; the connection runs on this
/// worker, holding `open` (if any) until it closes. The timeout covers the
/// TCP connect, the TLS handshake and the HTTP handshake.
pub(crate) async fn connect<G: 'static>(
    target: &Target<'_>,
    open: G,
) -> Result<Connected, ProxyError> {
    match tokio::time::timeout(target.timeout, handshakes(target, open)).await {
        Err(_) => Err(ProxyError::ConnectTimeout),
        Ok(result) => result,
    }
}

async fn handshakes<G: 'static>(target: &Target<'_>, open: G) -> Result<Connected, ProxyError> {
    let addr = target.addr;
    let stream = TcpStream::connect(addr).await.map_err(|e| classify(&e))?;
    // Small writes (heads) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let Some((config, name)) = target.tls else {
        return match target.protocol {
            Protocol::H2c | Protocol::H2 => http2(stream, target, open).await,
            Protocol::Http1 | Protocol::Auto => http1(stream, addr, open).await,
        };
    };
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let tls = match connector.connect(name.clone(), stream).await {
        Ok(tls) => tls,
        Err(e) => return Err(tls_failure(addr, name, &e)),
    };
    let h2 = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => true,
        Some(_) => false,
        // No ALPN answer: what was asked for.
        None => target.protocol == Protocol::H2,
    };
    if h2 {
        http2(tls, target, open).await
    } else {
        http1(tls, addr, open).await
    }
}

async fn http1<IO, G>(io: IO, addr: SocketAddr, open: G) -> Result<Connected, ProxyError>
where
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
    G: 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|_| ProxyError::ConnectFailed)?;
    tokio::task::spawn_local(async move {
        let _open = open;
        if let Err(e) = conn.await {
            tracing::debug!(upstream = %addr, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(Connected::Http1(sender))
}

async fn http2<IO, G>(io: IO, target: &Target<'_>, open: G) -> Result<Connected, ProxyError>
where
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
    G: 'static,
{
    let addr = target.addr;
    let going_away = Rc::new(Cell::new(false));
    let io = WatchGoAway {
        io,
        going_away: going_away.clone(),
        header: [0; 9],
        have: 0,
        skip: 0,
    };
    let (sender, conn) = http2::Builder::new(LocalExec)
        .initial_max_send_streams(target.http2.max_concurrent_streams as usize)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|_| ProxyError::ConnectFailed)?;
    tokio::task::spawn_local(async move {
        let _open = open;
        if let Err(e) = conn.await {
            tracing::debug!(upstream = %addr, error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(Connected::Http2(H2Sender { sender, going_away }))
}

/// Puts a request in the form HTTP/2 wants: the target URI absolute
/// (`:scheme`, `:authority` from the `Host` header the request was given,
/// which then goes), RFC 9113 §8.3.1. A `Host` that is not a valid authority
/// stays a header.
pub(crate) fn http2_target<B>(request: &mut http::Request<B>, tls: bool) {
    if request.uri().authority().is_some() {
        return;
    }
    let Some(host) = request.headers().get(http::header::HOST) else {
        return;
    };
    let Ok(authority) = http::uri::Authority::try_from(host.as_bytes()) else {
        return;
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(if tls {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    parts.authority = Some(authority);
    parts.path_and_query = request.uri().path_and_query().cloned();
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
        request.headers_mut().remove(http::header::HOST);
    }
}

/// The inverse of [`http2_target`], for a request built for HTTP/2 that
/// goes over HTTP/1.1 after all (`auto`): origin-form target, `Host`.
pub(crate) fn http1_target<B>(request: &mut http::Request<B>) {
    let Some(authority) = request.uri().authority() else {
        return;
    };
    if !request.headers().contains_key(http::header::HOST) {
        if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
            request.headers_mut().insert(http::header::HOST, host);
        }
    }
    if let Some(pq) = request.uri().path_and_query().cloned() {
        *request.uri_mut() = http::Uri::from(pq);
    }
}

/// A failed TLS handshake: the log line has rustls' own words (unknown
/// issuer, not valid for the name, expired...), the client gets the class.
fn tls_failure(addr: SocketAddr, name: &ServerName<'_>, e: &io::Error) -> ProxyError {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let error = match rustls_error {
        Some(rustls::Error::InvalidCertificate(_)) => ProxyError::UpstreamTlsVerify,
        _ => ProxyError::UpstreamTlsHandshake,
    };
    let detail: &dyn std::fmt::Display = match rustls_error {
        Some(r) => r,
        None => e,
    };
    let what = match error {
        ProxyError::UpstreamTlsVerify => "upstream TLS certificate verification failed",
        _ => "upstream TLS handshake failed",
    };
    tracing::warn!(
        upstream = %addr,
        server_name = name.to_str().as_ref(),
        error = %detail,
        "{what}"
    );
    error
}

fn classify(e: &io::Error) -> ProxyError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ProxyError::ConnectRefused,
        io::ErrorKind::TimedOut => ProxyError::ConnectTimeout,
        _ => ProxyError::ConnectFailed,
    }
}

/// The frame type of GOAWAY (RFC 9113 §6.8).
const GOAWAY: u8 = 0x7;

pin_project! {
    /// Reads an HTTP/2 connection's incoming bytes as frames (headers only,
    /// payloads skipped) and sets `going_away` at the first GOAWAY, so the
    /// pool stops opening streams on a connection the endpoint is closing
    /// (hyper reports GOAWAY only to the streams it refuses). Writes pass
    /// through.
    struct WatchGoAway<IO> {
        #[pin]
        io: IO,
        going_away: Rc<Cell<bool>>,
        header: [u8; 9],
        have: u8,
        skip: u32,
    }
}

impl<IO> WatchGoAway<IO> {
    fn scan(
        bytes: &[u8],
        header: &mut [u8; 9],
        have: &mut u8,
        skip: &mut u32,
        going_away: &Cell<bool>,
    ) {
        let mut i = 0;
        while i < bytes.len() {
            if *skip > 0 {
                let n = (*skip as usize).min(bytes.len() - i);
                *skip -= n as u32;
                i += n;
                continue;
            }
            header[*have as usize] = bytes[i];
            *have += 1;
            i += 1;
            if *have == 9 {
                *have = 0;
                *skip = u32::from_be_bytes([0, header[0], header[1], header[2]]);
                if header[3] == GOAWAY {
                    going_away.set(true);
                    return;
                }
            }
        }
    }
}

impl<IO: AsyncRead> AsyncRead for WatchGoAway<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if !this.going_away.get() {
                Self::scan(
                    &buf.filled()[before..],
                    this.header,
                    this.have,
                    this.skip,
                    this.going_away,
                );
            }
        }
        polled
    }
}

impl<IO: AsyncWrite> AsyncWrite for WatchGoAway<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: usize) -> Vec<u8> {
        let len = (payload as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, 0, 0, 0, 0, 0];
        f.resize(9 + payload, 0xAB);
        f
    }

    #[test]
    fn goaway_is_found_across_any_split_of_the_frames() {
        // SETTINGS, a DATA frame whose payload holds a GOAWAY-looking byte,
        // then GOAWAY.
        let mut bytes = frame(0x4, 12);
        let mut data = frame(0x0, 20);
        data[12] = GOAWAY;
        bytes.extend(data);
        let before_goaway = bytes.len();
        bytes.extend(frame(GOAWAY, 8));
        for split in 1..bytes.len() {
            let flag = Cell::new(false);
            let (mut header, mut have, mut skip) = ([0u8; 9], 0u8, 0u32);
            for chunk in bytes.chunks(split) {
                WatchGoAway::<()>::scan(chunk, &mut header, &mut have, &mut skip, &flag);
            }
            assert!(flag.get(), "split {split}");
            let flag = Cell::new(false);
            let (mut header, mut have, mut skip) = ([0u8; 9], 0u8, 0u32);
            for chunk in bytes[..before_goaway].chunks(split) {
                WatchGoAway::<()>::scan(chunk, &mut header, &mut have, &mut skip, &flag);
            }
            assert!(!flag.get(), "split {split}: no GOAWAY yet");
        }
    }
}
