//! Several identities in one proxy process, against the real mutual-TLS cluster and its ACLs
//! (tests/cluster/README.md): `User:admin` is a super user, `User:service` may use topics,
//! groups and transactional ids with the prefix `svc.`, `User:readonly` may read and describe
//! every topic and use groups `ro.*`. Which principal a connection acts as is proven by the
//! BROKER's ACL decisions; which requests a policy refuses by the proxy's own native error
//! answers, audit lines and `kafka_proxy_policy_denials_total`.
//!
//! Every proxy here binds and advertises 127.0.0.1 (identity ports are not behind the harness's
//! recording relay, whose leak checks `tests/through_proxy.rs` and `tests/isolation.rs` make),
//! with `--max-brokers 10`: an identity with ports gets the block bootstrap B, brokers
//! B + 10 + node id, so no two identities' formula ranges can meet.

mod common;
mod proxy;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateAclsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
    DeleteRecordsRequest, DescribeConfigsRequest, GroupId, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, MetadataRequest, ProduceRequest, RequestHeader, ResponseHeader,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use common::{
    cluster, free_port, http_get, metric, unique, wait_until, Cluster, Load, Principal, TempDir,
};
use proxy::Proxy;

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

/// The name the audit log and the metrics give the identity the flags configure.
const DEFAULT_IDENTITY: &str = "default";

const HOST: &str = "127.0.0.1";

fn addr(port: u16) -> String {
    format!("{HOST}:{port}")
}

// ------------------------------------------------------------------ ports and identities

/// One identity's listeners: bootstrap B, broker N on `base + N` (base = B + 10).
#[derive(Clone, Copy, Debug)]
struct Ports {
    bootstrap: u16,
    base: u16,
}

static NEXT_BLOCK: AtomicU16 = AtomicU16::new(0);

/// A block of 25 free ports in 10000..20000 (the harness's proxies use 20000..50000, the
/// kernel's ephemeral ports start at 32768).
fn ports() -> Ports {
    for _ in 0..400 {
        let n = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        let b = 10000 + ((std::process::id() as u16 % 40) * 250 + n * 25) % 9975;
        if (b..b + 25).all(|p| TcpListener::bind((HOST, p)).is_ok()) {
            return Ports {
                bootstrap: b,
                base: b + 10,
            };
        }
    }
    panic!("no free block of 25 ports in 10000..20000");
}

/// An `[[identity]]` table of the `--config` file.
struct Identity {
    name: &'static str,
    ports: Option<Ports>,
    cert: PathBuf,
    key: PathBuf,
    policy: Option<&'static str>,
    subject_cn: Vec<&'static str>,
}

impl Identity {
    /// An identity with its own listeners.
    fn with_ports(name: &'static str, c: &Cluster, p: Principal, policy: &'static str) -> Self {
        Identity {
            name,
            ports: Some(ports()),
            cert: c.cert(p),
            key: c.key(p),
            policy: Some(policy),
            subject_cn: vec![],
        }
    }
    /// An identity chosen by the client's certificate on the default listeners.
    fn by_subject_cn(name: &'static str, c: &Cluster, p: Principal, cn: &'static str) -> Self {
        Identity {
            name,
            ports: None,
            cert: c.cert(p),
            key: c.key(p),
            policy: None,
            subject_cn: vec![cn],
        }
    }
    fn ports(&self) -> Ports {
        self.ports.expect("identity with ports")
    }
    fn bootstrap(&self) -> String {
        addr(self.ports().bootstrap)
    }
    fn toml(&self) -> String {
        let mut t = format!("[[identity]]\nname = {:?}\n", self.name);
        if let Some(p) = self.ports {
            t += &format!(
                "bootstrap-port = {}\nbroker-port-base = {}\n",
                p.bootstrap, p.base
            );
        }
        if !self.subject_cn.is_empty() {
            t += &format!("client-subject-cn = {:?}\n", self.subject_cn);
        }
        t += &format!(
            "client-cert = {:?}\nclient-key = {:?}\n",
            self.cert.display().to_string(),
            self.key.display().to_string()
        );
        if let Some(policy) = self.policy {
            t += &format!("policy = {policy:?}\n");
        }
        t + "\n"
    }
}

/// A proxy process serving the default identity (the flags: admin certificate unless `extra`
/// says otherwise) and `identities` from a `--config` file.
struct Setup {
    proxy: Proxy,
    admin_port: u16,
    config: PathBuf,
    _dir: TempDir,
}

impl Setup {
    fn start(c: &Cluster, identities: &[&Identity], extra: &[&str]) -> Setup {
        let dir = TempDir::new("identities");
        let config = dir.path().join("identities.toml");
        let text: String = identities.iter().map(|i| i.toml()).collect();
        std::fs::write(&config, &text).unwrap();
        let admin_port = free_port();
        let mut options: Vec<OsString> = vec![];
        let defaults: [(&str, OsString); 7] = [
            ("--upstream-ca", c.ca().into()),
            ("--client-cert", c.cert(Principal::Admin).into()),
            ("--client-key", c.key(Principal::Admin).into()),
            ("--config", config.clone().into()),
            ("--advertised-host", HOST.into()),
            ("--max-brokers", "10".into()),
            ("--admin-address", addr(admin_port).into()),
        ];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                options.extend([flag.into(), value]);
            }
        }
        options.extend(extra.iter().map(OsString::from));
        let proxy = Proxy::start_with(c, options);
        let setup = Setup {
            proxy,
            admin_port,
            config,
            _dir: dir,
        };
        for id in identities {
            if let Some(p) = id.ports {
                setup.wait_listening(id.name, p);
            }
        }
        setup
    }

    /// The default identity's bootstrap address (directly, not through the relay).
    fn bootstrap(&self) -> String {
        addr(self.proxy.port)
    }

    fn wait_listening(&self, name: &str, p: Ports) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [p.bootstrap, p.base + 1, p.base + 2, p.base + 3] {
            while TcpStream::connect((HOST, port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "identity {name}: port {port} not listening after 20 s; config:\n{}\nlog:\n{}",
                    std::fs::read_to_string(&self.config).unwrap_or_default(),
                    self.proxy.log()
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn metrics(&self) -> String {
        let (status, body) = http_get(self.admin_port, "/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        body
    }

    fn log(&self) -> String {
        self.proxy.log()
    }
}

fn label(key: &str, value: &str) -> String {
    format!("{key}=\"{value}\"")
}

// ------------------------------------------------------------------ clients

/// A finished client run.
struct Ran {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Ran {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    fn lower(&self) -> String {
        self.text().to_lowercase()
    }
    /// `timeout` killed it: it was still retrying or waiting.
    fn timed_out(&self) -> bool {
        matches!(self.code, Some(124) | Some(137))
    }
    fn show(&self) -> String {
        format!(
            "{} (exit {:?}, {:.1} s)\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.code,
            self.took.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
    fn assert_ok(&self) -> &str {
        assert!(self.ok(), "failed: {}", self.show());
        &self.stdout
    }
    /// Failed promptly with an authorization error of the client library, not a timeout, a
    /// disconnect loop or a transport error.
    fn assert_authorization_error(&self) {
        let text = self.lower();
        assert!(
            !self.timed_out(),
            "ran into the time limit: {}",
            self.show()
        );
        assert!(
            text.contains("authoriz"),
            "no authorization error: {}",
            self.show()
        );
        for bad in [
            "timeoutexception",
            "transport failure",
            "disconnected",
            "connection refused",
        ] {
            assert!(!text.contains(bad), "{bad}: {}", self.show());
        }
    }
}

/// Runs `cmd` under coreutils `timeout` (SIGTERM after `limit` s, SIGKILL 5 s later).
fn run_limited(cmd: &Command, stdin: Option<&[u8]>, limit: u64) -> Ran {
    let mut t = Command::new("timeout");
    t.args(["-k", "5", &limit.to_string()])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        t.current_dir(dir);
    }
    let what = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let started = Instant::now();
    let out = common::run(&mut t, stdin);
    Ran {
        what,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// kcat (librdkafka) against `bootstrap`, plaintext unless `args` says otherwise.
fn kcat(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> Ran {
    let mut cmd = Command::new("kcat");
    cmd.args(["-b", bootstrap]).args(args);
    run_limited(&cmd, stdin.map(str::as_bytes), 60)
}

/// kcat producing `lines` to `topic` (acks=all, a failed message fails within 30 s).
fn kcat_produce(bootstrap: &str, topic: &str, lines: &str, tls: &[String]) -> Ran {
    let mut args = vec![
        "-P",
        "-t",
        topic,
        "-X",
        "acks=all",
        "-X",
        "message.timeout.ms=30000",
    ];
    args.extend(tls.iter().map(String::as_str));
    kcat(bootstrap, &args, Some(lines))
}

/// kcat reading `topic` from the beginning to its end.
fn kcat_consume(bootstrap: &str, topic: &str, tls: &[String]) -> Ran {
    let mut args = vec![
        "-C",
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%s\\n",
    ];
    args.extend(tls.iter().map(String::as_str));
    kcat(bootstrap, &args, None)
}

/// The lines a successful consume printed, sorted.
fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::to_owned).collect();
    v.sort();
    v
}

fn numbered(prefix: &str, n: usize) -> String {
    (0..n).map(|i| format!("{prefix}-{i}\n")).collect()
}

/// A Kafka CLI tool of the cluster's version (`cluster.sh cli TOOL ARGS`), 120 s at most.
fn java(c: &Cluster, tool: &str, args: &[&str], stdin: Option<&str>) -> Ran {
    let mut cmd = c.cluster_sh();
    cmd.arg("cli").arg(tool).args(args);
    run_limited(&cmd, stdin.map(str::as_bytes), 120)
}

/// Client settings for the Java admin tools through a plaintext proxy port: a refused or
/// dropped call surfaces as a TimeoutException within 30 s instead of the default 60 s.
fn admin_properties(dir: &Path) -> PathBuf {
    let p = dir.join("admin-client.properties");
    std::fs::write(
        &p,
        "default.api.timeout.ms=30000\nrequest.timeout.ms=15000\nretries=3\n",
    )
    .unwrap();
    p
}

/// An admin tool (topics, configs, acls, ...) through `bootstrap` with `props`.
fn admin_tool(c: &Cluster, props: &Path, bootstrap: &str, tool: &str, args: &[&str]) -> Ran {
    let props = props.to_str().unwrap();
    let mut all = vec!["--bootstrap-server", bootstrap, "--command-config", props];
    all.extend_from_slice(args);
    java(c, tool, &all, None)
}

/// The Java console producer through `bootstrap`, without idempotence (so that the first
/// request that writes is the Produce itself, not InitProducerId).
fn java_produce(c: &Cluster, bootstrap: &str, topic: &str, lines: &str) -> Ran {
    java(
        c,
        "console-producer",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--producer-property",
            "acks=all",
            "--producer-property",
            "enable.idempotence=false",
            "--producer-property",
            "delivery.timeout.ms=30000",
            "--producer-property",
            "request.timeout.ms=15000",
            "--producer-property",
            "max.block.ms=30000",
        ],
        Some(lines),
    )
}

// ------------------------------------------------------------------ raw Kafka requests

/// One plaintext Kafka connection speaking kafka-protocol's messages.
struct Raw {
    stream: TcpStream,
    correlation: i32,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect((HOST, port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            stream,
            correlation: 0,
        }
    }

    fn send<R: Request>(&mut self, version: i16, request: &R) {
        self.correlation += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("identities-test")))
            .encode(&mut buf, R::header_version(version))
            .unwrap();
        request.encode(&mut buf, version).unwrap();
        self.send_body(&buf);
    }

    fn send_body(&mut self, body: &[u8]) {
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        // A write into a connection the proxy closed may fail; the read that follows says so.
        let _ = self.stream.write_all(&frame);
    }

    /// The next response frame; `None` when the proxy closed the connection.
    fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// Sends `request` at `version` and decodes the answer at the same version; `Err` when the
    /// connection closed instead.
    fn call<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response, String> {
        self.send(version, request);
        let mut body = self
            .read_frame()
            .ok_or_else(|| format!("api {} v{version}: connection closed", R::KEY))?;
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| format!("api {} v{version}: response header: {e:#}", R::KEY))?;
        assert_eq!(header.correlation_id, self.correlation, "api {}", R::KEY);
        let response = R::Response::decode(&mut body, version)
            .map_err(|e| format!("api {} v{version}: response: {e:#}", R::KEY))?;
        assert!(body.is_empty(), "api {} v{version}: bytes left", R::KEY);
        Ok(response)
    }

    /// True when the proxy closes the connection within 10 s without answering.
    fn closes(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Creates topics (3 partitions, RF 3) through a full admin identity's plaintext port and
/// waits until every broker knows them.
fn create_topics(c: &Cluster, port: u16, names: &[&str]) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30000)
        .with_topics(
            names
                .iter()
                .map(|n| {
                    CreatableTopic::default()
                        .with_name(topic_name(n))
                        .with_num_partitions(3)
                        .with_replication_factor(3)
                })
                .collect(),
        );
    let response = Raw::connect(port).call(5, &request).unwrap();
    for t in &response.topics {
        assert_eq!(
            t.error_code, 0,
            "creating {:?}: {:?}",
            t.name, t.error_message
        );
    }
    for n in names {
        c.wait_for_topic(n, 3);
    }
}

/// Creates topics and writes `lines` into each, as User:admin through a throwaway proxy of
/// the harness (for tests whose own proxy has no plaintext admin port).
fn create_topics_as_admin(c: &Cluster, topics: &[&str], lines: &str) {
    let helper = Proxy::start(c, &["--advertised-host", HOST]);
    create_topics(c, helper.port, topics);
    for t in topics {
        kcat_produce(&addr(helper.port), t, lines, &[]).assert_ok();
    }
}

/// The proxy port (as the Metadata answer on `bootstrap` names it) of the leader of
/// partition 0 of `topic`.
fn leader_port(bootstrap: u16, topic: &str) -> u16 {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let r = Raw::connect(bootstrap).call(12, &request).unwrap();
    let leader = r.topics[0]
        .partitions
        .iter()
        .find(|p| p.partition_index == 0)
        .expect("partition 0")
        .leader_id;
    let broker = r
        .brokers
        .iter()
        .find(|b| b.node_id == leader)
        .expect("the leader among the brokers");
    assert_eq!(broker.host.as_str(), HOST);
    u16::try_from(broker.port).unwrap()
}

/// A record batch of one record (magic 2), as a producer sends it.
fn one_record_batch(value: &str) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        key: None,
        value: Some(Bytes::from(value.to_owned())),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn produce_request(topic: &str, acks: i16, value: &str) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(acks)
        .with_timeout_ms(10000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(one_record_batch(value)))])])
}

// ------------------------------------------------------------------ audit lines (JSON)

/// A JSON value: just enough of a parser for the proxy's one-object-per-line logs.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Option<Json> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        (p.i == p.s.len()).then_some(v)
    }
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    /// A field of a log line: top level (flattened events) or under `fields`.
    fn field(&self, key: &str) -> Option<&Json> {
        self.get(key)
            .or_else(|| self.get("fields").and_then(|f| f.get(key)))
    }
    /// The value as text: strings unquoted, numbers as written, arrays comma-joined.
    fn text(&self) -> String {
        match self {
            Json::Null => "null".into(),
            Json::Bool(b) => b.to_string(),
            Json::Num(n) | Json::Str(n) => n.clone(),
            Json::Arr(a) => a.iter().map(Json::text).collect::<Vec<_>>().join(","),
            Json::Obj(o) => o
                .iter()
                .map(|(k, v)| format!("{k}={}", v.text()))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }
    fn value(&mut self) -> Option<Json> {
        self.ws();
        match *self.s.get(self.i)? {
            b'{' => {
                self.i += 1;
                let mut fields = vec![];
                self.ws();
                if self.eat("}") {
                    return Some(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.string()? else {
                        return None;
                    };
                    self.ws();
                    if !self.eat(":") {
                        return None;
                    }
                    let v = self.value()?;
                    fields.push((k, v));
                    self.ws();
                    if self.eat("}") {
                        return Some(Json::Obj(fields));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = vec![];
                self.ws();
                if self.eat("]") {
                    return Some(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    if self.eat("]") {
                        return Some(Json::Arr(items));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'"' => self.string(),
            b't' => self.eat("true").then_some(Json::Bool(true)),
            b'f' => self.eat("false").then_some(Json::Bool(false)),
            b'n' => self.eat("null").then_some(Json::Null),
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                (self.i > start)
                    .then(|| Json::Num(String::from_utf8_lossy(&self.s[start..self.i]).into()))
            }
        }
    }
    fn string(&mut self) -> Option<Json> {
        if !self.eat("\"") {
            return None;
        }
        let mut out = Vec::new();
        loop {
            let b = *self.s.get(self.i)?;
            self.i += 1;
            match b {
                b'"' => return Some(Json::Str(String::from_utf8(out).ok()?)),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                            self.i += 4;
                            let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)
                                .unwrap_or('\u{fffd}');
                            out.extend(ch.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }
}

/// The audit lines (target "audit") of a `--log-format json` log. A line that is not one JSON
/// object must not be an audit line either.
fn audit_lines(log: &str) -> Vec<Json> {
    let mut out = vec![];
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        match Json::parse(line) {
            Some(j) if j.get("target").map(Json::text).as_deref() == Some("audit") => out.push(j),
            Some(_) => {}
            None => assert!(
                !line.contains("audit"),
                "an audit line that is not JSON: {line}"
            ),
        }
    }
    out
}

fn field(line: &Json, key: &str) -> String {
    line.field(key)
        .map(Json::text)
        .unwrap_or_else(|| panic!("audit line without {key}: {line:?}"))
}

/// Every run of digits in `text`, as numbers.
fn numbers(text: &str) -> Vec<i64> {
    text.split(|ch: char| !ch.is_ascii_digit() && ch != '-')
        .filter_map(|n| n.parse().ok())
        .collect()
}

// ------------------------------------------------------------------ live producer

/// Write then rename, as Nomad's templates do, so the proxy never reads half a file.
fn replace_file(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// kcat TLS settings for a client presenting `p`'s certificate to the proxy's TLS listener.
fn tls_to_proxy(c: &Cluster, p: Principal) -> Vec<String> {
    vec![
        "-X".into(),
        "security.protocol=ssl".into(),
        "-X".into(),
        format!("ssl.ca.location={}", c.ca().display()),
        "-X".into(),
        format!("ssl.certificate.location={}", c.cert(p).display()),
        "-X".into(),
        format!("ssl.key.location={}", c.key(p).display()),
        "-X".into(),
        "ssl.endpoint.identification.algorithm=https".into(),
    ]
}

// ================================================================== 1. ports per identity

#[test]
fn one_process_three_identities_act_as_their_own_principals() {
    let c = cluster();
    let _up = c.shared();
    let service = Identity::with_ports("service", c, Principal::Service, "no-admin");
    let readonly = Identity::with_ports("readonly", c, Principal::Readonly, "read-only");
    let s = Setup::start(c, &[&service, &readonly], &[]);

    // Each identity's Metadata names its own broker ports.
    for (who, bootstrap, base) in [
        (DEFAULT_IDENTITY, s.bootstrap(), s.proxy.base),
        ("service", service.bootstrap(), service.ports().base),
        ("readonly", readonly.bootstrap(), readonly.ports().base),
    ] {
        let out = kcat(&bootstrap, &["-L", "-m", "10"], None);
        let text = out.assert_ok();
        for node in 1..=3 {
            let expected = format!("broker {node} at {HOST}:{}", base + node);
            assert!(
                text.contains(&expected),
                "{who}: no '{expected}' in:\n{text}"
            );
        }
        assert!(!text.contains("msk.test"), "{text}");
    }

    let svc_topic = unique("svc.ident");
    let plain_topic = unique("ident-plain");
    create_topics(c, s.proxy.port, &[&svc_topic, &plain_topic]);
    let admin_lines = numbered("admin", 5);
    // Default identity = User:admin: writes anywhere.
    kcat_produce(&s.bootstrap(), &plain_topic, &admin_lines, &[]).assert_ok();

    // service (no-admin policy): the broker lets User:service write svc.* ...
    let svc_lines = numbered("svc", 10);
    kcat_produce(&service.bootstrap(), &svc_topic, &svc_lines, &[]).assert_ok();
    // ... and refuses it everything else (TOPIC_AUTHORIZATION_FAILED from the broker: the
    // policy lets Produce through, as the denial counter below shows).
    let out = kcat_produce(&service.bootstrap(), &plain_topic, "x\n", &[]);
    assert!(
        !out.ok(),
        "User:service wrote {plain_topic}: {}",
        out.show()
    );
    out.assert_authorization_error();
    assert!(
        out.lower().contains("topic authorization failed"),
        "{}",
        out.show()
    );
    let out = java_produce(c, &service.bootstrap(), &plain_topic, "x\n");
    out.assert_authorization_error();
    assert!(
        out.text().contains("TopicAuthorizationException"),
        "{}",
        out.show()
    );
    let out = kcat_consume(&service.bootstrap(), &plain_topic, &[]);
    assert!(!out.ok(), "User:service read {plain_topic}: {}", out.show());
    out.assert_authorization_error();

    // readonly (read-only policy): the proxy refuses Produce with the native error; kcat and
    // the Java producer report an authorization error and stop.
    let out = kcat_produce(&readonly.bootstrap(), &svc_topic, "denied\n", &[]);
    assert!(!out.ok(), "produce through read-only: {}", out.show());
    out.assert_authorization_error();
    assert!(
        out.lower().contains("topic authorization failed"),
        "{}",
        out.show()
    );
    let kcat_denied = summary(&out);
    let out = java_produce(c, &readonly.bootstrap(), &svc_topic, "denied\n");
    out.assert_authorization_error();
    assert!(
        out.text().contains("TopicAuthorizationException"),
        "{}",
        out.show()
    );
    let java_denied = summary(&out);

    // readonly consumes what exists: svc.* and the admin-only topic (User:readonly reads every
    // topic), with kcat and with a Java group consumer (group ro.*: membership and offset
    // commits pass the read-only policy and the broker's ACLs).
    let got = kcat_consume(&readonly.bootstrap(), &svc_topic, &[]);
    assert_eq!(sorted_lines(got.assert_ok()), sorted_lines(&svc_lines));
    let got = kcat_consume(&readonly.bootstrap(), &plain_topic, &[]);
    assert_eq!(sorted_lines(got.assert_ok()), sorted_lines(&admin_lines));
    let group = unique("ro.ident");
    let out = java(
        c,
        "console-consumer",
        &[
            "--bootstrap-server",
            &readonly.bootstrap(),
            "--topic",
            &svc_topic,
            "--group",
            &group,
            "--from-beginning",
            "--max-messages",
            "10",
            "--timeout-ms",
            "30000",
        ],
        None,
    );
    assert_eq!(sorted_lines(out.assert_ok()), sorted_lines(&svc_lines));
    assert!(!out.lower().contains("authoriz"), "{}", out.show());

    // Nothing the service or readonly identities wrote reached the admin-only topic, and the
    // denied produce reached no topic.
    let got = kcat_consume(&s.bootstrap(), &plain_topic, &[]);
    assert_eq!(sorted_lines(got.assert_ok()), sorted_lines(&admin_lines));
    let got = kcat_consume(&s.bootstrap(), &svc_topic, &[]);
    assert_eq!(sorted_lines(got.assert_ok()), sorted_lines(&svc_lines));

    // The proxy denied exactly the two Produce requests of readonly and nothing of service.
    let m = s.metrics();
    let denials = |id: &str| {
        metric(
            &m,
            "kafka_proxy_policy_denials_total",
            &[&label("identity", id)],
        )
    };
    assert_eq!(
        metric(
            &m,
            "kafka_proxy_policy_denials_total",
            &[&label("identity", "readonly"), &label("api", "Produce")]
        ),
        2.0,
        "{m}"
    );
    assert_eq!(denials("readonly"), 2.0, "{m}");
    assert_eq!(denials("service"), 0.0, "{m}");
    assert_eq!(denials(DEFAULT_IDENTITY), 0.0, "{m}");
    for id in [DEFAULT_IDENTITY, "service", "readonly"] {
        assert!(
            metric(
                &m,
                "kafka_proxy_requests_total",
                &[&label("identity", id), &label("api", "Metadata")]
            ) > 0.0,
            "no requests counted for identity {id}:\n{m}"
        );
    }
    assert!(
        metric(
            &m,
            "kafka_proxy_requests_total",
            &[&label("identity", "service"), &label("api", "Produce")]
        ) > 0.0,
        "{m}"
    );
    let log = s.log();
    let denied: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("audit") && l.contains("event=\"denied\""))
        .collect();
    assert_eq!(denied.len(), 2, "{log}");
    assert!(denied.iter().all(|l| l.contains("readonly")), "{log}");
    eprintln!("identities: produce through read-only ports, kcat: {kcat_denied}");
    eprintln!("identities: produce through read-only ports, Java: {java_denied}");
}

/// Exit status, time and the first line naming an authorization error, for the test's report.
fn summary(out: &Ran) -> String {
    let line = out
        .text()
        .lines()
        .find(|l| l.to_lowercase().contains("authoriz"))
        .unwrap_or("")
        .trim()
        .to_owned();
    format!(
        "exit {:?} after {:.1} s: {line}",
        out.code,
        out.took.as_secs_f64()
    )
}

// ================================================================== 2. identity by certificate

#[test]
fn the_client_certificate_chooses_the_identity_and_an_unmatched_one_is_refused() {
    let c = cluster();
    let _up = c.shared();
    let svc_topic = unique("svc.bycert");
    let plain_topic = unique("bycert-plain");
    let seed = numbered("seed", 3);
    create_topics_as_admin(c, &[&svc_topic, &plain_topic], &seed);

    let by_service = Identity::by_subject_cn("svc-by-cert", c, Principal::Service, "service");
    let by_readonly = Identity::by_subject_cn("ro-by-cert", c, Principal::Readonly, "readonly");
    let root = common::repo_root();
    let server_cert = root.join("certs-dev/proxy-server.pem");
    let server_key = root.join("certs-dev/proxy-server.key");
    let ca = c.ca();
    let s = Setup::start(
        c,
        &[&by_service, &by_readonly],
        &[
            "--advertised-host",
            "localhost",
            "--listener-cert",
            server_cert.to_str().unwrap(),
            "--listener-key",
            server_key.to_str().unwrap(),
            "--listener-client-ca",
            ca.to_str().unwrap(),
        ],
    );
    let bootstrap = format!("localhost:{}", s.proxy.port);
    let as_service = tls_to_proxy(c, Principal::Service);
    let as_readonly = tls_to_proxy(c, Principal::Readonly);
    let as_admin = tls_to_proxy(c, Principal::Admin);

    // Both identities use the default listeners, whose brokers are advertised under the name
    // the proxy's certificate carries.
    let mut list = vec!["-L", "-m", "10"];
    list.extend(as_service.iter().map(String::as_str));
    let text = kcat(&bootstrap, &list, None);
    let text = text.assert_ok();
    for node in 1..=3 {
        let expected = format!("broker {node} at localhost:{}", s.proxy.base + node);
        assert!(text.contains(&expected), "no '{expected}' in:\n{text}");
    }

    // A client with the service certificate acts as User:service at the brokers ...
    kcat_produce(&bootstrap, &svc_topic, "from-service\n", &as_service).assert_ok();
    let out = kcat_produce(&bootstrap, &plain_topic, "x\n", &as_service);
    assert!(!out.ok(), "{}", out.show());
    out.assert_authorization_error();
    let out = kcat_consume(&bootstrap, &plain_topic, &as_service);
    assert!(!out.ok(), "User:service read {plain_topic}: {}", out.show());
    out.assert_authorization_error();

    // ... one with the readonly certificate as User:readonly: reads everything, writes nothing
    // (the identity's policy is full: the refusal is the broker's).
    let got = kcat_consume(&bootstrap, &plain_topic, &as_readonly);
    assert_eq!(sorted_lines(got.assert_ok()), sorted_lines(&seed));
    let mut want = seed.clone();
    want.push_str("from-service\n");
    let got = kcat_consume(&bootstrap, &svc_topic, &as_readonly);
    assert_eq!(sorted_lines(got.assert_ok()), sorted_lines(&want));
    let out = kcat_produce(&bootstrap, &svc_topic, "from-readonly\n", &as_readonly);
    assert!(!out.ok(), "User:readonly wrote {svc_topic}: {}", out.show());
    out.assert_authorization_error();

    // The admin certificate is signed by the CA the listener trusts but matches no identity:
    // refused, although the default identity holds the admin certificate upstream.
    let mut list = vec!["-L", "-m", "5"];
    list.extend(as_admin.iter().map(String::as_str));
    let out = kcat(&bootstrap, &list, None);
    assert!(
        !out.ok(),
        "a client matching no identity got through: {}",
        out.show()
    );
    assert!(!out.text().contains("broker 1 at"), "{}", out.show());
    // Refused inside the TLS handshake with an access_denied alert, as a certificate from an
    // unknown CA is, so kcat names the alert. (Under TLS 1.3 the client has finished its side
    // of the handshake when the alert arrives, so librdkafka still sums it up as a transport
    // failure at the end of -m, as for an unknown CA.)
    assert!(
        out.lower().contains("alert access denied"),
        "kcat did not report the TLS alert: {}",
        out.show()
    );
    // The Java tools stop with an authentication error too.
    let dir = std::env::temp_dir().join(unique("unmatched-java"));
    std::fs::create_dir_all(&dir).unwrap();
    let props = dir.join("admin-tls.properties");
    std::fs::write(
        &props,
        format!(
            "security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={}\n\
             ssl.keystore.type=PEM\nssl.keystore.location={}\n\
             default.api.timeout.ms=30000\nrequest.timeout.ms=15000\n",
            c.ca().display(),
            c.dir.join("tls/admin-keystore.pem").display()
        ),
    )
    .unwrap();
    let java_out = java(
        c,
        "topics",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--command-config",
            props.to_str().unwrap(),
            "--list",
        ],
        None,
    );
    assert!(!java_out.ok(), "{}", java_out.show());
    assert!(
        java_out.text().contains("SslAuthenticationException")
            || java_out.lower().contains("authentication failed"),
        "the Java tool did not report an authentication failure: {}",
        java_out.show()
    );
    eprintln!(
        "identities: unmatched certificate: Java tool exit {:?} after {:?}",
        java_out.code, java_out.took
    );
    wait_until("refusal logged", Duration::from_secs(10), || {
        s.log().contains("matches no identity")
    });
    let log = s.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("matches no identity"))
        .unwrap();
    assert!(refusal.contains("WARN"), "{refusal}");
    assert!(refusal.contains("client refused"), "{refusal}");
    // One line per refused certificate per interval, however often it is refused.
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("matches no identity"))
            .count(),
        1,
        "{log}"
    );
    // The identity is on every line of a connection once chosen, and only then.
    assert!(!refusal.contains("identity=default"), "{refusal}");
    for id in ["svc-by-cert", "ro-by-cert"] {
        assert!(
            log.lines()
                .any(|l| l.contains("conn{") && l.contains(&format!("identity={id}"))),
            "no connection line names identity {id}:\n{log}"
        );
        assert!(
            log.lines()
                .any(|l| l.contains("chosen by client certificate")
                    && l.contains(&format!("identity={id}"))
                    && l.contains("policy=")),
            "the start-up log does not list identity {id}:\n{log}"
        );
    }
    assert!(
        !log.lines()
            .any(|l| l.contains("conn{") && l.contains("identity=default")),
        "a connection on certificate-chosen listeners was logged as the default identity:\n{log}"
    );
    eprintln!(
        "identities: unmatched certificate: kcat exit {:?}; proxy: {}",
        out.code,
        refusal.trim()
    );
    let m = s.metrics();
    assert!(
        metric(&m, "kafka_proxy_identity_refusals_total", &[]) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "kafka_proxy_policy_denials_total", &[]),
        0.0,
        "{m}"
    );
    for id in ["svc-by-cert", "ro-by-cert"] {
        assert!(
            metric(&m, "kafka_proxy_requests_total", &[&label("identity", id)]) > 0.0,
            "{id}:\n{m}"
        );
    }
    // Nothing was ever sent upstream as the default identity.
    assert_eq!(
        metric(
            &m,
            "kafka_proxy_requests_total",
            &[&label("identity", DEFAULT_IDENTITY)]
        ),
        0.0,
        "{m}"
    );
}

// ================================================================== 3. policies, natively

/// What one policy must refuse and allow, through `id`'s ports, with the admin certificate
/// upstream (so every refusal is the proxy's: the broker would allow all of it).
fn check_policy(
    c: &Cluster,
    s: &Setup,
    id: &Identity,
    props: &Path,
    existing: &str,
) -> Vec<String> {
    let policy = id.policy.unwrap();
    let read_only = policy == "read-only";
    let bootstrap = id.bootstrap();
    let mut report = vec![];

    // The Java AdminClient (kafka-topics, kafka-configs, kafka-acls): refused with an
    // authorization error, promptly.
    let new_topic = unique(&format!("{}-new", id.name));
    for (what, tool, args) in [
        (
            "create topic",
            "topics",
            vec![
                "--create",
                "--topic",
                &new_topic,
                "--partitions",
                "1",
                "--replication-factor",
                "3",
            ],
        ),
        (
            "delete topic",
            "topics",
            vec!["--delete", "--topic", existing],
        ),
        (
            "alter config",
            "configs",
            vec![
                "--alter",
                "--entity-type",
                "topics",
                "--entity-name",
                existing,
                "--add-config",
                "retention.ms=3600000",
            ],
        ),
        (
            "create ACL",
            "acls",
            vec![
                "--add",
                "--allow-principal",
                "User:nobody",
                "--operation",
                "Read",
                "--topic",
                existing,
            ],
        ),
    ] {
        let out = admin_tool(c, props, &bootstrap, tool, &args);
        assert!(
            !out.stdout.contains("Created topic"),
            "{policy}: {what} reported success: {}",
            out.show()
        );
        out.assert_authorization_error();
        let line = out
            .text()
            .lines()
            .find(|l| l.to_lowercase().contains("authoriz"))
            .unwrap_or("")
            .trim()
            .to_owned();
        report.push(format!(
            "{policy} {what}: {line} ({:.1} s)",
            out.took.as_secs_f64()
        ));
    }
    // Allowed: list and describe topics, list ACLs.
    let out = admin_tool(
        c,
        props,
        &bootstrap,
        "topics",
        &["--describe", "--topic", existing],
    );
    let text = out.assert_ok();
    assert!(
        text.contains(existing) && text.contains("PartitionCount"),
        "{text}"
    );
    let out = admin_tool(c, props, &bootstrap, "topics", &["--list"]);
    assert!(out.assert_ok().contains(existing), "{}", out.show());
    let out = admin_tool(c, props, &bootstrap, "acls", &["--list"]);
    assert!(out.assert_ok().contains("User:service"), "{}", out.show());

    // Nothing changed at the cluster.
    let meta = kcat(&s.bootstrap(), &["-L", "-t", &new_topic, "-m", "10"], None);
    assert!(
        !meta
            .stdout
            .contains(&format!("topic \"{new_topic}\" with 1 partitions")),
        "{policy}: {new_topic} was created: {}",
        meta.show()
    );
    let meta = kcat(&s.bootstrap(), &["-L", "-t", existing, "-m", "10"], None);
    assert!(
        meta.assert_ok().contains("with 3 partitions"),
        "{policy}: {existing} is gone"
    );

    // The same natively, at more than one version: the error of each API in its own answer.
    let port = id.ports().bootstrap;
    let mut raw = Raw::connect(port);
    for version in [2, 5, 7] {
        let r = raw
            .call(
                version,
                &CreateTopicsRequest::default()
                    .with_timeout_ms(5000)
                    .with_topics(vec![CreatableTopic::default()
                        .with_name(topic_name(&new_topic))
                        .with_num_partitions(1)
                        .with_replication_factor(3)]),
            )
            .unwrap();
        assert_eq!(r.topics.len(), 1);
        assert_eq!(r.topics[0].name.0.as_str(), new_topic);
        assert_eq!(
            r.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED,
            "CreateTopics v{version}"
        );
    }
    let r = raw
        .call(
            3,
            &CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic_name(existing))
                    .with_count(6)
                    .with_assignments(None)]),
        )
        .unwrap();
    assert_eq!(
        r.results[0].error_code, TOPIC_AUTHORIZATION_FAILED,
        "CreatePartitions"
    );
    let r = raw
        .call(
            2,
            &DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(topic_name(existing))
                    .with_partitions(vec![DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(1)])]),
        )
        .unwrap();
    assert_eq!(
        r.topics[0].partitions[0].error_code, TOPIC_AUTHORIZATION_FAILED,
        "DeleteRecords"
    );
    // Configuration changes are refused as the broker refuses them: per resource, a topic's
    // with TOPIC_AUTHORIZATION_FAILED, a broker's with CLUSTER_AUTHORIZATION_FAILED.
    for version in [0, 1] {
        let r = raw
            .call(
                version,
                &IncrementalAlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(2) // topic
                        .with_resource_name(str_bytes(existing))
                        .with_configs(vec![AlterableConfig::default()
                            .with_name(str_bytes("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(str_bytes("3600000")))]),
                ]),
            )
            .unwrap();
        assert_eq!(
            r.responses[0].error_code, TOPIC_AUTHORIZATION_FAILED,
            "IncrementalAlterConfigs v{version} of a topic"
        );
    }
    let r = raw
        .call(
            1,
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(4) // broker
                    .with_resource_name(str_bytes("1"))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(str_bytes("log.cleaner.threads"))
                        .with_config_operation(0)
                        .with_value(Some(str_bytes("2")))]),
            ]),
        )
        .unwrap();
    assert_eq!(
        r.responses[0].error_code, CLUSTER_AUTHORIZATION_FAILED,
        "IncrementalAlterConfigs of a broker"
    );
    let r = raw
        .call(
            3,
            &CreateAclsRequest::default().with_creations(vec![AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(str_bytes(existing))
                .with_resource_pattern_type(3) // literal
                .with_principal(str_bytes("User:nobody"))
                .with_host(str_bytes("*"))
                .with_operation(3) // read
                .with_permission_type(3)]), // allow
        )
        .unwrap();
    assert_eq!(
        r.results[0].error_code, CLUSTER_AUTHORIZATION_FAILED,
        "CreateAcls"
    );
    let group = unique("ro.policy");
    let r = raw
        .call(
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(&group))]),
        )
        .unwrap();
    assert_eq!(
        r.results[0].error_code, GROUP_AUTHORIZATION_FAILED,
        "DeleteGroups"
    );
    // Describes pass.
    let r = raw
        .call(
            4,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_configuration_keys(None)
                    .with_resource_name(str_bytes(existing)),
            ]),
        )
        .unwrap();
    assert_eq!(r.results[0].error_code, 0, "DescribeConfigs");
    assert!(!r.results[0].configs.is_empty());

    // Transactions: refused under read-only, passed to the broker under no-admin (which
    // answers as a broker does: no authorization error; NOT_COORDINATOR on a broker that is
    // not the transaction coordinator).
    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(str_bytes(&unique("txn")))))
        .with_transaction_timeout_ms(30000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let r = raw.call(4, &txn).unwrap();
    if read_only {
        assert_eq!(
            r.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            "InitProducerId"
        );
    } else {
        assert_ne!(
            r.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            "InitProducerId"
        );
        assert_ne!(r.error_code, CLUSTER_AUTHORIZATION_FAILED, "InitProducerId");
    }
    report.push(format!(
        "{policy} InitProducerId(transactional): error {}",
        r.error_code
    ));
    // An idempotent producer's InitProducerId (no transactional id) is writing too: refused
    // under read-only as a broker refuses IdempotentWrite, with CLUSTER_AUTHORIZATION_FAILED.
    let idempotent = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(30000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    // A cluster that has just started answers COORDINATOR_LOAD_IN_PROGRESS until its producer
    // id block arrives: retried as producers retry it.
    let r = common::retrying(|| raw.call(4, &idempotent).unwrap(), |r| r.error_code);
    if read_only {
        assert_eq!(
            r.error_code, CLUSTER_AUTHORIZATION_FAILED,
            "idempotent InitProducerId"
        );
    } else {
        assert_eq!(r.error_code, 0, "idempotent InitProducerId under no-admin");
        assert!(r.producer_id.0 >= 0);
    }

    // Produce: refused per topic under read-only (acks=1 at v3 and v9; acks=0 closes the
    // connection, the client expecting no answer); written under no-admin.
    if read_only {
        for version in [3, 9] {
            let r = raw
                .call(version, &produce_request(existing, 1, "denied"))
                .unwrap();
            assert_eq!(
                r.responses[0].partition_responses[0].error_code, TOPIC_AUTHORIZATION_FAILED,
                "Produce v{version}"
            );
        }
        let mut acks0 = Raw::connect(port);
        acks0.send(9, &produce_request(existing, 0, "denied-acks0"));
        assert!(
            acks0.closes(),
            "{policy}: Produce acks=0 did not close the connection"
        );
    } else {
        // To partition 0's leader, through this identity's port for it.
        let mut leader = Raw::connect(leader_port(port, existing));
        let r = common::retrying(
            || {
                leader
                    .call(9, &produce_request(existing, 1, "written"))
                    .unwrap()
            },
            |r| r.responses[0].partition_responses[0].error_code,
        );
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "Produce"
        );
        // acks=0 passes too: the connection stays open and answers the next request.
        leader.send(9, &produce_request(existing, 0, "written-acks0"));
        let r = leader
            .call(12, &MetadataRequest::default().with_topics(Some(vec![])))
            .unwrap();
        assert!(!r.brokers.is_empty());
    }
    // An API key the proxy does not know closes the connection under both policies.
    let mut unknown = Raw::connect(port);
    let mut body = vec![];
    body.extend(999i16.to_be_bytes());
    body.extend(0i16.to_be_bytes());
    body.extend(1i32.to_be_bytes());
    body.extend((-1i16).to_be_bytes()); // null client id
    unknown.send_body(&body);
    assert!(
        unknown.closes(),
        "{policy}: an unknown api key was not refused"
    );
    report
}

#[test]
fn each_policy_refuses_natively_what_it_must_and_allows_the_rest() {
    let c = cluster();
    let _up = c.shared();
    // Both identities present the admin certificate: whatever they are refused, the proxy
    // refused.
    let ro = Identity::with_ports("ro-admin", c, Principal::Admin, "read-only");
    let na = Identity::with_ports("na-admin", c, Principal::Admin, "no-admin");
    let s = Setup::start(c, &[&ro, &na], &[]);
    let dir = TempDir::new("policies");
    let props = admin_properties(dir.path());
    let existing = unique("policy");
    create_topics(c, s.proxy.port, &[&existing]);

    let mut report = check_policy(c, &s, &ro, &props, &existing);
    report.extend(check_policy(c, &s, &na, &props, &existing));
    // no-admin produces with kcat; read-only consumes what it wrote.
    kcat_produce(&na.bootstrap(), &existing, "kcat-no-admin\n", &[]).assert_ok();
    let got = kcat_consume(&ro.bootstrap(), &existing, &[]);
    let got = sorted_lines(got.assert_ok());
    assert!(got.contains(&"kcat-no-admin".to_owned()), "{got:?}");
    assert!(got.contains(&"written".to_owned()), "{got:?}");
    assert!(got.contains(&"written-acks0".to_owned()), "{got:?}");
    assert!(!got.iter().any(|l| l.starts_with("denied")), "{got:?}");

    let m = s.metrics();
    for (id, api) in [
        ("ro-admin", "CreateTopics"),
        ("ro-admin", "DeleteTopics"),
        ("ro-admin", "IncrementalAlterConfigs"),
        ("ro-admin", "CreateAcls"),
        ("ro-admin", "Produce"),
        ("ro-admin", "InitProducerId"),
        ("na-admin", "CreateTopics"),
        ("na-admin", "DeleteTopics"),
        ("na-admin", "CreateAcls"),
    ] {
        assert!(
            metric(
                &m,
                "kafka_proxy_policy_denials_total",
                &[&label("identity", id), &label("api", api)]
            ) >= 1.0,
            "no denial counted for {id} {api}:\n{m}"
        );
    }
    for api in ["Produce", "InitProducerId", "Metadata", "DescribeConfigs"] {
        assert_eq!(
            metric(
                &m,
                "kafka_proxy_policy_denials_total",
                &[&label("identity", "na-admin"), &label("api", api)]
            ),
            0.0,
            "na-admin {api}:\n{m}"
        );
    }
    for line in report {
        eprintln!("identities: {line}");
    }
}

// ================================================================== 4. audit log

#[test]
fn cluster_changes_and_denials_are_audited_once_each_and_traffic_is_not() {
    let c = cluster();
    let _up = c.shared();
    let readonly = Identity::with_ports("readonly", c, Principal::Readonly, "read-only");
    let s = Setup::start(c, &[&readonly], &["--log-format", "json"]);
    let dir = TempDir::new("audit");
    let props = admin_properties(dir.path());
    let topic = unique("audit");
    let bootstrap = s.bootstrap();

    let out = admin_tool(
        c,
        &props,
        &bootstrap,
        "topics",
        &[
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    );
    out.assert_ok();
    c.wait_for_topic(&topic, 3);
    let out = admin_tool(
        c,
        &props,
        &bootstrap,
        "configs",
        &[
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            &topic,
            "--add-config",
            "retention.ms=3600000",
        ],
    );
    out.assert_ok();
    // Traffic: Metadata, Produce, Fetch (and ListOffsets, ApiVersions) through the default
    // identity; a denied Produce through the read-only one.
    kcat(&bootstrap, &["-L", "-m", "10"], None).assert_ok();
    let lines = numbered("audited", 20);
    kcat_produce(&bootstrap, &topic, &lines, &[]).assert_ok();
    let got = kcat_consume(&bootstrap, &topic, &[]);
    assert_eq!(sorted_lines(got.assert_ok()), sorted_lines(&lines));
    let out = kcat_produce(&readonly.bootstrap(), &topic, "denied\n", &[]);
    assert!(!out.ok(), "{}", out.show());
    out.assert_authorization_error();
    let out = admin_tool(
        c,
        &props,
        &bootstrap,
        "topics",
        &["--delete", "--topic", &topic],
    );
    out.assert_ok();

    // Audit lines are written after the broker answered: wait for the last one.
    wait_until("DeleteTopics audit line", Duration::from_secs(10), || {
        audit_lines(&s.log())
            .iter()
            .any(|l| l.field("api").map(Json::text).as_deref() == Some("DeleteTopics"))
    });
    let log = s.log();
    let audit = audit_lines(&log);
    let changes: Vec<&Json> = audit
        .iter()
        .filter(|l| field(l, "event") == "change")
        .collect();
    let denials: Vec<&Json> = audit
        .iter()
        .filter(|l| field(l, "event") == "denied")
        .collect();
    let requests: Vec<&Json> = audit
        .iter()
        .filter(|l| field(l, "event") == "request")
        .collect();
    assert_eq!(
        changes.len() + denials.len() + requests.len(),
        audit.len(),
        "audit lines that are neither request, change nor denied:\n{log}"
    );
    // Each change was announced by its request line (same audit id) before it left.
    for (i, line) in changes.iter().enumerate() {
        let id = field(line, "audit_id");
        let at = audit.iter().position(|l| std::ptr::eq(l, *line)).unwrap();
        assert!(
            audit[..at]
                .iter()
                .any(|l| field(l, "event") == "request" && field(l, "audit_id") == id),
            "change {i} (audit id {id}) has no request line before it:\n{log}"
        );
    }
    assert_eq!(
        requests.len(),
        changes.len(),
        "one request line per change:\n{log}"
    );

    let apis: Vec<String> = changes.iter().map(|l| field(l, "api")).collect();
    assert_eq!(
        apis,
        ["CreateTopics", "IncrementalAlterConfigs", "DeleteTopics"],
        "one change line per cluster change:\n{log}"
    );
    for line in &changes {
        let api = field(line, "api");
        assert_eq!(field(line, "identity"), DEFAULT_IDENTITY, "{api}: {line:?}");
        // Who the client is: a plaintext listener's clients are known by the listener.
        assert_eq!(
            field(line, "principal"),
            format!("listener {DEFAULT_IDENTITY}"),
            "{api}: {line:?}"
        );
        let client = field(line, "client");
        assert!(client.starts_with("127.0.0.1:"), "{api}: client {client}");
        assert!(
            field(line, "version").parse::<i16>().is_ok(),
            "{api}: {line:?}"
        );
        assert!(field(line, "resources").contains(&topic), "{api}: {line:?}");
        let codes = numbers(&field(line, "error_codes"));
        assert!(
            !codes.is_empty() && codes.iter().all(|c| *c == 0),
            "{api}: error codes {:?}",
            field(line, "error_codes")
        );
        assert!(!field(line, "outcome").is_empty(), "{api}: {line:?}");
        eprintln!("identities: audit {}", Json::text(line));
    }

    assert_eq!(denials.len(), 1, "one denial line:\n{log}");
    let d = denials[0];
    assert_eq!(field(d, "identity"), "readonly");
    assert_eq!(field(d, "principal"), "listener readonly", "{d:?}");
    assert!(field(d, "client").starts_with("127.0.0.1:"), "{d:?}");
    assert_eq!(field(d, "api"), "Produce");
    assert!(field(d, "version").parse::<i16>().is_ok(), "{d:?}");
    assert!(field(d, "resources").contains(&topic), "{d:?}");
    assert_eq!(
        numbers(&field(d, "error_code")),
        [i64::from(TOPIC_AUTHORIZATION_FAILED)],
        "{d:?}"
    );
    assert!(!field(d, "reason").is_empty(), "{d:?}");
    assert_eq!(
        d.field("level").map(Json::text).as_deref(),
        Some("WARN"),
        "{d:?}"
    );
    eprintln!("identities: audit {}", Json::text(d));

    for line in &changes {
        let api = field(line, "api");
        assert!(
            !["Produce", "Fetch", "Metadata", "ListOffsets", "ApiVersions"].contains(&api.as_str()),
            "traffic audited: {line:?}"
        );
    }
}

// ================================================================== 5. rotation of one identity

#[test]
fn rotating_one_identitys_certificate_leaves_the_others_untouched() {
    let c = cluster();
    let _up = c.shared();
    let dir = TempDir::new("rotate-identity");
    let cert = dir.path().join("service.pem");
    let key = dir.path().join("service.key");
    replace_file(&c.cert(Principal::Service), &cert);
    replace_file(&c.key(Principal::Service), &key);
    let mut rotating = Identity::with_ports("service", c, Principal::Service, "full");
    rotating.cert = cert.clone();
    rotating.key = key.clone();
    let readonly = Identity::with_ports("readonly", c, Principal::Readonly, "read-only");
    let s = Setup::start(c, &[&rotating, &readonly], &[]);

    let load_topic = unique("rotate-load"); // admin only
    let svc_topic = unique("svc.rotate");
    let plain_topic = unique("rotate-plain");
    create_topics(c, s.proxy.port, &[&load_topic, &svc_topic, &plain_topic]);
    kcat_produce(&s.bootstrap(), &plain_topic, "plain-0\n", &[]).assert_ok();

    // Before: the rotating identity is User:service.
    kcat_produce(&rotating.bootstrap(), &svc_topic, "before\n", &[]).assert_ok();
    let out = kcat_consume(&rotating.bootstrap(), &plain_topic, &[]);
    assert!(!out.ok(), "User:service read {plain_topic}: {}", out.show());
    out.assert_authorization_error();

    // Live traffic through the default identity (User:admin, on a topic only admin may write).
    let total = 3000;
    let load = Load::start(c, dir.path(), &s.bootstrap(), &load_topic, total, 300);
    wait_until(
        "the producer's first acknowledgements",
        Duration::from_secs(60),
        || load.acked() > 0,
    );

    // Rotate `service` to the readonly certificate: key, certificate, SIGHUP.
    let reloads_before = s.log().matches("reloaded").count();
    replace_file(&c.key(Principal::Readonly), &key);
    replace_file(&c.cert(Principal::Readonly), &cert);
    s.proxy.signal("HUP");
    let rotated = Instant::now();
    let acked_at_rotation = load.acked();

    // After: new connections through `service` act as User:readonly at the brokers (reads
    // every topic).
    let mut got = None;
    wait_until(
        "service acting as User:readonly",
        Duration::from_secs(20),
        || {
            let out = kcat_consume(&rotating.bootstrap(), &plain_topic, &[]);
            let ok = out.ok();
            got = Some(out);
            ok
        },
    );
    assert_eq!(got.unwrap().stdout.trim(), "plain-0");
    let took = rotated.elapsed();
    assert!(
        s.log().matches("reloaded").count() > reloads_before,
        "no reload logged:\n{}",
        s.log()
    );
    let out = kcat_produce(&rotating.bootstrap(), &svc_topic, "after\n", &[]);
    assert!(!out.ok(), "User:readonly wrote {svc_topic}: {}", out.show());
    out.assert_authorization_error();
    // The other identities did not change: readonly still reads, and the default identity is
    // still User:admin (its producer below, and a write only admin may make).
    let got = kcat_consume(&readonly.bootstrap(), &svc_topic, &[]);
    assert_eq!(got.assert_ok().trim(), "before");
    kcat_produce(&s.bootstrap(), &plain_topic, "plain-1\n", &[]).assert_ok();

    let (acked, failed) = load.finish("rotation");
    let m = s.metrics();
    assert_eq!(
        metric(&m, "kafka_proxy_tls_reload_failures_total", &[]),
        0.0,
        "{m}"
    );
    eprintln!(
        "identities: rotation of `service` during the load: {acked} records acknowledged \
         through the default identity ({acked_at_rotation} at the rotation), {failed} failed; \
         new principal in effect {:.1} s after SIGHUP",
        took.as_secs_f64()
    );
    // Every record of the load is stored once.
    let got = kcat_consume(&s.bootstrap(), &load_topic, &[]);
    assert_eq!(got.assert_ok().lines().count(), total as usize);
}

// ================================================================== 5. auto topic creation

/// The error code Metadata `version` answers for `topic`, asking with
/// `allow_auto_topic_creation` (v4+; v0-v3 always allow it).
fn metadata_topic_error(raw: &mut Raw, version: i16, topic: &str, allow: bool) -> i16 {
    let mut request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
    ]));
    if version >= 4 {
        request = request.with_allow_auto_topic_creation(allow);
    }
    let response = raw
        .call(version, &request)
        .unwrap_or_else(|e| panic!("Metadata v{version} {topic}: {e}"));
    assert_eq!(response.topics.len(), 1, "v{version}: {response:?}");
    response.topics[0].error_code
}

/// Issue 17, point 4: `read-only` (and `no-admin`) cannot create a topic through Metadata on a
/// cluster with auto.create.topics.enable=true (tests/cluster/cluster.sh turns it on): v4+ with
/// allow_auto_topic_creation=true is forwarded with the flag cleared, v0-v3 naming topics (which
/// always auto-create) are answered with TOPIC_AUTHORIZATION_FAILED. The identity presents the
/// admin certificate: whatever is not created, the proxy prevented.
#[test]
fn read_only_cannot_create_topics_through_metadata_auto_creation() {
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    let c = cluster();
    let _up = c.shared();
    let ro = Identity::with_ports("ro-autocreate", c, Principal::Admin, "read-only");
    let s = Setup::start(c, &[&ro], &[]);

    // Control, through the full default identity: this cluster auto-creates.
    let mut full = Raw::connect(s.proxy.port);
    let control = unique("autocreate-control");
    let code = metadata_topic_error(&mut full, 12, &control, true);
    let created = || {
        (0..50).any(|_| {
            let mut raw = Raw::connect(s.proxy.port);
            let code = metadata_topic_error(&mut raw, 12, &control, false);
            code == 0 || {
                thread::sleep(Duration::from_millis(100));
                false
            }
        })
    };
    // The first answer names the topic as unknown (Kafka 4) or without a leader (3.x) while
    // the controller creates it; whether it was created is what a later Metadata shows.
    assert!(
        created(),
        "this cluster does not auto-create topics (error {code}): the test needs \
         auto.create.topics.enable=true, which tests/cluster/cluster.sh sets; restart the \
         cluster with it"
    );

    let mut raw = Raw::connect(ro.ports().bootstrap);
    let mut report = vec![];
    for v in [4, 9, 12, 13] {
        let topic = unique(&format!("ro-autocreate-v{v}"));
        let code = metadata_topic_error(&mut raw, v, &topic, true);
        assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION, "read-only Metadata v{v}");
        report.push(format!("v{v}: error {code}"));
        // Not created behind the answer either.
        thread::sleep(Duration::from_millis(500));
        let mut check = Raw::connect(s.proxy.port);
        assert_eq!(
            metadata_topic_error(&mut check, 12, &topic, false),
            UNKNOWN_TOPIC_OR_PARTITION,
            "{topic} was created through read-only Metadata v{v}"
        );
    }
    for v in [0, 1, 3] {
        let topic = unique(&format!("ro-autocreate-v{v}"));
        let code = metadata_topic_error(&mut raw, v, &topic, true);
        assert_eq!(code, TOPIC_AUTHORIZATION_FAILED, "read-only Metadata v{v}");
        report.push(format!("v{v}: error {code}"));
        let mut check = Raw::connect(s.proxy.port);
        assert_eq!(
            metadata_topic_error(&mut check, 12, &topic, false),
            UNKNOWN_TOPIC_OR_PARTITION,
            "{topic} was created through read-only Metadata v{v}"
        );
    }
    // Existing topics still answer through read-only at v4+.
    assert_eq!(metadata_topic_error(&mut raw, 12, &control, true), 0);
    eprintln!("identities: read-only Metadata naming new topics: {report:?}");
}
