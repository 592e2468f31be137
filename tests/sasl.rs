//! SASL/SCRAM towards the real cluster (issue 18): its SASL_SSL listener on 9096 (MSK's SCRAM
//! port) with SCRAM-SHA-512 users and sessions of 10 s (`connections.max.reauth.ms`), so the
//! proxy must renew each upstream session (KIP-368) to keep its connections. Real Java clients
//! (idempotent verifiable producer, console consumer in a group) and kcat.

mod common;
mod proxy;

use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cluster, free_port, http_get, metric, unique, Cluster, TempDir};
use proxy::Proxy;

/// Records the producer sends: 50 a second for two minutes.
const RECORDS: usize = 6000;
const RATE: usize = 50;
/// The cluster's `listener.name.scram.connections.max.reauth.ms`.
const SESSION: Duration = Duration::from_secs(10);

/// Proxy options for SCRAM-SHA-512 as `user` with the password in `password_file`.
fn scram_options(c: &Cluster, user: &str, password_file: &str) -> Vec<OsString> {
    [
        "--upstream",
        c.get("KTP_SCRAM_BOOTSTRAP"),
        "--upstream-ca",
        c.ca().to_str().unwrap(),
        "--upstream-auth",
        "scram-sha-512",
        "--sasl-username",
        user,
        "--sasl-password-file",
        password_file,
    ]
    .iter()
    .map(OsString::from)
    .collect()
}

fn check(options: &[OsString]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafka-tls-proxy"));
    cmd.arg("check").args(options);
    let out = common::run(&mut cmd, None);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `key=N` of a log line, as a number.
fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn idempotent_producer_and_group_for_two_minutes_over_scram_with_10s_sessions() {
    let c = cluster();
    let _up = c.shared();
    let admin = free_port();
    let mut options = scram_options(c, "service", c.get("KTP_SCRAM_SERVICE_PASSWORD_FILE"));
    options.extend([
        "--admin-address".into(),
        format!("127.0.0.1:{admin}").into(),
    ]);
    let proxy = Proxy::start_with(c, options.clone());

    // check sees the session the broker grants, at its own step.
    let (ok, text) = check(&options);
    assert!(ok, "check should pass:\n{text}");
    assert!(
        text.contains("SASL SCRAM-SHA-512 as 'service': authenticated (session 10s"),
        "{text}"
    );

    let topic = unique("svc.sasl");
    let group = unique("svc.sasl-group");
    c.create_topic(&topic, 3, 3);
    let dir = TempDir::new("sasl");
    let producer_config = dir.path().join("producer.properties");
    std::fs::write(
        &producer_config,
        "enable.idempotence=true\nacks=all\nretries=2147483647\nmax.in.flight.requests.per.connection=5\n",
    )
    .unwrap();
    let config_flag = |old: &'static str| {
        if c.console_options_renamed() {
            "--command-config"
        } else {
            old
        }
    };
    let bootstrap = proxy.bootstrap();
    let n = RECORDS.to_string();
    let rate = RATE.to_string();
    let started = Instant::now();
    // Output to files: a client never waits for the test to read a pipe.
    let out = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
    let mut consumer = c
        .cluster_sh()
        .args(["cli", "console-consumer", "--bootstrap-server", &bootstrap])
        .args(["--topic", &topic, "--group", &group, "--from-beginning"])
        .args(["--max-messages", &n, "--timeout-ms", "60000"])
        .stdin(Stdio::null())
        .stdout(out("consumer.out"))
        .stderr(out("consumer.err"))
        .spawn()
        .unwrap();
    let mut producer = c
        .cluster_sh()
        .args([
            "cli",
            "verifiable-producer",
            "--bootstrap-server",
            &bootstrap,
        ])
        .args([
            "--topic",
            &topic,
            "--max-messages",
            &n,
            "--throughput",
            &rate,
        ])
        .args(["--acks", "-1", config_flag("--producer.config")])
        .arg(&producer_config)
        .stdin(Stdio::null())
        .stdout(out("producer.out"))
        .stderr(out("producer.err"))
        .spawn()
        .unwrap();

    // Ten sessions into the run, while both clients still work, no upstream connection has
    // ended: none lapsed, none was reopened.
    std::thread::sleep(Duration::from_secs(100));
    let during = proxy.log();

    let produced = producer.wait().unwrap();
    let consumed = consumer.wait().unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let (produced_text, produced_err) = (read("producer.out"), read("producer.err"));
    let (consumed_text, consumed_err) = (read("consumer.out"), read("consumer.err"));
    assert!(produced.success(), "verifiable producer: {produced_err}");
    assert!(consumed.success(), "console consumer: {consumed_err}");
    let took = started.elapsed();
    assert!(
        !during.contains("upstream connection ends") && !during.contains("connection closed"),
        "an upstream connection ended during the run:\n{during}\nproducer: {produced_err}\nconsumer: {consumed_err}"
    );
    assert!(
        took >= Duration::from_secs(110),
        "the run took only {took:?}"
    );

    let successes = produced_text
        .lines()
        .filter(|l| l.contains("\"producer_send_success\""))
        .count();
    let errors: Vec<&str> = produced_text
        .lines()
        .filter(|l| l.contains("\"producer_send_error\""))
        .collect();
    assert!(errors.is_empty(), "failed sends: {errors:?}");
    assert_eq!(successes, RECORDS, "{produced_err}");

    let mut values: Vec<u64> = consumed_text
        .lines()
        .map(|l| l.trim().parse().expect("a verifiable-producer value"))
        .collect();
    assert_eq!(
        values.len(),
        RECORDS,
        "records read; consumer: {consumed_err}"
    );
    values.sort_unstable();
    values.dedup();
    assert_eq!(values, (0..RECORDS as u64).collect::<Vec<_>>());

    // Connections closed with their clients: the per-connection lines are written.
    std::thread::sleep(Duration::from_secs(2));
    let (_, end) = http_get(admin, "/metrics");
    let opened = metric(&end, "kafka_proxy_upstream_connections_total", &[]);
    let renewed = metric(
        &end,
        "kafka_proxy_upstream_reauthentications_total",
        &["identity=\"default\""],
    );
    let failures = metric(
        &end,
        "kafka_proxy_upstream_reauthentication_failures_total",
        &["identity=\"default\""],
    );
    assert_eq!(failures, 0.0);
    let log = proxy.log();
    let per_connection: Vec<(u64, u64)> = log
        .lines()
        .filter(|l| l.contains("its SASL session was renewed"))
        .filter_map(|l| Some((field(l, "renewals")?, field(l, "open_seconds")?)))
        .collect();
    // Every upstream connection of the run ended only with its client, after renewing its
    // session at least once per 10 s session it outlived (less the first); the producer's and
    // the consumer's connections lived the whole run (bootstrap, leaders, coordinator).
    assert_eq!(per_connection.len() as f64, opened, "{log}");
    for (renewals, open) in &per_connection {
        let due = (open / SESSION.as_secs()).saturating_sub(1);
        assert!(
            *renewals >= due,
            "a connection open {open} s renewed its session {renewals} times: {per_connection:?}"
        );
    }
    let long_lived: Vec<&(u64, u64)> = per_connection
        .iter()
        .filter(|(_, open)| *open >= took.as_secs() - 30)
        .collect();
    assert!(long_lived.len() >= 2, "{per_connection:?}\n{log}");
    for (renewals, open) in &long_lived {
        assert!(
            *renewals >= 10,
            "a connection open {open} s renewed its session {renewals} times: {per_connection:?}"
        );
    }
    assert!(
        renewed >= 10.0 * long_lived.len() as f64,
        "kafka_proxy_upstream_reauthentications_total {renewed} for {} connections",
        long_lived.len()
    );
    assert!(!log.contains("connection closed"), "{log}");
    eprintln!(
        "{RECORDS} records in {took:?}; {opened} upstream connections; (renewals, seconds open) per connection: {per_connection:?}; total {renewed}"
    );
    proxy.assert_no_upstream_leak();
}

#[test]
fn a_wrong_password_is_logged_and_check_fails_at_the_sasl_step() {
    let c = cluster();
    let _up = c.shared();
    let dir = TempDir::new("sasl-wrong");
    let wrong = dir.path().join("wrong.pass");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let mut options = scram_options(c, "service", wrong.to_str().unwrap());
    let (ok, text) = check(&options);
    assert!(!ok, "{text}");
    assert!(text.contains("FAIL SASL"), "{text}");
    assert!(text.contains("invalid credentials"), "{text}");
    assert!(
        text.contains("fix: check --sasl-username and the password in --sasl-password-file"),
        "{text}"
    );

    options.extend(["--discovery-interval".into(), "0".into()]);
    let proxy = Proxy::start_with(c, options);
    let out = c.kcat_raw(&["-b", &proxy.bootstrap(), "-L", "-m", "5"], None);
    assert!(!out.status.success());
    let log = proxy.log();
    assert!(
        log.contains("SASL authentication with")
            && log.contains("the broker refused SASL authentication (error 58)")
            && log.contains("invalid credentials with SASL mechanism SCRAM-SHA-512"),
        "{log}"
    );
}

#[test]
fn a_client_asking_the_proxy_for_sasl_gets_an_error_and_a_log_line() {
    let c = cluster();
    let _up = c.shared();
    let proxy = Proxy::start(c, &[]);
    let out = c.kcat_raw(
        &[
            "-b",
            &proxy.bootstrap(),
            "-X",
            "security.protocol=sasl_plaintext",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-512",
            "-X",
            "sasl.username=someone",
            "-X",
            "sasl.password=something",
            "-L",
            "-m",
            "5",
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SASL"), "{stderr}");
    let log = proxy.log();
    assert!(
        log.contains("client sent SaslHandshake")
            && log.contains("kafka-tls-proxy authenticates to the cluster itself"),
        "{log}"
    );
}

/// A port P with P+1..=P+3 free too (an identity's broker ports for nodes 1..3).
fn free_base() -> u16 {
    loop {
        let p = free_port();
        if p < 65000 && (1..=3).all(|n| std::net::TcpListener::bind(("127.0.0.1", p + n)).is_ok()) {
            return p;
        }
    }
}

#[test]
fn each_identity_authenticates_as_its_own_scram_user() {
    let c = cluster();
    let _up = c.shared();
    let dir = TempDir::new("sasl-identity");
    let (bootstrap, base) = (free_port(), free_base());
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[[identity]]\nname = \"ro\"\nbootstrap-port = {bootstrap}\nbroker-port-base = {base}\n\
             upstream-auth = \"scram-sha-512\"\nsasl-username = \"readonly\"\n\
             sasl-password-file = \"{}\"\n",
            c.get("KTP_SCRAM_READONLY_PASSWORD_FILE")
        ),
    )
    .unwrap();
    let mut options = scram_options(c, "service", c.get("KTP_SCRAM_SERVICE_PASSWORD_FILE"));
    options.extend(
        ["--config", config.to_str().unwrap(), "--max-brokers", "4"]
            .iter()
            .map(OsString::from),
    );
    // Clients of the identity's ports dial the proxy directly (the recording relay covers
    // the default ports only).
    options.extend(["--advertised-host".into(), "127.0.0.1".into()]);
    let proxy = Proxy::start_with(c, options);
    let topic = unique("svc.sasl-identity");
    c.create_topic(&topic, 3, 3);
    let produce = |server: &str| {
        c.kcat_raw(
            &[
                "-b",
                server,
                "-P",
                "-t",
                &topic,
                "-X",
                "message.timeout.ms=15000",
            ],
            Some(b"one\ntwo\n"),
        )
    };
    // Default identity: User:service (SCRAM) may write svc.* topics.
    let out = produce(&format!("127.0.0.1:{}", proxy.port));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The "ro" identity: User:readonly (SCRAM) reads every topic but writes none.
    let ro = format!("127.0.0.1:{bootstrap}");
    let out = produce(&ro);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.to_lowercase().contains("authoriz"),
        "readonly must be refused by the cluster's ACLs: {stderr}"
    );
    let out = c.kcat_raw(
        &["-b", &ro, "-C", "-t", &topic, "-o", "beginning", "-e", "-q"],
        None,
    );
    let mut read: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    read.sort();
    assert_eq!(
        read,
        ["one", "two"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = proxy.log();
    assert!(!log.contains("SASL authentication with"), "{log}");
}
