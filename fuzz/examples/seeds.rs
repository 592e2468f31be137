//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/` (or the directory
//! given as the first argument), replacing what is there:
//!
//! ```text
//! cd fuzz && cargo run --example seeds
//! ```
//!
//! Every seed is made by kafka-protocol (the encoder the brokers' answers agree with) and the
//! project's own code, in the input format each target reads (`ktp_fuzz`): realistic responses
//! of every API and version the proxy rewrites or reads, request frames of several APIs
//! including hand-built Produce v0-v2, pipelined chunks, and the hostile inputs that once
//! crashed or could crash the proxy. The output is deterministic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_quorum_response::{
    self, Listener, Node, PartitionData as QuorumPartition, ReplicaState, TopicData,
};
use kafka_protocol::messages::fetch_response::{self, FetchableTopicResponse};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{
    self, BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    fetch_request, metadata_request, produce_request, share_acknowledge_response,
    share_fetch_response, ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId,
    DescribeClusterResponse, DescribeQuorumResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, SaslHandshakeRequest,
    ShareAcknowledgeResponse, ShareFetchResponse, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_tls_proxy::kafka::{codec, rewrite};
use ktp_fuzz::{
    keyed, FramesInput, API_VERSIONS_KEYS, NODE_ENDPOINTS_KEYS, OWN_CORRELATION_ID,
};

const METADATA: i16 = ApiKey::Metadata as i16;
const FIND_COORDINATOR: i16 = ApiKey::FindCoordinator as i16;
const DESCRIBE_CLUSTER: i16 = ApiKey::DescribeCluster as i16;
const DESCRIBE_QUORUM: i16 = ApiKey::DescribeQuorum as i16;
const PRODUCE: i16 = ApiKey::Produce as i16;
const FETCH: i16 = ApiKey::Fetch as i16;
const SHARE_FETCH: i16 = ApiKey::ShareFetch as i16;
const SHARE_ACKNOWLEDGE: i16 = ApiKey::ShareAcknowledge as i16;
const API_VERSIONS: i16 = ApiKey::ApiVersions as i16;

const MSK: [&str; 3] = [
    "b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com",
    "b-2.demo.abc123.c2.kafka.eu-west-1.amazonaws.com",
    "b-3.demo.abc123.c2.kafka.eu-west-1.amazonaws.com",
];
const CORRELATION: i32 = 0x0102_0304;

fn s(v: &'static str) -> StrBytes {
    StrBytes::from_static_str(v)
}

fn topic(v: &'static str) -> TopicName {
    TopicName(s(v))
}

fn uuid<T: std::str::FromStr>(n: u8) -> T
where
    T::Err: std::fmt::Debug,
{
    format!("{:032x}", u128::from_be_bytes([n; 16]))
        .parse()
        .expect("uuid")
}

/// One target's seeds, by file name.
struct Corpus {
    dir: PathBuf,
    seeds: BTreeMap<String, Vec<u8>>,
}

impl Corpus {
    fn new(root: &Path, target: &str) -> Self {
        Self {
            dir: root.join(target),
            seeds: BTreeMap::new(),
        }
    }

    fn add(&mut self, name: impl Into<String>, data: Vec<u8>) {
        let name = name.into();
        assert!(
            self.seeds.insert(name.clone(), data).is_none(),
            "duplicate seed {name}"
        );
    }

    fn write(self) -> (usize, usize) {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).expect("clear the corpus directory");
        }
        std::fs::create_dir_all(&self.dir).expect("create the corpus directory");
        let mut bytes = 0;
        for (name, data) in &self.seeds {
            std::fs::write(self.dir.join(name), data).expect("write a seed");
            bytes += data.len();
        }
        println!(
            "{}: {} seeds, {} bytes",
            self.dir.display(),
            self.seeds.len(),
            bytes
        );
        (self.seeds.len(), bytes)
    }
}

// ------------------------------------------------------------------------------- responses

/// The message brokers send a principal without cluster permissions (with this broker's own
/// listener address), and a broker's advertised listeners.
const AUTHZ: &str = "Request Request(processor=0, connectionId=127.0.0.11:9094-10.0.0.9:50000-0-14, session=x) needs DESCRIBE permission; see b-2.msk.test or B-1.MSK.TEST:9094.";

fn msg() -> Option<StrBytes> {
    Some(StrBytes::from_static_str(AUTHZ))
}

/// A response of each free-text API at every version kafka-protocol has, with upstream hosts
/// in its error messages (and configuration values), for the `scrub` target.
fn scrub_responses() -> Vec<(i16, i16, String, Vec<u8>)> {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;
    let mut out = Vec::new();
    let mut add = |key: ApiKey, range: kafka_protocol::protocol::VersionRange, f: &dyn Fn(i16) -> Vec<u8>| {
        for v in range.min..=range.max {
            out.push((key as i16, v, format!("{key:?}-v{v}"), f(v)));
        }
    };
    add(ApiKey::DescribeAcls, DescribeAclsResponse::VERSIONS, &|v| {
        let m = DescribeAclsResponse::default().with_error_code(31).with_error_message(msg()).with_resources(vec![
            describe_acls_response::DescribeAclsResource::default().with_resource_name(s("t")).with_acls(vec![
                describe_acls_response::AclDescription::default().with_principal(s("User:x")).with_host(s("127.0.0.11")),
            ]),
        ]);
        payload(ApiKey::DescribeAcls as i16, v, &m)
    });
    add(ApiKey::CreateAcls, CreateAclsResponse::VERSIONS, &|v| {
        let m = CreateAclsResponse::default().with_results(vec![
            create_acls_response::AclCreationResult::default().with_error_code(31).with_error_message(msg()),
        ]);
        payload(ApiKey::CreateAcls as i16, v, &m)
    });
    add(ApiKey::DeleteAcls, DeleteAclsResponse::VERSIONS, &|v| {
        let m = DeleteAclsResponse::default().with_filter_results(vec![
            delete_acls_response::DeleteAclsFilterResult::default().with_error_message(msg()).with_matching_acls(vec![
                delete_acls_response::DeleteAclsMatchingAcl::default().with_error_message(msg()).with_host(s("b-1.msk.test")),
            ]),
        ]);
        payload(ApiKey::DeleteAcls as i16, v, &m)
    });
    add(ApiKey::DescribeConfigs, DescribeConfigsResponse::VERSIONS, &|v| {
        let m = DescribeConfigsResponse::default().with_results(vec![
            describe_configs_response::DescribeConfigsResult::default().with_error_message(msg()).with_resource_type(4).with_resource_name(s("1")).with_configs(vec![
                describe_configs_response::DescribeConfigsResourceResult::default().with_name(s("advertised.listeners")).with_value(msg()).with_synonyms(vec![
                    describe_configs_response::DescribeConfigsSynonym::default().with_name(s("x")).with_value(msg()),
                ]),
            ]),
        ]);
        payload(ApiKey::DescribeConfigs as i16, v, &m)
    });
    add(ApiKey::AlterPartitionReassignments, AlterPartitionReassignmentsResponse::VERSIONS, &|v| {
        let m = AlterPartitionReassignmentsResponse::default().with_error_code(29).with_error_message(msg()).with_responses(vec![
            alter_partition_reassignments_response::ReassignableTopicResponse::default().with_name(topic("t")).with_partitions(vec![
                alter_partition_reassignments_response::ReassignablePartitionResponse::default().with_error_message(msg()),
            ]),
        ]);
        payload(ApiKey::AlterPartitionReassignments as i16, v, &m)
    });
    add(ApiKey::ListPartitionReassignments, ListPartitionReassignmentsResponse::VERSIONS, &|v| {
        let m = ListPartitionReassignmentsResponse::default().with_error_code(29).with_error_message(msg()).with_topics(vec![
            list_partition_reassignments_response::OngoingTopicReassignment::default().with_name(topic("t")).with_partitions(vec![
                list_partition_reassignments_response::OngoingPartitionReassignment::default().with_replicas(vec![BrokerId(1)]),
            ]),
        ]);
        payload(ApiKey::ListPartitionReassignments as i16, v, &m)
    });
    add(ApiKey::ElectLeaders, ElectLeadersResponse::VERSIONS, &|v| {
        let m = ElectLeadersResponse::default().with_replica_election_results(vec![
            elect_leaders_response::ReplicaElectionResult::default().with_topic(topic("t")).with_partition_result(vec![
                elect_leaders_response::PartitionResult::default().with_error_code(31).with_error_message(msg()),
            ]),
        ]);
        payload(ApiKey::ElectLeaders as i16, v, &m)
    });
    add(ApiKey::CreateTopics, CreateTopicsResponse::VERSIONS, &|v| {
        let m = CreateTopicsResponse::default().with_topics(vec![
            create_topics_response::CreatableTopicResult::default().with_name(topic("t")).with_error_message(msg()),
        ]);
        payload(ApiKey::CreateTopics as i16, v, &m)
    });
    add(ApiKey::UpdateFeatures, UpdateFeaturesResponse::VERSIONS, &|v| {
        let m = UpdateFeaturesResponse::default().with_error_message(msg());
        payload(ApiKey::UpdateFeatures as i16, v, &m)
    });
    // Error messages of the address-carrying APIs (scrubbed after their rewrite).
    add(ApiKey::Produce, kafka_protocol::protocol::VersionRange { min: 8, max: ProduceResponse::VERSIONS.max }, &|v| {
        let mut m = produce(v, v >= 10);
        m.responses[0].partition_responses[0].error_message = msg();
        payload(ApiKey::Produce as i16, v, &m)
    });
    add(ApiKey::FindCoordinator, FindCoordinatorResponse::VERSIONS, &|v| {
        let mut m = find_coordinator(v, false);
        if v >= 1 && v <= 3 {
            m.error_message = msg();
        }
        for c in &mut m.coordinators {
            c.error_message = msg();
        }
        payload(ApiKey::FindCoordinator as i16, v, &m)
    });
    add(ApiKey::ShareFetch, ShareFetchResponse::VERSIONS, &|v| {
        let m = ShareFetchResponse::default().with_error_code(29).with_error_message(msg()).with_responses(vec![
            share_fetch_response::ShareFetchableTopicResponse::default().with_partitions(vec![
                share_fetch_response::PartitionData::default().with_error_message(msg()).with_acknowledge_error_message(msg()),
            ]),
        ]);
        payload(ApiKey::ShareFetch as i16, v, &m)
    });
    add(ApiKey::ConsumerGroupHeartbeat, ConsumerGroupHeartbeatResponse::VERSIONS, &|v| {
        let m = ConsumerGroupHeartbeatResponse::default().with_error_code(30).with_error_message(msg()).with_member_id(Some(s("m-1")));
        payload(ApiKey::ConsumerGroupHeartbeat as i16, v, &m)
    });
    add(ApiKey::ConsumerGroupDescribe, ConsumerGroupDescribeResponse::VERSIONS, &|v| {
        let m = ConsumerGroupDescribeResponse::default().with_groups(vec![
            consumer_group_describe_response::DescribedGroup::default().with_error_code(30).with_error_message(msg()).with_group_id(GroupId(s("g"))).with_members(vec![
                consumer_group_describe_response::Member::default().with_member_id(s("m-1")).with_client_host(s("/10.0.9.2")),
            ]),
        ]);
        payload(ApiKey::ConsumerGroupDescribe as i16, v, &m)
    });
    add(ApiKey::DescribeClientQuotas, DescribeClientQuotasResponse::VERSIONS, &|v| {
        let m = DescribeClientQuotasResponse::default().with_error_code(31).with_error_message(msg());
        payload(ApiKey::DescribeClientQuotas as i16, v, &m)
    });
    add(ApiKey::DescribeGroups, DescribeGroupsResponse::VERSIONS, &|v| {
        let mut g = describe_groups_response::DescribedGroup::default().with_error_code(30).with_group_id(GroupId(s("g")));
        if v >= 6 {
            g.error_message = msg();
        }
        payload(ApiKey::DescribeGroups as i16, v, &DescribeGroupsResponse::default().with_groups(vec![g]))
    });
    out
}

fn response_header(api_key: i16, version: i16, tagged: bool) -> ResponseHeader {
    let mut h = ResponseHeader::default().with_correlation_id(CORRELATION);
    if tagged && codec::response_header_version(api_key, version) >= 1 {
        h.unknown_tagged_fields
            .insert(5, Bytes::from_static(b"hdr"));
    }
    h
}

/// A response payload (header + body, no length prefix) as a broker sends it.
fn payload<M: Encodable>(api_key: i16, version: i16, msg: &M) -> Vec<u8> {
    payload_with(api_key, version, &response_header(api_key, version, false), msg)
}

fn payload_with<M: Encodable>(api_key: i16, version: i16, header: &ResponseHeader, msg: &M) -> Vec<u8> {
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, codec::response_header_version(api_key, version))
        .expect("encode the response header");
    msg.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("encode api {api_key} v{version}: {e:#}"));
    buf.to_vec()
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn metadata(version: i16, brokers: usize, topics: bool) -> MetadataResponse {
    let racks = ["euw1-az1", "euw1-az2", "euw1-az3"];
    let mut m = MetadataResponse::default().with_brokers(
        (0..brokers)
            .map(|i| {
                let mut b = MetadataResponseBroker::default()
                    .with_node_id(BrokerId(i as i32 + 1))
                    .with_host(s(MSK[i % 3]))
                    .with_port(9094);
                if version >= 1 {
                    b.rack = Some(s(racks[i % 3]));
                }
                if version >= 9 && i == 1 {
                    b.unknown_tagged_fields
                        .insert(3, Bytes::from_static(b"broker-tag"));
                }
                b
            })
            .collect(),
    );
    if topics {
        let mut partition = MetadataResponsePartition::default()
            .with_partition_index(0)
            .with_leader_id(BrokerId(2))
            .with_replica_nodes(vec![BrokerId(2), BrokerId(1), BrokerId(3)])
            .with_isr_nodes(vec![BrokerId(2), BrokerId(1)]);
        if version >= 7 {
            partition.leader_epoch = 5;
        }
        if version >= 5 {
            partition.offline_replicas = vec![BrokerId(3)];
        }
        let mut t = MetadataResponseTopic::default()
            .with_name(Some(topic("orders")))
            .with_partitions(vec![partition.clone(), partition.with_partition_index(1)]);
        if version >= 10 {
            t.topic_id = uuid(7);
        }
        if version >= 8 {
            t.topic_authorized_operations = 0x0f;
        }
        if version >= 1 {
            t.is_internal = false;
        }
        m.topics = vec![t];
    }
    if version >= 3 {
        m.throttle_time_ms = 11;
    }
    if version >= 2 {
        m.cluster_id = Some(s("Xy-Cluster-4f2a"));
    }
    if version >= 1 {
        m.controller_id = BrokerId(2);
    }
    if (8..=10).contains(&version) {
        m.cluster_authorized_operations = -2_147_483_648;
    }
    m
}

fn find_coordinator(version: i16, ok: bool) -> FindCoordinatorResponse {
    let mut m = FindCoordinatorResponse::default();
    if version <= 3 {
        if ok {
            m.node_id = BrokerId(3);
            m.host = s(MSK[2]);
            m.port = 9094;
        } else {
            m.error_code = 15;
            m.node_id = BrokerId(-1);
            m.host = s("");
            m.port = -1;
        }
        if version >= 1 {
            m.throttle_time_ms = 3;
            m.error_message = if ok { None } else { Some(s("not yet")) };
        }
    } else {
        m.throttle_time_ms = 3;
        m.coordinators = vec![
            Coordinator::default()
                .with_key(s("group-a"))
                .with_node_id(BrokerId(2))
                .with_host(s(MSK[1]))
                .with_port(9094)
                .with_error_message(None),
            Coordinator::default()
                .with_key(s("group-b"))
                .with_node_id(BrokerId(-1))
                .with_host(s(""))
                .with_port(-1)
                .with_error_code(15)
                .with_error_message(Some(s("The coordinator is not available."))),
        ];
        if ok {
            m.coordinators.push(
                Coordinator::default()
                    .with_key(s("txn-1"))
                    .with_node_id(BrokerId(1))
                    .with_host(s(MSK[0]))
                    .with_port(9094)
                    .with_error_message(None),
            );
        }
    }
    m
}

fn describe_cluster(version: i16, controllers: bool) -> DescribeClusterResponse {
    let mut m = DescribeClusterResponse::default()
        .with_cluster_id(s("Xy-Cluster-4f2a"))
        .with_controller_id(BrokerId(1))
        .with_cluster_authorized_operations(-2_147_483_648)
        .with_brokers(
            (0..3)
                .map(|i| {
                    let mut b = DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(if controllers { 3000 + i } else { i + 1 }))
                        .with_host(s(if controllers { "c-1.controllers.internal" } else { MSK[i as usize] }))
                        .with_port(if controllers { 9093 } else { 9094 })
                        .with_rack(if i == 2 { None } else { Some(s("az")) });
                    if version >= 2 {
                        b.is_fenced = i == 2;
                    }
                    b
                })
                .collect(),
        );
    if version >= 1 {
        m.endpoint_type = if controllers { 2 } else { 1 };
    }
    m
}

fn describe_quorum(version: i16) -> DescribeQuorumResponse {
    let replica = |id: i32| {
        let mut r = ReplicaState::default()
            .with_replica_id(BrokerId(id))
            .with_log_end_offset(4000);
        if version >= 1 {
            r.last_fetch_timestamp = 1_700_000_000_000;
            r.last_caught_up_timestamp = 1_700_000_000_000;
        }
        if version >= 2 {
            r.replica_directory_id = uuid(id as u8);
        }
        r
    };
    let mut m = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic("__cluster_metadata"))
        .with_partitions(vec![QuorumPartition::default()
            .with_leader_id(BrokerId(3000))
            .with_leader_epoch(7)
            .with_high_watermark(4000)
            .with_current_voters(vec![replica(3000), replica(3001), replica(3002)])
            .with_observers(vec![replica(1)])])]);
    if version >= 2 {
        m.error_message = None;
        m.topics[0].partitions[0].error_message = None;
        m.nodes = (0..3)
            .map(|i| {
                Node::default()
                    .with_node_id(BrokerId(3000 + i))
                    .with_listeners(vec![
                        Listener::default()
                            .with_name(s("CONTROLLER"))
                            .with_host(s(["c-1.controllers.internal", "c-2.controllers.internal", "c-3.controllers.internal"][i as usize]))
                            .with_port(9093),
                        describe_quorum_response::Listener::default()
                            .with_name(s("CONTROLLER_TLS"))
                            .with_host(s("10.0.3.17"))
                            .with_port(9095),
                    ])
            })
            .collect();
    }
    m
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
        p.error_message = endpoints.then(|| s("NOT_LEADER_OR_FOLLOWER"));
    }
    if version >= 10 && endpoints {
        p.current_leader = produce_response::LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(2))
            .with_leader_epoch(9);
    }
    let mut t = TopicProduceResponse::default()
        .with_partition_responses(vec![p.clone(), p.with_index(5).with_error_code(0)]);
    if version <= 12 {
        t.name = topic("orders");
    } else {
        t.topic_id = uuid(3);
    }
    let mut m = ProduceResponse::default()
        .with_responses(vec![t])
        .with_throttle_time_ms(8);
    if version >= 10 && endpoints {
        m.node_endpoints = vec![
            produce_response::NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(s(MSK[1]))
                .with_port(9094)
                .with_rack(Some(s("euw1-az2"))),
            produce_response::NodeEndpoint::default()
                .with_node_id(BrokerId(3))
                .with_host(s(MSK[2]))
                .with_port(9094)
                .with_rack(None),
        ];
    }
    if version >= 9 {
        m.unknown_tagged_fields
            .insert(5, Bytes::from_static(b"unknown"));
    }
    m
}

fn fetch(version: i16, endpoints: bool, partitions: usize, records: usize) -> FetchResponse {
    let data = Bytes::from((0..records).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
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
            p.aborted_transactions = (i % 2 == 1).then(|| {
                vec![fetch_response::AbortedTransaction::default()
                    .with_producer_id(kafka_protocol::messages::ProducerId(77))
                    .with_first_offset(400)]
            });
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
                .with_host(s(MSK[2]))
                .with_port(9094)
                .with_rack(Some(s("euw1-az3"))),
            fetch_response::NodeEndpoint::default()
                .with_node_id(BrokerId(1))
                .with_host(s(MSK[0]))
                .with_port(9094),
        ];
    }
    m
}

fn share_fetch() -> ShareFetchResponse {
    ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(30_000)
        .with_responses(vec![
            share_fetch_response::ShareFetchableTopicResponse::default()
                .with_topic_id(uuid(1))
                .with_partitions(vec![share_fetch_response::PartitionData::default()
                    .with_partition_index(2)
                    .with_error_code(6)
                    .with_current_leader(
                        share_fetch_response::LeaderIdAndEpoch::default()
                            .with_leader_id(1)
                            .with_leader_epoch(3),
                    )
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
            .with_host(s(MSK[0]))
            .with_port(9094)
            .with_rack(Some(s("euw1-az1")))])
}

fn share_acknowledge() -> ShareAcknowledgeResponse {
    ShareAcknowledgeResponse::default()
        .with_responses(vec![
            share_acknowledge_response::ShareAcknowledgeTopicResponse::default()
                .with_topic_id(uuid(1))
                .with_partitions(vec![share_acknowledge_response::PartitionData::default()
                    .with_partition_index(2)
                    .with_error_code(6)])
        ])
        .with_node_endpoints(vec![share_acknowledge_response::NodeEndpoint::default()
            .with_node_id(BrokerId(2))
            .with_host(s(MSK[1]))
            .with_port(9094)])
}

fn api_version(api_key: i16, min: i16, max: i16) -> ApiVersion {
    ApiVersion::default()
        .with_api_key(api_key)
        .with_min_version(min)
        .with_max_version(max)
}

/// What a Kafka 4.2 broker might answer, with versions beyond kafka-protocol 0.18.0
/// (`capped = false`: nothing above the proxy's versions).
fn api_versions(version: i16, capped: bool) -> ApiVersionsResponse {
    let keys = if capped {
        vec![
            api_version(0, 0, 14),
            api_version(1, 4, 19),
            api_version(3, 0, 13),
            api_version(8, 2, 10),
            api_version(10, 0, 6),
            api_version(18, 0, 5),
            api_version(55, 0, 2),
            api_version(60, 0, 2),
            api_version(78, 0, 0),
            api_version(79, 1, 1),
            api_version(9999, 0, 3),
        ]
    } else {
        vec![
            api_version(0, 3, 11),
            api_version(1, 4, 17),
            api_version(3, 0, 12),
            api_version(18, 0, 4),
            api_version(9999, 0, 3),
        ]
    };
    let mut m = ApiVersionsResponse::default().with_api_keys(keys);
    if version >= 1 {
        m.throttle_time_ms = 0;
    }
    if version >= 3 {
        m.supported_features = vec![SupportedFeatureKey::default()
            .with_name(s("metadata.version"))
            .with_min_version(1)
            .with_max_version(27)];
        m.finalized_features_epoch = 1234;
        m.finalized_features = vec![FinalizedFeatureKey::default()
            .with_name(s("metadata.version"))
            .with_min_version_level(27)
            .with_max_version_level(27)];
        m.zk_migration_ready = true;
        m.unknown_tagged_fields
            .insert(9, Bytes::from_static(b"later"));
    }
    m
}

/// Every response of the APIs the proxy inspects, as `(api key, version, name, payload)`.
fn responses() -> Vec<(i16, i16, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |key: i16, version: i16, name: String, payload: Vec<u8>| {
        out.push((key, version, name, payload));
    };
    for v in 0..=13 {
        add(METADATA, v, format!("metadata-v{v}"), payload(METADATA, v, &metadata(v, 3, true)));
    }
    for v in [0, 9, 12] {
        add(METADATA, v, format!("metadata-v{v}-no-brokers"), payload(METADATA, v, &metadata(v, 0, false)));
    }
    add(
        METADATA,
        12,
        "metadata-v12-header-tags".into(),
        payload_with(METADATA, 12, &response_header(METADATA, 12, true), &metadata(12, 1, true)),
    );
    for v in 0..=6 {
        add(FIND_COORDINATOR, v, format!("find-coordinator-v{v}"), payload(FIND_COORDINATOR, v, &find_coordinator(v, true)));
        add(FIND_COORDINATOR, v, format!("find-coordinator-v{v}-error"), payload(FIND_COORDINATOR, v, &find_coordinator(v, false)));
    }
    for v in 0..=2 {
        add(DESCRIBE_CLUSTER, v, format!("describe-cluster-v{v}"), payload(DESCRIBE_CLUSTER, v, &describe_cluster(v, false)));
        if v >= 1 {
            add(DESCRIBE_CLUSTER, v, format!("describe-cluster-v{v}-controllers"), payload(DESCRIBE_CLUSTER, v, &describe_cluster(v, true)));
        }
        add(DESCRIBE_QUORUM, v, format!("describe-quorum-v{v}"), payload(DESCRIBE_QUORUM, v, &describe_quorum(v)));
    }
    for v in 3..=13 {
        add(PRODUCE, v, format!("produce-v{v}"), payload(PRODUCE, v, &produce(v, false)));
        if v >= 10 {
            add(PRODUCE, v, format!("produce-v{v}-node-endpoints"), payload(PRODUCE, v, &produce(v, true)));
        }
    }
    for v in 4..=18 {
        add(FETCH, v, format!("fetch-v{v}"), payload(FETCH, v, &fetch(v, false, 3, 40)));
        if v >= 16 {
            add(FETCH, v, format!("fetch-v{v}-node-endpoints"), payload(FETCH, v, &fetch(v, true, 5, 33)));
            add(FETCH, v, format!("fetch-v{v}-empty"), payload(FETCH, v, &fetch(v, false, 0, 0)));
            add(
                FETCH,
                v,
                format!("fetch-v{v}-header-tags-node-endpoints"),
                payload_with(FETCH, v, &response_header(FETCH, v, true), &fetch(v, true, 1, 8)),
            );
        }
    }
    // Tag 0 present but holding an empty array: nothing to rewrite.
    let mut m = fetch(16, false, 1, 5);
    m.unknown_tagged_fields.clear();
    let mut p = payload(FETCH, 16, &m);
    assert_eq!(p.pop(), Some(0), "no top-level tagged fields");
    p.extend_from_slice(&[1, 0, 1, 1]);
    add(FETCH, 16, "fetch-v16-empty-node-endpoints-tag".into(), p);
    add(SHARE_FETCH, 1, "share-fetch-v1".into(), payload(SHARE_FETCH, 1, &share_fetch()));
    add(SHARE_ACKNOWLEDGE, 1, "share-acknowledge-v1".into(), payload(SHARE_ACKNOWLEDGE, 1, &share_acknowledge()));
    for v in 0..=4 {
        add(API_VERSIONS, v, format!("api-versions-v{v}"), payload(API_VERSIONS, v, &api_versions(v, true)));
        add(API_VERSIONS, v, format!("api-versions-v{v}-within"), payload(API_VERSIONS, v, &api_versions(v, false)));
    }
    // The broker's v0 fallback to a version it does not support.
    let fallback = ApiVersionsResponse::default()
        .with_error_code(35)
        .with_api_keys(vec![api_version(18, 0, 7)]);
    add(API_VERSIONS, 4, "api-versions-v4-answered-v0".into(), payload(API_VERSIONS, 0, &fallback));
    out
}

// -------------------------------------------------------------------------------- requests

fn request_header(key: ApiKey, version: i16, correlation_id: i32, client_id: Option<&'static str>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(s))
        .encode(&mut buf, key.request_header_version(version))
        .expect("encode the request header");
    buf.to_vec()
}

fn request<M: Encodable>(key: ApiKey, version: i16, correlation_id: i32, msg: &M) -> Vec<u8> {
    let mut body = request_header(key, version, correlation_id, Some("rdkafka"));
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("encode {key:?} v{version}: {e:#}"));
    body.extend_from_slice(&buf);
    framed(&body)
}

fn produce_request(version: i16, acks: i16, transactional_id: Option<&'static str>) -> Vec<u8> {
    let mut data = produce_request::TopicProduceData::default().with_partition_data(vec![
        produce_request::PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(Bytes::from_static(b"\0\0\0\0\0\0\0\0record-batch"))),
    ]);
    if version <= 12 {
        data.name = topic("orders");
    } else {
        data.topic_id = uuid(3);
    }
    let msg = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_transactional_id(transactional_id.map(|t| s(t).into()))
        .with_topic_data(vec![data]);
    request(ApiKey::Produce, version, 100 + i32::from(version), &msg)
}

/// Produce v0-v2, which kafka-protocol cannot encode: header v1, acks, timeout_ms, topic_data
/// (no transactional id).
fn produce_request_v0_v2(version: i16, acks: i16) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(PRODUCE);
    b.put_i16(version);
    b.put_i32(100 + i32::from(version));
    b.put_i16(7);
    b.put_slice(b"rdkafka");
    b.put_i16(acks);
    b.put_i32(30_000);
    b.put_i32(1); // topics
    b.put_i16(6);
    b.put_slice(b"orders");
    b.put_i32(1); // partitions
    b.put_i32(0);
    b.put_i32(12);
    b.put_slice(b"record-batch");
    framed(&b)
}

fn requests() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for v in [0, 3, 4] {
        let mut r = ApiVersionsRequest::default();
        if v >= 3 {
            r.client_software_name = s("librdkafka");
            r.client_software_version = s("2.3.0");
        }
        out.push((format!("api-versions-v{v}"), request(ApiKey::ApiVersions, v, 1, &r)));
    }
    for v in [1, 4, 9, 12, 13] {
        let mut r = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic("orders"))),
        ]));
        if v >= 4 {
            r.allow_auto_topic_creation = false;
        }
        out.push((format!("metadata-v{v}"), request(ApiKey::Metadata, v, 2, &r)));
    }
    for v in 0..=2 {
        for acks in [-1, 0, 1] {
            out.push((format!("produce-v{v}-acks{acks}"), produce_request_v0_v2(v, acks)));
        }
    }
    for v in 3..=13 {
        for (acks, txn) in [(-1, None), (0, None), (1, Some("txn-orders-7")), (0, Some(""))] {
            out.push((
                format!("produce-v{v}-acks{acks}-txn{}", txn.map_or(-1, |t: &str| t.len() as i32)),
                produce_request(v, acks, txn),
            ));
        }
    }
    for v in [4, 12, 13, 17] {
        let mut t = fetch_request::FetchTopic::default().with_partitions(vec![
            fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(42)
                .with_partition_max_bytes(1 << 20),
        ]);
        if v <= 12 {
            t.topic = topic("orders");
        } else {
            t.topic_id = uuid(9);
        }
        let r = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(52_428_800)
            .with_topics(vec![t]);
        out.push((format!("fetch-v{v}"), request(ApiKey::Fetch, v, 3, &r)));
    }
    for v in [0, 3, 4, 6] {
        let mut r = FindCoordinatorRequest::default();
        if v <= 3 {
            r.key = s("group-a");
        } else {
            r.coordinator_keys = vec![s("group-a"), s("group-b")];
        }
        out.push((format!("find-coordinator-v{v}"), request(ApiKey::FindCoordinator, v, 4, &r)));
    }
    out.push((
        "sasl-handshake-v1".into(),
        request(ApiKey::SaslHandshake, 1, 5, &SaslHandshakeRequest::default().with_mechanism(s("PLAIN"))),
    ));
    // An api key kafka-protocol does not know: header v1 as far as the proxy is concerned.
    let mut unknown = vec![];
    unknown.extend_from_slice(&9999i16.to_be_bytes());
    unknown.extend_from_slice(&0i16.to_be_bytes());
    unknown.extend_from_slice(&6i32.to_be_bytes());
    unknown.extend_from_slice(&(-1i16).to_be_bytes());
    unknown.extend_from_slice(b"future body");
    out.push(("unknown-api-9999".into(), framed(&unknown)));
    out
}

// ----------------------------------------------------------------------------------- main

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let responses = responses();
    let requests = requests();

    // rewrite: every inspected response and ApiVersions.
    let keys = ktp_fuzz::rewrite_keys();
    let mut rewrite = Corpus::new(&root, "rewrite");
    for (key, version, name, p) in &responses {
        rewrite.add(name.clone(), keyed(&keys, *key, *version, p));
    }

    // splice_vs_decode: every inspected response, once per mapper (the first byte).
    let inspected: Vec<i16> = rewrite::INSPECTED.iter().map(|i| i.key as i16).collect();
    let mut splice_vs_decode = Corpus::new(&root, "splice_vs_decode");
    for (key, version, name, p) in &responses {
        if inspected.contains(key) {
            for mapper in 0..4u8 {
                let mut input = vec![mapper];
                input.extend_from_slice(&keyed(&inspected, *key, *version, p));
                splice_vs_decode.add(format!("{name}-mapper{mapper}"), input);
            }
        }
    }

    // node_endpoints: Produce and Fetch responses.
    let mut node_endpoints = Corpus::new(&root, "node_endpoints");
    for (key, version, name, p) in &responses {
        if NODE_ENDPOINTS_KEYS.contains(key) {
            node_endpoints.add(name.clone(), keyed(&NODE_ENDPOINTS_KEYS, *key, *version, p));
        }
    }

    // api_versions: ApiVersions answers.
    let mut api_versions_corpus = Corpus::new(&root, "api_versions");
    for (key, version, name, p) in &responses {
        if *key == API_VERSIONS {
            api_versions_corpus.add(name.clone(), keyed(&API_VERSIONS_KEYS, *key, *version, p));
        }
    }

    // own_responses: the answers to the proxy's own Metadata v12 and ApiVersions v3, as frames.
    let mut own = Corpus::new(&root, "own_responses");
    let own_answer = |which: u8, key: i16, version: i16, msg: &dyn Fn(&mut BytesMut)| {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(OWN_CORRELATION_ID)
            .encode(&mut buf, codec::response_header_version(key, version))
            .expect("header");
        msg(&mut buf);
        let mut out = vec![which];
        out.extend_from_slice(&framed(&buf));
        out
    };
    own.add(
        "metadata-v12-discovery",
        own_answer(0, METADATA, 12, &|b| metadata(12, 3, false).encode(b, 12).expect("encode")),
    );
    own.add(
        "metadata-v12-topics",
        own_answer(0, METADATA, 12, &|b| metadata(12, 2, true).encode(b, 12).expect("encode")),
    );
    own.add(
        "api-versions-v3",
        own_answer(1, API_VERSIONS, 3, &|b| api_versions(3, true).encode(b, 3).expect("encode")),
    );
    own.add(
        "api-versions-v3-error",
        own_answer(1, API_VERSIONS, 3, &|b| {
            ApiVersionsResponse::default()
                .with_error_code(35)
                .encode(b, 3)
                .expect("encode")
        }),
    );
    // The answer that aborted the proxy with a ~400 GB allocation: 18 bytes, Metadata v12,
    // correlation id 1, no header tags, throttle 0, brokers compact count 2^32-1 - 1.
    let mut hostile = vec![0u8];
    hostile.extend_from_slice(&[0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert_eq!(hostile.len(), 1 + 18);
    own.add("metadata-v12-broker-count-2p32-2", hostile);
    // The same trick in ApiVersions v3: correlation id, error 0, api_keys count 2^32-2.
    let mut hostile = vec![1u8];
    hostile.extend_from_slice(&[0, 0, 0, 11, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    own.add("api-versions-v3-key-count-2p32-2", hostile);
    // Metadata v12 whose broker host claims a length far beyond the frame.
    let mut hostile = vec![0u8];
    hostile.extend_from_slice(&[0, 0, 0, 23, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0]);
    own.add("metadata-v12-host-length-2p32-2", hostile);

    // frames: request streams and response streams, cut into reads in several ways.
    let mut frames = Corpus::new(&root, "frames");
    let stream_of = |frames: &[&Vec<u8>]| frames.iter().flat_map(|f| f.iter().copied()).collect::<Vec<u8>>();
    for (i, (name, frame)) in requests.iter().enumerate() {
        frames.add(format!("request-{name}"), FramesInput::encode(2, false, (i % 4) as u8, i as u8, frame));
    }
    let pick = |prefix: &str| -> &Vec<u8> {
        &requests.iter().find(|(n, _)| n.starts_with(prefix)).expect(prefix).1
    };
    let pipelined = stream_of(&[
        pick("api-versions-v3"),
        pick("metadata-v12"),
        pick("produce-v9-acks0"),
        pick("produce-v2-acks1"),
        pick("produce-v13-acks-1"),
        pick("fetch-v17"),
        pick("find-coordinator-v4"),
        pick("unknown-api-9999"),
    ]);
    for (mode, read) in [(false, 0u8), (false, 1), (false, 2), (true, 1), (true, 3)] {
        frames.add(
            format!("pipelined-{}-reads{read}", if mode { "frames" } else { "chunks" }),
            FramesInput::encode(2, mode, read, 17 + read, &pipelined),
        );
    }
    // A valid run, then a frame above the limit (limit index 1: 4096 bytes), then more bytes.
    let mut oversize = stream_of(&[pick("metadata-v12"), pick("produce-v3-acks1")]);
    oversize.extend_from_slice(&5000i32.to_be_bytes());
    oversize.extend_from_slice(&[0; 16]);
    frames.add("pipelined-then-oversize", FramesInput::encode(1, false, 2, 3, &oversize));
    let mut negative = pick("api-versions-v4").clone();
    negative.extend_from_slice(&(-1i32).to_be_bytes());
    frames.add("then-negative-length", FramesInput::encode(2, true, 1, 9, &negative));
    // A peer announcing a 2 GiB frame and sending little of it.
    let mut huge = i32::MAX.to_be_bytes().to_vec();
    huge.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 1]);
    frames.add("announces-2gib", FramesInput::encode(3, false, 3, 0, &huge));
    // Half a frame at the end of the stream.
    let mut partial = pipelined.clone();
    partial.extend_from_slice(&pick("fetch-v12")[..20]);
    frames.add("pipelined-then-partial", FramesInput::encode(2, false, 2, 5, &partial));
    // Short frames: shorter than the request header and the response header.
    frames.add("short-frames", FramesInput::encode(0, false, 0, 1, &[0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0, 6, 0, 0, 0, 3, 0, 9]));
    // Response streams: the proxy reads the brokers' answers with the same reader.
    let answers: Vec<Vec<u8>> = responses
        .iter()
        .filter(|(_, _, n, _)| ["metadata-v12", "fetch-v16-node-endpoints", "produce-v13", "api-versions-v3"].contains(&n.as_str()))
        .map(|(_, _, _, p)| framed(p))
        .collect();
    let answers = stream_of(&answers.iter().collect::<Vec<_>>());
    frames.add("responses-pipelined", FramesInput::encode(3, false, 2, 11, &answers));

    // scrub: every free-text response, at every version.
    let scrub_keys = ktp_fuzz::scrub_keys();
    let mut scrub = Corpus::new(&root, "scrub");
    for (key, version, name, p) in scrub_responses() {
        scrub.add(name, keyed(&scrub_keys, key, version, &p));
    }

    // proxy_header: a read size byte, then what a trusted balancer's connection starts with.
    let mut proxy_header = Corpus::new(&root, "proxy_header");
    let v2 = |command: u8, family: u8, block: &[u8]| {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    };
    let tlv = |kind: u8, value: &[u8]| {
        let mut t = vec![kind];
        t.extend_from_slice(&(value.len() as u16).to_be_bytes());
        t.extend_from_slice(value);
        t
    };
    // 203.0.113.7:51234 → 10.0.1.21:9092, and 2001:db8::7 → 2001:db8::15, same ports.
    let ipv4 = [203, 0, 113, 7, 10, 0, 1, 21, 0xc8, 0x22, 0x23, 0x84];
    let mut ipv6 = vec![0x20, 0x01, 0x0d, 0xb8];
    ipv6.extend_from_slice(&[0; 11]);
    ipv6.push(7);
    ipv6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    ipv6.extend_from_slice(&[0; 11]);
    ipv6.push(0x15);
    ipv6.extend_from_slice(&[0xc8, 0x22, 0x23, 0x84]);
    let kafka = pick("api-versions-v3").clone();
    let mut with_tlvs = ipv4.to_vec();
    with_tlvs.extend(tlv(0x05, b"haproxy-unique-id"));
    with_tlvs.extend(tlv(0xEA, b"\x01vpce-0123456789abcdef"));
    with_tlvs.extend(tlv(0x04, &[]));
    let mut oversized = v2(1, 0x11, &[]);
    oversized[14..16].copy_from_slice(&1025u16.to_be_bytes());
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("v1-tcp4", b"PROXY TCP4 203.0.113.7 10.0.1.21 51234 9092\r\n".to_vec()),
        ("v1-tcp6", b"PROXY TCP6 2001:db8::7 2001:db8::15 51234 9092\r\n".to_vec()),
        ("v1-unknown", b"PROXY UNKNOWN\r\n".to_vec()),
        ("v1-too-long", [b"PROXY TCP4 ".to_vec(), vec![b'1'; 120]].concat()),
        ("v2-tcp4", v2(1, 0x11, &ipv4)),
        ("v2-tcp6", v2(1, 0x21, &ipv6)),
        ("v2-local", v2(0, 0x00, &[])),
        ("v2-unspec", v2(1, 0x00, &[])),
        ("v2-tlvs", v2(1, 0x11, &with_tlvs)),
        ("v2-bad-tlv", v2(1, 0x11, &[ipv4.to_vec(), vec![0x05, 0, 9, 1]].concat())),
        ("v2-oversized", oversized),
        ("v2-truncated", v2(1, 0x21, &ipv6)[..30].to_vec()),
        ("kafka-frame", kafka.clone()),
        ("tls-client-hello", vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]),
    ];
    for (i, (name, header)) in seeds.into_iter().enumerate() {
        // Then a Kafka frame: the bytes the reader must leave alone.
        let mut input = vec![(i * 7) as u8];
        input.extend_from_slice(&header);
        input.extend_from_slice(&kafka);
        proxy_header.add(name, input);
    }

    // json_answers: 0 + a whois answer, 1 + an AWS_MSK_IAM answer.
    let mut json_answers = Corpus::new(&root, "json_answers");
    let whois = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tailnet/whois-alice.json")).expect("the whois sample");
    let tagged = br#"{"Node":{"Name":"ci.tail1234.ts.net.","Tags":["tag:ci"]},"UserProfile":{"LoginName":"tagged-devices"},"CapMap":{"example.com/cap/kafka-tls-proxy":[{"identity":"ci"},{"identity":"x"}]}}"#;
    for (name, which, body) in [
        ("whois-alice", 0u8, whois.as_slice()),
        ("whois-tagged", 0, tagged.as_slice()),
        ("whois-null-caps", 0, br#"{"Node":{"Name":"n."},"UserProfile":{"LoginName":"a@b"},"CapMap":null}"#.as_slice()),
        ("iam-answer", 1, br#"{"version":"2020_10_22","request-id":"e1a2b3c4-0000-4000-8000-000000000001"}"#.as_slice()),
        ("iam-other-version", 1, br#"{"version":"2019","request-id":"x"}"#.as_slice()),
    ] {
        json_answers.add(name, [vec![which], body.to_vec()].concat());
    }

    let mut total = 0;
    for corpus in [rewrite, splice_vs_decode, node_endpoints, api_versions_corpus, own, frames, scrub, proxy_header, json_answers] {
        total += corpus.write().1;
    }
    println!("total: {total} bytes");
    assert!(total < 1024 * 1024, "keep the committed corpus under 1 MiB");
}
