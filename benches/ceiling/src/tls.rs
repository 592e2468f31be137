//! rustls configurations from PEM files: the fake broker's (mutual TLS, resumption on or off)
//! and a client's (the proxy's admin certificate), with aws-lc-rs like the proxy.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn certs(path: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {path}"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {path}"))
}

pub fn key(path: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("reading the key {path}"))
}

fn roots(ca: &str) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c)?;
    }
    Ok(Arc::new(roots))
}

/// A broker's configuration: requires a client certificate signed by `ca`. With `resumption`,
/// TLS 1.3 tickets (stateless, like a JSSE broker's) and a TLS 1.2 session cache; without, every
/// handshake is a full one.
pub fn server_config(
    cert: &str,
    key_path: &str,
    ca: &str,
    resumption: bool,
) -> anyhow::Result<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
        .build()
        .context("client verifier")?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert)?, key(key_path)?)
        .context("broker certificate and key")?;
    if resumption {
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(65536);
    } else {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(config)
}

/// A client's configuration with a client certificate; rustls' default in-memory resumption.
pub fn client_config(ca: &str, cert: &str, key_path: &str) -> anyhow::Result<ClientConfig> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(certs(cert)?, key(key_path)?)
        .context("client certificate and key")
}
