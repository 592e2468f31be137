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
    /// When the first byte of the request at the front of the buffer arrived.
    frame_started: Option<Instant>,
    /// When the client last sent anything.
    last_read: Instant,
    /// Deadline and flag for the first request; `None` once it arrived.
    first: Option<(Instant, Duration)>,
}

impl<R: AsyncRead + AsyncWrite> Requests<R> {
    pub(super) fn new(shared: &Shared, client: ReadHalf<R>, accepted: Instant) -> Self {
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
    /// or the idle one. Waiting must count: the proxy cannot tell a client whose request is
    /// all sent from one that stalled after its first bytes (it does not read while waiting),
    /// and if waiting did not count, stalled requests would each take their turn holding the
    /// budget for a whole --frame-timeout, one after the other, while every other client's
    /// large frames wait (tests/abuse.rs (a'): the well-behaved client then stalled for 10 s).
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
    pub(super) async fn next_chunk(
        &mut self,
        shared: &Shared,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Chunk>, ConnectionError> {
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

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
