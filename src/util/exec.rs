//! The executor hyper is given on a worker: it spawns onto the worker's own
//! `LocalSet`, so the futures hyper hands it (HTTP/2 streams and connections,
//! client and server side) need not be `Send` and never leave the thread.

use std::future::Future;

/// Runs hyper's per-stream and per-connection tasks on the current thread's
/// local set.
#[derive(Clone, Copy)]
pub(crate) struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}
