//! A clickhouse-server of a test's own (Debian's package, Kafka engine on the system's
//! librdkafka): config and data in a temp dir, listening on 127.0.0.1 at free ports.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{find_program, free_port, run, TempDir};

/// A clickhouse-server process with its own config and data in a temp dir; killed on drop.
pub struct ClickHouse {
    child: Child,
    client: PathBuf,
    tcp_port: u16,
    dir: TempDir,
}

impl ClickHouse {
    /// Starts the server, logging at `log_level` (`trace`, `information`, ...), with
    /// `auto_offset_reset` smallest plus the `kafka` XML elements as the librdkafka settings of
    /// every Kafka engine table (the `<kafka>` section); waits up to 60 s until it answers.
    /// Panics when clickhouse-server or clickhouse-client is not installed.
    pub fn start(temp_prefix: &str, log_level: &str, kafka: &str) -> ClickHouse {
        let server = find_program("clickhouse-server").unwrap_or_else(|| {
            panic!(
                "clickhouse-server is not installed: apt-get install clickhouse-server \
                 clickhouse-client (tests/run installs them)"
            )
        });
        let client = find_program("clickhouse-client").unwrap_or_else(|| {
            panic!("clickhouse-client is not installed (apt-get install clickhouse-client)")
        });
        let dir = TempDir::new(temp_prefix);
        let d = dir.path().display().to_string();
        let (tcp_port, http_port) = (free_port(), free_port());
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>{log_level}</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp_port}</tcp_port>
  <http_port>{http_port}</http_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709120</mark_cache_size>
  <kafka>
    <auto_offset_reset>smallest</auto_offset_reset>
    {kafka}
  </kafka>
</yandex>
"#
        );
        let users = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><stream_flush_interval_ms>500</stream_flush_interval_ms></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"#;
        std::fs::write(dir.path().join("config.xml"), config).unwrap();
        std::fs::write(dir.path().join("users.xml"), users).unwrap();
        let out = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let child = Command::new(&server)
            .arg(format!("--config-file={d}/config.xml"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let mut ch = ClickHouse {
            child,
            client,
            tcp_port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = ch.child.try_wait() {
                panic!(
                    "clickhouse-server exited at start ({status}):\n{}",
                    ch.logs()
                );
            }
            let out = ch.query_raw("SELECT version()");
            if out.status.success() {
                let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
                eprintln!("clickhouse: server {v} on 127.0.0.1:{tcp_port}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "clickhouse-server not answering after 60 s:\n{}",
                ch.logs()
            );
            thread::sleep(Duration::from_millis(200));
        }
        ch
    }

    pub fn query_raw(&self, sql: &str) -> Output {
        run(
            Command::new(&self.client)
                .args(["--host", "127.0.0.1", "--port", &self.tcp_port.to_string()])
                .args(["--query", sql]),
            None,
        )
    }

    /// Runs one statement; panics with the server log on failure. Returns stdout, trimmed.
    pub fn query(&self, sql: &str) -> String {
        let out = self.query_raw(sql);
        if !out.status.success() {
            panic!(
                "clickhouse query failed: {sql}\n{}\n--- server log tail\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The last 60 lines of each of the server's logs.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for f in ["stdout.log", "server.err.log", "server.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            all += &format!("--- {f} (last {} lines)\n{}\n", tail.len(), tail.join("\n"));
        }
        all
    }

    /// Lines of the server log matching `needle` (e.g. librdkafka messages).
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("server.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Creates the MergeTree table `events (id, msg)` fed, through a materialized view, by a
    /// Kafka engine table reading JSONEachRow rows of `topic` at `bootstrap` as `group`.
    pub fn consume_events(&self, bootstrap: &str, topic: &str, group: &str) {
        self.query("CREATE TABLE events (id UInt64, msg String) ENGINE = MergeTree ORDER BY id");
        self.query(&format!(
            "CREATE TABLE events_queue (id UInt64, msg String) ENGINE = Kafka \
             SETTINGS kafka_broker_list = '{bootstrap}', kafka_topic_list = '{topic}', \
             kafka_group_name = '{group}', kafka_format = 'JSONEachRow', kafka_num_consumers = 1"
        ));
        self.query(
            "CREATE MATERIALIZED VIEW events_mv TO events AS SELECT id, msg FROM events_queue",
        );
    }

    /// (rows, distinct ids) in `events`.
    pub fn counts(&self) -> (u64, u64) {
        let line = self.query("SELECT count(), uniqExact(id) FROM events");
        let mut it = line.split_whitespace().map(|v| v.parse::<u64>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    }

    /// Drops what [`ClickHouse::consume_events`] put in front of `events`: its consumers leave.
    pub fn stop_consuming(&self) {
        self.query("DROP TABLE events_mv");
        self.query("DROP TABLE events_queue");
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
