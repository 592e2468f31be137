//! Issue 2 acceptance: the test cluster really is an MSK-like mutual-TLS Kafka cluster.
//! Real clients (kcat/librdkafka, the Kafka Java console tools, a stdlib-Python client) talk to
//! it directly, no proxy. Needs the running cluster (`tests/run` starts it).

mod common;

use common::{assert_success, cluster, unique, untrusted_client_cert, Principal, TempDir};
use std::collections::BTreeSet;

fn lines(bytes: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn records(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("key-{i}:{prefix} value {i} ✓"))
        .collect()
}

/// kcat consumer of a whole topic as `p`: returns the `key:value` lines.
fn kcat_consume(p: Principal, topic: &str, expected: usize) -> BTreeSet<String> {
    let c = cluster();
    let out = c.kcat_as(
        p,
        &[
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-c",
            &expected.to_string(),
            "-f",
            "%k:%s\\n",
        ],
        None,
    );
    lines(assert_success(&format!("kcat consume {topic}"), &out).as_bytes())
}

#[test]
fn metadata_lists_three_brokers_advertising_msk_names() {
    let c = cluster();
    let _g = c.shared();
    let out = c.kcat(&["-L", "-m", "15"]);
    let text = assert_success("kcat -L", &out);
    for n in 1..=3 {
        assert!(
            text.contains(&format!("broker {n} at b-{n}.msk.test:9094")),
            "broker {n} not advertised as b-{n}.msk.test:9094 in:\n{text}"
        );
    }
    // The stdlib-Python Metadata client used for readiness, on each broker's own address.
    for (node, host, port) in c.brokers() {
        let addr = format!("{host}:{port}");
        let ca = c.ca();
        let (cert, key) = (c.admin_cert(), c.admin_key());
        let out = c.ping(&[
            "--ca",
            ca.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--expect-brokers",
            "3",
            &addr,
        ]);
        let text = assert_success(&format!("kafka_ping {addr}"), &out);
        assert!(
            text.contains("1:b-1.msk.test:9094,2:b-2.msk.test:9094,3:b-3.msk.test:9094"),
            "node {node}: {text}"
        );
    }
}

#[test]
fn kcat_produces_and_consumes_over_mutual_tls() {
    let c = cluster();
    let _g = c.shared();
    let topic = unique("kcat-roundtrip");
    c.create_topic(&topic, 3, 3);
    let recs = records("kcat", 20);
    let input = recs.join("\n") + "\n";
    let out = c.kcat_as(
        Principal::Admin,
        &["-P", "-t", &topic, "-K", ":", "-X", "acks=all"],
        Some(input.as_bytes()),
    );
    assert_success("kcat produce", &out);
    let got = kcat_consume(Principal::Admin, &topic, recs.len());
    assert_eq!(got, recs.iter().cloned().collect::<BTreeSet<_>>());
}

#[test]
fn java_console_tools_produce_and_consume_over_mutual_tls() {
    let c = cluster();
    let _g = c.shared();
    let topic = unique("java-roundtrip");
    c.create_topic(&topic, 3, 3);
    let recs = records("java", 10);
    let out = c.console_produce(Principal::Admin, &topic, &recs, true);
    assert_success("console-producer", &out);

    // Java consumer reads what the Java producer wrote ...
    let out = c.console_consume(Principal::Admin, &topic, recs.len(), true, None);
    let got = lines(assert_success("console-consumer", &out).as_bytes());
    let want: BTreeSet<String> = recs.iter().cloned().collect();
    assert_eq!(got, want);
    // ... and so does librdkafka (interoperability of the same records).
    assert_eq!(kcat_consume(Principal::Admin, &topic, recs.len()), want);
}

#[test]
fn connection_without_client_certificate_is_refused() {
    let c = cluster();
    let _g = c.shared();
    let ca = c.ca();
    let ca_arg = format!("ssl.ca.location={}", ca.display());
    // kcat: TLS, trusts the CA, but presents no certificate.
    let out = c.kcat_raw(
        &[
            "-b",
            c.bootstrap(),
            "-X",
            "security.protocol=ssl",
            "-X",
            &ca_arg,
            "-L",
            "-m",
            "5",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "kcat without client certificate got metadata:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("brokers:"),
        "metadata leaked"
    );
    assert!(
        err.contains("alert") || err.contains("certificate") || err.contains("SSL"),
        "expected a TLS failure from kcat, got:\n{err}"
    );
    // stdlib Python client: handshake refused by the broker.
    let addr = c.broker_addr(1);
    let out = c.ping(&["--ca", ca.to_str().unwrap(), "--timeout", "5", &addr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "python client without certificate was answered"
    );
    assert!(
        err.contains("SSLError") || err.contains("certificate"),
        "python: {err}"
    );
    // Positive control: same client, with the admin certificate, works.
    let (cert, key) = (c.admin_cert(), c.admin_key());
    let out = c.ping(&[
        "--ca",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        &addr,
    ]);
    assert_success("python client with admin certificate", &out);
}

#[test]
fn connection_with_untrusted_client_certificate_is_refused() {
    let c = cluster();
    let _g = c.shared();
    let tmp = TempDir::new("ktp-rogue");
    // Same CN as the super user: only the issuer makes the difference.
    let (rogue_ca, rogue_cert, rogue_key) = untrusted_client_cert(tmp.path(), "admin");
    let args = [
        format!("ssl.ca.location={}", c.ca().display()),
        format!("ssl.certificate.location={}", rogue_cert.display()),
        format!("ssl.key.location={}", rogue_key.display()),
    ];
    let out = c.kcat_raw(
        &[
            "-b",
            c.bootstrap(),
            "-X",
            "security.protocol=ssl",
            "-X",
            &args[0],
            "-X",
            &args[1],
            "-X",
            &args[2],
            "-L",
            "-m",
            "5",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "untrusted certificate got metadata:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("brokers:"),
        "metadata leaked"
    );
    assert!(
        err.contains("alert") || err.contains("certificate") || err.contains("SSL"),
        "kcat: {err}"
    );

    let addr = c.broker_addr(2);
    let out = c.ping(&[
        "--ca",
        c.ca().to_str().unwrap(),
        "--cert",
        rogue_cert.to_str().unwrap(),
        "--key",
        rogue_key.to_str().unwrap(),
        "--timeout",
        "5",
        &addr,
    ]);
    assert!(
        !out.status.success(),
        "python client with untrusted certificate was answered"
    );

    // And the other direction: a client that trusts only the rogue CA refuses the brokers.
    let out = c.ping(&["--ca", rogue_ca.to_str().unwrap(), "--timeout", "5", &addr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("CERTIFICATE_VERIFY_FAILED"),
        "expected broker verification failure: {err}"
    );
}

#[test]
fn broker_hostname_verification_is_real() {
    let c = cluster();
    let _g = c.shared();
    let ca = c.ca();
    let (cert, key) = (c.admin_cert(), c.admin_key());
    let tls = |addr: &str| {
        c.ping(&[
            "--ca",
            ca.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--timeout",
            "5",
            addr,
        ])
    };
    // By name: the wildcard *.msk.test certificate matches.
    assert_success("ping b-1.msk.test", &tls("b-1.msk.test:9094"));
    // By IP: same broker, same CA, but the name does not match the certificate.
    let out = tls("127.0.0.11:9094");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "connection by IP passed hostname verification"
    );
    assert!(
        err.contains("CERTIFICATE_VERIFY_FAILED") && err.contains("127.0.0.11"),
        "python: {err}"
    );
    // librdkafka with endpoint identification: bootstrap by IP fails too.
    let out = c.kcat_as(
        Principal::Admin,
        &["-b", "127.0.0.11:9094", "-L", "-m", "5"],
        None,
    );
    assert!(
        !out.status.success(),
        "kcat by IP passed hostname verification"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate verify failed"), "kcat: {err}");
    // The broker certificate names exactly the wildcard.
    let out = common::run(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(c.get("KTP_CA").replace("ca.pem", "broker.pem")),
        None,
    );
    let san = assert_success("openssl x509", &out);
    assert!(san.contains("DNS:*.msk.test"), "{san}");
}

#[test]
fn service_principal_is_limited_by_acls() {
    let c = cluster();
    let _g = c.shared();
    let allowed = unique("svc.acl");
    let denied = unique("acl-denied");
    c.create_topic(&allowed, 1, 3);
    c.create_topic(&denied, 1, 3);

    // Service may write its svc.* topic, with the passphrase-encrypted PKCS#8 key.
    let (enc_key, pass) = c.service_encrypted_key();
    let enc = [
        format!("ssl.key.location={}", enc_key.display()),
        format!("ssl.key.password={pass}"),
    ];
    let mut args = vec!["-b".to_string(), c.bootstrap().to_string()];
    args.extend(c.kcat_tls_args(Principal::Service));
    args.extend([
        "-X".to_string(),
        enc[0].clone(),
        "-X".to_string(),
        enc[1].clone(),
    ]);
    args.extend(["-P", "-t", &allowed, "-K", ":"].map(String::from));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.kcat_raw(&argv, Some(b"k1:allowed record\n"));
    assert_success("service produces to svc.* with the encrypted key", &out);
    assert_eq!(
        kcat_consume(Principal::Service, &allowed, 1),
        BTreeSet::from(["k1:allowed record".to_string()])
    );

    // The Java consumer as service: allowed in a group with its prefix, refused in another group.
    let out = c.console_consume(
        Principal::Service,
        &allowed,
        1,
        true,
        Some(&unique("svc.group")),
    );
    assert_eq!(
        lines(assert_success("service console-consumer in svc.* group", &out).as_bytes()),
        BTreeSet::from(["k1:allowed record".to_string()])
    );
    let out = c.console_consume(
        Principal::Service,
        &allowed,
        1,
        true,
        Some(&unique("other-group")),
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains("allowed record"),
        "service read in a foreign group: {all}"
    );
    assert!(
        all.contains("GroupAuthorization") || all.contains("Not authorized to access group"),
        "expected a group authorization error: {all}"
    );

    // ... but not a topic outside its prefix.
    let out = c.kcat_as(
        Principal::Service,
        &["-P", "-t", &denied],
        Some(b"must not land\n"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() || err.contains("authoriz") || err.contains("Authoriz"),
        "service wrote to {denied} without an error"
    );
    assert!(
        err.to_lowercase().contains("authoriz"),
        "expected an authorization error: {err}"
    );

    // readonly reads everything, writes nothing.
    assert_eq!(
        kcat_consume(Principal::Readonly, &allowed, 1),
        BTreeSet::from(["k1:allowed record".to_string()])
    );
    let out = c.kcat_as(
        Principal::Readonly,
        &["-P", "-t", &allowed],
        Some(b"must not land either\n"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.to_lowercase().contains("authoriz"),
        "readonly write: expected an authorization error: {err}"
    );

    // Nothing unauthorized landed (admin sees only the one record in each topic's history).
    assert_eq!(kcat_consume(Principal::Admin, &allowed, 1).len(), 1);
    let out = c.kcat(&["-C", "-t", &denied, "-o", "beginning", "-e", "-q"]);
    assert_eq!(assert_success("admin reads denied topic", &out).trim(), "");
}
