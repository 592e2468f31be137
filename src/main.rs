//! The `kafka-tls-proxy` binary: parse configuration, set up logging and metrics, run the
//! server until SIGTERM or SIGINT, reload certificates on SIGHUP.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use kafka_tls_proxy::config::{Cli, Command, LogFormat, Settings};
use kafka_tls_proxy::{server, tls::TlsState};
use tokio::signal::unix::{signal, SignalKind};

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .with_context(|| format!("--log: invalid filter '{}'", settings.log))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match settings.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let passphrase = std::env::var("KTP_CLIENT_KEY_PASSPHRASE").ok();
    let settings = cli.options.merge_file()?.into_settings(passphrase)?;
    init_logging(&settings)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(settings).await,
        Command::Check => anyhow::bail!("the check command is not built yet"),
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let tls = Arc::new(
        TlsState::load(settings.upstream_tls.clone(), settings.listener_tls.clone())
            .context("loading TLS material")?,
    );
    let bootstrap_addr = std::net::SocketAddr::new(settings.bind_address, settings.bootstrap_port);
    let bootstrap = kafka_tls_proxy::brokers::bind_listener(bootstrap_addr)
        .and_then(tokio::net::TcpListener::from_std)
        .with_context(|| format!("--bootstrap-port: cannot listen on {bootstrap_addr}"))?;

    let mut hangup = signal(SignalKind::hangup())?;
    let reload_tls = tls.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match reload_tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: certificates and keys reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: reload failed; keeping the old certificates")
                }
            }
        }
    });
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
    };
    server::run(settings, tls, bootstrap, shutdown).await?;
    Ok(())
}
