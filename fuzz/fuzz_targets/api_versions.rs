//! The ApiVersions cap (src/kafka/versions.rs `rewrite_api_versions`): a broker's answer at the
//! version the client asked for (or the broker's v0 fallback), capped to what the proxy decodes.
//!
//! Invariants: no panic; an error only when the answer decodes neither at the requested version
//! nor at v0 (or kafka-protocol cannot encode what it decoded); otherwise the output (if any) has a correct length prefix, decodes at the version
//! used, keeps the response header bytes and every field but `api_keys`, and `api_keys` is the
//! broker's list with each api key the proxy inspects capped to `versions::proxy_range`
//! (min kept, max = min(broker max, proxy max), dropped when the ranges do not meet) and every
//! other api key untouched; `Ok(None)` only when there was nothing to cap.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_tls_proxy::kafka::{codec, versions, wire};
use ktp_fuzz::{split_keyed, API_VERSIONS_KEYS};
use libfuzzer_sys::fuzz_target;

const API_VERSIONS: i16 = 18;

fn decode(version: i16, payload: &Bytes) -> Option<(usize, ApiVersionsResponse)> {
    codec::decode_response::<ApiVersionsResponse>(
        API_VERSIONS,
        version,
        0,
        payload,
        wire::api_versions,
    )
    .ok()
}

/// The broker's answer capped as the proxy must cap it.
fn capped(msg: &ApiVersionsResponse) -> ApiVersionsResponse {
    let mut want = msg.clone();
    want.api_keys.retain_mut(|k| match versions::proxy_range(k.api_key) {
        None => true,
        Some(proxy) => {
            let max = k.max_version.min(proxy.max);
            k.max_version = max;
            k.min_version.max(proxy.min) <= max
        }
    });
    want
}

fuzz_target!(|data: &[u8]| {
    let Some((_, version, payload)) = split_keyed(&API_VERSIONS_KEYS, data) else {
        return;
    };
    let input = Bytes::copy_from_slice(payload);
    let result = versions::rewrite_api_versions(version, &input);

    // The version the proxy reads the answer at: the requested one, else the v0 fallback.
    let read = (0..=versions::API_VERSIONS_MAX)
        .contains(&version)
        .then(|| decode(version, &input).map(|d| (version, d)))
        .flatten()
        .or_else(|| decode(0, &input).map(|d| (0, d)));

    match (result, read) {
        (Err(e), Some((used, (header_len, msg)))) => {
            // Accepted only when kafka-protocol cannot encode what it decoded (an unknown tag
            // >= 2^31 becomes a negative key its encoder counts but skips).
            assert!(
                codec::encode_frame(API_VERSIONS, used, &input[..header_len], &msg).is_err(),
                "v{version}: error {e} although the answer decodes at v{used} and re-encodes"
            );
        }
        (Err(_), None) => {}
        (Ok(_), None) => panic!("v{version}: accepted an answer that decodes at neither v{version} nor v0"),
        (Ok(None), Some((used, (_, msg)))) => {
            assert_eq!(capped(&msg), msg, "v{version} (read at v{used}): left uncapped");
        }
        (Ok(Some(out)), Some((used, (header_len, msg)))) => {
            let len = i32::from_be_bytes([out[0], out[1], out[2], out[3]]);
            assert_eq!(len as usize, out.len() - 4, "length prefix");
            let payload = out.slice(4..);
            let (out_header_len, got) = decode(used, &payload)
                .unwrap_or_else(|| panic!("v{version}: the capped answer does not decode at v{used}"));
            assert_eq!(payload[..out_header_len], input[..header_len], "response header");
            let want = capped(&msg);
            assert_ne!(want, msg, "Some(frame) although nothing was capped");
            assert_eq!(got, want, "v{version} (read at v{used})");
            for k in &got.api_keys {
                if let Some(proxy) = versions::proxy_range(k.api_key) {
                    assert!(k.max_version <= proxy.max && k.min_version <= k.max_version);
                }
            }
        }
    }
});
