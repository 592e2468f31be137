//! The hot-path check of Produce/Fetch responses (src/kafka/rewrite.rs `response_needs`, the
//! connection's, and `may_carry_addresses`, `has_node_endpoints`, over src/kafka/wire.rs
//! `produce_scan`/`fetch`): the walk that decides, without decoding, whether a response carries
//! `node_endpoints` (KIP-951) and must be rewritten, whether a Produce carries an error message
//! to scrub, or passes as the original bytes.
//!
//! Invariants: no panic; whenever kafka-protocol can decode the same bytes at that version
//! (behind the same walk, `codec::decode_response`), the walk agrees with it: "no addresses"
//! means an empty `node_endpoints`, "addresses" a non-empty one. A disagreement the other way
//! round would forward a broker address to the client unrewritten. `response_needs` agrees with
//! `may_carry_addresses`, and says "text" exactly when a decoded Produce has a non-null error
//! message (a Fetch never).
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceResponse};
use kafka_protocol::protocol::{Decodable, Message};
use kafka_tls_proxy::kafka::{codec, rewrite, wire, wire::WalkFn};
use ktp_fuzz::{split_keyed, NODE_ENDPOINTS_KEYS};
use libfuzzer_sys::fuzz_target;

/// Decodes the payload fully; `Some(number of node_endpoints)` when it decodes.
fn decoded_endpoints<M: Message + Decodable>(
    key: i16,
    version: i16,
    payload: &Bytes,
    walk: WalkFn,
    endpoints: impl FnOnce(&M) -> usize,
) -> Option<usize> {
    let header_version = codec::response_header_version(key, version);
    codec::decode_response::<M>(key, version, header_version, payload, walk)
        .ok()
        .map(|(_, m)| endpoints(&m))
}

fuzz_target!(|data: &[u8]| {
    let Some((key, version, payload)) = split_keyed(&NODE_ENDPOINTS_KEYS, data) else {
        return;
    };
    let input = Bytes::copy_from_slice(payload);
    let may = rewrite::may_carry_addresses(key, version, &input);
    let has = rewrite::has_node_endpoints(key, version, &input);

    let needs = rewrite::response_needs(key, version, &input, true, true);
    let mut decoded_text = false;
    let decoded = if key == ApiKey::Produce as i16 {
        decoded_endpoints::<ProduceResponse>(key, version, &input, wire::produce, |m| {
            decoded_text = m.responses.iter().flat_map(|t| &t.partition_responses).any(|p| {
                p.error_message.is_some()
                    || p.record_errors.iter().any(|r| r.batch_index_error_message.is_some())
            });
            m.node_endpoints.len()
        })
    } else {
        decoded_endpoints::<FetchResponse>(key, version, &input, wire::fetch, |m| {
            m.node_endpoints.len()
        })
    };

    // In the versions the proxy decodes both answer the same; outside them only `has` walks.
    let inspected = rewrite::inspected(key).expect("Produce and Fetch are inspected");
    if (inspected.versions.min..=inspected.versions.max).contains(&version) {
        assert_eq!(may.as_ref().ok(), has.as_ref().ok(), "{key} v{version}");
        assert_eq!(
            may.as_ref().ok(),
            needs.as_ref().ok().map(|n| &n.addresses),
            "{key} v{version}"
        );
    } else {
        assert!(may.is_err(), "{key} v{version} is outside the versions the proxy decodes");
        assert!(needs.is_err(), "{key} v{version} is outside the versions the proxy decodes");
    }
    if let (Ok(n), Some(_)) = (&needs, decoded) {
        assert_eq!(n.text, decoded_text, "{key} v{version}: the walk and the decode differ on error messages");
    }

    match (may, decoded) {
        (Ok(false), Some(n)) => assert_eq!(n, 0, "{key} v{version}: walk found no node_endpoints, decode found {n}"),
        (Ok(true), Some(n)) => assert!(n > 0, "{key} v{version}: walk found node_endpoints, decode none"),
        (Err(e), Some(_)) => panic!("{key} v{version}: walk failed ({e}) on a response that decodes"),
        (_, None) => {}
    }
});
