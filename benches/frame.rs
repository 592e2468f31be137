//! What the request path costs per frame: the header peek and, for Produce, the `acks` peek
//! (every request pays the first; every Produce request pays the second), and splitting a read
//! buffer into frames, as the request pump does on each read.
//!
//! Frames are built with kafka-protocol the way a Java client sends them: Produce v11 (flexible,
//! header v2 with a client id), 1 KiB of record bytes, with and without a transactional id.

use std::hint::black_box;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_tls_proxy::kafka::frame::{self, expects_response, request_header, FrameReader};

/// A Produce request frame (length prefix included) with `records` bytes in one partition.
fn produce(version: i16, acks: i16, transactional_id: Option<&str>, records: usize) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(version)
        .with_correlation_id(12345)
        .with_client_id(Some(StrBytes::from_static_str("producer-1")));
    let partition = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(Bytes::from(vec![0x5au8; records])));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("bench-topic")))
        .with_partition_data(vec![partition]);
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_transactional_id(transactional_id.map(|t| StrBytes::from_string(t.into()).into()))
        .with_topic_data(vec![topic]);
    let header_version = if version >= 9 { 2 } else { 1 };
    let mut body = BytesMut::new();
    header.encode(&mut body, header_version).expect("header");
    request.encode(&mut body, version).expect("body");
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame.freeze()
}

/// A Fetch-like request frame: only its fixed header matters to the proxy.
fn fetch_request() -> Bytes {
    let mut body = BytesMut::new();
    body.put_i16(1); // api key Fetch
    body.put_i16(17);
    body.put_i32(777);
    body.put_i16(10);
    body.put_slice(b"consumer-1");
    body.put_slice(&[0u8; 80]); // the rest of a small Fetch request, never read
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame.freeze()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");

    let fetch = fetch_request();
    g.throughput(Throughput::Elements(1));
    g.bench_function("request_header_fetch", |b| {
        b.iter(|| request_header(black_box(&fetch)).expect("header"))
    });
    g.bench_function("request_header_and_expects_response_fetch", |b| {
        b.iter(|| {
            let f = black_box(&fetch);
            let h = request_header(f).expect("header");
            expects_response(&h, f)
        })
    });

    for (name, acks, txn) in [
        ("produce_v11_acks_all", -1i16, None),
        ("produce_v11_acks_0", 0, None),
        (
            "produce_v11_acks_all_transactional",
            -1,
            Some("svc.txn-0042"),
        ),
    ] {
        let f = produce(11, acks, txn, 1024);
        g.bench_function(format!("request_header_and_acks_peek_{name}"), |b| {
            b.iter(|| {
                let f = black_box(&f);
                let h = request_header(f).expect("header");
                expects_response(&h, f)
            })
        });
    }
    let v3 = produce(3, -1, None, 1024);
    g.bench_function("request_header_and_acks_peek_produce_v3_acks_all", |b| {
        b.iter(|| {
            let f = black_box(&v3);
            let h = request_header(f).expect("header");
            expects_response(&h, f)
        })
    });

    // The request pump's whole per-read work: split a read buffer of pipelined Produce
    // requests (5 in flight, 16 KiB batches each) into a chunk and peek every frame.
    let one = produce(11, -1, None, 16 * 1024);
    let mut read = BytesMut::new();
    for _ in 0..5 {
        read.extend_from_slice(&one);
    }
    let read = read.freeze();
    g.throughput(Throughput::Bytes(read.len() as u64));
    g.bench_function("read_buffer_5_produce_16kib_chunk_and_peek", |b| {
        let reader = FrameReader::new(100 * 1024 * 1024);
        b.iter_batched(
            || BytesMut::from(&read[..]),
            |mut buf| {
                let chunk = reader.next_chunk(&mut buf).expect("ok").expect("complete");
                let mut expecting = 0;
                for range in frame::frames(&chunk) {
                    let f = &chunk[range];
                    let h = request_header(f).expect("header");
                    expecting += usize::from(expects_response(&h, f).unwrap_or(true));
                }
                assert_eq!(expecting, 5);
                chunk
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
