//! A response body compressed as it streams: the upstream's data frames
//! read into the encoder (`async-compression`) as they come, its output
//! sent on in pieces of at most [`CHUNK`] bytes. Nothing is buffered
//! beyond the encoder's window and one output piece, so a body of any size
//! is compressed in the same memory; backpressure is the client's (the
//! upstream body is read only as fast as the output is taken).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use async_compression::Level;
use bytes::Bytes;
use futures_core::Stream;
use http_body::{Body, Frame, SizeHint};
use tokio_util::io::{ReaderStream, StreamReader};

use super::negotiate::Coding;
use crate::context::{BodyError, ProxyBody};

/// The largest piece of compressed output sent at once.
pub(crate) const CHUNK: usize = 16 * 1024;
/// brotli's and zstd's window, as a power of two: 256 KiB (their defaults
/// reach 4 and 8 MiB per stream).
pub(crate) const WINDOW_LOG: u32 = 18;

/// The encoder settings of one `compress` middleware.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Levels {
    pub(crate) gzip: i32,
    pub(crate) brotli: i32,
    pub(crate) zstd: i32,
}

/// The upstream body as a stream of its data (trailers are not part of a
/// compressed representation and are dropped).
struct Data(ProxyBody);

impl Stream for Data {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let frame = match Pin::new(&mut self.0).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => return Poll::Ready(Some(Ok(data))),
                Err(_trailers) => continue,
            }
        }
    }
}

type Source = StreamReader<Data, Bytes>;
type Output<E> = ReaderStream<E>;

enum Encoder {
    Gzip(Output<GzipEncoder<Source>>),
    /// Boxed: brotli's encoder state is 6 KiB inline, the others' half
    /// a KiB.
    Brotli(Box<Output<BrotliEncoder<Source>>>),
    Zstd(Output<ZstdEncoder<Source>>),
}

std::thread_local! {
    /// Compressing responses open on this worker (a worker is one
    /// thread: its own count, no atomics).
    static OPEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One of this worker's compressing responses: counted while it lives.
pub(super) struct Slot;

impl Slot {
    /// `None` when the worker already has `max` compressing responses open.
    pub(super) fn take(max: usize) -> Option<Slot> {
        OPEN.with(|open| {
            let n = open.get();
            (n < max).then(|| {
                open.set(n + 1);
                Slot
            })
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.with(|open| open.set(open.get().saturating_sub(1)));
    }
}

/// `inner` compressed with `coding`.
pub(crate) struct Compressed {
    encoder: Encoder,
    done: bool,
    _slot: Slot,
}

impl Compressed {
    /// Holds `slot` for as long as it lives.
    pub(super) fn new(inner: ProxyBody, coding: Coding, levels: Levels, slot: Slot) -> Compressed {
        let source = StreamReader::new(Data(inner));
        let encoder = match coding {
            Coding::Gzip => Encoder::Gzip(ReaderStream::with_capacity(
                GzipEncoder::with_quality(source, Level::Precise(levels.gzip)),
                CHUNK,
            )),
            Coding::Brotli => {
                let params = async_compression::brotli::EncoderParams::default()
                    .window_size(WINDOW_LOG as i32);
                Encoder::Brotli(Box::new(ReaderStream::with_capacity(
                    BrotliEncoder::with_quality_and_params(
                        source,
                        Level::Precise(levels.brotli),
                        params,
                    ),
                    CHUNK,
                )))
            }
            Coding::Zstd => {
                let params = [async_compression::zstd::CParameter::window_log(WINDOW_LOG)];
                Encoder::Zstd(ReaderStream::with_capacity(
                    ZstdEncoder::with_quality_and_params(
                        source,
                        Level::Precise(levels.zstd),
                        &params,
                    ),
                    CHUNK,
                ))
            }
        };
        Compressed {
            encoder,
            done: false,
            _slot: slot,
        }
    }
}

impl Body for Compressed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = match &mut self.encoder {
            Encoder::Gzip(s) => Pin::new(s).poll_next(cx),
            Encoder::Brotli(s) => Pin::new(&mut **s).poll_next(cx),
            Encoder::Zstd(s) => Pin::new(s).poll_next(cx),
        };
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(BodyError::Other(Box::new(e)))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_keeps_at_most_max_streams_open() {
        let a = Slot::take(2).unwrap();
        let b = Slot::take(2).unwrap();
        assert!(Slot::take(2).is_none());
        drop(a);
        let c = Slot::take(2).expect("a closed stream frees its slot");
        drop((b, c));
        assert_eq!(OPEN.with(|o| o.get()), 0);
        // A body holds its slot until it is dropped.
        let levels = Levels {
            gzip: 1,
            brotli: 1,
            zstd: 1,
        };
        let slot = Slot::take(1).unwrap();
        let held = Compressed::new(ProxyBody::empty(), Coding::Gzip, levels, slot);
        assert!(Slot::take(1).is_none());
        drop(held);
        assert!(Slot::take(1).is_some());
    }
}
