//! SASL towards the brokers: how an identity authenticates on each upstream connection
//! (mutual TLS, SCRAM-SHA-256/512 per RFC 5802 and RFC 7677, or Amazon MSK's AWS_MSK_IAM with
//! the payload of [`crate::aws_iam`], over Kafka's SaslHandshake v1 and SaslAuthenticate), the
//! exchange itself over any `Transport` (a fresh connection, or the
//! relay's request and response pumps when the session is renewed, KIP-368), and the answer a
//! client gets when it tries SASL with the proxy, which authenticates in its place.
//!
//! HMAC, PBKDF2, SHA-2 and the random nonce come from aws-lc-rs (already the TLS provider);
//! only the SCRAM message syntax is written here. The server's signature is checked, so a
//! man in the middle that does not know the password is detected even past TLS.
//! The password is read from its file at every exchange (a rotated file is used at the next
//! one, re-authentication included) and every copy of it and of the keys derived from it is
//! wiped when dropped.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use zeroize::Zeroizing;

use crate::aws_iam::{self, IamAuth};
use crate::kafka::codec;
use crate::kafka::frame::RequestHeader;
use crate::kafka::wire::{self, Walker, WireResult};

/// SaslHandshake version the proxy sends: v1 (the mechanism's bytes then travel in
/// SaslAuthenticate requests, not as raw frames).
const HANDSHAKE_VERSION: i16 = 1;
/// SaslAuthenticate version the proxy sends: v2 (flexible; v1+ carries the session lifetime).
const AUTHENTICATE_VERSION: i16 = 2;
/// The most PBKDF2 iterations the proxy accepts from a server: Kafka's own maximum. A hostile
/// server must not make each connection cost seconds of CPU.
const MAX_ITERATIONS: u32 = 16_384;
/// Kafka's minimum, and RFC 7677's recommendation.
const MIN_ITERATIONS: u32 = 4_096;
/// Largest SASL answer the proxy reads: SCRAM messages are a few hundred bytes.
pub const MAX_SASL_RESPONSE_BYTES: usize = 64 * 1024;
/// When in a granted session the proxy re-authenticates: at 85 % of its lifetime, as the Java
/// client does (between 85 and 95 %), which leaves the exchange ample time.
const REAUTH_FRACTION: f64 = 0.85;
/// Kafka's error code for a mechanism the broker does not enable.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka's error code for SASL in the wrong state.
const ILLEGAL_SASL_STATE: i16 = 34;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// SCRAM-SHA-256.
    ScramSha256,
    /// SCRAM-SHA-512 (the only one Amazon MSK offers).
    ScramSha512,
}

impl Mechanism {
    /// The name the broker knows it by.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::ScramSha256 => hmac::HMAC_SHA256,
            Mechanism::ScramSha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::ScramSha256 => &digest::SHA256,
            Mechanism::ScramSha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::ScramSha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::ScramSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn output_len(self) -> usize {
        self.digest().output_len()
    }
}

/// A SCRAM user: who, with which mechanism, and where its password is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The SCRAM user name.
    pub username: String,
    /// The file holding the password (trailing newline ignored), read at every exchange.
    pub password_file: PathBuf,
}

/// How an identity authenticates to the brokers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UpstreamAuth {
    /// Mutual TLS: the client certificate is the identity (no SASL).
    #[default]
    Mtls,
    /// SASL/SCRAM after the TLS handshake.
    Scram(ScramCredentials),
    /// AWS_MSK_IAM after the TLS handshake: AWS credentials sign each exchange.
    AwsMskIam(IamAuth),
}

impl UpstreamAuth {
    /// The name of the setting's value (`mtls`, `scram-sha-512`, `aws-msk-iam`…).
    pub fn name(&self) -> &'static str {
        match self {
            UpstreamAuth::Mtls => "mtls",
            UpstreamAuth::Scram(c) => match c.mechanism {
                Mechanism::ScramSha256 => "scram-sha-256",
                Mechanism::ScramSha512 => "scram-sha-512",
            },
            UpstreamAuth::AwsMskIam(_) => "aws-msk-iam",
        }
    }

    /// The kind of broker listener this authentication needs (MSK has one port per kind):
    /// every identity of one proxy must need the same one.
    pub fn listener_kind(&self) -> &'static str {
        match self {
            UpstreamAuth::Mtls => "mutual TLS (MSK port 9094)",
            UpstreamAuth::Scram(_) => "SASL/SCRAM (MSK port 9096)",
            UpstreamAuth::AwsMskIam(_) => "IAM (MSK port 9098)",
        }
    }

    /// True when a SASL exchange follows the TLS handshake.
    pub fn is_sasl(&self) -> bool {
        !matches!(self, UpstreamAuth::Mtls)
    }
}

/// What `--upstream-auth` names, before its credentials are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// `mtls`.
    Mtls,
    /// `scram-sha-256` or `scram-sha-512`.
    Scram(Mechanism),
    /// `aws-msk-iam`.
    AwsMskIam,
}

/// Parses the `--upstream-auth` value.
pub fn parse_kind(value: &str) -> Result<AuthKind, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "mtls" => Ok(AuthKind::Mtls),
        "scram-sha-256" => Ok(AuthKind::Scram(Mechanism::ScramSha256)),
        "scram-sha-512" => Ok(AuthKind::Scram(Mechanism::ScramSha512)),
        "aws-msk-iam" => Ok(AuthKind::AwsMskIam),
        other => Err(format!(
            "'{other}' is not one of mtls, scram-sha-256, scram-sha-512, aws-msk-iam"
        )),
    }
}

/// What to check when SCRAM credentials are refused.
const SCRAM_REFUSED: &str = "check --sasl-username and the password in --sasl-password-file (and that the SCRAM user exists)";
/// What to check when IAM authentication is refused.
pub const IAM_REFUSED: &str = "check that the role the proxy's AWS credentials belong to may kafka-cluster:Connect to this cluster (its IAM policy), that --aws-region is the cluster's region, and that the machine's clock is right";

/// Why a SASL exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    /// No AWS credentials, or the payload could not be signed.
    #[error("{0}")]
    Iam(#[from] aws_iam::IamError),
    /// The password file could not be read.
    #[error("cannot read the SASL password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The broker does not enable the mechanism.
    #[error("the broker does not enable {mechanism} on this listener (it offers {offered}); check --upstream-auth and that --upstream is the port for it (MSK: 9096 for SCRAM, 9098 for IAM)")]
    Mechanism {
        /// The mechanism asked for.
        mechanism: &'static str,
        /// What the broker offers.
        offered: String,
    },
    /// The broker refused the credentials (or the exchange) with an error code and message.
    #[error("the broker refused SASL authentication (error {code}): {message}; {advice}")]
    Refused {
        /// Kafka error code.
        code: i16,
        /// The broker's error message (escaped by the log writer).
        message: String,
        /// What to check, for the mechanism used.
        advice: &'static str,
    },
    /// The server's SASL messages are malformed or do not match the exchange.
    #[error("invalid SASL exchange: {0}")]
    Protocol(String),
    /// The server's final signature is wrong: it does not know the password.
    #[error("the broker's SCRAM signature is wrong: it does not know this user's password (a man in the middle?)")]
    ServerSignature,
    /// Writing or reading failed, or the answer did not come in time.
    #[error("{0}")]
    Transport(String),
}

impl SaslError {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            SaslError::Iam(aws_iam::IamError::Credentials(_)) => "sasl_credentials",
            SaslError::Iam(_) => "sasl_protocol",
            SaslError::PasswordFile { .. } => "sasl_password_file",
            SaslError::Mechanism { .. } => "sasl_mechanism",
            SaslError::Refused { .. } => "sasl_refused",
            SaslError::Protocol(_) | SaslError::ServerSignature => "sasl_protocol",
            SaslError::Transport(_) => "sasl_transport",
        }
    }
}

/// One request/response round trip of the exchange. The transport numbers the request with
/// its own correlation id and returns the response payload (without length prefix), whose
/// correlation id it has checked.
pub(crate) trait Transport {
    /// Sends `request` (api key `key` at `version`) and returns the answer's payload.
    async fn round_trip<M: Message + Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &M,
    ) -> Result<Bytes, SaslError>;
}

/// A completed authentication: how long the broker grants it.
#[derive(Debug, Clone)]
pub struct Session {
    /// When the final request was sent (KIP-368: the lifetime counts from there, at the latest).
    pub started: Instant,
    /// The granted lifetime; `None` when the broker does not expire sessions.
    pub lifetime: Option<Duration>,
    /// The broker's name, which the renewal signs again (AWS_MSK_IAM).
    pub host: Arc<str>,
}

impl Session {
    /// When to re-authenticate, if the session expires.
    pub fn renew_at(&self) -> Option<Instant> {
        self.lifetime
            .map(|l| self.started + l.mul_f64(REAUTH_FRACTION))
    }
}

fn decode<M: Message + Decodable>(
    key: ApiKey,
    version: i16,
    payload: &Bytes,
    walk: wire::WalkFn,
) -> Result<M, SaslError> {
    let api_key = key as i16;
    let header_version = codec::response_header_version(api_key, version);
    codec::decode_response::<M>(api_key, version, header_version, payload, walk)
        .map(|(_, m)| m)
        .map_err(|e| SaslError::Protocol(e.to_string()))
}

/// Bounds-checks a SaslHandshake response body before it is decoded.
fn walk_handshake(w: &mut Walker<'_>, _version: i16) -> WireResult<bool> {
    w.skip(2)?;
    for _ in 0..w.array(false)? {
        w.string(false)?;
    }
    w.end()?;
    Ok(false)
}

/// Bounds-checks a SaslAuthenticate response body before it is decoded.
fn walk_authenticate(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    let flex = wire::flexible(ApiKey::SaslAuthenticate, version);
    w.skip(2)?;
    w.nullable_text(flex)?;
    w.bytes(flex)?;
    if version >= 1 {
        w.skip(8)?;
    }
    if flex {
        w.tagged()?;
    }
    w.end()?;
    Ok(false)
}

/// Runs the whole exchange for `auth` over `transport` to the broker named `host` (nothing for
/// mutual TLS).
pub(crate) async fn authenticate<T: Transport>(
    transport: &mut T,
    auth: &UpstreamAuth,
    host: &str,
) -> Result<Option<Session>, SaslError> {
    match auth {
        UpstreamAuth::Mtls => Ok(None),
        UpstreamAuth::Scram(credentials) => scram(transport, credentials, host).await.map(Some),
        UpstreamAuth::AwsMskIam(iam) => aws_msk_iam(transport, iam, host).await.map(Some),
    }
}

/// SaslHandshake v1 for `mechanism`: the broker must enable it.
async fn handshake<T: Transport>(
    transport: &mut T,
    mechanism: &'static str,
) -> Result<(), SaslError> {
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    let payload = transport
        .round_trip(ApiKey::SaslHandshake, HANDSHAKE_VERSION, &handshake)
        .await?;
    let answer: SaslHandshakeResponse = decode(
        ApiKey::SaslHandshake,
        HANDSHAKE_VERSION,
        &payload,
        walk_handshake,
    )?;
    if answer.error_code != 0 {
        let offered: Vec<String> = answer.mechanisms.iter().map(|m| m.to_string()).collect();
        return Err(SaslError::Mechanism {
            mechanism,
            offered: crate::logs::bounded(offered).join(", "),
        });
    }
    Ok(())
}

/// The granted lifetime of a final SaslAuthenticate answer (`None`: no expiry).
fn lifetime(answer: &SaslAuthenticateResponse) -> Option<Duration> {
    u64::try_from(answer.session_lifetime_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// The AWS_MSK_IAM exchange: one SaslAuthenticate carrying the signed payload, signed with
/// the credentials current now (fetched again before they expire).
async fn aws_msk_iam<T: Transport>(
    transport: &mut T,
    iam: &IamAuth,
    host: &str,
) -> Result<Session, SaslError> {
    // Credentials first: without them there is nothing to say to the broker.
    let credentials = iam.credentials.credentials().await?;
    handshake(transport, aws_iam::MECHANISM).await?;
    let payload = aws_iam::payload(
        &credentials,
        host,
        &iam.region,
        std::time::SystemTime::now(),
    )?;
    drop(credentials);
    let started = Instant::now();
    let answer = authenticate_round(transport, payload, IAM_REFUSED).await?;
    let request_id = aws_iam::check_answer(&answer.auth_bytes).map_err(SaslError::Protocol)?;
    tracing::debug!(request_id, "AWS_MSK_IAM authentication accepted");
    Ok(Session {
        started,
        lifetime: lifetime(&answer),
        host: host.into(),
    })
}

async fn authenticate_round<T: Transport>(
    transport: &mut T,
    bytes: Vec<u8>,
    advice: &'static str,
) -> Result<SaslAuthenticateResponse, SaslError> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
    let payload = transport
        .round_trip(ApiKey::SaslAuthenticate, AUTHENTICATE_VERSION, &request)
        .await?;
    let response: SaslAuthenticateResponse = decode(
        ApiKey::SaslAuthenticate,
        AUTHENTICATE_VERSION,
        &payload,
        walk_authenticate,
    )?;
    if response.error_code != 0 {
        return Err(SaslError::Refused {
            code: response.error_code,
            message: response
                .error_message
                .as_ref()
                .map_or_else(|| "(no message)".to_owned(), |m| m.to_string()),
            advice,
        });
    }
    Ok(response)
}

/// The SCRAM exchange (RFC 5802 §3, without channel binding: `n,,`).
async fn scram<T: Transport>(
    transport: &mut T,
    credentials: &ScramCredentials,
    host: &str,
) -> Result<Session, SaslError> {
    let mechanism = credentials.mechanism;
    let password = read_password(&credentials.password_file)?;

    handshake(transport, mechanism.name()).await?;

    let mut scram = ScramClient::new(mechanism, &credentials.username)?;
    let server_first = authenticate_round(transport, scram.client_first(), SCRAM_REFUSED).await?;
    let client_final = scram.client_final(&password, &server_first.auth_bytes)?;
    let started = Instant::now();
    let server_final = authenticate_round(transport, client_final, SCRAM_REFUSED).await?;
    scram.verify_server_final(&server_final.auth_bytes)?;
    Ok(Session {
        started,
        lifetime: lifetime(&server_final),
        host: host.into(),
    })
}

fn read_password(path: &std::path::Path) -> Result<Zeroizing<String>, SaslError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        SaslError::PasswordFile {
            path: path.to_owned(),
            source,
        }
    })?);
    Ok(Zeroizing::new(
        text.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

/// The client side of one SCRAM exchange.
struct ScramClient {
    mechanism: Mechanism,
    /// `n=user,r=nonce`.
    client_first_bare: String,
    nonce: String,
    /// HMAC(SaltedPassword, "Server Key") and the AuthMessage, for the server's signature.
    expected: Option<(Zeroizing<Vec<u8>>, String)>,
}

impl ScramClient {
    fn new(mechanism: Mechanism, username: &str) -> Result<Self, SaslError> {
        let mut raw = [0u8; 24];
        aws_lc_rs::rand::fill(&mut raw)
            .map_err(|_| SaslError::Protocol("no random bytes for the nonce".into()))?;
        let nonce = BASE64.encode(raw);
        Ok(Self::with_nonce(mechanism, username, nonce))
    }

    fn with_nonce(mechanism: Mechanism, username: &str, nonce: String) -> Self {
        // RFC 5802 saslname: ',' and '=' escaped.
        let user = username.replace('=', "=3D").replace(',', "=2C");
        Self {
            mechanism,
            client_first_bare: format!("n={user},r={nonce}"),
            nonce,
            expected: None,
        }
    }

    fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Checks the server-first message and computes the client-final one.
    fn client_final(&mut self, password: &str, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        let bad = |what: &str| SaslError::Protocol(format!("server-first-message: {what}"));
        let server_first = std::str::from_utf8(server_first).map_err(|_| bad("not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attribute in server_first.split(',') {
            match attribute.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(("m", _)) => return Err(bad("mandatory extension not supported")),
                Some(("e", v)) => {
                    return Err(SaslError::Refused {
                        code: 0,
                        message: v.to_owned(),
                        advice: SCRAM_REFUSED,
                    })
                }
                _ => {}
            }
        }
        let nonce = nonce.ok_or_else(|| bad("no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(bad("the nonce does not extend the client's"));
        }
        if !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(bad("the nonce has characters outside printable ASCII"));
        }
        let salt = BASE64
            .decode(salt.ok_or_else(|| bad("no salt"))?)
            .map_err(|_| bad("the salt is not base64"))?;
        let iterations: u32 = iterations
            .ok_or_else(|| bad("no iteration count"))?
            .parse()
            .map_err(|_| bad("the iteration count is not a number"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(bad(&format!(
                "iteration count {iterations} outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
            )));
        }
        let iterations = NonZeroU32::new(iterations).ok_or_else(|| bad("zero iterations"))?;

        let m = self.mechanism;
        let mut salted = Zeroizing::new(vec![0u8; m.output_len()]);
        pbkdf2::derive(
            m.pbkdf2(),
            iterations,
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let salted_key = hmac::Key::new(m.hmac(), &salted);
        let client_key = Zeroizing::new(hmac::sign(&salted_key, b"Client Key").as_ref().to_vec());
        let server_key = Zeroizing::new(hmac::sign(&salted_key, b"Server Key").as_ref().to_vec());
        let stored_key = digest::digest(m.digest(), &client_key);

        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac::sign(
            &hmac::Key::new(m.hmac(), stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Zeroizing<Vec<u8>> = Zeroizing::new(
            client_key
                .iter()
                .zip(signature.as_ref())
                .map(|(k, s)| k ^ s)
                .collect(),
        );
        self.expected = Some((server_key, auth_message));
        Ok(format!("{without_proof},p={}", BASE64.encode(&*proof)).into_bytes())
    }

    /// Checks the server's signature (constant time).
    fn verify_server_final(&self, server_final: &[u8]) -> Result<(), SaslError> {
        let bad = |what: &str| SaslError::Protocol(format!("server-final-message: {what}"));
        let text = std::str::from_utf8(server_final).map_err(|_| bad("not UTF-8"))?;
        let (server_key, auth_message) = self
            .expected
            .as_ref()
            .ok_or_else(|| bad("before the client-final message"))?;
        let mut verifier = None;
        for attribute in text.split(',') {
            match attribute.split_once('=') {
                Some(("e", v)) => {
                    return Err(SaslError::Refused {
                        code: 0,
                        message: v.to_owned(),
                        advice: SCRAM_REFUSED,
                    })
                }
                Some(("v", v)) => verifier = Some(v),
                _ => {}
            }
        }
        let verifier = BASE64
            .decode(verifier.ok_or_else(|| bad("no verifier"))?)
            .map_err(|_| bad("the verifier is not base64"))?;
        let key = hmac::Key::new(self.mechanism.hmac(), server_key);
        hmac::verify(&key, auth_message.as_bytes(), &verifier)
            .map_err(|_| SaslError::ServerSignature)
    }
}

/// True for SaslHandshake and SaslAuthenticate, which the proxy answers itself.
pub fn is_sasl(api_key: i16) -> bool {
    api_key == ApiKey::SaslHandshake as i16 || api_key == ApiKey::SaslAuthenticate as i16
}

/// Why the proxy answers a client's SASL request itself.
pub const CLIENT_SASL_MESSAGE: &str = "kafka-tls-proxy authenticates to the cluster itself: configure this client without SASL (security.protocol PLAINTEXT, or SSL on a TLS listener)";

/// The answer to a client's SaslHandshake (UNSUPPORTED_SASL_MECHANISM, no mechanism offered)
/// or SaslAuthenticate (ILLEGAL_SASL_STATE with [`CLIENT_SASL_MESSAGE`]): the proxy never
/// relays a client's SASL, since it authenticates upstream itself. `None` for other APIs, or
/// a version the protocol library cannot encode (the connection then closes).
pub fn client_answer(header: &RequestHeader) -> Option<Option<Bytes>> {
    let (key, version) = (header.api_key, header.api_version);
    let frame = |api_key: ApiKey, body: &dyn Fn(&mut bytes::BytesMut) -> bool| {
        let mut out = bytes::BytesMut::new();
        let mut head = bytes::BytesMut::new();
        let ok = kafka_protocol::messages::ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(
                &mut head,
                codec::response_header_version(api_key as i16, version),
            )
            .is_ok()
            && body(&mut out);
        ok.then(|| {
            let mut frame = bytes::BytesMut::with_capacity(4 + head.len() + out.len());
            frame.extend_from_slice(&((head.len() + out.len()) as i32).to_be_bytes());
            frame.extend_from_slice(&head);
            frame.extend_from_slice(&out);
            frame.freeze()
        })
    };
    if key == ApiKey::SaslHandshake as i16 {
        if !(SaslHandshakeResponse::VERSIONS.min..=SaslHandshakeResponse::VERSIONS.max)
            .contains(&version)
        {
            return Some(None);
        }
        let response = SaslHandshakeResponse::default().with_error_code(UNSUPPORTED_SASL_MECHANISM);
        Some(frame(ApiKey::SaslHandshake, &|out| {
            response.encode(out, version).is_ok()
        }))
    } else if key == ApiKey::SaslAuthenticate as i16 {
        if !(SaslAuthenticateResponse::VERSIONS.min..=SaslAuthenticateResponse::VERSIONS.max)
            .contains(&version)
        {
            return Some(None);
        }
        let response = SaslAuthenticateResponse::default()
            .with_error_code(ILLEGAL_SASL_STATE)
            .with_error_message(Some(StrBytes::from_static_str(CLIENT_SASL_MESSAGE)));
        Some(frame(ApiKey::SaslAuthenticate, &|out| {
            response.encode(out, version).is_ok()
        }))
    } else {
        None
    }
}

#[cfg(test)]
#[path = "sasl_tests.rs"]
mod tests;
