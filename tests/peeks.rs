//! Property tests of the request header peeks in src/kafka/frame.rs against kafka-protocol's
//! own encoding and decoding: for every api key kafka-protocol knows and every version its
//! request type encodes, the fields the proxy reads in place (api key, version, correlation id,
//! header length, and for Produce whether a response is due) must be what kafka-protocol
//! decodes, whatever client id, correlation id and header tagged fields the client chose.
//! Produce v0-v2, which kafka-protocol cannot encode, are built by hand, and their truncations
//! must be errors, never a wrong answer.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes, VersionRange};
use kafka_tls_proxy::kafka::codec;
use kafka_tls_proxy::kafka::frame::{self, FrameError, LENGTH_PREFIX};
use proptest::prelude::*;

/// A request type: its versions and its default body at a version (None if kafka-protocol
/// does not encode the default at that version).
struct Api {
    versions: VersionRange,
    encode_default: fn(i16) -> Option<Vec<u8>>,
}

fn encode_default<R: Encodable + Default>(version: i16) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    R::default().encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

macro_rules! request_types {
    ($($key:ident => $request:ident,)*) => {
        /// Every api key and its request type. A match without a wildcard: a kafka-protocol
        /// upgrade that adds an api key does not compile until it is listed here.
        fn api(key: ApiKey) -> Api {
            match key {
                $(ApiKey::$key => Api {
                    versions: <$request as Message>::VERSIONS,
                    encode_default: encode_default::<$request>,
                },)*
            }
        }
    };
}

request_types! {
    Produce => ProduceRequest,
    Fetch => FetchRequest,
    ListOffsets => ListOffsetsRequest,
    Metadata => MetadataRequest,
    OffsetCommit => OffsetCommitRequest,
    OffsetFetch => OffsetFetchRequest,
    FindCoordinator => FindCoordinatorRequest,
    JoinGroup => JoinGroupRequest,
    Heartbeat => HeartbeatRequest,
    LeaveGroup => LeaveGroupRequest,
    SyncGroup => SyncGroupRequest,
    DescribeGroups => DescribeGroupsRequest,
    ListGroups => ListGroupsRequest,
    SaslHandshake => SaslHandshakeRequest,
    ApiVersions => ApiVersionsRequest,
    CreateTopics => CreateTopicsRequest,
    DeleteTopics => DeleteTopicsRequest,
    DeleteRecords => DeleteRecordsRequest,
    InitProducerId => InitProducerIdRequest,
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
    AddPartitionsToTxn => AddPartitionsToTxnRequest,
    AddOffsetsToTxn => AddOffsetsToTxnRequest,
    EndTxn => EndTxnRequest,
    WriteTxnMarkers => WriteTxnMarkersRequest,
    TxnOffsetCommit => TxnOffsetCommitRequest,
    DescribeAcls => DescribeAclsRequest,
    CreateAcls => CreateAclsRequest,
    DeleteAcls => DeleteAclsRequest,
    DescribeConfigs => DescribeConfigsRequest,
    AlterConfigs => AlterConfigsRequest,
    AlterReplicaLogDirs => AlterReplicaLogDirsRequest,
    DescribeLogDirs => DescribeLogDirsRequest,
    SaslAuthenticate => SaslAuthenticateRequest,
    CreatePartitions => CreatePartitionsRequest,
    CreateDelegationToken => CreateDelegationTokenRequest,
    RenewDelegationToken => RenewDelegationTokenRequest,
    ExpireDelegationToken => ExpireDelegationTokenRequest,
    DescribeDelegationToken => DescribeDelegationTokenRequest,
    DeleteGroups => DeleteGroupsRequest,
    ElectLeaders => ElectLeadersRequest,
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
    AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
    ListPartitionReassignments => ListPartitionReassignmentsRequest,
    OffsetDelete => OffsetDeleteRequest,
    DescribeClientQuotas => DescribeClientQuotasRequest,
    AlterClientQuotas => AlterClientQuotasRequest,
    DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
    AlterUserScramCredentials => AlterUserScramCredentialsRequest,
    Vote => VoteRequest,
    BeginQuorumEpoch => BeginQuorumEpochRequest,
    EndQuorumEpoch => EndQuorumEpochRequest,
    DescribeQuorum => DescribeQuorumRequest,
    AlterPartition => AlterPartitionRequest,
    UpdateFeatures => UpdateFeaturesRequest,
    Envelope => EnvelopeRequest,
    FetchSnapshot => FetchSnapshotRequest,
    DescribeCluster => DescribeClusterRequest,
    DescribeProducers => DescribeProducersRequest,
    BrokerRegistration => BrokerRegistrationRequest,
    BrokerHeartbeat => BrokerHeartbeatRequest,
    UnregisterBroker => UnregisterBrokerRequest,
    DescribeTransactions => DescribeTransactionsRequest,
    ListTransactions => ListTransactionsRequest,
    AllocateProducerIds => AllocateProducerIdsRequest,
    ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
    ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
    ControllerRegistration => ControllerRegistrationRequest,
    GetTelemetrySubscriptions => GetTelemetrySubscriptionsRequest,
    PushTelemetry => PushTelemetryRequest,
    AssignReplicasToDirs => AssignReplicasToDirsRequest,
    ListConfigResources => ListConfigResourcesRequest,
    DescribeTopicPartitions => DescribeTopicPartitionsRequest,
    ShareGroupHeartbeat => ShareGroupHeartbeatRequest,
    ShareGroupDescribe => ShareGroupDescribeRequest,
    ShareFetch => ShareFetchRequest,
    ShareAcknowledge => ShareAcknowledgeRequest,
    AddRaftVoter => AddRaftVoterRequest,
    RemoveRaftVoter => RemoveRaftVoterRequest,
    UpdateRaftVoter => UpdateRaftVoterRequest,
    InitializeShareGroupState => InitializeShareGroupStateRequest,
    ReadShareGroupState => ReadShareGroupStateRequest,
    WriteShareGroupState => WriteShareGroupStateRequest,
    DeleteShareGroupState => DeleteShareGroupStateRequest,
    ReadShareGroupStateSummary => ReadShareGroupStateSummaryRequest,
    DescribeShareGroupOffsets => DescribeShareGroupOffsetsRequest,
    AlterShareGroupOffsets => AlterShareGroupOffsetsRequest,
    DeleteShareGroupOffsets => DeleteShareGroupOffsetsRequest,
}

/// Default request bodies of every (api key, version) that kafka-protocol encodes.
fn bodies() -> &'static [(ApiKey, i16, Vec<u8>)] {
    static BODIES: OnceLock<Vec<(ApiKey, i16, Vec<u8>)>> = OnceLock::new();
    BODIES.get_or_init(|| {
        let mut out = Vec::new();
        let mut refused = Vec::new();
        for key in ApiKey::iter() {
            let api = api(key);
            for version in api.versions.min..=api.versions.max {
                match (api.encode_default)(version) {
                    Some(body) => out.push((key, version, body)),
                    None => refused.push((key, version)),
                }
            }
        }
        // kafka-protocol 0.18.0 encodes all 287 (api key, version) pairs of its 87 api keys.
        assert!(
            refused.len() * 20 < out.len(),
            "kafka-protocol refused to encode the default body of {refused:?}"
        );
        for key in ApiKey::iter() {
            assert!(
                out.iter().any(|(k, _, _)| *k == key),
                "no version of {key:?} encodes"
            );
        }
        out
    })
}

/// A complete request frame: length prefix, header at the api's header version, body.
fn request_frame(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &Option<String>,
    tags: &BTreeMap<i32, Vec<u8>>,
    body: &[u8],
) -> (Vec<u8>, usize) {
    let header_version = key.request_header_version(version);
    let mut header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id);
    if header_version >= 1 {
        header.client_id = client_id.clone().map(StrBytes::from_string);
    }
    if header_version >= 2 {
        header.unknown_tagged_fields = tags
            .iter()
            .map(|(k, v)| (*k, Bytes::from(v.clone())))
            .collect();
    }
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .expect("encode the header");
    let header_len = buf.len() - LENGTH_PREFIX;
    buf.put_slice(body);
    let len = (buf.len() - LENGTH_PREFIX) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    (buf.to_vec(), header_len)
}

/// The start of a request frame built by hand: length (0, to patch), api key, version,
/// correlation id and a header v1 client id (nullable string). Returns it and the header length.
fn header_v1(
    key: i16,
    version: i16,
    correlation_id: i32,
    client_id: &Option<String>,
) -> (BytesMut, usize) {
    let mut b = BytesMut::new();
    b.put_i32(0);
    b.put_i16(key);
    b.put_i16(version);
    b.put_i32(correlation_id);
    match client_id {
        None => b.put_i16(-1),
        Some(c) => {
            b.put_i16(c.len() as i16);
            b.put_slice(c.as_bytes());
        }
    }
    let header_len = b.len() - LENGTH_PREFIX;
    (b, header_len)
}

fn client_ids() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        "[a-z0-9._-]{1,24}".prop_map(Some),
        prop::collection::vec(any::<char>(), 0..200).prop_map(|c| Some(c.into_iter().collect())),
    ]
}

fn header_tags() -> impl Strategy<Value = BTreeMap<i32, Vec<u8>>> {
    prop::collection::btree_map(
        prop_oneof![0..8i32, 0..i32::MAX],
        prop::collection::vec(any::<u8>(), 0..40),
        0..4,
    )
}

fn acks() -> impl Strategy<Value = i16> {
    prop_oneof![Just(-1i16), Just(0), Just(1), any::<i16>()]
}

/// Checks every peek of one request frame against kafka-protocol's decoding of it.
fn check_header(frame_bytes: &[u8], key: ApiKey, version: i16, header_len: usize) {
    let h = frame::request_header(frame_bytes).expect("request_header");
    let header_version = key.request_header_version(version);
    assert_eq!(
        codec::request_header_version(key as i16, version),
        header_version
    );

    let mut buf = Bytes::copy_from_slice(&frame_bytes[LENGTH_PREFIX..]);
    let before = buf.len();
    let decoded =
        RequestHeader::decode(&mut buf, header_version).expect("kafka-protocol decodes the header");
    assert_eq!(
        (h.api_key, h.api_version, h.correlation_id),
        (
            decoded.request_api_key,
            decoded.request_api_version,
            decoded.correlation_id
        ),
        "{key:?} v{version}"
    );
    assert_eq!((h.api_key, h.api_version), (key as i16, version));
    assert_eq!(before - buf.len(), header_len);
    assert_eq!(
        frame::request_header_len(frame_bytes),
        Ok(header_len),
        "{key:?} v{version}"
    );
}

proptest! {
    /// Every api key and version: the peeked header fields and length agree with kafka-protocol,
    /// and a frame cut inside the header is an error, not a shorter header.
    #[test]
    fn header_peeks_agree_with_kafka_protocol_for_every_api(
        correlation_id in any::<i32>(),
        client_id in client_ids(),
        tags in header_tags(),
        cut in any::<prop::sample::Index>(),
    ) {
        for (key, version, body) in bodies() {
            let (bytes, header_len) = request_frame(*key, *version, correlation_id, &client_id, &tags, body);
            check_header(&bytes, *key, *version, header_len);
            if *key != ApiKey::Produce {
                let h = frame::request_header(&bytes).unwrap();
                prop_assert_eq!(frame::expects_response(&h, &bytes), Ok(true));
            }
            let short = cut.index(header_len - 8) + 8; // inside the header, after the fixed fields
            let truncated = &bytes[..LENGTH_PREFIX + short];
            prop_assert!(
                matches!(frame::request_header_len(truncated), Err(FrameError::Malformed { .. })),
                "{:?} v{} cut at {} of a {}-byte header", key, version, short, header_len
            );
        }
    }

    /// Api keys kafka-protocol does not know are read as header v1: client id, no tags.
    #[test]
    fn unknown_api_keys_are_read_as_header_v1(
        key in prop_oneof![93i16..=i16::MAX, i16::MIN..0],
        version in any::<i16>(),
        correlation_id in any::<i32>(),
        client_id in client_ids(),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assume!(ApiKey::try_from(key).is_err());
        let (mut b, header_len) = header_v1(key, version, correlation_id, &client_id);
        b.put_slice(&body);
        let len = (b.len() - LENGTH_PREFIX) as i32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        let h = frame::request_header(&b).unwrap();
        prop_assert_eq!((h.api_key, h.api_version, h.correlation_id), (key, version, correlation_id));
        prop_assert_eq!(frame::request_header_len(&b), Ok(header_len));
        prop_assert_eq!(frame::expects_response(&h, &b), Ok(true));
    }

    /// Produce v3-v13 (kafka-protocol's versions): whether a response is due is exactly
    /// acks != 0 as kafka-protocol decodes it, whatever the transactional and client ids.
    #[test]
    fn produce_expects_a_response_unless_acks_is_zero(
        version in 3i16..=13,
        acks in acks(),
        timeout_ms in any::<i32>(),
        transactional_id in prop_oneof![
            Just(None),
            Just(Some(String::new())),
            "[a-zA-Z0-9._-]{1,40}".prop_map(Some),
            prop::collection::vec(any::<char>(), 100..400).prop_map(|c| Some(c.into_iter().collect())),
        ],
        correlation_id in any::<i32>(),
        client_id in client_ids(),
        tags in header_tags(),
        records in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut topic = produce_request::TopicProduceData::default().with_partition_data(vec![
            produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records))),
        ]);
        if version <= 12 {
            topic.name = TopicName(StrBytes::from_static_str("orders"));
        }
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_transactional_id(transactional_id.clone().map(|t| StrBytes::from_string(t).into()))
            .with_topic_data(vec![topic]);
        let mut body = BytesMut::new();
        request.encode(&mut body, version).expect("encode Produce");
        let (bytes, header_len) = request_frame(ApiKey::Produce, version, correlation_id, &client_id, &tags, &body);
        check_header(&bytes, ApiKey::Produce, version, header_len);

        let mut rest = Bytes::copy_from_slice(&bytes[LENGTH_PREFIX + header_len..]);
        let decoded = ProduceRequest::decode(&mut rest, version).expect("kafka-protocol decodes Produce");
        prop_assert_eq!(decoded.acks, acks);
        let h = frame::request_header(&bytes).unwrap();
        prop_assert_eq!(frame::expects_response(&h, &bytes), Ok(decoded.acks != 0));

        // acks ends after the transactional id; any cut before that is an error.
        let acks_end = LENGTH_PREFIX + header_len + transactional_id_len(&body, version) + 2;
        for cut in [acks_end - 1, acks_end - 2, LENGTH_PREFIX + header_len, 12] {
            let r = frame::expects_response(&h, &bytes[..cut]);
            prop_assert!(matches!(r, Err(FrameError::Malformed { .. })), "v{} cut at {}: {:?}", version, cut, r);
        }
        prop_assert_eq!(frame::expects_response(&h, &bytes[..acks_end]), Ok(acks != 0));
    }

    /// Produce v0-v2, built by hand: acks int16, timeout int32, topic data, no transactional id.
    /// Every truncation is an error or, once acks is complete, the right answer.
    #[test]
    fn produce_v0_to_v2_by_hand(
        version in 0i16..=2,
        acks in acks(),
        timeout_ms in any::<i32>(),
        correlation_id in any::<i32>(),
        client_id in client_ids(),
        topics in prop::collection::vec(("[a-z]{1,12}", prop::collection::vec(any::<u8>(), 0..32)), 0..3),
    ) {
        let (mut b, header_len) = header_v1(0, version, correlation_id, &client_id);
        b.put_i16(acks);
        let acks_end = b.len();
        b.put_i32(timeout_ms);
        b.put_i32(topics.len() as i32);
        for (name, records) in &topics {
            b.put_i16(name.len() as i16);
            b.put_slice(name.as_bytes());
            b.put_i32(1);
            b.put_i32(0);
            b.put_i32(records.len() as i32);
            b.put_slice(records);
        }
        let len = (b.len() - LENGTH_PREFIX) as i32;
        b[..4].copy_from_slice(&len.to_be_bytes());

        let h = frame::request_header(&b).unwrap();
        prop_assert_eq!((h.api_key, h.api_version, h.correlation_id), (0, version, correlation_id));
        prop_assert_eq!(frame::request_header_len(&b), Ok(header_len));
        prop_assert_eq!(frame::expects_response(&h, &b), Ok(acks != 0));
        for cut in 12..b.len() {
            let r = frame::expects_response(&h, &b[..cut]);
            if cut >= acks_end {
                prop_assert_eq!(r, Ok(acks != 0), "v{} cut at {}", version, cut);
            } else {
                prop_assert!(matches!(r, Err(FrameError::Malformed { .. })), "v{} cut at {}: {:?}", version, cut, r);
            }
        }
    }
}

/// Bytes the transactional id takes at the start of a Produce body (v3+): a nullable string,
/// compact (unsigned varint length + 1) from v9.
fn transactional_id_len(body: &[u8], version: i16) -> usize {
    if version >= 9 {
        let (mut value, mut shift, mut i) = (0u64, 0, 0);
        loop {
            let b = body[i];
            value |= u64::from(b & 0x7f) << shift;
            i += 1;
            if b < 0x80 {
                break;
            }
            shift += 7;
        }
        i + value.saturating_sub(1) as usize
    } else {
        2 + i16::from_be_bytes([body[0], body[1]]).max(0) as usize
    }
}
