//! Tests of the read buffer's memory rules.

use super::*;

/// A frame of `len` bytes in total (length prefix included).
fn frame(len: usize) -> Vec<u8> {
    let mut f = ((len - 4) as i32).to_be_bytes().to_vec();
    f.resize(len, 7);
    f
}

#[tokio::test]
async fn a_new_or_idle_direction_holds_no_read_buffer() {
    let mut inbound = Inbound::new(1 << 20);
    assert!(inbound.parked);
    assert_eq!(inbound.buf.capacity(), 0, "nothing before the first byte");

    let bytes = frame(100);
    let mut from = &bytes[..];
    let n = inbound.read_from(&mut from).await.unwrap();
    assert_eq!(n, 100);
    assert!(!inbound.parked);
    assert!(inbound.buf.capacity() >= INITIAL_READ_CAPACITY);
    let chunk = inbound.take_chunk().unwrap().unwrap();
    assert_eq!(&chunk[..], &bytes[..]);
    drop(chunk);

    assert!(inbound.can_park());
    inbound.park();
    assert!(inbound.parked);
    assert_eq!(inbound.buf.capacity(), 0, "parked: the buffer is gone");
    assert_eq!(inbound.read_ahead, INITIAL_READ_CAPACITY);
}

#[tokio::test]
async fn a_partial_frame_keeps_its_buffer() {
    let mut inbound = Inbound::new(1 << 20);
    let bytes = frame(100);
    let mut from = &bytes[..50];
    inbound.read_from(&mut from).await.unwrap();
    assert!(inbound.take_chunk().unwrap().is_none());
    assert!(!inbound.can_park());
    inbound.park();
    assert_eq!(inbound.buf.len(), 50, "a partial frame is never dropped");
}

#[tokio::test]
async fn reads_that_fill_their_room_grow_the_read_ahead_to_64_kib_and_small_ones_shrink_it() {
    let mut inbound = Inbound::new(1 << 20);
    // Leave the parked state with one small frame.
    let first = frame(8);
    inbound.read_from(&mut &first[..]).await.unwrap();
    inbound.take_chunk().unwrap().unwrap();

    let stream: Vec<u8> = (0..200).flat_map(|_| frame(1024)).collect();
    let mut from = &stream[..];
    let mut seen = Vec::new();
    while !from.is_empty() {
        inbound
            .reader
            .reserve_for_next_read(&mut inbound.buf, inbound.read_ahead);
        inbound.read_from(&mut from).await.unwrap();
        seen.push(inbound.read_ahead);
        while inbound.take_chunk().unwrap().is_some() {}
    }
    assert_eq!(inbound.read_ahead, SMALL_FRAME_BYTES, "grew: {seen:?}");

    for _ in 0..8 {
        let small = frame(16);
        inbound
            .reader
            .reserve_for_next_read(&mut inbound.buf, inbound.read_ahead);
        inbound.read_from(&mut &small[..]).await.unwrap();
        inbound.take_chunk().unwrap().unwrap();
    }
    assert_eq!(inbound.read_ahead, INITIAL_READ_CAPACITY);
}

#[tokio::test]
async fn one_frame_at_a_time_never_grows_the_read_ahead() {
    // A client with one 16 KiB request in flight: every read ends at its frame's end.
    let mut inbound = Inbound::new(1 << 20);
    for _ in 0..20 {
        let one = frame(16 * 1024);
        let mut from = &one[..];
        loop {
            inbound
                .reader
                .reserve_for_next_read(&mut inbound.buf, inbound.read_ahead);
            inbound.read_from(&mut from).await.unwrap();
            if inbound.take_chunk().unwrap().is_some() {
                break;
            }
        }
        assert_eq!(inbound.read_ahead, INITIAL_READ_CAPACITY);
    }
}

const SEC: Duration = Duration::from_secs(1);

/// A clock of a connection accepted at `t0`: --first-frame-timeout 10s, --frame-timeout 3s,
/// --client-idle-timeout 600s, --min-client-read-rate 1000 bytes/s (3000 bytes a window).
fn clock(t0: Instant) -> Clock {
    Clock::new(t0, 10 * SEC, 3 * SEC, 600 * SEC, 1000)
}

#[test]
fn the_first_request_has_its_deadline_from_the_accept_waiting_included() {
    let t0 = Instant::now();
    let mut c = clock(t0);
    assert_eq!(c.deadline(), (t0 + 10 * SEC, Limit::FirstFrame(10 * SEC)));
    assert_eq!(
        c.waiting_deadline(),
        Some((t0 + 10 * SEC, Limit::FirstFrame(10 * SEC)))
    );
    c.read(t0 + SEC, None);
    c.waited(5 * SEC);
    assert_eq!(c.deadline(), (t0 + 10 * SEC, Limit::FirstFrame(10 * SEC)));
}

#[test]
fn waiting_for_budget_never_counts_against_the_frame_timeout() {
    let t0 = Instant::now();
    let mut c = clock(t0);
    c.complete(t0, false);
    assert_eq!(c.waiting_deadline(), None, "nothing runs while waiting");
    assert_eq!(c.deadline(), (t0 + 600 * SEC, Limit::Idle(600 * SEC)));
    // A request begins at t0+1s, then waits 20 s for budget others hold.
    let t1 = t0 + SEC;
    c.read(t1, None);
    assert_eq!(c.deadline(), (t1 + 3 * SEC, Limit::Frame(3 * SEC)));
    c.waited(20 * SEC);
    assert_eq!(c.deadline(), (t1 + 23 * SEC, Limit::Frame(3 * SEC)));
    c.waited(SEC);
    assert_eq!(c.deadline(), (t1 + 24 * SEC, Limit::Frame(3 * SEC)));
    // The next request starts afresh.
    c.complete(t1 + 22 * SEC, true);
    assert_eq!(
        c.deadline(),
        (t1 + 25 * SEC, Limit::Frame(3 * SEC)),
        "no waiting carried over"
    );
}

#[test]
fn a_granted_large_request_must_arrive_at_the_floor_rate_per_window() {
    let t0 = Instant::now();
    let mut c = clock(t0);
    c.complete(t0, false);
    let t1 = t0 + SEC;
    c.read(t1, None);
    c.waited(30 * SEC);
    // Granted at t2 for a 10,000-byte request of which 100 bytes are in.
    let t2 = t1 + 30 * SEC;
    c.granted(t2, 100, 10_000);
    let rate = Limit::Rate {
        rate: 1000,
        after: 3 * SEC,
    };
    assert_eq!(
        c.deadline(),
        (t2 + 3 * SEC, rate),
        "one window from the grant"
    );
    // 2,000 more bytes: short of the window's 3,000, the window runs on.
    c.read(t2 + SEC, Some((2100, 10_000)));
    assert_eq!(c.deadline(), (t2 + 3 * SEC, rate));
    // The window's bytes are in: a new window starts at once, due 3,000 more.
    c.read(t2 + 2 * SEC, Some((3100, 10_000)));
    assert_eq!(c.deadline(), (t2 + 5 * SEC, rate));
    c.read(t2 + 4 * SEC, Some((6100, 10_000)));
    assert_eq!(c.deadline(), (t2 + 7 * SEC, rate));
    // The last window is due only the rest.
    c.read(t2 + 6 * SEC, Some((9100, 10_000)));
    assert_eq!(c.deadline(), (t2 + 9 * SEC, rate));
    c.read(t2 + 8 * SEC, Some((9999, 10_000)));
    assert_eq!(c.deadline(), (t2 + 9 * SEC, rate), "one byte short");
    c.complete(t2 + 8 * SEC, false);
    assert_eq!(
        c.deadline(),
        (t2 + 608 * SEC, Limit::Idle(600 * SEC)),
        "complete: idle again"
    );
}

#[test]
fn a_stalled_large_request_holds_its_budget_for_one_window_only() {
    let t0 = Instant::now();
    let mut c = clock(t0);
    c.complete(t0, false);
    c.read(t0, None);
    c.waited(100 * SEC);
    let granted = t0 + 100 * SEC;
    c.granted(granted, 16_384, 100 << 20);
    // Whatever it waited, it is closed one --frame-timeout after the grant if it sends nothing.
    let (at, limit) = c.deadline();
    assert_eq!(at, granted + 3 * SEC);
    assert!(matches!(limit, Limit::Rate { .. }));
}

#[test]
fn a_large_first_request_is_held_to_the_earlier_of_both_deadlines() {
    let t0 = Instant::now();
    let mut c = clock(t0);
    c.read(t0, None);
    c.waited(2 * SEC);
    c.granted(t0 + 2 * SEC, 4096, 1 << 20);
    let rate = Limit::Rate {
        rate: 1000,
        after: 3 * SEC,
    };
    assert_eq!(c.deadline(), (t0 + 5 * SEC, rate));
    c.read(t0 + 4 * SEC, Some((8000, 1 << 20)));
    assert_eq!(c.deadline(), (t0 + 7 * SEC, rate));
    c.read(t0 + 8 * SEC, Some((12_000, 1 << 20)));
    assert_eq!(
        c.deadline(),
        (t0 + 10 * SEC, Limit::FirstFrame(10 * SEC)),
        "the first request's deadline is the earlier one now"
    );
}
