//! The byte pump of a tunnel: both directions copied in one future, with
//! backpressure (a direction reads only when its buffer is written out), an
//! idle timeout over both directions, half-close passed on (a peer's FIN
//! becomes a FIN to the other peer), and the orderly close used on idle
//! timeout and shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes each direction of a tunnel buffers: one read's worth, written out
/// before the next read (so a slow reader slows the sender, never memory).
const BUFFER: usize = 16 * 1024;

/// Reads in a row a direction may do in one poll before it yields, so a
/// fast tunnel cannot starve the other tasks of the worker.
const BUDGET: usize = 32;

/// How a tunnel's copy ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Both peers closed their sending side, and each FIN was passed on.
    Done,
    /// No byte moved either way for the idle timeout.
    Idle,
    /// A peer failed (reset, broken pipe).
    Failed(io::Error),
}

/// One direction: read from one peer into `buf`, write it all to the other.
struct Half {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The reader sent FIN.
    read_done: bool,
    /// The FIN was passed on: this direction is over.
    done: bool,
    need_flush: bool,
    /// Bytes written to the other peer so far.
    moved: u64,
}

impl Half {
    fn new() -> Half {
        Half {
            buf: vec![0u8; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            read_done: false,
            done: false,
            need_flush: false,
            moved: 0,
        }
    }

    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        let mut budget = BUDGET;
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.start == self.end && !self.read_done {
                if budget == 0 {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                budget -= 1;
                let mut rb = ReadBuf::new(&mut self.buf);
                match reader.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            self.read_done = true;
                        } else {
                            self.start = 0;
                            self.end = n;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // Nothing more to read now: push out what was written.
                        if self.need_flush {
                            ready!(writer.as_mut().poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.start < self.end {
                let n = ready!(writer
                    .as_mut()
                    .poll_write(cx, &self.buf[self.start..self.end]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.start += n;
                self.moved += n as u64;
                self.need_flush = true;
            }
            if self.read_done {
                // The reader's FIN goes on to the writer: a half-close.
                ready!(writer.as_mut().poll_flush(cx))?;
                self.need_flush = false;
                ready!(writer.as_mut().poll_shutdown(cx))?;
                self.done = true;
            }
        }
    }
}

/// Copies `client` ↔ `upstream` until both directions end, a peer fails, or
/// nothing moves for `idle`. `moved(up, down)` is told the bytes each
/// direction moved (client → upstream, upstream → client) as they move.
pub(crate) struct Copy<'t, A: ?Sized, B: ?Sized, M> {
    client: &'t mut A,
    upstream: &'t mut B,
    up: Half,
    down: Half,
    idle: Duration,
    /// When a byte last moved.
    last: Instant,
    /// Armed at `last + idle`; moved later only when it fires early.
    timer: Pin<Box<Sleep>>,
    moved: M,
}

impl<'t, A, B, M> Copy<'t, A, B, M>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
    M: FnMut(u64, u64) + Unpin,
{
    pub(crate) fn new(client: &'t mut A, upstream: &'t mut B, idle: Duration, moved: M) -> Self {
        let last = Instant::now();
        Copy {
            client,
            upstream,
            up: Half::new(),
            down: Half::new(),
            idle,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + idle)),
            moved,
        }
    }
}

impl<A, B, M> Future for Copy<'_, A, B, M>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
    M: FnMut(u64, u64) + Unpin,
{
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = self.get_mut();
        let (up_before, down_before) = (this.up.moved, this.down.moved);
        let up = this.up.poll_copy(
            cx,
            Pin::new(&mut *this.client),
            Pin::new(&mut *this.upstream),
        );
        let down = this.down.poll_copy(
            cx,
            Pin::new(&mut *this.upstream),
            Pin::new(&mut *this.client),
        );
        let (up_delta, down_delta) = (this.up.moved - up_before, this.down.moved - down_before);
        if up_delta + down_delta > 0 {
            (this.moved)(up_delta, down_delta);
            this.last = Instant::now();
        }
        match (up, down) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => {
                return Poll::Ready(End::Failed(e))
            }
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => return Poll::Ready(End::Done),
            _ => {}
        }
        // The timer is reset only when it fires before the (moved) deadline:
        // a busy tunnel does not touch the timer wheel per read.
        loop {
            let deadline = this.last + this.idle;
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                return Poll::Ready(End::Idle);
            }
            this.timer.as_mut().reset(deadline);
        }
    }
}

/// Closes a tunnel in order: a FIN to both peers, then their remaining bytes
/// read and dropped until each closes too (so no reset hits data they sent),
/// all within `bound`. The streams are dropped (closed) by the caller.
pub(crate) async fn close<A, B>(client: &mut A, upstream: &mut B, bound: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let _ = tokio::time::timeout(bound, async {
        let _ = tokio::join!(client.shutdown(), upstream.shutdown());
        tokio::join!(discard(client), discard(upstream));
    })
    .await;
}

/// Reads until EOF or an error, dropping what arrives.
async fn discard<R: AsyncRead + Unpin + ?Sized>(r: &mut R) {
    let mut scratch = [0u8; 1024];
    while let Ok(n) = r.read(&mut scratch).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn copies_both_ways_and_passes_half_close_on() {
        let (client, mut client_side) = duplex(64);
        let (upstream, mut upstream_side) = duplex(64);
        let (mut client_rx, mut client_tx) = tokio::io::split(client);
        let (mut upstream_rx, mut upstream_tx) = tokio::io::split(upstream);
        let mut totals = (0u64, 0u64);
        let pump = async {
            Copy::new(
                &mut client_side,
                &mut upstream_side,
                Duration::from_secs(5),
                |u, d| {
                    totals.0 += u;
                    totals.1 += d;
                },
            )
            .await
        };
        let peers = async {
            let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
            let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
            let ((), (), _, _) = tokio::join!(
                async {
                    client_tx.write_all(&data).await.unwrap();
                    client_tx.shutdown().await.unwrap();
                },
                async {
                    upstream_tx.write_all(&data[..777]).await.unwrap();
                    upstream_tx.shutdown().await.unwrap();
                },
                upstream_rx.read_to_end(&mut got_up),
                client_rx.read_to_end(&mut got_down),
            );
            assert_eq!(got_up, data);
            assert_eq!(got_down, &data[..777]);
        };
        let (end, ()) = tokio::join!(pump, peers);
        assert!(matches!(end, End::Done), "{end:?}");
        assert_eq!(totals, (10_000, 777));
    }

    #[tokio::test]
    async fn idles_out_only_without_traffic() {
        let (mut client, mut client_side) = duplex(64);
        let (_upstream, mut upstream_side) = duplex(64);
        let started = Instant::now();
        let pump = Copy::new(
            &mut client_side,
            &mut upstream_side,
            Duration::from_millis(300),
            |_, _| {},
        );
        let traffic = async {
            // A byte every 200 ms keeps the tunnel open past 300 ms.
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                client.write_all(b"x").await.unwrap();
            }
            std::future::pending::<()>().await;
        };
        let end = tokio::select! {
            end = pump => end,
            () = traffic => unreachable!(),
        };
        assert!(matches!(end, End::Idle), "{end:?}");
        let took = started.elapsed();
        // Three bytes 200 ms apart, then 300 ms of silence.
        assert!(took >= Duration::from_millis(900), "{took:?}");
    }
}
