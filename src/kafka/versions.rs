//! The ApiVersions exchange, capped to the versions [`super::rewrite`] can decode.
//!
//! A client picks the highest version both sides support. For the APIs whose responses the proxy
//! rewrites, "both sides" must include the proxy: a client that used Metadata v14 through a proxy
//! that only knows v13 would get a response the proxy cannot rewrite. So the broker's ApiVersions
//! answer is capped per api key to what kafka-protocol can decode; every other api key (known or
//! not) passes as the broker sent it, which keeps the proxy working with brokers newer than its
//! protocol library.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

use super::codec::{self, versions_of, CodecError};
use super::rewrite::{self, RewriteError};
use super::wire;

/// Kafka error code UNSUPPORTED_VERSION.
/// ApiVersions' api key, the one the proxy answers and caps itself (from the crate's [`ApiKey`]).
pub const API_VERSIONS: i16 = ApiKey::ApiVersions as i16;

const UNSUPPORTED_VERSION: i16 = 35;

/// The version range the proxy can decode for an API it inspects (ApiVersions itself, every
/// entry of [`rewrite::INSPECTED`] and of [`super::scrub::TEXT_CARRYING`], both for an API in
/// both), `None` for APIs it passes through untouched (any version, any api key, known or not).
///
/// Used to cap the broker's ApiVersions answer, so clients only negotiate versions the proxy
/// can rewrite.
pub fn proxy_range(api_key: i16) -> Option<VersionRange> {
    if api_key == API_VERSIONS {
        return Some(versions_of::<ApiVersionsRequest, ApiVersionsResponse>());
    }
    let text = super::scrub::text_carrying(api_key).map(|t| t.versions);
    let addresses = rewrite::inspected(api_key).map(|i| i.versions);
    match (text, addresses) {
        // An API in both tables: the versions both can walk.
        (Some(t), Some(a)) => Some(VersionRange {
            min: t.min.max(a.min),
            max: t.max.min(a.max),
        }),
        (t, a) => t.or(a),
    }
}

/// Highest ApiVersions request version the proxy can decode the response of.
///
/// The connection answers a client asking for more with [`unsupported_api_versions_response`]
/// instead of forwarding, as a broker would.
pub const API_VERSIONS_MAX: i16 = versions_of::<ApiVersionsRequest, ApiVersionsResponse>().max;

/// The broker-style answer to an ApiVersions request at a version above [`API_VERSIONS_MAX`]:
/// v0-format body, error 35 UNSUPPORTED_VERSION, api_keys = `[{18, 0, API_VERSIONS_MAX}]`;
/// the COMPLETE frame including the length prefix; header v0 with `correlation_id`.
///
/// Clients react to it by retrying ApiVersions at the highest version listed.
pub fn unsupported_api_versions_response(correlation_id: i32) -> Bytes {
    // correlation_id, error_code, api_keys count, one (api_key, min, max).
    const BODY_LEN: usize = 4 + 2 + 4 + 3 * 2;
    let mut out = BytesMut::with_capacity(4 + BODY_LEN);
    out.put_i32(BODY_LEN as i32);
    out.put_i32(correlation_id);
    out.put_i16(UNSUPPORTED_VERSION);
    out.put_i32(1);
    out.put_i16(API_VERSIONS);
    out.put_i16(0);
    out.put_i16(API_VERSIONS_MAX);
    out.freeze()
}

/// Rewrites an ApiVersions response: for
/// every api key with a [`proxy_range`], min = broker min (kept on purpose: Kafka 4.x advertises
/// Produce min 0, KAFKA-18659), max = min(broker max, proxy max); an api key whose intersection
/// is empty is dropped; all other keys (including unknown ones) are untouched. When decoding at
/// the requested version fails, the broker answered in v0 format (its UNSUPPORTED_VERSION
/// fallback): decode and re-encode at v0. `Ok(None)` if nothing changed.
pub fn rewrite_api_versions(version: i16, frame: &Bytes) -> Result<Option<Bytes>, RewriteError> {
    let decoded = if (0..=API_VERSIONS_MAX).contains(&version) {
        codec::decode_response::<ApiVersionsResponse>(
            API_VERSIONS,
            version,
            0,
            frame,
            wire::api_versions,
        )
        .map(|(len, msg)| (version, len, msg))
    } else {
        Err(CodecError::UnsupportedVersion {
            api_key: API_VERSIONS,
            version,
        })
    };
    let (used, header_len, mut msg) = match decoded {
        Ok(ok) => ok,
        Err(first) if version != 0 => {
            match codec::decode_response::<ApiVersionsResponse>(
                API_VERSIONS,
                0,
                0,
                frame,
                wire::api_versions,
            ) {
                Ok((len, msg)) => (0, len, msg),
                // Report the failure at the version the client asked for.
                Err(_) => return Err(first.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };

    if !cap(&mut msg) {
        return Ok(None);
    }
    Ok(Some(codec::encode_frame(
        API_VERSIONS,
        used,
        &frame[..header_len],
        &msg,
    )?))
}

/// Caps the advertised versions in place; true if anything changed.
fn cap(msg: &mut ApiVersionsResponse) -> bool {
    let before = msg.api_keys.len();
    let mut changed = false;
    msg.api_keys.retain_mut(|k| {
        let Some(proxy) = proxy_range(k.api_key) else {
            return true;
        };
        let max = k.max_version.min(proxy.max);
        if k.min_version.max(proxy.min) > max {
            return false;
        }
        if max != k.max_version {
            k.max_version = max;
            changed = true;
        }
        true
    });
    changed || msg.api_keys.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::{inspect_response as rewrite_response, needs_inspection};
    use bytes::Buf;
    use kafka_protocol::messages::api_versions_response::{
        ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
    };
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use std::collections::BTreeMap;

    struct NoMapper;

    impl crate::kafka::AddressMapper for NoMapper {
        fn map_broker(
            &mut self,
            node_id: i32,
            host: &str,
            port: i32,
        ) -> Result<crate::kafka::Advertised, crate::kafka::MapError> {
            panic!("ApiVersions maps no broker ({node_id} {host}:{port})")
        }
        fn map_controller(
            &mut self,
            node_id: i32,
            host: &str,
            port: i32,
        ) -> crate::kafka::Advertised {
            panic!("ApiVersions maps no controller ({node_id} {host}:{port})")
        }
    }

    fn key(api_key: i16, min: i16, max: i16) -> ApiVersion {
        ApiVersion::default()
            .with_api_key(api_key)
            .with_min_version(min)
            .with_max_version(max)
    }

    fn payload(version: i16, msg: &ApiVersionsResponse) -> Bytes {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(77)
            .encode(&mut buf, 0)
            .expect("header");
        msg.encode(&mut buf, version).expect("body");
        buf.freeze()
    }

    fn decode(version: i16, frame: &Bytes) -> (i32, ApiVersionsResponse) {
        let mut buf = frame.clone();
        let len = buf.get_i32();
        assert_eq!(len as usize, buf.len(), "length prefix");
        let header = ResponseHeader::decode(&mut buf, 0).expect("header");
        let msg = ApiVersionsResponse::decode(&mut buf, version).expect("body");
        assert!(buf.is_empty(), "trailing bytes");
        (header.correlation_id, msg)
    }

    /// What a Kafka 4.2 broker might advertise, with versions beyond kafka-protocol 0.18.0.
    fn broker_answer(version: i16) -> ApiVersionsResponse {
        let mut m = ApiVersionsResponse::default().with_api_keys(vec![
            key(0, 0, 14),   // Produce: min 0 on purpose (KAFKA-18659), max above ours
            key(1, 4, 19),   // Fetch
            key(3, 0, 13),   // Metadata: already within ours
            key(8, 2, 10),   // OffsetCommit: not rewritten, passes even at unstable 10
            key(18, 0, 5),   // ApiVersions v5 (Kafka 4.4)
            key(60, 0, 2),   // DescribeCluster
            key(78, 0, 0),   // ShareFetch v0 only: no overlap with ours (1) -> dropped
            key(9999, 0, 3), // unknown api key passes
        ]);
        if version >= 1 {
            m.throttle_time_ms = 0;
        }
        if version >= 3 {
            m.supported_features = vec![SupportedFeatureKey::default()
                .with_name(StrBytes::from_static_str("metadata.version"))
                .with_min_version(1)
                .with_max_version(27)];
            m.finalized_features_epoch = 1234;
            m.finalized_features = vec![FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str("metadata.version"))
                .with_min_version_level(27)
                .with_max_version_level(27)];
            m.zk_migration_ready = true;
            m.unknown_tagged_fields = BTreeMap::from([(9, Bytes::from_static(b"later"))]);
        }
        m
    }

    fn ranges(m: &ApiVersionsResponse) -> Vec<(i16, i16, i16)> {
        m.api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect()
    }

    #[test]
    fn proxy_ranges_come_from_request_and_response_versions() {
        let r = |k| proxy_range(k).map(|r| (r.min, r.max));
        assert_eq!(r(0), Some((3, 13)));
        assert_eq!(r(1), Some((4, 18)));
        assert_eq!(r(3), Some((0, 13)));
        assert_eq!(r(10), Some((0, 6)));
        assert_eq!(r(18), Some((0, 4)));
        assert_eq!(r(55), Some((0, 2)));
        assert_eq!(r(60), Some((0, 2)));
        assert_eq!(r(78), Some((1, 1)));
        assert_eq!(r(79), Some((1, 1)));
        // Pass-through APIs: any version, known or not.
        assert_eq!(r(8), None);
        assert_eq!(r(22), None);
        assert_eq!(r(9999), None);
        assert_eq!(r(-1), None);
        assert_eq!(API_VERSIONS_MAX, 4);
    }

    #[test]
    fn every_inspected_api_has_a_proxy_range() {
        for api_key in [0, 1, 3, 10, 18, 55, 60, 78, 79] {
            let range = proxy_range(api_key).expect("range");
            assert!(needs_inspection(api_key, range.max), "api {api_key}");
        }
    }

    #[test]
    fn caps_drops_and_keeps_at_every_version() {
        for version in 0..=API_VERSIONS_MAX {
            let input = payload(version, &broker_answer(version));
            let out = rewrite_api_versions(version, &input)
                .expect("rewrite")
                .expect("changed");
            let (correlation_id, got) = decode(version, &out);
            assert_eq!(correlation_id, 77);
            assert_eq!(
                ranges(&got),
                vec![
                    (0, 0, 13),
                    (1, 4, 18),
                    (3, 0, 13),
                    (8, 2, 10),
                    (18, 0, 4),
                    (60, 0, 2),
                    (9999, 0, 3),
                ],
                "v{version}"
            );
            // Everything but api_keys is as the broker sent it.
            let mut expected = {
                let mut buf = input.clone();
                ResponseHeader::decode(&mut buf, 0).expect("header");
                ApiVersionsResponse::decode(&mut buf, version).expect("body")
            };
            expected.api_keys = got.api_keys.clone();
            assert_eq!(got, expected, "v{version}");
            if version >= 3 {
                assert_eq!(got.finalized_features_epoch, 1234);
                assert!(got.zk_migration_ready);
                assert_eq!(got.supported_features[0].max_version, 27);
                assert_eq!(got.unknown_tagged_fields[&9], Bytes::from_static(b"later"));
            }
        }
    }

    #[test]
    fn nothing_to_cap_passes_unchanged() {
        let m = ApiVersionsResponse::default().with_api_keys(vec![
            key(0, 0, 12),
            key(3, 0, 12),
            key(18, 0, 4),
            key(9999, 0, 3),
        ]);
        let input = payload(3, &m);
        assert!(rewrite_api_versions(3, &input).expect("ok").is_none());
        // Through the public entry point as well.
        assert!(rewrite_response(18, 3, &input, &mut NoMapper)
            .expect("ok")
            .is_none());
    }

    #[test]
    fn decodes_the_brokers_v0_fallback() {
        // The client asked v4; a broker that does not support it answers in v0 format.
        let fallback = ApiVersionsResponse::default()
            .with_error_code(35)
            .with_api_keys(vec![key(18, 0, 3)]);
        let input = payload(0, &fallback);
        assert!(rewrite_api_versions(4, &input)
            .expect("v0 fallback")
            .is_none());

        let fallback = ApiVersionsResponse::default()
            .with_error_code(35)
            .with_api_keys(vec![key(18, 0, 7)]);
        let input = payload(0, &fallback);
        let out = rewrite_response(18, 4, &input, &mut NoMapper)
            .expect("v0 fallback")
            .expect("capped");
        let (correlation_id, got) = decode(0, &out);
        assert_eq!(correlation_id, 77);
        assert_eq!(got.error_code, 35);
        assert_eq!(ranges(&got), vec![(18, 0, 4)]);
    }

    #[test]
    fn unsupported_version_answer_is_a_v0_response() {
        let frame = unsupported_api_versions_response(-559_038_737);
        assert_eq!(frame.len(), 20);
        let (correlation_id, got) = decode(0, &frame);
        assert_eq!(correlation_id, -559_038_737);
        assert_eq!(got.error_code, 35);
        assert_eq!(ranges(&got), vec![(18, 0, API_VERSIONS_MAX)]);
    }

    #[test]
    fn malformed_answers_are_errors() {
        let input = payload(3, &broker_answer(3));
        for len in 0..input.len() {
            let cut = input.slice(..len);
            assert!(rewrite_api_versions(3, &cut).is_err(), "cut at {len}");
        }
        let input = payload(0, &broker_answer(0));
        for len in 0..input.len() {
            let cut = input.slice(..len);
            assert!(rewrite_api_versions(0, &cut).is_err(), "v0 cut at {len}");
        }
        // A version the proxy cannot decode, with a body that is not v0 either.
        assert!(rewrite_api_versions(5, &payload(3, &broker_answer(3))).is_err());
    }
}
