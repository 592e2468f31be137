//! A wire walker over the response formats the proxy decodes: it reads lengths, counts and
//! varints and skips everything else (record sets included) without copying or allocating.
//!
//! Every count and length is checked against the bytes that remain, so a walk that succeeds
//! guarantees that kafka-protocol's `Vec::with_capacity(count)` is bounded by the frame. Known
//! tagged fields are walked inside their declared size, because kafka-protocol decodes them from
//! the stream ignoring that size. The walker accepts a little more than kafka-protocol (e.g. null
//! for a non-nullable string); the decode that follows is the strict check.
//!
//! This is the one place where the proxy reads bytes that came from the network: frame lengths
//! and request header peeks ([`super::frame`]), the response walks that precede every decode
//! ([`super::codec::decode_response`]) and the `node_endpoints` scan on the Produce/Fetch path.

/// What went wrong, as a fixed message (no allocation on the hot path).
pub type WireResult<T> = Result<T, &'static str>;
/// A message walker: checks one body at one version, true if it carries `node_endpoints`
/// (only meaningful for Produce and Fetch).
pub type WalkFn = fn(&mut Walker<'_>, i16) -> WireResult<bool>;

const TRUNCATED: &str = "truncated";

/// A cursor over a byte slice.
pub struct Walker<'a> {
    buf: &'a [u8],
}

impl<'a> Walker<'a> {
    /// Walks `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Errors unless every byte was walked.
    pub fn end(&self) -> WireResult<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err("bytes left after the message")
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> WireResult<&'a [u8]> {
        if n > self.buf.len() {
            return Err(TRUNCATED);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Steps over `n` bytes.
    pub fn skip(&mut self, n: usize) -> WireResult<()> {
        self.take(n).map(|_| ())
    }

    /// A big-endian int16.
    pub fn i16(&mut self) -> WireResult<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian int32.
    pub fn i32(&mut self) -> WireResult<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned varint of at most 5 bytes that fits a u32.
    pub fn uvarint(&mut self) -> WireResult<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.take(1)?[0];
            if i == 4 && b > 0x0f {
                return Err("varint overflows u32");
            }
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err("varint overflows u32")
    }

    /// A length that must fit in what remains.
    pub fn len_in_range(&self, len: u64) -> WireResult<usize> {
        match usize::try_from(len) {
            Ok(n) if n <= self.buf.len() => Ok(n),
            _ => Err("length larger than the remaining bytes"),
        }
    }

    /// A (nullable) string or byte array: compact (varint length + 1) when `flexible`,
    /// else with an int16 (string) / int32 (bytes) length. Skipped.
    fn blob(&mut self, flexible: bool, int32_len: bool) -> WireResult<()> {
        let len: i64 = if flexible {
            i64::from(self.uvarint()?) - 1
        } else if int32_len {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        match len {
            -1 => Ok(()),
            n if n < 0 => Err("negative length"),
            n => {
                let n = self.len_in_range(n as u64)?;
                self.skip(n)
            }
        }
    }

    /// A (nullable) string.
    pub fn string(&mut self, flexible: bool) -> WireResult<()> {
        self.blob(flexible, false)
    }

    /// A (nullable) byte array or record set.
    pub fn bytes(&mut self, flexible: bool) -> WireResult<()> {
        self.blob(flexible, true)
    }

    /// An array header: the element count (null counts as 0). The count must not exceed the
    /// remaining bytes, since every element takes at least one byte.
    pub fn array(&mut self, flexible: bool) -> WireResult<usize> {
        let count: i64 = if flexible {
            i64::from(self.uvarint()?) - 1
        } else {
            i64::from(self.i32()?)
        };
        match count {
            -1 => Ok(0),
            n if n < 0 => Err("negative array count"),
            n => self.len_in_range(n as u64),
        }
    }

    /// An array of fixed-size elements, skipped.
    pub fn fixed_array(&mut self, flexible: bool, elem: usize) -> WireResult<()> {
        let n = self.array(flexible)?;
        let total = n.checked_mul(elem).ok_or(TRUNCATED)?;
        self.skip(total)
    }

    /// A tagged-field section, calling `known` with the tag and a walker over exactly its
    /// bytes. `known` returns false for tags it does not know (skipped by size).
    pub fn tagged_with(
        &mut self,
        mut known: impl FnMut(u32, &mut Walker<'a>) -> WireResult<bool>,
    ) -> WireResult<()> {
        let count = self.uvarint()?;
        let count = self.len_in_range(u64::from(count))?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()?;
            let size = self.len_in_range(u64::from(size))?;
            let mut field = Walker::new(self.take(size)?);
            if known(tag, &mut field)? {
                field.end()?;
            }
        }
        Ok(())
    }

    /// A tagged-field section without known tags.
    pub fn tagged(&mut self) -> WireResult<()> {
        self.tagged_with(|_, _| Ok(false))
    }

    /// The response header: correlation id, then tagged fields in header v1.
    pub fn response_header(&mut self, header_version: i16) -> WireResult<()> {
        self.skip(4)?;
        if header_version >= 1 {
            self.tagged()?;
        }
        Ok(())
    }

    /// The rest of a request header after api key, version and correlation id: the client id
    /// (an int16-length nullable string in every header version from 1) and, in header v2,
    /// tagged fields.
    pub fn request_header_rest(&mut self, header_version: i16) -> WireResult<()> {
        if header_version >= 1 {
            self.string(false)?;
        }
        if header_version >= 2 {
            self.tagged()?;
        }
        Ok(())
    }

    /// A Produce request body up to and including `acks`, which it returns. v0-v2 start with
    /// `acks`; v3+ put a nullable transactional id in front of it (compact from v9).
    pub fn produce_request_acks(&mut self, version: i16) -> WireResult<i16> {
        if version >= 3 {
            self.string(version >= 9)?;
        }
        self.i16()
    }

    /// Tagged fields of a flexible struct (no-op in non-flexible versions).
    fn tags_if(&mut self, flexible: bool) -> WireResult<()> {
        if flexible {
            self.tagged()
        } else {
            Ok(())
        }
    }
}

/// A flexible struct of fixed-size fields followed by tagged fields.
fn fixed_struct(w: &mut Walker<'_>, size: usize) -> WireResult<()> {
    w.skip(size)?;
    w.tagged()
}

/// `node_endpoints` (Produce, Fetch, ShareFetch, ShareAcknowledge): node_id, host, port,
/// rack, tags. Returns the element count.
fn node_endpoints(w: &mut Walker<'_>) -> WireResult<usize> {
    let n = w.array(true)?;
    for _ in 0..n {
        w.skip(4)?;
        w.string(true)?;
        w.skip(4)?;
        w.string(true)?;
        w.tagged()?;
    }
    Ok(n)
}

/// The top-level tagged fields of Produce v10+ / Fetch v16+ (tag 0 = node_endpoints).
fn top_tags_with_endpoints(w: &mut Walker<'_>) -> WireResult<bool> {
    let mut present = false;
    w.tagged_with(|tag, f| {
        if tag == 0 {
            present = node_endpoints(f)? > 0;
            Ok(true)
        } else {
            Ok(false)
        }
    })?;
    Ok(present)
}

/// ProduceResponse v3+ body (only flexible versions carry node_endpoints).
pub fn produce(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    let flex = version >= 9;
    let topics = w.array(flex)?;
    for _ in 0..topics {
        if version <= 12 {
            w.string(flex)?;
        } else {
            w.skip(16)?;
        }
        let partitions = w.array(flex)?;
        for _ in 0..partitions {
            // index, error_code, base_offset, log_append_time_ms
            w.skip(4 + 2 + 8 + 8)?;
            if version >= 5 {
                w.skip(8)?; // log_start_offset
            }
            if version >= 8 {
                let errors = w.array(flex)?;
                for _ in 0..errors {
                    w.skip(4)?;
                    w.string(flex)?;
                    w.tags_if(flex)?;
                }
                w.string(flex)?; // error_message
            }
            if flex {
                w.tagged_with(|tag, f| {
                    if tag == 0 && version >= 10 {
                        fixed_struct(f, 8)?; // current_leader
                        Ok(true)
                    } else {
                        Ok(false)
                    }
                })?;
            }
        }
        w.tags_if(flex)?;
    }
    w.skip(4)?; // throttle_time_ms
    let endpoints = if version >= 10 {
        top_tags_with_endpoints(w)?
    } else {
        w.tags_if(flex)?;
        false
    };
    w.end()?;
    Ok(endpoints)
}

/// FetchResponse v4+ body.
pub fn fetch(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    let flex = version >= 12;
    w.skip(4)?; // throttle_time_ms
    if version >= 7 {
        w.skip(2 + 4)?; // error_code, session_id
    }
    let topics = w.array(flex)?;
    for _ in 0..topics {
        if version <= 12 {
            w.string(flex)?;
        } else {
            w.skip(16)?;
        }
        let partitions = w.array(flex)?;
        for _ in 0..partitions {
            // partition_index, error_code, high_watermark, last_stable_offset
            w.skip(4 + 2 + 8 + 8)?;
            if version >= 5 {
                w.skip(8)?; // log_start_offset
            }
            let aborted = w.array(flex)?;
            for _ in 0..aborted {
                w.skip(8 + 8)?;
                w.tags_if(flex)?;
            }
            if version >= 11 {
                w.skip(4)?; // preferred_read_replica
            }
            w.bytes(flex)?; // records: skipped, never touched
            if flex {
                w.tagged_with(|tag, f| match tag {
                    // diverging_epoch, current_leader, snapshot_id
                    0 | 2 => fixed_struct(f, 12).map(|()| true),
                    1 => fixed_struct(f, 8).map(|()| true),
                    _ => Ok(false),
                })?;
            }
        }
        w.tags_if(flex)?;
    }
    let endpoints = if version >= 16 {
        top_tags_with_endpoints(w)?
    } else {
        w.tags_if(flex)?;
        false
    };
    w.end()?;
    Ok(endpoints)
}

/// MetadataResponse body.
pub fn metadata(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    let flex = version >= 9;
    if version >= 3 {
        w.skip(4)?;
    }
    let brokers = w.array(flex)?;
    for _ in 0..brokers {
        w.skip(4)?;
        w.string(flex)?;
        w.skip(4)?;
        if version >= 1 {
            w.string(flex)?;
        }
        w.tags_if(flex)?;
    }
    if version >= 2 {
        w.string(flex)?; // cluster_id
    }
    if version >= 1 {
        w.skip(4)?; // controller_id
    }
    let topics = w.array(flex)?;
    for _ in 0..topics {
        w.skip(2)?;
        w.string(flex)?;
        if version >= 10 {
            w.skip(16)?;
        }
        if version >= 1 {
            w.skip(1)?;
        }
        let partitions = w.array(flex)?;
        for _ in 0..partitions {
            w.skip(2 + 4 + 4)?;
            if version >= 7 {
                w.skip(4)?;
            }
            w.fixed_array(flex, 4)?;
            w.fixed_array(flex, 4)?;
            if version >= 5 {
                w.fixed_array(flex, 4)?;
            }
            w.tags_if(flex)?;
        }
        if version >= 8 {
            w.skip(4)?;
        }
        w.tags_if(flex)?;
    }
    if (8..=10).contains(&version) {
        w.skip(4)?;
    }
    if version >= 13 {
        w.skip(2)?;
    }
    w.tags_if(flex)?;
    w.end()?;
    Ok(false)
}

/// FindCoordinatorResponse body.
pub fn find_coordinator(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    let flex = version >= 3;
    if version >= 1 {
        w.skip(4)?;
    }
    if version <= 3 {
        w.skip(2)?;
        if version >= 1 {
            w.string(flex)?;
        }
        w.skip(4)?;
        w.string(flex)?;
        w.skip(4)?;
    } else {
        let n = w.array(true)?;
        for _ in 0..n {
            w.string(true)?; // key
            w.skip(4)?;
            w.string(true)?; // host
            w.skip(4 + 2)?;
            w.string(true)?; // error_message
            w.tagged()?;
        }
    }
    w.tags_if(flex)?;
    w.end()?;
    Ok(false)
}

/// DescribeClusterResponse body (always flexible).
pub fn describe_cluster(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    w.skip(4 + 2)?;
    w.string(true)?;
    if version >= 1 {
        w.skip(1)?;
    }
    w.string(true)?;
    w.skip(4)?;
    let n = w.array(true)?;
    for _ in 0..n {
        w.skip(4)?;
        w.string(true)?;
        w.skip(4)?;
        w.string(true)?;
        if version >= 2 {
            w.skip(1)?;
        }
        w.tagged()?;
    }
    w.skip(4)?;
    w.tagged()?;
    w.end()?;
    Ok(false)
}

/// DescribeQuorumResponse body (always flexible).
pub fn describe_quorum(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    let replica_state = |w: &mut Walker<'_>| -> WireResult<()> {
        w.skip(4)?;
        if version >= 2 {
            w.skip(16)?;
        }
        w.skip(8)?;
        if version >= 1 {
            w.skip(8 + 8)?;
        }
        w.tagged()
    };
    w.skip(2)?;
    if version >= 2 {
        w.string(true)?;
    }
    let topics = w.array(true)?;
    for _ in 0..topics {
        w.string(true)?;
        let partitions = w.array(true)?;
        for _ in 0..partitions {
            w.skip(4 + 2)?;
            if version >= 2 {
                w.string(true)?;
            }
            w.skip(4 + 4 + 8)?;
            for _ in 0..w.array(true)? {
                replica_state(w)?;
            }
            for _ in 0..w.array(true)? {
                replica_state(w)?;
            }
            w.tagged()?;
        }
        w.tagged()?;
    }
    if version >= 2 {
        let nodes = w.array(true)?;
        for _ in 0..nodes {
            w.skip(4)?;
            let listeners = w.array(true)?;
            for _ in 0..listeners {
                w.string(true)?;
                w.string(true)?;
                w.skip(2)?;
                w.tagged()?;
            }
            w.tagged()?;
        }
    }
    w.tagged()?;
    w.end()?;
    Ok(false)
}

/// ShareFetchResponse v1 body.
pub fn share_fetch(w: &mut Walker<'_>, _version: i16) -> WireResult<bool> {
    w.skip(4 + 2)?;
    w.string(true)?;
    w.skip(4)?; // acquisition_lock_timeout_ms
    let topics = w.array(true)?;
    for _ in 0..topics {
        w.skip(16)?;
        let partitions = w.array(true)?;
        for _ in 0..partitions {
            w.skip(4 + 2)?;
            w.string(true)?;
            w.skip(2)?;
            w.string(true)?;
            fixed_struct(w, 8)?; // current_leader
            w.bytes(true)?;
            let acquired = w.array(true)?;
            for _ in 0..acquired {
                fixed_struct(w, 8 + 8 + 2)?;
            }
            w.tagged()?;
        }
        w.tagged()?;
    }
    let endpoints = node_endpoints(w)? > 0;
    w.tagged()?;
    w.end()?;
    Ok(endpoints)
}

/// ShareAcknowledgeResponse v1 body.
pub fn share_acknowledge(w: &mut Walker<'_>, _version: i16) -> WireResult<bool> {
    w.skip(4 + 2)?;
    w.string(true)?;
    let topics = w.array(true)?;
    for _ in 0..topics {
        w.skip(16)?;
        let partitions = w.array(true)?;
        for _ in 0..partitions {
            w.skip(4 + 2)?;
            w.string(true)?;
            fixed_struct(w, 8)?;
            w.tagged()?;
        }
        w.tagged()?;
    }
    let endpoints = node_endpoints(w)? > 0;
    w.tagged()?;
    w.end()?;
    Ok(endpoints)
}

/// ApiVersionsResponse body.
pub fn api_versions(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    let flex = version >= 3;
    w.skip(2)?;
    let n = w.array(flex)?;
    for _ in 0..n {
        w.skip(6)?;
        w.tags_if(flex)?;
    }
    if version >= 1 {
        w.skip(4)?;
    }
    if flex {
        w.tagged_with(|tag, f| match tag {
            // supported_features, finalized_features: name, two int16, tags
            0 | 2 => {
                for _ in 0..f.array(true)? {
                    f.string(true)?;
                    f.skip(4)?;
                    f.tagged()?;
                }
                Ok(true)
            }
            1 => f.skip(8).map(|()| true),
            3 => f.skip(1).map(|()| true),
            _ => Ok(false),
        })?;
    }
    w.end()?;
    Ok(false)
}
