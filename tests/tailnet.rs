//! People on the tailnet act as themselves (issue 19), on a real tailnet: tailscaled and
//! tailscale's own control server (testcontrol, with DERP and STUN) built from the tailscale.com
//! Go module by tests/tailnet/build.sh, nodes joined by tests/tailnet/up.sh — the proxy's node
//! in this network namespace, laptops alice, bob and carol in namespaces of their own, each
//! with tailscaled on a TUN device. The tailnet's policy grants, as a policy file's `grants`
//! with an `app` field would, alice the capability `{"identity": "reporting"}` and bob
//! `{"identity": "admin"}` towards the proxy's node; carol gets nothing. Clients are kcat and
//! the Kafka CLI run inside the laptops' namespaces against the proxy's tailnet address; the
//! brokers are the real test cluster, whose ACLs decide what each principal may do.
//!
//! Needs root (namespaces, TUN devices), the binaries of build.sh (tests/run builds them) and
//! the cluster: without them it fails, never skips.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{assert_success, cluster, metric, repo_root, run, unique, wait_until, Principal};

const CAP: &str = "example.com/cap/kafka-tls-proxy";
const PROXY_IP: &str = "100.64.0.1";

/// The tailnet of tests/tailnet/up.sh; down.sh runs when it is dropped.
struct Tailnet {
    dir: PathBuf,
    bin: PathBuf,
    run: PathBuf,
    /// The namespaces' prefix: this network namespace's own, so that runs in other network
    /// namespaces on the machine (named namespaces are machine-wide) never collide.
    ns: String,
}

impl Tailnet {
    fn up() -> Tailnet {
        let id = run(Command::new("id").arg("-u"), None);
        assert_eq!(
            String::from_utf8_lossy(&id.stdout).trim(),
            "0",
            "this test needs root (network namespaces and TUN devices)"
        );
        let dir = repo_root().join("tests/tailnet");
        let bin = std::env::var_os("KTP_TAILNET_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".cache/tailnet/bin"));
        for b in ["tailscaled", "tailscale", "control"] {
            assert!(
                bin.join(b).exists(),
                "{} missing: run tests/tailnet/build.sh (tests/run does)",
                bin.join(b).display()
            );
        }
        let run_dir = repo_root().join("target/tailnet-test");
        let netns = std::fs::read_link("/proc/self/ns/net").unwrap();
        let inode: String = netns
            .to_string_lossy()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let tailnet = Tailnet {
            dir,
            bin,
            run: run_dir,
            ns: format!("kt{inode}"),
        };
        tailnet.down(); // leftovers of an interrupted run
        let out = common::run(
            Command::new(tailnet.dir.join("up.sh"))
                .env("BIN", &tailnet.bin)
                .env("RUN", &tailnet.run)
                .env("NS", &tailnet.ns),
            None,
        );
        assert_success("tests/tailnet/up.sh", &out);
        tailnet
    }

    fn down(&self) {
        let _ = Command::new(self.dir.join("down.sh"))
            .env("RUN", &self.run)
            .env("NS", &self.ns)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The proxy node's LocalAPI socket.
    fn socket(&self) -> PathBuf {
        self.run.join("proxy/sock")
    }

    /// A GET on the proxy node's LocalAPI; the body.
    fn local_api(&self, path: &str) -> String {
        let mut s = UnixStream::connect(self.socket()).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: local-tailscaled.sock\r\nSec-Tailscale: localapi\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }

    /// Grants, from the control server, app capabilities to peers towards the proxy's node.
    fn grant(&self, body: &str) {
        let mut s = TcpStream::connect("10.77.0.1:9911").unwrap();
        write!(
            s,
            "POST /ktp/grants HTTP/1.0\r\nHost: control\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 200"), "grant: {answer}");
    }

    /// Runs `program args` inside laptop `who`'s namespace.
    fn on(&self, who: &str, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &format!("{}-{who}", self.ns), program])
            .args(args);
        run(&mut cmd, stdin)
    }
}

impl Drop for Tailnet {
    fn drop(&mut self) {
        self.down();
    }
}

/// The proxy process, killed when dropped.
struct ProxyProcess {
    child: Child,
    log: PathBuf,
}

impl ProxyProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn each_person_on_the_tailnet_acts_as_the_identity_their_grant_names() {
    let c = cluster();
    let _shared = c.shared();
    let tailnet = Tailnet::up();
    tailnet.grant(&format!(
        r#"{{"dst": "proxy", "grants": [
            {{"src": "alice", "app": {{"{CAP}": [{{"identity": "reporting"}}]}}}},
            {{"src": "bob", "app": {{"{CAP}": [{{"identity": "admin"}}]}}}}]}}"#
    ));
    // The grant reaches the proxy's node with its next map.
    wait_until(
        "alice's grant on the proxy node",
        Duration::from_secs(30),
        || {
            tailnet
                .local_api("/localapi/v0/whois?addr=100.64.0.2")
                .contains("\"identity\": \"reporting\"")
        },
    );
    let bob = tailnet.local_api("/localapi/v0/whois?addr=100.64.0.3");
    assert!(bob.contains("\"identity\": \"admin\""), "{bob}");
    assert!(bob.contains("user-3@fake-control.example.net"), "{bob}");
    let carol = tailnet.local_api("/localapi/v0/whois?addr=100.64.0.4");
    assert!(carol.contains("user-4@fake-control.example.net"), "{carol}");
    assert!(!carol.contains(CAP), "{carol}");

    // The proxy: its default identity is User:service; reporting is User:readonly, admin is
    // User:admin. Policies stay `full`, so what each may do is the cluster's ACLs' answer.
    let work = repo_root().join("target/tailnet-test");
    let config = work.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[[identity]]\nname = \"reporting\"\nclient-cert = \"{}\"\nclient-key = \"{}\"\n\n\
             [[identity]]\nname = \"admin\"\nclient-cert = \"{}\"\nclient-key = \"{}\"\n",
            c.cert(Principal::Readonly).display(),
            c.key(Principal::Readonly).display(),
            c.cert(Principal::Admin).display(),
            c.key(Principal::Admin).display(),
        ),
    )
    .unwrap();
    let port = 29400u16;
    let admin = common::free_port();
    let log = work.join("proxy.log");
    let out = std::fs::File::create(&log).unwrap();
    // The proxy's (and `check`'s) upstream: the cluster, as User:service by default.
    let proxy_command = |subcommand: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafka-tls-proxy"));
        cmd.args(subcommand)
            .args(["--upstream", c.bootstrap(), "--upstream-ca"])
            .arg(c.ca())
            .arg("--client-cert")
            .arg(c.cert(Principal::Service))
            .arg("--client-key")
            .arg(c.key(Principal::Service));
        cmd
    };
    let child = proxy_command(None)
        .arg("--config")
        .arg(&config)
        .args(["--bind-address", PROXY_IP, "--allow-plaintext-listener"])
        .args(["--advertised-host", PROXY_IP])
        .args(["--bootstrap-port", &port.to_string()])
        .args(["--broker-port-base", &port.to_string()])
        .args(["--admin-address", &format!("127.0.0.1:{admin}")])
        .args(["--tailnet-identities", "--tailnet-capability", CAP])
        .arg("--tailscale-socket")
        .arg(tailnet.socket())
        .args(["--log", "info"])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let proxy = ProxyProcess { child, log };
    // (Not probed by connecting: this host is a tailnet node too, without a grant.)
    wait_until(
        "the proxy's broker listeners",
        Duration::from_secs(30),
        || proxy.log().matches("new broker; listening").count() == c.brokers().len(),
    );
    let start_log = proxy.log();
    assert!(
        start_log.contains("tailnet peers on the default listeners act as the identity"),
        "{start_log}"
    );
    for name in ["reporting", "admin", "default"] {
        assert!(
            start_log.contains(&format!("identity={name}"))
                && start_log.contains("identity chosen on the tailnet"),
            "{name}: {start_log}"
        );
    }

    let bootstrap = format!("{PROXY_IP}:{port}");
    let topic = unique("tailnet");
    // A topic created with the Kafka CLI from a laptop, through the proxy.
    let create_topic = |who: &str, topic: &str| {
        tailnet.on(
            who,
            c.get("KTP_CLUSTER_CLI"),
            &[
                "cli",
                "topics",
                "--bootstrap-server",
                &bootstrap,
                "--create",
                "--topic",
                topic,
                "--partitions",
                "1",
                "--replication-factor",
                "3",
            ],
            None,
        )
    };
    // Bob (admin) creates a topic: the cluster lets User:admin.
    let created = create_topic("bob", &topic);
    assert_success("bob creates a topic through the proxy", &created);
    // Bob produces with kcat.
    let produced = tailnet.on(
        "bob",
        "kcat",
        &["-b", &bootstrap, "-P", "-t", &topic],
        Some(b"from-bob\n"),
    );
    assert_success("bob produces", &produced);
    // Alice (User:readonly) reads it: the ACLs let readonly read every topic.
    let consumed = tailnet.on(
        "alice",
        "kcat",
        &[
            "-b",
            &bootstrap,
            "-C",
            "-t",
            &topic,
            "-o",
            "beginning",
            "-e",
            "-c",
            "1",
        ],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&assert_success("alice consumes", &consumed).into_bytes()).trim(),
        "from-bob"
    );
    // ... but may not write: the broker refuses User:readonly (its ACLs, not the proxy).
    let refused = tailnet.on(
        "alice",
        "kcat",
        &["-b", &bootstrap, "-P", "-t", &topic],
        Some(b"from-alice\n"),
    );
    assert!(
        text(&refused)
            .to_lowercase()
            .contains("authorization failed"),
        "alice's produce: {}",
        text(&refused)
    );
    // ... nor create a topic.
    let alice_topic = unique("tailnet-alice");
    let not_created = create_topic("alice", &alice_topic);
    assert!(
        text(&not_created).contains("AuthorizationException"),
        "alice's create: {}",
        text(&not_created)
    );
    // Carol has no grant and matches no rule: refused, by name.
    let carol_out = tailnet.on("carol", "kcat", &["-b", &bootstrap, "-L", "-m", "5"], None);
    assert!(!carol_out.status.success(), "carol: {}", text(&carol_out));

    let log = proxy.log();
    let alice_who = "tailnet user-2@fake-control.example.net on alice";
    let bob_who = "tailnet user-3@fake-control.example.net on bob";
    // The audit: bob's CreateTopics and its outcome, alice's refused one, each by person and node.
    let audit: Vec<&str> = log.lines().filter(|l| l.contains(" audit:")).collect();
    let names = |who: &str, topic: &str| {
        audit
            .iter()
            .filter(|l| l.contains(who) && l.contains(topic) && l.contains("CreateTopics"))
            .count()
    };
    assert!(
        names(bob_who, &topic) >= 2,
        "bob's CreateTopics request and outcome: {audit:#?}"
    );
    assert!(
        audit.iter().any(|l| l.contains(alice_who)
            && l.contains(&alice_topic)
            && l.contains("error_codes=[29]")),
        "alice's CreateTopics refused by the broker (29 TOPIC_AUTHORIZATION_FAILED): {audit:#?}"
    );
    // The connection's lines carry identity, user and node.
    assert!(
        log.lines().any(|l| l.contains("identity=reporting")
            && l.contains("user=user-2@fake-control.example.net")
            && l.contains("node=alice")),
        "{log}"
    );
    assert!(
        log.contains("tailnet client refused")
            && log.contains("user-4@fake-control.example.net on carol"),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("conn{") && l.contains("identity=default")),
        "nobody acted as the default identity: {log}"
    );

    let (status, metrics) = common::http_get(admin, "/metrics");
    assert_eq!(status, 200);
    // One whois per laptop (its answer then reused): alice, bob and carol, each asked.
    assert!(
        metric(
            &metrics,
            "kafka_proxy_tailnet_whois_total",
            &["outcome=\"asked\""]
        ) >= 3.0
    );
    assert!(
        metric(
            &metrics,
            "kafka_proxy_tailnet_whois_total",
            &["outcome=\"cached\""]
        ) >= 1.0
    );
    assert!(metric(&metrics, "kafka_proxy_identity_refusals_total", &[]) >= 1.0);
    drop(proxy);

    // `check` asks tailscaled as the proxy will, and says what to fix when it cannot.
    let check = |socket: &std::path::Path| {
        run(
            proxy_command(Some("check"))
                .args(["--tailnet-identities", "--tailscale-socket"])
                .arg(socket),
            None,
        )
    };
    let good = check(&tailnet.socket());
    assert!(good.status.success(), "{}", text(&good));
    assert!(text(&good).contains("answers whois"), "{}", text(&good));
    let bad = check(&work.join("no-such.sock"));
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(
        text(&bad).contains("FAIL tailnet") || text(&bad).contains("is tailscaled running"),
        "{}",
        text(&bad)
    );
}
