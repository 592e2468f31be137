//! Real clients through the proxy against the real 3-broker mutual-TLS cluster: kcat
//! (librdkafka), the Java console producer and consumer with a consumer group, and the Java
//! admin tools. Every byte the proxy sends to the clients is recorded and checked for
//! upstream addresses.

mod common;
mod proxy;

use common::{assert_success, cluster, unique};
use proxy::{Proxy, CLIENT_HOST};

fn lines(n: std::ops::Range<u32>, prefix: &str) -> String {
    n.map(|i| format!("{prefix}-{i}\n")).collect()
}

#[test]
fn kcat_lists_metadata_produces_and_consumes_through_the_proxy() {
    let c = cluster();
    let _up = c.shared();
    let proxy = Proxy::start(c, &[]);
    let topic = unique("kcat");
    c.create_topic(&topic, 3, 3);

    let out = c.kcat_raw(&["-b", &proxy.bootstrap(), "-L", "-m", "10"], None);
    let text = assert_success("kcat -L through the proxy", &out);
    for node in 1..=3 {
        let expected = format!("broker {node} at {CLIENT_HOST}:{}", proxy.base + node);
        assert!(text.contains(&expected), "missing '{expected}' in:\n{text}");
    }
    assert!(!text.contains("msk.test"), "{text}");

    let input = lines(0..200, "kcat");
    proxy.produce(c, &topic, &input);
    let mut got = proxy.consume_all(c, &topic);
    got.sort();
    let mut want: Vec<String> = input.lines().map(str::to_owned).collect();
    want.sort();
    assert_eq!(got, want);

    let checked = proxy.assert_no_upstream_leak();
    assert!(
        checked >= 3,
        "only {checked} address-carrying responses seen"
    );
}

#[test]
fn java_console_clients_and_a_consumer_group_that_commits_and_resumes() {
    let c = cluster();
    let _up = c.shared();
    let proxy = Proxy::start(c, &[]);
    let topic = unique("java");
    let group = unique("group");
    let bootstrap = proxy.bootstrap();

    let out = c.cli(
        "topics",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    );
    assert_success("create topic through the proxy", &out);
    c.wait_for_topic(&topic, 3);

    let produce = |input: &str| {
        let out = c.cli_stdin(
            "console-producer",
            &[
                "--bootstrap-server",
                &bootstrap,
                "--topic",
                &topic,
                "--producer-property",
                "acks=all",
            ],
            Some(input.as_bytes()),
        );
        assert_success("console producer through the proxy", &out);
    };
    let consume = |max: usize| proxy.consume_as_group(c, &topic, &group, max);

    let first = lines(0..20, "first");
    produce(&first);
    let mut want: Vec<String> = first.lines().map(str::to_owned).collect();
    want.sort();
    assert_eq!(consume(20), want);

    // The group committed its offsets: a second run sees only what came after.
    let second = lines(0..7, "second");
    produce(&second);
    let mut want: Vec<String> = second.lines().map(str::to_owned).collect();
    want.sort();
    assert_eq!(
        consume(7),
        want,
        "the group resumes from its committed offsets"
    );

    let out = c.cli(
        "consumer-groups",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--describe",
            "--group",
            &group,
        ],
    );
    let text = assert_success("describe group through the proxy", &out);
    assert!(text.contains(&topic), "{text}");

    let checked = proxy.assert_no_upstream_leak();
    assert!(
        checked >= 3,
        "only {checked} address-carrying responses seen"
    );
}

#[test]
fn admin_tools_create_describe_delete_and_describe_the_cluster() {
    let c = cluster();
    let _up = c.shared();
    let proxy = Proxy::start(c, &[]);
    let topic = unique("admin");
    let bootstrap = proxy.bootstrap();

    let out = c.cli(
        "topics",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "2",
            "--replication-factor",
            "3",
        ],
    );
    assert_success("create", &out);
    let out = c.cli(
        "topics",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--describe",
            "--topic",
            &topic,
        ],
    );
    let text = assert_success("describe", &out);
    assert!(
        text.contains("PartitionCount: 2") || text.contains("PartitionCount:\t2"),
        "{text}"
    );
    assert!(
        text.contains("ReplicationFactor: 3") || text.contains("ReplicationFactor:\t3"),
        "{text}"
    );

    // Admin describeCluster goes through DescribeCluster on current brokers.
    let out = c.cli("cluster", &["cluster-id", "--bootstrap-server", &bootstrap]);
    let text = assert_success("cluster-id", &out);
    assert!(text.contains("Cluster ID"), "{text}");

    // DescribeQuorum v2 lists the controllers' listeners: they must not leak either.
    let out = c.cli(
        "metadata-quorum",
        &["--bootstrap-server", &bootstrap, "describe", "--status"],
    );
    let text = assert_success("metadata-quorum describe", &out);
    assert!(text.contains("LeaderId"), "{text}");
    assert!(!text.contains("msk.test"), "{text}");

    let out = c.cli("broker-api-versions", &["--bootstrap-server", &bootstrap]);
    let text = assert_success("broker-api-versions", &out);
    for node in 1..=3 {
        let expected = format!("{CLIENT_HOST}:{} (id: {node}", proxy.base + node);
        assert!(text.contains(&expected), "missing '{expected}' in:\n{text}");
    }

    let out = c.cli(
        "topics",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--delete",
            "--topic",
            &topic,
        ],
    );
    assert_success("delete", &out);

    let checked = proxy.assert_no_upstream_leak();
    assert!(
        checked >= 3,
        "only {checked} address-carrying responses seen"
    );
}

#[test]
fn tls_on_the_proxy_listener_with_and_without_client_certificates() {
    let c = cluster();
    let _up = c.shared();
    let root = common::repo_root();
    let server_cert = root.join("certs-dev/proxy-server.pem");
    let server_key = root.join("certs-dev/proxy-server.key");
    // The proxy's certificate names localhost, so clients are told to dial localhost.
    let proxy = Proxy::start(
        c,
        &[
            "--advertised-host",
            "localhost",
            "--listener-cert",
            server_cert.to_str().unwrap(),
            "--listener-key",
            server_key.to_str().unwrap(),
            "--listener-client-ca",
            c.ca().to_str().unwrap(),
        ],
    );
    let bootstrap = format!("localhost:{}", proxy.port);
    let ca = format!("ssl.ca.location={}", c.ca().display());
    let cert = format!(
        "ssl.certificate.location={}",
        c.cert(common::Principal::Service).display()
    );
    let key = format!(
        "ssl.key.location={}",
        c.key(common::Principal::Service).display()
    );
    let tls = [
        "-X",
        "security.protocol=ssl",
        "-X",
        &ca,
        "-X",
        "ssl.endpoint.identification.algorithm=https",
    ];

    // With a client certificate signed by the CA the proxy trusts: metadata lists the
    // proxy's TLS ports under the name its certificate carries.
    let mut args = vec!["-b", &bootstrap, "-L", "-m", "10"];
    args.extend_from_slice(&tls);
    args.extend_from_slice(&["-X", &cert, "-X", &key]);
    let text = assert_success("kcat over TLS to the proxy", &c.kcat_raw(&args, None));
    for node in 1..=3 {
        let expected = format!("broker {node} at localhost:{}", proxy.base + node);
        assert!(text.contains(&expected), "missing '{expected}' in:\n{text}");
    }
    let topic = unique("svc.tls-listener");
    c.create_topic(&topic, 1, 3);
    let mut produce = vec!["-b", &bootstrap, "-P", "-t", &topic];
    produce.extend_from_slice(&tls);
    produce.extend_from_slice(&["-X", &cert, "-X", &key]);
    assert_success(
        "produce over TLS",
        &c.kcat_raw(&produce, Some(b"over-tls\n")),
    );
    let mut consume = vec![
        "-b",
        &bootstrap,
        "-C",
        "-t",
        &topic,
        "-o",
        "beginning",
        "-e",
        "-q",
    ];
    consume.extend_from_slice(&tls);
    consume.extend_from_slice(&["-X", &cert, "-X", &key]);
    let out = assert_success("consume over TLS", &c.kcat_raw(&consume, None));
    assert_eq!(out.trim(), "over-tls");

    // Without a client certificate the proxy refuses the handshake.
    let mut args = vec!["-b", &bootstrap, "-L", "-m", "5"];
    args.extend_from_slice(&tls);
    let out = c.kcat_raw(&args, None);
    assert!(
        !out.status.success(),
        "a client without a certificate got through"
    );
}

#[test]
fn bootstrap_skips_an_unreachable_upstream_and_tls_failures_close_clients_promptly() {
    let c = cluster();
    let _up = c.shared();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let upstream = format!("{dead_addr},b-2.msk.test:9094");
    let proxy = Proxy::start(c, &["--upstream", &upstream]);
    // Several connections: each lands on the next upstream in turn; the dead one is skipped.
    for _ in 0..3 {
        let out = c.kcat_raw(&["-b", &proxy.bootstrap(), "-L", "-m", "10"], None);
        let text = assert_success("metadata through the proxy", &out);
        assert!(text.contains(" 3 brokers:"), "{text}");
    }

    // A proxy that does not trust the brokers' CA: clients fail fast, one log line per reason.
    let other_ca = common::TempDir::new("other-ca");
    common::openssl(
        &other_ca.0,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=other",
            "-days",
            "2",
        ],
    );
    let cert = c.cert(common::Principal::Admin);
    let key = c.key(common::Principal::Admin);
    let untrusting = Proxy::start_with(
        c,
        vec![
            "--upstream-ca".into(),
            other_ca.0.join("ca.pem").into(),
            "--client-cert".into(),
            cert.into(),
            "--client-key".into(),
            key.into(),
            "--discovery-interval".into(),
            "0".into(),
        ],
    );
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", untrusting.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        // The upstream connection opens with the first request: ApiVersions v0, id 1, client "t".
        std::io::Write::write_all(&mut s, &[0, 0, 0, 11, 0, 18, 0, 0, 0, 0, 0, 1, 0, 1, b't'])
            .unwrap();
        let mut buf = [0u8; 1];
        let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed without a byte");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "closed promptly"
        );
    }
    // Each connection tried all three brokers: fifteen failures, one line per broker.
    let log = untrusting.log();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("unknown_ca")).collect();
    assert_eq!(
        failures.len(),
        3,
        "one log line per broker and reason:\n{log}"
    );
    for node in 1..=3 {
        let broker = format!("b-{node}.msk.test:9094");
        assert!(failures.iter().any(|l| l.contains(&broker)), "{log}");
    }
}
