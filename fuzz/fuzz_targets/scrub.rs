//! The free-text scrub (src/kafka/scrub.rs `scrub_response`, over the `Scrubber`'s
//! Aho-Corasick search): a response of each API of `TEXT_CARRYING` (error messages,
//! configuration values; the address-carrying APIs' error messages too), at a version from the
//! input, with the upstream hosts of `ktp_fuzz::SCRUB_HOSTS`.
//!
//! Invariants: no panic; a scrubbed frame has the right length prefix, walks again at the same
//! version, and scrubbing it again changes nothing (no upstream host is left standing alone in
//! any text field); a frame is only replaced when some text named an upstream host.
#![no_main]

use kafka_tls_proxy::kafka::scrub;
use ktp_fuzz::{scrub_keys, scrubber, split_keyed};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static KEYS: OnceLock<Vec<i16>> = OnceLock::new();
    static SCRUBBER: OnceLock<scrub::Scrubber> = OnceLock::new();
    let keys = KEYS.get_or_init(scrub_keys);
    let s = SCRUBBER.get_or_init(scrubber);
    let Some((key, version, payload)) = split_keyed(keys, data) else {
        return;
    };
    let scrub_any = |payload: &[u8]| scrub::scrub_response(key, version, payload, s);
    let Ok(Some(frame)) = scrub_any(payload) else {
        return;
    };
    assert_eq!(
        &frame[..4],
        &(frame.len() as i32 - 4).to_be_bytes(),
        "length prefix"
    );
    assert_eq!(frame[4..8], payload[..4], "correlation id kept");
    match scrub_any(&frame[4..]) {
        Ok(None) => {}
        Ok(Some(again)) => panic!(
            "a second scrub changed the frame again: {:?} -> {:?}",
            String::from_utf8_lossy(&frame),
            String::from_utf8_lossy(&again)
        ),
        Err(e) => panic!("the scrubbed frame no longer walks: {e}"),
    }
});
