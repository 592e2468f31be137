//! Kafka frames for the load generator and the fake broker, built once with kafka-protocol and
//! then reused with only the correlation id changed.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, ProduceRequest, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub const LENGTH_PREFIX: usize = 4;
pub const TOPIC: &str = "bench";
pub const CLIENT_ID: &str = "ceiling";

/// The topic id every frame names (topic ids from Fetch v13 and Produce v13).
pub fn topic_id<T: std::str::FromStr>() -> T
where
    T::Err: std::fmt::Debug,
{
    "7b4c2f0e-5d1a-4e3b-9c8d-0123456789ab"
        .parse()
        .expect("uuid")
}

/// Length of the complete frame at the front of `buf` (prefix included), if it has arrived.
pub fn complete_frame(buf: &[u8]) -> Option<usize> {
    let len = i32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
    let total = LENGTH_PREFIX + usize::try_from(len).ok()?;
    (buf.len() >= total).then_some(total)
}

/// Length the frame at the front announces (prefix included), complete or not.
pub fn announced_frame(buf: &[u8]) -> Option<usize> {
    let len = i32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
    Some(LENGTH_PREFIX + usize::try_from(len).ok()?)
}

fn finish(mut out: BytesMut) -> BytesMut {
    let len = (out.len() - LENGTH_PREFIX) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

pub fn request_frame<M: Encodable>(api_key: ApiKey, version: i16, corr: i32, body: &M) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)))
        .encode(&mut out, api_key.request_header_version(version))
        .expect("request header");
    body.encode(&mut out, version).expect("request body");
    finish(out)
}

pub fn response_header_version(api_key: i16, version: i16) -> i16 {
    match ApiKey::try_from(api_key) {
        Ok(ApiKey::ApiVersions) | Err(_) => 0,
        Ok(k) => k.response_header_version(version),
    }
}

pub fn response_frame<M: Encodable>(
    api_key: ApiKey,
    version: i16,
    corr: i32,
    body: &M,
) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(corr)
        .encode(&mut out, response_header_version(api_key as i16, version))
        .expect("response header");
    body.encode(&mut out, version).expect("response body");
    finish(out)
}

/// A record batch (magic 2, uncompressed) holding one record of `value_len` bytes.
pub fn record_batch(value_len: usize) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from(vec![0x61u8; value_len])),
        headers: IndexMap::new(),
        delete_horizon: false,
    };
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("record batch");
    out.freeze()
}

/// Picks the record size so that `build(value_len)` is `target` bytes long (or as close as
/// varint lengths allow).
fn sized(target: usize, build: impl Fn(usize) -> BytesMut) -> BytesMut {
    let mut value = target.saturating_sub(200);
    for _ in 0..4 {
        let frame = build(value);
        if frame.len() == target {
            return frame;
        }
        let diff = frame.len() as i64 - target as i64;
        value = (value as i64 - diff).max(1) as usize;
    }
    build(value)
}

/// A Produce request of `frame_bytes` (prefix included), correlation id 0.
pub fn produce_request(version: i16, frame_bytes: usize, acks: i16) -> Bytes {
    sized(frame_bytes, |value| {
        let body = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_topic_id(topic_id())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(record_batch(value)))])]);
        request_frame(ApiKey::Produce, version, 0, &body)
    })
    .freeze()
}

/// A Fetch request for one partition; `partition_max_bytes` tells the fake broker how large an
/// answer to make.
pub fn fetch_request(version: i16, partition_max_bytes: usize) -> Bytes {
    let body = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(i32::MAX)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_topic_id(topic_id())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(partition_max_bytes as i32)])])
        .with_rack_id(StrBytes::from_static_str(""));
    request_frame(ApiKey::Fetch, version, 0, &body).freeze()
}

pub fn api_versions_request(version: i16) -> Bytes {
    let body = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("ceiling"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    request_frame(ApiKey::ApiVersions, version, 0, &body).freeze()
}

pub fn set_request_correlation_id(frame: &mut [u8], id: i32) {
    frame[8..12].copy_from_slice(&id.to_be_bytes());
}

pub fn set_response_correlation_id(frame: &mut [u8], id: i32) {
    frame[4..8].copy_from_slice(&id.to_be_bytes());
}

/// The fixed part of a request header, and where the body starts.
#[derive(Debug, Clone, Copy)]
pub struct ReqHeader {
    pub api_key: i16,
    pub version: i16,
    pub corr: i32,
    pub body: usize,
}

fn uvarint(buf: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(at)?;
        at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((v, at));
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Skips tagged fields at `at`; returns the offset after them.
fn skip_tagged(buf: &[u8], at: usize) -> Option<usize> {
    let (n, mut at) = uvarint(buf, at)?;
    for _ in 0..n {
        let (_, a) = uvarint(buf, at)?;
        let (size, a) = uvarint(buf, a)?;
        at = a + size as usize;
    }
    Some(at)
}

/// Parses the request header of a whole frame (prefix included).
pub fn request_header(frame: &[u8]) -> Option<ReqHeader> {
    let api_key = i16::from_be_bytes(frame.get(4..6)?.try_into().ok()?);
    let version = i16::from_be_bytes(frame.get(6..8)?.try_into().ok()?);
    let corr = i32::from_be_bytes(frame.get(8..12)?.try_into().ok()?);
    let hv = ApiKey::try_from(api_key)
        .map(|k| k.request_header_version(version))
        .unwrap_or(1);
    let mut at = 12;
    if hv >= 1 {
        let len = i16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
        at = 14 + len.max(0) as usize;
    }
    if hv >= 2 {
        at = skip_tagged(frame, at)?;
    }
    Some(ReqHeader {
        api_key,
        version,
        corr,
        body: at,
    })
}

/// The `acks` of a Produce request (v3+: after the transactional id).
pub fn produce_acks(frame: &[u8], h: &ReqHeader) -> Option<i16> {
    let mut at = h.body;
    if h.version >= 9 {
        let (n, a) = uvarint(frame, at)?;
        at = a + n.saturating_sub(1) as usize;
    } else if h.version >= 3 {
        let len = i16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?);
        at += 2 + len.max(0) as usize;
    }
    Some(i16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
}

/// The `partition_max_bytes` of the first partition of a Fetch request.
pub fn fetch_partition_max_bytes(frame: &[u8], h: &ReqHeader) -> Option<usize> {
    let mut body = Bytes::copy_from_slice(frame.get(h.body..)?);
    let req = FetchRequest::decode(&mut body, h.version).ok()?;
    let p = req.topics.first()?.partitions.first()?;
    usize::try_from(p.partition_max_bytes).ok()
}
