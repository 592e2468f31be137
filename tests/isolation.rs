//! Isolation between the clients of one proxy, against the real cluster: a hostile client on
//! raw TCP must not be able to make the proxy mis-pair responses with requests (and so leak
//! unrewritten upstream addresses), nor teach the proxy's shared broker table a broker address
//! of its choosing (and so send every later client of that broker, with the proxy's client
//! certificate, to the attacker).
//!
//! The attacks rely on Produce v0–v2, whose body has NO transactional id
//! (`acks int16, timeout_ms int32, topic_data`). A proxy that skips a transactional id there
//! takes `acks` as a string length and reads `acks` from `timeout_ms`:
//! - acks=1, timeout_ms=100 (`00 00 00 64`): skips one byte, reads `00 00` → "acks=0": it expects
//!   no answer, but the broker answers;
//! - acks=0, timeout_ms=65536 (`00 01 00 00`): reads `00 01` → "acks=1": it expects an answer
//!   that never comes.
//!
//! Either way the responses shift against the requests. Since responses were also matched by
//! the correlation id the CLIENT picks, a client that gives several requests the same id can
//! line up any broker response with any request type. Kafka 3.9 accepts Produce v2 and answers
//! a Produce without topics at once; Kafka 4.x removed v0–v2 and closes the connection. The
//! tests assert the same properties on both and never skip.
//!
//! The poisoning attack names a topic so that the broker's Produce v2 answer (which echoes the
//! topic name with UNKNOWN_TOPIC_OR_PARTITION) is, byte for byte, a valid DescribeCluster v0
//! response naming node 1 at 127.0.0.1 and the port of a listener this test owns; see
//! [`crafted_topic`].

mod common;
mod proxy;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{DescribeClusterResponse, MetadataResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;

use common::{assert_success, cluster, unique, Cluster};
use proxy::{Proxy, CLIENT_HOST};

const PRODUCE: i16 = 0;
const METADATA: i16 = 3;
const DESCRIBE_CLUSTER: i16 = 60;

/// How long a hostile connection may take to be answered or closed.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ raw requests

fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend(body);
    f
}

/// Request header v1 (v2 when `flexible`: one more byte, no tagged fields).
fn header(api_key: i16, version: i16, correlation_id: i32, flexible: bool) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(api_key.to_be_bytes());
    b.extend(version.to_be_bytes());
    b.extend(correlation_id.to_be_bytes());
    let client_id = b"isolation-test";
    b.extend((client_id.len() as i16).to_be_bytes());
    b.extend(client_id);
    if flexible {
        b.push(0);
    }
    b
}

/// Produce v0–v2: `acks int16, timeout_ms int32, [name int16-string, [partition 0, empty
/// record set]]`. Without topics the broker answers at once (3.x) and nothing can fail.
fn produce_v0_2(
    version: i16,
    corr: i32,
    acks: i16,
    timeout_ms: i32,
    topics: &[Vec<u8>],
) -> Vec<u8> {
    assert!((0..=2).contains(&version));
    let mut b = header(PRODUCE, version, corr, false);
    b.extend(acks.to_be_bytes());
    b.extend(timeout_ms.to_be_bytes());
    b.extend((topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend((t.len() as i16).to_be_bytes());
        b.extend(t);
        b.extend(1i32.to_be_bytes()); // one partition
        b.extend(0i32.to_be_bytes()); // index 0
        b.extend(0i32.to_be_bytes()); // empty record set
    }
    frame(b)
}

/// Metadata v0 (empty topic list = every topic) or v1 (empty list = no topic).
fn metadata(version: i16, corr: i32) -> Vec<u8> {
    assert!((0..=1).contains(&version));
    let mut b = header(METADATA, version, corr, false);
    b.extend(0i32.to_be_bytes());
    frame(b)
}

/// DescribeCluster v0 (flexible): include_cluster_authorized_operations=false, no tags.
fn describe_cluster_v0(corr: i32) -> Vec<u8> {
    let mut b = header(DESCRIBE_CLUSTER, 0, corr, true);
    b.extend([0, 0]);
    frame(b)
}

/// A topic name that turns the broker's Produce v2 answer into a DescribeCluster v0 response.
///
/// Produce v2 response (header v0), one topic with one partition:
/// ```text
/// corr | 00 00 00 01 (topics) | 00 23 (name length 35) | name[35] |
///        00 00 00 01 (partitions) | index 4 | error 2 | base_offset 8 | log_append_time 8 | throttle 4
/// ```
/// The same bytes read as DescribeCluster v0 (response header v1, compact types):
/// ```text
/// corr | 00 (header tags) | throttle 00 00 01 00 | error_code 23 name[0] |
/// name[1]=00 error_message null | name[2]=01 cluster_id "" | name[3..7] controller_id 1 |
/// name[7]=02 one broker: name[8..12] broker_id 1, name[12]=0a + "127.0.0.1" host,
///   name[22..26] port, name[26]=00 rack null, name[27]=00 tags |
/// name[28..32] cluster_authorized_operations 0 |
/// name[32]=01 one tagged field, name[33]=05 tag, name[34]=1e size 30 = the 30 bytes after the name
/// ```
/// Every byte is below 0x80, so the name survives the broker's UTF-8 round trip unchanged
/// (hence a port whose two bytes are both below 0x80). Checked against Kafka 3.9.2: it echoes
/// the name with error 3 (UNKNOWN_TOPIC_OR_PARTITION), partition 0, offsets -1, throttle 0.
fn crafted_topic(port: u16) -> Vec<u8> {
    let [hi, lo] = port.to_be_bytes();
    assert!(hi < 0x80 && lo < 0x80, "port {port} does not survive UTF-8");
    let mut n = vec![0x00, 0x00, 0x01];
    n.extend(1i32.to_be_bytes()); // controller id
    n.push(0x02); // one broker
    n.extend(1i32.to_be_bytes()); // node 1
    n.push(10);
    n.extend(b"127.0.0.1");
    n.extend(i32::from(port).to_be_bytes());
    n.extend([0x00, 0x00]); // rack null, no tags
    n.extend(0i32.to_be_bytes()); // cluster authorized operations
    n.extend([0x01, 0x05, 30]); // one tagged field (tag 5) over the Produce answer's tail
    assert_eq!(n.len(), 35);
    n
}

// ------------------------------------------------------------------ expected answers

/// What a correct proxy answers to one request.
#[derive(Clone, Debug)]
enum Answer {
    /// A Produce v0–v2 response echoing these topics (partition 0 each).
    Produce {
        version: i16,
        topics: Vec<Vec<u8>>,
    },
    Metadata(i16),
    DescribeCluster(i16),
}

/// One request of a scripted raw client.
#[derive(Clone)]
struct Request {
    bytes: Vec<u8>,
    corr: i32,
    /// `None`: no response (Produce acks=0).
    answer: Option<Answer>,
    what: String,
}

fn produce_req(version: i16, corr: i32, acks: i16, timeout: i32, topics: Vec<Vec<u8>>) -> Request {
    let named = if topics.is_empty() {
        "no topic".to_owned()
    } else {
        format!("{} crafted topic", topics.len())
    };
    Request {
        bytes: produce_v0_2(version, corr, acks, timeout, &topics),
        corr,
        answer: (acks != 0).then_some(Answer::Produce { version, topics }),
        what: format!("Produce v{version} acks={acks} timeout_ms={timeout} {named} corr={corr}"),
    }
}

fn metadata_req(version: i16, corr: i32) -> Request {
    Request {
        bytes: metadata(version, corr),
        corr,
        answer: Some(Answer::Metadata(version)),
        what: format!("Metadata v{version} corr={corr}"),
    }
}

fn describe_cluster_req(corr: i32) -> Request {
    Request {
        bytes: describe_cluster_v0(corr),
        corr,
        answer: Some(Answer::DescribeCluster(0)),
        what: format!("DescribeCluster v0 corr={corr}"),
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err("truncated".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Checks one response frame (length prefix excluded) against the request it must answer:
/// same correlation id, the right message type and version, and every broker address it
/// carries is a proxy address.
fn check_answer(req: &Request, answer: &Answer, body: &[u8], ports: &[i32]) -> Result<(), String> {
    let corr = Cursor(body).i32()?;
    if corr != req.corr {
        return Err(format!("correlation id {corr}, expected {}", req.corr));
    }
    let addresses = |hosts: Vec<(i32, String, i32)>| -> Result<(), String> {
        for (node, host, port) in hosts {
            if host != CLIENT_HOST || !ports.contains(&port) {
                return Err(format!(
                    "names node {node} at {host}:{port}, not a proxy address"
                ));
            }
        }
        Ok(())
    };
    match answer {
        Answer::Produce { version, topics } => {
            let mut r = Cursor(&body[4..]);
            let bad = |e: String| format!("not a Produce v{version} response ({e})");
            let n = r.i32().map_err(bad)?;
            if n as usize != topics.len() {
                return Err(bad(format!("{n} topics, sent {}", topics.len())));
            }
            for t in topics {
                let len = r.i16().map_err(bad)?;
                let name = r.take(len.max(0) as usize).map_err(bad)?;
                if name != &t[..] {
                    return Err(bad("another topic name".into()));
                }
                if r.i32().map_err(bad)? != 1 || r.i32().map_err(bad)? != 0 {
                    return Err(bad("not partition 0 alone".into()));
                }
                r.take(2 + 8).map_err(bad)?; // error, base offset
                if *version >= 2 {
                    r.take(8).map_err(bad)?; // log append time
                }
            }
            if *version >= 1 {
                r.take(4).map_err(bad)?; // throttle
            }
            if !r.0.is_empty() {
                return Err(bad(format!("{} bytes too many", r.0.len())));
            }
            Ok(())
        }
        Answer::Metadata(version) => {
            let mut buf = Bytes::copy_from_slice(body);
            let bad = |e: String| format!("not a Metadata v{version} response ({e})");
            ResponseHeader::decode(&mut buf, 0).map_err(|e| bad(format!("{e:#}")))?;
            let m =
                MetadataResponse::decode(&mut buf, *version).map_err(|e| bad(format!("{e:#}")))?;
            if !buf.is_empty() {
                return Err(bad(format!("{} bytes left", buf.len())));
            }
            if m.brokers.is_empty() {
                return Err(bad("no brokers".into()));
            }
            addresses(
                m.brokers
                    .iter()
                    .map(|b| (b.node_id.0, b.host.to_string(), b.port))
                    .collect(),
            )
        }
        Answer::DescribeCluster(version) => {
            let mut buf = Bytes::copy_from_slice(body);
            let bad = |e: String| format!("not a DescribeCluster v{version} response ({e})");
            ResponseHeader::decode(&mut buf, 1).map_err(|e| bad(format!("{e:#}")))?;
            let m = DescribeClusterResponse::decode(&mut buf, *version)
                .map_err(|e| bad(format!("{e:#}")))?;
            if !buf.is_empty() {
                return Err(bad(format!("{} bytes left", buf.len())));
            }
            if m.brokers.is_empty() || m.cluster_id.is_empty() {
                return Err(bad("no brokers or no cluster id".into()));
            }
            addresses(
                m.brokers
                    .iter()
                    .map(|b| (b.broker_id.0, b.host.to_string(), b.port))
                    .collect(),
            )
        }
    }
}

/// Byte strings that name an upstream broker.
fn upstream_needles(c: &Cluster) -> Vec<String> {
    let mut needles: Vec<String> = c.brokers().into_iter().map(|(_, h, _)| h).collect();
    needles.push("msk.test".into());
    needles.extend((1..=3).map(|n| format!("127.0.0.1{n}")));
    needles
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ------------------------------------------------------------------ raw client

/// A raw-protocol client connected through the recording relay.
struct RawClient {
    label: String,
    stream: TcpStream,
    buf: Vec<u8>,
    frames: Vec<Vec<u8>>,
    closed: bool,
    requests: Vec<Request>,
}

impl RawClient {
    fn connect(label: String, port: u16) -> RawClient {
        let stream = TcpStream::connect((CLIENT_HOST, port))
            .unwrap_or_else(|e| panic!("{label}: cannot connect to {CLIENT_HOST}:{port}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        RawClient {
            label,
            stream,
            buf: Vec::new(),
            frames: Vec::new(),
            closed: false,
            requests: Vec::new(),
        }
    }

    /// Sends all requests in one write (pipelined, as one TCP segment where possible).
    fn send(&mut self, requests: &[Request]) {
        let bytes: Vec<u8> = requests.iter().flat_map(|r| r.bytes.clone()).collect();
        self.requests.extend_from_slice(requests);
        if let Err(e) = self.stream.write_all(&bytes) {
            // The proxy may already have closed: that is an outcome, not a test error.
            eprintln!("{}: write failed: {e}", self.label);
        }
    }

    fn expected(&self) -> Vec<(&Request, &Answer)> {
        self.requests
            .iter()
            .filter_map(|r| r.answer.as_ref().map(|a| (r, a)))
            .collect()
    }

    /// Reads until every expected answer arrived, the connection closed, or `deadline`.
    fn read_answers(&mut self, deadline: Instant) {
        let want = self.expected().len();
        while !self.closed && self.frames.len() < want && Instant::now() < deadline {
            self.read_once();
        }
    }

    /// Waits `extra` for anything more (an answer too many) or for a close.
    fn linger(&mut self, extra: Duration) {
        let until = Instant::now() + extra;
        while !self.closed && Instant::now() < until {
            self.read_once();
        }
    }

    fn read_once(&mut self) {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.closed = true,
        }
        while self.buf.len() >= 4 {
            let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            let len = len.max(0) as usize;
            if self.buf.len() < 4 + len {
                break;
            }
            let f = self.buf[4..4 + len].to_vec();
            self.buf.drain(..4 + len);
            self.frames.push(f);
        }
    }

    /// The isolation verdict for this connection: every response answers, in order, the
    /// request it claims to; nothing names an upstream broker; a connection that did not get
    /// all its answers was closed rather than left hanging.
    fn problems(&self, ports: &[i32], needles: &[String]) -> Vec<String> {
        let mut problems = Vec::new();
        let expected = self.expected();
        let sent: Vec<&str> = self.requests.iter().map(|r| r.what.as_str()).collect();
        for (i, f) in self.frames.iter().enumerate() {
            for needle in needles {
                if let Some(at) = find(f, needle.as_bytes()) {
                    problems.push(format!(
                        "{}: response #{i} names upstream '{needle}' at byte {at}: {}",
                        self.label,
                        printable(f)
                    ));
                }
            }
            match expected.get(i) {
                None => problems.push(format!(
                    "{}: response #{i} answers no request (sent: {sent:?}): {}",
                    self.label,
                    printable(f)
                )),
                Some((req, answer)) => {
                    if let Err(e) = check_answer(req, answer, f, ports) {
                        problems.push(format!(
                            "{}: response #{i} should answer '{}' but is {e}: {}",
                            self.label,
                            req.what,
                            printable(f)
                        ));
                    }
                }
            }
        }
        if self.frames.len() < expected.len() && !self.closed {
            problems.push(format!(
                "{}: got {} of {} answers and the connection is still open after {ANSWER_WAIT:?} \
                 (sent: {sent:?})",
                self.label,
                self.frames.len(),
                expected.len()
            ));
        }
        problems
    }

    fn summary(&self) -> String {
        format!(
            "{}: {} response(s){}",
            self.label,
            self.frames.len(),
            if self.closed {
                ", then closed"
            } else {
                ", still open"
            }
        )
    }
}

/// Bytes as text, non-printable ones as `.`, shortened.
fn printable(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .take(300)
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '.'
            }
        })
        .collect();
    if b.len() > 300 {
        format!("{s}... ({} bytes)", b.len())
    } else {
        s
    }
}

// ------------------------------------------------------------------ the attacker's listener

/// A TCP listener on 127.0.0.1 standing for the attacker's host: it records every connection
/// (a redirected proxy would dial it with its client certificate) and closes it at once.
struct Trap {
    port: u16,
    hits: Arc<AtomicUsize>,
    peers: Arc<Mutex<Vec<String>>>,
}

impl Trap {
    fn start() -> Trap {
        // Both port bytes below 0x80 (see `crafted_topic`); spread by pid.
        let start = std::process::id() as usize;
        let candidates: Vec<u16> = (0x40u16..0x7f)
            .flat_map(|hi| (0x21u16..0x7f).map(move |lo| (hi << 8) | lo))
            .collect();
        for i in 0..candidates.len() {
            let port = candidates[(start + i * 37) % candidates.len()];
            let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) else {
                continue;
            };
            let hits = Arc::new(AtomicUsize::new(0));
            let peers = Arc::new(Mutex::new(Vec::new()));
            let (h, p) = (hits.clone(), peers.clone());
            thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    h.fetch_add(1, Ordering::SeqCst);
                    p.lock()
                        .unwrap()
                        .push(conn.peer_addr().map(|a| a.to_string()).unwrap_or_default());
                    drop(conn);
                }
            });
            return Trap { port, hits, peers };
        }
        panic!("no free port for the attacker's listener");
    }
}

// ------------------------------------------------------------------ the well-behaved client

/// kcat producing one record every 25 ms through the proxy for the whole test, and a kcat
/// consumer reading the topic at the same time.
struct GoodClient {
    producer: Child,
    consumer: Child,
    feeder: Option<thread::JoinHandle<usize>>,
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<String>>>,
}

impl GoodClient {
    fn start(bootstrap: &str, topic: &str) -> GoodClient {
        let mut producer = Command::new("kcat")
            .args(["-b", bootstrap, "-P", "-t", topic, "-X", "acks=all"])
            .args(["-X", "linger.ms=5", "-X", "message.timeout.ms=20000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kcat producer");
        let mut consumer = Command::new("kcat")
            .args([
                "-b",
                bootstrap,
                "-C",
                "-t",
                topic,
                "-o",
                "beginning",
                "-u",
                "-q",
            ])
            .args(["-f", "%s\n"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kcat consumer");
        let got = Arc::new(Mutex::new(Vec::new()));
        let out = consumer.stdout.take().unwrap();
        let g = got.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                g.lock().unwrap().push(line);
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut stdin = producer.stdin.take().unwrap();
        let s = stop.clone();
        let feeder = thread::spawn(move || {
            let mut n = 0;
            while !s.load(Ordering::SeqCst) {
                if stdin.write_all(format!("good-{n}\n").as_bytes()).is_err() {
                    break;
                }
                let _ = stdin.flush();
                n += 1;
                thread::sleep(Duration::from_millis(25));
            }
            n // dropping stdin ends the producer, which then flushes
        });
        GoodClient {
            producer,
            consumer,
            feeder: Some(feeder),
            stop,
            got,
        }
    }

    fn received(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Stops producing and returns the problems: records produced but never consumed, a
    /// producer that failed or hung.
    fn finish(mut self) -> (usize, Vec<String>) {
        let mut problems = Vec::new();
        self.stop.store(true, Ordering::SeqCst);
        let produced = self.feeder.take().unwrap().join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.producer.try_wait().unwrap() {
                Some(status) if status.success() => break,
                Some(status) => {
                    problems.push(format!("the well-behaved kcat producer failed: {status}"));
                    break;
                }
                None if Instant::now() > deadline => {
                    problems.push("the well-behaved kcat producer hung on exit".into());
                    let _ = self.producer.kill();
                    let _ = self.producer.wait();
                    break;
                }
                None => thread::sleep(Duration::from_millis(50)),
            }
        }
        let want: Vec<String> = (0..produced).map(|i| format!("good-{i}")).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let missing = loop {
            let got = self.got.lock().unwrap().clone();
            let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
            if missing.is_empty() || Instant::now() > deadline {
                break missing.len();
            }
            drop(got);
            thread::sleep(Duration::from_millis(100));
        };
        if missing > 0 {
            problems.push(format!(
                "the well-behaved client produced {produced} records, {missing} never arrived"
            ));
        }
        (produced, problems)
    }
}

impl Drop for GoodClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for child in [&mut self.producer, &mut self.consumer] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ------------------------------------------------------------------ checks

/// kcat with a hard time limit (a redirected client would otherwise retry for minutes).
fn kcat_limited(args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    common::run(
        Command::new("timeout").arg("40").arg("kcat").args(args),
        stdin,
    )
}

/// Every established TCP connection of the proxy process that it did not accept (its local
/// port is not one of the proxy's listening ports) must go to a real broker.
fn upstream_connection_problems(c: &Cluster, proxy: &Proxy) -> (usize, Vec<String>) {
    let out = common::run(
        Command::new("ss").args(["-Htnp", "state", "established"]),
        None,
    );
    let text = assert_success("ss -tnp", &out);
    let marker = format!("pid={},", proxy.pid());
    let listening: Vec<u16> = (0..=9)
        .map(|n| proxy.base + n)
        .chain([proxy.port])
        .collect();
    let brokers: Vec<String> = c
        .brokers()
        .iter()
        .map(|(n, _, p)| format!("127.0.0.1{n}:{p}"))
        .collect();
    let mut upstream = 0;
    let mut problems = Vec::new();
    for line in text.lines().filter(|l| l.contains(&marker)) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(users) = fields.iter().position(|f| f.starts_with("users:")) else {
            continue;
        };
        if users < 2 {
            continue;
        }
        let (local, peer) = (fields[users - 2], fields[users - 1]);
        let local_port: u16 = local.rsplit(':').next().unwrap().parse().unwrap_or(0);
        if listening.contains(&local_port) {
            continue; // a client of the proxy
        }
        upstream += 1;
        if !brokers.iter().any(|b| b == peer) {
            problems.push(format!(
                "the proxy has an upstream connection to {peer}: {line}"
            ));
        }
    }
    (upstream, problems)
}

/// A client that connects to node 1's proxy port must reach node 1: Metadata and
/// DescribeCluster answered, with proxy addresses only.
fn node1_client(proxy: &Proxy, label: &str) -> RawClient {
    let mut client = RawClient::connect(format!("{label} (node 1 port)"), proxy.base + 1);
    client.send(&[metadata_req(1, 1), describe_cluster_req(2)]);
    client.read_answers(Instant::now() + ANSWER_WAIT);
    client
}

fn proxy_ports(proxy: &Proxy) -> Vec<i32> {
    (1..=9).map(|n| i32::from(proxy.base) + n).collect()
}

/// Scans every byte the relay carried to any client for upstream names.
fn relay_leaks(proxy: &Proxy, needles: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for conn in proxy.recorded.lock().unwrap().iter() {
        let conn = conn.lock().unwrap();
        for needle in needles {
            if let Some(at) = find(&conn.responses, needle.as_bytes()) {
                let from = at.saturating_sub(40);
                let to = (at + needle.len() + 40).min(conn.responses.len());
                problems.push(format!(
                    "relay: a client on port {} received '{needle}' (byte {at}): ...{}...",
                    conn.port,
                    printable(&conn.responses[from..to])
                ));
            }
        }
    }
    problems
}

fn report(c: &Cluster, proxy: &Proxy, problems: &[String], notes: &[String]) {
    eprintln!("--- isolation ({}):", c.version());
    for n in notes {
        eprintln!("  {n}");
    }
    if problems.is_empty() {
        return;
    }
    let log = proxy.log();
    let interesting: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
        .collect();
    let start = interesting.len().saturating_sub(40);
    panic!(
        "isolation broken on Kafka {} ({} problem(s)):\n  {}\n--- proxy log (without debug lines):\n{}",
        c.version(),
        problems.len(),
        problems.join("\n  "),
        interesting[start..].join("\n")
    );
}

// ------------------------------------------------------------------ tests

/// The end-to-end isolation property: while a well-behaved client produces and consumes, a
/// hostile client tries to desynchronise the response pairing (to get unrewritten upstream
/// addresses) and to poison the broker table (to redirect node 1's proxy port to its own
/// listener). Nothing may leak, nothing may be redirected, the well-behaved client loses
/// nothing, and a new client of node 1's port afterwards reaches the real node 1.
///
/// A hostile connection passes if every response it got answers, in order and with proxy
/// addresses only, the request it claims to, and it was either answered in full or closed
/// (Kafka 4.x closes on Produce v2; a correct proxy on 3.x may simply answer everything).
///
/// Against b9174ba on Kafka 3.9.2 this failed with: the real Metadata v0/v1 and DescribeCluster
/// v0 answers (b-1..3.msk.test:9094) reaching the desync and poison connections unrewritten,
/// the crafted Produce answer turned into a DescribeCluster, the proxy logging "broker moved
/// ... node_id=1 ... to=127.0.0.1:<trap>", the next client of node 1's port closed after the
/// proxy's TLS handshake with the trap listener, which counted that connection.
#[test]
fn a_hostile_client_cannot_desynchronise_leak_or_redirect_other_clients() {
    let c = cluster();
    let _up = c.shared();
    let trap = Trap::start(); // before the proxy, so the proxy's port range avoids it
    let proxy = Proxy::start(c, &[]);
    let ports = proxy_ports(&proxy);
    let needles = upstream_needles(c);
    let bootstrap = proxy.bootstrap();
    let mut notes = vec![format!(
        "proxy ports {}..{}, attacker listener 127.0.0.1:{}",
        proxy.port,
        proxy.base + 3,
        trap.port
    )];

    // Partition 0 led by node 1 (the new client after the attack writes there), 1 by 2, 2 by 3.
    let topic = unique("svc.isolation");
    c.create_topic_assigned(&topic, "1:2:3,2:3:1,3:1:2");

    let good = GoodClient::start(&bootstrap, &topic);
    let deadline = Instant::now() + Duration::from_secs(30);
    while good.received() < 5 {
        assert!(
            Instant::now() < deadline,
            "the well-behaved client does not get through the proxy before any attack"
        );
        thread::sleep(Duration::from_millis(50));
    }

    let mut hostile: Vec<RawClient> = Vec::new();
    let mut node1: Vec<RawClient> = Vec::new();
    let crafted = crafted_topic(trap.port);
    for (where_, port) in [("bootstrap", proxy.port), ("node 2", proxy.base + 2)] {
        // (b) Poisoning: the crafted Produce v2 (acks=1, timeout 100: "acks=0" to a proxy
        // that reads a transactional id), then a DescribeCluster v0 with the same
        // correlation id that a mis-pairing proxy reads the Produce answer as, then a Produce
        // v2 acks=0 timeout 65536 ("acks=1") that the real DescribeCluster answer pairs with.
        let mut h = RawClient::connect(format!("poison via {where_}"), port);
        h.send(&[
            produce_req(2, 7, 1, 100, vec![crafted.clone()]),
            describe_cluster_req(7),
            produce_req(2, 7, 0, 65536, vec![]),
        ]);
        h.read_answers(Instant::now() + ANSWER_WAIT);
        // Right away, before anything refreshes the broker table: a new client of node 1.
        node1.push(node1_client(
            &proxy,
            &format!("new client after poison via {where_}"),
        ));
        hostile.push(h);

        // (a) Desynchronisation: Produce v2 acks=1 timeout 100 ("acks=0"), Metadata v0 with
        // the same id (the Produce answer is a valid empty Metadata v0), Produce v2 acks=0
        // timeout 65536 ("acks=1", takes the real Metadata answer), then one more request.
        let mut h = RawClient::connect(format!("desync via {where_}"), port);
        h.send(&[
            produce_req(2, 7, 1, 100, vec![]),
            metadata_req(0, 7),
            produce_req(2, 7, 0, 65536, vec![]),
            metadata_req(1, 8),
        ]);
        hostile.push(h);

        // (a') The other direction: Produce v2 acks=0 timeout 65536 ("acks=1") answered by
        // nothing, so the Metadata v1 answer with the same id pairs with the Produce.
        let mut h = RawClient::connect(format!("reverse desync via {where_}"), port);
        h.send(&[produce_req(2, 9, 0, 65536, vec![]), metadata_req(1, 9)]);
        hostile.push(h);

        // (a'') Produce v2 acks=1 timeout 100 pipelined with Metadata v1, same id, and more.
        let mut h = RawClient::connect(format!("desync with Metadata v1 via {where_}"), port);
        h.send(&[
            produce_req(2, 11, 1, 100, vec![]),
            metadata_req(1, 11),
            metadata_req(1, 12),
        ]);
        hostile.push(h);
    }
    let deadline = Instant::now() + ANSWER_WAIT;
    for h in &mut hostile {
        h.read_answers(deadline);
    }
    for h in &mut hostile {
        h.linger(Duration::from_millis(300));
    }

    // A new client on node 1's proxy port now: raw, then kcat producing and consuming.
    node1.push(node1_client(&proxy, "new client after all attacks"));
    let node1_bootstrap = format!("{CLIENT_HOST}:{}", proxy.base + 1);
    let after: String = (0..20).map(|i| format!("after-{i}\n")).collect();
    let mut problems: Vec<String> = Vec::new();
    let out = kcat_limited(
        &[
            "-b",
            &node1_bootstrap,
            "-P",
            "-t",
            &topic,
            "-p",
            "0",
            "-X",
            "acks=all",
            "-X",
            "message.timeout.ms=20000",
        ],
        Some(after.as_bytes()),
    );
    if !out.status.success() {
        problems.push(format!(
            "a new kcat producer via node 1's port failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let out = kcat_limited(
        &[
            "-b",
            &node1_bootstrap,
            "-C",
            "-t",
            &topic,
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%s\n",
        ],
        None,
    );
    let read = String::from_utf8_lossy(&out.stdout);
    let missing = after
        .lines()
        .filter(|l| !read.lines().any(|r| r == *l))
        .count();
    if !out.status.success() || missing > 0 {
        problems.push(format!(
            "a new kcat consumer via node 1's port ({}) misses {missing} of 20 records: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    // The proxy's own upstream connections, while the good client is still connected.
    let (upstream, ss_problems) = upstream_connection_problems(c, &proxy);
    problems.extend(ss_problems);
    if upstream == 0 {
        problems.push("ss shows no upstream connection of the proxy at all".into());
    }
    notes.push(format!(
        "{upstream} upstream connections, all checked with ss"
    ));

    let (produced, good_problems) = good.finish();
    problems.extend(good_problems);
    notes.push(format!("well-behaved client: {produced} records produced"));

    for h in &hostile {
        notes.push(h.summary());
        problems.extend(h.problems(&ports, &needles));
    }
    for n in &node1 {
        notes.push(n.summary());
        problems.extend(n.problems(&ports, &needles));
        if n.closed && n.frames.len() < n.expected().len() {
            problems.push(format!(
                "{}: closed after {} of {} answers",
                n.label,
                n.frames.len(),
                n.expected().len()
            ));
        }
    }
    let hits = trap.hits.load(Ordering::SeqCst);
    if hits > 0 {
        problems.push(format!(
            "the attacker's listener 127.0.0.1:{} received {hits} connection(s) from {:?}: \
             node 1's proxy port was redirected",
            trap.port,
            trap.peers.lock().unwrap()
        ));
    }
    problems.extend(relay_leaks(&proxy, &needles));
    report(c, &proxy, &problems, &notes);
    drop(hostile);
    drop(node1);

    // The harness's own pairing check over everything the relay carried.
    proxy.assert_no_upstream_leak();
}

/// Issue (1) alone: Produce v0–v2 have no transactional id, so `acks` is the first field of
/// the body. With acks=1 or acks=-1 the broker (3.x) answers and the answer must arrive; with
/// acks=0 nothing comes back and the proxy must not wait for it. The Metadata v1 request
/// behind each Produce must be answered in order. Kafka 4.x closes the connection on these
/// versions: the proxy must then close the client connection too, not leave it hanging.
///
/// Against b9174ba on Kafka 3.9.2, for each of v0, v1, v2, acks=1/timeout 100, acks=-1/timeout
/// 1000 and acks=0/timeout 70000 got no answer at all (the proxy closed on "broker answered
/// correlation id 1, expected Some(2)" or the reverse); acks=1/timeout 1000 passed by luck
/// (read as acks=3).
#[test]
fn produce_v0_to_v2_are_answered_by_their_acks_or_closed() {
    let c = cluster();
    let _up = c.shared();
    let proxy = Proxy::start(c, &[]);
    let ports = proxy_ports(&proxy);
    let needles = upstream_needles(c);
    let accepts_v0_2 = c.version_major_minor() < (4, 0);
    // (acks, timeout_ms): 1/1000 ("acks=3" to a proxy reading a transactional id), 1/100
    // ("acks=0"), -1/1000 ("acks=0"), 0/70000 ("acks=1"), 0/100 ("acks=0"), -1/70000.
    let cases: [(i16, i32); 6] = [
        (1, 1000),
        (1, 100),
        (-1, 1000),
        (0, 70000),
        (0, 100),
        (-1, 70000),
    ];
    let mut clients = Vec::new();
    for version in 0..=2i16 {
        for (acks, timeout) in cases {
            let mut client = RawClient::connect(
                format!("Produce v{version} acks={acks} timeout_ms={timeout}"),
                proxy.port,
            );
            client.send(&[
                produce_req(version, 1, acks, timeout, vec![]),
                metadata_req(1, 2),
            ]);
            clients.push(client);
        }
    }
    let deadline = Instant::now() + ANSWER_WAIT;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    for client in &mut clients {
        client.read_answers(deadline);
    }
    for client in &mut clients {
        client.linger(Duration::from_millis(200));
        notes.push(client.summary());
        problems.extend(client.problems(&ports, &needles));
        let complete = client.frames.len() == client.expected().len();
        if accepts_v0_2 && !complete {
            problems.push(format!(
                "{}: Kafka {} accepts this version, yet only {} of {} answers arrived",
                client.label,
                c.version(),
                client.frames.len(),
                client.expected().len()
            ));
        }
    }
    problems.extend(relay_leaks(&proxy, &needles));
    report(c, &proxy, &problems, &notes);
    drop(clients);
    proxy.assert_no_upstream_leak();
}
