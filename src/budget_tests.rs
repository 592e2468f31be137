//! Tests of the budget's queue and of the memory it owns. Sizes are in units of 64 KiB, which
//! are exact size classes at every count used here.

use super::*;

/// One unit of budget: every count of units used below is its own size class.
const U: usize = 64 * 1024;

#[tokio::test]
async fn a_frame_that_fits_is_not_held_up_by_a_larger_waiter() {
    let budget = Budget::new(64 * U);
    let big = budget.take(48 * U).await;
    assert_eq!(budget.free(), 16 * U);
    // A second 48 waits...
    let waiting = tokio::spawn({
        let budget = budget.clone();
        async move { budget.take(48 * U).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished());
    // ...but small frames still pass while it is within its grace.
    let small = budget.try_take(U).expect("a small frame fits now");
    drop(small);
    assert_eq!(budget.free(), 16 * U, "the waiter hoards nothing");
    drop(big);
    let second = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the waiter gets the budget once it is free")
        .unwrap();
    assert_eq!(budget.free(), 16 * U);
    drop(second);
    assert_eq!(budget.free(), 64 * U);
}

#[tokio::test]
async fn after_its_grace_the_oldest_waiter_is_not_overtaken() {
    let budget = Budget::new(64 * U);
    let held = budget.take(32 * U).await;
    let waiting = tokio::spawn({
        let budget = budget.clone();
        async move { budget.take(40 * U).await }
    });
    tokio::time::sleep(BARGE_GRACE + Duration::from_millis(50)).await;
    assert!(
        budget.try_take(9 * U).is_none(),
        "beyond the small lane (an eighth: 8 units here) no overtaking once the head waited its grace"
    );
    let lane = budget.try_take(2 * U).expect("the small lane still passes");
    drop(lane);
    drop(held);
    let got = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("served")
        .unwrap();
    assert_eq!(budget.free(), 24 * U);
    drop(got);
    assert_eq!(budget.free(), 64 * U);
}

#[tokio::test]
async fn an_abandoned_wait_gives_its_place_up_and_a_huge_frame_takes_everything() {
    let budget = Budget::new(64 * U);
    let held = budget.take(10 * U).await;
    let abandoned = tokio::time::timeout(Duration::from_millis(20), budget.take(1000 * U)).await;
    assert!(abandoned.is_err());
    assert!(budget.lock().queue.is_empty(), "the ticket left with it");
    drop(held);
    let all = budget.take(1000 * U).await;
    assert_eq!(budget.free(), 0, "larger than the budget: takes all of it");
    drop(all);
    assert_eq!(budget.free(), 64 * U);
}

#[test]
fn size_classes_are_whole_pages_and_at_most_an_eighth_more() {
    let mut last = 0;
    for len in (1..5_000_000).step_by(997) {
        let c = class(len);
        assert!(c >= len && c.is_multiple_of(PAGE), "{len} -> {c}");
        assert!(c <= (len + PAGE).max(len + len / 8 + PAGE), "{len} -> {c}");
        assert!(c >= last, "classes grow with the length");
        last = c;
    }
    assert_eq!(class(48 * U), 48 * U);
    assert_eq!(class((1 << 20) + 100), (1 << 20) + (1 << 17));
}

#[tokio::test]
async fn a_frames_memory_goes_back_to_the_pool_and_serves_the_next_frame_of_its_class() {
    let budget = Budget::new(64 * U);
    let mut first = budget.take(48 * U - 100).await;
    assert_eq!(first.held(), 48 * U, "charged its class");
    assert!(first.buf().len() >= 48 * U - 100);
    first.buf()[0] = 7;
    let at = first.bytes().as_ptr();
    drop(first);
    assert_eq!(budget.pooled(), 48 * U);
    assert_eq!(budget.free(), 64 * U, "pooled memory is free budget");
    let second = budget.take(48 * U).await;
    assert_eq!(second.bytes().as_ptr(), at, "the same mapping again");
    assert_eq!(second.bytes()[0], 7, "not mapped anew");
    assert_eq!(budget.pooled(), 0);
    drop(second);
}

#[tokio::test]
async fn pooled_and_held_memory_together_never_exceed_the_budget() {
    let budget = Budget::new(64 * U);
    // Fill the pool with one class.
    let a = budget.take(32 * U).await;
    let b = budget.take(24 * U).await;
    drop(a);
    drop(b);
    assert_eq!(budget.pooled(), 56 * U);
    // Another class that needs most of the budget: pooled mappings are unmapped first.
    let c = budget.take(40 * U).await;
    let held = 40 * U;
    assert!(
        budget.pooled() + held <= 64 * U,
        "pooled {} + held {held} > budget",
        budget.pooled()
    );
    // Small frames of yet other classes while it is held.
    let mut small = Vec::new();
    for n in [1, 2, 3, 5, 7] {
        small.push(budget.take(n * U).await);
        let held: usize = 40 * U + small.iter().map(Held::held).sum::<usize>();
        assert!(budget.pooled() + held <= 64 * U);
    }
    drop(small);
    drop(c);
    assert_eq!(budget.free(), 64 * U);
    assert!(budget.pooled() <= 64 * U);
}

#[test]
fn a_class_whose_last_pooled_mapping_was_reused_is_never_offered_for_eviction() {
    // The soak's "catching up" outlier (257.7 MiB against 105.6): a frame took the last
    // pooled mapping of its class, the class stayed in the pool with none, and the next frame
    // of another class that had to unmap pooled memory panicked when the pool's (random) key
    // order offered the empty class first. Fresh budgets, fresh key orders: each round offers
    // it first with even odds.
    for _ in 0..64 {
        let budget = Budget::new(16 * U);
        let a = budget.try_take(2 * U).expect("fits");
        let b = budget.try_take(5 * U).expect("fits");
        drop((a, b));
        assert_eq!(budget.pooled(), 7 * U);
        // The class of 2 units gives its one mapping back out; 5 units stay pooled.
        let again = budget.try_take(2 * U).expect("fits");
        assert_eq!(budget.pooled(), 5 * U);
        // 12 units of a new class leave 2 free: the pooled 5 must be unmapped first.
        let c = budget
            .try_take(12 * U)
            .expect("fits once pooled memory is unmapped");
        assert_eq!(budget.free(), 2 * U);
        assert_eq!(
            budget.pooled(),
            0,
            "pooled memory beyond what is free is unmapped"
        );
        drop((again, c));
        assert_eq!(budget.free(), 16 * U);
        assert_eq!(budget.pooled(), 14 * U);
    }
}

#[tokio::test]
async fn a_frame_above_the_whole_budget_gets_its_own_memory_which_is_not_pooled() {
    let budget = Budget::new(64 * U);
    let mut all = budget.take(100 * U).await;
    assert_eq!(all.held(), 64 * U);
    assert!(all.buf().len() >= 100 * U);
    drop(all);
    assert_eq!(budget.pooled(), 0, "larger than its charge: unmapped");
    assert_eq!(budget.free(), 64 * U);
}

#[tokio::test]
async fn a_charge_counts_against_the_budget_without_memory() {
    let budget = Budget::new(64 * U);
    let charge = budget.charge(40 * U + 7).await;
    assert_eq!(
        charge.held(),
        40 * U + 7,
        "a charge is exact, not a size class"
    );
    assert!(
        charge.bytes().is_empty(),
        "a charge has no memory of its own"
    );
    assert_eq!(budget.free(), 24 * U - 7);
    assert!(
        budget.try_take(32 * U).is_none(),
        "a frame does not fit beside the charge"
    );
    drop(charge);
    assert_eq!(budget.free(), 64 * U, "released when dropped");
    let frame = budget.take(32 * U).await;
    assert_eq!(budget.free(), 32 * U);
    assert_eq!(budget.pooled(), 0, "a charge puts no mapping in the pool");
    drop(frame);
    assert_eq!(budget.free(), 64 * U);
}

#[tokio::test]
async fn a_charge_waits_for_budget_others_hold_and_caps_at_the_whole() {
    let budget = Budget::new(64 * U);
    let frame = budget.take(48 * U).await;
    let waiting = tokio::spawn({
        let budget = budget.clone();
        async move { budget.charge(32 * U).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished(), "a charge waits like a frame");
    assert!(
        budget.try_charge(16 * U).is_some(),
        "what fits is charged now"
    );
    drop(frame);
    let charge = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("served once freed")
        .unwrap();
    assert_eq!(budget.free(), 32 * U);
    drop(charge);
    let whole = budget.charge(1000 * U).await;
    assert_eq!(
        whole.held(),
        64 * U,
        "a charge above the budget takes all of it"
    );
    assert_eq!(budget.free(), 0);
}

#[tokio::test]
async fn a_charge_unmaps_pooled_memory_it_needs() {
    let budget = Budget::new(64 * U);
    drop(budget.take(48 * U).await);
    assert_eq!(budget.pooled(), 48 * U);
    let charge = budget.charge(32 * U).await;
    assert!(
        budget.pooled() <= budget.free(),
        "pooled memory never exceeds what is free: {} > {}",
        budget.pooled(),
        budget.free()
    );
    drop(charge);
}

#[tokio::test]
async fn when_budget_comes_back_a_waiting_lane_frame_goes_before_a_large_head() {
    let budget = Budget::new(64 * U);
    let holder = budget.take(64 * U).await;
    let large = tokio::spawn({
        let budget = budget.clone();
        async move { budget.take(64 * U).await }
    });
    tokio::time::sleep(BARGE_GRACE + Duration::from_millis(50)).await;
    let small = tokio::spawn({
        let budget = budget.clone();
        async move { budget.take(2 * U).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !large.is_finished() && !small.is_finished(),
        "nothing is free"
    );
    drop(holder);
    let small = tokio::time::timeout(Duration::from_secs(2), small)
        .await
        .expect("the lane frame gets its turn first")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !large.is_finished(),
        "the large head waits for the lane frame"
    );
    assert_eq!(budget.free(), 62 * U);
    drop(small);
    let large = tokio::time::timeout(Duration::from_secs(2), large)
        .await
        .expect("then the head gets the whole budget")
        .unwrap();
    assert_eq!(budget.free(), 0);
    drop(large);
    assert_eq!(budget.free(), 64 * U);
}
