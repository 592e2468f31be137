//! Issue 20: brokers name themselves in error messages (`connectionId=<broker IP>:9094-...`).
//! Against the real cluster with ACLs, the admin APIs a least-privilege principal is refused
//! are sent at their lowest and highest versions, directly to a broker and through the proxy:
//! directly, the answers name upstream brokers; through the proxy, no byte a client received
//! names any (the recording relay keeps every byte).
//!
//! Run with `tests/with-hosts cargo test --test scrub`.

mod common;
mod proxy;

use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, CreateAclsRequest, DeleteAclsRequest,
    DescribeAclsRequest, DescribeClientQuotasRequest, DescribeConfigsRequest,
    DescribeLogDirsRequest, ElectLeadersRequest, ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::{Encodable, Message, StrBytes};
use kafka_tls_proxy::brokers::UpstreamAddr;
use kafka_tls_proxy::resolve::Resolver;
use kafka_tls_proxy::tls::{upstream_config, UpstreamTlsFiles};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use common::{cluster, Cluster, Principal};
use proxy::Proxy;

/// A client connection, direct (TLS) or through the proxy (TCP).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// One request frame (length prefix included) of `M` at `version`.
fn frame<M: Encodable + Message>(key: ApiKey, version: i16, msg: &M) -> Vec<u8> {
    common::kafka::request_frame(
        "scrub-test",
        key as i16,
        version,
        key.request_header_version(version),
        7,
        msg,
    )
}

/// The refused requests, each at the lowest and highest version the proxy relays.
fn requests() -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    let mut add = |name: &str, key: ApiKey, versions: [i16; 2], f: &dyn Fn(i16) -> Vec<u8>| {
        for v in versions {
            all.push((format!("{name} v{v}"), f(v)));
        }
        let _ = key;
    };
    let v = |m: kafka_protocol::protocol::VersionRange| [m.min, m.max];
    add(
        "DescribeAcls",
        ApiKey::DescribeAcls,
        v(DescribeAclsRequest::VERSIONS),
        &|ver| {
            let r = DescribeAclsRequest::default()
                .with_resource_type_filter(1) // ANY
                .with_pattern_type_filter(1) // ANY
                .with_operation(1)
                .with_permission_type(1);
            frame(ApiKey::DescribeAcls, ver, &r)
        },
    );
    add(
        "CreateAcls",
        ApiKey::CreateAcls,
        v(CreateAclsRequest::VERSIONS),
        &|ver| {
            let r = CreateAclsRequest::default().with_creations(vec![AclCreation::default()
                .with_resource_type(2) // TOPIC
                .with_resource_name(sb("scrub-test"))
                .with_resource_pattern_type(3) // LITERAL
                .with_principal(sb("User:nobody"))
                .with_host(sb("*"))
                .with_operation(3) // READ
                .with_permission_type(3)]); // ALLOW
            frame(ApiKey::CreateAcls, ver, &r)
        },
    );
    add(
        "DeleteAcls",
        ApiKey::DeleteAcls,
        v(DeleteAclsRequest::VERSIONS),
        &|ver| {
            let r = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter(Some(sb("scrub-test")))
                .with_pattern_type_filter(3)
                .with_principal_filter(Some(sb("User:nobody")))
                .with_host_filter(Some(sb("*")))
                .with_operation(3)
                .with_permission_type(3)]);
            frame(ApiKey::DeleteAcls, ver, &r)
        },
    );
    add(
        "DescribeConfigs(broker)",
        ApiKey::DescribeConfigs,
        v(DescribeConfigsRequest::VERSIONS),
        &|ver| {
            let r = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(4) // BROKER
                    .with_resource_name(sb("1")),
            ]);
            frame(ApiKey::DescribeConfigs, ver, &r)
        },
    );
    add(
        "AlterPartitionReassignments",
        ApiKey::AlterPartitionReassignments,
        v(AlterPartitionReassignmentsRequest::VERSIONS),
        &|ver| {
            let r = AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![ReassignableTopic::default()
                    .with_name(TopicName(sb("scrub-test")))
                    .with_partitions(vec![ReassignablePartition::default()
                        .with_partition_index(0)
                        .with_replicas(Some(vec![BrokerId(1), BrokerId(2)]))])]);
            frame(ApiKey::AlterPartitionReassignments, ver, &r)
        },
    );
    add(
        "ListPartitionReassignments",
        ApiKey::ListPartitionReassignments,
        v(ListPartitionReassignmentsRequest::VERSIONS),
        &|ver| {
            let r = ListPartitionReassignmentsRequest::default().with_timeout_ms(5000);
            frame(ApiKey::ListPartitionReassignments, ver, &r)
        },
    );
    add(
        "ElectLeaders",
        ApiKey::ElectLeaders,
        v(ElectLeadersRequest::VERSIONS),
        &|ver| {
            let r = ElectLeadersRequest::default()
                .with_timeout_ms(5000)
                .with_topic_partitions(Some(vec![TopicPartitions::default()
                    .with_topic(TopicName(sb("scrub-test")))
                    .with_partitions(vec![0])]));
            frame(ApiKey::ElectLeaders, ver, &r)
        },
    );
    add(
        "DescribeLogDirs",
        ApiKey::DescribeLogDirs,
        v(DescribeLogDirsRequest::VERSIONS),
        &|ver| {
            frame(
                ApiKey::DescribeLogDirs,
                ver,
                &DescribeLogDirsRequest::default(),
            )
        },
    );
    // Quotas (scrubbed like the admin APIs since the table was completed): refused for a
    // principal without cluster DESCRIBE_CONFIGS.
    add(
        "DescribeClientQuotas",
        ApiKey::DescribeClientQuotas,
        v(DescribeClientQuotasRequest::VERSIONS),
        &|ver| {
            frame(
                ApiKey::DescribeClientQuotas,
                ver,
                &DescribeClientQuotasRequest::default(),
            )
        },
    );
    all
}

/// Sends each request on its own connection and returns each response frame.
async fn exchange<S>(mut connect: impl FnMut() -> S, requests: &[(String, Vec<u8>)]) -> Vec<Vec<u8>>
where
    S: std::future::Future<Output = Box<dyn Io>>,
{
    let mut out = Vec::new();
    for (name, req) in requests {
        let mut s = connect().await;
        s.write_all(req).await.unwrap();
        s.flush().await.unwrap();
        let read = async {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await?;
            let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).await?;
            Ok::<_, std::io::Error>(body)
        };
        let body = tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push(body);
    }
    out
}

/// Every upstream name and address of the test cluster, lower case.
fn upstream_names(c: &Cluster) -> Vec<String> {
    let mut names = vec!["msk.test".to_owned()];
    for (id, host, _) in c.brokers() {
        names.push(host);
        names.push(format!("127.0.0.1{id}"));
    }
    names
}

fn leaks(bytes: &[u8], names: &[String]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    names
        .iter()
        .filter(|n| text.contains(n.as_str()))
        .cloned()
        .collect()
}

#[test]
fn refused_admin_requests_name_no_upstream_broker_through_the_proxy() {
    let c = cluster();
    let _shared = c.shared();
    let names = upstream_names(c);
    let requests = requests();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Directly, as the read-only principal, to broker 1.
    let files = UpstreamTlsFiles::mutual(
        Some(c.ca()),
        c.cert(Principal::Readonly),
        c.key(Principal::Readonly),
        None,
    );
    let tls = std::sync::Arc::new(upstream_config(&files).unwrap());
    let (_, host, port) = c.brokers()[0].clone();
    let resolver = Resolver::new(Duration::from_secs(30));
    let direct = rt.block_on(exchange(
        || {
            let tls = tls.clone();
            let addr = UpstreamAddr {
                host: host.clone(),
                port,
            };
            let resolver = &resolver;
            async move {
                let s = kafka_tls_proxy::upstream::connect(
                    &addr,
                    Some(tls),
                    Duration::from_secs(10),
                    resolver,
                )
                .await
                .unwrap();
                Box::new(s) as Box<dyn Io>
            }
        },
        &requests,
    ));

    // Through the proxy, as the same principal, with every byte recorded by the relay.
    let proxy = Proxy::start_as(c, Principal::Readonly, &[]);
    let bootstrap = format!("{}:{}", proxy::CLIENT_HOST, proxy.port);
    let through = rt.block_on(exchange(
        || {
            let bootstrap = bootstrap.clone();
            async move {
                let s = tokio::net::TcpStream::connect(bootstrap).await.unwrap();
                Box::new(s) as Box<dyn Io>
            }
        },
        &requests,
    ));

    let mut leaked_directly = 0;
    for (((name, _), d), p) in requests.iter().zip(&direct).zip(&through) {
        let direct_leaks = leaks(d, &names);
        let proxy_leaks = leaks(p, &names);
        eprintln!(
            "{name}: direct {} bytes naming {direct_leaks:?}; through the proxy {} bytes naming {proxy_leaks:?}",
            d.len(),
            p.len()
        );
        if !direct_leaks.is_empty() {
            leaked_directly += 1;
        }
        assert!(
            proxy_leaks.is_empty(),
            "{name}: {proxy_leaks:?} reached the client"
        );
    }
    // Every API whose refusal carries a message names the broker when asked directly.
    assert!(
        leaked_directly >= 8,
        "only {leaked_directly} direct answers named a broker: the test no longer shows the leak"
    );
    let sample: String = String::from_utf8_lossy(&through[1])
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect();
    eprintln!("DescribeAcls through the proxy: {sample}");
    // The broker's own address became the address clients use for that broker: the proxy
    // host and one of the broker ports (not the bootstrap port).
    let broker_ports: Vec<String> = c
        .brokers()
        .iter()
        .map(|(id, _, _)| {
            format!(
                "connectionId={}:{}-",
                proxy::CLIENT_HOST,
                proxy.base + *id as u16
            )
        })
        .collect();
    assert!(
        broker_ports.iter().any(|p| sample.contains(p.as_str())),
        "{sample} names none of {broker_ports:?}"
    );
    let checked = proxy.assert_no_upstream_leak();
    eprintln!(
        "{} requests; {leaked_directly} direct answers named brokers; relay scan clean ({checked} address responses)",
        requests.len()
    );
}
