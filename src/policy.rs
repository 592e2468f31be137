//! What a client acting as one of the proxy's identities may ask of the cluster, and the audit
//! of requests that change it.
//!
//! Each identity has a [`Policy`]: `full` (everything; the default), `read-only` (consume,
//! group membership and offset commits, metadata and describes) or `no-admin` (also produce,
//! transactions and idempotent producers, but no change to topics, partitions, records,
//! configuration, ACLs, quotas, credentials, groups or the cluster itself). A policy is defence
//! in depth on top of the cluster's ACLs: the proxy's certificate may be allowed more than
//! some of its clients should be.
//!
//! [`rule`] is the one table: every API key of kafka-protocol, each with what it needs
//! ([`Access`]) and how a denial is answered. A denied request gets the error response of its
//! own API at the version it was sent, with the client's correlation id (topic, group, cluster
//! or transactional-id authorization failed, per resource where the response has resources),
//! so that clients report an authorization failure instead of reconnecting in a loop. A
//! request no response can carry the error for is answered by closing the connection: Produce
//! with acks=0, inter-broker and controller APIs, API keys the proxy does not know, versions
//! the proxy cannot encode, and requests that do not parse.
//!
//! Requests are read only when they are denied or audited, through the bounds-checked walkers
//! of [`crate::kafka::requests`]; allowed requests under a policy cost one table lookup. Denial
//! responses are kafka-protocol messages the proxy builds itself and encodes with
//! [`codec::encode_frame`].
//!
//! The audit ([`audited`], [`audit_resources`], [`audit_outcome`]) names what a
//! cluster-changing request changes and what the broker answered, for the connection's
//! structured log line (which adds time, identity, principal, client address, API, version).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{self as km, ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Encodable, StrBytes, VersionRange};

use crate::kafka::codec::{self, versions_of, CodecError};
use crate::kafka::frame::RequestHeader;
use crate::kafka::requests::{self, Capped, Request, Topic, NIL_ID};
use crate::kafka::wire::Walker;

/// TOPIC_AUTHORIZATION_FAILED.
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
/// GROUP_AUTHORIZATION_FAILED.
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
/// CLUSTER_AUTHORIZATION_FAILED.
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
/// DELEGATION_TOKEN_AUTHORIZATION_FAILED.
pub const DELEGATION_TOKEN_AUTHORIZATION_FAILED: i16 = 65;

/// What an identity may ask of the cluster through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Everything the cluster's ACLs allow the proxy's certificate.
    #[default]
    Full,
    /// Consume, group membership and offset commits, metadata and describes.
    ReadOnly,
    /// [`Policy::ReadOnly`] plus produce, transactions and idempotent producers; no change to
    /// the cluster.
    NoAdmin,
}

impl Policy {
    /// Every policy, for flags and tests.
    pub const ALL: [Policy; 3] = [Policy::Full, Policy::ReadOnly, Policy::NoAdmin];

    /// The name as configured: `full`, `read-only`, `no-admin`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Full => "full",
            Policy::ReadOnly => "read-only",
            Policy::NoAdmin => "no-admin",
        }
    }

    /// True when this policy lets a request needing `access` through.
    pub fn allows(self, access: Access) -> bool {
        match self {
            Policy::Full => true,
            Policy::NoAdmin => matches!(access, Access::Read | Access::Write),
            Policy::ReadOnly => access == Access::Read,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Policy {
    type Err = String;

    /// Parses a configured name, as the TOML file spells it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown policy {s:?} (expected full, read-only or no-admin)"))
    }
}

/// What a request needs from the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading and being a consumer: fetch, metadata, describes and lists, group membership,
    /// offset commits, authentication, telemetry. Every policy allows it.
    Read,
    /// Writing records: produce, transactions, producer ids. `no-admin` and `full` allow it.
    Write,
    /// A change to the cluster a client may ask for (topics, partitions, records,
    /// configuration, ACLs, quotas, credentials, groups, features, brokers). Only `full`
    /// allows it, and every such request is audited.
    Admin,
    /// Inter-broker and controller APIs: no client sends them. Only `full` lets them through;
    /// a denial closes the connection.
    Internal,
}

/// One entry of the table: what an API needs and how a denial is answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// What the API needs.
    pub access: Access,
    /// `Some(versions)`: a denial is answered with the API's own error response at these
    /// versions (the ones the proxy can read the request of and encode the response of);
    /// other versions, and `None`, close the connection.
    pub answer: Option<VersionRange>,
}

const READ: Rule = Rule {
    access: Access::Read,
    answer: None,
};

const INTERNAL: Rule = Rule {
    access: Access::Internal,
    answer: None,
};

const fn write(versions: VersionRange) -> Rule {
    Rule {
        access: Access::Write,
        answer: Some(versions),
    }
}

const fn admin(versions: VersionRange) -> Rule {
    Rule {
        access: Access::Admin,
        answer: Some(versions),
    }
}

/// Produce versions the proxy answers: kafka-protocol's (v3+), and v0-v2, which Kafka 3.x
/// brokers still accept and whose response the proxy writes by hand.
const PRODUCE_VERSIONS: VersionRange = VersionRange {
    min: 0,
    max: versions_of::<km::ProduceRequest, km::ProduceResponse>().max,
};

/// The policy table: every API key kafka-protocol knows. No wildcard arm, so that a new
/// kafka-protocol version with a new API does not compile until it is classified here.
pub fn rule(key: ApiKey) -> Rule {
    use km::*;
    match key {
        ApiKey::Produce => write(PRODUCE_VERSIONS),
        ApiKey::InitProducerId => {
            write(versions_of::<InitProducerIdRequest, InitProducerIdResponse>())
        }
        ApiKey::AddPartitionsToTxn => write(versions_of::<
            AddPartitionsToTxnRequest,
            AddPartitionsToTxnResponse,
        >()),
        ApiKey::AddOffsetsToTxn => {
            write(versions_of::<AddOffsetsToTxnRequest, AddOffsetsToTxnResponse>())
        }
        ApiKey::EndTxn => write(versions_of::<EndTxnRequest, EndTxnResponse>()),
        ApiKey::TxnOffsetCommit => {
            write(versions_of::<TxnOffsetCommitRequest, TxnOffsetCommitResponse>())
        }

        ApiKey::CreateTopics => admin(versions_of::<CreateTopicsRequest, CreateTopicsResponse>()),
        ApiKey::DeleteTopics => admin(versions_of::<DeleteTopicsRequest, DeleteTopicsResponse>()),
        ApiKey::CreatePartitions => admin(versions_of::<
            CreatePartitionsRequest,
            CreatePartitionsResponse,
        >()),
        ApiKey::DeleteRecords => {
            admin(versions_of::<DeleteRecordsRequest, DeleteRecordsResponse>())
        }
        ApiKey::CreateAcls => admin(versions_of::<CreateAclsRequest, CreateAclsResponse>()),
        ApiKey::DeleteAcls => admin(versions_of::<DeleteAclsRequest, DeleteAclsResponse>()),
        ApiKey::AlterConfigs => admin(versions_of::<AlterConfigsRequest, AlterConfigsResponse>()),
        ApiKey::IncrementalAlterConfigs => admin(versions_of::<
            IncrementalAlterConfigsRequest,
            IncrementalAlterConfigsResponse,
        >()),
        ApiKey::AlterClientQuotas => admin(versions_of::<
            AlterClientQuotasRequest,
            AlterClientQuotasResponse,
        >()),
        ApiKey::AlterUserScramCredentials => admin(versions_of::<
            AlterUserScramCredentialsRequest,
            AlterUserScramCredentialsResponse,
        >()),
        ApiKey::AlterPartitionReassignments => admin(versions_of::<
            AlterPartitionReassignmentsRequest,
            AlterPartitionReassignmentsResponse,
        >()),
        ApiKey::ElectLeaders => admin(versions_of::<ElectLeadersRequest, ElectLeadersResponse>()),
        ApiKey::UpdateFeatures => {
            admin(versions_of::<UpdateFeaturesRequest, UpdateFeaturesResponse>())
        }
        ApiKey::AlterReplicaLogDirs => admin(versions_of::<
            AlterReplicaLogDirsRequest,
            AlterReplicaLogDirsResponse,
        >()),
        ApiKey::UnregisterBroker => admin(versions_of::<
            UnregisterBrokerRequest,
            UnregisterBrokerResponse,
        >()),
        ApiKey::DeleteGroups => admin(versions_of::<DeleteGroupsRequest, DeleteGroupsResponse>()),
        ApiKey::OffsetDelete => admin(versions_of::<OffsetDeleteRequest, OffsetDeleteResponse>()),
        ApiKey::CreateDelegationToken => admin(versions_of::<
            CreateDelegationTokenRequest,
            CreateDelegationTokenResponse,
        >()),
        ApiKey::RenewDelegationToken => admin(versions_of::<
            RenewDelegationTokenRequest,
            RenewDelegationTokenResponse,
        >()),
        ApiKey::ExpireDelegationToken => admin(versions_of::<
            ExpireDelegationTokenRequest,
            ExpireDelegationTokenResponse,
        >()),
        ApiKey::AlterShareGroupOffsets => admin(versions_of::<
            AlterShareGroupOffsetsRequest,
            AlterShareGroupOffsetsResponse,
        >()),
        ApiKey::DeleteShareGroupOffsets => admin(versions_of::<
            DeleteShareGroupOffsetsRequest,
            DeleteShareGroupOffsetsResponse,
        >()),

        ApiKey::Fetch
        | ApiKey::ListOffsets
        | ApiKey::Metadata
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::FindCoordinator
        | ApiKey::JoinGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::SyncGroup
        | ApiKey::DescribeGroups
        | ApiKey::ListGroups
        | ApiKey::SaslHandshake
        | ApiKey::ApiVersions
        | ApiKey::OffsetForLeaderEpoch
        | ApiKey::DescribeAcls
        | ApiKey::DescribeConfigs
        | ApiKey::DescribeLogDirs
        | ApiKey::SaslAuthenticate
        | ApiKey::DescribeDelegationToken
        | ApiKey::ListPartitionReassignments
        | ApiKey::DescribeClientQuotas
        | ApiKey::DescribeUserScramCredentials
        | ApiKey::DescribeQuorum
        | ApiKey::DescribeCluster
        | ApiKey::DescribeProducers
        | ApiKey::DescribeTransactions
        | ApiKey::ListTransactions
        | ApiKey::ConsumerGroupHeartbeat
        | ApiKey::ConsumerGroupDescribe
        | ApiKey::GetTelemetrySubscriptions
        | ApiKey::PushTelemetry
        | ApiKey::ListConfigResources
        | ApiKey::DescribeTopicPartitions
        | ApiKey::ShareGroupHeartbeat
        | ApiKey::ShareGroupDescribe
        | ApiKey::ShareFetch
        | ApiKey::ShareAcknowledge
        | ApiKey::DescribeShareGroupOffsets => READ,

        ApiKey::WriteTxnMarkers
        | ApiKey::Vote
        | ApiKey::BeginQuorumEpoch
        | ApiKey::EndQuorumEpoch
        | ApiKey::AlterPartition
        | ApiKey::Envelope
        | ApiKey::FetchSnapshot
        | ApiKey::BrokerRegistration
        | ApiKey::BrokerHeartbeat
        | ApiKey::AllocateProducerIds
        | ApiKey::ControllerRegistration
        | ApiKey::AssignReplicasToDirs
        | ApiKey::AddRaftVoter
        | ApiKey::RemoveRaftVoter
        | ApiKey::UpdateRaftVoter
        | ApiKey::InitializeShareGroupState
        | ApiKey::ReadShareGroupState
        | ApiKey::WriteShareGroupState
        | ApiKey::DeleteShareGroupState
        | ApiKey::ReadShareGroupStateSummary => INTERNAL,
    }
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Allow,
    /// Do not forward it; answer with `response` in its place among the responses.
    Deny {
        /// The complete response frame, length prefix included, with the client's
        /// correlation id.
        response: Bytes,
        /// The error code the response carries (the first, where resources differ).
        error_code: i16,
    },
    /// Do not forward it; close the connection: no response could carry the denial, or the
    /// request cannot be read.
    Close {
        /// Why, for the log.
        reason: &'static str,
    },
}

/// Why a request or response could not be read for the audit.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The bytes are not a valid message of that API at that version.
    #[error("api key {api_key} v{version}: {reason}")]
    Malformed {
        /// Api key.
        api_key: i16,
        /// Version.
        version: i16,
        /// What was wrong.
        reason: &'static str,
    },
    /// The proxy cannot read this version of this API.
    #[error("api key {api_key} v{version} is outside the versions the proxy reads")]
    UnsupportedVersion {
        /// Api key.
        api_key: i16,
        /// Version.
        version: i16,
    },
    /// A denial response could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Decides what happens to one request of a client acting under `policy`. `frame` is the
/// complete request frame, length prefix included, as the client sent it (with the client's
/// correlation id, which a denial response carries); `header` is its header as
/// [`crate::kafka::frame::request_header`] read it.
///
/// Under `full`, and for requests the policy allows, nothing is read beyond the header.
pub fn decide(policy: Policy, header: &RequestHeader, frame: &[u8]) -> Decision {
    if policy == Policy::Full {
        return Decision::Allow;
    }
    let Ok(key) = ApiKey::try_from(header.api_key) else {
        return Decision::Close {
            reason: "api key unknown to the proxy, which cannot tell what it does",
        };
    };
    let rule = rule(key);
    if policy.allows(rule.access) {
        return Decision::Allow;
    }
    let Some(versions) = rule.answer else {
        return Decision::Close {
            reason: "the policy denies this API, whose responses cannot carry a denial",
        };
    };
    let version = header.api_version;
    if !(versions.min..=versions.max).contains(&version) {
        return Decision::Close {
            reason: "the policy denies this API, at a version the proxy cannot answer",
        };
    }
    let Ok(request) = requests::request_body(frame, header.api_key, version)
        .and_then(|body| requests::parse(key, version, body))
    else {
        return Decision::Close {
            reason: "the policy denies this request, which does not parse",
        };
    };
    if let Request::Produce { acks: 0, .. } = request {
        return Decision::Close {
            reason: "the policy denies this Produce, whose acks=0 leaves no response to carry it",
        };
    }
    if let (0, Request::ElectLeaders { topics: None, .. }) = (version, &request) {
        // v0 has no top-level error code: an answer for "all partitions" would name none and
        // read as a success.
        return Decision::Close {
            reason: "the policy denies this ElectLeaders v0 for all partitions, whose response cannot carry it",
        };
    }
    let answer = Answer {
        policy,
        key,
        version,
        correlation_id: header.correlation_id,
    };
    match answer.deny(&request) {
        Ok((response, error_code)) => Decision::Deny {
            response,
            error_code,
        },
        Err(_) => Decision::Close {
            reason: "the policy denies this request, whose error response cannot be encoded",
        },
    }
}

/// True for the requests whose audit line is written: the ones that change the cluster
/// ([`Access::Admin`]). Reads only the table.
pub fn audited(api_key: i16) -> bool {
    ApiKey::try_from(api_key).is_ok_and(|key| rule(key).access == Access::Admin)
}

/// The API of a request or response the policy reads at `version`: `None` when it reads
/// nothing of that API (unknown keys included), an error at a version it cannot read.
fn readable(api_key: i16, version: i16) -> Result<Option<ApiKey>, PolicyError> {
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Ok(None);
    };
    if !requests::parsed(key) {
        return Ok(None);
    }
    match rule(key).answer {
        Some(v) if (v.min..=v.max).contains(&version) => Ok(Some(key)),
        _ => Err(PolicyError::UnsupportedVersion { api_key, version }),
    }
}

/// The resources a request acts on, for its audit line: topics, partitions, groups, ACL
/// bindings, configuration resources and keys (never values), quota entities, SCRAM users
/// (never credentials), and so on, at most [`requests::AUDIT_CAP`] entries and then a count of
/// the rest. Works for every request the policy may deny natively (Produce and transactions
/// too, for denial lines); empty for the others. `frame` as for [`decide`].
pub fn audit_resources(header: &RequestHeader, frame: &[u8]) -> Result<Vec<String>, PolicyError> {
    let (api_key, version) = (header.api_key, header.api_version);
    let Some(key) = readable(api_key, version)? else {
        return Ok(Vec::new());
    };
    let malformed = |reason| PolicyError::Malformed {
        api_key,
        version,
        reason,
    };
    let body = requests::request_body(frame, api_key, version).map_err(malformed)?;
    let request = requests::parse(key, version, body).map_err(malformed)?;
    let mut out = Capped::<String>::default();
    describe(&request, &mut out);
    Ok(out.finish())
}

/// The broker's answer to an audited request: (resource, error code) pairs in response order,
/// ("", code) for a top-level error code, with the same cap as [`audit_resources`] (the last
/// entry then counts the rest and carries the first error among them). `payload` is the
/// response WITHOUT its length prefix (response header included); `api_key` and `version` are
/// the request's. Empty for requests that are not [`audited`].
pub fn audit_outcome(
    api_key: i16,
    version: i16,
    payload: &[u8],
) -> Result<Vec<(String, i16)>, PolicyError> {
    if !audited(api_key) {
        return Ok(Vec::new());
    }
    let Some(key) = readable(api_key, version)? else {
        return Ok(Vec::new());
    };
    let malformed = |reason| PolicyError::Malformed {
        api_key,
        version,
        reason,
    };
    let mut w = Walker::new(payload);
    w.response_header(codec::response_header_version(api_key, version))
        .map_err(malformed)?;
    let rest = w.take(0).map_err(malformed)?;
    // The walker hands out subslices of `payload`: the empty one starts where the body does.
    let body = &payload[rest.as_ptr() as usize - payload.as_ptr() as usize..];
    let mut out = Capped::<(String, i16)>::default();
    requests::outcome(key, version, body, &mut out).map_err(malformed)?;
    Ok(out.finish())
}

// ---------------------------------------------------------------------------------------------
// Audit text of requests

fn describe(request: &Request, out: &mut Capped<String>) {
    use requests::{clean_str as c, uuid_text};
    let topic_name = |t: &Topic| {
        if t.name.is_empty() && t.id != NIL_ID {
            uuid_text(&t.id)
        } else {
            c(&t.name)
        }
    };
    let partitions = |out: &mut Capped<String>, prefix: &str, topics: &[Topic]| {
        for t in topics {
            for p in &t.partitions {
                out.push(|| format!("{prefix}{}-{p}", topic_name(t)));
            }
        }
    };
    let validate = |validate_only: bool| {
        if validate_only {
            " (validate only)"
        } else {
            ""
        }
    };
    match request {
        Request::Produce {
            transactional_id,
            topics,
            ..
        } => {
            if let Some(t) = transactional_id {
                out.push(|| format!("transactional id {}", c(t)));
            }
            partitions(out, "", topics);
        }
        Request::CreateTopics {
            topics,
            validate_only,
        } => {
            for t in topics {
                out.push(|| format!("{}{}", c(t), validate(*validate_only)));
            }
        }
        Request::DeleteTopics(topics) => {
            for t in topics {
                out.push(|| topic_name(t));
            }
        }
        Request::CreatePartitions {
            topics,
            validate_only,
        } => {
            for (t, count) in topics {
                out.push(|| format!("{} to {count} partitions{}", c(t), validate(*validate_only)));
            }
        }
        Request::DeleteRecords(topics) => {
            for (t, parts) in topics {
                for (p, offset) in parts {
                    out.push(|| format!("{}-{p} before offset {offset}", c(t)));
                }
            }
        }
        Request::CreateAcls(acls) => {
            for acl in acls {
                out.push(|| requests::acl_text(acl));
            }
        }
        Request::DeleteAcls(filters) => {
            for acl in filters {
                out.push(|| format!("matching {}", requests::acl_text(acl)));
            }
        }
        Request::AlterConfigs {
            resources,
            validate_only,
        } => {
            for r in resources {
                out.push(|| {
                    let keys: Vec<String> = r
                        .keys
                        .iter()
                        .take(requests::AUDIT_CAP)
                        .map(|(k, op)| match op {
                            Some(op) => format!("{} {}", requests::config_operation(*op), c(k)),
                            None => format!("set {}", c(k)),
                        })
                        .collect();
                    let more = r.keys.len().saturating_sub(requests::AUDIT_CAP);
                    format!(
                        "{}:{}: {}{}{}",
                        requests::config_type(r.resource_type),
                        c(&r.name),
                        keys.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        },
                        validate(*validate_only)
                    )
                });
            }
        }
        Request::AlterClientQuotas {
            entries,
            validate_only,
        } => {
            for e in entries {
                out.push(|| {
                    let ops: Vec<String> = e
                        .ops
                        .iter()
                        .take(requests::AUDIT_CAP)
                        .map(|(k, value, remove)| {
                            if *remove {
                                format!("remove {}", c(k))
                            } else {
                                format!("{}={value}", c(k))
                            }
                        })
                        .collect();
                    format!(
                        "{}: {}{}",
                        requests::quota_entity_text(&e.entity),
                        ops.join(", "),
                        validate(*validate_only)
                    )
                });
            }
        }
        Request::AlterUserScramCredentials(changes) => {
            for (user, mechanism, upsert) in changes {
                out.push(|| {
                    format!(
                        "{} {} {}",
                        if *upsert { "upsert" } else { "delete" },
                        c(user),
                        requests::scram_mechanism(*mechanism)
                    )
                });
            }
        }
        Request::AlterPartitionReassignments(topics) => {
            for (t, parts) in topics {
                for (p, replicas) in parts {
                    out.push(|| match replicas {
                        Some(r) => format!("{}-{p} to replicas {r:?}", c(t)),
                        None => format!("{}-{p} cancel", c(t)),
                    });
                }
            }
        }
        Request::ElectLeaders {
            election_type,
            topics,
        } => {
            let kind = if *election_type == 1 {
                "unclean"
            } else {
                "preferred"
            };
            match topics {
                None => out.push(|| format!("all partitions ({kind})")),
                Some(topics) => {
                    for t in topics {
                        for p in &t.partitions {
                            out.push(|| format!("{}-{p} ({kind})", c(&t.name)));
                        }
                    }
                }
            }
        }
        Request::UpdateFeatures {
            features,
            validate_only,
        } => {
            for (f, level) in features {
                out.push(|| format!("{} to level {level}{}", c(f), validate(*validate_only)));
            }
        }
        Request::AlterReplicaLogDirs(dirs) => {
            for (dir, topics) in dirs {
                for t in topics {
                    for p in &t.partitions {
                        out.push(|| format!("{}-{p} to {}", c(&t.name), c(dir)));
                    }
                }
            }
        }
        Request::UnregisterBroker(id) => out.push(|| format!("broker {id}")),
        Request::InitProducerId(transactional_id) => out.push(|| match transactional_id {
            Some(t) => format!("transactional id {}", c(t)),
            None => "idempotent producer".to_owned(),
        }),
        Request::AddPartitionsToTxn(transactions) => {
            for (txn, topics) in transactions {
                partitions(out, &format!("{}: ", c(txn)), topics);
            }
        }
        Request::AddOffsetsToTxn {
            transactional_id,
            group,
        } => out.push(|| format!("{}: group {}", c(transactional_id), c(group))),
        Request::EndTxn {
            transactional_id,
            committed,
        } => out.push(|| {
            format!(
                "{}: {}",
                c(transactional_id),
                if *committed { "commit" } else { "abort" }
            )
        }),
        Request::TxnOffsetCommit {
            transactional_id,
            group,
            topics,
        } => partitions(
            out,
            &format!("{} group {}: ", c(transactional_id), c(group)),
            topics,
        ),
        Request::DeleteGroups(groups) => {
            for g in groups {
                out.push(|| c(g));
            }
        }
        Request::OffsetDelete { group, topics } => {
            partitions(out, &format!("{}: ", c(group)), topics)
        }
        Request::CreateDelegationToken { owner, renewers } => {
            match owner {
                Some((t, n)) => out.push(|| format!("owner {}:{}", c(t), c(n))),
                None => out.push(|| "owner: the requester".to_owned()),
            }
            for (t, n) in renewers {
                out.push(|| format!("renewer {}:{}", c(t), c(n)));
            }
        }
        // The token is named by its HMAC only, which is a secret.
        Request::RenewDelegationToken | Request::ExpireDelegationToken => {}
        Request::AlterShareGroupOffsets { group, topics } => {
            for (t, parts) in topics {
                for (p, offset) in parts {
                    out.push(|| format!("{}: {}-{p} to offset {offset}", c(group), c(t)));
                }
            }
        }
        Request::DeleteShareGroupOffsets { group, topics } => {
            for t in topics {
                out.push(|| format!("{}: {}", c(group), c(t)));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Denial responses

/// How to answer one denied request.
struct Answer {
    policy: Policy,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
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
    fn deny(&self, request: &Request) -> Result<(Bytes, i16), PolicyError> {
        use km::*;
        let v = self.version;
        let msg = self.message();
        let topic = |name: &str| TopicName(s(name));
        Ok(match request {
            Request::Produce { topics, .. } if v < 3 => (
                produce_v0_v2(self.correlation_id, v, topics),
                TOPIC_AUTHORIZATION_FAILED,
            ),
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
                                            .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                            .with_base_offset(-1)
                                            .with_error_message(msg.clone())
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(&ProduceResponse::default().with_responses(responses))?,
                    TOPIC_AUTHORIZATION_FAILED,
                )
            }
            Request::CreateTopics { topics, .. } => {
                use create_topics_response::*;
                let topics = topics
                    .iter()
                    .map(|t| {
                        CreatableTopicResult::default()
                            .with_name(topic(t))
                            .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                            .with_error_message(msg.clone())
                            .with_configs(None)
                    })
                    .collect();
                (
                    self.frame(&CreateTopicsResponse::default().with_topics(topics))?,
                    TOPIC_AUTHORIZATION_FAILED,
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
                            .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                            .with_error_message(msg.clone())
                    })
                    .collect();
                (
                    self.frame(&DeleteTopicsResponse::default().with_responses(responses))?,
                    TOPIC_AUTHORIZATION_FAILED,
                )
            }
            Request::CreatePartitions { topics, .. } => {
                use create_partitions_response::*;
                let results = topics
                    .iter()
                    .map(|(t, _)| {
                        CreatePartitionsTopicResult::default()
                            .with_name(topic(t))
                            .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                            .with_error_message(msg.clone())
                    })
                    .collect();
                (
                    self.frame(&CreatePartitionsResponse::default().with_results(results))?,
                    TOPIC_AUTHORIZATION_FAILED,
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
                                            .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(&DeleteRecordsResponse::default().with_topics(topics))?,
                    TOPIC_AUTHORIZATION_FAILED,
                )
            }
            Request::CreateAcls(acls) => {
                use create_acls_response::*;
                let results = acls
                    .iter()
                    .map(|_| {
                        AclCreationResult::default()
                            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                            .with_error_message(msg.clone())
                    })
                    .collect();
                (
                    self.frame(&CreateAclsResponse::default().with_results(results))?,
                    CLUSTER_AUTHORIZATION_FAILED,
                )
            }
            Request::DeleteAcls(filters) => {
                use delete_acls_response::*;
                let results = filters
                    .iter()
                    .map(|_| {
                        DeleteAclsFilterResult::default()
                            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                            .with_error_message(msg.clone())
                    })
                    .collect();
                (
                    self.frame(&DeleteAclsResponse::default().with_filter_results(results))?,
                    CLUSTER_AUTHORIZATION_FAILED,
                )
            }
            Request::AlterConfigs { resources, .. } => {
                // As the broker answers: per resource type (topic, group, else cluster).
                let code = |t: i8| match t {
                    2 => TOPIC_AUTHORIZATION_FAILED,
                    32 => GROUP_AUTHORIZATION_FAILED,
                    _ => CLUSTER_AUTHORIZATION_FAILED,
                };
                let first = resources
                    .first()
                    .map_or(CLUSTER_AUTHORIZATION_FAILED, |r| code(r.resource_type));
                let response = if self.key == ApiKey::AlterConfigs {
                    use alter_configs_response::*;
                    let responses = resources
                        .iter()
                        .map(|r| {
                            AlterConfigsResourceResponse::default()
                                .with_error_code(code(r.resource_type))
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
                                .with_error_code(code(r.resource_type))
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
                            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
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
                    CLUSTER_AUTHORIZATION_FAILED,
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
                            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                            .with_error_message(msg.clone())
                    })
                    .collect();
                (
                    self.frame(
                        &AlterUserScramCredentialsResponse::default().with_results(results),
                    )?,
                    CLUSTER_AUTHORIZATION_FAILED,
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
                                            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                                            .with_error_message(msg.clone())
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(
                        &AlterPartitionReassignmentsResponse::default()
                            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                            .with_error_message(msg.clone())
                            .with_responses(responses),
                    )?,
                    CLUSTER_AUTHORIZATION_FAILED,
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
                                            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                                            .with_error_message(msg.clone())
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                // v0 has no top-level error code.
                let top = if v >= 1 {
                    CLUSTER_AUTHORIZATION_FAILED
                } else {
                    0
                };
                (
                    self.frame(
                        &ElectLeadersResponse::default()
                            .with_error_code(top)
                            .with_replica_election_results(results),
                    )?,
                    CLUSTER_AUTHORIZATION_FAILED,
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
                                .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                                .with_error_message(msg.clone())
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                (
                    self.frame(
                        &UpdateFeaturesResponse::default()
                            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                            .with_error_message(msg.clone())
                            .with_results(results),
                    )?,
                    CLUSTER_AUTHORIZATION_FAILED,
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
                            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
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
                    CLUSTER_AUTHORIZATION_FAILED,
                )
            }
            Request::UnregisterBroker(_) => (
                self.frame(
                    &UnregisterBrokerResponse::default()
                        .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                        .with_error_message(msg.clone()),
                )?,
                CLUSTER_AUTHORIZATION_FAILED,
            ),
            Request::InitProducerId(transactional_id) => {
                // As the broker answers: the transactional id, or for an idempotent producer
                // the cluster's IdempotentWrite.
                let code = if transactional_id.is_some() {
                    TRANSACTIONAL_ID_AUTHORIZATION_FAILED
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
                                            .with_partition_error_code(
                                                TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                            )
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
                    TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                )
            }
            Request::AddOffsetsToTxn { .. } => (
                self.frame(
                    &AddOffsetsToTxnResponse::default()
                        .with_error_code(TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
                )?,
                TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            ),
            Request::EndTxn { .. } => (
                self.frame(
                    &EndTxnResponse::default()
                        .with_error_code(TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
                )?,
                TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
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
                                            .with_error_code(TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(&TxnOffsetCommitResponse::default().with_topics(topics))?,
                    TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                )
            }
            Request::DeleteGroups(groups) => {
                use delete_groups_response::*;
                let results = groups
                    .iter()
                    .map(|g| {
                        DeletableGroupResult::default()
                            .with_group_id(GroupId(s(g)))
                            .with_error_code(GROUP_AUTHORIZATION_FAILED)
                    })
                    .collect();
                (
                    self.frame(&DeleteGroupsResponse::default().with_results(results))?,
                    GROUP_AUTHORIZATION_FAILED,
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
                                            .with_error_code(GROUP_AUTHORIZATION_FAILED)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (
                    self.frame(
                        &OffsetDeleteResponse::default()
                            .with_error_code(GROUP_AUTHORIZATION_FAILED)
                            .with_topics(topics),
                    )?,
                    GROUP_AUTHORIZATION_FAILED,
                )
            }
            Request::CreateDelegationToken { .. } => (
                self.frame(
                    &CreateDelegationTokenResponse::default()
                        .with_error_code(DELEGATION_TOKEN_AUTHORIZATION_FAILED),
                )?,
                DELEGATION_TOKEN_AUTHORIZATION_FAILED,
            ),
            Request::RenewDelegationToken => (
                self.frame(
                    &RenewDelegationTokenResponse::default()
                        .with_error_code(DELEGATION_TOKEN_AUTHORIZATION_FAILED),
                )?,
                DELEGATION_TOKEN_AUTHORIZATION_FAILED,
            ),
            Request::ExpireDelegationToken => (
                self.frame(
                    &ExpireDelegationTokenResponse::default()
                        .with_error_code(DELEGATION_TOKEN_AUTHORIZATION_FAILED),
                )?,
                DELEGATION_TOKEN_AUTHORIZATION_FAILED,
            ),
            Request::AlterShareGroupOffsets { .. } => (
                self.frame(
                    &AlterShareGroupOffsetsResponse::default()
                        .with_error_code(GROUP_AUTHORIZATION_FAILED)
                        .with_error_message(msg.clone()),
                )?,
                GROUP_AUTHORIZATION_FAILED,
            ),
            Request::DeleteShareGroupOffsets { .. } => (
                self.frame(
                    &DeleteShareGroupOffsetsResponse::default()
                        .with_error_code(GROUP_AUTHORIZATION_FAILED)
                        .with_error_message(msg.clone()),
                )?,
                GROUP_AUTHORIZATION_FAILED,
            ),
        })
    }
}

/// The Produce v0-v2 response kafka-protocol cannot encode: response header v0, then
/// `responses[name, partitions[index, error_code, base_offset, log_append_time_ms (v2)]]` and
/// `throttle_time_ms` (v1+). Names and counts came from an int16-length string and an int32
/// count of the request, so they fit again.
fn produce_v0_v2(correlation_id: i32, version: i16, topics: &[Topic]) -> Bytes {
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
            out.put_i16(TOPIC_AUTHORIZATION_FAILED);
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
mod tests {
    use super::*;
    use crate::kafka::frame::{self, RequestHeader};
    use bytes::Buf;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Decodable;

    /// The client's correlation id in every sample.
    const CID: i32 = 0x0102_0304;
    const ORDERS_ID: [u8; 16] = [1; 16];
    const PAYMENTS_ID: [u8; 16] = [2; 16];
    /// Secrets in samples, which must never reach an audit entry.
    const SALTED: &[u8] = b"s3cr3t-salted-password";
    const HMAC: &[u8] = b"s3cr3t-hmac";
    const CONFIG_VALUE: &str = "s3cr3t-config-value";

    fn sb(s: &str) -> StrBytes {
        StrBytes::from_string(s.to_owned())
    }

    fn tn(s: &str) -> TopicName {
        TopicName(sb(s))
    }

    fn uuid<T: TryFrom<Vec<u8>> + Default>(id: [u8; 16]) -> T {
        topic_id(&id)
    }

    /// A complete request frame as a client sends it.
    fn request_frame<M: Encodable>(key: ApiKey, version: i16, msg: &M) -> Bytes {
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
    fn response_payload<M: Encodable>(key: ApiKey, version: i16, msg: &M) -> Bytes {
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(CID)
            .encode(&mut out, key.response_header_version(version))
            .unwrap();
        msg.encode(&mut out, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: {e:#}"));
        out.freeze()
    }

    fn header(frame: &[u8]) -> RequestHeader {
        frame::request_header(frame).unwrap()
    }

    /// Runs `decide` and returns the decoded denial response and its error code, after checking
    /// the length prefix, the response header and that nothing trails the message.
    fn denied<M: Decodable>(policy: Policy, frame: &Bytes) -> (M, i16) {
        let h = header(frame);
        match decide(policy, &h, frame) {
            Decision::Deny {
                response,
                error_code,
            } => {
                let len = i32::from_be_bytes(response[..4].try_into().unwrap());
                assert_eq!(len as usize, response.len() - 4, "length prefix");
                let mut buf = response.slice(4..);
                let rh = ResponseHeader::decode(
                    &mut buf,
                    codec::response_header_version(h.api_key, h.api_version),
                )
                .unwrap();
                assert_eq!(rh.correlation_id, CID, "correlation id");
                let msg = M::decode(&mut buf, h.api_version)
                    .unwrap_or_else(|e| panic!("api {} v{}: {e:#}", h.api_key, h.api_version));
                assert!(!buf.has_remaining(), "bytes after the response");
                (msg, error_code)
            }
            other => panic!(
                "api {} v{} under {policy}: {other:?}",
                h.api_key, h.api_version
            ),
        }
    }

    fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
        let v = rule(key).answer.unwrap();
        v.min..=v.max
    }

    /// The APIs a policy denies with their own error response.
    fn natively_denied() -> Vec<ApiKey> {
        ApiKey::iter()
            .filter(|k| rule(*k).answer.is_some())
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Requests

    /// A realistic request of every natively denied API at `v` (kafka-protocol encodes it; the
    /// hand-built Produce v0-v2 aside). Topics `orders` (partitions 0, 2) and `payments` (1)
    /// wherever the API names topics.
    fn sample(key: ApiKey, v: i16) -> Bytes {
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
                    DeleteTopicsRequest::default()
                        .with_topic_names(vec![tn("orders"), tn("payments")])
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
                let msg =
                    AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
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
                    .with_topics(vec![DeleteShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(tn("orders"))]);
                request_frame(key, v, &msg)
            }
            other => panic!("no sample of {other:?}"),
        }
    }

    fn produce_request(v: i16, acks: i16) -> Bytes {
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
    fn produce_v0_v2_request(v: i16, acks: i16) -> Bytes {
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

    fn elect_leaders_request(v: i16, with_topics: bool) -> Bytes {
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

    fn init_producer_id_request(v: i16, transactional_id: Option<&str>) -> Bytes {
        let mut msg = InitProducerIdRequest::default()
            .with_transactional_id(transactional_id.map(|t| TransactionalId(sb(t))))
            .with_transaction_timeout_ms(60_000);
        if v >= 3 {
            msg = msg.with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
        }
        request_frame(ApiKey::InitProducerId, v, &msg)
    }

    /// Every sample: (api key, version, request frame), at every version the proxy answers.
    fn samples() -> Vec<(ApiKey, i16, Bytes)> {
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

    // -----------------------------------------------------------------------------------------
    // Denials

    fn text(s: &StrBytes) -> &str {
        s.as_str()
    }

    /// Checks the denial of the sample of `key` at `v` under `policy`: the error codes, and the
    /// topics, partitions, groups and resources the response echoes.
    fn check_denial(policy: Policy, key: ApiKey, v: i16, frame: &Bytes) {
        const TOPIC: i16 = TOPIC_AUTHORIZATION_FAILED;
        const CLUSTER: i16 = CLUSTER_AUTHORIZATION_FAILED;
        const GROUP: i16 = GROUP_AUTHORIZATION_FAILED;
        const TXN: i16 = TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        let ctx = format!("{key:?} v{v} under {policy}");
        match key {
            ApiKey::Produce if v < 3 => {
                // kafka-protocol cannot decode v0-v2: read it by hand.
                let h = header(frame);
                let Decision::Deny {
                    response,
                    error_code,
                } = decide(policy, &h, frame)
                else {
                    panic!("{ctx}: not denied");
                };
                assert_eq!(error_code, TOPIC);
                let mut b = &response[..];
                assert_eq!(
                    b.get_i32() as usize,
                    response.len() - 4,
                    "{ctx}: length prefix"
                );
                assert_eq!(b.get_i32(), CID);
                assert_eq!(b.get_i32(), 2);
                for (name, partitions) in [("orders", &[0, 2][..]), ("payments", &[1][..])] {
                    let len = b.get_i16() as usize;
                    assert_eq!(&b[..len], name.as_bytes());
                    b.advance(len);
                    assert_eq!(b.get_i32() as usize, partitions.len());
                    for p in partitions {
                        assert_eq!(b.get_i32(), *p);
                        assert_eq!(b.get_i16(), TOPIC);
                        assert_eq!(b.get_i64(), -1);
                        if v >= 2 {
                            assert_eq!(b.get_i64(), -1);
                        }
                    }
                }
                if v >= 1 {
                    assert_eq!(b.get_i32(), 0);
                }
                assert!(b.is_empty(), "{ctx}: bytes after the response");
            }
            ApiKey::Produce => {
                let (r, code): (ProduceResponse, _) = denied(policy, frame);
                assert_eq!(code, TOPIC);
                assert_eq!(r.responses.len(), 2);
                for (t, (name, id, parts)) in r.responses.iter().zip([
                    ("orders", ORDERS_ID, vec![0, 2]),
                    ("payments", PAYMENTS_ID, vec![1]),
                ]) {
                    if v >= 13 {
                        assert_eq!(t.topic_id.as_bytes(), &id, "{ctx}");
                    } else {
                        assert_eq!(text(&t.name), name, "{ctx}");
                    }
                    let got: Vec<_> = t
                        .partition_responses
                        .iter()
                        .map(|p| (p.index, p.error_code, p.base_offset))
                        .collect();
                    let want: Vec<_> = parts.iter().map(|p| (*p, TOPIC, -1)).collect();
                    assert_eq!(got, want, "{ctx}");
                }
            }
            ApiKey::CreateTopics => {
                let (r, code): (CreateTopicsResponse, _) = denied(policy, frame);
                assert_eq!(code, TOPIC);
                let got: Vec<_> = r
                    .topics
                    .iter()
                    .map(|t| (text(&t.name).to_owned(), t.error_code))
                    .collect();
                assert_eq!(
                    got,
                    [("orders".into(), TOPIC), ("payments".into(), TOPIC)],
                    "{ctx}"
                );
                if v >= 1 {
                    assert!(r.topics[0].error_message.is_some());
                }
            }
            ApiKey::DeleteTopics => {
                let (r, code): (DeleteTopicsResponse, _) = denied(policy, frame);
                assert_eq!(code, TOPIC);
                assert_eq!(r.responses.len(), 2);
                assert_eq!(
                    r.responses[0].name.as_ref().map(|n| text(n)),
                    Some("orders")
                );
                assert!(r.responses.iter().all(|t| t.error_code == TOPIC));
                if v >= 6 {
                    assert_eq!(r.responses[0].topic_id.as_bytes(), &ORDERS_ID);
                    assert_eq!(r.responses[1].name, None, "{ctx}: named by id only");
                    assert_eq!(r.responses[1].topic_id.as_bytes(), &PAYMENTS_ID);
                } else {
                    assert_eq!(
                        r.responses[1].name.as_ref().map(|n| text(n)),
                        Some("payments")
                    );
                }
            }
            ApiKey::CreatePartitions => {
                let (r, code): (CreatePartitionsResponse, _) = denied(policy, frame);
                assert_eq!(code, TOPIC);
                let got: Vec<_> = r
                    .results
                    .iter()
                    .map(|t| (text(&t.name), t.error_code))
                    .collect();
                assert_eq!(got, [("orders", TOPIC), ("payments", TOPIC)], "{ctx}");
            }
            ApiKey::DeleteRecords => {
                let (r, code): (DeleteRecordsResponse, _) = denied(policy, frame);
                assert_eq!(code, TOPIC);
                let got: Vec<_> = r
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| {
                            (
                                text(&t.name),
                                p.partition_index,
                                p.error_code,
                                p.low_watermark,
                            )
                        })
                    })
                    .collect();
                assert_eq!(
                    got,
                    [
                        ("orders", 0, TOPIC, -1),
                        ("orders", 2, TOPIC, -1),
                        ("payments", 1, TOPIC, -1)
                    ],
                    "{ctx}"
                );
            }
            ApiKey::CreateAcls => {
                let (r, code): (CreateAclsResponse, _) = denied(policy, frame);
                assert_eq!(code, CLUSTER);
                let got: Vec<_> = r.results.iter().map(|a| a.error_code).collect();
                assert_eq!(got, [CLUSTER, CLUSTER], "{ctx}: one result per creation");
            }
            ApiKey::DeleteAcls => {
                let (r, code): (DeleteAclsResponse, _) = denied(policy, frame);
                assert_eq!(code, CLUSTER);
                let got: Vec<_> = r
                    .filter_results
                    .iter()
                    .map(|a| (a.error_code, a.matching_acls.len()))
                    .collect();
                assert_eq!(
                    got,
                    [(CLUSTER, 0), (CLUSTER, 0)],
                    "{ctx}: one result per filter"
                );
            }
            ApiKey::AlterConfigs => {
                let (r, code): (AlterConfigsResponse, _) = denied(policy, frame);
                assert_eq!(code, TOPIC);
                let got: Vec<_> = r
                    .responses
                    .iter()
                    .map(|c| (c.resource_type, text(&c.resource_name), c.error_code))
                    .collect();
                assert_eq!(got, [(2, "orders", TOPIC), (4, "1", CLUSTER)], "{ctx}");
            }
            ApiKey::IncrementalAlterConfigs => {
                let (r, code): (IncrementalAlterConfigsResponse, _) = denied(policy, frame);
                assert_eq!(code, TOPIC);
                let got: Vec<_> = r
                    .responses
                    .iter()
                    .map(|c| (c.resource_type, text(&c.resource_name), c.error_code))
                    .collect();
                assert_eq!(
                    got,
                    [(2, "orders", TOPIC), (4, "1", CLUSTER), (32, "g1", GROUP)],
                    "{ctx}"
                );
            }
            ApiKey::AlterClientQuotas => {
                let (r, code): (AlterClientQuotasResponse, _) = denied(policy, frame);
                assert_eq!(code, CLUSTER);
                assert_eq!(r.entries.len(), 1);
                assert_eq!(r.entries[0].error_code, CLUSTER);
                let entity: Vec<_> = r.entries[0]
                    .entity
                    .iter()
                    .map(|e| (text(&e.entity_type), e.entity_name.as_ref().map(text)))
                    .collect();
                assert_eq!(
                    entity,
                    [("user", Some("alice")), ("client-id", None)],
                    "{ctx}"
                );
            }
            ApiKey::AlterUserScramCredentials => {
                let (r, code): (AlterUserScramCredentialsResponse, _) = denied(policy, frame);
                assert_eq!(code, CLUSTER);
                let got: Vec<_> = r
                    .results
                    .iter()
                    .map(|u| (text(&u.user), u.error_code))
                    .collect();
                assert_eq!(
                    got,
                    [("alice", CLUSTER), ("bob", CLUSTER)],
                    "{ctx}: one per user"
                );
            }
            ApiKey::AlterPartitionReassignments => {
                let (r, code): (AlterPartitionReassignmentsResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (CLUSTER, CLUSTER));
                let got: Vec<_> = r
                    .responses
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(|p| (text(&t.name), p.partition_index, p.error_code))
                    })
                    .collect();
                assert_eq!(
                    got,
                    [("orders", 0, CLUSTER), ("orders", 2, CLUSTER)],
                    "{ctx}"
                );
            }
            ApiKey::ElectLeaders => {
                let (r, code): (ElectLeadersResponse, _) = denied(policy, frame);
                assert_eq!(code, CLUSTER);
                assert_eq!(r.error_code, if v >= 1 { CLUSTER } else { 0 }, "{ctx}");
                let got: Vec<_> = r
                    .replica_election_results
                    .iter()
                    .flat_map(|t| {
                        t.partition_result
                            .iter()
                            .map(|p| (text(&t.topic), p.partition_id, p.error_code))
                    })
                    .collect();
                assert_eq!(
                    got,
                    [
                        ("orders", 0, CLUSTER),
                        ("orders", 2, CLUSTER),
                        ("payments", 1, CLUSTER)
                    ],
                    "{ctx}"
                );
            }
            ApiKey::UpdateFeatures => {
                let (r, code): (UpdateFeaturesResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (CLUSTER, CLUSTER));
                let got: Vec<_> = r
                    .results
                    .iter()
                    .map(|f| (text(&f.feature), f.error_code))
                    .collect();
                if v <= 1 {
                    assert_eq!(got, [("metadata.version", CLUSTER)], "{ctx}");
                } else {
                    assert!(got.is_empty(), "{ctx}");
                }
            }
            ApiKey::AlterReplicaLogDirs => {
                let (r, code): (AlterReplicaLogDirsResponse, _) = denied(policy, frame);
                assert_eq!(code, CLUSTER);
                let got: Vec<_> = r
                    .results
                    .iter()
                    .map(|t| {
                        let parts: Vec<_> = t
                            .partitions
                            .iter()
                            .map(|p| (p.partition_index, p.error_code))
                            .collect();
                        (text(&t.topic_name), parts)
                    })
                    .collect();
                assert_eq!(
                    got,
                    [
                        ("orders", vec![(0, CLUSTER), (2, CLUSTER)]),
                        ("payments", vec![(1, CLUSTER)])
                    ],
                    "{ctx}: one result per topic"
                );
            }
            ApiKey::UnregisterBroker => {
                let (r, code): (UnregisterBrokerResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (CLUSTER, CLUSTER));
            }
            ApiKey::InitProducerId => {
                let (r, code): (InitProducerIdResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (TXN, TXN), "{ctx}");
                assert_eq!((r.producer_id.0, r.producer_epoch), (-1, -1));
            }
            ApiKey::AddPartitionsToTxn => {
                let (r, code): (AddPartitionsToTxnResponse, _) = denied(policy, frame);
                if v >= 4 {
                    assert_eq!((code, r.error_code), (CLUSTER, CLUSTER), "{ctx}");
                    assert!(r.results_by_transaction.is_empty());
                } else {
                    assert_eq!((code, r.error_code), (TXN, 0), "{ctx}");
                    let got: Vec<_> = r
                        .results_by_topic_v3_and_below
                        .iter()
                        .flat_map(|t| {
                            t.results_by_partition
                                .iter()
                                .map(|p| (text(&t.name), p.partition_index, p.partition_error_code))
                        })
                        .collect();
                    assert_eq!(
                        got,
                        [("orders", 0, TXN), ("orders", 2, TXN), ("payments", 1, TXN)]
                    );
                }
            }
            ApiKey::AddOffsetsToTxn => {
                let (r, code): (AddOffsetsToTxnResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (TXN, TXN));
            }
            ApiKey::EndTxn => {
                let (r, code): (EndTxnResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (TXN, TXN));
            }
            ApiKey::TxnOffsetCommit => {
                let (r, code): (TxnOffsetCommitResponse, _) = denied(policy, frame);
                assert_eq!(code, TXN);
                let got: Vec<_> = r
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(|p| (text(&t.name), p.partition_index, p.error_code))
                    })
                    .collect();
                assert_eq!(got, [("orders", 0, TXN), ("orders", 2, TXN)], "{ctx}");
            }
            ApiKey::DeleteGroups => {
                let (r, code): (DeleteGroupsResponse, _) = denied(policy, frame);
                assert_eq!(code, GROUP);
                let got: Vec<_> = r
                    .results
                    .iter()
                    .map(|g| (text(&g.group_id), g.error_code))
                    .collect();
                assert_eq!(got, [("g1", GROUP), ("g2", GROUP)], "{ctx}");
            }
            ApiKey::OffsetDelete => {
                let (r, code): (OffsetDeleteResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (GROUP, GROUP));
                let got: Vec<_> = r
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(|p| (text(&t.name), p.partition_index, p.error_code))
                    })
                    .collect();
                assert_eq!(got, [("orders", 0, GROUP), ("orders", 2, GROUP)], "{ctx}");
            }
            ApiKey::CreateDelegationToken => {
                let (r, code): (CreateDelegationTokenResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (65, 65));
            }
            ApiKey::RenewDelegationToken => {
                let (r, code): (RenewDelegationTokenResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (65, 65));
            }
            ApiKey::ExpireDelegationToken => {
                let (r, code): (ExpireDelegationTokenResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (65, 65));
            }
            ApiKey::AlterShareGroupOffsets => {
                let (r, code): (AlterShareGroupOffsetsResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (GROUP, GROUP));
                assert!(r.error_message.is_some());
            }
            ApiKey::DeleteShareGroupOffsets => {
                let (r, code): (DeleteShareGroupOffsetsResponse, _) = denied(policy, frame);
                assert_eq!((code, r.error_code), (GROUP, GROUP));
            }
            other => panic!("no check for {other:?}"),
        }
    }

    #[test]
    fn every_denied_api_gets_its_own_error_response_at_every_version() {
        let mut checked = 0;
        for key in natively_denied() {
            let range = versions(key);
            // The lowest and highest versions at least; in fact all of them.
            assert!(range.start() <= range.end(), "{key:?}");
            for v in range {
                let frame = sample(key, v);
                check_denial(Policy::ReadOnly, key, v, &frame);
                match rule(key).access {
                    Access::Admin => check_denial(Policy::NoAdmin, key, v, &frame),
                    Access::Write => assert_eq!(
                        decide(Policy::NoAdmin, &header(&frame), &frame),
                        Decision::Allow,
                        "{key:?} v{v}"
                    ),
                    other => panic!("{key:?} is {other:?} with a native denial"),
                }
                assert_eq!(
                    decide(Policy::Full, &header(&frame), &frame),
                    Decision::Allow
                );
                checked += 1;
            }
        }
        assert!(checked > 60, "{checked} samples");
    }

    #[test]
    fn versions_covered_are_the_request_response_intersection() {
        // Spot checks against kafka-protocol 0.18 (Kafka 4.1): what the report states.
        let v = |key| {
            let r = rule(key).answer.unwrap();
            (r.min, r.max)
        };
        assert_eq!(v(ApiKey::Produce), (0, 13));
        assert_eq!(v(ApiKey::CreateTopics), (2, 7));
        assert_eq!(v(ApiKey::DeleteTopics), (1, 6));
        assert_eq!(v(ApiKey::InitProducerId), (0, 5), "v6 is unstable");
        assert_eq!(v(ApiKey::OffsetDelete), (0, 0));
        for key in natively_denied() {
            let r = rule(key).answer.unwrap();
            assert!(r.min <= r.max, "{key:?}");
        }
    }

    #[test]
    fn an_idempotent_producer_is_denied_under_read_only_only() {
        for v in versions(ApiKey::InitProducerId) {
            let frame = init_producer_id_request(v, None);
            let (r, code): (InitProducerIdResponse, _) = denied(Policy::ReadOnly, &frame);
            assert_eq!(
                (code, r.error_code),
                (CLUSTER_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED)
            );
            assert_eq!(
                decide(Policy::NoAdmin, &header(&frame), &frame),
                Decision::Allow
            );
            assert_eq!(
                audit_resources(&header(&frame), &frame).unwrap(),
                ["idempotent producer"]
            );
        }
    }

    #[test]
    fn elect_leaders_for_all_partitions_is_denied_at_the_top_level_or_closed_in_v0() {
        for v in versions(ApiKey::ElectLeaders) {
            let frame = elect_leaders_request(v, false);
            if v == 0 {
                // No top-level error code in v0: the answer would read as a success.
                assert!(matches!(
                    decide(Policy::NoAdmin, &header(&frame), &frame),
                    Decision::Close { .. }
                ));
            } else {
                let (r, code): (ElectLeadersResponse, _) = denied(Policy::NoAdmin, &frame);
                assert_eq!(
                    (code, r.error_code),
                    (CLUSTER_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED)
                );
                assert!(r.replica_election_results.is_empty());
            }
            let kind = if v >= 1 { "unclean" } else { "preferred" };
            assert_eq!(
                audit_resources(&header(&frame), &frame).unwrap(),
                [format!("all partitions ({kind})")]
            );
        }
    }

    #[test]
    fn a_denied_produce_with_acks_0_closes_the_connection() {
        for v in versions(ApiKey::Produce) {
            let frame = if v < 3 {
                produce_v0_v2_request(v, 0)
            } else {
                produce_request(v, 0)
            };
            assert!(
                matches!(
                    decide(Policy::ReadOnly, &header(&frame), &frame),
                    Decision::Close { .. }
                ),
                "v{v}"
            );
            assert_eq!(
                decide(Policy::NoAdmin, &header(&frame), &frame),
                Decision::Allow
            );
            assert_eq!(
                decide(Policy::Full, &header(&frame), &frame),
                Decision::Allow
            );
        }
    }

    /// A frame of only a request header (v1), as the table tests need no body.
    fn bare_frame(api_key: i16, version: i16) -> Bytes {
        let mut frame = BytesMut::new();
        frame.put_i32(10);
        frame.put_i16(api_key);
        frame.put_i16(version);
        frame.put_i32(CID);
        frame.put_i16(-1);
        frame.freeze()
    }

    #[test]
    fn unknown_api_keys_close_under_a_restricted_policy() {
        // 4-7 (LeaderAndIsr, StopReplica, UpdateMetadata, ControlledShutdown) left Kafka 4 and
        // kafka-protocol with it: inter-broker APIs, closed like any key the proxy does not know.
        for api_key in [9999, 4, 5, 6, 7, 88, 89, 93, -1, i16::MAX, i16::MIN] {
            let frame = bare_frame(api_key, 0);
            let h = header(&frame);
            assert_eq!(decide(Policy::Full, &h, &frame), Decision::Allow);
            for policy in [Policy::ReadOnly, Policy::NoAdmin] {
                assert!(
                    matches!(decide(policy, &h, &frame), Decision::Close { .. }),
                    "{api_key} under {policy}"
                );
            }
            assert!(!audited(api_key));
            assert!(audit_resources(&h, &frame).unwrap().is_empty());
            assert!(audit_outcome(api_key, 0, &[0, 0, 0, 1]).unwrap().is_empty());
        }
    }

    #[test]
    fn every_api_key_is_classified() {
        // `rule` has no wildcard arm: this is the run-time half, over the crate's list.
        let keys: Vec<ApiKey> = ApiKey::iter().collect();
        assert_eq!(
            keys.len(),
            87,
            "kafka-protocol's ApiKey list changed: classify the new APIs"
        );
        for key in keys {
            let r = rule(key);
            match r.access {
                Access::Read | Access::Internal => assert!(r.answer.is_none(), "{key:?}"),
                Access::Write | Access::Admin => {
                    let v = r
                        .answer
                        .unwrap_or_else(|| panic!("{key:?} denied without an answer"));
                    assert!(v.min <= v.max, "{key:?}");
                }
            }
            // Every API answered natively has a walker, and only those.
            assert_eq!(r.answer.is_some(), requests::parsed(key), "{key:?}");
            assert_eq!(audited(key as i16), r.access == Access::Admin, "{key:?}");
        }
    }

    #[test]
    fn the_table_decides_per_policy_without_reading_allowed_requests() {
        for key in ApiKey::iter() {
            let r = rule(key);
            for v in [0, 3, 9] {
                // Only a header: an allowed request is never read, so it cannot fail to parse.
                let frame = bare_frame(key as i16, v);
                let h = header(&frame);
                for policy in Policy::ALL {
                    let got = decide(policy, &h, &frame);
                    if policy.allows(r.access) {
                        assert_eq!(got, Decision::Allow, "{key:?} under {policy}");
                    } else {
                        assert!(
                            matches!(got, Decision::Close { .. }),
                            "{key:?} under {policy}: {got:?}"
                        );
                    }
                }
            }
        }
        // What the policies mean, spelled out for the APIs clients use most.
        let allowed = |policy: Policy, key: ApiKey| policy.allows(rule(key).access);
        for key in [
            ApiKey::Fetch,
            ApiKey::Metadata,
            ApiKey::OffsetCommit,
            ApiKey::JoinGroup,
            ApiKey::ConsumerGroupHeartbeat,
            ApiKey::DescribeConfigs,
            ApiKey::ShareFetch,
        ] {
            assert!(allowed(Policy::ReadOnly, key), "{key:?}");
        }
        for key in [
            ApiKey::Produce,
            ApiKey::InitProducerId,
            ApiKey::EndTxn,
            ApiKey::TxnOffsetCommit,
        ] {
            assert!(!allowed(Policy::ReadOnly, key), "{key:?}");
            assert!(allowed(Policy::NoAdmin, key), "{key:?}");
        }
        for key in [
            ApiKey::CreateTopics,
            ApiKey::DeleteGroups,
            ApiKey::OffsetDelete,
            ApiKey::AlterConfigs,
            ApiKey::CreateAcls,
        ] {
            assert!(!allowed(Policy::NoAdmin, key), "{key:?}");
            assert!(allowed(Policy::Full, key), "{key:?}");
        }
        for key in [
            ApiKey::Vote,
            ApiKey::WriteTxnMarkers,
            ApiKey::BrokerHeartbeat,
            ApiKey::Envelope,
        ] {
            assert_eq!(rule(key).access, Access::Internal);
        }
    }

    #[test]
    fn truncated_or_corrupted_requests_close_and_never_panic() {
        for (key, v, frame) in samples() {
            let h = header(&frame);
            for policy in [Policy::ReadOnly, Policy::NoAdmin] {
                if policy.allows(rule(key).access) {
                    continue;
                }
                // Cut short, with the length prefix fixed up (as the frame reader delivers it)
                // or left as it was.
                for cut in 12..frame.len() {
                    let mut short = BytesMut::from(&frame[..cut]);
                    let got = decide(policy, &h, &short);
                    assert!(
                        matches!(got, Decision::Close { .. }),
                        "{key:?} v{v} cut {cut}: {got:?}"
                    );
                    short[..4].copy_from_slice(&((cut - 4) as i32).to_be_bytes());
                    let got = decide(policy, &h, &short);
                    assert!(
                        matches!(got, Decision::Close { .. }),
                        "{key:?} v{v} cut {cut}: {got:?}"
                    );
                    assert!(
                        audit_resources(&h, &short).is_err(),
                        "{key:?} v{v} cut {cut}"
                    );
                }
                // A byte more than the message.
                let mut long = BytesMut::from(&frame[..]);
                long.put_u8(0);
                let len = (long.len() - 4) as i32;
                long[..4].copy_from_slice(&len.to_be_bytes());
                assert!(matches!(decide(policy, &h, &long), Decision::Close { .. }));
                // Every byte of the body replaced: anything may come out but a panic, and a
                // denial must still be a well-formed frame with the client's id.
                for at in 12..frame.len() {
                    for byte in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                        let mut bad = BytesMut::from(&frame[..]);
                        bad[at] = byte;
                        let _ = audit_resources(&h, &bad);
                        if let Decision::Deny { response, .. } = decide(policy, &h, &bad) {
                            let len = i32::from_be_bytes(response[..4].try_into().unwrap());
                            assert_eq!(len as usize, response.len() - 4);
                            assert_eq!(&response[4..8], &CID.to_be_bytes());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn requests_at_versions_the_proxy_cannot_answer_close() {
        for key in natively_denied() {
            let range = rule(key).answer.unwrap();
            for v in [range.min - 1, range.max + 1] {
                if v < 0 {
                    continue;
                }
                let frame = bare_frame(key as i16, v);
                let h = header(&frame);
                assert!(
                    matches!(decide(Policy::ReadOnly, &h, &frame), Decision::Close { .. }),
                    "{key:?} v{v}"
                );
                assert!(
                    matches!(
                        audit_resources(&h, &frame),
                        Err(PolicyError::UnsupportedVersion { .. })
                    ),
                    "{key:?} v{v}"
                );
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Audit

    fn resources(key: ApiKey, v: i16) -> Vec<String> {
        let frame = sample(key, v);
        audit_resources(&header(&frame), &frame).unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"))
    }

    #[test]
    fn audit_resources_name_what_each_request_changes() {
        let max = |key| *versions(key).end();
        let min = |key| *versions(key).start();
        let orders_payments = ["orders-0", "orders-2", "payments-1"];
        for v in [min(ApiKey::Produce), 2, 3, max(ApiKey::Produce) - 1] {
            let want: Vec<&str> = if v >= 3 {
                std::iter::once("transactional id txn-1")
                    .chain(orders_payments)
                    .collect()
            } else {
                orders_payments.to_vec()
            };
            assert_eq!(resources(ApiKey::Produce, v), want, "Produce v{v}");
        }
        assert_eq!(
            resources(ApiKey::Produce, 13),
            [
                "transactional id txn-1",
                "01010101-0101-0101-0101-010101010101-0",
                "01010101-0101-0101-0101-010101010101-2",
                "02020202-0202-0202-0202-020202020202-1"
            ]
        );
        let cases: Vec<(ApiKey, Vec<&str>)> = vec![
            (ApiKey::CreateTopics, vec!["orders", "payments"]),
            (ApiKey::CreatePartitions, vec!["orders to 8 partitions", "payments to 4 partitions"]),
            (
                ApiKey::DeleteRecords,
                vec!["orders-0 before offset 100", "orders-2 before offset 200", "payments-1 before offset 5"],
            ),
            (
                ApiKey::CreateAcls,
                vec![
                    "allow User:bob read topic:orders (literal) from host *",
                    "allow User:eve write topic:payments (literal) from host *",
                ],
            ),
            (
                ApiKey::DeleteAcls,
                vec![
                    "matching allow User:bob read topic:orders (literal) from host *",
                    "matching any *any* any any:*any* (any) from host *any*",
                ],
            ),
            (
                ApiKey::AlterConfigs,
                vec!["topic:orders: set retention.ms, set cleanup.policy", "broker:1: set log.retention.hours"],
            ),
            (
                ApiKey::IncrementalAlterConfigs,
                vec![
                    "topic:orders: set retention.ms, delete cleanup.policy",
                    "broker:1: set log.cleaner.threads",
                    "group:g1: set consumer.session.timeout.ms",
                ],
            ),
            (
                ApiKey::AlterClientQuotas,
                vec!["user=alice,client-id=<default>: producer_byte_rate=1048576, remove consumer_byte_rate"],
            ),
            (
                ApiKey::AlterUserScramCredentials,
                vec!["delete alice SCRAM-SHA-256", "upsert bob SCRAM-SHA-512", "upsert alice SCRAM-SHA-512"],
            ),
            (ApiKey::AlterPartitionReassignments, vec!["orders-0 to replicas [1, 2, 3]", "orders-2 cancel"]),
            (ApiKey::UpdateFeatures, vec!["metadata.version to level 20"]),
            (ApiKey::AlterReplicaLogDirs, vec!["orders-0 to /data/1", "orders-2 to /data/2", "payments-1 to /data/2"]),
            (ApiKey::UnregisterBroker, vec!["broker 3"]),
            (ApiKey::InitProducerId, vec!["transactional id txn-1"]),
            (ApiKey::AddPartitionsToTxn, vec!["txn-1: orders-0", "txn-1: orders-2", "txn-1: payments-1"]),
            (ApiKey::AddOffsetsToTxn, vec!["txn-1: group g1"]),
            (ApiKey::EndTxn, vec!["txn-1: commit"]),
            (ApiKey::TxnOffsetCommit, vec!["txn-1 group g1: orders-0", "txn-1 group g1: orders-2"]),
            (ApiKey::DeleteGroups, vec!["g1", "g2"]),
            (ApiKey::OffsetDelete, vec!["g1: orders-0", "g1: orders-2"]),
            (ApiKey::RenewDelegationToken, vec![]),
            (ApiKey::ExpireDelegationToken, vec![]),
            (ApiKey::AlterShareGroupOffsets, vec!["sg1: orders-0 to offset 10"]),
            (ApiKey::DeleteShareGroupOffsets, vec!["sg1: orders"]),
        ];
        for (key, want) in cases {
            for v in versions(key) {
                assert_eq!(resources(key, v), want, "{key:?} v{v}");
            }
        }
        for v in versions(ApiKey::DeleteTopics) {
            let want = if v >= 6 {
                vec!["orders", "02020202-0202-0202-0202-020202020202"]
            } else {
                vec!["orders", "payments"]
            };
            assert_eq!(
                resources(ApiKey::DeleteTopics, v),
                want,
                "DeleteTopics v{v}"
            );
        }
        for v in versions(ApiKey::ElectLeaders) {
            let kind = if v >= 1 { "unclean" } else { "preferred" };
            let want: Vec<String> = orders_payments
                .iter()
                .map(|p| format!("{p} ({kind})"))
                .collect();
            assert_eq!(
                resources(ApiKey::ElectLeaders, v),
                want,
                "ElectLeaders v{v}"
            );
        }
        for v in versions(ApiKey::CreateDelegationToken) {
            let owner = if v >= 3 {
                "owner User:alice"
            } else {
                "owner: the requester"
            };
            assert_eq!(
                resources(ApiKey::CreateDelegationToken, v),
                [owner, "renewer User:bob"]
            );
        }
    }

    #[test]
    fn audit_entries_never_hold_secrets_or_config_values() {
        for (key, v, frame) in samples() {
            for entry in audit_resources(&header(&frame), &frame).unwrap() {
                assert!(!entry.contains("s3cr3t"), "{key:?} v{v}: {entry}");
            }
        }
    }

    #[test]
    fn audit_lists_are_capped() {
        use create_topics_request::*;
        let topics = (0..120)
            .map(|i| CreatableTopic::default().with_name(tn(&format!("t{i}"))))
            .collect();
        let frame = request_frame(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default().with_topics(topics),
        );
        let got = audit_resources(&header(&frame), &frame).unwrap();
        assert_eq!(got.len(), requests::AUDIT_CAP + 1);
        assert_eq!(got[0], "t0");
        assert_eq!(got[requests::AUDIT_CAP], "… and 70 more");

        use create_topics_response::*;
        let results = (0..120)
            .map(|i| {
                CreatableTopicResult::default()
                    .with_name(tn(&format!("t{i}")))
                    .with_error_code(if i % 10 == 7 { 36 } else { 0 })
            })
            .collect();
        let payload = response_payload(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsResponse::default().with_topics(results),
        );
        let got = audit_outcome(19, 7, &payload).unwrap();
        assert_eq!(got.len(), requests::AUDIT_CAP + 1);
        assert_eq!(got[7], ("t7".to_owned(), 36));
        assert_eq!(
            got[requests::AUDIT_CAP],
            ("… and 70 more, 7 failed".to_owned(), 36)
        );
    }

    #[test]
    fn audit_names_are_escaped_and_bounded() {
        use create_topics_request::*;
        let long = "x".repeat(1000);
        let topics = vec![
            CreatableTopic::default().with_name(tn("evil\nname\u{1b}[31m")),
            CreatableTopic::default().with_name(tn(&long)),
        ];
        let frame = request_frame(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default().with_topics(topics),
        );
        let got = audit_resources(&header(&frame), &frame).unwrap();
        assert_eq!(got[0], "evil\\nname\\u{1b}[31m");
        assert_eq!(got[1].chars().count(), 257);
        assert!(got[1].ends_with('…'));
    }

    /// A broker's answer to the sample of an audited API at `v` (some resources failing), and
    /// the (resource, error code) pairs the audit must report.
    fn outcome_sample(key: ApiKey, v: i16) -> (Bytes, Vec<(&'static str, i16)>) {
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
                let r =
                    AlterClientQuotasResponse::default().with_entries(vec![EntryData::default()
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

    fn audited_keys() -> Vec<ApiKey> {
        ApiKey::iter().filter(|k| audited(*k as i16)).collect()
    }

    #[test]
    fn audit_outcome_reports_the_brokers_error_codes() {
        assert_eq!(audited_keys().len(), 22);
        for key in audited_keys() {
            for v in versions(key) {
                let (payload, want) = outcome_sample(key, v);
                let got = audit_outcome(key as i16, v, &payload)
                    .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
                let want: Vec<(String, i16)> =
                    want.into_iter().map(|(n, c)| (n.to_owned(), c)).collect();
                assert_eq!(got, want, "{key:?} v{v}");
                // The denial the proxy makes itself reads back too, with its codes.
                let frame = sample(key, v);
                let Decision::Deny {
                    response,
                    error_code,
                } = decide(Policy::NoAdmin, &header(&frame), &frame)
                else {
                    panic!("{key:?} v{v} not denied");
                };
                let got = audit_outcome(key as i16, v, &response[4..]).unwrap();
                assert!(
                    got.iter().any(|(_, c)| *c == error_code),
                    "{key:?} v{v}: {got:?}"
                );
            }
        }
        // Not audited: nothing read.
        assert!(audit_outcome(0, 9, b"anything").unwrap().is_empty());
        assert!(audit_outcome(1, 12, b"anything").unwrap().is_empty());
    }

    #[test]
    fn truncated_responses_are_errors_not_panics() {
        for key in audited_keys() {
            for v in versions(key) {
                let (payload, _) = outcome_sample(key, v);
                for cut in 0..payload.len() {
                    assert!(
                        audit_outcome(key as i16, v, &payload[..cut]).is_err(),
                        "{key:?} v{v} cut {cut}"
                    );
                }
                let mut long = payload.to_vec();
                long.push(0);
                assert!(
                    audit_outcome(key as i16, v, &long).is_err(),
                    "{key:?} v{v}: trailing byte"
                );
                for at in 0..payload.len() {
                    for byte in [0x00, 0x7f, 0x80, 0xff] {
                        let mut bad = payload.to_vec();
                        bad[at] = byte;
                        let _ = audit_outcome(key as i16, v, &bad);
                    }
                }
            }
        }
    }

    #[test]
    fn policies_parse_from_their_configured_names() {
        #[derive(serde::Deserialize)]
        struct Identity {
            #[serde(default)]
            policy: Policy,
        }
        for (text, want) in [
            ("policy = \"read-only\"", Policy::ReadOnly),
            ("policy = \"no-admin\"", Policy::NoAdmin),
            ("policy = \"full\"", Policy::Full),
            ("", Policy::Full),
        ] {
            let got: Identity = toml::from_str(text).unwrap();
            assert_eq!(got.policy, want, "{text}");
        }
        assert!(toml::from_str::<Identity>("policy = \"readonly\"").is_err());
        for p in Policy::ALL {
            assert_eq!(p.name().parse::<Policy>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert!("admin".parse::<Policy>().is_err());
    }

    /// Writes the seed corpus of the `policy` fuzz target (fuzz/fuzz_targets/policy.rs, whose
    /// input format this follows) into `$POLICY_SEEDS_DIR`:
    /// `POLICY_SEEDS_DIR=fuzz/corpus/policy cargo test --lib write_fuzz_seeds`; without the
    /// variable the seeds go to target/policy-seeds, and the test checks they were all written.
    #[test]
    fn write_fuzz_seeds() {
        let dir = std::env::var_os("POLICY_SEEDS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/policy-seeds")
            });
        std::fs::create_dir_all(&dir).unwrap();
        let keys = natively_denied();
        let index = |key| keys.iter().position(|k| *k == key).unwrap() as u8;
        let write = |name: String, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
        for (key, v, frame) in samples() {
            let policy = if rule(key).access == Access::Write {
                0
            } else {
                1
            };
            let mut seed = vec![policy, index(key), v as u8];
            seed.extend_from_slice(&frame[8..]);
            let null = match &sample(key, v) {
                f if *f == frame => "",
                _ => "-null",
            };
            write(format!("request-{key:?}-v{v}{null}"), seed);
        }
        for key in audited_keys() {
            for v in versions(key) {
                let (payload, _) = outcome_sample(key, v);
                let mut seed = vec![3, index(key), v as u8];
                seed.extend_from_slice(&payload);
                write(format!("response-{key:?}-v{v}"), seed);
            }
        }
        // Produce with acks=0, and a truncated request.
        let frame = produce_request(9, 0);
        let mut seed = vec![0, index(ApiKey::Produce), 9];
        seed.extend_from_slice(&frame[8..]);
        write("request-Produce-v9-acks0".into(), seed.clone());
        seed.truncate(seed.len() / 2);
        write("request-Produce-v9-truncated".into(), seed);
        let written = std::fs::read_dir(&dir).unwrap().count();
        assert!(
            written >= samples().len() + 2,
            "{written} seeds in {}",
            dir.display()
        );
    }
}
