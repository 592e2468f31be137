//! Connections to brokers: TCP connect, the mutual-TLS handshake with SNI and hostname
//! verification, the identity's SASL exchange when it uses one ([`crate::sasl`]), classified
//! failures with rate-limited logs, and the one request the proxy originates itself (Metadata,
//! to discover brokers).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::brokers::UpstreamAddr;
use crate::kafka::codec;
use crate::kafka::frame::{self, FrameReader, INITIAL_READ_CAPACITY, LENGTH_PREFIX};
use crate::kafka::wire::{self, WalkFn};
use crate::resolve::Resolver;
use crate::sasl::{self, SaslError, Session, UpstreamAuth};
use crate::tls::TlsFailure;

/// A byte stream that may or may not be TLS, on either side of the proxy.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS the proxy originated (to a broker).
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS the proxy terminated (from a client).
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => $e,
            Stream::Client($s) => $e,
            Stream::Server($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Client(s) => s.is_write_vectored(),
            Stream::Server(s) => s.is_write_vectored(),
        }
    }
}

/// Why the proxy could not open a connection to a broker.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed (refused, unreachable, name not resolved).
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// The broker.
        addr: UpstreamAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Connect plus handshake did not finish in time.
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The broker.
        addr: UpstreamAddr,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The host is not a valid TLS server name.
    #[error("{addr}: '{}' is not a valid TLS server name", addr.host)]
    InvalidName {
        /// The broker.
        addr: UpstreamAddr,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr} failed ({}): {source}; {}", failure.as_str(), failure.advice())]
    Tls {
        /// The broker.
        addr: UpstreamAddr,
        /// What kind of failure.
        failure: TlsFailure,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The SASL exchange after the TLS handshake failed.
    #[error("SASL authentication with {addr} failed: {source}")]
    Sasl {
        /// The broker.
        addr: UpstreamAddr,
        /// What failed.
        source: SaslError,
    },
}

impl UpstreamError {
    /// Metric label for the failure.
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::InvalidName { .. } => "invalid_name",
            UpstreamError::Tls { failure, .. } => failure.as_str(),
            UpstreamError::Sasl { source, .. } => source.reason(),
        }
    }
}

/// Opens a connection to a broker: TCP, then (unless `tls` is `None`) a TLS handshake that
/// sends SNI and verifies the certificate against `addr.host`.
/// Names resolve through `resolver`; a failed TCP connect (or a timeout) makes it forget the
/// name, so the next attempt looks it up again.
pub async fn connect(
    addr: &UpstreamAddr,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    resolver: &Resolver,
) -> Result<Stream, UpstreamError> {
    let attempt = async {
        let connected = match resolver.resolve(&addr.host, addr.port).await {
            Ok(addrs) => TcpStream::connect(&addrs[..]).await,
            Err(e) => Err(e),
        };
        let tcp = connected.map_err(|source| {
            resolver.forget(&addr.host, addr.port);
            UpstreamError::Connect {
                addr: addr.clone(),
                source,
            }
        })?;
        let _ = tcp.set_nodelay(true);
        let Some(config) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = ServerName::try_from(addr.host.clone())
            .map_err(|_| UpstreamError::InvalidName { addr: addr.clone() })?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|source| UpstreamError::Tls {
                addr: addr.clone(),
                failure: TlsFailure::classify(&source),
                source,
            })?;
        Ok(Stream::Client(Box::new(stream)))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            resolver.forget(&addr.host, addr.port);
            Err(UpstreamError::Timeout {
                addr: addr.clone(),
                timeout,
            })
        })
}

/// Opens a connection with [`connect`], then authenticates with `auth` (nothing more for
/// mutual TLS) before anything else is sent on it. Returns the SASL session, if any.
pub async fn open(
    addr: &UpstreamAddr,
    tls: Option<Arc<ClientConfig>>,
    auth: &UpstreamAuth,
    timeout: Duration,
    resolver: &Resolver,
) -> Result<(Stream, Option<Session>), UpstreamError> {
    let mut stream = connect(addr, tls, timeout, resolver).await?;
    let session = authenticate(&mut stream, auth, &addr.host, timeout)
        .await
        .map_err(|source| UpstreamError::Sasl {
            addr: addr.clone(),
            source,
        })?;
    Ok((stream, session))
}

/// Runs the SASL exchange of `auth` on a fresh connection to broker `host`, within `timeout`.
pub async fn authenticate(
    stream: &mut Stream,
    auth: &UpstreamAuth,
    host: &str,
    timeout: Duration,
) -> Result<Option<Session>, SaslError> {
    let mut transport = StreamTransport { stream, next_id: 1 };
    tokio::time::timeout(timeout, sasl::authenticate(&mut transport, auth, host))
        .await
        .unwrap_or_else(|_| {
            Err(SaslError::Transport(format!(
                "no answer within {timeout:?}"
            )))
        })
}

/// The SASL exchange on a connection nobody else uses yet: one request, one answer.
struct StreamTransport<'a> {
    stream: &'a mut Stream,
    next_id: i32,
}

impl sasl::Transport for StreamTransport<'_> {
    async fn round_trip<M: Message + Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &M,
    ) -> Result<Bytes, SaslError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let io = |e: std::io::Error| SaslError::Transport(e.to_string());
        let frame = codec::encode_request(key, version, id, request)
            .map_err(|e| SaslError::Protocol(e.to_string()))?;
        self.stream.write_all(&frame).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        let reader = FrameReader::new(sasl::MAX_SASL_RESPONSE_BYTES);
        let mut buf = BytesMut::with_capacity(INITIAL_READ_CAPACITY);
        let frame = loop {
            if let Some(frame) = reader
                .next_frame(&mut buf)
                .map_err(|e| SaslError::Protocol(e.to_string()))?
            {
                break frame.freeze();
            }
            reader.reserve_for_next_read(&mut buf, INITIAL_READ_CAPACITY);
            if self.stream.read_buf(&mut buf).await.map_err(io)? == 0 {
                return Err(SaslError::Transport(
                    "the broker closed the connection".into(),
                ));
            }
        };
        if !buf.is_empty() {
            return Err(SaslError::Protocol(
                "the broker sent more than one answer".into(),
            ));
        }
        let got = frame::response_correlation_id(&frame)
            .map_err(|e| SaslError::Protocol(e.to_string()))?;
        if got != id {
            return Err(SaslError::Protocol(format!(
                "answer carries correlation id {got}, expected {id}"
            )));
        }
        Ok(frame.slice(LENGTH_PREFIX..))
    }
}

/// Logs repeated failures of the same kind against the same broker at most once per period,
/// with the count of those suppressed in between: a broker with a bad certificate must not
/// flood the log with one line per client connection.
#[derive(Debug)]
pub struct FailureLog {
    period: Duration,
    /// (broker, reason) → (last logged, suppressed since).
    last: Mutex<HashMap<FailureKey, (Instant, u64)>>,
}

type FailureKey = (String, &'static str);

impl FailureLog {
    /// A limiter that lets one line per (broker, reason) through each `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Returns `Some(suppressed)` when this failure should be logged now.
    pub fn should_log(&self, broker: &str, reason: &'static str) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Bounded: past MAX_FAILURE_KEYS, keys quiet for a period are forgotten, and if that
        // is not enough, new keys share one line per reason.
        let mut key = (broker.to_owned(), reason);
        if last.len() >= MAX_FAILURE_KEYS && !last.contains_key(&key) {
            last.retain(|_, (at, _)| now.duration_since(*at) < self.period);
            if last.len() >= MAX_FAILURE_KEYS {
                key = ("(others)".to_owned(), reason);
            }
        }
        match last.get_mut(&key) {
            Some((at, suppressed)) if now.duration_since(*at) < self.period => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// Most distinct (source, reason) keys a [`FailureLog`] remembers.
pub const MAX_FAILURE_KEYS: usize = 1024;

/// Why the proxy's own Metadata request failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Reading or writing failed.
    #[error("request failed: {0}")]
    Io(#[from] std::io::Error),
    /// The answer was not a valid response.
    #[error("invalid response: {0}")]
    Decode(String),
    /// No answer in time.
    #[error("no response in time")]
    Timeout,
}

/// Metadata version the proxy asks with: v12 is served by every Kafka from 3.1 to 4.x.
const DISCOVERY_METADATA_VERSION: i16 = 12;

/// A broker as the cluster describes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredBroker {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if any.
    pub rack: Option<String>,
}

/// Largest answer the proxy accepts to its own requests (a Metadata answer without topics is
/// a few KiB even for the largest clusters).
const MAX_OWN_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Correlation id of the proxy's own requests (one at a time per connection).
const OWN_CORRELATION_ID: i32 = 1;

/// Sends one request the proxy originates and reads its response, on an open connection. The
/// answer is decoded through [`codec::decode_response`], so the same bounds checks apply to it
/// as to every response a client receives: a hostile or broken broker cannot make the proxy
/// allocate more than the answer's own size.
pub async fn exchange<Req, Resp>(
    stream: &mut Stream,
    key: ApiKey,
    version: i16,
    request: &Req,
    walk: WalkFn,
    timeout: Duration,
) -> Result<Resp, DiscoveryError>
where
    Req: Message + Encodable,
    Resp: Message + Decodable,
{
    let api_key = key as i16;
    let exchange = async {
        let frame = codec::encode_request(key, version, OWN_CORRELATION_ID, request)
            .map_err(|e| DiscoveryError::Decode(e.to_string()))?;
        stream.write_all(&frame).await?;
        stream.flush().await?;

        let reader = FrameReader::new(MAX_OWN_RESPONSE_BYTES);
        let mut buf = BytesMut::with_capacity(INITIAL_READ_CAPACITY);
        let frame = loop {
            if let Some(frame) = reader
                .next_frame(&mut buf)
                .map_err(|e| DiscoveryError::Decode(e.to_string()))?
            {
                break frame.freeze();
            }
            reader.reserve_for_next_read(&mut buf, INITIAL_READ_CAPACITY);
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(DiscoveryError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        let id = frame::response_correlation_id(&frame)
            .map_err(|e| DiscoveryError::Decode(e.to_string()))?;
        if id != OWN_CORRELATION_ID {
            return Err(DiscoveryError::Decode(format!(
                "answer carries correlation id {id}, expected {OWN_CORRELATION_ID}"
            )));
        }
        let payload = frame.slice(LENGTH_PREFIX..);
        let header_version = codec::response_header_version(api_key, version);
        codec::decode_response::<Resp>(api_key, version, header_version, &payload, walk)
            .map(|(_, msg)| msg)
            .map_err(|e| DiscoveryError::Decode(e.to_string()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(DiscoveryError::Timeout))
}

/// Asks a broker which API versions it serves, naming the proxy as the client software
/// (brokers reject names outside `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`).
pub async fn api_versions(
    stream: &mut Stream,
    timeout: Duration,
) -> Result<ApiVersionsResponse, DiscoveryError> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("kafka-tls-proxy"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let response: ApiVersionsResponse = exchange(
        stream,
        ApiKey::ApiVersions,
        3,
        &request,
        wire::api_versions,
        timeout,
    )
    .await?;
    if response.error_code != 0 {
        return Err(DiscoveryError::Decode(format!(
            "ApiVersions error code {}",
            response.error_code
        )));
    }
    Ok(response)
}

/// Asks a broker for the cluster's brokers (Metadata with an empty topic list) on an open
/// connection.
pub async fn discover(
    stream: &mut Stream,
    timeout: Duration,
) -> Result<Vec<DiscoveredBroker>, DiscoveryError> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![]))
        .with_allow_auto_topic_creation(false);
    let response: MetadataResponse = exchange(
        stream,
        ApiKey::Metadata,
        DISCOVERY_METADATA_VERSION,
        &request,
        wire::metadata,
        timeout,
    )
    .await?;
    Ok(response
        .brokers
        .into_iter()
        .map(|b| DiscoveredBroker {
            node_id: b.node_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.map(|r| r.to_string()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_log_suppresses_repeats_within_the_period() {
        let log = FailureLog::new(Duration::from_secs(3600));
        assert_eq!(log.should_log("b-1:9094", "unknown_ca"), Some(0));
        assert_eq!(log.should_log("b-1:9094", "unknown_ca"), None);
        assert_eq!(log.should_log("b-1:9094", "unknown_ca"), None);
        assert_eq!(log.should_log("b-2:9094", "unknown_ca"), Some(0));
        assert_eq!(log.should_log("b-1:9094", "name_mismatch"), Some(0));
        let log = FailureLog::new(Duration::ZERO);
        assert_eq!(log.should_log("b", "x"), Some(0));
        assert_eq!(log.should_log("b", "x"), Some(0));
    }

    #[tokio::test]
    async fn connect_failures_are_classified() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let addr = UpstreamAddr {
            host: "127.0.0.1".into(),
            port,
        };
        let err = connect(
            &addr,
            None,
            Duration::from_secs(5),
            &Resolver::new(Duration::ZERO),
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason(), "connect");
    }
}
