//! A worker's access-log buffers: finished lines are appended to one buffer
//! per sink and handed to the sink's writer 64 KiB at a time (or when the
//! worker's housekeeping flushes), so the shared queue is touched once per
//! batch, not per request. Line buffers are recycled. Owned by one worker,
//! lent to its requests through the context; never shared.

use std::cell::RefCell;
use std::sync::Arc;

use super::Sink;

/// Size at which a buffer is handed to the writer thread.
const LOG_BATCH: usize = 64 * 1024;
/// Line buffers kept for reuse.
const LOG_FREE_MAX: usize = 256;

/// Which of a worker's buffers a line goes to: the sink's address, identity
/// without touching the sink's shared refcount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SinkKey(usize);

/// One worker's buffer for one sink.
struct Batch {
    key: SinkKey,
    /// Cloned once, when the worker first logs to this sink.
    sink: Arc<Sink>,
    buf: Vec<u8>,
}

/// One worker's access-log buffers and spare line buffers.
#[derive(Default)]
pub(crate) struct LogBuffers {
    batches: RefCell<Vec<Batch>>,
    free: RefCell<Vec<Vec<u8>>>,
}

impl LogBuffers {
    /// An empty buffer to format one line into (recycled when possible).
    pub(crate) fn take_line(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(256))
    }

    /// Makes sure this worker has a buffer for `sink` and returns its key.
    /// The `Arc` is cloned only the first time a worker sees a sink, so
    /// logging a request never writes the sink's shared refcount.
    pub(crate) fn register(&self, sink: &Arc<Sink>) -> SinkKey {
        let key = SinkKey(Arc::as_ptr(sink) as usize);
        let mut batches = self.batches.borrow_mut();
        if !batches.iter().any(|b| b.key == key) {
            batches.push(Batch {
                key,
                sink: sink.clone(),
                buf: Vec::with_capacity(LOG_BATCH),
            });
        }
        key
    }

    /// Queues one finished line for the sink registered under `key`; a full
    /// batch goes to the writer. A line for a sink removed meanwhile (by a
    /// reload) is dropped.
    pub(crate) fn write(&self, key: SinkKey, mut line: Vec<u8>) {
        let mut batches = self.batches.borrow_mut();
        if let Some(batch) = batches.iter_mut().find(|b| b.key == key) {
            batch.buf.extend_from_slice(&line);
            if batch.buf.len() >= LOG_BATCH {
                let full = std::mem::replace(&mut batch.buf, Vec::with_capacity(LOG_BATCH));
                batch.sink.submit(full);
            }
        }
        drop(batches);
        line.clear();
        let mut free = self.free.borrow_mut();
        if free.len() < LOG_FREE_MAX {
            free.push(line);
        }
    }

    /// Hands every non-empty buffer to its writer, and forgets the sinks no
    /// configuration uses any more once they are flushed.
    pub(crate) fn flush(&self) {
        let mut batches = self.batches.borrow_mut();
        for batch in batches.iter_mut() {
            if !batch.buf.is_empty() {
                let full = std::mem::take(&mut batch.buf);
                batch.sink.submit(full);
            }
        }
        batches.retain(|b| Arc::strong_count(&b.sink) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_batched_until_flushed_and_unused_sinks_forgotten() {
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let sink = Arc::new(Sink::new("test", tx));
        let logs = LogBuffers::default();
        let key = logs.register(&sink);
        assert_eq!(logs.register(&sink), key, "one buffer per sink");
        let mut line = logs.take_line();
        line.extend_from_slice(b"one\n");
        logs.write(key, line);
        assert!(rx.try_recv().is_err(), "a line waits for its batch");
        logs.flush();
        assert_eq!(rx.try_recv().unwrap(), b"one\n");
        // The recycled buffer comes back empty.
        assert!(logs.take_line().is_empty());
        drop(sink);
        logs.flush();
        assert!(logs.batches.borrow().is_empty());
    }
}
