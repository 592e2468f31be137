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
//! complete request (within --first-frame-timeout); a later request must arrive within
//! --frame-timeout of its first byte (time waiting for budget not counted), a large one whose
//! budget is held at --min-client-read-rate or more (`inbound::Clock`), and a client that
//! sends nothing for --client-idle-timeout is closed; frames above [`crate::kafka::frame::SMALL_FRAME_BYTES`] are charged to the process-wide
//! --max-buffered-bytes budget before their bodies are read (a pump waiting for budget stops
//! reading, which is TCP backpressure, never a failure); the proxy's own answers (denials,
//! ApiVersions) and rewritten responses are charged to it before they are built and until they
//! have been written (allowed Produce and Fetch pay nothing: no lock per frame); a client
//! reading an answer more slowly than --min-client-read-rate is closed (`window_floor`); at most `MAX_IN_FLIGHT` requests
//! per direction of the expectation queue are awaiting answers before the client is no longer
//! read. A busy direction reads up to 64 KiB at a time (more frames per write); a direction
//! quiet for a second with nothing buffered holds no read buffer at all.
//!
//! When the identity authenticates with SASL and the broker grants a session lifetime
//! (KIP-368), the request pump renews the session on the same connection before it ends:
//! between two runs of client requests, it sends the SASL exchange with correlation ids of its
//! own, queued in the expectation queue in order like any request; the response pump hands
//! those answers back to it and never to the client. Client requests wait only for the
//! exchange (the broker would refuse them while it runs).
//!
//! On shutdown, and when the request side ends (the client closed or reset, or sent what the
//! proxy refuses), the request pump stops reading, the response pump delivers what is still in
//! flight (bounded by the drain timeout), and the connection closes.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};

mod audit;
mod inbound;
mod plan;

pub(crate) use self::audit::DENIALS_PER_SECOND;

use self::inbound::{Chunk, Inbound, Requests, IDLE_PARK};
use self::plan::{Awaited, Expected, Local, Plan, Refusal};
use crate::brokers::Lookup;
use crate::kafka::frame::{self, FrameError};
use crate::kafka::rewrite::{self, RewriteError};
use crate::kafka::{self, AddressMapper, Advertised, MapError};
use crate::sasl::{self, SaslError, Session};
use crate::shared::Shared;
use crate::upstream::Stream;

/// Requests a client may have in flight on one connection before the proxy stops reading
/// more from it (Kafka clients default to 5; this leaves ample room).
pub(crate) const MAX_IN_FLIGHT: usize = 1024;

/// DescribeTopicPartitions' api key: its answers feed the topic id → name map.
const DESCRIBE_TOPIC_PARTITIONS: i16 =
    kafka_protocol::messages::ApiKey::DescribeTopicPartitions as i16;

/// Why a denied request closes its connection when its answer could never fit the budget.
const ANSWER_TOO_LARGE: &str =
    "the answer to this denied request could take more memory than --max-buffered-bytes allows";

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
    /// The client read an answer more slowly than --min-client-read-rate allows, over a
    /// window of --frame-timeout (or read nothing at all for that long).
    #[error("client read less than {rate} bytes/s over {after:?} (--min-client-read-rate, --frame-timeout)")]
    ClientTooSlow {
        /// The floor rate, bytes per second.
        rate: u64,
        /// The window.
        after: Duration,
    },
    /// The client sent a large request whose budget is held more slowly than
    /// --min-client-read-rate allows, over a window of --frame-timeout (or sent nothing of it
    /// for that long).
    #[error("client sent less than {rate} bytes/s of a request holding budget over {after:?} (--min-client-read-rate, --frame-timeout)")]
    ClientSendTooSlow {
        /// The floor rate, bytes per second.
        rate: u64,
        /// The window.
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
    /// Renewing the SASL session on the upstream connection failed (KIP-368).
    #[error("SASL re-authentication failed: {0}")]
    Reauthentication(SaslError),
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

    fn map_controller(&mut self, _node_id: i32, host: &str, port: i32) -> Advertised {
        // Not proxied, but the free-text scrub hides their addresses too.
        self.shared.controllers.note(host, port);
        Advertised {
            host: self.shared.registry.advertised_host().clone(),
            port: 0,
        }
    }
}

/// Writes `bytes` to a client, closing the connection when the client reads too slowly to
/// give back the budget its answer holds in a bounded time: within each window of
/// --frame-timeout it must take at least --min-client-read-rate × --frame-timeout bytes (or the
/// rest of `bytes`, when less), and a window starts afresh as soon as it has. A slow but
/// steady client is fine; one that reads nothing, or trickles, is closed.
async fn write_to_client<W: AsyncRead + AsyncWrite>(
    shared: &Shared,
    client: &mut WriteHalf<W>,
    mut bytes: &[u8],
) -> Result<(), ConnectionError> {
    let after = shared.settings.frame_timeout;
    let rate = shared.settings.min_client_read_rate;
    let floor = window_floor(rate, after);
    while !bytes.is_empty() {
        // One window: at least `due` bytes by `deadline`.
        let deadline = tokio::time::Instant::now() + after;
        let due = floor.min(bytes.len());
        let mut written = 0;
        while written < due {
            match tokio::time::timeout_at(deadline, client.write(bytes)).await {
                Ok(Ok(0)) => {
                    return Err(ConnectionError::ClientIo(
                        std::io::ErrorKind::WriteZero.into(),
                    ))
                }
                Ok(Ok(n)) => {
                    bytes = &bytes[n..];
                    written += n;
                }
                Ok(Err(e)) => return Err(ConnectionError::ClientIo(e)),
                Err(_) => {
                    shared.limit_reached(
                        "client_read_rate",
                        "--min-client-read-rate",
                        format_args!(
                            "closing a client that read {written} of {due} bytes due within {after:?}"
                        ),
                    );
                    return Err(ConnectionError::ClientTooSlow { rate, after });
                }
            }
        }
    }
    Ok(())
}

/// Bytes a client must read within each window of `after` at `rate` bytes per second: at
/// least one, so that a client which reads nothing is always closed.
fn window_floor(rate: u64, after: Duration) -> usize {
    let floor = u128::from(rate) * after.as_millis() / 1000;
    usize::try_from(floor).unwrap_or(usize::MAX).max(1)
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
    C: Future<Output = Option<(Stream, Option<Session>)>>,
{
    let (client_read, client_write) = tokio::io::split(client);
    let mut requests = Requests::new(&shared, client_read, accepted);
    let Some(first) = requests.next_chunk(&shared, &mut shutdown).await? else {
        return Ok(());
    };
    let (upstream, session) = connect.await.ok_or(ConnectionError::NoUpstream)?;
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let (expect_tx, expect_rx) = mpsc::channel(MAX_IN_FLIGHT);
    let opened = Instant::now();
    let renewals = AtomicU32::new(0);

    let requests = request_pump(
        &shared,
        &who,
        requests,
        first,
        Outbound {
            upstream: upstream_write,
            expect: expect_tx,
        },
        Renewals {
            at: session.as_ref().and_then(|s| s.renew_at()),
            host: session.as_ref().map(|s| s.host.clone()),
            done: &renewals,
        },
        &mut shutdown,
    );
    let responses = response_pump(&shared, &who, upstream_read, client_write, expect_rx);
    tokio::pin!(requests, responses);
    let result = tokio::select! {
        result = &mut requests => {
            // The client closed, reset, sent something the proxy refuses, or shutdown began:
            // what was forwarded before still gets its answer from the broker (bounded by the
            // drain timeout), so the broker sees it through on an open connection and every
            // audited change gets its outcome line, then the connection closes. (Closing the
            // upstream connection at once could cut off a request the broker has not read
            // yet, leaving its audit with no outcome but "unknown".)
            let drained = match tokio::time::timeout(shared.settings.drain_timeout, responses).await {
                Ok(drained) => drained,
                Err(_) => {
                    tracing::warn!("drain timeout: closing with requests still in flight");
                    Ok(())
                }
            };
            // The request side's error is the reason the connection ended.
            result.and(drained)
        }
        result = &mut responses => result,
    };
    if session.is_some_and(|s| s.lifetime.is_some()) {
        tracing::debug!(
            renewals = renewals.load(Ordering::Relaxed),
            open_seconds = opened.elapsed().as_secs(),
            "upstream connection ends; its SASL session was renewed on it this many times"
        );
    }
    result
}

async fn request_pump<R, W>(
    shared: &Arc<Shared>,
    who: &Client,
    mut requests: Requests<R>,
    first: Chunk,
    outbound: Outbound<W>,
    mut renewals: Renewals<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + AsyncWrite,
    W: AsyncRead + AsyncWrite,
{
    let Outbound {
        mut upstream,
        expect,
    } = outbound;
    // The proxy numbers requests itself; the client's ids only come back in its responses.
    let mut next_id: i32 = 0;
    let identity = &shared.identities.all[who.identity];
    let metrics = &identity.api_metrics;
    let mut chunk = first;
    loop {
        // A session due for renewal is renewed before more client requests go upstream.
        if renewals.at.is_some_and(|at| at <= Instant::now()) {
            renewals.at =
                reauthenticate(shared, who, &renewals, &mut upstream, &expect, &mut next_id)
                    .await?;
            renewals.done.fetch_add(1, Ordering::Relaxed);
        }
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
            // An answer made here is charged before it is built (a huge denied request waits
            // for budget, not reading the client, or closes if it could never fit).
            // The bound where it fits beside the frame's own budget, else (a denied Produce)
            // the exact answer.
            let own = match &chunk {
                Chunk::Large(f) => f.held(),
                Chunk::Small(_) => 0,
            };
            let room = shared.budget.total().saturating_sub(own);
            let charge = match plan::answer_bound(identity.policy, &header, frame, room) {
                None => None,
                Some(bound) => {
                    if bound > room {
                        shared.limit_reached(
                            "answer_bytes",
                            "--max-buffered-bytes",
                            format_args!(
                                "closing a client whose {}-byte request would take up to {bound} bytes to answer",
                                frame.len()
                            ),
                        );
                        metrics.denied(header.api_key);
                        // Not read for the audit either: parsing it is what must not happen.
                        audit::denial(who, identity, shared, &header, None, None, ANSWER_TOO_LARGE);
                        return Err(ConnectionError::Denied {
                            api_key: header.api_key,
                            reason: ANSWER_TOO_LARGE,
                        });
                    }
                    let charge = match shared.budget.try_charge(bound) {
                        Some(charge) => charge,
                        None => {
                            shared.limit_reached(
                                "buffered_bytes",
                                "--max-buffered-bytes",
                                format_args!("waiting for {bound} bytes of answer budget"),
                            );
                            tokio::select! {
                                biased;
                                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                                charge = shared.budget.charge(bound) => charge,
                            }
                        }
                    };
                    Some(charge)
                }
            };
            let frame = &chunk[range.clone()];
            match plan::plan(
                identity.policy,
                who,
                &identity.name,
                &header,
                frame,
                &shared.topics,
            ) {
                Plan::Forward { awaited, clear } => {
                    let proxy_id = next_id;
                    next_id = next_id.wrapping_add(1);
                    if let Some(at) = clear {
                        // Metadata's allow_auto_topic_creation under a policy that may not
                        // create topics: the one byte the proxy changes in a request.
                        chunk[range.start + at] = 0;
                    }
                    frame::set_request_correlation_id(&mut chunk[range], proxy_id);
                    if let Some(awaited) = awaited {
                        let sent = Instant::now();
                        send_expectation(
                            &expect,
                            Expected::Response {
                                proxy_id,
                                sent,
                                awaited,
                            },
                        )
                        .await?;
                    }
                }
                Plan::Answer { response, denied } => {
                    if let Some(error_code) = denied {
                        // Denied: answered here like the broker would, never forwarded.
                        metrics.denied(header.api_key);
                        audit::denial(
                            who,
                            identity,
                            shared,
                            &header,
                            Some(frame),
                            Some(error_code),
                            "policy",
                        );
                    }
                    upstream
                        .write_all(&chunk[run_start..range.start])
                        .await
                        .map_err(ConnectionError::BrokerIo)?;
                    run_start = range.end;
                    // The whole bound stays charged until the answer has been written: the
                    // memory that parsing and building took is back in the allocator, which
                    // need not give it back to the system at once, so the budget keeps
                    // counting it while answers queue for a client that does not read them.
                    let charge = match charge {
                        Some(charge) => charge,
                        // Not reached (answer_bound covers every answer plan makes); charged
                        // all the same rather than trusted.
                        None => shared.budget.charge(response.len()).await,
                    };
                    let local = Local {
                        bytes: response,
                        _charge: charge,
                    };
                    send_expectation(&expect, Expected::Local(local)).await?;
                }
                Plan::Refuse(Refusal::Denied(reason)) => {
                    metrics.denied(header.api_key);
                    audit::denial(who, identity, shared, &header, Some(frame), None, reason);
                    return Err(ConnectionError::Denied {
                        api_key: header.api_key,
                        reason,
                    });
                }
                Plan::Refuse(Refusal::UnsupportedVersion) => {
                    crate::admin::frame_rejected("request_version");
                    return Err(ConnectionError::UnsupportedVersion {
                        api_key: header.api_key,
                        version: header.api_version,
                    });
                }
                Plan::Refuse(Refusal::Malformed(e)) => {
                    crate::admin::frame_rejected("request_malformed");
                    return Err(ConnectionError::ClientFrame(e));
                }
            }
        }
        upstream
            .write_all(&chunk[run_start..])
            .await
            .map_err(ConnectionError::BrokerIo)?;
        upstream.flush().await.map_err(ConnectionError::BrokerIo)?;
        // Its memory goes now, before the next read waits, perhaps for minutes.
        drop(chunk);
        chunk = loop {
            // A quiet client does not let the session lapse: the renewal interrupts the wait
            // (the client's bytes read so far stay in `requests`: its reads are cancel-safe).
            let renewal = async {
                match renewals.at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = requests.next_chunk(shared, shutdown) => match next? {
                    Some(chunk) => break chunk,
                    None => return Ok(()),
                },
                () = renewal => {
                    renewals.at =
                        reauthenticate(shared, who, &renewals, &mut upstream, &expect, &mut next_id).await?;
            renewals.done.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
    }
}

/// Where the request pump sends: the upstream connection's write half, and the queue of what
/// the response pump is to expect, in the same order.
struct Outbound<W: AsyncRead + AsyncWrite> {
    upstream: WriteHalf<W>,
    expect: mpsc::Sender<Expected>,
}

/// The upstream SASL session of a relayed connection: when to renew it next (`None`: never,
/// for mutual TLS or a session without expiry), and how many times it was renewed.
struct Renewals<'a> {
    at: Option<Instant>,
    /// The broker the session is with (an AWS_MSK_IAM renewal signs its name).
    host: Option<Arc<str>>,
    done: &'a AtomicU32,
}

/// Renews the SASL session on this connection (KIP-368) and returns when to renew it next.
/// Counted in `kafka_proxy_upstream_reauthentications_total`; a failure closes the connection
/// with the broker's reason.
async fn reauthenticate<W: AsyncRead + AsyncWrite>(
    shared: &Shared,
    who: &Client,
    renewals: &Renewals<'_>,
    upstream: &mut WriteHalf<W>,
    expect: &mpsc::Sender<Expected>,
    next_id: &mut i32,
) -> Result<Option<Instant>, ConnectionError> {
    let identity = &shared.identities.all[who.identity];
    let timeout = shared.settings.connect_timeout;
    let mut transport = PumpTransport {
        upstream,
        expect,
        next_id,
    };
    let host = renewals.host.as_deref().unwrap_or_default();
    let result = tokio::time::timeout(
        timeout,
        sasl::authenticate(&mut transport, &identity.auth, host),
    )
    .await
    .unwrap_or_else(|_| {
        Err(SaslError::Transport(format!(
            "no answer within {timeout:?}"
        )))
    });
    match result {
        Ok(session) => {
            metrics::counter!("kafka_proxy_upstream_reauthentications_total", "identity" => identity.name.clone())
                .increment(1);
            let renew_at = session.and_then(|s| s.renew_at());
            tracing::debug!(next_in = ?renew_at.map(|at| at.saturating_duration_since(Instant::now())), "upstream SASL session renewed");
            Ok(renew_at)
        }
        Err(e) => {
            metrics::counter!("kafka_proxy_upstream_reauthentication_failures_total", "identity" => identity.name.clone())
                .increment(1);
            Err(ConnectionError::Reauthentication(e))
        }
    }
}

/// The SASL exchange inside a relayed connection: each request is queued as
/// [`Expected::Own`] before it is written, and its answer comes back from the response pump.
struct PumpTransport<'a, W: AsyncRead + AsyncWrite> {
    upstream: &'a mut WriteHalf<W>,
    expect: &'a mpsc::Sender<Expected>,
    next_id: &'a mut i32,
}

impl<W: AsyncRead + AsyncWrite> sasl::Transport for PumpTransport<'_, W> {
    async fn round_trip<
        M: kafka_protocol::protocol::Message + kafka_protocol::protocol::Encodable,
    >(
        &mut self,
        key: kafka_protocol::messages::ApiKey,
        version: i16,
        request: &M,
    ) -> Result<Bytes, SaslError> {
        let proxy_id = *self.next_id;
        *self.next_id = proxy_id.wrapping_add(1);
        let frame = kafka::codec::encode_request(key, version, proxy_id, request)
            .map_err(|e| SaslError::Protocol(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        let gone = || SaslError::Transport("the connection is closing".into());
        self.expect
            .send(Expected::Own { proxy_id, reply })
            .await
            .map_err(|_| gone())?;
        let io = |e: std::io::Error| SaslError::Transport(e.to_string());
        self.upstream.write_all(&frame).await.map_err(io)?;
        self.upstream.flush().await.map_err(io)?;
        answer.await.map_err(|_| gone())
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
            write_to_client(shared, client, &answer.bytes).await?;
            wrote = true;
            // Its charge goes back with it, now that it has been written.
        }
    }
    Ok(wrote)
}

/// Pairs a response with the oldest outstanding request: the response must carry the id the
/// proxy gave that request. Returns that request's plan for its response.
fn pair(
    metrics: &crate::admin::ApiMetrics,
    pending: &mut VecDeque<Expected>,
    proxy_id: i32,
) -> Result<Awaited, ConnectionError> {
    match pending.front() {
        Some(Expected::Response {
            proxy_id: expected, ..
        }) if *expected == proxy_id => {
            let Some(Expected::Response { sent, awaited, .. }) = pending.pop_front() else {
                unreachable!("the front was a response")
            };
            metrics.response(awaited.api_key, sent.elapsed());
            Ok(awaited)
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

/// Inspects one response whose request's plan selected it ([`kafka::needs_inspection`]). A response that
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
    if result.is_ok()
        && api_key == kafka_protocol::messages::ApiKey::Metadata as i16
        && api_version >= 10
    {
        // Its topic ids name topics in audit lines (Produce v13 names topics by id only).
        let _ = rewrite::metadata_topic_ids(api_version, payload, &mut |id, name| {
            shared.topics.note(id, name)
        });
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
                    Some(Expected::Response { .. } | Expected::Own { .. }) => break,
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
            if let Some(Expected::Own {
                proxy_id: expected, ..
            }) = pending.front()
            {
                // The proxy's own SASL exchange: its answer goes back to the request pump,
                // never to the client.
                if *expected != proxy_id {
                    crate::admin::frame_rejected("response_unpaired");
                    return Err(ConnectionError::Unexpected {
                        got: proxy_id,
                        expected: Some(*expected),
                    });
                }
                if range.len() > sasl::MAX_SASL_RESPONSE_BYTES {
                    crate::admin::frame_rejected("response_too_large");
                    return Err(ConnectionError::Reauthentication(SaslError::Protocol(
                        format!("a {}-byte SASL answer", range.len()),
                    )));
                }
                write_to_client(shared, &mut client, &chunk[run_start..range.start]).await?;
                run_start = range.end;
                if let Some(Expected::Own { reply, .. }) = pending.pop_front() {
                    let payload = &chunk[range.start + frame::LENGTH_PREFIX..range.end];
                    // The request pump waits for it; if it is gone, so is the connection.
                    let _ = reply.send(Bytes::copy_from_slice(payload));
                }
                continue;
            }
            let Awaited {
                client_id,
                api_key,
                api_version,
                inspect: planned_inspection,
                scrub,
                audit,
            } = pair(&identity.api_metrics, &mut pending, proxy_id)?;
            frame::set_response_correlation_id(&mut chunk[range.clone()], client_id);
            let rewrite_error = move |source: RewriteError| ConnectionError::Rewrite {
                api: crate::admin::api_name(api_key),
                version: api_version,
                source,
            };
            let payload_range = range.start + frame::LENGTH_PREFIX..range.end;
            if let Some(audit) = audit {
                audit.answered(&chunk[payload_range.clone()]);
            }
            if api_key == DESCRIBE_TOPIC_PARTITIONS {
                // Its topic ids name topics in audit lines, as Metadata's do.
                let _ = rewrite::describe_topic_partitions_ids(
                    api_version,
                    &chunk[payload_range.clone()],
                    &mut |id, name| shared.topics.note(id, name),
                );
            }
            let rewrite::Needs {
                addresses: inspect_it,
                text: scrub_it,
            } = rewrite::response_needs(
                api_key,
                api_version,
                &chunk[payload_range],
                planned_inspection,
                scrub,
            )
            .map_err(rewrite_error)?;
            let local_due = matches!(pending.front(), Some(Expected::Local(_)));
            if !inspect_it && !scrub_it && !local_due {
                continue;
            }
            // Write what precedes this frame, then this frame (rewritten or not), then any
            // local answers due after it; the rest of the chunk starts afresh.
            write_to_client(shared, &mut client, &chunk[run_start..range.start]).await?;
            // A rewrite is charged before it is built, and until it has been written; beside a
            // large frame that holds budget of its own, at most the rest of the budget (so it
            // can never wait for itself).
            // A scrub likewise; a response both rewritten and scrubbed (its text after its
            // addresses) is charged for both.
            let scrubbers = scrub_it.then(|| shared.scrubbers());
            let scrubber = scrubbers.as_ref().and_then(|s| s.get(who.set));
            let bound = if inspect_it {
                let host_len = shared.registry.advertised_host().len();
                let rewritten = rewrite::rewrite_bound(range.len(), host_len);
                Some(rewritten.saturating_add(scrubber.map_or(0, |s| s.bound(rewritten))))
            } else {
                scrubber.map(|s| s.bound(range.len()))
            };
            let charge = match bound {
                Some(bound) => {
                    let own = match &chunk {
                        Chunk::Large(f) => f.held(),
                        Chunk::Small(_) => 0,
                    };
                    let bound = bound.min(shared.budget.total().saturating_sub(own));
                    Some(shared.budget.charge(bound).await)
                }
                None => None,
            };
            let frame = chunk.split_to(range.end).slice(range.start..);
            let rewritten = if inspect_it {
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
            let replaced = match scrubber {
                Some(scrubber) => {
                    let base = rewritten.as_ref().unwrap_or(&frame);
                    kafka::scrub::scrub_response(
                        api_key,
                        api_version,
                        &base[frame::LENGTH_PREFIX..],
                        scrubber,
                    )
                    .map_err(|e| rewrite_error(e.into()))?
                    .or(rewritten)
                }
                None => rewritten,
            };
            if replaced.is_some() {
                identity.api_metrics.rewritten(api_key);
            }
            write_to_client(shared, &mut client, replaced.as_ref().unwrap_or(&frame)).await?;
            drop((replaced, charge));
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
