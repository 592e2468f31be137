//! The Kafka wire protocol as far as the proxy needs it.
//!
//! - [`frame`]: length-prefixed frames and the few header fields read without decoding
//!   (api key, version, correlation id, Produce `acks`).
//! - [`rewrite`]: the responses that carry broker addresses, decoded and re-encoded with the
//!   addresses the client must dial instead.
//! - [`versions`]: the ApiVersions exchange, capped to the versions [`rewrite`] can decode.
//!
//! Everything else passes through as the original bytes, at any version, including API keys
//! the protocol library does not know.

pub mod frame;
pub mod rewrite;
pub mod versions;

use kafka_protocol::protocol::StrBytes;

/// A broker address as a response carries it, and as the client must see it after rewriting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// Host name or IP literal.
    pub host: StrBytes,
    /// TCP port (Kafka encodes ports as int32).
    pub port: i32,
}

/// Why a broker address could not be turned into one the proxy serves.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve broker {node_id} ({host}:{port}): {reason}")]
pub struct MapError {
    /// The broker's node id.
    pub node_id: i32,
    /// The upstream host the response named.
    pub host: String,
    /// The upstream port the response named.
    pub port: i32,
    /// What went wrong (port out of range, bind failure, ...).
    pub reason: String,
}

/// Turns an upstream broker address into the proxy address a client must dial.
///
/// Implemented by the broker registry, which learns node id → upstream address from every call
/// and opens the node's proxy listener before it answers, so a client never sees a port that
/// is not yet listening. Tests implement it with a fixed table.
pub trait AddressMapper {
    /// Maps the broker `node_id` that upstream advertises at `host:port`.
    fn map_broker(&mut self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError>;

    /// Maps a KRaft controller listener (DescribeQuorum). Controllers are not proxied, so the
    /// address must only stop leaking the upstream name; by default the proxy's advertised host
    /// with port 0.
    fn map_controller(&mut self, node_id: i32, host: &str, port: i32) -> Advertised;
}
