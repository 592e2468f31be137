//! Tests of [`super::flexible`] against kafka-protocol's own encoding.

use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FindCoordinatorRequest, MetadataRequest, ProduceRequest,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Encodable, Message, StrBytes};

use super::flexible;

/// True when kafka-protocol wrote `text` with a compact (varint length + 1) prefix in `bytes`,
/// false for an int16 length; panics when it wrote neither.
fn compact_in(bytes: &[u8], text: &str) -> bool {
    let at = bytes
        .windows(text.len())
        .position(|w| w == text.as_bytes())
        .expect("the string is in the encoding");
    let n = text.len();
    if at >= 2 && bytes[at - 2..at] == (n as i16).to_be_bytes() {
        false
    } else {
        assert_eq!(
            bytes[at - 1] as usize,
            n + 1,
            "neither int16 nor compact length"
        );
        true
    }
}

fn check<M: Message + Encodable>(key: ApiKey, text: &str, make: impl Fn(i16) -> Option<M>) {
    let mut seen = 0;
    for v in M::VERSIONS.min..=M::VERSIONS.max {
        let Some(message) = make(v) else { continue };
        let mut buf = bytes::BytesMut::new();
        message.encode(&mut buf, v).unwrap();
        assert_eq!(
            compact_in(&buf, text),
            flexible(key, v),
            "{key:?} v{v}: flexible() disagrees with kafka-protocol's encoding"
        );
        seen += 1;
    }
    assert!(seen > 0, "{key:?}: no version checked");
}

#[test]
fn flexible_agrees_with_kafka_protocols_encoding() {
    let name = "flexcheck-topic";
    check(ApiKey::Metadata, name, |v| {
        (v >= 1).then(|| {
            MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str(name)))),
            ]))
        })
    });
    check(ApiKey::FindCoordinator, name, |v| {
        (v <= 3)
            .then(|| FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(name)))
    });
    check(ApiKey::Produce, name, |v| {
        (v >= 3).then(|| {
            ProduceRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(name))))
        })
    });
    check(ApiKey::CreateTopics, name, |_| {
        Some(CreateTopicsRequest::default().with_topics(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(name))),
        ]))
    });
}
