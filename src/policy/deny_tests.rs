use bytes::{Buf, Bytes};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::kafka::codec;
use crate::policy::samples::*;
use crate::policy::*;

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
            audit_resources(&header(&frame), &frame, &Default::default()).unwrap(),
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
            audit_resources(&header(&frame), &frame, &Default::default()).unwrap(),
            [format!("all partitions ({kind})")]
        );
    }
}
