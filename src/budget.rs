//! One memory budget for all the bytes all connections of a service buffer
//! together: read buffers, messages being reassembled or inflated,
//! read-ahead, unsent output, and [`Hub`](crate::handler::Hub) send queues.
//!
//! Each connection keeps an [`Account`]: what it holds is charged to the
//! shared total when it waits for I/O (and after every read), in whole 4 KiB
//! granules rounded down, with hysteresis, so a busy connection touches the
//! shared counter only when its buffers really grow or shrink, and one that
//! exchanges small messages never does.
//!
//! A large frame (64 KiB or more still to come) is admitted whole: its
//! declared length is reserved before its payload is read, and only if it
//! fits; otherwise that connection waits (TCP backpressure) until another
//! message completes. Admitted frames always finish, so many large
//! messages arriving at once go through in turn instead of all holding a
//! part and none completing.
//!
//! While the total is at the limit (or a reservation found no room above
//! seven eighths of it):
//!
//! - new handshakes are refused with `503` and `Retry-After`;
//! - connections stop reading (the peers feel TCP backpressure), except to
//!   finish frames already admitted, until the total falls below seven
//!   eighths of the limit;
//! - if that lasts the grace period, the connections that have held 64 KiB
//!   or more of unsent output with nothing written to them for the whole
//!   grace period (peers that do not read) are closed with the budget's
//!   code, most first, until what they hold brings the total below seven
//!   eighths; again every grace period while the pressure lasts. Readers
//!   that read, even slowly, are never closed for the budget (a hub's
//!   queue bound deals with slow ones).

use std::pin::Pin;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use tokio::sync::{Notify, futures::OwnedNotified};

use crate::message::{CloseCode, Message, Utf8Bytes};

/// Bytes are charged in granules of this size.
const GRANULE: usize = 4 << 10;

/// Unsent output a connection must hold for the whole grace period to be
/// closed for the budget.
const MIN_VICTIM: usize = 64 << 10;

/// Frames with at least this much payload still to come are admitted whole.
pub(crate) const RESERVE_MIN: usize = 64 << 10;

/// A limit on the memory all connections of a
/// [`WebSocketService`](crate::WebSocketService) buffer together; set it
/// with [`WebSocketService::memory_budget`](crate::WebSocketService::memory_budget).
///
/// ```
/// use std::time::Duration;
/// use tower_ws::{CloseCode, MemoryBudget};
///
/// let budget = MemoryBudget::new(512 << 20)
///     .grace_period(Duration::from_secs(2))
///     .close_code(CloseCode::TRY_AGAIN_LATER);
/// assert_eq!(budget.get_limit(), 512 << 20);
/// ```
///
/// What counts: read buffers, messages being reassembled or inflated,
/// messages parsed ahead of the application, unsent output, and the send
/// queues of a [`Hub`](crate::handler::Hub), each per connection (a
/// broadcast payload shared by many connections counts once for each, so
/// the total is an upper bound). What does not: messages the application
/// holds, compression state, and the fixed cost of each connection (its
/// task, socket and buffers' bookkeeping, a few KiB). Each connection's
/// share is tracked to within about 16 KiB: the first 4 KiB each side
/// holds, and while the application handles a message, a read buffer of
/// the configured read size (8 KiB by default), are not charged, so that
/// small messages never touch the counter all threads share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    limit: usize,
    grace: Duration,
    close_code: CloseCode,
}

impl MemoryBudget {
    /// A budget of `bytes` for all connections together.
    pub fn new(bytes: usize) -> Self {
        MemoryBudget {
            limit: bytes.max(GRANULE),
            grace: Duration::from_secs(2),
            close_code: CloseCode::TRY_AGAIN_LATER,
        }
    }

    /// How long the budget may stay exhausted before connections are
    /// closed to free memory (and then the pause between two rounds of
    /// closes). Short bursts only pause reading.
    ///
    /// Default is 2 seconds.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The close code of connections closed to free memory: 1013 (Try
    /// Again Later) tells clients to reconnect later, 1008 (Policy
    /// Violation) that they were too slow.
    ///
    /// Default is 1013.
    pub fn close_code(mut self, code: impl Into<CloseCode>) -> Self {
        self.close_code = code.into();
        self
    }

    /// The limit in bytes.
    pub fn get_limit(&self) -> usize {
        self.limit
    }

    /// The grace period.
    pub fn get_grace_period(&self) -> Duration {
        self.grace
    }
}

/// The shared state of one service's budget (limitless by default, to
/// count buffered bytes all the same).
#[derive(Debug)]
pub(crate) struct Budget {
    settings: Option<MemoryBudget>,
    /// Where a limit is, and where reading resumes.
    limit: usize,
    low_water: usize,
    used: AtomicUsize,
    exhausted: AtomicBool,
    /// Readers paused by the budget wait on it.
    room: Arc<Notify>,
    /// One more than the total at or below which a large frame refused
    /// for lack of room would fit (0: none waits): a release that brings
    /// the total there wakes the paused readers, however small it is.
    wake_below: AtomicUsize,
    holders: Mutex<Registry>,
    reaper_running: AtomicBool,
    closes: AtomicU64,
    /// The start of the clock `Holder::stuck_since` is read on.
    epoch: Instant,
}

/// The connections a limited budget may close, in slots reused as they
/// come and go.
#[derive(Debug, Default)]
struct Registry {
    slots: Vec<Option<Arc<Holder>>>,
    free: Vec<usize>,
}

/// One connection's charges, readable by the reaper.
#[derive(Debug, Default)]
pub(crate) struct Holder {
    input: AtomicUsize,
    output: AtomicUsize,
    queued: AtomicUsize,
    /// Milliseconds after the epoch since when the unsent output has been
    /// at least `MIN_VICTIM` and nothing was written; 0 when it is not.
    stuck_since: AtomicU64,
    /// Milliseconds after the epoch since when reading has been paused by
    /// the budget; 0 when it is not.
    paused_since: AtomicU64,
    evicted: AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(None)
    }
}

impl Budget {
    pub(crate) fn new(settings: Option<MemoryBudget>) -> Self {
        let limit = settings.as_ref().map_or(usize::MAX, |s| s.limit);
        Budget {
            limit,
            low_water: limit - limit / 8,
            settings,
            used: AtomicUsize::new(0),
            exhausted: AtomicBool::new(false),
            room: Arc::new(Notify::new()),
            wake_below: AtomicUsize::new(0),
            holders: Mutex::default(),
            reaper_running: AtomicBool::new(false),
            closes: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the epoch, at least 1.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    pub(crate) fn limit(&self) -> Option<usize> {
        self.settings.as_ref().map(|s| s.limit)
    }

    pub(crate) fn closes(&self) -> u64 {
        self.closes.load(Relaxed)
    }

    /// Whether the budget is exhausted: handshakes are refused and reading
    /// pauses until the total is below the low-water mark.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.exhausted.load(Relaxed)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.holders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn charge(self: &Arc<Self>, bytes: usize) {
        let used = self.used.fetch_add(bytes, Relaxed) + bytes;
        if used >= self.limit {
            self.exhaust();
        }
    }

    /// Charges `bytes` only if they fit (or the budget is nearly empty, so
    /// a message larger than the whole budget still gets through alone).
    fn try_charge(self: &Arc<Self>, bytes: usize) -> bool {
        let fits = |used: usize| used + bytes <= self.limit || used <= self.limit / 8;
        loop {
            if self
                .used
                .fetch_update(SeqCst, Relaxed, |used| fits(used).then_some(used + bytes))
                .is_ok()
            {
                return true;
            }
            // Refused: the releases that make room for it wake its reader.
            // A release between the check above and the mark is seen here
            // (both sides are sequentially consistent).
            let mark = self.limit.saturating_sub(bytes).max(self.limit / 8);
            self.wake_below.fetch_max(mark + 1, SeqCst);
            if !fits(self.used.load(SeqCst)) {
                break;
            }
        }
        if self.used() >= self.low_water {
            self.exhaust();
        }
        false
    }

    fn exhaust(self: &Arc<Self>) {
        if !self.exhausted.load(Relaxed) && !self.exhausted.swap(true, Relaxed) {
            #[cfg(feature = "tracing")]
            tracing::warn!(
                used = self.used(),
                limit = self.limit,
                "memory budget exhausted: refusing handshakes and pausing reads"
            );
            self.start_reaper();
        }
    }

    fn release(&self, bytes: usize) {
        let used = self.used.fetch_sub(bytes, SeqCst) - bytes;
        if used < self.low_water && self.exhausted.load(Relaxed) {
            self.recovered();
            return;
        }
        // Room for a large frame waiting to be admitted: a large release
        // may have made it, and releases of any size that bring the total
        // to where a refused frame fits did (memory freed a few KiB at a
        // time, as a slow peer drains its output, must wake it too).
        let mark = self.wake_below.load(SeqCst);
        let room_made = mark != 0 && used < mark;
        if room_made {
            // Only the mark seen: a frame refused since set a new one.
            let _ = self.wake_below.compare_exchange(mark, 0, SeqCst, Relaxed);
        }
        if room_made || bytes >= RESERVE_MIN {
            self.room.notify_waiters();
        }
    }

    /// Below the low-water mark: paused readers go on.
    fn recovered(&self) {
        if self.exhausted.swap(false, Relaxed) {
            self.room.notify_waiters();
            #[cfg(feature = "tracing")]
            tracing::info!(used = self.used(), "memory budget recovered: reading again");
        }
    }

    /// Starts the task that closes connections if the pressure lasts.
    fn start_reaper(self: &Arc<Self>) {
        let Some(settings) = &self.settings else {
            return;
        };
        if self.reaper_running.swap(true, Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaper_running.store(false, Relaxed);
            return;
        };
        runtime.spawn(reap(self.clone(), settings.grace));
    }

    fn register(&self, holder: Arc<Holder>) -> usize {
        let mut registry = self.registry();
        match registry.free.pop() {
            Some(slot) => {
                registry.slots[slot] = Some(holder);
                slot
            }
            None => {
                registry.slots.push(Some(holder));
                registry.slots.len() - 1
            }
        }
    }

    fn deregister(&self, slot: usize) {
        let mut registry = self.registry();
        registry.slots[slot] = None;
        registry.free.push(slot);
    }

    /// Closes the connections that held unsent output for the whole grace
    /// period, most first, until what they hold would bring the total below
    /// the low-water mark; returns how many.
    fn close_biggest(&self) -> usize {
        let Some(settings) = &self.settings else {
            return 0;
        };
        let mut need = self.used().saturating_sub(self.low_water);
        let stuck_before = self
            .now_ms()
            .saturating_sub(settings.grace.as_millis() as u64);
        let mut candidates: Vec<(usize, usize, Arc<Holder>)> = self
            .registry()
            .slots
            .iter()
            .flatten()
            .filter(|h| {
                let since = h.stuck_since.load(Relaxed);
                !h.evicted.load(Relaxed) && since != 0 && since <= stuck_before
            })
            .map(|h| {
                let output = h.output.load(Relaxed) + h.queued.load(Relaxed);
                (output, h.input.load(Relaxed), h.clone())
            })
            .collect();
        if candidates.is_empty() {
            // Exhausted for a whole grace period, and no connection holds
            // stuck output. If what holds the memory is input that cannot
            // be finished while reading is paused (a message in many
            // frames, never admitted whole as a large frame is), the
            // budget would never recover without closing its holders:
            // every reader paused, every handshake refused. So the readers
            // paused for the whole grace period go, most input first, if
            // together they hold what must be freed. (An admitted frame
            // reads on and is never paused; memory held by output that
            // moves, however slowly, closes nobody.)
            let paused: Vec<(usize, usize, Arc<Holder>)> = self
                .registry()
                .slots
                .iter()
                .flatten()
                .filter(|h| {
                    let since = h.paused_since.load(Relaxed);
                    !h.evicted.load(Relaxed) && since != 0 && since <= stuck_before
                })
                .map(|h| (h.input.load(Relaxed), 0, h.clone()))
                .collect();
            if paused.iter().map(|c| c.0).sum::<usize>() >= need {
                candidates = paused;
            }
        }
        candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        let mut closed = 0;
        for (output, input, holder) in &candidates {
            if need == 0 {
                break;
            }
            holder.evict();
            need = need.saturating_sub(output + input);
            closed += 1;
        }
        self.closes.fetch_add(closed as u64, Relaxed);
        #[cfg(feature = "tracing")]
        if closed > 0 {
            tracing::warn!(
                closed,
                used = self.used(),
                limit = self.limit,
                code = settings.close_code.as_u16(),
                "memory budget exhausted past the grace period: closing the connections that hold the most"
            );
        }
        let _ = settings;
        closed
    }
}

impl Holder {
    fn evict(&self) {
        self.evicted.store(true, Relaxed);
        self.reader.wake();
        self.writer.wake();
    }
}

/// While the budget stays exhausted: after each grace period, close the
/// biggest holders. Ends when the total is below the low-water mark.
async fn reap(budget: Arc<Budget>, grace: Duration) {
    let tick = (grace / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    let mut next_round = tokio::time::Instant::now() + grace;
    loop {
        tokio::time::sleep(tick).await;
        if budget.used() < budget.low_water {
            budget.recovered();
            budget.reaper_running.store(false, Relaxed);
            // Exhausted again meanwhile, and no other reaper took over.
            if !budget.is_exhausted() || budget.reaper_running.swap(true, Relaxed) {
                return;
            }
            next_round = tokio::time::Instant::now() + grace;
            continue;
        }
        if budget.is_exhausted() && tokio::time::Instant::now() >= next_round {
            budget.close_biggest();
            next_round = tokio::time::Instant::now() + grace;
        }
    }
}

/// One connection's account with its service's budget.
#[derive(Debug, Default)]
pub(crate) struct Account {
    budget: Option<Arc<Budget>>,
    /// Made when the budget has a limit (the registry lists it), when
    /// something is charged, or for a hub's queue: an idle connection
    /// under a budget without a limit has none (a hundred bytes less).
    holder: Option<Arc<Holder>>,
    /// The registry slot, when the budget has a limit.
    slot: Option<u32>,
    /// Waiting for room to read.
    waiting: Option<Pin<Box<OwnedNotified>>>,
    /// Bytes written to the transport as of the last sync.
    written: u64,
    /// The admitted large frame ends when this many bytes were received.
    admitted_end: u64,
}

impl Account {
    pub(crate) fn attach(&mut self, budget: &Arc<Budget>) {
        if budget.settings.is_some() {
            let holder = self.holder.get_or_insert_default();
            let slot = budget.register(holder.clone());
            self.slot = Some(u32::try_from(slot).expect("fewer than 2^32 connections"));
        }
        self.budget = Some(budget.clone());
    }

    /// Charges what the connection holds now: `input` (read buffer,
    /// reassembly, read-ahead, and the rest of an admitted large frame)
    /// and `output` (unsent frames); `written` is every byte written to the
    /// transport so far, to tell a slow reader from one that reads nothing.
    pub(crate) fn sync(&mut self, input: usize, output: usize, written: u64) {
        let Some(budget) = &self.budget else {
            return;
        };
        let holder = match &self.holder {
            Some(holder) => holder,
            // Less than a granule a side is not charged: nothing to hold.
            None if input < GRANULE && output < GRANULE => return,
            None => self.holder.insert(Arc::default()),
        };
        resync(budget, &holder.input, input);
        resync(budget, &holder.output, output);
        if self.slot.is_some() {
            // Stuck: holding unsent output with nothing written since.
            let stuck = &holder.stuck_since;
            if output < MIN_VICTIM {
                if stuck.load(Relaxed) != 0 {
                    stuck.store(0, Relaxed);
                }
            } else if written != self.written || stuck.load(Relaxed) == 0 {
                stuck.store(budget.now_ms(), Relaxed);
            }
            self.written = written;
        }
    }

    /// Whether anything is charged to this connection (or it is marked as
    /// stuck): a connection with nothing charged that holds less than a
    /// granule per side has nothing to sync.
    #[inline]
    pub(crate) fn has_charges(&self) -> bool {
        self.budget.is_some()
            && self.holder.as_ref().is_some_and(|h| {
                (h.input.load(Relaxed) | h.output.load(Relaxed)) != 0
                    || h.stuck_since.load(Relaxed) != 0
            })
    }

    /// Whether reading may go on; if not, `cx` is woken when there is room.
    ///
    /// `input` is what the connection holds on the input side, with the
    /// rest of the frame being received when that rest, `remaining`, is
    /// large: a large frame is admitted (that input reserved) only if it
    /// fits, and once admitted it is read to its end (`received` counts
    /// the bytes received so far) even while the budget is exhausted.
    pub(crate) fn poll_read_permit(
        &mut self,
        cx: &mut Context<'_>,
        input: usize,
        remaining: usize,
        received: u64,
    ) -> Poll<()> {
        // The rest of an admitted frame, however small, is read: holding it
        // back while the budget is exhausted would keep every admitted frame
        // from completing, and so the budget from ever recovering.
        if received < self.admitted_end {
            return Poll::Ready(());
        }
        let large_frame = remaining >= RESERVE_MIN;
        // A budget with a limit made the holder when it registered it.
        let (Some(budget), Some(holder)) = (
            self.budget.as_ref().filter(|b| b.settings.is_some()),
            &self.holder,
        ) else {
            return Poll::Ready(());
        };
        loop {
            if let Some(waiting) = &mut self.waiting {
                // Registered before the checks, so a wake-up in between is kept.
                waiting.as_mut().enable();
            }
            let may_read = if large_frame {
                let wanted = input.next_multiple_of(GRANULE);
                let charged = holder.input.load(Relaxed);
                let admitted = wanted <= charged || budget.try_charge(wanted - charged);
                if admitted {
                    holder.input.store(wanted.max(charged), Relaxed);
                    self.admitted_end = received + remaining as u64;
                }
                admitted
            } else {
                !budget.is_exhausted()
            };
            let paused_since = &holder.paused_since;
            if may_read {
                self.waiting = None;
                if paused_since.load(Relaxed) != 0 {
                    paused_since.store(0, Relaxed);
                }
                return Poll::Ready(());
            }
            if paused_since.load(Relaxed) == 0 {
                paused_since.store(budget.now_ms(), Relaxed);
            }
            match &mut self.waiting {
                None => self.waiting = Some(Box::pin(budget.room.clone().notified_owned())),
                Some(waiting) => match waiting.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => self.waiting = None,
                },
            }
        }
    }

    /// Whether large frames are admitted whole (the budget has a limit), so
    /// their whole payload may be allocated at once.
    pub(crate) fn admits_whole_frames(&self) -> bool {
        self.slot.is_some()
    }

    /// Reading is paused by the budget.
    pub(crate) fn is_paused(&self) -> bool {
        self.waiting.is_some()
    }

    /// The budget chose this connection to close.
    #[inline]
    pub(crate) fn is_evicted(&self) -> bool {
        // Only connections registered with a limited budget can be chosen.
        self.slot.is_some()
            && self
                .holder
                .as_ref()
                .is_some_and(|h| h.evicted.load(Relaxed))
    }

    /// The close code for a connection closed by the budget.
    pub(crate) fn close_code(&self) -> CloseCode {
        self.budget
            .as_ref()
            .and_then(|b| b.settings.as_ref())
            .map_or(CloseCode::TRY_AGAIN_LATER, |s| s.close_code)
    }

    /// Remembers who to wake when this connection is closed by the budget:
    /// the reading task or the writing one.
    pub(crate) fn register_waker(&self, cx: &Context<'_>, reader: bool) {
        if let (Some(_), Some(holder)) = (self.slot, &self.holder) {
            let slot = if reader {
                &holder.reader
            } else {
                &holder.writer
            };
            slot.register(cx.waker());
        }
    }

    /// The handle a [`Hub`](crate::handler::Hub) charges its send queue to.
    pub(crate) fn queue_charge(&mut self) -> QueueCharge {
        QueueCharge {
            budget: self.budget.clone(),
            holder: self.holder.get_or_insert_default().clone(),
        }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.sync(0, 0, self.written);
        if let (Some(budget), Some(slot)) = (&self.budget, self.slot) {
            budget.deregister(slot as usize);
        }
    }
}

/// Charges `actual` bytes held, in whole granules rounded down: up when it
/// grows past the charge by a granule, down when it shrinks by two granules
/// or more or to nothing (so a buffer that breathes a little costs no
/// shared-counter update). Rounding down leaves the first granule of each
/// side uncharged, as for [`QueueCharge`]: small messages never touch the
/// counter all threads share.
fn resync(budget: &Arc<Budget>, charged: &AtomicUsize, actual: usize) {
    let old = charged.load(Relaxed);
    let new = actual / GRANULE * GRANULE;
    let grew = new > old;
    let shrank = actual + 2 * GRANULE <= old || (actual == 0 && old > 0);
    if !grew && !shrank {
        return;
    }
    // Only the connection's own task writes its input and output charges.
    charged.store(new, Relaxed);
    if new > old {
        budget.charge(new - old);
    } else {
        budget.release(old - new);
    }
}

/// Charges the messages waiting in a [`Hub`](crate::handler::Hub) client's
/// queue to its connection: added by whoever sends, removed by the
/// connection as it takes them. Exact per connection; the shared total
/// moves in whole granules (rounded down, so at most one granule per
/// connection goes uncounted and small messages never touch it).
#[derive(Clone, Debug, Default)]
pub(crate) struct QueueCharge {
    budget: Option<Arc<Budget>>,
    holder: Arc<Holder>,
}

/// What a queued message costs besides its payload: its slot in the queue.
const QUEUE_SLOT: usize = std::mem::size_of::<(Message, usize)>();

impl QueueCharge {
    /// What queueing `msg` costs: its slot, and its payload unless that is
    /// shared (a broadcast payload, counted once by [`share`](Self::share)).
    pub(crate) fn cost(msg: &Message, shared: bool) -> usize {
        QUEUE_SLOT + if shared { 0 } else { msg.len() }
    }

    /// Makes `msg` a broadcast whose payload counts once in the budget, for
    /// as long as any queue or connection holds it.
    pub(crate) fn share(&self, msg: Message) -> Message {
        if self.budget.is_none() {
            return msg;
        }
        match msg {
            Message::Binary(data) => Message::Binary(self.share_bytes(data)),
            Message::Text(text) => Message::Text(Utf8Bytes::from_bytes_unchecked(
                self.share_bytes(text.into_bytes()),
            )),
            other => other,
        }
    }

    /// `bytes`, counted once in the budget for as long as anything holds
    /// them (a broadcast's payload or its encoded frame).
    pub(crate) fn share_bytes(&self, bytes: Bytes) -> Bytes {
        let Some(budget) = &self.budget else {
            return bytes;
        };
        budget.charge(bytes.len());
        Bytes::from_owner(SharedPayload {
            bytes,
            budget: budget.clone(),
        })
    }

    /// Charges `bytes` (a [`cost`](Self::cost)) to the connection.
    pub(crate) fn add(&self, bytes: usize) {
        let Some(budget) = &self.budget else {
            return;
        };
        let old = self.holder.queued.fetch_add(bytes, Relaxed);
        let granules = (old + bytes) / GRANULE - old / GRANULE;
        if granules > 0 {
            budget.charge(granules * GRANULE);
        }
    }

    /// Releases what [`add`](Self::add) charged.
    pub(crate) fn remove(&self, bytes: usize) {
        let Some(budget) = &self.budget else {
            return;
        };
        let old = self.holder.queued.fetch_sub(bytes, Relaxed);
        let granules = old / GRANULE - (old - bytes) / GRANULE;
        if granules > 0 {
            budget.release(granules * GRANULE);
        }
    }
}

/// A broadcast payload charged once to the budget; released when the last
/// connection lets go of it.
struct SharedPayload {
    bytes: Bytes,
    budget: Arc<Budget>,
}

impl AsRef<[u8]> for SharedPayload {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for SharedPayload {
    fn drop(&mut self) {
        self.budget.release(self.bytes.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(bytes: usize) -> Arc<Budget> {
        Arc::new(Budget::new(Some(MemoryBudget::new(bytes))))
    }

    /// An idle connection under a budget without a limit holds no holder
    /// (about a hundred bytes): it is made at the first charge.
    #[test]
    fn without_a_limit_the_holder_is_made_at_the_first_charge() {
        let budget = Arc::new(Budget::new(None));
        let mut account = Account::default();
        account.attach(&budget);
        account.sync(GRANULE - 1, GRANULE - 1, 0);
        assert!(account.holder.is_none(), "made for less than a granule");
        assert!(!account.has_charges());
        account.sync(GRANULE, 0, 0);
        assert!(account.holder.is_some());
        assert!(account.has_charges());
        assert_eq!(budget.used(), GRANULE);
        account.sync(0, 0, 0);
        assert_eq!(budget.used(), 0);
        // A limited budget lists every holder from the start.
        let mut listed = Account::default();
        listed.attach(&limited(1 << 30));
        assert!(listed.holder.is_some());
    }

    #[test]
    fn charges_move_in_granules_with_hysteresis() {
        let budget = limited(1 << 30);
        let mut account = Account::default();
        account.attach(&budget);
        account.sync(8192, 0, 0);
        assert_eq!(budget.used(), 8192);
        // A read buffer that shrinks a little as messages are split off.
        for len in (4000..8192).rev().step_by(100) {
            account.sync(len, 0, 0);
            assert_eq!(budget.used(), 8192);
        }
        // Less than a granule is not charged: small messages leave the
        // shared counter alone.
        account.sync(8193, 4095, 0);
        assert_eq!(budget.used(), 8192);
        account.sync(12288, 4096, 0);
        assert_eq!(budget.used(), 12288 + 4096);
        account.sync(0, 0, 0);
        assert_eq!(budget.used(), 0);
        account.sync(100_000, 50_000, 0);
        drop(account);
        assert_eq!(budget.used(), 0, "everything is released on drop");
    }

    #[test]
    fn queue_charges_telescope_to_exact_granules() {
        let budget = limited(1 << 30);
        let mut account = Account::default();
        account.attach(&budget);
        let queue = account.queue_charge();
        let msg = Message::binary(vec![0u8; 100]);
        let cost = QueueCharge::cost(&msg, false);
        assert_eq!(cost, 100 + QUEUE_SLOT);
        for _ in 0..1000 {
            queue.add(cost);
        }
        assert_eq!(budget.used(), 1000 * cost / GRANULE * GRANULE);
        for _ in 0..1000 {
            queue.remove(cost);
        }
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_broadcast_payload_counts_once_while_anyone_holds_it() {
        let budget = limited(1 << 30);
        let mut account = Account::default();
        account.attach(&budget);
        let queue = account.queue_charge();
        let msg = queue.share(Message::binary(vec![7u8; 100_000]));
        assert_eq!(budget.used(), 100_000);
        let copies: Vec<Message> = (0..50).map(|_| msg.clone()).collect();
        assert_eq!(QueueCharge::cost(&msg, true), QUEUE_SLOT);
        assert_eq!(budget.used(), 100_000, "not once per holder");
        drop(msg);
        drop(copies);
        assert_eq!(budget.used(), 0, "released with the last holder");
    }

    fn cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Relaxed);
        }
    }

    /// A large frame refused for lack of room is woken when the room is
    /// made, even a few KiB at a time (a slow peer draining its output):
    /// it once waited for a single release of 64 KiB, and hung.
    #[tokio::test]
    async fn a_refused_large_frame_is_woken_when_room_is_made_in_small_steps() {
        let budget = limited(1 << 20);
        let (mut a, mut b) = (Account::default(), Account::default());
        a.attach(&budget);
        b.attach(&budget);
        a.sync(0, 800 << 10, 0);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = std::task::Waker::from(flag.clone());
        let mut paused = Context::from_waker(&waker);
        assert!(
            b.poll_read_permit(&mut paused, 300 << 10, 300 << 10, 0)
                .is_pending()
        );
        let mut out = 800 << 10;
        while out > 0 && !flag.0.load(Relaxed) {
            out -= 8 << 10;
            a.sync(0, out, 0);
        }
        assert!(flag.0.load(Relaxed), "the paused reader was never woken");
        assert!(
            out >= 400 << 10,
            "woken only at {out} B held, not when the frame fit"
        );
        assert!(
            b.poll_read_permit(&mut cx(), 300 << 10, 300 << 10, 0)
                .is_ready()
        );
    }

    /// Memory held by output that moves, however slowly, closes nobody:
    /// not its holder, nor a reader paused meanwhile whose input could
    /// not free what is needed.
    #[tokio::test(start_paused = true)]
    async fn slow_output_closes_no_paused_reader() {
        let budget = limited(1 << 20);
        let (mut slow, mut bystander) = (Account::default(), Account::default());
        slow.attach(&budget);
        bystander.attach(&budget);
        bystander.sync(8 << 10, 0, 0);
        let mut written = 0;
        for _ in 0..60 {
            written += 4096;
            slow.sync(0, 1 << 20, written);
            let _ = bystander.poll_read_permit(&mut cx(), 8 << 10, 0, 0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(budget.is_exhausted());
        assert!(bystander.is_paused());
        assert!(!slow.is_evicted() && !bystander.is_evicted());
        assert_eq!(budget.closes(), 0);
    }

    /// A frame admitted whole reads to its end while the budget is
    /// exhausted, however slowly: it is never closed for the input it
    /// reserved.
    #[tokio::test(start_paused = true)]
    async fn an_admitted_frame_in_progress_is_not_closed() {
        let budget = limited(1 << 20);
        let (mut a, mut b) = (Account::default(), Account::default());
        a.attach(&budget);
        b.attach(&budget);
        assert!(
            a.poll_read_permit(&mut cx(), 900 << 10, 900 << 10, 0)
                .is_ready()
        );
        assert!(
            b.poll_read_permit(&mut cx(), 200 << 10, 200 << 10, 0)
                .is_pending()
        );
        assert!(budget.is_exhausted());
        let mut got = 0;
        for _ in 0..30 {
            got += 16 << 10;
            let rest = (900 << 10) - got;
            assert!(
                a.poll_read_permit(&mut cx(), 900 << 10, rest, got as u64)
                    .is_ready()
            );
            a.sync(900 << 10, 0, 0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            !a.is_evicted(),
            "a frame admitted whole and arriving was closed"
        );
    }

    /// Input that cannot finish while reading is paused (a message in
    /// many frames) and holds the budget exhausted past the grace period:
    /// its holder is closed, or the budget would never recover.
    #[tokio::test(start_paused = true)]
    async fn a_paused_reader_holding_the_budget_is_closed() {
        let budget = limited(1 << 20);
        let (mut a, mut b) = (Account::default(), Account::default());
        a.attach(&budget);
        b.attach(&budget);
        a.sync(1 << 20, 0, 0);
        assert!(budget.is_exhausted());
        assert!(a.poll_read_permit(&mut cx(), 1 << 20, 0, 0).is_pending());
        assert!(b.poll_read_permit(&mut cx(), 8 << 10, 0, 0).is_pending());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(a.is_evicted(), "the reader holding the budget stays");
        assert!(!b.is_evicted(), "only as many as needed are closed");
    }

    #[tokio::test]
    async fn exhaustion_pauses_readers_until_below_the_low_water_mark() {
        let budget = limited(1 << 20);
        let mut a = Account::default();
        a.attach(&budget);
        let mut b = Account::default();
        b.attach(&budget);
        assert!(b.poll_read_permit(&mut cx(), 0, 0, 0).is_ready());
        a.sync(1 << 20, 0, 0);
        assert!(budget.is_exhausted());
        assert!(b.poll_read_permit(&mut cx(), 0, 0, 0).is_pending());
        assert!(b.is_paused());
        // Below the limit but above seven eighths: still paused.
        a.sync((1 << 20) - (64 << 10), 0, 0);
        assert!(b.poll_read_permit(&mut cx(), 0, 0, 0).is_pending());
        a.sync(1 << 19, 0, 0);
        assert!(!budget.is_exhausted());
        assert!(b.poll_read_permit(&mut cx(), 0, 0, 0).is_ready());
        assert!(!b.is_paused());
    }

    #[tokio::test]
    async fn large_frames_are_admitted_whole_and_in_turn() {
        let budget = limited(1 << 20);
        let mut a = Account::default();
        a.attach(&budget);
        let mut b = Account::default();
        b.attach(&budget);
        // Two 600 KiB frames arrive at once: only one fits.
        assert!(
            a.poll_read_permit(&mut cx(), 600 << 10, 590 << 10, 0)
                .is_ready()
        );
        assert_eq!(budget.used(), 600 << 10);
        assert!(
            b.poll_read_permit(&mut cx(), 600 << 10, 590 << 10, 0)
                .is_pending()
        );
        // Small readers are not held up: 600 KiB is below seven eighths.
        assert!(!budget.is_exhausted());
        // The admitted frame is read to its end even if the budget fills.
        let mut c = Account::default();
        c.attach(&budget);
        c.sync(500 << 10, 0, 0);
        assert!(budget.is_exhausted());
        assert!(
            a.poll_read_permit(&mut cx(), 700 << 10, 300 << 10, 290 << 10)
                .is_ready()
        );
        // Its last bytes too, below the large-frame size.
        assert!(
            a.poll_read_permit(&mut cx(), 700 << 10, 10 << 10, 580 << 10)
                .is_ready()
        );
        c.sync(0, 0, 0);
        // Its message is delivered: the second frame gets its turn.
        a.sync(0, 0, 0);
        assert!(
            b.poll_read_permit(&mut cx(), 600 << 10, 590 << 10, 0)
                .is_ready()
        );
        assert_eq!(budget.used(), 600 << 10);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_grace_period_the_biggest_stuck_holders_are_closed() {
        let budget = limited(1 << 20);
        let mut accounts: Vec<Account> = (0..4).map(|_| Account::default()).collect();
        for a in &mut accounts {
            a.attach(&budget);
        }
        accounts[0].sync(0, 600 << 10, 0);
        accounts[1].sync(0, 300 << 10, 0);
        accounts[2].sync(200 << 10, 0, 0);
        accounts[3].sync(8 << 10, 8 << 10, 0);
        assert!(budget.is_exhausted());
        tokio::time::sleep(Duration::from_millis(1900)).await;
        assert!(
            accounts.iter().all(|a| !a.is_evicted()),
            "not before the grace period"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        // 1116 KiB used, low water 896 KiB: the biggest one is enough.
        let evicted: Vec<bool> = accounts.iter().map(Account::is_evicted).collect();
        assert_eq!(evicted, [true, false, false, false]);
        assert_eq!(budget.closes(), 1);
        // It lets go of its memory: the pressure ends.
        accounts[0].sync(0, 0, 0);
        assert!(!budget.is_exhausted());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_readers_are_not_closed_dead_ones_are() {
        let budget = limited(1 << 20);
        let mut hog = Account::default();
        hog.attach(&budget);
        hog.sync(1 << 20, 0, 0);
        let mut slow = Account::default();
        slow.attach(&budget);
        let mut dead = Account::default();
        dead.attach(&budget);
        dead.sync(0, 128 << 10, 1000);
        let mut written = 0;
        for _ in 0..30 {
            // Always behind, but some bytes go out between two waits.
            written += 4096;
            slow.sync(0, 256 << 10, written);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(budget.is_exhausted());
        assert!(!slow.is_evicted());
        assert!(dead.is_evicted());
        assert!(!hog.is_evicted(), "input is never a reason to close");
        assert_eq!(budget.closes(), 1);
    }
}
