//! The one decision the proxy makes about each request, and what of it travels with the request
//! to its response.
//!
//! [`plan`] answers every question the relay asks of a request, once, when it arrives: is it a
//! valid frame, does the identity's policy allow it (and if not, is it answered here or does
//! the connection close), does the proxy answer it itself (ApiVersions above what it decodes),
//! can its response be inspected at this version, does the client expect a response, must its
//! response be inspected (addresses rewritten, free text scrubbed), and is it a cluster change to audit (with the resources it names).
//! The pumps then only act: the request pump forwards or answers as the plan says, and the
//! response pump reads the [`Awaited`] part of the plan that came with the request when its
//! answer arrives, instead of asking the tables again.

use std::time::Instant;

use bytes::Bytes;

use super::audit::Audit;
use super::Client;
use crate::budget::Held;
use crate::kafka::frame::{self, FrameError, RequestHeader};
use crate::kafka::{self, requests, versions};
use crate::policy::{self, Decision, Policy};
use crate::sasl;
use crate::topics::TopicNames;

/// What to do with one request.
#[derive(Debug)]
pub(super) enum Plan {
    /// Forward it upstream with the proxy's own correlation id.
    Forward {
        /// `None` when the client expects no response (Produce with acks=0).
        awaited: Option<Awaited>,
        /// Set the byte at this offset of the frame to 0 before forwarding: a Metadata
        /// request's `allow_auto_topic_creation` under a policy that may not create topics.
        clear: Option<usize>,
    },
    /// Answer it here, in its place among the responses, and never forward it.
    Answer {
        /// The complete response frame, with the client's correlation id.
        response: Bytes,
        /// The policy's error code when this answer is a denial (for the metrics and the
        /// denial's audit line); `None` for ApiVersions answered by the proxy.
        denied: Option<i16>,
    },
    /// Close the connection without forwarding it.
    Refuse(Refusal),
}

/// Why a request closes its connection.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The header or the Produce acks cannot be read.
    Malformed(FrameError),
    /// The policy denies it and no response can carry the denial.
    Denied(&'static str),
    /// Its response may carry broker addresses at a version the proxy cannot decode.
    UnsupportedVersion,
}

/// What the response side needs of a forwarded request: decided with the request, read when
/// its response arrives.
#[derive(Debug)]
pub(super) struct Awaited {
    /// The correlation id the client chose; restored in the response.
    pub(super) client_id: i32,
    /// The request's api key.
    pub(super) api_key: i16,
    /// The request's version.
    pub(super) api_version: i16,
    /// The response must be looked at before the client gets it (ApiVersions is capped, an
    /// address-carrying API's brokers are rewritten).
    pub(super) inspect: bool,
    /// The response may carry free text (error messages, config values) in which upstream
    /// names and addresses are replaced ([`kafka::scrub`]); with `inspect`, after the address
    /// rewrite (Produce: only when an error message is non-null).
    pub(super) scrub: bool,
    /// Set for requests that change the cluster: their request line is written; the outcome
    /// line is written from the answer (or as unknown if none comes).
    pub(super) audit: Option<Box<Audit>>,
}

/// What the response pump expects next.
#[derive(Debug)]
pub(super) enum Expected {
    /// A broker response to a forwarded request.
    Response {
        /// The correlation id the proxy gave the request upstream; the response must carry it.
        proxy_id: i32,
        /// When the request left, for the request-duration metric.
        sent: Instant,
        /// The request's plan for its response.
        awaited: Awaited,
    },
    /// A response the proxy makes itself, delivered in order with the others.
    Local(Local),
    /// The answer to a request the proxy sent itself on this connection (the SASL
    /// re-authentication, KIP-368): handed to the request pump, never to the client.
    Own {
        /// The correlation id the proxy gave its request; the response must carry it.
        proxy_id: i32,
        /// Where the answer's payload (header and body) goes.
        reply: tokio::sync::oneshot::Sender<Bytes>,
    },
}

/// An answer the proxy made itself, with the budget charged for it before it was built
/// ([`crate::budget::Budget::charge`]): up to [`crate::connection::MAX_IN_FLIGHT`] of them may
/// wait per connection for a client that does not read, so their bytes count against the
/// budget until they have been written to the client (dropping this releases the charge).
#[derive(Debug)]
pub(super) struct Local {
    /// The complete response frame.
    pub(super) bytes: Bytes,
    /// The budget held for it, released when it has been written.
    pub(super) _charge: Held,
}

/// The budget to charge before [`plan`] for a request it may answer here (a denial, or
/// ApiVersions above what the proxy decodes): [`policy::answer_charge`] (a bound from the
/// frame's length where it fits in `budget` bytes, a denied Produce's exact answer where it
/// does not); `None` for every request it forwards, which costs no lock (allowed Produce and
/// Fetch).
pub(super) fn answer_bound(
    policy: Policy,
    header: &RequestHeader,
    frame: &[u8],
    budget: usize,
) -> Option<usize> {
    if sasl::is_sasl(header.api_key) {
        Some(policy::ANSWER_BASE)
    } else if policy::answers(policy, header) {
        Some(policy::answer_charge(policy, header, frame, budget))
    } else if header.api_key == kafka::API_VERSIONS
        && header.api_version > versions::API_VERSIONS_MAX
    {
        Some(policy::ANSWER_BASE)
    } else {
        None
    }
}

/// Plans one request: `frame` is the complete request frame (length prefix included) as the
/// client sent it, `header` its header as [`frame::request_header`] read it. Under `full`, and
/// for every request a policy allows, nothing beyond the header (and Produce's acks) is read,
/// except the resources of a request that is audited, whose request line `who` (acting as
/// `identity`) is written here, before the request can be forwarded.
pub(super) fn plan(
    policy: Policy,
    who: &Client,
    identity: &str,
    header: &RequestHeader,
    frame: &[u8],
    topics: &TopicNames,
) -> Plan {
    if let Some(answer) = sasl::client_answer(header) {
        // The proxy authenticates upstream itself: a client's SASL is answered here.
        tracing::warn!(
            api_key = header.api_key,
            "client sent {}: {}",
            crate::admin::api_name(header.api_key),
            sasl::CLIENT_SASL_MESSAGE
        );
        return match answer {
            Some(response) => Plan::Answer {
                response,
                denied: None,
            },
            None => Plan::Refuse(Refusal::UnsupportedVersion),
        };
    }
    let mut clear = None;
    if policy != Policy::Full {
        match policy::decide(policy, header, frame) {
            Decision::Allow => {}
            Decision::AllowWithoutAutoCreate { clear: at } => clear = Some(at),
            Decision::Deny {
                response,
                error_code,
            } => {
                return Plan::Answer {
                    response,
                    denied: Some(error_code),
                }
            }
            Decision::Close { reason } => return Plan::Refuse(Refusal::Denied(reason)),
        }
    }
    let (api_key, api_version) = (header.api_key, header.api_version);
    if api_key == kafka::API_VERSIONS && api_version > versions::API_VERSIONS_MAX {
        // Answer like a broker that does not know this version; the client retries with one
        // the proxy can decode.
        return Plan::Answer {
            response: versions::unsupported_api_versions_response(header.correlation_id),
            denied: None,
        };
    }
    if !kafka::relayable(api_key, api_version) {
        return Plan::Refuse(Refusal::UnsupportedVersion);
    }
    let expects = match frame::expects_response(header, frame) {
        Ok(expects) => expects,
        Err(e) => return Plan::Refuse(Refusal::Malformed(e)),
    };
    let audit =
        audited(header, frame).then(|| Audit::request(who, identity, header, frame, topics));
    if !expects {
        if let Some(audit) = audit {
            audit.unanswered();
        }
        return Plan::Forward {
            awaited: None,
            clear,
        };
    }
    Plan::Forward {
        clear,
        awaited: Some(Awaited {
            client_id: header.correlation_id,
            api_key,
            api_version,
            inspect: kafka::needs_inspection(api_key, api_version),
            scrub: kafka::scrub::carries_text(api_key, api_version),
            audit: audit.map(Box::new),
        }),
    }
}

/// True when the request's audit line is written: its API changes the cluster (the policy
/// table's `audited` column, which also covers api keys the proxy does not know), or it is an
/// OffsetCommit from outside group membership, which resets a group's offsets (admin tools,
/// standalone consumers). A group member's periodic commit is not audited: it is consumption,
/// and one line per commit would drown the audit. Reads only the OffsetCommit's group id,
/// generation and member id beyond the header.
fn audited(header: &RequestHeader, frame: &[u8]) -> bool {
    if policy::audited(header.api_key) {
        return true;
    }
    if header.api_key != kafka_protocol::messages::ApiKey::OffsetCommit as i16 {
        return false;
    }
    match requests::request_body(frame, header.api_key, header.api_version) {
        Ok(body) => requests::offset_commit_outside_membership(header.api_version, body),
        // Unreadable: audited, and its line says so.
        Err(_) => true,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
