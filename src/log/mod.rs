//! The access log's plumbing, between the middleware that writes lines
//! (`middleware/access_log.rs`) and the control plane's writer threads
//! (`control/log_writer.rs`): a [`Sink`] is one output's bounded queue, a
//! worker's [`LogBuffers`] batch finished lines per sink, and a [`LogTail`]
//! is a half-written line that waits in a response body for the figures only
//! the end of the body knows. Nothing here blocks, locks or writes a file.

mod buffer;
mod sink;
mod tail;

pub(crate) use buffer::{LogBuffers, SinkKey};
pub(crate) use sink::Sink;
pub(crate) use tail::{LogFormat, LogTail};
