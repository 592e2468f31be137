//! The audit log against the real cluster: written before a change leaves, never forged, never
//! flooded (issue "Policy and audit that no client can stall, bypass or blind").
//!
//! - A CreateTopics whose client resets its connection as soon as the proxy has read it: the
//!   proxy still forwards it and keeps the upstream connection until the broker answers
//!   (--drain-timeout), so the topic is created, its request line (with the topic) comes first,
//!   and the outcome line with the same audit id is the broker's answer.
//! - A client certificate signed by the listener's CA whose subject holds a newline followed by
//!   a forged log line: the denial line that names it stays one line, the newline escaped.
//! - A read-only client pipelining thousands of denied requests: at most
//!   `DENIALS_PER_SECOND` denial lines per second, the next line after a pause carries the
//!   suppressed count, lines + suppressed = requests, and the counter agrees.
//! - Topics named by id (Produce v13, DeleteTopics v6): a read-only identity's Produce v13 to
//!   an id the proxy has not seen is denied with a line showing the id and that its name is
//!   unknown; once a Metadata answer relayed through the proxy has named the topic, the same
//!   denial's line names the topic by name. A DeleteTopics by id alone is audited with the
//!   topic's name.

mod common;
mod proxy;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use common::kafka::request_frame;
use common::{cluster, free_port, http_get, metric, unique, wait_until, TempDir};
use proxy::Proxy;

/// What the proxy allows per identity and second (src/connection/audit.rs).
const DENIALS_PER_SECOND: usize = 20;

/// The audit lines of a text log: (event, audit id if any, the whole line).
fn audit_lines(log: &str) -> Vec<(String, Option<u64>, String)> {
    let field = |line: &str, key: &str| -> Option<String> {
        let at = line.find(&format!(" {key}="))? + key.len() + 2;
        let rest = &line[at..];
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            &quoted[..quoted.find('"')?]
        } else {
            rest.split(' ').next()?
        };
        Some(value.to_owned())
    };
    log.lines()
        .filter(|l| l.contains(" audit: "))
        .filter_map(|l| {
            let event = field(l, "event")?;
            let id = field(l, "audit_id").and_then(|v| v.parse().ok());
            Some((event, id, l.to_owned()))
        })
        .collect()
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

#[test]
fn a_change_whose_client_resets_at_once_is_audited_before_it_leaves() {
    let c = cluster();
    let _up = c.shared();
    // A reset client's forwarded requests are still answered by the broker before the
    // upstream connection closes, within --drain-timeout: longer than the request's own
    // timeout, so the broker's answer (success or not) is always what ends the wait.
    let proxy = Proxy::start(c, &["--log", "info", "--drain-timeout", "60s"]);
    let topic = unique("audit-reset");
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(&topic))
            .with_num_partitions(1)
            .with_replication_factor(3)]);
    let frame = request_frame("audit-test", ApiKey::CreateTopics as i16, 5, 2, 7, &request);
    // Send, then reset the connection (SO_LINGER 0) before any answer can come: none is read.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .unwrap();
        s.write_all(&frame).await.unwrap();
        // Reset once the proxy has the request (a reset before it read the bytes would discard
        // them in the kernel): its request line says so, and it is forwarded whatever follows.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !audit_lines(&proxy.log())
            .iter()
            .any(|(e, _, l)| e == "request" && l.contains(&topic))
        {
            assert!(
                Instant::now() < deadline,
                "no request line:\n{}",
                proxy.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Zero linger: the close is a reset, and nothing blocks.
        #[allow(deprecated)]
        s.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
    });
    // The broker acts on it all the same: the topic exists with the request's one partition
    // (asked without auto-creation, which the test cluster has on and which would give three).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = c.admin_cli("topics", &["--describe", "--topic", &topic]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("PartitionCount: 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} not created as requested: {text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_until("the outcome line", Duration::from_secs(30), || {
        audit_lines(&proxy.log())
            .iter()
            .any(|(e, _, l)| (e == "change" || e == "outcome") && l.contains(&topic))
    });
    let log = proxy.log();
    let lines = audit_lines(&log);
    let request = lines
        .iter()
        .find(|(e, _, l)| e == "request" && l.contains(&topic))
        .unwrap_or_else(|| panic!("no request line for {topic}:\n{log}"));
    let id = request.1.expect("the request line has an audit id");
    let outcome: Vec<_> = lines
        .iter()
        .filter(|(e, i, _)| (e == "change" || e == "outcome") && *i == Some(id))
        .collect();
    assert_eq!(
        outcome.len(),
        1,
        "one outcome line for audit id {id}:\n{log}"
    );
    let pos = |needle: &str| log.find(needle).unwrap();
    assert!(
        pos(&request.2) < pos(&outcome[0].2),
        "the request line comes first:\n{log}"
    );
    // The outcome is the broker's own answer, not "unknown": the proxy kept the upstream
    // connection open until it came, although the client had gone.
    let o = &outcome[0].2;
    assert!(
        o.contains("event=\"change\"") && o.contains("error_codes=[0]"),
        "{o}"
    );
    println!("audit: request line: {}", request.2);
    println!("audit: outcome line: {o}");
    c.delete_topic(&topic);
}

#[test]
fn a_certificate_subject_with_a_newline_cannot_forge_a_log_line() {
    let c = cluster();
    let _up = c.shared();
    let dir = TempDir::new("audit-newline");
    let root = common::repo_root();
    // A CN holds at most 64 characters: a line that would start with the forged text.
    let forged = "INFO audit: event=\"change\" forged=yes";
    let subject = format!("/CN=evil\n{forged}");
    let key = dir.path().join("evil.key");
    let csr = dir.path().join("evil.csr");
    let cert = dir.path().join("evil.pem");
    let ext = dir.path().join("client.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let p = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    common::openssl(
        dir.path(),
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p(&key),
            "-out",
            &p(&csr),
            "-subj",
            &subject,
        ],
    );
    // Signed by the CA the proxy's listener trusts: the proxy accepts it and logs its subject.
    common::openssl(
        dir.path(),
        &[
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&root.join("certs-dev/ca.pem")),
            "-CAkey",
            &p(&root.join("certs-dev/ca.key")),
            "-CAcreateserial",
            "-CAserial",
            &p(&dir.path().join("ca.srl")),
            "-out",
            &p(&cert),
            "-days",
            "2",
            "-extfile",
            &p(&ext),
        ],
    );
    let proxy = Proxy::start(
        c,
        &[
            "--log",
            "info",
            "--policy",
            "read-only",
            "--advertised-host",
            "localhost",
            "--listener-cert",
            root.join("certs-dev/proxy-server.pem").to_str().unwrap(),
            "--listener-key",
            root.join("certs-dev/proxy-server.key").to_str().unwrap(),
            "--listener-client-ca",
            c.ca().to_str().unwrap(),
        ],
    );
    let topic = unique("audit-newline");
    c.create_topic(&topic, 1, 3);
    let bootstrap = format!("localhost:{}", proxy.port);
    let ca = format!("ssl.ca.location={}", c.ca().display());
    let cert_arg = format!("ssl.certificate.location={}", cert.display());
    let key_arg = format!("ssl.key.location={}", key.display());
    let args = [
        "-b",
        &bootstrap,
        "-P",
        "-t",
        &topic,
        "-X",
        "security.protocol=ssl",
        "-X",
        &ca,
        "-X",
        &cert_arg,
        "-X",
        &key_arg,
        "-X",
        "message.timeout.ms=5000",
    ];
    // Denied (read-only): the denial line names the client's certificate subject.
    let _ = c.kcat_raw(&args, Some(b"denied\n"));
    wait_until("the denial line", Duration::from_secs(15), || {
        audit_lines(&proxy.log())
            .iter()
            .any(|(e, _, _)| e == "denied")
    });
    let log = proxy.log();
    for line in log.lines().filter(|l| l.contains("forged=yes")) {
        assert!(
            line.contains("evil\\nINFO audit: event"),
            "a line of its own for the forged text: {line:?}\n{log}"
        );
    }
    let denied: Vec<_> = audit_lines(&log)
        .into_iter()
        .filter(|(e, _, _)| e == "denied")
        .collect();
    let line = &denied[0].2;
    assert!(
        line.contains(&format!("principal=CN=evil\\n{forged}")),
        "the subject's newline is escaped within the one line: {line}"
    );
    println!("audit: {line}");
    c.delete_topic(&topic);
}

/// A Produce v9 (acks=1) of no records to partition 0 of `topic`.
fn produce(topic: &str, correlation_id: i32) -> Vec<u8> {
    let body = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(
                vec![PartitionProduceData::default().with_index(0)],
            )]);
    request_frame(
        "audit-flood",
        ApiKey::Produce as i16,
        9,
        2,
        correlation_id,
        &body,
    )
}

fn read_frames(s: &mut TcpStream, n: usize) {
    for _ in 0..n {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).unwrap();
    }
}

#[test]
fn a_flood_of_denied_requests_writes_a_bounded_number_of_lines() {
    let c = cluster();
    let _up = c.shared();
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let proxy = Proxy::start(
        c,
        &[
            "--log",
            "info",
            "--policy",
            "read-only",
            "--admin-address",
            &admin_addr,
        ],
    );
    let topic = unique("audit-flood");
    const FLOOD: usize = 3000;
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let started = Instant::now();
    let mut all = Vec::new();
    for i in 0..FLOOD {
        all.extend(produce(&topic, i as i32));
    }
    // Written by a thread while this one reads the answers (each is answered by the proxy).
    let mut writer = s.try_clone().unwrap();
    let sent = std::thread::spawn(move || writer.write_all(&all).unwrap());
    read_frames(&mut s, FLOOD);
    sent.join().unwrap();
    let took = started.elapsed();
    // After a pause, one more: its line carries the count of those suppressed.
    std::thread::sleep(Duration::from_millis(1100));
    s.write_all(&produce(&topic, FLOOD as i32)).unwrap();
    read_frames(&mut s, 1);
    wait_until("the last denial line", Duration::from_secs(10), || {
        proxy.log().contains("suppressed=") && {
            let lines = audit_lines(&proxy.log());
            lines
                .iter()
                .filter(|(e, _, _)| e == "denied")
                .any(|(_, _, l)| !l.contains("suppressed=0"))
        }
    });
    let log = proxy.log();
    let denied: Vec<String> = audit_lines(&log)
        .into_iter()
        .filter(|(e, _, _)| e == "denied")
        .map(|(_, _, l)| l)
        .collect();
    let suppressed: u64 = denied
        .iter()
        .filter_map(|l| {
            l.split(" suppressed=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    // The limiter's promise: per started second, at most DENIALS_PER_SECOND lines.
    let seconds = took.as_secs() as usize + 2;
    println!(
        "audit: {} denied requests in {took:?}: {} lines, {suppressed} suppressed",
        FLOOD + 1,
        denied.len()
    );
    assert!(
        denied.len() <= DENIALS_PER_SECOND * seconds,
        "{} denial lines for {} requests in {took:?}",
        denied.len(),
        FLOOD + 1
    );
    assert_eq!(
        denied.len() as u64 + suppressed,
        FLOOD as u64 + 1,
        "every denial is either written or counted"
    );
    let (status, metrics) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    let counted = metric(
        &metrics,
        "kafka_proxy_audit_lines_suppressed_total",
        &["identity=\""],
    );
    assert_eq!(
        counted, suppressed as f64,
        "the counter counts the same:\n{metrics}"
    );
}

#[test]
fn an_offset_reset_is_audited_and_a_members_commits_are_not() {
    let c = cluster();
    let _up = c.shared();
    let proxy = Proxy::start(c, &["--log", "info"]);
    let topic = unique("audit-offsets");
    let group = unique("audit-group");
    c.create_topic(&topic, 1, 3);
    proxy.produce(c, &topic, "one\ntwo\nthree\n");
    // A group member consumes and commits (generation and member id set): not audited.
    let got = proxy.consume_as_group(c, &topic, &group, 3);
    assert_eq!(got, ["one", "three", "two"]);
    let commits = |log: &str| -> Vec<String> {
        audit_lines(log)
            .into_iter()
            .filter(|(e, _, l)| e == "request" && l.contains("api=OffsetCommit"))
            .map(|(_, _, l)| l)
            .collect()
    };
    assert!(
        commits(&proxy.log()).is_empty(),
        "a member's commits were audited:\n{}",
        proxy.log()
    );
    // An admin resets the group's offsets from outside the group (generation -1): audited.
    let bootstrap = proxy.bootstrap();
    let out = c.cli(
        "consumer-groups",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--group",
            &group,
            "--topic",
            &topic,
            "--reset-offsets",
            "--to-earliest",
            "--execute",
        ],
    );
    common::assert_success(
        "kafka-consumer-groups --reset-offsets through the proxy",
        &out,
    );
    wait_until("the reset's outcome line", Duration::from_secs(15), || {
        audit_lines(&proxy.log())
            .iter()
            .any(|(e, _, l)| e == "change" && l.contains("api=OffsetCommit"))
    });
    let log = proxy.log();
    let resets = commits(&log);
    assert_eq!(resets.len(), 1, "one audited reset:\n{log}");
    assert!(resets[0].contains(&topic), "{}", resets[0]);
    println!("audit: {}", resets[0]);
    c.delete_topic(&topic);
}

/// Sends one request frame and reads its answer: the response body after a header of
/// `header_version`.
fn roundtrip(s: &mut TcpStream, frame: &[u8], header_version: i16) -> bytes::Bytes {
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::Decodable;
    s.write_all(frame).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    let mut body = bytes::Bytes::from(body);
    ResponseHeader::decode(&mut body, header_version).unwrap();
    body
}

/// The topic id of `topic` as a Metadata v12 answer relayed through the proxy on `s` gives it
/// (which is what teaches the proxy the id's name), in its text form.
fn topic_id_through(s: &mut TcpStream, topic: &str) -> String {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use kafka_protocol::protocol::Decodable;
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]));
    let frame = request_frame("audit-ids", ApiKey::Metadata as i16, 12, 2, 1, &request);
    let mut body = roundtrip(s, &frame, 1);
    let answer = MetadataResponse::decode(&mut body, 12).unwrap();
    let t = &answer.topics[0];
    assert_eq!(t.error_code, 0, "metadata of {topic}: {answer:?}");
    t.topic_id.to_string()
}

/// A field of a generated message whose type is kafka-protocol's Uuid, from its text form.
fn uuid<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().expect("uuid")
}

/// A Produce v13 (acks=1) naming partition 0 of the topic `id` by its id only.
fn produce_by_id(id: &str, correlation_id: i32) -> Vec<u8> {
    let body = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_topic_id(uuid(id))
            .with_partition_data(
                vec![PartitionProduceData::default().with_index(0)],
            )]);
    request_frame(
        "audit-ids",
        ApiKey::Produce as i16,
        13,
        2,
        correlation_id,
        &body,
    )
}

fn denial_lines(log: &str) -> Vec<String> {
    audit_lines(log)
        .into_iter()
        .filter(|(e, _, _)| e == "denied")
        .map(|(_, _, l)| l)
        .collect()
}

#[test]
fn a_produce_naming_a_topic_by_id_is_denied_with_the_topics_name() {
    let c = cluster();
    let _up = c.shared();
    let proxy = Proxy::start(c, &["--log", "info", "--policy", "read-only"]);
    let topic = unique("audit-by-id");
    c.create_topic(&topic, 1, 3);
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // An id no Metadata has named: denied, and its line says whose name is not known.
    let unknown = "abababab-abab-abab-abab-abababababab";
    roundtrip(&mut s, &produce_by_id(unknown, 2), 1);
    wait_until("the first denial line", Duration::from_secs(15), || {
        !denial_lines(&proxy.log()).is_empty()
    });
    let first = denial_lines(&proxy.log()).remove(0);
    assert!(
        first.contains(&format!("{unknown}-0 (topic name unknown)")),
        "an unknown id is shown with its id: {first}"
    );
    // The topic's Metadata passes through the proxy (as a producer asks it before
    // producing); from then on its id names it.
    let id = topic_id_through(&mut s, &topic);
    roundtrip(&mut s, &produce_by_id(&id, 3), 1);
    wait_until("the second denial line", Duration::from_secs(15), || {
        denial_lines(&proxy.log()).len() >= 2
    });
    let second = denial_lines(&proxy.log()).remove(1);
    println!("audit: {first}\naudit: {second}");
    assert!(
        second.contains(&format!("\"{topic}-0\"")),
        "the denial names {topic} by its name: {second}"
    );
    assert!(!second.contains(&id), "{second}");
    assert!(second.contains("api=Produce version=13"), "{second}");
    c.delete_topic(&topic);
}

#[test]
fn a_delete_topics_by_id_is_audited_with_the_topics_name() {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
    use kafka_protocol::protocol::Decodable;
    let c = cluster();
    let _up = c.shared();
    let proxy = Proxy::start(c, &["--log", "info"]);
    let topic = unique("audit-delete-by-id");
    c.create_topic(&topic, 1, 3);
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let id = topic_id_through(&mut s, &topic);
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(30000)
        .with_topics(vec![DeleteTopicState::default().with_topic_id(uuid(&id))]);
    let frame = request_frame("audit-ids", ApiKey::DeleteTopics as i16, 6, 2, 4, &request);
    let mut body = roundtrip(&mut s, &frame, 1);
    let answer = DeleteTopicsResponse::decode(&mut body, 6).unwrap();
    assert_eq!(answer.responses[0].error_code, 0, "{answer:?}");
    wait_until("the change line", Duration::from_secs(15), || {
        audit_lines(&proxy.log())
            .iter()
            .any(|(e, _, l)| e == "change" && l.contains("api=DeleteTopics"))
    });
    let log = proxy.log();
    let lines: Vec<_> = audit_lines(&log)
        .into_iter()
        .filter(|(_, _, l)| l.contains("api=DeleteTopics"))
        .collect();
    let request = lines
        .iter()
        .find(|(e, _, _)| e == "request")
        .unwrap_or_else(|| panic!("no request line:\n{log}"));
    println!("audit: {}", request.2);
    assert!(
        request.2.contains(&format!("resources=[\"{topic}\"]")),
        "the request line names {topic}: {}",
        request.2
    );
    // Deleted: the cluster no longer lists it.
    wait_until("the topic gone", Duration::from_secs(30), || {
        let out = c.admin_cli("topics", &["--list"]);
        !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == topic)
    });
}

/// The topic id of `topic` as a DescribeTopicPartitions v0 answer relayed through the proxy on
/// `s` gives it (what Kafka 4.x admin tools ask instead of Metadata), in its text form.
fn topic_id_described_through(s: &mut TcpStream, topic: &str) -> String {
    use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
    use kafka_protocol::messages::{
        DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
    };
    use kafka_protocol::protocol::Decodable;
    let request = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![TopicRequest::default().with_name(topic_name(topic))])
        .with_response_partition_limit(10);
    let key = ApiKey::DescribeTopicPartitions as i16;
    let frame = request_frame("audit-ids", key, 0, 2, 5, &request);
    let mut body = roundtrip(s, &frame, 1);
    let answer = DescribeTopicPartitionsResponse::decode(&mut body, 0).unwrap();
    let t = &answer.topics[0];
    assert_eq!(t.error_code, 0, "describe {topic}: {answer:?}");
    t.topic_id.to_string()
}

#[test]
fn a_topic_id_learned_from_describe_topic_partitions_names_the_topic_in_audit_lines() {
    let c = cluster();
    let _up = c.shared();
    let proxy = Proxy::start(c, &["--log", "info", "--policy", "read-only"]);
    let topic = unique("audit-by-dtp");
    c.create_topic(&topic, 1, 3);
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // No Metadata on this proxy ever named the topic: only the DescribeTopicPartitions answer.
    let id = topic_id_described_through(&mut s, &topic);
    roundtrip(&mut s, &produce_by_id(&id, 6), 1);
    wait_until("the denial line", Duration::from_secs(15), || {
        !denial_lines(&proxy.log()).is_empty()
    });
    let line = denial_lines(&proxy.log()).remove(0);
    println!("audit: {line}");
    assert!(
        line.contains(&format!("\"{topic}-0\"")),
        "the denial names {topic} by its name: {line}"
    );
    assert!(!line.contains(&id), "{line}");
    c.delete_topic(&topic);
}
