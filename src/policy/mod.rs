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
//! ([`Access`]), how a denial is answered ([`Denial`]), whether it is audited and which versions
//! the proxy reads. A denied request gets the error response of its own API at the version it
//! was sent, with the client's correlation id (topic, group, cluster, transactional-id or
//! delegation-token authorization failed, per resource where the response has resources),
//! so that clients report an authorization failure instead of reconnecting in a loop. A
//! request no response can carry the error for is answered by closing the connection: Produce
//! with acks=0, inter-broker and controller APIs, API keys the proxy does not know, versions
//! the proxy cannot encode, and requests that do not parse.
//!
//! Requests are read only when they are denied or audited, through the bounds-checked walkers
//! of [`crate::kafka::requests`]; allowed requests under a policy cost one table lookup, bar
//! Metadata under a policy that may not create topics, which is walked to its
//! `allow_auto_topic_creation` flag (cleared where set, in place) or, at v0-v3 naming topics,
//! denied: Metadata is the one request every policy allows that can create topics. Denial
//! responses are kafka-protocol messages the proxy builds itself and encodes with
//! [`crate::kafka::codec::encode_frame`].
//!
//! The audit ([`audited`], [`audit_resources`], [`audit_outcome`]) names what a
//! cluster-changing request changes and what the broker answered, for the connection's
//! structured log line (which adds time, identity, principal, client address, API, version).

use std::fmt;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::kafka::codec::CodecError;
use crate::kafka::frame::RequestHeader;
use crate::kafka::requests::{self, Request};
use crate::kafka::wire::Walker;

mod audit;
mod deny;
mod produce;
mod table;

pub use audit::{audit_outcome, audit_resources, audited};
pub use table::{
    rule, Access, Denial, Rule, CLUSTER_AUTHORIZATION_FAILED,
    DELEGATION_TOKEN_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
};

use deny::Answer;

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

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Allow,
    /// Forward it with the byte at offset `clear` of the frame set to 0: the
    /// `allow_auto_topic_creation` flag of a Metadata request (v4+) under a policy that may not
    /// create topics. Everything else of the frame passes as the client sent it.
    AllowWithoutAutoCreate {
        /// Offset of the flag in the frame, length prefix included.
        clear: usize,
    },
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

/// Heap bytes, per byte of a denied request frame of API `key`, that parsing it and building
/// its answer may use at their peak (the parsed request's entries, kafka-protocol's response
/// messages and the encoded frame together). Every entry an answer repeats (a topic, a
/// partition, a group, an ACL) comes from at least one byte of the request, so the peak is
/// linear in the request's bytes; `tests/answer_bound.rs` measures each response shape at its
/// worst (empty compact names, bare int32 partition indexes: the most entries per byte) and
/// holds it to [`answer_bound`]. The factors are those peaks with half again for vectors that
/// double as they grow; APIs without a measured shape take the largest.
pub fn answer_factor(key: ApiKey) -> usize {
    match key {
        ApiKey::CreateTopics => 48,
        ApiKey::DeleteGroups => 192,
        // Not what a denied Produce is charged ([`answer_charge`]: its exact answer), kept
        // as the bound of its heap per request byte, which tests/answer_bound.rs checks.
        ApiKey::Produce => 128,
        ApiKey::CreateAcls | ApiKey::ElectLeaders => 64,
        ApiKey::AlterConfigs | ApiKey::IncrementalAlterConfigs => 64,
        ApiKey::DeleteRecords | ApiKey::OffsetDelete => 16,
        ApiKey::AddPartitionsToTxn | ApiKey::AlterReplicaLogDirs => 24,
        ApiKey::AlterClientQuotas => 144,
        // DeleteTopics v4-v5 (one-byte names, ~300x), and every shape not measured.
        _ => ANSWER_FACTOR_MAX,
    }
}

/// The largest [`answer_factor`].
pub const ANSWER_FACTOR_MAX: usize = 448;

/// Heap bytes a request's answer here may use whatever its size (the error message, the
/// response header, an answer that is its top-level error, ApiVersions answered by the proxy).
pub const ANSWER_BASE: usize = 4096;

/// The most heap that answering a request of API `api_key` and `frame_len` bytes here may
/// take, from parsing it to the encoded answer (which is at most this long). The connection
/// charges it to the budget *before* parsing ([`crate::budget::Budget::charge`]), so a huge
/// denied request waits for budget like a large frame instead of allocating gigabytes, and
/// closes its connection when the bound could never fit.
pub fn answer_bound(api_key: i16, frame_len: usize) -> usize {
    let factor = ApiKey::try_from(api_key).map_or(ANSWER_FACTOR_MAX, answer_factor);
    frame_len.saturating_mul(factor).saturating_add(ANSWER_BASE)
}

/// Whether [`decide`] would parse this request to answer it (it is denied and its API's
/// response can carry the denial at its version, or it is a Metadata v0-v3 naming topics under
/// a policy that may not create them): only then does the connection charge [`answer_bound`]
/// before deciding. Reads the header only.
pub fn answers(policy: Policy, header: &RequestHeader) -> bool {
    (guards_auto_creation(policy, header) && header.api_version <= 3)
        || matches!(precheck(policy, header), Ok(Some(_)))
}

/// True for a Metadata request under a policy that allows reading but not creating topics:
/// [`decide`] reads it for auto-creation (see [`Decision::AllowWithoutAutoCreate`]).
fn guards_auto_creation(policy: Policy, header: &RequestHeader) -> bool {
    header.api_key == ApiKey::Metadata as i16
        && policy.allows(rule(ApiKey::Metadata).access)
        && !policy.allows(Access::Admin)
}

/// What [`decide`] knows from the header alone: allowed (`None`), to be parsed and answered
/// with the API and its denial's error code, or closed.
fn precheck(policy: Policy, header: &RequestHeader) -> Result<Option<(ApiKey, i16)>, &'static str> {
    if policy == Policy::Full {
        return Ok(None);
    }
    let Ok(key) = ApiKey::try_from(header.api_key) else {
        return Err("api key unknown to the proxy, which cannot tell what it does");
    };
    let rule = rule(key);
    if policy.allows(rule.access) {
        return Ok(None);
    }
    let Some(code) = rule.denial.error_code() else {
        return Err("the policy denies this API, whose responses cannot carry a denial");
    };
    let version = header.api_version;
    if !rule
        .answer
        .is_some_and(|v| (v.min..=v.max).contains(&version))
    {
        return Err("the policy denies this API, at a version the proxy cannot answer");
    }
    Ok(Some((key, code)))
}

/// Decides what happens to one request of a client acting under `policy`. `frame` is the
/// complete request frame, length prefix included, as the client sent it (with the client's
/// correlation id, which a denial response carries); `header` is its header as
/// [`crate::kafka::frame::request_header`] read it.
///
/// Under `full`, and for requests the policy allows, nothing is read beyond the header, except
/// Metadata under `read-only` and `no-admin` (see [`Decision::AllowWithoutAutoCreate`]).
pub fn decide(policy: Policy, header: &RequestHeader, frame: &[u8]) -> Decision {
    if guards_auto_creation(policy, header) {
        return metadata(policy, header, frame);
    }
    let (key, code) = match precheck(policy, header) {
        Ok(None) => return Decision::Allow,
        Ok(Some(answered)) => answered,
        Err(reason) => return Decision::Close { reason },
    };
    let version = header.api_version;
    if key == ApiKey::Produce {
        return produce_denial(policy, header, frame, code);
    }
    let Ok(request) = requests::request_body(frame, header.api_key, version)
        .and_then(|body| requests::parse(key, version, body))
    else {
        return Decision::Close {
            reason: "the policy denies this request, which does not parse",
        };
    };
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
        code,
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

const PRODUCE_UNREADABLE: Decision = Decision::Close {
    reason: "the policy denies this request, which does not parse",
};

/// A denied Produce: answered from its bytes ([`produce`]), unless acks=0 leaves no response
/// to carry the denial.
fn produce_denial(policy: Policy, header: &RequestHeader, frame: &[u8], code: i16) -> Decision {
    let version = header.api_version;
    let Ok(body) = requests::request_body(frame, header.api_key, version) else {
        return PRODUCE_UNREADABLE;
    };
    match Walker::new(body).produce_request_acks(version) {
        Ok(0) => Decision::Close {
            reason: "the policy denies this Produce, whose acks=0 leaves no response to carry it",
        },
        Ok(_) => match produce::answer(
            version,
            header.correlation_id,
            body,
            code,
            &deny::message(policy),
        ) {
            Ok(response) => Decision::Deny {
                response,
                error_code: code,
            },
            Err(_) => PRODUCE_UNREADABLE,
        },
        Err(_) => PRODUCE_UNREADABLE,
    }
}

/// The budget a denial answer here is charged before [`decide`] builds it: [`answer_bound`]
/// when that fits in `budget` bytes (it also covers the heap the denial's audit line takes to
/// list the request's resources, which the allocator may keep after it is freed); a Produce
/// whose bound does not fit is charged its answer's exact length instead (a walk of the
/// request that allocates nothing; the answer is then written into exactly that much:
/// `policy::produce`), so a read-only client's ordinary 1 MiB Produce is answered under a small
/// --max-buffered-bytes instead of closing its connection. Call only when [`answers`] is true.
pub fn answer_charge(policy: Policy, header: &RequestHeader, frame: &[u8], budget: usize) -> usize {
    let bound = answer_bound(header.api_key, frame.len());
    if bound <= budget {
        return bound;
    }
    if header.api_key == ApiKey::Produce as i16 {
        let version = header.api_version;
        return requests::request_body(frame, header.api_key, version)
            .and_then(|body| {
                let code = rule(ApiKey::Produce).denial.error_code().unwrap_or(0);
                produce::answer_len(version, body, code, &deny::message(policy))
            })
            // Unreadable: `decide` closes the connection without building anything.
            .unwrap_or(ANSWER_BASE);
    }
    bound
}

/// A Metadata request under a policy that may not create topics (`read-only`, `no-admin`):
/// on a cluster with `auto.create.topics.enable=true`, Metadata creates the topics it names
/// that do not exist, which would let such a policy create topics CreateTopics is denied.
/// The simplest answer that is correct whatever the cluster's setting and whatever topics
/// exist:
///
/// - v4+ with `allow_auto_topic_creation` true and topics named: forwarded with the flag
///   cleared, a one-byte splice (the broker then answers UNKNOWN_TOPIC_OR_PARTITION for a
///   topic that does not exist, as it would with auto-creation off); any other v4+ request
///   passes untouched.
/// - v0-v3 naming topics (no flag: the broker always auto-creates): denied with the API's own
///   answer, each topic TOPIC_AUTHORIZATION_FAILED. Telling existing topics from new ones would
///   need the proxy's own view of the cluster's topics, and Kafka 4 removed these versions
///   (KIP-896); clients that negotiate versions use v4+. v0-v3 naming no topic pass.
/// - A request that does not parse closes the connection (the broker would refuse it too).
fn metadata(policy: Policy, header: &RequestHeader, frame: &[u8]) -> Decision {
    const UNREADABLE: Decision = Decision::Close {
        reason: "the policy reads this Metadata request for auto-creation, and it does not parse",
    };
    let version = header.api_version;
    let Ok(body) = requests::request_body(frame, header.api_key, version) else {
        return UNREADABLE;
    };
    match requests::metadata_auto_create(version, body) {
        Ok(requests::MetadataAutoCreate::No) => Decision::Allow,
        Ok(requests::MetadataAutoCreate::Flag(at)) => Decision::AllowWithoutAutoCreate {
            clear: frame.len() - body.len() + at,
        },
        Ok(requests::MetadataAutoCreate::Always) => {
            let Ok(topics) = requests::metadata_topic_names(version, body) else {
                return UNREADABLE;
            };
            let answer = Answer {
                policy,
                key: ApiKey::Metadata,
                version,
                correlation_id: header.correlation_id,
                code: TOPIC_AUTHORIZATION_FAILED,
            };
            match answer.metadata(&topics) {
                Ok(response) => Decision::Deny {
                    response,
                    error_code: TOPIC_AUTHORIZATION_FAILED,
                },
                Err(_) => Decision::Close {
                    reason: "the policy denies this Metadata request, whose error response cannot be encoded",
                },
            }
        }
        Err(_) => UNREADABLE,
    }
}

#[cfg(test)]
mod samples;
#[cfg(test)]
mod tests;
