//! Length-prefixed Kafka frames, and the header fields the proxy reads without decoding.
//!
//! Every Kafka frame is an int32 length followed by that many bytes. A request starts with
//! api key (int16), api version (int16) and correlation id (int32); a response starts with the
//! correlation id. These positions are the same for every API at every version, known or not,
//! which is what lets frames the proxy does not understand pass through untouched.
//!
//! Every byte is read through [`super::wire::Walker`], the one bounds-checked reader.

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;

use super::codec;
use super::wire::{Walker, WireResult};

/// Produce API key: the one request that may expect no response.
const PRODUCE: i16 = ApiKey::Produce as i16;

/// Size of the length prefix in front of every frame.
pub const LENGTH_PREFIX: usize = 4;

/// Frames up to this size are not charged to --max-buffered-bytes: every connection may hold
/// one such frame per direction (README "Sizing and limits").
pub const SMALL_FRAME_BYTES: usize = 64 * 1024;

/// Largest read the proxy reserves ahead of data actually arriving. A peer that announces a
/// huge frame makes the buffer grow only as fast as it really sends bytes.
const MAX_RESERVE_AHEAD: usize = 256 * 1024;

/// Bytes the proxy keeps free in an idle read buffer. Small, so that ten thousand idle
/// connections stay cheap; the buffer grows with the traffic.
pub const INITIAL_READ_CAPACITY: usize = 4 * 1024;

/// Why a frame was refused. The connection that sent it is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is negative or above the configured maximum.
    #[error("frame of {length} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Length the peer announced.
        length: i64,
        /// Configured maximum.
        max: usize,
    },
    /// The frame is shorter than the fixed header it must start with.
    #[error("frame of {length} bytes is too short for a {what} header")]
    TooShort {
        /// Length of the frame body.
        length: usize,
        /// Which header was expected.
        what: &'static str,
    },
    /// A header field the proxy must read is not well-formed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The fixed part of a request header, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// API key; may be one the protocol library does not know.
    pub api_key: i16,
    /// API version the client chose.
    pub api_version: i16,
    /// Correlation id the response will carry.
    pub correlation_id: i32,
}

/// Splits complete frames off the front of a read buffer.
///
/// The returned frames are views of the buffer the socket read into: nothing is copied,
/// whether a frame is forwarded as is or inspected.
#[derive(Debug)]
pub struct FrameReader {
    max_frame: usize,
}

impl FrameReader {
    /// A reader that refuses frames longer than `max_frame` bytes (length prefix excluded).
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }

    /// Length of the first frame in `buf`, prefix included, if its length prefix is complete.
    fn frame_len(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Ok(length) = Walker::new(buf).i32() else {
            return Ok(None);
        };
        if length < 0 || length as usize > self.max_frame {
            return Err(FrameError::TooLarge {
                length: length.into(),
                max: self.max_frame,
            });
        }
        Ok(Some(LENGTH_PREFIX + length as usize))
    }

    /// Length (prefix included) of the frame at the front of `buf` when its length prefix has
    /// arrived but the rest has not: what the connection charges to the memory budget before
    /// reading on. Errors like [`FrameReader::next_chunk`] on an invalid length.
    pub fn incomplete_frame_len(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        Ok(self.frame_len(buf)?.filter(|len| *len > buf.len()))
    }

    /// Whether `buf` holds more than its first frame: bytes of a next frame already arrived
    /// (the peer pipelines).
    pub fn holds_more_than_one_frame(&self, buf: &[u8]) -> bool {
        matches!(self.frame_len(buf), Ok(Some(len)) if buf.len() > len)
    }

    /// Takes the next complete frame (length prefix included) off the front of `buf`, or
    /// returns `None` when more bytes are needed.
    pub fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.frame_len(buf)? {
            Some(len) if buf.len() >= len => Ok(Some(buf.split_to(len))),
            _ => Ok(None),
        }
    }

    /// Takes every complete frame at the front of `buf` off as one chunk, so that a run of
    /// frames read together is forwarded together. Iterate it with [`frames`]. An invalid
    /// frame after valid ones is reported on the next call, once the valid ones are out.
    /// The chunk stays mutable so that correlation ids can be replaced in place.
    pub fn next_chunk(&self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let mut end = 0;
        loop {
            match self.frame_len(&buf[end..]) {
                Ok(Some(len)) if buf.len() - end >= len => end += len,
                Ok(_) => break,
                Err(e) if end == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok((end > 0).then(|| buf.split_to(end)))
    }

    /// Reserves room before the next read: the rest of the frame being received (never more
    /// than `MAX_RESERVE_AHEAD` beyond what is already buffered) plus `ahead` bytes (at least
    /// [`INITIAL_READ_CAPACITY`]) for the frames after it, the two together up to
    /// [`SMALL_FRAME_BYTES`] unless the rest alone is more. So one read can take the end of a
    /// frame and the next ones of a pipelining peer, and a read that fills its room shows that
    /// the peer had more to send.
    pub fn reserve_for_next_read(&self, buf: &mut BytesMut, ahead: usize) {
        let ahead = ahead.max(INITIAL_READ_CAPACITY);
        let wanted = match self.frame_len(buf) {
            Ok(Some(len)) if len > buf.len() => {
                let rest = (len - buf.len()).min(MAX_RESERVE_AHEAD);
                rest.max((rest + ahead).min(SMALL_FRAME_BYTES))
            }
            _ => ahead,
        };
        if buf.capacity() - buf.len() < wanted {
            buf.reserve(wanted);
        }
    }
}

/// The byte range (length prefix included) of the frame that starts at `offset` in a chunk
/// from [`FrameReader::next_chunk`], or `None` at the end. A length that does not fit the
/// chunk (impossible for a chunk `next_chunk` made) also ends it.
pub fn frame_at(chunk: &[u8], offset: usize) -> Option<std::ops::Range<usize>> {
    let len = usize::try_from(Walker::new(chunk.get(offset..)?).i32().ok()?).ok()?;
    let end = offset.checked_add(LENGTH_PREFIX + len)?;
    (end <= chunk.len()).then_some(offset..end)
}

/// Iterates over the frames of a chunk from [`FrameReader::next_chunk`], yielding each
/// frame's byte range within the chunk (length prefix included).
pub fn frames(chunk: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let range = frame_at(chunk, offset)?;
        offset = range.end;
        Some(range)
    })
}

/// Reads the fixed request header of a frame (length prefix included).
pub fn request_header(frame: &[u8]) -> Result<RequestHeader, FrameError> {
    let mut w = Walker::new(frame.get(LENGTH_PREFIX..).unwrap_or_default());
    let fixed = |w: &mut Walker<'_>| -> WireResult<RequestHeader> {
        Ok(RequestHeader {
            api_key: w.i16()?,
            api_version: w.i16()?,
            correlation_id: w.i32()?,
        })
    };
    fixed(&mut w).map_err(|_| FrameError::TooShort {
        length: frame.len().saturating_sub(LENGTH_PREFIX),
        what: "request",
    })
}

/// Length of the whole request header of a frame (length prefix included): api key, version,
/// correlation id, client id and, in header v2, tagged fields; counted from the end of the
/// length prefix, so the body starts at `LENGTH_PREFIX + request_header_len(frame)?`. The
/// header version comes from [`codec::request_header_version`] (v1 for api keys the protocol
/// library does not know).
pub fn request_header_len(frame: &[u8]) -> Result<usize, FrameError> {
    let header = request_header(frame)?;
    let body = frame.get(LENGTH_PREFIX..).unwrap_or_default();
    let mut w = Walker::new(body);
    w.skip(8)
        .and_then(|()| {
            w.request_header_rest(codec::request_header_version(
                header.api_key,
                header.api_version,
            ))
        })
        .and_then(|()| w.take(0))
        // The walker hands out subslices of `body`: the empty one it returns now starts where
        // the header ends.
        .map(|rest| rest.as_ptr() as usize - body.as_ptr() as usize)
        .map_err(|reason| FrameError::Malformed {
            what: "request header",
            reason,
        })
}

/// Reads the correlation id of a response frame (length prefix included).
pub fn response_correlation_id(frame: &[u8]) -> Result<i32, FrameError> {
    Walker::new(frame.get(LENGTH_PREFIX..).unwrap_or_default())
        .i32()
        .map_err(|_| FrameError::TooShort {
            length: frame.len().saturating_sub(LENGTH_PREFIX),
            what: "response",
        })
}

/// Offset of the correlation id in a request frame: length prefix, api key, api version.
const REQUEST_CORRELATION_AT: usize = LENGTH_PREFIX + 4;
/// Offset of the correlation id in a response frame: right after the length prefix.
const RESPONSE_CORRELATION_AT: usize = LENGTH_PREFIX;

/// Replaces the correlation id of a request frame whose header [`request_header`] has read.
///
/// The proxy numbers the requests it forwards itself, so a response can only ever be paired
/// with the request it answers, whatever ids the client chose.
pub fn set_request_correlation_id(frame: &mut [u8], id: i32) {
    frame[REQUEST_CORRELATION_AT..REQUEST_CORRELATION_AT + 4].copy_from_slice(&id.to_be_bytes());
}

/// Puts the client's correlation id back into a response frame whose id
/// [`response_correlation_id`] has read.
pub fn set_response_correlation_id(frame: &mut [u8], id: i32) {
    frame[RESPONSE_CORRELATION_AT..RESPONSE_CORRELATION_AT + 4].copy_from_slice(&id.to_be_bytes());
}

/// Whether a request expects a response. Only Produce with `acks=0` does not: the broker
/// sends nothing back, and a proxy that waited for an answer would stall or leak.
///
/// A Produce request whose header or `acks` cannot be read is an error: the broker could not
/// read it either, and guessing would let the proxy's idea of which responses are due drift
/// from the broker's.
pub fn expects_response(header: &RequestHeader, frame: &[u8]) -> Result<bool, FrameError> {
    if header.api_key != PRODUCE {
        return Ok(true);
    }
    produce_acks(
        header.api_version,
        frame.get(LENGTH_PREFIX..).unwrap_or_default(),
    )
    .map(|acks| acks != 0)
    .map_err(|reason| FrameError::Malformed {
        what: "Produce request",
        reason,
    })
}

/// Reads `acks` from a Produce request body (header included). v0-v2 start with `acks`;
/// v3+ have a transactional id before it (compact from v9, where the header is v2 too).
fn produce_acks(version: i16, body: &[u8]) -> WireResult<i16> {
    let mut w = Walker::new(body);
    w.skip(8)?; // api key, api version, correlation id
    w.request_header_rest(codec::request_header_version(PRODUCE, version))?;
    w.produce_request_acks(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::{ProduceRequest, RequestHeader as KRequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn produce_frame(version: i16, acks: i16, transactional_id: Option<&str>) -> BytesMut {
        let header = KRequestHeader::default()
            .with_request_api_key(0)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some(StrBytes::from_static_str("client-1")));
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(1000)
            .with_transactional_id(
                transactional_id.map(|t| StrBytes::from_string(t.into()).into()),
            );
        let header_version = if version >= 9 { 2 } else { 1 };
        let mut body = BytesMut::new();
        header.encode(&mut body, header_version).unwrap();
        request.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn reads_acks_at_every_produce_version() {
        for version in 3..=13 {
            for acks in [-1i16, 0, 1] {
                for txn in [None, Some("txn-42")] {
                    let frame = produce_frame(version, acks, txn);
                    let header = request_header(&frame).unwrap();
                    assert_eq!(header.api_key, 0);
                    assert_eq!(header.api_version, version);
                    assert_eq!(header.correlation_id, 77);
                    assert_eq!(
                        produce_acks(version, &frame[4..]),
                        Ok(acks),
                        "v{version} txn {txn:?}"
                    );
                    assert_eq!(expects_response(&header, &frame), Ok(acks != 0));
                }
            }
        }
    }

    /// Produce v0-v2 (which kafka-protocol cannot encode): header v1, then acks, timeout_ms,
    /// topic_data. No transactional id.
    pub(crate) fn produce_v0_v2_frame(version: i16, acks: i16, timeout_ms: i32) -> BytesMut {
        let mut body = BytesMut::new();
        body.put_i16(0);
        body.put_i16(version);
        body.put_i32(77);
        body.put_i16(8);
        body.put_slice(b"client-1");
        body.put_i16(acks);
        body.put_i32(timeout_ms);
        body.put_i32(0); // no topics
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn reads_acks_of_produce_v0_to_v2_which_have_no_transactional_id() {
        // b9174ba skipped a transactional id here and read acks from timeout_ms's upper half:
        // acks=1 with timeout 1000 looked like acks=0, so the broker's answer was unexpected.
        for version in 0..=2 {
            for acks in [-1i16, 0, 1] {
                for timeout in [0, 1000, 30_000, 65_536, i32::MAX] {
                    let frame = produce_v0_v2_frame(version, acks, timeout);
                    let header = request_header(&frame).unwrap();
                    assert_eq!(
                        produce_acks(version, &frame[4..]),
                        Ok(acks),
                        "v{version} acks {acks} timeout {timeout}"
                    );
                    assert_eq!(expects_response(&header, &frame), Ok(acks != 0));
                }
            }
        }
    }

    #[test]
    fn a_produce_whose_acks_cannot_be_read_is_an_error() {
        // The broker could not read it either; guessing would desynchronise the pairing.
        for version in [2, 5, 9] {
            let frame = if version < 3 {
                produce_v0_v2_frame(version, 0, 1000)
            } else {
                produce_frame(version, 0, Some("t"))
            };
            let acks_end = (4..=frame.len())
                .find(|&cut| produce_acks(version, &frame[4..cut]).is_ok())
                .expect("acks readable in the whole frame");
            for cut in 12..acks_end {
                let short = &frame[..cut];
                let header = request_header(short).unwrap();
                assert!(
                    matches!(
                        expects_response(&header, short),
                        Err(FrameError::Malformed { .. })
                    ),
                    "v{version} cut at {cut}"
                );
            }
        }
        // A client id length below -1 is malformed, not "null".
        let mut frame = produce_v0_v2_frame(2, 1, 1000);
        frame[12..14].copy_from_slice(&(-2i16).to_be_bytes());
        let header = request_header(&frame).unwrap();
        assert!(expects_response(&header, &frame).is_err());
    }

    #[test]
    fn correlation_ids_are_replaced_in_place() {
        let mut frame = produce_frame(9, 1, None);
        set_request_correlation_id(&mut frame, -5);
        assert_eq!(request_header(&frame).unwrap().correlation_id, -5);
        assert_eq!(produce_acks(9, &frame[4..]), Ok(1));
        let mut response = BytesMut::from(&[0u8, 0, 0, 5, 0, 0, 0, 1, 9][..]);
        set_response_correlation_id(&mut response, 77);
        assert_eq!(response_correlation_id(&response), Ok(77));
        assert_eq!(response[8], 9);
    }

    #[test]
    fn splits_pipelined_frames_without_copying() {
        let mut buf = BytesMut::new();
        for i in 0..3u8 {
            buf.put_i32(8);
            buf.put_slice(&[0, 3, 0, 12, 0, 0, 0, i]);
        }
        buf.put_slice(&[0, 0, 0, 8, 0, 3]); // half of a fourth frame
        let reader = FrameReader::new(1024);
        for i in 0..3 {
            let frame = reader.next_frame(&mut buf).unwrap().unwrap();
            assert_eq!(frame.len(), 12);
            let header = request_header(&frame).unwrap();
            assert_eq!((header.api_key, header.api_version), (3, 12));
            assert_eq!(header.correlation_id, i);
        }
        assert_eq!(reader.next_frame(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 6);
    }

    #[test]
    fn chunks_hold_every_complete_frame_and_errors_come_after_them() {
        let mut buf = BytesMut::new();
        for i in 0..3u8 {
            buf.put_i32(8);
            buf.put_slice(&[0, 3, 0, 12, 0, 0, 0, i]);
        }
        buf.put_i32(1000); // oversize for this reader
        let reader = FrameReader::new(100);
        let chunk = reader.next_chunk(&mut buf).unwrap().unwrap();
        assert_eq!(chunk.len(), 36);
        let ids: Vec<i32> = frames(&chunk)
            .map(|r| request_header(&chunk[r]).unwrap().correlation_id)
            .collect();
        assert_eq!(ids, vec![0, 1, 2]);
        assert!(matches!(
            reader.next_chunk(&mut buf),
            Err(FrameError::TooLarge { length: 1000, .. })
        ));
    }

    #[test]
    fn refuses_oversize_and_negative_lengths() {
        let reader = FrameReader::new(100);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 101][..]);
        assert_eq!(
            reader.next_frame(&mut buf),
            Err(FrameError::TooLarge {
                length: 101,
                max: 100
            })
        );
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            reader.next_frame(&mut buf),
            Err(FrameError::TooLarge { length: -1, .. })
        ));
    }

    #[test]
    fn reserves_gradually_for_a_huge_announced_frame() {
        let reader = FrameReader::new(usize::MAX >> 2);
        let mut buf = BytesMut::new();
        buf.put_i32(i32::MAX);
        reader.reserve_for_next_read(&mut buf, 64 * 1024);
        assert!(buf.capacity() < 2 * MAX_RESERVE_AHEAD);
    }

    #[test]
    fn reserves_the_rest_of_a_frame_plus_the_read_ahead_up_to_the_small_frame_lane() {
        let reader = FrameReader::new(1 << 20);
        let mut buf = BytesMut::new();
        buf.put_i32(16 * 1024 - 4);
        reader.reserve_for_next_read(&mut buf, 8 * 1024);
        assert!(buf.capacity() - buf.len() >= 16 * 1024 - 4 + 8 * 1024);

        let mut buf = BytesMut::new();
        buf.put_i32(60 * 1024 - 4);
        reader.reserve_for_next_read(&mut buf, SMALL_FRAME_BYTES);
        let room = buf.capacity() - buf.len();
        assert!(room >= SMALL_FRAME_BYTES - 4, "{room}");
        assert!(room < 2 * SMALL_FRAME_BYTES, "{room}");
    }

    #[test]
    fn reserves_the_read_ahead_between_frames_and_never_less_than_the_initial_capacity() {
        let reader = FrameReader::new(1 << 20);
        let mut buf = BytesMut::new();
        reader.reserve_for_next_read(&mut buf, 64 * 1024);
        assert!(buf.capacity() >= 64 * 1024);
        let mut buf = BytesMut::new();
        reader.reserve_for_next_read(&mut buf, 0);
        assert!(buf.capacity() >= INITIAL_READ_CAPACITY);
    }

    #[test]
    fn short_headers_are_errors_not_panics() {
        assert!(request_header(&[0, 0, 0, 3, 0, 1, 0]).is_err());
        assert!(response_correlation_id(&[0, 0, 0, 2, 0, 1]).is_err());
        assert_eq!(response_correlation_id(&[0, 0, 0, 4, 0, 0, 1, 2]), Ok(258));
    }
}
