//! A wire walker over the response formats the proxy inspects: it reads lengths, counts and
//! varints and skips everything else (record sets included) without copying or allocating.
//!
//! Every count and length is checked against the bytes that remain, so a walk that succeeds
//! guarantees that kafka-protocol's `Vec::with_capacity(count)` is bounded by the frame, and
//! nothing the walker does is sized by a count from the wire. Known tagged fields are walked
//! inside their declared size, because kafka-protocol decodes them from the stream ignoring that
//! size.
//!
//! Two modes. A lenient walk ([`Walker::new`]) accepts a little more than kafka-protocol (null
//! for a non-nullable string or array, strings that are not UTF-8): it precedes every decode,
//! which is then the strict check, and it is the hot-path `node_endpoints` check of
//! Produce/Fetch. A strict walk ([`Walker::strict`]) refuses what kafka-protocol's decode of the
//! inspected responses refuses too, because the rewrite by splicing ([`super::rewrite`]) decodes
//! nothing: a response it rewrites must be one the decode-based rewrite would have accepted.
//! Broker host names are checked in both modes (non-null, UTF-8): the mapper reads them as
//! `&str`.
//!
//! The response walks also report where a response keeps its broker addresses
//! ([`AddressRegion`]); [`AddressEntries`] reads that region back entry by entry, with the byte
//! positions of each host and port, for the splice.
//!
//! This is the one place where the proxy reads bytes that came from the network: frame lengths
//! and request header peeks ([`super::frame`]), the response walks that precede every decode
//! ([`super::codec::decode_response`]) or splice, and the `node_endpoints` scan on the
//! Produce/Fetch path.

use std::ops::Range;

use kafka_protocol::messages::ApiKey;

/// True when `key` at `version` is a flexible version (compact strings and arrays, tagged
/// fields), for its request and its response alike. Derived from kafka-protocol, whose generated
/// request header version is 2 exactly in the flexible versions of an API, so no version bound
/// is typed here; the tests check it against the crate's own encoding.
pub fn flexible(key: ApiKey, version: i16) -> bool {
    key.request_header_version(version) >= 2
}

/// What went wrong, as a fixed message (no allocation on the hot path).
pub type WireResult<T> = Result<T, &'static str>;
/// A message walker: checks one body at one version, true if it carries a non-empty
/// `node_endpoints` (only meaningful for Produce and Fetch). The form
/// [`super::codec::decode_response`] takes, so that every decode is preceded by a walk.
pub type WalkFn = fn(&mut Walker<'_>, i16) -> WireResult<bool>;
/// A message walker that also reports where the body keeps its broker addresses (`None`: it
/// keeps none at this version). The form the rewrite by splicing uses.
pub type AddressesFn = fn(&mut Walker<'_>, i16) -> WireResult<Option<AddressRegion>>;

const TRUNCATED: &str = "truncated";

/// A cursor over a byte slice, which knows its offset in the buffer the walk started on.
#[derive(Debug, Clone)]
pub struct Walker<'a> {
    buf: &'a [u8],
    /// Offset of the end of `buf` in the buffer the outermost walker started on.
    end: usize,
    /// Refuse what kafka-protocol refuses (see the module documentation).
    strict: bool,
}

/// Writes `value` as an unsigned varint into `buf`; returns its length. The one writer of
/// the encoding [`Walker::uvarint`] reads (compact lengths, tagged-field sizes).
pub fn put_uvarint(buf: &mut [u8; 5], mut value: u32) -> usize {
    let mut n = 0;
    while value >= 0x80 {
        buf[n] = (value as u8) | 0x80;
        value >>= 7;
        n += 1;
    }
    buf[n] = value as u8;
    n + 1
}

impl<'a> Walker<'a> {
    /// A lenient walk of `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            end: buf.len(),
            strict: false,
        }
    }

    /// A strict walk of `buf` from its start: null in a non-nullable string or array and
    /// strings that are not UTF-8 are errors, as in kafka-protocol's decode.
    pub fn strict(buf: &'a [u8]) -> Self {
        Self {
            strict: true,
            ..Self::new(buf)
        }
    }

    /// Offset of the next byte in the buffer the walk started on.
    pub fn pos(&self) -> usize {
        self.end - self.buf.len()
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

    /// A walker over exactly the next `n` bytes (same mode, same offsets); steps over them.
    fn sub(&mut self, n: usize) -> WireResult<Walker<'a>> {
        let buf = self.take(n)?;
        Ok(Walker {
            buf,
            end: self.pos(),
            strict: self.strict,
        })
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

    /// A big-endian uint16.
    pub fn u16(&mut self) -> WireResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// An int8.
    pub fn i8(&mut self) -> WireResult<i8> {
        Ok(i8::from_be_bytes([self.take(1)?[0]]))
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

    /// The length of a (nullable) string or byte array, `None` for null: compact (varint
    /// length + 1) when `flexible`, else an int16 (string) / int32 (bytes) length.
    fn blob_len(&mut self, flexible: bool, int32_len: bool) -> WireResult<Option<usize>> {
        let len: i64 = if flexible {
            i64::from(self.uvarint()?) - 1
        } else if int32_len {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        match len {
            -1 => Ok(None),
            n if n < 0 => Err("negative length"),
            n => self.len_in_range(n as u64).map(Some),
        }
    }

    /// A (nullable) string or byte array, skipped.
    fn blob(&mut self, flexible: bool, int32_len: bool) -> WireResult<()> {
        if let Some(n) = self.blob_len(flexible, int32_len)? {
            self.skip(n)?;
        }
        Ok(())
    }

    /// A (nullable) string, skipped without looking at it in either mode (request headers,
    /// ApiVersions).
    pub fn string(&mut self, flexible: bool) -> WireResult<()> {
        self.blob(flexible, false)
    }

    /// A string kafka-protocol decodes as non-nullable: in a strict walk, null and bytes that
    /// are not UTF-8 are errors.
    pub fn text(&mut self, flexible: bool) -> WireResult<()> {
        if !self.strict {
            return self.string(flexible);
        }
        match self.blob_len(flexible, false)? {
            None => Err("null for a non-nullable string"),
            Some(n) => utf8(self.take(n)?).map(|_| ()),
        }
    }

    /// A string kafka-protocol decodes as nullable: in a strict walk, bytes that are not UTF-8
    /// are errors.
    pub fn nullable_text(&mut self, flexible: bool) -> WireResult<()> {
        if !self.strict {
            return self.string(flexible);
        }
        match self.blob_len(flexible, false)? {
            None => Ok(()),
            Some(n) => utf8(self.take(n)?).map(|_| ()),
        }
    }

    /// A nullable string's bytes (`None` for null), checked as [`Walker::nullable_text`] does.
    pub fn nullable_text_bytes(&mut self, flexible: bool) -> WireResult<Option<&'a [u8]>> {
        match self.blob_len(flexible, false)? {
            None => Ok(None),
            Some(n) => {
                let bytes = self.take(n)?;
                if self.strict {
                    utf8(bytes)?;
                }
                Ok(Some(bytes))
            }
        }
    }

    /// A nullable string whose bytes a splice may replace (an error message): `None` for
    /// null, else the byte range of its length prefix and bytes, and of its bytes alone. UTF-8
    /// is checked in a strict walk, as [`Walker::nullable_text`] does.
    pub fn text_span(&mut self, flexible: bool) -> WireResult<Option<(Range<usize>, usize)>> {
        let start = self.pos();
        match self.blob_len(flexible, false)? {
            None => Ok(None),
            Some(n) => {
                let at = self.pos();
                let bytes = self.take(n)?;
                if self.strict {
                    utf8(bytes)?;
                }
                Ok(Some((start..self.pos(), at)))
            }
        }
    }

    /// A broker host name, non-null and UTF-8 in both modes; with the byte range of its length
    /// prefix and bytes, which a splice replaces.
    pub fn host(&mut self, flexible: bool) -> WireResult<(&'a str, Range<usize>)> {
        let start = self.pos();
        match self.blob_len(flexible, false)? {
            None => Err("null host"),
            Some(n) => Ok((utf8(self.take(n)?)?, start..self.pos())),
        }
    }

    /// A (nullable) byte array or record set, skipped.
    pub fn bytes(&mut self, flexible: bool) -> WireResult<()> {
        self.blob(flexible, true)
    }

    /// An array count, `None` for null. The count must not exceed the remaining bytes, since
    /// every element takes at least one byte.
    fn array_len(&mut self, flexible: bool) -> WireResult<Option<usize>> {
        let count: i64 = if flexible {
            i64::from(self.uvarint()?) - 1
        } else {
            i64::from(self.i32()?)
        };
        match count {
            -1 => Ok(None),
            n if n < 0 => Err("negative array count"),
            n => self.len_in_range(n as u64).map(Some),
        }
    }

    /// An array header of a non-nullable array: the element count. Null counts as 0 in a
    /// lenient walk and is an error in a strict one.
    pub fn array(&mut self, flexible: bool) -> WireResult<usize> {
        match self.array_len(flexible)? {
            Some(n) => Ok(n),
            None if self.strict => Err("null for a non-nullable array"),
            None => Ok(0),
        }
    }

    /// An array header of a nullable array: the element count, 0 for null.
    pub fn nullable_array(&mut self, flexible: bool) -> WireResult<usize> {
        Ok(self.array_len(flexible)?.unwrap_or(0))
    }

    /// An array of fixed-size elements, skipped.
    pub fn fixed_array(&mut self, flexible: bool, elem: usize) -> WireResult<()> {
        let n = self.array(flexible)?;
        let total = n.checked_mul(elem).ok_or(TRUNCATED)?;
        self.skip(total)
    }

    /// A tagged-field section, calling `known` with the tag, the offset of the field's size
    /// varint and a walker over exactly the field's bytes. `known` returns false for tags it
    /// does not know (skipped by size); a known field must be walked to its end.
    fn tagged_fields(
        &mut self,
        mut known: impl FnMut(u32, usize, &mut Walker<'a>) -> WireResult<bool>,
    ) -> WireResult<()> {
        let count = self.uvarint()?;
        let count = self.len_in_range(u64::from(count))?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size_at = self.pos();
            let size = self.uvarint()?;
            let size = self.len_in_range(u64::from(size))?;
            let mut field = self.sub(size)?;
            if known(tag, size_at, &mut field)? {
                field.end()?;
            }
        }
        Ok(())
    }

    /// A tagged-field section, calling `known` with the tag and a walker over exactly its
    /// bytes. `known` returns false for tags it does not know (skipped by size).
    pub fn tagged_with(
        &mut self,
        mut known: impl FnMut(u32, &mut Walker<'a>) -> WireResult<bool>,
    ) -> WireResult<()> {
        self.tagged_fields(|tag, _, field| known(tag, field))
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
            // transactional_id: nullable; UTF-8 in a strict walk, as the audit reads it.
            self.nullable_text(flexible(ApiKey::Produce, version))?;
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

fn utf8(bytes: &[u8]) -> WireResult<&str> {
    std::str::from_utf8(bytes).map_err(|_| "string is not UTF-8")
}

/// How the entries of an [`AddressRegion`] are laid out on the wire; each format is one
/// response structure that names a broker (or controller) a client could dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryFormat {
    /// Metadata `brokers[]`: node_id, host, port, rack (v1+), tags (v9+).
    MetadataBroker,
    /// FindCoordinator v0-3, the top level from error_code on (one entry): error_code,
    /// error_message (v1+), node_id, host, port.
    CoordinatorTopLevel,
    /// FindCoordinator v4+ `coordinators[]`: key, node_id, host, port, error_code,
    /// error_message, tags.
    Coordinator,
    /// DescribeCluster `brokers[]`: broker_id, host, port, rack, is_fenced (v2+), tags.
    ClusterBroker,
    /// DescribeQuorum v2+ `nodes[]`: node_id, `listeners[]` (name, host, uint16 port, tags),
    /// tags. Each listener is one entry.
    QuorumNode,
    /// `node_endpoints[]` of Produce, Fetch, ShareFetch, ShareAcknowledge: node_id, host,
    /// port, rack, tags.
    NodeEndpoint,
}

impl EntryFormat {
    /// Bytes of the port on the wire: DescribeQuorum's listener port is a uint16, every other
    /// port an int32.
    pub fn port_width(self) -> usize {
        if self == EntryFormat::QuorumNode {
            2
        } else {
            4
        }
    }

    /// True when strings are compact (varint length + 1) at `version`, false for int16
    /// lengths.
    pub fn flexible(self, version: i16) -> bool {
        match self {
            EntryFormat::MetadataBroker => flexible(ApiKey::Metadata, version),
            EntryFormat::CoordinatorTopLevel => flexible(ApiKey::FindCoordinator, version),
            _ => true,
        }
    }
}

/// Where a walked response keeps its broker addresses: byte offsets into the walked buffer
/// (response header included), so that a rewrite can copy everything else as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRegion {
    /// Layout of the entries.
    pub format: EntryFormat,
    /// Message version the entries were walked at.
    pub version: i16,
    /// Offset of the array count (of FindCoordinator v0-3's error_code).
    pub start: usize,
    /// Offset just past the last entry.
    pub end: usize,
    /// Number of entries at the top of the region: the array count (nodes for DescribeQuorum),
    /// 1 for FindCoordinator v0-3.
    pub count: usize,
    /// The entries are KRaft controllers (mapped with `map_controller`): DescribeCluster with
    /// endpoint_type 2 (KIP-919), DescribeQuorum's listeners.
    pub controllers: bool,
    /// For `node_endpoints` in a top-level tagged field (Produce v10+, Fetch v16+): offset of
    /// the field's size varint, which precedes `start`; the region is exactly the field's
    /// content, so a splice that changes its length rewrites that size.
    pub tag_size_at: Option<usize>,
}

impl AddressRegion {
    /// True when the region holds at least one `node_endpoints` entry: what [`WalkFn`] reports.
    pub fn carries_node_endpoints(&self) -> bool {
        self.format == EntryFormat::NodeEndpoint && self.count > 0
    }
}

fn carries_node_endpoints(found: Option<AddressRegion>) -> bool {
    found.is_some_and(|r| r.carries_node_endpoints())
}

/// One broker (or controller) entry of an [`AddressRegion`]: the values the mapper is called
/// with and where host and port are in the walked buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressEntry<'a> {
    /// The node id (of the node a DescribeQuorum listener belongs to).
    pub node_id: i32,
    /// The host.
    pub host: &'a str,
    /// The host's length prefix and bytes.
    pub host_span: Range<usize>,
    /// The port (DescribeQuorum's uint16 widened).
    pub port: i32,
    /// Offset of the port ([`EntryFormat::port_width`] bytes).
    pub port_at: usize,
    /// The entry's error code (FindCoordinator; 0 for the other formats).
    pub error_code: i16,
}

/// Reads the entries of an [`AddressRegion`] one at a time, without allocating; also the
/// reader the walks themselves use for those entries, so both agree on every byte.
#[derive(Debug, Clone)]
pub struct AddressEntries<'a> {
    w: Walker<'a>,
    format: EntryFormat,
    version: i16,
    flexible: bool,
    started: bool,
    count: usize,
    /// Entries (DescribeQuorum: nodes) not read yet.
    left: usize,
    /// DescribeQuorum: the node being read, its listeners not read yet, and whether its
    /// trailing tags are still to be read.
    node_id: i32,
    listeners_left: usize,
    in_node: bool,
}

impl<'a> AddressEntries<'a> {
    /// Reads back the region a strict walk found in `payload` (the buffer it walked).
    pub fn new(payload: &'a [u8], region: &AddressRegion) -> WireResult<Self> {
        let buf = payload.get(region.start..region.end).ok_or(TRUNCATED)?;
        let w = Walker {
            buf,
            end: region.end,
            strict: true,
        };
        Ok(Self::over(w, region.format, region.version))
    }

    fn over(w: Walker<'a>, format: EntryFormat, version: i16) -> Self {
        Self {
            w,
            format,
            version,
            flexible: format.flexible(version),
            started: false,
            count: 0,
            left: 0,
            node_id: 0,
            listeners_left: 0,
            in_node: false,
        }
    }

    /// Entries (DescribeQuorum: nodes) not read yet; a capacity hint.
    pub fn remaining(&self) -> usize {
        self.left + self.listeners_left
    }

    /// The next entry, `None` after the last.
    pub fn next_entry(&mut self) -> WireResult<Option<AddressEntry<'a>>> {
        if !self.started {
            self.started = true;
            self.count = match self.format {
                EntryFormat::CoordinatorTopLevel => 1,
                _ => self.w.array(self.flexible)?,
            };
            self.left = self.count;
        }
        if self.format != EntryFormat::QuorumNode {
            if self.left == 0 {
                return Ok(None);
            }
            self.left -= 1;
            return self.entry().map(Some);
        }
        while self.listeners_left == 0 {
            if self.in_node {
                self.w.tagged()?;
                self.in_node = false;
            }
            if self.left == 0 {
                return Ok(None);
            }
            self.left -= 1;
            self.node_id = self.w.i32()?;
            self.listeners_left = self.w.array(true)?;
            self.in_node = true;
        }
        self.listeners_left -= 1;
        self.entry().map(Some)
    }

    /// One entry (DescribeQuorum: one listener).
    fn entry(&mut self) -> WireResult<AddressEntry<'a>> {
        let (version, flex) = (self.version, self.flexible);
        let w = &mut self.w;
        let mut error_code = 0;
        let mut node_id = self.node_id;
        match self.format {
            EntryFormat::CoordinatorTopLevel => {
                error_code = w.i16()?;
                if version >= 1 {
                    w.nullable_text(flex)?; // error_message
                }
                node_id = w.i32()?;
            }
            EntryFormat::Coordinator => {
                w.text(true)?; // key
                node_id = w.i32()?;
            }
            EntryFormat::QuorumNode => {
                w.text(true)?; // listener name
            }
            _ => node_id = w.i32()?,
        }
        let (host, host_span) = w.host(flex)?;
        let port_at = w.pos();
        let port = if self.format == EntryFormat::QuorumNode {
            i32::from(w.u16()?)
        } else {
            w.i32()?
        };
        match self.format {
            EntryFormat::MetadataBroker => {
                if version >= 1 {
                    w.nullable_text(flex)?; // rack
                }
                w.tags_if(flex)?;
            }
            EntryFormat::CoordinatorTopLevel => {}
            EntryFormat::Coordinator => {
                error_code = w.i16()?;
                w.nullable_text(true)?; // error_message
                w.tagged()?;
            }
            EntryFormat::ClusterBroker => {
                w.nullable_text(true)?; // rack
                if version >= 2 {
                    w.skip(1)?; // is_fenced
                }
                w.tagged()?;
            }
            EntryFormat::QuorumNode => w.tagged()?,
            EntryFormat::NodeEndpoint => {
                w.nullable_text(true)?; // rack
                w.tagged()?;
            }
        }
        Ok(AddressEntry {
            node_id,
            host,
            host_span,
            port,
            port_at,
            error_code,
        })
    }
}

/// Walks the address entries of one region at the walker's position, with the walker's mode.
fn region(
    w: &mut Walker<'_>,
    format: EntryFormat,
    version: i16,
    controllers: bool,
    tag_size_at: Option<usize>,
) -> WireResult<AddressRegion> {
    let start = w.pos();
    let mut entries = AddressEntries::over(w.clone(), format, version);
    while entries.next_entry()?.is_some() {}
    *w = entries.w;
    Ok(AddressRegion {
        format,
        version,
        start,
        end: w.pos(),
        count: entries.count,
        controllers,
        tag_size_at,
    })
}

/// A flexible struct of fixed-size fields followed by tagged fields.
fn fixed_struct(w: &mut Walker<'_>, size: usize) -> WireResult<()> {
    w.skip(size)?;
    w.tagged()
}

/// The top-level tagged fields of Produce v10+ / Fetch v16+ (tag 0 = node_endpoints). A second
/// tag 0 is refused: a client might read either copy, and only one would be rewritten.
fn top_tags_with_endpoints(w: &mut Walker<'_>, version: i16) -> WireResult<Option<AddressRegion>> {
    let mut found = None;
    w.tagged_fields(|tag, size_at, f| {
        if tag != 0 {
            return Ok(false);
        }
        if found.is_some() {
            return Err("node_endpoints tag twice");
        }
        found = Some(region(
            f,
            EntryFormat::NodeEndpoint,
            version,
            false,
            Some(size_at),
        )?);
        Ok(true)
    })?;
    Ok(found)
}

/// ProduceResponse v3+ body; the region of `node_endpoints` when the version has it and the
/// tag is present (only flexible versions from v10 carry it).
pub fn produce_addresses(w: &mut Walker<'_>, version: i16) -> WireResult<Option<AddressRegion>> {
    produce_scan(w, version).map(|(endpoints, _)| endpoints)
}

/// ProduceResponse v3+ body, as [`produce_addresses`] walks it, and whether any of its error
/// messages (v8+: a partition's `error_message`, a record error's
/// `batch_index_error_message`) is non-null: the one walk of the hot path tells both whether
/// the response may carry an address and whether it carries text to scrub.
pub fn produce_scan(w: &mut Walker<'_>, version: i16) -> WireResult<(Option<AddressRegion>, bool)> {
    let flex = flexible(ApiKey::Produce, version);
    let mut texts = false;
    let topics = w.array(flex)?;
    for _ in 0..topics {
        if version <= 12 {
            w.text(flex)?;
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
                    texts |= w.nullable_text_bytes(flex)?.is_some();
                    w.tags_if(flex)?;
                }
                texts |= w.nullable_text_bytes(flex)?.is_some(); // error_message
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
        top_tags_with_endpoints(w, version)?
    } else {
        w.tags_if(flex)?;
        None
    };
    w.end()?;
    Ok((endpoints, texts))
}

/// ProduceResponse v3+ body as a [`WalkFn`].
pub fn produce(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    produce_addresses(w, version).map(carries_node_endpoints)
}

/// FetchResponse v4+ body; the region of `node_endpoints` when present (v16+).
pub fn fetch_addresses(w: &mut Walker<'_>, version: i16) -> WireResult<Option<AddressRegion>> {
    let flex = flexible(ApiKey::Fetch, version);
    w.skip(4)?; // throttle_time_ms
    if version >= 7 {
        w.skip(2 + 4)?; // error_code, session_id
    }
    let topics = w.array(flex)?;
    for _ in 0..topics {
        if version <= 12 {
            w.text(flex)?;
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
            let aborted = w.nullable_array(flex)?;
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
        top_tags_with_endpoints(w, version)?
    } else {
        w.tags_if(flex)?;
        None
    };
    w.end()?;
    Ok(endpoints)
}

/// FetchResponse v4+ body as a [`WalkFn`].
pub fn fetch(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    fetch_addresses(w, version).map(carries_node_endpoints)
}

/// MetadataResponse body; the region of `brokers`.
pub fn metadata_addresses(w: &mut Walker<'_>, version: i16) -> WireResult<Option<AddressRegion>> {
    metadata_walk(w, version, &mut |_, _| {})
}

/// MetadataResponse body (v10+ pairs each topic's name with its id): calls `topic(id, name)`
/// for every topic the response names with both, for the audit's id → name map
/// ([`crate::topics`]). The same walk as the address rewrite's, so it checks as much.
pub fn metadata_topic_ids(
    w: &mut Walker<'_>,
    version: i16,
    topic: &mut dyn FnMut([u8; 16], &[u8]),
) -> WireResult<()> {
    metadata_walk(w, version, topic).map(|_| ())
}

fn metadata_walk(
    w: &mut Walker<'_>,
    version: i16,
    topic: &mut dyn FnMut([u8; 16], &[u8]),
) -> WireResult<Option<AddressRegion>> {
    let flex = flexible(ApiKey::Metadata, version);
    if version >= 3 {
        w.skip(4)?;
    }
    let brokers = region(w, EntryFormat::MetadataBroker, version, false, None)?;
    if version >= 2 {
        w.nullable_text(flex)?; // cluster_id
    }
    if version >= 1 {
        w.skip(4)?; // controller_id
    }
    let topics = w.array(flex)?;
    for _ in 0..topics {
        w.skip(2)?;
        let name = w.nullable_text_bytes(flex)?;
        if version >= 10 {
            let id = w.take(16)?;
            if let (Some(name), Ok(id)) = (name, <[u8; 16]>::try_from(id)) {
                topic(id, name);
            }
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
    Ok(Some(brokers))
}

/// DescribeTopicPartitionsResponse body (v0, always flexible): calls `topic(id, name)` for
/// every topic it names with both, for the audit's id → name map ([`crate::topics`]), as
/// [`metadata_topic_ids`] does for Metadata (Kafka 4.x admin tools describe topics with it).
pub fn describe_topic_partitions_ids(
    w: &mut Walker<'_>,
    topic: &mut dyn FnMut([u8; 16], &[u8]),
) -> WireResult<()> {
    w.skip(4)?; // throttle_time_ms
    for _ in 0..w.array(true)? {
        w.skip(2)?; // error_code
        let name = w.nullable_text_bytes(true)?;
        let id = w.take(16)?;
        if let (Some(name), Ok(id)) = (name, <[u8; 16]>::try_from(id)) {
            topic(id, name);
        }
        w.skip(1)?; // is_internal
        for _ in 0..w.array(true)? {
            // error_code, partition_index, leader_id, leader_epoch
            w.skip(2 + 4 + 4 + 4)?;
            w.fixed_array(true, 4)?; // replica_nodes
            w.fixed_array(true, 4)?; // isr_nodes
            for _ in 0..2 {
                // eligible_leader_replicas, last_known_elr (nullable)
                let n = w.nullable_array(true)?;
                w.skip(n.checked_mul(4).ok_or(TRUNCATED)?)?;
            }
            w.fixed_array(true, 4)?; // offline_replicas
            w.tagged()?;
        }
        w.skip(4)?; // topic_authorized_operations
        w.tagged()?;
    }
    if w.i8()? >= 0 {
        // next_cursor: topic_name, partition_index
        w.text(true)?;
        w.skip(4)?;
        w.tagged()?;
    }
    w.tagged()?;
    w.end()
}

/// MetadataResponse body as a [`WalkFn`].
pub fn metadata(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    metadata_addresses(w, version).map(carries_node_endpoints)
}

/// FindCoordinatorResponse body; the region of the top-level coordinator (v0-3) or of
/// `coordinators` (v4+).
pub fn find_coordinator_addresses(
    w: &mut Walker<'_>,
    version: i16,
) -> WireResult<Option<AddressRegion>> {
    let flex = flexible(ApiKey::FindCoordinator, version);
    if version >= 1 {
        w.skip(4)?;
    }
    let format = if version <= 3 {
        EntryFormat::CoordinatorTopLevel
    } else {
        EntryFormat::Coordinator
    };
    let found = region(w, format, version, false, None)?;
    w.tags_if(flex)?;
    w.end()?;
    Ok(Some(found))
}

/// FindCoordinatorResponse body as a [`WalkFn`].
pub fn find_coordinator(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    find_coordinator_addresses(w, version).map(carries_node_endpoints)
}

/// DescribeClusterResponse body (always flexible); the region of `brokers`, marked as
/// controllers when endpoint_type is 2 (v1+).
pub fn describe_cluster_addresses(
    w: &mut Walker<'_>,
    version: i16,
) -> WireResult<Option<AddressRegion>> {
    w.skip(4 + 2)?;
    w.nullable_text(true)?; // error_message
    let controllers = version >= 1 && w.i8()? == 2;
    w.text(true)?; // cluster_id
    w.skip(4)?;
    let brokers = region(w, EntryFormat::ClusterBroker, version, controllers, None)?;
    w.skip(4)?;
    w.tagged()?;
    w.end()?;
    Ok(Some(brokers))
}

/// DescribeClusterResponse body as a [`WalkFn`].
pub fn describe_cluster(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    describe_cluster_addresses(w, version).map(carries_node_endpoints)
}

/// DescribeQuorumResponse body (always flexible); the region of `nodes` (v2+).
pub fn describe_quorum_addresses(
    w: &mut Walker<'_>,
    version: i16,
) -> WireResult<Option<AddressRegion>> {
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
        w.nullable_text(true)?;
    }
    let topics = w.array(true)?;
    for _ in 0..topics {
        w.text(true)?;
        let partitions = w.array(true)?;
        for _ in 0..partitions {
            w.skip(4 + 2)?;
            if version >= 2 {
                w.nullable_text(true)?;
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
    let nodes = if version >= 2 {
        Some(region(w, EntryFormat::QuorumNode, version, true, None)?)
    } else {
        None
    };
    w.tagged()?;
    w.end()?;
    Ok(nodes)
}

/// DescribeQuorumResponse body as a [`WalkFn`].
pub fn describe_quorum(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    describe_quorum_addresses(w, version).map(carries_node_endpoints)
}

/// ShareFetchResponse v1 body; the region of `node_endpoints` (a regular field here).
pub fn share_fetch_addresses(
    w: &mut Walker<'_>,
    version: i16,
) -> WireResult<Option<AddressRegion>> {
    w.skip(4 + 2)?;
    w.nullable_text(true)?;
    w.skip(4)?; // acquisition_lock_timeout_ms
    let topics = w.array(true)?;
    for _ in 0..topics {
        w.skip(16)?;
        let partitions = w.array(true)?;
        for _ in 0..partitions {
            w.skip(4 + 2)?;
            w.nullable_text(true)?;
            w.skip(2)?;
            w.nullable_text(true)?;
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
    let endpoints = region(w, EntryFormat::NodeEndpoint, version, false, None)?;
    w.tagged()?;
    w.end()?;
    Ok(Some(endpoints))
}

/// ShareFetchResponse v1 body as a [`WalkFn`].
pub fn share_fetch(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    share_fetch_addresses(w, version).map(carries_node_endpoints)
}

/// ShareAcknowledgeResponse v1 body; the region of `node_endpoints` (a regular field here).
pub fn share_acknowledge_addresses(
    w: &mut Walker<'_>,
    version: i16,
) -> WireResult<Option<AddressRegion>> {
    w.skip(4 + 2)?;
    w.nullable_text(true)?;
    let topics = w.array(true)?;
    for _ in 0..topics {
        w.skip(16)?;
        let partitions = w.array(true)?;
        for _ in 0..partitions {
            w.skip(4 + 2)?;
            w.nullable_text(true)?;
            fixed_struct(w, 8)?;
            w.tagged()?;
        }
        w.tagged()?;
    }
    let endpoints = region(w, EntryFormat::NodeEndpoint, version, false, None)?;
    w.tagged()?;
    w.end()?;
    Ok(Some(endpoints))
}

/// ShareAcknowledgeResponse v1 body as a [`WalkFn`].
pub fn share_acknowledge(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    share_acknowledge_addresses(w, version).map(carries_node_endpoints)
}

/// ApiVersionsResponse body.
pub fn api_versions(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
    let flex = flexible(ApiKey::ApiVersions, version);
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

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
