//! Identity policy (src/policy/ and its walkers, src/kafka/requests.rs): a client request of
//! one of the APIs a policy may deny, judged by `policy::decide` under a policy from the input
//! and named by `policy::audit_resources`; or a broker response read by `policy::audit_outcome`.
//! Every byte after the control bytes is what a client or a broker chose.
//!
//! Input (this target's own format; seeds in corpus/policy/ were written by the ignored test
//! `policy::tests::write_fuzz_seeds` in this format):
//! - byte 0: policy `[read-only, no-admin, full][b % 3]`; `(b / 3) % 2` = 0: request, 1: response;
//! - byte 1: api key, `KEYS[b % KEYS.len()]` (every API the policy table answers natively);
//! - byte 2: version, as `i8`;
//! - request: the frame after the length prefix, api key and version (correlation id, client
//!   id, header tagged fields, body), which the target completes with those three;
//! - response: the payload (response header + body, no length prefix), as the connection hands
//!   it to `audit_outcome`.
//!
//! Invariants: no panic and no allocation beyond the memory limit, whatever the bytes; `full`
//! allows everything; a denial is a well-formed frame (length prefix, the client's correlation
//! id) that kafka-protocol decodes as that API's response at that version (Produce v0-v2, which
//! it cannot, by hand); an audited denial reads back through `audit_outcome` with its error
//! code, unless the request named nothing to change; a request denied with an answer is one
//! `audit_resources` reads too; audit lists stay within the cap and carry no control characters
//! (they go to log lines).
#![no_main]

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use kafka_tls_proxy::kafka::{codec, frame, requests};
use kafka_tls_proxy::policy::{self, Decision, Policy};
use libfuzzer_sys::fuzz_target;

const POLICIES: [Policy; 3] = [Policy::ReadOnly, Policy::NoAdmin, Policy::Full];

fn keys() -> Vec<ApiKey> {
    ApiKey::iter()
        .filter(|k| policy::rule(*k).answer.is_some())
        .collect()
}

/// No line breaks, escapes or other control characters reach a log line.
fn printable(entry: &str) {
    assert!(
        !entry.chars().any(char::is_control),
        "control character in an audit entry: {entry:?}"
    );
}

fn decode_as<M: Decodable>(buf: &mut Bytes, version: i16) -> Result<(), String> {
    M::decode(buf, version)
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

/// Decodes a denial body as the response of `key` at `version`.
fn decode_denial(key: ApiKey, version: i16, buf: &mut Bytes) -> Result<(), String> {
    macro_rules! by_key {
        ($($k:ident => $t:ty),* $(,)?) => {
            match key {
                $(ApiKey::$k => decode_as::<$t>(buf, version),)*
                other => panic!("no response type listed for {other:?}"),
            }
        };
    }
    by_key! {
        Produce => ProduceResponse,
        InitProducerId => InitProducerIdResponse,
        AddPartitionsToTxn => AddPartitionsToTxnResponse,
        AddOffsetsToTxn => AddOffsetsToTxnResponse,
        EndTxn => EndTxnResponse,
        TxnOffsetCommit => TxnOffsetCommitResponse,
        CreateTopics => CreateTopicsResponse,
        DeleteTopics => DeleteTopicsResponse,
        CreatePartitions => CreatePartitionsResponse,
        DeleteRecords => DeleteRecordsResponse,
        CreateAcls => CreateAclsResponse,
        DeleteAcls => DeleteAclsResponse,
        AlterConfigs => AlterConfigsResponse,
        IncrementalAlterConfigs => IncrementalAlterConfigsResponse,
        AlterClientQuotas => AlterClientQuotasResponse,
        AlterUserScramCredentials => AlterUserScramCredentialsResponse,
        AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
        ElectLeaders => ElectLeadersResponse,
        UpdateFeatures => UpdateFeaturesResponse,
        AlterReplicaLogDirs => AlterReplicaLogDirsResponse,
        UnregisterBroker => UnregisterBrokerResponse,
        DeleteGroups => DeleteGroupsResponse,
        OffsetDelete => OffsetDeleteResponse,
        CreateDelegationToken => CreateDelegationTokenResponse,
        RenewDelegationToken => RenewDelegationTokenResponse,
        ExpireDelegationToken => ExpireDelegationTokenResponse,
        AlterShareGroupOffsets => AlterShareGroupOffsetsResponse,
        DeleteShareGroupOffsets => DeleteShareGroupOffsetsResponse,
    }
}

/// Produce v0-v2, written by hand: header v0, responses[name, partitions[index, error_code,
/// base_offset, log_append_time_ms (v2)]], throttle_time_ms (v1+).
fn read_produce_v0_v2(version: i16, mut b: &[u8]) {
    let topics = b.get_i32();
    for _ in 0..topics {
        let len = b.get_i16() as usize;
        b.advance(len);
        for _ in 0..b.get_i32() {
            b.advance(4);
            assert_eq!(b.get_i16(), policy::TOPIC_AUTHORIZATION_FAILED);
            b.advance(if version >= 2 { 16 } else { 8 });
        }
    }
    if version >= 1 {
        b.advance(4);
    }
    assert!(b.is_empty(), "bytes after the Produce v{version} denial");
}

fn request(policy: Policy, key: ApiKey, version: i16, rest: &[u8]) {
    let mut frame = BytesMut::with_capacity(8 + rest.len());
    frame.extend_from_slice(&((4 + rest.len()) as i32).to_be_bytes());
    frame.extend_from_slice(&(key as i16).to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(rest);
    let Ok(header) = frame::request_header(&frame) else {
        return; // the connection closes before asking the policy
    };
    let resources = policy::audit_resources(&header, &frame, &Default::default());
    if let Ok(entries) = &resources {
        assert!(entries.len() <= requests::AUDIT_CAP + 1);
        entries.iter().for_each(|e| printable(e));
    }
    match policy::decide(policy, &header, &frame) {
        Decision::Allow => assert!(policy.allows(policy::rule(key).access)),
        Decision::Close { .. } => assert!(!policy.allows(policy::rule(key).access)),
        // Only Metadata, which the keys above do not include.
        Decision::AllowWithoutAutoCreate { .. } => panic!("{key:?} allowed with a splice"),
        Decision::Deny {
            response,
            error_code,
        } => {
            assert!(!policy.allows(policy::rule(key).access));
            assert!(
                resources.is_ok(),
                "denied natively, but the audit cannot read it"
            );
            assert_ne!(error_code, 0);
            let len = i32::from_be_bytes(response[..4].try_into().unwrap());
            assert_eq!(len as usize, response.len() - 4, "length prefix");
            assert_eq!(response[4..8], header.correlation_id.to_be_bytes());
            if key == ApiKey::Produce && version < 3 {
                read_produce_v0_v2(version, &response[8..]);
                return;
            }
            let mut buf = response.slice(4..);
            ResponseHeader::decode(
                &mut buf,
                codec::response_header_version(key as i16, version),
            )
            .expect("response header");
            decode_denial(key, version, &mut buf)
                .unwrap_or_else(|e| panic!("{key:?} v{version}: the denial does not decode: {e}"));
            assert!(buf.is_empty(), "bytes after the denial");
            if policy::audited(key as i16) {
                let outcome = policy::audit_outcome(key as i16, version, &response[4..])
                    .expect("the proxy's own denial reads back");
                // Unless the request named nothing to change (e.g. no topics), which the
                // answer then names neither.
                assert!(
                    outcome.iter().any(|(_, c)| *c == error_code)
                        || resources.as_ref().is_ok_and(Vec::is_empty),
                    "{outcome:?}"
                );
            }
        }
    }
}

fn response(key: ApiKey, version: i16, payload: &[u8]) {
    if let Ok(entries) = policy::audit_outcome(key as i16, version, payload) {
        assert!(entries.len() <= requests::AUDIT_CAP + 1);
        entries.iter().for_each(|(e, _)| printable(e));
        if !policy::audited(key as i16) {
            assert!(entries.is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [ctl, k, v, rest @ ..] = data else {
        return;
    };
    let policy = POLICIES[usize::from(*ctl) % 3];
    let keys = keys();
    let key = keys[usize::from(*k) % keys.len()];
    let version = i16::from(*v as i8);
    if (ctl / 3) % 2 == 0 {
        request(policy, key, version, rest);
    } else {
        response(key, version, rest);
    }
});
