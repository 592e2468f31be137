//! ClickHouse end to end: Debian's clickhouse-server (18.16, Kafka engine on the system's
//! librdkafka) reads a topic of the mutual-TLS cluster through the proxy, with no certificates of
//! its own: a Kafka engine table whose `kafka_broker_list` is the proxy, a materialized view into
//! a MergeTree table. Rows are produced through the proxy (kcat, plaintext) in five batches:
//!  1. with the proxy up; they must all arrive;
//!  2. just before a graceful restart (SIGTERM, drain, a new process on the same ports), and
//!  3. after it; all must arrive;
//!  4. just before a crash (SIGKILL, a new process), and 5. after it; all must arrive.
//!
//! The Kafka engine delivers at least once: it commits offsets after writing a block, so a
//! consumer that re-reads from the committed offset (a rebalance, a ClickHouse restart) after a
//! failed commit writes that block again. The test prints how many duplicates each phase left
//! (README, "ClickHouse") and requires that no row is lost.
//!
//! Needs `clickhouse-server` and `clickhouse-client` (tests/run installs Debian's packages);
//! FAILS when they are missing. Runs its own server on loopback with a temp config and data dir.

mod common;
mod proxy;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::clickhouse::ClickHouse;
use common::{assert_success, run};
use proxy::Proxy;

/// Rows per batch.
const BATCH: u64 = 500;

/// librdkafka's version as ClickHouse loads it (the system's librdkafka1 on Debian).
fn librdkafka_version() -> String {
    let out = run(
        Command::new("dpkg-query").args(["-W", "-f=${Version}", "librdkafka1"]),
        None,
    );
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        "unknown".into()
    }
}

/// Produces rows `from..=to` as JSONEachRow through the proxy with kcat (plaintext, acks=all).
fn produce(c: &common::Cluster, bootstrap: &str, topic: &str, from: u64, to: u64) {
    let input: String = (from..=to)
        .map(|i| format!("{{\"id\":{i},\"msg\":\"row {i}\"}}\n"))
        .collect();
    let out = c.kcat_raw(
        &["-b", bootstrap, "-P", "-t", topic, "-X", "acks=all"],
        Some(input.as_bytes()),
    );
    assert_success(
        &format!("kcat produce {from}..={to} through the proxy"),
        &out,
    );
}

/// Waits until `events` has every id up to `n` (at least once); returns (count, distinct ids).
fn wait_rows(ch: &ClickHouse, n: u64, within: Duration) -> (u64, u64) {
    let deadline = Instant::now() + within;
    loop {
        let (count, distinct) = ch.counts();
        if distinct >= n {
            return (count, distinct);
        }
        if Instant::now() >= deadline {
            panic!(
                "only {distinct} of {n} ids reached MergeTree ({count} rows) within {within:?}\n\
                 --- librdkafka/Kafka log lines\n{}\n{}",
                ch.log_lines("Kafka")
                    .iter()
                    .rev()
                    .take(40)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n"),
                ch.logs()
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// A proxy process started by this test (after a restart); killed on drop.
struct Restarted {
    child: Child,
}

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command line of process `pid`.
fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("proxy command line");
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Sends `signal` to the proxy process `pid` (a child of this test) and waits until it has
/// exited (a zombie until reaped by its owner). Returns the seconds it took.
fn stop(pid: u32, signal: &str) -> f64 {
    let status = run(
        Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]),
        None,
    );
    assert_success(&format!("kill -{signal} proxy"), &status);
    let t0 = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        if stat.is_empty() || state == Some("Z") {
            return t0.elapsed().as_secs_f64();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "proxy did not exit within 30 s of SIG{signal}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The proxy's ports on 127.0.0.1: bootstrap and brokers 1..=3.
fn proxy_ports(p: &Proxy) -> [u16; 4] {
    [p.port, p.base + 1, p.base + 2, p.base + 3]
}

/// Waits until nothing listens on the proxy's ports any more. A killed process's leader thread
/// turns zombie before its other threads have exited and closed the listening sockets; a new
/// proxy started before that would wait to bind while clients still reach the old sockets.
fn wait_ports_free(p: &Proxy) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in proxy_ports(p) {
        while TcpListener::bind(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "port {port} still in use 30 s after the proxy exited"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts the proxy again with `args` (same ports; the relay of `Proxy` kept listening) once
/// the old process's sockets are gone, and waits until the bootstrap port and brokers 1..=3 listen.
fn start_again(p: &Proxy, args: &[String], log: &Path) -> Restarted {
    wait_ports_free(p);
    let child = Command::new(&args[0])
        .args(&args[1..])
        .env_remove("KTP_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start kafka-tls-proxy again");
    let deadline = Instant::now() + Duration::from_secs(20);
    for port in proxy_ports(p) {
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "restarted proxy not listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    Restarted { child }
}

/// (rows, distinct ids, ids seen more than once) in MergeTree, after letting in-flight blocks land.
fn duplicates(ch: &ClickHouse) -> (u64, u64, u64) {
    thread::sleep(Duration::from_secs(3));
    let line = ch.query(
        "SELECT count(), uniqExact(id), \
         (SELECT count() FROM (SELECT id FROM events GROUP BY id HAVING count() > 1)) FROM events",
    );
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0], v[1], v[2])
}

#[test]
fn clickhouse_kafka_engine_reads_through_the_proxy_across_a_restart() {
    let t0 = Instant::now();
    let c = common::cluster();
    let _shared = c.shared();
    // Trace logging and librdkafka's cgrp,broker debug: wait_rows shows the Kafka lines.
    let ch = ClickHouse::start("ktp-clickhouse", "trace", "<debug>cgrp,broker</debug>");
    eprintln!(
        "clickhouse: librdkafka {}, Kafka {}",
        librdkafka_version(),
        c.version()
    );

    let topic = common::unique("ch.events");
    let group = common::unique("ch-group");
    c.create_topic(&topic, 3, 3);
    let p = Proxy::start(c, &[]);
    let bootstrap = p.bootstrap();

    ch.consume_events(&bootstrap, &topic, &group);

    produce(c, &bootstrap, &topic, 1, BATCH);
    let (count1, distinct1) = wait_rows(&ch, BATCH, Duration::from_secs(90));
    eprintln!(
        "clickhouse: batch 1: {distinct1} distinct ids, {count1} rows ({} duplicates) after {:.1} s",
        count1 - distinct1,
        t0.elapsed().as_secs_f64()
    );

    // 2. Graceful restart (SIGTERM: the proxy drains, like Nomad/systemd/Docker stop it) while
    //    ClickHouse consumes: batch 2 is produced and the proxy stopped right away; batch 3
    //    goes through the new process.
    let args = cmdline(p.pid());
    produce(c, &bootstrap, &topic, BATCH + 1, 2 * BATCH);
    let took = stop(p.pid(), "TERM");
    eprintln!("clickhouse: proxy drained and exited {took:.1} s after SIGTERM");
    let log2 = std::env::temp_dir().join(format!("kafka-tls-proxy-{}-restarted.log", p.port));
    let second = start_again(&p, &args, &log2);
    produce(c, &bootstrap, &topic, 2 * BATCH + 1, 3 * BATCH);
    wait_rows(&ch, 3 * BATCH, Duration::from_secs(120));
    let (rows, distinct, dup_ids) = duplicates(&ch);
    assert_eq!(distinct, 3 * BATCH, "no row lost");
    eprintln!(
        "clickhouse: after a graceful proxy restart during consumption: {distinct} ids, {rows} rows \
         ({} duplicate rows, {dup_ids} ids more than once) after {:.1} s",
        rows - distinct,
        t0.elapsed().as_secs_f64()
    );

    // 3. Crash (SIGKILL: in-flight requests, offset commits included, are cut) during
    //    consumption, then a new process; batch 5 after it.
    produce(c, &bootstrap, &topic, 3 * BATCH + 1, 4 * BATCH);
    stop(second.child.id(), "KILL");
    let log3 = std::env::temp_dir().join(format!("kafka-tls-proxy-{}-crashed.log", p.port));
    let _third = start_again(&p, &args, &log3);
    produce(c, &bootstrap, &topic, 4 * BATCH + 1, 5 * BATCH);
    wait_rows(&ch, 5 * BATCH, Duration::from_secs(120));
    let (rows, distinct, dup_ids) = duplicates(&ch);
    assert_eq!(distinct, 5 * BATCH, "no row lost");
    let summary = ch.query("SELECT min(id), max(id) FROM events");
    assert_eq!(summary, format!("1\t{}", 5 * BATCH));
    let errors = ch.log_lines("<Error>");
    eprintln!(
        "clickhouse: after a proxy crash during consumption: {distinct} ids, {rows} rows \
         ({} duplicate rows, {dup_ids} ids more than once: at-least-once delivery) after {:.1} s; \
         {} <Error> lines in the ClickHouse log{}",
        rows - distinct,
        t0.elapsed().as_secs_f64(),
        errors.len(),
        errors
            .iter()
            .take(5)
            .map(|l| format!("\n  {l}"))
            .collect::<String>()
    );

    // Everything ClickHouse (librdkafka) was told about brokers pointed at the proxy.
    let checked = p.assert_no_upstream_leak();
    assert!(
        checked > 0,
        "no Metadata/FindCoordinator response crossed the relay"
    );
    ch.stop_consuming();
}
