//! The denial answer to a Produce request, written straight from the request's bytes.
//!
//! Produce is the one request a policy denies that is large by nature (its record sets), while
//! its answer is a few dozen bytes per partition, whatever the records weigh. A bound from the
//! request's length ([`super::answer_bound`]) would make a read-only client's ordinary 1 MiB
//! Produce wait for (or, under a small --max-buffered-bytes, be refused) a hundred times its
//! answer. So the answer is not built from a parsed request and response messages: one walk of
//! the request ([`answer_len`]) gives its exact length, which the connection charges to the
//! budget when the bound cannot fit (`super::answer_charge`), and a second walk ([`answer`])
//! writes it into a buffer of exactly that length. No
//! other heap is taken but the error message's text (under 100 bytes, like the other
//! fixed-size parts of a connection's work): what is charged is what is built
//! (tests/answer_bound.rs measures the peak at the answer's length plus 108 bytes).
//!
//! The response, by version (the Kafka message spec; kafka-protocol's encoding in the tests):
//! `responses[name (v0-v12) | topic_id (v13+), partition_responses[index, error_code,
//! base_offset = -1, log_append_time_ms = -1 (v2+), log_start_offset = -1 (v5+), record_errors
//! = [] (v8+), error_message (v8+)]], throttle_time_ms = 0 (v1+)`; v9+ is flexible (compact
//! lengths, an empty tagged-field section per struct, response header v1).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;

use crate::kafka::wire::{self, Walker, WireResult};

/// Where an answer goes: counted only, or counted and written.
struct Out<'a> {
    buf: Option<&'a mut BytesMut>,
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
        if let Some(buf) = self.buf.as_deref_mut() {
            buf.put_slice(bytes);
        }
    }
    fn i16(&mut self, v: i16) {
        self.put(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.put(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.put(&v.to_be_bytes());
    }
    /// A compact length: `n + 1` as an unsigned varint.
    fn compact_len(&mut self, n: usize) -> WireResult<()> {
        let v = u32::try_from(n)
            .ok()
            .and_then(|n| n.checked_add(1))
            .ok_or("length too large")?;
        let mut bytes = [0; 5];
        let len = wire::put_uvarint(&mut bytes, v);
        self.put(&bytes[..len]);
        Ok(())
    }
    /// An array or string length: compact (`n + 1`, unsigned varint) or int32/int16.
    fn count(&mut self, flexible: bool, n: usize) -> WireResult<()> {
        if flexible {
            self.compact_len(n)?;
        } else {
            self.i32(i32::try_from(n).map_err(|_| "count too large")?);
        }
        Ok(())
    }
    fn string(&mut self, flexible: bool, s: &[u8]) -> WireResult<()> {
        if flexible {
            self.compact_len(s.len())?;
        } else {
            self.i16(i16::try_from(s.len()).map_err(|_| "string too long")?);
        }
        self.put(s);
        Ok(())
    }
    /// An empty tagged-field section, in flexible versions.
    fn tags(&mut self, flexible: bool) {
        if flexible {
            self.put(&[0]);
        }
    }
}

/// The exact length of [`answer`]'s frame (length prefix included), from one walk of the
/// request body and nothing allocated. Errors where [`answer`] would fail.
pub(super) fn answer_len(version: i16, body: &[u8], code: i16, message: &str) -> WireResult<usize> {
    let mut out = Out { buf: None, len: 0 };
    write(&mut out, version, 0, body, code, message)?;
    Ok(out.len)
}

/// The denial answer to the Produce request `body` (after its header) at `version`, with
/// `correlation_id`: every partition the request names, in its order, with `code` and (v8+)
/// `message`. Allocates exactly [`answer_len`] bytes.
pub(super) fn answer(
    version: i16,
    correlation_id: i32,
    body: &[u8],
    code: i16,
    message: &str,
) -> WireResult<Bytes> {
    let len = answer_len(version, body, code, message)?;
    let mut buf = BytesMut::with_capacity(len);
    let mut out = Out {
        buf: Some(&mut buf),
        len: 0,
    };
    write(&mut out, version, correlation_id, body, code, message)?;
    debug_assert_eq!(buf.len(), len);
    let prefix = i32::try_from(len - 4).map_err(|_| "answer too long")?;
    buf[..4].copy_from_slice(&prefix.to_be_bytes());
    Ok(buf.freeze())
}

/// Walks the request `body` and puts its answer into `out`.
fn write(
    out: &mut Out<'_>,
    v: i16,
    correlation_id: i32,
    body: &[u8],
    code: i16,
    message: &str,
) -> WireResult<()> {
    let flexible = wire::flexible(ApiKey::Produce, v);
    // Strict, as kafka-protocol and the audit's reader are: a request they refuse (a null
    // topic or partition array, a name that is not UTF-8) is refused here too, and closes the
    // connection rather than being answered as if it named nothing.
    let mut r = Walker::strict(body);
    r.produce_request_acks(v)?;
    r.i32()?; // timeout_ms

    out.i32(0); // the length prefix, set by `answer` once all is written
    out.i32(correlation_id);
    out.tags(flexible); // response header v1

    let topics = r.array(flexible)?;
    out.count(flexible, topics)?;
    for _ in 0..topics {
        if v <= 12 {
            let Some((_, at)) = r.text_span(flexible)? else {
                return Err("null topic name");
            };
            let end = r.pos();
            out.string(flexible, &body[at..end])?;
        } else {
            out.put(r.take(16)?); // topic_id
        }
        let partitions = r.array(flexible)?;
        out.count(flexible, partitions)?;
        for _ in 0..partitions {
            let index = r.i32()?;
            r.bytes(flexible)?; // records
            if flexible {
                r.tagged()?;
            }
            out.i32(index);
            out.i16(code);
            out.i64(-1); // base_offset
            if v >= 2 {
                out.i64(-1); // log_append_time_ms
            }
            if v >= 5 {
                out.i64(-1); // log_start_offset
            }
            if v >= 8 {
                out.count(flexible, 0)?; // record_errors
                out.string(flexible, message.as_bytes())?; // error_message
            }
            out.tags(flexible);
        }
        if flexible {
            r.tagged()?;
        }
        out.tags(flexible);
    }
    if flexible {
        r.tagged()?;
    }
    if v >= 1 {
        out.i32(0); // throttle_time_ms
    }
    out.tags(flexible);
    Ok(())
}
