//! Rewrites the broker addresses in the responses that carry them.
//!
//! A client must never learn an upstream broker address: it would dial it in plaintext against a
//! mutual-TLS port. Every response listed in `shared/kafka-facts.md` therefore has each broker
//! entry passed through the [`AddressMapper`] and replaced by the proxy address it returns.
//! Everything else in the message (throttle times, errors, partitions, record bytes, unknown
//! tagged fields) survives byte for byte.
//!
//! **By splicing.** A strict [`wire`] walk checks the whole response (every count and length
//! against the real bytes, and whatever kafka-protocol's decode would refuse) and notes where the
//! address entries are ([`wire::AddressRegion`]). The new frame is then the original bytes with
//! only those fields replaced: a host with its length prefix (a new host may be longer or shorter,
//! int16 or compact varint length), a port (int32; uint16 for DescribeQuorum), and for
//! `node_endpoints` in a top-level tagged field (Produce v10+, Fetch v16+) the field's size
//! varint. A rewrite thus costs one copy of the frame and no allocation besides it; nothing is
//! allocated at all when nothing changes. Decoding the whole message instead cost 7-14 times
//! the frame in memory (a Metadata with 2M topics, a Fetch full of partitions) to change a few
//! entries. The decode-based rewrite stays as [`oracle`], the reference the splice is tested
//! against.
//!
//! [`INSPECTED`] is the one list of those APIs: which versions the proxy can decode, from which
//! version a response may carry an address, and how to walk it. The connection's per-request
//! check ([`needs_inspection`]), the ApiVersions capping ([`super::versions`]) and the dispatch
//! here all read it.
//!
//! Produce and Fetch responses are the hot path: they only carry addresses (`node_endpoints`, a
//! top-level tagged field) after a leader change. The lenient [`wire`] walk checks for that field,
//! and the original bytes pass untouched when it is absent or empty.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::address::{AddressMapper, MapError};
use super::codec::{response_header_version, versions_of, CodecError};
use super::frame::LENGTH_PREFIX;
use super::wire::{self, AddressEntries, AddressEntry, AddressRegion, AddressesFn, EntryFormat};

/// Fewest bytes one address entry of a response takes (a DescribeQuorum listener: empty
/// compact name and host, a uint16 port, no tagged fields), so a response of `len` bytes names
/// at most `len / MIN_ADDRESS_ENTRY` addresses.
pub const MIN_ADDRESS_ENTRY: usize = 5;

/// The most bytes rewriting a response of `len` bytes may allocate when every host it names
/// becomes one of `host_len` bytes: the copy of the frame, each entry growing by at most the
/// new host and its longest length prefix (five bytes), and the splice's slack. The connection
/// charges it to the budget before rewriting.
pub fn rewrite_bound(len: usize, host_len: usize) -> usize {
    let entries = len / MIN_ADDRESS_ENTRY + 1;
    len.saturating_add(entries.saturating_mul(host_len + 5))
        .saturating_add(LENGTH_PREFIX + 64)
}

/// Why a response could not be rewritten (the connection is then closed with this logged).
///
/// A response that carries broker addresses and cannot be rewritten must not reach the client,
/// so every failure is an error rather than a silent pass-through.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The response could not be decoded or re-encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
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

/// What a rewrite returns: the new complete frame, or `None` to pass the original bytes.
type Rewritten = Result<Option<Bytes>, RewriteError>;

/// An API whose responses may carry broker addresses.
#[derive(Debug)]
pub struct Inspected {
    /// The API.
    pub key: ApiKey,
    /// Versions the proxy can decode and encode (request ∩ response in kafka-protocol); the
    /// ApiVersions answer is capped to this maximum.
    pub versions: VersionRange,
    /// First version whose response can carry a broker address; responses to older versions
    /// pass untouched.
    pub addresses_from: i16,
    /// The bounds check of the response body, which also finds the address entries.
    addresses: AddressesFn,
}

/// Every API whose responses the proxy inspects for broker addresses (ApiVersions, whose answer
/// is capped rather than rewritten, lives in [`super::versions`]).
pub static INSPECTED: [Inspected; 8] = [
    Inspected {
        key: ApiKey::Metadata,
        versions: versions_of::<MetadataRequest, MetadataResponse>(),
        addresses_from: 0,
        addresses: wire::metadata_addresses,
    },
    Inspected {
        key: ApiKey::FindCoordinator,
        versions: versions_of::<FindCoordinatorRequest, FindCoordinatorResponse>(),
        addresses_from: 0,
        addresses: wire::find_coordinator_addresses,
    },
    Inspected {
        key: ApiKey::DescribeCluster,
        versions: versions_of::<DescribeClusterRequest, DescribeClusterResponse>(),
        addresses_from: 0,
        addresses: wire::describe_cluster_addresses,
    },
    Inspected {
        key: ApiKey::DescribeQuorum,
        versions: versions_of::<DescribeQuorumRequest, DescribeQuorumResponse>(),
        addresses_from: 2, // nodes[].listeners[]
        addresses: wire::describe_quorum_addresses,
    },
    Inspected {
        key: ApiKey::Produce,
        versions: versions_of::<ProduceRequest, ProduceResponse>(),
        addresses_from: 10, // node_endpoints, KIP-951
        addresses: wire::produce_addresses,
    },
    Inspected {
        key: ApiKey::Fetch,
        versions: versions_of::<FetchRequest, FetchResponse>(),
        addresses_from: 16, // node_endpoints, KIP-951
        addresses: wire::fetch_addresses,
    },
    Inspected {
        key: ApiKey::ShareFetch,
        versions: versions_of::<ShareFetchRequest, ShareFetchResponse>(),
        addresses_from: 0,
        addresses: wire::share_fetch_addresses,
    },
    Inspected {
        key: ApiKey::ShareAcknowledge,
        versions: versions_of::<ShareAcknowledgeRequest, ShareAcknowledgeResponse>(),
        addresses_from: 0,
        addresses: wire::share_acknowledge_addresses,
    },
];

/// The [`INSPECTED`] entry of an api key, if its responses may carry addresses.
pub fn inspected(api_key: i16) -> Option<&'static Inspected> {
    INSPECTED.iter().find(|i| i.key as i16 == api_key)
}

/// Cheap check the connection uses per request: true when the response to `api_key` at
/// `version` may carry broker addresses and must go through [`rewrite_response`].
pub fn needs_inspection(api_key: i16, version: i16) -> bool {
    inspected(api_key).is_some_and(|i| version >= i.addresses_from)
}

/// The inspected API whose response at `version` may carry addresses, `None` when the response
/// passes as it is; an error for a version the proxy cannot decode.
fn rewritable(api_key: i16, version: i16) -> Result<Option<&'static Inspected>, RewriteError> {
    match inspected(api_key) {
        Some(i) if version >= i.addresses_from => {
            if version > i.versions.max || version < i.versions.min {
                return Err(CodecError::UnsupportedVersion { api_key, version }.into());
            }
            Ok(Some(i))
        }
        _ => Ok(None),
    }
}

/// Rewrites one response so that it names only proxy addresses, by splicing (see the module
/// documentation).
///
/// `payload` is the response WITHOUT the 4-byte length prefix (response header + body). Returns
/// `Ok(None)` when the original bytes must pass unchanged (Produce/Fetch whose `node_endpoints`
/// is absent or empty, a version that carries no address, an api key that is not inspected,
/// a response whose every address the mapper leaves as it is), or `Ok(Some(frame))` with the
/// COMPLETE new frame INCLUDING the length prefix. The mapper is called for the same entries,
/// in the same order, as [`oracle::rewrite_response`] calls it, and its errors are returned the
/// same way; a response the oracle would refuse to decode is refused. (The oracle also failed on
/// unknown tags above `i32::MAX`, which kafka-protocol decodes but cannot re-encode; the splice
/// forwards them like any unknown tag.)
pub fn rewrite_response(
    api_key: i16,
    version: i16,
    payload: &Bytes,
    mapper: &mut dyn AddressMapper,
) -> Rewritten {
    let Some(i) = rewritable(api_key, version)? else {
        return Ok(None);
    };
    let region = match walk_addresses(i, version, payload, true) {
        Ok(Some(region)) => region,
        Ok(None) => return Ok(None),
        // Produce and Fetch are only decoded when they carry node_endpoints: one that does not
        // passes as it is, even with bytes kafka-protocol would refuse elsewhere (a lenient walk
        // decides, as on the connection's hot path).
        Err(strict) if matches!(i.key, ApiKey::Produce | ApiKey::Fetch) => {
            let lenient = walk_addresses(i, version, payload, false)?;
            if lenient.is_some_and(|r| r.carries_node_endpoints()) {
                return Err(strict.into());
            }
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    splice(i.key as i16, version, payload, &region, mapper)
}

/// Walks a response payload (header included), strictly or leniently, and returns where it
/// keeps its addresses.
fn walk_addresses(
    i: &Inspected,
    version: i16,
    payload: &[u8],
    strict: bool,
) -> Result<Option<AddressRegion>, CodecError> {
    let api_key = i.key as i16;
    let mut w = if strict {
        wire::Walker::strict(payload)
    } else {
        wire::Walker::new(payload)
    };
    w.response_header(response_header_version(api_key, version))
        .and_then(|()| (i.addresses)(&mut w, version))
        .map_err(|reason| CodecError::Decode {
            api_key,
            version,
            reason: reason.to_string(),
        })
}

/// Calls `topic(id, name)` for every topic a Metadata response (v10+; `payload` with its
/// header, without its length prefix) names with both, for the audit's id → name map
/// ([`crate::topics`]). A second walk of a response the rewrite has just walked: Metadata is
/// not on the hot path, and the rewrite's walk stays free of what only the audit needs.
pub fn metadata_topic_ids(
    version: i16,
    payload: &[u8],
    topic: &mut dyn FnMut([u8; 16], &[u8]),
) -> Result<(), CodecError> {
    let api_key = ApiKey::Metadata as i16;
    let mut w = wire::Walker::strict(payload);
    w.response_header(response_header_version(api_key, version))
        .and_then(|()| wire::metadata_topic_ids(&mut w, version, topic))
        .map_err(|reason| CodecError::Decode {
            api_key,
            version,
            reason: reason.to_string(),
        })
}

/// Calls `topic(id, name)` for every topic a DescribeTopicPartitions response (`payload` with
/// its header, without its length prefix) names with both, for the audit's id → name map, as
/// [`metadata_topic_ids`] does. Errors for a version the walk does not know (v0 only so far)
/// or bytes that do not walk; the ids met before are noted all the same.
pub fn describe_topic_partitions_ids(
    version: i16,
    payload: &[u8],
    topic: &mut dyn FnMut([u8; 16], &[u8]),
) -> Result<(), CodecError> {
    let api_key = ApiKey::DescribeTopicPartitions as i16;
    if version != 0 {
        return Err(CodecError::UnsupportedVersion { api_key, version });
    }
    let mut w = wire::Walker::strict(payload);
    w.response_header(response_header_version(api_key, version))
        .and_then(|()| wire::describe_topic_partitions_ids(&mut w, topic))
        .map_err(|reason| CodecError::Decode {
            api_key,
            version,
            reason: reason.to_string(),
        })
}

/// Walks a Produce v10+ / Fetch v16+ response without decoding it and tells whether the
/// top-level tagged field `node_endpoints` is present and non-empty. Errors on malformed bytes.
pub fn has_node_endpoints(
    api_key: i16,
    version: i16,
    payload: &[u8],
) -> Result<bool, RewriteError> {
    match inspected(api_key) {
        Some(i) if i.key == ApiKey::Produce || i.key == ApiKey::Fetch => {
            let found = walk_addresses(i, version, payload, false)?;
            Ok(found.is_some_and(|r| r.carries_node_endpoints()))
        }
        _ => Ok(false),
    }
}

/// Whether a response [`needs_inspection`] selected may really carry an address: false for
/// Produce/Fetch whose `node_endpoints` is absent or empty (checked by a walk, without
/// decoding or allocating), true for everything else. The connection calls it on the bytes in
/// place, so only responses that will be rewritten leave its read buffer.
pub fn may_carry_addresses(
    api_key: i16,
    version: i16,
    payload: &[u8],
) -> Result<bool, RewriteError> {
    match inspected(api_key) {
        Some(i) if i.key == ApiKey::Produce || i.key == ApiKey::Fetch => {
            if version > i.versions.max || version < i.versions.min {
                return Err(CodecError::UnsupportedVersion { api_key, version }.into());
            }
            has_node_endpoints(api_key, version, payload)
        }
        _ => Ok(true),
    }
}

/// What one response needs before it reaches the client, as its request's plan and (for
/// Produce and Fetch) a walk of its bytes say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// It may carry a broker address: [`rewrite_response`] it.
    pub addresses: bool,
    /// It carries free text to search for upstream names ([`super::scrub`]).
    pub text: bool,
}

/// What a response whose plan asked for an address rewrite (`inspect`) or a scrub of its free
/// text (`text`) really needs. Produce and Fetch, the hot path, are walked once, leniently,
/// without decoding or allocating: a rewrite only when `node_endpoints` is present and
/// non-empty, a scrub only when an error message is non-null (Fetch has none), so a Produce or
/// Fetch answered without errors passes as its original bytes after that one walk. Every
/// other API needs what its plan says.
pub fn response_needs(
    api_key: i16,
    version: i16,
    payload: &[u8],
    inspect: bool,
    text: bool,
) -> Result<Needs, RewriteError> {
    let hot = inspected(api_key).filter(|i| matches!(i.key, ApiKey::Produce | ApiKey::Fetch));
    let Some(i) = hot.filter(|_| inspect || text) else {
        return Ok(Needs {
            addresses: inspect,
            text,
        });
    };
    if version > i.versions.max || version < i.versions.min {
        return Err(CodecError::UnsupportedVersion { api_key, version }.into());
    }
    let mut w = wire::Walker::new(payload);
    let scanned = w
        .response_header(response_header_version(api_key, version))
        .and_then(|()| match i.key {
            ApiKey::Produce => wire::produce_scan(&mut w, version),
            _ => wire::fetch_addresses(&mut w, version).map(|found| (found, false)),
        })
        .map_err(|reason| CodecError::Decode {
            api_key,
            version,
            reason: reason.to_string(),
        })?;
    Ok(Needs {
        addresses: inspect && scanned.0.is_some_and(|r| r.carries_node_endpoints()),
        text: text && scanned.1,
    })
}

/// What the mapper says for one entry: the new host and port, or `None` for an entry the
/// rewrite leaves alone (a FindCoordinator entry with an error names node -1 and no usable
/// address).
fn map_entry(
    region: &AddressRegion,
    e: &AddressEntry<'_>,
    mapper: &mut dyn AddressMapper,
) -> Result<Option<(StrBytes, i32)>, RewriteError> {
    let mapped = match region.format {
        EntryFormat::CoordinatorTopLevel | EntryFormat::Coordinator
            if e.node_id < 0 || e.error_code != 0 =>
        {
            return Ok(None);
        }
        EntryFormat::QuorumNode => {
            let adv = mapper.map_controller(e.node_id, e.host, e.port);
            let port = u16::try_from(adv.port).map_err(|_| RewriteError::ControllerPort {
                node_id: e.node_id,
                port: adv.port,
            })?;
            (adv.host, i32::from(port))
        }
        // endpoint_type 2 = controllers (KIP-919): they are not proxied, only hidden.
        EntryFormat::ClusterBroker if region.controllers => {
            let adv = mapper.map_controller(e.node_id, e.host, e.port);
            (adv.host, adv.port)
        }
        _ => {
            let adv = mapper.map_broker(e.node_id, e.host, e.port)?;
            (adv.host, adv.port)
        }
    };
    Ok(Some(mapped))
}

/// The length prefix of a host string: an int16, or a compact varint (length + 1) when
/// `flexible`. Errors like kafka-protocol's encoder for a host that does not fit.
fn host_prefix(host: &str, flexible: bool) -> Result<([u8; 5], usize), String> {
    let mut prefix = [0u8; 5];
    if flexible {
        let len = u32::try_from(host.len())
            .ok()
            .and_then(|n| n.checked_add(1))
            .ok_or_else(|| format!("CompactString is too long to encode ({} bytes)", host.len()))?;
        let n = wire::put_uvarint(&mut prefix, len);
        Ok((prefix, n))
    } else {
        let len = i16::try_from(host.len())
            .map_err(|_| format!("String is too long to encode ({} bytes)", host.len()))?;
        prefix[..2].copy_from_slice(&len.to_be_bytes());
        Ok((prefix, 2))
    }
}

/// Replaces every address entry of `region` that the mapper changes; `Ok(None)` when it
/// changes none.
fn splice(
    api_key: i16,
    version: i16,
    payload: &[u8],
    region: &AddressRegion,
    mapper: &mut dyn AddressMapper,
) -> Rewritten {
    let decode_error = |reason: &str| CodecError::Decode {
        api_key,
        version,
        reason: reason.to_string(),
    };
    let flexible = region.format.flexible(version);
    let port_width = region.format.port_width();
    let mut entries = AddressEntries::new(payload, region).map_err(decode_error)?;
    let mut out = Splice::new(payload);
    // The first host that cannot be encoded. Mapping goes on after it, so that a mapper error
    // wins as in the decode path, which maps every entry before it encodes.
    let mut unencodable: Option<String> = None;
    while let Some(e) = entries.next_entry().map_err(decode_error)? {
        let Some((host, port)) = map_entry(region, &e, mapper)? else {
            continue;
        };
        if unencodable.is_some() {
            continue;
        }
        if host.as_bytes() != e.host.as_bytes() {
            let (prefix, n) = match host_prefix(&host, flexible) {
                Ok(prefix) => prefix,
                Err(reason) => {
                    unencodable = Some(reason);
                    continue;
                }
            };
            // Room for the rest of the entries growing as much as this one, when the output is
            // first allocated: one allocation for the usual case of one proxy host for all.
            let growth = (n + host.len()).saturating_sub(e.host_span.len());
            let hint = growth.saturating_mul(entries.remaining() + 1) + 8;
            out.replace(e.host_span.clone(), &[&prefix[..n], host.as_bytes()], hint);
        }
        if port != e.port {
            let span = e.port_at..e.port_at + port_width;
            if port_width == 2 {
                // map_entry checked that a DescribeQuorum port fits a uint16.
                out.replace(span, &[&(port as u16).to_be_bytes()], 8);
            } else {
                out.replace(span, &[&port.to_be_bytes()], 8);
            }
        }
    }
    if let Some(reason) = unencodable {
        return Err(CodecError::Encode {
            api_key,
            version,
            reason,
        }
        .into());
    }
    out.finish(region).map_err(|reason| {
        CodecError::Encode {
            api_key,
            version,
            reason,
        }
        .into()
    })
}

/// A rewritten frame under construction: the payload's bytes with some spans replaced, in
/// increasing order. Nothing is allocated before the first replacement.
struct Splice<'p> {
    payload: &'p [u8],
    /// A length prefix to fill in, then the payload up to `copied` with the replacements.
    out: Option<BytesMut>,
    /// Offset in `payload` up to which `out` is written.
    copied: usize,
    /// How many bytes longer the replacements are than what they replaced (negative: shorter).
    growth: isize,
}

impl<'p> Splice<'p> {
    fn new(payload: &'p [u8]) -> Self {
        Self {
            payload,
            out: None,
            copied: 0,
            growth: 0,
        }
    }

    /// Replaces `span` of the payload (after everything replaced so far) by `parts`; the first
    /// call allocates the frame with `extra` bytes beyond the payload's size.
    fn replace(&mut self, span: Range<usize>, parts: &[&[u8]], extra: usize) {
        debug_assert!(self.copied <= span.start && span.end <= self.payload.len());
        let payload = self.payload;
        let out = self.out.get_or_insert_with(|| {
            let mut out = BytesMut::with_capacity(LENGTH_PREFIX + payload.len() + extra);
            out.put_i32(0);
            out
        });
        out.extend_from_slice(&payload[self.copied..span.start]);
        let before = out.len();
        for part in parts {
            out.extend_from_slice(part);
        }
        self.growth += (out.len() - before) as isize - span.len() as isize;
        self.copied = span.end;
    }

    /// The complete frame, `None` when nothing was replaced. Rewrites the size of a tagged
    /// `node_endpoints` field whose content changed length, and the length prefix.
    fn finish(mut self, region: &AddressRegion) -> Result<Option<Bytes>, String> {
        let Some(mut out) = self.out.take() else {
            return Ok(None);
        };
        if let Some(size_at) = region.tag_size_at {
            // Every replacement lies inside the region, after the size varint: the varint sits
            // at its original offset in `out`, and the region's new size is its old one plus
            // `growth`.
            out.extend_from_slice(&self.payload[self.copied..region.end]);
            self.copied = region.end;
            let size = (region.end - region.start) as isize + self.growth;
            let size = u32::try_from(size)
                .map_err(|_| format!("Tagged field is too large to encode ({size} bytes)"))?;
            let mut varint = [0u8; 5];
            let new_len = wire::put_uvarint(&mut varint, size);
            let old_len = region.start - size_at;
            let at = LENGTH_PREFIX + size_at;
            if new_len != old_len {
                // Shift the field's content (a few entries) to fit the new varint.
                let content = at + old_len..out.len();
                if new_len > old_len {
                    out.resize(out.len() + new_len - old_len, 0);
                    out.copy_within(content, at + new_len);
                } else {
                    out.copy_within(content, at + new_len);
                    out.truncate(out.len() - (old_len - new_len));
                }
            }
            out[at..at + new_len].copy_from_slice(&varint[..new_len]);
        }
        out.extend_from_slice(&self.payload[self.copied..]);
        let len = out.len() - LENGTH_PREFIX;
        let prefix = i32::try_from(len).map_err(|_| format!("frame of {len} bytes"))?;
        out[..LENGTH_PREFIX].copy_from_slice(&prefix.to_be_bytes());
        Ok(Some(out.freeze()))
    }
}

/// The decode-based rewrite, the reference the splice must match (tests, fuzz, benches).
pub mod oracle;

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
