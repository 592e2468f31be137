//! The process-wide memory budget for large frames (--max-buffered-bytes), and the memory
//! itself.
//!
//! A frame above the small-frame size is read only once budget for its whole length is held,
//! so what all connections hold together is bounded, and a pump without budget stops reading
//! (TCP backpressure), which never fails anything.
//!
//! **The budget owns the memory.** Budget held comes with the buffer the frame is read into
//! ([`Held::buf`]): an anonymous memory mapping of the frame's size class (at most an eighth
//! more than the frame, whole pages), not memory of the general allocator. When the frame has
//! left, the mapping goes back to the budget's pool and serves the next frame of its class
//! without a page fault or a system call; a pooled mapping that the budget needs for a frame
//! of another class is unmapped (its pages leave the process at once) before the new one is
//! mapped. So the memory of large frames is at most the budget, held and pooled together,
//! whatever the allocator does with freed memory and however long it keeps it, with no
//! environment variable (a frame larger than the whole budget is the one exception: it takes
//! all of the budget and a mapping of its own size, given back when it has left).
//!
//! **Charges without memory.** Bytes the proxy builds itself with the general allocator (its
//! own answers: ApiVersions and policy denials; responses rewritten with the proxy's addresses)
//! are charged to the same budget through [`Budget::charge`]: a [`Held`] without a mapping,
//! taken *before* the bytes are allocated and carried with them until they have been written
//! to the client. The allocator then holds them, so the budget bounds what they are (not which
//! pages the allocator keeps afterwards); the queue treats a charge exactly like a frame.
//!
//! Two properties of the queue matter for isolation:
//!
//! - **No hoarding.** A frame that fits in what is free now takes it at once, even while a
//!   larger frame waits: a consumer that holds a 50 MiB answer and a second one waiting for
//!   50 MiB more must not stop every other client's 100 KiB requests. (tokio's semaphore hands
//!   freed permits to its oldest waiter piece by piece, which is exactly that stall.)
//! - **No starvation.** Once the oldest waiter has waited [`BARGE_GRACE`], only frames of the
//!   small lane overtake it (at most [`LANE_MAX`] each, and at most an eighth of the budget
//!   held by such overtakers together): everything else queues behind it, and it gets the
//!   budget as soon as enough is free. Every holder releases within a bounded time (a frame
//!   being read while its client sends at --min-client-read-rate, a frame being written while
//!   its client reads at that rate), so a frame up to seven eighths of the budget always fits eventually; a larger
//!   one (a frame above the whole budget takes all of it) can also wait for the small lane to
//!   drain. The lane is what keeps ordinary clients moving while, say, a consumer that stopped
//!   reading holds a 50 MiB answer until its write times out and another 50 MiB answer waits.
//! - **The lane goes first.** When budget comes back, an oldest waiter past its grace that is
//!   not itself a small-lane frame lets every queued small-lane frame that fits now go before
//!   it. Large waiters that each want (nearly) the whole budget then take it one at a time,
//!   and ordinary clients' frames pass between any two of them: a client of small-lane frames
//!   waits for at most one large holder's turn (tests/abuse.rs (a')), not for all of them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memmap2::MmapMut;
use tokio::sync::Notify;

/// How long the oldest waiter lets any frame that fits overtake it.
pub const BARGE_GRACE: Duration = Duration::from_millis(500);
/// Largest frame of the small lane, which may overtake waiters at any time.
pub const LANE_MAX: usize = 1024 * 1024;

/// The budget, in bytes.
#[derive(Debug)]
pub struct Budget {
    total: usize,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug)]
struct State {
    /// Budget not held by frames (pooled mappings count as free: a frame that needs the
    /// budget gets it, unmapping pooled memory if it must).
    free: usize,
    /// Mappings of frames that have left, by size, ready for the next frame of that class:
    /// together never more than `free`; a class with none is not in the map ([`State::unpool`]).
    pool: HashMap<usize, Vec<MmapMut>>,
    /// Bytes of the mappings in `pool`.
    pooled: usize,
    /// Held by frames that overtook a waiter past its grace (the small lane).
    lane: usize,
    /// Waiters in arrival order: (ticket, bytes wanted, since).
    queue: VecDeque<(u64, usize, Instant)>,
    /// Bytes wanted by the queued waiters of the small lane, with how many want each: the
    /// smallest says at once whether one of them fits (no scan of the queue).
    lane_waiting: BTreeMap<usize, usize>,
    next_ticket: u64,
}

impl State {
    /// Takes a pooled mapping of `class` out of the pool, the one way mappings leave it. The
    /// class leaves the pool with its last mapping, so every class the pool names has one to
    /// give ([`Budget::evict`] takes whichever class the map names first).
    fn unpool(&mut self, class: usize) -> Option<MmapMut> {
        let maps = self.pool.get_mut(&class)?;
        let map = maps.pop();
        if maps.is_empty() {
            self.pool.remove(&class);
        }
        if let Some(map) = &map {
            self.pooled -= map.len();
        }
        map
    }
}

/// Budget held for one frame, with the memory the frame is read into; both go back to the
/// budget when dropped (the memory into its pool).
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: usize,
    /// Taken through the small lane.
    lane: bool,
    /// The frame's memory: at least the length asked for.
    map: Option<MmapMut>,
}

impl Held {
    /// The frame's memory, at least as long as the frame.
    pub fn buf(&mut self) -> &mut [u8] {
        self.map.as_deref_mut().unwrap_or_default()
    }

    /// The frame's memory, read-only.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }

    /// Bytes of budget held.
    pub fn held(&self) -> usize {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        state.free += self.bytes;
        if self.lane {
            state.lane -= self.bytes;
        }
        // Pooled and held together stay within the budget: this mapping was part of what
        // was held. A mapping larger than its charge (a frame above the whole budget) is not
        // kept.
        if let Some(map) = self.map.take().filter(|m| m.len() == self.bytes) {
            state.pooled += map.len();
            state.pool.entry(map.len()).or_default().push(map);
        }
        drop(state);
        self.budget.changed.notify_waiters();
    }
}

/// Page size the mappings are rounded to.
const PAGE: usize = 4096;

/// The size class of a frame of `len` bytes: whole pages, and at most an eighth more than
/// `len` (eight classes per doubling), so that frames of similar sizes share pooled mappings.
pub fn class(len: usize) -> usize {
    let pages = len.max(1).next_multiple_of(PAGE);
    let log2 = usize::BITS - 1 - pages.leading_zeros();
    let step = (1usize << log2.saturating_sub(3)).max(PAGE);
    pages.next_multiple_of(step)
}

/// Removes a waiter's ticket if its acquire is abandoned (shutdown, timeout).
struct Ticket<'a> {
    budget: &'a Budget,
    id: u64,
    /// Bytes wanted, when the waiter is a small-lane frame.
    lane: Option<usize>,
}

impl Ticket<'_> {
    /// Takes the waiter out of the queue (admitted or abandoned).
    fn leave(&self, state: &mut State) {
        state.queue.retain(|(id, _, _)| *id != self.id);
        if let Some(bytes) = self.lane {
            if let Some(n) = state.lane_waiting.get_mut(&bytes) {
                *n -= 1;
                if *n == 0 {
                    state.lane_waiting.remove(&bytes);
                }
            }
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        self.leave(&mut state);
        drop(state);
        // The head may have changed: let the others look again.
        self.budget.changed.notify_waiters();
    }
}

impl Budget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            state: Mutex::new(State {
                free: total,
                pool: HashMap::new(),
                pooled: 0,
                lane: 0,
                queue: VecDeque::new(),
                lane_waiting: BTreeMap::new(),
                next_ticket: 0,
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes free now.
    pub fn free(&self) -> usize {
        self.lock().free
    }

    /// Bytes of pooled mappings now (memory of frames that have left, kept for the next).
    pub fn pooled(&self) -> usize {
        self.lock().pooled
    }

    /// What a frame of `len` bytes is charged and mapped: its [`class`], or for a frame whose
    /// class is above the whole budget, the whole budget and a mapping of its own pages.
    fn sizes(&self, len: usize) -> (usize, usize) {
        let class = class(len);
        if class <= self.total {
            (class, class)
        } else {
            let pages = len.max(1).next_multiple_of(PAGE);
            (pages.min(self.total), pages)
        }
    }

    /// Takes budget and memory for a frame of `len` bytes if that is possible without
    /// waiting and without overtaking a waiter past its grace, except through the small lane.
    /// `None` also when the memory cannot be mapped (the frame then waits and tries again).
    pub fn try_take(self: &Arc<Self>, len: usize) -> Option<Held> {
        self.try_acquire(len, true)
    }

    /// Charges `bytes` of budget without memory if that is possible now, on the terms of
    /// [`Budget::try_take`] (see [`Budget::charge`]).
    pub fn try_charge(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        self.try_acquire(bytes, false)
    }

    /// Charges `bytes` of budget without memory, waiting as long as needed, for bytes the
    /// general allocator holds (the proxy's own answers, rewritten responses): take it before
    /// allocating them and keep it with them until they have been written. A charge above the
    /// whole budget takes all of it, like a frame.
    pub async fn charge(self: &Arc<Self>, bytes: usize) -> Held {
        self.acquire(bytes, false).await
    }

    /// What `len` bytes are charged, with memory (`mapped`) or without.
    fn charge_of(&self, len: usize, mapped: bool) -> usize {
        if mapped {
            self.sizes(len).0
        } else {
            len.min(self.total)
        }
    }

    fn try_acquire(self: &Arc<Self>, len: usize, mapped: bool) -> Option<Held> {
        let charge = self.charge_of(len, mapped);
        let admitted = {
            let mut state = self.lock();
            self.admit(&mut state, charge, len, None)
        };
        if mapped {
            admitted.and_then(|held| self.with_memory(held, len))
        } else {
            admitted.map(|held| self.charged(held))
        }
    }

    /// Gives `held` its memory: a pooled mapping of its class, or a new one once pooled
    /// mappings of other classes have been unmapped so that pooled and held memory together
    /// stay within the budget.
    fn with_memory(self: &Arc<Self>, mut held: Held, len: usize) -> Option<Held> {
        let (charge, map_len) = self.sizes(len);
        let victims = {
            let mut state = self.lock();
            if map_len == charge {
                if let Some(map) = state.unpool(charge) {
                    held.map = Some(map);
                    return Some(held);
                }
            }
            Self::evict(&mut state)
        };
        // Unmapped (outside the lock) before the new mapping is made.
        drop(victims);
        match MmapMut::map_anon(map_len) {
            Ok(map) => {
                held.map = Some(map);
                Some(held)
            }
            Err(e) => {
                tracing::warn!(bytes = map_len, error = %e, "cannot map frame memory");
                None
            }
        }
    }

    /// Takes pooled mappings out of the pool until pooled and held memory together are within
    /// the budget again; the caller unmaps them once the lock is released.
    fn evict(state: &mut State) -> Vec<MmapMut> {
        let mut victims = Vec::new();
        while state.pooled > state.free {
            let Some(class) = state.pool.keys().next().copied() else {
                break;
            };
            victims.extend(state.unpool(class));
        }
        victims
    }

    /// Makes room for a charge without memory that was just admitted: pooled mappings beyond
    /// what is free now are unmapped, since the charged bytes are about to be allocated.
    fn charged(&self, held: Held) -> Held {
        let victims = Self::evict(&mut self.lock());
        drop(victims);
        held
    }

    /// Takes `bytes` of budget from `state` (no memory yet) if `ticket` (or a newcomer,
    /// `None`) may have them now; `len` is the frame's own length (for the small lane).
    fn admit(
        self: &Arc<Self>,
        state: &mut State,
        bytes: usize,
        len: usize,
        ticket: Option<u64>,
    ) -> Option<Held> {
        if state.free < bytes {
            return None;
        }
        let head = state.queue.front();
        let first = head.is_none() || head.map(|(id, _, _)| Some(*id)) == Some(ticket);
        let head_patient = head.is_some_and(|(_, _, since)| since.elapsed() < BARGE_GRACE);
        let lane_fits = |bytes: usize| state.lane + bytes <= self.total / 8;
        let lane = !first && !head_patient && len <= LANE_MAX && lane_fits(bytes);
        if !(first || head_patient || lane) {
            return None;
        }
        // The lane goes first: a head past its grace, not of the lane itself, lets a queued
        // lane frame that fits now take its turn before it.
        let head_waits_for_lane = first
            && head.is_some()
            && !head_patient
            && len > LANE_MAX
            && state
                .lane_waiting
                .first_key_value()
                .is_some_and(|(smallest, _)| *smallest <= state.free && lane_fits(*smallest));
        if head_waits_for_lane {
            return None;
        }
        state.free -= bytes;
        if lane {
            state.lane += bytes;
        }
        Some(Held {
            budget: self.clone(),
            bytes,
            lane,
            map: None,
        })
    }

    /// Takes budget and memory for a frame of `len` bytes, waiting as long as needed.
    pub async fn take(self: &Arc<Self>, len: usize) -> Held {
        self.acquire(len, true).await
    }

    async fn acquire(self: &Arc<Self>, len: usize, mapped: bool) -> Held {
        if let Some(held) = self.try_acquire(len, mapped) {
            return held;
        }
        let bytes = self.charge_of(len, mapped);
        let ticket = {
            let mut state = self.lock();
            let id = state.next_ticket;
            state.next_ticket += 1;
            state.queue.push_back((id, bytes, Instant::now()));
            let lane = (len <= LANE_MAX).then_some(bytes);
            if let Some(bytes) = lane {
                *state.lane_waiting.entry(bytes).or_default() += 1;
            }
            Ticket {
                budget: self,
                id,
                lane,
            }
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before looking, so a release in between is not missed.
            notified.as_mut().enable();
            let admitted = {
                let mut state = self.lock();
                let held = self.admit(&mut state, bytes, len, Some(ticket.id));
                if held.is_some() {
                    ticket.leave(&mut state);
                }
                held
            };
            if let Some(held) = admitted {
                std::mem::forget(ticket);
                self.changed.notify_waiters();
                if !mapped {
                    return self.charged(held);
                }
                // Without memory (mapping failed), the budget goes back and this waits on.
                if let Some(held) = self.with_memory(held, len) {
                    return held;
                }
                tokio::time::sleep(BARGE_GRACE).await;
                return Box::pin(self.acquire(len, mapped)).await;
            }
            // The grace of the head runs out without any release: look again then.
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(BARGE_GRACE) => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
