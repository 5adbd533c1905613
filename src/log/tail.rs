//! The second half of an access-log line. The line is formatted in two
//! halves: what is known when the response head leaves (written by the
//! middleware while the request's context still exists), and what is known
//! only when the body ends (bytes sent, total time), appended here when the
//! response body finishes. A `LogTail` owns everything it needs, since the
//! context and the arena are gone by then.

use std::io::Write as _;
use std::rc::Rc;
use std::time::Instant;

use super::{LogBuffers, SinkKey};

/// The line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// `ip - - [time] "METHOD path PROTO" status bytes "referer" "user-agent"`.
    Combined,
    /// One JSON object per line with every field of the log record.
    Json,
}

/// A half-written line carried by the response body until it ends.
pub(crate) struct LogTail {
    buf: Vec<u8>,
    /// Where the end-of-body fields go.
    split: usize,
    format: LogFormat,
    /// When the request head arrived, for the total time.
    start: Instant,
    sink: SinkKey,
    /// The worker's buffers the finished line goes to.
    logs: Rc<LogBuffers>,
}

impl LogTail {
    /// A line whose first half is `buf`, the end-of-body fields to be put at
    /// `split`, for `sink` through the worker's `logs`.
    pub(crate) fn new(
        buf: Vec<u8>,
        split: usize,
        format: LogFormat,
        start: Instant,
        sink: SinkKey,
        logs: Rc<LogBuffers>,
    ) -> Self {
        LogTail {
            buf,
            split,
            format,
            start,
            sink,
            logs,
        }
    }

    /// Completes the line with what only the end of the body knows, and
    /// queues it.
    pub(crate) fn finish(mut self, bytes_sent: u64, completed: bool) {
        let elapsed = self.start.elapsed();
        let suffix = self.buf.split_off(self.split);
        match self.format {
            LogFormat::Combined => {
                let _ = write!(self.buf, "{bytes_sent}");
                self.buf.extend_from_slice(&suffix);
            }
            LogFormat::Json => {
                self.buf.extend_from_slice(&suffix);
                let _ = write!(
                    self.buf,
                    "\"bytes_sent\":{bytes_sent},\"completed\":{completed},\"duration_ms\":{:.3}}}",
                    elapsed.as_secs_f64() * 1000.0
                );
            }
        }
        self.buf.push(b'\n');
        let buf = std::mem::take(&mut self.buf);
        self.logs.write(self.sink, buf);
    }
}
