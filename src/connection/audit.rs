//! The audit lines a connection writes (target `audit`).
//!
//! A cluster-changing request gets two lines with the same `audit_id`: `event="request"`,
//! written before the request is forwarded (so no change reaches a broker without its line),
//! and `event="change"` with the broker's answer when it arrives, or `event="outcome"` with
//! `outcome="unknown: connection closed"` when the connection ends first (written when the
//! request's [`Audit`] is dropped unanswered, whatever ended the connection). These lines are
//! never suppressed. A policy denial gets one `event="denied"` line; a client that floods
//! denied requests gets at most [`DENIALS_PER_SECOND`] such lines per second for its identity,
//! the next one carrying how many were suppressed (also counted in
//! `kafka_proxy_audit_lines_suppressed_total{identity}`). Every list of resources is bounded
//! ([`crate::logs::bounded`]), and every string is escaped by the log's writer.

use std::net::SocketAddr;

use super::Client;
use crate::identity::Identity;
use crate::kafka::frame::RequestHeader;
use crate::logs;
use crate::policy;
use crate::shared::Shared;
use crate::topics::TopicNames;

/// Denial lines written per identity and second at most.
pub(crate) const DENIALS_PER_SECOND: u32 = 20;

/// An audited request between its request line and its outcome line.
#[derive(Debug)]
pub(super) struct Audit {
    id: u64,
    identity: String,
    principal: String,
    client: SocketAddr,
    api_key: i16,
    api_version: i16,
    resources: Vec<String>,
    /// Set once an outcome line has been written.
    done: bool,
}

impl Audit {
    /// Reads what the request changes (bounded) and writes its request line. Called while
    /// the request is planned, before any of its bytes are forwarded.
    pub(super) fn request(
        who: &Client,
        identity: &str,
        header: &RequestHeader,
        frame: &[u8],
        topics: &TopicNames,
    ) -> Self {
        let resources = logs::bounded(
            policy::audit_resources(header, frame, topics)
                .unwrap_or_else(|e| vec![format!("(unreadable: {e})")]),
        );
        let audit = Self {
            id: logs::next_audit_id(),
            identity: identity.to_owned(),
            principal: who.principal.clone(),
            client: who.peer,
            api_key: header.api_key,
            api_version: header.api_version,
            resources,
            done: false,
        };
        tracing::info!(
            target: "audit",
            event = "request",
            audit_id = audit.id,
            identity = %audit.identity,
            principal = %audit.principal,
            client = %audit.client,
            api = %crate::admin::api_name(audit.api_key),
            version = audit.api_version,
            resources = ?audit.resources,
            "cluster change requested"
        );
        audit
    }

    /// What the request changes, as its lines name it.
    #[cfg(test)]
    pub(super) fn resources(&self) -> &[String] {
        &self.resources
    }

    /// Writes the outcome line from the broker's answer (`payload`: the response without its
    /// length prefix).
    pub(super) fn answered(mut self, payload: &[u8]) {
        let outcome = logs::bounded_outcome(
            policy::audit_outcome(self.api_key, self.api_version, payload)
                .unwrap_or_else(|e| vec![(format!("(unreadable answer: {e})"), -1)]),
        );
        let error_codes: Vec<i16> = outcome.iter().map(|(_, code)| *code).collect();
        tracing::info!(
            target: "audit",
            event = "change",
            audit_id = self.id,
            identity = %self.identity,
            principal = %self.principal,
            client = %self.client,
            api = %crate::admin::api_name(self.api_key),
            version = self.api_version,
            resources = ?self.resources,
            error_codes = ?error_codes,
            outcome = ?outcome,
            "cluster change"
        );
        self.done = true;
    }

    /// Writes the outcome line of a request whose client expects no answer.
    pub(super) fn unanswered(mut self) {
        self.outcome("unknown: no response expected");
    }

    fn outcome(&mut self, outcome: &str) {
        tracing::warn!(
            target: "audit",
            event = "outcome",
            audit_id = self.id,
            identity = %self.identity,
            principal = %self.principal,
            client = %self.client,
            api = %crate::admin::api_name(self.api_key),
            version = self.api_version,
            resources = ?self.resources,
            outcome,
            "cluster change requested; its outcome is not known"
        );
        self.done = true;
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if !self.done {
            self.outcome("unknown: connection closed");
        }
    }
}

/// Writes the audit line of a policy denial (the request never reaches the cluster), with the
/// resources `frame` names (topics named by id through [`Shared::topics`]), unless this
/// identity's denial lines are over their rate ([`Shared::audit_denials`]).
pub(super) fn denial(
    who: &Client,
    identity: &Identity,
    shared: &Shared,
    header: &RequestHeader,
    frame: Option<&[u8]>,
    error_code: Option<i16>,
    reason: &'static str,
) {
    let Some(suppressed) = shared.audit_denials.allow(&identity.name) else {
        metrics::counter!("kafka_proxy_audit_lines_suppressed_total", "identity" => identity.name.clone())
            .increment(1);
        return;
    };
    // `None`: a request too large to read, named by its API only.
    let resources = logs::bounded(
        frame
            .map(|frame| policy::audit_resources(header, frame, &shared.topics).unwrap_or_default())
            .unwrap_or_else(|| vec!["(not read: too large)".to_owned()]),
    );
    tracing::warn!(
        target: "audit",
        event = "denied",
        identity = %identity.name,
        principal = %who.principal,
        client = %who.peer,
        api = %crate::admin::api_name(header.api_key),
        version = header.api_version,
        resources = ?resources,
        error_code = error_code.unwrap_or(-1),
        reason,
        suppressed,
        "request denied by the identity's policy"
    );
}
