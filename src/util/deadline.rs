//! A worker's deadlines: one structure, one timer, for every deadline that
//! a request's future runs under (the upstream's response head, today).
//!
//! tokio's `timeout` registers each deadline in the runtime's timer wheel
//! (behind the driver's lock) and removes it again when the exchange ends
//! first, as nearly every one does: about a thousand instructions a
//! request. Here a deadline is a slot in a per-worker slab, linked at the
//! tail of the list of its duration. Deadlines of one duration are set in
//! the order they fall due, so each list stays sorted by appending, and
//! expiring is popping from the heads. One driver task sleeps until the
//! earliest head; it is woken early only when a deadline is set sooner
//! than the one it sleeps for (the first after an empty spell, or a new,
//! shorter duration), so under load it wakes about once per duration.
//! Setting, clearing and polling a deadline is a few dozen instructions,
//! with no allocation once the slab has grown to the worker's concurrency.
//!
//! Single-threaded (one worker): `RefCell`s, no lock.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

const NIL: u32 = u32::MAX;

/// The deadline passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Waiting,
    Expired,
}

struct Slot {
    at: Instant,
    list: u32,
    prev: u32,
    next: u32,
    waker: Option<Waker>,
    state: State,
}

/// The deadlines of one duration, oldest first.
struct List {
    after: Duration,
    head: u32,
    tail: u32,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Slot>,
    free: Vec<u32>,
    lists: Vec<List>,
}

/// One worker's deadlines (see the module's documentation).
#[derive(Default)]
pub(crate) struct Deadlines {
    inner: RefCell<Inner>,
    /// The driver's waker, while it waits.
    driver: RefCell<Option<Waker>>,
    /// What the driver sleeps until (`None`: it waits for a first deadline).
    armed: Cell<Option<Instant>>,
}

impl Deadlines {
    /// `future`, cut short with [`Elapsed`] at `at` (`after` is the duration
    /// `at` was set with: deadlines are listed by it).
    pub(crate) fn within<F: Future>(
        &self,
        at: Instant,
        after: Duration,
        future: F,
    ) -> Within<'_, F> {
        Within {
            inner: future,
            deadlines: self,
            at,
            after,
            slot: NIL,
        }
    }

    fn set(&self, at: Instant, after: Duration, waker: &Waker) -> u32 {
        let index = {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            let list = match inner.lists.iter().position(|l| l.after == after) {
                Some(l) => l,
                // A duration not seen before takes a list left empty, if any.
                None => match inner.lists.iter().position(|l| l.head == NIL) {
                    Some(l) => {
                        inner.lists[l].after = after;
                        l
                    }
                    None => {
                        inner.lists.push(List {
                            after,
                            head: NIL,
                            tail: NIL,
                        });
                        inner.lists.len() - 1
                    }
                },
            };
            let slot = Slot {
                at,
                list: list as u32,
                prev: NIL,
                next: NIL,
                waker: Some(waker.clone()),
                state: State::Waiting,
            };
            let index = match inner.free.pop() {
                Some(i) => {
                    inner.slots[i as usize] = slot;
                    i
                }
                None => {
                    inner.slots.push(slot);
                    (inner.slots.len() - 1) as u32
                }
            };
            inner.link(index);
            index
        };
        if self.armed.get().map_or(true, |armed| at < armed) {
            // Sooner than the driver sleeps for: it re-arms.
            self.armed.set(Some(at));
            if let Some(driver) = &*self.driver.borrow() {
                driver.wake_by_ref();
            }
        }
        index
    }

    /// Whether the deadline in `index` passed; else its waker is `waker`.
    fn check(&self, index: u32, waker: &Waker) -> bool {
        let mut inner = self.inner.borrow_mut();
        let slot = &mut inner.slots[index as usize];
        if slot.state == State::Expired {
            return true;
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            slot.waker = Some(waker.clone());
        }
        false
    }

    fn clear(&self, index: u32) {
        let mut inner = self.inner.borrow_mut();
        if inner.slots[index as usize].state == State::Waiting {
            inner.unlink(index);
        }
        let slot = &mut inner.slots[index as usize];
        slot.state = State::Free;
        let waker = slot.waker.take();
        inner.free.push(index);
        drop(inner);
        drop(waker);
    }

    /// Marks every deadline due by `now` as passed and wakes its future;
    /// returns the earliest one left.
    fn expire(&self, now: Instant) -> Option<Instant> {
        loop {
            let due = {
                let mut inner = self.inner.borrow_mut();
                let inner = &mut *inner;
                let due = inner
                    .lists
                    .iter()
                    .map(|l| l.head)
                    .find(|&head| head != NIL && inner.slots[head as usize].at <= now);
                match due {
                    Some(index) => {
                        inner.unlink(index);
                        let slot = &mut inner.slots[index as usize];
                        slot.state = State::Expired;
                        slot.waker.take()
                    }
                    None => {
                        let heads = inner.lists.iter().filter(|l| l.head != NIL);
                        return heads.map(|l| inner.slots[l.head as usize].at).min();
                    }
                }
            };
            // Woken outside the borrow.
            if let Some(waker) = due {
                waker.wake();
            }
        }
    }

    /// The driver: runs for as long as the worker, waking each future whose
    /// deadline passed.
    pub(crate) async fn run(&self) {
        let sleep = tokio::time::sleep_until(Instant::now());
        let mut sleep = std::pin::pin!(sleep);
        std::future::poll_fn(|cx| -> Poll<()> {
            {
                let mut driver = self.driver.borrow_mut();
                if !driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *driver = Some(cx.waker().clone());
                }
            }
            loop {
                match self.expire(Instant::now()) {
                    None => {
                        self.armed.set(None);
                        return Poll::Pending;
                    }
                    Some(at) => {
                        self.armed.set(Some(at));
                        if sleep.deadline() != at {
                            sleep.as_mut().reset(at);
                        }
                        if sleep.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                }
            }
        })
        .await
    }

    /// Deadlines set and not yet cleared.
    #[cfg(test)]
    fn len(&self) -> usize {
        let inner = self.inner.borrow();
        inner.slots.len() - inner.free.len()
    }
}

impl Inner {
    /// Links `index` into its list, after every deadline due no later (at
    /// the tail, but for a deadline computed before one set earlier).
    fn link(&mut self, index: u32) {
        let (list, at) = {
            let slot = &self.slots[index as usize];
            (slot.list as usize, slot.at)
        };
        let mut prev = self.lists[list].tail;
        while prev != NIL && self.slots[prev as usize].at > at {
            prev = self.slots[prev as usize].prev;
        }
        let next = match prev {
            NIL => self.lists[list].head,
            p => self.slots[p as usize].next,
        };
        {
            let slot = &mut self.slots[index as usize];
            slot.prev = prev;
            slot.next = next;
        }
        match prev {
            NIL => self.lists[list].head = index,
            p => self.slots[p as usize].next = index,
        }
        match next {
            NIL => self.lists[list].tail = index,
            n => self.slots[n as usize].prev = index,
        }
    }

    fn unlink(&mut self, index: u32) {
        let (list, prev, next) = {
            let slot = &self.slots[index as usize];
            (slot.list as usize, slot.prev, slot.next)
        };
        match prev {
            NIL => self.lists[list].head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.lists[list].tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
        let slot = &mut self.slots[index as usize];
        slot.prev = NIL;
        slot.next = NIL;
    }
}

pin_project! {
    /// A future under a deadline (see [`Deadlines::within`]). Its slot is
    /// set on the first poll that leaves it pending and cleared when it is
    /// dropped.
    pub(crate) struct Within<'d, F> {
        #[pin]
        inner: F,
        deadlines: &'d Deadlines,
        at: Instant,
        after: Duration,
        slot: u32,
    }

    impl<F> PinnedDrop for Within<'_, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.slot != NIL {
                this.deadlines.clear(*this.slot);
            }
        }
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match *this.slot {
            NIL => *this.slot = this.deadlines.set(*this.at, *this.after, cx.waker()),
            slot => {
                if this.deadlines.check(slot, cx.waker()) {
                    return Poll::Ready(Err(Elapsed));
                }
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn a_future_that_ends_first_leaves_no_deadline_behind() {
        runtime().block_on(async {
            let d = Rc::new(Deadlines::default());
            let driver = tokio::task::LocalSet::new();
            driver
                .run_until(async {
                    let dd = d.clone();
                    tokio::task::spawn_local(async move { dd.run().await });
                    let at = Instant::now() + ms(100);
                    let out = d.within(at, ms(100), tokio::time::sleep(ms(10))).await;
                    assert_eq!(out, Ok(()));
                    assert_eq!(d.len(), 0);
                })
                .await;
        });
    }

    #[test]
    fn deadlines_pass_in_order_across_durations_and_not_before_time() {
        runtime().block_on(async {
            let d = Rc::new(Deadlines::default());
            let set = tokio::task::LocalSet::new();
            set.run_until(async {
                let dd = d.clone();
                tokio::task::spawn_local(async move { dd.run().await });
                let start = Instant::now();
                let mut tasks = Vec::new();
                // Long first, then shorter: the driver must re-arm sooner.
                for (after, name) in [(90, "long"), (30, "short"), (60, "mid"), (30, "short2")] {
                    let d = d.clone();
                    tasks.push(tokio::task::spawn_local(async move {
                        let at = Instant::now() + ms(after);
                        let out = d.within(at, ms(after), std::future::pending::<()>()).await;
                        assert_eq!(out, Err(Elapsed), "{name}");
                        (name, Instant::now() - start)
                    }));
                }
                let mut ended = Vec::new();
                for t in tasks {
                    ended.push(t.await.unwrap());
                }
                for (name, took) in &ended {
                    let want = match *name {
                        "long" => ms(90),
                        "mid" => ms(60),
                        _ => ms(30),
                    };
                    // Never early; late by no more than a loaded machine's
                    // scheduling.
                    assert!(*took >= want && *took < want + ms(500), "{name}: {took:?}");
                }
                assert_eq!(d.len(), 0);
                // Idle: the driver waits with nothing armed; a new deadline
                // wakes it.
                assert_eq!(d.armed.get(), None);
                let at = Instant::now() + ms(50);
                let before = Instant::now();
                let out = d.within(at, ms(50), std::future::pending::<()>()).await;
                assert_eq!(out, Err(Elapsed));
                assert!(Instant::now() - before >= ms(50));
            })
            .await;
        });
    }

    #[test]
    fn a_deadline_computed_before_an_earlier_set_one_is_still_listed_in_order() {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let d = Deadlines::default();
        let waker = &Waker::from(std::sync::Arc::new(Noop));
        let now = Instant::now();
        let late = d.set(now + ms(20), ms(20), waker);
        let early = d.set(now + ms(10), ms(20), waker);
        assert_eq!(d.expire(now + ms(15)), Some(now + ms(20)));
        assert!(d.check(early, waker));
        assert!(!d.check(late, waker));
        d.clear(early);
        assert_eq!(d.expire(now + ms(25)), None);
        assert!(d.check(late, waker));
        d.clear(late);
        assert_eq!(d.len(), 0);
        // Slots are reused.
        let again = d.set(now + ms(30), ms(5), waker);
        assert!(again == early || again == late);
        d.clear(again);
    }
}
