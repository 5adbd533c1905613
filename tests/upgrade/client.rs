//! The load of tests/upgrade.rs: an HTTP/1.1 client read by hand, so that
//! "the connection ended before any byte of a response" is exact, and the
//! two kinds of clients (keep-alive; a connection per request) that count
//! what their requests came to.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one request came to.
enum Outcome {
    /// 200 "ok"; whether the gateway closes the connection after it.
    Ok { close: bool },
    /// The connection ended before any byte of a response.
    NoResponse(String),
    /// Anything else: a part of a response, another answer, a timeout.
    Failed(String),
}

/// One GET on `stream`, read by hand so that "no byte of a response" is
/// exact.
async fn exchange(stream: &mut TcpStream, close: bool) -> Outcome {
    let request: &[u8] = if close {
        b"GET /ok HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
    } else {
        b"GET /ok HTTP/1.1\r\nhost: test\r\n\r\n"
    };
    if let Err(e) = stream.write_all(request).await {
        return Outcome::NoResponse(format!("write: {e}"));
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Err(_) => {
                return Outcome::Failed(format!(
                    "no complete response within 5 s ({} bytes)",
                    buf.len()
                ))
            }
            Ok(Err(e)) if buf.is_empty() => return Outcome::NoResponse(format!("read: {e}")),
            Ok(Err(e)) => return Outcome::Failed(format!("read after {} bytes: {e}", buf.len())),
            Ok(Ok(0)) if buf.is_empty() => return Outcome::NoResponse("closed".into()),
            Ok(Ok(0)) => return Outcome::Failed(format!("closed after {} bytes", buf.len())),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let Some(length) = length else {
            return Outcome::Failed(format!("no content-length: {head:?}"));
        };
        if buf.len() < end + 4 + length {
            continue;
        }
        let body = &buf[end + 4..end + 4 + length];
        if !head.starts_with("http/1.1 200") || body != b"ok" {
            return Outcome::Failed(format!("{head:?} {:?}", String::from_utf8_lossy(body)));
        }
        return Outcome::Ok {
            close: head.lines().any(|l| l == "connection: close"),
        };
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect: no answer within 2 s".into()),
    }
}

#[derive(Default, Debug)]
pub(crate) struct Tally {
    pub(crate) ok: usize,
    /// Requests sent again on a new connection because a reused one ended
    /// before any byte of the response (RFC 9112 9.3.1, idempotent GET).
    pub(crate) retried: usize,
    pub(crate) failures: Vec<String>,
}

impl Tally {
    pub(crate) fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.retried += other.retried;
        self.failures.extend(other.failures);
    }
}

/// A keep-alive client: GETs on one connection until `until`, a new
/// connection when the gateway closes it.
pub(crate) async fn keep_alive_client(addr: SocketAddr, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<TcpStream> = None;
    while Instant::now() < until {
        let reused = conn.is_some();
        let mut stream = match conn.take() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => s,
                Err(e) => {
                    tally.failures.push(e);
                    continue;
                }
            },
        };
        match exchange(&mut stream, false).await {
            Outcome::Ok { close } => {
                tally.ok += 1;
                conn = (!close).then_some(stream);
            }
            Outcome::NoResponse(why) if reused => {
                // Once, on a fresh connection; a second failure counts.
                tally.retried += 1;
                let again = match connect(addr).await {
                    Ok(mut s) => match exchange(&mut s, false).await {
                        Outcome::Ok { close } => {
                            conn = (!close).then_some(s);
                            Ok(())
                        }
                        Outcome::NoResponse(e) | Outcome::Failed(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                match again {
                    Ok(()) => tally.ok += 1,
                    Err(e) => tally.failures.push(format!("retry after {why}: {e}")),
                }
            }
            Outcome::NoResponse(e) | Outcome::Failed(e) => tally.failures.push(e),
        }
    }
    tally
}

/// A client opening a new connection per request (`connection: close`):
/// every connection goes through an accept queue. No retries.
pub(crate) async fn short_client(addr: SocketAddr, until: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < until {
        match connect(addr).await {
            Ok(mut s) => match exchange(&mut s, true).await {
                Outcome::Ok { .. } => tally.ok += 1,
                Outcome::NoResponse(e) | Outcome::Failed(e) => tally.failures.push(e),
            },
            Err(e) => tally.failures.push(e),
        }
    }
    tally
}

pub(crate) async fn join_all(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut total = Tally::default();
    for t in tasks {
        total.add(t.await.unwrap());
    }
    total
}
