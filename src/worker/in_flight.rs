//! Requests in flight on one worker, for the drain on shutdown. A request
//! counts from its head until hyper drops its response body, so a streamed
//! response counts until its last byte: the worker starts the count and
//! gives the proxy a `context::body::Tracked` guard, which rides in the
//! request's future and then in its response body. Kept per request, not per
//! connection: idle connections then carry nothing for the drain (their
//! memory is the idle-connection cost).

use std::cell::Cell;
use std::rc::Rc;

use tokio::sync::Notify;

use crate::context::body::{Tracked, Tracker};

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

    /// Counts a request that has just arrived, until its guard (or the
    /// response body it is handed to) is dropped.
    pub(crate) fn start(self: &Rc<Self>) -> Tracked {
        self.count.set(self.count.get() + 1);
        Tracked::new(self.clone())
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

impl Tracker for InFlightCount {
    fn ended(&self) {
        let left = self.count.get() - 1;
        self.count.set(left);
        if left == 0 {
            self.all_done.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ProxyBody;

    #[test]
    fn a_request_counts_until_its_body_is_dropped() {
        let count = Rc::new(InFlightCount::default());
        let tracked = count.start();
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
        let tracked = count.start();
        assert_eq!(count.get(), 1);
        drop(tracked);
        assert_eq!(count.get(), 0);
    }
}
