//! The produce / consume / consumer-group round trip through the proxy that `tests/run`
//! repeats against every Kafka version it checks (3.9.x, the default 4.1.x and the newest
//! 4.x, which is newer than the protocol library the proxy was built with).

mod common;
mod proxy;

use common::{assert_success, cluster, unique};
use proxy::Proxy;

#[test]
fn produce_consume_and_group_resume_through_the_proxy() {
    let c = cluster();
    let _up = c.shared();
    let proxy = Proxy::start(c, &[]);
    let bootstrap = proxy.bootstrap();
    let topic = unique("compat");
    let group = unique("compat-group");
    c.create_topic(&topic, 3, 3);

    // librdkafka produces, the Java consumer reads as a group.
    let first: String = (0..50).map(|i| format!("v{}-{i}\n", c.version())).collect();
    let out = c.kcat_raw(
        &["-b", &bootstrap, "-P", "-t", &topic, "-X", "acks=all"],
        Some(first.as_bytes()),
    );
    assert_success("kcat produce", &out);
    let consume = |max: usize| proxy.consume_as_group(c, &topic, &group, max);
    let mut want: Vec<String> = first.lines().map(str::to_owned).collect();
    want.sort();
    assert_eq!(consume(50), want);

    // The Java producer adds more; the group resumes where it committed.
    let second: String = (0..5).map(|i| format!("later-{i}\n")).collect();
    let out = c.cli_stdin(
        "console-producer",
        &["--bootstrap-server", &bootstrap, "--topic", &topic],
        Some(second.as_bytes()),
    );
    assert_success("console producer", &out);
    let mut want: Vec<String> = second.lines().map(str::to_owned).collect();
    want.sort();
    assert_eq!(consume(5), want);

    let checked = proxy.assert_no_upstream_leak();
    assert!(
        checked >= 3,
        "only {checked} address-carrying responses seen"
    );
}
