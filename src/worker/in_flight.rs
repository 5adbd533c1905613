//! Requests in flight on one worker, for the drain on shutdown. A request
//! counts from its head until hyper drops its response body, so a streamed
//! response counts until its last byte: the worker wraps the proxy's future
//! ([`Counted`]) and then its response body ([`CountedBody`]) around one
//! guard. Kept per request, not per connection: idle connections then carry
//! nothing for the drain (their memory is the idle-connection cost).

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::Notify;

use crate::context::{BodyError, ProxyBody};

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

    /// Counts a request that has just arrived, until the guard drops.
    pub(crate) fn start(self: &Rc<Self>) -> InFlight {
        self.count.set(self.count.get() + 1);
        InFlight(self.clone())
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

/// One request counted in flight. One pointer: it sits in the request's
/// future across every await, and hyper keeps that future allocated per
/// connection.
pub(crate) struct InFlight(Rc<InFlightCount>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let left = self.0.count.get() - 1;
        self.0.count.set(left);
        if left == 0 {
            self.0.all_done.notify_waiters();
        }
    }
}

pin_project! {
    /// A request's future, counted in flight; its response body carries the
    /// count on.
    pub(crate) struct Counted<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F> Counted<F> {
    pub(crate) fn new(guard: InFlight, inner: F) -> Self {
        Counted {
            inner,
            guard: Some(guard),
        }
    }
}

impl<F> Future for Counted<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = Result<Response<CountedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(response.map(|r| r.map(|body| CountedBody { inner: body, guard })))
    }
}

pin_project! {
    /// A response body counted in flight until hyper drops it. The body
    /// drops first (it counts the request's outcome), then the guard.
    pub(crate) struct CountedBody {
        #[pin]
        inner: ProxyBody,
        guard: Option<InFlight>,
    }
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = BodyError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.project().inner.poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_counts_until_its_body_is_dropped() {
        let count = Rc::new(InFlightCount::default());
        let future = Counted::new(count.start(), async {
            Ok::<_, Infallible>(Response::new(ProxyBody::empty()))
        });
        assert_eq!(count.get(), 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let response = rt.block_on(future).unwrap();
        assert_eq!(count.get(), 1, "the body still counts");
        drop(response);
        assert_eq!(count.get(), 0);
        // Nothing in flight: the drain does not wait.
        rt.block_on(count.none_left());
    }
}
