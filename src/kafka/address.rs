//! What a rewrite asks of the broker table: the address a client must dial for an upstream
//! broker. A leaf of [`crate::kafka`], so that the rewrite and the table's users name the same
//! types without importing each other.

use kafka_protocol::protocol::StrBytes;

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
