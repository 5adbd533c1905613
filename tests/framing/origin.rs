//! A raw TCP origin for the framing suite: it records every byte each
//! connection sends, exactly, and answers each complete request (found by
//! the test's own parser, `wire.rs`) with the next scripted raw reply, or
//! with `200` and a body naming the request's number (`r00`, `r01`, ...).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wire::{self, Kind, Parse};
use crate::common::Server;

/// One scripted answer: raw bytes, then the connection is closed if `close`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reply {
    pub(crate) bytes: &'static [u8],
    pub(crate) close: bool,
}

/// What one connection sent, and whether it ended.
#[derive(Clone, Debug, Default)]
pub(crate) struct Conn {
    pub(crate) bytes: Vec<u8>,
    pub(crate) closed: bool,
}

#[derive(Default)]
struct State {
    conns: Vec<Conn>,
    script: std::collections::VecDeque<Reply>,
    answered: usize,
}

pub(crate) struct RawOrigin {
    pub(crate) addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    _server: Server,
}

impl RawOrigin {
    /// Answers the first requests with `script`, in order of arrival over
    /// every connection, the others with the default reply.
    pub(crate) fn start(script: &[Reply]) -> RawOrigin {
        let state = Arc::new(Mutex::new(State {
            script: script.iter().copied().collect(),
            ..State::default()
        }));
        let shared = state.clone();
        let server = Server::start(move |stream, _| serve(stream, shared.clone()));
        RawOrigin {
            addr: server.addr,
            state,
            _server: server,
        }
    }

    /// Every connection's record so far.
    pub(crate) fn conns(&self) -> Vec<Conn> {
        self.state.lock().unwrap().conns.clone()
    }

    /// Waits until nothing new has arrived for `quiet` (at most `limit`).
    pub(crate) async fn settle(&self, quiet: Duration, limit: Duration) {
        let total = || {
            let s = self.state.lock().unwrap();
            let bytes: usize = s.conns.iter().map(|c| c.bytes.len()).sum();
            (
                s.conns.len(),
                bytes,
                s.conns.iter().filter(|c| c.closed).count(),
            )
        };
        let deadline = Instant::now() + limit;
        let mut last = total();
        let mut since = Instant::now();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = total();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }

    /// Waits until every connection has been closed by the gateway (at
    /// most `limit`); whether they all were.
    pub(crate) async fn all_closed(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.conns().iter().all(|c| c.closed) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(mut stream: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let me = {
        let mut s = state.lock().unwrap();
        s.conns.push(Conn::default());
        s.conns.len() - 1
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0;
    // After bytes our parser refuses, the rest is only recorded (a default
    // reply is sent once, so the client gets an answer to report).
    let mut broken = false;
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        if n == 0 {
            break;
        }
        let received = {
            let mut s = state.lock().unwrap();
            s.conns[me].bytes.extend_from_slice(&buf[..n]);
            s.conns[me].bytes.clone()
        };
        while !broken && offset < received.len() {
            let reply = match wire::parse(&received[offset..], Kind::Request, false) {
                Parse::Complete(m, used) => {
                    offset += used;
                    next_reply(&state, m.method_is_head())
                }
                Parse::Partial => break,
                Parse::Invalid(_) => {
                    broken = true;
                    next_reply(&state, false)
                }
            };
            if stream.write_all(&reply.bytes_owned).await.is_err() {
                break;
            }
            if reply.close {
                let _ = stream.shutdown().await;
                state.lock().unwrap().conns[me].closed = true;
                return;
            }
        }
    }
    state.lock().unwrap().conns[me].closed = true;
}

struct Answer {
    bytes_owned: Vec<u8>,
    close: bool,
}

fn next_reply(state: &Mutex<State>, head: bool) -> Answer {
    let mut s = state.lock().unwrap();
    let n = s.answered;
    s.answered += 1;
    match s.script.pop_front() {
        Some(r) => Answer {
            bytes_owned: r.bytes.to_vec(),
            close: r.close,
        },
        None => {
            let body = format!("r{n:02}");
            let mut bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            if !head {
                bytes.push_str(&body);
            }
            Answer {
                bytes_owned: bytes.into_bytes(),
                close: false,
            }
        }
    }
}
