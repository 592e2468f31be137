//! Denial responses: the error response of a denied request's own API, at the version it was
//! sent, with the client's correlation id.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{self as km, ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::{
    Policy, PolicyError, CLUSTER_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
};
use crate::kafka::codec::{self, CodecError};
use crate::kafka::requests::{Request, Topic};

/// How to answer one denied request.
pub(super) struct Answer {
    pub(super) policy: Policy,
    pub(super) key: ApiKey,
    pub(super) version: i16,
    pub(super) correlation_id: i32,
    /// The error code of the API's [`Denial`](super::Denial) in the policy table.
    pub(super) code: i16,
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// A topic id from the request, as kafka-protocol's UUID type (which converts from 16 bytes).
fn topic_id<T: TryFrom<Vec<u8>> + Default>(id: &[u8; 16]) -> T {
    T::try_from(id.to_vec()).unwrap_or_default()
}

impl Answer {
    /// The error message the response carries where it has one.
    fn message(&self) -> Option<StrBytes> {
        Some(StrBytes::from_string(format!(
            "denied by the {} policy of this kafka-tls-proxy identity",
            self.policy
        )))
    }

    /// `msg` as a complete response frame with the client's correlation id.
    fn frame<M: Encodable>(&self, msg: &M) -> Result<Bytes, CodecError> {
        let api_key = self.key as i16;
        let mut header = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(self.correlation_id)
            .encode(
                &mut header,
                codec::response_header_version(api_key, self.version),
            )
            .map_err(|e| CodecError::Encode {
                api_key,
                version: self.version,
                reason: format!("response header: {e:#}"),
            })?;
        codec::encode_frame(api_key, self.version, &header, msg)
    }

    /// The error response to `request` and its error code.
    pub(super) fn deny(&self, request: &Request) -> Result<(Bytes, i16), PolicyError> {
        use km::*;
        let (v, code) = (self.version, self.code);
        let msg = self.message();
        let topic = |name: &str| TopicName(s(name));
        Ok(match request {
            Request::Produce { topics, .. } if v < 3 => {
                (produce_v0_v2(self.correlation_id, v, topics, code), code)
            }
            Request::Produce { topics, .. } => {
                use produce_response::*;
                let responses = topics
                    .iter()
                    .map(|t| {
                        TopicProduceResponse::default()
                            .with_name(topic(&t.name))
                            .with_topic_id(topic_id(&t.id))
                            .with_partition_responses(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        PartitionProduceResponse::default()
                                            .with_index(*p)
                                            .with_error_code(code)
                                            .with_base_offset(-1)
                                            .with_error_message(msg.clone())
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(&ProduceResponse::default().with_responses(responses))?,
                    code,
                )
            }
            Request::CreateTopics { topics, .. } => {
                use create_topics_response::*;
                let topics = topics
                    .iter()
                    .map(|t| {
                        CreatableTopicResult::default()
                            .with_name(topic(t))
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                            .with_configs(None)
                    })
                    .collect();
                (
                    self.frame(&CreateTopicsResponse::default().with_topics(topics))?,
                    code,
                )
            }
            Request::DeleteTopics(topics) => {
                use delete_topics_response::*;
                let responses = topics
                    .iter()
                    .map(|t| {
                        DeletableTopicResult::default()
                            .with_name((v < 6 || !t.name.is_empty()).then(|| topic(&t.name)))
                            .with_topic_id(topic_id(&t.id))
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                    })
                    .collect();
                (
                    self.frame(&DeleteTopicsResponse::default().with_responses(responses))?,
                    code,
                )
            }
            Request::CreatePartitions { topics, .. } => {
                use create_partitions_response::*;
                let results = topics
                    .iter()
                    .map(|(t, _)| {
                        CreatePartitionsTopicResult::default()
                            .with_name(topic(t))
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                    })
                    .collect();
                (
                    self.frame(&CreatePartitionsResponse::default().with_results(results))?,
                    code,
                )
            }
            Request::DeleteRecords(topics) => {
                use delete_records_response::*;
                let topics = topics
                    .iter()
                    .map(|(t, parts)| {
                        DeleteRecordsTopicResult::default()
                            .with_name(topic(t))
                            .with_partitions(
                                parts
                                    .iter()
                                    .map(|(p, _)| {
                                        DeleteRecordsPartitionResult::default()
                                            .with_partition_index(*p)
                                            .with_low_watermark(-1)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(&DeleteRecordsResponse::default().with_topics(topics))?,
                    code,
                )
            }
            Request::CreateAcls(acls) => {
                use create_acls_response::*;
                let results = acls
                    .iter()
                    .map(|_| {
                        AclCreationResult::default()
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                    })
                    .collect();
                (
                    self.frame(&CreateAclsResponse::default().with_results(results))?,
                    code,
                )
            }
            Request::DeleteAcls(filters) => {
                use delete_acls_response::*;
                let results = filters
                    .iter()
                    .map(|_| {
                        DeleteAclsFilterResult::default()
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                    })
                    .collect();
                (
                    self.frame(&DeleteAclsResponse::default().with_filter_results(results))?,
                    code,
                )
            }
            Request::AlterConfigs { resources, .. } => {
                // As the broker answers: per resource type (topic, group, else cluster).
                let code_of = |t: i8| match t {
                    2 => TOPIC_AUTHORIZATION_FAILED,
                    32 => GROUP_AUTHORIZATION_FAILED,
                    _ => code,
                };
                let first = resources.first().map_or(code, |r| code_of(r.resource_type));
                let response = if self.key == ApiKey::AlterConfigs {
                    use alter_configs_response::*;
                    let responses = resources
                        .iter()
                        .map(|r| {
                            AlterConfigsResourceResponse::default()
                                .with_error_code(code_of(r.resource_type))
                                .with_error_message(msg.clone())
                                .with_resource_type(r.resource_type)
                                .with_resource_name(s(&r.name))
                        })
                        .collect();
                    self.frame(&AlterConfigsResponse::default().with_responses(responses))?
                } else {
                    use incremental_alter_configs_response::*;
                    let responses = resources
                        .iter()
                        .map(|r| {
                            AlterConfigsResourceResponse::default()
                                .with_error_code(code_of(r.resource_type))
                                .with_error_message(msg.clone())
                                .with_resource_type(r.resource_type)
                                .with_resource_name(s(&r.name))
                        })
                        .collect();
                    self.frame(
                        &IncrementalAlterConfigsResponse::default().with_responses(responses),
                    )?
                };
                (response, first)
            }
            Request::AlterClientQuotas { entries, .. } => {
                use alter_client_quotas_response::*;
                let entries = entries
                    .iter()
                    .map(|e| {
                        EntryData::default()
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                            .with_entity(
                                e.entity
                                    .iter()
                                    .map(|(t, n)| {
                                        EntityData::default()
                                            .with_entity_type(s(t))
                                            .with_entity_name(n.as_deref().map(s))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(&AlterClientQuotasResponse::default().with_entries(entries))?,
                    code,
                )
            }
            Request::AlterUserScramCredentials(changes) => {
                use alter_user_scram_credentials_response::*;
                // One result per user, as the broker answers.
                let mut users: Vec<&str> = Vec::new();
                for (user, _, _) in changes {
                    if !users.contains(&user.as_str()) {
                        users.push(user);
                    }
                }
                let results = users
                    .into_iter()
                    .map(|u| {
                        AlterUserScramCredentialsResult::default()
                            .with_user(s(u))
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                    })
                    .collect();
                (
                    self.frame(
                        &AlterUserScramCredentialsResponse::default().with_results(results),
                    )?,
                    code,
                )
            }
            Request::AlterPartitionReassignments(topics) => {
                use alter_partition_reassignments_response::*;
                let responses = topics
                    .iter()
                    .map(|(t, parts)| {
                        ReassignableTopicResponse::default()
                            .with_name(topic(t))
                            .with_partitions(
                                parts
                                    .iter()
                                    .map(|(p, _)| {
                                        ReassignablePartitionResponse::default()
                                            .with_partition_index(*p)
                                            .with_error_code(code)
                                            .with_error_message(msg.clone())
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(
                        &AlterPartitionReassignmentsResponse::default()
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                            .with_responses(responses),
                    )?,
                    code,
                )
            }
            Request::ElectLeaders { topics, .. } => {
                use elect_leaders_response::*;
                let results = topics
                    .iter()
                    .flatten()
                    .map(|t| {
                        ReplicaElectionResult::default()
                            .with_topic(topic(&t.name))
                            .with_partition_result(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        PartitionResult::default()
                                            .with_partition_id(*p)
                                            .with_error_code(code)
                                            .with_error_message(msg.clone())
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                // v0 has no top-level error code.
                let top = if v >= 1 { code } else { 0 };
                (
                    self.frame(
                        &ElectLeadersResponse::default()
                            .with_error_code(top)
                            .with_replica_election_results(results),
                    )?,
                    code,
                )
            }
            Request::UpdateFeatures { features, .. } => {
                use update_features_response::*;
                // v2+ reports the top-level error only.
                let results = if v <= 1 {
                    features
                        .iter()
                        .map(|(f, _)| {
                            UpdatableFeatureResult::default()
                                .with_feature(s(f))
                                .with_error_code(code)
                                .with_error_message(msg.clone())
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                (
                    self.frame(
                        &UpdateFeaturesResponse::default()
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                            .with_results(results),
                    )?,
                    code,
                )
            }
            Request::AlterReplicaLogDirs(dirs) => {
                use alter_replica_log_dirs_response::*;
                // One result per topic, as the broker answers, whichever directories it named.
                let mut results: Vec<AlterReplicaLogDirTopicResult> = Vec::new();
                for t in dirs.iter().flat_map(|(_, topics)| topics) {
                    let partitions = t.partitions.iter().map(|p| {
                        AlterReplicaLogDirPartitionResult::default()
                            .with_partition_index(*p)
                            .with_error_code(code)
                    });
                    match results
                        .iter_mut()
                        .find(|r| r.topic_name.0.as_str() == t.name)
                    {
                        Some(r) => r.partitions.extend(partitions),
                        None => results.push(
                            AlterReplicaLogDirTopicResult::default()
                                .with_topic_name(topic(&t.name))
                                .with_partitions(partitions.collect()),
                        ),
                    }
                }
                (
                    self.frame(&AlterReplicaLogDirsResponse::default().with_results(results))?,
                    code,
                )
            }
            Request::UnregisterBroker(_) => (
                self.frame(
                    &UnregisterBrokerResponse::default()
                        .with_error_code(code)
                        .with_error_message(msg.clone()),
                )?,
                code,
            ),
            Request::InitProducerId(transactional_id) => {
                // As the broker answers: the transactional id, or for an idempotent producer
                // the cluster's IdempotentWrite.
                let code = if transactional_id.is_some() {
                    code
                } else {
                    CLUSTER_AUTHORIZATION_FAILED
                };
                (
                    self.frame(
                        &InitProducerIdResponse::default()
                            .with_error_code(code)
                            .with_producer_id((-1).into())
                            .with_producer_epoch(-1),
                    )?,
                    code,
                )
            }
            Request::AddPartitionsToTxn(_) if v >= 4 => (
                // v4+ is the brokers' batched verification, which needs ClusterAction; the
                // broker answers a missing one with a top-level error only.
                self.frame(
                    &AddPartitionsToTxnResponse::default()
                        .with_error_code(CLUSTER_AUTHORIZATION_FAILED),
                )?,
                CLUSTER_AUTHORIZATION_FAILED,
            ),
            Request::AddPartitionsToTxn(transactions) => {
                use add_partitions_to_txn_response::*;
                let results = transactions
                    .iter()
                    .flat_map(|(_, topics)| topics)
                    .map(|t| {
                        AddPartitionsToTxnTopicResult::default()
                            .with_name(topic(&t.name))
                            .with_results_by_partition(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        AddPartitionsToTxnPartitionResult::default()
                                            .with_partition_index(*p)
                                            .with_partition_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(
                        &AddPartitionsToTxnResponse::default()
                            .with_results_by_topic_v3_and_below(results),
                    )?,
                    code,
                )
            }
            Request::AddOffsetsToTxn { .. } => (
                self.frame(&AddOffsetsToTxnResponse::default().with_error_code(code))?,
                code,
            ),
            Request::EndTxn { .. } => (
                self.frame(&EndTxnResponse::default().with_error_code(code))?,
                code,
            ),
            Request::TxnOffsetCommit { topics, .. } => {
                use txn_offset_commit_response::*;
                let topics = topics
                    .iter()
                    .map(|t| {
                        TxnOffsetCommitResponseTopic::default()
                            .with_name(topic(&t.name))
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        TxnOffsetCommitResponsePartition::default()
                                            .with_partition_index(*p)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(&TxnOffsetCommitResponse::default().with_topics(topics))?,
                    code,
                )
            }
            Request::DeleteGroups(groups) => {
                use delete_groups_response::*;
                let results = groups
                    .iter()
                    .map(|g| {
                        DeletableGroupResult::default()
                            .with_group_id(GroupId(s(g)))
                            .with_error_code(code)
                    })
                    .collect();
                (
                    self.frame(&DeleteGroupsResponse::default().with_results(results))?,
                    code,
                )
            }
            Request::OffsetDelete { topics, .. } => {
                use offset_delete_response::*;
                let topics = topics
                    .iter()
                    .map(|t| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(topic(&t.name))
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(*p)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(
                        &OffsetDeleteResponse::default()
                            .with_error_code(code)
                            .with_topics(topics),
                    )?,
                    code,
                )
            }
            Request::CreateDelegationToken { .. } => (
                self.frame(&CreateDelegationTokenResponse::default().with_error_code(code))?,
                code,
            ),
            Request::RenewDelegationToken => (
                self.frame(&RenewDelegationTokenResponse::default().with_error_code(code))?,
                code,
            ),
            Request::ExpireDelegationToken => (
                self.frame(&ExpireDelegationTokenResponse::default().with_error_code(code))?,
                code,
            ),
            Request::AlterShareGroupOffsets { .. } => (
                self.frame(
                    &AlterShareGroupOffsetsResponse::default()
                        .with_error_code(code)
                        .with_error_message(msg.clone()),
                )?,
                code,
            ),
            Request::DeleteShareGroupOffsets { .. } => (
                self.frame(
                    &DeleteShareGroupOffsetsResponse::default()
                        .with_error_code(code)
                        .with_error_message(msg.clone()),
                )?,
                code,
            ),
        })
    }
}

/// The Produce v0-v2 response kafka-protocol cannot encode: response header v0, then
/// `responses[name, partitions[index, error_code, base_offset, log_append_time_ms (v2)]]` and
/// `throttle_time_ms` (v1+). Names and counts came from an int16-length string and an int32
/// count of the request, so they fit again.
fn produce_v0_v2(correlation_id: i32, version: i16, topics: &[Topic], code: i16) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i32(0); // length, below
    out.put_i32(correlation_id);
    out.put_i32(topics.len() as i32);
    for t in topics {
        out.put_i16(t.name.len() as i16);
        out.put_slice(t.name.as_bytes());
        out.put_i32(t.partitions.len() as i32);
        for p in &t.partitions {
            out.put_i32(*p);
            out.put_i16(code);
            out.put_i64(-1); // base_offset
            if version >= 2 {
                out.put_i64(-1); // log_append_time_ms
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle_time_ms
    }
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.freeze()
}

#[cfg(test)]
#[path = "deny_tests.rs"]
mod tests;
