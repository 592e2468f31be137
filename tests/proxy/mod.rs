//! Runs the `kafka-tls-proxy` binary in front of the test cluster, behind a recording relay.
//!
//! The proxy binds 127.0.0.1 and advertises 127.0.0.2. The relay listens on 127.0.0.2 at the
//! same ports and forwards to 127.0.0.1, keeping every byte in both directions. Clients are
//! given 127.0.0.2, so everything the proxy sends them crosses the relay, and
//! [`Proxy::assert_no_upstream_leak`] can check that no upstream host or port reached them.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_tls_proxy::kafka::frame;
use kafka_tls_proxy::kafka::rewrite;
use kafka_tls_proxy::kafka::{AddressMapper, Advertised, MapError};

use crate::common::{Cluster, Principal};

/// The address clients dial: the relay in front of the proxy.
pub const CLIENT_HOST: &str = "127.0.0.2";

/// Bytes of one client connection, as they crossed the relay.
#[derive(Default)]
pub struct Recorded {
    /// Port the client connected to.
    pub port: u16,
    /// Client → proxy.
    pub requests: Vec<u8>,
    /// Proxy → client.
    pub responses: Vec<u8>,
}

/// A running proxy process with its relay.
pub struct Proxy {
    child: Option<Child>,
    args: Vec<OsString>,
    /// Bootstrap port (on both 127.0.0.1 and the relay's 127.0.0.2).
    pub port: u16,
    /// Broker N's proxy port is `base + N`.
    pub base: u16,
    /// Every connection the relay carried.
    pub recorded: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>>,
    log: PathBuf,
    upstream_hosts: Vec<String>,
    upstream_port: u16,
}

static NEXT: AtomicU16 = AtomicU16::new(0);

fn free(port: u16) -> bool {
    ["127.0.0.1", CLIENT_HOST]
        .iter()
        .all(|ip| TcpListener::bind((*ip, port)).is_ok())
}

/// Chooses a bootstrap port P with P+1..P+9 free as well; brokers get base = P.
fn allocate_ports() -> u16 {
    for _ in 0..200 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = 20000 + ((std::process::id() as u16 % 150) * 100 + n * 10) % 30000;
        if (p..p + 10).all(free) {
            return p;
        }
    }
    panic!("no free port range for the proxy");
}

impl Proxy {
    /// Starts the proxy as the admin principal with the default options plus `extra`
    /// (which may override any of them, e.g. `--admin-address`).
    pub fn start(cluster: &Cluster, extra: &[&str]) -> Proxy {
        Self::start_as(cluster, Principal::Admin, extra)
    }

    /// Starts the proxy presenting `principal`'s certificate upstream.
    pub fn start_as(cluster: &Cluster, principal: Principal, extra: &[&str]) -> Proxy {
        let mut args: Vec<OsString> = vec![
            "--upstream-ca".into(),
            cluster.ca().into(),
            "--client-cert".into(),
            cluster.cert(principal).into(),
            "--client-key".into(),
            cluster.key(principal).into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        Self::start_with(cluster, args)
    }

    /// Starts the proxy with exactly these TLS and extra options (plus the addresses, ports
    /// and upstream the harness sets).
    pub fn start_with(cluster: &Cluster, options: Vec<OsString>) -> Proxy {
        let port = allocate_ports();
        let log = std::env::temp_dir().join(format!("kafka-tls-proxy-{port}.log"));
        let mut args: Vec<OsString> = vec![];
        if !options.iter().any(|a| a == "--upstream") {
            args.extend(["--upstream".into(), cluster.bootstrap().into()]);
        }
        for (flag, value) in [
            ("--bind-address", "127.0.0.1".to_owned()),
            ("--advertised-host", CLIENT_HOST.to_owned()),
            ("--bootstrap-port", port.to_string()),
            ("--broker-port-base", port.to_string()),
            ("--admin-address", "off".to_owned()),
            ("--log", "info,kafka_tls_proxy=debug".to_owned()),
        ] {
            if !options.iter().any(|a| a == flag) {
                args.extend([flag.into(), value.into()]);
            }
        }
        args.extend(options);
        let _ = std::fs::remove_file(&log);
        let brokers = cluster.brokers();
        let mut proxy = Proxy {
            child: None,
            args,
            port,
            base: port,
            recorded: Arc::default(),
            log,
            upstream_hosts: brokers.iter().map(|(_, h, _)| h.clone()).collect(),
            upstream_port: brokers[0].2,
        };
        proxy.spawn();
        // The relay covers the bootstrap port and one port per broker node id.
        let mut ports = vec![port];
        ports.extend(brokers.iter().map(|(id, _, _)| port + *id as u16));
        for p in ports {
            proxy.relay(p);
        }
        // Brokers get listeners from the discovery at start, unless it is turned off.
        let discovery_off = proxy
            .args
            .windows(2)
            .any(|w| w[0] == "--discovery-interval" && w[1] == "0");
        if discovery_off {
            proxy.wait_ready(&[]);
        } else {
            proxy.wait_ready(&brokers.iter().map(|b| b.0).collect::<Vec<_>>());
        }
        proxy
    }

    /// Starts the process (again, after [`Proxy::terminate`]) with the same arguments and
    /// ports; the relay stays, so clients keep the same addresses.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kafka-tls-proxy"))
            // No allocator setting: the memory bounds hold without one (README "Sizing and
            // limits"), and the deployment files set none.
            .env_remove("MIMALLOC_PURGE_DELAY")
            .args(&self.args)
            .env_remove("KTP_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kafka-tls-proxy");
        self.child = Some(child);
    }

    /// Sends SIGTERM and waits for the process to exit; returns its status and how long the
    /// drain took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("proxy running");
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = child.wait().unwrap();
        (status, started.elapsed())
    }

    /// Sends a signal by name (e.g. "HUP").
    pub fn signal(&self, name: &str) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} {pid}");
    }

    /// Waits until the proxy listens again after [`Proxy::spawn`].
    pub fn wait_listening(&self) {
        let nodes: Vec<i32> = (1..=3).collect();
        self.wait_ready(&nodes);
    }

    /// Produces each line of `lines` as one record to `topic` through the proxy with kcat
    /// (librdkafka), acks=all; panics on failure.
    pub fn produce(&self, cluster: &Cluster, topic: &str, lines: &str) {
        let out = cluster.kcat_raw(
            &["-b", &self.bootstrap(), "-P", "-t", topic, "-X", "acks=all"],
            Some(lines.as_bytes()),
        );
        crate::common::assert_success("kcat produce through the proxy", &out);
    }

    /// Every record of `topic`, from the beginning, read through the proxy with kcat.
    pub fn consume_all(&self, cluster: &Cluster, topic: &str) -> Vec<String> {
        let out = cluster.kcat_raw(
            &[
                "-b",
                &self.bootstrap(),
                "-C",
                "-t",
                topic,
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%s\n",
            ],
            None,
        );
        crate::common::assert_success("kcat consume through the proxy", &out)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Reads up to `max` records of `topic` through the proxy with the Java console consumer
    /// as a member of `group` (committing on exit); returns them sorted.
    pub fn consume_as_group(
        &self,
        cluster: &Cluster,
        topic: &str,
        group: &str,
        max: usize,
    ) -> Vec<String> {
        let max = max.to_string();
        let out = cluster.cli(
            "console-consumer",
            &[
                "--bootstrap-server",
                &self.bootstrap(),
                "--topic",
                topic,
                "--group",
                group,
                "--from-beginning",
                "--max-messages",
                &max,
                "--timeout-ms",
                "30000",
            ],
        );
        let mut got: Vec<String> =
            crate::common::assert_success("console consumer through the proxy", &out)
                .lines()
                .map(str::to_owned)
                .collect();
        got.sort();
        got
    }

    /// `127.0.0.2:PORT`, the bootstrap address clients use.
    pub fn bootstrap(&self) -> String {
        format!("{CLIENT_HOST}:{}", self.port)
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("proxy running").id()
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the bootstrap port and every broker's port accept connections (the proxy
    /// discovers brokers at start).
    fn wait_ready(&self, nodes: &[i32]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut ports = vec![self.port];
        ports.extend(nodes.iter().map(|n| self.base + *n as u16));
        for p in ports {
            while TcpStream::connect(("127.0.0.1", p)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "proxy port {p} not listening after 20 s; log:\n{}",
                    self.log()
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn relay(&self, port: u16) {
        relay_port(CLIENT_HOST, "127.0.0.1", port, self.recorded.clone(), false);
    }

    /// Checks every byte the proxy sent to clients: no upstream host name appears anywhere,
    /// and every broker address in every address-carrying response is the proxy's own.
    /// Returns how many address-carrying responses were checked.
    pub fn assert_no_upstream_leak(&self) -> usize {
        let mut checked = 0;
        let recorded = self.recorded.lock().unwrap();
        let mut forbidden: Vec<String> = self.upstream_hosts.clone();
        forbidden.push("msk.test".into());
        forbidden.extend((1..=3).map(|n| format!("127.0.0.1{n}")));
        for conn in recorded.iter() {
            let conn = conn.lock().unwrap();
            for needle in &forbidden {
                assert!(
                    find(&conn.responses, needle.as_bytes()).is_none(),
                    "upstream name {needle} reached a client on port {}",
                    conn.port
                );
            }
            checked += self.check_addresses(&conn);
        }
        checked
    }

    fn check_addresses(&self, conn: &Recorded) -> usize {
        let allowed: Vec<i32> = (1..=9).map(|n| i32::from(self.base) + n).collect();
        addresses_in(conn, |kind, host, port, api| {
            assert_eq!(host, CLIENT_HOST, "{kind} address {host}:{port} in {api}");
            assert!(
                (kind == "controller" && port == 0) || allowed.contains(&port),
                "{kind} port {port} is not a proxy port ({api})"
            );
            assert_ne!(port, i32::from(self.upstream_port));
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Default)]
struct Collect(Vec<(&'static str, String, i32)>);

impl AddressMapper for Collect {
    fn map_broker(&mut self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError> {
        let _ = node_id;
        self.0.push(("broker", host.to_owned(), port));
        Ok(Advertised {
            host: StrBytes::from_string(host.to_owned()),
            port,
        })
    }
    fn map_controller(&mut self, _node_id: i32, host: &str, port: i32) -> Advertised {
        self.0.push(("controller", host.to_owned(), port));
        Advertised {
            host: StrBytes::from_string(host.to_owned()),
            port,
        }
    }
}

/// Listens on `listen_host`:`port` and forwards every connection to `target_host`:`port`
/// (with TCP_NODELAY on both sides if `nodelay`), recording its bytes in `recorded`. The
/// listening thread lives as long as the test binary.
fn relay_port(
    listen_host: &str,
    target_host: &str,
    port: u16,
    recorded: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>>,
    nodelay: bool,
) {
    let listener = TcpListener::bind((listen_host, port))
        .unwrap_or_else(|e| panic!("relay cannot listen on {listen_host}:{port}: {e}"));
    let target = target_host.to_owned();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(upstream) = TcpStream::connect((target.as_str(), port)) else {
                continue;
            };
            if nodelay {
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
            }
            let record = Arc::new(Mutex::new(Recorded {
                port,
                ..Recorded::default()
            }));
            recorded.lock().unwrap().push(record.clone());
            pipe(
                client.try_clone().unwrap(),
                upstream.try_clone().unwrap(),
                record.clone(),
                true,
            );
            pipe(upstream, client, record, false);
        }
    });
}

fn pipe(mut from: TcpStream, mut to: TcpStream, record: Arc<Mutex<Recorded>>, requests: bool) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                let mut r = record.lock().unwrap();
                if requests {
                    r.requests.extend_from_slice(&buf[..n]);
                } else {
                    r.responses.extend_from_slice(&buf[..n]);
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A recording TCP relay with any listen and target address: listens on `listen_host` at each
/// port and forwards to `target_host` at the same port, keeping every byte like the relay in
/// front of [`Proxy`]. For proxies behind a load balancer: clients → relay (the address the
/// proxies advertise) → balancer → proxies, so everything the fleet sent clients is recorded.
/// The listening threads live as long as the test binary.
pub struct Relay {
    /// The address clients dial.
    pub listen_host: String,
    /// Every connection the relay carried.
    pub recorded: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>>,
}

impl Relay {
    /// Listens on `listen_host` at every port of `ports`, forwarding to `target_host`.
    pub fn start(listen_host: &str, target_host: &str, ports: &[u16]) -> Relay {
        let relay = Relay {
            listen_host: listen_host.to_owned(),
            recorded: Arc::default(),
        };
        for &port in ports {
            relay_port(listen_host, target_host, port, relay.recorded.clone(), true);
        }
        relay
    }

    /// Checks every byte sent to clients through the relay: none of `forbidden` (upstream host
    /// names and addresses) appears anywhere, and every broker address in every
    /// address-carrying response is `listen_host` at one of `proxy_ports` (controllers may also
    /// be port 0). Returns (connections, bytes to clients, address-carrying responses checked).
    pub fn assert_no_upstream_leak(
        &self,
        forbidden: &[String],
        proxy_ports: &[u16],
    ) -> (usize, usize, usize) {
        let recorded = self.recorded.lock().unwrap();
        let (mut bytes, mut checked) = (0, 0);
        for conn in recorded.iter() {
            let conn = conn.lock().unwrap();
            bytes += conn.responses.len();
            for needle in forbidden {
                assert!(
                    find(&conn.responses, needle.as_bytes()).is_none(),
                    "upstream name {needle} reached a client on port {}",
                    conn.port
                );
            }
            checked += addresses_in(&conn, |kind, host, port, api| {
                assert_eq!(
                    host, self.listen_host,
                    "{kind} address {host}:{port} in {api} on port {}",
                    conn.port
                );
                assert!(
                    (kind == "controller" && port == 0)
                        || proxy_ports.iter().any(|p| i32::from(*p) == port),
                    "{kind} port {port} is not a proxy port ({api})"
                );
            });
        }
        (recorded.len(), bytes, checked)
    }
}

/// Calls `check(kind, host, port, "api K vV")` for every broker/controller address in the
/// address-carrying responses of one recorded connection; returns how many such responses
/// named at least one address. Responses are paired with requests the way the proxy does,
/// then the rewrite module enumerates every address in each (with a mapper that records them
/// and changes nothing).
fn addresses_in(conn: &Recorded, mut check: impl FnMut(&str, &str, i32, &str)) -> usize {
    let mut requests = BytesMut::from(&conn.requests[..]);
    let mut responses = BytesMut::from(&conn.responses[..]);
    let reader = frame::FrameReader::new(usize::MAX >> 2);
    let mut expected = std::collections::VecDeque::new();
    while let Ok(Some(f)) = reader.next_frame(&mut requests) {
        let h = frame::request_header(&f).unwrap();
        if frame::expects_response(&h, &f).unwrap() {
            expected.push_back(h);
        }
    }
    let mut checked = 0;
    while let Ok(Some(f)) = reader.next_frame(&mut responses) {
        let Some(h) = expected.pop_front() else { break };
        let id = frame::response_correlation_id(&f).unwrap();
        assert_eq!(id, h.correlation_id, "responses in request order");
        if !rewrite::needs_inspection(h.api_key, h.api_version) {
            continue;
        }
        let mut seen = Collect::default();
        // A local UNSUPPORTED_VERSION answer to ApiVersions decodes at v0; that is fine.
        let _ = rewrite::rewrite_response(
            h.api_key,
            h.api_version,
            &Bytes::copy_from_slice(&f[4..]),
            &mut seen,
        );
        let api = format!("api {} v{}", h.api_key, h.api_version);
        for (kind, host, port) in &seen.0 {
            check(kind, host, *port, &api);
        }
        if !seen.0.is_empty() {
            checked += 1;
        }
    }
    checked
}
