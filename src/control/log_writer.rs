//! Access-log writer threads, owned by the control plane. Workers batch lines
//! and hand whole buffers over a bounded channel; a writer thread does the
//! blocking write. A full channel drops the batch (counted) rather than ever
//! making a worker wait.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
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
}

impl SinkOpener for LogWriters {
    fn open(&self, output: &str) -> Result<Arc<Sink>, String> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sink) = sinks.get(output).and_then(Weak::upgrade) {
            return Ok(sink);
        }
        let mut writer: Box<dyn Write + Send> = match output {
            "stdout" => Box::new(std::io::stdout()),
            "stderr" => Box::new(std::io::stderr()),
            path => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open access log file {path:?}: {e}"))?,
            ),
        };
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let name = output.to_string();
        let handle = std::thread::Builder::new()
            .name("strait-log".into())
            .spawn(move || write_loop(&name, &mut *writer, rx))
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

fn write_loop(name: &str, writer: &mut dyn Write, rx: Receiver<Vec<u8>>) {
    // Ends when every `Sink` handle (snapshots, workers) is gone.
    while let Ok(batch) = rx.recv() {
        if let Err(e) = writer.write_all(&batch).and_then(|()| writer.flush()) {
            tracing::error!(output = name, error = %e, "access log write failed");
        }
    }
}
