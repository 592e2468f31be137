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
