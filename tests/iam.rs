//! AWS IAM towards "MSK" without AWS (issue 18): the AWS_MSK_IAM payload checked against
//! botocore (AWS's Python SDK core, an implementation independent of the Rust SDK's
//! aws-sigv4 the proxy signs with), and the proxy against `tests/iam/fake_msk.py`: a TLS
//! Kafka listener that verifies every AWS_MSK_IAM signature with botocore and grants 15 s
//! sessions (closing a connection whose session has run out, as MSK does), beside fake ECS
//! container-credentials and EC2 IMDSv2 endpoints on loopback that hand out a new access key,
//! valid 20 s, at every request. A real broker cannot stand in here: AWS_MSK_IAM exists only
//! on MSK.
//!
//! Python with botocore comes from the venv tests/run prepares (`.cache/deploy-venv`,
//! tests/deploy/requirements.txt); without it these tests fail, saying how to make it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use bytes::Bytes;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::Decodable;
use kafka_tls_proxy::aws_iam;
use serde_json::{json, Value};

use common::{free_port, http_get, metric, repo_root, TempDir};

/// The fake's session lifetime and the life of each credential it hands out.
const SESSION: Duration = Duration::from_secs(15);
const CREDENTIAL_SECONDS: u64 = 20;
/// How long the client sends: the proxy renews at 85 % of 15 s (12.75 s, 25.5 s), and the
/// second renewal comes after the first credential (fetched at the latest when the client's
/// connection opened) has expired, so it must sign with a newer one.
const LOAD: Duration = Duration::from_secs(32);
const REGION: &str = "eu-west-1";

fn python() -> PathBuf {
    let python = repo_root().join(".cache/deploy-venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import botocore"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with botocore is needed (tests/run makes it; by hand: python3 -m venv .cache/deploy-venv && .cache/deploy-venv/bin/pip install -r tests/deploy/requirements.txt)",
        python.display()
    );
    python
}

fn fake_msk() -> PathBuf {
    repo_root().join("tests/iam/fake_msk.py")
}

/// Runs botocore's check over `cases`; returns its verdicts.
fn botocore_verdicts(cases: &[Value]) -> Vec<(bool, String)> {
    let input: String = cases.iter().map(|c| format!("{c}\n")).collect();
    let out = common::run(
        Command::new(python()).arg(fake_msk()).arg("check"),
        Some(input.as_bytes()),
    );
    let stdout = common::assert_success("fake_msk.py check", &out);
    let verdicts: Vec<(bool, String)> = stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["ok"].as_bool().unwrap(),
                v["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(verdicts.len(), cases.len(), "{stdout}");
    verdicts
}

fn case(creds: &Credentials, host: &str, region: &str, at: SystemTime) -> Value {
    let payload: Value =
        serde_json::from_slice(&aws_iam::payload(creds, host, region, at).unwrap()).unwrap();
    json!({
        "payload": payload,
        "secret": creds.secret_access_key(),
        "token": creds.session_token(),
        "region": region,
        "host": host,
    })
}

#[test]
fn signed_payloads_match_botocore() {
    let hosts = [
        "b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com",
        "b-12.orders-prod.x9y8z7.c11.kafka.us-east-1.amazonaws.com",
        "boot-abcd1234.c2.kafka-serverless.ap-southeast-2.amazonaws.com",
        "localhost",
    ];
    let credentials = [
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "t",
        ),
        Credentials::new(
            "ASIAEXAMPLE2",
            "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
            Some("IQoJb3JpZ2luX2VjEH0aCXVzLWVhc3QtMSJHMEUCIQ+/==".into()),
            None,
            "t",
        ),
    ];
    let times = [
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_603_368_000), // 2020-10-22T12:00:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_599), // 2026-12-31T23:59:59Z
        SystemTime::now(),
    ];
    let mut cases = Vec::new();
    for host in hosts {
        for creds in &credentials {
            for at in times {
                let region = aws_iam::region_from_host(host).unwrap_or_else(|| REGION.into());
                cases.push(case(creds, host, &region, at));
            }
        }
    }
    let verdicts = botocore_verdicts(&cases);
    for (c, (ok, reason)) in cases.iter().zip(&verdicts) {
        assert!(ok, "botocore disagrees: {reason}\n{c:#}");
    }

    // The check is no rubber stamp: each alteration is caught.
    let good = case(&credentials[1], hosts[0], REGION, times[0]);
    let mut bad = Vec::new();
    let alter = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    bad.push(alter(&|c| c["secret"] = json!("another-secret")));
    bad.push(alter(&|c| c["region"] = json!("us-east-1")));
    bad.push(alter(&|c| {
        c["host"] = json!("b-2.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com")
    }));
    bad.push(alter(&|c| c["token"] = json!("another-token")));
    bad.push(alter(&|c| {
        c["payload"]["x-amz-date"] = json!("20201022T120001Z")
    }));
    bad.push(alter(&|c| {
        let sig = c["payload"]["x-amz-signature"].as_str().unwrap().to_owned();
        let flipped = if sig.starts_with('0') { "1" } else { "0" };
        c["payload"]["x-amz-signature"] = json!(format!("{flipped}{}", &sig[1..]));
    }));
    for (c, (ok, reason)) in bad.iter().zip(botocore_verdicts(&bad)) {
        assert!(!ok, "an altered payload passed ({reason}):\n{c:#}");
    }
    println!(
        "{} payloads match botocore's signatures; {} altered ones are refused",
        cases.len(),
        bad.len()
    );
}

/// The fake MSK (and credential endpoints) as a child process.
struct FakeMsk {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    kafka: u16,
    http: u16,
    events: PathBuf,
    _dir: TempDir,
}

impl FakeMsk {
    fn start() -> FakeMsk {
        let dir = TempDir::new("fake-msk");
        let events = dir.path().join("events.jsonl");
        let certs = repo_root().join("certs-dev");
        let mut child = Command::new(python())
            .arg(fake_msk())
            .arg("serve")
            .arg("--cert")
            .arg(certs.join("proxy-server.pem"))
            .arg("--key")
            .arg(certs.join("proxy-server.key"))
            .args(["--region", REGION, "--host", "localhost", "--events"])
            .arg(&events)
            .args(["--session-ms", &SESSION.as_millis().to_string()])
            .args(["--credential-seconds", &CREDENTIAL_SECONDS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fake_msk.py");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ports: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("fake_msk.py said {line:?}: {e}"));
        FakeMsk {
            child,
            _stdout: stdout,
            kafka: ports["kafka"].as_u64().unwrap() as u16,
            http: ports["http"].as_u64().unwrap() as u16,
            events,
            _dir: dir,
        }
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for FakeMsk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the proxy's credentials come from in a test: configuration of the SDK's chain only
/// (endpoints on loopback), never a secret.
#[derive(Clone, Copy)]
enum Source {
    Container,
    Imds,
    Nothing,
}

fn proxy_command(fake: &FakeMsk, source: Source, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafka-tls-proxy"));
    cmd.env_clear()
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .args(["--upstream", &format!("localhost:{}", fake.kafka)])
        .arg("--upstream-ca")
        .arg(repo_root().join("certs-dev/ca.pem"))
        .args(["--upstream-auth", "aws-msk-iam"])
        .args(args);
    match source {
        Source::Container => {
            cmd.env(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://127.0.0.1:{}/ecs", fake.http),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true");
        }
        Source::Imds => {
            cmd.env(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                format!("http://127.0.0.1:{}", fake.http),
            );
        }
        Source::Nothing => {
            cmd.env("AWS_EC2_METADATA_DISABLED", "true");
        }
    }
    cmd
}

/// Sends one Metadata v12 request on `stream` and reads its answer.
fn metadata(stream: &mut TcpStream, correlation_id: i32) -> Result<MetadataResponse, String> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![]))
        .with_allow_auto_topic_creation(false);
    let frame = common::kafka::request_frame("iam-load", 3, 12, 2, correlation_id, &request);
    stream.write_all(&frame).map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .map_err(|e| format!("reading: {e}"))?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("reading: {e}"))?;
    let got = i32::from_be_bytes(body[..4].try_into().unwrap());
    if got != correlation_id {
        return Err(format!("correlation id {got}, expected {correlation_id}"));
    }
    // Response header v1: correlation id, empty tagged fields.
    MetadataResponse::decode(&mut Bytes::from(body).slice(5..), 12).map_err(|e| e.to_string())
}

/// A client sending Metadata requests back to back through the proxy for [`LOAD`]; then the
/// fake's and the proxy's accounts of the renewals.
fn reauthentication_under_load(source: Source) {
    let fake = FakeMsk::start();
    let (port, admin) = (free_port(), free_port());
    let base = free_port() - 1;
    let log = TempDir::new("iam-proxy");
    let log_file = log.path().join("proxy.log");
    let proxy = proxy_command(
        &fake,
        source,
        &[
            "--aws-region",
            REGION,
            "--bootstrap-port",
            &port.to_string(),
            "--broker-port-base",
            &base.to_string(),
            "--admin-address",
            &format!("127.0.0.1:{admin}"),
            "--log",
            "info,kafka_tls_proxy=debug",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log_file).unwrap())
    .spawn()
    .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let proxy_guard = Kill(proxy);
    let log_text = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(TcpStream::connect(("127.0.0.1", admin)).is_ok() && http_get(admin, "/readyz").0 == 200)
    {
        assert!(
            Instant::now() < deadline,
            "the proxy is not ready after 30 s\n--- proxy log\n{}\n--- fake MSK's events\n{:#?}",
            log_text(),
            fake.events()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < LOAD {
        sent += 1;
        let answer = metadata(&mut stream, sent).unwrap_or_else(|e| {
            panic!(
                "request {sent} after {:?} failed: {e}\n--- proxy log\n{}",
                started.elapsed(),
                log_text()
            )
        });
        // The broker is the proxy's, never the fake's own address.
        assert_eq!(answer.brokers.len(), 1);
        assert_eq!(answer.brokers[0].host.as_str(), "127.0.0.1");
        assert_eq!(answer.brokers[0].port, i32::from(base) + 1);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, metrics) = http_get(admin, "/metrics");
    drop(stream);
    drop(proxy_guard);

    let renewals = metric(
        &metrics,
        "kafka_proxy_upstream_reauthentications_total",
        &[],
    );
    let failures = 0.0
        + metric(
            &metrics,
            "kafka_proxy_upstream_reauthentication_failures_total",
            &[],
        );
    let events = fake.events();
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == kind).collect() };
    let auths = of("auth");
    let refused: Vec<_> = auths.iter().filter(|e| e["ok"] != true).collect();
    assert!(refused.is_empty(), "the fake refused: {refused:?}");
    assert!(
        of("expired").is_empty() && of("unauthenticated").is_empty(),
        "{events:#?}"
    );
    // The client's connection: the one that carried its Metadata requests.
    let client_conn = of("metadata")
        .iter()
        .map(|e| e["conn"].as_u64().unwrap())
        .max_by_key(|c| of("metadata").iter().filter(|e| e["conn"] == *c).count())
        .unwrap();
    let keys: Vec<&str> = auths
        .iter()
        .filter(|e| e["conn"] == client_conn)
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    let issued = of("issued");
    let first_issue = issued.first().map(|e| e["t"].as_f64().unwrap());
    println!(
        "{sent} requests in {:?}, 0 errors; the proxy counted {renewals} renewals ({failures} failed); \
         the client's upstream connection authenticated {} times with keys {keys:?}; {} keys issued, \
         {} verified authentications in all",
        started.elapsed(),
        keys.len(),
        issued.len(),
        auths.len()
    );
    assert!(renewals >= 2.0, "renewals counted: {renewals}");
    assert_eq!(failures, 0.0);
    assert!(
        keys.len() >= 3,
        "initial + 2 renewals on one connection: {keys:?}"
    );
    let mut distinct = keys.clone();
    distinct.dedup();
    assert!(
        distinct.len() >= 2,
        "a renewal after the first credential expired must sign with a new key: {keys:?}"
    );
    assert!(first_issue.is_some());
    let wanted = match source {
        Source::Container => "ecs",
        Source::Imds => "imds",
        Source::Nothing => unreachable!(),
    };
    assert!(issued.iter().all(|e| e["source"] == wanted), "{issued:?}");
    if let Source::Imds = source {
        // IMDSv2: a session token first, then the role, then its credentials.
        let paths: Vec<&str> = of("http")
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        assert!(paths.contains(&"/latest/api/token"), "{paths:?}");
    }
    // Secrets stay out of the log (at debug level too), and so do the AWS SDK's own lines
    // (the missing profile files given above make it warn).
    let text = log_text();
    assert!(
        !text.contains(" aws_runtime::") && !text.contains(" aws_config::"),
        "{text}"
    );
    for e in &issued {
        for secret in ["secret", "token"] {
            assert!(
                !text.contains(e[secret].as_str().unwrap()),
                "a {secret} in the log"
            );
        }
    }
}

#[test]
fn renewals_under_load_with_rotating_container_credentials() {
    reauthentication_under_load(Source::Container);
}

#[test]
fn renewals_under_load_with_rotating_imds_credentials() {
    reauthentication_under_load(Source::Imds);
}

fn check(fake: &FakeMsk, source: Source, region: &str) -> (bool, String) {
    let out = common::run(
        proxy_command(fake, source, &["--aws-region", region]).arg("check"),
        None,
    );
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_reports_the_iam_step() {
    let fake = FakeMsk::start();
    let (ok, text) = check(&fake, Source::Container, REGION);
    assert!(ok, "{text}");
    assert!(
        text.contains("SASL AWS_MSK_IAM (region eu-west-1, access key ASIAFAKE")
            && text.contains("authenticated (session 15s"),
        "{text}"
    );

    // No credentials anywhere in the chain.
    let (ok, text) = check(&fake, Source::Nothing, REGION);
    assert!(!ok, "{text}");
    assert!(text.contains("FAIL SASL: no AWS credentials"), "{text}");
    assert!(
        text.contains("fix: the proxy found no AWS credentials"),
        "{text}"
    );

    // The wrong region: the broker's refusal, with its message, and what to fix.
    let (ok, text) = check(&fake, Source::Container, "us-east-1");
    assert!(!ok, "{text}");
    assert!(
        text.contains("the broker refused SASL authentication (error 58)")
            && text.contains("region 'us-east-1' is not 'eu-west-1'"),
        "{text}"
    );
    assert!(text.contains("a wrong --aws-region"), "{text}");
    println!("{text}");
}

#[test]
fn startup_needs_a_region() {
    let out = common::run(
        Command::new(env!("CARGO_BIN_EXE_kafka-tls-proxy")).args([
            "check",
            "--upstream",
            "b-1.msk.test:9098",
            "--upstream-auth",
            "aws-msk-iam",
        ]),
        None,
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("--aws-region: upstream-auth aws-msk-iam needs the cluster's region"),
        "{text}"
    );
}

#[test]
fn keys_in_the_environment_work_but_are_warned_about() {
    let fake = FakeMsk::start();
    let log = TempDir::new("iam-env");
    let log_file = log.path().join("proxy.log");
    let port = free_port();
    let mut proxy = proxy_command(
        &fake,
        Source::Nothing,
        &[
            "--aws-region",
            REGION,
            "--bootstrap-port",
            &port.to_string(),
            "--broker-port-base",
            &(free_port() - 1).to_string(),
            "--admin-address",
            "off",
        ],
    )
    .env("AWS_ACCESS_KEY_ID", "AKIDENVEXAMPLE")
    .env("AWS_SECRET_ACCESS_KEY", "env-secret-value-123")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log_file).unwrap())
    .spawn()
    .unwrap();
    let log_text = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    // The discovery at start signs with the environment's key, which this fake does not know.
    while !log_text().contains("unknown access key AKIDENVEXAMPLE") {
        assert!(Instant::now() < deadline, "{}", log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = proxy.kill();
    let _ = proxy.wait();
    let text = log_text();
    assert!(
        text.contains("AWS_SECRET_ACCESS_KEY is set in the proxy's environment"),
        "{text}"
    );
    assert!(
        text.contains("the broker refused SASL authentication (error 58)"),
        "{text}"
    );
    assert!(!text.contains("env-secret-value-123"), "{text}");
    let auths: Vec<Value> = fake
        .events()
        .into_iter()
        .filter(|e| e["event"] == "auth")
        .collect();
    assert!(
        auths
            .iter()
            .all(|e| e["key"] == "AKIDENVEXAMPLE" && e["ok"] == false),
        "{auths:?}"
    );
}
