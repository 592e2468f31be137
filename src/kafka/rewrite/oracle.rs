//! The decode-based rewrite: the whole response decoded with kafka-protocol, the address
//! fields edited, the message re-encoded.
//!
//! The proxy does not use it: it costs 7-14 times the frame in memory where
//! [`crate::kafka::rewrite::rewrite_response`] costs one copy. It is kept, public, as the reference the splice
//! must match byte for byte (kafka-protocol re-encodes deterministically and keeps unknown
//! tagged fields): the property tests of this module, the fuzz target `splice_vs_decode`, and
//! the "before" rows of `benches/rewrite.rs` call it.

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterResponse, DescribeQuorumResponse, FetchResponse,
    FindCoordinatorResponse, MetadataResponse, ProduceResponse, ShareAcknowledgeResponse,
    ShareFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

use super::{has_node_endpoints, rewritable, RewriteError, Rewritten};
use crate::kafka::address::{AddressMapper, MapError};
use crate::kafka::codec::{self, response_header_version};
use crate::kafka::wire::{self, WalkFn};

/// [`super::rewrite_response`]'s contract, by decoding and re-encoding.
pub fn rewrite_response(
    api_key: i16,
    version: i16,
    payload: &Bytes,
    mapper: &mut dyn AddressMapper,
) -> Result<Option<Bytes>, RewriteError> {
    let Some(i) = rewritable(api_key, version)? else {
        return Ok(None);
    };
    match i.key {
        ApiKey::Metadata => metadata(version, payload, mapper),
        ApiKey::FindCoordinator => find_coordinator(version, payload, mapper),
        ApiKey::DescribeCluster => describe_cluster(version, payload, mapper),
        ApiKey::DescribeQuorum => describe_quorum(version, payload, mapper),
        ApiKey::Produce => produce(version, payload, mapper),
        ApiKey::Fetch => fetch(version, payload, mapper),
        ApiKey::ShareFetch => share_fetch(version, payload, mapper),
        ApiKey::ShareAcknowledge => share_acknowledge(version, payload, mapper),
        other => unreachable!("{other:?} is inspected but has no decode-based rewrite"),
    }
}

fn metadata(version: i16, payload: &Bytes, mapper: &mut dyn AddressMapper) -> Rewritten {
    rewrite_with::<MetadataResponse>(ApiKey::Metadata, version, payload, wire::metadata, |msg| {
        let mut changed = false;
        for b in &mut msg.brokers {
            changed |= map_broker(mapper, b.node_id.0, &mut b.host, &mut b.port)?;
        }
        Ok(changed)
    })
}

fn find_coordinator(version: i16, payload: &Bytes, mapper: &mut dyn AddressMapper) -> Rewritten {
    rewrite_with::<FindCoordinatorResponse>(
        ApiKey::FindCoordinator,
        version,
        payload,
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
    )
}

fn describe_cluster(version: i16, payload: &Bytes, mapper: &mut dyn AddressMapper) -> Rewritten {
    rewrite_with::<DescribeClusterResponse>(
        ApiKey::DescribeCluster,
        version,
        payload,
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
    )
}

fn describe_quorum(version: i16, payload: &Bytes, mapper: &mut dyn AddressMapper) -> Rewritten {
    rewrite_with::<DescribeQuorumResponse>(
        ApiKey::DescribeQuorum,
        version,
        payload,
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
    )
}

fn share_fetch(version: i16, payload: &Bytes, mapper: &mut dyn AddressMapper) -> Rewritten {
    rewrite_with::<ShareFetchResponse>(
        ApiKey::ShareFetch,
        version,
        payload,
        wire::share_fetch,
        |msg| map_node_endpoints!(mapper, msg.node_endpoints),
    )
}

fn share_acknowledge(version: i16, payload: &Bytes, mapper: &mut dyn AddressMapper) -> Rewritten {
    rewrite_with::<ShareAcknowledgeResponse>(
        ApiKey::ShareAcknowledge,
        version,
        payload,
        wire::share_acknowledge,
        |msg| map_node_endpoints!(mapper, msg.node_endpoints),
    )
}

fn produce(version: i16, payload: &Bytes, mapper: &mut dyn AddressMapper) -> Rewritten {
    if !has_node_endpoints(ApiKey::Produce as i16, version, payload)? {
        return Ok(None);
    }
    rewrite_with::<ProduceResponse>(ApiKey::Produce, version, payload, wire::produce, |msg| {
        map_node_endpoints!(mapper, msg.node_endpoints)
    })
}

fn fetch(version: i16, payload: &Bytes, mapper: &mut dyn AddressMapper) -> Rewritten {
    if !has_node_endpoints(ApiKey::Fetch as i16, version, payload)? {
        return Ok(None);
    }
    rewrite_with::<FetchResponse>(ApiKey::Fetch, version, payload, wire::fetch, |msg| {
        map_node_endpoints!(mapper, msg.node_endpoints)
    })
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

/// Maps every entry of a `node_endpoints` list (Produce, Fetch, ShareFetch,
/// ShareAcknowledge: four generated types with the same fields); evaluates to
/// `Ok(changed)`.
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

/// Validates, decodes, edits and re-encodes one response; `Ok(None)` when `edit` changed
/// nothing.
fn rewrite_with<M: Message + Decodable + Encodable>(
    key: ApiKey,
    version: i16,
    payload: &Bytes,
    walk: WalkFn,
    edit: impl FnOnce(&mut M) -> Result<bool, RewriteError>,
) -> Rewritten {
    let api_key = key as i16;
    let header_version = response_header_version(api_key, version);
    let (header_len, mut msg) =
        codec::decode_response::<M>(api_key, version, header_version, payload, walk)?;
    if !edit(&mut msg)? {
        return Ok(None);
    }
    Ok(Some(codec::encode_frame(
        api_key,
        version,
        &payload[..header_len],
        &msg,
    )?))
}
