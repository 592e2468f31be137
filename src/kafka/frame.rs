//! Length-prefixed Kafka frames, and the header fields the proxy reads without decoding.
//!
//! Every Kafka frame is an int32 length followed by that many bytes. A request starts with
//! api key (int16), api version (int16) and correlation id (int32); a response starts with the
//! correlation id. These positions are the same for every API at every version, known or not,
//! which is what lets frames the proxy does not understand pass through untouched.

use bytes::{Buf, Bytes, BytesMut};

/// Size of the length prefix in front of every frame.
pub const LENGTH_PREFIX: usize = 4;

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
/// The returned frames are `Bytes` views of the buffer the socket read into: nothing is
/// copied, whether a frame is forwarded as is or inspected.
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
        if buf.len() < LENGTH_PREFIX {
            return Ok(None);
        }
        let length = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if length < 0 || length as usize > self.max_frame {
            return Err(FrameError::TooLarge {
                length: length.into(),
                max: self.max_frame,
            });
        }
        Ok(Some(LENGTH_PREFIX + length as usize))
    }

    /// Takes the next complete frame (length prefix included) off the front of `buf`, or
    /// returns `None` when more bytes are needed.
    pub fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.frame_len(buf)? {
            Some(len) if buf.len() >= len => Ok(Some(buf.split_to(len).freeze())),
            _ => Ok(None),
        }
    }

    /// Takes every complete frame at the front of `buf` off as one chunk, so that a run of
    /// frames read together is forwarded together. Iterate it with [`frames`]. An invalid
    /// frame after valid ones is reported on the next call, once the valid ones are out.
    pub fn next_chunk(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let mut end = 0;
        loop {
            match self.frame_len(&buf[end..]) {
                Ok(Some(len)) if buf.len() - end >= len => end += len,
                Ok(_) => break,
                Err(e) if end == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok((end > 0).then(|| buf.split_to(end).freeze()))
    }

    /// How many bytes to reserve before the next read: enough for the frame being received,
    /// but never more than [`MAX_RESERVE_AHEAD`] beyond what is already buffered.
    pub fn reserve_for_next_read(&self, buf: &mut BytesMut) {
        let wanted = match self.frame_len(buf) {
            Ok(Some(len)) if len > buf.len() => (len - buf.len()).min(MAX_RESERVE_AHEAD),
            _ => INITIAL_READ_CAPACITY,
        };
        if buf.capacity() - buf.len() < wanted {
            buf.reserve(wanted.max(INITIAL_READ_CAPACITY));
        }
    }
}

/// Iterates over the frames of a chunk from [`FrameReader::next_chunk`], yielding each
/// frame's byte range within the chunk (length prefix included).
pub fn frames(chunk: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let prefix = chunk.get(offset..offset + LENGTH_PREFIX)?;
        let len = LENGTH_PREFIX
            + i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let range = offset..(offset + len).min(chunk.len());
        offset += len;
        Some(range)
    })
}

/// Reads the fixed request header of a frame (length prefix included).
pub fn request_header(frame: &[u8]) -> Result<RequestHeader, FrameError> {
    let body = frame.get(LENGTH_PREFIX..).unwrap_or_default();
    if body.len() < 8 {
        return Err(FrameError::TooShort {
            length: body.len(),
            what: "request",
        });
    }
    Ok(RequestHeader {
        api_key: i16::from_be_bytes([body[0], body[1]]),
        api_version: i16::from_be_bytes([body[2], body[3]]),
        correlation_id: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
    })
}

/// Reads the correlation id of a response frame (length prefix included).
pub fn response_correlation_id(frame: &[u8]) -> Result<i32, FrameError> {
    let body = frame.get(LENGTH_PREFIX..).unwrap_or_default();
    if body.len() < 4 {
        return Err(FrameError::TooShort {
            length: body.len(),
            what: "response",
        });
    }
    Ok(i32::from_be_bytes([body[0], body[1], body[2], body[3]]))
}

/// Produce API key.
const PRODUCE: i16 = 0;
/// First Produce version with a flexible (compact, tagged) body and request header v2.
const PRODUCE_FIRST_FLEXIBLE: i16 = 9;

/// Whether a request expects a response. Only Produce with `acks=0` does not: the broker
/// sends nothing back, and a proxy that waited for an answer would stall or leak.
///
/// A Produce frame too short to hold `acks` is treated as expecting a response; the broker
/// will reject it and close the connection, which the proxy then sees.
pub fn expects_response(header: &RequestHeader, frame: &[u8]) -> bool {
    if header.api_key != PRODUCE {
        return true;
    }
    produce_acks(
        header.api_version,
        frame.get(LENGTH_PREFIX..).unwrap_or_default(),
    ) != Some(0)
}

/// Reads `acks` from a Produce request body (header included): it follows the client id,
/// the header's tagged fields (v9+) and the transactional id.
fn produce_acks(version: i16, body: &[u8]) -> Option<i16> {
    let mut buf = body.get(8..)?;
    // client_id: nullable string with an int16 length in every request header version.
    let client_id_len = read_i16(&mut buf)?;
    if client_id_len > 0 {
        buf = buf.get(client_id_len as usize..)?;
    }
    let flexible = version >= PRODUCE_FIRST_FLEXIBLE;
    if flexible {
        skip_tagged_fields(&mut buf)?;
        // transactional_id: compact nullable string, length + 1 as unsigned varint.
        let len_plus_one = read_unsigned_varint(&mut buf)?;
        if len_plus_one > 1 {
            buf = buf.get((len_plus_one - 1) as usize..)?;
        }
    } else {
        let len = read_i16(&mut buf)?;
        if len > 0 {
            buf = buf.get(len as usize..)?;
        }
    }
    read_i16(&mut buf)
}

fn read_i16(buf: &mut &[u8]) -> Option<i16> {
    if buf.len() < 2 {
        return None;
    }
    Some(buf.get_i16())
}

/// Reads an unsigned varint (at most 5 bytes, as Kafka writes int32-sized values).
pub(crate) fn read_unsigned_varint(buf: &mut &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let byte = *buf.first()?;
        buf.advance(1);
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn skip_tagged_fields(buf: &mut &[u8]) -> Option<()> {
    let count = read_unsigned_varint(buf)?;
    for _ in 0..count {
        read_unsigned_varint(buf)?; // tag
        let size = read_unsigned_varint(buf)? as usize;
        *buf = buf.get(size..)?;
    }
    Some(())
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
                        Some(acks),
                        "v{version} txn {txn:?}"
                    );
                    assert_eq!(expects_response(&header, &frame), acks != 0);
                }
            }
        }
    }

    #[test]
    fn truncated_produce_expects_a_response() {
        let frame = produce_frame(9, 0, Some("t"));
        for cut in 12..frame.len() - 1 {
            let short = &frame[..cut];
            let header = request_header(short).unwrap();
            // Either acks was still readable, or the frame is treated as expecting an answer.
            let acks = produce_acks(9, &short[4..]);
            assert!(acks.is_none() || acks == Some(0));
            assert_eq!(expects_response(&header, short), acks.is_none());
        }
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
        reader.reserve_for_next_read(&mut buf);
        assert!(buf.capacity() < 2 * MAX_RESERVE_AHEAD);
    }

    #[test]
    fn short_headers_are_errors_not_panics() {
        assert!(request_header(&[0, 0, 0, 3, 0, 1, 0]).is_err());
        assert!(response_correlation_id(&[0, 0, 0, 2, 0, 1]).is_err());
        assert_eq!(response_correlation_id(&[0, 0, 0, 4, 0, 0, 1, 2]), Ok(258));
    }
}
