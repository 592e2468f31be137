//! The Kafka wire protocol as far as the proxy needs it.
//!
//! - [`wire`]: the one bounds-checked reader of network bytes: lengths, varints, tagged
//!   fields, request header peeks, and a walk of every response format the proxy decodes.
//! - [`frame`]: length-prefixed frames and the few header fields read without decoding
//!   (api key, version, correlation id, Produce `acks`), through [`wire`].
//! - [`codec`]: header versions, and decoding/encoding whole messages with kafka-protocol only
//!   after a [`wire`] walk has bounded them; also the proxy's own requests.
//! - [`rewrite`]: the one table of APIs whose responses carry broker addresses, and their
//!   rewrite.
//! - [`scrub`]: the table of APIs whose responses carry free text (error messages, config
//!   values), and the replacement of upstream names and addresses in it.
//! - [`requests`]: walkers over the requests the identity policy denies or audits and over
//!   the responses it audits, on top of [`wire`] (names, partitions, ids and error codes only;
//!   secrets and configuration values are stepped over).
//! - [`versions`]: the ApiVersions exchange, capped to the versions [`rewrite`] can decode.
//!
//! Everything else passes through as the original bytes, at any version, including API keys
//! the protocol library does not know. Imports only go down this list (versions → rewrite →
//! codec → wire; frame → codec, wire; requests → codec, wire).

pub mod codec;
pub mod frame;
pub mod requests;
pub mod rewrite;
pub mod scrub;
pub mod versions;
pub mod wire;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use kafka_protocol::protocol::StrBytes;

/// ApiVersions' api key, the one the proxy answers and caps itself (from the crate's [`ApiKey`]).
pub const API_VERSIONS: i16 = ApiKey::ApiVersions as i16;

/// A broker address as a response carries it, and as the client must see it after rewriting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// Host name or IP literal.
    pub host: StrBytes,
    /// TCP port (Kafka encodes ports as int32).
    pub port: i32,
}

/// Why a broker address in a response could not be turned into one the proxy serves.
#[derive(Debug, thiserror::Error)]
#[error("broker {node_id} is not in the proxy's broker table")]
pub struct MapError {
    /// The broker's node id.
    pub node_id: i32,
}

/// Turns an upstream broker address into the proxy address a client must dial.
///
/// On client connections it is implemented by a read-only view of the shared broker table:
/// only the proxy's own Metadata requests write that table, so nothing a response on one
/// client's connection says can open a listener or redirect another client. Tests implement it
/// with a fixed table.
pub trait AddressMapper {
    /// Maps the broker `node_id` that upstream advertises at `host:port`.
    fn map_broker(&mut self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError>;

    /// Maps a KRaft controller listener (DescribeQuorum). Controllers are not proxied, so the
    /// address must only stop leaking the upstream name; by default the proxy's advertised host
    /// with port 0.
    fn map_controller(&mut self, node_id: i32, host: &str, port: i32) -> Advertised;
}

/// True when the response to `api_key` at `version` must be looked at before it reaches the
/// client: ApiVersions (capped) and every [`rewrite::INSPECTED`] API from the version whose
/// responses can carry broker addresses.
pub fn needs_inspection(api_key: i16, version: i16) -> bool {
    api_key == API_VERSIONS || rewrite::needs_inspection(api_key, version)
}

/// False when a request must not be relayed: its response may carry broker addresses but the
/// proxy cannot decode that version (the capped ApiVersions answer never offered it), so the
/// connection closes instead. ApiVersions is always relayable: the connection answers versions
/// above what the proxy decodes itself. Likewise for a response with free text the proxy could
/// not search for upstream names ([`scrub::TEXT_CARRYING`]).
pub fn relayable(api_key: i16, version: i16) -> bool {
    if let Some(t) = scrub::text_carrying(api_key) {
        return (t.versions.min..=t.versions.max).contains(&version);
    }
    match rewrite::inspected(api_key) {
        Some(i) if version >= i.addresses_from => {
            (i.versions.min..=i.versions.max).contains(&version)
        }
        _ => true,
    }
}

/// Inspects one response that [`needs_inspection`] selected: caps ApiVersions, rewrites broker
/// addresses. `Ok(None)`: forward the original bytes; `Ok(Some(frame))`: forward this complete
/// frame (length prefix included) instead.
pub fn inspect_response(
    api_key: i16,
    version: i16,
    payload: &Bytes,
    mapper: &mut dyn AddressMapper,
) -> Result<Option<Bytes>, rewrite::RewriteError> {
    if api_key == API_VERSIONS {
        versions::rewrite_api_versions(version, payload)
    } else {
        rewrite::rewrite_response(api_key, version, payload, mapper)
    }
}
