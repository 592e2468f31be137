//! The Metadata rewrite against cluster size: 3 / 30 / 300 brokers × 1,000 / 100,000
//! partitions (topics of 100 partitions, 3 replicas, Metadata v12), through the proxy's own
//! `rewrite_response` (the working tree's, linked by path).
//!
//!   cargo bench --features rewrite --bench metadata
//!
//! First, for every case, one pass with a counting allocator: allocations and bytes per
//! rewrite, the peak heap above the input during a rewrite, and a median time over repeated
//! runs; printed as a table and written to target/ceiling/rewrite-curve.json (what
//! benches/ceiling/plot.py draws). Then criterion times each case.

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataResponse, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_tls_proxy::kafka::rewrite::rewrite_response;
use kafka_tls_proxy::kafka::{AddressMapper, Advertised, MapError};
use ktp_ceiling::alloc::{self, Counting};

#[global_allocator]
static GLOBAL: Counting<System> = Counting(System);

/// Node N → proxy.local:19000+N, like the broker table once every node is known.
struct Mapper;

impl AddressMapper for Mapper {
    fn map_broker(
        &mut self,
        node_id: i32,
        _host: &str,
        _port: i32,
    ) -> Result<Advertised, MapError> {
        Ok(Advertised {
            host: StrBytes::from_static_str("proxy.local"),
            port: 19000 + node_id,
        })
    }
    fn map_controller(&mut self, _node_id: i32, _host: &str, _port: i32) -> Advertised {
        Advertised {
            host: StrBytes::from_static_str("proxy.local"),
            port: 0,
        }
    }
}

fn uuid<T: std::str::FromStr>(n: u32) -> T
where
    T::Err: std::fmt::Debug,
{
    format!("{:032x}", u128::from(n) + 1).parse().expect("uuid")
}

/// Metadata v12 payload (response header included, length prefix not), as the connection hands
/// it to the rewrite.
fn metadata(brokers: i32, partitions: i32) -> Bytes {
    let brokers_list = (1..=brokers)
        .map(|id| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(format!(
                    "b-{id}.demo.abc123.c2.kafka.eu-west-1.amazonaws.com"
                )))
                .with_port(9094)
                .with_rack(Some(StrBytes::from_string(format!(
                    "euw1-az{}",
                    id % 3 + 1
                ))))
        })
        .collect();
    let per_topic = 100;
    let topics = (0..partitions / per_topic)
        .map(|t| {
            let parts = (0..per_topic)
                .map(|p| {
                    let leader = (p + t) % brokers + 1;
                    let replicas: Vec<BrokerId> = (0..3.min(brokers))
                        .map(|r| BrokerId((leader + r - 1) % brokers + 1))
                        .collect();
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(3)
                        .with_replica_nodes(replicas.clone())
                        .with_isr_nodes(replicas)
                })
                .collect();
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(format!("topic-{t}")))))
                .with_topic_id(uuid(t as u32))
                .with_partitions(parts)
        })
        .collect();
    let msg = MetadataResponse::default()
        .with_brokers(brokers_list)
        .with_cluster_id(Some(StrBytes::from_static_str("Xy-Cluster")))
        .with_controller_id(BrokerId(1))
        .with_topics(topics);
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(42)
        .encode(&mut buf, ApiKey::Metadata.response_header_version(12))
        .expect("header");
    msg.encode(&mut buf, 12).expect("body");
    buf.freeze()
}

const CASES: [(i32, i32); 6] = [
    (3, 1_000),
    (30, 1_000),
    (300, 1_000),
    (3, 100_000),
    (30, 100_000),
    (300, 100_000),
];

fn curve() {
    let mut rows = Vec::new();
    println!(
        "{:>8} {:>11} {:>10} {:>12} {:>8} {:>12} {:>12} {:>10}",
        "brokers",
        "partitions",
        "bytes",
        "median_us",
        "allocs",
        "alloc_bytes",
        "peak_heap",
        "ns/byte"
    );
    for (brokers, partitions) in CASES {
        let frame = metadata(brokers, partitions);
        // Warm up, then one counted rewrite.
        for _ in 0..3 {
            black_box(rewrite_response(3, 12, &frame, &mut Mapper).expect("rewrite"));
        }
        alloc::set_counting(true);
        let base = alloc::reset_peak();
        let (a0, b0) = alloc::snapshot();
        let out = rewrite_response(3, 12, black_box(&frame), &mut Mapper).expect("rewrite");
        let (a1, b1) = alloc::snapshot();
        let peak = alloc::peak() - base;
        drop(out);
        alloc::set_counting(false);
        // Median time over enough runs for ~1 s.
        let t = Instant::now();
        black_box(rewrite_response(3, 12, &frame, &mut Mapper).expect("rewrite"));
        let once = t.elapsed().max(Duration::from_micros(1));
        let n = (Duration::from_secs(1).as_nanos() / once.as_nanos()).clamp(5, 2000) as usize;
        let mut times: Vec<f64> = (0..n)
            .map(|_| {
                let t = Instant::now();
                black_box(
                    rewrite_response(3, 12, black_box(&frame), &mut Mapper).expect("rewrite"),
                );
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = times[times.len() / 2];
        let (p10, p90) = (times[times.len() / 10], times[times.len() * 9 / 10]);
        println!(
            "{brokers:>8} {partitions:>11} {:>10} {median:>12.1} {:>8} {:>12} {peak:>12} {:>10.3}",
            frame.len(),
            a1 - a0,
            b1 - b0,
            median * 1000.0 / frame.len() as f64
        );
        rows.push(serde_json::json!({
            "brokers": brokers, "partitions": partitions, "bytes": frame.len(),
            "median_us": median, "p10_us": p10, "p90_us": p90, "runs": n,
            "allocations": a1 - a0, "allocated_bytes": b1 - b0, "peak_heap_bytes": peak,
            "ns_per_byte": median * 1000.0 / frame.len() as f64,
        }));
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/ceiling");
    let _ = std::fs::create_dir_all(dir);
    let path = format!("{dir}/rewrite-curve.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rows).unwrap()).expect("write");
    println!("written to {path}");
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    if !bench_mode {
        // cargo test: one small case, once.
        let frame = metadata(3, 1_000);
        rewrite_response(3, 12, &frame, &mut Mapper).expect("rewrite");
        return;
    }
    curve();
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let mut g = c.benchmark_group("metadata_rewrite");
    for (brokers, partitions) in CASES {
        let frame = metadata(brokers, partitions);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(
            format!("v12_{brokers}_brokers_{partitions}_partitions"),
            |b| {
                b.iter(|| rewrite_response(3, 12, black_box(&frame), &mut Mapper).expect("rewrite"))
            },
        );
    }
    g.finish();
    c.final_summary();
}
