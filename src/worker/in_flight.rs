//! Requests in flight on one worker, for the drain on shutdown. A request
//! counts from its head until hyper drops its response body, so a streamed
//! response counts until its last byte: the request's connection
//! (`connections.rs` `Conn::request`) starts the count and gives the proxy a
//! `context::body::Tracked` guard, which rides in the request's future and
//! then in its response body, and ends the count when dropped.

use std::cell::Cell;

use tokio::sync::Notify;

/// How many requests a worker has in flight, and what wakes the drain when
/// the last one ends.
#[derive(Default)]
pub(crate) struct InFlightCount {
    count: Cell<usize>,
    all_done: Notify,
}

impl InFlightCount {
    /// Requests in flight now.
    pub(crate) fn get(&self) -> usize {
        self.count.get()
    }

    /// Counts a request that has just arrived; [`InFlightCount::end`] when
    /// it is over (its connection's guard calls both).
    pub(crate) fn begin(&self) {
        self.count.set(self.count.get() + 1);
    }

    /// A request is over.
    pub(crate) fn end(&self) {
        let left = self.count.get() - 1;
        self.count.set(left);
        if left == 0 {
            self.all_done.notify_waiters();
        }
    }

    /// Resolves once no request is in flight.
    pub(crate) async fn none_left(&self) {
        loop {
            let done = self.all_done.notified();
            if self.count.get() == 0 {
                return;
            }
            done.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::context::ProxyBody;
    use crate::worker::connections::Registry;

    #[test]
    fn a_request_counts_until_its_body_is_dropped() {
        let count = Rc::new(InFlightCount::default());
        let registry = Registry::new(count.clone());
        let conn = registry.open();
        let tracked = conn.conn().request();
        assert_eq!(count.get(), 1);
        let mut body = ProxyBody::empty();
        tracked.attach(&mut body);
        assert_eq!(count.get(), 1, "the body still counts");
        drop(body);
        assert_eq!(count.get(), 0);
        // Nothing in flight: the drain does not wait.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(count.none_left());
    }

    #[test]
    fn a_request_dropped_before_its_answer_ends_its_count() {
        let count = Rc::new(InFlightCount::default());
        let registry = Registry::new(count.clone());
        let conn = registry.open();
        let tracked = conn.conn().request();
        assert_eq!(count.get(), 1);
        drop(tracked);
        assert_eq!(count.get(), 0);
        // The connection outlives its request, and its registration ends
        // with its task.
        assert_eq!(registry.len(), 1);
        drop(conn);
        assert_eq!(registry.len(), 0);
    }
}
