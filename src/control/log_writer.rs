//! Access-log writer threads, owned by the control plane. Workers batch lines
//! and hand whole buffers over a bounded channel; a writer thread does the
//! blocking write. A full channel drops the batch (counted) rather than ever
//! making a worker wait. A writer reopens its file (after a log rotation)
//! between two batches when asked to by [`LogWriters::reopen`].

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;

use crate::config::SinkOpener;
use crate::log::Sink;

/// Batches waiting for a writer before new ones are dropped.
const QUEUE: usize = 256;

/// The open sinks, shared across reloads by output name.
#[derive(Default)]
pub(crate) struct LogWriters {
    sinks: Mutex<HashMap<String, Weak<Sink>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Bumped by each [`LogWriters::reopen`]; a writer that sees it changed
    /// reopens its file before its next write.
    reopens: Arc<AtomicU64>,
}

impl LogWriters {
    /// Waits for writer threads whose sinks are all dropped to finish writing.
    pub(crate) fn join(&self) {
        let handles: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }

    /// Asks every writer of a file to close it and open its path again
    /// (created if missing), as after `mv access.log access.log.1`. Returns
    /// how many files were asked. Nothing here waits for a writer: each
    /// reopens on its own thread, before the next batch it writes, and is
    /// woken for it through its queue so that the new file appears at once.
    pub(crate) fn reopen(&self) -> usize {
        self.reopens.fetch_add(1, Ordering::AcqRel);
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        let mut files = 0;
        for (output, sink) in sinks.iter() {
            if is_file(output) {
                if let Some(sink) = sink.upgrade() {
                    sink.wake();
                    files += 1;
                }
            }
        }
        files
    }
}

impl SinkOpener for LogWriters {
    fn open(&self, output: &str) -> Result<Arc<Sink>, String> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sink) = sinks.get(output).and_then(Weak::upgrade) {
            return Ok(sink);
        }
        let writer = match output {
            "stdout" => Output::Stdout,
            "stderr" => Output::Stderr,
            path => Output::File(
                open_append(path)
                    .map_err(|e| format!("cannot open access log file {path:?}: {e}"))?,
            ),
        };
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let name = output.to_string();
        let reopens = self.reopens.clone();
        // Read now, not on the new thread: a reopen asked for from here on
        // is seen by it.
        let seen = reopens.load(Ordering::Acquire);
        let handle = std::thread::Builder::new()
            .name("strait-log".into())
            .spawn(move || write_loop(&name, writer, rx, &reopens, seen))
            .map_err(|e| format!("cannot start the access log writer: {e}"))?;
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
        let sink = Arc::new(Sink::new(output, tx));
        sinks.insert(output.to_string(), Arc::downgrade(&sink));
        Ok(sink)
    }
}

/// Where a writer thread writes.
enum Output {
    Stdout,
    Stderr,
    File(File),
}

fn is_file(output: &str) -> bool {
    !matches!(output, "stdout" | "stderr")
}

fn open_append(path: &str) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Output {
    fn write_batch(&mut self, batch: &[u8]) -> std::io::Result<()> {
        fn all(w: &mut impl Write, batch: &[u8]) -> std::io::Result<()> {
            w.write_all(batch).and_then(|()| w.flush())
        }
        match self {
            Output::Stdout => all(&mut std::io::stdout().lock(), batch),
            Output::Stderr => all(&mut std::io::stderr().lock(), batch),
            Output::File(f) => all(f, batch),
        }
    }
}

fn write_loop(
    name: &str,
    mut output: Output,
    rx: Receiver<Vec<u8>>,
    reopens: &AtomicU64,
    mut seen: u64,
) {
    // Ends when every `Sink` handle (snapshots, workers) is gone.
    while let Ok(batch) = rx.recv() {
        let asked = reopens.load(Ordering::Acquire);
        if asked != seen {
            seen = asked;
            if let Output::File(file) = &mut output {
                // A file that cannot be opened again (a directory removed,
                // permissions changed) keeps the old one: lines still land
                // somewhere, and the error says where to look.
                match open_append(name) {
                    Ok(fresh) => *file = fresh,
                    Err(e) => tracing::error!(
                        output = name,
                        error = %e,
                        "cannot reopen the access log file; still writing to the one open before"
                    ),
                }
            }
        }
        // An empty batch is only a wake-up (`Sink::wake`).
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = output.write_batch(&batch) {
            tracing::error!(output = name, error = %e, "access log write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits up to 5 s for `path` to read `want`.
    fn reads(path: &std::path::Path, want: &str) {
        for _ in 0..500 {
            if std::fs::read_to_string(path).unwrap_or_default() == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "{} reads {:?}, expected {want:?}",
            path.display(),
            std::fs::read_to_string(path).unwrap_or_default()
        );
    }

    #[test]
    fn a_reopen_moves_the_next_batch_to_a_fresh_file_at_the_same_path() {
        let dir = std::env::temp_dir().join(format!("strait-log-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let rotated = dir.join("access.log.1");
        let writers = LogWriters::default();
        let sink = writers.open(path.to_str().unwrap()).unwrap();
        let stdout = writers.open("stdout").unwrap();
        sink.submit(b"before\n".to_vec());
        reads(&path, "before\n");

        std::fs::rename(&path, &rotated).unwrap();
        assert_eq!(writers.reopen(), 1, "one file (stdout is not reopened)");
        // The wake-up alone makes the new file, before any line is written.
        reads(&path, "");
        sink.submit(b"after\n".to_vec());
        reads(&path, "after\n");
        reads(&rotated, "before\n");

        drop((sink, stdout));
        writers.join();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
