//! What a connection reads: one direction's read buffer under the memory rules
//! ([`Inbound`]), and the client side's run of complete requests under the client time limits
//! ([`Requests`]).

use std::future::Future;
use std::time::{Duration, Instant};

use std::ops::{Deref, DerefMut};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf};
use tokio::sync::watch;

use super::ConnectionError;
use crate::budget::Held;
use crate::kafka::frame::{FrameError, FrameReader, INITIAL_READ_CAPACITY, SMALL_FRAME_BYTES};
use crate::shared::Shared;

/// One direction's read side: the frame reader, the read buffer, and the large frame being
/// received.
///
/// Memory rules: a frame up to [`SMALL_FRAME_BYTES`] is read into a small buffer that grows
/// only as bytes arrive; a larger frame is read only once budget for its whole length is held,
/// into the memory the budget hands out with it ([`crate::budget`]), never into memory of the
/// general allocator; that memory goes back to the budget when the frame's [`Chunk`] is
/// dropped, once it has been written on. So what a connection holds outside the budget stays
/// small, whatever frames came before.
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
pub(super) struct Inbound {
    reader: FrameReader,
    buf: BytesMut,
    /// The large frame being received, in the budget's memory.
    large: Option<Large>,
    read_ahead: usize,
    /// No buffer is held until the next bytes arrive.
    parked: bool,
}

/// A large frame being received: its memory (with the budget held for it), its length and
/// how much of it has arrived.
struct Large {
    held: Held,
    len: usize,
    filled: usize,
}

/// Complete frames as read, ready to be forwarded: a run of small frames from the read
/// buffer, or one large frame in the budget's memory (whose budget and memory go back when the
/// chunk is dropped). Both are mutable in place (correlation ids).
pub(super) enum Chunk {
    /// Frames up to [`SMALL_FRAME_BYTES`], several at a time.
    Small(BytesMut),
    /// One frame above [`SMALL_FRAME_BYTES`].
    Large(LargeFrame),
}

/// One complete large frame in the budget's memory.
pub(super) struct LargeFrame {
    held: Held,
    len: usize,
}

impl LargeFrame {
    /// Bytes of budget the frame holds.
    pub(super) fn held(&self) -> usize {
        self.held.held()
    }
}

impl AsRef<[u8]> for LargeFrame {
    fn as_ref(&self) -> &[u8] {
        &self.held.bytes()[..self.len]
    }
}

impl Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Small(b) => b,
            Chunk::Large(f) => f.as_ref(),
        }
    }
}

impl DerefMut for Chunk {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Chunk::Small(b) => b,
            Chunk::Large(f) => &mut f.held.buf()[..f.len],
        }
    }
}

impl Chunk {
    /// Takes the frames before `end` off the front of the chunk as shared bytes, leaving the
    /// rest. A large frame's memory then goes back to the budget when the last clone of those
    /// bytes is dropped.
    pub(super) fn split_to(&mut self, end: usize) -> Bytes {
        match self {
            Chunk::Small(b) => b.split_to(end).freeze(),
            Chunk::Large(_) => {
                let Chunk::Large(frame) = std::mem::replace(self, Chunk::Small(BytesMut::new()))
                else {
                    unreachable!("matched a large chunk")
                };
                // A large chunk is one frame: `end` is its end.
                debug_assert_eq!(end, frame.len);
                Bytes::from_owner(frame)
            }
        }
    }
}

/// How long a direction with nothing buffered keeps its read buffer.
pub(super) const IDLE_PARK: Duration = Duration::from_secs(1);

/// The first read of a parked direction: small, inside the task, copied into a new buffer.
const PARKED_READ: usize = 256;

impl Inbound {
    pub(super) fn new(max_frame: usize) -> Self {
        Self {
            reader: FrameReader::new(max_frame),
            buf: BytesMut::new(),
            large: None,
            read_ahead: INITIAL_READ_CAPACITY,
            parked: true,
        }
    }

    /// Whether this direction may give its buffer back now: nothing buffered, no budget held.
    pub(super) fn can_park(&self) -> bool {
        !self.parked && self.buf.is_empty() && self.large.is_none()
    }

    /// Gives the read buffer back (see [`Inbound::can_park`]).
    pub(super) fn park(&mut self) {
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
    pub(super) async fn read_from<S: AsyncRead + Unpin>(
        &mut self,
        from: &mut S,
    ) -> std::io::Result<usize> {
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
        if let Some(large) = &mut self.large {
            // A large frame's body, into its own memory and no further than its end: it says
            // nothing of the frames around it.
            let n = from
                .read(&mut large.held.buf()[large.filled..large.len])
                .await?;
            large.filled += n;
            return Ok(n);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = from.read_buf(&mut self.buf).await?;
        if n >= room && room >= self.read_ahead && self.reader.holds_more_than_one_frame(&self.buf)
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
    pub(super) async fn prepare<S>(
        &mut self,
        shared: &Shared,
        stop: impl Future<Output = S>,
    ) -> Result<Result<(), S>, FrameError> {
        if self.parked || self.large.is_some() {
            return Ok(Ok(()));
        }
        let incomplete = self.reader.incomplete_frame_len(&self.buf)?;
        if let Some(len) = incomplete.filter(|len| *len > SMALL_FRAME_BYTES) {
            {
                let mut held = match shared.budget.try_take(len) {
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
                // What arrived of the frame so far is all the buffer holds (it is incomplete).
                let filled = self.buf.len();
                held.buf()[..filled].copy_from_slice(&self.buf);
                self.buf.clear();
                self.large = Some(Large { held, len, filled });
            }
        } else {
            self.reader
                .reserve_for_next_read(&mut self.buf, self.read_ahead);
        }
        Ok(Ok(()))
    }

    /// The large frame being received, once its budget is held: (bytes arrived, length).
    pub(super) fn large_progress(&self) -> Option<(usize, usize)> {
        self.large.as_ref().map(|l| (l.filled, l.len))
    }

    /// Every complete frame at the front of the buffer, as one chunk; or the large frame,
    /// once all of it has arrived.
    pub(super) fn take_chunk(&mut self) -> Result<Option<Chunk>, FrameError> {
        if let Some(large) = &self.large {
            if large.filled < large.len {
                return Ok(None);
            }
            let Large { held, len, .. } = self.large.take().expect("checked above");
            return Ok(Some(Chunk::Large(LargeFrame { held, len })));
        }
        Ok(self.reader.next_chunk(&mut self.buf)?.map(Chunk::Small))
    }

    /// The last chunk taken has been written on: give back a read buffer that grew beyond
    /// twice the small-frame size.
    pub(super) fn release(&mut self) {
        if self.buf.capacity() > 2 * SMALL_FRAME_BYTES {
            let mut small = BytesMut::with_capacity(INITIAL_READ_CAPACITY.max(self.buf.len()));
            small.extend_from_slice(&self.buf);
            self.buf = small;
        }
    }
}

/// The client side of a connection: reads complete requests under the connection limits.
pub(super) struct Requests<R> {
    client: ReadHalf<R>,
    inbound: Inbound,
    clock: Clock,
}

/// The time limits of a client's requests ([`Clock::deadline`]), apart from the I/O so that
/// they can be tested on their own.
///
/// - The first request must be complete within --first-frame-timeout of the accept, whatever
///   happens meanwhile (waiting for budget included): it is the connection's admission, before
///   any upstream connection exists (a legitimate first request is small and never waits), so
///   a flood of connections that announce huge first requests and stall is closed within it.
/// - Any later request must be complete within --frame-timeout of its first byte, **not**
///   counting the time it waited for budget that others hold.
/// - A large request whose budget is held must then arrive at no less than
///   --min-client-read-rate: within each window of --frame-timeout from the grant, at least
///   `rate × --frame-timeout` more bytes of it (or the rest, when less; at least one byte); a
///   new window starts as soon as a window's bytes are in. This replaces --frame-timeout for
///   it (a large request may take longer as long as it keeps coming), and is the same floor an
///   answer's reader is held to: a client cannot keep budget without sending, so stalled
///   requests each hold the budget for at most one window, one after the other.
/// - A client with no request begun is closed after --client-idle-timeout of silence.
#[derive(Debug)]
pub(super) struct Clock {
    /// Deadline and flag value for the first request; `None` once it arrived.
    first: Option<(Instant, Duration)>,
    /// When the first byte of the request at the front of the buffer arrived.
    frame_started: Option<Instant>,
    /// How long that request has waited for budget so far.
    waited: Duration,
    /// When the client last sent anything.
    last_read: Instant,
    /// The large request whose budget is held: the end of its current window and how many of
    /// its bytes must have arrived by then.
    body: Option<(Instant, usize)>,
    frame_timeout: Duration,
    idle_timeout: Duration,
    rate: u64,
}

/// What closes a client that missed a deadline of [`Clock::deadline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    /// --first-frame-timeout.
    FirstFrame(Duration),
    /// --frame-timeout.
    Frame(Duration),
    /// --min-client-read-rate over a window of --frame-timeout.
    Rate {
        /// Bytes per second.
        rate: u64,
        /// The window.
        after: Duration,
    },
    /// --client-idle-timeout.
    Idle(Duration),
}

impl Limit {
    /// The error that closes the client, with its metric label, flag and log line.
    fn reached(self, shared: &Shared) -> ConnectionError {
        let (label, flag) = match self {
            Limit::FirstFrame(_) => ("first_frame_timeout", "--first-frame-timeout"),
            Limit::Frame(_) => ("frame_timeout", "--frame-timeout"),
            Limit::Rate { .. } => ("client_send_rate", "--min-client-read-rate"),
            Limit::Idle(_) => ("client_idle_timeout", "--client-idle-timeout"),
        };
        match self {
            Limit::FirstFrame(after) | Limit::Frame(after) | Limit::Idle(after) => {
                shared.limit_reached(
                    label,
                    flag,
                    format_args!("closing a client connection after {after:?}"),
                );
                ConnectionError::ClientTimeout { flag, after }
            }
            Limit::Rate { rate, after } => {
                shared.limit_reached(
                    label,
                    flag,
                    format_args!(
                        "closing a client that sent less than {rate} bytes/s of a request \
                         holding budget, over {after:?}"
                    ),
                );
                ConnectionError::ClientSendTooSlow { rate, after }
            }
        }
    }
}

impl Clock {
    pub(super) fn new(
        accepted: Instant,
        first_timeout: Duration,
        frame_timeout: Duration,
        idle_timeout: Duration,
        rate: u64,
    ) -> Self {
        Self {
            first: Some((accepted + first_timeout, first_timeout)),
            frame_started: None,
            waited: Duration::ZERO,
            last_read: accepted,
            body: None,
            frame_timeout,
            idle_timeout,
            rate,
        }
    }

    /// The deadline of the next read and the limit that closes the client when it passes.
    pub(super) fn deadline(&self) -> (Instant, Limit) {
        let ft = self.frame_timeout;
        let request = match (self.body, self.frame_started) {
            (Some((until, _)), _) => Some((
                until,
                Limit::Rate {
                    rate: self.rate,
                    after: ft,
                },
            )),
            (None, Some(started)) => Some((started + ft + self.waited, Limit::Frame(ft))),
            (None, None) => None,
        };
        match (self.first, request) {
            // The first request is held to its own deadline, and to the floor rate once its
            // budget is held (--frame-timeout applies from the second request on).
            (Some((at, _)), Some((until, limit @ Limit::Rate { .. }))) if until < at => {
                (until, limit)
            }
            (Some((at, after)), _) => (at, Limit::FirstFrame(after)),
            (None, Some(request)) => request,
            (None, None) => (
                self.last_read + self.idle_timeout,
                Limit::Idle(self.idle_timeout),
            ),
        }
    }

    /// The deadline while waiting for budget: only the first request's (waiting counts for
    /// nothing else).
    pub(super) fn waiting_deadline(&self) -> Option<(Instant, Limit)> {
        self.first.map(|(at, after)| (at, Limit::FirstFrame(after)))
    }

    /// The request waited `waited` for budget.
    pub(super) fn waited(&mut self, waited: Duration) {
        self.waited += waited;
    }

    /// Budget for a large request of `len` bytes, `filled` of which have arrived, is held
    /// from `now`: its first window starts.
    pub(super) fn granted(&mut self, now: Instant, filled: usize, len: usize) {
        self.body = Some((now + self.frame_timeout, self.due(filled, len)));
    }

    /// Bytes of the large request that must have arrived by the end of a window starting
    /// with `filled` of `len` in.
    fn due(&self, filled: usize, len: usize) -> usize {
        filled
            .saturating_add(super::window_floor(self.rate, self.frame_timeout))
            .min(len)
    }

    /// The client sent bytes at `now`; `large` is the large request's (filled, len) when its
    /// budget is held.
    pub(super) fn read(&mut self, now: Instant, large: Option<(usize, usize)>) {
        self.last_read = now;
        self.frame_started.get_or_insert(now);
        if let (Some((_, due)), Some((filled, len))) = (self.body, large) {
            if filled >= due {
                // This window's bytes are in: the next window starts now.
                self.body = Some((now + self.frame_timeout, self.due(filled, len)));
            }
        }
    }

    /// A request (or run of them) is complete at `now`; `more` when bytes of the next one are
    /// already buffered.
    pub(super) fn complete(&mut self, now: Instant, more: bool) {
        self.first = None;
        self.frame_started = more.then_some(now);
        self.waited = Duration::ZERO;
        self.body = None;
    }

    /// When the client last sent anything.
    pub(super) fn last_read(&self) -> Instant {
        self.last_read
    }
}

impl<R: AsyncRead + AsyncWrite> Requests<R> {
    pub(super) fn new(shared: &Shared, client: ReadHalf<R>, accepted: Instant) -> Self {
        let s = &shared.settings;
        Self {
            client,
            inbound: Inbound::new(s.max_request_bytes),
            clock: Clock::new(
                accepted,
                s.first_frame_timeout,
                s.frame_timeout,
                s.client_idle_timeout,
                s.min_client_read_rate,
            ),
        }
    }

    /// The next run of complete requests, or `None` when the client closed or shutdown began.
    /// The budget held for a large request is released when the next chunk is asked for, that
    /// is after the caller has written this one upstream. The time limits are [`Clock`]'s.
    pub(super) async fn next_chunk(
        &mut self,
        shared: &Shared,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Chunk>, ConnectionError> {
        self.inbound.release();
        loop {
            match self.inbound.take_chunk() {
                Ok(Some(chunk)) => {
                    self.clock
                        .complete(Instant::now(), !self.inbound.buf.is_empty());
                    return Ok(Some(chunk));
                }
                Ok(None) => {}
                Err(e) => {
                    crate::admin::frame_rejected("request_too_large");
                    return Err(ConnectionError::ClientFrame(e));
                }
            }
            // Waiting for budget: only the first request's deadline runs meanwhile.
            let waiting = self.clock.waiting_deadline();
            let mut stop = shutdown.clone();
            let had_large = self.inbound.large.is_some();
            let before = Instant::now();
            let stopped = self
                .inbound
                .prepare(shared, async move {
                    tokio::select! {
                        _ = stop.wait_for(|stop| *stop) => None,
                        limit = async {
                            match waiting {
                                Some((at, limit)) => {
                                    tokio::time::sleep_until(at.into()).await;
                                    limit
                                }
                                None => std::future::pending().await,
                            }
                        } => Some(limit),
                    }
                })
                .await
                .map_err(ConnectionError::ClientFrame)?;
            let now = Instant::now();
            self.clock.waited(now - before);
            match stopped {
                Ok(()) => {}
                Err(None) => return Ok(None),
                Err(Some(limit)) => return Err(limit.reached(shared)),
            }
            if let (false, Some(large)) = (had_large, self.inbound.large_progress()) {
                self.clock.granted(now, large.0, large.1);
            }
            let (deadline, limit) = self.clock.deadline();
            // A quiet client with nothing buffered gives its read buffer back after IDLE_PARK.
            let park_at = self
                .inbound
                .can_park()
                .then(|| self.clock.last_read() + IDLE_PARK)
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
                Err(_) => return Err(limit.reached(shared)),
            };
            if read == 0 {
                return Ok(None);
            }
            shared.bytes_from_clients.increment(read as u64);
            self.clock
                .read(Instant::now(), self.inbound.large_progress());
        }
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
