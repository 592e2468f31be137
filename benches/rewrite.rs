//! What address rewriting costs per response.
//!
//! The numbers that matter most: the `node_endpoints` check on a large Fetch response without
//! endpoints, which every Fetch v16+ response pays, against a full kafka-protocol decode of the
//! same bytes (what the check avoids); and the Metadata rewrite, which clients repeat on every
//! metadata refresh.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchResponse, FindCoordinatorResponse,
    MetadataResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_tls_proxy::kafka::rewrite::rewrite_response;
use kafka_tls_proxy::kafka::{AddressMapper, Advertised, MapError};

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

/// Metadata v12 with `brokers` brokers and `partitions` partitions over 10 topics.
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
    payload(ApiKey::Metadata, 12, &msg)
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
                    .with_host(StrBytes::from_string(format!(
                        "b-{}.demo.abc123.c2.kafka.eu-west-1.amazonaws.com",
                        i % 3 + 1
                    )))
                    .with_port(9094)
            }
        })
        .collect();
    let msg = FindCoordinatorResponse::default()
        .with_error_message(None)
        .with_coordinators(coordinators);
    payload(ApiKey::FindCoordinator, 6, &msg)
}

/// Fetch v18 of about 1 MiB: 100 partitions of 10 KiB records, no node_endpoints.
fn fetch_1mib() -> Bytes {
    let records = Bytes::from(vec![0x5au8; 10 * 1024]);
    let partitions = (0..100)
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
    let msg = FetchResponse::default()
        .with_session_id(99)
        .with_responses(vec![FetchableTopicResponse::default()
            .with_topic_id(uuid(1))
            .with_partitions(partitions)]);
    payload(ApiKey::Fetch, 18, &msg)
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

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("rewrite");
    for (brokers, partitions) in [(3, 1000), (100, 1000)] {
        let frame = metadata(brokers, partitions);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(
            format!("metadata_v12_{brokers}_brokers_{partitions}_partitions"),
            |b| b.iter(|| rewrite_response(3, 12, black_box(&frame), &mut Mapper).expect("ok")),
        );
    }

    let frame = find_coordinator();
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("find_coordinator_v6_50_groups", |b| {
        b.iter(|| rewrite_response(10, 6, black_box(&frame), &mut Mapper).expect("ok"))
    });

    let frame = fetch_1mib();
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
        b.iter(|| rewrite_response(18, 4, black_box(&frame), &mut Mapper).expect("ok"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
