use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{self as km, ApiKey, GroupId, OffsetCommitRequest, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;

fn request_frame<M: Encodable>(key: ApiKey, version: i16, msg: &M) -> Bytes {
    let mut body = BytesMut::new();
    km::RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(77)
        .with_client_id(Some(StrBytes::from_static_str("app-1")))
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    msg.encode(&mut body, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame.freeze()
}

/// A frame of only a request header v1 (api key, version, correlation id, empty client id).
fn bare_frame(api_key: i16, version: i16) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(api_key);
    frame.put_i16(version);
    frame.put_i32(77);
    frame.put_i16(0);
    frame.freeze()
}

/// The audit the plan of `frame` under `policy` carries; panics unless it forwards.
fn audit_of(policy: Policy, frame: &[u8]) -> Option<Vec<String>> {
    let header = frame::request_header(frame).unwrap();
    let who = Client {
        identity: 0,
        set: 0,
        peer: "127.0.0.1:9".parse().unwrap(),
        principal: "listener default".to_owned(),
    };
    match plan(policy, &who, "default", &header, frame, &Default::default()) {
        Plan::Forward {
            awaited: Some(awaited),
            clear: None,
        } => awaited.audit.map(|a| a.resources().to_vec()),
        other => panic!("not forwarded: {other:?}"),
    }
}

fn offset_commit(generation: i32, member: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("billing")))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(2)
                .with_committed_offset(0)])])
}

#[test]
fn internal_apis_that_change_the_cluster_are_audited_under_full() {
    for key in [
        ApiKey::WriteTxnMarkers,
        ApiKey::AddRaftVoter,
        ApiKey::RemoveRaftVoter,
        ApiKey::UpdateRaftVoter,
        ApiKey::AlterPartition,
        ApiKey::Envelope,
        ApiKey::BrokerRegistration,
        ApiKey::AllocateProducerIds,
    ] {
        let frame = bare_frame(key as i16, 0);
        assert!(audit_of(Policy::Full, &frame).is_some(), "{key:?}");
    }
    // Reads among them are not.
    let frame = bare_frame(ApiKey::FetchSnapshot as i16, 0);
    assert_eq!(audit_of(Policy::Full, &frame), None);
}

#[test]
fn unknown_api_keys_are_forwarded_and_audited_under_full() {
    for api_key in [9999, 4, 93, i16::MAX] {
        let frame = bare_frame(api_key, 3);
        assert_eq!(
            audit_of(Policy::Full, &frame),
            Some(vec![format!("unknown api key {api_key} v3")])
        );
    }
}

#[test]
fn offset_commits_from_outside_the_group_are_audited_and_members_commits_are_not() {
    for policy in Policy::ALL {
        for v in [2, 5, 7, 8, 9] {
            // kafka-consumer-groups --reset-offsets, the AdminClient, assign() consumers.
            for (generation, member) in [(-1, ""), (-1, "m-1"), (3, "")] {
                let frame =
                    request_frame(ApiKey::OffsetCommit, v, &offset_commit(generation, member));
                assert_eq!(
                    audit_of(policy, &frame),
                    Some(vec!["billing: orders-2 to offset 0".to_owned()]),
                    "{policy} v{v} generation {generation} member {member:?}"
                );
            }
            // A group member's periodic commit.
            let frame = request_frame(ApiKey::OffsetCommit, v, &offset_commit(3, "m-1"));
            assert_eq!(audit_of(policy, &frame), None, "{policy} v{v}");
        }
    }
}

#[test]
fn an_offset_commit_audit_reads_the_brokers_answer() {
    use km::offset_commit_response::*;
    for v in [2, 3, 8, 9] {
        let response = km::OffsetCommitResponse::default().with_topics(vec![
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![OffsetCommitResponsePartition::default()
                    .with_partition_index(2)
                    .with_error_code(25)]),
        ]);
        let mut payload = BytesMut::new();
        km::ResponseHeader::default()
            .with_correlation_id(77)
            .encode(
                &mut payload,
                ApiKey::OffsetCommit.response_header_version(v),
            )
            .unwrap();
        response.encode(&mut payload, v).unwrap();
        assert_eq!(
            policy::audit_outcome(ApiKey::OffsetCommit as i16, v, &payload).unwrap(),
            vec![("orders-2".to_owned(), 25)],
            "v{v}"
        );
    }
}
