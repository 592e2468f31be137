//! One client connection and its upstream connection.
//!
//! Two pumps run side by side in one task:
//! - the request pump reads client frames, peeks at each header (api key, version,
//!   correlation id, Produce acks), gives each request a correlation id of the proxy's own,
//!   records what response to expect, and forwards the bytes otherwise exactly as read,
//!   several frames per write;
//! - the response pump reads broker frames, pairs each with the request it answers (brokers
//!   answer in order per connection, and the response must carry the proxy's id for that
//!   request: the ids a client chooses never decide how a response is read), puts the client's
//!   id back, and rewrites only those that carry broker addresses.
//!
//! On shutdown the request pump stops reading, the response pump delivers what is still in
//! flight (bounded by the drain timeout), and the connection closes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};

use crate::brokers::Lookup;
use crate::kafka::frame::{self, FrameError, FrameReader, INITIAL_READ_CAPACITY};
use crate::kafka::rewrite::{self, RewriteError};
use crate::kafka::{self, versions};
use crate::kafka::{AddressMapper, Advertised, MapError};
use crate::server::Shared;
use crate::upstream::Stream;

/// Requests a client may have in flight on one connection before the proxy stops reading
/// more from it (Kafka clients default to 5; this leaves ample room).
const MAX_IN_FLIGHT: usize = 1024;

/// ApiVersions, the one request the proxy may answer itself.
const API_VERSIONS_KEY: i16 = 18;

/// Why a connection ended abnormally. Logged once, with the connection's span.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The client sent something that is not a valid frame.
    #[error("client: {0}")]
    ClientFrame(FrameError),
    /// The broker sent something that is not a valid frame.
    #[error("broker: {0}")]
    BrokerFrame(FrameError),
    /// The client asked for a version of an address-carrying API that the proxy cannot
    /// decode (the capped ApiVersions answer never offered it).
    #[error("client sent api key {api_key} v{version}, whose response the proxy cannot inspect")]
    UnsupportedVersion {
        /// The api key.
        api_key: i16,
        /// The version.
        version: i16,
    },
    /// A response arrived that answers no outstanding request, or out of order. The proxy
    /// numbers the requests it forwards, so this means the broker broke the protocol.
    #[error("broker answered proxy correlation id {got}, expected {expected:?}")]
    Unexpected {
        /// The response's correlation id.
        got: i32,
        /// The id the oldest outstanding request carries, if any.
        expected: Option<i32>,
    },
    /// A response carrying broker addresses could not be rewritten; forwarding it would leak
    /// an upstream address, so the connection closes instead.
    #[error("cannot rewrite {api} v{version} response: {source}")]
    Rewrite {
        /// API name.
        api: String,
        /// API version.
        version: i16,
        /// What failed.
        source: RewriteError,
    },
    /// Reading from or writing to the client failed.
    #[error("client I/O: {0}")]
    ClientIo(std::io::Error),
    /// Reading from or writing to the broker failed.
    #[error("broker I/O: {0}")]
    BrokerIo(std::io::Error),
}

/// What the response pump expects next.
#[derive(Debug)]
enum Expected {
    /// A broker response to this request.
    Response {
        /// The correlation id the client chose; restored in the response.
        client_id: i32,
        /// The correlation id the proxy gave the request upstream; the response must carry it.
        proxy_id: i32,
        api_key: i16,
        api_version: i16,
        sent: Instant,
    },
    /// A response the proxy makes itself, delivered in order with the others.
    Local(Bytes),
}

/// Maps addresses through the shared broker table, read-only: a response on a client
/// connection never changes what other clients are relayed to.
pub(crate) struct Mapper<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    /// Set when the response names a known node at another upstream address than the table.
    differs: bool,
}

impl AddressMapper for Mapper<'_> {
    fn map_broker(&mut self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError> {
        match self.shared.registry.lookup(node_id, host, port) {
            Lookup::Known(advertised) => Ok(advertised),
            Lookup::Differs(advertised) => {
                self.differs = true;
                Ok(advertised)
            }
            Lookup::Unknown => Err(MapError { node_id }),
        }
    }

    fn map_controller(&mut self, _node_id: i32, _host: &str, _port: i32) -> Advertised {
        Advertised {
            host: self.shared.registry.advertised_host().clone(),
            port: 0,
        }
    }
}

/// Relays between a client and a broker until either side closes, an error occurs, or
/// shutdown has drained the in-flight requests.
pub async fn relay(
    shared: Arc<Shared>,
    client: Stream,
    upstream: Stream,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let (expect_tx, expect_rx) = mpsc::channel(MAX_IN_FLIGHT);

    let requests = request_pump(
        &shared,
        client_read,
        upstream_write,
        expect_tx,
        &mut shutdown,
    );
    let responses = response_pump(&shared, upstream_read, client_write, expect_rx);
    tokio::pin!(requests, responses);
    tokio::select! {
        result = &mut requests => {
            // The client closed, or shutdown began: deliver what is in flight, then stop.
            result?;
            match tokio::time::timeout(shared.settings.drain_timeout, responses).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!("drain timeout: closing with requests still in flight");
                    Ok(())
                }
            }
        }
        result = &mut responses => result,
    }
}

async fn request_pump<R, W>(
    shared: &Arc<Shared>,
    mut client: ReadHalf<R>,
    mut upstream: WriteHalf<W>,
    expect: mpsc::Sender<Expected>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + AsyncWrite,
    W: AsyncRead + AsyncWrite,
{
    let reader = FrameReader::new(shared.settings.max_request_bytes);
    let mut buf = BytesMut::with_capacity(INITIAL_READ_CAPACITY);
    // The proxy numbers requests itself; the client's ids only come back in its responses.
    let mut next_id: i32 = 0;
    loop {
        reader.reserve_for_next_read(&mut buf);
        let read = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            read = client.read_buf(&mut buf) => read.map_err(ConnectionError::ClientIo)?,
        };
        if read == 0 {
            return Ok(());
        }
        shared.bytes_from_clients.increment(read as u64);
        let mut chunk = match reader.next_chunk(&mut buf) {
            Ok(Some(chunk)) => chunk,
            Ok(None) => continue,
            Err(e) => {
                crate::admin::frame_rejected("request_too_large");
                return Err(ConnectionError::ClientFrame(e));
            }
        };
        // Everything complete goes upstream in one write, exactly as read except for the
        // correlation ids, and except requests the proxy answers itself.
        let mut run_start = 0;
        let mut offset = 0;
        while let Some(range) = frame::frame_at(&chunk, offset) {
            offset = range.end;
            let frame = &chunk[range.clone()];
            let header = frame::request_header(frame).map_err(|e| {
                crate::admin::frame_rejected("request_malformed");
                ConnectionError::ClientFrame(e)
            })?;
            shared.api_metrics.request(header.api_key);
            if header.api_key == API_VERSIONS_KEY && header.api_version > versions::API_VERSIONS_MAX
            {
                // Answer like a broker that does not know this version; the client retries
                // with one the proxy can decode.
                upstream
                    .write_all(&chunk[run_start..range.start])
                    .await
                    .map_err(ConnectionError::BrokerIo)?;
                run_start = range.end;
                let answer = versions::unsupported_api_versions_response(header.correlation_id);
                send_expectation(&expect, Expected::Local(answer)).await?;
                continue;
            }
            if !kafka::relayable(header.api_key, header.api_version) {
                crate::admin::frame_rejected("request_version");
                return Err(ConnectionError::UnsupportedVersion {
                    api_key: header.api_key,
                    version: header.api_version,
                });
            }
            let expects = frame::expects_response(&header, frame).map_err(|e| {
                crate::admin::frame_rejected("request_malformed");
                ConnectionError::ClientFrame(e)
            })?;
            let proxy_id = next_id;
            next_id = next_id.wrapping_add(1);
            frame::set_request_correlation_id(&mut chunk[range], proxy_id);
            if expects {
                send_expectation(
                    &expect,
                    Expected::Response {
                        client_id: header.correlation_id,
                        proxy_id,
                        api_key: header.api_key,
                        api_version: header.api_version,
                        sent: Instant::now(),
                    },
                )
                .await?;
            }
        }
        upstream
            .write_all(&chunk[run_start..])
            .await
            .map_err(ConnectionError::BrokerIo)?;
        upstream.flush().await.map_err(ConnectionError::BrokerIo)?;
    }
}

async fn send_expectation(
    expect: &mpsc::Sender<Expected>,
    expected: Expected,
) -> Result<(), ConnectionError> {
    // The response pump only goes away after a broker error, which it reports itself.
    expect
        .send(expected)
        .await
        .map_err(|_| ConnectionError::BrokerIo(std::io::ErrorKind::BrokenPipe.into()))
}

/// Writes the proxy's own answers that are due at the head of the queue.
async fn deliver_local<W: AsyncRead + AsyncWrite>(
    client: &mut WriteHalf<W>,
    pending: &mut VecDeque<Expected>,
) -> Result<bool, ConnectionError> {
    let mut wrote = false;
    while let Some(Expected::Local(_)) = pending.front() {
        if let Some(Expected::Local(answer)) = pending.pop_front() {
            client
                .write_all(&answer)
                .await
                .map_err(ConnectionError::ClientIo)?;
            wrote = true;
        }
    }
    Ok(wrote)
}

/// Pairs a response with the oldest outstanding request: the response must carry the id the
/// proxy gave that request. Returns the request's client id, api key and version.
fn pair(
    shared: &Shared,
    pending: &mut VecDeque<Expected>,
    proxy_id: i32,
) -> Result<(i32, i16, i16), ConnectionError> {
    match pending.front() {
        Some(Expected::Response {
            client_id,
            proxy_id: expected,
            api_key,
            api_version,
            sent,
        }) if *expected == proxy_id => {
            shared.api_metrics.response(*api_key, sent.elapsed());
            let paired = (*client_id, *api_key, *api_version);
            pending.pop_front();
            Ok(paired)
        }
        other => {
            crate::admin::frame_rejected("response_unpaired");
            Err(ConnectionError::Unexpected {
                got: proxy_id,
                expected: match other {
                    Some(Expected::Response { proxy_id, .. }) => Some(*proxy_id),
                    _ => None,
                },
            })
        }
    }
}

/// Inspects one response whose request [`kafka::needs_inspection`] selected. A response that
/// names a broker the table does not know is held until the proxy's own Metadata request has
/// confirmed it (bounded by --connect-timeout); if it still is not known, the connection
/// closes rather than forward an address the proxy does not serve.
async fn inspect(
    shared: &Arc<Shared>,
    api_key: i16,
    api_version: i16,
    payload: &Bytes,
) -> Result<Option<Bytes>, ConnectionError> {
    let rewrite_error = |source| ConnectionError::Rewrite {
        api: crate::admin::api_name(api_key),
        version: api_version,
        source,
    };
    let mut mapper = Mapper {
        shared,
        differs: false,
    };
    let result = match kafka::inspect_response(api_key, api_version, payload, &mut mapper) {
        Err(RewriteError::Map(unknown)) => {
            tracing::debug!(
                node_id = unknown.node_id,
                "response names an unknown broker; confirming"
            );
            shared
                .discovery
                .confirm(shared.settings.connect_timeout)
                .await;
            kafka::inspect_response(api_key, api_version, payload, &mut mapper)
        }
        other => other,
    };
    if mapper.differs {
        // The next Metadata round decides whether a broker moved; this answer is unaffected.
        shared.discovery.request();
    }
    result.map_err(rewrite_error)
}

async fn response_pump<R, W>(
    shared: &Arc<Shared>,
    mut upstream: ReadHalf<R>,
    mut client: WriteHalf<W>,
    mut expect: mpsc::Receiver<Expected>,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + AsyncWrite,
    W: AsyncRead + AsyncWrite,
{
    let reader = FrameReader::new(shared.settings.max_response_bytes);
    let mut buf = BytesMut::with_capacity(INITIAL_READ_CAPACITY);
    let mut pending: VecDeque<Expected> = VecDeque::new();
    let mut requests_done = false;
    loop {
        if deliver_local(&mut client, &mut pending).await? {
            client.flush().await.map_err(ConnectionError::ClientIo)?;
        }
        if requests_done && pending.is_empty() {
            let _ = client.shutdown().await;
            return Ok(());
        }
        reader.reserve_for_next_read(&mut buf);
        let read = tokio::select! {
            expected = expect.recv(), if !requests_done => {
                match expected {
                    Some(e) => pending.push_back(e),
                    None => requests_done = true,
                }
                continue;
            }
            read = upstream.read_buf(&mut buf) => read.map_err(ConnectionError::BrokerIo)?,
        };
        if read == 0 {
            // The broker closed. Whatever was still expected will not come.
            return if pending.is_empty() {
                Ok(())
            } else {
                Err(ConnectionError::BrokerIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ))
            };
        }
        shared.bytes_from_brokers.increment(read as u64);
        let mut chunk = match reader.next_chunk(&mut buf) {
            Ok(Some(chunk)) => chunk,
            Ok(None) => continue,
            Err(e) => {
                crate::admin::frame_rejected("response_too_large");
                return Err(ConnectionError::BrokerFrame(e));
            }
        };
        // Frames before `offset` in `chunk` are paired and carry their client ids again; the
        // ones from `run_start` on are still to be written.
        let mut run_start = 0;
        let mut offset = 0;
        while let Some(range) = frame::frame_at(&chunk, offset) {
            offset = range.end;
            let proxy_id = frame::response_correlation_id(&chunk[range.clone()])
                .map_err(ConnectionError::BrokerFrame)?;
            // Expectations are queued before their requests are written, so any not yet
            // received are already in the channel.
            while let Ok(e) = expect.try_recv() {
                pending.push_back(e);
            }
            let (client_id, api_key, api_version) = pair(shared, &mut pending, proxy_id)?;
            frame::set_response_correlation_id(&mut chunk[range.clone()], client_id);
            let payload_range = range.start + frame::LENGTH_PREFIX..range.end;
            let inspect_it = kafka::needs_inspection(api_key, api_version)
                && rewrite::may_carry_addresses(api_key, api_version, &chunk[payload_range])
                    .map_err(|source| ConnectionError::Rewrite {
                        api: crate::admin::api_name(api_key),
                        version: api_version,
                        source,
                    })?;
            let local_due = matches!(pending.front(), Some(Expected::Local(_)));
            if !inspect_it && !local_due {
                continue;
            }
            // Write what precedes this frame, then this frame (rewritten or not), then any
            // local answers due after it; the rest of the chunk starts afresh.
            client
                .write_all(&chunk[run_start..range.start])
                .await
                .map_err(ConnectionError::ClientIo)?;
            let frame = chunk.split_to(range.end).split_off(range.start).freeze();
            let replaced = if inspect_it {
                inspect(
                    shared,
                    api_key,
                    api_version,
                    &frame.slice(frame::LENGTH_PREFIX..),
                )
                .await?
            } else {
                None
            };
            if replaced.is_some() {
                shared.api_metrics.rewritten(api_key);
            }
            client
                .write_all(replaced.as_ref().unwrap_or(&frame))
                .await
                .map_err(ConnectionError::ClientIo)?;
            deliver_local(&mut client, &mut pending).await?;
            run_start = 0;
            offset = 0;
        }
        client
            .write_all(&chunk[run_start..])
            .await
            .map_err(ConnectionError::ClientIo)?;
        client.flush().await.map_err(ConnectionError::ClientIo)?;
    }
}
