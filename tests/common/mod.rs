//! Shared support for the integration tests: the real mutual-TLS Kafka cluster started by
//! `tests/cluster/cluster.sh start` (see `tests/run`), and the helpers several test files
//! share. std only, but for the submodules [`kafka`] (hand-built frames and a fake broker on
//! tokio; needs no cluster) and [`clickhouse`] (a clickhouse-server of the test's own).
//!
//! Use from a test file with `mod common;` then `let c = common::cluster();`.
//!
//! The cluster is started once per test run by `tests/run` (not per test). `cluster()` PANICS
//! with a clear message when it is not running: integration tests never silently skip.
//! The state dir is `$KTP_CLUSTER_DIR` or `<repo>/target/kafka-cluster`; its `cluster.env`
//! (KEY=VALUE lines, no quoting, written by `cluster.sh start` once every broker is ready and
//! removed by `cluster.sh stop`) is the contract between the script and the tests.
//!
//! Broker names (`b-N.msk.test`) resolve only under `tests/with-hosts` (tests/run takes care).
//! Tests that stop or restart brokers must hold `c.exclusive()` for their whole duration; all
//! other tests that depend on every broker being up may hold `c.shared()`.
#![allow(dead_code)]

pub mod clickhouse;
pub mod kafka;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A client identity of the test cluster (certificate CN = principal name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Principal {
    /// `User:admin`, super user.
    Admin,
    /// `User:service`: topics/groups/transactional ids with prefix `svc.` only.
    Service,
    /// `User:readonly`: read/describe all topics, groups with prefix `ro.`.
    Readonly,
}

impl Principal {
    pub fn name(self) -> &'static str {
        match self {
            Principal::Admin => "admin",
            Principal::Service => "service",
            Principal::Readonly => "readonly",
        }
    }
    fn env_prefix(self) -> &'static str {
        match self {
            Principal::Admin => "KTP_ADMIN",
            Principal::Service => "KTP_SERVICE",
            Principal::Readonly => "KTP_READONLY",
        }
    }
}

/// The running test cluster, as described by `cluster.env`.
pub struct Cluster {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
    lock: RwLock<()>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The running cluster (loaded once per test binary). Panics when it is not running.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::load)
}

/// Path of the repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cluster state dir: `$KTP_CLUSTER_DIR` or `<repo>/target/kafka-cluster`.
pub fn cluster_dir() -> PathBuf {
    match std::env::var_os("KTP_CLUSTER_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_root().join("target/kafka-cluster"),
    }
}

/// Parses KEY=VALUE lines (blank lines and `#` comments ignored; no quoting).
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

/// A name unique in this test run, e.g. `unique("svc.orders")` -> `svc.orders-12345-1-...`.
/// Kafka topic names allow `[a-zA-Z0-9._-]`.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 100_000_000;
    format!("{prefix}-{}-{n}-{t}", std::process::id())
}

/// `name` on `$PATH` or in /usr/sbin, /usr/bin, /sbin.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// A free port on 127.0.0.1 (just released by the kernel, so nothing listens on it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Calls `f` every 200 ms until it returns true; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// GET over plain HTTP/1.0 from 127.0.0.1:`port` (an admin listener); returns status and
/// body. Panics when nothing listens or the answer cannot be read to its end.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let (text, read) = http_get_text(port, path);
    read.unwrap();
    http_status_and_body(&text)
}

/// [`http_get`] that keeps what arrived before a read error or the 5 s timeout (status 0 when
/// nothing did), for listeners that may be starved or cut the answer short.
pub fn http_get_lenient(port: u16, path: &str) -> (u16, String) {
    let (text, _) = http_get_text(port, path);
    http_status_and_body(&text)
}

fn http_get_text(port: u16, path: &str) -> (String, std::io::Result<usize>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    let read = stream.read_to_string(&mut text);
    (text, read)
}

fn http_status_and_body(text: &str) -> (u16, String) {
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

/// Sum of every sample of a Prometheus metric whose line contains all `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs a command and returns its output (panics only if it cannot be started).
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    let desc = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input)
            .unwrap_or_else(|e| panic!("writing stdin of {desc}: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {desc}: {e}"))
}

/// Panics with stdout/stderr when the command failed; returns stdout as text.
pub fn assert_success(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

impl Cluster {
    /// Loads `cluster.env` and checks that the cluster is reachable. Panics otherwise.
    pub fn load() -> Cluster {
        let dir = cluster_dir();
        let env_file = dir.join("cluster.env");
        let text = std::fs::read_to_string(&env_file).unwrap_or_else(|e| {
            panic!(
                "the test Kafka cluster is not running ({}: {e}).\n\
                 Run the tests with `tests/run`, or start it by hand:\n  \
                 tests/with-hosts tests/cluster/cluster.sh start\n  \
                 tests/with-hosts cargo test ...",
                env_file.display()
            )
        });
        let c = Cluster {
            dir,
            env: parse_env(&text),
            lock: RwLock::new(()),
        };
        // The names must resolve here (tests/with-hosts), and every broker must accept TCP.
        for (node, host, port) in c.brokers() {
            let addrs: Vec<SocketAddr> = match (host.as_str(), port).to_socket_addrs() {
                Ok(a) => a.collect(),
                Err(e) => panic!(
                    "{host} does not resolve ({e}): run the tests under tests/with-hosts \
                     (tests/run does), e.g. `tests/with-hosts cargo test`"
                ),
            };
            let expected: SocketAddr = format!("127.0.0.1{node}:{port}").parse().unwrap();
            assert!(
                addrs.contains(&expected),
                "{host} resolves to {addrs:?}, expected {expected}: run under tests/with-hosts"
            );
            if let Err(e) = TcpStream::connect_timeout(&expected, Duration::from_secs(3)) {
                panic!(
                    "broker {node} ({host}:{port}) of the test cluster is not reachable ({e}); \
                     cluster.env exists but the cluster seems down: \
                     `tests/with-hosts tests/cluster/cluster.sh start` (logs: {}/node-{node}.log)",
                    c.dir.display()
                );
            }
        }
        c
    }

    /// A value of cluster.env; panics when missing.
    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from {}/cluster.env", self.dir.display()))
    }
    fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(self.get(key))
    }

    /// Kafka version the cluster runs, e.g. "4.1.2".
    pub fn version(&self) -> &str {
        self.get("KTP_KAFKA_VERSION")
    }
    /// (major, minor) of the Kafka version.
    pub fn version_major_minor(&self) -> (u32, u32) {
        let mut it = self
            .version()
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }
    /// `b-1.msk.test:9094,b-2.msk.test:9094,b-3.msk.test:9094`
    pub fn bootstrap(&self) -> &str {
        self.get("KTP_BOOTSTRAP")
    }
    /// (node id, advertised host, client port) of every broker.
    pub fn brokers(&self) -> Vec<(i32, String, u16)> {
        self.get("KTP_BROKERS")
            .split(',')
            .map(|b| {
                let mut p = b.splitn(3, ':');
                let id = p.next().unwrap().parse().unwrap();
                let host = p.next().unwrap().to_string();
                let port = p.next().unwrap().parse().unwrap();
                (id, host, port)
            })
            .collect()
    }
    /// `host:port` of broker `node`.
    pub fn broker_addr(&self, node: i32) -> String {
        let (_, h, p) = self
            .brokers()
            .into_iter()
            .find(|b| b.0 == node)
            .expect("no such node");
        format!("{h}:{p}")
    }
    pub fn ca(&self) -> PathBuf {
        self.path("KTP_CA")
    }
    pub fn cert(&self, p: Principal) -> PathBuf {
        self.path(&format!("{}_CERT", p.env_prefix()))
    }
    pub fn key(&self, p: Principal) -> PathBuf {
        self.path(&format!("{}_KEY", p.env_prefix()))
    }
    /// Java client properties for mutual TLS as `p` (bootstrap.servers included).
    pub fn properties(&self, p: Principal) -> PathBuf {
        self.path(&format!("{}_PROPERTIES", p.env_prefix()))
    }
    pub fn admin_cert(&self) -> PathBuf {
        self.cert(Principal::Admin)
    }
    pub fn admin_key(&self) -> PathBuf {
        self.key(Principal::Admin)
    }
    pub fn admin_properties(&self) -> PathBuf {
        self.properties(Principal::Admin)
    }
    /// The service key as passphrase-encrypted PKCS#8, and its passphrase.
    pub fn service_encrypted_key(&self) -> (PathBuf, String) {
        let pass = std::fs::read_to_string(self.get("KTP_SERVICE_KEY_PASSWORD_FILE")).unwrap();
        (
            self.path("KTP_SERVICE_ENCRYPTED_KEY"),
            pass.trim_end().to_string(),
        )
    }
    pub fn proxy_server_cert(&self) -> PathBuf {
        self.path("KTP_PROXY_SERVER_CERT")
    }
    pub fn proxy_server_key(&self) -> PathBuf {
        self.path("KTP_PROXY_SERVER_KEY")
    }
    pub fn kafka_ping(&self) -> PathBuf {
        self.path("KTP_KAFKA_PING")
    }

    /// `cluster.sh` with this cluster's version and state dir.
    pub fn cluster_sh(&self) -> Command {
        let mut cmd = Command::new(self.get("KTP_CLUSTER_CLI"));
        cmd.env("KAFKA_VERSION", self.version())
            .env("KTP_CLUSTER_DIR", &self.dir);
        cmd
    }

    /// Runs a Kafka CLI tool of the cluster's version (`cluster.sh cli TOOL ARGS`), e.g.
    /// `cli("topics", &["--bootstrap-server", c.bootstrap(), "--command-config", .., "--list"])`.
    pub fn cli(&self, tool: &str, args: &[&str]) -> Output {
        self.cli_stdin(tool, args, None)
    }
    pub fn cli_stdin(&self, tool: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(self.cluster_sh().arg("cli").arg(tool).args(args), stdin)
    }
    /// Runs an admin-type tool (topics, acls, configs, consumer-groups, ...) as User:admin:
    /// adds `--bootstrap-server` and `--command-config`.
    pub fn admin_cli(&self, tool: &str, args: &[&str]) -> Output {
        let props = self.admin_properties();
        let mut all = vec![
            "--bootstrap-server",
            self.bootstrap(),
            "--command-config",
            props.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        self.cli(tool, &all)
    }

    /// True from Kafka 4.2 on, where KIP-1147 renamed console tool options
    /// (`--producer.config`/`--consumer.config` -> `--command-config`, `--property` ->
    /// `--reader-property` / `--formatter-property`; the old names print warnings on stdout).
    pub fn console_options_renamed(&self) -> bool {
        self.version_major_minor() >= (4, 2)
    }

    /// Java console producer as `p`: writes `lines` (one record each, `key:value` when `keyed`),
    /// acks=all. Returns the tool's output (use `assert_success`).
    pub fn console_produce(
        &self,
        p: Principal,
        topic: &str,
        lines: &[String],
        keyed: bool,
    ) -> Output {
        let props = self.properties(p);
        let new = self.console_options_renamed();
        let mut args = vec![
            "--bootstrap-server",
            self.bootstrap(),
            "--topic",
            topic,
            if new {
                "--command-config"
            } else {
                "--producer.config"
            },
            props.to_str().unwrap(),
            "--request-required-acks",
            "all",
        ];
        let prop = if new {
            "--reader-property"
        } else {
            "--property"
        };
        if keyed {
            args.extend([prop, "parse.key=true", prop, "key.separator=:"]);
        }
        let input = lines.join("\n") + "\n";
        self.cli_stdin("console-producer", &args, Some(input.as_bytes()))
    }

    /// Java console consumer as `p` (group `group` if given): reads `max_messages` records from
    /// the beginning (60 s timeout); stdout has one record per line (`key:value` when `keyed`).
    pub fn console_consume(
        &self,
        p: Principal,
        topic: &str,
        max_messages: usize,
        keyed: bool,
        group: Option<&str>,
    ) -> Output {
        let props = self.properties(p);
        let new = self.console_options_renamed();
        let n = max_messages.to_string();
        let mut args = vec![
            "--bootstrap-server",
            self.bootstrap(),
            "--topic",
            topic,
            if new {
                "--command-config"
            } else {
                "--consumer.config"
            },
            props.to_str().unwrap(),
            "--from-beginning",
            "--max-messages",
            &n,
            "--timeout-ms",
            "60000",
        ];
        let prop = if new {
            "--formatter-property"
        } else {
            "--property"
        };
        if keyed {
            args.extend([prop, "print.key=true", prop, "key.separator=:"]);
        }
        if let Some(g) = group {
            args.extend(["--group", g]);
        }
        self.cli("console-consumer", &args)
    }

    /// Creates a topic as admin; panics on failure. Waits until every broker knows it.
    pub fn create_topic(&self, name: &str, partitions: u32, replication_factor: u32) {
        let (p, rf) = (partitions.to_string(), replication_factor.to_string());
        let out = self.admin_cli(
            "topics",
            &[
                "--create",
                "--topic",
                name,
                "--partitions",
                &p,
                "--replication-factor",
                &rf,
            ],
        );
        assert_success(&format!("creating topic {name}"), &out);
        self.wait_for_topic(name, partitions);
    }
    /// Creates a topic as admin with an explicit replica assignment (`1:2:3,2:3:1`: one
    /// partition per entry, its first broker the preferred leader); panics on failure. Waits
    /// until every broker knows it.
    pub fn create_topic_assigned(&self, name: &str, assignment: &str) {
        let out = self.admin_cli(
            "topics",
            &[
                "--create",
                "--topic",
                name,
                "--replica-assignment",
                assignment,
            ],
        );
        assert_success(&format!("creating topic {name}"), &out);
        self.wait_for_topic(name, assignment.split(',').count() as u32);
    }
    /// Deletes a topic as admin; panics on failure.
    pub fn delete_topic(&self, name: &str) {
        let out = self.admin_cli("topics", &["--delete", "--topic", name]);
        assert_success(&format!("deleting topic {name}"), &out);
    }
    /// Waits (up to 30 s) until every broker's metadata lists the topic with all partitions led.
    pub fn wait_for_topic(&self, name: &str, partitions: u32) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for (node, _, _) in self.brokers() {
            loop {
                let out = self.kcat(&["-b", &self.broker_addr(node), "-L", "-t", name, "-m", "5"]);
                let text = String::from_utf8_lossy(&out.stdout);
                let led = text
                    .lines()
                    .filter(|l| l.contains("partition") && l.contains("leader"))
                    .count();
                let no_leader = text.contains("leader -1");
                if out.status.success() && led >= partitions as usize && !no_leader {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "topic {name} not visible with {partitions} led partitions on broker {node}: {text}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// Stops broker `n` (controlled shutdown). The returned guard restarts it when dropped
    /// (also when the test panics) unless `start()` was called. Hold `exclusive()` around it.
    pub fn stop_broker(&self, n: i32) -> StoppedBroker<'_> {
        let out = run(
            self.cluster_sh().args(["stop-broker", &n.to_string()]),
            None,
        );
        assert_success(&format!("stop-broker {n}"), &out);
        StoppedBroker {
            cluster: self,
            node: n,
            started: false,
        }
    }
    /// Kills broker `n` with SIGKILL (a crash). Same guard as `stop_broker`.
    pub fn kill_broker(&self, n: i32) -> StoppedBroker<'_> {
        let out = run(
            self.cluster_sh()
                .args(["stop-broker", &n.to_string(), "--kill"]),
            None,
        );
        assert_success(&format!("stop-broker {n} --kill"), &out);
        StoppedBroker {
            cluster: self,
            node: n,
            started: false,
        }
    }
    /// Starts broker `n` again and waits until it answers Metadata listing 3 brokers.
    pub fn start_broker(&self, n: i32) {
        let out = run(
            self.cluster_sh().args(["start-broker", &n.to_string()]),
            None,
        );
        assert_success(&format!("start-broker {n}"), &out);
    }

    /// For tests that stop/restart brokers: no `shared()` holder runs meanwhile (same binary).
    pub fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.lock.write().unwrap_or_else(|e| e.into_inner())
    }
    /// For tests that need every broker up.
    pub fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.lock.read().unwrap_or_else(|e| e.into_inner())
    }

    /// kcat TLS arguments for principal `p` (CA, certificate, key, hostname verification on).
    pub fn kcat_tls_args(&self, p: Principal) -> Vec<String> {
        vec![
            "-X".into(),
            "security.protocol=ssl".into(),
            "-X".into(),
            format!("ssl.ca.location={}", self.ca().display()),
            "-X".into(),
            format!("ssl.certificate.location={}", self.cert(p).display()),
            "-X".into(),
            format!("ssl.key.location={}", self.key(p).display()),
            "-X".into(),
            "ssl.endpoint.identification.algorithm=https".into(),
        ]
    }
    /// Runs kcat as User:admin against the cluster: `-b <bootstrap>` (a later `-b` in `args`
    /// overrides it) plus the TLS arguments, then `args`.
    pub fn kcat(&self, args: &[&str]) -> Output {
        self.kcat_as(Principal::Admin, args, None)
    }
    /// Runs kcat as `p` with optional stdin.
    pub fn kcat_as(&self, p: Principal, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new("kcat");
        cmd.arg("-b")
            .arg(self.bootstrap())
            .args(self.kcat_tls_args(p))
            .args(args);
        run(&mut cmd, stdin)
    }
    /// Runs kcat with exactly `args` (no bootstrap, no TLS settings added).
    pub fn kcat_raw(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(Command::new("kcat").args(args), stdin)
    }

    /// Runs tests/cluster/kafka_ping.py (a stdlib-Python Metadata v1 client over TLS) with `args`.
    pub fn ping(&self, args: &[&str]) -> Output {
        let python = self.env.get("KTP_PYTHON").map_or("python3", String::as_str);
        run(Command::new(python).arg(self.kafka_ping()).args(args), None)
    }
}

/// A broker stopped by a test; restarted on drop unless `start()` was called.
pub struct StoppedBroker<'a> {
    cluster: &'a Cluster,
    node: i32,
    started: bool,
}

impl StoppedBroker<'_> {
    pub fn node(&self) -> i32 {
        self.node
    }
    /// Starts the broker again and waits until it is ready.
    pub fn start(mut self) {
        self.started = true;
        self.cluster.start_broker(self.node);
    }
}

impl Drop for StoppedBroker<'_> {
    fn drop(&mut self) {
        if !self.started {
            let out = run(
                self.cluster
                    .cluster_sh()
                    .args(["start-broker", &self.node.to_string()]),
                None,
            );
            if !out.status.success() && !std::thread::panicking() {
                panic!(
                    "restarting broker {} failed: {}",
                    self.node,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// Runs the openssl CLI with `args` in `dir`; panics with its output on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = run(Command::new("openssl").args(args).current_dir(dir), None);
    assert_success(&format!("openssl {args:?}"), &out);
}

/// The Java verifiable producer (idempotent, acks=all) writing `total` records at `rate` per
/// second through `bootstrap`; stdout/stderr go to files in a directory (one JSON line per
/// record would fill a pipe). Killed on drop, so a test that fails before
/// [`Load::finish`] leaves no producer running.
pub struct Load {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    total: u32,
}

impl Load {
    /// Starts it; its properties, stdout and stderr are `dir/<topic>.{properties,out,err}`.
    pub fn start(
        c: &Cluster,
        dir: &Path,
        bootstrap: &str,
        topic: &str,
        total: u32,
        rate: u32,
    ) -> Load {
        let props = dir.join(format!("{topic}.properties"));
        std::fs::write(
            &props,
            "enable.idempotence=true\nacks=all\nretries=2147483647\ndelivery.timeout.ms=120000\n\
             request.timeout.ms=10000\nreconnect.backoff.ms=50\nlinger.ms=5\n",
        )
        .unwrap();
        let out = dir.join(format!("{topic}.out"));
        let err = dir.join(format!("{topic}.err"));
        let child = c
            .cluster_sh()
            .args([
                "cli",
                "verifiable-producer",
                "--bootstrap-server",
                bootstrap,
            ])
            .args(["--topic", topic, "--max-messages", &total.to_string()])
            .args(["--throughput", &rate.to_string(), "--acks", "-1"])
            .arg("--producer.config")
            .arg(&props)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Load {
            child,
            out,
            err,
            total,
        }
    }

    /// Records acknowledged so far.
    pub fn acked(&self) -> usize {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .matches("\"producer_send_success\"")
            .count()
    }

    /// Waits (120 s) for the producer and asserts every record was acknowledged, none failed;
    /// returns (acknowledged, failed). `context` starts every failure message.
    pub fn finish(mut self, context: &str) -> (usize, usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{context}: producer did not finish in 120 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let stdout = std::fs::read_to_string(&self.out).unwrap();
        let stderr = std::fs::read_to_string(&self.err).unwrap_or_default();
        assert!(status.success(), "{context}: producer failed: {stderr}");
        let failed = stdout.matches("\"producer_send_error\"").count();
        let acked = stdout.matches("\"producer_send_success\"").count();
        assert_eq!(failed, 0, "{context}: failed sends:\n{stdout}");
        assert_eq!(acked, self.total as usize, "{context}: acknowledged");
        (acked, failed)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh temporary directory (removed on drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Generates, with the openssl CLI, a fresh CA (unknown to the cluster) and a client
/// certificate signed by it with subject CN=`cn`, in `dir`. Returns (ca.pem, cert.pem, key.pem).
pub fn untrusted_client_cert(dir: &Path, cn: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join("rogue-ca.key");
    let ca = dir.join("rogue-ca.pem");
    let key = dir.join("rogue-client.key");
    let csr = dir.join("rogue-client.csr");
    let cert = dir.join("rogue-client.pem");
    let ext = dir.join("client.ext");
    std::fs::write(&ext, "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n")
        .unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p(&ca_key),
            "-out",
            &p(&ca),
            "-days",
            "2",
            "-subj",
            "/CN=rogue test CA",
        ],
    );
    openssl(
        dir,
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
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&ca),
            "-CAkey",
            &p(&ca_key),
            "-CAcreateserial",
            "-out",
            &p(&cert),
            "-days",
            "2",
            "-extfile",
            &p(&ext),
        ],
    );
    (ca, cert, key)
}

/// Kafka error codes that clients retry (the protocol's "retriable" errors a test may meet on a
/// cluster that has just started or just created a topic): NOT_LEADER_OR_FOLLOWER,
/// REQUEST_TIMED_OUT, NETWORK_EXCEPTION, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
/// NOT_COORDINATOR, NOT_ENOUGH_REPLICAS(_AFTER_APPEND), LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION,
/// CONCURRENT_TRANSACTIONS, KAFKA_STORAGE_ERROR, FETCH_SESSION_ID_NOT_FOUND, THROTTLING_QUOTA_EXCEEDED.
pub const RETRIABLE_ERRORS: &[i16] = &[6, 7, 13, 14, 15, 16, 19, 20, 5, 3, 51, 56, 70, 89];

/// How long a test retries a retriable error before it asserts on the answer: what a client's
/// default `delivery.timeout.ms`/`default.api.timeout.ms` (60 s) would allow.
pub const RETRY_DEADLINE: Duration = Duration::from_secs(60);

/// Calls `call` until the error code `code` reads from its answer is not retriable, or
/// [`RETRY_DEADLINE`] has passed (then the last answer is returned, for the test to assert on),
/// as clients retry. Any other outcome (success, an authorization error) returns at once.
pub fn retrying<T>(mut call: impl FnMut() -> T, code: impl Fn(&T) -> i16) -> T {
    let deadline = std::time::Instant::now() + RETRY_DEADLINE;
    loop {
        let answer = call();
        let c = code(&answer);
        if !RETRIABLE_ERRORS.contains(&c) || std::time::Instant::now() >= deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
