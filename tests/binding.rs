//! On a Tailscale host the proxy binds the tailnet address, which may not exist yet when the
//! proxy starts (tailscaled can report ready before its address is assigned). The proxy must
//! wait for it instead of failing. Simulated in a fresh network namespace, whose loopback has
//! no address until the test brings it up: nothing here leaves the namespace. IPv6 (`::1`),
//! like Tailscale's fd7a:115c:a1e0::/48 addresses: in a fresh namespace this kernel lets IPv4
//! sockets bind any address, but IPv6 ones only the addresses that exist.

use std::process::Command;

#[test]
fn waits_for_its_bind_address_to_appear() {
    let proxy = env!("CARGO_BIN_EXE_kafka-tls-proxy");
    // Inside `unshare --net`: start the proxy while ::1 does not exist, give it time to
    // fail once, then assign the address (bring lo up) and check that it listens.
    let script = format!(
        r#"
        set -u
        {proxy} --upstream 127.0.0.1:1 --upstream-plaintext --admin-address off \
            --bind-address ::1 --bootstrap-port 19092 --bind-retry-timeout 30s --discovery-interval 0 2>proxy.log &
        pid=$!
        sleep 1.5
        kill -0 $pid || {{ echo "proxy exited while the address was missing"; cat proxy.log; exit 1; }}
        ip link set lo up
        for i in $(seq 1 50); do
            if grep -q "bootstrap listener ready" proxy.log; then break; fi
            sleep 0.1
        done
        cat proxy.log
        exec 3<>/dev/tcp/::1/19092 && echo CONNECTED
        kill -TERM $pid; wait $pid; echo "EXIT $?"
        "#
    );
    let dir = std::env::temp_dir().join(format!("ktp-bind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("unshare")
        .args(["--net", "bash", "-c", &script])
        .current_dir(&dir)
        .output()
        .expect("unshare (util-linux; tests/run installs it) runs as root");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("address not assigned to this host yet; retrying"),
        "{text}"
    );
    assert!(text.contains("bootstrap listener ready"), "{text}");
    assert!(text.contains("CONNECTED"), "{text}");
    assert!(text.contains("EXIT 0"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gives_up_with_a_clear_error_when_the_address_never_appears() {
    let proxy = env!("CARGO_BIN_EXE_kafka-tls-proxy");
    let out = Command::new("unshare")
        .args(["--net", proxy])
        .args(["--upstream", "127.0.0.1:1", "--upstream-plaintext"])
        .args(["--bind-address", "::1", "--admin-address", "off"])
        .args(["--bind-retry-timeout", "1s"])
        .output()
        .expect("unshare runs as root");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--bootstrap-port: cannot listen on [::1]:9092"),
        "{stderr}"
    );
}
