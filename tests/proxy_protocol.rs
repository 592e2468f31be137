//! The PROXY protocol behind a real balancer: Debian's HAProxy (TCP mode, `send-proxy-v2`, and
//! `send-proxy` for v1) in front of kafka-tls-proxy processes that trust it
//! (`--proxy-protocol-from`), against the real mutual-TLS cluster (README, "PROXY protocol").
//!
//! ```text
//!  kcat, Java CLI (127.0.0.1:port) ──> 127.0.0.41 HAProxy ── from 127.0.0.40, header first ──>
//!      proxy P (plaintext listeners, 127.0.0.1:P, P+N)        send-proxy-v2
//!      proxy T (TLS listeners, 127.0.0.1:T, T+N)              send-proxy-v2, before the ClientHello
//!      proxy P's bootstrap                                    send-proxy (v1)
//!      proxy P's bootstrap                                    no header (a misconfigured balancer)
//! ```
//!
//! Both proxies advertise 127.0.0.41, so every client connection crosses HAProxy. HAProxy logs
//! each client's address and port (`option tcplog`); the proxies' connection spans (`peer=`) and
//! audit lines (`client=`) must name exactly those, and HAProxy's own address (127.0.0.40) only
//! as `via=`. A client that connects to a proxy directly (from 127.0.0.1, not trusted) is served
//! without any header being read, even when its first bytes spell one. A trusted source that
//! sends no header, or nothing, is closed (logged, counted).
//!
//! Needs `haproxy` (tests/run installs Debian's package); FAILS when it is missing. Uses fixed
//! addresses 127.0.0.40-41.

mod common;
mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_success, find_program, free_port, http_get, metric, openssl, run, TempDir};
use proxy::Proxy;

/// HAProxy's listeners: the address both proxies advertise.
const FRONT: &str = "127.0.0.41";
/// HAProxy's source address towards the proxies: the one trusted source.
const BALANCER: &str = "127.0.0.40";

/// One HAProxy `listen` section: front port → 127.0.0.1:`to`, with `send` (the server
/// option: `send-proxy-v2`, `send-proxy` or nothing).
struct Section {
    name: String,
    port: u16,
    to: u16,
    send: &'static str,
}

struct HaProxy {
    child: Child,
    log: PathBuf,
}

impl HaProxy {
    fn start(dir: &Path, sections: &[Section]) -> HaProxy {
        let bin = find_program("haproxy").unwrap_or_else(|| {
            panic!("haproxy is not installed: apt-get install haproxy (tests/run installs it)")
        });
        let mut cfg = format!(
            "global\n    log stderr format raw local0 info\n\
             defaults\n    mode tcp\n    log global\n    option tcplog\n\
             \x20   timeout connect 2s\n    timeout client 2m\n    timeout server 2m\n\
             \x20   source {BALANCER}\n"
        );
        for s in sections {
            cfg += &format!(
                "listen {}\n    bind {FRONT}:{}\n    server proxy 127.0.0.1:{} {}\n",
                s.name, s.port, s.to, s.send
            );
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, &cfg).unwrap();
        let check = run(Command::new(&bin).arg("-c").arg("-f").arg(&path), None);
        assert_success("haproxy -c (configuration check)", &check);
        let log = dir.join("haproxy.log");
        let child = Command::new(&bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
            .spawn()
            .expect("start haproxy");
        let h = HaProxy { child, log };
        for s in sections {
            common::wait_until(
                &format!("haproxy listening on {FRONT}:{}", s.port),
                Duration::from_secs(10),
                || TcpStream::connect((FRONT, s.port)).is_ok(),
            );
        }
        h
    }

    /// Client address → section, from HAProxy's tcplog lines
    /// (`127.0.0.1:45678 [date] section section/proxy ...`), logged when a connection ends.
    fn clients(&self) -> BTreeMap<SocketAddr, String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let client: SocketAddr = words.next()?.parse().ok()?;
                let section = words.nth(1)?.to_owned();
                Some((client, section))
            })
            .collect()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The values of `key=` in the lines of `log` that contain `needle` (up to the next space,
/// `}` or `:` after the port).
fn values(log: &str, needle: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    log.lines()
        .filter(|l| l.contains(needle))
        .flat_map(|l| {
            l.match_indices(&prefix)
                .filter(|(i, _)| *i == 0 || matches!(l.as_bytes()[i - 1], b' ' | b'{'))
                .map(|(i, _)| {
                    l[i + prefix.len()..]
                        .split([' ', '}'])
                        .next()
                        .unwrap_or("")
                        .trim_end_matches(':')
                        .to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A listener certificate naming 127.0.0.41 (kcat verifies it), signed by the dev CA.
fn front_cert(c: &common::Cluster, dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::write(
        dir.join("front.ext"),
        format!("subjectAltName=IP:{FRONT}\nextendedKeyUsage=serverAuth\n"),
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
            "front.key",
            "-out",
            "front.csr",
            "-subj",
            "/CN=kafka-proxy-front",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "front.csr",
            "-CA",
            c.ca().to_str().unwrap(),
            "-CAkey",
            c.get("KTP_CA_KEY"),
            "-CAcreateserial",
            "-CAserial",
            "front.srl",
            "-days",
            "2",
            "-extfile",
            "front.ext",
            "-out",
            "front.pem",
        ],
    );
    let key = dir.join("front.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (dir.join("front.pem"), key)
}

/// Sends `bytes` on a new connection to `addr` and reads until the other side closes or 20 s
/// pass; returns what came back and how long until the close (`None`: still open).
fn send_and_wait_close(addr: (&str, u16), bytes: &[u8]) -> (Vec<u8>, Option<Duration>) {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    let mut got = vec![];
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, Some(t0.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (got, Some(t0.elapsed()))
            }
            Err(_) => return (got, None),
        }
    }
}

/// An ApiVersions v3 request (what librdkafka sends first).
fn api_versions() -> Vec<u8> {
    use kafka_protocol::messages::ApiVersionsRequest;
    use kafka_protocol::protocol::StrBytes;
    common::kafka::request_frame(
        "pp-test",
        18,
        3,
        2,
        1,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("pp-test"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    )
}

#[test]
fn behind_haproxy_the_client_address_is_logged_and_audited() {
    let c = common::cluster();
    let _up = c.shared();
    let dir = TempDir::new("ktp-proxy-protocol");
    let (cert, key) = front_cert(c, dir.path());
    let first_frame_timeout = Duration::from_secs(5);
    let trust = ["--proxy-protocol-from", "127.0.0.40/32"];
    let common_flags = [
        "--advertised-host",
        FRONT,
        "--first-frame-timeout",
        "5s",
        "--log",
        "info,kafka_tls_proxy=debug",
    ];
    let plain_admin = free_port();
    let plain_admin_flag = format!("127.0.0.1:{plain_admin}");
    let mut flags: Vec<&str> = trust.to_vec();
    flags.extend(common_flags);
    flags.extend(["--admin-address", &plain_admin_flag]);
    let plain = Proxy::start(c, &flags);
    let mut tls_flags: Vec<&str> = trust.to_vec();
    tls_flags.extend(common_flags);
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    tls_flags.extend(["--listener-cert", &cert_s, "--listener-key", &key_s]);
    let tls = Proxy::start(c, &tls_flags);

    let nodes: Vec<u16> = c.brokers().iter().map(|b| b.0 as u16).collect();
    let mut sections = vec![];
    for (what, p) in [("plain", &plain), ("tls", &tls)] {
        sections.push(Section {
            name: format!("{what}-bootstrap"),
            port: p.port,
            to: p.port,
            send: "send-proxy-v2",
        });
        for n in &nodes {
            sections.push(Section {
                name: format!("{what}-broker-{n}"),
                port: p.base + n,
                to: p.base + n,
                send: "send-proxy-v2",
            });
        }
    }
    let (v1_port, bare_port) = (free_port(), free_port());
    sections.push(Section {
        name: "plain-bootstrap-v1".into(),
        port: v1_port,
        to: plain.port,
        send: "send-proxy",
    });
    sections.push(Section {
        name: "plain-no-header".into(),
        port: bare_port,
        to: plain.port,
        send: "",
    });
    let lb = HaProxy::start(dir.path(), &sections);

    // ------------------------------------------------ 1. real clients through HAProxy (v2)
    let topic = common::unique("pp");
    c.create_topic(&topic, 3, 3);
    let front = format!("{FRONT}:{}", plain.port);
    let lines: String = (1..=100).map(|i| format!("record {i}\n")).collect();
    let out = c.kcat_raw(
        &["-b", &front, "-P", "-t", &topic, "-X", "acks=all"],
        Some(lines.as_bytes()),
    );
    assert_success("kcat produce through HAProxy (send-proxy-v2)", &out);
    let read = || {
        let out = c.kcat_raw(
            &[
                "-b",
                &front,
                "-C",
                "-t",
                &topic,
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%s\n",
            ],
            None,
        );
        assert_success("kcat consume through HAProxy", &out)
            .lines()
            .count()
    };
    assert_eq!(read(), 100, "every record read back through HAProxy");
    // A cluster change through HAProxy: its audit lines must name the client.
    let created = common::unique("pp-created");
    let out = c.cli(
        "topics",
        &[
            "--bootstrap-server",
            &front,
            "--create",
            "--topic",
            &created,
            "--partitions",
            "1",
            "--replication-factor",
            "3",
        ],
    );
    assert_success("kafka-topics --create through HAProxy", &out);

    // TLS listeners: the header comes before the ClientHello.
    let tls_front = format!("{FRONT}:{}", tls.port);
    let kcat_tls = [
        "-X".to_owned(),
        "security.protocol=ssl".to_owned(),
        "-X".to_owned(),
        format!("ssl.ca.location={}", c.ca().display()),
        "-X".to_owned(),
        "ssl.endpoint.identification.algorithm=https".to_owned(),
    ];
    let mut args = vec![
        "-b",
        &tls_front,
        "-C",
        "-t",
        &topic,
        "-o",
        "beginning",
        "-e",
        "-q",
    ];
    args.extend(kcat_tls.iter().map(String::as_str));
    let out = c.kcat_raw(&args, None);
    let got = assert_success("kcat consume over TLS through HAProxy", &out);
    assert_eq!(got.lines().count(), 100, "every record read over TLS");

    // v1 (`send-proxy`): a metadata request through it.
    let v1_front = format!("{FRONT}:{v1_port}");
    let out = c.kcat_raw(&["-b", &v1_front, "-L", "-t", &topic], None);
    let listed = assert_success("kcat -L through HAProxy (send-proxy, v1)", &out);
    assert!(listed.contains(&format!("{FRONT}:")), "{listed}");

    // ------------------------------------------------ 2. what each side logged
    common::wait_until(
        "the created topic's audit outcome line",
        Duration::from_secs(30),
        || {
            let log = plain.log();
            log.lines()
                .any(|l| l.contains("event=\"change\"") && l.contains(&created))
        },
    );
    // HAProxy logs a connection when it ends: kcat and the CLI have exited, but their last
    // connections may still be closing.
    let client_addrs = |prefix: &str| -> BTreeSet<SocketAddr> {
        lb.clients()
            .into_iter()
            .filter(|(_, s)| s.starts_with(prefix))
            .map(|(a, _)| a)
            .collect()
    };
    let balancer_ip: std::net::IpAddr = BALANCER.parse().unwrap();
    for (what, p, prefix) in [("plain", &plain, "plain-"), ("tls", &tls, "tls-")] {
        let log = p.log();
        // Connections HAProxy delivered: `via` is HAProxy, `peer` the client it logged.
        let peers: BTreeSet<SocketAddr> = values(&log, "via=", "peer")
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect();
        let vias: BTreeSet<std::net::IpAddr> = values(&log, "via=", "via")
            .iter()
            .filter_map(|v| v.parse::<SocketAddr>().ok())
            .map(|a| a.ip())
            .collect();
        assert_eq!(
            vias,
            BTreeSet::from([balancer_ip]),
            "{what}: every proxied connection came via HAProxy"
        );
        assert!(
            !peers.is_empty() && peers.iter().all(|a| a.ip() != balancer_ip),
            "{what}: peers {peers:?}:\n{log}"
        );
        let mut logged = BTreeSet::new();
        common::wait_until(
            &format!("HAProxy's log to name every client the {what} proxy logged"),
            Duration::from_secs(30),
            || {
                logged = client_addrs(prefix);
                peers.is_subset(&logged)
            },
        );
        eprintln!(
            "proxy_protocol: {what}: {} client connections through HAProxy, each logged by the proxy as peer=<the client address HAProxy logged> via={BALANCER}:<port>",
            peers.len()
        );
        assert!(!log.contains("panicked"), "{what}:\n{log}");
    }

    // Audit lines name the client (as HAProxy logged it), never HAProxy.
    let log = plain.log();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" audit: ") && l.contains(&created))
        .collect();
    assert!(audit.len() >= 2, "request and change lines:\n{log}");
    let audited: BTreeSet<SocketAddr> = audit
        .iter()
        .flat_map(|l| values(l, "", "client"))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("client={v}")))
        .collect();
    let through_lb = client_addrs("plain-");
    assert!(
        !audited.is_empty() && audited.is_subset(&through_lb),
        "audit client {audited:?} is one of the clients HAProxy logged {through_lb:?}:\n{}",
        audit.join("\n")
    );
    assert!(audited.iter().all(|a| a.ip() != balancer_ip));
    eprintln!(
        "proxy_protocol: the {} audit lines of the topic created through HAProxy name client={audited:?}, which HAProxy logged as its client",
        audit.len()
    );
    // The v1 section's client too.
    let v1_clients = client_addrs("plain-bootstrap-v1");
    let peers: BTreeSet<SocketAddr> = values(&log, "via=", "peer")
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(
        !v1_clients.is_empty() && v1_clients.is_subset(&peers),
        "v1 clients {v1_clients:?} among the proxy's peers {peers:?}"
    );

    // ------------------------------------------------ 3. refusals and passthrough
    let metrics_before = http_get(plain_admin, "/metrics").1;
    let count = |text: &str, outcome: &str| {
        metric(
            text,
            "kafka_proxy_proxy_protocol_headers_total",
            &[&format!("outcome=\"{outcome}\"")],
        )
    };
    // HAProxy without send-proxy: the proxy reads a Kafka frame where the header belongs.
    let (answer, closed) = send_and_wait_close((FRONT, bare_port), &api_versions());
    assert!(
        answer.is_empty() && closed.is_some(),
        "a trusted source without a header is closed unanswered ({} bytes back)",
        answer.len()
    );
    // ... and one that sends nothing is closed at --first-frame-timeout.
    let (answer, closed) = send_and_wait_close((FRONT, bare_port), &[]);
    let closed = closed.expect("closed within 20 s");
    assert!(answer.is_empty());
    assert!(
        closed >= first_frame_timeout - Duration::from_millis(500),
        "closed after {closed:?}, before --first-frame-timeout"
    );
    eprintln!(
        "proxy_protocol: a trusted source that sent nothing was closed after {:.1} s (--first-frame-timeout 5s)",
        closed.as_secs_f64()
    );
    // An untrusted client (127.0.0.1, straight to the proxy) is served without a header...
    let direct = format!("127.0.0.1:{}", plain.port);
    let out = c.kcat_raw(&["-b", &direct, "-L", "-t", &topic], None);
    assert_success("kcat -L straight to the proxy (untrusted source)", &out);
    // ... and a header it sends is not one: its bytes are a Kafka frame length (0x50524f58,
    // above --max-request-bytes), so the connection closes and 6.6.6.6 is named nowhere.
    let mut spoof = b"PROXY TCP4 6.6.6.6 127.0.0.1 4444 9092\r\n".to_vec();
    spoof.extend(api_versions());
    let (answer, closed) = send_and_wait_close(("127.0.0.1", plain.port), &spoof);
    assert!(
        answer.is_empty() && closed.is_some(),
        "spoofed header answered"
    );

    let metrics = http_get(plain_admin, "/metrics").1;
    let log = plain.log();
    assert!(
        !log.contains("6.6.6.6"),
        "a spoofed address was believed:\n{log}"
    );
    assert!(
        log.contains("did not start with a valid header")
            && log.contains("outcome=\"not_a_header\"")
            && log.contains("outcome=\"timeout\""),
        "the refusals are logged:\n{log}"
    );
    for (outcome, more) in [("not_a_header", 1.0), ("timeout", 1.0)] {
        assert_eq!(
            count(&metrics, outcome) - count(&metrics_before, outcome),
            more,
            "{outcome}"
        );
    }
    assert!(count(&metrics, "accepted") >= 1.0);
    eprintln!(
        "proxy_protocol: plain proxy headers: accepted {}, not_a_header {}, timeout {}; untrusted client served directly; spoofed header from it refused as a frame",
        count(&metrics, "accepted"),
        count(&metrics, "not_a_header"),
        count(&metrics, "timeout")
    );
    c.delete_topic(&topic);
    c.delete_topic(&created);
}
