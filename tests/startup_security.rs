//! What the proxy binary says and keeps about its own security at start, checked on the built
//! binary: listeners that authenticate no one need an explicit flag and are logged as WARN at
//! every start, and a passphrase given in the environment does not stay readable in
//! /proc/PID/environ. No Kafka cluster: the upstream is a closed local port, which the proxy
//! only dials once a client connects.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::free_port;

const READY: &str = "bootstrap listener ready";

fn dev(file: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("certs-dev")
        .join(file)
        .to_str()
        .unwrap()
        .to_owned()
}

/// The proxy command with a clean environment plus `env`, the common flags plus `args`.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafka-tls-proxy"));
    let upstream = format!("127.0.0.1:{}", free_port());
    let bootstrap = free_port().to_string();
    command
        .env_clear()
        .envs(env.iter().copied())
        .args(["--upstream", &upstream, "--bootstrap-port", &bootstrap])
        .args(["--broker-port-base", "40000", "--max-brokers", "8"])
        .args(["--admin-address", "off", "--discovery-interval", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn mutual_tls(key: &'static str, cert: &'static str) -> Vec<String> {
    vec![
        "--upstream-ca".into(),
        dev("ca.pem"),
        "--client-cert".into(),
        dev(cert),
        "--client-key".into(),
        dev(key),
    ]
}

/// A started proxy whose stderr lines arrive on a channel; killed when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        let mut child = command.spawn().expect("the proxy binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits until a line contains `text`; fails with everything seen if the proxy exits or
    /// 30 s pass first.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.seen.iter().any(|l| l.contains(text)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no line with {text:?} (exit: {:?}):\n{}",
                    self.child.try_wait(),
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the proxy to exit by itself (a configuration or start-up error) and returns
    /// its stderr; fails if it is still running after 30 s.
    fn exit_output(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(!status.success(), "{status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still running:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The reader thread ends at EOF, closing the channel.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// The WARN lines, except those about key file modes (a checkout's certs-dev keys are
    /// group- and world-readable).
    fn warnings(&self) -> Vec<&String> {
        self.seen
            .iter()
            .filter(|l| l.contains("WARN") && !l.contains("private key"))
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn args<'a>(owned: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    owned
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect()
}

#[test]
fn a_tls_listener_without_client_certificates_off_loopback_needs_the_flag_and_warns() {
    let tls = mutual_tls("admin.key", "admin.pem");
    let listener = [
        "--bind-address",
        "0.0.0.0",
        "--advertised-host",
        "localhost",
        "--listener-cert",
        &dev("proxy-server.pem"),
        "--listener-key",
        &dev("proxy-server.key"),
    ]
    .map(str::to_owned);
    let mut base = tls.clone();
    base.extend(listener);

    let refused = Running::start(command(&args(&base, &[]), &[])).exit_output();
    assert!(
        refused.contains("--allow-unauthenticated-tls-listener"),
        "{refused}"
    );

    let mut proxy = Running::start(command(
        &args(&base, &["--allow-unauthenticated-tls-listener"]),
        &[],
    ));
    proxy.wait_for(READY);
    let warnings = proxy.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("verifies no client certificate"),
        "{warnings:#?}"
    );
    assert!(
        warnings[0].contains("every client that reaches the address acts as the proxy's principal"),
        "{warnings:#?}"
    );

    // The same flag from the environment.
    let mut proxy = Running::start(command(
        &args(&base, &[]),
        &[("KTP_ALLOW_UNAUTHENTICATED_TLS_LISTENER", "true")],
    ));
    proxy.wait_for(READY);
    assert_eq!(proxy.warnings().len(), 1, "{:#?}", proxy.seen);
}

#[test]
fn plaintext_upstream_and_plaintext_listener_off_loopback_are_warned_about() {
    let mut proxy = Running::start(command(
        &[
            "--upstream-plaintext",
            "--bind-address",
            "0.0.0.0",
            "--advertised-host",
            "localhost",
            "--allow-plaintext-listener",
        ],
        &[],
    ));
    proxy.wait_for(READY);
    let warnings = proxy.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("--upstream-plaintext")
                && w.contains("talks plaintext to the brokers")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("plaintext listener on non-loopback 0.0.0.0")),
        "{warnings:#?}"
    );
    for warning in warnings {
        assert!(
            warning.contains("acts as the proxy's principal"),
            "{warning}"
        );
    }

    // Mutual TLS upstream, plaintext on loopback: nothing to warn about.
    let tls = mutual_tls("admin.key", "admin.pem");
    let mut proxy = Running::start(command(&args(&tls, &[]), &[]));
    proxy.wait_for(READY);
    assert!(proxy.warnings().is_empty(), "{:#?}", proxy.seen);
}

fn passphrase() -> String {
    std::fs::read_to_string(dev("service-encrypted.pass"))
        .unwrap()
        .trim_end()
        .to_owned()
}

#[test]
fn a_passphrase_from_the_environment_does_not_stay_in_proc_environ() {
    let passphrase = passphrase();
    let tls = mutual_tls("service-encrypted.key", "service.pem");
    let mut proxy = Running::start(command(
        &args(&tls, &[]),
        &[("KTP_CLIENT_KEY_PASSPHRASE", &passphrase)],
    ));
    // The key is loaded (decrypted with the passphrase) before the listener binds.
    proxy.wait_for(READY);
    let pid = proxy.child.id();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let found = |needle: &[u8]| environ.windows(needle.len()).any(|w| w == needle);
    assert!(
        !found(passphrase.as_bytes()),
        "the passphrase is readable in /proc/{pid}/environ"
    );
    assert!(
        !found(b"KTP_CLIENT_KEY_PASSPHRASE"),
        "{}",
        String::from_utf8_lossy(&environ)
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!cmdline
        .windows(passphrase.len())
        .any(|w| w == passphrase.as_bytes()));
}

#[test]
fn a_wrong_passphrase_from_the_environment_still_reaches_the_key() {
    let tls = mutual_tls("service-encrypted.key", "service.pem");
    let output = Running::start(command(
        &args(&tls, &[]),
        &[("KTP_CLIENT_KEY_PASSPHRASE", "not-the-passphrase")],
    ))
    .exit_output();
    assert!(output.contains("could not be decrypted"), "{output}");
}
