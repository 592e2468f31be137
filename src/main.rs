//! The `kafka-tls-proxy` binary: parse configuration, set up logging and metrics, run the
//! server until SIGTERM or SIGINT, reload certificates on SIGHUP or when their files change.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use kafka_tls_proxy::admin::{self, Health};
use kafka_tls_proxy::config::{Cli, Command, LogFormat, Settings};
use kafka_tls_proxy::{brokers, check, server, tls::TlsState};
use tokio::signal::unix::{signal, SignalKind};

/// mimalloc instead of glibc malloc: rustls allocates a fresh ~16 KiB buffer per TLS record it
/// encrypts, and after thousands of connections have come and gone glibc's free lists made
/// each such allocation cost 20-30 µs (22.8% of the proxy's CPU, produce CPU per GB up 35-100%)
/// and kept 220 MiB resident. With mimalloc: 1.7%, no rise, 43 MiB (BENCHMARKS.md, Finding 1).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often certificate files are checked for changes.
const CERT_WATCH_PERIOD: Duration = Duration::from_secs(5);

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .with_context(|| format!("--log: invalid filter '{}'", settings.log))?;
    // Logs go to stderr, in colour only on a terminal; stdout is left to commands' output.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match settings.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = cli.options.merge_file()?;
    if let Some(Command::Healthcheck) = cli.command {
        return healthcheck(options.admin_address()?).await;
    }
    let passphrase = std::env::var("KTP_CLIENT_KEY_PASSPHRASE").ok();
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
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    let tls = Arc::new(
        TlsState::load(settings.upstream_tls.clone(), settings.listener_tls.clone())
            .context("loading TLS material")?,
    );
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
    tokio::spawn(tls.clone().watch(CERT_WATCH_PERIOD));
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
