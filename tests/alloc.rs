//! What a frame costs the heap when it passes through the proxy unchanged (Produce and Fetch
//! without `node_endpoints`), in steady state.
//!
//! The proxy runs in-process on a runtime of its own whose threads are marked; a counting
//! global allocator counts only allocations on those threads, so the test's client and its tiny
//! fake broker (plaintext upstream, another runtime) do not blur the figure. As in production,
//! the Prometheus recorder is installed and a tracing subscriber with the default `info` filter
//! is set, so metrics and the per-connection span cost what they cost in the binary. After a
//! warm-up, N Produce (acks=1) and N Fetch round trips are counted; the figure per frame is
//! printed with where the first allocations came from (a backtrace of each of the first few
//! hundred, taken inside the allocator and grouped by the proxy's frame that led to it).
//!
//! What it asserts is what was measured: nothing is allocated per frame except the blocks the
//! Prometheus histogram keeps its samples in (one per ~64 responses, freed at upkeep), i.e. at
//! most one allocation per 32 frames and at most two elsewhere (a buffer growing once when the
//! frame size changes). Before request_pump dropped each chunk before the next read, a Produce
//! cost 3 allocations and a Fetch 2 (BENCHMARKS.md, "Allocations per frame").
//!
//! `cargo test --test alloc -- --nocapture` shows the figures.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_tls_proxy::config::Cli;
use kafka_tls_proxy::server;
use kafka_tls_proxy::tls::TlsState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::kafka::{encode, request_frame, response_frame};

// ---------------------------------------------------------------- the counting allocator

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Backtraces of the first allocations in the counted window (resolved afterwards).
static SAMPLES: Mutex<Vec<(usize, std::backtrace::Backtrace)>> = Mutex::new(Vec::new());
const MAX_SAMPLES: usize = 300;

thread_local! {
    /// Set on the proxy runtime's threads.
    static PROXY_THREAD: Cell<bool> = const { Cell::new(false) };
    /// Set while this thread takes a sample (its own allocations are not counted).
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

fn counted(size: usize) {
    if !COUNTING.load(Ordering::Relaxed) {
        return;
    }
    let proxy = PROXY_THREAD.try_with(Cell::get).unwrap_or(false);
    let in_hook = IN_HOOK.try_with(Cell::get).unwrap_or(true);
    if !proxy || in_hook {
        return;
    }
    let n = ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(size as u64, Ordering::Relaxed);
    if (n as usize) < MAX_SAMPLES {
        IN_HOOK.with(|h| h.set(true));
        let trace = std::backtrace::Backtrace::force_capture();
        if let Ok(mut s) = SAMPLES.lock() {
            s.push((size, trace));
        }
        IN_HOOK.with(|h| h.set(false));
    }
}

// SAFETY: every call goes to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------- frames

fn topic_id<T: std::str::FromStr>() -> T
where
    T::Err: std::fmt::Debug,
{
    "7b4c2f0e-5d1a-4e3b-9c8d-0123456789ab"
        .parse()
        .expect("uuid")
}

fn request<M: Encodable>(key: ApiKey, version: i16, body: &M) -> Bytes {
    let header_version = key.request_header_version(version);
    Bytes::from(request_frame(
        "alloc-test",
        key as i16,
        version,
        header_version,
        0,
        body,
    ))
}

fn response<M: Encodable>(key: ApiKey, version: i16, corr: i32, body: &M) -> Bytes {
    let header_version = key.response_header_version(version);
    response_frame(corr, header_version, &encode(body, version))
}

const PRODUCE_VERSION: i16 = 11;
const FETCH_VERSION: i16 = 17;
/// Bytes of records in every Produce request and every Fetch response.
const RECORDS: usize = 16 * 1024;

fn produce_request() -> Bytes {
    request(
        ApiKey::Produce,
        PRODUCE_VERSION,
        &ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("bench")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(vec![0x61; RECORDS])))])]),
    )
}

fn fetch_request() -> Bytes {
    request(
        ApiKey::Fetch,
        FETCH_VERSION,
        &FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(i32::MAX)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id())
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20)])]),
    )
}

/// The answers of the fake broker, with correlation id 0 (patched per request).
struct Canned {
    produce: Bytes,
    fetch: Bytes,
}

fn canned() -> Canned {
    Canned {
        produce: response(
            ApiKey::Produce,
            PRODUCE_VERSION,
            0,
            &ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("bench")))
                .with_partition_responses(vec![PartitionProduceResponse::default()
                    .with_index(0)
                    .with_base_offset(0)])]),
        ),
        fetch: response(
            ApiKey::Fetch,
            FETCH_VERSION,
            0,
            &FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic_id(topic_id())
                .with_partitions(vec![PartitionData::default()
                    .with_partition_index(0)
                    .with_high_watermark(1)
                    .with_aborted_transactions(Some(vec![]))
                    .with_preferred_read_replica(BrokerId(-1))
                    .with_records(Some(Bytes::from(vec![0x62; RECORDS])))])]),
        ),
    }
}

/// A plaintext broker answering Metadata (itself as node 1), Produce and Fetch.
async fn fake_broker() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let canned = canned();
    common::kafka::serve_fake_broker(listener, 16 << 20, move |h, _| {
        let answer = match h.api_key {
            0 => canned.produce.clone(),
            1 => canned.fetch.clone(),
            3 => response(
                ApiKey::Metadata,
                h.api_version,
                0,
                &MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(i32::from(addr.port()))]),
            ),
            other => panic!("fake broker: unexpected api key {other}"),
        };
        let mut answer = BytesMut::from(&answer[..]);
        answer[4..8].copy_from_slice(&h.correlation_id.to_be_bytes());
        std::future::ready(Some(answer.freeze()))
    });
    addr
}

/// Sends `n` copies of `frame`, one at a time, each after the previous answer; returns the
/// bytes of answers read.
async fn round_trips(client: &mut TcpStream, frame: &Bytes, n: usize) -> usize {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut got = 0;
    for _ in 0..n {
        client.write_all(frame).await.unwrap();
        loop {
            if buf.len() >= 4 {
                let len = 4 + i32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                if buf.len() >= len {
                    let _ = buf.split_to(len);
                    got += len;
                    break;
                }
            }
            buf.reserve(64 * 1024);
            let read = tokio::time::timeout(Duration::from_secs(10), client.read_buf(&mut buf))
                .await
                .expect("an answer within 10 s")
                .unwrap();
            assert!(read > 0, "the proxy closed the connection");
        }
    }
    got
}

/// Allocations on the proxy's threads while `n` round trips of `frame` pass.
async fn count(client: &mut TcpStream, frame: &Bytes, n: usize) -> (u64, u64) {
    ALLOCATIONS.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    round_trips(client, frame, n).await;
    COUNTING.store(false, Ordering::SeqCst);
    (
        ALLOCATIONS.load(Ordering::SeqCst),
        BYTES.load(Ordering::SeqCst),
    )
}

/// Groups the sampled backtraces by where they leave the proxy's code: the innermost frame in
/// `src/` and the library function it called that allocated.
fn allocation_sites() -> Vec<(String, (usize, usize))> {
    let samples = std::mem::take(&mut *SAMPLES.lock().unwrap());
    let mut sites: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for (size, trace) in samples {
        let text = trace.to_string();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        // Frames come as "N: function" followed by "at file:line".
        let mut frames: Vec<(String, String)> = Vec::new();
        for w in lines.windows(2) {
            if let Some((_, f)) = w[0].split_once(": ") {
                if let Some(at) = w[1].strip_prefix("at ") {
                    frames.push((f.to_owned(), at.to_owned()));
                }
            }
        }
        let own = frames.iter().position(|(_, at)| at.starts_with("./src/"));
        let site = match own {
            Some(i) => {
                let callee = frames[..i]
                    .iter()
                    .rev()
                    .find(|(_, at)| at.contains("/registry/src/"))
                    .map(|(f, at)| {
                        let krate = at.split("/registry/src/").nth(1).unwrap_or("");
                        let krate = krate.split('/').nth(1).unwrap_or("");
                        format!("{krate} {f}")
                    })
                    .unwrap_or_else(|| "std".to_owned());
                let caller = frames[i + 1..]
                    .iter()
                    .find(|(_, at)| at.starts_with("./src/"))
                    .map(|(_, at)| format!(" in {at}"))
                    .unwrap_or_default();
                format!("{} ({}){caller} → {}", frames[i].0, frames[i].1, callee)
            }
            None => frames
                .iter()
                .find(|(_, at)| at.contains("/registry/src/"))
                .map(|(f, at)| format!("outside src/: {f} ({at})"))
                .unwrap_or_else(|| "unknown".to_owned()),
        };
        let e = sites.entry(site).or_default();
        e.0 += 1;
        e.1 += size;
    }
    let mut v: Vec<_> = sites.into_iter().collect();
    v.sort_by_key(|site| std::cmp::Reverse(site.1 .0));
    v
}

const WARM_UP: usize = 2_000;
const COUNTED: usize = 5_000;

#[test]
fn frames_passing_through_unchanged_allocate_nothing_but_histogram_blocks() {
    // As in the binary: the Prometheus recorder and an `info` tracing filter (spans entered).
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .init();

    let proxy_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(|| PROXY_THREAD.with(|p| p.set(true)))
        .build()
        .unwrap();
    let test_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let broker = test_rt.block_on(fake_broker());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let bootstrap = listener.local_addr().unwrap();
    let base = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port().saturating_sub(1)
    };
    let upstream = broker.to_string();
    let base_s = base.to_string();
    let settings = Cli::parse_from([
        "kafka-tls-proxy",
        "--upstream",
        &upstream,
        "--upstream-plaintext",
        "--upstream-host-pattern",
        "127.0.0.1",
        "--broker-port-base",
        &base_s,
        "--admin-address",
        "off",
        "--discovery-interval",
        "0",
    ])
    .options
    .into_settings(None)
    .expect("valid settings");
    let tls = Arc::new(TlsState::load(None, None).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let proxy = proxy_rt.spawn(async move {
        let listener = TcpListener::from_std(listener).unwrap();
        server::run(settings, tls, Default::default(), listener, async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    });

    let produce = produce_request();
    let fetch = fetch_request();
    let (produce_counts, fetch_counts) = test_rt.block_on(async {
        let mut client = TcpStream::connect(bootstrap).await.unwrap();
        client.set_nodelay(true).unwrap();
        round_trips(&mut client, &produce, WARM_UP).await;
        round_trips(&mut client, &fetch, WARM_UP).await;
        prometheus.run_upkeep();
        let p = count(&mut client, &produce, COUNTED).await;
        let p_sites = allocation_sites();
        prometheus.run_upkeep();
        let f = count(&mut client, &fetch, COUNTED).await;
        let f_sites = allocation_sites();
        ((p, p_sites), (f, f_sites))
    });
    let ((produce_counts, produce_sites), (fetch_counts, fetch_sites)) =
        (produce_counts, fetch_counts);
    let _ = stop_tx.send(());
    let _ = proxy_rt.block_on(proxy);

    let per = |(n, _): (u64, u64)| n as f64 / COUNTED as f64;
    println!(
        "steady state, {COUNTED} round trips each: Produce v{PRODUCE_VERSION} ({} B): {} allocations \
         ({:.4} per frame, {} bytes); Fetch v{FETCH_VERSION} (answer {} B): {} allocations ({:.4} per \
         frame, {} bytes)",
        produce.len(),
        produce_counts.0,
        per(produce_counts),
        produce_counts.1,
        canned().fetch.len(),
        fetch_counts.0,
        per(fetch_counts),
        fetch_counts.1,
    );
    // The Prometheus recorder stores histogram samples in blocks of 64 (metrics-util's
    // AtomicBucket) that the upkeep frees: one allocation per ~64 responses, amortized. Anything
    // else is the proxy's own doing; a one-off buffer growth when the frame size changes (the
    // warm-up ends with the other kind of frame) is allowed.
    let mut own = 0;
    for (what, sites, counts) in [
        ("Produce", &produce_sites, produce_counts),
        ("Fetch", &fetch_sites, fetch_counts),
    ] {
        println!("{what}: where the first {MAX_SAMPLES} allocations came from");
        let mut this = 0;
        for (site, (n, bytes)) in sites {
            println!("  {n:>4} ({bytes} bytes): {site}");
            if !site.contains("metrics-") {
                this += n;
            }
        }
        own += this;
        assert!(
            counts.0 as usize <= COUNTED / 32 + 2,
            "{what}: {} allocations for {COUNTED} frames, more than the histogram's blocks",
            counts.0
        );
        assert!(
            this <= 2,
            "{what}: {this} allocations outside the metrics histogram (sites above)"
        );
    }
    println!(
        "allocations outside the metrics histogram: {own} in {} frames",
        2 * COUNTED
    );
}
