//! Denial responses: the error response of a denied request's own API, at the version it was
//! sent, with the client's correlation id.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use bytes::{Bytes, BytesMut};
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
    /// The policy that denied it, which the error message names.
    pub(super) policy: Policy,
    /// Its API.
    pub(super) key: ApiKey,
    /// The version it was sent at, which the response is encoded at.
    pub(super) version: i16,
    /// The client's correlation id, which the response carries.
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

/// The error message a denial under `policy` carries where its response has one.
pub(super) fn message(policy: Policy) -> String {
    format!("denied by the {policy} policy of this kafka-tls-proxy identity")
}

impl Answer {
    /// The error message the response carries where it has one.
    fn message(&self) -> Option<StrBytes> {
        Some(StrBytes::from_string(message(self.policy)))
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

    /// The error code the broker answers `request` with (the first, where resources differ):
    /// the row's, but the cluster's where the request needs a cluster permission instead (see
    /// [`Denial`](super::Denial)).
    fn code_of(&self, request: &Request) -> i16 {
        match request {
            // An idempotent producer needs the cluster's IdempotentWrite.
            Request::InitProducerId(None) => CLUSTER_AUTHORIZATION_FAILED,
            // v4+ is the brokers' batched verification, which needs ClusterAction; the broker
            // answers a missing one with a top-level error only.
            Request::AddPartitionsToTxn(_) if self.version >= 4 => CLUSTER_AUTHORIZATION_FAILED,
            Request::AlterConfigs { resources, .. } => resources
                .first()
                .map_or(self.code, |r| self.config_code(r.resource_type)),
            _ => self.code,
        }
    }

    /// The error code of a configuration resource of `resource_type`, as the broker answers
    /// (topic 2, group 32, else the cluster's).
    fn config_code(&self, resource_type: i8) -> i16 {
        match resource_type {
            2 => TOPIC_AUTHORIZATION_FAILED,
            32 => GROUP_AUTHORIZATION_FAILED,
            _ => self.code,
        }
    }

    /// The answer to a Metadata v0-v3 request that names `topics` under a policy that may not
    /// create topics: each topic with TOPIC_AUTHORIZATION_FAILED, no brokers (these versions
    /// would make the broker create every topic named that does not exist, and have no flag to
    /// turn that off).
    pub(super) fn metadata(&self, topics: &[String]) -> Result<Bytes, CodecError> {
        use km::metadata_response::*;
        let topics = topics
            .iter()
            .map(|t| {
                MetadataResponseTopic::default()
                    .with_name(Some(km::TopicName(s(t))))
                    .with_error_code(self.code)
            })
            .collect();
        self.frame(&km::MetadataResponse::default().with_topics(topics))
    }

    /// A response whose whole denial is its top-level error, as a frame.
    fn top_level<M: ErrorOnly>(&self, code: i16) -> Result<Bytes, CodecError> {
        self.frame(&M::denied(code, self.message()))
    }

    /// The error response to `request` and its error code.
    pub(super) fn deny(&self, request: &Request) -> Result<(Bytes, i16), PolicyError> {
        use km::*;
        let v = self.version;
        let code = self.code_of(request);
        let msg = self.message();
        let topic = |name: &str| TopicName(s(name));
        let response = match request {
            // The top-level error is the whole answer.
            Request::UnregisterBroker(_) => self.top_level::<UnregisterBrokerResponse>(code)?,
            Request::InitProducerId(_) => self.top_level::<InitProducerIdResponse>(code)?,
            Request::AddPartitionsToTxn(_) if v >= 4 => {
                self.top_level::<AddPartitionsToTxnResponse>(code)?
            }
            Request::AddOffsetsToTxn { .. } => self.top_level::<AddOffsetsToTxnResponse>(code)?,
            Request::EndTxn { .. } => self.top_level::<EndTxnResponse>(code)?,
            Request::CreateDelegationToken { .. } => {
                self.top_level::<CreateDelegationTokenResponse>(code)?
            }
            Request::RenewDelegationToken => {
                self.top_level::<RenewDelegationTokenResponse>(code)?
            }
            Request::ExpireDelegationToken => {
                self.top_level::<ExpireDelegationTokenResponse>(code)?
            }
            Request::AlterShareGroupOffsets { .. } => {
                self.top_level::<AlterShareGroupOffsetsResponse>(code)?
            }
            Request::DeleteShareGroupOffsets { .. } => {
                self.top_level::<DeleteShareGroupOffsetsResponse>(code)?
            }

            // One error per entry of the request.
            Request::CreateAcls(acls) => {
                let results = acls.iter().map(|_| ErrorOnly::denied(code, msg.clone()));
                self.frame(&CreateAclsResponse::default().with_results(results.collect()))?
            }
            Request::DeleteAcls(filters) => {
                let results = filters.iter().map(|_| ErrorOnly::denied(code, msg.clone()));
                self.frame(&DeleteAclsResponse::default().with_filter_results(results.collect()))?
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
                self.frame(&CreateTopicsResponse::default().with_topics(topics))?
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
                self.frame(&DeleteTopicsResponse::default().with_responses(responses))?
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
                self.frame(&CreatePartitionsResponse::default().with_results(results))?
            }
            Request::AlterConfigs { resources, .. } => {
                // The same answer in two APIs' types.
                macro_rules! per_resource {
                    ($module:ident :: $response:ident) => {{
                        use $module::*;
                        let responses = resources
                            .iter()
                            .map(|r| {
                                AlterConfigsResourceResponse::default()
                                    .with_error_code(self.config_code(r.resource_type))
                                    .with_error_message(msg.clone())
                                    .with_resource_type(r.resource_type)
                                    .with_resource_name(s(&r.name))
                            })
                            .collect();
                        self.frame(&$response::default().with_responses(responses))?
                    }};
                }
                if self.key == ApiKey::AlterConfigs {
                    per_resource!(alter_configs_response::AlterConfigsResponse)
                } else {
                    per_resource!(
                        incremental_alter_configs_response::IncrementalAlterConfigsResponse
                    )
                }
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
                self.frame(&AlterClientQuotasResponse::default().with_entries(entries))?
            }
            Request::AlterUserScramCredentials(changes) => {
                use alter_user_scram_credentials_response::*;
                // One result per user, as the broker answers, in order of first mention. A set
                // remembers who is listed: the request may name a hundred thousand users, and a
                // scan of the list per entry would be quadratic work on a runtime worker.
                let mut seen: HashSet<&str> = HashSet::with_capacity(changes.len());
                let mut users: Vec<&str> = Vec::new();
                for (user, _, _) in changes {
                    if seen.insert(user.as_str()) {
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
                self.frame(&AlterUserScramCredentialsResponse::default().with_results(results))?
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
                self.frame(&DeleteGroupsResponse::default().with_results(results))?
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
                self.frame(
                    &UpdateFeaturesResponse::default()
                        .with_error_code(code)
                        .with_error_message(msg.clone())
                        .with_results(results),
                )?
            }

            // One error per partition of the request.
            // Written straight from the request's bytes (super::produce), never from a
            // parsed request: `decide` does not come here with one.
            Request::Produce { .. } => {
                return Err(PolicyError::Malformed {
                    api_key: self.key as i16,
                    version: v,
                    reason: "a Produce denial is written from the request's bytes",
                })
            }
            Request::ElectLeaders { topics, .. } => {
                use elect_leaders_response::*;
                let results = per_partition(
                    topics.iter().flatten(),
                    |t, partitions| {
                        ReplicaElectionResult::default()
                            .with_topic(topic(&t.name))
                            .with_partition_result(partitions)
                    },
                    |p| {
                        PartitionResult::default()
                            .with_partition_id(p)
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                    },
                );
                // v0 has no top-level error code.
                let top = if v >= 1 { code } else { 0 };
                self.frame(
                    &ElectLeadersResponse::default()
                        .with_error_code(top)
                        .with_replica_election_results(results),
                )?
            }
            Request::AddPartitionsToTxn(transactions) => {
                use add_partitions_to_txn_response::*;
                let results = per_partition(
                    transactions.iter().flat_map(|(_, topics)| topics),
                    |t, partitions| {
                        AddPartitionsToTxnTopicResult::default()
                            .with_name(topic(&t.name))
                            .with_results_by_partition(partitions)
                    },
                    |p| {
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(p)
                            .with_partition_error_code(code)
                    },
                );
                self.frame(
                    &AddPartitionsToTxnResponse::default()
                        .with_results_by_topic_v3_and_below(results),
                )?
            }
            Request::TxnOffsetCommit { topics, .. } => {
                use txn_offset_commit_response::*;
                let topics = per_partition(
                    topics,
                    |t, partitions| {
                        TxnOffsetCommitResponseTopic::default()
                            .with_name(topic(&t.name))
                            .with_partitions(partitions)
                    },
                    |p| {
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p)
                            .with_error_code(code)
                    },
                );
                self.frame(&TxnOffsetCommitResponse::default().with_topics(topics))?
            }
            Request::OffsetDelete { topics, .. } => {
                use offset_delete_response::*;
                let topics = per_partition(
                    topics,
                    |t, partitions| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(topic(&t.name))
                            .with_partitions(partitions)
                    },
                    |p| {
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p)
                            .with_error_code(code)
                    },
                );
                self.frame(
                    &OffsetDeleteResponse::default()
                        .with_error_code(code)
                        .with_topics(topics),
                )?
            }
            Request::AlterReplicaLogDirs(dirs) => {
                use alter_replica_log_dirs_response::*;
                // One result per topic, as the broker answers, whichever directories it named,
                // in order of first mention. A map from name to result index finds a topic's
                // result: a scan of the results per entry would be quadratic work on a runtime
                // worker.
                let mut index: HashMap<&str, usize> = HashMap::new();
                let mut results: Vec<AlterReplicaLogDirTopicResult> = Vec::new();
                for t in dirs.iter().flat_map(|(_, topics)| topics) {
                    let partitions = t.partitions.iter().map(|p| {
                        AlterReplicaLogDirPartitionResult::default()
                            .with_partition_index(*p)
                            .with_error_code(code)
                    });
                    match index.entry(t.name.as_str()) {
                        Entry::Occupied(at) => results[*at.get()].partitions.extend(partitions),
                        Entry::Vacant(slot) => {
                            slot.insert(results.len());
                            results.push(
                                AlterReplicaLogDirTopicResult::default()
                                    .with_topic_name(topic(&t.name))
                                    .with_partitions(partitions.collect()),
                            );
                        }
                    }
                }
                self.frame(&AlterReplicaLogDirsResponse::default().with_results(results))?
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
                self.frame(&DeleteRecordsResponse::default().with_topics(topics))?
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
                self.frame(
                    &AlterPartitionReassignmentsResponse::default()
                        .with_error_code(code)
                        .with_error_message(msg.clone())
                        .with_responses(responses),
                )?
            }
        };
        Ok((response, code))
    }
}

/// One result per topic, each with one result per partition, the shape of most per-partition
/// answers: `topic` makes a topic's result from its request entry and its partitions' results,
/// `partition` a partition's result from its index.
fn per_partition<'a, T, P>(
    topics: impl IntoIterator<Item = &'a Topic>,
    topic: impl Fn(&Topic, Vec<P>) -> T,
    partition: impl Fn(i32) -> P,
) -> Vec<T> {
    topics
        .into_iter()
        .map(|t| topic(t, t.partitions.iter().map(|p| partition(*p)).collect()))
        .collect()
}

/// A message a denial fills in with its error code (and error message, where it has one) and
/// leaves at kafka-protocol's defaults otherwise, bar what the broker sets on an error: every
/// response whose answer is its top-level error, and the per-entry results of the ACL APIs.
trait ErrorOnly: Default + Encodable {
    /// The message with `code` and `message`.
    fn denied(code: i16, message: Option<StrBytes>) -> Self;
}

/// [`ErrorOnly`] for messages with an error message field and for those with a code only.
macro_rules! error_only {
    (with message: $($m:ty),+; code only: $($c:ty),+ $(,)?) => {
        $(impl ErrorOnly for $m {
            fn denied(code: i16, message: Option<StrBytes>) -> Self {
                Self::default().with_error_code(code).with_error_message(message)
            }
        })+
        $(impl ErrorOnly for $c {
            fn denied(code: i16, _: Option<StrBytes>) -> Self {
                Self::default().with_error_code(code)
            }
        })+
    };
}

error_only! {
    with message:
        km::UnregisterBrokerResponse,
        km::AlterShareGroupOffsetsResponse,
        km::DeleteShareGroupOffsetsResponse,
        km::create_acls_response::AclCreationResult,
        km::delete_acls_response::DeleteAclsFilterResult;
    code only:
        km::AddPartitionsToTxnResponse,
        km::AddOffsetsToTxnResponse,
        km::EndTxnResponse,
        km::CreateDelegationTokenResponse,
        km::RenewDelegationTokenResponse,
        km::ExpireDelegationTokenResponse,
}

impl ErrorOnly for km::InitProducerIdResponse {
    /// No producer id or epoch, as the broker answers an error.
    fn denied(code: i16, _: Option<StrBytes>) -> Self {
        Self::default()
            .with_error_code(code)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1)
    }
}

#[cfg(test)]
#[path = "deny_tests.rs"]
mod tests;
