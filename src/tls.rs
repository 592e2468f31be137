//! TLS material: loading certificates and keys, building the rustls configurations for the
//! upstream (mutual TLS origination) and for the optional client-facing listener, reloading
//! them, and naming TLS failures so that an operator knows what to fix.
//!
//! One crypto provider (aws-lc-rs) for everything. Hostname verification is always on: the
//! proxy verifies each broker against the name the cluster advertises for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use zeroize::{ZeroizeOnDrop, Zeroizing};

/// Where the proxy's upstream identity and trust come from.
#[derive(Debug, Clone)]
pub struct UpstreamTlsFiles {
    /// PEM bundle of CAs that sign broker certificates; `None` means the system roots
    /// (what MSK's public ACM certificates need).
    pub ca: Option<PathBuf>,
    /// The client certificate for mutual TLS; `None` when the proxy authenticates with SASL
    /// instead (the brokers' certificates are verified all the same).
    pub client: Option<ClientCertFiles>,
}

/// The certificate and key the proxy presents to brokers (mutual TLS).
#[derive(Debug, Clone)]
pub struct ClientCertFiles {
    /// PEM certificate chain the proxy presents to brokers.
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1, SEC1, or passphrase-encrypted PKCS#8.
    pub key: PathBuf,
    /// Where the passphrase of an encrypted key comes from.
    pub key_passphrase: Option<Passphrase>,
}

impl UpstreamTlsFiles {
    /// Mutual TLS with `cert` and `key` (and the key's passphrase), trusting `ca`.
    pub fn mutual(
        ca: Option<PathBuf>,
        cert: PathBuf,
        key: PathBuf,
        key_passphrase: Option<Passphrase>,
    ) -> Self {
        Self {
            ca,
            client: Some(ClientCertFiles {
                cert,
                key,
                key_passphrase,
            }),
        }
    }
}

/// The passphrase of an encrypted client key. A file is read again at every (re)load, so a
/// rotation that brings a new key with a new passphrase (AWS Private CA exports each key with
/// its own) needs only a reload.
#[derive(Debug, Clone)]
pub enum Passphrase {
    /// Read from this file (a trailing newline is ignored).
    File(PathBuf),
    /// Given directly (KTP_CLIENT_KEY_PASSPHRASE).
    Value(Secret),
}

impl Passphrase {
    /// The passphrase as of now.
    pub fn read(&self) -> Result<Secret, TlsLoadError> {
        match self {
            Passphrase::Value(secret) => Ok(secret.clone()),
            Passphrase::File(path) => {
                // Wiped when dropped, like the trimmed copy the Secret keeps.
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                    TlsLoadError::Read {
                        what: "passphrase file",
                        path: path.clone(),
                        source,
                    }
                })?);
                Ok(Secret::new(text.trim_end_matches(['\r', '\n']).to_owned()))
            }
        }
    }
}

/// Certificate and key for the optional TLS listener that clients connect to.
#[derive(Debug, Clone)]
pub struct ListenerTlsFiles {
    /// PEM certificate chain the proxy presents to clients.
    pub cert: PathBuf,
    /// PEM private key for it.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca: Option<PathBuf>,
}

/// A passphrase that never shows up in logs or `Debug` output and is wiped from memory when
/// dropped, so that a core dump or a later heap read does not find it.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a passphrase (taking its buffer, which is then wiped on drop).
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

/// The inner [`Zeroizing`] wipes the passphrase when a `Secret` is dropped.
impl ZeroizeOnDrop for Secret {}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why TLS material could not be loaded. Each names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsLoadError {
    /// The file is missing or unreadable.
    #[error("{what} {path}: {source}")]
    Read {
        /// What the file was meant to be.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no usable PEM section of the expected kind.
    #[error("{what} {path}: {reason}")]
    Parse {
        /// What the file was meant to be.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is encrypted and no passphrase was configured.
    #[error("private key {0} is encrypted: set --client-key-passphrase-file or KTP_CLIENT_KEY_PASSPHRASE")]
    PassphraseMissing(PathBuf),
    /// The passphrase does not decrypt the key.
    #[error("private key {path} could not be decrypted (wrong passphrase?): {reason}")]
    Decrypt {
        /// Key path.
        path: PathBuf,
        /// Error from the PKCS#8 decryption.
        reason: String,
    },
    /// rustls refused the combination (for example a key that does not match the certificate).
    #[error("{what}: {source}")]
    Config {
        /// Which configuration.
        what: &'static str,
        /// The rustls error.
        source: rustls::Error,
    },
}

/// The crypto provider every configuration uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsLoadError> {
    std::fs::read(path).map_err(|source| TlsLoadError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Loads every certificate of a PEM file, in order (leaf first for a chain).
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsLoadError> {
    let pem = read_file(what, path)?;
    let parse = |reason: String| TlsLoadError::Parse {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse(e.to_string()))?;
    if certs.is_empty() {
        return Err(parse("no CERTIFICATE section found".into()));
    }
    Ok(certs)
}

const ENCRYPTED_PKCS8_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// Why a private key file deserves a warning: it is readable by its group or by others
/// (`mode & 0o044`), so more accounts than the proxy's can act as its principal. `None` when
/// only the owner can read it, or the file cannot be inspected (loading reports that).
/// A warning, not an error: Vault and Nomad templates often render keys 0640 for a group on
/// purpose.
pub fn key_permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    let who = match (mode & 0o040 != 0, mode & 0o004 != 0) {
        (false, false) => return None,
        (true, false) => "its group",
        (false, true) => "every user of the host",
        (true, true) => "its group and every user of the host",
    };
    Some(format!(
        "private key {} has mode {mode:04o}: readable by {who}; run chmod 600 on it, unless a group \
         is meant to read it (a Vault or Nomad template rendering 0640 for a group is fine)",
        path.display()
    ))
}

/// Loads a private key: PKCS#8, PKCS#1 (RSA), SEC1 (EC), or passphrase-encrypted PKCS#8.
/// The file's bytes, the decrypted DER and the returned key are all wiped from memory when
/// dropped; a key file readable by group or others is logged as a warning.
pub fn load_key(
    path: &Path,
    passphrase: Option<&Secret>,
) -> Result<Zeroizing<PrivateKeyDer<'static>>, TlsLoadError> {
    if let Some(warning) = key_permission_warning(path) {
        tracing::warn!("{warning}");
    }
    let pem = Zeroizing::new(read_file("private key", path)?);
    let parse = |reason: String| TlsLoadError::Parse {
        what: "private key",
        path: path.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(&pem).map_err(|_| parse("not a PEM text file".into()))?;
    if let Some(start) = text.find(&format!("-----BEGIN {ENCRYPTED_PKCS8_LABEL}-----")) {
        let passphrase = passphrase.ok_or_else(|| TlsLoadError::PassphraseMissing(path.into()))?;
        let (label, document) =
            pkcs8::der::Document::from_pem(&text[start..]).map_err(|e| parse(e.to_string()))?;
        debug_assert_eq!(label, ENCRYPTED_PKCS8_LABEL);
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes())
            .map_err(|e| parse(e.to_string()))?;
        // A SecretDocument: wiped on drop, as is the copy handed back.
        let decrypted =
            info.decrypt(passphrase.expose().as_bytes())
                .map_err(|e| TlsLoadError::Decrypt {
                    path: path.into(),
                    reason: e.to_string(),
                })?;
        return Ok(Zeroizing::new(
            PrivatePkcs8KeyDer::from(decrypted.as_bytes().to_vec()).into(),
        ));
    }
    PrivateKeyDer::from_pem_slice(&pem)
        .map(Zeroizing::new)
        .map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                parse("no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section found".into())
            }
            other => parse(other.to_string()),
        })
}

/// Pairs a certificate chain with its key, checking that they match. rustls'
/// `with_single_cert`/`with_client_auth_cert` take the DER key by value and drop it without
/// wiping it; this borrows it instead, so the caller's [`Zeroizing`] copy is the only one.
fn certified_key(
    what: &'static str,
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsLoadError> {
    let config = |source| TlsLoadError::Config { what, source };
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(key).map_err(config)?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // As rustls does: a key whose public half cannot be derived is not a mismatch.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(source) => Err(config(source)),
    }
}

fn root_store(ca: Option<&Path>) -> Result<RootCertStore, TlsLoadError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_certs("CA bundle", path)? {
                roots.add(cert).map_err(|e| TlsLoadError::Parse {
                    what: "CA bundle",
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsLoadError::Parse {
                    what: "system trust store",
                    path: PathBuf::from("(system)"),
                    reason: "no CA certificates found; set --upstream-ca".into(),
                });
            }
        }
    }
    Ok(roots)
}

/// Builds the configuration the proxy uses to open mutual-TLS connections to brokers.
pub fn upstream_config(files: &UpstreamTlsFiles) -> Result<ClientConfig, TlsLoadError> {
    let roots = Arc::new(root_store(files.ca.as_deref())?);
    let certified = files
        .client
        .as_ref()
        .map(|client| {
            let chain = load_certs("client certificate", &client.cert)?;
            let passphrase = client
                .key_passphrase
                .as_ref()
                .map(Passphrase::read)
                .transpose()?;
            let key = load_key(&client.key, passphrase.as_ref())?;
            certified_key("client certificate and key (do they match?)", chain, &key)
        })
        .transpose()?;
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsLoadError::Config {
            what: "broker certificate verifier",
            source: rustls::Error::General(e.to_string()),
        })?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsLoadError::Config {
            what: "upstream TLS",
            source,
        })?
        .with_webpki_verifier(verifier);
    Ok(match certified {
        Some(certified) => {
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
        None => builder.with_no_client_auth(),
    })
}

/// Builds the configuration of the optional TLS listener clients connect to.
pub fn listener_config(files: &ListenerTlsFiles) -> Result<ServerConfig, TlsLoadError> {
    listener_config_with(files, None)
}

/// Whether a verified client certificate matches an identity: the rule the default listeners
/// apply inside the handshake when identities are chosen by certificate.
#[derive(Clone)]
pub struct ClientRule(pub Arc<dyn Fn(&CertificateDer<'_>) -> bool + Send + Sync>);

impl std::fmt::Debug for ClientRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientRule")
    }
}

/// Most certificate subjects whose refusals are counted separately; beyond it they share one
/// line, so that a flood of certificates cannot grow the table.
const MAX_REFUSED_SUBJECTS: usize = 1024;

/// How often a refused certificate is logged (with the count of refusals in between).
pub const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(60);

/// A WebPKI client verifier that also refuses, inside the handshake, a certificate that
/// matches no identity: the client gets an `access_denied` alert and reports an
/// authentication failure, as for a certificate from an unknown CA, instead of a handshake
/// that succeeds and a connection closed without a word (which clients retry forever).
#[derive(Debug)]
struct IdentityVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    rule: ClientRule,
    /// Subject → (last logged, refused since).
    refused: Mutex<HashMap<String, (Instant, u64)>>,
}

impl IdentityVerifier {
    /// Logs a refusal at most once per [`REFUSAL_LOG_PERIOD`] per subject, with a count.
    fn log_refusal(&self, cert: &CertificateDer<'_>) {
        metrics::counter!("kafka_proxy_identity_refusals_total").increment(1);
        let info = certificate_info(cert);
        let subject = info
            .as_ref()
            .map_or_else(|| "(unreadable)".to_owned(), |i| i.subject.clone());
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if refused.len() >= MAX_REFUSED_SUBJECTS && !refused.contains_key(&subject) {
            refused.retain(|_, (at, _)| now.duration_since(*at) < REFUSAL_LOG_PERIOD);
        }
        let key = if refused.len() >= MAX_REFUSED_SUBJECTS && !refused.contains_key(&subject) {
            "(other subjects)".to_owned()
        } else {
            subject
        };
        let first = !refused.contains_key(&key);
        let entry = refused.entry(key.clone()).or_insert((now, 0));
        entry.1 += 1;
        if first || now.duration_since(entry.0) >= REFUSAL_LOG_PERIOD {
            let count = entry.1;
            *entry = (now, 0);
            let names = info.map(|i| i.names).unwrap_or_default();
            tracing::warn!(
                subject = %key.escape_debug(),
                names = ?names,
                refused = count,
                "client refused in the TLS handshake (access_denied): its certificate matches no identity"
            );
        }
    }
}

impl ClientCertVerifier for IdentityVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if (self.rule.0)(end_entity) {
            Ok(verified)
        } else {
            self.log_refusal(end_entity);
            // rustls sends access_denied for this one.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// [`listener_config`], with client certificates that fail `rule` refused in the handshake.
pub fn listener_config_with(
    files: &ListenerTlsFiles,
    rule: Option<&ClientRule>,
) -> Result<ServerConfig, TlsLoadError> {
    let chain = load_certs("listener certificate", &files.cert)?;
    let key = load_key(&files.key, None)?;
    let certified = certified_key("listener certificate and key (do they match?)", chain, &key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsLoadError::Config {
            what: "listener TLS",
            source,
        })?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = Arc::new(root_store(Some(ca))?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsLoadError::Config {
                    what: "listener client verifier",
                    source: rustls::Error::General(e.to_string()),
                })?;
            match rule {
                Some(rule) => builder.with_client_cert_verifier(Arc::new(IdentityVerifier {
                    inner: verifier,
                    rule: rule.clone(),
                    refused: Mutex::new(HashMap::new()),
                })),
                None => builder.with_client_cert_verifier(verifier),
            }
        }
        None => builder.with_no_client_auth(),
    };
    Ok(builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified))))
}

/// How often certificate files are checked for changes.
pub const CERT_WATCH_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// The live TLS configurations. New connections take the current ones; [`TlsState::reload`]
/// swaps in new material without touching established connections.
#[derive(Debug)]
pub struct TlsState {
    /// The identity this material belongs to, for metrics and logs.
    identity: String,
    upstream_files: Option<UpstreamTlsFiles>,
    listener_files: Option<ListenerTlsFiles>,
    upstream: RwLock<Option<Arc<ClientConfig>>>,
    listener: RwLock<Option<Arc<ServerConfig>>>,
    /// The identity rule of the default listeners, when identities are chosen by certificate.
    client_rule: Option<ClientRule>,
    /// The default listeners' configuration with [`TlsState::client_rule`] in the handshake.
    listener_checked: RwLock<Option<Arc<ServerConfig>>>,
}

impl TlsState {
    /// Loads everything once; any error is fatal at start.
    pub fn load(
        upstream_files: Option<UpstreamTlsFiles>,
        listener_files: Option<ListenerTlsFiles>,
    ) -> Result<Self, TlsLoadError> {
        let upstream = upstream_files
            .as_ref()
            .map(upstream_config)
            .transpose()?
            .map(Arc::new);
        let listener = listener_files
            .as_ref()
            .map(listener_config)
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            identity: "default".into(),
            upstream_files,
            listener_files,
            upstream: RwLock::new(upstream),
            listener: RwLock::new(listener),
            client_rule: None,
            listener_checked: RwLock::new(None),
        })
    }

    /// Refuses, in the handshake of the default listeners, client certificates `rule` does not
    /// accept (identities chosen by certificate); the other listener sets keep accepting every
    /// verified certificate.
    pub fn with_client_rule(mut self, rule: ClientRule) -> Result<Self, TlsLoadError> {
        let checked = self
            .listener_files
            .as_ref()
            .map(|files| listener_config_with(files, Some(&rule)))
            .transpose()?
            .map(Arc::new);
        self.listener_checked = RwLock::new(checked);
        self.client_rule = Some(rule);
        Ok(self)
    }

    /// The configuration for the next client connection on the default listeners: with the
    /// identity rule in the handshake when there is one.
    pub fn default_listener(&self) -> Option<Arc<ServerConfig>> {
        let checked = self
            .listener_checked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        checked.or_else(|| self.listener())
    }

    /// The same material, labelled as another identity's in metrics and logs.
    pub fn named(mut self, identity: &str) -> Self {
        self.identity = identity.to_owned();
        self
    }

    /// The configuration for the next upstream connection; `None` when upstream is plaintext.
    pub fn upstream(&self) -> Option<Arc<ClientConfig>> {
        self.upstream
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration for the next client connection; `None` when listeners are plaintext.
    pub fn listener(&self) -> Option<Arc<ServerConfig>> {
        self.listener
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reloads certificates and keys from their files. On any error the old material stays
    /// in use and the error is returned for logging.
    pub fn reload(&self) -> Result<(), TlsLoadError> {
        let upstream = self
            .upstream_files
            .as_ref()
            .map(upstream_config)
            .transpose()?;
        let listener = self
            .listener_files
            .as_ref()
            .map(listener_config)
            .transpose()?;
        if let Some(config) = upstream {
            *self.upstream.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(config));
        }
        let checked = match (&self.listener_files, &self.client_rule) {
            (Some(files), Some(rule)) => Some(listener_config_with(files, Some(rule))?),
            _ => None,
        };
        if let Some(config) = listener {
            *self.listener.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(config));
        }
        if let Some(config) = checked {
            *self
                .listener_checked
                .write()
                .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(config));
        }
        Ok(())
    }

    /// The files whose changes should trigger a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(u) = &self.upstream_files {
            files.extend(u.ca.iter().cloned());
            if let Some(client) = &u.client {
                files.push(client.cert.clone());
                files.push(client.key.clone());
                if let Some(Passphrase::File(path)) = &client.key_passphrase {
                    files.push(path.clone());
                }
            }
        }
        if let Some(l) = &self.listener_files {
            files.push(l.cert.clone());
            files.push(l.key.clone());
            files.extend(l.client_ca.iter().cloned());
        }
        files
    }
}

/// A TLS failure, classified so that logs and metrics say what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// The broker's certificate is not signed by a trusted CA.
    UnknownCa,
    /// The broker's certificate has expired or is not yet valid.
    Expired,
    /// The broker's certificate is not valid for the name the proxy dialled.
    NameMismatch,
    /// The broker refused the proxy's client certificate.
    RejectedByPeer,
    /// Anything else (protocol versions, ciphers, a peer that is not speaking TLS, ...).
    Other,
}

impl TlsFailure {
    /// Label value for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::UnknownCa => "unknown_ca",
            TlsFailure::Expired => "certificate_expired",
            TlsFailure::NameMismatch => "name_mismatch",
            TlsFailure::RejectedByPeer => "client_certificate_rejected",
            TlsFailure::Other => "tls_handshake",
        }
    }

    /// What an operator should do about it.
    pub fn advice(self) -> &'static str {
        match self {
            TlsFailure::UnknownCa => {
                "the broker certificate is not signed by a CA in --upstream-ca (or the system roots)"
            }
            TlsFailure::Expired => {
                "the broker certificate is expired or not yet valid; check the clocks and the certificate"
            }
            TlsFailure::NameMismatch => {
                "the broker certificate does not name the host the cluster advertises; check --upstream and the broker's advertised.listeners"
            }
            TlsFailure::RejectedByPeer => {
                "the broker rejected the proxy's client certificate; check --client-cert is signed by a CA the cluster trusts and not expired"
            }
            TlsFailure::Other => "TLS handshake failed",
        }
    }

    /// Classifies the error a TLS handshake returned.
    pub fn classify(err: &std::io::Error) -> Self {
        use rustls::{AlertDescription, CertificateError, Error};
        let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
            return TlsFailure::Other;
        };
        match tls {
            Error::InvalidCertificate(cert) => match cert {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    TlsFailure::UnknownCa
                }
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsFailure::NameMismatch,
                _ => TlsFailure::Other,
            },
            Error::AlertReceived(
                AlertDescription::BadCertificate
                | AlertDescription::CertificateRequired
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateUnknown
                | AlertDescription::AccessDenied
                | AlertDescription::UnsupportedCertificate,
            ) => TlsFailure::RejectedByPeer,
            _ => TlsFailure::Other,
        }
    }
}

/// What an operator wants to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Not valid before, Unix seconds.
    pub not_before: i64,
    /// Not valid after, Unix seconds.
    pub not_after: i64,
    /// DNS names and IP addresses in the subject alternative names.
    pub names: Vec<String>,
}

/// The subject's common name of a DER certificate (the first, if several): what identities are
/// chosen by, and what Kafka's default principal builder makes the principal of.
pub fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// Reads subject, issuer, validity and names from a DER certificate.
pub fn certificate_info(der: &CertificateDer<'_>) -> Option<CertificateInfo> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => Some(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()),
                        16 => <[u8; 16]>::try_from(*ip)
                            .ok()
                            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        names,
    })
}

impl TlsState {
    /// Publishes the expiry time of the certificates in use as a gauge, so that an alert can
    /// fire weeks before a private-CA client certificate runs out.
    pub fn record_expiry(&self) {
        let record = |which: &'static str, path: &Path| {
            if let Some(info) = load_certs("certificate", path)
                .ok()
                .and_then(|chain| chain.first().and_then(certificate_info))
            {
                metrics::gauge!(
                    "kafka_proxy_certificate_expiry_timestamp_seconds",
                    "certificate" => which,
                    "identity" => self.identity.clone()
                )
                .set(info.not_after as f64);
            }
        };
        if let Some(client) = self.upstream_files.as_ref().and_then(|u| u.client.as_ref()) {
            record("client", &client.cert);
        }
        if let Some(l) = &self.listener_files {
            record("listener", &l.cert);
        }
    }

    /// Reloads whenever one of the files changes (checked every `period`), as well as on the
    /// SIGHUP that Nomad, systemd or an operator sends. A broken new file keeps the old
    /// material in use and is logged.
    pub async fn watch(self: Arc<Self>, period: std::time::Duration) {
        let stamp = |files: &[PathBuf]| -> Vec<Option<std::time::SystemTime>> {
            files
                .iter()
                .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
                .collect()
        };
        let files = self.watched_files();
        let mut last = stamp(&files);
        loop {
            tokio::time::sleep(period).await;
            let now = stamp(&files);
            if now == last {
                continue;
            }
            last = now;
            self.reload_and_log("certificate files changed");
        }
    }

    /// Reloads and logs the outcome; `why` says what triggered it.
    pub fn reload_and_log(&self, why: &str) {
        match self.reload() {
            Ok(()) => {
                self.record_expiry();
                tracing::info!(identity = %self.identity, "{why}: certificates and keys reloaded; new connections use them");
            }
            Err(e) => {
                metrics::counter!("kafka_proxy_tls_reload_failures_total", "identity" => self.identity.clone()).increment(1);
                tracing::error!(identity = %self.identity, error = %e, "{why}: reload failed; keeping the certificates in use");
            }
        }
    }
}

#[cfg(test)]
#[path = "tls_handshake_tests.rs"]
mod handshake_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(file: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("certs-dev")
            .join(file)
    }

    #[test]
    fn loads_every_key_format_and_rejects_mismatches() {
        assert!(load_key(&dev("admin.key"), None).is_ok());
        assert!(matches!(
            load_key(&dev("service-encrypted.key"), None),
            Err(TlsLoadError::PassphraseMissing(_))
        ));
        let wrong = Secret::new("nope".into());
        assert!(matches!(
            load_key(&dev("service-encrypted.key"), Some(&wrong)),
            Err(TlsLoadError::Decrypt { .. })
        ));
        let files = |key: &str| {
            UpstreamTlsFiles::mutual(Some(dev("ca.pem")), dev("admin.pem"), dev(key), None)
        };
        assert!(upstream_config(&files("admin.key")).is_ok());
        assert!(matches!(
            upstream_config(&files("service.key")),
            Err(TlsLoadError::Config { .. })
        ));
        let listener = |key: &str| ListenerTlsFiles {
            cert: dev("proxy-server.pem"),
            key: dev(key),
            client_ca: None,
        };
        assert!(listener_config(&listener("proxy-server.key")).is_ok());
        assert!(matches!(
            listener_config(&listener("admin.key")),
            Err(TlsLoadError::Config { .. })
        ));
        assert!(matches!(
            load_certs("certificate", &dev("admin.key")),
            Err(TlsLoadError::Parse { .. })
        ));
    }

    #[test]
    fn loads_pkcs1_and_sec1_keys() {
        let dir = std::env::temp_dir().join(format!("ktp-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let status = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .status()
                .expect("openssl is installed by tests/run");
            assert!(status.success(), "openssl {args:?}");
        };
        let admin_key = dev("admin.key");
        openssl(&[
            "rsa",
            "-in",
            admin_key.to_str().unwrap(),
            "-traditional",
            "-out",
            "pkcs1.key",
        ]);
        openssl(&[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "sec1.key",
        ]);
        let pkcs1 = std::fs::read_to_string(dir.join("pkcs1.key")).unwrap();
        assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));
        assert!(matches!(
            *load_key(&dir.join("pkcs1.key"), None).unwrap(),
            PrivateKeyDer::Pkcs1(_)
        ));
        let sec1 = std::fs::read_to_string(dir.join("sec1.key")).unwrap();
        assert!(sec1.contains("BEGIN EC PRIVATE KEY"));
        assert!(matches!(
            *load_key(&dir.join("sec1.key"), None).unwrap(),
            PrivateKeyDer::Sec1(_)
        ));
        // The PKCS#1 form of the admin key still matches the admin certificate.
        let files = UpstreamTlsFiles::mutual(
            Some(dev("ca.pem")),
            dev("admin.pem"),
            dir.join("pkcs1.key"),
            None,
        );
        assert!(upstream_config(&files).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Compiles only for types that wipe their memory when dropped.
    fn wiped_on_drop<T: ZeroizeOnDrop>(_: &T) {}

    #[test]
    fn passphrases_and_keys_are_wiped_on_drop() {
        let secret = Secret::new(std::fs::read_to_string(dev("service-encrypted.pass")).unwrap());
        wiped_on_drop(&secret);
        let passphrase = Passphrase::File(dev("service-encrypted.pass"))
            .read()
            .unwrap();
        wiped_on_drop(&passphrase);
        let key = load_key(&dev("service-encrypted.key"), Some(&passphrase)).unwrap();
        wiped_on_drop(&key);
        assert!(matches!(*key, PrivateKeyDer::Pkcs8(_)));
        wiped_on_drop(&load_key(&dev("admin.key"), None).unwrap());
    }

    #[test]
    fn key_files_readable_by_others_are_named_with_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ktp-key-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("client.key");
        std::fs::copy(dev("admin.key"), &key).unwrap();
        let chmod = |mode: u32| {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        for private in [0o600, 0o400, 0o700] {
            chmod(private);
            assert_eq!(key_permission_warning(&key), None, "{private:o}");
        }
        for (mode, who) in [
            (0o640, "readable by its group;"),
            (0o604, "readable by every user of the host;"),
            (0o644, "readable by its group and every user of the host;"),
        ] {
            chmod(mode);
            let warning = key_permission_warning(&key).expect("a warning");
            assert!(warning.contains(&key.display().to_string()), "{warning}");
            assert!(warning.contains(&format!("mode 0{mode:o}")), "{warning}");
            assert!(warning.contains(who), "{warning}");
            assert!(warning.contains("chmod 600"), "{warning}");
            assert!(warning.contains("Vault"), "{warning}");
        }
        // Still loads: a warning, not an error.
        assert!(load_key(&key, None).is_ok());
        assert_eq!(key_permission_warning(&dir.join("missing.key")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reload_reads_the_passphrase_file_again() {
        let dir = std::env::temp_dir().join(format!("ktp-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pass = dir.join("client.pass");
        let right = std::fs::read_to_string(dev("service-encrypted.pass")).unwrap();
        std::fs::write(&pass, &right).unwrap();
        let state = TlsState::load(
            Some(UpstreamTlsFiles::mutual(
                Some(dev("ca.pem")),
                dev("service.pem"),
                dev("service-encrypted.key"),
                Some(Passphrase::File(pass.clone())),
            )),
            None,
        )
        .expect("encrypted PKCS#8 with the passphrase from a file");
        assert!(state.watched_files().contains(&pass));
        let before = state.upstream().unwrap();
        std::fs::write(&pass, "wrong\n").unwrap();
        assert!(matches!(state.reload(), Err(TlsLoadError::Decrypt { .. })));
        assert!(
            Arc::ptr_eq(&before, &state.upstream().unwrap()),
            "old config kept"
        );
        std::fs::write(&pass, format!("{}\n", right.trim_end())).unwrap();
        state.reload().expect("reads the file again");
        assert!(
            !Arc::ptr_eq(&before, &state.upstream().unwrap()),
            "new config in use"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn certificate_info_reads_names_and_validity() {
        let chain = load_certs("certificate", &dev("proxy-server.pem")).unwrap();
        let info = certificate_info(&chain[0]).unwrap();
        assert!(info.subject.contains("CN="), "{info:?}");
        assert!(info.names.contains(&"localhost".to_owned()), "{info:?}");
        assert!(info.names.contains(&"127.0.0.1".to_owned()), "{info:?}");
        assert!(info.not_after > info.not_before);
    }

    #[test]
    fn tls_failures_are_classified_from_rustls_errors() {
        use rustls::{AlertDescription, CertificateError, Error};
        let io = |e: Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let cases = [
            (
                Error::InvalidCertificate(CertificateError::UnknownIssuer),
                TlsFailure::UnknownCa,
            ),
            (
                Error::InvalidCertificate(CertificateError::Expired),
                TlsFailure::Expired,
            ),
            (
                Error::InvalidCertificate(CertificateError::NotValidForName),
                TlsFailure::NameMismatch,
            ),
            (
                Error::AlertReceived(AlertDescription::CertificateUnknown),
                TlsFailure::RejectedByPeer,
            ),
            (
                Error::AlertReceived(AlertDescription::BadCertificate),
                TlsFailure::RejectedByPeer,
            ),
            (
                Error::AlertReceived(AlertDescription::ProtocolVersion),
                TlsFailure::Other,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(TlsFailure::classify(&io(error)), expected);
        }
        assert_eq!(
            TlsFailure::classify(&std::io::ErrorKind::ConnectionReset.into()),
            TlsFailure::Other
        );
    }
}
