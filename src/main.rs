//! The `kafka-tls-proxy` binary: parse configuration, set up logging and metrics, run the
//! server until SIGTERM or SIGINT, reload certificates on SIGHUP or when their files change.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use kafka_tls_proxy::admin::{self, Health};
use kafka_tls_proxy::config::{Cli, Command, LogFormat, Settings};
use kafka_tls_proxy::logs::EscapingStderr;
use kafka_tls_proxy::sasl::UpstreamAuth;
use kafka_tls_proxy::tls::{Secret, TlsState};
use kafka_tls_proxy::{brokers, check, server};
use tokio::signal::unix::{signal, SignalKind};
use zeroize::Zeroizing;

/// mimalloc instead of glibc malloc: rustls allocates a fresh ~16 KiB buffer per TLS record it
/// encrypts, and after thousands of connections have come and gone glibc's free lists made
/// each such allocation cost 20-30 µs (22.8% of the proxy's CPU, produce CPU per GB up 35-100%)
/// and kept 220 MiB resident. With mimalloc: 1.7%, no rise, 43 MiB (BENCHMARKS.md, Finding 1).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The environment variable that may carry the client key's passphrase.
const PASSPHRASE_ENV: &str = "KTP_CLIENT_KEY_PASSPHRASE";
/// Internal: set on the re-executed proxy, whose standard input then carries the passphrase.
const PASSPHRASE_ON_STDIN: &str = "KTP_PASSPHRASE_ON_STDIN";
/// Longest passphrase handed over on the pipe: far below a pipe's buffer, so writing it before
/// the exec (with no reader running yet) cannot block.
const MAX_PASSPHRASE_BYTES: usize = 4096;

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .with_context(|| format!("--log: invalid filter '{}'", settings.log))?;
    // Logs go to stderr; stdout is left to commands' output. Every control character inside a
    // line is escaped (fields hold certificate subjects and other strings from the network), so
    // there is no colour: the escaping could not tell colour codes from a hostile string's.
    // The AWS SDK's own events are never written, whatever the filter: they format errors with
    // the raw HTTP exchange (an IMDS session token, or a credentials answer that failed to
    // parse, secret key included). The proxy logs those failures itself, without the bodies.
    let sdk_quiet = tracing_subscriber::filter::filter_fn(|m| !m.target().starts_with("aws_"));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(EscapingStderr)
        .with_ansi(false);
    let registry = tracing_subscriber::registry();
    match settings.log_format {
        LogFormat::Text => registry
            .with(layer.with_filter(filter).with_filter(sdk_quiet))
            .init(),
        LogFormat::Json => registry
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_filter(filter)
                    .with_filter(sdk_quiet),
            )
            .init(),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // First, while the process has a single thread: this may re-execute it.
    let passphrase = take_passphrase()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(async_main(passphrase))
}

/// The passphrase given in KTP_CLIENT_KEY_PASSPHRASE, without leaving it readable in
/// /proc/PID/environ for the life of the proxy. That file shows the environment block the
/// process was started with, whatever `remove_var` does later, so the proxy re-executes itself
/// without the variable and hands the passphrase over on a pipe as standard input; the
/// re-executed process (marked by KTP_PASSPHRASE_ON_STDIN) reads it from there. Must run
/// before any thread exists. Returns only in the re-executed process, or without the
/// variable.
fn take_passphrase() -> anyhow::Result<Option<Secret>> {
    if std::env::var_os(PASSPHRASE_ON_STDIN).is_some() {
        std::env::remove_var(PASSPHRASE_ON_STDIN);
        return read_passphrase_from_stdin().map(Some);
    }
    let Some(value) = std::env::var_os(PASSPHRASE_ENV) else {
        return Ok(None);
    };
    let value = Zeroizing::new(value.into_vec());
    Err(reexec_with_passphrase_on_stdin(&value))
}

/// Replaces this process with a fresh copy of the binary, same arguments, without
/// KTP_CLIENT_KEY_PASSPHRASE, whose standard input is a pipe holding the passphrase. Returns
/// only on failure.
fn reexec_with_passphrase_on_stdin(passphrase: &[u8]) -> anyhow::Error {
    const WHY: &str = "handing KTP_CLIENT_KEY_PASSPHRASE over to a re-executed proxy, so that it \
                       does not stay in /proc/PID/environ (or use --client-key-passphrase-file)";
    if passphrase.len() > MAX_PASSPHRASE_BYTES {
        return anyhow::anyhow!(
            "{PASSPHRASE_ENV} is longer than {MAX_PASSPHRASE_BYTES} bytes; use --client-key-passphrase-file"
        );
    }
    let (reader, mut writer) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(e) => return anyhow::Error::new(e).context(WHY),
    };
    if let Err(e) = writer.write_all(passphrase) {
        return anyhow::Error::new(e).context(WHY);
    }
    // The re-executed process reads to the end: close the only write end.
    drop(writer);
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "kafka-tls-proxy".into());
    // /proc/self/exe rather than argv[0] or the path: the very binary running, even when
    // started through $PATH or replaced on disk since.
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env_remove(PASSPHRASE_ENV)
        .env(PASSPHRASE_ON_STDIN, "1")
        .stdin(reader)
        .exec();
    anyhow::Error::new(error).context(format!("re-executing /proc/self/exe: {WHY}"))
}

/// Reads the passphrase the parent wrote to standard input, into buffers wiped on drop. The
/// buffer is allocated once, larger than any passphrase the parent sends, so reading never
/// reallocates (which would leave an unwiped copy behind).
fn read_passphrase_from_stdin() -> anyhow::Result<Secret> {
    let stdin = std::io::stdin();
    anyhow::ensure!(
        !stdin.is_terminal(),
        "{PASSPHRASE_ON_STDIN} is internal to the proxy (its standard input must carry the passphrase); unset it"
    );
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_BYTES + 1));
    // StdinLock::read_to_end reads straight into `bytes`, bypassing stdin's own buffer.
    stdin
        .lock()
        .read_to_end(&mut bytes)
        .context("reading the passphrase from standard input")?;
    anyhow::ensure!(
        bytes.len() <= MAX_PASSPHRASE_BYTES,
        "{PASSPHRASE_ENV} is longer than {MAX_PASSPHRASE_BYTES} bytes"
    );
    std::str::from_utf8(&bytes).context("KTP_CLIENT_KEY_PASSPHRASE is not valid UTF-8")?;
    // Moves the buffer into the Secret (which wipes it on drop) without copying it.
    let text = String::from_utf8(std::mem::take(&mut *bytes)).expect("checked above");
    Ok(Secret::new(text))
}

async fn async_main(passphrase: Option<Secret>) -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = cli.options.merge_file()?;
    if let Some(Command::Healthcheck) = cli.command {
        return healthcheck(options.admin_address()?).await;
    }
    let settings = options.into_settings(passphrase)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => {
            let (report, ok) = check::run(&settings).await;
            print!("{report}");
            std::process::exit(if ok { 0 } else { 1 });
        }
        Command::Run | Command::Healthcheck => {
            init_logging(&settings)?;
            run(settings).await
        }
    }
}

async fn healthcheck(admin: Option<SocketAddr>) -> anyhow::Result<()> {
    let addr = admin.context("--admin-address is off: nothing to ask")?;
    match admin::probe(addr, "/readyz").await {
        Ok((200, body)) => {
            println!("{body}");
            Ok(())
        }
        Ok((status, body)) => {
            println!("{status}: {body}");
            std::process::exit(1)
        }
        Err(e) => {
            println!("{e}");
            std::process::exit(1)
        }
    }
}

/// Binds, retrying while the address is not assigned to this host yet (a tailnet address
/// appears some time after tailscaled starts).
async fn bind_with_retry(
    what: &str,
    addr: SocketAddr,
    retry_for: Duration,
) -> anyhow::Result<tokio::net::TcpListener> {
    let deadline = Instant::now() + retry_for;
    let mut warned = false;
    loop {
        match brokers::bind_listener(addr).and_then(tokio::net::TcpListener::from_std) {
            Ok(listener) => return Ok(listener),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrNotAvailable
                    && Instant::now() < deadline =>
            {
                if !warned {
                    tracing::warn!(%addr, "{what}: address not assigned to this host yet; retrying for up to {retry_for:?}");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("{what}: cannot listen on {addr}")),
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    // Every start says how clients are (not) authenticated, whatever flag allowed it.
    for warning in settings.unauthenticated_warnings() {
        tracing::warn!("{warning}");
    }
    // The SDK's chain accepts a secret key in the environment; the project keeps secrets out
    // of it (/proc/PID/environ), so a start that relies on one says so.
    if matches!(settings.upstream_auth, UpstreamAuth::AwsMskIam(_))
        && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some()
    {
        tracing::warn!("AWS_SECRET_ACCESS_KEY is set in the proxy's environment, readable in /proc/PID/environ: give the proxy a role instead (web identity, container credentials, instance profile) or a profile file (README \"AWS IAM\")");
    }
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    let mut tls = TlsState::load(settings.upstream_tls.clone(), settings.listener_tls.clone())
        .context("loading TLS material")?;
    // Identities chosen by certificate: a certificate that matches none is refused in the
    // handshake of the default listeners (the same rules as `Identities::choose`).
    let rules: Vec<_> = settings
        .identities
        .iter()
        .map(|i| i.client_match.clone())
        .filter(|m| !m.is_empty())
        .collect();
    if !rules.is_empty() {
        let rule = kafka_tls_proxy::tls::ClientRule(Arc::new(move |cert| {
            let names = kafka_tls_proxy::tls::certificate_info(cert)
                .map(|i| i.names)
                .unwrap_or_default();
            let cn = kafka_tls_proxy::tls::common_name(cert);
            rules.iter().any(|m| m.matches(cn.as_deref(), &names))
        }));
        tls = tls.with_client_rule(rule).context("loading TLS material")?;
    }
    let tls = Arc::new(tls);
    tls.record_expiry();
    let window = (settings.discovery_interval * 3).max(Duration::from_secs(30));
    let health = Arc::new(Health::new(window));

    let bootstrap_addr = SocketAddr::new(settings.bind_address, settings.bootstrap_port);
    let bootstrap = bind_with_retry(
        "--bootstrap-port",
        bootstrap_addr,
        settings.bind_retry_timeout,
    )
    .await?;
    if let Some(addr) = settings.admin_address {
        let listener =
            bind_with_retry("--admin-address", addr, settings.bind_retry_timeout).await?;
        tracing::info!(%addr, "admin listener ready: /metrics /healthz /readyz");
        tokio::spawn(admin::serve(
            listener,
            Some(prometheus.clone()),
            health.clone(),
        ));
    }
    // The Prometheus recorder keeps histograms in buckets that need draining now and then.
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            prometheus.run_upkeep();
        }
    });

    let mut hangup = signal(SignalKind::hangup())?;
    let reload_tls = tls.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            reload_tls.reload_and_log("SIGHUP");
        }
    });
    tokio::spawn(tls.clone().watch(kafka_tls_proxy::tls::CERT_WATCH_PERIOD));
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
    };
    server::run(settings, tls, health, bootstrap, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
