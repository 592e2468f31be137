//! What the proxy reads in answer to its own requests (src/upstream.rs `exchange`, used by
//! `discover`, `api_versions` and the `check` command): one frame read with the 16 MiB limit,
//! the correlation id compared, then `codec::decode_response` of Metadata v12 (header v1,
//! `wire::metadata`) or ApiVersions v3 (header v0, `wire::api_versions`).
//!
//! A broker, or anything pretending to be one, chooses these bytes. An 18-byte Metadata answer
//! whose broker count said 2^32-2 once made kafka-protocol reserve ~400 GB and abort the
//! process; the seed corpus keeps that input. Invariants: no panic and no allocation beyond
//! `-rss_limit_mb` / `-malloc_limit_mb`; a decoded answer that re-encodes decodes to itself.
#![no_main]

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsResponse, MetadataResponse};
use kafka_protocol::protocol::{Decodable, Encodable, Message};
use kafka_tls_proxy::kafka::{codec, frame, frame::FrameReader, wire, wire::WalkFn};
use ktp_fuzz::{OwnRequest, MAX_OWN_RESPONSE_BYTES, OWN_CORRELATION_ID, OWN_REQUESTS};
use libfuzzer_sys::fuzz_target;

fn read<M>(own: OwnRequest, answer: &[u8], walk: WalkFn)
where
    M: Message + Decodable + Encodable + PartialEq + std::fmt::Debug,
{
    // exchange(): frames from the socket buffer, then the correlation id, then the decode.
    let reader = FrameReader::new(MAX_OWN_RESPONSE_BYTES);
    let mut buf = BytesMut::from(answer);
    let Ok(Some(frame)) = reader.next_frame(&mut buf) else {
        return;
    };
    let frame = frame.freeze();
    if frame::response_correlation_id(&frame) != Ok(OWN_CORRELATION_ID) {
        return;
    }
    let key = own.api_key as i16;
    let payload = frame.slice(frame::LENGTH_PREFIX..);
    let Ok((header_len, msg)) =
        codec::decode_response::<M>(key, own.version, own.header_version, &payload, walk)
    else {
        return;
    };
    // The proxy never re-encodes these; where kafka-protocol can (it cannot with an unknown tag
    // >= 2^31, which it decodes to a negative key), the result must decode to the same message.
    let Ok(again) = codec::encode_frame(key, own.version, &payload[..header_len], &msg) else {
        return;
    };
    let again: Bytes = again.slice(frame::LENGTH_PREFIX..);
    let (_, back) = codec::decode_response::<M>(key, own.version, own.header_version, &again, walk)
        .expect("the re-encoded answer decodes");
    assert_eq!(back, msg);
}

fuzz_target!(|data: &[u8]| {
    let [which, answer @ ..] = data else {
        return;
    };
    let own = OWN_REQUESTS[usize::from(*which) % OWN_REQUESTS.len()];
    match own.api_key {
        kafka_protocol::messages::ApiKey::Metadata => {
            read::<MetadataResponse>(own, answer, wire::metadata)
        }
        kafka_protocol::messages::ApiKey::ApiVersions => {
            read::<ApiVersionsResponse>(own, answer, wire::api_versions)
        }
        other => unreachable!("{other:?}"),
    }
});
