//! What address rewriting costs per response, in time and in memory.
//!
//! - Metadata (what clients repeat on every metadata refresh) and FindCoordinator, rewritten by
//!   splicing (`rewrite_response`, what the proxy runs) and by decoding and re-encoding
//!   (`rewrite::oracle`, what it ran before), side by side: criterion times both, and a counting
//!   global allocator records the peak heap of one rewrite of each (printed as a table at the
//!   end, with the two responses of the "bounded resources" issue: Metadata v0 with 2M empty
//!   topics, Fetch v16 of ~69 MiB with `node_endpoints`).
//! - The `node_endpoints` check on a large Fetch response without endpoints, which every Fetch
//!   v16+ response pays, against a full kafka-protocol decode of the same bytes (what the check
//!   avoids), and the ApiVersions capping.
//!
//! `cargo bench --bench rewrite -- --warm-up-time 1 --measurement-time 3`. Under `cargo test`
//! (criterion's test mode, no `--bench` argument) only the small cases run, once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{self, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchResponse, FindCoordinatorResponse,
    MetadataResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_tls_proxy::kafka::rewrite::{oracle, rewrite_response, RewriteError};
use kafka_tls_proxy::kafka::{inspect_response, AddressMapper, Advertised, MapError};

/// The system allocator, counting the bytes live and their peak, so that a rewrite's peak heap
/// can be read off (one thread allocates at a time here, so the figures are exact).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let live = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = System.realloc(p, layout, new_size);
        if !q.is_null() {
            // Counted as a new block and then the old one freed: a moving realloc holds both.
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at the peak of `f`, above what was live before it, what it returns
/// included (a rewrite's new frame).
fn peak_heap<T>(f: impl FnOnce() -> T) -> usize {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let out = f();
    let peak = PEAK.load(Relaxed) - before;
    drop(out);
    peak
}

/// Maps node N to proxy.local:19000+N, like the broker registry once every node is known.
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

type RewriteFn =
    fn(i16, i16, &Bytes, &mut dyn AddressMapper) -> Result<Option<Bytes>, RewriteError>;

/// The two rewrites compared: what the proxy ran before (decode, edit, re-encode) and what it
/// runs now.
const PATHS: [(&str, RewriteFn); 2] = [
    ("decode", oracle::rewrite_response),
    ("splice", rewrite_response),
];

/// Response payload without the length prefix, as the connection hands it to the rewrite.
fn payload<M: Encodable>(api_key: ApiKey, version: i16, msg: &M) -> Bytes {
    let mut buf = BytesMut::new();
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    ResponseHeader::default()
        .with_correlation_id(42)
        .encode(&mut buf, header_version)
        .expect("header");
    msg.encode(&mut buf, version).expect("body");
    buf.freeze()
}

/// A topic id, parsed into the field's type (the uuid crate is not a direct dependency).
fn uuid<T: std::str::FromStr>(n: u32) -> T
where
    T::Err: std::fmt::Debug,
{
    format!("{:032x}", u128::from(n) + 1).parse().expect("uuid")
}

fn msk_host(id: i32) -> StrBytes {
    StrBytes::from_string(format!(
        "b-{id}.demo.abc123.c2.kafka.eu-west-1.amazonaws.com"
    ))
}

/// Metadata `version` with `brokers` brokers and `partitions` partitions (replication factor
/// 3) over 10 topics.
fn metadata(version: i16, brokers: i32, partitions: i32) -> Bytes {
    let brokers_list = (1..=brokers)
        .map(|id| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(msk_host(id))
                .with_port(9094)
                .with_rack(Some(StrBytes::from_string(format!(
                    "euw1-az{}",
                    id % 3 + 1
                ))))
        })
        .collect();
    let topics = (0..10)
        .map(|t| {
            let parts = (0..partitions / 10)
                .map(|p| {
                    let leader = (p + t) % brokers + 1;
                    let replicas: Vec<BrokerId> = (0..3)
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
    payload(ApiKey::Metadata, version, &msg)
}

/// Metadata v0 naming 3 brokers and `topics` topics with empty names and no partitions (the
/// issue's 15 MiB response; 8 bytes per topic).
fn metadata_v0_empty_topics(topics: usize) -> Bytes {
    let msg = MetadataResponse::default().with_brokers(
        (1..=3)
            .map(|id| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(msk_host(id))
                    .with_port(9094)
            })
            .collect(),
    );
    let empty = payload(ApiKey::Metadata, 0, &msg);
    // The body ends with the topics count (0); write the count and the topics by hand: error
    // code 0, name "" (int16 length 0), partitions count 0 are all zero bytes.
    let mut buf = BytesMut::from(&empty[..empty.len() - 4]);
    buf.extend_from_slice(&(topics as i32).to_be_bytes());
    buf.resize(buf.len() + 8 * topics, 0);
    buf.freeze()
}

/// FindCoordinator v6 for 50 groups, one of them failed.
fn find_coordinator() -> Bytes {
    let coordinators = (0..50)
        .map(|i| {
            let c = Coordinator::default()
                .with_key(StrBytes::from_string(format!("consumer-group-{i}")))
                .with_error_message(None);
            if i == 7 {
                c.with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(15)
            } else {
                c.with_node_id(BrokerId(i % 3 + 1))
                    .with_host(msk_host(i % 3 + 1))
                    .with_port(9094)
            }
        })
        .collect();
    let msg = FindCoordinatorResponse::default()
        .with_error_message(None)
        .with_coordinators(coordinators);
    payload(ApiKey::FindCoordinator, 6, &msg)
}

/// Fetch `version` of `partitions` partitions of `record_bytes` each over one topic, with the
/// three brokers in `node_endpoints` when `endpoints` (a leader change).
fn fetch(version: i16, partitions: i32, record_bytes: usize, endpoints: bool) -> Bytes {
    let records = Bytes::from(vec![0x5au8; record_bytes]);
    let partitions = (0..partitions)
        .map(|p| {
            PartitionData::default()
                .with_partition_index(p)
                .with_high_watermark(1_000_000)
                .with_last_stable_offset(1_000_000)
                .with_log_start_offset(0)
                .with_aborted_transactions(None)
                .with_records(Some(records.clone()))
        })
        .collect();
    let mut msg = FetchResponse::default()
        .with_session_id(99)
        .with_responses(vec![FetchableTopicResponse::default()
            .with_topic_id(uuid(1))
            .with_partitions(partitions)]);
    if endpoints {
        msg.node_endpoints = (1..=3)
            .map(|id| {
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(id))
                    .with_host(msk_host(id))
                    .with_port(9094)
                    .with_rack(Some(StrBytes::from_static_str("euw1-az1")))
            })
            .collect();
    }
    payload(ApiKey::Fetch, version, &msg)
}

/// ApiVersions v4 as a Kafka 4.x broker answers it (about 90 api keys).
fn api_versions() -> Bytes {
    let mut keys: Vec<ApiVersion> = (0..92)
        .map(|k| {
            ApiVersion::default()
                .with_api_key(k)
                .with_min_version(0)
                .with_max_version(5)
        })
        .collect();
    keys[0].max_version = 14; // Produce above the proxy's 13
    keys[1].max_version = 19; // Fetch above the proxy's 18
    let msg = ApiVersionsResponse::default()
        .with_api_keys(keys)
        .with_finalized_features_epoch(10);
    payload(ApiKey::ApiVersions, 4, &msg)
}

/// A response both paths rewrite, and what to call it.
struct Case {
    name: String,
    api_key: i16,
    version: i16,
    frame: Bytes,
    /// Timed by criterion (the two large responses are only timed in the table).
    criterion: bool,
}

fn cases(full: bool) -> Vec<Case> {
    let mut cases = Vec::new();
    let shapes: &[(i32, i32)] = if full {
        &[(3, 1_000), (100, 1_000), (3, 100_000), (100, 100_000)]
    } else {
        &[(3, 1_000)]
    };
    for &(brokers, partitions) in shapes {
        cases.push(Case {
            name: format!("metadata_v12_{brokers}_brokers_{partitions}_partitions"),
            api_key: 3,
            version: 12,
            frame: metadata(12, brokers, partitions),
            criterion: true,
        });
    }
    cases.push(Case {
        name: "find_coordinator_v6_50_groups".into(),
        api_key: 10,
        version: 6,
        frame: find_coordinator(),
        criterion: true,
    });
    if full {
        cases.push(Case {
            name: "metadata_v0_3_brokers_2m_empty_topics".into(),
            api_key: 3,
            version: 0,
            frame: metadata_v0_empty_topics(2_000_000),
            criterion: false,
        });
        cases.push(Case {
            name: "fetch_v16_1.6m_partitions_node_endpoints".into(),
            api_key: 1,
            version: 16,
            frame: fetch(16, 1_600_000, 8, true),
            criterion: false,
        });
    }
    cases
}

fn bench(c: &mut Criterion, cases: &[Case]) {
    let mut g = c.benchmark_group("rewrite");
    for case in cases.iter().filter(|c| c.criterion) {
        g.throughput(Throughput::Bytes(case.frame.len() as u64));
        for (path, rewrite) in PATHS {
            g.bench_function(format!("{}/{path}", case.name), |b| {
                b.iter(|| {
                    rewrite(
                        case.api_key,
                        case.version,
                        black_box(&case.frame),
                        &mut Mapper,
                    )
                    .expect("ok")
                    .expect("rewritten")
                })
            });
        }
    }

    let frame = fetch(18, 100, 10 * 1024, false);
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("fetch_v18_1mib_100_partitions_node_endpoints_check", |b| {
        b.iter(|| {
            let out = rewrite_response(1, 18, black_box(&frame), &mut Mapper).expect("ok");
            assert!(out.is_none());
        })
    });
    g.bench_function("fetch_v18_1mib_100_partitions_full_decode", |b| {
        b.iter_batched(
            || frame.clone(),
            |mut buf| {
                ResponseHeader::decode(&mut buf, 1).expect("header");
                FetchResponse::decode(&mut buf, 18).expect("body")
            },
            BatchSize::SmallInput,
        )
    });

    let frame = api_versions();
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("api_versions_v4_92_keys", |b| {
        b.iter(|| {
            inspect_response(18, 4, black_box(&frame), &mut Mapper)
                .expect("ok")
                .expect("capped")
        })
    });
    g.finish();
}

/// Median wall time of one rewrite over at least 3 runs and about half a second.
fn median_time(case: &Case, rewrite: RewriteFn) -> Duration {
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (start.elapsed() < Duration::from_millis(500) && times.len() < 101) {
        let t = Instant::now();
        let out = rewrite(case.api_key, case.version, &case.frame, &mut Mapper);
        times.push(t.elapsed());
        drop(black_box(out));
    }
    times.sort();
    times[times.len() / 2]
}

/// A size in MiB, or KiB below one MiB.
fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// A time, or "-" when not measured (test mode).
fn time(t: Duration) -> String {
    if t.is_zero() {
        "-".into()
    } else {
        format!("{t:.3?}")
    }
}

/// One line per case: frame size, then peak heap and time of the decode path and the splice,
/// and their ratios (decode / splice).
fn heap_table(cases: &[Case], timed: bool) {
    println!();
    println!(
        "Peak heap of one rewrite (new frame included; input frame not counted) and median time"
    );
    println!(
        "| response | frame | decode: peak heap | splice: peak heap | heap ratio | decode: time | splice: time | time ratio |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for case in cases {
        let [decode, splice] = PATHS.map(|(_, rewrite)| {
            let heap = peak_heap(|| {
                rewrite(case.api_key, case.version, &case.frame, &mut Mapper)
                    .expect("ok")
                    .expect("rewritten")
            });
            let time = if timed {
                median_time(case, rewrite)
            } else {
                Duration::ZERO
            };
            (heap, time)
        });
        let frame = case.frame.len();
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.1}", a / b)
            } else {
                "-".into()
            }
        };
        println!(
            "| {} | {} | {} ({:.1}x) | {} ({:.2}x) | {} | {} | {} | {} |",
            case.name,
            size(frame),
            size(decode.0),
            decode.0 as f64 / frame as f64,
            size(splice.0),
            splice.0 as f64 / frame as f64,
            ratio(decode.0 as f64, splice.0 as f64),
            time(decode.1),
            time(splice.1),
            ratio(decode.1.as_secs_f64(), splice.1.as_secs_f64()),
        );
    }
}

fn main() {
    // criterion runs every benchmark once, as a test, unless cargo bench passed --bench.
    let full = std::env::args().any(|a| a == "--bench");
    let cases = cases(full);
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &cases);
    c.final_summary();
    heap_table(&cases, full);
}
