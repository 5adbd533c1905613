//! What a worker lends every one of its requests, through the context: its
//! id, the header slab that generated values are carved from, the request-id
//! sequence, a clock, and its access-log buffers. Owned by one worker (one
//! per thread, never shared); the phases reach it as `RequestContext::tools`
//! rather than by importing the worker.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::HeaderValue;

use crate::log::LogBuffers;

/// Bytes a header slab chunk holds (request ids, rewritten targets).
const SLAB_CHUNK: usize = 16 * 1024;

/// One worker's tools for its requests.
pub(crate) struct WorkerTools {
    /// The worker's index: its metric shard, the seed of its sequences.
    pub(crate) id: usize,
    /// Header values the proxy makes per request.
    pub(crate) slab: HeaderSlab,
    /// Wall-clock and coarse clocks for logs, retries and ejections.
    pub(crate) clock: Clock,
    /// Finished access-log lines waiting for their writer; `Rc` because a
    /// response body finishes its line after the request's context is gone.
    pub(crate) logs: Rc<LogBuffers>,
}

impl WorkerTools {
    pub(crate) fn new(id: usize) -> Self {
        WorkerTools {
            id,
            slab: HeaderSlab::new(id),
            clock: Clock::new(),
            logs: Rc::default(),
        }
    }
}

/// Header values made per request that outlive its arena (request ids, in
/// the response and the log; rewritten targets, redirect locations), carved
/// out of one 16 KiB chunk after another: one allocation per chunk instead
/// of one per value, and the chunk's refcount is only ever touched by its
/// own worker.
pub(crate) struct HeaderSlab {
    chunk: RefCell<BytesMut>,
    /// Random per worker and process: the high half of every request id.
    id_seed: u64,
    id_counter: Cell<u64>,
}

impl HeaderSlab {
    fn new(worker: usize) -> Self {
        HeaderSlab {
            chunk: RefCell::new(BytesMut::new()),
            id_seed: RandomState::new().hash_one((worker, std::process::id(), SystemTime::now())),
            id_counter: Cell::new(0),
        }
    }

    /// A header value made of `parts`.
    pub(crate) fn value(&self, parts: &[&[u8]]) -> HeaderValue {
        HeaderValue::from_maybe_shared(self.bytes(parts))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The concatenation of `parts`.
    pub(crate) fn bytes(&self, parts: &[&[u8]]) -> Bytes {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut chunk = self.chunk.borrow_mut();
        if chunk.capacity() - chunk.len() < len {
            *chunk = BytesMut::with_capacity(SLAB_CHUNK.max(len));
        }
        for p in parts {
            chunk.extend_from_slice(p);
        }
        chunk.split().freeze()
    }

    /// A new request id: 32 hex digits, unique per process (the worker's seed
    /// and a counter).
    pub(crate) fn request_id(&self) -> HeaderValue {
        let n = self.id_counter.get().wrapping_add(1);
        self.id_counter.set(n);
        let low = splitmix64(self.id_seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut buf = [0u8; 32];
        hex_u64(self.id_seed, &mut buf[..16]);
        hex_u64(low, &mut buf[16..]);
        self.value(&[&buf])
    }
}

/// Lowercase hex of `v` into 16 bytes (`write!` costs ~10x more per id).
fn hex_u64(v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().take(16).enumerate() {
        *byte = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A worker's clocks: the wall-clock time of a monotonic instant without a
/// system call per log line, a millisecond counter for retry budgets, and a
/// coarse Unix clock that housekeeping refreshes for outlier ejections.
pub(crate) struct Clock {
    base: (Instant, SystemTime),
    /// The last HTTP date written, and the second it is for.
    date: Cell<(u64, [u8; 29])>,
    /// Unix time in ms, refreshed by the worker's housekeeping tick.
    now_ms: Cell<u64>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            base: (Instant::now(), SystemTime::now()),
            date: Cell::new((0, [0; 29])),
            now_ms: Cell::new(crate::util::time::unix_ms()),
        }
    }

    /// The wall-clock time of a monotonic instant (for log timestamps).
    pub(crate) fn wall_clock_at(&self, t: Instant) -> SystemTime {
        let (base_i, base_s) = self.base;
        match t.checked_duration_since(base_i) {
            Some(d) => base_s + d,
            None => base_s - base_i.duration_since(t),
        }
    }

    /// Milliseconds since this worker started, plus one (never 0); read on
    /// rare paths only (a retry).
    pub(crate) fn monotonic_ms(&self) -> u64 {
        self.base.0.elapsed().as_millis() as u64 + 1
    }

    /// Unix time in ms as of the last [`Clock::tick`] (at most one
    /// housekeeping period old).
    pub(crate) fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    /// Refreshes the coarse clock.
    pub(crate) fn tick(&self) {
        self.now_ms.set(crate::util::time::unix_ms());
    }

    /// Now as an HTTP date (RFC 9110 §5.6.7, `Sun, 06 Nov 1994 08:49:37
    /// GMT`), written into `out`: formatted once a second, copied after.
    pub(crate) fn http_date(&self, out: &mut impl bytes::BufMut) {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (at, text) = self.date.get();
        if at == secs && text[0] != 0 {
            out.put_slice(&text);
            return;
        }
        let text = http_date(secs);
        self.date.set((secs, text));
        out.put_slice(&text);
    }
}

/// `secs` since the epoch as an IMF-fixdate.
fn http_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut out = [0u8; 29];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    let two = |n: u64, o: &mut [u8]| {
        o[0] = b'0' + (n / 10) as u8;
        o[1] = b'0' + (n % 10) as u8;
    };
    two(d as u64, &mut out[5..7]);
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(m - 1) as usize]);
    out[11] = b' ';
    let y = y as u64;
    two(y / 100, &mut out[12..14]);
    two(y % 100, &mut out[14..16]);
    out[16] = b' ';
    two(hh, &mut out[17..19]);
    out[19] = b':';
    two(mm, &mut out[20..22]);
    out[22] = b':';
    two(ss, &mut out[23..25]);
    out[25..29].copy_from_slice(b" GMT");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_imf_fixdates() {
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let slab = HeaderSlab::new(0);
        let a = slab.request_id();
        let b = slab.request_id();
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a, b);
        // The worker's seed is the shared first half.
        assert_eq!(a.as_bytes()[..16], b.as_bytes()[..16]);
    }

    #[test]
    fn slab_values_concatenate_their_parts() {
        let slab = HeaderSlab::new(1);
        assert_eq!(
            slab.value(&[b"10.0.0.1", b", ", b"10.0.0.2"]),
            "10.0.0.1, 10.0.0.2"
        );
        // A value larger than a chunk gets a chunk of its own.
        let big = vec![b'a'; SLAB_CHUNK + 1];
        assert_eq!(slab.bytes(&[&big]).len(), SLAB_CHUNK + 1);
    }
}
