//! A worker: one OS thread with its own single-threaded tokio runtime and local
//! task set, its own listening sockets, arenas, upstream pool, balancer state,
//! log buffers and counters. It reads configuration from the shared snapshot with
//! one atomic load per request and otherwise touches nothing shared.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};

use crate::balance::Balancer;
use crate::config::Snapshot;
use crate::control::log_writer::Sink;
use crate::data::arena::ArenaPool;
use crate::data::connection::{self, Protocols};
use crate::metrics::{Metrics, StatIds, WorkerCounters};
use crate::upstream::pool::UpstreamPool;

/// What the control plane and the workers share: the published snapshot, the
/// shutdown signal and the metrics (each worker writes its own shard). Workers
/// only read the rest.
pub(crate) struct Shared {
    snapshot: ArcSwap<Snapshot>,
    /// Bumped after each publish; a worker compares it with the generation it
    /// holds, so the per-request check is one atomic load of a line that is
    /// only written on reload.
    generation: AtomicU64,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Serialises publishers (control plane only), so generations only grow.
    publishing: std::sync::Mutex<()>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Shared {
    pub(crate) fn new(snapshot: Snapshot, metrics: Arc<Metrics>) -> Self {
        let generation = snapshot.generation;
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            generation: AtomicU64::new(generation),
            shutdown: watch::channel(false).0,
            publishing: std::sync::Mutex::new(()),
            metrics,
        }
    }

    /// Publishes a new snapshot with one atomic swap and returns its
    /// generation; requests in flight keep theirs. The generation counter is
    /// bumped after the swap, so a worker that sees it sees the new snapshot.
    pub(crate) fn publish(&self, mut snapshot: Snapshot) -> u64 {
        let _one_at_a_time = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        snapshot.generation = generation;
        self.snapshot.store(Arc::new(snapshot));
        self.generation.store(generation, Ordering::Release);
        generation
    }

    pub(crate) fn current(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }
}

/// A worker's counted handle to a snapshot. `Rc<Arc<_>>` on purpose: requests
/// clone the `Rc` (a plain increment on this thread); cloning the `Arc` would
/// write the snapshot's shared refcount from every worker on every request.
#[allow(clippy::redundant_allocation)]
pub(crate) type SnapshotRef = Rc<Arc<Snapshot>>;

/// Per-upstream balancer state for one snapshot generation.
struct Balancers {
    generation: u64,
    states: Vec<Balancer>,
    /// Each upstream's name and endpoint addresses, as `states` was built
    /// for: what a reload compares to carry state over.
    shapes: Vec<(Box<str>, Box<[SocketAddr]>)>,
    /// Used for requests still running on an older snapshot during a reload.
    fallback: crate::balance::RoundRobin,
}

/// A worker-local buffer of access-log lines for one sink.
struct LocalSink {
    /// The sink's address: identity without touching its refcount.
    key: usize,
    sink: Arc<Sink>,
    buf: Vec<u8>,
}

/// Size at which a worker hands a log buffer to the writer thread.
const LOG_BATCH: usize = 64 * 1024;
/// Log line buffers kept for reuse.
const LOG_FREE_MAX: usize = 256;
/// Bytes a header slab chunk holds (request ids, X-Forwarded-For values).
const SLAB_CHUNK: usize = 16 * 1024;

/// The state one worker owns. Always inside an `Rc`; never leaves its thread.
pub(crate) struct WorkerLocal {
    pub(crate) id: usize,
    me: Weak<WorkerLocal>,
    shared: Arc<Shared>,
    current: RefCell<(u64, SnapshotRef)>,
    pub(crate) arenas: ArenaPool,
    pub(crate) pool: UpstreamPool,
    protocols: RefCell<Rc<Protocols>>,
    balancers: RefCell<Balancers>,
    id_seed: u64,
    id_counter: Cell<u64>,
    slab: RefCell<BytesMut>,
    log_free: RefCell<Vec<Vec<u8>>>,
    log_sinks: RefCell<Vec<LocalSink>>,
    clock_base: (Instant, SystemTime),
    /// Requests in flight on this worker: from the request head to the end of
    /// the response body.
    in_flight: Cell<usize>,
    /// Unix time in ms, refreshed by housekeeping (for outlier ejections).
    now_ms: Cell<u64>,
    /// Requests waiting for an upstream connection (`max_connections`), and
    /// what wakes them: a connection checked in or closed.
    room_waiters: Cell<usize>,
    room: tokio::sync::Notify,
    /// Wakes the drain wait when the last request in flight ends.
    all_done: tokio::sync::Notify,
}

impl WorkerLocal {
    pub(crate) fn new(id: usize, shared: Arc<Shared>) -> Rc<Self> {
        let snapshot = shared.current();
        let generation = snapshot.generation;
        let seed = RandomState::new().hash_one((id, std::process::id(), SystemTime::now()));
        Rc::new_cyclic(|me| WorkerLocal {
            id,
            me: me.clone(),
            shared,
            balancers: RefCell::new(Balancers::build(&snapshot, id, None)),
            pool: UpstreamPool::new(id, &snapshot),
            protocols: RefCell::new(Rc::new(Protocols::new(&snapshot))),
            current: RefCell::new((generation, Rc::new(snapshot))),
            arenas: ArenaPool::default(),
            id_seed: seed,
            id_counter: Cell::new(0),
            slab: RefCell::new(BytesMut::new()),
            log_free: RefCell::new(Vec::new()),
            log_sinks: RefCell::new(Vec::new()),
            clock_base: (Instant::now(), SystemTime::now()),
            in_flight: Cell::new(0),
            now_ms: Cell::new(crate::upstream::outlier::unix_ms()),
            room_waiters: Cell::new(0),
            room: tokio::sync::Notify::new(),
            all_done: tokio::sync::Notify::new(),
        })
    }

    /// A counted handle to this worker.
    pub(crate) fn rc(&self) -> Rc<WorkerLocal> {
        self.me
            .upgrade()
            .expect("a WorkerLocal only exists inside its Rc")
    }

    /// The current snapshot: one atomic load; the shared `Arc` is only touched
    /// (once per worker) when a new generation was published.
    pub(crate) fn snapshot(&self) -> SnapshotRef {
        let generation = self.shared.generation.load(Ordering::Acquire);
        let mut current = self.current.borrow_mut();
        if current.0 != generation {
            let snapshot = self.shared.current();
            // Rare: once per reload. Pools of endpoints no longer configured
            // drain (their idle connections close now, busy ones when their
            // exchange ends); new connections get the new server settings.
            self.pool.retarget(&snapshot);
            *self.protocols.borrow_mut() = Rc::new(Protocols::new(&snapshot));
            *current = (snapshot.generation, Rc::new(snapshot));
        }
        current.1.clone()
    }

    /// The connection settings of the current snapshot.
    pub(crate) fn protocols(&self) -> Rc<Protocols> {
        let _ = self.snapshot();
        self.protocols.borrow().clone()
    }

    /// Changes to `true` when the gateway shuts down.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shared.shutdown.subscribe()
    }

    /// Milliseconds since this worker started, plus one (never 0); read on
    /// rare paths only (a retry).
    pub(crate) fn monotonic_ms(&self) -> u64 {
        self.clock_base.0.elapsed().as_millis() as u64 + 1
    }

    /// Wakes the requests waiting for an upstream connection, if any (a
    /// `Cell` read otherwise: this runs whenever a connection is freed).
    #[inline]
    pub(crate) fn room_freed(&self) {
        if self.room_waiters.get() > 0 {
            self.room.notify_waiters();
        }
    }

    /// Waits until an upstream connection is freed, or `deadline`; false on
    /// the deadline.
    pub(crate) async fn wait_for_room(&self, deadline: tokio::time::Instant) -> bool {
        let notified = self.room.notified();
        self.room_waiters.set(self.room_waiters.get() + 1);
        let woke = tokio::time::timeout_at(deadline, notified).await.is_ok();
        self.room_waiters.set(self.room_waiters.get() - 1);
        woke
    }

    /// This worker's process-wide counters.
    pub(crate) fn counters(&self) -> Option<&WorkerCounters> {
        self.shared.metrics.worker.get(self.id)
    }

    /// Picks an endpoint of `upstream` for a request running on `snap`,
    /// skipping the endpoints the health checker marked down (one relaxed
    /// load per candidate; upstreams without a health check load nothing).
    /// `key` is the hash of the request's key for a `ring` or `maglev`
    /// upstream (`None`: no key, the fallback balancer picks). When every
    /// endpoint is down: all of them if the check fails open, else
    /// `NoHealthyEndpoint`.
    pub(crate) fn pick(
        &self,
        snap: &Snapshot,
        upstream: usize,
        key: Option<u64>,
    ) -> Result<usize, crate::data::error::ProxyError> {
        use crate::data::error::ProxyError;
        let Some(spec) = snap.upstreams.get(upstream) else {
            return Err(ProxyError::NoEndpoint);
        };
        if spec.endpoints.is_empty() {
            return Err(ProxyError::NoEndpoint);
        }
        if spec.health_check.is_none() && spec.outlier.is_none() {
            return self
                .choose(snap, upstream, spec, key, |_| true)
                .ok_or(ProxyError::NoEndpoint);
        }
        let health = snap
            .stats
            .endpoints
            .get(upstream)
            .map_or(&[][..], |h| &h[..]);
        // Statistics are attached to every published snapshot; an endpoint
        // without them (none) counts as healthy. An endpoint ejected by
        // outlier detection is out until its time is up (by this worker's
        // coarse clock, at most one housekeeping tick late).
        let now_ms = self.now_ms.get();
        let healthy = |i: usize| {
            health
                .get(i)
                .map_or(true, |e| e.health.0.is_healthy() && !e.is_ejected(now_ms))
        };
        match self.choose(snap, upstream, spec, key, healthy) {
            Some(i) => Ok(i),
            None if spec.health_check.as_ref().is_some_and(|c| c.fail_open) => self
                .choose(snap, upstream, spec, key, |_| true)
                .ok_or(ProxyError::NoEndpoint),
            None => Err(ProxyError::NoHealthyEndpoint),
        }
    }

    /// One pick: by the snapshot's hash table when the request has a key,
    /// else by this worker's balancer state (rebuilt, carrying over what
    /// it can, when the snapshot is newer than the state).
    #[inline]
    fn choose(
        &self,
        snap: &Snapshot,
        upstream: usize,
        spec: &crate::upstream::UpstreamSpec,
        key: Option<u64>,
        healthy: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if let (Some(hash), Some(key)) = (&spec.hash, key) {
            return hash.table.pick(key, healthy);
        }
        let mut b = self.balancers.borrow_mut();
        if b.generation < snap.generation {
            let fresh = Balancers::build(snap, self.id, Some(&b));
            *b = fresh;
        }
        // This worker's own shard: a relaxed load of a line only it writes.
        let in_flight = |i: usize| {
            snap.stats
                .endpoint((upstream, i), self.id)
                .map_or(0, |e| e.in_flight.get().max(0) as u64)
        };
        b.pick(
            snap.generation,
            upstream,
            &spec.endpoints,
            healthy,
            in_flight,
        )
    }

    /// Feeds the latency `rtt` of a request to endpoint `index` of
    /// `upstream`, answered at `now`, to the worker's balancer (only
    /// `peak_ewma` keeps it). A request that ran on an older snapshot than
    /// the balancer state is not counted (rare: around a reload).
    pub(crate) fn observe(
        &self,
        snap: &Snapshot,
        upstream: usize,
        index: usize,
        rtt: Duration,
        now: Instant,
    ) {
        let mut b = self.balancers.borrow_mut();
        if b.generation == snap.generation {
            if let Some(state) = b.states.get_mut(upstream) {
                state.observe(index, rtt, now);
            }
        }
    }

    /// A new request id: 32 hex digits, unique per process (worker seed and
    /// counter), written into the worker's slab (no allocation per id).
    pub(crate) fn new_request_id(&self) -> HeaderValue {
        let n = self.id_counter.get().wrapping_add(1);
        self.id_counter.set(n);
        let low = splitmix64(self.id_seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut buf = [0u8; 32];
        hex_u64(self.id_seed, &mut buf[..16]);
        hex_u64(low, &mut buf[16..]);
        self.slab_value(&[&buf])
    }

    /// A header value made of `parts`, carved out of the worker's slab: one
    /// allocation per slab chunk instead of one per value.
    pub(crate) fn slab_value(&self, parts: &[&[u8]]) -> HeaderValue {
        HeaderValue::from_maybe_shared(self.slab_bytes(parts))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The concatenation of `parts` as `Bytes` carved out of the slab.
    pub(crate) fn slab_bytes(&self, parts: &[&[u8]]) -> Bytes {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut slab = self.slab.borrow_mut();
        if slab.capacity() - slab.len() < len {
            *slab = BytesMut::with_capacity(SLAB_CHUNK.max(len));
        }
        for p in parts {
            slab.extend_from_slice(p);
        }
        slab.split().freeze()
    }

    /// The wall-clock time of a monotonic instant (for log timestamps).
    pub(crate) fn wall_clock_at(&self, t: Instant) -> SystemTime {
        let (base_i, base_s) = self.clock_base;
        match t.checked_duration_since(base_i) {
            Some(d) => base_s + d,
            None => base_s - base_i.duration_since(t),
        }
    }

    pub(crate) fn take_log_buf(&self) -> Vec<u8> {
        self.log_free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(256))
    }

    /// Makes sure this worker has a buffer for `sink` and returns its key. The
    /// `Arc` is cloned only the first time a worker sees a sink, so logging a
    /// request never writes the sink's shared refcount.
    pub(crate) fn register_sink(&self, sink: &Arc<Sink>) -> usize {
        let key = Arc::as_ptr(sink) as usize;
        let mut sinks = self.log_sinks.borrow_mut();
        if !sinks.iter().any(|s| s.key == key) {
            sinks.push(LocalSink {
                key,
                sink: sink.clone(),
                buf: Vec::with_capacity(LOG_BATCH),
            });
        }
        key
    }

    /// Queues one finished log line for the sink registered under `key`; full
    /// batches go to the writer. A line for a sink removed meanwhile (by a
    /// reload) is dropped.
    pub(crate) fn write_log(&self, key: usize, mut line: Vec<u8>) {
        let mut sinks = self.log_sinks.borrow_mut();
        if let Some(local) = sinks.iter_mut().find(|s| s.key == key) {
            local.buf.extend_from_slice(&line);
            if local.buf.len() >= LOG_BATCH {
                let full = std::mem::replace(&mut local.buf, Vec::with_capacity(LOG_BATCH));
                local.sink.submit(full);
            }
        }
        drop(sinks);
        line.clear();
        let mut free = self.log_free.borrow_mut();
        if free.len() < LOG_FREE_MAX {
            free.push(line);
        }
    }

    /// Hands every non-empty log buffer to its writer.
    fn flush_logs(&self) {
        let mut sinks = self.log_sinks.borrow_mut();
        for local in sinks.iter_mut() {
            if !local.buf.is_empty() {
                let full = std::mem::take(&mut local.buf);
                local.sink.submit(full);
            }
        }
        // Sinks dropped from the configuration are forgotten once flushed.
        sinks.retain(|s| Arc::strong_count(&s.sink) > 1);
    }
}

/// Counts one request in flight, for the drain on shutdown. It lives in the
/// handler and then, inside a [`RequestGuard`], in the response body, so a
/// streamed response counts until its last byte. Kept per request, not per
/// connection: idle connections then carry nothing for the drain (their memory
/// is the idle-connection cost). One pointer: it sits in the request's future
/// across every await, and hyper keeps that future allocated per connection.
pub(crate) struct InFlight(Rc<WorkerLocal>);

impl WorkerLocal {
    pub(crate) fn request_started(self: &Rc<Self>) -> InFlight {
        self.in_flight.set(self.in_flight.get() + 1);
        InFlight(self.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let left = self.0.in_flight.get() - 1;
        self.0.in_flight.set(left);
        if left == 0 {
            self.0.all_done.notify_waiters();
        }
    }
}

/// A request whose answer is known, moved into its response body: counted in
/// flight until the body ends, and then into its route's metrics. Built after
/// the last await of the handler, so its size never adds to the future's.
pub(crate) struct RequestGuard {
    outcome: Option<Outcome>,
    // Dropped after `Drop::drop` has counted the outcome.
    in_flight: InFlight,
}

/// What a request counts into when it ends.
struct Outcome {
    snapshot: SnapshotRef,
    ids: StatIds,
    status: u16,
    started: Instant,
    bytes_out: u64,
}

impl InFlight {
    /// The request was answered with `status`; unless it matched no route,
    /// it counts into `snapshot`'s statistics when its body ends.
    pub(crate) fn answered(
        self,
        snapshot: SnapshotRef,
        ids: StatIds,
        status: u16,
        started: Instant,
    ) -> RequestGuard {
        RequestGuard {
            outcome: ids.route().is_some().then_some(Outcome {
                snapshot,
                ids,
                status,
                started,
                bytes_out: 0,
            }),
            in_flight: self,
        }
    }
}

impl RequestGuard {
    /// The response body bytes sent.
    pub(crate) fn set_bytes_out(&mut self, bytes: u64) {
        if let Some(o) = &mut self.outcome {
            o.bytes_out = bytes;
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Some(o) = self.outcome.take() {
            o.snapshot.stats.request_done(
                self.in_flight.0.id,
                o.ids,
                o.status,
                o.started.elapsed(),
                o.bytes_out,
            );
        }
    }
}

impl Balancers {
    /// The states for `snap`. With `previous` (this worker's states for an
    /// older snapshot), an upstream of the same name and algorithm keeps
    /// what it learnt: see [`Balancer::carry_over`].
    fn build(snap: &Snapshot, seed: usize, previous: Option<&Balancers>) -> Self {
        let states = snap
            .upstreams
            .iter()
            .map(|u| {
                // A hashed upstream's state is its fallback's.
                let kind = u.hash.as_ref().map_or(u.balance, |h| h.fallback.kind());
                let mut state = Balancer::new(kind, &u.endpoints, seed);
                let old = previous.and_then(|p| {
                    let j = p.shapes.iter().position(|(name, _)| **name == *u.name)?;
                    Some((p.states.get(j)?, &p.shapes[j].1))
                });
                if let Some((old, addrs)) = old {
                    state.carry_over(old, addrs, &u.endpoints);
                }
                state
            })
            .collect();
        Balancers {
            generation: snap.generation,
            states,
            shapes: snap
                .upstreams
                .iter()
                .map(|u| (u.name.clone(), u.endpoints.iter().map(|e| e.addr).collect()))
                .collect(),
            fallback: previous.map_or_else(
                || crate::balance::RoundRobin::new(seed),
                |p| p.fallback.clone(),
            ),
        }
    }

    /// The pick among the (non-empty) `endpoints` of `upstream` that
    /// `healthy` accepts: by the upstream's balancer, or, for a request still
    /// on a snapshot older than these states, by a plain rotation.
    #[inline]
    fn pick(
        &mut self,
        generation: u64,
        upstream: usize,
        endpoints: &[crate::upstream::EndpointSpec],
        healthy: impl Fn(usize) -> bool,
        in_flight: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        match self.states.get_mut(upstream) {
            Some(state) if self.generation == generation => {
                state.pick(endpoints, healthy, in_flight)
            }
            _ => self.fallback.pick(endpoints.len(), healthy),
        }
    }
}

/// Lowercase hex of `v` into 16 bytes (`write!` costs ~10x more per id).
fn hex_u64(v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().take(16).enumerate() {
        *byte = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs hyper's per-stream (HTTP/2) tasks on this worker's local set, so
/// request futures need not be `Send`.
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

/// Code run on each worker thread before it starts serving.
pub(crate) type StartHook = Arc<dyn Fn(usize) + Send + Sync>;

/// What the control plane asks of a running worker.
pub(crate) enum WorkerCommand {
    /// Accept on this socket (its listener, by configured address, was added
    /// by a reload).
    Listen(SocketAddr, std::net::TcpListener),
    /// Stop accepting on the listener with this configured address; its open
    /// connections carry on.
    Close(SocketAddr),
}

/// Starts worker `id` on its own thread, serving `listeners` (already bound,
/// each with its configured address) and obeying `commands`.
pub(crate) fn spawn(
    id: usize,
    shared: Arc<Shared>,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    commands: mpsc::UnboundedReceiver<WorkerCommand>,
    hook: Option<StartHook>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("strait-worker-{id}"))
        .spawn(move || {
            if let Some(hook) = hook {
                hook(id);
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(worker = id, error = %e, "cannot start the worker's runtime");
                    return;
                }
            };
            let tasks = tokio::task::LocalSet::new();
            tasks.block_on(&runtime, run(id, shared, listeners, commands));
        })
}

async fn run(
    id: usize,
    shared: Arc<Shared>,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    mut commands: mpsc::UnboundedReceiver<WorkerCommand>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let local = WorkerLocal::new(id, shared);
    // The accept loops by configured address, each with its stop signal.
    let mut accepting: HashMap<SocketAddr, Rc<Notify>> = HashMap::new();
    for (spec, std_listener) in listeners {
        listen(&local, &mut accepting, spec, std_listener, &shutdown);
    }
    tokio::task::spawn_local(housekeeping(local.clone()));
    // Until the control plane says stop.
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(command) = commands.recv() => match command {
                WorkerCommand::Listen(spec, socket) => {
                    listen(&local, &mut accepting, spec, socket, &shutdown);
                }
                WorkerCommand::Close(spec) => {
                    if let Some(stop) = accepting.remove(&spec) {
                        stop.notify_one();
                    }
                }
            },
        }
    }
    // Drain: the accept loops have stopped; the worker waits for the requests
    // in flight to end (up to the drain timeout), then returns, which closes
    // every connection, idle keep-alive ones included.
    let drain_timeout = local.snapshot().server.drain_timeout;
    let all_done = async {
        loop {
            let done = local.all_done.notified();
            if local.in_flight.get() == 0 {
                break;
            }
            done.await;
        }
    };
    let drained = tokio::time::timeout(drain_timeout, all_done).await.is_ok();
    // Tunnels are not requests in flight: each closed itself in order (a FIN
    // to both peers) when the shutdown started; wait, briefly, for that.
    crate::data::tunnel::closed(&local).await;
    if drained {
        // The last body was handed to hyper; give its connection task a
        // moment to write it out before the connections are dropped.
        tokio::time::sleep(Duration::from_millis(50)).await;
    } else {
        tracing::warn!(
            worker = id,
            in_flight = local.in_flight.get(),
            "drain timeout reached: closing the remaining connections"
        );
    }
    local.flush_logs();
}

/// Starts accepting on `socket`, the listener configured at `spec`.
fn listen(
    local: &Rc<WorkerLocal>,
    accepting: &mut HashMap<SocketAddr, Rc<Notify>>,
    spec: SocketAddr,
    socket: std::net::TcpListener,
    shutdown: &watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(worker = local.id, error = %e, "cannot register a listener");
            return;
        }
    };
    let stop = Rc::new(Notify::new());
    if let Some(previous) = accepting.insert(spec, stop.clone()) {
        previous.notify_one();
    }
    tokio::task::spawn_local(accept_loop(
        local.clone(),
        spec,
        listener,
        stop,
        shutdown.clone(),
    ));
}

/// Accepts on the listener configured at `spec`. Whether a connection is TLS
/// (and with which certificates) is looked up in the current snapshot for
/// each connection, so a reload that keeps the address bound still changes
/// them for new connections.
async fn accept_loop(
    local: Rc<WorkerLocal>,
    spec: SocketAddr,
    listener: TcpListener,
    stop: Rc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
            // Dropping the listener closes the socket.
            () = stop.notified() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(worker = local.id, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let protocols = local.protocols();
        match protocols.tls_index(spec) {
            None => {
                tokio::task::spawn_local(connection::serve(local.clone(), protocols, stream, peer));
            }
            Some(index) => {
                tokio::task::spawn_local(connection::serve_tls(
                    local.clone(),
                    protocols,
                    index,
                    stream,
                    peer,
                ));
            }
        }
    }
}

/// Periodic per-worker chores: close expired idle upstream connections and
/// hand buffered log lines to the writer.
async fn housekeeping(local: Rc<WorkerLocal>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        local.now_ms.set(crate::upstream::outlier::unix_ms());
        local.flush_logs();
        n += 1;
        if n % 5 == 0 {
            local.pool.sweep();
        }
    }
}
