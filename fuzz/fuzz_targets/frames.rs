//! Framing and header peeks (src/kafka/frame.rs): a byte stream arrives in reads of arbitrary
//! sizes, as from a client or a broker socket; `FrameReader` cuts it into frames or chunks
//! while `reserve_for_next_read` sizes the buffer and `incomplete_frame_len` tells what the
//! frame being received will take; every frame then goes through every peek
//! the connection makes (request header and its length, `expects_response`, response
//! correlation id, correlation id replacement).
//!
//! Invariants: no panic; the frames delivered are exactly those a straightforward reading of
//! the whole stream finds, in order, and an invalid length is reported exactly where that
//! reading finds it; a chunk is a run of whole frames; the buffer grows with the bytes that
//! really arrive, not with the length a peer announces; every peek agrees with reading the
//! fixed header positions directly.
#![no_main]

use bytes::BytesMut;
use kafka_tls_proxy::kafka::frame::{self, FrameError, FrameReader, LENGTH_PREFIX};
use ktp_fuzz::FramesInput;
use libfuzzer_sys::fuzz_target;

/// `MAX_RESERVE_AHEAD` of frame.rs.
const MAX_RESERVE_AHEAD: usize = 256 * 1024;

/// What reading the whole stream at once finds: the complete frames' ranges, then where it
/// stops: at an invalid length (offset, length), or at an incomplete frame (offset).
struct Expected {
    frames: Vec<std::ops::Range<usize>>,
    invalid: Option<(usize, i64)>,
    rest: usize,
}

fn expected(stream: &[u8], max_frame: usize) -> Expected {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let Some(prefix) = stream.get(at..at + 4) else {
            return Expected { frames, invalid: None, rest: at };
        };
        let len = i32::from_be_bytes(prefix.try_into().unwrap());
        if len < 0 || len as usize > max_frame {
            return Expected { frames, invalid: Some((at, len.into())), rest: at };
        }
        let end = at + 4 + len as usize;
        if end > stream.len() {
            return Expected { frames, invalid: None, rest: at };
        }
        frames.push(at..end);
        at = end;
    }
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Every peek the connection makes on one frame, checked against the raw positions.
fn peek(frame_bytes: &[u8]) {
    let body_len = frame_bytes.len() - LENGTH_PREFIX;

    match frame::request_header(frame_bytes) {
        Ok(h) => {
            assert!(body_len >= 8);
            assert_eq!(h.api_key, be_i16(&frame_bytes[4..]));
            assert_eq!(h.api_version, be_i16(&frame_bytes[6..]));
            assert_eq!(h.correlation_id, be_i32(&frame_bytes[8..]));

            let header_len = frame::request_header_len(frame_bytes);
            if let Ok(n) = header_len {
                assert!((8..=body_len).contains(&n), "header of {n} bytes in {body_len}");
                // v1+ headers have a client id (int16 length) after the fixed fields.
                assert!(n >= 10 || n == 8);
            }
            match frame::expects_response(&h, frame_bytes) {
                Ok(expects) => {
                    if h.api_key != 0 {
                        assert!(expects, "only Produce may expect no response");
                    } else {
                        // acks sits after the header: the header must have been readable.
                        let n = header_len.expect("Produce acks read past an unreadable header");
                        assert!(n + 2 <= body_len);
                    }
                }
                Err(e) => {
                    assert_eq!(h.api_key, 0, "only Produce is read past the header: {e}");
                    assert!(matches!(e, FrameError::Malformed { .. }), "{e:?}");
                }
            }

            let mut copy = frame_bytes.to_vec();
            frame::set_request_correlation_id(&mut copy, !h.correlation_id);
            let again = frame::request_header(&copy).expect("header after replacing the id");
            assert_eq!(again.correlation_id, !h.correlation_id);
            assert_eq!((again.api_key, again.api_version), (h.api_key, h.api_version));
            assert_eq!(copy[..8], frame_bytes[..8]);
            assert_eq!(copy[12..], frame_bytes[12..]);
            assert_eq!(frame::expects_response(&again, &copy).ok(), frame::expects_response(&h, frame_bytes).ok());
        }
        Err(e) => {
            assert!(body_len < 8, "{e}");
            assert!(frame::request_header_len(frame_bytes).is_err());
        }
    }

    match frame::response_correlation_id(frame_bytes) {
        Ok(id) => {
            assert!(body_len >= 4);
            assert_eq!(id, be_i32(&frame_bytes[4..]));
            let mut copy = frame_bytes.to_vec();
            frame::set_response_correlation_id(&mut copy, id.wrapping_add(1));
            assert_eq!(frame::response_correlation_id(&copy), Ok(id.wrapping_add(1)));
            assert_eq!(copy[..4], frame_bytes[..4]);
            assert_eq!(copy[8..], frame_bytes[8..]);
        }
        Err(_) => assert!(body_len < 4),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = FramesInput::parse(data) else {
        return;
    };
    let stream = input.stream;
    let want = expected(stream, input.max_frame);
    let reader = FrameReader::new(input.max_frame);

    let mut buf = BytesMut::new();
    let mut got: Vec<std::ops::Range<usize>> = Vec::new();
    let mut taken = 0; // stream offset of buf[0]
    let mut fed = 0;
    let mut error = None;
    'reads: for read in input.reads() {
        // A peer's bytes arrive in reads of at most the spare capacity the connection
        // reserved before each read.
        let mut read = read;
        while !read.is_empty() {
            // The read-ahead the connection adapts between 4 KiB and 64 KiB, varied by read.
            let ahead = 1usize << (12 + read.len() % 5);
            reader.reserve_for_next_read(&mut buf, ahead);
            let spare = buf.capacity() - buf.len();
            assert!(spare > 0, "no room for the next read");
            assert!(
                buf.capacity() <= 2 * (buf.len() + MAX_RESERVE_AHEAD) + 1024 * 1024,
                "capacity {} for {} buffered bytes",
                buf.capacity(),
                buf.len()
            );
            let n = spare.min(read.len());
            buf.extend_from_slice(&read[..n]);
            fed += n;
            read = &read[n..];
            loop {
                let incomplete = reader.incomplete_frame_len(&buf);
                let buffered = buf.len();
                let next = if input.one_frame_at_a_time {
                    reader.next_frame(&mut buf)
                } else {
                    reader.next_chunk(&mut buf)
                };
                // What the memory budget is charged for agrees with what the reader does.
                match (&incomplete, &next) {
                    (Err(a), Err(b)) => assert_eq!(a, b),
                    (Ok(Some(len)), Ok(None)) => {
                        assert!(*len > buffered && *len >= LENGTH_PREFIX);
                        let prefix = i32::from_be_bytes(stream[taken..taken + 4].try_into().unwrap());
                        assert_eq!(*len, LENGTH_PREFIX + prefix as usize);
                    }
                    (Ok(None), Ok(Some(_))) => {}
                    (Ok(None), Ok(None)) => assert!(buffered < LENGTH_PREFIX),
                    (a, b) => panic!("incomplete_frame_len {a:?}, next {b:?}"),
                }
                match next {
                    Ok(Some(chunk)) => {
                        // A chunk is a run of whole frames.
                        let mut end = 0;
                        for range in frame::frames(&chunk) {
                            assert_eq!(range.start, end, "frames are contiguous");
                            assert!(range.len() >= LENGTH_PREFIX);
                            assert!(range.len() - LENGTH_PREFIX <= input.max_frame);
                            assert_eq!(frame::frame_at(&chunk, range.start), Some(range.clone()));
                            peek(&chunk[range.clone()]);
                            got.push(taken + range.start..taken + range.end);
                            end = range.end;
                        }
                        assert_eq!(end, chunk.len(), "a chunk holds whole frames only");
                        assert_eq!(frame::frame_at(&chunk, chunk.len()), None);
                        if input.one_frame_at_a_time {
                            assert_eq!(got.last().map(|r| r.len()), Some(chunk.len()));
                        }
                        assert_eq!(&chunk[..], &stream[taken..taken + chunk.len()]);
                        taken += chunk.len();
                    }
                    Ok(None) => break,
                    Err(e) => {
                        error = Some((taken, e));
                        break 'reads;
                    }
                }
            }
            // (The contents are compared once at the end: per read it would be quadratic.)
            assert_eq!(buf.len(), fed - taken, "the buffer holds what is not taken");
        }
    }
    assert_eq!(&buf[..], &stream[taken..fed], "the buffer holds what is not taken");

    assert_eq!(got, want.frames, "frames delivered");
    match (error, want.invalid) {
        (None, None) => assert_eq!(taken, want.rest),
        (Some((at, FrameError::TooLarge { length, max })), Some((want_at, want_len))) => {
            assert_eq!((at, length, max), (want_at, want_len, input.max_frame));
        }
        (got, want) => panic!("error {got:?}, expected {want:?}"),
    }

    // frame_at / frames on arbitrary bytes and offsets (not a chunk): ranges stay inside.
    for offset in [0, 1, 3, 4, stream.len() / 2, stream.len(), stream.len() + 1, usize::MAX] {
        if let Some(r) = frame::frame_at(stream, offset) {
            assert_eq!(r.start, offset);
            assert!(r.end <= stream.len() && r.len() >= LENGTH_PREFIX);
        }
    }
    let mut end = 0;
    for r in frame::frames(stream) {
        assert_eq!(r.start, end);
        assert!(r.end <= stream.len());
        end = r.end;
    }
});
