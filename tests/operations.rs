//! Operating the proxy against the real cluster: metrics after traffic, readiness that follows
//! the cluster, certificate rotation under live traffic, a graceful drain under load, and the
//! `check` command's report on success and on each failure class.

mod common;
mod proxy;

use std::ffi::OsString;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{
    cluster, free_port, http_get, metric, openssl, run, unique, wait_until, Cluster, Load,
    Principal,
};
use proxy::Proxy;

/// A TCP relay on broker 1's address at another port, which the test can switch off and on:
/// the proxy reaches the real broker through it, TLS and all, so certificate names still
/// match, and switching it off makes that upstream unreachable.
struct Switch {
    port: u16,
    on: Arc<AtomicBool>,
}

impl Switch {
    fn new() -> Switch {
        let listener = TcpListener::bind("127.0.0.11:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let on = Arc::new(AtomicBool::new(true));
        let on2 = on.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if !on2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect("127.0.0.11:9094") else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Switch { port, on }
    }
    fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }
}

#[test]
fn metrics_move_with_traffic_and_readiness_follows_the_cluster() {
    let c = cluster();
    let _up = c.shared();
    let switch = Switch::new();
    let admin = free_port();
    let upstream = format!("b-1.msk.test:{}", switch.port);
    let admin_addr = format!("127.0.0.1:{admin}");
    let proxy = Proxy::start(
        c,
        &[
            "--upstream",
            &upstream,
            "--admin-address",
            &admin_addr,
            "--discovery-interval",
            "1s",
        ],
    );
    assert_eq!(http_get(admin, "/healthz").0, 200);
    wait_until("/readyz 200", Duration::from_secs(10), || {
        http_get(admin, "/readyz").0 == 200
    });

    let topic = unique("metrics");
    c.create_topic(&topic, 3, 3);
    let input: String = (0..100).map(|i| format!("m-{i}\n")).collect();
    proxy.produce(c, &topic, &input);
    assert_eq!(proxy.consume_all(c, &topic).len(), 100);

    let (status, text) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    for (name, labels) in [
        ("kafka_proxy_requests_total", &["api=\"Produce\""][..]),
        ("kafka_proxy_requests_total", &["api=\"Fetch\""]),
        ("kafka_proxy_responses_total", &["api=\"Metadata\""]),
        (
            "kafka_proxy_rewritten_responses_total",
            &["api=\"Metadata\""],
        ),
        (
            "kafka_proxy_request_duration_seconds_count",
            &["api=\"Produce\""],
        ),
        ("kafka_proxy_bytes_total", &["direction=\"from_clients\""]),
        ("kafka_proxy_bytes_total", &["direction=\"from_brokers\""]),
        (
            "kafka_proxy_client_connections_total",
            &["listener=\"bootstrap\""],
        ),
        ("kafka_proxy_upstream_connections_total", &[]),
        (
            "kafka_proxy_certificate_expiry_timestamp_seconds",
            &["certificate=\"client\""],
        ),
    ] {
        let value = metric(&text, name, labels);
        assert!(value > 0.0, "{name}{labels:?} = {value} in:\n{text}");
    }
    assert_eq!(metric(&text, "kafka_proxy_broker_listeners", &[]), 3.0);
    assert!(!text.contains("127.0.0.1:"), "no client address in labels");

    // The cluster becomes unreachable: not ready within a few discovery rounds.
    switch.set(false);
    wait_until("/readyz 503", Duration::from_secs(15), || {
        http_get(admin, "/readyz").0 == 503
    });
    let (_, body) = http_get(admin, "/readyz");
    assert!(body.contains("no upstream broker"), "{body}");
    let (_, text) = http_get(admin, "/metrics");
    assert!(metric(&text, "kafka_proxy_upstream_failures_total", &[]) > 0.0);
    // And back.
    switch.set(true);
    wait_until("/readyz 200 again", Duration::from_secs(15), || {
        http_get(admin, "/readyz").0 == 200
    });
    proxy.assert_no_upstream_leak();
}

/// Values of a topic read through the proxy, each with its count.
fn read_all(proxy: &Proxy, c: &Cluster, topic: &str) -> std::collections::BTreeMap<String, u32> {
    let mut counts = std::collections::BTreeMap::new();
    for value in proxy.consume_all(c, topic) {
        *counts.entry(value).or_insert(0) += 1;
    }
    counts
}

#[test]
fn sigterm_drains_under_load_and_a_restarted_proxy_takes_over() {
    let c = cluster();
    let _up = c.shared();
    let mut proxy = Proxy::start(c, &["--drain-timeout", "10s"]);
    let topic = unique("drain");
    c.create_topic(&topic, 3, 3);
    let load = Load::start(
        c,
        &std::env::temp_dir(),
        &proxy.bootstrap(),
        &topic,
        6000,
        1000,
    );
    thread::sleep(Duration::from_secs(2));

    let (status, took) = proxy.terminate();
    assert!(status.success(), "clean exit after the drain: {status}");
    assert!(took < Duration::from_secs(12), "drain took {took:?}");
    let log = proxy.log();
    assert!(log.contains("draining"), "{log}");
    // A new process on the same ports (a rolling restart); clients reconnect and carry on.
    proxy.spawn();
    proxy.wait_listening();
    load.finish("drain");

    let counts = read_all(&proxy, c, &topic);
    assert_eq!(counts.len(), 6000, "every record stored");
    assert!(counts.values().all(|n| *n == 1), "no duplicates");
    proxy.assert_no_upstream_leak();
}

fn copy(from: &Path, to: &Path) {
    // Write then rename, as Nomad and Kubernetes do, so the proxy never reads half a file.
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn certificates_rotate_under_live_traffic() {
    let c = cluster();
    let _up = c.shared();
    let dir = common::TempDir::new("rotate");
    let cert = dir.0.join("client.pem");
    let key = dir.0.join("client.key");
    copy(&c.cert(Principal::Admin), &cert);
    copy(&c.key(Principal::Admin), &key);
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let mut options: Vec<OsString> = vec!["--upstream-ca".into(), c.ca().into()];
    options.extend([
        "--client-cert".into(),
        cert.clone().into(),
        "--client-key".into(),
        key.clone().into(),
        "--admin-address".into(),
        admin_addr.into(),
    ]);
    let proxy = Proxy::start_with(c, options);
    let expiry = |text: &str| {
        metric(
            text,
            "kafka_proxy_certificate_expiry_timestamp_seconds",
            &["certificate=\"client\""],
        )
    };
    let before = expiry(&http_get(admin, "/metrics").1);
    assert!(before > 0.0);

    // Live traffic on a topic both identities may write (service: prefix "svc.").
    let topic = unique("svc.rotate");
    c.create_topic(&topic, 3, 3);
    let load = Load::start(
        c,
        &std::env::temp_dir(),
        &proxy.bootstrap(),
        &topic,
        6000,
        600,
    );
    thread::sleep(Duration::from_secs(2));

    // A broken file is refused; the old pair stays in use.
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    proxy.signal("HUP");
    wait_until("reload failure logged", Duration::from_secs(10), || {
        proxy
            .log()
            .contains("reload failed; keeping the certificates in use")
    });
    assert_eq!(expiry(&http_get(admin, "/metrics").1), before);

    // Rotate to the service identity: key first, then certificate, then SIGHUP (a watcher
    // also picks up the change).
    copy(&c.key(Principal::Service), &key);
    copy(&c.cert(Principal::Service), &cert);
    proxy.signal("HUP");
    wait_until("reload logged", Duration::from_secs(10), || {
        proxy.log().contains("certificates and keys reloaded")
    });

    // New connections present the new certificate: as User:service, a topic outside "svc."
    // is not readable, while the one the load writes still is.
    let forbidden = unique("rotate-admin-only");
    c.create_topic(&forbidden, 1, 3);
    let out = c.kcat_raw(
        &[
            "-b",
            &proxy.bootstrap(),
            "-C",
            "-t",
            &forbidden,
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        None,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && text.to_lowercase().contains("authoriz"),
        "new connections should be User:service now: {text}"
    );

    // Live connections were not dropped: every record of the load got through.
    load.finish("rotation");
    let counts = read_all(&proxy, c, &topic);
    assert_eq!(counts.len(), 6000);
    proxy.assert_no_upstream_leak();
}

/// Runs `kafka-tls-proxy check` with `args`.
fn check(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafka-tls-proxy"));
    cmd.arg("check").env_remove("KTP_CLIENT_KEY_PASSPHRASE");
    for a in args {
        cmd.arg(a);
    }
    let out: Output = run(&mut cmd, None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `check` with the upstream, CA, client certificate and key it always needs, plus `extra`.
fn check_with(
    upstream: &dyn AsRef<std::ffi::OsStr>,
    ca: &dyn AsRef<std::ffi::OsStr>,
    cert: &dyn AsRef<std::ffi::OsStr>,
    key: &dyn AsRef<std::ffi::OsStr>,
    extra: &[&dyn AsRef<std::ffi::OsStr>],
) -> (bool, String) {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"--upstream",
        upstream,
        &"--upstream-ca",
        ca,
        &"--client-cert",
        cert,
        &"--client-key",
        key,
    ];
    args.extend_from_slice(extra);
    check(&args)
}

#[test]
fn check_reports_success_and_each_failure_class() {
    let c = cluster();
    let _up = c.shared();
    let (ca, cert, key) = (c.ca(), c.cert(Principal::Admin), c.key(Principal::Admin));
    let ca_key = common::repo_root().join("certs-dev/ca.key");
    let dir = common::TempDir::new("check");
    let d = &dir.0;
    let bootstrap = c.bootstrap().to_owned();

    let (ok, text) = check_with(&bootstrap, &ca, &cert, &key, &[]);
    assert!(ok, "{text}");
    assert!(text.contains("All checks passed"), "{text}");
    assert!(text.contains("name verified"), "{text}");
    for node in 1..=3 {
        assert!(text.contains(&format!("b-{node}.msk.test:9094")), "{text}");
        assert!(text.contains(&format!("910{node}")), "{text}");
    }
    assert!(text.contains("bootstrap.servers=127.0.0.1:9092"), "{text}");

    // A CA that did not sign the brokers.
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other-ca.key",
            "-out",
            "other-ca.pem",
            "-subj",
            "/CN=other",
            "-days",
            "2",
        ],
    );
    let (ok, text) = check_with(
        &"b-1.msk.test:9094",
        &d.join("other-ca.pem"),
        &cert,
        &key,
        &[],
    );
    assert!(
        !ok && text.contains("unknown_ca") && text.contains("--upstream-ca"),
        "{text}"
    );

    // A name the broker certificate does not carry.
    let (ok, text) = check_with(&"127.0.0.11:9094", &ca, &cert, &key, &[]);
    assert!(!ok && text.contains("name_mismatch"), "{text}");

    // The broker rejects a client certificate from an unknown CA.
    let (ok, text) = check_with(
        &"b-1.msk.test:9094",
        &ca,
        &d.join("other-ca.pem"),
        &d.join("other-ca.key"),
        &[],
    );
    assert!(
        !ok && text.contains("rejected the proxy's client certificate"),
        "{text}"
    );

    // An expired broker certificate (a TLS server on broker 1's address with one).
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "exp.key",
            "-out",
            "exp.csr",
            "-subj",
            "/CN=b-1.msk.test",
        ],
    );
    std::fs::write(d.join("ext"), "subjectAltName=DNS:b-1.msk.test\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "exp.csr",
            "-CA",
            ca.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-days",
            "-1",
            "-extfile",
            "ext",
            "-out",
            "exp.pem",
        ],
    );
    let port = TcpListener::bind("127.0.0.11:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-accept",
            &format!("127.0.0.11:{port}"),
            "-cert",
            "exp.pem",
            "-key",
            "exp.key",
        ])
        .current_dir(d)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("s_server", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.11", port)).is_ok()
    });
    let (ok, text) = check_with(&format!("b-1.msk.test:{port}"), &ca, &cert, &key, &[]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(!ok && text.contains("certificate_expired"), "{text}");

    // Nothing listening.
    let closed = free_port();
    let (ok, text) = check_with(&format!("127.0.0.1:{closed}"), &ca, &cert, &key, &[]);
    assert!(
        !ok && text.contains("refused") && text.contains("fix:"),
        "{text}"
    );

    // Key and certificate that do not belong together.
    let (ok, text) = check_with(&bootstrap, &ca, &cert, &c.key(Principal::Service), &[]);
    assert!(!ok && text.contains("do they match"), "{text}");

    // An encrypted key: without a passphrase, with a wrong one, with the right one.
    let (enc_key, pass) = c.service_encrypted_key();
    let svc = c.cert(Principal::Service);
    let (ok, text) = check_with(&bootstrap, &ca, &svc, &enc_key, &[]);
    assert!(!ok && text.contains("is encrypted"), "{text}");
    std::fs::write(d.join("wrong.pass"), "not-the-passphrase\n").unwrap();
    let (ok, text) = check_with(
        &bootstrap,
        &ca,
        &svc,
        &enc_key,
        &[&"--client-key-passphrase-file", &d.join("wrong.pass")],
    );
    assert!(!ok && text.contains("wrong passphrase"), "{text}");
    std::fs::write(d.join("right.pass"), format!("{pass}\n")).unwrap();
    let (ok, text) = check_with(
        &bootstrap,
        &ca,
        &svc,
        &enc_key,
        &[&"--client-key-passphrase-file", &d.join("right.pass")],
    );
    assert!(ok, "{text}");

    // An expired client certificate of our own is flagged before any connection.
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "old.key",
            "-out",
            "old.csr",
            "-subj",
            "/CN=admin",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "old.csr",
            "-CA",
            ca.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-days",
            "-1",
            "-out",
            "old.pem",
        ],
    );
    let (ok, text) = check_with(&bootstrap, &ca, &d.join("old.pem"), &d.join("old.key"), &[]);
    assert!(!ok && text.contains("EXPIRED"), "{text}");

    // A configuration error names the setting.
    let (ok, text) = check(&[&"--upstream", &bootstrap]);
    assert!(!ok && text.contains("--client-cert"), "{text}");
}
