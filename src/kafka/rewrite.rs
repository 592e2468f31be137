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
                let mut changed = false;
                for e in &mut msg.node_endpoints {
                    changed |= map_broker(mapper, e.node_id.0, &mut e.host, &mut e.port)?;
                }
                Ok(changed)
            })
        }
        SHARE_ACKNOWLEDGE => rewrite_with::<ShareAcknowledgeResponse>(
            api_key,
            version,
            frame,
            wire::share_acknowledge,
            |msg| {
                let mut changed = false;
                for e in &mut msg.node_endpoints {
                    changed |= map_broker(mapper, e.node_id.0, &mut e.host, &mut e.port)?;
                }
                Ok(changed)
            },
        ),
        PRODUCE if version >= PRODUCE_NODE_ENDPOINTS_MIN => {
            check_version::<ProduceResponse>(api_key, version)?;
            if !has_node_endpoints(api_key, version, frame)? {
                return Ok(None);
            }
            rewrite_with::<ProduceResponse>(api_key, version, frame, wire::produce, |msg| {
                let mut changed = false;
                for e in &mut msg.node_endpoints {
                    changed |= map_broker(mapper, e.node_id.0, &mut e.host, &mut e.port)?;
                }
                Ok(changed)
            })
        }
        FETCH if version >= FETCH_NODE_ENDPOINTS_MIN => {
            check_version::<FetchResponse>(api_key, version)?;
            if !has_node_endpoints(api_key, version, frame)? {
                return Ok(None);
            }
            rewrite_with::<FetchResponse>(api_key, version, frame, wire::fetch, |msg| {
                let mut changed = false;
                for e in &mut msg.node_endpoints {
                    changed |= map_broker(mapper, e.node_id.0, &mut e.host, &mut e.port)?;
                }
                Ok(changed)
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
    w.response_header(1)
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

/// Stores a new address; true if it differs from the old one.
fn replace(host: &mut StrBytes, port: &mut i32, new_host: StrBytes, new_port: i32) -> bool {
    let changed = *host != new_host || *port != new_port;
    *host = new_host;
    *port = new_port;
    changed
}

fn decode_error(api_key: i16, version: i16, reason: impl ToString) -> RewriteError {
    RewriteError::Decode {
        api_key,
        version,
        reason: reason.to_string(),
    }
}

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

        pub(crate) fn take(&mut self, n: usize) -> WireResult<&'a [u8]> {
            if n > self.buf.len() {
                return Err(TRUNCATED);
            }
            let (head, tail) = self.buf.split_at(n);
            self.buf = tail;
            Ok(head)
        }

        pub(crate) fn skip(&mut self, n: usize) -> WireResult<()> {
            self.take(n).map(|_| ())
        }

        pub(crate) fn i16(&mut self) -> WireResult<i16> {
            let b = self.take(2)?;
            Ok(i16::from_be_bytes([b[0], b[1]]))
        }

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
