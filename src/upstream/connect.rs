//! Opening a new upstream connection: TCP connect, then the TLS handshake if
//! the upstream has TLS ([`open`], the one connector: the exchange, tunnels
//! and health probes all go through it), then the HTTP/1.1 or HTTP/2
//! handshake (chosen by the upstream's `protocol` and, over TLS, by ALPN),
//! all within the connect timeout. The connection is driven by a task on
//! this worker.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Error, Http2Settings, Protocol};
use crate::context::body::RequestBody;
use crate::http1::conn::WireConn;
use crate::http1::stream::Stream;
use crate::util::exec::LocalExec;

/// The sending half of an upstream HTTP/2 connection, and the flag its
/// reader sets when the endpoint announces GOAWAY (no new streams then).
pub(crate) struct H2Sender {
    pub(crate) sender: http2::SendRequest<RequestBody>,
    pub(crate) going_away: Rc<Cell<bool>>,
}

/// A new connection, as the handshake turned out.
pub(crate) enum Connected {
    Http1(WireConn),
    Http2(H2Sender),
}

/// The upstream's TLS client configuration and the name an endpoint's
/// certificate is checked against (and sent as SNI).
pub(crate) type TlsTarget<'a> = (&'a Arc<rustls::ClientConfig>, &'a ServerName<'static>);

/// Where and how to connect.
pub(crate) struct Target<'a> {
    pub(crate) addr: SocketAddr,
    pub(crate) protocol: Protocol,
    pub(crate) tls: Option<TlsTarget<'a>>,
    pub(crate) http2: Http2Settings,
    pub(crate) timeout: Duration,
}

/// A byte stream to an endpoint: plain TCP, or TLS over it. Short-lived (it
/// moves into the connection's task at once), so the TLS state is not boxed.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(TlsStream<TcpStream>),
}

impl Transport {
    /// Whether HTTP/2 is spoken over it: what ALPN chose over TLS (what
    /// was asked for when the endpoint answered no ALPN), `h2c` and `h2` in
    /// cleartext.
    pub(crate) fn speaks_h2(&self, protocol: Protocol) -> bool {
        match self {
            Transport::Plain(_) => matches!(protocol, Protocol::H2c | Protocol::H2),
            Transport::Tls(tls) => match tls.get_ref().1.alpn_protocol() {
                Some(p) => p == b"h2",
                None => protocol == Protocol::H2,
            },
        }
    }
}

/// Why [`open`] failed, with the detail for the log or a probe's cause.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The TCP connect failed.
    Tcp(io::Error),
    /// The TLS handshake failed (the source may be a `rustls::Error`).
    Tls(io::Error),
}

impl OpenError {
    /// rustls' own error, if the handshake failed on one.
    pub(crate) fn rustls(&self) -> Option<&rustls::Error> {
        match self {
            OpenError::Tcp(_) => None,
            OpenError::Tls(e) => e.get_ref().and_then(|inner| inner.downcast_ref()),
        }
    }

    /// The class of the failure, as the proxy answers it.
    pub(crate) fn class(&self) -> Error {
        match self {
            OpenError::Tcp(e) => Error::of_connect(e),
            OpenError::Tls(_) => match self.rustls() {
                Some(rustls::Error::InvalidCertificate(_)) => Error::TlsVerify,
                _ => Error::TlsHandshake,
            },
        }
    }
}

/// TCP to `addr` (Nagle off: small writes, heads, must not wait), then the
/// TLS handshake when `tls` is given. Not bounded in time: every caller puts
/// its own limit around it.
pub(crate) async fn open(
    addr: SocketAddr,
    tls: Option<TlsTarget<'_>>,
) -> Result<Transport, OpenError> {
    let tcp = TcpStream::connect(addr).await.map_err(OpenError::Tcp)?;
    let _ = tcp.set_nodelay(true);
    let Some((config, name)) = tls else {
        return Ok(Transport::Plain(tcp));
    };
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name.clone(), tcp)
        .await
        .map(Transport::Tls)
        .map_err(OpenError::Tls)
}

/// A TCP connection to `addr` within `timeout` (a plain CONNECT tunnel).
pub(crate) async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    match tokio::time::timeout(timeout, open(addr, None)).await {
        Err(_) => Err(Error::ConnectTimeout),
        Ok(Err(e)) => Err(e.class()),
        Ok(Ok(Transport::Plain(s))) => Ok(s),
        Ok(Ok(Transport::Tls(_))) => Err(Error::ConnectFailed),
    }
}

/// Connects to `target` and returns a sender; the connection runs on this
/// worker, holding `open` (if any) until it closes. The timeout covers the
/// TCP connect, the TLS handshake and the HTTP handshake.
pub(crate) async fn connect<G: 'static>(target: &Target<'_>, open: G) -> Result<Connected, Error> {
    match tokio::time::timeout(target.timeout, handshakes(target, open)).await {
        Err(_) => Err(Error::ConnectTimeout),
        Ok(result) => result,
    }
}

async fn handshakes<G: 'static>(target: &Target<'_>, guard: G) -> Result<Connected, Error> {
    let addr = target.addr;
    let transport = open(addr, target.tls)
        .await
        .map_err(|e| failed(addr, target.tls, &e))?;
    let h2 = transport.speaks_h2(target.protocol);
    match (transport, h2) {
        (Transport::Plain(tcp), true) => http2(tcp, target, guard).await,
        (Transport::Plain(tcp), false) => Ok(http1(Stream::Plain(tcp), guard)),
        (Transport::Tls(tls), true) => http2(tls, target, guard).await,
        (Transport::Tls(tls), false) => Ok(http1(Stream::Tls(Box::new(tls)), guard)),
    }
}

/// A byte stream to an upstream endpoint, plain or TLS (for tunnels).
pub(crate) trait StreamIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> StreamIo for T {}

/// A byte stream to `addr`, through TLS when `tls` is given, within
/// `timeout`: what an upgrade runs its HTTP/1.1 handshake over before it
/// becomes a tunnel.
pub(crate) async fn stream(
    addr: SocketAddr,
    tls: Option<TlsTarget<'_>>,
    timeout: Duration,
) -> Result<Box<dyn StreamIo>, Error> {
    match tokio::time::timeout(timeout, open(addr, tls)).await {
        Err(_) => Err(Error::ConnectTimeout),
        Ok(Err(e)) => Err(failed(addr, tls, &e)),
        Ok(Ok(Transport::Plain(tcp))) => Ok(Box::new(tcp)),
        Ok(Ok(Transport::Tls(tls))) => Ok(Box::new(tls)),
    }
}

/// An HTTP/1.1 connection of our own over `stream`: nothing to hand
/// shake, nothing spawned; `open` counts it until it is dropped.
fn http1<G: 'static>(stream: Stream, open: G) -> Connected {
    Connected::Http1(WireConn::new(stream, Box::new(open)))
}

async fn http2<IO, G>(io: IO, target: &Target<'_>, open: G) -> Result<Connected, Error>
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
        .map_err(|_| Error::ConnectFailed)?;
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

/// A failed connect as the client is told it. A failed TLS handshake is
/// logged with rustls' own words (unknown issuer, not valid for the name,
/// expired...); the client gets the class.
fn failed(addr: SocketAddr, tls: Option<TlsTarget<'_>>, e: &OpenError) -> Error {
    let class = e.class();
    if let (OpenError::Tls(io), Some((_, name))) = (e, tls) {
        let detail: &dyn std::fmt::Display = match e.rustls() {
            Some(r) => r,
            None => io,
        };
        let what = match class {
            Error::TlsVerify => "upstream TLS certificate verification failed",
            _ => "upstream TLS handshake failed",
        };
        tracing::warn!(
            upstream = %addr,
            server_name = name.to_str().as_ref(),
            error = %detail,
            "{what}"
        );
    }
    class
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
