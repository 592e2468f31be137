//! A leadership change under load: an idempotent producer writes through the proxy while one
//! broker is stopped and restarted. No record may be lost or duplicated, and no client may
//! connect anywhere but the proxy.

mod common;
mod proxy;

use std::collections::BTreeMap;
use std::process::Command;

use std::time::{Duration, Instant};

use common::{cluster, unique};
use proxy::Proxy;

/// Client processes (by name) that hold a connection to a broker's client port right now.
fn direct_broker_clients(proxy_pid: u32) -> Vec<String> {
    let out = Command::new("ss")
        .args(["-Htnp", "state", "established", "( dport = :9094 )"])
        .output()
        .expect("ss (iproute2) is installed by tests/run");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains(&format!("pid={proxy_pid},")))
        // The cluster script's readiness probe is the only other expected visitor.
        .filter(|l| !l.contains("\"python3\""))
        .map(str::to_owned)
        .collect()
}

#[test]
fn idempotent_producer_survives_a_broker_restart_without_loss_or_duplicates() {
    let c = cluster();
    let _alone = c.exclusive();
    let proxy = Proxy::start(c, &[]);
    let topic = unique("failover");
    c.create_topic(&topic, 3, 3);

    let props = std::env::temp_dir().join(format!("{topic}.properties"));
    std::fs::write(
        &props,
        "enable.idempotence=true\nacks=all\nretries=2147483647\n\
         delivery.timeout.ms=120000\nrequest.timeout.ms=10000\nmax.in.flight.requests.per.connection=5\n\
         linger.ms=5\n",
    )
    .unwrap();
    let total = 8000u32;
    // The producer prints a JSON line per record: to files, so that no pipe fills up.
    let stdout_path = std::env::temp_dir().join(format!("{topic}.out"));
    let stderr_path = std::env::temp_dir().join(format!("{topic}.err"));
    let producer = c
        .cluster_sh()
        .args(["cli", "verifiable-producer", "--bootstrap-server"])
        .arg(proxy.bootstrap())
        .args(["--topic", &topic, "--max-messages", &total.to_string()])
        .args(["--throughput", "800", "--acks", "-1", "--producer.config"])
        .arg(&props)
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start the verifiable producer");

    // A failing assertion below must not leave the producer running.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut producer = KillOnDrop(producer);
    let producer_pid_check = |when: &str| {
        let direct = direct_broker_clients(proxy.pid());
        assert!(
            direct.is_empty(),
            "{when}: clients connected to brokers directly: {direct:?}"
        );
    };
    std::thread::sleep(Duration::from_secs(3));
    producer_pid_check("before the restart");
    // Stop a broker that leads partitions of the topic, mid-produce.
    let stopped = c.stop_broker(2);
    std::thread::sleep(Duration::from_secs(3));
    producer_pid_check("while broker 2 is down");
    stopped.start();
    producer_pid_check("after the restart");

    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = producer.0.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = producer.0.kill();
            panic!(
                "producer did not finish in 120 s; stderr:\n{}\nproxy log:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                proxy.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    assert!(
        status.success(),
        "verifiable producer failed ({status}):\n{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    let acked = stdout.matches("\"producer_send_success\"").count();
    let failed = stdout.matches("\"producer_send_error\"").count();
    assert_eq!(failed, 0, "send errors:\n{stdout}");
    assert_eq!(acked, total as usize, "every record acknowledged");

    // Read everything back through the proxy.
    let consumed = proxy.consume_all(c, &topic);
    let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
    for line in &consumed {
        *counts
            .entry(line.trim().parse().expect("integer values"))
            .or_default() += 1;
    }
    let missing: Vec<u32> = (0..total).filter(|v| !counts.contains_key(v)).collect();
    let duplicated: Vec<(&u32, &u32)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        duplicated.is_empty(),
        "duplicates: {:?}",
        &duplicated[..duplicated.len().min(10)]
    );
    assert_eq!(counts.len(), total as usize);

    proxy.assert_no_upstream_leak();
    let log = proxy.log();
    assert!(!log.contains("panicked"), "{log}");
}
