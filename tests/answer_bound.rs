//! The heap a denied request's answer takes, from parsing the request to the encoded answer,
//! against the bound the connection charges to the budget before parsing
//! ([`policy::answer_bound`]).
//!
//! Each case is a response shape at its worst: a request with as many entries per byte as its
//! API allows (empty compact names, int32 partition indexes, null record sets), so that each
//! entry of the answer costs the most per request byte. A counting global allocator follows the
//! live heap bytes of the test's own thread and keeps their peak while [`policy::decide`] runs.
//! Allocation sizes are the program's own (not the machine's), so the figures are the same on
//! every machine.
//!
//! `cargo test --test answer_bound -- --nocapture` prints each shape's peak per request byte.
//!
//! A denied Produce is not charged this bound but its exact answer (`policy::answer_charge`):
//! through the proxy, against the real cluster, a read-only client's 1 MiB Produce is answered
//! under a budget far below 1 MiB × its factor.

mod common;
mod proxy;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kafka_protocol::messages::{self as km, ApiKey};
use kafka_protocol::protocol::{Encodable, Message, StrBytes};
use kafka_tls_proxy::kafka::frame;
use kafka_tls_proxy::policy::{self, Decision, Policy};

use common::kafka::request_frame;

struct Peak;

thread_local! {
    /// Live heap bytes allocated by this thread, and their peak since the last reset.
    static LIVE: Cell<(i64, i64)> = const { Cell::new((0, 0)) };
}

fn add(delta: i64) {
    let _ = LIVE.try_with(|l| {
        let (live, peak) = l.get();
        let live = live + delta;
        l.set((live, peak.max(live)));
    });
}

// SAFETY: every call goes to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as i64));
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as i64 - layout.size() as i64);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

/// The peak heap `decide` takes above what was live before it, and the answer's length.
fn peak_of(frame: &[u8]) -> (usize, usize) {
    let header = frame::request_header(frame).expect("header");
    LIVE.with(|l| {
        let (live, _) = l.get();
        l.set((live, live));
    });
    let before = LIVE.with(|l| l.get().0);
    let decision = policy::decide(Policy::ReadOnly, &header, frame);
    let peak = LIVE.with(|l| l.get().1) - before;
    let Decision::Deny { response, .. } = decision else {
        panic!(
            "api {} v{} is not answered: {decision:?}",
            header.api_key, header.api_version
        )
    };
    (peak as usize, response.len())
}

/// The request frame, or nothing at a version kafka-protocol does not have.
fn frame<M: Encodable + Message>(key: ApiKey, version: i16, body: &M) -> Option<Vec<u8>> {
    (M::VERSIONS.min..=M::VERSIONS.max)
        .contains(&version)
        .then(|| {
            request_frame(
                "",
                key as i16,
                version,
                key.request_header_version(version),
                7,
                body,
            )
        })
}

fn name() -> StrBytes {
    StrBytes::from_static_str("")
}

/// Entries per case: enough that the per-entry cost dominates, once well inside a doubling of
/// the vectors and once just past one (where they waste the most).
const COUNTS: [usize; 2] = [20_000, 33_000];

fn cases(n: usize) -> Vec<(&'static str, Option<Vec<u8>>)> {
    use km::*;
    let partitions = |n: usize| (0..n as i32).collect::<Vec<i32>>();
    let mut out = Vec::new();
    for v in [0, 5, 7] {
        let topics = (0..n)
            .map(|_| create_topics_request::CreatableTopic::default().with_name(TopicName(name())))
            .collect();
        let req = CreateTopicsRequest::default().with_topics(topics);
        out.push(("CreateTopics", frame(ApiKey::CreateTopics, v, &req)));
    }
    for v in [0, 4, 5] {
        let req = DeleteTopicsRequest::default()
            .with_topic_names((0..n).map(|_| TopicName(name())).collect());
        out.push(("DeleteTopics names", frame(ApiKey::DeleteTopics, v, &req)));
    }
    {
        let topics = (0..n)
            .map(|_| {
                delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(TopicName(name())))
            })
            .collect();
        let req = DeleteTopicsRequest::default().with_topics(topics);
        out.push(("DeleteTopics states", frame(ApiKey::DeleteTopics, 6, &req)));
    }
    for v in [0, 2] {
        let req = DeleteGroupsRequest::default()
            .with_groups_names((0..n).map(|_| GroupId(name())).collect());
        out.push(("DeleteGroups", frame(ApiKey::DeleteGroups, v, &req)));
    }
    for v in [2, 3, 9, 11] {
        let parts = (0..n as i32)
            .map(|i| {
                produce_request::PartitionProduceData::default()
                    .with_index(i)
                    .with_records(None)
            })
            .collect();
        let topic = produce_request::TopicProduceData::default()
            .with_name(TopicName(name()))
            .with_partition_data(parts);
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_topic_data(vec![topic]);
        out.push(("Produce partitions", frame(ApiKey::Produce, v, &req)));
    }
    for v in [3, 11] {
        let topics = (0..n)
            .map(|_| produce_request::TopicProduceData::default().with_name(TopicName(name())))
            .collect();
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_topic_data(topics);
        out.push(("Produce topics", frame(ApiKey::Produce, v, &req)));
    }
    for v in [0, 2, 3] {
        let creations = (0..n)
            .map(|_| create_acls_request::AclCreation::default())
            .collect();
        let req = CreateAclsRequest::default().with_creations(creations);
        out.push(("CreateAcls", frame(ApiKey::CreateAcls, v, &req)));
    }
    for v in [1, 2] {
        let topic = elect_leaders_request::TopicPartitions::default()
            .with_topic(TopicName(name()))
            .with_partitions(partitions(n));
        let req = ElectLeadersRequest::default().with_topic_partitions(Some(vec![topic]));
        out.push(("ElectLeaders", frame(ApiKey::ElectLeaders, v, &req)));
    }
    for v in [0, 2] {
        let parts = (0..n as i32)
            .map(|i| {
                delete_records_request::DeleteRecordsPartition::default().with_partition_index(i)
            })
            .collect();
        let topic = delete_records_request::DeleteRecordsTopic::default().with_partitions(parts);
        let req = DeleteRecordsRequest::default().with_topics(vec![topic]);
        out.push(("DeleteRecords", frame(ApiKey::DeleteRecords, v, &req)));
    }
    for v in [0, 3] {
        let topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
            .with_partitions(partitions(n));
        let req = AddPartitionsToTxnRequest::default().with_v3_and_below_topics(vec![topic]);
        out.push((
            "AddPartitionsToTxn",
            frame(ApiKey::AddPartitionsToTxn, v, &req),
        ));
    }
    for v in [0, 2] {
        let topic = alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
            .with_partitions(partitions(n));
        let dir =
            alter_replica_log_dirs_request::AlterReplicaLogDir::default().with_topics(vec![topic]);
        let req = AlterReplicaLogDirsRequest::default().with_dirs(vec![dir]);
        out.push((
            "AlterReplicaLogDirs",
            frame(ApiKey::AlterReplicaLogDirs, v, &req),
        ));
    }
    for v in [0, 1] {
        let parts = (0..n as i32)
            .map(|i| {
                offset_delete_request::OffsetDeleteRequestPartition::default()
                    .with_partition_index(i)
            })
            .collect();
        let topic =
            offset_delete_request::OffsetDeleteRequestTopic::default().with_partitions(parts);
        let req = OffsetDeleteRequest::default().with_topics(vec![topic]);
        out.push(("OffsetDelete", frame(ApiKey::OffsetDelete, v, &req)));
    }
    for v in [0, 1] {
        let resources = (0..n)
            .map(|_| alter_configs_request::AlterConfigsResource::default().with_resource_type(2))
            .collect();
        let req = AlterConfigsRequest::default().with_resources(resources);
        out.push(("AlterConfigs", frame(ApiKey::AlterConfigs, v, &req)));
    }
    for v in [0, 1] {
        let entries = (0..n)
            .map(|_| {
                alter_client_quotas_request::EntryData::default()
                    .with_entity(vec![alter_client_quotas_request::EntityData::default()])
            })
            .collect();
        let req = AlterClientQuotasRequest::default().with_entries(entries);
        out.push((
            "AlterClientQuotas",
            frame(ApiKey::AlterClientQuotas, v, &req),
        ));
    }
    out
}

#[test]
fn every_denial_answer_stays_within_the_bound_charged_before_parsing() {
    let mut failures = Vec::new();
    for (what, frame) in COUNTS.into_iter().flat_map(cases) {
        let Some(frame) = frame else { continue };
        let header = frame::request_header(&frame).expect("header");
        let (peak, answer) = peak_of(&frame);
        let bound = policy::answer_bound(header.api_key, frame.len());
        println!(
            "{what} v{}: request {} B, answer {} B ({:.1}x), peak heap {} B ({:.1}x), bound {} B",
            header.api_version,
            frame.len(),
            answer,
            answer as f64 / frame.len() as f64,
            peak,
            peak as f64 / frame.len() as f64,
            bound
        );
        assert!(answer <= peak, "the answer is part of the peak");
        if peak > bound {
            failures.push(format!("{what} v{}: {peak} > {bound}", header.api_version));
        }
    }
    assert!(failures.is_empty(), "peaks above the bound: {failures:#?}");
}

#[test]
fn a_read_only_clients_1_mib_produce_is_answered_under_a_small_budget() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use bytes::Bytes;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::protocol::Decodable;

    let c = common::cluster();
    let _up = c.shared();
    // 8 MiB: a 1 MiB Produce's length bound (factor 128) would be 128 MiB.
    let budget = (8u64 << 20).to_string();
    let proxy = proxy::Proxy::start(
        c,
        &["--policy", "read-only", "--max-buffered-bytes", &budget],
    );
    assert!(
        policy::answer_bound(ApiKey::Produce as i16, 1 << 20) > 8 << 20,
        "the case this test is about: the length bound cannot fit the budget"
    );
    let mut conn = TcpStream::connect((proxy::CLIENT_HOST, proxy.port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for (correlation_id, record_bytes) in [(7, 1usize << 20), (8, 1 << 20), (9, 100)] {
        let request = km::ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(km::TopicName(StrBytes::from_static_str("answer-bound")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(vec![0u8; record_bytes])))])]);
        let frame = request_frame(
            "answer-bound",
            ApiKey::Produce as i16,
            9,
            ApiKey::Produce.request_header_version(9),
            correlation_id,
            &request,
        );
        conn.write_all(&frame).expect("write the Produce");
        let mut len = [0u8; 4];
        conn.read_exact(&mut len).unwrap_or_else(|e| {
            panic!(
                "no answer to the {}-byte denied Produce ({e}); proxy log:\n{}",
                frame.len(),
                proxy.log()
            )
        });
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        conn.read_exact(&mut body).expect("the answer's body");
        let mut body = Bytes::from(body);
        let header =
            km::ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(9))
                .unwrap();
        let response = km::ProduceResponse::decode(&mut body, 9).unwrap();
        println!(
            "{}-byte denied Produce: answered with {} bytes",
            frame.len(),
            i32::from_be_bytes(len) + 4
        );
        assert_eq!(header.correlation_id, correlation_id);
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(
            (partition.index, partition.error_code),
            (0, policy::TOPIC_AUTHORIZATION_FAILED),
            "denied with the API's own error"
        );
    }
}
