//! The broker table: node id ↔ upstream address ↔ proxy port.
//!
//! Each broker gets its own proxy port, derived from its node id (`base + node id`, or an
//! explicit per-node override), so a client that remembers a broker's address keeps reaching
//! the same broker across proxy restarts, broker replacement and scale-out. The table learns
//! brokers from every address-carrying response; a node id seen for the first time gets its
//! listener bound before the rewritten response leaves the proxy.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use kafka_protocol::protocol::StrBytes;

use crate::kafka::{Advertised, MapError};

/// A broker address as upstream advertises it (host name as given, for SNI and verification).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamAddr {
    /// Host name (or IP literal) to dial and to verify the certificate against.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl UpstreamAddr {
    /// Parses `host:port` (IPv6 literals in brackets).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("'{s}' is not host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("'{s}' has an empty host"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("'{s}' has an invalid port"))?;
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How node ids turn into proxy ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPlan {
    /// Port of node id 0; node N listens on `base + N`.
    pub base: u16,
    /// Explicit ports for some node ids, taking precedence over the formula.
    pub overrides: BTreeMap<i32, u16>,
    /// Ports the plan must never hand out (the bootstrap port, the admin port).
    pub reserved: Vec<u16>,
}

/// Why a node id has no proxy port.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    /// `base + node id` falls outside 1..=65535.
    #[error("node id {node_id} with --broker-port-base {base} gives port {port}, outside 1..=65535; set --broker-port {node_id}=PORT")]
    OutOfRange {
        /// The node id.
        node_id: i32,
        /// The configured base.
        base: u16,
        /// The computed port.
        port: i64,
    },
    /// The port is reserved or already used by another node id.
    #[error("node id {node_id} would listen on port {port}, which {taken_by}; set --broker-port {node_id}=PORT")]
    Collision {
        /// The node id.
        node_id: i32,
        /// The computed port.
        port: u16,
        /// What already uses it.
        taken_by: String,
    },
}

impl PortPlan {
    /// The port for a node id, before checking collisions with other nodes.
    pub fn port_for(&self, node_id: i32) -> Result<u16, PortError> {
        if let Some(port) = self.overrides.get(&node_id) {
            return Ok(*port);
        }
        let port = i64::from(self.base) + i64::from(node_id);
        u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(PortError::OutOfRange {
                node_id,
                base: self.base,
                port,
            })
    }

    /// Checks the plan itself: overrides must not collide with each other or reserved ports.
    pub fn validate(&self) -> Result<(), PortError> {
        let mut seen: HashMap<u16, i32> = HashMap::new();
        for (&node_id, &port) in &self.overrides {
            if self.reserved.contains(&port) {
                return Err(PortError::Collision {
                    node_id,
                    port,
                    taken_by: "is the bootstrap or admin port".into(),
                });
            }
            if let Some(other) = seen.insert(port, node_id) {
                return Err(PortError::Collision {
                    node_id,
                    port,
                    taken_by: format!("is also configured for node id {other}"),
                });
            }
        }
        Ok(())
    }
}

/// One known broker.
#[derive(Debug)]
struct Broker {
    upstream: UpstreamAddr,
    port: u16,
}

/// What [`Registry::learn`] found out about a broker.
#[derive(Debug)]
pub struct Learned {
    /// The address the client must be told.
    pub advertised: Advertised,
    /// A freshly bound listener for a node id seen for the first time; the caller must
    /// start accepting on it.
    pub new_listener: Option<(i32, std::net::TcpListener)>,
}

/// The broker table, shared by every connection.
#[derive(Debug)]
pub struct Registry {
    plan: PortPlan,
    bind: IpAddr,
    advertised_host: StrBytes,
    brokers: Mutex<HashMap<i32, Broker>>,
}

impl Registry {
    /// An empty table whose listeners bind `bind` and whose addresses advertise `advertised_host`.
    pub fn new(plan: PortPlan, bind: IpAddr, advertised_host: String) -> Self {
        Self {
            plan,
            bind,
            advertised_host: StrBytes::from_string(advertised_host),
            brokers: Mutex::new(HashMap::new()),
        }
    }

    /// The host every rewritten address carries.
    pub fn advertised_host(&self) -> &StrBytes {
        &self.advertised_host
    }

    /// The upstream address of a node id, if known.
    pub fn upstream(&self, node_id: i32) -> Option<UpstreamAddr> {
        self.lock().get(&node_id).map(|b| b.upstream.clone())
    }

    /// Every known broker: node id, upstream address, proxy port.
    pub fn snapshot(&self) -> Vec<(i32, UpstreamAddr, u16)> {
        let mut all: Vec<_> = self
            .lock()
            .iter()
            .map(|(id, b)| (*id, b.upstream.clone(), b.port))
            .collect();
        all.sort_by_key(|(id, _, _)| *id);
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Broker>> {
        self.brokers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that upstream advertises `node_id` at `host:port` and returns the address to
    /// advertise instead. A new node id gets its listener bound here, synchronously, so that
    /// the port accepts connections before any client can learn it.
    pub fn learn(&self, node_id: i32, host: &str, port: i32) -> Result<Learned, MapError> {
        let map_err = |reason: String| MapError {
            node_id,
            host: host.to_owned(),
            port,
            reason,
        };
        let upstream_port = u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| map_err("invalid upstream port".into()))?;
        let upstream = UpstreamAddr {
            host: host.to_owned(),
            port: upstream_port,
        };
        let mut brokers = self.lock();
        if let Some(known) = brokers.get_mut(&node_id) {
            if known.upstream != upstream {
                tracing::info!(node_id, from = %known.upstream, to = %upstream, "broker moved; its proxy port stays {}", known.port);
                known.upstream = upstream;
            }
            return Ok(Learned {
                advertised: self.advertise(known.port),
                new_listener: None,
            });
        }
        let proxy_port = self
            .plan
            .port_for(node_id)
            .map_err(|e| map_err(e.to_string()))?;
        if self.plan.reserved.contains(&proxy_port) {
            return Err(map_err(
                PortError::Collision {
                    node_id,
                    port: proxy_port,
                    taken_by: "is the bootstrap or admin port".into(),
                }
                .to_string(),
            ));
        }
        if let Some((other, _)) = brokers.iter().find(|(_, b)| b.port == proxy_port) {
            return Err(map_err(
                PortError::Collision {
                    node_id,
                    port: proxy_port,
                    taken_by: format!("node id {other} already listens on"),
                }
                .to_string(),
            ));
        }
        let listener = bind_listener(SocketAddr::new(self.bind, proxy_port))
            .map_err(|e| map_err(format!("cannot listen on {}:{proxy_port}: {e}", self.bind)))?;
        tracing::info!(node_id, upstream = %upstream, port = proxy_port, "new broker; listening");
        brokers.insert(
            node_id,
            Broker {
                upstream,
                port: proxy_port,
            },
        );
        metrics::gauge!("kafka_proxy_broker_listeners").set(brokers.len() as f64);
        Ok(Learned {
            advertised: self.advertise(proxy_port),
            new_listener: Some((node_id, listener)),
        })
    }

    fn advertise(&self, port: u16) -> Advertised {
        Advertised {
            host: self.advertised_host.clone(),
            port: i32::from(port),
        }
    }
}

/// Binds a non-blocking listener with `SO_REUSEADDR`, so a restarted proxy gets its ports
/// back at once even while old connections linger in TIME_WAIT.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    listener.into_std()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PortPlan {
        PortPlan {
            base: 9100,
            overrides: BTreeMap::from([(7, 9300)]),
            reserved: vec![9092],
        }
    }

    #[test]
    fn ports_derive_from_node_ids() {
        let plan = plan();
        assert_eq!(plan.port_for(1), Ok(9101));
        assert_eq!(plan.port_for(3), Ok(9103));
        assert_eq!(plan.port_for(7), Ok(9300));
        assert_eq!(plan.port_for(0), Ok(9100));
        assert!(matches!(
            plan.port_for(60000),
            Err(PortError::OutOfRange { port: 69100, .. })
        ));
        assert!(matches!(
            plan.port_for(-9101),
            Err(PortError::OutOfRange { .. })
        ));
        assert!(matches!(
            PortPlan {
                base: 0,
                ..plan.clone()
            }
            .port_for(0),
            Err(PortError::OutOfRange { port: 0, .. })
        ));
    }

    #[test]
    fn colliding_overrides_are_rejected() {
        let mut plan = plan();
        assert_eq!(plan.validate(), Ok(()));
        plan.overrides.insert(8, 9300);
        assert!(matches!(
            plan.validate(),
            Err(PortError::Collision { port: 9300, .. })
        ));
        let mut plan = self::plan();
        plan.overrides.insert(8, 9092);
        assert!(matches!(
            plan.validate(),
            Err(PortError::Collision { port: 9092, .. })
        ));
    }

    #[test]
    fn parses_upstream_addresses() {
        assert_eq!(
            UpstreamAddr::parse("b-1.msk.test:9094").unwrap(),
            UpstreamAddr {
                host: "b-1.msk.test".into(),
                port: 9094
            }
        );
        assert_eq!(UpstreamAddr::parse("[::1]:9094").unwrap().host, "::1");
        assert_eq!(
            UpstreamAddr::parse("[::1]:9094").unwrap().to_string(),
            "[::1]:9094"
        );
        assert!(UpstreamAddr::parse("nohost").is_err());
        assert!(UpstreamAddr::parse("h:0").is_err());
        assert!(UpstreamAddr::parse(":9094").is_err());
    }

    #[tokio::test]
    async fn learning_binds_once_and_keeps_the_port_when_a_broker_moves() {
        // Port 0 as base would be invalid; find a free range by binding a probe.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port() - 1;
        drop(probe);
        let registry = Registry::new(
            PortPlan {
                base,
                overrides: BTreeMap::new(),
                reserved: vec![],
            },
            "127.0.0.1".parse().unwrap(),
            "proxy.local".into(),
        );
        let first = registry.learn(1, "b-1.msk.test", 9094).unwrap();
        assert_eq!(first.advertised.host.as_str(), "proxy.local");
        assert_eq!(first.advertised.port, i32::from(base) + 1);
        let (node, listener) = first.new_listener.expect("first sighting binds");
        assert_eq!(node, 1);
        assert_eq!(listener.local_addr().unwrap().port(), base + 1);
        let again = registry.learn(1, "b-9.msk.test", 9094).unwrap();
        assert!(again.new_listener.is_none());
        assert_eq!(again.advertised.port, i32::from(base) + 1);
        assert_eq!(registry.upstream(1).unwrap().host, "b-9.msk.test");
        assert!(registry.learn(2, "b-2.msk.test", 0).is_err());
        assert!(registry.learn(2, "b-2.msk.test", 70000).is_err());
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_error_not_a_leak() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let registry = Registry::new(
            PortPlan {
                base: port - 5,
                overrides: BTreeMap::new(),
                reserved: vec![],
            },
            "127.0.0.1".parse().unwrap(),
            "proxy.local".into(),
        );
        let err = registry.learn(5, "b-5.msk.test", 9094).unwrap_err();
        assert!(err.reason.contains("cannot listen"), "{err}");
        assert!(registry.snapshot().is_empty());
    }
}
