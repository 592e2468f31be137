//! A Kafka broker that answers from memory, over mutual TLS (or plaintext), as fast as one core
//! allows: ApiVersions, Metadata (naming itself as nodes 1..N, node i at port base+i-1 on
//! --host, listening on --bind), Produce (acks honoured: acks=0 gets no answer) and Fetch (a canned record batch
//! making the answer as large as the request's partition_max_bytes). It keeps nothing.
//!
//!   broker --port 23001 [--nodes 1] [--host 127.0.0.1] [--bind 127.0.0.1] --cert C --key K --ca CA
//!          [--plaintext] [--no-resumption] [--stats-port P] [--threads 1] [--partitions 1]
//!
//! --stats-port: every connection there gets one JSON line of counters (open connections,
//! full and resumed TLS handshakes, requests, bytes) and is closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchResponse, MetadataRequest, MetadataResponse,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use ktp_ceiling::args::Args;
use ktp_ceiling::proto::{self, ReqHeader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Default)]
struct Stats {
    open: AtomicU64,
    total: AtomicU64,
    full: AtomicU64,
    resumed: AtomicU64,
    tls_failed: AtomicU64,
    produce: AtomicU64,
    produce_acks0: AtomicU64,
    fetch: AtomicU64,
    metadata: AtomicU64,
    api_versions: AtomicU64,
    other: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Stats {
    fn json(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "open": g(&self.open), "total": g(&self.total),
            "handshakes_full": g(&self.full), "handshakes_resumed": g(&self.resumed),
            "tls_failed": g(&self.tls_failed),
            "produce": g(&self.produce), "produce_acks0": g(&self.produce_acks0),
            "fetch": g(&self.fetch), "metadata": g(&self.metadata),
            "api_versions": g(&self.api_versions), "other": g(&self.other),
            "bytes_in": g(&self.bytes_in), "bytes_out": g(&self.bytes_out),
        })
        .to_string()
    }
}

struct Broker {
    host: String,
    base: u16,
    nodes: i32,
    partitions: i32,
    stats: Stats,
    /// Canned responses by (api key, version, size), correlation id 0.
    canned: Mutex<HashMap<(i16, i16, usize), Bytes>>,
}

impl Broker {
    fn canned(&self, key: (i16, i16, usize), make: impl FnOnce() -> Bytes) -> Bytes {
        if let Some(b) = self.canned.lock().unwrap().get(&key) {
            return b.clone();
        }
        let b = make();
        self.canned.lock().unwrap().insert(key, b.clone());
        b
    }

    fn api_versions(&self, version: i16) -> Bytes {
        let v = version.min(4);
        self.canned((18, v, 0), || {
            let key = |k: ApiKey, min: i16, max: i16| {
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            };
            let body = ApiVersionsResponse::default().with_api_keys(vec![
                key(ApiKey::Produce, 3, 11),
                key(ApiKey::Fetch, 4, 17),
                key(ApiKey::Metadata, 0, 12),
                key(ApiKey::ApiVersions, 0, 4),
            ]);
            proto::response_frame(ApiKey::ApiVersions, v, 0, &body).freeze()
        })
    }

    fn metadata(&self, frame: &[u8], h: &ReqHeader) -> Bytes {
        let mut body = Bytes::copy_from_slice(&frame[h.body..]);
        let names: Option<Vec<String>> = MetadataRequest::decode(&mut body, h.version)
            .ok()
            .and_then(|r| r.topics)
            .map(|ts| {
                ts.into_iter()
                    .filter_map(|t| t.name.map(|n| n.0.to_string()))
                    .collect()
            });
        let names = names.unwrap_or_else(|| vec![proto::TOPIC.to_owned()]);
        let brokers = (1..=self.nodes)
            .map(|id| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(self.host.clone()))
                    .with_port(i32::from(self.base) + id - 1)
            })
            .collect();
        let topics = names
            .into_iter()
            .map(|name| {
                let parts = (0..self.partitions)
                    .map(|p| {
                        let leader = BrokerId(p % self.nodes + 1);
                        MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_id(leader)
                            .with_replica_nodes(vec![leader])
                            .with_isr_nodes(vec![leader])
                    })
                    .collect();
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_topic_id(proto::topic_id())
                    .with_partitions(parts)
            })
            .collect();
        let body = MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(StrBytes::from_static_str("ceiling")))
            .with_controller_id(BrokerId(1))
            .with_topics(topics);
        proto::response_frame(ApiKey::Metadata, h.version, 0, &body).freeze()
    }

    fn produce(&self, version: i16) -> Bytes {
        self.canned((0, version, 0), || {
            let body =
                ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                    .with_name(TopicName(StrBytes::from_static_str(proto::TOPIC)))
                    .with_topic_id(proto::topic_id())
                    .with_partition_responses(vec![PartitionProduceResponse::default()
                        .with_index(0)
                        .with_base_offset(0)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(0)])]);
            proto::response_frame(ApiKey::Produce, version, 0, &body).freeze()
        })
    }

    fn fetch(&self, version: i16, size: usize) -> Bytes {
        self.canned((1, version, size), || {
            let build = |value: usize| {
                let body =
                    FetchResponse::default().with_responses(vec![FetchableTopicResponse::default(
                    )
                    .with_topic(TopicName(StrBytes::from_static_str(proto::TOPIC)))
                    .with_topic_id(proto::topic_id())
                    .with_partitions(vec![PartitionData::default()
                        .with_partition_index(0)
                        .with_high_watermark(1)
                        .with_last_stable_offset(1)
                        .with_log_start_offset(0)
                        .with_aborted_transactions(Some(vec![]))
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_records(Some(proto::record_batch(value)))])]);
                proto::response_frame(ApiKey::Fetch, version, 0, &body)
            };
            let mut value = size.saturating_sub(200).max(1);
            let mut frame = build(value);
            for _ in 0..4 {
                if frame.len() == size || size < 300 {
                    break;
                }
                value = (value as i64 - (frame.len() as i64 - size as i64)).max(1) as usize;
                frame = build(value);
            }
            frame.freeze()
        })
    }

    /// Appends the answer to one request frame to `out`; false to close the connection.
    fn answer(&self, frame: &[u8], out: &mut BytesMut) -> bool {
        let Some(h) = proto::request_header(frame) else {
            return false;
        };
        let canned = match h.api_key {
            0 => {
                self.stats.produce.fetch_add(1, Ordering::Relaxed);
                if proto::produce_acks(frame, &h) == Some(0) {
                    self.stats.produce_acks0.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                self.produce(h.version)
            }
            1 => {
                self.stats.fetch.fetch_add(1, Ordering::Relaxed);
                let size = proto::fetch_partition_max_bytes(frame, &h).unwrap_or(1024);
                self.fetch(h.version, size.clamp(64, 64 << 20))
            }
            3 => {
                self.stats.metadata.fetch_add(1, Ordering::Relaxed);
                self.metadata(frame, &h)
            }
            18 => {
                self.stats.api_versions.fetch_add(1, Ordering::Relaxed);
                self.api_versions(h.version)
            }
            _ => {
                self.stats.other.fetch_add(1, Ordering::Relaxed);
                eprintln!("broker: unsupported api key {} v{}", h.api_key, h.version);
                return false;
            }
        };
        let start = out.len();
        out.extend_from_slice(&canned);
        proto::set_response_correlation_id(&mut out[start..], h.corr);
        true
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(broker: &Broker, mut s: S) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let want = proto::announced_frame(&buf)
            .map(|n| n.saturating_sub(buf.len()))
            .unwrap_or(0)
            .max(64 * 1024);
        buf.reserve(want);
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                broker.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        while let Some(len) = proto::complete_frame(&buf) {
            if !broker.answer(&buf[..len], &mut out) {
                return;
            }
            buf.advance(len);
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() || s.flush().await.is_err() {
                return;
            }
            broker
                .stats
                .bytes_out
                .fetch_add(out.len() as u64, Ordering::Relaxed);
            out.clear();
            if out.capacity() > 8 << 20 {
                out = BytesMut::with_capacity(64 * 1024);
            }
        }
    }
}

async fn connection(
    broker: Arc<Broker>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    socket: TcpStream,
) {
    let _ = socket.set_nodelay(true);
    broker.stats.open.fetch_add(1, Ordering::Relaxed);
    broker.stats.total.fetch_add(1, Ordering::Relaxed);
    match tls {
        None => serve(&broker, socket).await,
        Some(acceptor) => match acceptor.accept(socket).await {
            Ok(s) => {
                match s.get_ref().1.handshake_kind() {
                    Some(rustls::HandshakeKind::Resumed) => {
                        broker.stats.resumed.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => broker.stats.full.fetch_add(1, Ordering::Relaxed),
                };
                serve(&broker, s).await
            }
            Err(_) => {
                broker.stats.tls_failed.fetch_add(1, Ordering::Relaxed);
            }
        },
    }
    broker.stats.open.fetch_sub(1, Ordering::Relaxed);
}

async fn run(args: Args) -> anyhow::Result<()> {
    let host = args.get("host", "127.0.0.1".to_owned());
    let bind = args.get("bind", "127.0.0.1".to_owned());
    let base: u16 = args.get("port", 23001);
    let nodes: i32 = args.get("nodes", 1);
    let broker = Arc::new(Broker {
        host: host.clone(),
        base,
        nodes,
        partitions: args.get("partitions", 1),
        stats: Stats::default(),
        canned: Mutex::default(),
    });
    let tls = if args.flag("plaintext") {
        None
    } else {
        let config = ktp_ceiling::tls::server_config(
            &args.req("cert"),
            &args.req("key"),
            &args.req("ca"),
            !args.flag("no-resumption"),
        )?;
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    };
    for i in 0..nodes {
        let addr: SocketAddr = format!("{bind}:{}", base + i as u16).parse()?;
        let listener = TcpListener::bind(addr).await?;
        let broker = broker.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((socket, _)) => {
                        tokio::spawn(connection(broker.clone(), tls.clone(), socket));
                    }
                    Err(e) => {
                        eprintln!("broker: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    if let Some(port) = args.str("stats-port") {
        let listener = TcpListener::bind(format!("127.0.0.1:{port}")).await?;
        let broker = broker.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let line = broker.stats.json() + "\n";
                let _ = s.write_all(line.as_bytes()).await;
            }
        });
    }
    eprintln!(
        "broker: {nodes} node(s) on {host}:{base}.., {}",
        if tls.is_some() {
            "mutual TLS"
        } else {
            "plaintext"
        }
    );
    std::future::pending::<()>().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads: usize = args.get("threads", 1);
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run(args))
}
