//! Broker address rewriting (src/kafka/rewrite.rs through `kafka::inspect_response`): a
//! response of one of the APIs whose answers carry broker addresses, or ApiVersions, at a
//! version taken from the input, rewritten with a mapper that sends every broker to one proxy
//! address.
//!
//! Invariants, for every API and version:
//! - no panic, and an error only for a payload that the proxy's own decoding
//!   (`codec::decode_response`: wire walk, then kafka-protocol) refuses too;
//! - `Ok(Some(frame))`: the length prefix is right, the frame decodes at the same version, its
//!   response header is the input's byte for byte, and it is the input message with exactly the
//!   address fields (the ones the mapper was asked about) replaced by the mapper's answers;
//! - `Ok(None)` (forward the original bytes): the input names no address the mapper would change;
//! - no host the mapper was asked about survives in the output bytes (see [`leak_check`]).
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeClusterResponse, DescribeQuorumResponse, FetchResponse,
    FindCoordinatorResponse, MetadataResponse, ProduceResponse, ShareAcknowledgeResponse,
    ShareFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use kafka_tls_proxy::kafka::{self, codec, rewrite::RewriteError, wire, wire::WalkFn};
use ktp_fuzz::{count, is_host_byte, split_keyed, FixedMapper, CONTROLLER_PORT, PROXY_HOST, PROXY_PORT};
use libfuzzer_sys::fuzz_target;

type Rewritten = Result<Option<Bytes>, RewriteError>;

fn proxy_host() -> StrBytes {
    StrBytes::from_static_str(PROXY_HOST)
}

fn length_prefixed(frame: &Bytes) -> Bytes {
    assert!(frame.len() >= 4);
    let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    assert_eq!(len as usize, frame.len() - 4, "length prefix");
    frame.slice(4..)
}

/// Hosts the mapper was asked about must not be in the output, beyond what the input also has
/// outside its address fields.
///
/// The output is a baseline with the address fields replaced: the input itself when the rewrite
/// splices, the decoded input re-encoded (header bytes + body) when it re-encodes. Outside the
/// replaced fields (length prefix, host, port) and a changed tagged-field size, output and
/// baseline are the same bytes. A host made
/// only of host-name bytes and at least 8 long can only occur within a run of host-name bytes;
/// in the output every replaced host is `proxy.local` between a length prefix (00 0b or 0c) and a
/// port (00 00 23 84 / 23 85), none of them host-name bytes, and a changed tagged-field size
/// starts a run of at most 6 such bytes (size, count, node id; then 0c). So each occurrence in
/// the output has one in the baseline outside the address fields, and each address field that
/// held the host was one more occurrence in the baseline.
fn leak_check(out: &[u8], input: &[u8], reencoded: &[u8], asked: &[(i32, String)]) {
    for (_, host) in asked {
        let h = host.as_bytes();
        if h.len() < 8 || !h.iter().all(|&b| is_host_byte(b)) || PROXY_HOST.contains(host.as_str()) {
            continue;
        }
        let fields = asked.iter().filter(|(_, a)| a == host).count();
        let left = count(out, h);
        let before = count(input, h).max(count(reencoded, h));
        assert!(
            left + fields <= before,
            "upstream host {host:?} still in the output: {left} times; input {before} times, {fields} as an address"
        );
    }
}

/// Checks one rewrite of a response of type `M` against the oracle `edit`, which replaces the
/// address fields the rewrite must replace and returns how many there are.
fn check<M>(
    key: i16,
    version: i16,
    input: &Bytes,
    result: &Rewritten,
    walk: WalkFn,
    asked: &[(i32, String)],
    edit: fn(&mut M, i16) -> usize,
) where
    M: Message + Decodable + Encodable + Clone + PartialEq + std::fmt::Debug,
{
    let header_version = codec::response_header_version(key, version);
    let decoded = codec::decode_response::<M>(key, version, header_version, input, walk);
    match (result, decoded) {
        (Ok(Some(out)), Ok((in_header_len, original))) => {
            let payload = length_prefixed(out);
            let (out_header_len, got) =
                codec::decode_response::<M>(key, version, header_version, &payload, walk)
                    .unwrap_or_else(|e| panic!("api {key} v{version}: the rewritten response does not decode: {e}"));
            assert_eq!(payload[..out_header_len], input[..in_header_len], "response header");
            let mut want = original.clone();
            let n = edit(&mut want, version);
            assert_eq!(asked.len(), n, "mapper calls");
            assert_eq!(got, want, "api {key} v{version}: the rewrite changed more or less than the addresses");
            // The rewrite either splices the new addresses into the original bytes or re-encodes
            // the decoded message: the input and its re-encoding are the two baselines.
            let reencoded = codec::encode_frame(key, version, &input[..in_header_len], &original)
                .map(|f| f.slice(4..))
                .unwrap_or_default();
            leak_check(&payload, input, &reencoded, asked);
        }
        (Ok(Some(_)), Err(e)) => panic!("api {key} v{version}: rewritten, but the input does not decode: {e}"),
        (Ok(None), Ok((_, original))) => {
            let mut want = original.clone();
            let n = edit(&mut want, version);
            assert_eq!(asked.len(), n, "mapper calls");
            assert_eq!(want, original, "api {key} v{version}: passed unchanged with addresses to rewrite");
        }
        (Ok(None), Err(_)) => {
            // Only where the response cannot carry an address at this version, or a Produce/Fetch
            // whose walk found no node_endpoints (the node_endpoints target checks that walk).
            assert!(asked.is_empty());
        }
        // Refusing a response is always safe (the connection closes): the rewrite may be
        // stricter than kafka-protocol.
        (Err(_), _) => {}
    }
}

fn set(host: &mut StrBytes, port: &mut i32, to_port: i32) -> usize {
    *host = proxy_host();
    *port = to_port;
    1
}

fn metadata(m: &mut MetadataResponse, _: i16) -> usize {
    m.brokers.iter_mut().map(|b| set(&mut b.host, &mut b.port, PROXY_PORT)).sum()
}

fn find_coordinator(m: &mut FindCoordinatorResponse, version: i16) -> usize {
    if version <= 3 {
        if m.node_id.0 >= 0 && m.error_code == 0 {
            return set(&mut m.host, &mut m.port, PROXY_PORT);
        }
        return 0;
    }
    m.coordinators
        .iter_mut()
        .filter(|c| c.node_id.0 >= 0 && c.error_code == 0)
        .map(|c| set(&mut c.host, &mut c.port, PROXY_PORT))
        .sum()
}

fn describe_cluster(m: &mut DescribeClusterResponse, _: i16) -> usize {
    let port = if m.endpoint_type == 2 { CONTROLLER_PORT } else { PROXY_PORT };
    m.brokers.iter_mut().map(|b| set(&mut b.host, &mut b.port, port)).sum()
}

fn describe_quorum(m: &mut DescribeQuorumResponse, _: i16) -> usize {
    let mut n = 0;
    for l in m.nodes.iter_mut().flat_map(|node| node.listeners.iter_mut()) {
        l.host = proxy_host();
        l.port = CONTROLLER_PORT as u16;
        n += 1;
    }
    n
}

macro_rules! node_endpoints {
    ($name:ident, $ty:ty) => {
        fn $name(m: &mut $ty, _: i16) -> usize {
            m.node_endpoints.iter_mut().map(|e| set(&mut e.host, &mut e.port, PROXY_PORT)).sum()
        }
    };
}
node_endpoints!(produce, ProduceResponse);
node_endpoints!(fetch, FetchResponse);
node_endpoints!(share_fetch, ShareFetchResponse);
node_endpoints!(share_acknowledge, ShareAcknowledgeResponse);

fn api_versions(version: i16, input: &Bytes, result: &Rewritten) {
    let Ok(Some(out)) = result else { return };
    let payload = length_prefixed(out);
    // The answer is re-encoded at the requested version, or at v0 when the broker fell back.
    let decodes = |v: i16| {
        codec::decode_response::<ApiVersionsResponse>(18, v, 0, &payload, wire::api_versions).is_ok()
    };
    assert!(decodes(version) || decodes(0), "v{version}: the capped ApiVersions does not decode");
    assert_eq!(payload[..4], input[..4], "correlation id");
}

fuzz_target!(|data: &[u8]| {
    let keys = ktp_fuzz::rewrite_keys();
    let Some((key, version, payload)) = split_keyed(&keys, data) else {
        return;
    };
    let input = Bytes::copy_from_slice(payload);
    let mut mapper = FixedMapper::default();
    let result = kafka::inspect_response(key, version, &input, &mut mapper);
    let asked = &mapper.asked;
    let Ok(api) = ApiKey::try_from(key) else { unreachable!() };
    match api {
        ApiKey::ApiVersions => api_versions(version, &input, &result),
        ApiKey::Metadata => check(key, version, &input, &result, wire::metadata, asked, metadata),
        ApiKey::FindCoordinator => {
            check(key, version, &input, &result, wire::find_coordinator, asked, find_coordinator)
        }
        ApiKey::DescribeCluster => {
            check(key, version, &input, &result, wire::describe_cluster, asked, describe_cluster)
        }
        ApiKey::DescribeQuorum => {
            check(key, version, &input, &result, wire::describe_quorum, asked, describe_quorum)
        }
        ApiKey::Produce => check(key, version, &input, &result, wire::produce, asked, produce),
        ApiKey::Fetch => check(key, version, &input, &result, wire::fetch, asked, fetch),
        ApiKey::ShareFetch => check(key, version, &input, &result, wire::share_fetch, asked, share_fetch),
        ApiKey::ShareAcknowledge => {
            check(key, version, &input, &result, wire::share_acknowledge, asked, share_acknowledge)
        }
        other => panic!("{other:?} is inspected but this target has no oracle for it"),
    }
});
