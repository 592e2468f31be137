use kafka_protocol::messages::*;

use crate::kafka::requests;
use crate::policy::samples::*;
use crate::policy::*;

// -----------------------------------------------------------------------------------------
// Audit

fn resources(key: ApiKey, v: i16) -> Vec<String> {
    let frame = sample(key, v);
    audit_resources(&header(&frame), &frame, &Default::default())
        .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"))
}

#[test]
fn topics_named_by_id_are_named_by_the_name_metadata_gave() {
    let names = crate::topics::TopicNames::default();
    names.note([1; 16], b"orders");
    let named = |key, v| {
        let frame = sample(key, v);
        audit_resources(&header(&frame), &frame, &names).unwrap()
    };
    assert_eq!(
        named(ApiKey::Produce, 13),
        [
            "transactional id txn-1",
            "orders-0",
            "orders-2",
            "02020202-0202-0202-0202-020202020202-1 (topic name unknown)"
        ]
    );
    names.note([2; 16], b"payments");
    assert_eq!(
        named(ApiKey::Produce, 13)[1..],
        ["orders-0", "orders-2", "payments-1"]
    );
    for v in versions(ApiKey::DeleteTopics) {
        assert_eq!(
            named(ApiKey::DeleteTopics, v),
            ["orders", "payments"],
            "DeleteTopics v{v}"
        );
    }
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
            "01010101-0101-0101-0101-010101010101-0 (topic name unknown)",
            "01010101-0101-0101-0101-010101010101-2 (topic name unknown)",
            "02020202-0202-0202-0202-020202020202-1 (topic name unknown)"
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
            vec![
                "orders",
                "02020202-0202-0202-0202-020202020202 (topic name unknown)",
            ]
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
        for entry in audit_resources(&header(&frame), &frame, &Default::default()).unwrap() {
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
    let got = audit_resources(&header(&frame), &frame, &Default::default()).unwrap();
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
    let got = audit_resources(&header(&frame), &frame, &Default::default()).unwrap();
    assert_eq!(got[0], "evil\\nname\\u{1b}[31m");
    assert_eq!(got[1].chars().count(), 257);
    assert!(got[1].ends_with('…'));
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
