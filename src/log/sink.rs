//! One log destination as the data plane sees it: a bounded queue to the
//! writer thread that owns the file (or stdout, stderr). Handing a batch over
//! never blocks: a full queue drops it and counts the drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;

/// One output of the access log.
pub(crate) struct Sink {
    /// `stdout`, `stderr` or the file path, as configured.
    pub(crate) output: Box<str>,
    tx: SyncSender<Vec<u8>>,
    /// Batches dropped because the writer fell behind.
    dropped: AtomicU64,
}

impl Sink {
    /// A sink whose batches go to `tx` (the writer thread's end).
    pub(crate) fn new(output: &str, tx: SyncSender<Vec<u8>>) -> Self {
        Sink {
            output: output.into(),
            tx,
            dropped: AtomicU64::new(0),
        }
    }

    /// Hands a batch of lines to the writer; never blocks.
    pub(crate) fn submit(&self, batch: Vec<u8>) {
        if self.tx.try_send(batch).is_err() {
            // Only on overflow, so this shared counter is not written per request.
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wakes the writer thread with an empty batch, so that it looks at a
    /// request to reopen its file now rather than at its next batch. Called
    /// by the control plane only; a full queue needs no wake-up (the writer
    /// has batches to write and looks before each), so it is not a drop.
    pub(crate) fn wake(&self) {
        let _ = self.tx.try_send(Vec::new());
    }

    /// Batches dropped so far.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let sink = Sink::new("test", tx);
        sink.submit(b"a\n".to_vec());
        sink.submit(b"b\n".to_vec());
        assert_eq!(sink.dropped(), 1);
        assert_eq!(rx.recv().unwrap(), b"a\n");
    }
}
