//! Rewrites the broker addresses in the responses that carry them.
//!
//! A client must never learn an upstream broker address: it would dial it in plaintext against a
//! mutual-TLS port. Every response listed in `shared/kafka-facts.md` is therefore decoded, each
//! broker entry is passed through the [`AddressMapper`], and the response is re-encoded. Everything
//! else in the message (throttle times, errors, partitions, record bytes, unknown tagged fields)
//! survives unchanged.
//!
//! [`INSPECTED`] is the one list of those APIs: which versions the proxy can decode, from which
//! version a response may carry an address, how to walk it and how to rewrite it. The
//! connection's per-request check ([`needs_inspection`]), the ApiVersions capping
//! ([`super::versions`]) and the dispatch here all read it.
//!
//! Produce and Fetch responses are the hot path: they only carry addresses (`node_endpoints`, a
//! top-level tagged field) after a leader change. The [`wire`] walker checks for that field
//! without decoding, and the original bytes pass untouched when it is absent or empty.

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes, VersionRange};

use super::codec::{self, response_header_version, versions_of, CodecError};
use super::wire::{self, WalkFn};
use super::{AddressMapper, MapError};

/// Why a response could not be rewritten (the connection is then closed with this logged).
///
/// A response that carries broker addresses and cannot be rewritten must not reach the client,
/// so every failure is an error rather than a silent pass-through.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The response could not be decoded or re-encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The mapper gave a controller a port that DescribeQuorum cannot carry (it is a uint16 there).
    #[error("controller {node_id} mapped to port {port}, which does not fit DescribeQuorum's uint16 port")]
    ControllerPort {
        /// The controller's node id.
        node_id: i32,
        /// The port the mapper returned.
        port: i32,
    },
    /// The mapper could not serve a broker.
    #[error(transparent)]
    Map(#[from] MapError),
}

/// Rewrites one response payload at one version; see [`rewrite_response`] for the contract.
type RewriteFn = fn(i16, &Bytes, WalkFn, &mut dyn AddressMapper) -> Rewritten;
/// What a rewrite returns: the new complete frame, or `None` to pass the original bytes.
type Rewritten = Result<Option<Bytes>, RewriteError>;

/// An API whose responses may carry broker addresses.
#[derive(Debug)]
pub struct Inspected {
    /// The API.
    pub key: ApiKey,
    /// Versions the proxy can decode and encode (request ∩ response in kafka-protocol); the
    /// ApiVersions answer is capped to this maximum.
    pub versions: VersionRange,
    /// First version whose response can carry a broker address; responses to older versions
    /// pass untouched.
    pub addresses_from: i16,
    /// The bounds check of the response body.
    walk: WalkFn,
    /// The rewrite.
    rewrite: RewriteFn,
}

/// Every API whose responses the proxy inspects for broker addresses (ApiVersions, whose answer
/// is capped rather than rewritten, lives in [`super::versions`]).
pub static INSPECTED: [Inspected; 8] = [
    Inspected {
        key: ApiKey::Metadata,
        versions: versions_of::<MetadataRequest, MetadataResponse>(),
        addresses_from: 0,
        walk: wire::metadata,
        rewrite: metadata,
    },
    Inspected {
        key: ApiKey::FindCoordinator,
        versions: versions_of::<FindCoordinatorRequest, FindCoordinatorResponse>(),
        addresses_from: 0,
        walk: wire::find_coordinator,
        rewrite: find_coordinator,
    },
    Inspected {
        key: ApiKey::DescribeCluster,
        versions: versions_of::<DescribeClusterRequest, DescribeClusterResponse>(),
        addresses_from: 0,
        walk: wire::describe_cluster,
        rewrite: describe_cluster,
    },
    Inspected {
        key: ApiKey::DescribeQuorum,
        versions: versions_of::<DescribeQuorumRequest, DescribeQuorumResponse>(),
        addresses_from: 2, // nodes[].listeners[]
        walk: wire::describe_quorum,
        rewrite: describe_quorum,
    },
    Inspected {
        key: ApiKey::Produce,
        versions: versions_of::<ProduceRequest, ProduceResponse>(),
        addresses_from: 10, // node_endpoints, KIP-951
        walk: wire::produce,
        rewrite: produce,
    },
    Inspected {
        key: ApiKey::Fetch,
        versions: versions_of::<FetchRequest, FetchResponse>(),
        addresses_from: 16, // node_endpoints, KIP-951
        walk: wire::fetch,
        rewrite: fetch,
    },
    Inspected {
        key: ApiKey::ShareFetch,
        versions: versions_of::<ShareFetchRequest, ShareFetchResponse>(),
        addresses_from: 0,
        walk: wire::share_fetch,
        rewrite: share_fetch,
    },
    Inspected {
        key: ApiKey::ShareAcknowledge,
        versions: versions_of::<ShareAcknowledgeRequest, ShareAcknowledgeResponse>(),
        addresses_from: 0,
        walk: wire::share_acknowledge,
        rewrite: share_acknowledge,
    },
];

/// The [`INSPECTED`] entry of an api key, if its responses may carry addresses.
pub fn inspected(api_key: i16) -> Option<&'static Inspected> {
    INSPECTED.iter().find(|i| i.key as i16 == api_key)
}

/// Cheap check the connection uses per request: true when the response to `api_key` at
/// `version` may carry broker addresses and must go through [`rewrite_response`].
pub fn needs_inspection(api_key: i16, version: i16) -> bool {
    inspected(api_key).is_some_and(|i| version >= i.addresses_from)
}

/// Rewrites one response so that it names only proxy addresses.
///
/// `payload` is the response WITHOUT the 4-byte length prefix (response header + body). Returns
/// `Ok(None)` when the original bytes must pass unchanged (Produce/Fetch whose `node_endpoints`
/// is absent or empty, a version that carries no address, an api key that is not inspected),
/// or `Ok(Some(frame))` with the COMPLETE new frame INCLUDING the length prefix.
pub fn rewrite_response(
    api_key: i16,
    version: i16,
    payload: &Bytes,
    mapper: &mut dyn AddressMapper,
) -> Rewritten {
    match inspected(api_key) {
        Some(i) if version >= i.addresses_from => {
            if version > i.versions.max || version < i.versions.min {
                return Err(CodecError::UnsupportedVersion { api_key, version }.into());
            }
            (i.rewrite)(version, payload, i.walk, mapper)
        }
        _ => Ok(None),
    }
}

fn metadata(
    version: i16,
    payload: &Bytes,
    walk: WalkFn,
    mapper: &mut dyn AddressMapper,
) -> Rewritten {
    rewrite_with::<MetadataResponse>(ApiKey::Metadata, version, payload, walk, |msg| {
        let mut changed = false;
        for b in &mut msg.brokers {
            changed |= map_broker(mapper, b.node_id.0, &mut b.host, &mut b.port)?;
        }
        Ok(changed)
    })
}

fn find_coordinator(
    version: i16,
    payload: &Bytes,
    walk: WalkFn,
    mapper: &mut dyn AddressMapper,
) -> Rewritten {
    rewrite_with::<FindCoordinatorResponse>(
        ApiKey::FindCoordinator,
        version,
        payload,
        walk,
        |msg| {
            let mut changed = false;
            if version <= 3 {
                if msg.node_id.0 >= 0 && msg.error_code == 0 {
                    changed |= map_broker(mapper, msg.node_id.0, &mut msg.host, &mut msg.port)?;
                }
            } else {
                for c in &mut msg.coordinators {
                    // An entry with an error names node -1 and no usable address.
                    if c.node_id.0 >= 0 && c.error_code == 0 {
                        changed |= map_broker(mapper, c.node_id.0, &mut c.host, &mut c.port)?;
                    }
                }
            }
            Ok(changed)
        },
    )
}

fn describe_cluster(
    version: i16,
    payload: &Bytes,
    walk: WalkFn,
    mapper: &mut dyn AddressMapper,
) -> Rewritten {
    rewrite_with::<DescribeClusterResponse>(
        ApiKey::DescribeCluster,
        version,
        payload,
        walk,
        |msg| {
            let mut changed = false;
            // endpoint_type 2 = controllers (KIP-919): they are not proxied, only hidden.
            let controllers = msg.endpoint_type == 2;
            for b in &mut msg.brokers {
                changed |= if controllers {
                    let adv = mapper.map_controller(b.broker_id.0, &b.host, b.port);
                    replace(&mut b.host, &mut b.port, adv.host, adv.port)
                } else {
                    map_broker(mapper, b.broker_id.0, &mut b.host, &mut b.port)?
                };
            }
            Ok(changed)
        },
    )
}

fn describe_quorum(
    version: i16,
    payload: &Bytes,
    walk: WalkFn,
    mapper: &mut dyn AddressMapper,
) -> Rewritten {
    rewrite_with::<DescribeQuorumResponse>(ApiKey::DescribeQuorum, version, payload, walk, |msg| {
        let mut changed = false;
        for node in &mut msg.nodes {
            let node_id = node.node_id.0;
            for l in &mut node.listeners {
                let adv = mapper.map_controller(node_id, &l.host, i32::from(l.port));
                let port = u16::try_from(adv.port).map_err(|_| RewriteError::ControllerPort {
                    node_id,
                    port: adv.port,
                })?;
                if adv.host != l.host || port != l.port {
                    l.host = adv.host;
                    l.port = port;
                    changed = true;
                }
            }
        }
        Ok(changed)
    })
}

fn share_fetch(
    version: i16,
    payload: &Bytes,
    walk: WalkFn,
    mapper: &mut dyn AddressMapper,
) -> Rewritten {
    rewrite_with::<ShareFetchResponse>(ApiKey::ShareFetch, version, payload, walk, |msg| {
        map_node_endpoints!(mapper, msg.node_endpoints)
    })
}

fn share_acknowledge(
    version: i16,
    payload: &Bytes,
    walk: WalkFn,
    mapper: &mut dyn AddressMapper,
) -> Rewritten {
    rewrite_with::<ShareAcknowledgeResponse>(
        ApiKey::ShareAcknowledge,
        version,
        payload,
        walk,
        |msg| map_node_endpoints!(mapper, msg.node_endpoints),
    )
}

fn produce(
    version: i16,
    payload: &Bytes,
    walk: WalkFn,
    mapper: &mut dyn AddressMapper,
) -> Rewritten {
    if !has_node_endpoints(ApiKey::Produce as i16, version, payload)? {
        return Ok(None);
    }
    rewrite_with::<ProduceResponse>(ApiKey::Produce, version, payload, walk, |msg| {
        map_node_endpoints!(mapper, msg.node_endpoints)
    })
}

fn fetch(version: i16, payload: &Bytes, walk: WalkFn, mapper: &mut dyn AddressMapper) -> Rewritten {
    if !has_node_endpoints(ApiKey::Fetch as i16, version, payload)? {
        return Ok(None);
    }
    rewrite_with::<FetchResponse>(ApiKey::Fetch, version, payload, walk, |msg| {
        map_node_endpoints!(mapper, msg.node_endpoints)
    })
}

/// Walks a Produce v10+ / Fetch v16+ response without decoding it and tells whether the
/// top-level tagged field `node_endpoints` is present and non-empty. Errors on malformed bytes.
pub fn has_node_endpoints(
    api_key: i16,
    version: i16,
    payload: &[u8],
) -> Result<bool, RewriteError> {
    let walk = match inspected(api_key) {
        Some(i) if i.key == ApiKey::Produce || i.key == ApiKey::Fetch => i.walk,
        _ => return Ok(false),
    };
    let mut w = wire::Walker::new(payload);
    w.response_header(response_header_version(api_key, version))
        .and_then(|()| walk(&mut w, version))
        .map_err(|reason| {
            CodecError::Decode {
                api_key,
                version,
                reason: reason.to_string(),
            }
            .into()
        })
}

/// Whether a response [`needs_inspection`] selected may really carry an address: false for
/// Produce/Fetch whose `node_endpoints` is absent or empty (checked by a walk, without
/// decoding or allocating), true for everything else. The connection calls it on the bytes in
/// place, so only responses that will be decoded leave its read buffer.
pub fn may_carry_addresses(
    api_key: i16,
    version: i16,
    payload: &[u8],
) -> Result<bool, RewriteError> {
    match inspected(api_key) {
        Some(i) if i.key == ApiKey::Produce || i.key == ApiKey::Fetch => {
            if version > i.versions.max || version < i.versions.min {
                return Err(CodecError::UnsupportedVersion { api_key, version }.into());
            }
            has_node_endpoints(api_key, version, payload)
        }
        _ => Ok(true),
    }
}

/// Maps one broker entry in place; true if the address changed.
fn map_broker(
    mapper: &mut dyn AddressMapper,
    node_id: i32,
    host: &mut StrBytes,
    port: &mut i32,
) -> Result<bool, MapError> {
    let adv = mapper.map_broker(node_id, host, *port)?;
    Ok(replace(host, port, adv.host, adv.port))
}

/// Maps every entry of a `node_endpoints` list (Produce, Fetch, ShareFetch, ShareAcknowledge:
/// four generated types with the same fields); evaluates to `Ok(changed)`.
macro_rules! map_node_endpoints {
    ($mapper:expr, $endpoints:expr) => {{
        let mut changed = false;
        for e in &mut $endpoints {
            changed |= map_broker($mapper, e.node_id.0, &mut e.host, &mut e.port)?;
        }
        Ok(changed)
    }};
}
use map_node_endpoints;

/// Stores a new address; true if it differs from the old one.
fn replace(host: &mut StrBytes, port: &mut i32, new_host: StrBytes, new_port: i32) -> bool {
    let changed = *host != new_host || *port != new_port;
    *host = new_host;
    *port = new_port;
    changed
}

/// Validates, decodes, edits and re-encodes one response; `Ok(None)` when `edit` changed nothing.
fn rewrite_with<M: Message + Decodable + Encodable>(
    key: ApiKey,
    version: i16,
    payload: &Bytes,
    walk: WalkFn,
    edit: impl FnOnce(&mut M) -> Result<bool, RewriteError>,
) -> Rewritten {
    let api_key = key as i16;
    let header_version = response_header_version(api_key, version);
    let (header_len, mut msg) =
        codec::decode_response::<M>(api_key, version, header_version, payload, walk)?;
    if !edit(&mut msg)? {
        return Ok(None);
    }
    Ok(Some(codec::encode_frame(
        api_key,
        version,
        &payload[..header_len],
        &msg,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Advertised;
    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::messages::ResponseHeader;

    const PRODUCE: i16 = ApiKey::Produce as i16;
    const FETCH: i16 = ApiKey::Fetch as i16;
    const METADATA: i16 = ApiKey::Metadata as i16;
    const FIND_COORDINATOR: i16 = ApiKey::FindCoordinator as i16;
    const API_VERSIONS: i16 = ApiKey::ApiVersions as i16;
    const DESCRIBE_QUORUM: i16 = ApiKey::DescribeQuorum as i16;
    const DESCRIBE_CLUSTER: i16 = ApiKey::DescribeCluster as i16;
    const SHARE_FETCH: i16 = ApiKey::ShareFetch as i16;
    const SHARE_ACKNOWLEDGE: i16 = ApiKey::ShareAcknowledge as i16;
    use kafka_protocol::messages::{
        describe_cluster_response::DescribeClusterBroker,
        describe_quorum_response::{self, Listener, Node},
        fetch_response::{self, FetchableTopicResponse},
        find_coordinator_response::Coordinator,
        metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        },
        produce_response::{
            self, BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
        },
        share_acknowledge_response, share_fetch_response, BrokerId, TopicName,
    };
    use std::collections::BTreeMap;

    /// Maps node N to proxy.local:19000+N and controllers to proxy.local:0, recording calls.
    #[derive(Default)]
    pub(crate) struct TestMapper {
        pub(crate) brokers: Vec<(i32, String, i32)>,
        pub(crate) controllers: Vec<(i32, String, i32)>,
    }

    impl AddressMapper for TestMapper {
        fn map_broker(
            &mut self,
            node_id: i32,
            host: &str,
            port: i32,
        ) -> Result<Advertised, MapError> {
            self.brokers.push((node_id, host.to_string(), port));
            Ok(Advertised {
                host: StrBytes::from_static_str("proxy.local"),
                port: 19000 + node_id,
            })
        }
        fn map_controller(&mut self, node_id: i32, host: &str, port: i32) -> Advertised {
            self.controllers.push((node_id, host.to_string(), port));
            Advertised {
                host: StrBytes::from_static_str("proxy.local"),
                port: 0,
            }
        }
    }

    struct FailingMapper;

    impl AddressMapper for FailingMapper {
        fn map_broker(
            &mut self,
            node_id: i32,
            host: &str,
            port: i32,
        ) -> Result<Advertised, MapError> {
            let _ = (host, port);
            Err(MapError { node_id })
        }
        fn map_controller(&mut self, _node_id: i32, _host: &str, _port: i32) -> Advertised {
            Advertised {
                host: StrBytes::from_static_str("proxy.local"),
                port: 70_000,
            }
        }
    }

    fn s(v: &'static str) -> StrBytes {
        StrBytes::from_static_str(v)
    }

    fn topic(v: &'static str) -> TopicName {
        TopicName(s(v))
    }

    const MSK1: &str = "b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com";
    const MSK2: &str = "b-2.demo.abc123.c2.kafka.eu-west-1.amazonaws.com";
    const MSK3: &str = "b-3.demo.abc123.c2.kafka.eu-west-1.amazonaws.com";
    const CORRELATION: i32 = 0x0102_0304;

    /// Response payload (no length prefix) as a broker would send it.
    pub(crate) fn payload<M: Encodable>(api_key: i16, version: i16, msg: &M) -> Bytes {
        payload_with_header(
            api_key,
            version,
            &ResponseHeader::default().with_correlation_id(CORRELATION),
            msg,
        )
    }

    fn payload_with_header<M: Encodable>(
        api_key: i16,
        version: i16,
        header: &ResponseHeader,
        msg: &M,
    ) -> Bytes {
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, response_header_version(api_key, version))
            .expect("encode header");
        msg.encode(&mut buf, version).expect("encode body");
        buf.freeze()
    }

    /// Checks the length prefix of a rewritten frame and returns its payload.
    fn unframe(out: &Bytes) -> Bytes {
        let mut prefix = out.slice(..4);
        let len = prefix.get_i32();
        assert_eq!(len as usize, out.len() - 4, "length prefix");
        out.slice(4..)
    }

    fn decode<M: Decodable>(api_key: i16, version: i16, payload: &Bytes) -> (ResponseHeader, M) {
        let mut buf = payload.clone();
        let header = ResponseHeader::decode(&mut buf, response_header_version(api_key, version))
            .expect("header");
        let msg = M::decode(&mut buf, version).expect("body");
        assert!(buf.is_empty(), "trailing bytes");
        (header, msg)
    }

    /// Rewrites `msg` at `version`, then checks that the output is a complete frame that decodes
    /// to the original message with exactly the changes `expect` makes. Returns the new message.
    fn check<M>(
        api_key: i16,
        version: i16,
        msg: &M,
        mapper: &mut TestMapper,
        expect: impl FnOnce(&mut M),
    ) -> M
    where
        M: Encodable + Decodable + Clone + PartialEq + std::fmt::Debug,
    {
        let input = payload(api_key, version, msg);
        let (_, mut expected) = decode::<M>(api_key, version, &input);
        let out = rewrite_response(api_key, version, &input, mapper)
            .expect("rewrite")
            .expect("a rewritten frame");
        let (header, got) = decode::<M>(api_key, version, &unframe(&out));
        assert_eq!(header.correlation_id, CORRELATION);
        expect(&mut expected);
        assert_eq!(got, expected);
        got
    }

    fn metadata(version: i16) -> MetadataResponse {
        let broker = |id: i32, host: &'static str, rack: &'static str| {
            let mut b = MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(s(host))
                .with_port(9094);
            if version >= 1 {
                b.rack = Some(s(rack));
            }
            b
        };
        let mut partition = MetadataResponsePartition::default()
            .with_partition_index(0)
            .with_leader_id(BrokerId(2))
            .with_replica_nodes(vec![BrokerId(2), BrokerId(1)])
            .with_isr_nodes(vec![BrokerId(2)]);
        if version >= 7 {
            partition.leader_epoch = 5;
        }
        if version >= 5 {
            partition.offline_replicas = vec![BrokerId(1)];
        }
        let mut t = MetadataResponseTopic::default()
            .with_name(Some(topic("orders")))
            .with_partitions(vec![partition]);
        if version >= 10 {
            t.topic_id = uuid(7);
        }
        if version >= 8 {
            t.topic_authorized_operations = 0x0f;
        }
        let mut m = MetadataResponse::default()
            .with_brokers(vec![
                broker(1, MSK1, "euw1-az1"),
                broker(2, MSK2, "euw1-az2"),
            ])
            .with_topics(vec![t]);
        if version >= 3 {
            m.throttle_time_ms = 11;
        }
        if version >= 2 {
            m.cluster_id = Some(s("Xy-Cluster"));
        }
        if version >= 1 {
            m.controller_id = BrokerId(2);
        }
        m
    }

    /// A topic id (the uuid crate is not a dependency of ours, so parse into the field's type).
    fn uuid<T: std::str::FromStr>(n: u8) -> T
    where
        T::Err: std::fmt::Debug,
    {
        format!("{:032x}", u128::from_be_bytes([n; 16]))
            .parse()
            .expect("uuid")
    }

    fn mapped_metadata(m: &mut MetadataResponse) {
        for b in &mut m.brokers {
            b.host = s("proxy.local");
            b.port = 19000 + b.node_id.0;
        }
    }

    #[test]
    fn metadata_every_boundary_version() {
        for version in [0, 1, 9, 12, 13] {
            let mut mapper = TestMapper::default();
            let got = check(
                METADATA,
                version,
                &metadata(version),
                &mut mapper,
                mapped_metadata,
            );
            assert_eq!(got.brokers.len(), 2, "v{version}");
            assert_eq!(got.brokers[0].host.as_str(), "proxy.local");
            assert_eq!(got.brokers[0].port, 19001);
            assert_eq!(got.brokers[1].port, 19002);
            let rack = got.brokers[1].rack.as_ref().map(|r| r.as_str());
            assert_eq!(
                rack,
                if version >= 1 { Some("euw1-az2") } else { None },
                "v{version}"
            );
            assert_eq!(
                got.topics[0].partitions[0].leader_id,
                BrokerId(2),
                "node ids kept"
            );
            assert_eq!(
                mapper.brokers,
                vec![(1, MSK1.to_string(), 9094), (2, MSK2.to_string(), 9094)],
                "v{version}"
            );
            if version >= 3 {
                assert_eq!(got.throttle_time_ms, 11);
            }
        }
    }

    #[test]
    fn metadata_without_brokers_passes_unchanged() {
        let mut m = metadata(12);
        m.brokers.clear();
        let input = payload(METADATA, 12, &m);
        let out =
            rewrite_response(METADATA, 12, &input, &mut TestMapper::default()).expect("rewrite");
        assert!(out.is_none());
    }

    #[test]
    fn mapper_errors_propagate() {
        let input = payload(METADATA, 12, &metadata(12));
        let err =
            rewrite_response(METADATA, 12, &input, &mut FailingMapper).expect_err("must fail");
        match err {
            RewriteError::Map(e) => {
                assert_eq!(e.node_id, 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_tagged_fields_survive() {
        let mut m = metadata(12);
        m.unknown_tagged_fields = BTreeMap::from([
            (7, Bytes::from_static(b"top")),
            (42, Bytes::from_static(b"")),
        ]);
        m.brokers[0].unknown_tagged_fields =
            BTreeMap::from([(3, Bytes::from_static(b"broker-tag"))]);
        m.topics[0].partitions[0].unknown_tagged_fields =
            BTreeMap::from([(9, Bytes::from_static(b"\x01\x02"))]);
        let header = ResponseHeader::default()
            .with_correlation_id(CORRELATION)
            .with_unknown_tagged_fields(BTreeMap::from([(5, Bytes::from_static(b"hdr"))]));
        let input = payload_with_header(METADATA, 12, &header, &m);
        let out = rewrite_response(METADATA, 12, &input, &mut TestMapper::default())
            .expect("rewrite")
            .expect("rewritten");
        let (got_header, got) = decode::<MetadataResponse>(METADATA, 12, &unframe(&out));
        assert_eq!(got_header, header);
        assert_eq!(got.unknown_tagged_fields, m.unknown_tagged_fields);
        assert_eq!(
            got.brokers[0].unknown_tagged_fields[&3],
            Bytes::from_static(b"broker-tag")
        );
        assert_eq!(
            got.topics[0].partitions[0].unknown_tagged_fields[&9],
            Bytes::from_static(b"\x01\x02")
        );
        assert_eq!(got.brokers[0].port, 19001);
    }

    #[test]
    fn find_coordinator_top_level_v0_to_v3() {
        for version in [0, 1, 3] {
            let mut m = FindCoordinatorResponse::default()
                .with_node_id(BrokerId(3))
                .with_host(s(MSK3))
                .with_port(9094);
            if version >= 1 {
                m.throttle_time_ms = 5;
                m.error_message = None;
            }
            let mut mapper = TestMapper::default();
            let got = check(FIND_COORDINATOR, version, &m, &mut mapper, |e| {
                e.host = s("proxy.local");
                e.port = 19003;
            });
            assert_eq!(
                (got.node_id.0, got.host.as_str(), got.port),
                (3, "proxy.local", 19003)
            );
            assert_eq!(mapper.brokers, vec![(3, MSK3.to_string(), 9094)]);
        }
    }

    #[test]
    fn find_coordinator_top_level_error_left_alone() {
        let m = FindCoordinatorResponse::default()
            .with_error_code(15) // COORDINATOR_NOT_AVAILABLE
            .with_error_message(Some(s("not yet")))
            .with_node_id(BrokerId(-1))
            .with_host(s(""))
            .with_port(-1);
        let input = payload(FIND_COORDINATOR, 3, &m);
        let mut mapper = TestMapper::default();
        assert!(rewrite_response(FIND_COORDINATOR, 3, &input, &mut mapper)
            .expect("ok")
            .is_none());
        assert!(mapper.brokers.is_empty());
    }

    #[test]
    fn find_coordinator_batched_v4_v6_keep_error_entries() {
        for version in [4, 6] {
            let ok = Coordinator::default()
                .with_key(s("group-a"))
                .with_node_id(BrokerId(2))
                .with_host(s(MSK2))
                .with_port(9094)
                .with_error_message(None);
            let failed = Coordinator::default()
                .with_key(s("group-b"))
                .with_node_id(BrokerId(-1))
                .with_host(s(""))
                .with_port(-1)
                .with_error_code(15)
                .with_error_message(Some(s("The coordinator is not available.")));
            let m = FindCoordinatorResponse::default()
                .with_throttle_time_ms(3)
                .with_error_message(None)
                .with_coordinators(vec![ok, failed.clone()]);
            let mut mapper = TestMapper::default();
            let got = check(FIND_COORDINATOR, version, &m, &mut mapper, |e| {
                e.coordinators[0].host = s("proxy.local");
                e.coordinators[0].port = 19002;
            });
            assert_eq!(got.coordinators[0].host.as_str(), "proxy.local");
            assert_eq!(got.coordinators[0].port, 19002);
            assert_eq!(got.coordinators[1], failed);
            assert_eq!(mapper.brokers, vec![(2, MSK2.to_string(), 9094)]);
        }
    }

    #[test]
    fn describe_cluster_v0_to_v2() {
        for version in 0..=2 {
            let b = |id: i32, host: &'static str| {
                let mut b = DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(id))
                    .with_host(s(host))
                    .with_port(9094)
                    .with_rack(Some(s("az")));
                if version >= 2 {
                    b.is_fenced = id == 3;
                }
                b
            };
            let m = DescribeClusterResponse::default()
                .with_cluster_id(s("Xy-Cluster"))
                .with_controller_id(BrokerId(1))
                .with_brokers(vec![b(1, MSK1), b(3, MSK3)]);
            let mut mapper = TestMapper::default();
            let got = check(DESCRIBE_CLUSTER, version, &m, &mut mapper, |e| {
                for b in &mut e.brokers {
                    b.host = s("proxy.local");
                    b.port = 19000 + b.broker_id.0;
                }
            });
            assert_eq!(got.brokers[1].port, 19003);
            assert_eq!(got.brokers[1].is_fenced, version >= 2);
            assert_eq!(mapper.brokers.len(), 2);
        }
    }

    #[test]
    fn describe_quorum_v1_untouched_v2_controllers_hidden() {
        let topic_data = describe_quorum_response::TopicData::default()
            .with_topic_name(topic("__cluster_metadata"))
            .with_partitions(vec![describe_quorum_response::PartitionData::default()
                .with_leader_id(BrokerId(3000))
                .with_current_voters(vec![
                    describe_quorum_response::ReplicaState::default()
                        .with_replica_id(BrokerId(3000)),
                ])]);
        let v1 = DescribeQuorumResponse::default()
            .with_error_message(Some(s("")))
            .with_topics(vec![topic_data.clone()]);
        assert!(!needs_inspection(DESCRIBE_QUORUM, 1));
        let input = payload(DESCRIBE_QUORUM, 1, &v1);
        assert!(
            rewrite_response(DESCRIBE_QUORUM, 1, &input, &mut TestMapper::default())
                .expect("ok")
                .is_none()
        );

        let v2 = DescribeQuorumResponse::default()
            .with_error_message(None)
            .with_topics(vec![topic_data])
            .with_nodes(vec![Node::default()
                .with_node_id(BrokerId(3000))
                .with_listeners(vec![Listener::default()
                    .with_name(s("CONTROLLER"))
                    .with_host(s("c-1.internal"))
                    .with_port(9093)])]);
        let mut mapper = TestMapper::default();
        let got = check(DESCRIBE_QUORUM, 2, &v2, &mut mapper, |e| {
            e.nodes[0].listeners[0].host = s("proxy.local");
            e.nodes[0].listeners[0].port = 0;
        });
        assert_eq!(got.nodes[0].listeners[0].name.as_str(), "CONTROLLER");
        assert_eq!(
            mapper.controllers,
            vec![(3000, "c-1.internal".to_string(), 9093)]
        );
        assert!(mapper.brokers.is_empty());

        // A controller port that does not fit uint16 is an error, not a truncation.
        let input = payload(DESCRIBE_QUORUM, 2, &v2);
        let err =
            rewrite_response(DESCRIBE_QUORUM, 2, &input, &mut FailingMapper).expect_err("port");
        assert!(matches!(
            err,
            RewriteError::ControllerPort {
                node_id: 3000,
                port: 70_000
            }
        ));
    }

    fn produce(version: i16, endpoints: bool) -> ProduceResponse {
        let mut p = PartitionProduceResponse::default()
            .with_index(4)
            .with_error_code(if endpoints { 6 } else { 0 })
            .with_base_offset(1000)
            .with_log_append_time_ms(-1);
        if version >= 5 {
            p.log_start_offset = 12;
        }
        if version >= 8 {
            p.record_errors = vec![BatchIndexAndErrorMessage::default()
                .with_batch_index(1)
                .with_batch_index_error_message(Some(s("bad")))];
            p.error_message = Some(s("NOT_LEADER_OR_FOLLOWER"));
        }
        if version >= 10 && endpoints {
            p.current_leader = produce_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(2))
                .with_leader_epoch(9);
        }
        if version >= 9 {
            p.unknown_tagged_fields.insert(7, Bytes::from_static(b"p"));
        }
        let mut t = TopicProduceResponse::default().with_partition_responses(vec![p]);
        if version <= 12 {
            t.name = topic("orders");
        } else {
            t.topic_id = uuid(3);
        }
        if version >= 9 {
            t.unknown_tagged_fields
                .insert(2, Bytes::from_static(b"topic"));
        }
        let mut m = ProduceResponse::default()
            .with_responses(vec![t])
            .with_throttle_time_ms(8);
        if version >= 10 && endpoints {
            m.node_endpoints = vec![produce_response::NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(s(MSK2))
                .with_port(9094)
                .with_rack(Some(s("az2")))];
        }
        if version >= 9 {
            m.unknown_tagged_fields
                .insert(5, Bytes::from_static(b"unknown"));
        }
        m
    }

    fn fetch(version: i16, endpoints: bool, partitions: usize, records: usize) -> FetchResponse {
        let data = Bytes::from(vec![0xabu8; records]);
        let parts = (0..partitions)
            .map(|i| {
                let mut p = fetch_response::PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(500)
                    .with_last_stable_offset(490)
                    .with_records(Some(data.clone()));
                if version >= 5 {
                    p.log_start_offset = 3;
                }
                if i % 2 == 1 {
                    p.aborted_transactions =
                        Some(vec![fetch_response::AbortedTransaction::default()
                            .with_producer_id(kafka_protocol::messages::ProducerId(77))
                            .with_first_offset(400)]);
                } else {
                    p.aborted_transactions = None;
                }
                if version >= 11 {
                    p.preferred_read_replica = BrokerId(-1);
                }
                if version >= 12 {
                    if endpoints || i % 3 == 0 {
                        p.current_leader = fetch_response::LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(3))
                            .with_leader_epoch(4);
                    }
                    if i % 4 == 1 {
                        p.diverging_epoch = fetch_response::EpochEndOffset::default()
                            .with_epoch(2)
                            .with_end_offset(90);
                        p.snapshot_id = fetch_response::SnapshotId::default()
                            .with_epoch(1)
                            .with_end_offset(80);
                    }
                    p.unknown_tagged_fields
                        .insert(11, Bytes::from_static(b"part"));
                }
                p
            })
            .collect();
        let mut t = FetchableTopicResponse::default().with_partitions(parts);
        if version <= 12 {
            t.topic = topic("orders");
        } else {
            t.topic_id = uuid(9);
        }
        if version >= 12 {
            t.unknown_tagged_fields.insert(1, Bytes::from_static(b"t"));
        }
        let mut m = FetchResponse::default()
            .with_throttle_time_ms(1)
            .with_responses(vec![t]);
        if version >= 7 {
            m.session_id = 1234;
        }
        if version >= 16 && endpoints {
            m.node_endpoints = vec![
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(3))
                    .with_host(s(MSK3))
                    .with_port(9094)
                    .with_rack(None),
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(1))
                    .with_host(s(MSK1))
                    .with_port(9094)
                    .with_rack(Some(s("az1"))),
            ];
        }
        if version >= 12 {
            m.unknown_tagged_fields
                .insert(9, Bytes::from_static(b"future"));
        }
        m
    }

    #[test]
    fn produce_before_v10_is_never_touched() {
        assert!(!needs_inspection(PRODUCE, 9));
        let input = payload(PRODUCE, 9, &produce(9, false));
        assert!(
            rewrite_response(PRODUCE, 9, &input, &mut TestMapper::default())
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn produce_v10_v13_node_endpoints() {
        for version in [10, 13] {
            assert!(needs_inspection(PRODUCE, version));
            let mut mapper = TestMapper::default();
            let input = payload(PRODUCE, version, &produce(version, false));
            assert!(rewrite_response(PRODUCE, version, &input, &mut mapper)
                .expect("ok")
                .is_none());
            assert!(mapper.brokers.is_empty());

            let got = check(
                PRODUCE,
                version,
                &produce(version, true),
                &mut mapper,
                |e| {
                    e.node_endpoints[0].host = s("proxy.local");
                    e.node_endpoints[0].port = 19002;
                },
            );
            assert_eq!(got.node_endpoints[0].host.as_str(), "proxy.local");
            assert_eq!(got.node_endpoints[0].port, 19002);
            assert_eq!(
                got.node_endpoints[0].rack.as_ref().map(|r| r.as_str()),
                Some("az2")
            );
            assert_eq!(
                got.responses[0].partition_responses[0]
                    .current_leader
                    .leader_id,
                BrokerId(2)
            );
            assert_eq!(
                got.unknown_tagged_fields[&5],
                Bytes::from_static(b"unknown")
            );
            assert_eq!(mapper.brokers, vec![(2, MSK2.to_string(), 9094)]);
        }
    }

    #[test]
    fn fetch_before_v16_is_never_touched() {
        assert!(!needs_inspection(FETCH, 15));
        let input = payload(FETCH, 15, &fetch(15, false, 3, 10));
        assert!(
            rewrite_response(FETCH, 15, &input, &mut TestMapper::default())
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn fetch_v16_v18_node_endpoints() {
        for version in [16, 18] {
            let mut mapper = TestMapper::default();
            let input = payload(FETCH, version, &fetch(version, false, 4, 100));
            assert!(rewrite_response(FETCH, version, &input, &mut mapper)
                .expect("ok")
                .is_none());

            let got = check(
                FETCH,
                version,
                &fetch(version, true, 4, 100),
                &mut mapper,
                |e| {
                    for n in &mut e.node_endpoints {
                        n.host = s("proxy.local");
                        n.port = 19000 + n.node_id.0;
                    }
                },
            );
            assert_eq!(got.node_endpoints[0].port, 19003);
            assert_eq!(got.node_endpoints[1].port, 19001);
            assert_eq!(got.node_endpoints[1].host.as_str(), "proxy.local");
            assert_eq!(got.session_id, 1234);
            let records = got.responses[0].partitions[1]
                .records
                .as_ref()
                .expect("records");
            assert_eq!(records.len(), 100);
            assert!(records.iter().all(|&b| b == 0xab));
            assert_eq!(mapper.brokers.len(), 2);
        }
    }

    #[test]
    fn rewritten_fetch_keeps_records_as_slices_of_the_input() {
        // Decoding from Bytes is zero-copy: the records of the decoded message point into the frame.
        let input = payload(FETCH, 16, &fetch(16, true, 2, 64));
        let (_, msg) = codec::decode_response::<FetchResponse>(FETCH, 16, 1, &input, wire::fetch)
            .expect("decode");
        let records = msg.responses[0].partitions[0]
            .records
            .as_ref()
            .expect("records");
        let range = input.as_ptr_range();
        assert!(range.contains(&records.as_ptr()));
    }

    #[test]
    fn share_fetch_and_acknowledge_v1() {
        let sf = ShareFetchResponse::default()
            .with_acquisition_lock_timeout_ms(30_000)
            .with_responses(vec![
                share_fetch_response::ShareFetchableTopicResponse::default()
                    .with_topic_id(uuid(1))
                    .with_partitions(vec![share_fetch_response::PartitionData::default()
                        .with_partition_index(2)
                        .with_records(Some(Bytes::from_static(b"batch")))
                        .with_acquired_records(vec![
                            share_fetch_response::AcquiredRecords::default()
                                .with_first_offset(1)
                                .with_last_offset(3)
                                .with_delivery_count(1),
                        ])]),
            ])
            .with_node_endpoints(vec![share_fetch_response::NodeEndpoint::default()
                .with_node_id(BrokerId(1))
                .with_host(s(MSK1))
                .with_port(9094)]);
        let mut mapper = TestMapper::default();
        let got = check(SHARE_FETCH, 1, &sf, &mut mapper, |e| {
            e.node_endpoints[0].host = s("proxy.local");
            e.node_endpoints[0].port = 19001;
        });
        assert_eq!(got.node_endpoints[0].port, 19001);
        assert_eq!(got.acquisition_lock_timeout_ms, 30_000);

        let sa = ShareAcknowledgeResponse::default()
            .with_responses(vec![
                share_acknowledge_response::ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(uuid(1))
                    .with_partitions(vec![share_acknowledge_response::PartitionData::default()
                        .with_partition_index(2)]),
            ])
            .with_node_endpoints(vec![share_acknowledge_response::NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(s(MSK2))
                .with_port(9094)]);
        let got = check(SHARE_ACKNOWLEDGE, 1, &sa, &mut mapper, |e| {
            e.node_endpoints[0].host = s("proxy.local");
            e.node_endpoints[0].port = 19002;
        });
        assert_eq!(got.node_endpoints[0].port, 19002);
        assert_eq!(mapper.brokers.len(), 2);
    }

    #[test]
    fn needs_inspection_table() {
        for (key, version, expected) in [
            (METADATA, 0, true),
            (FIND_COORDINATOR, 6, true),
            (DESCRIBE_CLUSTER, 0, true),
            (DESCRIBE_QUORUM, 1, false),
            (DESCRIBE_QUORUM, 2, true),
            (PRODUCE, 9, false),
            (PRODUCE, 10, true),
            (FETCH, 15, false),
            (FETCH, 16, true),
            (SHARE_FETCH, 1, true),
            (SHARE_ACKNOWLEDGE, 1, true),
            (API_VERSIONS, 0, true),
            (2, 8, false),    // ListOffsets
            (9999, 0, false), // unknown
        ] {
            assert_eq!(
                crate::kafka::needs_inspection(key, version),
                expected,
                "{key} v{version}"
            );
        }
    }

    #[test]
    fn versions_the_proxy_cannot_decode_are_errors() {
        let input = payload(METADATA, 13, &metadata(13));
        let err =
            rewrite_response(METADATA, 14, &input, &mut TestMapper::default()).expect_err("v14");
        assert!(matches!(
            err,
            RewriteError::Codec(CodecError::UnsupportedVersion {
                api_key: 3,
                version: 14
            })
        ));
        let err = rewrite_response(FETCH, 19, &input, &mut TestMapper::default()).expect_err("v19");
        assert!(matches!(
            err,
            RewriteError::Codec(CodecError::UnsupportedVersion {
                api_key: 1,
                version: 19
            })
        ));
    }

    /// The walker must agree with kafka-protocol's own encoding at every version.
    #[test]
    fn node_endpoints_scanner_agrees_with_full_decode() {
        // Both with a plain response header and one carrying an unknown tagged field.
        let headers = [
            ResponseHeader::default().with_correlation_id(CORRELATION),
            ResponseHeader::default()
                .with_correlation_id(CORRELATION)
                .with_unknown_tagged_field(4, Bytes::from_static(b"hdr")),
        ];
        let scan = |api_key: i16, version: i16, input: &Bytes| -> bool {
            let mut w = wire::Walker::new(input);
            w.response_header(response_header_version(api_key, version))
                .expect("header");
            let walk = if api_key == PRODUCE {
                wire::produce
            } else {
                wire::fetch
            };
            walk(&mut w, version).expect("walk")
        };
        for version in 3..=13 {
            for endpoints in [false, true] {
                for header in &headers {
                    if version < 9 && !header.unknown_tagged_fields.is_empty() {
                        continue; // header v0 has no tagged fields
                    }
                    let input =
                        payload_with_header(PRODUCE, version, header, &produce(version, endpoints));
                    let (_, full) = decode::<ProduceResponse>(PRODUCE, version, &input);
                    let found = scan(PRODUCE, version, &input);
                    assert_eq!(found, !full.node_endpoints.is_empty(), "produce v{version}");
                    assert_eq!(found, version >= 10 && endpoints);
                    if version >= 10 {
                        assert_eq!(
                            has_node_endpoints(PRODUCE, version, &input).expect("check"),
                            found
                        );
                    }
                }
            }
        }
        for version in 4..=18 {
            for endpoints in [false, true] {
                for (partitions, records) in [(0, 0), (1, 0), (5, 33), (8, 300)] {
                    for header in &headers {
                        if version < 12 && !header.unknown_tagged_fields.is_empty() {
                            continue;
                        }
                        let msg = fetch(version, endpoints, partitions, records);
                        let input = payload_with_header(FETCH, version, header, &msg);
                        let (_, full) = decode::<FetchResponse>(FETCH, version, &input);
                        let found = scan(FETCH, version, &input);
                        assert_eq!(found, !full.node_endpoints.is_empty(), "fetch v{version}");
                        assert_eq!(found, version >= 16 && endpoints);
                        if version >= 16 {
                            assert_eq!(
                                has_node_endpoints(FETCH, version, &input).expect("check"),
                                found
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn empty_node_endpoints_tag_passes_unchanged() {
        // A broker may send tag 0 holding an empty array: nothing to rewrite.
        let mut m = fetch(16, false, 1, 5);
        m.unknown_tagged_fields.clear();
        let mut input = BytesMut::from(&payload(FETCH, 16, &m)[..]);
        let last = input.len() - 1;
        assert_eq!(input[last], 0, "no tagged fields");
        input.truncate(last);
        input.extend_from_slice(&[1, 0, 1, 1]); // one tag: tag 0, size 1, compact array of 0
        let input = input.freeze();
        let (_, full) = decode::<FetchResponse>(FETCH, 16, &input);
        assert!(full.node_endpoints.is_empty());
        assert!(
            rewrite_response(FETCH, 16, &input, &mut TestMapper::default())
                .expect("ok")
                .is_none()
        );
    }

    fn samples() -> Vec<(i16, i16, Bytes)> {
        vec![
            (METADATA, 1, payload(METADATA, 1, &metadata(1))),
            (METADATA, 12, payload(METADATA, 12, &metadata(12))),
            (PRODUCE, 10, payload(PRODUCE, 10, &produce(10, true))),
            (PRODUCE, 13, payload(PRODUCE, 13, &produce(13, false))),
            (FETCH, 16, payload(FETCH, 16, &fetch(16, true, 3, 20))),
            (FETCH, 18, payload(FETCH, 18, &fetch(18, false, 3, 20))),
            (
                FIND_COORDINATOR,
                4,
                payload(
                    FIND_COORDINATOR,
                    4,
                    &FindCoordinatorResponse::default()
                        .with_error_message(None)
                        .with_coordinators(vec![Coordinator::default()
                            .with_key(s("g"))
                            .with_node_id(BrokerId(1))
                            .with_host(s(MSK1))]),
                ),
            ),
            (
                DESCRIBE_CLUSTER,
                2,
                payload(
                    DESCRIBE_CLUSTER,
                    2,
                    &DescribeClusterResponse::default().with_brokers(vec![
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(1))
                            .with_host(s(MSK1)),
                    ]),
                ),
            ),
        ]
    }

    #[test]
    fn truncated_frames_are_errors_at_every_length() {
        for (key, version, input) in samples() {
            for len in 0..input.len() {
                let cut = input.slice(..len);
                let result = rewrite_response(key, version, &cut, &mut TestMapper::default());
                assert!(
                    result.is_err(),
                    "api {key} v{version} cut at {len} of {}: {result:?}",
                    input.len()
                );
            }
            let mut longer = BytesMut::from(&input[..]);
            longer.extend_from_slice(&[0]);
            let result =
                rewrite_response(key, version, &longer.freeze(), &mut TestMapper::default());
            assert!(result.is_err(), "api {key} v{version} with a trailing byte");
        }
    }

    #[test]
    fn corrupted_frames_never_panic() {
        // Flip every byte of every sample to a few hostile values: errors or rewrites, no panic.
        for (key, version, input) in samples() {
            for i in 0..input.len() {
                for v in [0x00, 0x7f, 0x80, 0xff] {
                    let mut bad = BytesMut::from(&input[..]);
                    bad[i] = v;
                    let _ =
                        rewrite_response(key, version, &bad.freeze(), &mut TestMapper::default());
                }
            }
        }
    }

    #[test]
    fn hostile_array_counts_are_rejected_before_decoding() {
        // Metadata v1: correlation id, then brokers count i32::MAX with nothing behind it.
        let mut b = BytesMut::new();
        b.put_i32(1);
        b.put_i32(i32::MAX);
        let err = rewrite_response(METADATA, 1, &b.freeze(), &mut TestMapper::default())
            .expect_err("count");
        assert!(
            matches!(
                err,
                RewriteError::Codec(CodecError::Decode {
                    api_key: 3,
                    version: 1,
                    ..
                })
            ),
            "{err:?}"
        );

        // Metadata v12: header tags none, throttle, brokers compact count 2^32-1.
        let mut b = BytesMut::new();
        b.put_i32(1);
        b.put_u8(0);
        b.put_i32(0);
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let err = rewrite_response(METADATA, 12, &b.freeze(), &mut TestMapper::default())
            .expect_err("count");
        assert!(matches!(
            err,
            RewriteError::Codec(CodecError::Decode { .. })
        ));

        // Fetch v16: node_endpoints tag declares a huge array inside a 5-byte field.
        let mut m = fetch(16, false, 1, 5);
        m.unknown_tagged_fields.clear();
        let mut input = BytesMut::from(&payload(FETCH, 16, &m)[..]);
        input.truncate(input.len() - 1);
        input.extend_from_slice(&[1, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        let err = rewrite_response(FETCH, 16, &input.freeze(), &mut TestMapper::default())
            .expect_err("count");
        assert!(matches!(
            err,
            RewriteError::Codec(CodecError::Decode {
                api_key: 1,
                version: 16,
                ..
            })
        ));
    }

    #[test]
    fn known_tag_with_wrong_size_is_rejected() {
        // current_leader (tag 1) declared 4 bytes although it needs 9: kafka-protocol would read
        // past the field, so the walker refuses.
        let mut w = wire::Walker::new(&[1, 1, 4, 0, 0, 0, 3]);
        let r = w.tagged_with(|tag, f| {
            assert_eq!(tag, 1);
            f.skip(8)?;
            f.tagged().map(|()| true)
        });
        assert_eq!(r, Err("truncated"));
    }

    #[test]
    fn varints() {
        assert_eq!(wire::Walker::new(&[0x7f]).uvarint(), Ok(127));
        assert_eq!(wire::Walker::new(&[0x80, 0x01]).uvarint(), Ok(128));
        assert_eq!(
            wire::Walker::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]).uvarint(),
            Ok(u32::MAX)
        );
        assert!(wire::Walker::new(&[0xff, 0xff, 0xff, 0xff, 0x1f])
            .uvarint()
            .is_err());
        assert!(wire::Walker::new(&[0x80, 0x80]).uvarint().is_err());
    }
}
