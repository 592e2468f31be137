use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A whois answer from tailscaled v1.102.5 on the test tailnet (tests/tailnet: the proxy node's
/// LocalAPI asked about alice, whom the control server granted the capability).
const ALICE: &str = include_str!("../tests/tailnet/whois-alice.json");

const CAP: &str = "example.com/cap/kafka-tls-proxy";

#[test]
fn tailnet_addresses_are_tailscales_ranges_only() {
    for ip in [
        "100.64.0.1",
        "100.127.255.254",
        "100.100.100.100",
        "fd7a:115c:a1e0::2",
        "::ffff:100.64.0.7",
    ] {
        assert!(is_tailnet(ip.parse().unwrap()), "{ip}");
    }
    for ip in [
        "100.63.255.255",
        "100.128.0.0",
        "127.0.0.1",
        "10.0.0.1",
        "fd7a:115c:a1e1::1",
        "::1",
    ] {
        assert!(!is_tailnet(ip.parse().unwrap()), "{ip}");
    }
}

#[test]
fn an_answer_gives_login_node_tags_and_the_identities_the_capability_grants() {
    let peer = parse(ALICE.as_bytes(), CAP).unwrap();
    assert_eq!(peer.login, "user-2@fake-control.example.net");
    assert_eq!(peer.node, "alice");
    assert!(peer.tags.is_empty());
    assert_eq!(peer.granted.iter().collect::<Vec<_>>(), ["reporting"]);
    assert_eq!(peer.describe(), "user-2@fake-control.example.net on alice");
    // Only the configured capability is read (the answer carries Tailscale's own too).
    assert!(ALICE.contains("https://tailscale.com/cap/file-sharing"));
    let none = parse(ALICE.as_bytes(), "https://tailscale.com/cap/file-sharing").unwrap();
    assert!(none.granted.is_empty());
}

#[test]
fn a_tagged_node_and_odd_capability_values() {
    let body = r#"{"Node":{"Name":"ci-runner.tail1234.ts.net.","Tags":["tag:ci","tag:reporting"]},
        "UserProfile":{"LoginName":"tagged-devices"},
        "CapMap":{"c.example/cap/k":[{"identity":"a"},{"identity":"a"},{"other":1},"text",{"identity":7},{"identity":"b"}]}}"#;
    let peer = parse(body.as_bytes(), "c.example/cap/k").unwrap();
    assert_eq!(
        peer.node, "ci-runner",
        "no ComputedName: the first label of Name"
    );
    assert_eq!(peer.tags, ["tag:ci", "tag:reporting"]);
    assert_eq!(peer.granted.iter().collect::<Vec<_>>(), ["a", "b"]);
    // A null CapMap, or a null value list, grants nothing.
    for body in [
        r#"{"Node":{"Name":"n."},"UserProfile":{"LoginName":"x@y"},"CapMap":null}"#,
        r#"{"Node":{"Name":"n."},"UserProfile":{"LoginName":"x@y"},"CapMap":{"c.example/cap/k":null}}"#,
        r#"{"Node":{"Name":"n."},"UserProfile":{"LoginName":"x@y"}}"#,
    ] {
        assert!(
            parse(body.as_bytes(), "c.example/cap/k")
                .unwrap()
                .granted
                .is_empty(),
            "{body}"
        );
    }
}

#[test]
fn answers_that_are_not_whois_or_too_large_are_refused() {
    let long = "x".repeat(MAX_FIELD_BYTES + 1);
    let many_tags: Vec<String> = (0..=MAX_LIST).map(|i| format!("\"tag:t{i}\"")).collect();
    for body in [
        String::new(),
        "null".into(),
        "{}".into(),
        r#"{"Node":{"Name":"n."}}"#.into(),
        r#"{"Node":{"Name":"n."},"UserProfile":{"LoginName":""}}"#.into(),
        format!(r#"{{"Node":{{"Name":"n."}},"UserProfile":{{"LoginName":"{long}"}}}}"#),
        format!(r#"{{"Node":{{"Name":"{long}."}},"UserProfile":{{"LoginName":"a@b"}}}}"#),
        format!(
            r#"{{"Node":{{"Name":"n.","Tags":[{}]}},"UserProfile":{{"LoginName":"a@b"}}}}"#,
            many_tags.join(",")
        ),
        format!(
            r#"{{"Node":{{"Name":"n."}},"UserProfile":{{"LoginName":"a@b"}},"CapMap":{{"{CAP}":[{{"identity":"{long}"}}]}}}}"#
        ),
    ] {
        assert!(
            matches!(parse(body.as_bytes(), CAP), Err(WhoisError::Malformed(_))),
            "{body}"
        );
    }
}

/// A directory removed when dropped.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A LocalAPI stand-in on a Unix socket: answers every request with `status` and `body`
/// after `delay`, counting requests and recording the request lines.
async fn stand_in(
    status: u16,
    body: String,
    delay: Duration,
) -> (Dir, PathBuf, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Dir(std::env::temp_dir().join(format!(
        "ktp-whois-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("tailscaled.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (asked.clone(), lines.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (count, seen, body) = (count.clone(), seen.clone(), body.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                tokio::time::sleep(delay).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (dir, path, asked, lines)
}

fn whois(socket: PathBuf, ttl: Duration) -> Whois {
    Whois::new(
        WhoisSettings {
            socket,
            capability: CAP.into(),
            ttl,
        },
        crate::budget::Budget::new(64 << 20),
    )
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

const ALICE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(100, 64, 0, 2));

#[tokio::test]
async fn one_request_answers_every_connection_from_an_address_until_the_ttl() {
    let (_dir, path, asked, lines) = stand_in(200, ALICE.into(), Duration::from_millis(200)).await;
    let shared = Arc::new(whois(path.clone(), Duration::from_secs(3600)));
    // Ten connections at once from one address: one LocalAPI request.
    let lookups: Vec<_> = (0..10)
        .map(|_| {
            let shared = shared.clone();
            tokio::spawn(async move { shared.lookup(ALICE_IP, soon()).await })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap().unwrap().node, "alice");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    let line = lines.lock().unwrap()[0].clone();
    assert!(
        line.starts_with("GET /localapi/v0/whois?addr=100.64.0.2 HTTP/1.1\r\n"),
        "{line}"
    );
    assert!(
        line.to_ascii_lowercase()
            .contains("sec-tailscale: localapi"),
        "{line}"
    );
    // The IPv4-mapped form of the same address is the same peer.
    let mapped = IpAddr::V6(Ipv4Addr::new(100, 64, 0, 2).to_ipv6_mapped());
    shared.lookup(mapped, soon()).await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    // Once the TTL has passed, asked again.
    let short = whois(path, Duration::from_millis(100));
    short.lookup(ALICE_IP, soon()).await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(150)).await;
    short.lookup(ALICE_IP, soon()).await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn failures_are_not_remembered_and_say_what_failed() {
    let (_dir, path, asked, _) =
        stand_in(404, "no match for IP:port\n".into(), Duration::ZERO).await;
    let client = whois(path, Duration::from_secs(60));
    for _ in 0..2 {
        let e = client.lookup(ALICE_IP, soon()).await.unwrap_err();
        assert!(matches!(e, WhoisError::NotAPeer), "{e}");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 2, "a failure is asked again");

    let (_dir, path, _, _) = stand_in(403, "whois access denied\n".into(), Duration::ZERO).await;
    let e = whois(path, Duration::from_secs(60))
        .lookup(ALICE_IP, soon())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "tailscaled answered HTTP 403: whois access denied"
    );

    let e = whois(
        "/nonexistent/tailscaled.sock".into(),
        Duration::from_secs(1),
    )
    .lookup(ALICE_IP, soon())
    .await
    .unwrap_err();
    assert!(matches!(e, WhoisError::Unreachable { .. }), "{e}");
    assert!(
        e.to_string().contains("/nonexistent/tailscaled.sock"),
        "{e}"
    );
}

#[tokio::test]
async fn a_slow_tailscaled_is_given_up_at_the_deadline() {
    let (_dir, path, _, _) = stand_in(200, ALICE.into(), Duration::from_secs(30)).await;
    let client = whois(path, Duration::from_secs(60));
    let started = Instant::now();
    let e = client
        .lookup(ALICE_IP, Instant::now() + Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, WhoisError::Timeout), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn an_answer_larger_than_the_bound_is_refused() {
    let padded = ALICE.replacen(
        "\"ComputedName\"",
        &format!(
            "\"Pad\": \"{}\", \"ComputedName\"",
            "p".repeat(MAX_ANSWER_BYTES)
        ),
        1,
    );
    let (_dir, path, _, _) = stand_in(200, padded, Duration::ZERO).await;
    let e = whois(path, Duration::from_secs(60))
        .lookup(ALICE_IP, soon())
        .await
        .unwrap_err();
    assert!(matches!(e, WhoisError::Malformed(_)), "{e}");
}

#[tokio::test]
async fn without_budget_for_the_answer_no_request_is_made() {
    let (_dir, path, asked, _) = stand_in(200, ALICE.into(), Duration::ZERO).await;
    let budget = crate::budget::Budget::new(1 << 20);
    let _all = budget.try_charge(budget.free()).unwrap();
    let client = Whois::new(
        WhoisSettings {
            socket: path,
            capability: CAP.into(),
            ttl: Duration::from_secs(1),
        },
        budget,
    );
    let e = client.lookup(ALICE_IP, soon()).await.unwrap_err();
    assert!(matches!(e, WhoisError::NoBudget), "{e}");
    assert_eq!(asked.load(Ordering::SeqCst), 0);
}

#[test]
fn v6_tailnet_addresses_are_asked_about_in_canonical_form() {
    let ip = IpAddr::V6(Ipv6Addr::new(0xfd7a, 0x115c, 0xa1e0, 0, 0, 0, 0, 2));
    assert!(is_tailnet(ip));
    assert_eq!(ip.to_canonical().to_string(), "fd7a:115c:a1e0::2");
}

#[test]
fn only_a_connection_to_this_nodes_tailnet_address_from_another_node_is_asked_about() {
    let at = |s: &str| -> std::net::SocketAddr { s.parse().unwrap() };
    let here = Some(at("100.64.0.1:9092"));
    // From a laptop to the proxy's tailnet address.
    assert!(decides(at("100.64.0.2:40000"), here, false));
    assert!(decides(
        at("[::ffff:100.64.0.2]:40000"),
        Some(at("[::ffff:100.64.0.1]:9092")),
        false
    ));
    assert!(decides(
        at("[fd7a:115c:a1e0::2]:1"),
        Some(at("[fd7a:115c:a1e0::1]:9092")),
        false
    ));
    // A 100.64/10 source that reached another address (a CGNAT or VPC network reusing the
    // range): its address proves nothing.
    assert!(!decides(
        at("100.64.0.2:40000"),
        Some(at("10.0.0.5:9092")),
        false
    ));
    assert!(!decides(at("100.64.0.2:40000"), None, false));
    // This node's own processes, and sources off the tailnet.
    assert!(!decides(at("100.64.0.1:40000"), here, false));
    assert!(!decides(at("10.0.0.7:40000"), here, false));
    // A trusted balancer's header names the client.
    assert!(decides(
        at("100.64.0.9:40000"),
        Some(at("10.0.1.5:9092")),
        true
    ));
    assert!(!decides(
        at("10.0.0.7:40000"),
        Some(at("10.0.1.5:9092")),
        true
    ));
}
