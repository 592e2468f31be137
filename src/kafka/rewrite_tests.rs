//! Tests of the splice rewrite, against the decode-based [`super::oracle`] among others.

use super::*;
use crate::kafka::{codec, Advertised};
use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::{Decodable, Encodable};

const PRODUCE: i16 = ApiKey::Produce as i16;
const FETCH: i16 = ApiKey::Fetch as i16;
const METADATA: i16 = ApiKey::Metadata as i16;
const FIND_COORDINATOR: i16 = ApiKey::FindCoordinator as i16;
use crate::kafka::API_VERSIONS;
const DESCRIBE_QUORUM: i16 = ApiKey::DescribeQuorum as i16;
const DESCRIBE_CLUSTER: i16 = ApiKey::DescribeCluster as i16;
const SHARE_FETCH: i16 = ApiKey::ShareFetch as i16;
const SHARE_ACKNOWLEDGE: i16 = ApiKey::ShareAcknowledge as i16;
use kafka_protocol::messages::{
    describe_cluster_response::DescribeClusterBroker,
    describe_quorum_response::{self, Listener, Node},
    fetch_response::{self, FetchableTopicResponse},
    find_coordinator_response::Coordinator,
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
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
    fn map_broker(&mut self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError> {
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
    fn map_broker(&mut self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError> {
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
    let out = rewrite_response(METADATA, 12, &input, &mut TestMapper::default()).expect("rewrite");
    assert!(out.is_none());
}

#[test]
fn mapper_errors_propagate() {
    let input = payload(METADATA, 12, &metadata(12));
    let err = rewrite_response(METADATA, 12, &input, &mut FailingMapper).expect_err("must fail");
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
    m.brokers[0].unknown_tagged_fields = BTreeMap::from([(3, Bytes::from_static(b"broker-tag"))]);
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
                describe_quorum_response::ReplicaState::default().with_replica_id(BrokerId(3000)),
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
    let err = rewrite_response(DESCRIBE_QUORUM, 2, &input, &mut FailingMapper).expect_err("port");
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
                p.aborted_transactions = Some(vec![fetch_response::AbortedTransaction::default()
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
    let (_, msg) =
        codec::decode_response::<FetchResponse>(FETCH, 16, 1, &input, wire::fetch).expect("decode");
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
                .with_partitions(vec![
                    share_acknowledge_response::PartitionData::default().with_partition_index(2)
                ]),
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
    let err = rewrite_response(METADATA, 14, &input, &mut TestMapper::default()).expect_err("v14");
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

/// Maps every broker to one fixed host, keeping node id and port.
struct HostMapper(&'static str);

impl AddressMapper for HostMapper {
    fn map_broker(
        &mut self,
        _node_id: i32,
        _host: &str,
        port: i32,
    ) -> Result<Advertised, MapError> {
        Ok(Advertised {
            host: s(self.0),
            port,
        })
    }
    fn map_controller(&mut self, _node_id: i32, _host: &str, port: i32) -> Advertised {
        Advertised {
            host: s(self.0),
            port,
        }
    }
}

/// Fetch v16 whose only node_endpoints entry has `host`.
fn fetch_with_endpoint(host: &'static str) -> Bytes {
    let mut m = fetch(16, false, 2, 7);
    m.node_endpoints = vec![fetch_response::NodeEndpoint::default()
        .with_node_id(BrokerId(2))
        .with_host(s(host))
        .with_port(9094)];
    payload(FETCH, 16, &m)
}

#[test]
fn node_endpoints_tag_size_is_rewritten_across_varint_lengths() {
    // The tagged field's size varint grows from 1 to 2 bytes and shrinks from 2 to 1;
    // the tagged-field count and the other tag (9) stay as they are.
    const LONG: &str = "b-2.a-very-long-cluster-name-that-takes-most-of-a-dns-label.abcdef\
                        .c2.kafka.eu-west-1.amazonaws.com.and-then-some-more-of-it-to-pass-128";
    assert!(LONG.len() > 127);
    for (from, to) in [("b-2", LONG), (LONG, "p"), (MSK2, "proxy.local")] {
        let input = fetch_with_endpoint(from);
        let spliced = rewrite_response(FETCH, 16, &input, &mut HostMapper(to))
            .expect("splice")
            .expect("changed");
        let decoded = oracle::rewrite_response(FETCH, 16, &input, &mut HostMapper(to))
            .expect("decode")
            .expect("changed");
        assert_eq!(spliced, decoded, "{from} -> {to}");
        let (_, got) = decode::<FetchResponse>(FETCH, 16, &unframe(&spliced));
        assert_eq!(got.node_endpoints[0].host.as_str(), to);
        assert_eq!(got.unknown_tagged_fields[&9], Bytes::from_static(b"future"));
    }
}

#[test]
fn node_endpoints_tag_twice_is_refused() {
    // A second tag 0 after a real one: a client could read either copy, one of which would
    // keep the upstream address. The decode path's walk refuses it too.
    let mut m = fetch(16, true, 1, 5);
    m.unknown_tagged_fields.clear();
    let with = payload(FETCH, 16, &m);
    m.node_endpoints.clear();
    let without = payload(FETCH, 16, &m);
    // `without` ends in tag count 0; `with` in count 1, tag 0, size, content.
    let (body, tags) = with.split_at(without.len() - 1);
    assert_eq!(&tags[..2], &[1, 0]);
    let mut input = BytesMut::from(body);
    input.extend_from_slice(&[2]);
    input.extend_from_slice(&tags[1..]);
    input.extend_from_slice(&[0, 1, 1]); // tag 0 again, size 1, empty compact array
    let input = input.freeze();
    for result in [
        rewrite_response(FETCH, 16, &input, &mut TestMapper::default()),
        oracle::rewrite_response(FETCH, 16, &input, &mut TestMapper::default()),
    ] {
        assert!(
            matches!(result, Err(RewriteError::Codec(CodecError::Decode { .. }))),
            "{result:?}"
        );
    }
    assert!(has_node_endpoints(FETCH, 16, &input).is_err());
}

#[test]
fn strings_kafka_protocol_refuses_are_refused() {
    // A topic name that is not UTF-8: the splice never decodes it, but refuses it as the
    // decode did (Metadata), and passes it where the decode path never looked (Produce
    // without node_endpoints).
    let bad_name = |input: Bytes| {
        let mut b = BytesMut::from(&input[..]);
        let at = b
            .windows(6)
            .position(|w| w == b"orders")
            .expect("topic name");
        b[at] = 0xff;
        b.freeze()
    };
    let metadata = bad_name(payload(METADATA, 12, &metadata(12)));
    for result in [
        rewrite_response(METADATA, 12, &metadata, &mut TestMapper::default()),
        oracle::rewrite_response(METADATA, 12, &metadata, &mut TestMapper::default()),
    ] {
        assert!(
            matches!(result, Err(RewriteError::Codec(CodecError::Decode { .. }))),
            "{result:?}"
        );
    }
    let quiet = bad_name(payload(PRODUCE, 10, &produce(10, false)));
    let leader_change = bad_name(payload(PRODUCE, 10, &produce(10, true)));
    let mut mapper = TestMapper::default();
    assert!(rewrite_response(PRODUCE, 10, &quiet, &mut mapper)
        .expect("passes")
        .is_none());
    assert!(oracle::rewrite_response(PRODUCE, 10, &quiet, &mut mapper)
        .expect("passes")
        .is_none());
    assert!(rewrite_response(PRODUCE, 10, &leader_change, &mut mapper).is_err());
    assert!(oracle::rewrite_response(PRODUCE, 10, &leader_change, &mut mapper).is_err());
    assert!(mapper.brokers.is_empty());
}

#[test]
fn unknown_tags_above_i32_max_pass_the_splice() {
    // kafka-protocol decodes an unknown tag of 2^31 but cannot re-encode it (its size
    // counts the tag, its encoder skips it), so the decode path failed; the splice forwards
    // the tag as it came, as it forwards every other unknown tag.
    let mut m = metadata(12);
    m.unknown_tagged_fields.clear();
    let input = payload(METADATA, 12, &m);
    let mut b = BytesMut::from(&input[..input.len() - 1]);
    b.extend_from_slice(&[1, 0x80, 0x80, 0x80, 0x80, 0x08, 1, 0x42]);
    let input = b.freeze();
    let out = rewrite_response(METADATA, 12, &input, &mut TestMapper::default())
        .expect("rewritten")
        .expect("changed");
    assert!(out.ends_with(&[1, 0x80, 0x80, 0x80, 0x80, 0x08, 1, 0x42]));
    let (_, got) = decode::<MetadataResponse>(METADATA, 12, &unframe(&out));
    assert_eq!(got.brokers[0].host.as_str(), "proxy.local");
    let old = oracle::rewrite_response(METADATA, 12, &input, &mut TestMapper::default());
    assert!(
        matches!(old, Err(RewriteError::Codec(CodecError::Encode { .. }))),
        "{old:?}"
    );
}

fn samples() -> Vec<(i16, i16, Bytes)> {
    let quorum = DescribeQuorumResponse::default()
        .with_error_message(None)
        .with_nodes(vec![Node::default()
            .with_node_id(BrokerId(3000))
            .with_listeners(vec![Listener::default()
                .with_name(s("CONTROLLER"))
                .with_host(s("c-1.internal"))
                .with_port(9093)])]);
    let share = ShareAcknowledgeResponse::default().with_node_endpoints(vec![
        share_acknowledge_response::NodeEndpoint::default()
            .with_node_id(BrokerId(2))
            .with_host(s(MSK2))
            .with_port(9094)
            .with_rack(Some(s("az2"))),
    ]);
    let coordinator = FindCoordinatorResponse::default()
        .with_error_message(None)
        .with_node_id(BrokerId(3))
        .with_host(s(MSK3))
        .with_port(9094);
    vec![
        (DESCRIBE_QUORUM, 2, payload(DESCRIBE_QUORUM, 2, &quorum)),
        (SHARE_ACKNOWLEDGE, 1, payload(SHARE_ACKNOWLEDGE, 1, &share)),
        (
            FIND_COORDINATOR,
            2,
            payload(FIND_COORDINATOR, 2, &coordinator),
        ),
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
            let mut mapper = TestMapper::default();
            let result = rewrite_response(key, version, &cut, &mut mapper);
            assert!(
                result.is_err(),
                "api {key} v{version} cut at {len} of {}: {result:?}",
                input.len()
            );
            // The whole frame is checked before the mapper hears of any entry.
            assert!(mapper.brokers.is_empty() && mapper.controllers.is_empty());
        }
        let mut longer = BytesMut::from(&input[..]);
        longer.extend_from_slice(&[0]);
        let result = rewrite_response(key, version, &longer.freeze(), &mut TestMapper::default());
        assert!(result.is_err(), "api {key} v{version} with a trailing byte");
    }
}

#[test]
fn corrupted_frames_never_panic() {
    // Flip every byte of every sample to a few hostile values: errors or rewrites, no panic;
    // and the splice refuses exactly what the decode refuses, asks the mapper the same
    // questions, and its frame decodes to the same message (byte equality needs canonical
    // input: kafka-protocol re-encodes a boolean 0x7f as 01, a splice keeps it).
    for (key, version, input) in samples() {
        for i in 0..input.len() {
            for v in [0x00, 0x7f, 0x80, 0xff] {
                let mut bad = BytesMut::from(&input[..]);
                bad[i] = v;
                let bad = bad.freeze();
                let mut spliced_calls = TestMapper::default();
                let spliced = rewrite_response(key, version, &bad, &mut spliced_calls);
                let mut decoded_calls = TestMapper::default();
                let decoded = oracle::rewrite_response(key, version, &bad, &mut decoded_calls);
                let at = format!("api {key} v{version}, byte {i} = {v:#04x}");
                assert_eq!(spliced_calls.brokers, decoded_calls.brokers, "{at}");
                assert_eq!(spliced_calls.controllers, decoded_calls.controllers, "{at}");
                match (spliced, decoded) {
                    (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
                    (Ok(Some(a)), Ok(Some(b))) => assert_eq!(
                        decoded_debug(key, version, &a),
                        decoded_debug(key, version, &b),
                        "{at}"
                    ),
                    (a, b) => panic!("{at}: splice {a:?}, decode {b:?}"),
                }
            }
        }
    }
}

/// A rewritten frame decoded by kafka-protocol, as text to compare.
fn decoded_debug(api_key: i16, version: i16, frame: &Bytes) -> String {
    fn text<M: Decodable + std::fmt::Debug>(api_key: i16, version: i16, p: &Bytes) -> String {
        format!("{:?}", decode::<M>(api_key, version, p))
    }
    let p = unframe(frame);
    match ApiKey::try_from(api_key).expect("api key") {
        ApiKey::Metadata => text::<MetadataResponse>(api_key, version, &p),
        ApiKey::FindCoordinator => text::<FindCoordinatorResponse>(api_key, version, &p),
        ApiKey::DescribeCluster => text::<DescribeClusterResponse>(api_key, version, &p),
        ApiKey::DescribeQuorum => text::<DescribeQuorumResponse>(api_key, version, &p),
        ApiKey::Produce => text::<ProduceResponse>(api_key, version, &p),
        ApiKey::Fetch => text::<FetchResponse>(api_key, version, &p),
        ApiKey::ShareFetch => text::<ShareFetchResponse>(api_key, version, &p),
        ApiKey::ShareAcknowledge => text::<ShareAcknowledgeResponse>(api_key, version, &p),
        other => panic!("{other:?} is not inspected"),
    }
}

#[test]
fn hostile_array_counts_are_rejected_before_decoding() {
    // Metadata v1: correlation id, then brokers count i32::MAX with nothing behind it.
    let mut b = BytesMut::new();
    b.put_i32(1);
    b.put_i32(i32::MAX);
    let err =
        rewrite_response(METADATA, 1, &b.freeze(), &mut TestMapper::default()).expect_err("count");
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
    let err =
        rewrite_response(METADATA, 12, &b.freeze(), &mut TestMapper::default()).expect_err("count");
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

/// Property test: random responses of every inspected API at every version the proxy
/// decodes, rewritten by splicing and by the decode-based oracle, must give the same bytes
/// (kafka-protocol re-encodes deterministically and keeps unknown tagged fields, so the
/// oracle's output is the reference), the same `None`/`Some` decision, the same error, and
/// the same mapper calls in the same order.
///
/// A small seeded generator instead of a property-testing crate: no new dependency, and a
/// failure names the api, version and case seed to replay (`KTP_PROPTEST_CASES` raises
/// the number of cases per version, 100 by default).
mod splice_matches_decode {
    use super::*;
    use kafka_protocol::messages::{
        describe_cluster_response, fetch_response, find_coordinator_response, metadata_response,
        produce_response, share_acknowledge_response, share_fetch_response, ProducerId,
    };

    /// splitmix64.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn one_in(&mut self, n: u64) -> bool {
            self.below(n) == 0
        }
        fn count(&mut self, max: u64) -> usize {
            self.below(max + 1) as usize
        }
        fn i16(&mut self) -> i16 {
            if self.one_in(2) {
                0
            } else {
                self.next() as i16
            }
        }
        fn i32(&mut self) -> i32 {
            match self.below(4) {
                0 => 0,
                1 => -1,
                2 => self.below(100) as i32,
                _ => self.next() as i32,
            }
        }
        fn i64(&mut self) -> i64 {
            self.next() as i64
        }
        /// A node id: mostly small, sometimes -1 or any int32.
        fn node_id(&mut self) -> BrokerId {
            BrokerId(match self.below(8) {
                0 => -1,
                1 => self.next() as i32,
                _ => self.below(12) as i32,
            })
        }
        fn port(&mut self) -> i32 {
            match self.below(4) {
                0 => 9094,
                1 => -1,
                _ => self.next() as i32,
            }
        }
        /// A string of `len` bytes, sometimes with multi-byte characters.
        fn string_of(&mut self, len: usize) -> StrBytes {
            const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789.-";
            let wide = self.one_in(4);
            let mut text = String::with_capacity(len);
            while text.len() < len {
                if wide && len - text.len() >= 2 && self.one_in(3) {
                    text.push('é');
                } else {
                    text.push(CHARS[self.below(CHARS.len() as u64) as usize] as char);
                }
            }
            StrBytes::from_string(text)
        }
        /// A host: lengths 0..300, around the 127-byte compact-length boundary often.
        fn host(&mut self) -> StrBytes {
            let len = match self.below(5) {
                0 => self.count(3),
                1 => 40 + self.count(20),
                2 => 124 + self.count(6),
                _ => self.count(299),
            };
            self.string_of(len)
        }
        fn text(&mut self) -> StrBytes {
            let len = self.count(24);
            self.string_of(len)
        }
        fn opt_text(&mut self) -> Option<StrBytes> {
            (!self.one_in(3)).then(|| self.text())
        }
        fn uuid<T: std::str::FromStr>(&mut self) -> T
        where
            T::Err: std::fmt::Debug,
        {
            uuid(self.below(250) as u8)
        }
        fn ids(&mut self) -> Vec<BrokerId> {
            (0..self.count(3)).map(|_| self.node_id()).collect()
        }
        /// Unknown tagged fields, with tags at or above `from` (below are known tags).
        fn tags(&mut self, flexible: bool, from: i32) -> BTreeMap<i32, Bytes> {
            if !flexible || !self.one_in(3) {
                return BTreeMap::new();
            }
            (0..1 + self.count(2))
                .map(|_| {
                    let len = self.count(140);
                    let tag = from + self.below(40) as i32;
                    (tag, Bytes::from(vec![self.next() as u8; len]))
                })
                .collect()
        }
    }

    /// A mapper whose answers are a pure function of (seed, mode, arguments), recording
    /// every call; two of them with the same seed answer two rewrites alike.
    struct PropMapper {
        seed: u64,
        mode: u64,
        calls: Vec<(&'static str, i32, String, i32)>,
    }

    impl PropMapper {
        fn new(seed: u64) -> Self {
            Self {
                seed,
                mode: seed % 8,
                calls: Vec::new(),
            }
        }
        fn rng(&self, node_id: i32, host: &str, port: i32) -> Rng {
            let mut h = self.seed ^ 0x5151;
            for b in host
                .bytes()
                .chain(node_id.to_be_bytes())
                .chain(port.to_be_bytes())
            {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
            Rng(h)
        }
        /// The host and port the mapper answers for one entry.
        fn answer(&self, node_id: i32, host: &str, port: i32) -> (StrBytes, i32) {
            let mut r = self.rng(node_id, host, port);
            let same_host = StrBytes::from_string(host.to_string());
            match self.mode {
                // Identity: nothing changes, Ok(None).
                0 => (same_host, port),
                // One proxy host for every broker, a port per node id.
                1 | 2 => (s("proxy.local"), 19000 + node_id),
                // Only the port, or only the host, or both, at random lengths.
                _ => match r.below(4) {
                    0 => (same_host, r.port()),
                    1 => (r.host(), port),
                    2 if self.mode == 7 && r.one_in(3) => {
                        // Too long for an int16 length: non-flexible versions cannot carry it.
                        (r.string_of(40_000), port)
                    }
                    _ => (r.host(), r.port()),
                },
            }
        }
    }

    impl AddressMapper for PropMapper {
        fn map_broker(
            &mut self,
            node_id: i32,
            host: &str,
            port: i32,
        ) -> Result<Advertised, MapError> {
            self.calls.push(("broker", node_id, host.to_string(), port));
            // Mode 2: brokers with ids divisible by 5 are unknown.
            if self.mode == 2 && node_id.rem_euclid(5) == 0 {
                return Err(MapError { node_id });
            }
            let (host, port) = self.answer(node_id, host, port);
            Ok(Advertised { host, port })
        }
        fn map_controller(&mut self, node_id: i32, host: &str, port: i32) -> Advertised {
            self.calls
                .push(("controller", node_id, host.to_string(), port));
            let (host, port) = self.answer(node_id, host, port);
            // The contract is port 0; mode 6 also tries ports DescribeQuorum cannot carry.
            let port = match self.mode {
                0 => port,
                6 if node_id.rem_euclid(2) == 0 => 70_000,
                6 => port.rem_euclid(65_536),
                _ => 0,
            };
            Advertised { host, port }
        }
    }

    fn metadata(r: &mut Rng, v: i16) -> MetadataResponse {
        let flex = v >= 9;
        let mut m = MetadataResponse::default();
        m.brokers = (0..r.count(5))
            .map(|_| {
                let mut b = metadata_response::MetadataResponseBroker::default()
                    .with_node_id(r.node_id())
                    .with_host(r.host())
                    .with_port(r.port());
                if v >= 1 {
                    b.rack = r.opt_text();
                }
                b.unknown_tagged_fields = r.tags(flex, 0);
                b
            })
            .collect();
        if v >= 1 {
            m.controller_id = r.node_id();
        }
        if v >= 2 {
            m.cluster_id = r.opt_text();
        }
        if v >= 3 {
            m.throttle_time_ms = r.i32();
        }
        if (8..=10).contains(&v) {
            m.cluster_authorized_operations = r.i32();
        }
        if v >= 13 {
            m.error_code = r.i16();
        }
        m.topics = (0..r.count(3))
            .map(|_| {
                let mut t = metadata_response::MetadataResponseTopic::default()
                    .with_error_code(r.i16())
                    .with_name(Some(TopicName(r.text())));
                if v >= 12 && r.one_in(3) {
                    t.name = None;
                }
                if v >= 10 {
                    t.topic_id = r.uuid();
                }
                if v >= 1 {
                    t.is_internal = r.one_in(2);
                }
                if v >= 8 {
                    t.topic_authorized_operations = r.i32();
                }
                t.partitions = (0..r.count(3))
                    .map(|_| {
                        let mut p = metadata_response::MetadataResponsePartition::default()
                            .with_error_code(r.i16())
                            .with_partition_index(r.i32())
                            .with_leader_id(r.node_id())
                            .with_replica_nodes(r.ids())
                            .with_isr_nodes(r.ids());
                        if v >= 7 {
                            p.leader_epoch = r.i32();
                        }
                        if v >= 5 {
                            p.offline_replicas = r.ids();
                        }
                        p.unknown_tagged_fields = r.tags(flex, 0);
                        p
                    })
                    .collect();
                t.unknown_tagged_fields = r.tags(flex, 0);
                t
            })
            .collect();
        m.unknown_tagged_fields = r.tags(flex, 0);
        m
    }

    fn find_coordinator(r: &mut Rng, v: i16) -> FindCoordinatorResponse {
        let flex = v >= 3;
        // Errors name node -1 and an empty host, as brokers send them; sometimes not.
        let error = |r: &mut Rng| if r.one_in(3) { 15 } else { 0 };
        let mut m = FindCoordinatorResponse::default();
        if v >= 1 {
            m.throttle_time_ms = r.i32();
        }
        if v <= 3 {
            m.error_code = error(r);
            m.error_message = if v >= 1 { r.opt_text() } else { Some(s("")) };
            m.node_id = r.node_id();
            m.host = r.host();
            m.port = r.port();
        } else {
            m.error_message = None;
            m.coordinators = (0..r.count(5))
                .map(|_| {
                    let mut c = find_coordinator_response::Coordinator::default()
                        .with_key(r.text())
                        .with_node_id(r.node_id())
                        .with_host(r.host())
                        .with_port(r.port())
                        .with_error_code(error(r))
                        .with_error_message(r.opt_text());
                    c.unknown_tagged_fields = r.tags(true, 0);
                    c
                })
                .collect();
        }
        m.unknown_tagged_fields = r.tags(flex, 0);
        m
    }

    fn describe_cluster(r: &mut Rng, v: i16) -> DescribeClusterResponse {
        let mut m = DescribeClusterResponse::default()
            .with_throttle_time_ms(r.i32())
            .with_error_code(r.i16())
            .with_error_message(r.opt_text())
            .with_cluster_id(r.text())
            .with_controller_id(r.node_id())
            .with_cluster_authorized_operations(r.i32());
        if v >= 1 {
            m.endpoint_type = [1, 2, 2, 0, 3][r.below(5) as usize];
        }
        m.brokers = (0..r.count(5))
            .map(|_| {
                let mut b = describe_cluster_response::DescribeClusterBroker::default()
                    .with_broker_id(r.node_id())
                    .with_host(r.host())
                    .with_port(r.port())
                    .with_rack(r.opt_text());
                if v >= 2 {
                    b.is_fenced = r.one_in(2);
                }
                b.unknown_tagged_fields = r.tags(true, 0);
                b
            })
            .collect();
        m.unknown_tagged_fields = r.tags(true, 0);
        m
    }

    fn describe_quorum(r: &mut Rng, v: i16) -> DescribeQuorumResponse {
        let replica = |r: &mut Rng| {
            let mut s = describe_quorum_response::ReplicaState::default()
                .with_replica_id(r.node_id())
                .with_log_end_offset(r.i64());
            if v >= 1 {
                s.last_fetch_timestamp = r.i64();
                s.last_caught_up_timestamp = r.i64();
            }
            if v >= 2 {
                s.replica_directory_id = r.uuid();
            }
            s.unknown_tagged_fields = r.tags(true, 0);
            s
        };
        let mut m = DescribeQuorumResponse::default().with_error_code(r.i16());
        if v >= 2 {
            m.error_message = r.opt_text();
        }
        m.topics = (0..r.count(2))
            .map(|_| {
                describe_quorum_response::TopicData::default()
                    .with_topic_name(TopicName(r.text()))
                    .with_partitions(
                        (0..r.count(2))
                            .map(|_| {
                                let mut p = describe_quorum_response::PartitionData::default()
                                    .with_partition_index(r.i32())
                                    .with_error_code(r.i16())
                                    .with_leader_id(r.node_id())
                                    .with_leader_epoch(r.i32())
                                    .with_high_watermark(r.i64())
                                    .with_current_voters(
                                        (0..r.count(2)).map(|_| replica(r)).collect(),
                                    )
                                    .with_observers((0..r.count(2)).map(|_| replica(r)).collect());
                                if v >= 2 {
                                    p.error_message = r.opt_text();
                                }
                                p
                            })
                            .collect(),
                    )
            })
            .collect();
        if v >= 2 {
            m.nodes = (0..r.count(3))
                .map(|_| {
                    let mut n = Node::default().with_node_id(r.node_id()).with_listeners(
                        (0..r.count(3))
                            .map(|_| {
                                let mut l = Listener::default()
                                    .with_name(r.text())
                                    .with_host(r.host())
                                    .with_port(r.next() as u16);
                                l.unknown_tagged_fields = r.tags(true, 0);
                                l
                            })
                            .collect(),
                    );
                    n.unknown_tagged_fields = r.tags(true, 0);
                    n
                })
                .collect();
        }
        m.unknown_tagged_fields = r.tags(true, 0);
        m
    }

    /// node_endpoints entries of any of the four generated types.
    macro_rules! endpoints {
        ($r:expr, $ty:ty) => {
            (0..$r.count(4))
                .map(|_| {
                    let mut e = <$ty>::default()
                        .with_node_id($r.node_id())
                        .with_host($r.host())
                        .with_port($r.port())
                        .with_rack($r.opt_text());
                    e.unknown_tagged_fields = $r.tags(true, 0);
                    e
                })
                .collect()
        };
    }

    fn produce(r: &mut Rng, v: i16) -> ProduceResponse {
        let flex = v >= 9;
        let mut m = ProduceResponse::default().with_throttle_time_ms(r.i32());
        m.responses = (0..r.count(2))
            .map(|_| {
                let mut t = produce_response::TopicProduceResponse::default();
                if v <= 12 {
                    t.name = TopicName(r.text());
                } else {
                    t.topic_id = r.uuid();
                }
                t.partition_responses = (0..r.count(2))
                    .map(|_| {
                        let mut p = produce_response::PartitionProduceResponse::default()
                            .with_index(r.i32())
                            .with_error_code(r.i16())
                            .with_base_offset(r.i64())
                            .with_log_append_time_ms(r.i64());
                        if v >= 5 {
                            p.log_start_offset = r.i64();
                        }
                        if v >= 8 {
                            p.record_errors = (0..r.count(2))
                                .map(|_| {
                                    let mut e = BatchIndexAndErrorMessage::default()
                                        .with_batch_index(r.i32())
                                        .with_batch_index_error_message(r.opt_text());
                                    e.unknown_tagged_fields = r.tags(flex, 0);
                                    e
                                })
                                .collect();
                            p.error_message = r.opt_text();
                        }
                        if v >= 10 && r.one_in(2) {
                            p.current_leader = produce_response::LeaderIdAndEpoch::default()
                                .with_leader_id(r.node_id())
                                .with_leader_epoch(r.i32());
                        }
                        p.unknown_tagged_fields = r.tags(flex, 1);
                        p
                    })
                    .collect();
                t.unknown_tagged_fields = r.tags(flex, 0);
                t
            })
            .collect();
        if v >= 10 {
            m.node_endpoints = endpoints!(r, produce_response::NodeEndpoint);
        }
        m.unknown_tagged_fields = r.tags(flex, 1);
        m
    }

    fn fetch(r: &mut Rng, v: i16) -> FetchResponse {
        let flex = v >= 12;
        let mut m = FetchResponse::default().with_throttle_time_ms(r.i32());
        if v >= 7 {
            m.error_code = r.i16();
            m.session_id = r.i32();
        }
        m.responses = (0..r.count(2))
            .map(|_| {
                let mut t = fetch_response::FetchableTopicResponse::default();
                if v <= 12 {
                    t.topic = TopicName(r.text());
                } else {
                    t.topic_id = r.uuid();
                }
                t.partitions = (0..r.count(2))
                    .map(|_| {
                        let mut p = fetch_response::PartitionData::default()
                            .with_partition_index(r.i32())
                            .with_error_code(r.i16())
                            .with_high_watermark(r.i64())
                            .with_last_stable_offset(r.i64());
                        if v >= 5 {
                            p.log_start_offset = r.i64();
                        }
                        p.aborted_transactions = (!r.one_in(3)).then(|| {
                            (0..r.count(2))
                                .map(|_| {
                                    let mut a = fetch_response::AbortedTransaction::default()
                                        .with_producer_id(ProducerId(r.i64()))
                                        .with_first_offset(r.i64());
                                    a.unknown_tagged_fields = r.tags(flex, 0);
                                    a
                                })
                                .collect()
                        });
                        if v >= 11 {
                            p.preferred_read_replica = r.node_id();
                        }
                        p.records = (!r.one_in(4)).then(|| {
                            let len = r.count(200);
                            Bytes::from(vec![r.next() as u8; len])
                        });
                        if flex && r.one_in(2) {
                            p.current_leader = fetch_response::LeaderIdAndEpoch::default()
                                .with_leader_id(r.node_id())
                                .with_leader_epoch(r.i32());
                        }
                        if flex && r.one_in(3) {
                            p.diverging_epoch = fetch_response::EpochEndOffset::default()
                                .with_epoch(r.i32())
                                .with_end_offset(r.i64());
                            p.snapshot_id = fetch_response::SnapshotId::default()
                                .with_epoch(r.i32())
                                .with_end_offset(r.i64());
                        }
                        p.unknown_tagged_fields = r.tags(flex, 3);
                        p
                    })
                    .collect();
                t.unknown_tagged_fields = r.tags(flex, 0);
                t
            })
            .collect();
        if v >= 16 {
            m.node_endpoints = endpoints!(r, fetch_response::NodeEndpoint);
        }
        m.unknown_tagged_fields = r.tags(flex, 1);
        m
    }

    fn share_fetch(r: &mut Rng, _v: i16) -> ShareFetchResponse {
        let mut m = ShareFetchResponse::default()
            .with_throttle_time_ms(r.i32())
            .with_error_code(r.i16())
            .with_error_message(r.opt_text())
            .with_acquisition_lock_timeout_ms(r.i32());
        m.responses =
            (0..r.count(2))
                .map(|_| {
                    share_fetch_response::ShareFetchableTopicResponse::default()
                        .with_topic_id(r.uuid())
                        .with_partitions(
                            (0..r.count(2))
                                .map(|_| {
                                    share_fetch_response::PartitionData::default()
                                        .with_partition_index(r.i32())
                                        .with_error_code(r.i16())
                                        .with_error_message(r.opt_text())
                                        .with_acknowledge_error_code(r.i16())
                                        .with_acknowledge_error_message(r.opt_text())
                                        .with_current_leader(
                                            share_fetch_response::LeaderIdAndEpoch::default()
                                                .with_leader_id(r.i32())
                                                .with_leader_epoch(r.i32()),
                                        )
                                        .with_records((!r.one_in(3)).then(|| {
                                            Bytes::from(vec![r.next() as u8; r.count(90)])
                                        }))
                                        .with_acquired_records(
                                            (0..r.count(2))
                                                .map(|_| {
                                                    share_fetch_response::AcquiredRecords::default()
                                                        .with_first_offset(r.i64())
                                                        .with_last_offset(r.i64())
                                                        .with_delivery_count(r.i16())
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
        m.node_endpoints = endpoints!(r, share_fetch_response::NodeEndpoint);
        m.unknown_tagged_fields = r.tags(true, 0);
        m
    }

    fn share_acknowledge(r: &mut Rng, _v: i16) -> ShareAcknowledgeResponse {
        let mut m = ShareAcknowledgeResponse::default()
            .with_throttle_time_ms(r.i32())
            .with_error_code(r.i16())
            .with_error_message(r.opt_text());
        m.responses = (0..r.count(2))
            .map(|_| {
                share_acknowledge_response::ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(r.uuid())
                    .with_partitions(
                        (0..r.count(2))
                            .map(|_| {
                                share_acknowledge_response::PartitionData::default()
                                    .with_partition_index(r.i32())
                                    .with_error_code(r.i16())
                                    .with_error_message(r.opt_text())
                                    .with_current_leader(
                                        share_acknowledge_response::LeaderIdAndEpoch::default()
                                            .with_leader_id(r.i32())
                                            .with_leader_epoch(r.i32()),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        m.node_endpoints = endpoints!(r, share_acknowledge_response::NodeEndpoint);
        m.unknown_tagged_fields = r.tags(true, 0);
        m
    }

    /// One random response of `api_key` at `version`, as a broker sends it (a response
    /// header with random unknown tagged fields where the header is flexible).
    fn response(r: &mut Rng, api_key: i16, v: i16) -> Bytes {
        fn framed<M: Encodable>(r: &mut Rng, api_key: i16, v: i16, msg: &M) -> Bytes {
            let hv = response_header_version(api_key, v);
            let header = ResponseHeader::default()
                .with_correlation_id(r.i32())
                .with_unknown_tagged_fields(r.tags(hv >= 1, 0));
            payload_with_header(api_key, v, &header, msg)
        }
        match ApiKey::try_from(api_key).expect("api key") {
            ApiKey::Metadata => {
                let m = metadata(r, v);
                framed(r, api_key, v, &m)
            }
            ApiKey::FindCoordinator => {
                let m = find_coordinator(r, v);
                framed(r, api_key, v, &m)
            }
            ApiKey::DescribeCluster => {
                let m = describe_cluster(r, v);
                framed(r, api_key, v, &m)
            }
            ApiKey::DescribeQuorum => {
                let m = describe_quorum(r, v);
                framed(r, api_key, v, &m)
            }
            ApiKey::Produce => {
                let m = produce(r, v);
                framed(r, api_key, v, &m)
            }
            ApiKey::Fetch => {
                let m = fetch(r, v);
                framed(r, api_key, v, &m)
            }
            ApiKey::ShareFetch => {
                let m = share_fetch(r, v);
                framed(r, api_key, v, &m)
            }
            ApiKey::ShareAcknowledge => {
                let m = share_acknowledge(r, v);
                framed(r, api_key, v, &m)
            }
            other => panic!("{other:?} is not inspected"),
        }
    }

    /// Which outcomes the run produced, to check the generator reaches each of them.
    #[derive(Default, Debug)]
    struct Seen {
        unchanged: usize,
        rewritten: usize,
        map_errors: usize,
        controller_ports: usize,
        unencodable: usize,
    }

    fn compare(api_key: i16, v: i16, case: u64, input: &Bytes, seen: &mut Seen) {
        let at = format!("api {api_key} v{v} case {case:#x}");
        let mut spliced_mapper = PropMapper::new(case);
        let spliced = rewrite_response(api_key, v, input, &mut spliced_mapper);
        let mut decoded_mapper = PropMapper::new(case);
        let decoded = oracle::rewrite_response(api_key, v, input, &mut decoded_mapper);
        assert_eq!(
            spliced_mapper.calls, decoded_mapper.calls,
            "{at}: mapper calls"
        );
        match (&spliced, &decoded) {
            (Ok(None), Ok(None)) => seen.unchanged += 1,
            (Ok(Some(a)), Ok(Some(b))) => {
                if a != b {
                    let first = a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
                    let window = |f: &Bytes| f.slice(first..(first + 16).min(f.len()));
                    panic!(
                        "{at}: frames of {} and {} bytes differ from byte {first}: \
                         splice {:02x?}, decode {:02x?}",
                        a.len(),
                        b.len(),
                        &window(a)[..],
                        &window(b)[..]
                    );
                }
                seen.rewritten += 1;
            }
            (Err(RewriteError::Map(a)), Err(RewriteError::Map(b))) => {
                assert_eq!(a.node_id, b.node_id, "{at}");
                seen.map_errors += 1;
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
                assert_eq!((a, p), (b, q), "{at}");
                seen.controller_ports += 1;
            }
            (
                Err(RewriteError::Codec(CodecError::Encode {
                    api_key: a,
                    version: p,
                    ..
                })),
                Err(RewriteError::Codec(CodecError::Encode {
                    api_key: b,
                    version: q,
                    ..
                })),
            ) => {
                assert_eq!((a, p), (b, q), "{at}");
                seen.unencodable += 1;
            }
            _ => panic!("{at}: splice {spliced:?}\ndecode {decoded:?}"),
        }
    }

    #[test]
    fn every_inspected_api_at_every_version() {
        let cases: u64 = std::env::var("KTP_PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100);
        let mut seen = Seen::default();
        for i in &INSPECTED {
            let api_key = i.key as i16;
            for v in i.versions.min..=i.versions.max {
                for n in 0..cases {
                    let case = (u64::from(api_key as u16) << 48) | (u64::from(v as u16) << 32) | n;
                    let input = response(&mut Rng(case), api_key, v);
                    compare(api_key, v, case, &input, &mut seen);
                }
            }
        }
        assert!(
            seen.unchanged > 0
                && seen.rewritten > 0
                && seen.map_errors > 0
                && seen.controller_ports > 0
                && seen.unencodable > 0,
            "{seen:?}"
        );
        eprintln!("{cases} cases per version: {seen:?}");
    }
}

#[test]
fn metadata_topic_ids_pairs_each_topic_name_with_its_id_from_v10() {
    let versions = versions_of::<MetadataRequest, MetadataResponse>();
    for v in versions.min..=versions.max {
        let mut m = metadata(v);
        // A topic the response names without a name (an unknown id asked for) is skipped.
        let mut unnamed = m.topics[0].clone();
        unnamed.name = None;
        m.topics.push(unnamed);
        let bytes = payload(ApiKey::Metadata as i16, v, &m);
        let mut seen = Vec::new();
        metadata_topic_ids(v, &bytes, &mut |id, name| seen.push((id, name.to_vec())))
            .unwrap_or_else(|e| panic!("v{v}: {e}"));
        let want = if v >= 10 {
            vec![([7u8; 16], b"orders".to_vec())]
        } else {
            Vec::new()
        };
        assert_eq!(seen, want, "v{v}");
        // Truncated: an error, and nothing past the cut is reported.
        assert!(metadata_topic_ids(v, &bytes[..bytes.len() - 1], &mut |_, _| {}).is_err());
    }
}

/// What the plan's flags become for a response (as the connection asks).
fn needs_of(api_key: ApiKey, version: i16, payload: &[u8]) -> Needs {
    let key = api_key as i16;
    response_needs(
        key,
        version,
        payload,
        needs_inspection(key, version),
        crate::kafka::scrub::carries_text(key, version),
    )
    .expect("walks")
}

/// The hot path's one walk: a Produce is rewritten only with node_endpoints and scrubbed only
/// when an error message is non-null (v8+: partition or record error); a Fetch carries no text;
/// without either, both pass as their bytes.
#[test]
fn produce_and_fetch_need_a_rewrite_or_a_scrub_only_for_what_they_carry() {
    let produce_versions = versions_of::<ProduceRequest, ProduceResponse>();
    for v in produce_versions.min..=produce_versions.max {
        let clean = |m: &mut ProduceResponse| {
            for t in &mut m.responses {
                for p in &mut t.partition_responses {
                    p.error_code = 0;
                    p.error_message = None;
                    p.record_errors.clear();
                }
            }
        };
        let mut ok = produce(v, false);
        clean(&mut ok);
        assert_eq!(
            needs_of(ApiKey::Produce, v, &payload(PRODUCE, v, &ok)),
            Needs::default(),
            "v{v}"
        );
        let mut partition_error = ok.clone();
        partition_error.responses[0].partition_responses[0].error_message = Some(s("denied"));
        let mut record_error = ok.clone();
        record_error.responses[0].partition_responses[0].record_errors =
            vec![BatchIndexAndErrorMessage::default()
                .with_batch_index(0)
                .with_batch_index_error_message(Some(s("bad")))];
        let mut record_error_without_text = ok.clone();
        record_error_without_text.responses[0].partition_responses[0].record_errors =
            vec![BatchIndexAndErrorMessage::default().with_batch_index(0)];
        if v >= 8 {
            for m in [&partition_error, &record_error] {
                let needs = needs_of(ApiKey::Produce, v, &payload(PRODUCE, v, m));
                assert_eq!(
                    needs,
                    Needs {
                        addresses: false,
                        text: true
                    },
                    "v{v}"
                );
            }
            let needs = needs_of(
                ApiKey::Produce,
                v,
                &payload(PRODUCE, v, &record_error_without_text),
            );
            assert_eq!(needs, Needs::default(), "v{v}");
        }
        // With node_endpoints (and its error messages): both.
        let full = payload(PRODUCE, v, &produce(v, true));
        let needs = needs_of(ApiKey::Produce, v, &full);
        assert_eq!(needs.addresses, v >= 10, "v{v}");
        assert_eq!(needs.text, v >= 8, "v{v}");
        // Cut short: an error, never a pass, wherever the plan asks for a walk (v8+); before
        // v8 a Produce answer carries neither and is not walked at all.
        let cut = response_needs(PRODUCE, v, &full[..full.len() - 1], v >= 10, v >= 8);
        assert_eq!(cut.is_err(), v >= 8, "v{v}");
    }
    let fetch_versions = versions_of::<FetchRequest, FetchResponse>();
    for v in fetch_versions.min..=fetch_versions.max {
        for endpoints in [false, true] {
            let needs = needs_of(
                ApiKey::Fetch,
                v,
                &payload(FETCH, v, &fetch(v, endpoints, 2, 9)),
            );
            assert!(!needs.text, "v{v}");
            assert_eq!(needs.addresses, endpoints && v >= 16, "v{v}");
        }
    }
    // Every other API needs what its plan says, without a walk.
    for (inspect, text) in [(false, false), (true, false), (false, true), (true, true)] {
        let needs = response_needs(ApiKey::DescribeAcls as i16, 3, b"", inspect, text).unwrap();
        assert_eq!(
            needs,
            Needs {
                addresses: inspect,
                text
            }
        );
    }
}

/// DescribeTopicPartitions answers feed the topic id → name map as Metadata's do: every topic
/// named with both, a topic without a name skipped, a broken answer an error.
#[test]
fn describe_topic_partitions_names_its_topic_ids() {
    use kafka_protocol::messages::describe_topic_partitions_response::{
        Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
    };
    use kafka_protocol::messages::DescribeTopicPartitionsResponse;
    let key = ApiKey::DescribeTopicPartitions as i16;
    let partition = DescribeTopicPartitionsResponsePartition::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(1))
        .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
        .with_isr_nodes(vec![BrokerId(1)])
        .with_eligible_leader_replicas(Some(vec![BrokerId(2)]))
        .with_offline_replicas(vec![BrokerId(3)]);
    let m = DescribeTopicPartitionsResponse::default()
        .with_topics(vec![
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic("orders")))
                .with_topic_id(uuid(1))
                .with_partitions(vec![partition.clone(), partition]),
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(3)
                .with_name(None)
                .with_topic_id(uuid(2)),
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic("payments")))
                .with_topic_id(uuid(3)),
        ])
        .with_next_cursor(Some(
            Cursor::default()
                .with_topic_name(topic("payments"))
                .with_partition_index(4),
        ));
    let bytes = payload(key, 0, &m);
    let mut seen = Vec::new();
    describe_topic_partitions_ids(0, &bytes, &mut |id, name| seen.push((id, name.to_vec())))
        .expect("walks");
    assert_eq!(
        seen,
        [
            ([1; 16], b"orders".to_vec()),
            ([3; 16], b"payments".to_vec())
        ]
    );
    for cut in 0..bytes.len() {
        assert!(describe_topic_partitions_ids(0, &bytes[..cut], &mut |_, _| {}).is_err());
    }
    assert!(describe_topic_partitions_ids(1, &bytes, &mut |_, _| {}).is_err());
}
