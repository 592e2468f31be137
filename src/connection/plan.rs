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

use crate::kafka::frame::{self, FrameError, RequestHeader};
use crate::kafka::{self, versions};
use crate::policy::{self, Decision, Policy};

/// What to do with one request.
#[derive(Debug)]
pub(super) enum Plan {
    /// Forward it upstream with the proxy's own correlation id; `None` when the client expects
    /// no response (Produce with acks=0).
    Forward(Option<Awaited>),
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
    /// The response carries free text (error messages, config values) in which upstream
    /// names and addresses are replaced ([`kafka::scrub`]); never set with `inspect`.
    pub(super) scrub: bool,
    /// Set for requests that change the cluster: logged once the answer is in.
    pub(super) audit: Option<Box<Audit>>,
}

/// A cluster-changing request awaiting its audit line: the resources it names.
#[derive(Debug)]
pub(super) struct Audit {
    /// What the request changes, as its audit line names it.
    pub(super) resources: Vec<String>,
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
    Local(Bytes),
}

/// Plans one request: `frame` is the complete request frame (length prefix included) as the
/// client sent it, `header` its header as [`frame::request_header`] read it. Under `full`, and
/// for every request a policy allows, nothing beyond the header (and Produce's acks) is read,
/// except the resources of a request that is audited.
pub(super) fn plan(policy: Policy, header: &RequestHeader, frame: &[u8]) -> Plan {
    if policy != Policy::Full {
        match policy::decide(policy, header, frame) {
            Decision::Allow => {}
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
    match frame::expects_response(header, frame) {
        Err(e) => Plan::Refuse(Refusal::Malformed(e)),
        Ok(false) => Plan::Forward(None),
        Ok(true) => Plan::Forward(Some(Awaited {
            client_id: header.correlation_id,
            api_key,
            api_version,
            inspect: kafka::needs_inspection(api_key, api_version),
            scrub: kafka::scrub::carries_text(api_key, api_version),
            audit: policy::audited(api_key).then(|| {
                Box::new(Audit {
                    resources: policy::audit_resources(header, frame)
                        .unwrap_or_else(|e| vec![format!("(unreadable: {e})")]),
                })
            }),
        })),
    }
}
