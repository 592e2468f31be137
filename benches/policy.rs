//! What a policy denial and an audit parse cost per request byte, for the requests whose
//! answers carry the most entries per byte: AlterUserScramCredentials (one result per distinct
//! user, ~15 bytes each) and AlterReplicaLogDirs (one result per distinct topic). Both were
//! quadratic in their entries (issue 17: two 1.65 MB requests, 36.6 s of CPU on a runtime
//! worker); linear work shows as the same time per byte at every size, which criterion reports
//! as throughput (bytes/s) per size: 16 KiB, 256 KiB and 1.65 MB.
//!
//! `decide` is the whole work of a denial (parse, answer, encode); `audit_resources` the
//! denial's audit line (parse, first entries formatted).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_tls_proxy::kafka::frame::request_header;
use kafka_tls_proxy::policy::{audit_resources, decide, Decision, Policy};
use kafka_tls_proxy::topics::TopicNames;

/// Appends an unsigned varint.
fn uvarint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A request frame (length prefix included) of about `bytes` bytes, every entry naming a
/// distinct user (api key 51, AlterUserScramCredentials v0: deletions) or a distinct topic
/// (api key 34, AlterReplicaLogDirs v2: one directory, one partition per topic).
fn wide_request(api_key: i16, bytes: usize) -> Vec<u8> {
    let version: i16 = if api_key == 51 { 0 } else { 2 };
    let mut body = Vec::new();
    body.extend_from_slice(&api_key.to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&7i32.to_be_bytes());
    body.extend_from_slice(&5i16.to_be_bytes());
    body.extend_from_slice(b"bench");
    body.push(0); // header tagged fields
    let n = bytes / 15;
    if api_key == 51 {
        uvarint(&mut body, n as u64 + 1);
        for i in 0..n {
            let name = format!("user-{i:08}");
            uvarint(&mut body, name.len() as u64 + 1);
            body.extend_from_slice(name.as_bytes());
            body.push(2); // SCRAM-SHA-512
            body.push(0);
        }
        uvarint(&mut body, 1); // no upsertions
    } else {
        uvarint(&mut body, 2);
        uvarint(&mut body, 5);
        body.extend_from_slice(b"/tmp");
        uvarint(&mut body, n as u64 + 1);
        for i in 0..n {
            let name = format!("t-{i:08}");
            uvarint(&mut body, name.len() as u64 + 1);
            body.extend_from_slice(name.as_bytes());
            uvarint(&mut body, 2);
            body.extend_from_slice(&0i32.to_be_bytes());
            body.push(0);
        }
        body.push(0);
    }
    body.push(0);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn bench(c: &mut Criterion) {
    for (api, key) in [
        ("alter_user_scram_credentials", 51i16),
        ("alter_replica_log_dirs", 34),
    ] {
        let mut g = c.benchmark_group(format!("policy_{api}"));
        g.sample_size(10);
        for size in [16 * 1024, 256 * 1024, 1_650_000] {
            let frame = wide_request(key, size);
            let header = request_header(&frame).expect("header");
            assert!(matches!(
                decide(Policy::ReadOnly, &header, &frame),
                Decision::Deny { .. }
            ));
            g.throughput(Throughput::Bytes(frame.len() as u64));
            g.bench_with_input(BenchmarkId::new("deny", size), &frame, |b, f| {
                b.iter(|| decide(Policy::ReadOnly, black_box(&header), black_box(f)))
            });
            let names = TopicNames::default();
            g.bench_with_input(BenchmarkId::new("audit_resources", size), &frame, |b, f| {
                b.iter(|| {
                    audit_resources(black_box(&header), black_box(f), &names).expect("parses")
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
