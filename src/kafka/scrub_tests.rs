use super::*;

use bytes::BytesMut;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{BrokerId, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

const ADVERTISED: &str = "proxy.example";
const NAMES: [&str; 3] = ["b-1.msk.test", "b-2.msk.test", "b-3.msk.test"];
const IPS: [&str; 3] = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];

/// The scrubber of a three-broker cluster on 9094, proxied on 30001-30003.
fn scrubber() -> Scrubber {
    let mut needles = Vec::new();
    for i in 0..3 {
        let port = Some((9094, 30001 + i as u16));
        needles.push(Needle {
            host: NAMES[i].into(),
            port,
        });
        needles.push(Needle {
            host: IPS[i].into(),
            port,
        });
    }
    Scrubber::new(ADVERTISED, needles)
}

fn text(s: &Scrubber, t: &str) -> String {
    String::from_utf8(
        s.scrub(t.as_bytes())
            .unwrap_or_else(|| t.as_bytes().to_vec()),
    )
    .unwrap()
}

#[test]
fn names_and_addresses_are_replaced_with_the_address_clients_use() {
    let s = scrubber();
    assert_eq!(
        text(&s, "Request(processor=0, connectionId=127.0.0.12:9094-127.0.0.1:50022-0-14, session=x) needs DESCRIBE permission"),
        "Request(processor=0, connectionId=proxy.example:30002-127.0.0.1:50022-0-14, session=x) needs DESCRIBE permission"
    );
    assert_eq!(text(&s, "B-3.MSK.TEST is down"), "proxy.example is down");
    assert_eq!(
        text(&s, "SSL://b-1.msk.test:9094,SSL://b-2.msk.test:9095"),
        "SSL://proxy.example:30001,SSL://proxy.example:9095"
    );
    assert_eq!(text(&s, "at b-1.msk.test."), "at proxy.example.");
    // Longer names and addresses that merely contain one are other hosts.
    for other in [
        "127.0.0.111",
        "x127.0.0.11",
        "a.b-1.msk.test",
        "b-1.msk.test.other",
        "b-1.msk.testing",
    ] {
        assert_eq!(s.scrub(other.as_bytes()), None, "{other}");
    }
    assert_eq!(s.scrub(b"no broker here"), None);
    assert_eq!(Scrubber::new(ADVERTISED, []).scrub(b"b-1.msk.test"), None);
}

#[test]
fn the_needle_set_is_bounded_and_deduplicated() {
    let many = (0..MAX_NEEDLES + 100).map(|i| Needle {
        host: format!("h{i}.example"),
        port: None,
    });
    assert_eq!(Scrubber::new(ADVERTISED, many).len(), MAX_NEEDLES);
    let same = [
        "B-1.msk.test",
        "b-1.msk.test",
        "",
        &"x".repeat(MAX_NEEDLE_LEN + 1),
    ]
    .map(|h| Needle {
        host: h.into(),
        port: None,
    });
    assert_eq!(Scrubber::new(ADVERTISED, same).len(), 1);
}

/// Encodes `msg` as a response payload (header + body) at `version`.
fn payload<M: Encodable>(key: ApiKey, version: i16, msg: &M) -> Vec<u8> {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(7)
        .encode(&mut buf, key.response_header_version(version))
        .unwrap();
    msg.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

fn some(s: &str) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.to_owned()))
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Builds one response payload at a version.
type Build = Box<dyn Fn(i16) -> Vec<u8>>;

/// One response of each text-carrying API with `m` in every free-text field, and upstream
/// names in the fields that are not text (which must stay as they are).
fn responses(m: &str) -> Vec<(ApiKey, Build)> {
    let m = m.to_owned();
    let mut all: Vec<(ApiKey, Build)> = Vec::new();
    let k = m.clone();
    all.push((
        ApiKey::DescribeAcls,
        Box::new(move |v| {
            let msg = DescribeAclsResponse::default()
                .with_error_code(31)
                .with_error_message(some(&k))
                .with_resources(vec![DescribeAclsResource::default()
                    .with_resource_name(sb("t"))
                    .with_acls(vec![AclDescription::default()
                        .with_principal(sb("User:x"))
                        .with_host(sb("127.0.0.11"))])]);
            payload(ApiKey::DescribeAcls, v, &msg)
        }),
    ));
    let k = m.clone();
    all.push((
        ApiKey::CreateAcls,
        Box::new(move |v| {
            let r = AclCreationResult::default()
                .with_error_code(31)
                .with_error_message(some(&k));
            let msg = CreateAclsResponse::default().with_results(vec![r.clone(), r]);
            payload(ApiKey::CreateAcls, v, &msg)
        }),
    ));
    let k = m.clone();
    all.push((
        ApiKey::DeleteAcls,
        Box::new(move |v| {
            let msg = DeleteAclsResponse::default().with_filter_results(vec![
                DeleteAclsFilterResult::default()
                    .with_error_message(some(&k))
                    .with_matching_acls(vec![DeleteAclsMatchingAcl::default()
                        .with_error_message(some(&k))
                        .with_resource_name(sb("t"))
                        .with_principal(sb("User:b-1.msk.test"))
                        .with_host(sb("127.0.0.12"))]),
            ]);
            payload(ApiKey::DeleteAcls, v, &msg)
        }),
    ));
    let k = m.clone();
    all.push((
        ApiKey::DescribeConfigs,
        Box::new(move |v| {
            let msg = DescribeConfigsResponse::default().with_results(vec![
                DescribeConfigsResult::default()
                    .with_error_message(some(&k))
                    .with_resource_type(4)
                    .with_resource_name(sb("1"))
                    .with_configs(vec![DescribeConfigsResourceResult::default()
                        .with_name(sb("advertised.listeners"))
                        .with_value(some(&k))
                        .with_synonyms(if v >= 1 {
                            vec![DescribeConfigsSynonym::default()
                                .with_name(sb("advertised.listeners"))
                                .with_value(some(&k))]
                        } else {
                            vec![]
                        })
                        .with_documentation(if v >= 3 { some(&k) } else { None })]),
            ]);
            payload(ApiKey::DescribeConfigs, v, &msg)
        }),
    ));
    let k = m.clone();
    all.push((
        ApiKey::AlterPartitionReassignments,
        Box::new(move |v| {
            let msg = AlterPartitionReassignmentsResponse::default()
                .with_allow_replication_factor_change(v >= 1)
                .with_error_code(29)
                .with_error_message(some(&k))
                .with_responses(vec![ReassignableTopicResponse::default()
                    .with_name(TopicName(sb("t")))
                    .with_partitions(vec![
                        ReassignablePartitionResponse::default().with_error_message(some(&k))
                    ])]);
            payload(ApiKey::AlterPartitionReassignments, v, &msg)
        }),
    ));
    let k = m.clone();
    all.push((
        ApiKey::ListPartitionReassignments,
        Box::new(move |v| {
            let msg = ListPartitionReassignmentsResponse::default()
                .with_error_code(29)
                .with_error_message(some(&k))
                .with_topics(vec![OngoingTopicReassignment::default()
                    .with_name(TopicName(sb("t")))
                    .with_partitions(vec![OngoingPartitionReassignment::default()
                        .with_replicas(vec![BrokerId(1), BrokerId(2)])
                        .with_adding_replicas(vec![BrokerId(3)])])]);
            payload(ApiKey::ListPartitionReassignments, v, &msg)
        }),
    ));
    let k = m.clone();
    all.push((
        ApiKey::ElectLeaders,
        Box::new(move |v| {
            let msg = ElectLeadersResponse::default()
                .with_error_code(if v >= 1 { 31 } else { 0 })
                .with_replica_election_results(vec![ReplicaElectionResult::default()
                    .with_topic(TopicName(sb("t")))
                    .with_partition_result(vec![PartitionResult::default()
                        .with_error_code(31)
                        .with_error_message(some(&k))])]);
            payload(ApiKey::ElectLeaders, v, &msg)
        }),
    ));
    let k = m.clone();
    all.push((
        ApiKey::CreateTopics,
        Box::new(move |v| {
            let mut topic = CreatableTopicResult::default()
                .with_name(TopicName(sb("t")))
                .with_error_message(some(&k));
            if v >= 5 {
                topic = topic.with_configs(Some(vec![CreatableTopicConfigs::default()
                    .with_name(sb("x"))
                    .with_value(some(&k))]));
            }
            let msg = CreateTopicsResponse::default().with_topics(vec![topic]);
            payload(ApiKey::CreateTopics, v, &msg)
        }),
    ));
    let k = m.clone();
    all.push((
        ApiKey::DeleteTopics,
        Box::new(move |v| {
            let msg = DeleteTopicsResponse::default().with_responses(vec![
                DeletableTopicResult::default()
                    .with_name(Some(TopicName(sb("t"))))
                    .with_error_message(if v >= 5 { some(&k) } else { None }),
            ]);
            payload(ApiKey::DeleteTopics, v, &msg)
        }),
    ));
    let k = m.clone();
    all.push((
        ApiKey::AlterConfigs,
        Box::new(move |v| {
            let msg = AlterConfigsResponse::default().with_responses(vec![
                AlterConfigsResourceResponse::default()
                    .with_error_message(some(&k))
                    .with_resource_name(sb("b-1.msk.test")),
            ]);
            payload(ApiKey::AlterConfigs, v, &msg)
        }),
    ));
    let k = m;
    all.push((
        ApiKey::UpdateFeatures,
        Box::new(move |v| {
            let msg = UpdateFeaturesResponse::default()
                .with_error_message(some(&k))
                .with_results(if v <= 1 {
                    vec![UpdatableFeatureResult::default()
                        .with_feature(sb("f"))
                        .with_error_message(some(&k))]
                } else {
                    vec![]
                });
            payload(ApiKey::UpdateFeatures, v, &msg)
        }),
    ));
    all
}

/// The kafka-protocol versions of an API's response.
fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let t = text_carrying(key as i16).unwrap();
    let lowest = key.valid_versions().min.max(t.versions.min);
    lowest..=t.versions.max
}

/// Scrubs `m` in every response at every version: the result is, byte for byte, the same
/// response built with the scrubbed text.
fn check_everywhere(m: &str) {
    let s = scrubber();
    let expected_text = text(&s, m);
    let built = responses(m);
    let expected = responses(&expected_text);
    for ((key, build), (_, build_expected)) in built.iter().zip(&expected) {
        for v in versions(*key) {
            let original = build(v);
            let out = scrub_response(*key as i16, v, &original, &s)
                .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
            let want = build_expected(v);
            match out {
                None => assert_eq!(original, want, "{key:?} v{v}: nothing replaced"),
                Some(frame) => {
                    assert_eq!(
                        &frame[..4],
                        &(frame.len() as i32 - 4).to_be_bytes(),
                        "{key:?} v{v}: length prefix"
                    );
                    assert_eq!(&frame[4..], &want[..], "{key:?} v{v}");
                }
            }
        }
    }
}

#[test]
fn every_text_field_of_every_version_is_scrubbed_and_nothing_else_changes() {
    check_everywhere(
        "Request(processor=0, connectionId=127.0.0.11:9094-10.1.1.1:4444-0-14, session=Session(User:ro,/10.1.1.1)) needs DESCRIBE permission; controller b-3.msk.test:9094",
    );
    check_everywhere("nothing to hide");
    check_everywhere("");
}

#[test]
fn every_api_of_the_table_is_covered_by_the_tests_and_not_an_address_api() {
    let tested: Vec<ApiKey> = responses("").into_iter().map(|(k, _)| k).collect();
    let mut both = Vec::new();
    for t in &TEXT_CARRYING {
        if super::super::rewrite::inspected(t.key as i16).is_some() {
            both.push(t.key);
        }
        assert!(carries_text(t.key as i16, t.versions.max));
        assert!(!carries_text(t.key as i16, t.versions.max + 1));
        assert!(!carries_text(t.key as i16, t.text_from - 1));
    }
    assert_eq!(
        both,
        [
            ApiKey::FindCoordinator,
            ApiKey::DescribeCluster,
            ApiKey::DescribeQuorum,
            ApiKey::Produce,
            ApiKey::ShareFetch,
            ApiKey::ShareAcknowledge,
        ]
    );
    // The first versions with text, from the schemas.
    let from = |k: ApiKey| text_carrying(k as i16).unwrap().text_from;
    assert_eq!(from(ApiKey::Produce), 8);
    assert_eq!(from(ApiKey::FindCoordinator), 1);
    assert_eq!(from(ApiKey::DescribeQuorum), 2);
    assert_eq!(from(ApiKey::DescribeGroups), 6);
    assert_eq!(from(ApiKey::CreateTopics), 1);
    assert_eq!(from(ApiKey::DeleteTopics), 5);
    assert_eq!(from(ApiKey::DescribeAcls), 0);
    for must in [
        ApiKey::DescribeAcls,
        ApiKey::CreateAcls,
        ApiKey::DeleteAcls,
        ApiKey::DescribeConfigs,
        ApiKey::AlterPartitionReassignments,
        ApiKey::ListPartitionReassignments,
        ApiKey::ElectLeaders,
    ] {
        assert!(tested.contains(&must), "{must:?}");
    }
    assert!(!carries_text(ApiKey::Produce as i16, 7));
    assert!(carries_text(ApiKey::Produce as i16, 8));
    for v in 0..=18 {
        assert!(!carries_text(ApiKey::Fetch as i16, v));
        assert!(!carries_text(ApiKey::Metadata as i16, v));
    }
}

#[test]
fn malformed_responses_are_errors_not_panics() {
    let s = scrubber();
    let good = responses("b-1.msk.test")[0].1(1);
    for cut in 0..good.len() {
        assert!(scrub_response(ApiKey::DescribeAcls as i16, 1, &good[..cut], &s).is_err());
    }
    let mut long = good.clone();
    long.push(0);
    assert!(scrub_response(ApiKey::DescribeAcls as i16, 1, &long, &s).is_err());
    assert!(scrub_response(ApiKey::DescribeAcls as i16, 99, &good, &s).is_err());
}

fn separator() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        " ", "=", "(", ")", ",", "/", "\"", "'", "@", "", "[", "]",
    ])
    .prop_map(str::to_owned)
}

fn upstream() -> impl Strategy<Value = String> {
    let names: Vec<String> = NAMES
        .iter()
        .chain(IPS.iter())
        .flat_map(|h| [h.to_string(), format!("{h}:9094"), h.to_uppercase()])
        .collect();
    prop::sample::select(names)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any upstream name or address, put anywhere in any text field between characters that
    /// cannot continue a host name, reaches no client.
    #[test]
    fn any_upstream_name_in_any_text_is_replaced(
        parts in prop::collection::vec((("[a-z ]{0,8}", separator()), (upstream(), separator())), 1..6),
    ) {
        let mut m = String::new();
        for ((filler, sep1), (name, sep2)) in parts {
            m.push_str(&filler);
            m.push_str(&sep1);
            if !sep1.is_empty() || m.is_empty() || !m.ends_with(|c: char| c.is_ascii_alphanumeric()) {
                m.push_str(&name);
            }
            m.push_str(if sep2.is_empty() { " " } else { &sep2 });
        }
        check_everywhere(&m);
        let s = scrubber();
        let scrubbed = text(&s, &m).to_ascii_lowercase();
        for h in NAMES.iter().chain(IPS.iter()) {
            prop_assert!(!scrubbed.contains(h), "{h} left in {scrubbed:?}");
        }
        prop_assert!(!scrubbed.contains(":9094"), "{scrubbed:?}");
    }
}

#[test]
fn a_scrub_never_holds_more_than_its_bound() {
    // The worst growth per byte: the shortest name, with a known port, back to back, each
    // becoming a long advertised host and its proxy port.
    let advertised = "a-rather-long-proxy-name.tailnet-example.ts.net";
    let s = Scrubber::new(
        advertised,
        [Needle {
            host: "1.2.3.4".into(),
            port: Some((9094, 9101)),
        }],
    );
    let text = "1.2.3.4:9094 ".repeat(5_000);
    let out = s.scrub(text.as_bytes()).expect("names to replace");
    assert!(out.len() > 3 * text.len(), "it grew: {}", out.len());
    // What scrub_response holds at most: the new texts and the new frame.
    assert!(
        2 * (out.len() + 5) + LENGTH_PREFIX <= s.bound(text.len()),
        "{} > bound {}",
        2 * out.len(),
        s.bound(text.len())
    );
}

// -----------------------------------------------------------------------------------------
// Error messages of the address-carrying APIs

/// One response of four address-carrying APIs with `m` in every error message, addresses as
/// the rewrite left them (the proxy's), and upstream names in fields that are not text.
fn address_responses(m: &str) -> Vec<(ApiKey, Build)> {
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::produce_response::{
        BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
        TopicProduceResponse,
    };
    use kafka_protocol::messages::{
        DescribeClusterResponse, FindCoordinatorResponse, ProduceResponse,
    };
    let mut all: Vec<(ApiKey, Build)> = Vec::new();
    let k = m.to_owned();
    all.push((
        ApiKey::FindCoordinator,
        Box::new(move |v| {
            let mut msg = FindCoordinatorResponse::default();
            if v <= 3 {
                msg = msg
                    .with_error_code(15)
                    .with_node_id(BrokerId(-1))
                    .with_host(sb(ADVERTISED))
                    .with_port(30001);
                if v >= 1 {
                    msg.error_message = some(&k);
                }
            } else {
                msg.coordinators = vec![Coordinator::default()
                    .with_key(sb("b-2.msk.test"))
                    .with_node_id(BrokerId(-1))
                    .with_error_code(15)
                    .with_error_message(some(&k))];
            }
            payload(ApiKey::FindCoordinator, v, &msg)
        }),
    ));
    let k = m.to_owned();
    all.push((
        ApiKey::DescribeCluster,
        Box::new(move |v| {
            let mut broker = DescribeClusterBroker::default()
                .with_broker_id(BrokerId(1))
                .with_host(sb(ADVERTISED))
                .with_port(30001)
                .with_rack(some("b-1.msk.test"));
            if v >= 2 {
                broker.is_fenced = true;
            }
            let mut msg = DescribeClusterResponse::default()
                .with_error_code(29)
                .with_error_message(some(&k))
                .with_cluster_id(sb("b-3.msk.test"))
                .with_brokers(vec![broker]);
            if v >= 1 {
                msg.endpoint_type = 1;
            }
            payload(ApiKey::DescribeCluster, v, &msg)
        }),
    ));
    let k = m.to_owned();
    all.push((
        ApiKey::DescribeQuorum,
        Box::new(move |v| {
            use kafka_protocol::messages::describe_quorum_response::{
                Listener, Node, PartitionData, ReplicaState, TopicData,
            };
            use kafka_protocol::messages::DescribeQuorumResponse;
            let replica = ReplicaState::default()
                .with_replica_id(BrokerId(1))
                .with_log_end_offset(10);
            let mut partition = PartitionData::default()
                .with_partition_index(0)
                .with_leader_id(BrokerId(1))
                .with_high_watermark(10)
                .with_current_voters(vec![replica.clone()])
                .with_observers(vec![replica]);
            let mut msg = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
                .with_topic_name(TopicName(sb("b-1.msk.test")))
                .with_partitions(vec![])]);
            if v >= 2 {
                partition.error_code = 6;
                partition.error_message = some(&k);
                msg.error_message = some(&k);
                msg.error_code = 29;
                msg.nodes = vec![Node::default()
                    .with_node_id(BrokerId(1))
                    .with_listeners(vec![Listener::default()
                        .with_name(sb("b-2.msk.test"))
                        .with_host(sb(ADVERTISED))
                        .with_port(0)])];
            }
            msg.topics[0].partitions = vec![partition];
            payload(ApiKey::DescribeQuorum, v, &msg)
        }),
    ));
    let k = m.to_owned();
    all.push((
        ApiKey::Produce,
        Box::new(move |v| {
            let mut partition = PartitionProduceResponse::default()
                .with_index(0)
                .with_error_code(6)
                .with_base_offset(-1);
            if v >= 8 {
                partition.error_message = some(&k);
                partition.record_errors = vec![BatchIndexAndErrorMessage::default()
                    .with_batch_index(0)
                    .with_batch_index_error_message(some(&k))];
            }
            if v >= 10 {
                partition.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(2))
                    .with_leader_epoch(3);
            }
            let mut topic =
                TopicProduceResponse::default().with_partition_responses(vec![partition]);
            if v <= 12 {
                topic.name = TopicName(sb("b-1.msk.test"));
            }
            let mut msg = ProduceResponse::default().with_responses(vec![topic]);
            if v >= 10 {
                msg.node_endpoints = vec![NodeEndpoint::default()
                    .with_node_id(BrokerId(2))
                    .with_host(sb(ADVERTISED))
                    .with_port(30002)];
            }
            payload(ApiKey::Produce, v, &msg)
        }),
    ));
    all
}

#[test]
fn every_error_message_of_the_address_apis_is_scrubbed_and_nothing_else_changes() {
    let s = scrubber();
    for m in [
        "Request(processor=0, connectionId=127.0.0.11:9094-10.1.1.1:4444-0-14, session=x) needs DESCRIBE permission; leader b-3.msk.test:9094 at 127.0.0.13",
        "nothing to hide",
        "",
    ] {
        let expected_text = text(&s, m);
        let built = address_responses(m);
        let expected = address_responses(&expected_text);
        for ((key, build), (_, build_expected)) in built.iter().zip(&expected) {
            let t = text_carrying(*key as i16).unwrap();
            assert!(super::super::rewrite::inspected(*key as i16).is_some());
            let lowest = key.valid_versions().min.max(t.versions.min);
            for v in lowest..=t.versions.max {
                let original = build(v);
                let out = scrub_response(*key as i16, v, &original, &s)
                    .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
                let want = build_expected(v);
                match out {
                    None => assert_eq!(original, want, "{key:?} v{v}: nothing replaced"),
                    Some(frame) => {
                        assert_ne!(m, expected_text, "{key:?} v{v}: replaced nothing to hide");
                        assert_eq!(&frame[4..], &want[..], "{key:?} v{v}");
                        let got = String::from_utf8_lossy(&frame);
                        // (Names stand in fields that are not text on purpose; addresses do not.)
                        for upstream in IPS {
                            assert!(!got.contains(upstream), "{key:?} v{v}: {got}");
                        }
                    }
                }
                // Cut short: an error, never a panic or a forwarded half-scrub.
                assert!(
                    scrub_response(*key as i16, v, &original[..original.len() - 1], &s)
                        .is_err(),
                    "{key:?} v{v}"
                );
            }
        }
    }
    // Metadata and Fetch carry no text.
    for key in [ApiKey::Metadata, ApiKey::Fetch] {
        assert!(text_carrying(key as i16).is_none(), "{key:?}");
    }
}

// -----------------------------------------------------------------------------------------
// Every API of the table, every version: built from its schema, checked against
// kafka-protocol's own decoder, scrubbed.

/// The filler of every field that is not text: an upstream name, which must stay.
const NOT_TEXT: &str = "b-2.msk.test";

fn put_len(out: &mut Vec<u8>, flex: bool, n: usize, int32: bool) {
    if flex {
        let mut varint = [0; 5];
        let k = wire::put_uvarint(&mut varint, n as u32 + 1);
        out.extend_from_slice(&varint[..k]);
    } else if int32 {
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.extend_from_slice(&(n as i16).to_be_bytes());
    }
}

/// Encodes a response body from its schema at `version`: `m` in every text field,
/// [`NOT_TEXT`] in every other string, one element in every array, a present struct.
fn build_from_schema(fields: &[Field], version: i16, flex: bool, m: &str, out: &mut Vec<u8>) {
    for field in fields {
        if version < field.since || version > field.until {
            continue;
        }
        match field.kind {
            I8 => out.push(1),
            I16 => out.extend_from_slice(&3i16.to_be_bytes()),
            I32 => out.extend_from_slice(&5i32.to_be_bytes()),
            I64 => out.extend_from_slice(&0i64.to_be_bytes()),
            Uuid => out.extend_from_slice(&[7; 16]),
            Str | Text => {
                let s = if matches!(field.kind, Text) {
                    m
                } else {
                    NOT_TEXT
                };
                put_len(out, flex, s.len(), false);
                out.extend_from_slice(s.as_bytes());
            }
            I32s => {
                put_len(out, flex, 1, true);
                out.extend_from_slice(&9i32.to_be_bytes());
            }
            Strs => {
                put_len(out, flex, 1, true);
                put_len(out, flex, NOT_TEXT.len(), false);
                out.extend_from_slice(NOT_TEXT.as_bytes());
            }
            Blob => {
                put_len(out, flex, 3, true);
                out.extend_from_slice(b"abc");
            }
            Array(sub) => {
                put_len(out, flex, 1, true);
                build_from_schema(sub, version, flex, m, out);
            }
            Struct(sub) => build_from_schema(sub, version, flex, m, out),
            OptStruct(sub) => {
                out.push(1);
                build_from_schema(sub, version, flex, m, out);
            }
        }
    }
    if flex {
        out.push(0);
    }
}

/// A whole response payload (header with correlation id 7) built from the table's schema.
fn from_schema(t: &TextCarrying, version: i16, m: &str) -> Vec<u8> {
    let mut out = 7i32.to_be_bytes().to_vec();
    if response_header_version(t.key as i16, version) >= 1 {
        out.push(0);
    }
    build_from_schema(t.body, version, wire::flexible(t.key, version), m, &mut out);
    out
}

/// kafka-protocol's decode of a response payload (header, then body) at `version`: its Debug
/// text, and its encoding again. Panics where it does not decode or bytes are left.
fn decoded(key: ApiKey, version: i16, payload: &[u8]) -> (String, Vec<u8>) {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Decodable;
    fn go<M: Decodable + Encodable + std::fmt::Debug>(
        key: ApiKey,
        version: i16,
        payload: &[u8],
    ) -> (String, Vec<u8>) {
        let header_version = key.response_header_version(version);
        let mut buf = Bytes::copy_from_slice(payload);
        let header = ResponseHeader::decode(&mut buf, header_version)
            .unwrap_or_else(|e| panic!("{key:?} v{version} header: {e}"));
        let body = M::decode(&mut buf, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: kafka-protocol refuses it: {e}"));
        assert!(
            buf.is_empty(),
            "{key:?} v{version}: {} bytes left",
            buf.len()
        );
        let mut out = BytesMut::new();
        header.encode(&mut out, header_version).unwrap();
        body.encode(&mut out, version).unwrap();
        (format!("{body:?}"), out.to_vec())
    }
    macro_rules! by_key {
        ($($k:ident => $t:ty),* $(,)?) => {
            match key {
                $(ApiKey::$k => go::<$t>(key, version, payload),)*
                other => panic!("{other:?}: add it to the decoders of this test"),
            }
        };
    }
    by_key! {
        DescribeAcls => DescribeAclsResponse,
        CreateAcls => CreateAclsResponse,
        DeleteAcls => DeleteAclsResponse,
        DescribeConfigs => DescribeConfigsResponse,
        AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
        ListPartitionReassignments => ListPartitionReassignmentsResponse,
        ElectLeaders => ElectLeadersResponse,
        CreateTopics => CreateTopicsResponse,
        DeleteTopics => DeleteTopicsResponse,
        CreatePartitions => CreatePartitionsResponse,
        AlterConfigs => AlterConfigsResponse,
        IncrementalAlterConfigs => IncrementalAlterConfigsResponse,
        DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
        AlterUserScramCredentials => AlterUserScramCredentialsResponse,
        UpdateFeatures => UpdateFeaturesResponse,
        AlterClientQuotas => AlterClientQuotasResponse,
        DescribeClientQuotas => DescribeClientQuotasResponse,
        DescribeGroups => DescribeGroupsResponse,
        DescribeProducers => DescribeProducersResponse,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
        ConsumerGroupDescribe => ConsumerGroupDescribeResponse,
        ShareGroupHeartbeat => ShareGroupHeartbeatResponse,
        ShareGroupDescribe => ShareGroupDescribeResponse,
        AlterShareGroupOffsets => AlterShareGroupOffsetsResponse,
        DeleteShareGroupOffsets => DeleteShareGroupOffsetsResponse,
        DescribeShareGroupOffsets => DescribeShareGroupOffsetsResponse,
        InitializeShareGroupState => InitializeShareGroupStateResponse,
        ReadShareGroupState => ReadShareGroupStateResponse,
        ReadShareGroupStateSummary => ReadShareGroupStateSummaryResponse,
        WriteShareGroupState => WriteShareGroupStateResponse,
        DeleteShareGroupState => DeleteShareGroupStateResponse,
        SaslAuthenticate => SaslAuthenticateResponse,
        AddRaftVoter => AddRaftVoterResponse,
        RemoveRaftVoter => RemoveRaftVoterResponse,
        ControllerRegistration => ControllerRegistrationResponse,
        UnregisterBroker => UnregisterBrokerResponse,
        FindCoordinator => FindCoordinatorResponse,
        DescribeCluster => DescribeClusterResponse,
        DescribeQuorum => DescribeQuorumResponse,
        Produce => ProduceResponse,
        ShareFetch => ShareFetchResponse,
        ShareAcknowledge => ShareAcknowledgeResponse,
    }
}

/// Debug-quoted, as a string field shows in kafka-protocol's Debug output.
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// The lowest version of a table entry the tests build: the table's, not below the crate's.
fn lowest(t: &TextCarrying) -> i16 {
    t.versions.min.max(t.key.valid_versions().min)
}

/// For every API of the table at every version: the schema's frame is exactly what
/// kafka-protocol decodes and encodes again (so the schema has every field of that version, in
/// order), no field named like a message holds anything but the text (so every message field
/// is a text field of the schema), and the scrubbed frame decodes to the same message with only
/// the text replaced: every upstream name and address in it becomes the proxy's, nothing else
/// changes.
#[test]
fn every_api_of_the_table_at_every_version_is_walked_as_kafka_protocol_decodes_it() {
    let s = scrubber();
    let m = "Request(processor=0, connectionId=127.0.0.11:9094-10.1.1.1:4444-0-14) denied; leader b-3.msk.test:9094 at 127.0.0.13, bootstrap B-1.MSK.TEST";
    let scrubbed = text(&s, m);
    assert_ne!(scrubbed, m);
    let mut checked = 0;
    for t in &TEXT_CARRYING {
        for v in lowest(t)..=t.versions.max {
            let frame = from_schema(t, v, m);
            let (debug, again) = decoded(t.key, v, &frame);
            assert_eq!(
                again, frame,
                "{:?} v{v}: the schema is not the crate's layout",
                t.key
            );
            let texts = debug.matches(&quoted(m)).count();
            assert_eq!(texts > 0, v >= t.text_from, "{:?} v{v}: {debug}", t.key);
            assert!(
                !debug.contains(&format!("message: Some({})", quoted(NOT_TEXT))),
                "{:?} v{v}: a message field the schema does not scrub: {debug}",
                t.key
            );
            let out = scrub_response(t.key as i16, v, &frame, &s)
                .unwrap_or_else(|e| panic!("{:?} v{v}: {e}", t.key));
            match out {
                None => assert_eq!(texts, 0, "{:?} v{v}: text left as it was", t.key),
                Some(new) => {
                    assert_eq!(&new[..4], &(new.len() as i32 - 4).to_be_bytes());
                    let (after, _) = decoded(t.key, v, &new[4..]);
                    assert_eq!(
                        after,
                        debug.replace(&quoted(m), &quoted(&scrubbed)),
                        "{:?} v{v}",
                        t.key
                    );
                    for upstream in IPS.iter().chain(&["b-1.msk.test", "b-3.msk.test"]) {
                        assert!(
                            !after.to_ascii_lowercase().contains(upstream),
                            "{:?} v{v}: {upstream} in {after}",
                            t.key
                        );
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked} versions checked");
}

/// The crate's generated responses in the registry (the version Cargo.lock pins): every file
/// of `src/messages/*_response.rs`, by api name in snake case.
fn crate_responses() -> Vec<(String, String)> {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let lock = std::fs::read_to_string(format!("{manifest}/Cargo.lock")).expect("Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"kafka-protocol\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_owned())
        .expect("kafka-protocol in Cargo.lock");
    let cargo_home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap_or_default()));
    let registry = std::path::Path::new(&cargo_home).join("registry/src");
    let mut found = Vec::new();
    for index in std::fs::read_dir(&registry).expect("the cargo registry's sources") {
        let dir = index
            .unwrap()
            .path()
            .join(format!("kafka-protocol-{version}/src/messages"));
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for file in files {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(api) = name.strip_suffix("_response.rs") {
                found.push((api.to_owned(), std::fs::read_to_string(&path).unwrap()));
            }
        }
        if !found.is_empty() {
            break;
        }
    }
    assert!(
        found.len() > 80,
        "kafka-protocol {version}'s sources not found under {}",
        registry.display()
    );
    found
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The table is complete: every response kafka-protocol generates with a message field (a
/// string field whose name ends in `message`) is in [`TEXT_CARRYING`], and every entry of the
/// table has one. A crate upgrade that adds a response with an error message fails here.
#[test]
fn every_response_with_a_message_field_in_kafka_protocol_is_in_the_table() {
    let in_table: std::collections::BTreeSet<String> = TEXT_CARRYING
        .iter()
        .map(|t| snake(&format!("{:?}", t.key)))
        .collect();
    let mut with_message = std::collections::BTreeSet::new();
    for (api, source) in crate_responses() {
        let has = source.lines().any(|l| {
            let l = l.trim();
            l.starts_with("pub ")
                && l.contains("message:")
                && l.contains("StrBytes")
                && !l.starts_with("pub fn")
        });
        if has {
            with_message.insert(api);
        }
    }
    let missing: Vec<_> = with_message.difference(&in_table).collect();
    assert!(
        missing.is_empty(),
        "responses with a message not scrubbed: {missing:?}"
    );
    let extra: Vec<_> = in_table.difference(&with_message).collect();
    assert!(
        extra.is_empty(),
        "table entries with no message field: {extra:?}"
    );
    assert_eq!(with_message.len(), TEXT_CARRYING.len());
}
