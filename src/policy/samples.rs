//! Samples shared by the policy's tests: a realistic request of every API a policy denies with
//! its own answer, at every version the proxy answers, and a broker's answer to each audited one.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{self as km, *};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;
use crate::kafka::frame::{self, RequestHeader};

/// The client's correlation id in every sample.
pub(super) const CID: i32 = 0x0102_0304;
pub(super) const ORDERS_ID: [u8; 16] = [1; 16];
pub(super) const PAYMENTS_ID: [u8; 16] = [2; 16];
/// Secrets in samples, which must never reach an audit entry.
pub(super) const SALTED: &[u8] = b"s3cr3t-salted-password";
pub(super) const HMAC: &[u8] = b"s3cr3t-hmac";
pub(super) const CONFIG_VALUE: &str = "s3cr3t-config-value";

pub(super) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

pub(super) fn tn(s: &str) -> TopicName {
    TopicName(sb(s))
}

pub(super) fn uuid<T: TryFrom<Vec<u8>> + Default>(id: [u8; 16]) -> T {
    T::try_from(id.to_vec()).unwrap_or_default()
}

/// A complete request frame as a client sends it.
pub(super) fn request_frame<M: Encodable>(key: ApiKey, version: i16, msg: &M) -> Bytes {
    let mut body = BytesMut::new();
    km::RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(CID)
        .with_client_id(Some(sb("app-1")))
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    msg.encode(&mut body, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e:#}"));
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame.freeze()
}

/// A broker response payload (no length prefix) with the client's correlation id.
pub(super) fn response_payload<M: Encodable>(key: ApiKey, version: i16, msg: &M) -> Bytes {
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(CID)
        .encode(&mut out, key.response_header_version(version))
        .unwrap();
    msg.encode(&mut out, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e:#}"));
    out.freeze()
}

pub(super) fn header(frame: &[u8]) -> RequestHeader {
    frame::request_header(frame).unwrap()
}

pub(super) fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let v = rule(key).answer.unwrap();
    v.min..=v.max
}

/// The APIs a policy denies with their own error response.
pub(super) fn natively_denied() -> Vec<ApiKey> {
    ApiKey::iter()
        .filter(|k| rule(*k).answer.is_some())
        .collect()
}

// -----------------------------------------------------------------------------------------
// Requests

/// A realistic request of every natively denied API at `v` (kafka-protocol encodes it; the
/// hand-built Produce v0-v2 aside). Topics `orders` (partitions 0, 2) and `payments` (1)
/// wherever the API names topics.
pub(super) fn sample(key: ApiKey, v: i16) -> Bytes {
    match key {
        ApiKey::Produce if v < 3 => produce_v0_v2_request(v, -1),
        ApiKey::Produce => produce_request(v, -1),
        ApiKey::CreateTopics => {
            use create_topics_request::*;
            let msg = CreateTopicsRequest::default()
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(tn("orders"))
                        .with_num_partitions(6)
                        .with_replication_factor(3)
                        .with_configs(vec![CreatableTopicConfig::default()
                            .with_name(sb("retention.ms"))
                            .with_value(Some(sb(CONFIG_VALUE)))]),
                    CreatableTopic::default()
                        .with_name(tn("payments"))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                        .with_assignments(vec![CreatableReplicaAssignment::default()
                            .with_partition_index(0)
                            .with_broker_ids(vec![BrokerId(1), BrokerId(2)])]),
                ])
                .with_timeout_ms(30_000);
            request_frame(key, v, &msg)
        }
        ApiKey::DeleteTopics => {
            use delete_topics_request::*;
            let msg = if v >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    DeleteTopicState::default()
                        .with_name(Some(tn("orders")))
                        .with_topic_id(uuid(ORDERS_ID)),
                    DeleteTopicState::default()
                        .with_name(None)
                        .with_topic_id(uuid(PAYMENTS_ID)),
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![tn("orders"), tn("payments")])
            };
            request_frame(key, v, &msg.with_timeout_ms(30_000))
        }
        ApiKey::CreatePartitions => {
            use create_partitions_request::*;
            let msg = CreatePartitionsRequest::default()
                .with_topics(vec![
                    CreatePartitionsTopic::default()
                        .with_name(tn("orders"))
                        .with_count(8)
                        .with_assignments(Some(vec![
                            CreatePartitionsAssignment::default()
                                .with_broker_ids(vec![BrokerId(1)]),
                            CreatePartitionsAssignment::default()
                                .with_broker_ids(vec![BrokerId(2)]),
                        ])),
                    CreatePartitionsTopic::default()
                        .with_name(tn("payments"))
                        .with_count(4)
                        .with_assignments(None),
                ])
                .with_timeout_ms(30_000);
            request_frame(key, v, &msg)
        }
        ApiKey::DeleteRecords => {
            use delete_records_request::*;
            let part = |p, o| {
                DeleteRecordsPartition::default()
                    .with_partition_index(p)
                    .with_offset(o)
            };
            let msg = DeleteRecordsRequest::default().with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(tn("orders"))
                    .with_partitions(vec![part(0, 100), part(2, 200)]),
                DeleteRecordsTopic::default()
                    .with_name(tn("payments"))
                    .with_partitions(vec![part(1, 5)]),
            ]);
            request_frame(key, v, &msg)
        }
        ApiKey::CreateAcls => {
            use create_acls_request::*;
            let acl = |name: &str, principal: &str, op| {
                AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(sb(name))
                    .with_resource_pattern_type(3)
                    .with_principal(sb(principal))
                    .with_host(sb("*"))
                    .with_operation(op)
                    .with_permission_type(3)
            };
            let msg = CreateAclsRequest::default().with_creations(vec![
                acl("orders", "User:bob", 3),
                acl("payments", "User:eve", 4),
            ]);
            request_frame(key, v, &msg)
        }
        ApiKey::DeleteAcls => {
            use delete_acls_request::*;
            let msg = DeleteAclsRequest::default().with_filters(vec![
                DeleteAclsFilter::default()
                    .with_resource_type_filter(2)
                    .with_resource_name_filter(Some(sb("orders")))
                    .with_pattern_type_filter(3)
                    .with_principal_filter(Some(sb("User:bob")))
                    .with_host_filter(Some(sb("*")))
                    .with_operation(3)
                    .with_permission_type(3),
                DeleteAclsFilter::default()
                    .with_resource_type_filter(1)
                    .with_resource_name_filter(None)
                    .with_pattern_type_filter(1)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_operation(1)
                    .with_permission_type(1),
            ]);
            request_frame(key, v, &msg)
        }
        ApiKey::AlterConfigs => {
            use alter_configs_request::*;
            let config = |name: &str| {
                AlterableConfig::default()
                    .with_name(sb(name))
                    .with_value(Some(sb(CONFIG_VALUE)))
            };
            let msg = AlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(sb("orders"))
                    .with_configs(vec![config("retention.ms"), config("cleanup.policy")]),
                AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(sb("1"))
                    .with_configs(vec![config("log.retention.hours")]),
            ]);
            request_frame(key, v, &msg)
        }
        ApiKey::IncrementalAlterConfigs => {
            use incremental_alter_configs_request::*;
            let config = |name: &str, op| {
                AlterableConfig::default()
                    .with_name(sb(name))
                    .with_config_operation(op)
                    .with_value(Some(sb(CONFIG_VALUE)))
            };
            let msg = IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(sb("orders"))
                    .with_configs(vec![config("retention.ms", 0), config("cleanup.policy", 1)]),
                AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(sb("1"))
                    .with_configs(vec![config("log.cleaner.threads", 0)]),
                AlterConfigsResource::default()
                    .with_resource_type(32)
                    .with_resource_name(sb("g1"))
                    .with_configs(vec![config("consumer.session.timeout.ms", 0)]),
            ]);
            request_frame(key, v, &msg)
        }
        ApiKey::AlterClientQuotas => {
            use alter_client_quotas_request::*;
            let msg = AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
                .with_entity(vec![
                    EntityData::default()
                        .with_entity_type(sb("user"))
                        .with_entity_name(Some(sb("alice"))),
                    EntityData::default()
                        .with_entity_type(sb("client-id"))
                        .with_entity_name(None),
                ])
                .with_ops(vec![
                    OpData::default()
                        .with_key(sb("producer_byte_rate"))
                        .with_value(1_048_576.0),
                    OpData::default()
                        .with_key(sb("consumer_byte_rate"))
                        .with_remove(true),
                ])]);
            request_frame(key, v, &msg)
        }
        ApiKey::AlterUserScramCredentials => {
            use alter_user_scram_credentials_request::*;
            let upsert = |name: &str, mechanism| {
                ScramCredentialUpsertion::default()
                    .with_name(sb(name))
                    .with_mechanism(mechanism)
                    .with_iterations(8192)
                    .with_salt(Bytes::from_static(b"s3cr3t-salt"))
                    .with_salted_password(Bytes::from_static(SALTED))
            };
            let msg = AlterUserScramCredentialsRequest::default()
                .with_deletions(vec![ScramCredentialDeletion::default()
                    .with_name(sb("alice"))
                    .with_mechanism(1)])
                .with_upsertions(vec![upsert("bob", 2), upsert("alice", 2)]);
            request_frame(key, v, &msg)
        }
        ApiKey::AlterPartitionReassignments => {
            use alter_partition_reassignments_request::*;
            let msg = AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(60_000)
                .with_topics(vec![ReassignableTopic::default()
                    .with_name(tn("orders"))
                    .with_partitions(vec![
                        ReassignablePartition::default()
                            .with_partition_index(0)
                            .with_replicas(Some(vec![BrokerId(1), BrokerId(2), BrokerId(3)])),
                        ReassignablePartition::default()
                            .with_partition_index(2)
                            .with_replicas(None),
                    ])]);
            request_frame(key, v, &msg)
        }
        ApiKey::ElectLeaders => elect_leaders_request(v, true),
        ApiKey::UpdateFeatures => {
            use update_features_request::*;
            let mut update = FeatureUpdateKey::default()
                .with_feature(sb("metadata.version"))
                .with_max_version_level(20);
            if v >= 1 {
                update = update.with_upgrade_type(1);
            }
            let msg = UpdateFeaturesRequest::default()
                .with_timeout_ms(60_000)
                .with_feature_updates(vec![update]);
            request_frame(key, v, &msg)
        }
        ApiKey::AlterReplicaLogDirs => {
            use alter_replica_log_dirs_request::*;
            let topic = |name: &str, partitions| {
                AlterReplicaLogDirTopic::default()
                    .with_name(tn(name))
                    .with_partitions(partitions)
            };
            let msg = AlterReplicaLogDirsRequest::default().with_dirs(vec![
                AlterReplicaLogDir::default()
                    .with_path(sb("/data/1"))
                    .with_topics(vec![topic("orders", vec![0])]),
                AlterReplicaLogDir::default()
                    .with_path(sb("/data/2"))
                    .with_topics(vec![topic("orders", vec![2]), topic("payments", vec![1])]),
            ]);
            request_frame(key, v, &msg)
        }
        ApiKey::UnregisterBroker => request_frame(
            key,
            v,
            &UnregisterBrokerRequest::default().with_broker_id(BrokerId(3)),
        ),
        ApiKey::InitProducerId => init_producer_id_request(v, Some("txn-1")),
        ApiKey::AddPartitionsToTxn => {
            use add_partitions_to_txn_request::*;
            let topics = vec![
                AddPartitionsToTxnTopic::default()
                    .with_name(tn("orders"))
                    .with_partitions(vec![0, 2]),
                AddPartitionsToTxnTopic::default()
                    .with_name(tn("payments"))
                    .with_partitions(vec![1]),
            ];
            let msg = if v >= 4 {
                AddPartitionsToTxnRequest::default().with_transactions(vec![
                    AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(TransactionalId(sb("txn-1")))
                        .with_producer_id(ProducerId(7))
                        .with_topics(topics),
                ])
            } else {
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(TransactionalId(sb("txn-1")))
                    .with_v3_and_below_producer_id(ProducerId(7))
                    .with_v3_and_below_topics(topics)
            };
            request_frame(key, v, &msg)
        }
        ApiKey::AddOffsetsToTxn => request_frame(
            key,
            v,
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(sb("txn-1")))
                .with_producer_id(ProducerId(7))
                .with_group_id(GroupId(sb("g1"))),
        ),
        ApiKey::EndTxn => request_frame(
            key,
            v,
            &EndTxnRequest::default()
                .with_transactional_id(TransactionalId(sb("txn-1")))
                .with_producer_id(ProducerId(7))
                .with_committed(true),
        ),
        ApiKey::TxnOffsetCommit => {
            use txn_offset_commit_request::*;
            let part = |p| {
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(42)
                    .with_committed_metadata(Some(sb("meta")))
            };
            let mut msg = TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(sb("txn-1")))
                .with_group_id(GroupId(sb("g1")))
                .with_producer_id(ProducerId(7))
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(tn("orders"))
                    .with_partitions(vec![part(0), part(2)])]);
            if v >= 3 {
                msg = msg
                    .with_generation_id(5)
                    .with_member_id(sb("member-1"))
                    .with_group_instance_id(Some(sb("instance-1")));
            }
            request_frame(key, v, &msg)
        }
        ApiKey::DeleteGroups => request_frame(
            key,
            v,
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(sb("g1")), GroupId(sb("g2"))]),
        ),
        ApiKey::OffsetDelete => {
            use offset_delete_request::*;
            let msg = OffsetDeleteRequest::default()
                .with_group_id(GroupId(sb("g1")))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(tn("orders"))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0),
                        OffsetDeleteRequestPartition::default().with_partition_index(2),
                    ])]);
            request_frame(key, v, &msg)
        }
        ApiKey::CreateDelegationToken => {
            use create_delegation_token_request::*;
            let mut msg = CreateDelegationTokenRequest::default()
                .with_renewers(vec![CreatableRenewers::default()
                    .with_principal_type(sb("User"))
                    .with_principal_name(sb("bob"))])
                .with_max_lifetime_ms(86_400_000);
            if v >= 3 {
                msg = msg
                    .with_owner_principal_type(Some(sb("User")))
                    .with_owner_principal_name(Some(sb("alice")));
            }
            request_frame(key, v, &msg)
        }
        ApiKey::RenewDelegationToken => request_frame(
            key,
            v,
            &RenewDelegationTokenRequest::default()
                .with_hmac(Bytes::from_static(HMAC))
                .with_renew_period_ms(3_600_000),
        ),
        ApiKey::ExpireDelegationToken => request_frame(
            key,
            v,
            &ExpireDelegationTokenRequest::default()
                .with_hmac(Bytes::from_static(HMAC))
                .with_expiry_time_period_ms(-1),
        ),
        ApiKey::AlterShareGroupOffsets => {
            use alter_share_group_offsets_request::*;
            let msg = AlterShareGroupOffsetsRequest::default()
                .with_group_id(GroupId(sb("sg1")))
                .with_topics(vec![AlterShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(tn("orders"))
                    .with_partitions(vec![
                        AlterShareGroupOffsetsRequestPartition::default()
                            .with_partition_index(0)
                            .with_start_offset(10),
                    ])]);
            request_frame(key, v, &msg)
        }
        ApiKey::DeleteShareGroupOffsets => {
            use delete_share_group_offsets_request::*;
            let msg = DeleteShareGroupOffsetsRequest::default()
                .with_group_id(GroupId(sb("sg1")))
                .with_topics(vec![
                    DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(tn("orders"))
                ]);
            request_frame(key, v, &msg)
        }
        other => panic!("no sample of {other:?}"),
    }
}

pub(super) fn produce_request(v: i16, acks: i16) -> Bytes {
    use produce_request::*;
    let part = |p| {
        PartitionProduceData::default()
            .with_index(p)
            .with_records(Some(Bytes::from_static(b"not-decoded-record-batch")))
    };
    let msg = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(sb("txn-1"))))
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(tn("orders"))
                .with_topic_id(uuid(ORDERS_ID))
                .with_partition_data(vec![part(0), part(2)]),
            TopicProduceData::default()
                .with_name(tn("payments"))
                .with_topic_id(uuid(PAYMENTS_ID))
                .with_partition_data(vec![part(1)]),
        ]);
    request_frame(ApiKey::Produce, v, &msg)
}

/// Produce v0-v2, which kafka-protocol cannot encode: header v1, then acks, timeout_ms,
/// topic_data[name, partition_data[index, records]].
pub(super) fn produce_v0_v2_request(v: i16, acks: i16) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i16(0);
    body.put_i16(v);
    body.put_i32(CID);
    body.put_i16(5);
    body.put_slice(b"app-1");
    body.put_i16(acks);
    body.put_i32(30_000);
    body.put_i32(2);
    for (name, partitions) in [("orders", &[0, 2][..]), ("payments", &[1][..])] {
        body.put_i16(name.len() as i16);
        body.put_slice(name.as_bytes());
        body.put_i32(partitions.len() as i32);
        for p in partitions {
            body.put_i32(*p);
            body.put_i32(7);
            body.put_slice(b"records");
        }
    }
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame.freeze()
}

pub(super) fn elect_leaders_request(v: i16, with_topics: bool) -> Bytes {
    use elect_leaders_request::*;
    let mut msg = ElectLeadersRequest::default().with_timeout_ms(60_000);
    msg = msg.with_topic_partitions(with_topics.then(|| {
        vec![
            TopicPartitions::default()
                .with_topic(tn("orders"))
                .with_partitions(vec![0, 2]),
            TopicPartitions::default()
                .with_topic(tn("payments"))
                .with_partitions(vec![1]),
        ]
    }));
    if v >= 1 {
        msg = msg.with_election_type(1);
    }
    request_frame(ApiKey::ElectLeaders, v, &msg)
}

pub(super) fn init_producer_id_request(v: i16, transactional_id: Option<&str>) -> Bytes {
    let mut msg = InitProducerIdRequest::default()
        .with_transactional_id(transactional_id.map(|t| TransactionalId(sb(t))))
        .with_transaction_timeout_ms(60_000);
    if v >= 3 {
        msg = msg.with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    }
    request_frame(ApiKey::InitProducerId, v, &msg)
}

/// Every sample: (api key, version, request frame), at every version the proxy answers.
pub(super) fn samples() -> Vec<(ApiKey, i16, Bytes)> {
    let mut out = Vec::new();
    for key in natively_denied() {
        for v in versions(key) {
            out.push((key, v, sample(key, v)));
        }
    }
    for v in versions(ApiKey::ElectLeaders) {
        out.push((ApiKey::ElectLeaders, v, elect_leaders_request(v, false)));
    }
    for v in versions(ApiKey::InitProducerId) {
        out.push((ApiKey::InitProducerId, v, init_producer_id_request(v, None)));
    }
    out
}

/// A frame of only a request header (v1), as the table tests need no body.
pub(super) fn bare_frame(api_key: i16, version: i16) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(api_key);
    frame.put_i16(version);
    frame.put_i32(CID);
    frame.put_i16(-1);
    frame.freeze()
}

/// A broker's answer to the sample of an audited API at `v` (some resources failing), and
/// the (resource, error code) pairs the audit must report.
pub(super) fn outcome_sample(key: ApiKey, v: i16) -> (Bytes, Vec<(&'static str, i16)>) {
    let msg = Some(sb("because"));
    let (payload, want) = match key {
        ApiKey::CreateTopics => {
            use create_topics_response::*;
            let r = CreateTopicsResponse::default().with_topics(vec![
                CreatableTopicResult::default()
                    .with_name(tn("orders"))
                    .with_topic_id(uuid(ORDERS_ID))
                    .with_num_partitions(6)
                    .with_configs(Some(vec![CreatableTopicConfigs::default()
                        .with_name(sb("retention.ms"))
                        .with_value(Some(sb("1000")))])),
                CreatableTopicResult::default()
                    .with_name(tn("payments"))
                    .with_error_code(36)
                    .with_error_message(msg)
                    .with_configs(None),
            ]);
            (
                response_payload(key, v, &r),
                vec![("orders", 0), ("payments", 36)],
            )
        }
        ApiKey::DeleteTopics => {
            use delete_topics_response::*;
            let r = DeleteTopicsResponse::default().with_responses(vec![
                DeletableTopicResult::default().with_name(Some(tn("orders"))),
                DeletableTopicResult::default()
                    .with_name(if v >= 6 { None } else { Some(tn("payments")) })
                    .with_topic_id(uuid(PAYMENTS_ID))
                    .with_error_code(3),
            ]);
            let second = if v >= 6 {
                "02020202-0202-0202-0202-020202020202"
            } else {
                "payments"
            };
            (
                response_payload(key, v, &r),
                vec![("orders", 0), (second, 3)],
            )
        }
        ApiKey::CreatePartitions => {
            use create_partitions_response::*;
            let r = CreatePartitionsResponse::default().with_results(vec![
                CreatePartitionsTopicResult::default().with_name(tn("orders")),
                CreatePartitionsTopicResult::default()
                    .with_name(tn("payments"))
                    .with_error_code(37)
                    .with_error_message(msg),
            ]);
            (
                response_payload(key, v, &r),
                vec![("orders", 0), ("payments", 37)],
            )
        }
        ApiKey::DeleteRecords => {
            use delete_records_response::*;
            let r = DeleteRecordsResponse::default().with_topics(vec![
                DeleteRecordsTopicResult::default()
                    .with_name(tn("orders"))
                    .with_partitions(vec![
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(0)
                            .with_low_watermark(100),
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(2)
                            .with_error_code(1),
                    ]),
            ]);
            (
                response_payload(key, v, &r),
                vec![("orders-0", 0), ("orders-2", 1)],
            )
        }
        ApiKey::CreateAcls => {
            use create_acls_response::*;
            let r = CreateAclsResponse::default().with_results(vec![
                AclCreationResult::default(),
                AclCreationResult::default()
                    .with_error_code(31)
                    .with_error_message(msg),
            ]);
            (response_payload(key, v, &r), vec![("", 0), ("", 31)])
        }
        ApiKey::DeleteAcls => {
            use delete_acls_response::*;
            let r = DeleteAclsResponse::default().with_filter_results(vec![
                DeleteAclsFilterResult::default().with_matching_acls(vec![
                    DeleteAclsMatchingAcl::default()
                        .with_resource_type(2)
                        .with_resource_name(sb("orders"))
                        .with_pattern_type(3)
                        .with_principal(sb("User:bob"))
                        .with_host(sb("*"))
                        .with_operation(3)
                        .with_permission_type(3),
                ]),
            ]);
            (
                response_payload(key, v, &r),
                vec![
                    ("", 0),
                    (
                        "deleted allow User:bob read topic:orders (literal) from host *",
                        0,
                    ),
                ],
            )
        }
        ApiKey::AlterConfigs => {
            use alter_configs_response::*;
            let r = AlterConfigsResponse::default().with_responses(vec![
                AlterConfigsResourceResponse::default()
                    .with_resource_type(2)
                    .with_resource_name(sb("orders")),
                AlterConfigsResourceResponse::default()
                    .with_resource_type(4)
                    .with_resource_name(sb("1"))
                    .with_error_code(40),
            ]);
            (
                response_payload(key, v, &r),
                vec![("topic:orders", 0), ("broker:1", 40)],
            )
        }
        ApiKey::IncrementalAlterConfigs => {
            use incremental_alter_configs_response::*;
            let r = IncrementalAlterConfigsResponse::default().with_responses(vec![
                AlterConfigsResourceResponse::default()
                    .with_resource_type(32)
                    .with_resource_name(sb("g1"))
                    .with_error_code(30),
            ]);
            (response_payload(key, v, &r), vec![("group:g1", 30)])
        }
        ApiKey::AlterClientQuotas => {
            use alter_client_quotas_response::*;
            let r = AlterClientQuotasResponse::default().with_entries(vec![EntryData::default()
                .with_entity(vec![
                    EntityData::default()
                        .with_entity_type(sb("user"))
                        .with_entity_name(Some(sb("alice"))),
                    EntityData::default()
                        .with_entity_type(sb("client-id"))
                        .with_entity_name(None),
                ])]);
            (
                response_payload(key, v, &r),
                vec![("user=alice,client-id=<default>", 0)],
            )
        }
        ApiKey::AlterUserScramCredentials => {
            use alter_user_scram_credentials_response::*;
            let r = AlterUserScramCredentialsResponse::default().with_results(vec![
                AlterUserScramCredentialsResult::default().with_user(sb("alice")),
                AlterUserScramCredentialsResult::default()
                    .with_user(sb("bob"))
                    .with_error_code(91),
            ]);
            (
                response_payload(key, v, &r),
                vec![("alice", 0), ("bob", 91)],
            )
        }
        ApiKey::AlterPartitionReassignments => {
            use alter_partition_reassignments_response::*;
            let r = AlterPartitionReassignmentsResponse::default().with_responses(vec![
                ReassignableTopicResponse::default()
                    .with_name(tn("orders"))
                    .with_partitions(vec![
                        ReassignablePartitionResponse::default().with_partition_index(0),
                        ReassignablePartitionResponse::default()
                            .with_partition_index(2)
                            .with_error_code(85),
                    ]),
            ]);
            (
                response_payload(key, v, &r),
                vec![("", 0), ("orders-0", 0), ("orders-2", 85)],
            )
        }
        ApiKey::ElectLeaders => {
            use elect_leaders_response::*;
            let r = ElectLeadersResponse::default().with_replica_election_results(vec![
                ReplicaElectionResult::default()
                    .with_topic(tn("orders"))
                    .with_partition_result(vec![PartitionResult::default()
                        .with_partition_id(0)
                        .with_error_code(84)]),
            ]);
            let want = if v >= 1 {
                vec![("", 0), ("orders-0", 84)]
            } else {
                vec![("orders-0", 84)]
            };
            (response_payload(key, v, &r), want)
        }
        ApiKey::UpdateFeatures => {
            use update_features_response::*;
            let mut r = UpdateFeaturesResponse::default();
            let want = if v <= 1 {
                r = r.with_results(vec![
                    UpdatableFeatureResult::default().with_feature(sb("metadata.version"))
                ]);
                vec![("", 0), ("metadata.version", 0)]
            } else {
                vec![("", 0)]
            };
            (response_payload(key, v, &r), want)
        }
        ApiKey::AlterReplicaLogDirs => {
            use alter_replica_log_dirs_response::*;
            let r = AlterReplicaLogDirsResponse::default().with_results(vec![
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(tn("orders"))
                    .with_partitions(vec![AlterReplicaLogDirPartitionResult::default()
                        .with_partition_index(2)
                        .with_error_code(57)]),
            ]);
            (response_payload(key, v, &r), vec![("orders-2", 57)])
        }
        ApiKey::UnregisterBroker => {
            let r = UnregisterBrokerResponse::default().with_error_code(35);
            (response_payload(key, v, &r), vec![("", 35)])
        }
        ApiKey::DeleteGroups => {
            use delete_groups_response::*;
            let r = DeleteGroupsResponse::default().with_results(vec![
                DeletableGroupResult::default().with_group_id(GroupId(sb("g1"))),
                DeletableGroupResult::default()
                    .with_group_id(GroupId(sb("g2")))
                    .with_error_code(68),
            ]);
            (response_payload(key, v, &r), vec![("g1", 0), ("g2", 68)])
        }
        ApiKey::OffsetDelete => {
            use offset_delete_response::*;
            let r = OffsetDeleteResponse::default().with_topics(vec![
                OffsetDeleteResponseTopic::default()
                    .with_name(tn("orders"))
                    .with_partitions(vec![OffsetDeleteResponsePartition::default()
                        .with_partition_index(0)
                        .with_error_code(86)]),
            ]);
            (
                response_payload(key, v, &r),
                vec![("", 0), ("orders-0", 86)],
            )
        }
        ApiKey::CreateDelegationToken => {
            let r = CreateDelegationTokenResponse::default()
                .with_token_id(sb("tok-1"))
                .with_hmac(Bytes::from_static(HMAC));
            (response_payload(key, v, &r), vec![("token tok-1", 0)])
        }
        ApiKey::RenewDelegationToken => {
            let r = RenewDelegationTokenResponse::default().with_error_code(62);
            (response_payload(key, v, &r), vec![("", 62)])
        }
        ApiKey::ExpireDelegationToken => {
            let r = ExpireDelegationTokenResponse::default().with_error_code(66);
            (response_payload(key, v, &r), vec![("", 66)])
        }
        ApiKey::AlterShareGroupOffsets => {
            use alter_share_group_offsets_response::*;
            let r = AlterShareGroupOffsetsResponse::default().with_responses(vec![
                AlterShareGroupOffsetsResponseTopic::default()
                    .with_topic_name(tn("orders"))
                    .with_partitions(vec![AlterShareGroupOffsetsResponsePartition::default()
                        .with_partition_index(0)
                        .with_error_code(1)]),
            ]);
            (response_payload(key, v, &r), vec![("", 0), ("orders-0", 1)])
        }
        ApiKey::DeleteShareGroupOffsets => {
            use delete_share_group_offsets_response::*;
            let r = DeleteShareGroupOffsetsResponse::default()
                .with_error_code(0)
                .with_responses(vec![DeleteShareGroupOffsetsResponseTopic::default()
                    .with_topic_name(tn("orders"))
                    .with_error_code(3)]);
            (response_payload(key, v, &r), vec![("", 0), ("orders", 3)])
        }
        other => panic!("no response sample of {other:?}"),
    };
    (payload, want)
}

/// The audited APIs whose requests and responses the proxy reads (the inter-broker ones it
/// audits are named only by their api key).
pub(super) fn audited_keys() -> Vec<ApiKey> {
    ApiKey::iter()
        .filter(|k| audited(*k as i16) && rule(*k).answer.is_some())
        .collect()
}
