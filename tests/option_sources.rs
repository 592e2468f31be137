//! Every option works from its flag, from its environment variable and from the TOML file
//! given with --config, and the README lists it. The options are clap's own list of the
//! command line's arguments, so a new option is covered without anyone remembering this file:
//! the test fails until [`SAMPLES`] has a value for it. (`[[identity]]` tables exist in the
//! file only; src/config_tests.rs covers them.) No cluster, no network.
//!
//! This binary is its own process, so setting environment variables races no other test: only
//! `every_option_works_from_flag_environment_and_file` sets them, one at a time, and the other
//! test here only reads option names.

use std::ffi::OsStr;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};
use kafka_tls_proxy::config::{Cli, Options};

/// How a sample is given.
enum Sample {
    /// A flag without a value (a switch): `--flag`, `KTP_FLAG=true`, `flag = true`.
    Switch,
    /// `--flag VALUE` and `KTP_FLAG=VALUE`, and the same value written in TOML.
    Value(&'static str, &'static str),
    /// --config: a flag and environment variable but no TOML key (the file cannot name
    /// another file); the value is the file's contents, which must then take effect.
    File(&'static str),
}

use Sample::{File, Switch, Value};

/// A valid value, different from the default, for every long flag. A new option needs a line
/// here; one for an option that no longer exists fails the test too.
const SAMPLES: &[(&str, Sample)] = &[
    ("config", File("log = \"debug\"\n")),
    (
        "upstream",
        Value(
            "b-1.msk.test:9094,b-2.msk.test:9094",
            r#"["b-1.msk.test:9094", "b-2.msk.test:9094"]"#,
        ),
    ),
    (
        "upstream-ca",
        Value("certs-dev/ca.pem", r#""certs-dev/ca.pem""#),
    ),
    (
        "upstream-host-pattern",
        Value(
            "*.msk.test,kafka.example",
            r#"["*.msk.test", "kafka.example"]"#,
        ),
    ),
    (
        "client-cert",
        Value("certs-dev/admin.pem", r#""certs-dev/admin.pem""#),
    ),
    (
        "client-key",
        Value("certs-dev/admin.key", r#""certs-dev/admin.key""#),
    ),
    (
        "client-key-passphrase-file",
        Value(
            "/etc/kafka-tls-proxy/key.pass",
            r#""/etc/kafka-tls-proxy/key.pass""#,
        ),
    ),
    (
        "upstream-auth",
        Value("scram-sha-512", r#""scram-sha-512""#),
    ),
    ("aws-region", Value("eu-west-1", r#""eu-west-1""#)),
    ("sasl-username", Value("orders", r#""orders""#)),
    (
        "sasl-password-file",
        Value(
            "/etc/kafka-tls-proxy/orders.pass",
            r#""/etc/kafka-tls-proxy/orders.pass""#,
        ),
    ),
    ("upstream-plaintext", Switch),
    ("bind-address", Value("100.64.0.7", r#""100.64.0.7""#)),
    ("bootstrap-port", Value("19092", "19092")),
    ("broker-port-base", Value("19100", "19100")),
    ("max-brokers", Value("16", "16")),
    (
        "broker-port",
        Value("1001=19201,1002=19202", r#"["1001=19201", "1002=19202"]"#),
    ),
    (
        "advertised-host",
        Value("kafka.example", r#""kafka.example""#),
    ),
    ("allow-plaintext-listener", Switch),
    (
        "listener-cert",
        Value(
            "certs-dev/proxy-server.pem",
            r#""certs-dev/proxy-server.pem""#,
        ),
    ),
    (
        "listener-key",
        Value(
            "certs-dev/proxy-server.key",
            r#""certs-dev/proxy-server.key""#,
        ),
    ),
    ("allow-unauthenticated-tls-listener", Switch),
    (
        "listener-client-ca",
        Value("certs-dev/ca.pem", r#""certs-dev/ca.pem""#),
    ),
    (
        "proxy-protocol-from",
        Value("10.0.1.0/24,10.0.2.7", r#"["10.0.1.0/24", "10.0.2.7"]"#),
    ),
    ("tailnet-identities", Switch),
    (
        "tailscale-socket",
        Value(
            "/run/tailscale/tailscaled.sock",
            r#""/run/tailscale/tailscaled.sock""#,
        ),
    ),
    (
        "tailnet-capability",
        Value("example.com/cap/kafka", r#""example.com/cap/kafka""#),
    ),
    ("tailnet-whois-ttl", Value("2s", r#""2s""#)),
    ("tailnet-unmatched-default", Switch),
    ("max-request-bytes", Value("1048576", "1048576")),
    ("max-response-bytes", Value("2097152", "2097152")),
    ("connect-timeout", Value("3s", r#""3s""#)),
    ("drain-timeout", Value("5s", r#""5s""#)),
    ("discovery-interval", Value("0", r#""0""#)),
    ("dns-cache-ttl", Value("250ms", r#""250ms""#)),
    ("max-buffered-bytes", Value("16777216", "16777216")),
    ("max-connections", Value("100", "100")),
    ("first-frame-timeout", Value("2s", r#""2s""#)),
    ("frame-timeout", Value("20s", r#""20s""#)),
    ("min-client-read-rate", Value("1024", "1024")),
    ("client-idle-timeout", Value("5m", r#""5m""#)),
    ("bind-retry-timeout", Value("0", r#""0""#)),
    (
        "admin-address",
        Value("127.0.0.1:19644", r#""127.0.0.1:19644""#),
    ),
    ("log-format", Value("json", r#""json""#)),
    ("log", Value("debug", r#""debug""#)),
    ("policy", Value("read-only", r#""read-only""#)),
];

/// Every option's long name and environment variable, from clap.
fn options() -> Vec<(String, String, bool)> {
    Cli::command()
        .get_arguments()
        .filter(|arg| !matches!(arg.get_long(), Some("help" | "version")))
        .map(|arg| {
            let long = arg
                .get_long()
                .unwrap_or_else(|| panic!("option {} has no long flag", arg.get_id()))
                .to_owned();
            let env = arg
                .get_env()
                .and_then(OsStr::to_str)
                .unwrap_or_else(|| panic!("--{long} has no environment variable"))
                .to_owned();
            let switch = matches!(arg.get_action(), ArgAction::SetTrue);
            (long, env, switch)
        })
        .collect()
}

/// The options these arguments, the environment and any --config file give.
fn parse(args: &[&str]) -> Result<Options, String> {
    let argv = std::iter::once("kafka-tls-proxy").chain(args.iter().copied());
    Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .options
        .merge_file()
        .map_err(|e| e.to_string())
}

/// Writes a TOML file for `name` and returns its path.
fn toml_file(name: &str, text: &str) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("option-{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn every_option_works_from_flag_environment_and_file() {
    // Start from no KTP_ variable at all, whatever the shell running the tests has set.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KTP_") {
            std::env::remove_var(name);
        }
    }
    let default = parse(&[]).unwrap();
    assert_eq!(default, Options::default());

    let options = options();
    assert!(options.len() > 30, "clap lists the options: {options:?}");
    for (long, _) in SAMPLES {
        assert!(
            options.iter().any(|(l, _, _)| l == long),
            "SAMPLES has --{long}, which is no option"
        );
    }
    for (long, env, switch) in &options {
        let flag = format!("--{long}");
        assert_eq!(
            *env,
            format!("KTP_{}", long.to_uppercase().replace('-', "_")),
            "{flag}: the README promises KTP_ + the flag name"
        );
        let sample = SAMPLES
            .iter()
            .find(|(l, _)| l == long)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("{flag} has no sample value: add one to SAMPLES"));
        assert_eq!(
            *switch,
            matches!(sample, Switch),
            "{flag}: a switch exactly when clap says so"
        );
        let (value, toml) = match sample {
            Switch => ("true".to_owned(), Some("true")),
            Value(value, toml) => (value.to_string(), Some(*toml)),
            File(contents) => (toml_file(&format!("{long}-sample"), contents), None),
        };

        let mut args = vec![flag.as_str()];
        if !matches!(sample, Switch) {
            args.push(&value);
        }
        let given = args.join(" ");
        let from_flag = parse(&args).unwrap_or_else(|e| panic!("{given}: {e}"));
        assert_ne!(from_flag, default, "{given} changed nothing");

        std::env::set_var(env, &value);
        let from_env = parse(&[]);
        std::env::remove_var(env);
        let from_env = from_env.unwrap_or_else(|e| panic!("{env}={value}: {e}"));
        assert_eq!(from_env, from_flag, "{env}={value} and {given} differ");

        let line = format!("{long} = {}\n", toml.unwrap_or("\"other.toml\""));
        let file = toml_file(long, &line);
        let from_file = parse(&["--config", &file]);
        match toml {
            Some(_) => {
                let mut from_file = from_file.unwrap_or_else(|e| panic!("{line}: {e}"));
                assert_eq!(from_file.config.take(), Some(PathBuf::from(&file)));
                assert_eq!(from_file, from_flag, "`{}` and {given} differ", line.trim());
            }
            None => {
                let err = from_file.expect_err("a file cannot name another file");
                assert!(err.contains(&format!("unknown field `{long}`")), "{err}");
            }
        }
    }
}

#[test]
fn the_readme_lists_every_option() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    for (long, _, _) in options() {
        let listed = [" ", "`"]
            .iter()
            .any(|end| readme.contains(&format!("`--{long}{end}")));
        assert!(listed, "README.md does not mention `--{long}`");
    }
}
