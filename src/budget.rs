//! The process-wide memory budget for large frames (--max-buffered-bytes).
//!
//! A frame above the small-frame size is read only once budget for its whole length is held,
//! so what all connections hold together is bounded, and a pump without budget stops reading
//! (TCP backpressure), which never fails anything. Two properties matter for isolation:
//!
//! - **No hoarding.** A frame that fits in what is free now takes it at once, even while a
//!   larger frame waits: a consumer that holds a 50 MiB answer and a second one waiting for
//!   50 MiB more must not stop every other client's 100 KiB requests. (tokio's semaphore hands
//!   freed permits to its oldest waiter piece by piece, which is exactly that stall.)
//! - **No starvation.** Once the oldest waiter has waited [`BARGE_GRACE`], only frames of the
//!   small lane overtake it (at most [`LANE_MAX`] each, and at most an eighth of the budget
//!   held by such overtakers together): everything else queues behind it, and it gets the
//!   budget as soon as enough is free. Every holder releases within a bounded time (a frame
//!   being read within --frame-timeout, a frame being written as long as the client keeps
//!   reading), so a frame up to seven eighths of the budget always fits eventually; a larger
//!   one (a frame above the whole budget takes all of it) can also wait for the small lane to
//!   drain. The lane is what keeps ordinary clients moving while, say, a consumer that stopped
//!   reading holds a 50 MiB answer until its write times out and another 50 MiB answer waits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    free: usize,
    /// Held by frames that overtook a waiter past its grace (the small lane).
    lane: usize,
    /// Waiters in arrival order: (ticket, bytes wanted, since).
    queue: VecDeque<(u64, usize, Instant)>,
    next_ticket: u64,
}

/// Budget held for one frame; given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: usize,
    /// Taken through the small lane.
    lane: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        state.free += self.bytes;
        if self.lane {
            state.lane -= self.bytes;
        }
        drop(state);
        self.budget.changed.notify_waiters();
    }
}

/// Removes a waiter's ticket if its acquire is abandoned (shutdown, timeout).
struct Ticket<'a> {
    budget: &'a Budget,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        state.queue.retain(|(id, _, _)| *id != self.id);
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
                lane: 0,
                queue: VecDeque::new(),
                next_ticket: 0,
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes free now.
    pub fn free(&self) -> usize {
        self.lock().free
    }

    /// Takes `bytes` (at most the whole budget) if that is possible without waiting and
    /// without overtaking a waiter past its grace, except through the small lane.
    pub fn try_take(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        let bytes = bytes.min(self.total);
        let mut state = self.lock();
        self.admit(&mut state, bytes, None)
    }

    /// Takes `bytes` from `state` if `ticket` (or a newcomer, `None`) may have them now.
    fn admit(
        self: &Arc<Self>,
        state: &mut State,
        bytes: usize,
        ticket: Option<u64>,
    ) -> Option<Held> {
        if state.free < bytes {
            return None;
        }
        let head = state.queue.front();
        let first = head.is_none() || head.map(|(id, _, _)| Some(*id)) == Some(ticket);
        let head_patient = head.is_some_and(|(_, _, since)| since.elapsed() < BARGE_GRACE);
        let lane =
            !first && !head_patient && bytes <= LANE_MAX && state.lane + bytes <= self.total / 8;
        if !(first || head_patient || lane) {
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
        })
    }

    /// Takes `bytes` (at most the whole budget), waiting as long as needed.
    pub async fn take(self: &Arc<Self>, bytes: usize) -> Held {
        if let Some(held) = self.try_take(bytes) {
            return held;
        }
        let bytes = bytes.min(self.total);
        let ticket = {
            let mut state = self.lock();
            let id = state.next_ticket;
            state.next_ticket += 1;
            state.queue.push_back((id, bytes, Instant::now()));
            Ticket { budget: self, id }
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before looking, so a release in between is not missed.
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(held) = self.admit(&mut state, bytes, Some(ticket.id)) {
                    state.queue.retain(|(id, _, _)| *id != ticket.id);
                    std::mem::forget(ticket);
                    drop(state);
                    self.changed.notify_waiters();
                    return held;
                }
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
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_that_fits_is_not_held_up_by_a_larger_waiter() {
        let budget = Budget::new(64);
        let big = budget.take(50).await;
        assert_eq!(budget.free(), 14);
        // A second 50 waits...
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(50).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        // ...but small frames still pass while it is within its grace.
        let small = budget.try_take(1).expect("a small frame fits now");
        drop(small);
        assert_eq!(budget.free(), 14, "the waiter hoards nothing");
        drop(big);
        let second = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("the waiter gets the budget once it is free")
            .unwrap();
        assert_eq!(budget.free(), 14);
        drop(second);
        assert_eq!(budget.free(), 64);
    }

    #[tokio::test]
    async fn after_its_grace_the_oldest_waiter_is_not_overtaken() {
        let budget = Budget::new(64);
        let held = budget.take(30).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(40).await }
        });
        tokio::time::sleep(BARGE_GRACE + Duration::from_millis(50)).await;
        assert!(
            budget.try_take(9).is_none(),
            "beyond the small lane (an eighth: 8 here) no overtaking once the head waited its grace"
        );
        let lane = budget.try_take(2).expect("the small lane still passes");
        drop(lane);
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("served")
            .unwrap();
        assert_eq!(budget.free(), 24);
        drop(got);
        assert_eq!(budget.free(), 64);
    }

    #[tokio::test]
    async fn an_abandoned_wait_gives_its_place_up_and_a_huge_frame_takes_everything() {
        let budget = Budget::new(64);
        let held = budget.take(10).await;
        let abandoned = tokio::time::timeout(Duration::from_millis(20), budget.take(1000)).await;
        assert!(abandoned.is_err());
        assert!(budget.lock().queue.is_empty(), "the ticket left with it");
        drop(held);
        let all = budget.take(1000).await;
        assert_eq!(budget.free(), 0, "larger than the budget: takes all of it");
        drop(all);
        assert_eq!(budget.free(), 64);
    }
}
