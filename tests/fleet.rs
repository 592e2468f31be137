//! A fleet: two kafka-tls-proxy processes with the same configuration behind HAProxy (TCP mode,
//! Debian's package), against the real mutual-TLS cluster (README, "Several proxies behind a TCP
//! load balancer").
//!
//! ```text
//!  clients ──> 127.0.0.20 (recording relay: the balancer's name the proxies advertise)
//!               └─> 127.0.0.19 HAProxy: 9092, 9101-9103, /readyz checks on each admin port
//!                    ├─> proxy A 127.0.0.21: bootstrap 9092, brokers 9100+N, admin 9644
//!                    └─> proxy B 127.0.0.22: the same ports
//! ```
//!
//! The relay in front of HAProxy keeps every byte the balancer delivered to clients, so the test
//! can check that no upstream address (b-N.msk.test, 127.0.0.1N) reached them; HAProxy itself
//! forwards bytes unchanged in TCP mode.
//!
//! 1. Java clients through the balancer (plaintext listeners): an idempotent VerifiableProducer
//!    and a console consumer in a group, while (a) proxy A is killed with SIGKILL and started
//!    again, and (b) both proxies are restarted one after the other (SIGTERM drain, exited,
//!    started, healthy in HAProxy, then the other). Every record is read back exactly once, no
//!    send fails, and the longest time each client went without progress is printed per phase.
//! 2. The fleet restarted with TLS listeners that require client certificates
//!    (`--listener-cert/--listener-key/--listener-client-ca`), and ClickHouse's Kafka engine
//!    (librdkafka, with its client certificate) consuming through the balancer across another
//!    rolling restart: every row arrives.
//!
//! Needs `haproxy`, `clickhouse-server` and `clickhouse-client` (tests/run installs Debian's
//! packages); FAILS when they are missing. Uses fixed addresses 127.0.0.19-22.

mod common;
mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::clickhouse::ClickHouse;
use common::{assert_success, find_program, openssl, run, Cluster, TempDir};
use proxy::Relay;

/// The address clients are given (the proxies' `--advertised-host`): the recording relay.
const FRONT: &str = "127.0.0.20";
/// HAProxy's listeners, and its source address towards the proxies.
const BALANCER: &str = "127.0.0.19";
/// The proxies' addresses, and their names in HAProxy.
const MEMBERS: [(&str, &str); 2] = [("proxy-a", "127.0.0.21"), ("proxy-b", "127.0.0.22")];
const BOOTSTRAP_PORT: u16 = 9092;
const BROKER_PORT_BASE: u16 = 9100;
const ADMIN_PORT: u16 = 9644;
/// The HAProxy section whose health checks every broker listener tracks.
const CHECKED: &str = "kafka-bootstrap";

/// Producer rate (records/s) and total: long enough to cover both phases with room to spare.
const RATE: u32 = 500;
const RECORDS: u32 = 12_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Ports of the port map: bootstrap and brokers 1..=3.
fn ports() -> Vec<u16> {
    let mut p = vec![BOOTSTRAP_PORT];
    p.extend((1..=3).map(|n| BROKER_PORT_BASE + n));
    p
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}

/// GET over HTTP/1.0; the status code, 0 when nothing answers.
fn http_status(host: &str, port: u16, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect((host, port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\n\r\n").is_err() {
        return 0;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------ HAProxy

struct HaProxy {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl HaProxy {
    /// TCP mode, one `listen` per proxy port; the bootstrap section checks `/readyz` on each
    /// proxy's admin port, the broker sections track those checks. A connection refused by a
    /// proxy that is down or draining (its listeners close at SIGTERM) is redispatched to the
    /// other proxy.
    fn config(dir: &Path) -> String {
        let mut cfg = format!(
            "global\n\
             \x20   log stderr format raw local0 info\n\
             \x20   stats socket {sock} mode 600 level admin\n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   log global\n\
             \x20   option tcplog\n\
             \x20   option dontlognull\n\
             \x20   timeout connect 2s\n\
             \x20   timeout client 10m\n\
             \x20   timeout server 10m\n\
             \x20   timeout check 1s\n\
             \x20   retries 3\n\
             \x20   option redispatch 1\n\
             \x20   balance roundrobin\n\
             \x20   source {BALANCER}\n\
             \x20   default-server inter 300ms fastinter 200ms downinter 300ms fall 2 rise 2\n",
            sock = dir.join("haproxy.sock").display()
        );
        for port in ports() {
            let section = if port == BOOTSTRAP_PORT {
                CHECKED.to_owned()
            } else {
                format!("kafka-broker-{}", port - BROKER_PORT_BASE)
            };
            cfg += &format!("listen {section}\n    bind {BALANCER}:{port}\n");
            if port == BOOTSTRAP_PORT {
                cfg += "    option httpchk GET /readyz\n    http-check expect status 200\n";
            }
            for (name, ip) in MEMBERS {
                cfg += &if port == BOOTSTRAP_PORT {
                    format!("    server {name} {ip}:{port} check port {ADMIN_PORT}\n")
                } else {
                    format!("    server {name} {ip}:{port} track {CHECKED}/{name}\n")
                };
            }
        }
        cfg
    }

    fn start(dir: &Path) -> HaProxy {
        let bin = find_program("haproxy").unwrap_or_else(|| {
            panic!("haproxy is not installed: apt-get install haproxy (tests/run installs it)")
        });
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, Self::config(dir)).unwrap();
        let check = run(Command::new(&bin).arg("-c").arg("-f").arg(&cfg), None);
        assert_success("haproxy -c (configuration check)", &check);
        let log = dir.join("haproxy.log");
        let child = Command::new(&bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
            .spawn()
            .expect("start haproxy");
        let h = HaProxy {
            child,
            socket: dir.join("haproxy.sock"),
            log,
        };
        wait_until("haproxy's stats socket", Duration::from_secs(10), || {
            UnixStream::connect(&h.socket).is_ok()
        });
        h
    }

    /// The `status` column of `show stat` for server `name` of the checked section: "UP",
    /// "DOWN", "UP 1/2" (going down), "DOWN 1/2" (going up), ...
    fn status(&self, name: &str) -> String {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return "no socket".into();
        };
        let _ = s.write_all(b"show stat\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |n: &str| header.iter().position(|h| *h == n);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            return format!("unparsable: {text}");
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.get(px) == Some(&CHECKED) && f.get(sv) == Some(&name))
            .and_then(|f| f.get(st).map(|s| s.to_string()))
            .unwrap_or_else(|| "missing".into())
    }

    /// Waits until HAProxy's state for `name` is `UP` (`up`) or `DOWN`; returns how long.
    fn wait(&self, name: &str, up: bool) -> Duration {
        let what = format!("HAProxy to see {name} {}", if up { "UP" } else { "DOWN" });
        wait_until(&what, Duration::from_secs(30), || {
            let s = self.status(name);
            if up {
                s == "UP"
            } else {
                s.starts_with("DOWN")
            }
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------ proxies

/// One proxy of the fleet: same options as the other but its own bind/admin address.
struct Member {
    name: &'static str,
    ip: &'static str,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
}

impl Member {
    fn new(name: &'static str, ip: &'static str, dir: &Path) -> Member {
        Member {
            name,
            ip,
            child: None,
            log: dir.join(format!("{name}.log")),
            starts: 0,
        }
    }

    /// Starts the process with the fleet's options (plus `listener`, the TLS listener flags)
    /// and waits until it is ready (`/readyz` 200: brokers discovered over mutual TLS).
    fn start(&mut self, c: &Cluster, listener: &[String]) {
        assert!(self.child.is_none());
        self.wait_ports_free();
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.starts += 1;
        writeln!(
            log,
            "===== fleet test: start {} of {}",
            self.starts, self.name
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kafka-tls-proxy"))
            .args(["--upstream", c.bootstrap()])
            .arg("--upstream-ca")
            .arg(c.ca())
            .arg("--client-cert")
            .arg(c.admin_cert())
            .arg("--client-key")
            .arg(c.admin_key())
            .args(["--bind-address", self.ip, "--advertised-host", FRONT])
            .args(["--bootstrap-port", &BOOTSTRAP_PORT.to_string()])
            .args(["--broker-port-base", &BROKER_PORT_BASE.to_string()])
            .args(["--admin-address", &format!("{}:{ADMIN_PORT}", self.ip)])
            .args([
                "--drain-timeout",
                "10s",
                "--log",
                "info,kafka_tls_proxy=debug",
            ])
            .args(listener)
            .env_remove("KTP_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kafka-tls-proxy");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_status(self.ip, ADMIN_PORT, "/readyz") != 200 {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited at start ({status}):\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after 30 s:\n{}",
                self.name,
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        for port in ports() {
            assert!(
                TcpStream::connect((self.ip, port)).is_ok(),
                "{} ready but not listening on {port}:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// SIGKILL (a crash); returns once the process is gone and its ports are free.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
        self.wait_ports_free();
    }

    /// SIGTERM: the proxy turns not ready, closes its listeners, drains and exits 0. Returns
    /// how long that took.
    fn terminate(&mut self) -> Duration {
        let mut child = self.child.take().expect("running");
        let t0 = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = child.wait().unwrap();
        let took = t0.elapsed();
        assert!(status.success(), "{} after SIGTERM: {status}", self.name);
        took
    }

    fn wait_ports_free(&self) {
        let mut all = ports();
        all.push(ADMIN_PORT);
        for port in all {
            wait_until(
                &format!("{}:{port} to be free", self.ip),
                Duration::from_secs(30),
                || TcpListener::bind((self.ip, port)).is_ok(),
            );
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Both proxies restarted one after the other, each only once HAProxy sees the previous one
/// healthy again. Returns per proxy (drain time, time until HAProxy saw it UP after its start).
fn rolling_restart(
    c: &Cluster,
    lb: &HaProxy,
    members: &mut [Member],
    listener: &[String],
) -> Vec<(Duration, Duration)> {
    let mut times = vec![];
    for m in members.iter_mut() {
        let drained = m.terminate();
        let t0 = Instant::now();
        m.start(c, listener);
        lb.wait(m.name, true);
        times.push((drained, t0.elapsed()));
    }
    times
}

// ------------------------------------------------------------------------------------ clients

/// A child process killed on drop (a failing assertion must not leave it running).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of `"key":` in one JSON line of VerifiableProducer (strings unquoted).
fn json_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[start..];
    if let Some(s) = rest.strip_prefix('"') {
        s.split('"').next()
    } else {
        rest.split([',', '}']).next()
    }
}

/// The longest stretch without progress around the window `[from, to]` (epoch ms): the
/// largest difference between consecutive event times where the later one is at or after
/// `from` and the earlier one at or before `to`.
fn longest_gap(times: &[u64], from: u64, to: u64) -> u64 {
    times
        .windows(2)
        .filter(|w| w[1] >= from && w[0] <= to)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(0)
}

/// For (partition, epoch ms) events: the longest gap over all events, and the longest gap within
/// one partition (a connection to one broker may be down while others carry on), around
/// `[from, to]`.
fn gaps(events: &[(i32, u64)], from: u64, to: u64) -> (u64, u64) {
    let times = |keep: &dyn Fn(i32) -> bool| {
        let mut t: Vec<u64> = events.iter().filter(|e| keep(e.0)).map(|e| e.1).collect();
        t.sort_unstable();
        t
    };
    let any = longest_gap(&times(&|_| true), from, to);
    let partitions: BTreeSet<i32> = events.iter().map(|e| e.0).collect();
    let one = partitions
        .iter()
        .map(|p| longest_gap(&times(&|q| q == *p), from, to))
        .max()
        .unwrap_or(0);
    (any, one)
}

/// A console consumer line printed with `print.partition=true`: `Partition:N<TAB>value`.
fn partition_and_value(line: &str) -> (i32, &str) {
    match line.split_once('\t') {
        Some((p, v)) if p.starts_with("Partition:") => {
            (p["Partition:".len()..].parse().unwrap_or(-1), v)
        }
        _ => (-1, line),
    }
}

// ------------------------------------------------------------------------------------ ClickHouse

/// The fleet's TLS listener certificate: names the balancer's address (librdkafka verifies
/// it), signed by the dev CA. Returns (cert, key).
fn listener_cert(c: &Cluster, dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName=IP:{FRONT},DNS:localhost\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "fleet.key",
            "-out",
            "fleet.csr",
            "-subj",
            "/CN=kafka-proxy-fleet",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "fleet.csr",
            "-CA",
            c.ca().to_str().unwrap(),
            "-CAkey",
            c.get("KTP_CA_KEY"),
            "-CAcreateserial",
            "-CAserial",
            "fleet.srl",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "fleet.pem",
        ],
    );
    let key = dir.join("fleet.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (dir.join("fleet.pem"), key)
}

// ------------------------------------------------------------------------------------ the test

#[test]
fn a_fleet_behind_haproxy_survives_a_crash_and_rolling_restarts() {
    let t_test = Instant::now();
    let c = common::cluster();
    let _up = c.shared();
    let dir = TempDir::new("ktp-fleet");

    let relay = Relay::start(FRONT, BALANCER, &ports());
    let lb = HaProxy::start(dir.path());
    let mut members: Vec<Member> = MEMBERS
        .iter()
        .map(|(name, ip)| Member::new(name, ip, dir.path()))
        .collect();
    for m in members.iter_mut() {
        m.start(c, &[]);
    }
    for m in &members {
        lb.wait(m.name, true);
    }
    let bootstrap = format!("{FRONT}:{BOOTSTRAP_PORT}");
    eprintln!(
        "fleet: HAProxy sees both proxies UP after {:.1} s; clients use {bootstrap}",
        t_test.elapsed().as_secs_f64()
    );

    // ---------------------------------------------------------------- 1. Java clients
    let topic = common::unique("fleet");
    let group = common::unique("fleet-group");
    c.create_topic(&topic, 3, 3);

    let props = dir.path().join("producer.properties");
    std::fs::write(
        &props,
        "enable.idempotence=true\nacks=all\nretries=2147483647\ndelivery.timeout.ms=120000\n\
         request.timeout.ms=10000\nreconnect.backoff.ms=50\nreconnect.backoff.max.ms=1000\n\
         linger.ms=5\n",
    )
    .unwrap();
    let consumer_err = dir.path().join("consumer.err");
    let mut consumer = Process(
        c.cluster_sh()
            .args(["cli", "console-consumer", "--bootstrap-server", &bootstrap])
            .args(["--topic", &topic, "--group", &group, "--from-beginning"])
            .args([
                "--max-messages",
                &RECORDS.to_string(),
                "--timeout-ms",
                "60000",
            ])
            .args([
                if c.console_options_renamed() {
                    "--formatter-property"
                } else {
                    "--property"
                },
                "print.partition=true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&consumer_err).unwrap())
            .spawn()
            .expect("start the console consumer"),
    );
    // (arrival time, value) of every record the consumer printed.
    let consumed: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let reader = {
        let consumed = consumed.clone();
        let stdout = consumer.0.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                consumed.lock().unwrap().push((now_ms(), line));
            }
        })
    };
    let producer_out = dir.path().join("producer.out");
    let producer_err = dir.path().join("producer.err");
    let mut producer = Process(
        c.cluster_sh()
            .args([
                "cli",
                "verifiable-producer",
                "--bootstrap-server",
                &bootstrap,
            ])
            .args(["--topic", &topic, "--max-messages", &RECORDS.to_string()])
            .args(["--throughput", &RATE.to_string(), "--acks", "-1"])
            // Keys spread the records over every partition (without keys the sticky
            // partitioner fills one partition at a time), so that each partition's leader
            // connection carries a steady flow whose interruption shows.
            .args(["--repeating-keys", "1000"])
            .arg("--producer.config")
            .arg(&props)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&producer_out).unwrap())
            .stderr(std::fs::File::create(&producer_err).unwrap())
            .spawn()
            .expect("start the verifiable producer"),
    );
    let acked = || {
        std::fs::read_to_string(&producer_out)
            .unwrap_or_default()
            .matches("producer_send_success")
            .count()
    };
    wait_until(
        "the producer's first 1000 acks",
        Duration::from_secs(60),
        || acked() >= 1000,
    );
    // The group's first join waits for group.initial.rebalance.delay.ms (3 s): both clients
    // run steadily before the first fault.
    wait_until(
        "the consumer's first 1000 records",
        Duration::from_secs(60),
        || consumed.lock().unwrap().len() >= 1000,
    );
    thread::sleep(Duration::from_secs(2));

    // Client connections through the balancer so far (each reconnect is a new one).
    let connections = || relay.recorded.lock().unwrap().len();
    let conns_before = connections();

    // (a) A crashes; HAProxy takes it out, B serves every connection; A comes back.
    let kill_start = now_ms();
    let t = Instant::now();
    members[0].kill();
    lb.wait(members[0].name, false);
    let detected = t.elapsed();
    thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    members[0].start(c, &[]);
    lb.wait(members[0].name, true);
    let back = t.elapsed();
    let kill_end = now_ms();
    let conns_kill = connections();
    eprintln!(
        "fleet: SIGKILL of {}: HAProxy marked it DOWN within {:.2} s; restarted and UP again in {:.2} s",
        members[0].name,
        detected.as_secs_f64(),
        back.as_secs_f64()
    );
    thread::sleep(Duration::from_secs(3));

    // (b) Rolling restart: A then B, each SIGTERM (drain), exited, started, UP in HAProxy.
    let roll_start = now_ms();
    let times = rolling_restart(c, &lb, &mut members, &[]);
    let roll_end = now_ms();
    let conns_roll = connections();
    for (m, (drained, up)) in members.iter().zip(&times) {
        eprintln!(
            "fleet: rolling restart: {} drained and exited in {:.2} s, UP in HAProxy {:.2} s after its start",
            m.name,
            drained.as_secs_f64(),
            up.as_secs_f64()
        );
    }
    assert!(
        producer.0.try_wait().unwrap().is_none(),
        "the producer finished before the rolling restart did ({:.0} s into the test): \
         raise RECORDS so that the traffic covers both phases",
        t_test.elapsed().as_secs_f64()
    );

    let status = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(s) = producer.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "producer still running after 120 s"
            );
            thread::sleep(Duration::from_millis(200));
        }
    };
    let out = std::fs::read_to_string(&producer_out).unwrap();
    let err = std::fs::read_to_string(&producer_err).unwrap_or_default();
    assert!(
        status.success(),
        "verifiable producer failed ({status}):\n{err}"
    );
    // (partition, acknowledgement time) of every send.
    let mut acks: Vec<(i32, u64)> = vec![];
    let mut produced: BTreeSet<String> = BTreeSet::new();
    let mut failed = vec![];
    for line in out.lines() {
        match json_field(line, "name") {
            Some("producer_send_success") => {
                acks.push((
                    json_field(line, "partition").unwrap().parse().unwrap(),
                    json_field(line, "timestamp").unwrap().parse().unwrap(),
                ));
                produced.insert(json_field(line, "value").unwrap().to_owned());
            }
            Some("producer_send_error") => failed.push(line.to_owned()),
            _ => {}
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed sends: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        acks.len(),
        RECORDS as usize,
        "every record acknowledged once"
    );
    assert_eq!(
        produced.len(),
        RECORDS as usize,
        "distinct values acknowledged"
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    while consumer.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "consumer still running 90 s after the producer finished; {} records read",
            consumed.lock().unwrap().len()
        );
        thread::sleep(Duration::from_millis(200));
    }
    reader.join().unwrap();
    let consumed = consumed.lock().unwrap().clone();
    // (partition, arrival time) of every record read.
    let mut arrivals: Vec<(i32, u64)> = vec![];
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for (t, line) in &consumed {
        let (partition, value) = partition_and_value(line);
        arrivals.push((partition, *t));
        *counts.entry(value).or_default() += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(10).collect();
    let missing: Vec<_> = produced
        .iter()
        .filter(|v| !counts.contains_key(v.as_str()))
        .take(10)
        .collect();
    assert!(
        missing.is_empty() && duplicated.is_empty() && consumed.len() == RECORDS as usize,
        "consumer read {} records, {} distinct; missing e.g. {missing:?}, duplicated e.g. {duplicated:?}\n{}",
        consumed.len(),
        counts.len(),
        std::fs::read_to_string(&consumer_err).unwrap_or_default()
    );

    eprintln!(
        "fleet: {} records produced (idempotent, acks=all), {} failed sends; {} read by the group \
         consumer, {} distinct, none twice",
        acks.len(),
        failed.len(),
        consumed.len(),
        counts.len()
    );
    eprintln!(
        "fleet: client connections through the balancer: {conns_before} before the SIGKILL, \
         {} new ones during it, {} during the rolling restart",
        conns_kill - conns_before,
        conns_roll - conns_kill
    );
    for (client, what, events) in [
        ("producer", "an acknowledged send", &acks),
        ("consumer", "a record read", &arrivals),
    ] {
        let first = events.iter().map(|e| e.1).min().unwrap();
        let steady = gaps(events, first + 1000, kill_start - 1);
        let kill = gaps(events, kill_start, kill_end);
        let roll = gaps(events, roll_start, roll_end);
        eprintln!(
            "fleet: {client}: longest time without {what}, any partition / one partition: \
             steady {} / {} ms, around the SIGKILL {} / {} ms, rolling restart {} / {} ms",
            steady.0, steady.1, kill.0, kill.1, roll.0, roll.1
        );
    }

    // Nothing the balancer delivered named an upstream broker; every address was the front's.
    let mut forbidden: Vec<String> = c.brokers().into_iter().map(|(_, h, _)| h).collect();
    forbidden.push("msk.test".into());
    forbidden.extend((1..=3).map(|n| format!("127.0.0.1{n}")));
    let broker_ports: Vec<u16> = (1..=9).map(|n| BROKER_PORT_BASE + n).collect();
    let (conns, bytes, checked) = relay.assert_no_upstream_leak(&forbidden, &broker_ports);
    assert!(
        checked > 0,
        "no address-carrying response crossed the relay"
    );
    eprintln!(
        "fleet: {conns} client connections, {bytes} bytes to clients, {checked} responses with \
         broker addresses: no upstream name or address, every broker at {FRONT}:910N"
    );
    for m in &members {
        let log = m.log();
        assert!(!log.contains("panicked"), "{}:\n{log}", m.name);
        // Without client IP preservation, a proxy's peers are the balancer (README, AWS NLB).
        assert!(
            log.contains(&format!("peer={BALANCER}:")),
            "{} logged no connection from the balancer:\n{log}",
            m.name
        );
    }
    let t_java = t_test.elapsed();

    // ---------------------------------------------------------------- 2. ClickHouse over TLS
    let (cert, key) = listener_cert(c, dir.path());
    // ClickHouse's client certificate, from a CA of its own that only the proxies trust.
    let (client_ca, ch_cert, ch_key) = common::untrusted_client_cert(dir.path(), "clickhouse");
    let tls: Vec<String> = vec![
        "--listener-cert".into(),
        cert.display().to_string(),
        "--listener-key".into(),
        key.display().to_string(),
        "--listener-client-ca".into(),
        client_ca.display().to_string(),
    ];
    rolling_restart(c, &lb, &mut members, &tls);
    // Its Kafka engine (librdkafka) connects with TLS and a client certificate.
    let ch = ClickHouse::start(
        "ktp-fleet-clickhouse",
        "information",
        &format!(
            "<security_protocol>ssl</security_protocol>\
             <ssl_ca_location>{}</ssl_ca_location>\
             <ssl_certificate_location>{}</ssl_certificate_location>\
             <ssl_key_location>{}</ssl_key_location>",
            c.ca().display(),
            ch_cert.display(),
            ch_key.display()
        ),
    );
    let ch_topic = common::unique("fleet.ch");
    c.create_topic(&ch_topic, 3, 3);
    ch.consume_events(&bootstrap, &ch_topic, &common::unique("fleet-ch"));
    // Rows are produced through the balancer too, with kcat over TLS and the same certificate.
    let kcat_tls: Vec<String> = [
        "security.protocol=ssl".to_owned(),
        format!("ssl.ca.location={}", c.ca().display()),
        format!("ssl.certificate.location={}", ch_cert.display()),
        format!("ssl.key.location={}", ch_key.display()),
    ]
    .iter()
    .flat_map(|x| ["-X".to_owned(), x.clone()])
    .collect();
    let produce = |from: u64, to: u64| {
        let input: String = (from..=to)
            .map(|i| format!("{{\"id\":{i},\"msg\":\"row {i}\"}}\n"))
            .collect();
        let mut args = vec!["-b", &bootstrap, "-P", "-t", &ch_topic, "-X", "acks=all"];
        args.extend(kcat_tls.iter().map(String::as_str));
        let out = c.kcat_raw(&args, Some(input.as_bytes()));
        assert_success(
            &format!("kcat produce {from}..={to} through the fleet"),
            &out,
        );
    };
    let wait_rows = |n: u64| {
        wait_until(
            &format!("{n} rows in ClickHouse"),
            Duration::from_secs(120),
            || ch.counts().1 >= n,
        )
    };
    const BATCH: u64 = 500;
    produce(1, BATCH);
    let took = wait_rows(BATCH);
    eprintln!(
        "fleet: ClickHouse: first {BATCH} rows in {:.1} s",
        took.as_secs_f64()
    );
    produce(BATCH + 1, 2 * BATCH);
    rolling_restart(c, &lb, &mut members, &tls);
    produce(2 * BATCH + 1, 3 * BATCH);
    wait_rows(3 * BATCH);
    thread::sleep(Duration::from_secs(2));
    let (rows, distinct) = ch.counts();
    assert_eq!(distinct, 3 * BATCH, "every row arrived");
    assert_eq!(
        ch.query("SELECT min(id), max(id) FROM events"),
        format!("1\t{}", 3 * BATCH)
    );
    eprintln!(
        "fleet: ClickHouse (librdkafka, client certificate, TLS listeners): {distinct} distinct \
         rows across a rolling restart, {} duplicates",
        rows - distinct
    );
    ch.stop_consuming();
    for m in &members {
        assert!(!m.log().contains("panicked"), "{}:\n{}", m.name, m.log());
    }
    eprintln!(
        "fleet: done in {:.1} s (Java clients {:.1} s, ClickHouse {:.1} s); HAProxy log lines: {}",
        t_test.elapsed().as_secs_f64(),
        t_java.as_secs_f64(),
        (t_test.elapsed() - t_java).as_secs_f64(),
        lb.log().lines().count()
    );
}
