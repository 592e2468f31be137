//! The rewrite by splicing (src/kafka/rewrite.rs `rewrite_response`, what the proxy runs)
//! against the decode-based rewrite it replaced (`rewrite::oracle::rewrite_response`: decode
//! with kafka-protocol, edit, re-encode), on the same bytes with mappers that answer alike.
//!
//! Input: one byte choosing the mapper ([`Answers`]), then the `rewrite` target's format
//! ([`split_keyed`] over the inspected api keys: key byte, version byte, response payload). The
//! `rewrite` target's seeds serve here with one byte in front.
//!
//! Invariants, for every inspected API and version:
//! - no panic; both refuse the same payloads (the splice's strict walk refuses what
//!   kafka-protocol's decode refuses, and nothing else), and fail the same way otherwise: the
//!   same unknown node (`MapError`), the same controller port, an unencodable host in both;
//! - the mapper is asked the same questions in the same order;
//! - both pass the original bytes (`None`) or both rewrite; the two frames decode to the same
//!   message, and are the same bytes whenever the input is what kafka-protocol itself encodes
//!   (re-encoding the decoded input gives the input back; a boolean sent as 0x7f, a
//!   non-minimal varint or unknown tags out of order are kept by the splice, normalized by the
//!   decode).
//!
//! One known difference: kafka-protocol decodes an unknown tag above `i32::MAX` but cannot
//! re-encode it (its size computation counts the tag, its encoder skips it: "encoded N bytes,
//! computed M"), so the decode path fails where the splice, which re-encodes nothing, forwards
//! the tag as it came. There the splice's frame must still decode.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterResponse, DescribeQuorumResponse, FetchResponse,
    FindCoordinatorResponse, MetadataResponse, ProduceResponse, ShareAcknowledgeResponse,
    ShareFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use kafka_tls_proxy::kafka::codec::{self, CodecError};
use kafka_tls_proxy::kafka::rewrite::{self, oracle, RewriteError};
use kafka_tls_proxy::kafka::wire::{self, WalkFn};
use kafka_tls_proxy::kafka::{AddressMapper, Advertised, MapError};
use ktp_fuzz::split_keyed;
use libfuzzer_sys::fuzz_target;

/// What the mapper answers, chosen by the input's first byte.
#[derive(Debug, Clone, Copy)]
enum Answers {
    /// Every broker and controller to `proxy.local` (brokers port 9092, controllers 0).
    Short,
    /// A 200-byte host: every host grows, compact lengths and the tagged size cross 127.
    Long,
    /// The address it was given: nothing changes.
    Same,
    /// Brokers with an even node id are unknown (`MapError`); controllers get port 70000,
    /// which DescribeQuorum's uint16 cannot carry.
    Failing,
}

/// Records every question; answers as its [`Answers`] says.
struct Mapper {
    answers: Answers,
    asked: Vec<(&'static str, i32, String, i32)>,
}

const LONG_HOST: &str = "proxy-with-a-long-name.0123456789012345678901234567890123456789\
                         0123456789012345678901234567890123456789012345678901234567890123456789\
                         012345678901234567890123456789012345678901234567890123456789.example";

impl Mapper {
    fn new(answers: Answers) -> Self {
        Self {
            answers,
            asked: Vec::new(),
        }
    }

    fn host(&self, host: &str) -> StrBytes {
        match self.answers {
            Answers::Long => StrBytes::from_static_str(LONG_HOST),
            Answers::Same => StrBytes::from_string(host.to_owned()),
            _ => StrBytes::from_static_str("proxy.local"),
        }
    }
}

impl AddressMapper for Mapper {
    fn map_broker(&mut self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError> {
        self.asked.push(("broker", node_id, host.to_owned(), port));
        if matches!(self.answers, Answers::Failing) && node_id % 2 == 0 {
            return Err(MapError { node_id });
        }
        let port = if matches!(self.answers, Answers::Same) {
            port
        } else {
            9092
        };
        Ok(Advertised {
            host: self.host(host),
            port,
        })
    }

    fn map_controller(&mut self, node_id: i32, host: &str, port: i32) -> Advertised {
        self.asked
            .push(("controller", node_id, host.to_owned(), port));
        let port = match self.answers {
            Answers::Same => port,
            Answers::Failing => 70_000,
            _ => 0,
        };
        Advertised {
            host: self.host(host),
            port,
        }
    }
}

/// Checks the length prefix of a rewritten frame and returns its payload.
fn unframe(frame: &Bytes) -> Bytes {
    assert!(frame.len() >= 4);
    let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    assert_eq!(len as usize, frame.len() - 4, "length prefix");
    frame.slice(4..)
}

/// Compares the two rewritten frames of a response of type `M`.
fn same_message<M>(
    key: i16,
    version: i16,
    input: &Bytes,
    spliced: &Bytes,
    decoded: &Bytes,
    walk: WalkFn,
) where
    M: Message + Decodable + Encodable + PartialEq + std::fmt::Debug,
{
    let hv = codec::response_header_version(key, version);
    let decode = |payload: &Bytes| {
        codec::decode_response::<M>(key, version, hv, payload, walk).unwrap_or_else(|e| {
            panic!("api {key} v{version}: a rewritten frame does not decode: {e}")
        })
    };
    let (spliced_header, spliced_msg) = decode(&unframe(spliced));
    let (decoded_header, decoded_msg) = decode(&unframe(decoded));
    assert_eq!(
        spliced[4..4 + spliced_header],
        decoded[4..4 + decoded_header],
        "response header"
    );
    assert_eq!(
        spliced_msg, decoded_msg,
        "api {key} v{version}: the splice and the decode disagree"
    );

    let (in_header, original) = decode(input);
    let again =
        codec::encode_frame(key, version, &input[..in_header], &original).expect("re-encodes");
    if again[4..] == input[..] {
        assert!(
            spliced == decoded,
            "api {key} v{version}: canonical input, different bytes"
        );
    }
}

/// Checks that a rewritten frame decodes at its api key and version.
fn decodes(key: i16, version: i16, frame: &Bytes) {
    fn check<M: Message + Decodable>(key: i16, version: i16, payload: &Bytes, walk: WalkFn) {
        let hv = codec::response_header_version(key, version);
        if let Err(e) = codec::decode_response::<M>(key, version, hv, payload, walk) {
            panic!("api {key} v{version}: a rewritten frame does not decode: {e}");
        }
    }
    let p = unframe(frame);
    match ApiKey::try_from(key) {
        Ok(ApiKey::Metadata) => check::<MetadataResponse>(key, version, &p, wire::metadata),
        Ok(ApiKey::FindCoordinator) => {
            check::<FindCoordinatorResponse>(key, version, &p, wire::find_coordinator)
        }
        Ok(ApiKey::DescribeCluster) => {
            check::<DescribeClusterResponse>(key, version, &p, wire::describe_cluster)
        }
        Ok(ApiKey::DescribeQuorum) => {
            check::<DescribeQuorumResponse>(key, version, &p, wire::describe_quorum)
        }
        Ok(ApiKey::Produce) => check::<ProduceResponse>(key, version, &p, wire::produce),
        Ok(ApiKey::Fetch) => check::<FetchResponse>(key, version, &p, wire::fetch),
        Ok(ApiKey::ShareFetch) => check::<ShareFetchResponse>(key, version, &p, wire::share_fetch),
        Ok(ApiKey::ShareAcknowledge) => {
            check::<ShareAcknowledgeResponse>(key, version, &p, wire::share_acknowledge)
        }
        other => panic!("{other:?} is inspected but this target has no decode for it"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let answers = [
        Answers::Short,
        Answers::Long,
        Answers::Same,
        Answers::Failing,
    ][usize::from(mode % 4)];
    let keys: Vec<i16> = rewrite::INSPECTED.iter().map(|i| i.key as i16).collect();
    let Some((key, version, payload)) = split_keyed(&keys, rest) else {
        return;
    };
    let input = Bytes::copy_from_slice(payload);

    let mut splice_mapper = Mapper::new(answers);
    let spliced = rewrite::rewrite_response(key, version, &input, &mut splice_mapper);
    let mut decode_mapper = Mapper::new(answers);
    let decoded = oracle::rewrite_response(key, version, &input, &mut decode_mapper);
    assert_eq!(
        splice_mapper.asked, decode_mapper.asked,
        "api {key} v{version}: mapper calls"
    );

    let (spliced, decoded) = match (spliced, decoded) {
        (Ok(Some(a)), Ok(Some(b))) => (a, b),
        (Ok(None), Ok(None)) => return,
        (Err(RewriteError::Map(a)), Err(RewriteError::Map(b))) => {
            assert_eq!(a.node_id, b.node_id);
            return;
        }
        (
            Err(RewriteError::ControllerPort {
                node_id: a,
                port: p,
            }),
            Err(RewriteError::ControllerPort {
                node_id: b,
                port: q,
            }),
        ) => {
            assert_eq!((a, p), (b, q));
            return;
        }
        (Ok(Some(spliced)), Err(RewriteError::Codec(CodecError::Encode { reason, .. })))
            if reason.starts_with("encoded ") =>
        {
            decodes(key, version, &spliced);
            return;
        }
        (Err(RewriteError::Codec(a)), Err(RewriteError::Codec(b))) => {
            let kind = |e: &CodecError| std::mem::discriminant(e);
            assert_eq!(kind(&a), kind(&b), "api {key} v{version}: {a} / {b}");
            return;
        }
        (a, b) => panic!("api {key} v{version}: splice {a:?}, decode {b:?}"),
    };
    let Ok(api) = ApiKey::try_from(key) else {
        unreachable!()
    };
    match api {
        ApiKey::Metadata => same_message::<MetadataResponse>(
            key,
            version,
            &input,
            &spliced,
            &decoded,
            wire::metadata,
        ),
        ApiKey::FindCoordinator => same_message::<FindCoordinatorResponse>(
            key,
            version,
            &input,
            &spliced,
            &decoded,
            wire::find_coordinator,
        ),
        ApiKey::DescribeCluster => same_message::<DescribeClusterResponse>(
            key,
            version,
            &input,
            &spliced,
            &decoded,
            wire::describe_cluster,
        ),
        ApiKey::DescribeQuorum => same_message::<DescribeQuorumResponse>(
            key,
            version,
            &input,
            &spliced,
            &decoded,
            wire::describe_quorum,
        ),
        ApiKey::Produce => {
            same_message::<ProduceResponse>(key, version, &input, &spliced, &decoded, wire::produce)
        }
        ApiKey::Fetch => {
            same_message::<FetchResponse>(key, version, &input, &spliced, &decoded, wire::fetch)
        }
        ApiKey::ShareFetch => same_message::<ShareFetchResponse>(
            key,
            version,
            &input,
            &spliced,
            &decoded,
            wire::share_fetch,
        ),
        ApiKey::ShareAcknowledge => same_message::<ShareAcknowledgeResponse>(
            key,
            version,
            &input,
            &spliced,
            &decoded,
            wire::share_acknowledge,
        ),
        other => panic!("{other:?} is inspected but this target has no decode for it"),
    }
});
