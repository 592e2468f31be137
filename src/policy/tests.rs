use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use super::samples::*;
use super::*;

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
        // Forwarded under `full` only, and audited by its number: it may change anything.
        assert!(audited(api_key));
        assert_eq!(
            audit_resources(&h, &frame, &Default::default()).unwrap(),
            vec![format!("unknown api key {api_key} v0")]
        );
        assert!(audit_outcome(api_key, 0, &[0, 0, 0, 1]).unwrap().is_empty());
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
                if key == ApiKey::Metadata && !policy.allows(Access::Admin) {
                    // The one allowed request a policy reads: whether it could create topics
                    // (see metadata_cannot_create_topics_under_a_policy_without_admin). A
                    // header without a body does not parse.
                    assert!(matches!(got, Decision::Close { .. }), "{policy}: {got:?}");
                } else if policy.allows(r.access) {
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
                    audit_resources(&h, &short, &Default::default()).is_err(),
                    "{key:?} v{v} cut {cut}"
                );
            }
            // Bytes after the message: the broker ignores them and acts on the request, so
            // the policy answers and the audit names it exactly as without them.
            for tail in [&[0u8][..], &[0xff; 7][..]] {
                let mut long = BytesMut::from(&frame[..]);
                long.put_slice(tail);
                let len = (long.len() - 4) as i32;
                long[..4].copy_from_slice(&len.to_be_bytes());
                assert_eq!(
                    decide(policy, &h, &long),
                    decide(policy, &h, &frame),
                    "{key:?} v{v}: trailing {tail:?}"
                );
                assert_eq!(
                    audit_resources(&h, &long, &Default::default()).unwrap(),
                    audit_resources(&h, &frame, &Default::default()).unwrap(),
                    "{key:?} v{v}: trailing {tail:?}"
                );
            }
            // Every byte of the body replaced: anything may come out but a panic, and a
            // denial must still be a well-formed frame with the client's id.
            for at in 12..frame.len() {
                for byte in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                    let mut bad = BytesMut::from(&frame[..]);
                    bad[at] = byte;
                    let _ = audit_resources(&h, &bad, &Default::default());
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
                    audit_resources(&h, &frame, &Default::default()),
                    Err(PolicyError::UnsupportedVersion { .. })
                ),
                "{key:?} v{v}"
            );
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

fn metadata_request(v: i16, topics: Option<&[&str]>, allow_auto_topic_creation: bool) -> Bytes {
    use metadata_request::MetadataRequestTopic;
    let topics = topics.map(|names| {
        names
            .iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(tn(n))))
            .collect()
    });
    let mut request = MetadataRequest::default().with_topics(topics);
    if v >= 4 {
        request = request.with_allow_auto_topic_creation(allow_auto_topic_creation);
    }
    request_frame(ApiKey::Metadata, v, &request)
}

#[test]
fn metadata_cannot_create_topics_under_a_policy_without_admin() {
    for v in 0..=13i16 {
        let named = metadata_request(v, Some(&["orders", "new-topic"]), true);
        let h = header(&named);
        assert_eq!(decide(Policy::Full, &h, &named), Decision::Allow, "v{v}");
        for policy in [Policy::ReadOnly, Policy::NoAdmin] {
            match decide(policy, &h, &named) {
                // v4+: the flag is cleared, nothing else changes.
                Decision::AllowWithoutAutoCreate { clear } if v >= 4 => {
                    assert_eq!(named[clear], 1, "v{v}");
                    let mut cleared = named.to_vec();
                    cleared[clear] = 0;
                    let mut body = Bytes::from(cleared).slice(4..);
                    let hv = ApiKey::Metadata.request_header_version(v);
                    km_header_decode(&mut body, hv);
                    let got = MetadataRequest::decode(&mut body, v).unwrap();
                    let want = {
                        let mut b = named.slice(4..);
                        km_header_decode(&mut b, hv);
                        MetadataRequest::decode(&mut b, v).unwrap()
                    };
                    assert!(!got.allow_auto_topic_creation, "v{v}");
                    assert_eq!(got.topics, want.topics, "v{v}");
                    assert_eq!(
                        got.include_topic_authorized_operations,
                        want.include_topic_authorized_operations
                    );
                }
                // v0-v3 always auto-create: denied, each topic TOPIC_AUTHORIZATION_FAILED.
                Decision::Deny {
                    response,
                    error_code,
                } if v < 4 => {
                    assert_eq!(error_code, TOPIC_AUTHORIZATION_FAILED);
                    let mut body = response.slice(4..);
                    assert_eq!(&body[..4], &CID.to_be_bytes());
                    body = body.slice(4..);
                    let got = MetadataResponse::decode(&mut body, v).unwrap();
                    let names: Vec<_> = got
                        .topics
                        .iter()
                        .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.error_code))
                        .collect();
                    assert_eq!(
                        names,
                        vec![
                            ("orders".to_owned(), TOPIC_AUTHORIZATION_FAILED),
                            ("new-topic".to_owned(), TOPIC_AUTHORIZATION_FAILED)
                        ]
                    );
                    assert!(got.brokers.is_empty());
                }
                other => panic!("{policy} v{v}: {other:?}"),
            }
            // Requests that cannot create anything pass untouched.
            let all = metadata_request(v, if v == 0 { Some(&[]) } else { None }, true);
            assert_eq!(decide(policy, &header(&all), &all), Decision::Allow, "v{v}");
            if v >= 1 {
                let none = metadata_request(v, Some(&[]), true);
                assert_eq!(decide(policy, &header(&none), &none), Decision::Allow);
            }
            if v >= 4 {
                let off = metadata_request(v, Some(&["orders"]), false);
                assert_eq!(decide(policy, &header(&off), &off), Decision::Allow);
            }
            // Cut short: closed, never a panic.
            for cut in 12..named.len() {
                let mut short = BytesMut::from(&named[..cut]);
                short[..4].copy_from_slice(&((cut - 4) as i32).to_be_bytes());
                let _ = decide(policy, &h, &short);
            }
        }
    }
}

/// Steps over a request header at `version` in `body`.
fn km_header_decode(body: &mut Bytes, version: i16) {
    kafka_protocol::messages::RequestHeader::decode(body, version).unwrap();
}

/// A Produce request at `v` (v3+) with `topics` topics of `partitions` partitions each, topic
/// names of `name_len` bytes, and `record_bytes` of records per partition.
fn produce_shape(
    v: i16,
    topics: i32,
    partitions: i32,
    name_len: usize,
    record_bytes: usize,
) -> Bytes {
    use produce_request::*;
    let msg = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(
            (0..topics)
                .map(|t| {
                    TopicProduceData::default()
                        .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                            format!("{t:0name_len$}")[..name_len].to_owned(),
                        )))
                        .with_partition_data(
                            (0..partitions)
                                .map(|p| {
                                    PartitionProduceData::default()
                                        .with_index(p)
                                        .with_records(Some(Bytes::from(vec![7u8; record_bytes])))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    request_frame(ApiKey::Produce, v, &msg)
}

/// The answer kafka-protocol encodes for a denied Produce at `v` (v3+): every partition of
/// the request with `code`, base_offset -1 and (v8+) `message`.
fn kafka_protocol_answer(v: i16, frame: &Bytes, code: i16, message: &str) -> Bytes {
    use kafka_protocol::protocol::Encodable;
    use produce_response::*;
    let h = header(frame);
    let mut body = frame.slice(4..);
    kafka_protocol::messages::RequestHeader::decode(
        &mut body,
        ApiKey::Produce.request_header_version(v),
    )
    .unwrap();
    let request = ProduceRequest::decode(&mut body, v).unwrap();
    let response = ProduceResponse::default().with_responses(
        request
            .topic_data
            .iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|p| {
                                PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_error_code(code)
                                    .with_base_offset(-1)
                                    .with_error_message((v >= 8).then(|| {
                                        kafka_protocol::protocol::StrBytes::from_string(
                                            message.to_owned(),
                                        )
                                    }))
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    let mut out = BytesMut::new();
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(h.correlation_id)
        .encode(&mut out, ApiKey::Produce.response_header_version(v))
        .unwrap();
    response.encode(&mut out, v).unwrap();
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.freeze()
}

#[test]
fn a_denied_produce_is_charged_exactly_the_answer_it_gets_at_every_version_and_shape() {
    let message = super::deny::message(Policy::ReadOnly);
    for v in versions(ApiKey::Produce) {
        let mut frames = vec![if v < 3 {
            produce_v0_v2_request(v, -1)
        } else {
            produce_request(v, -1)
        }];
        if v >= 3 {
            frames.extend([
                // The most entries per byte: empty names, bare partitions, no records.
                produce_shape(v, 3, 200, 0, 0),
                // An ordinary large Produce: few partitions, much record data.
                produce_shape(v, 1, 2, 12, 512 * 1024),
                // Names long enough for two-byte compact lengths.
                produce_shape(v, 2, 3, 200, 10),
            ]);
        }
        for frame in frames {
            let h = header(&frame);
            let charge = answer_charge(Policy::ReadOnly, &h, &frame, 0);
            let Decision::Deny {
                response,
                error_code,
            } = decide(Policy::ReadOnly, &h, &frame)
            else {
                panic!("v{v}: not denied with an answer");
            };
            assert_eq!(
                charge,
                response.len(),
                "v{v}: the charge is the answer's length"
            );
            if v >= 3 {
                assert_eq!(
                    response,
                    kafka_protocol_answer(v, &frame, error_code, &message),
                    "v{v}: the same bytes kafka-protocol encodes"
                );
            }
        }
    }
}

#[test]
fn a_1_mib_denied_produce_is_charged_its_answer_not_a_bound_from_its_records() {
    let frame = produce_shape(9, 1, 1, 6, 1024 * 1024);
    let h = header(&frame);
    let bound = answer_bound(h.api_key, frame.len());
    assert_eq!(
        answer_charge(Policy::ReadOnly, &h, &frame, bound),
        bound,
        "where the bound fits, it is charged"
    );
    let charge = answer_charge(Policy::ReadOnly, &h, &frame, 8 << 20);
    assert!(
        charge < 200,
        "{charge} bytes for one partition's answer ({} by the length bound)",
        answer_bound(h.api_key, frame.len())
    );
}

/// Found by the `policy` fuzz target: a Produce v0 whose topic array is null (-1), which Kafka
/// and the audit's reader refuse, was answered as a denial naming no topic. It closes the
/// connection now, as every request the policy cannot read does; so does a Produce v3 whose
/// transactional id is not UTF-8.
#[test]
fn a_produce_the_audit_cannot_read_is_never_answered() {
    let mut frame = BytesMut::new();
    frame.put_i32(0); // length, set below
    frame.put_i16(ApiKey::Produce as i16);
    frame.put_i16(0);
    frame.put_i32(0); // correlation id
    frame.put_i16(-1); // client id: null
    frame.put_i16(-1); // acks
    frame.put_i32(-1); // timeout
    frame.put_i32(-1); // topic_data: null
    let len = frame.len() as i32 - 4;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    let frame = frame.freeze();
    assert!(audit_resources(&header(&frame), &frame, &Default::default()).is_err());
    assert!(
        matches!(
            decide(Policy::ReadOnly, &header(&frame), &frame),
            Decision::Close { .. }
        ),
        "{:?}",
        decide(Policy::ReadOnly, &header(&frame), &frame)
    );

    let mut frame = BytesMut::new();
    frame.put_i32(0);
    frame.put_i16(ApiKey::Produce as i16);
    frame.put_i16(3);
    frame.put_i32(0);
    frame.put_i16(-1);
    frame.put_i16(2); // transactional id: two bytes that are not UTF-8
    frame.put_slice(&[0xff, 0xfe]);
    frame.put_i16(-1); // acks
    frame.put_i32(1000);
    frame.put_i32(0); // no topics
    let len = frame.len() as i32 - 4;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    let frame = frame.freeze();
    assert!(audit_resources(&header(&frame), &frame, &Default::default()).is_err());
    assert!(matches!(
        decide(Policy::ReadOnly, &header(&frame), &frame),
        Decision::Close { .. }
    ));
}
