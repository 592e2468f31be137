//! Unit tests of src/config.rs: flags, environment and file merged and validated into settings.

use super::*;

fn parse(args: &[&str]) -> Result<Settings, ConfigError> {
    let mut argv = vec!["kafka-tls-proxy"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv)
        .expect("flags parse")
        .options
        .merge_file()?
        .into_settings(None)
}

const CERTS: [&str; 4] = [
    "--client-cert",
    "certs-dev/admin.pem",
    "--client-key",
    "certs-dev/admin.key",
];

fn with_certs(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = CERTS.to_vec();
    args.extend_from_slice(extra);
    args
}

#[test]
fn defaults_are_local_and_derive_ports() {
    let s = parse(&with_certs(&[
        "--upstream",
        "b-1.msk.test:9094,b-2.msk.test:9094",
    ]))
    .unwrap();
    assert_eq!(s.bind_address.to_string(), "127.0.0.1");
    assert_eq!(s.advertised_host, "127.0.0.1");
    assert_eq!(s.bootstrap_port, 9092);
    assert_eq!(s.ports.port_for(1), Ok(9101));
    assert_eq!(s.upstream.len(), 2);
    assert_eq!(s.upstream[1].host, "b-2.msk.test");
    assert_eq!(s.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
    assert_eq!(s.drain_timeout, Duration::from_secs(25));
    assert_eq!(s.admin_address, Some("127.0.0.1:9644".parse().unwrap()));
}

#[test]
fn errors_name_the_setting() {
    let cases: &[(&[&str], &str)] = &[
        (&CERTS, "--upstream"),
        (&["--upstream", "b:9094"], "--client-cert"),
        (
            &[
                "--upstream",
                "b:9094",
                "--client-cert",
                "certs-dev/admin.pem",
            ],
            "--client-key",
        ),
        (&["--upstream", "nohost"], "--upstream"),
        (
            &[
                "--upstream",
                "b:9094",
                "--client-cert",
                "/nonexistent.pem",
                "--client-key",
                "certs-dev/admin.key",
            ],
            "--client-cert",
        ),
    ];
    for (args, setting) in cases {
        let err = parse(args).unwrap_err();
        assert_eq!(err.setting, *setting, "{args:?}: {err}");
    }
    let err = parse(&with_certs(&[
        "--upstream",
        "b:9094",
        "--broker-port",
        "1=9092",
    ]))
    .unwrap_err();
    assert_eq!(err.setting, "--broker-port");
    assert!(err.problem.contains("9092"), "{err}");
    let err = parse(&with_certs(&[
        "--upstream",
        "b:9094",
        "--broker-port",
        "1=9200,2=9200",
    ]))
    .unwrap_err();
    assert!(err.problem.contains("node id 1"), "{err}");
    let err = parse(&with_certs(&[
        "--upstream",
        "b:9094",
        "--drain-timeout",
        "5 parsecs",
    ]))
    .unwrap_err();
    assert_eq!(err.setting, "--drain-timeout");
}

#[test]
fn refuses_plaintext_listener_off_loopback_unless_allowed() {
    let err = parse(&with_certs(&[
        "--upstream",
        "b:9094",
        "--bind-address",
        "100.64.0.7",
    ]))
    .unwrap_err();
    assert_eq!(err.setting, "--bind-address");
    let s = parse(&with_certs(&[
        "--upstream",
        "b:9094",
        "--bind-address",
        "100.64.0.7",
        "--allow-plaintext-listener",
    ]))
    .unwrap();
    assert_eq!(s.advertised_host, "100.64.0.7");
    let err = parse(&with_certs(&[
        "--upstream",
        "b:9094",
        "--bind-address",
        "0.0.0.0",
        "--allow-plaintext-listener",
    ]))
    .unwrap_err();
    assert_eq!(err.setting, "--advertised-host");
}

#[test]
fn file_fills_what_flags_leave_unset() {
    let dir = std::env::temp_dir().join(format!("ktp-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        r#"
upstream = ["b-1.msk.test:9094"]
client-cert = "certs-dev/admin.pem"
client-key = "certs-dev/admin.key"
bootstrap-port = 19092
broker-port = ["1001=19201"]
drain-timeout = "5s"
"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let s = parse(&["--config", path, "--bootstrap-port", "29092"]).unwrap();
    assert_eq!(s.bootstrap_port, 29092, "flag wins over file");
    assert_eq!(s.ports.port_for(1001), Ok(19201));
    assert_eq!(s.drain_timeout, Duration::from_secs(5));
    std::fs::write(&file, "no-such-option = 1\n").unwrap();
    let err = parse(&["--config", path]).unwrap_err();
    assert_eq!(err.setting, "--config");
    assert!(err.problem.contains("no-such-option"), "{err}");
}

const TLS_LISTENER: [&str; 4] = [
    "--listener-cert",
    "certs-dev/proxy-server.pem",
    "--listener-key",
    "certs-dev/proxy-server.key",
];

#[test]
fn refuses_unauthenticated_tls_listener_off_loopback_unless_allowed() {
    let mut args = with_certs(&["--upstream", "b:9094", "--bind-address", "100.64.0.7"]);
    args.extend_from_slice(&TLS_LISTENER);
    let err = parse(&args).unwrap_err();
    assert_eq!(err.setting, "--bind-address");
    assert!(
        err.problem.contains("--allow-unauthenticated-tls-listener"),
        "{err}"
    );
    assert!(err.problem.contains("--listener-client-ca"), "{err}");
    let mut allowed = args.clone();
    allowed.push("--allow-unauthenticated-tls-listener");
    assert!(parse(&allowed).is_ok());
    let mut verified = args.clone();
    verified.extend_from_slice(&["--listener-client-ca", "certs-dev/ca.pem"]);
    assert!(parse(&verified).is_ok(), "client certificates required");
    let mut local = with_certs(&["--upstream", "b:9094"]);
    local.extend_from_slice(&TLS_LISTENER);
    assert!(parse(&local).is_ok(), "loopback needs no flag");
}

#[test]
fn warns_about_every_way_clients_act_as_the_proxy() {
    let warnings = |args: &[&str]| parse(args).unwrap().unauthenticated_warnings();
    assert_eq!(
        warnings(&with_certs(&["--upstream", "b:9094"])),
        Vec::<String>::new(),
        "mutual TLS upstream, plaintext on loopback"
    );

    let w = warnings(&["--upstream", "b:9094", "--upstream-plaintext"]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("--upstream-plaintext"), "{w:?}");
    assert!(w[0].contains("talks plaintext to the brokers"), "{w:?}");
    assert!(w[0].contains("127.0.0.1:9092"), "{w:?}");
    assert!(w[0].contains("acts as the proxy's principal"), "{w:?}");

    let w = warnings(&with_certs(&[
        "--upstream",
        "b:9094",
        "--bind-address",
        "100.64.0.7",
        "--allow-plaintext-listener",
    ]));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("plaintext listener"), "{w:?}");
    assert!(w[0].contains("100.64.0.7:9092"), "{w:?}");
    assert!(w[0].contains("acts as the proxy's principal"), "{w:?}");

    let mut tls = with_certs(&[
        "--upstream",
        "b:9094",
        "--bind-address",
        "0.0.0.0",
        "--advertised-host",
        "proxy.example",
        "--allow-unauthenticated-tls-listener",
    ]);
    tls.extend_from_slice(&TLS_LISTENER);
    let w = warnings(&tls);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("verifies no client certificate"), "{w:?}");
    assert!(w[0].contains("0.0.0.0:9092"), "{w:?}");
    assert!(w[0].contains("acts as the proxy's principal"), "{w:?}");
    tls.extend_from_slice(&["--listener-client-ca", "certs-dev/ca.pem"]);
    assert_eq!(warnings(&tls), Vec::<String>::new());

    let w = warnings(&[
        "--upstream",
        "b:9094",
        "--upstream-plaintext",
        "--bind-address",
        "100.64.0.7",
        "--allow-plaintext-listener",
    ]);
    assert_eq!(w.len(), 2, "both: {w:?}");
}

#[test]
fn max_brokers_defaults_and_bounds() {
    let base = with_certs(&["--upstream", "b:9094"]);
    assert_eq!(parse(&base).unwrap().max_brokers, DEFAULT_MAX_BROKERS);
    let with = |extra: &[&'static str]| {
        let mut args = base.clone();
        args.extend_from_slice(extra);
        parse(&args)
    };
    assert_eq!(with(&["--max-brokers", "1"]).unwrap().max_brokers, 1);
    assert_eq!(with(&["--max-brokers", "4096"]).unwrap().max_brokers, 4096);
    for bad in ["0", "4097"] {
        let err = with(&["--max-brokers", bad]).unwrap_err();
        assert_eq!(err.setting, "--max-brokers", "{err}");
    }
    // The last formula port must exist: 65280 + 256 - 1 = 65535 fits, one more does not.
    assert!(with(&["--broker-port-base", "65280"]).is_ok());
    let err = with(&["--broker-port-base", "65281"]).unwrap_err();
    assert_eq!(err.setting, "--max-brokers");
    assert!(err.problem.contains("--broker-port-base 65281"), "{err}");
    assert!(err.problem.contains("--max-brokers 256"), "{err}");
    assert!(with(&["--broker-port-base", "65281", "--max-brokers", "255"]).is_ok());
}

#[test]
fn host_patterns_default_to_the_upstream_domains() {
    let patterns = |upstream: &'static str| {
        parse(&with_certs(&["--upstream", upstream]))
            .unwrap()
            .upstream_host_patterns
    };
    assert_eq!(
        patterns("b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9094,b-2.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9094"),
        ["*.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com"]
    );
    assert_eq!(patterns("B-1.MSK.test:9094"), ["*.msk.test"]);
    assert_eq!(patterns("localhost:9094"), ["localhost"]);
    assert_eq!(patterns("kafka.internal:9094"), ["kafka.internal"]);
    assert_eq!(patterns("127.0.0.1:9094,[::1]:9094"), ["127.0.0.1", "::1"]);
}

#[test]
fn host_patterns_are_validated_and_lower_cased() {
    let given = |value: &'static str| {
        parse(&with_certs(&[
            "--upstream",
            "b-1.msk.test:9094",
            "--upstream-host-pattern",
            value,
        ]))
    };
    assert_eq!(
        given("*.MSK.test,b-9.Other.example,10.0.0.7,[FD7A::1]")
            .unwrap()
            .upstream_host_patterns,
        ["*.msk.test", "b-9.other.example", "10.0.0.7", "fd7a::1"]
    );
    for bad in [
        "",
        "*",
        "*.",
        "*.com",
        "*.*.msk.test",
        "b-*.msk.test",
        "msk.*",
        "b_1.msk.test",
        "b-1.msk.test:9094",
        "host/x",
        "a..b",
        "*..test",
    ] {
        let err = given(bad).unwrap_err();
        assert_eq!(err.setting, "--upstream-host-pattern", "{bad:?}: {err}");
    }
    assert_eq!(parse_host_pattern(" *.msk.test. "), Ok("*.msk.test".into()));
}

#[test]
fn file_sets_the_new_security_options() {
    let dir = std::env::temp_dir().join(format!("ktp-config-sec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        r#"
upstream = ["b-1.msk.test:9094"]
client-cert = "certs-dev/admin.pem"
client-key = "certs-dev/admin.key"
bind-address = "100.64.0.7"
listener-cert = "certs-dev/proxy-server.pem"
listener-key = "certs-dev/proxy-server.key"
allow-unauthenticated-tls-listener = true
max-brokers = 16
upstream-host-pattern = ["*.msk.test", "kafka.example"]
"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let s = parse(&["--config", path]).unwrap();
    assert_eq!(s.max_brokers, 16);
    assert_eq!(s.upstream_host_patterns, ["*.msk.test", "kafka.example"]);
    assert_eq!(s.unauthenticated_warnings().len(), 1);
    let s = parse(&["--config", path, "--max-brokers", "8"]).unwrap();
    assert_eq!(s.max_brokers, 8, "flag wins over file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert!(parse_duration("10h").is_err());
    assert!(parse_duration("x").is_err());
}

/// Writes a TOML file under the target dir and parses the flags with --config pointing at it.
fn parse_with_file(name: &str, toml: &str, args: &[&str]) -> Result<Settings, ConfigError> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/config-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, toml).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let mut all: Vec<&str> = vec!["--config", &file];
    all.extend_from_slice(args);
    parse(&all)
}

const IDENTITIES: &str = r#"
[[identity]]
name = "service"
bootstrap-port = 19192
broker-port-base = 19200
client-cert = "certs-dev/service.pem"
client-key = "certs-dev/service.key"
policy = "no-admin"

[[identity]]
name = "ro"
client-subject-cn = ["readonly", "svc-*"]
client-san = ["*.data.example.com"]
client-cert = "certs-dev/readonly.pem"
client-key = "certs-dev/readonly.key"
policy = "read-only"
"#;

#[test]
fn identities_come_from_the_file_and_the_flags_stay_the_default() {
    let tls = [
        "--listener-cert",
        "certs-dev/proxy-server.pem",
        "--listener-key",
        "certs-dev/proxy-server.key",
        "--listener-client-ca",
        "certs-dev/ca.pem",
    ];
    let mut args = with_certs(&["--upstream", "b-1.msk.test:9094", "--policy", "read-only"]);
    args.extend_from_slice(&tls);
    let s = parse_with_file("identities", IDENTITIES, &args).unwrap();
    assert_eq!(s.policy, Policy::ReadOnly);
    assert_eq!(s.identities.len(), 2);
    let service = &s.identities[0];
    assert_eq!(service.name, "service");
    assert_eq!(service.policy, Policy::NoAdmin);
    let (bootstrap, plan) = service.listeners.as_ref().unwrap();
    assert_eq!((*bootstrap, plan.port_for(1)), (19192, Ok(19201)));
    assert!(service.client_match.is_empty());
    let ro = &s.identities[1];
    assert!(ro.listeners.is_none());
    assert!(ro.client_match.matches(Some("readonly"), &[]));
    assert!(ro.client_match.matches(Some("SVC-orders"), &[]));
    assert!(ro
        .client_match
        .matches(None, &["ch.data.example.com".into()]));
    assert!(!ro
        .client_match
        .matches(Some("admin"), &["data.example.com".into()]));
    // Certificate rules need verified client certificates.
    let err = parse_with_file(
        "identities-no-ca",
        IDENTITIES,
        &with_certs(&["--upstream", "b-1.msk.test:9094"]),
    )
    .unwrap_err();
    assert!(err.problem.contains("--listener-client-ca"), "{err}");
}

#[test]
fn identity_port_collisions_name_both() {
    let colliding = r#"
[[identity]]
name = "a"
bootstrap-port = 19192
broker-port-base = 9150
client-cert = "certs-dev/service.pem"
client-key = "certs-dev/service.key"
"#;
    let err = parse_with_file(
        "collide",
        colliding,
        &with_certs(&["--upstream", "b-1.msk.test:9094"]),
    )
    .unwrap_err();
    assert!(
        err.problem.contains("identity 'default'") && err.problem.contains("identity 'a'"),
        "{err}"
    );
    assert!(
        err.problem.contains("broker port range") && err.problem.contains("--max-brokers"),
        "a range collision suggests --max-brokers: {err}"
    );
    let narrowed = with_certs(&["--upstream", "b-1.msk.test:9094", "--max-brokers", "16"]);
    parse_with_file("collide-narrowed", colliding, &narrowed)
        .expect("--max-brokers 16 takes 9150 out of the default range 9100..9355");
    for (name, bad_table, needle) in [
        ("noname", "[[identity]]\nname = \"\"\nclient-cert = \"x\"", "not a name"),
        (
            "reserved",
            "[[identity]]\nname = \"default\"\nbootstrap-port = 19300\nbroker-port-base = 19400\nclient-cert = \"certs-dev/service.pem\"\nclient-key = \"certs-dev/service.key\"",
            "'default' is reserved",
        ),
        (
            "both",
            "[[identity]]\nname = \"b\"\nbootstrap-port = 19300\nbroker-port-base = 19400\nclient-subject-cn = [\"x\"]\nclient-cert = \"certs-dev/service.pem\"\nclient-key = \"certs-dev/service.key\"",
            "not both",
        ),
        (
            "policy",
            "[[identity]]\nname = \"c\"\nbootstrap-port = 19300\nbroker-port-base = 19400\npolicy = \"root\"\nclient-cert = \"certs-dev/service.pem\"\nclient-key = \"certs-dev/service.key\"",
            "unknown policy",
        ),
    ] {
        let err = parse_with_file(
            name,
            bad_table,
            &with_certs(&["--upstream", "b-1.msk.test:9094"]),
        )
        .unwrap_err();
        assert!(err.problem.contains(needle), "{name}: {err}");
    }
}

#[test]
fn globs() {
    assert!(glob_matches("svc-*", "svc-orders"));
    assert!(glob_matches("*", ""));
    assert!(glob_matches("a*b*c", "aXXbYYc"));
    assert!(!glob_matches("a*b*c", "aXXbYY"));
    assert!(glob_matches("CN", "cn"));
    assert!(!glob_matches("svc", "svc-x"));
}

#[test]
fn proxy_protocol_sources_are_cidr_blocks_or_addresses() {
    let up = ["--upstream", "b-1.msk.test:9094"];
    let s = parse(&with_certs(&up)).unwrap();
    assert!(
        s.proxy_protocol_from.is_empty(),
        "no source trusted by default"
    );
    let mut args = with_certs(&up);
    args.extend(["--proxy-protocol-from", "10.0.1.0/24, 10.0.2.7,fd00::/8"]);
    let s = parse(&args).unwrap();
    assert_eq!(
        s.proxy_protocol_from.blocks(),
        ["10.0.1.0/24", "10.0.2.7/32", "fd00::/8"]
    );
    for bad in ["10.0.1.0/40", "balancer.internal", ","] {
        let mut args = with_certs(&up);
        args.extend(["--proxy-protocol-from", bad]);
        let e = parse(&args).unwrap_err();
        assert_eq!(e.setting, "--proxy-protocol-from", "{bad}: {e}");
    }
}

#[test]
fn scram_needs_a_user_and_a_password_file_but_no_certificate() {
    // certs-dev/ca.pem stands in for a readable password file.
    let s = parse(&[
        "--upstream",
        "b-1.msk.test:9096",
        "--upstream-auth",
        "scram-sha-512",
        "--sasl-username",
        "orders",
        "--sasl-password-file",
        "certs-dev/ca.pem",
    ])
    .unwrap();
    let UpstreamAuth::Scram(scram) = &s.upstream_auth else {
        panic!("{:?}", s.upstream_auth)
    };
    assert_eq!(scram.mechanism, sasl::Mechanism::ScramSha512);
    assert_eq!(scram.username, "orders");
    // TLS stays (the brokers are verified), without a client certificate.
    assert!(s.upstream_tls.as_ref().unwrap().client.is_none());
    // A certificate may still be given.
    let s = parse(&with_certs(&[
        "--upstream",
        "b-1.msk.test:9096",
        "--upstream-auth",
        "scram-sha-256",
        "--sasl-username",
        "orders",
        "--sasl-password-file",
        "certs-dev/ca.pem",
    ]))
    .unwrap();
    assert!(s.upstream_tls.as_ref().unwrap().client.is_some());

    let cases: &[(&[&str], &str, &str)] = &[
        (
            &[
                "--upstream-auth",
                "scram-sha-512",
                "--sasl-password-file",
                "certs-dev/ca.pem",
            ],
            "--upstream-auth",
            "sasl-username",
        ),
        (
            &["--upstream-auth", "scram-sha-512", "--sasl-username", "u"],
            "--upstream-auth",
            "sasl-password-file",
        ),
        (
            &[
                "--upstream-auth",
                "scram-sha-512",
                "--sasl-username",
                "u",
                "--sasl-password-file",
                "/nonexistent/pass",
            ],
            "--upstream-auth",
            "/nonexistent/pass",
        ),
        (
            &["--upstream-auth", "plain"],
            "--upstream-auth",
            "not one of",
        ),
        (
            &["--sasl-username", "u"],
            "--upstream-auth",
            "need upstream-auth",
        ),
        (
            &[
                "--upstream-auth",
                "scram-sha-512",
                "--sasl-username",
                "u",
                "--sasl-password-file",
                "certs-dev/ca.pem",
                "--upstream-plaintext",
            ],
            "--upstream-plaintext",
            "needs TLS",
        ),
    ];
    for (args, setting, problem) in cases {
        let mut all = vec!["--upstream", "b-1.msk.test:9096"];
        all.extend_from_slice(args);
        let err = parse(&all).unwrap_err();
        assert_eq!(err.setting, *setting, "{all:?}: {err}");
        assert!(err.problem.contains(problem), "{all:?}: {err}");
    }
}

#[test]
fn an_identity_may_authenticate_with_scram_without_a_certificate() {
    let toml = r#"
[[identity]]
name = "orders"
bootstrap-port = 19192
broker-port-base = 19200
upstream-auth = "scram-sha-512"
sasl-username = "orders"
sasl-password-file = "certs-dev/ca.pem"
"#;
    let scram_default = [
        "--upstream",
        "b-1.msk.test:9096",
        "--upstream-auth",
        "scram-sha-512",
        "--sasl-username",
        "service",
        "--sasl-password-file",
        "certs-dev/ca.pem",
    ];
    let s = parse_with_file("identity-scram", toml, &scram_default).unwrap();
    let orders = &s.identities[0];
    assert!(orders.upstream_tls.client.is_none());
    assert_eq!(orders.auth.name(), "scram-sha-512");
    // Mutual TLS and SASL identities would share one broker listener: refused.
    let err = parse_with_file(
        "identity-scram-mixed",
        toml,
        &with_certs(&["--upstream", "b-1.msk.test:9094"]),
    )
    .unwrap_err();
    assert!(err.problem.contains("differs from the default"), "{err}");
    let err = parse_with_file(
        "identity-scram-no-user",
        &toml.replace("sasl-username = \"orders\"\n", ""),
        &scram_default,
    )
    .unwrap_err();
    assert!(err.problem.contains("sasl-username"), "{err}");
    let err = parse_with_file(
        "identity-mtls-no-cert",
        &toml
            .replace("upstream-auth = \"scram-sha-512\"\n", "")
            .replace(
                "sasl-username = \"orders\"\nsasl-password-file = \"certs-dev/ca.pem\"\n",
                "",
            ),
        &with_certs(&["--upstream", "b-1.msk.test:9094"]),
    )
    .unwrap_err();
    assert!(err.problem.contains("client-cert is required"), "{err}");
}

#[test]
fn aws_msk_iam_takes_its_region_from_the_flag_or_the_broker_names() {
    let msk = "b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9098";
    let iam = |s: &Settings| match &s.upstream_auth {
        UpstreamAuth::AwsMskIam(iam) => iam.region.clone(),
        other => panic!("{other:?}"),
    };
    let s = parse(&["--upstream", msk, "--upstream-auth", "aws-msk-iam"]).unwrap();
    assert_eq!(iam(&s), "eu-west-1");
    assert!(s.upstream_tls.as_ref().unwrap().client.is_none());
    let s = parse(&[
        "--upstream",
        "b-1.msk.test:9098",
        "--upstream-auth",
        "aws-msk-iam",
        "--aws-region",
        "us-east-2",
    ])
    .unwrap();
    assert_eq!(iam(&s), "us-east-2");
    // The flag wins over the names.
    let s = parse(&[
        "--upstream",
        msk,
        "--upstream-auth",
        "AWS-MSK-IAM",
        "--aws-region",
        "eu-west-3",
    ])
    .unwrap();
    assert_eq!(iam(&s), "eu-west-3");

    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["--upstream", "b-1.msk.test:9098", "--upstream-auth", "aws-msk-iam"],
            "--aws-region",
            "needs the cluster's region",
        ),
        (
            // Brokers of two regions: no one region to sign for.
            &[
                "--upstream",
                "b-1.a.b.c2.kafka.eu-west-1.amazonaws.com:9098,b-1.a.b.c2.kafka.us-east-1.amazonaws.com:9098",
                "--upstream-auth",
                "aws-msk-iam",
            ],
            "--aws-region",
            "needs the cluster's region",
        ),
        (
            &[
                "--upstream",
                msk,
                "--upstream-auth",
                "aws-msk-iam",
                "--aws-region",
                "Ireland",
            ],
            "--aws-region",
            "not an AWS region name",
        ),
        (
            &[
                "--upstream",
                msk,
                "--upstream-auth",
                "aws-msk-iam",
                "--sasl-username",
                "x",
            ],
            "--upstream-auth",
            "need upstream-auth scram",
        ),
        (
            &[
                "--upstream",
                msk,
                "--upstream-auth",
                "aws-msk-iam",
                "--upstream-plaintext",
            ],
            "--upstream-plaintext",
            "needs TLS",
        ),
        (
            &[
                "--upstream",
                "b-1.msk.test:9094",
                "--client-cert",
                "certs-dev/admin.pem",
                "--client-key",
                "certs-dev/admin.key",
                "--aws-region",
                "eu-west-1",
            ],
            "--aws-region",
            "needs --upstream-auth aws-msk-iam",
        ),
        (
            &["--upstream", msk, "--upstream-auth", "iam"],
            "--upstream-auth",
            "not one of mtls, scram-sha-256, scram-sha-512, aws-msk-iam",
        ),
    ];
    for (args, setting, problem) in cases {
        let err = parse(args).unwrap_err();
        assert_eq!(err.setting, *setting, "{args:?}: {err}");
        assert!(err.problem.contains(problem), "{args:?}: {err}");
    }
}

#[test]
fn iam_identities_share_the_default_ones_credentials() {
    let toml = r#"
[[identity]]
name = "readers"
bootstrap-port = 19192
broker-port-base = 19200
upstream-auth = "aws-msk-iam"
policy = "read-only"
"#;
    let iam_default = [
        "--upstream",
        "b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9098",
        "--upstream-auth",
        "aws-msk-iam",
    ];
    let s = parse_with_file("identity-iam", toml, &iam_default).unwrap();
    let (UpstreamAuth::AwsMskIam(default), UpstreamAuth::AwsMskIam(readers)) =
        (&s.upstream_auth, &s.identities[0].auth)
    else {
        panic!("{:?}", s.identities[0].auth)
    };
    assert!(std::sync::Arc::ptr_eq(
        &default.credentials,
        &readers.credentials
    ));
    // SCRAM and IAM are different MSK ports: refused, as is IAM beside a SCRAM default.
    let scram_default = [
        "--upstream",
        "b-1.msk.test:9096",
        "--upstream-auth",
        "scram-sha-512",
        "--sasl-username",
        "service",
        "--sasl-password-file",
        "certs-dev/ca.pem",
    ];
    let err = parse_with_file("identity-iam-scram", toml, &scram_default).unwrap_err();
    assert!(
        err.problem
            .contains("needs the default identity to use it too"),
        "{err}"
    );
    let scram_toml = toml.replace(
        "upstream-auth = \"aws-msk-iam\"",
        "upstream-auth = \"scram-sha-512\"\nsasl-username = \"r\"\nsasl-password-file = \"certs-dev/ca.pem\"",
    );
    let err = parse_with_file("identity-scram-iam", &scram_toml, &iam_default).unwrap_err();
    assert!(err.problem.contains("differs from the default"), "{err}");
}

const TAILNET: &str = r#"
[[identity]]
name = "reporting"
client-cert = "certs-dev/readonly.pem"
client-key = "certs-dev/readonly.key"
policy = "read-only"

[[identity]]
name = "people"
tailnet-login = ["*@example.com"]
client-cert = "certs-dev/service.pem"
client-key = "certs-dev/service.key"

[[identity]]
name = "ci"
tailnet-tag = ["tag:ci", "tag:build-*"]
client-cert = "certs-dev/service.pem"
client-key = "certs-dev/service.key"
policy = "no-admin"
"#;

fn tailnet_args() -> Vec<&'static str> {
    with_certs(&[
        "--upstream",
        "b-1.msk.test:9094",
        "--bind-address",
        "100.64.0.1",
        "--allow-plaintext-listener",
    ])
}

#[test]
fn tailnet_identities_take_rules_or_the_capability_alone() {
    let mut args = tailnet_args();
    args.push("--tailnet-identities");
    let s = parse_with_file("tailnet", TAILNET, &args).unwrap();
    let tailnet = s.tailnet.as_ref().unwrap();
    assert_eq!(
        tailnet.whois.socket,
        std::path::PathBuf::from(crate::tailnet::DEFAULT_SOCKET)
    );
    assert_eq!(tailnet.whois.capability, crate::tailnet::DEFAULT_CAPABILITY);
    assert_eq!(tailnet.whois.ttl, Duration::from_secs(10));
    assert!(!tailnet.unmatched_default);
    let [reporting, people, ci] = &s.identities[..] else {
        panic!("three identities")
    };
    // Chosen by the capability's grant only.
    assert!(reporting.listeners.is_none() && reporting.tailnet_match.is_empty());
    assert!(people.tailnet_match.matches("alice@EXAMPLE.com", &[]));
    assert!(!people.tailnet_match.matches("alice@example.org", &[]));
    // A tagged node's login is a placeholder: only tags count for it.
    assert!(!people
        .tailnet_match
        .matches("alice@example.com", &["tag:ci".into()]));
    assert!(ci
        .tailnet_match
        .matches("tagged-devices", &["tag:build-linux".into()]));
    assert!(!ci.tailnet_match.matches("bob@example.com", &[]));

    let mut args = tailnet_args();
    args.extend_from_slice(&[
        "--tailnet-identities",
        "--tailscale-socket",
        "/run/ts.sock",
        "--tailnet-capability",
        "example.com/cap/kafka",
        "--tailnet-whois-ttl",
        "2s",
        "--tailnet-unmatched-default",
    ]);
    let s = parse_with_file("tailnet-set", TAILNET, &args).unwrap();
    let tailnet = s.tailnet.unwrap();
    assert_eq!(
        tailnet.whois.socket,
        std::path::PathBuf::from("/run/ts.sock")
    );
    assert_eq!(tailnet.whois.capability, "example.com/cap/kafka");
    assert_eq!(tailnet.whois.ttl, Duration::from_secs(2));
    assert!(tailnet.unmatched_default);
}

#[test]
fn tailnet_settings_say_what_is_wrong() {
    // Rules, and identities with neither ports nor rules, need --tailnet-identities.
    let err = parse_with_file("tailnet-off", TAILNET, &tailnet_args()).unwrap_err();
    assert!(err.problem.contains("identity 'reporting'"), "{err}");
    assert!(err.problem.contains("--tailnet-identities"), "{err}");
    let rules_only = "[[identity]]\nname = \"p\"\ntailnet-login = [\"a@b\"]\nclient-cert = \"certs-dev/service.pem\"\nclient-key = \"certs-dev/service.key\"\n";
    let err = parse_with_file("tailnet-rules-off", rules_only, &tailnet_args()).unwrap_err();
    assert!(
        err.problem
            .contains("tailnet-login/tailnet-tag need --tailnet-identities"),
        "{err}"
    );
    let mut on = tailnet_args();
    on.push("--tailnet-identities");
    let base = "[[identity]]\nname = \"p\"\nclient-cert = \"certs-dev/service.pem\"\nclient-key = \"certs-dev/service.key\"\n";
    for (name, table, expected) in [
        (
            "tailnet-tag",
            "tailnet-tag = [\"ci\"]",
            "not a Tailscale tag",
        ),
        (
            "tailnet-empty",
            "tailnet-login = [\" \"]",
            "empty tailnet-login",
        ),
        (
            "tailnet-ports",
            "tailnet-login = [\"a@b\"]\nbootstrap-port = 19192\nbroker-port-base = 19200",
            "not both",
        ),
    ] {
        let err = parse_with_file(name, &format!("{base}{table}\n"), &on).unwrap_err();
        assert!(err.problem.contains(expected), "{name}: {err}");
    }
    for flag in [
        ["--tailscale-socket", "/x"],
        ["--tailnet-capability", "a.b/c"],
        ["--tailnet-whois-ttl", "1s"],
    ] {
        let mut args = tailnet_args();
        args.extend_from_slice(&flag);
        let err = parse(&args).unwrap_err();
        assert_eq!(err.setting, flag[0]);
        assert!(err.problem.contains("needs --tailnet-identities"), "{err}");
    }
    let mut args = tailnet_args();
    args.extend_from_slice(&["--tailnet-identities", "--tailnet-capability", "identity"]);
    let err = parse(&args).unwrap_err();
    assert_eq!(err.setting, "--tailnet-capability");
}
