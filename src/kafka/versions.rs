//! The ApiVersions exchange, capped to the versions [`super::rewrite`] can decode.
//!
//! A client picks the highest version both sides support. For the APIs whose responses the proxy
//! rewrites, "both sides" must include the proxy: a client that used Metadata v14 through a proxy
//! that only knows v13 would get a response the proxy cannot rewrite. So the broker's ApiVersions
//! answer is capped per api key to what kafka-protocol can decode; every other api key (known or
//! not) passes as the broker sent it, which keeps the proxy working with brokers newer than its
//! protocol library.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeClusterRequest,
    DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse, FetchRequest,
    FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, ShareAcknowledgeRequest,
    ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
};
use kafka_protocol::protocol::{Message, VersionRange};

use super::rewrite::{decode_response, encode_frame, wire, RewriteError};

const API_VERSIONS: i16 = ApiKey::ApiVersions as i16;
/// Kafka error code UNSUPPORTED_VERSION.
const UNSUPPORTED_VERSION: i16 = 35;

/// Versions of a request/response pair that the proxy can both decode and encode.
const fn both<Req: Message, Resp: Message>() -> VersionRange {
    let (a, b) = (Req::VERSIONS, Resp::VERSIONS);
    VersionRange {
        min: if a.min > b.min { a.min } else { b.min },
        max: if a.max < b.max { a.max } else { b.max },
    }
}

/// The version range the proxy can decode for an API it rewrites (intersection of
/// `<XRequest as Message>::VERSIONS` and `<XResponse as Message>::VERSIONS` — NOT
/// `ApiKey::valid_versions`, which includes unstable versions), `None` for APIs it passes through
/// untouched (any version, any api key, known or not).
///
/// Used to cap the broker's ApiVersions answer, so clients only negotiate versions the proxy
/// can rewrite.
pub fn proxy_range(api_key: i16) -> Option<VersionRange> {
    let range = match ApiKey::try_from(api_key).ok()? {
        ApiKey::Produce => both::<ProduceRequest, ProduceResponse>(),
        ApiKey::Fetch => both::<FetchRequest, FetchResponse>(),
        ApiKey::Metadata => both::<MetadataRequest, MetadataResponse>(),
        ApiKey::FindCoordinator => both::<FindCoordinatorRequest, FindCoordinatorResponse>(),
        ApiKey::ApiVersions => both::<ApiVersionsRequest, ApiVersionsResponse>(),
        ApiKey::DescribeQuorum => both::<DescribeQuorumRequest, DescribeQuorumResponse>(),
        ApiKey::DescribeCluster => both::<DescribeClusterRequest, DescribeClusterResponse>(),
        ApiKey::ShareFetch => both::<ShareFetchRequest, ShareFetchResponse>(),
        ApiKey::ShareAcknowledge => both::<ShareAcknowledgeRequest, ShareAcknowledgeResponse>(),
        _ => return None,
    };
    Some(range)
}

/// Highest ApiVersions request version the proxy can decode the response of.
///
/// The connection answers a client asking for more with [`unsupported_api_versions_response`]
/// instead of forwarding, as a broker would.
pub const API_VERSIONS_MAX: i16 = both::<ApiVersionsRequest, ApiVersionsResponse>().max;

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

/// Rewrites an ApiVersions response (called through [`super::rewrite::rewrite_response`]): for
/// every api key with a [`proxy_range`], min = broker min (kept on purpose: Kafka 4.x advertises
/// Produce min 0, KAFKA-18659), max = min(broker max, proxy max); an api key whose intersection
/// is empty is dropped; all other keys (including unknown ones) are untouched. When decoding at
/// the requested version fails, the broker answered in v0 format (its UNSUPPORTED_VERSION
/// fallback): decode and re-encode at v0. `Ok(None)` if nothing changed.
pub(crate) fn rewrite_api_versions(
    version: i16,
    frame: &Bytes,
) -> Result<Option<Bytes>, RewriteError> {
    let decoded = if (0..=API_VERSIONS_MAX).contains(&version) {
        decode_response::<ApiVersionsResponse>(API_VERSIONS, version, 0, frame, wire::api_versions)
            .map(|(len, msg)| (version, len, msg))
    } else {
        Err(RewriteError::UnsupportedVersion {
            api_key: API_VERSIONS,
            version,
        })
    };
    let (used, header_len, mut msg) = match decoded {
        Ok(ok) => ok,
        Err(first) if version != 0 => {
            match decode_response::<ApiVersionsResponse>(
                API_VERSIONS,
                0,
                0,
                frame,
                wire::api_versions,
            ) {
                Ok((len, msg)) => (0, len, msg),
                // Report the failure at the version the client asked for.
                Err(_) => return Err(first),
            }
        }
        Err(e) => return Err(e),
    };

    if !cap(&mut msg) {
        return Ok(None);
    }
    encode_frame(API_VERSIONS, used, &frame[..header_len], &msg).map(Some)
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
