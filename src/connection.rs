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
//! Nothing here grows without a bound: no upstream connection exists before the client's first
//! complete request (within --first-frame-timeout); a request must arrive within
//! --frame-timeout of its first byte and a client that sends nothing for --client-idle-timeout
//! is closed; frames above [`SMALL_FRAME_BYTES`] are charged to the process-wide
//! --max-buffered-bytes budget before their bodies are read (a pump waiting for budget stops
//! reading, which is TCP backpressure, never a failure); at most `MAX_IN_FLIGHT` requests
//! per direction of the expectation queue are awaiting answers before the client is no longer
//! read. A busy direction reads up to 64 KiB at a time (more frames per write); a direction
//! quiet for a second with nothing buffered holds no read buffer at all.
//!
//! On shutdown the request pump stops reading, the response pump delivers what is still in
//! flight (bounded by the drain timeout), and the connection closes.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};

use crate::brokers::Lookup;
use crate::budget::Held;
use crate::identity::Identity;
use crate::kafka::frame::{
    self, FrameError, FrameReader, INITIAL_READ_CAPACITY, SMALL_FRAME_BYTES,
};
use crate::kafka::rewrite::{self, RewriteError};
use crate::kafka::{self, versions};
use crate::kafka::{AddressMapper, Advertised, MapError};
use crate::policy::{self, Decision, Policy};
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
    /// The client took longer than a limit allows (--first-frame-timeout, --frame-timeout,
    /// --client-idle-timeout).
    #[error("client sent no complete request within {flag} ({after:?})")]
    ClientTimeout {
        /// The flag that sets the limit.
        flag: &'static str,
        /// The limit.
        after: Duration,
    },
    /// The identity's policy does not allow this request, and no answer can carry the denial
    /// (an API the proxy cannot answer for, or Produce with acks=0).
    #[error("api key {api_key} is not allowed for this identity ({reason})")]
    Denied {
        /// The api key.
        api_key: i16,
        /// Why the connection closes instead of answering.
        reason: &'static str,
    },
    /// No upstream connection could be opened (already logged by the connector).
    #[error("no upstream connection")]
    NoUpstream,
    /// Reading from or writing to the client failed.
    #[error("client I/O: {0}")]
    ClientIo(std::io::Error),
    /// Reading from or writing to the broker failed.
    #[error("broker I/O: {0}")]
    BrokerIo(std::io::Error),
}

/// Who is on the client side of a connection.
#[derive(Debug, Clone)]
pub struct Client {
    /// Index into the identities: whom the client acts as.
    pub identity: usize,
    /// Index into the listener sets: which proxy ports its answers name.
    pub set: usize,
    /// Its address.
    pub peer: std::net::SocketAddr,
    /// Its certificate's subject, or the listener it came in on (for the audit log).
    pub principal: String,
}

/// A cluster-changing request awaiting its audit line: the resources it names.
#[derive(Debug)]
struct Audit {
    resources: Vec<String>,
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
        /// Set for requests that change the cluster: logged once the answer is in.
        audit: Option<Box<Audit>>,
    },
    /// A response the proxy makes itself, delivered in order with the others.
    Local(Bytes),
}

/// Maps addresses through the shared broker table, read-only: a response on a client
/// connection never changes what other clients are relayed to.
pub(crate) struct Mapper<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    /// The client's listener set: its answers name that set's ports.
    set: usize,
    /// Set when the response names a known node at another upstream address than the table.
    differs: bool,
}

impl AddressMapper for Mapper<'_> {
    fn map_broker(&mut self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError> {
        match self.shared.registry.lookup(self.set, node_id, host, port) {
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

/// One direction's read side: the frame reader, the read buffer, and the budget held for the
/// large frame at the front of the buffer.
///
/// Memory rules: a frame up to [`SMALL_FRAME_BYTES`] is read into a small buffer that grows
/// only as bytes arrive; a larger frame is read only once budget for its whole length is held,
/// into a buffer allocated once at exactly that size; once the chunk holding it has been
/// written on, that buffer is given back and reading continues in a small one. So what a
/// connection holds outside the budget stays small, whatever frames came before.
///
/// Read size: each read is offered room for `read_ahead` bytes, which doubles (up to
/// [`SMALL_FRAME_BYTES`]) while reads fill the room with more than one frame (the peer
/// pipelines: one request or response at a time never grows it) and halves (down to
/// [`INITIAL_READ_CAPACITY`]) while they take less than a quarter of it. A pipelining client
/// of small frames then moves many frames per read and per write (one TLS record, one system
/// call) instead of 4 KiB at a time; a quiet connection stays at 4 KiB.
///
/// Idle: a direction that has nothing buffered and has been quiet for [`IDLE_PARK`] (and a new
/// client connection, before its first byte) holds no buffer at all ("parked"): its next read
/// goes into a few hundred bytes inside the task, and the buffer is allocated when bytes come.
/// Thousands of idle connections then cost no read buffers.
struct Inbound {
    reader: FrameReader,
    buf: BytesMut,
    charge: Option<Held>,
    read_ahead: usize,
    /// No buffer is held until the next bytes arrive.
    parked: bool,
}

/// How long a direction with nothing buffered keeps its read buffer.
const IDLE_PARK: Duration = Duration::from_secs(1);

/// The first read of a parked direction: small, inside the task, copied into a new buffer.
const PARKED_READ: usize = 256;

impl Inbound {
    fn new(max_frame: usize) -> Self {
        Self {
            reader: FrameReader::new(max_frame),
            buf: BytesMut::new(),
            charge: None,
            read_ahead: INITIAL_READ_CAPACITY,
            parked: true,
        }
    }

    /// Whether this direction may give its buffer back now: nothing buffered, no budget held.
    fn can_park(&self) -> bool {
        !self.parked && self.buf.is_empty() && self.charge.is_none()
    }

    /// Gives the read buffer back (see [`Inbound::can_park`]).
    fn park(&mut self) {
        if self.can_park() {
            self.buf = BytesMut::new();
            self.read_ahead = INITIAL_READ_CAPACITY;
            self.parked = true;
        }
    }

    /// One read from `from` into the buffer (after [`Inbound::prepare`]), adapting the next
    /// read's room; a parked direction reads into a small array first and allocates its buffer
    /// only when bytes arrived. Cancel-safe like the stream's own read: the bytes a completed
    /// read returned are in the buffer before this returns.
    async fn read_from<S: AsyncRead + Unpin>(&mut self, from: &mut S) -> std::io::Result<usize> {
        if self.parked {
            let mut first = [0u8; PARKED_READ];
            let n = from.read(&mut first).await?;
            if n > 0 {
                self.parked = false;
                self.buf.reserve(self.read_ahead.max(n));
                self.buf.extend_from_slice(&first[..n]);
            }
            return Ok(n);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = from.read_buf(&mut self.buf).await?;
        if self.charge.is_some() {
            // A large frame's body: its buffer is sized already; it says nothing of the
            // frames around it.
        } else if n >= room
            && room >= self.read_ahead
            && self.reader.holds_more_than_one_frame(&self.buf)
        {
            self.read_ahead = (self.read_ahead * 2).min(SMALL_FRAME_BYTES);
        } else if n * 4 < self.read_ahead {
            self.read_ahead = (self.read_ahead / 2).max(INITIAL_READ_CAPACITY);
        }
        Ok(n)
    }

    /// Gets ready for the next read: waits for budget when the frame being received is large
    /// (see [`crate::budget`]: a frame larger than the whole budget takes all of it), sizes the buffer for it,
    /// and reserves room. Returns `Ok(Err(s))` when `stop` completes first with `s`.
    async fn prepare<S>(
        &mut self,
        shared: &Shared,
        stop: impl Future<Output = S>,
    ) -> Result<Result<(), S>, FrameError> {
        if self.parked {
            return Ok(Ok(()));
        }
        let incomplete = self.reader.incomplete_frame_len(&self.buf)?;
        if let Some(len) = incomplete.filter(|len| *len > SMALL_FRAME_BYTES) {
            if self.charge.is_none() {
                let held = match shared.budget.try_take(len) {
                    Some(held) => held,
                    None => {
                        shared.limit_reached(
                            "buffered_bytes",
                            "--max-buffered-bytes",
                            format_args!("waiting for {len} bytes of frame buffer budget"),
                        );
                        tokio::select! {
                            biased;
                            s = stop => return Ok(Err(s)),
                            held = shared.budget.take(len) => held,
                        }
                    }
                };
                self.charge = Some(held);
            }
            if self.buf.capacity() < len {
                // One allocation of the frame's size, instead of doubling as bytes arrive.
                let mut sized = BytesMut::with_capacity(len);
                sized.extend_from_slice(&self.buf);
                self.buf = sized;
            }
        } else {
            self.reader
                .reserve_for_next_read(&mut self.buf, self.read_ahead);
        }
        Ok(Ok(()))
    }

    /// Every complete frame at the front of the buffer, as one chunk.
    fn take_chunk(&mut self) -> Result<Option<BytesMut>, FrameError> {
        self.reader.next_chunk(&mut self.buf)
    }

    /// The last chunk taken has been written on: release its budget, and give back a buffer
    /// that grew for a large frame.
    fn release(&mut self) {
        if self.charge.take().is_some() || self.buf.capacity() > 2 * SMALL_FRAME_BYTES {
            let mut small = BytesMut::with_capacity(INITIAL_READ_CAPACITY.max(self.buf.len()));
            small.extend_from_slice(&self.buf);
            self.buf = small;
        }
    }
}

/// The client side of a connection: reads complete requests under the connection limits.
struct Requests<R> {
    client: ReadHalf<R>,
    inbound: Inbound,
    /// When the first byte of the request at the front of the buffer arrived.
    frame_started: Option<Instant>,
    /// When the client last sent anything.
    last_read: Instant,
    /// Deadline and flag for the first request; `None` once it arrived.
    first: Option<(Instant, Duration)>,
}

impl<R: AsyncRead + AsyncWrite> Requests<R> {
    fn new(shared: &Shared, client: ReadHalf<R>, accepted: Instant) -> Self {
        let first_timeout = shared.settings.first_frame_timeout;
        Self {
            client,
            inbound: Inbound::new(shared.settings.max_request_bytes),
            frame_started: None,
            last_read: accepted,
            first: Some((accepted + first_timeout, first_timeout)),
        }
    }

    /// The time limit of the next read: the first request's, the started request's (waiting
    /// for budget included: a stalled request must not hold its place in the queue longer),
    /// or the idle one.
    fn deadline(&self, shared: &Shared) -> (Instant, &'static str, Duration) {
        match (self.first, self.frame_started) {
            (Some((at, after)), _) => (at, "--first-frame-timeout", after),
            (None, Some(started)) => {
                let after = shared.settings.frame_timeout;
                (started + after, "--frame-timeout", after)
            }
            (None, None) => {
                let after = shared.settings.client_idle_timeout;
                (self.last_read + after, "--client-idle-timeout", after)
            }
        }
    }

    /// The next run of complete requests, or `None` when the client closed or shutdown began.
    /// The budget held for a large request is released when the next chunk is asked for, that
    /// is after the caller has written this one upstream.
    async fn next_chunk(
        &mut self,
        shared: &Shared,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<BytesMut>, ConnectionError> {
        self.inbound.release();
        loop {
            match self.inbound.take_chunk() {
                Ok(Some(chunk)) => {
                    self.first = None;
                    self.frame_started = (!self.inbound.buf.is_empty()).then(Instant::now);
                    return Ok(Some(chunk));
                }
                Ok(None) => {}
                Err(e) => {
                    crate::admin::frame_rejected("request_too_large");
                    return Err(ConnectionError::ClientFrame(e));
                }
            }
            let (deadline, flag, after) = self.deadline(shared);
            let timed_out = |shared: &Shared| {
                let limit = match flag {
                    "--first-frame-timeout" => "first_frame_timeout",
                    "--frame-timeout" => "frame_timeout",
                    _ => "client_idle_timeout",
                };
                shared.limit_reached(
                    limit,
                    flag,
                    format_args!("closing a client connection after {after:?}"),
                );
                ConnectionError::ClientTimeout { flag, after }
            };
            let mut stop = shutdown.clone();
            let stopped = self
                .inbound
                .prepare(shared, async move {
                    tokio::select! {
                        _ = stop.wait_for(|stop| *stop) => false,
                        _ = tokio::time::sleep_until(deadline.into()) => true,
                    }
                })
                .await
                .map_err(ConnectionError::ClientFrame)?;
            match stopped {
                Ok(()) => {}
                Err(false) => return Ok(None),
                Err(true) => return Err(timed_out(shared)),
            }
            // A quiet client with nothing buffered gives its read buffer back after IDLE_PARK.
            let park_at = self
                .inbound
                .can_park()
                .then(|| self.last_read + IDLE_PARK)
                .filter(|at| *at < deadline);
            let read = tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return Ok(None),
                read = tokio::time::timeout_at(
                    park_at.unwrap_or(deadline).into(),
                    self.inbound.read_from(&mut self.client),
                ) => read,
            };
            let read = match read {
                Ok(read) => read.map_err(ConnectionError::ClientIo)?,
                Err(_) if park_at.is_some() => {
                    self.inbound.park();
                    continue;
                }
                Err(_) => return Err(timed_out(shared)),
            };
            if read == 0 {
                return Ok(None);
            }
            shared.bytes_from_clients.increment(read as u64);
            self.last_read = Instant::now();
            self.frame_started.get_or_insert(self.last_read);
        }
    }
}

/// Writes `bytes` to a client, closing the connection when the client accepts nothing for
/// --frame-timeout: a consumer that stops reading must not hold its response's budget (and
/// with it every other client's large frames) for long. A slow but moving client is fine.
async fn write_to_client<W: AsyncRead + AsyncWrite>(
    shared: &Shared,
    client: &mut WriteHalf<W>,
    mut bytes: &[u8],
) -> Result<(), ConnectionError> {
    let after = shared.settings.frame_timeout;
    while !bytes.is_empty() {
        match tokio::time::timeout(after, client.write(bytes)).await {
            Ok(Ok(0)) => {
                return Err(ConnectionError::ClientIo(
                    std::io::ErrorKind::WriteZero.into(),
                ))
            }
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(ConnectionError::ClientIo(e)),
            Err(_) => {
                shared.limit_reached(
                    "client_write_timeout",
                    "--frame-timeout",
                    format_args!("closing a client that read nothing for {after:?}"),
                );
                return Err(ConnectionError::ClientTimeout {
                    flag: "--frame-timeout",
                    after,
                });
            }
        }
    }
    Ok(())
}

/// Serves one client connection: waits for its first complete request, only then opens the
/// upstream connection with `connect` (so an idle connection or a port scan costs the cluster
/// nothing), and relays until either side closes, an error occurs, or shutdown has drained
/// the in-flight requests.
pub async fn relay<C>(
    shared: Arc<Shared>,
    client: Stream,
    who: Client,
    accepted: Instant,
    connect: C,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError>
where
    C: Future<Output = Option<Stream>>,
{
    let (client_read, client_write) = tokio::io::split(client);
    let mut requests = Requests::new(&shared, client_read, accepted);
    let Some(first) = requests.next_chunk(&shared, &mut shutdown).await? else {
        return Ok(());
    };
    let upstream = connect.await.ok_or(ConnectionError::NoUpstream)?;
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let (expect_tx, expect_rx) = mpsc::channel(MAX_IN_FLIGHT);

    let requests = request_pump(
        &shared,
        &who,
        requests,
        first,
        upstream_write,
        expect_tx,
        &mut shutdown,
    );
    let responses = response_pump(&shared, &who, upstream_read, client_write, expect_rx);
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
    who: &Client,
    mut requests: Requests<R>,
    first: BytesMut,
    mut upstream: WriteHalf<W>,
    expect: mpsc::Sender<Expected>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + AsyncWrite,
    W: AsyncRead + AsyncWrite,
{
    // The proxy numbers requests itself; the client's ids only come back in its responses.
    let mut next_id: i32 = 0;
    let identity = &shared.identities.all[who.identity];
    let metrics = &identity.api_metrics;
    let mut chunk = first;
    loop {
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
            metrics.request(header.api_key);
            let local = match identity.policy {
                Policy::Full => None,
                policy => match policy::decide(policy, &header, frame) {
                    Decision::Allow => None,
                    Decision::Deny {
                        response,
                        error_code,
                    } => Some((response, error_code)),
                    Decision::Close { reason } => {
                        metrics.denied(header.api_key);
                        audit_denial(who, identity, &header, frame, None, reason);
                        return Err(ConnectionError::Denied {
                            api_key: header.api_key,
                            reason,
                        });
                    }
                },
            };
            if let Some((response, error_code)) = local {
                // Denied: answered here like the broker would, never forwarded.
                metrics.denied(header.api_key);
                audit_denial(who, identity, &header, frame, Some(error_code), "policy");
                upstream
                    .write_all(&chunk[run_start..range.start])
                    .await
                    .map_err(ConnectionError::BrokerIo)?;
                run_start = range.end;
                send_expectation(&expect, Expected::Local(response)).await?;
                continue;
            }
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
            let audit = policy::audited(header.api_key).then(|| {
                Box::new(Audit {
                    resources: policy::audit_resources(&header, frame)
                        .unwrap_or_else(|e| vec![format!("(unreadable: {e})")]),
                })
            });
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
                        audit,
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
        // Its memory goes now, before the next read waits, perhaps for minutes.
        drop(chunk);
        chunk = match requests.next_chunk(shared, shutdown).await? {
            Some(chunk) => chunk,
            None => return Ok(()),
        };
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
    shared: &Shared,
    client: &mut WriteHalf<W>,
    pending: &mut VecDeque<Expected>,
) -> Result<bool, ConnectionError> {
    let mut wrote = false;
    while let Some(Expected::Local(_)) = pending.front() {
        if let Some(Expected::Local(answer)) = pending.pop_front() {
            write_to_client(shared, client, &answer).await?;
            wrote = true;
        }
    }
    Ok(wrote)
}

/// A response paired with its request.
struct Paired {
    client_id: i32,
    api_key: i16,
    api_version: i16,
    audit: Option<Box<Audit>>,
}

/// Pairs a response with the oldest outstanding request: the response must carry the id the
/// proxy gave that request.
fn pair(
    metrics: &crate::admin::ApiMetrics,
    pending: &mut VecDeque<Expected>,
    proxy_id: i32,
) -> Result<Paired, ConnectionError> {
    match pending.front() {
        Some(Expected::Response {
            proxy_id: expected, ..
        }) if *expected == proxy_id => {
            let Some(Expected::Response {
                client_id,
                api_key,
                api_version,
                sent,
                audit,
                ..
            }) = pending.pop_front()
            else {
                unreachable!("the front was a response")
            };
            metrics.response(api_key, sent.elapsed());
            Ok(Paired {
                client_id,
                api_key,
                api_version,
                audit,
            })
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
    set: usize,
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
        set,
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
    who: &Client,
    mut upstream: ReadHalf<R>,
    mut client: WriteHalf<W>,
    mut expect: mpsc::Receiver<Expected>,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + AsyncWrite,
    W: AsyncRead + AsyncWrite,
{
    let mut inbound = Inbound::new(shared.settings.max_response_bytes);
    // Requests awaiting answers, taken from the channel only while fewer than MAX_IN_FLIGHT
    // wait here: beyond that the channel fills and the request pump stops reading the client.
    let mut pending: VecDeque<Expected> = VecDeque::new();
    let mut requests_done = false;
    let identity = &shared.identities.all[who.identity];
    loop {
        if deliver_local(shared, &mut client, &mut pending).await? {
            client.flush().await.map_err(ConnectionError::ClientIo)?;
        }
        if requests_done && pending.is_empty() {
            let _ = client.shutdown().await;
            return Ok(());
        }
        // Budget for a large response before reading its body (the broker waits meanwhile:
        // TCP backpressure).
        if let Err(e) = inbound.prepare(shared, std::future::pending::<()>()).await {
            crate::admin::frame_rejected("response_too_large");
            return Err(ConnectionError::BrokerFrame(e));
        }
        let read = tokio::select! {
            expected = expect.recv(), if !requests_done && pending.len() < MAX_IN_FLIGHT => {
                match expected {
                    Some(e) => pending.push_back(e),
                    None => requests_done = true,
                }
                continue;
            }
            read = inbound.read_from(&mut upstream) => read.map_err(ConnectionError::BrokerIo)?,
            // Nothing awaited, nothing buffered: after IDLE_PARK the read buffer goes back.
            _ = tokio::time::sleep(IDLE_PARK), if pending.is_empty() && inbound.can_park() => {
                inbound.park();
                continue;
            }
        };
        if read == 0 {
            // The broker closed. Whatever was still expected will not come.
            return if pending.is_empty() && expect.try_recv().is_err() {
                Ok(())
            } else {
                Err(ConnectionError::BrokerIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ))
            };
        }
        shared.bytes_from_brokers.increment(read as u64);
        let mut chunk = match inbound.take_chunk() {
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
            // The oldest outstanding request must be at the front: take it from the channel
            // if needed (expectations are queued before their requests are written), and
            // deliver local answers due before it.
            loop {
                match pending.front() {
                    Some(Expected::Response { .. }) => break,
                    Some(Expected::Local(_)) => {
                        write_to_client(shared, &mut client, &chunk[run_start..range.start])
                            .await?;
                        run_start = range.start;
                        deliver_local(shared, &mut client, &mut pending).await?;
                    }
                    None => match expect.try_recv() {
                        Ok(e) => pending.push_back(e),
                        Err(_) => break,
                    },
                }
            }
            let Paired {
                client_id,
                api_key,
                api_version,
                audit,
            } = pair(&identity.api_metrics, &mut pending, proxy_id)?;
            frame::set_response_correlation_id(&mut chunk[range.clone()], client_id);
            let payload_range = range.start + frame::LENGTH_PREFIX..range.end;
            if let Some(audit) = audit {
                audit_change(
                    who,
                    identity,
                    api_key,
                    api_version,
                    *audit,
                    &chunk[payload_range.clone()],
                );
            }
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
            write_to_client(shared, &mut client, &chunk[run_start..range.start]).await?;
            let frame = chunk.split_to(range.end).split_off(range.start).freeze();
            let replaced = if inspect_it {
                inspect(
                    shared,
                    who.set,
                    api_key,
                    api_version,
                    &frame.slice(frame::LENGTH_PREFIX..),
                )
                .await?
            } else {
                None
            };
            if replaced.is_some() {
                identity.api_metrics.rewritten(api_key);
            }
            write_to_client(shared, &mut client, replaced.as_ref().unwrap_or(&frame)).await?;
            deliver_local(shared, &mut client, &mut pending).await?;
            run_start = 0;
            offset = 0;
        }
        write_to_client(shared, &mut client, &chunk[run_start..]).await?;
        client.flush().await.map_err(ConnectionError::ClientIo)?;
        // Everything the budget was held for has left.
        drop(chunk);
        inbound.release();
    }
}

/// Logs the audit line of a policy denial (the request never reaches the cluster).
fn audit_denial(
    who: &Client,
    identity: &Identity,
    header: &frame::RequestHeader,
    frame: &[u8],
    error_code: Option<i16>,
    reason: &'static str,
) {
    let resources = policy::audit_resources(header, frame).unwrap_or_default();
    tracing::warn!(
        target: "audit",
        event = "denied",
        identity = %identity.name,
        principal = %who.principal,
        client = %who.peer,
        api = %crate::admin::api_name(header.api_key),
        version = header.api_version,
        resources = ?resources,
        error_code = error_code.unwrap_or(-1),
        reason,
        "request denied by the identity's policy"
    );
}

/// Logs the audit line of a cluster-changing request once the broker has answered it.
fn audit_change(
    who: &Client,
    identity: &Identity,
    api_key: i16,
    api_version: i16,
    audit: Audit,
    payload: &[u8],
) {
    let outcome = policy::audit_outcome(api_key, api_version, payload)
        .unwrap_or_else(|e| vec![(format!("(unreadable answer: {e})"), -1)]);
    let error_codes: Vec<i16> = outcome.iter().map(|(_, code)| *code).collect();
    tracing::info!(
        target: "audit",
        event = "change",
        identity = %identity.name,
        principal = %who.principal,
        client = %who.peer,
        api = %crate::admin::api_name(api_key),
        version = api_version,
        resources = ?audit.resources,
        error_codes = ?error_codes,
        outcome = ?outcome,
        "cluster change"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `len` bytes in total (length prefix included).
    fn frame(len: usize) -> Vec<u8> {
        let mut f = ((len - 4) as i32).to_be_bytes().to_vec();
        f.resize(len, 7);
        f
    }

    #[tokio::test]
    async fn a_new_or_idle_direction_holds_no_read_buffer() {
        let mut inbound = Inbound::new(1 << 20);
        assert!(inbound.parked);
        assert_eq!(inbound.buf.capacity(), 0, "nothing before the first byte");

        let bytes = frame(100);
        let mut from = &bytes[..];
        let n = inbound.read_from(&mut from).await.unwrap();
        assert_eq!(n, 100);
        assert!(!inbound.parked);
        assert!(inbound.buf.capacity() >= INITIAL_READ_CAPACITY);
        let chunk = inbound.take_chunk().unwrap().unwrap();
        assert_eq!(&chunk[..], &bytes[..]);
        drop(chunk);

        assert!(inbound.can_park());
        inbound.park();
        assert!(inbound.parked);
        assert_eq!(inbound.buf.capacity(), 0, "parked: the buffer is gone");
        assert_eq!(inbound.read_ahead, INITIAL_READ_CAPACITY);
    }

    #[tokio::test]
    async fn a_partial_frame_keeps_its_buffer() {
        let mut inbound = Inbound::new(1 << 20);
        let bytes = frame(100);
        let mut from = &bytes[..50];
        inbound.read_from(&mut from).await.unwrap();
        assert!(inbound.take_chunk().unwrap().is_none());
        assert!(!inbound.can_park());
        inbound.park();
        assert_eq!(inbound.buf.len(), 50, "a partial frame is never dropped");
    }

    #[tokio::test]
    async fn reads_that_fill_their_room_grow_the_read_ahead_to_64_kib_and_small_ones_shrink_it() {
        let mut inbound = Inbound::new(1 << 20);
        // Leave the parked state with one small frame.
        let first = frame(8);
        inbound.read_from(&mut &first[..]).await.unwrap();
        inbound.take_chunk().unwrap().unwrap();

        let stream: Vec<u8> = (0..200).flat_map(|_| frame(1024)).collect();
        let mut from = &stream[..];
        let mut seen = Vec::new();
        while !from.is_empty() {
            inbound
                .reader
                .reserve_for_next_read(&mut inbound.buf, inbound.read_ahead);
            inbound.read_from(&mut from).await.unwrap();
            seen.push(inbound.read_ahead);
            while inbound.take_chunk().unwrap().is_some() {}
        }
        assert_eq!(inbound.read_ahead, SMALL_FRAME_BYTES, "grew: {seen:?}");

        for _ in 0..8 {
            let small = frame(16);
            inbound
                .reader
                .reserve_for_next_read(&mut inbound.buf, inbound.read_ahead);
            inbound.read_from(&mut &small[..]).await.unwrap();
            inbound.take_chunk().unwrap().unwrap();
        }
        assert_eq!(inbound.read_ahead, INITIAL_READ_CAPACITY);
    }

    #[tokio::test]
    async fn one_frame_at_a_time_never_grows_the_read_ahead() {
        // A client with one 16 KiB request in flight: every read ends at its frame's end.
        let mut inbound = Inbound::new(1 << 20);
        for _ in 0..20 {
            let one = frame(16 * 1024);
            let mut from = &one[..];
            loop {
                inbound
                    .reader
                    .reserve_for_next_read(&mut inbound.buf, inbound.read_ahead);
                inbound.read_from(&mut from).await.unwrap();
                if inbound.take_chunk().unwrap().is_some() {
                    break;
                }
            }
            assert_eq!(inbound.read_ahead, INITIAL_READ_CAPACITY);
        }
    }
}
