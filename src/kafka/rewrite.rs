//! Rewrites the broker addresses in the responses that carry them.
//!
//! A client must never learn an upstream broker address: it would dial it in plaintext against a
//! mutual-TLS port. Every response listed in `shared/kafka-facts.md` is therefore decoded, each
//! broker entry is passed through the [`AddressMapper`], and the response is re-encoded. Everything
//! else in the message (throttle times, errors, partitions, record bytes, unknown tagged fields)
//! survives unchanged.
//!
//! Produce and Fetch responses are the hot path: they only carry addresses (`node_endpoints`, a
//! top-level tagged field) after a leader change. A small wire walker ([`wire`]) checks for that
//! field without decoding, and the original bytes pass untouched when it is absent or empty.
//!
//! Before kafka-protocol decodes anything, the same walker walks the whole message and checks
//! every array count and length against the bytes that are really there: kafka-protocol
//! allocates `Vec::with_capacity(count)` straight from the wire, so a hostile count must never
//! reach it.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterResponse, DescribeQuorumResponse, FetchResponse,
    FindCoordinatorResponse, MetadataResponse, ProduceResponse, ResponseHeader,
    ShareAcknowledgeResponse, ShareFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

use super::{AddressMapper, MapError};

/// Why a response could not be rewritten (the connection is then closed with this logged).
///
/// A response that carries broker addresses and cannot be rewritten must not reach the client,
/// so every failure is an error rather than a silent pass-through.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The response bytes do not form a valid message of that api key and version.
    #[error("cannot decode response of api key {api_key} v{version}: {reason}")]
    Decode {
        /// Api key of the request the response answers.
        api_key: i16,
        /// Api version of the request the response answers.
        version: i16,
        /// What was wrong with the bytes.
        reason: String,
    },
    /// The rewritten message could not be encoded again.
    #[error("cannot encode rewritten response of api key {api_key} v{version}: {reason}")]
    Encode {
        /// Api key of the request the response answers.
        api_key: i16,
        /// Api version of the request the response answers.
        version: i16,
        /// What kafka-protocol reported.
        reason: String,
    },
    /// The response may carry broker addresses but the proxy cannot decode that version (the
    /// ApiVersions rewrite should have kept the client below it).
    #[error("api key {api_key} v{version} may carry broker addresses but the proxy cannot decode that version")]
    UnsupportedVersion {
        /// Api key of the request the response answers.
        api_key: i16,
        /// Api version of the request the response answers.
        version: i16,
    },
    /// The mapper gave a controller a port that DescribeQuorum cannot carry (it is a uint16 there).
    #[error("controller {node_id} mapped to port {port}, which does not fit DescribeQuorum's uint16 port")]
    ControllerPort {
        /// The controller's node id.
        node_id: i32,
        /// The port the mapper returned.
        port: i32,
    },
    /// The mapper could not serve a broker.
    #[error(transparent)]
    Map(#[from] MapError),
}

const PRODUCE: i16 = ApiKey::Produce as i16;
const FETCH: i16 = ApiKey::Fetch as i16;
const METADATA: i16 = ApiKey::Metadata as i16;
const FIND_COORDINATOR: i16 = ApiKey::FindCoordinator as i16;
const API_VERSIONS: i16 = ApiKey::ApiVersions as i16;
const DESCRIBE_QUORUM: i16 = ApiKey::DescribeQuorum as i16;
const DESCRIBE_CLUSTER: i16 = ApiKey::DescribeCluster as i16;
const SHARE_FETCH: i16 = ApiKey::ShareFetch as i16;
const SHARE_ACKNOWLEDGE: i16 = ApiKey::ShareAcknowledge as i16;

/// First Produce version whose response has `node_endpoints` (KIP-951).
const PRODUCE_NODE_ENDPOINTS_MIN: i16 = 10;
/// First Fetch version whose response has `node_endpoints` (KIP-951).
const FETCH_NODE_ENDPOINTS_MIN: i16 = 16;
/// First DescribeQuorum version whose response has `nodes[].listeners[]`.
const DESCRIBE_QUORUM_LISTENERS_MIN: i16 = 2;

/// Cheap check the connection uses per request to decide whether the response needs a look at all:
/// true for (api_key, version) pairs whose response may carry broker addresses or must be rewritten:
/// Metadata(3) all, FindCoordinator(10) all, DescribeCluster(60) all, DescribeQuorum(55) v2+,
/// Produce(0) v10+, Fetch(1) v16+, ShareFetch(78), ShareAcknowledge(79), ApiVersions(18) all.
///
/// Lets the connection skip remembering requests whose responses pass through as they are.
pub fn needs_inspection(api_key: i16, version: i16) -> bool {
    match api_key {
        METADATA | FIND_COORDINATOR | DESCRIBE_CLUSTER | API_VERSIONS | SHARE_FETCH
        | SHARE_ACKNOWLEDGE => true,
        DESCRIBE_QUORUM => version >= DESCRIBE_QUORUM_LISTENERS_MIN,
        PRODUCE => version >= PRODUCE_NODE_ENDPOINTS_MIN,
        FETCH => version >= FETCH_NODE_ENDPOINTS_MIN,
        _ => false,
    }
}

/// Rewrites one response so that it names only proxy addresses.
///
/// `frame` is the response payload WITHOUT the 4-byte length prefix (response header + body; the
/// response header version comes from `ApiKey::response_header_version`, except ApiVersions which
/// always uses header v0). Returns `Ok(None)` when the original bytes must pass unchanged (e.g.
/// Produce/Fetch whose `node_endpoints` is absent or empty, or an api key that carries no
/// address), or `Ok(Some(frame))` where the returned `Bytes` is the COMPLETE new frame INCLUDING
/// the 4-byte length prefix, so the caller writes it as is.
pub fn rewrite_response(
    api_key: i16,
    version: i16,
    frame: &Bytes,
    mapper: &mut dyn AddressMapper,
) -> Result<Option<Bytes>, RewriteError> {
    match api_key {
        API_VERSIONS => super::versions::rewrite_api_versions(version, frame),
        METADATA => {
            rewrite_with::<MetadataResponse>(api_key, version, frame, wire::metadata, |msg| {
                let mut changed = false;
                for b in &mut msg.brokers {
                    changed |= map_broker(mapper, b.node_id.0, &mut b.host, &mut b.port)?;
                }
                Ok(changed)
            })
        }
        FIND_COORDINATOR => rewrite_with::<FindCoordinatorResponse>(
            api_key,
            version,
            frame,
            wire::find_coordinator,
            |msg| {
                let mut changed = false;
                if version <= 3 {
                    if msg.node_id.0 >= 0 && msg.error_code == 0 {
                        changed |= map_broker(mapper, msg.node_id.0, &mut msg.host, &mut msg.port)?;
                    }
                } else {
                    for c in &mut msg.coordinators {
                        // An entry with an error names node -1 and no usable address.
                        if c.node_id.0 >= 0 && c.error_code == 0 {
                            changed |= map_broker(mapper, c.node_id.0, &mut c.host, &mut c.port)?;
                        }
                    }
                }
                Ok(changed)
            },
        ),
        DESCRIBE_CLUSTER => rewrite_with::<DescribeClusterResponse>(
            api_key,
            version,
            frame,
            wire::describe_cluster,
            |msg| {
                let mut changed = false;
                // endpoint_type 2 = controllers (KIP-919): they are not proxied, only hidden.
                let controllers = msg.endpoint_type == 2;
                for b in &mut msg.brokers {
                    changed |= if controllers {
                        let adv = mapper.map_controller(b.broker_id.0, &b.host, b.port);
                        replace(&mut b.host, &mut b.port, adv.host, adv.port)
                    } else {
                        map_broker(mapper, b.broker_id.0, &mut b.host, &mut b.port)?
                    };
                }
                Ok(changed)
            },
        ),
        DESCRIBE_QUORUM if version >= DESCRIBE_QUORUM_LISTENERS_MIN => rewrite_with::<
            DescribeQuorumResponse,
        >(
            api_key,
            version,
            frame,
            wire::describe_quorum,
            |msg| {
                let mut changed = false;
                for node in &mut msg.nodes {
                    let node_id = node.node_id.0;
                    for l in &mut node.listeners {
                        let adv = mapper.map_controller(node_id, &l.host, i32::from(l.port));
                        let port =
                            u16::try_from(adv.port).map_err(|_| RewriteError::ControllerPort {
                                node_id,
                                port: adv.port,
                            })?;
                        if adv.host != l.host || port != l.port {
                            l.host = adv.host;
                            l.port = port;
                            changed = true;
                        }
                    }
                }
                Ok(changed)
            },
        ),
        SHARE_FETCH => {
            rewrite_with::<ShareFetchResponse>(api_key, version, frame, wire::share_fetch, |msg| {
                map_node_endpoints!(mapper, msg.node_endpoints)
            })
        }
        SHARE_ACKNOWLEDGE => rewrite_with::<ShareAcknowledgeResponse>(
            api_key,
            version,
            frame,
            wire::share_acknowledge,
            |msg| map_node_endpoints!(mapper, msg.node_endpoints),
        ),
        PRODUCE if version >= PRODUCE_NODE_ENDPOINTS_MIN => {
            check_version::<ProduceResponse>(api_key, version)?;
            if !has_node_endpoints(api_key, version, frame)? {
                return Ok(None);
            }
            rewrite_with::<ProduceResponse>(api_key, version, frame, wire::produce, |msg| {
                map_node_endpoints!(mapper, msg.node_endpoints)
            })
        }
        FETCH if version >= FETCH_NODE_ENDPOINTS_MIN => {
            check_version::<FetchResponse>(api_key, version)?;
            if !has_node_endpoints(api_key, version, frame)? {
                return Ok(None);
            }
            rewrite_with::<FetchResponse>(api_key, version, frame, wire::fetch, |msg| {
                map_node_endpoints!(mapper, msg.node_endpoints)
            })
        }
        _ => Ok(None),
    }
}

/// Walks a Produce v10+ / Fetch v16+ response without decoding it and tells whether the
/// top-level tagged field `node_endpoints` is present and non-empty. Errors on malformed bytes.
fn has_node_endpoints(api_key: i16, version: i16, frame: &Bytes) -> Result<bool, RewriteError> {
    let walk = if api_key == PRODUCE {
        wire::produce
    } else {
        wire::fetch
    };
    let mut w = wire::Walker::new(frame);
    w.response_header(response_header_version(api_key, version))
        .and_then(|()| walk(&mut w, version))
        .map_err(|reason| decode_error(api_key, version, reason))
}

/// Maps one broker entry in place; true if the address changed.
fn map_broker(
    mapper: &mut dyn AddressMapper,
    node_id: i32,
    host: &mut StrBytes,
    port: &mut i32,
) -> Result<bool, MapError> {
    let adv = mapper.map_broker(node_id, host, *port)?;
    Ok(replace(host, port, adv.host, adv.port))
}

/// Maps every entry of a `node_endpoints` list (Produce, Fetch, ShareFetch, ShareAcknowledge:
/// four generated types with the same fields); evaluates to `Ok(changed)`.
macro_rules! map_node_endpoints {
    ($mapper:expr, $endpoints:expr) => {{
        let mut changed = false;
        for e in &mut $endpoints {
            changed |= map_broker($mapper, e.node_id.0, &mut e.host, &mut e.port)?;
        }
        Ok(changed)
    }};
}
use map_node_endpoints;

/// Stores a new address; true if it differs from the old one.
fn replace(host: &mut StrBytes, port: &mut i32, new_host: StrBytes, new_port: i32) -> bool {
    let changed = *host != new_host || *port != new_port;
    *host = new_host;
    *port = new_port;
    changed
}

/// A [`RewriteError::Decode`] for this response.
fn decode_error(api_key: i16, version: i16, reason: impl ToString) -> RewriteError {
    RewriteError::Decode {
        api_key,
        version,
        reason: reason.to_string(),
    }
}

/// Errors unless kafka-protocol can decode `M` at `version`.
fn check_version<M: Message>(api_key: i16, version: i16) -> Result<(), RewriteError> {
    if version < M::VERSIONS.min || version > M::VERSIONS.max {
        return Err(RewriteError::UnsupportedVersion { api_key, version });
    }
    Ok(())
}

/// The response header version of `api_key` at `version` (ApiVersions: always 0).
pub(crate) fn response_header_version(api_key: i16, version: i16) -> i16 {
    match ApiKey::try_from(api_key) {
        Ok(ApiKey::ApiVersions) | Err(()) => 0,
        Ok(key) => key.response_header_version(version),
    }
}

/// Validates, decodes, edits and re-encodes one response; `Ok(None)` when `edit` changed nothing.
fn rewrite_with<M: Message + Decodable + Encodable>(
    api_key: i16,
    version: i16,
    frame: &Bytes,
    walk: wire::WalkFn,
    edit: impl FnOnce(&mut M) -> Result<bool, RewriteError>,
) -> Result<Option<Bytes>, RewriteError> {
    check_version::<M>(api_key, version)?;
    let header_version = response_header_version(api_key, version);
    let (header_len, mut msg) =
        decode_response::<M>(api_key, version, header_version, frame, walk)?;
    if !edit(&mut msg)? {
        return Ok(None);
    }
    encode_frame(api_key, version, &frame[..header_len], &msg).map(Some)
}

/// Decodes a response after [`wire`] has checked every length in it against the real bytes.
/// Returns the length of the response header (kept as raw bytes) and the body. Trailing bytes
/// after the body are an error: they mean the version or the bytes are not what they claim.
pub(crate) fn decode_response<M: Decodable>(
    api_key: i16,
    version: i16,
    header_version: i16,
    frame: &Bytes,
    walk: wire::WalkFn,
) -> Result<(usize, M), RewriteError> {
    let mut w = wire::Walker::new(frame);
    w.response_header(header_version)
        .and_then(|()| walk(&mut w, version))
        .map_err(|reason| decode_error(api_key, version, reason))?;

    // Zero-copy: decoding from a Bytes clone keeps records and strings as slices of `frame`.
    let mut buf = frame.clone();
    ResponseHeader::decode(&mut buf, header_version)
        .map_err(|e| decode_error(api_key, version, format!("response header: {e:#}")))?;
    let header_len = frame.len() - buf.len();
    let msg = M::decode(&mut buf, version)
        .map_err(|e| decode_error(api_key, version, format!("{e:#}")))?;
    if !buf.is_empty() {
        return Err(decode_error(
            api_key,
            version,
            format!("{} bytes left after the message", buf.len()),
        ));
    }
    Ok((header_len, msg))
}

/// Encodes `header` (raw response header bytes) and `msg` into one complete frame with its
/// length prefix, in a single allocation of the exact size.
pub(crate) fn encode_frame<M: Encodable>(
    api_key: i16,
    version: i16,
    header: &[u8],
    msg: &M,
) -> Result<Bytes, RewriteError> {
    let encode_error = |reason: String| RewriteError::Encode {
        api_key,
        version,
        reason,
    };
    let body_len = msg
        .compute_size(version)
        .map_err(|e| encode_error(format!("{e:#}")))?;
    let len = header.len() + body_len;
    let len_prefix =
        i32::try_from(len).map_err(|_| encode_error(format!("frame of {len} bytes")))?;
    let mut out = BytesMut::with_capacity(4 + len);
    out.put_i32(len_prefix);
    out.put_slice(header);
    msg.encode(&mut out, version)
        .map_err(|e| encode_error(format!("{e:#}")))?;
    if out.len() != 4 + len {
        return Err(encode_error(format!(
            "encoded {} bytes, computed {}",
            out.len() - 4,
            len
        )));
    }
    Ok(out.freeze())
}

/// A wire walker over the response formats the proxy decodes: it reads lengths, counts and
/// varints and skips everything else (record sets included) without copying or allocating.
///
/// Every count and length is checked against the bytes that remain, so a walk that succeeds
/// guarantees that kafka-protocol's `Vec::with_capacity(count)` is bounded by the frame. Known
/// tagged fields are walked inside their declared size, because kafka-protocol decodes them from
/// the stream ignoring that size. The walker accepts a little more than kafka-protocol (e.g. null
/// for a non-nullable string); the decode that follows is the strict check.
pub(crate) mod wire {
    /// What went wrong, as a fixed message (no allocation on the hot path).
    pub(crate) type WireResult<T> = Result<T, &'static str>;
    /// A message walker: checks one body at one version, true if it carries `node_endpoints`
    /// (only meaningful for Produce and Fetch).
    pub(crate) type WalkFn = fn(&mut Walker<'_>, i16) -> WireResult<bool>;

    const TRUNCATED: &str = "truncated";

    /// A cursor over a byte slice.
    pub(crate) struct Walker<'a> {
        buf: &'a [u8],
    }

    impl<'a> Walker<'a> {
        /// Walks `buf` from its start.
        pub(crate) fn new(buf: &'a [u8]) -> Self {
            Self { buf }
        }

        /// Errors unless every byte was walked.
        pub(crate) fn end(&self) -> WireResult<()> {
            if self.buf.is_empty() {
                Ok(())
            } else {
                Err("bytes left after the message")
            }
        }

        /// The next `n` bytes.
        pub(crate) fn take(&mut self, n: usize) -> WireResult<&'a [u8]> {
            if n > self.buf.len() {
                return Err(TRUNCATED);
            }
            let (head, tail) = self.buf.split_at(n);
            self.buf = tail;
            Ok(head)
        }

        /// Steps over `n` bytes.
        pub(crate) fn skip(&mut self, n: usize) -> WireResult<()> {
            self.take(n).map(|_| ())
        }

        /// A big-endian int16.
        pub(crate) fn i16(&mut self) -> WireResult<i16> {
            let b = self.take(2)?;
            Ok(i16::from_be_bytes([b[0], b[1]]))
        }

        /// A big-endian int32.
        pub(crate) fn i32(&mut self) -> WireResult<i32> {
            let b = self.take(4)?;
            Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }

        /// An unsigned varint of at most 5 bytes that fits a u32.
        pub(crate) fn uvarint(&mut self) -> WireResult<u32> {
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
        fn len_in_range(&self, len: u64) -> WireResult<usize> {
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
        pub(crate) fn string(&mut self, flexible: bool) -> WireResult<()> {
            self.blob(flexible, false)
        }

        /// A (nullable) byte array or record set.
        pub(crate) fn bytes(&mut self, flexible: bool) -> WireResult<()> {
            self.blob(flexible, true)
        }

        /// An array header: the element count (null counts as 0). The count must not exceed the
        /// remaining bytes, since every element takes at least one byte.
        pub(crate) fn array(&mut self, flexible: bool) -> WireResult<usize> {
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
        pub(crate) fn fixed_array(&mut self, flexible: bool, elem: usize) -> WireResult<()> {
            let n = self.array(flexible)?;
            let total = n.checked_mul(elem).ok_or(TRUNCATED)?;
            self.skip(total)
        }

        /// A tagged-field section, calling `known` with the tag and a walker over exactly its
        /// bytes. `known` returns false for tags it does not know (skipped by size).
        pub(crate) fn tagged_with(
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
        pub(crate) fn tagged(&mut self) -> WireResult<()> {
            self.tagged_with(|_, _| Ok(false))
        }

        /// The response header: correlation id, then tagged fields in header v1.
        pub(crate) fn response_header(&mut self, header_version: i16) -> WireResult<()> {
            self.skip(4)?;
            if header_version >= 1 {
                self.tagged()?;
            }
            Ok(())
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
    pub(crate) fn produce(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
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
    pub(crate) fn fetch(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
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
    pub(crate) fn metadata(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
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
    pub(crate) fn find_coordinator(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
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
    pub(crate) fn describe_cluster(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
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
    pub(crate) fn describe_quorum(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
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
    pub(crate) fn share_fetch(w: &mut Walker<'_>, _version: i16) -> WireResult<bool> {
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
    pub(crate) fn share_acknowledge(w: &mut Walker<'_>, _version: i16) -> WireResult<bool> {
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
    pub(crate) fn api_versions(w: &mut Walker<'_>, version: i16) -> WireResult<bool> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Advertised;
    use bytes::Buf;
    use kafka_protocol::messages::{
        describe_cluster_response::DescribeClusterBroker,
        describe_quorum_response::{self, Listener, Node},
        fetch_response::{self, FetchableTopicResponse},
        find_coordinator_response::Coordinator,
        metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        },
        produce_response::{
            self, BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
        },
        share_acknowledge_response, share_fetch_response, BrokerId, TopicName,
    };
    use std::collections::BTreeMap;

    /// Maps node N to proxy.local:19000+N and controllers to proxy.local:0, recording calls.
    #[derive(Default)]
    pub(crate) struct TestMapper {
        pub(crate) brokers: Vec<(i32, String, i32)>,
        pub(crate) controllers: Vec<(i32, String, i32)>,
    }

    impl AddressMapper for TestMapper {
        fn map_broker(
            &mut self,
            node_id: i32,
            host: &str,
            port: i32,
        ) -> Result<Advertised, MapError> {
            self.brokers.push((node_id, host.to_string(), port));
            Ok(Advertised {
                host: StrBytes::from_static_str("proxy.local"),
                port: 19000 + node_id,
            })
        }
        fn map_controller(&mut self, node_id: i32, host: &str, port: i32) -> Advertised {
            self.controllers.push((node_id, host.to_string(), port));
            Advertised {
                host: StrBytes::from_static_str("proxy.local"),
                port: 0,
            }
        }
    }

    struct FailingMapper;

    impl AddressMapper for FailingMapper {
        fn map_broker(
            &mut self,
            node_id: i32,
            host: &str,
            port: i32,
        ) -> Result<Advertised, MapError> {
            Err(MapError {
                node_id,
                host: host.to_string(),
                port,
                reason: "no free port".to_string(),
            })
        }
        fn map_controller(&mut self, _node_id: i32, _host: &str, _port: i32) -> Advertised {
            Advertised {
                host: StrBytes::from_static_str("proxy.local"),
                port: 70_000,
            }
        }
    }

    fn s(v: &'static str) -> StrBytes {
        StrBytes::from_static_str(v)
    }

    fn topic(v: &'static str) -> TopicName {
        TopicName(s(v))
    }

    const MSK1: &str = "b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com";
    const MSK2: &str = "b-2.demo.abc123.c2.kafka.eu-west-1.amazonaws.com";
    const MSK3: &str = "b-3.demo.abc123.c2.kafka.eu-west-1.amazonaws.com";
    const CORRELATION: i32 = 0x0102_0304;

    /// Response payload (no length prefix) as a broker would send it.
    pub(crate) fn payload<M: Encodable>(api_key: i16, version: i16, msg: &M) -> Bytes {
        payload_with_header(
            api_key,
            version,
            &ResponseHeader::default().with_correlation_id(CORRELATION),
            msg,
        )
    }

    fn payload_with_header<M: Encodable>(
        api_key: i16,
        version: i16,
        header: &ResponseHeader,
        msg: &M,
    ) -> Bytes {
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, response_header_version(api_key, version))
            .expect("encode header");
        msg.encode(&mut buf, version).expect("encode body");
        buf.freeze()
    }

    /// Checks the length prefix of a rewritten frame and returns its payload.
    fn unframe(out: &Bytes) -> Bytes {
        let mut prefix = out.slice(..4);
        let len = prefix.get_i32();
        assert_eq!(len as usize, out.len() - 4, "length prefix");
        out.slice(4..)
    }

    fn decode<M: Decodable>(api_key: i16, version: i16, payload: &Bytes) -> (ResponseHeader, M) {
        let mut buf = payload.clone();
        let header = ResponseHeader::decode(&mut buf, response_header_version(api_key, version))
            .expect("header");
        let msg = M::decode(&mut buf, version).expect("body");
        assert!(buf.is_empty(), "trailing bytes");
        (header, msg)
    }

    /// Rewrites `msg` at `version`, then checks that the output is a complete frame that decodes
    /// to the original message with exactly the changes `expect` makes. Returns the new message.
    fn check<M>(
        api_key: i16,
        version: i16,
        msg: &M,
        mapper: &mut TestMapper,
        expect: impl FnOnce(&mut M),
    ) -> M
    where
        M: Encodable + Decodable + Clone + PartialEq + std::fmt::Debug,
    {
        let input = payload(api_key, version, msg);
        let (_, mut expected) = decode::<M>(api_key, version, &input);
        let out = rewrite_response(api_key, version, &input, mapper)
            .expect("rewrite")
            .expect("a rewritten frame");
        let (header, got) = decode::<M>(api_key, version, &unframe(&out));
        assert_eq!(header.correlation_id, CORRELATION);
        expect(&mut expected);
        assert_eq!(got, expected);
        got
    }

    fn metadata(version: i16) -> MetadataResponse {
        let broker = |id: i32, host: &'static str, rack: &'static str| {
            let mut b = MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(s(host))
                .with_port(9094);
            if version >= 1 {
                b.rack = Some(s(rack));
            }
            b
        };
        let mut partition = MetadataResponsePartition::default()
            .with_partition_index(0)
            .with_leader_id(BrokerId(2))
            .with_replica_nodes(vec![BrokerId(2), BrokerId(1)])
            .with_isr_nodes(vec![BrokerId(2)]);
        if version >= 7 {
            partition.leader_epoch = 5;
        }
        if version >= 5 {
            partition.offline_replicas = vec![BrokerId(1)];
        }
        let mut t = MetadataResponseTopic::default()
            .with_name(Some(topic("orders")))
            .with_partitions(vec![partition]);
        if version >= 10 {
            t.topic_id = uuid(7);
        }
        if version >= 8 {
            t.topic_authorized_operations = 0x0f;
        }
        let mut m = MetadataResponse::default()
            .with_brokers(vec![
                broker(1, MSK1, "euw1-az1"),
                broker(2, MSK2, "euw1-az2"),
            ])
            .with_topics(vec![t]);
        if version >= 3 {
            m.throttle_time_ms = 11;
        }
        if version >= 2 {
            m.cluster_id = Some(s("Xy-Cluster"));
        }
        if version >= 1 {
            m.controller_id = BrokerId(2);
        }
        m
    }

    /// A topic id (the uuid crate is not a dependency of ours, so parse into the field's type).
    fn uuid<T: std::str::FromStr>(n: u8) -> T
    where
        T::Err: std::fmt::Debug,
    {
        format!("{:032x}", u128::from_be_bytes([n; 16]))
            .parse()
            .expect("uuid")
    }

    fn mapped_metadata(m: &mut MetadataResponse) {
        for b in &mut m.brokers {
            b.host = s("proxy.local");
            b.port = 19000 + b.node_id.0;
        }
    }

    #[test]
    fn metadata_every_boundary_version() {
        for version in [0, 1, 9, 12, 13] {
            let mut mapper = TestMapper::default();
            let got = check(
                METADATA,
                version,
                &metadata(version),
                &mut mapper,
                mapped_metadata,
            );
            assert_eq!(got.brokers.len(), 2, "v{version}");
            assert_eq!(got.brokers[0].host.as_str(), "proxy.local");
            assert_eq!(got.brokers[0].port, 19001);
            assert_eq!(got.brokers[1].port, 19002);
            let rack = got.brokers[1].rack.as_ref().map(|r| r.as_str());
            assert_eq!(
                rack,
                if version >= 1 { Some("euw1-az2") } else { None },
                "v{version}"
            );
            assert_eq!(
                got.topics[0].partitions[0].leader_id,
                BrokerId(2),
                "node ids kept"
            );
            assert_eq!(
                mapper.brokers,
                vec![(1, MSK1.to_string(), 9094), (2, MSK2.to_string(), 9094)],
                "v{version}"
            );
            if version >= 3 {
                assert_eq!(got.throttle_time_ms, 11);
            }
        }
    }

    #[test]
    fn metadata_without_brokers_passes_unchanged() {
        let mut m = metadata(12);
        m.brokers.clear();
        let input = payload(METADATA, 12, &m);
        let out =
            rewrite_response(METADATA, 12, &input, &mut TestMapper::default()).expect("rewrite");
        assert!(out.is_none());
    }

    #[test]
    fn mapper_errors_propagate() {
        let input = payload(METADATA, 12, &metadata(12));
        let err =
            rewrite_response(METADATA, 12, &input, &mut FailingMapper).expect_err("must fail");
        match err {
            RewriteError::Map(e) => {
                assert_eq!(e.node_id, 1);
                assert_eq!(e.host, MSK1);
                assert_eq!(e.port, 9094);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_tagged_fields_survive() {
        let mut m = metadata(12);
        m.unknown_tagged_fields = BTreeMap::from([
            (7, Bytes::from_static(b"top")),
            (42, Bytes::from_static(b"")),
        ]);
        m.brokers[0].unknown_tagged_fields =
            BTreeMap::from([(3, Bytes::from_static(b"broker-tag"))]);
        m.topics[0].partitions[0].unknown_tagged_fields =
            BTreeMap::from([(9, Bytes::from_static(b"\x01\x02"))]);
        let header = ResponseHeader::default()
            .with_correlation_id(CORRELATION)
            .with_unknown_tagged_fields(BTreeMap::from([(5, Bytes::from_static(b"hdr"))]));
        let input = payload_with_header(METADATA, 12, &header, &m);
        let out = rewrite_response(METADATA, 12, &input, &mut TestMapper::default())
            .expect("rewrite")
            .expect("rewritten");
        let (got_header, got) = decode::<MetadataResponse>(METADATA, 12, &unframe(&out));
        assert_eq!(got_header, header);
        assert_eq!(got.unknown_tagged_fields, m.unknown_tagged_fields);
        assert_eq!(
            got.brokers[0].unknown_tagged_fields[&3],
            Bytes::from_static(b"broker-tag")
        );
        assert_eq!(
            got.topics[0].partitions[0].unknown_tagged_fields[&9],
            Bytes::from_static(b"\x01\x02")
        );
        assert_eq!(got.brokers[0].port, 19001);
    }

    #[test]
    fn find_coordinator_top_level_v0_to_v3() {
        for version in [0, 1, 3] {
            let mut m = FindCoordinatorResponse::default()
                .with_node_id(BrokerId(3))
                .with_host(s(MSK3))
                .with_port(9094);
            if version >= 1 {
                m.throttle_time_ms = 5;
                m.error_message = None;
            }
            let mut mapper = TestMapper::default();
            let got = check(FIND_COORDINATOR, version, &m, &mut mapper, |e| {
                e.host = s("proxy.local");
                e.port = 19003;
            });
            assert_eq!(
                (got.node_id.0, got.host.as_str(), got.port),
                (3, "proxy.local", 19003)
            );
            assert_eq!(mapper.brokers, vec![(3, MSK3.to_string(), 9094)]);
        }
    }

    #[test]
    fn find_coordinator_top_level_error_left_alone() {
        let m = FindCoordinatorResponse::default()
            .with_error_code(15) // COORDINATOR_NOT_AVAILABLE
            .with_error_message(Some(s("not yet")))
            .with_node_id(BrokerId(-1))
            .with_host(s(""))
            .with_port(-1);
        let input = payload(FIND_COORDINATOR, 3, &m);
        let mut mapper = TestMapper::default();
        assert!(rewrite_response(FIND_COORDINATOR, 3, &input, &mut mapper)
            .expect("ok")
            .is_none());
        assert!(mapper.brokers.is_empty());
    }

    #[test]
    fn find_coordinator_batched_v4_v6_keep_error_entries() {
        for version in [4, 6] {
            let ok = Coordinator::default()
                .with_key(s("group-a"))
                .with_node_id(BrokerId(2))
                .with_host(s(MSK2))
                .with_port(9094)
                .with_error_message(None);
            let failed = Coordinator::default()
                .with_key(s("group-b"))
                .with_node_id(BrokerId(-1))
                .with_host(s(""))
                .with_port(-1)
                .with_error_code(15)
                .with_error_message(Some(s("The coordinator is not available.")));
            let m = FindCoordinatorResponse::default()
                .with_throttle_time_ms(3)
                .with_error_message(None)
                .with_coordinators(vec![ok, failed.clone()]);
            let mut mapper = TestMapper::default();
            let got = check(FIND_COORDINATOR, version, &m, &mut mapper, |e| {
                e.coordinators[0].host = s("proxy.local");
                e.coordinators[0].port = 19002;
            });
            assert_eq!(got.coordinators[0].host.as_str(), "proxy.local");
            assert_eq!(got.coordinators[0].port, 19002);
            assert_eq!(got.coordinators[1], failed);
            assert_eq!(mapper.brokers, vec![(2, MSK2.to_string(), 9094)]);
        }
    }

    #[test]
    fn describe_cluster_v0_to_v2() {
        for version in 0..=2 {
            let b = |id: i32, host: &'static str| {
                let mut b = DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(id))
                    .with_host(s(host))
                    .with_port(9094)
                    .with_rack(Some(s("az")));
                if version >= 2 {
                    b.is_fenced = id == 3;
                }
                b
            };
            let m = DescribeClusterResponse::default()
                .with_cluster_id(s("Xy-Cluster"))
                .with_controller_id(BrokerId(1))
                .with_brokers(vec![b(1, MSK1), b(3, MSK3)]);
            let mut mapper = TestMapper::default();
            let got = check(DESCRIBE_CLUSTER, version, &m, &mut mapper, |e| {
                for b in &mut e.brokers {
                    b.host = s("proxy.local");
                    b.port = 19000 + b.broker_id.0;
                }
            });
            assert_eq!(got.brokers[1].port, 19003);
            assert_eq!(got.brokers[1].is_fenced, version >= 2);
            assert_eq!(mapper.brokers.len(), 2);
        }
    }

    #[test]
    fn describe_quorum_v1_untouched_v2_controllers_hidden() {
        let topic_data = describe_quorum_response::TopicData::default()
            .with_topic_name(topic("__cluster_metadata"))
            .with_partitions(vec![describe_quorum_response::PartitionData::default()
                .with_leader_id(BrokerId(3000))
                .with_current_voters(vec![
                    describe_quorum_response::ReplicaState::default()
                        .with_replica_id(BrokerId(3000)),
                ])]);
        let v1 = DescribeQuorumResponse::default()
            .with_error_message(Some(s("")))
            .with_topics(vec![topic_data.clone()]);
        assert!(!needs_inspection(DESCRIBE_QUORUM, 1));
        let input = payload(DESCRIBE_QUORUM, 1, &v1);
        assert!(
            rewrite_response(DESCRIBE_QUORUM, 1, &input, &mut TestMapper::default())
                .expect("ok")
                .is_none()
        );

        let v2 = DescribeQuorumResponse::default()
            .with_error_message(None)
            .with_topics(vec![topic_data])
            .with_nodes(vec![Node::default()
                .with_node_id(BrokerId(3000))
                .with_listeners(vec![Listener::default()
                    .with_name(s("CONTROLLER"))
                    .with_host(s("c-1.internal"))
                    .with_port(9093)])]);
        let mut mapper = TestMapper::default();
        let got = check(DESCRIBE_QUORUM, 2, &v2, &mut mapper, |e| {
            e.nodes[0].listeners[0].host = s("proxy.local");
            e.nodes[0].listeners[0].port = 0;
        });
        assert_eq!(got.nodes[0].listeners[0].name.as_str(), "CONTROLLER");
        assert_eq!(
            mapper.controllers,
            vec![(3000, "c-1.internal".to_string(), 9093)]
        );
        assert!(mapper.brokers.is_empty());

        // A controller port that does not fit uint16 is an error, not a truncation.
        let input = payload(DESCRIBE_QUORUM, 2, &v2);
        let err =
            rewrite_response(DESCRIBE_QUORUM, 2, &input, &mut FailingMapper).expect_err("port");
        assert!(matches!(
            err,
            RewriteError::ControllerPort {
                node_id: 3000,
                port: 70_000
            }
        ));
    }

    fn produce(version: i16, endpoints: bool) -> ProduceResponse {
        let mut p = PartitionProduceResponse::default()
            .with_index(4)
            .with_error_code(if endpoints { 6 } else { 0 })
            .with_base_offset(1000)
            .with_log_append_time_ms(-1);
        if version >= 5 {
            p.log_start_offset = 12;
        }
        if version >= 8 {
            p.record_errors = vec![BatchIndexAndErrorMessage::default()
                .with_batch_index(1)
                .with_batch_index_error_message(Some(s("bad")))];
            p.error_message = Some(s("NOT_LEADER_OR_FOLLOWER"));
        }
        if version >= 10 && endpoints {
            p.current_leader = produce_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(2))
                .with_leader_epoch(9);
        }
        if version >= 9 {
            p.unknown_tagged_fields.insert(7, Bytes::from_static(b"p"));
        }
        let mut t = TopicProduceResponse::default().with_partition_responses(vec![p]);
        if version <= 12 {
            t.name = topic("orders");
        } else {
            t.topic_id = uuid(3);
        }
        if version >= 9 {
            t.unknown_tagged_fields
                .insert(2, Bytes::from_static(b"topic"));
        }
        let mut m = ProduceResponse::default()
            .with_responses(vec![t])
            .with_throttle_time_ms(8);
        if version >= 10 && endpoints {
            m.node_endpoints = vec![produce_response::NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(s(MSK2))
                .with_port(9094)
                .with_rack(Some(s("az2")))];
        }
        if version >= 9 {
            m.unknown_tagged_fields
                .insert(5, Bytes::from_static(b"unknown"));
        }
        m
    }

    fn fetch(version: i16, endpoints: bool, partitions: usize, records: usize) -> FetchResponse {
        let data = Bytes::from(vec![0xabu8; records]);
        let parts = (0..partitions)
            .map(|i| {
                let mut p = fetch_response::PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(500)
                    .with_last_stable_offset(490)
                    .with_records(Some(data.clone()));
                if version >= 5 {
                    p.log_start_offset = 3;
                }
                if i % 2 == 1 {
                    p.aborted_transactions =
                        Some(vec![fetch_response::AbortedTransaction::default()
                            .with_producer_id(kafka_protocol::messages::ProducerId(77))
                            .with_first_offset(400)]);
                } else {
                    p.aborted_transactions = None;
                }
                if version >= 11 {
                    p.preferred_read_replica = BrokerId(-1);
                }
                if version >= 12 {
                    if endpoints || i % 3 == 0 {
                        p.current_leader = fetch_response::LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(3))
                            .with_leader_epoch(4);
                    }
                    if i % 4 == 1 {
                        p.diverging_epoch = fetch_response::EpochEndOffset::default()
                            .with_epoch(2)
                            .with_end_offset(90);
                        p.snapshot_id = fetch_response::SnapshotId::default()
                            .with_epoch(1)
                            .with_end_offset(80);
                    }
                    p.unknown_tagged_fields
                        .insert(11, Bytes::from_static(b"part"));
                }
                p
            })
            .collect();
        let mut t = FetchableTopicResponse::default().with_partitions(parts);
        if version <= 12 {
            t.topic = topic("orders");
        } else {
            t.topic_id = uuid(9);
        }
        if version >= 12 {
            t.unknown_tagged_fields.insert(1, Bytes::from_static(b"t"));
        }
        let mut m = FetchResponse::default()
            .with_throttle_time_ms(1)
            .with_responses(vec![t]);
        if version >= 7 {
            m.session_id = 1234;
        }
        if version >= 16 && endpoints {
            m.node_endpoints = vec![
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(3))
                    .with_host(s(MSK3))
                    .with_port(9094)
                    .with_rack(None),
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(1))
                    .with_host(s(MSK1))
                    .with_port(9094)
                    .with_rack(Some(s("az1"))),
            ];
        }
        if version >= 12 {
            m.unknown_tagged_fields
                .insert(9, Bytes::from_static(b"future"));
        }
        m
    }

    #[test]
    fn produce_before_v10_is_never_touched() {
        assert!(!needs_inspection(PRODUCE, 9));
        let input = payload(PRODUCE, 9, &produce(9, false));
        assert!(
            rewrite_response(PRODUCE, 9, &input, &mut TestMapper::default())
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn produce_v10_v13_node_endpoints() {
        for version in [10, 13] {
            assert!(needs_inspection(PRODUCE, version));
            let mut mapper = TestMapper::default();
            let input = payload(PRODUCE, version, &produce(version, false));
            assert!(rewrite_response(PRODUCE, version, &input, &mut mapper)
                .expect("ok")
                .is_none());
            assert!(mapper.brokers.is_empty());

            let got = check(
                PRODUCE,
                version,
                &produce(version, true),
                &mut mapper,
                |e| {
                    e.node_endpoints[0].host = s("proxy.local");
                    e.node_endpoints[0].port = 19002;
                },
            );
            assert_eq!(got.node_endpoints[0].host.as_str(), "proxy.local");
            assert_eq!(got.node_endpoints[0].port, 19002);
            assert_eq!(
                got.node_endpoints[0].rack.as_ref().map(|r| r.as_str()),
                Some("az2")
            );
            assert_eq!(
                got.responses[0].partition_responses[0]
                    .current_leader
                    .leader_id,
                BrokerId(2)
            );
            assert_eq!(
                got.unknown_tagged_fields[&5],
                Bytes::from_static(b"unknown")
            );
            assert_eq!(mapper.brokers, vec![(2, MSK2.to_string(), 9094)]);
        }
    }

    #[test]
    fn fetch_before_v16_is_never_touched() {
        assert!(!needs_inspection(FETCH, 15));
        let input = payload(FETCH, 15, &fetch(15, false, 3, 10));
        assert!(
            rewrite_response(FETCH, 15, &input, &mut TestMapper::default())
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn fetch_v16_v18_node_endpoints() {
        for version in [16, 18] {
            let mut mapper = TestMapper::default();
            let input = payload(FETCH, version, &fetch(version, false, 4, 100));
            assert!(rewrite_response(FETCH, version, &input, &mut mapper)
                .expect("ok")
                .is_none());

            let got = check(
                FETCH,
                version,
                &fetch(version, true, 4, 100),
                &mut mapper,
                |e| {
                    for n in &mut e.node_endpoints {
                        n.host = s("proxy.local");
                        n.port = 19000 + n.node_id.0;
                    }
                },
            );
            assert_eq!(got.node_endpoints[0].port, 19003);
            assert_eq!(got.node_endpoints[1].port, 19001);
            assert_eq!(got.node_endpoints[1].host.as_str(), "proxy.local");
            assert_eq!(got.session_id, 1234);
            let records = got.responses[0].partitions[1]
                .records
                .as_ref()
                .expect("records");
            assert_eq!(records.len(), 100);
            assert!(records.iter().all(|&b| b == 0xab));
            assert_eq!(mapper.brokers.len(), 2);
        }
    }

    #[test]
    fn rewritten_fetch_keeps_records_as_slices_of_the_input() {
        // Decoding from Bytes is zero-copy: the records of the decoded message point into the frame.
        let input = payload(FETCH, 16, &fetch(16, true, 2, 64));
        let (_, msg) =
            decode_response::<FetchResponse>(FETCH, 16, 1, &input, wire::fetch).expect("decode");
        let records = msg.responses[0].partitions[0]
            .records
            .as_ref()
            .expect("records");
        let range = input.as_ptr_range();
        assert!(range.contains(&records.as_ptr()));
    }

    #[test]
    fn share_fetch_and_acknowledge_v1() {
        let sf = ShareFetchResponse::default()
            .with_acquisition_lock_timeout_ms(30_000)
            .with_responses(vec![
                share_fetch_response::ShareFetchableTopicResponse::default()
                    .with_topic_id(uuid(1))
                    .with_partitions(vec![share_fetch_response::PartitionData::default()
                        .with_partition_index(2)
                        .with_records(Some(Bytes::from_static(b"batch")))
                        .with_acquired_records(vec![
                            share_fetch_response::AcquiredRecords::default()
                                .with_first_offset(1)
                                .with_last_offset(3)
                                .with_delivery_count(1),
                        ])]),
            ])
            .with_node_endpoints(vec![share_fetch_response::NodeEndpoint::default()
                .with_node_id(BrokerId(1))
                .with_host(s(MSK1))
                .with_port(9094)]);
        let mut mapper = TestMapper::default();
        let got = check(SHARE_FETCH, 1, &sf, &mut mapper, |e| {
            e.node_endpoints[0].host = s("proxy.local");
            e.node_endpoints[0].port = 19001;
        });
        assert_eq!(got.node_endpoints[0].port, 19001);
        assert_eq!(got.acquisition_lock_timeout_ms, 30_000);

        let sa = ShareAcknowledgeResponse::default()
            .with_responses(vec![
                share_acknowledge_response::ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(uuid(1))
                    .with_partitions(vec![share_acknowledge_response::PartitionData::default()
                        .with_partition_index(2)]),
            ])
            .with_node_endpoints(vec![share_acknowledge_response::NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(s(MSK2))
                .with_port(9094)]);
        let got = check(SHARE_ACKNOWLEDGE, 1, &sa, &mut mapper, |e| {
            e.node_endpoints[0].host = s("proxy.local");
            e.node_endpoints[0].port = 19002;
        });
        assert_eq!(got.node_endpoints[0].port, 19002);
        assert_eq!(mapper.brokers.len(), 2);
    }

    #[test]
    fn needs_inspection_table() {
        for (key, version, expected) in [
            (METADATA, 0, true),
            (FIND_COORDINATOR, 6, true),
            (DESCRIBE_CLUSTER, 0, true),
            (DESCRIBE_QUORUM, 1, false),
            (DESCRIBE_QUORUM, 2, true),
            (PRODUCE, 9, false),
            (PRODUCE, 10, true),
            (FETCH, 15, false),
            (FETCH, 16, true),
            (SHARE_FETCH, 1, true),
            (SHARE_ACKNOWLEDGE, 1, true),
            (API_VERSIONS, 0, true),
            (2, 8, false),    // ListOffsets
            (9999, 0, false), // unknown
        ] {
            assert_eq!(needs_inspection(key, version), expected, "{key} v{version}");
        }
    }

    #[test]
    fn versions_the_proxy_cannot_decode_are_errors() {
        let input = payload(METADATA, 13, &metadata(13));
        let err =
            rewrite_response(METADATA, 14, &input, &mut TestMapper::default()).expect_err("v14");
        assert!(matches!(
            err,
            RewriteError::UnsupportedVersion {
                api_key: 3,
                version: 14
            }
        ));
        let err = rewrite_response(FETCH, 19, &input, &mut TestMapper::default()).expect_err("v19");
        assert!(matches!(
            err,
            RewriteError::UnsupportedVersion {
                api_key: 1,
                version: 19
            }
        ));
    }

    /// The walker must agree with kafka-protocol's own encoding at every version.
    #[test]
    fn node_endpoints_scanner_agrees_with_full_decode() {
        // Both with a plain response header and one carrying an unknown tagged field.
        let headers = [
            ResponseHeader::default().with_correlation_id(CORRELATION),
            ResponseHeader::default()
                .with_correlation_id(CORRELATION)
                .with_unknown_tagged_field(4, Bytes::from_static(b"hdr")),
        ];
        let scan = |api_key: i16, version: i16, input: &Bytes| -> bool {
            let mut w = wire::Walker::new(input);
            w.response_header(response_header_version(api_key, version))
                .expect("header");
            let walk = if api_key == PRODUCE {
                wire::produce
            } else {
                wire::fetch
            };
            walk(&mut w, version).expect("walk")
        };
        for version in 3..=13 {
            for endpoints in [false, true] {
                for header in &headers {
                    if version < 9 && !header.unknown_tagged_fields.is_empty() {
                        continue; // header v0 has no tagged fields
                    }
                    let input =
                        payload_with_header(PRODUCE, version, header, &produce(version, endpoints));
                    let (_, full) = decode::<ProduceResponse>(PRODUCE, version, &input);
                    let found = scan(PRODUCE, version, &input);
                    assert_eq!(found, !full.node_endpoints.is_empty(), "produce v{version}");
                    assert_eq!(found, version >= 10 && endpoints);
                    if version >= 10 {
                        assert_eq!(
                            has_node_endpoints(PRODUCE, version, &input).expect("check"),
                            found
                        );
                    }
                }
            }
        }
        for version in 4..=18 {
            for endpoints in [false, true] {
                for (partitions, records) in [(0, 0), (1, 0), (5, 33), (8, 300)] {
                    for header in &headers {
                        if version < 12 && !header.unknown_tagged_fields.is_empty() {
                            continue;
                        }
                        let msg = fetch(version, endpoints, partitions, records);
                        let input = payload_with_header(FETCH, version, header, &msg);
                        let (_, full) = decode::<FetchResponse>(FETCH, version, &input);
                        let found = scan(FETCH, version, &input);
                        assert_eq!(found, !full.node_endpoints.is_empty(), "fetch v{version}");
                        assert_eq!(found, version >= 16 && endpoints);
                        if version >= 16 {
                            assert_eq!(
                                has_node_endpoints(FETCH, version, &input).expect("check"),
                                found
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn empty_node_endpoints_tag_passes_unchanged() {
        // A broker may send tag 0 holding an empty array: nothing to rewrite.
        let mut m = fetch(16, false, 1, 5);
        m.unknown_tagged_fields.clear();
        let mut input = BytesMut::from(&payload(FETCH, 16, &m)[..]);
        let last = input.len() - 1;
        assert_eq!(input[last], 0, "no tagged fields");
        input.truncate(last);
        input.extend_from_slice(&[1, 0, 1, 1]); // one tag: tag 0, size 1, compact array of 0
        let input = input.freeze();
        let (_, full) = decode::<FetchResponse>(FETCH, 16, &input);
        assert!(full.node_endpoints.is_empty());
        assert!(
            rewrite_response(FETCH, 16, &input, &mut TestMapper::default())
                .expect("ok")
                .is_none()
        );
    }

    fn samples() -> Vec<(i16, i16, Bytes)> {
        vec![
            (METADATA, 1, payload(METADATA, 1, &metadata(1))),
            (METADATA, 12, payload(METADATA, 12, &metadata(12))),
            (PRODUCE, 10, payload(PRODUCE, 10, &produce(10, true))),
            (PRODUCE, 13, payload(PRODUCE, 13, &produce(13, false))),
            (FETCH, 16, payload(FETCH, 16, &fetch(16, true, 3, 20))),
            (FETCH, 18, payload(FETCH, 18, &fetch(18, false, 3, 20))),
            (
                FIND_COORDINATOR,
                4,
                payload(
                    FIND_COORDINATOR,
                    4,
                    &FindCoordinatorResponse::default()
                        .with_error_message(None)
                        .with_coordinators(vec![Coordinator::default()
                            .with_key(s("g"))
                            .with_node_id(BrokerId(1))
                            .with_host(s(MSK1))]),
                ),
            ),
            (
                DESCRIBE_CLUSTER,
                2,
                payload(
                    DESCRIBE_CLUSTER,
                    2,
                    &DescribeClusterResponse::default().with_brokers(vec![
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(1))
                            .with_host(s(MSK1)),
                    ]),
                ),
            ),
        ]
    }

    #[test]
    fn truncated_frames_are_errors_at_every_length() {
        for (key, version, input) in samples() {
            for len in 0..input.len() {
                let cut = input.slice(..len);
                let result = rewrite_response(key, version, &cut, &mut TestMapper::default());
                assert!(
                    result.is_err(),
                    "api {key} v{version} cut at {len} of {}: {result:?}",
                    input.len()
                );
            }
            let mut longer = BytesMut::from(&input[..]);
            longer.extend_from_slice(&[0]);
            let result =
                rewrite_response(key, version, &longer.freeze(), &mut TestMapper::default());
            assert!(result.is_err(), "api {key} v{version} with a trailing byte");
        }
    }

    #[test]
    fn corrupted_frames_never_panic() {
        // Flip every byte of every sample to a few hostile values: errors or rewrites, no panic.
        for (key, version, input) in samples() {
            for i in 0..input.len() {
                for v in [0x00, 0x7f, 0x80, 0xff] {
                    let mut bad = BytesMut::from(&input[..]);
                    bad[i] = v;
                    let _ =
                        rewrite_response(key, version, &bad.freeze(), &mut TestMapper::default());
                }
            }
        }
    }

    #[test]
    fn hostile_array_counts_are_rejected_before_decoding() {
        // Metadata v1: correlation id, then brokers count i32::MAX with nothing behind it.
        let mut b = BytesMut::new();
        b.put_i32(1);
        b.put_i32(i32::MAX);
        let err = rewrite_response(METADATA, 1, &b.freeze(), &mut TestMapper::default())
            .expect_err("count");
        assert!(
            matches!(
                err,
                RewriteError::Decode {
                    api_key: 3,
                    version: 1,
                    ..
                }
            ),
            "{err:?}"
        );

        // Metadata v12: header tags none, throttle, brokers compact count 2^32-1.
        let mut b = BytesMut::new();
        b.put_i32(1);
        b.put_u8(0);
        b.put_i32(0);
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let err = rewrite_response(METADATA, 12, &b.freeze(), &mut TestMapper::default())
            .expect_err("count");
        assert!(matches!(err, RewriteError::Decode { .. }));

        // Fetch v16: node_endpoints tag declares a huge array inside a 5-byte field.
        let mut m = fetch(16, false, 1, 5);
        m.unknown_tagged_fields.clear();
        let mut input = BytesMut::from(&payload(FETCH, 16, &m)[..]);
        input.truncate(input.len() - 1);
        input.extend_from_slice(&[1, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        let err = rewrite_response(FETCH, 16, &input.freeze(), &mut TestMapper::default())
            .expect_err("count");
        assert!(matches!(
            err,
            RewriteError::Decode {
                api_key: 1,
                version: 16,
                ..
            }
        ));
    }

    #[test]
    fn known_tag_with_wrong_size_is_rejected() {
        // current_leader (tag 1) declared 4 bytes although it needs 9: kafka-protocol would read
        // past the field, so the walker refuses.
        let mut w = wire::Walker::new(&[1, 1, 4, 0, 0, 0, 3]);
        let r = w.tagged_with(|tag, f| {
            assert_eq!(tag, 1);
            f.skip(8)?;
            f.tagged().map(|()| true)
        });
        assert_eq!(r, Err("truncated"));
    }

    #[test]
    fn varints() {
        assert_eq!(wire::Walker::new(&[0x7f]).uvarint(), Ok(127));
        assert_eq!(wire::Walker::new(&[0x80, 0x01]).uvarint(), Ok(128));
        assert_eq!(
            wire::Walker::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]).uvarint(),
            Ok(u32::MAX)
        );
        assert!(wire::Walker::new(&[0xff, 0xff, 0xff, 0xff, 0x1f])
            .uvarint()
            .is_err());
        assert!(wire::Walker::new(&[0x80, 0x80]).uvarint().is_err());
    }
}
