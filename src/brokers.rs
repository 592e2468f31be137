//! The broker table: node id ↔ upstream address ↔ proxy port.
//!
//! Each broker gets its own proxy port, derived from its node id (`base + node id`, or an
//! explicit per-node override), so a client that remembers a broker's address keeps reaching
//! the same broker across proxy restarts, broker replacement and scale-out.
//!
//! The table is a trust boundary: every client of a port is relayed, with the proxy's client
//! certificate, to the host the table names for that node. So only the proxy's own Metadata
//! requests, on its own upstream connections, write it ([`Registry::apply`]), within a
//! [`TablePolicy`] (node ids ≥ 0 and below --max-brokers, hosts matching
//! --upstream-host-pattern). Responses on client connections only read it ([`Registry::lookup`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use kafka_protocol::protocol::StrBytes;

use crate::kafka::Advertised;

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
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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
    /// Its proxy port in each listener set.
    ports: Vec<u16>,
}

/// What the broker table says about a broker a response on a client connection names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Known at this address: tell the client this proxy address.
    Known(Advertised),
    /// Known, but the response names another upstream address than the proxy's own Metadata
    /// did. The client is still told the node's proxy address (the port stands for the node
    /// id); the proxy's next Metadata request decides whether the node really moved.
    Differs(Advertised),
    /// Not in the table: only the proxy's own Metadata request can add it.
    Unknown,
}

/// A broker the cluster named in an answer to the proxy's own Metadata request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

/// Limits on what the cluster's answers may make the proxy do: how many listeners it opens and
/// which hosts it dials with its client certificate.
#[derive(Debug, Clone)]
pub struct TablePolicy {
    /// The most broker listeners; node ids served by the port formula are `0..max_brokers`.
    pub max_brokers: usize,
    /// Hosts a broker may be advertised at (exact, or `*.domain`), lower case.
    pub host_patterns: Vec<String>,
}

/// Checks one --upstream-host-pattern and returns it lower-cased: an exact host (a name, or an
/// IP address, IPv6 with or without brackets) or `*.domain` with at least two labels after
/// `*.`. Refuses what would let broker metadata point the proxy at arbitrary hosts (`*`,
/// `*.com`) and anything that is not a host name (ports, paths, a `*` elsewhere).
pub fn parse_host_pattern(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|p| p.strip_suffix(']'))
        .unwrap_or(trimmed);
    let pattern = unbracketed.to_ascii_lowercase();
    if pattern.is_empty() {
        return Err("empty pattern".into());
    }
    if let Some(c) = pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*')))
    {
        return Err(format!(
            "'{raw}': '{c}' is not allowed (a pattern is a host name, an IP address or *.domain)"
        ));
    }
    if let Ok(ip) = pattern.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let (wildcard, name) = match pattern.strip_prefix("*.") {
        Some(domain) => (true, domain),
        None if pattern == "*" => {
            return Err("'*' alone would let the cluster send the proxy to any host".into())
        }
        None => (false, pattern.as_str()),
    };
    if name.contains('*') {
        return Err(format!("'{raw}': '*' is only allowed as a leading '*.'"));
    }
    if name.contains(':') {
        return Err(format!(
            "'{raw}' is neither a host name nor an IP address (a pattern has no port)"
        ));
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = name.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(format!("'{raw}' has an empty label"));
    }
    if !wildcard {
        return Ok(name.to_owned());
    }
    if labels.len() < 2 {
        return Err(format!(
            "'{raw}' is too broad: '*.' must be followed by at least two labels, like *.msk.test"
        ));
    }
    Ok(format!("*.{name}"))
}

/// Whether the proxy may dial `host` (a host a broker is advertised at) under `pattern` (one
/// of [`TablePolicy::host_patterns`]). An exact pattern matches the same name,
/// case-insensitively, or the same IP address in any spelling; `*.domain` matches a name with
/// one or more non-empty labels in front of `.domain`, never an IP address. A trailing dot
/// and IPv6 brackets on `host` are ignored.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    let host_ip = host.parse::<IpAddr>().ok();
    let Some(domain) = pattern.strip_prefix("*.") else {
        return match (pattern.parse::<IpAddr>().ok(), host_ip) {
            (Some(p), Some(h)) => p == h,
            _ => !host.is_empty() && host.eq_ignore_ascii_case(pattern),
        };
    };
    if host_ip.is_some() || domain.is_empty() {
        return false;
    }
    let (host, domain) = (host.as_bytes(), domain.as_bytes());
    let Some(split) = host.len().checked_sub(domain.len() + 1) else {
        return false;
    };
    let (prefix, dot_domain) = host.split_at(split);
    dot_domain[0] == b'.'
        && dot_domain[1..].eq_ignore_ascii_case(domain)
        && prefix.split(|b| *b == b'.').all(|label| {
            !label.is_empty()
                && label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

/// Why a discovered broker was not put in the table. Logged once per node id, counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Kafka node ids are never negative.
    #[error("negative node id")]
    NegativeNodeId,
    /// The port formula only serves node ids below --max-brokers.
    #[error("node id is not below --max-brokers {0}; raise it or set --broker-port NODE=PORT")]
    NodeIdTooLarge(usize),
    /// As many listeners as --max-brokers allows are open.
    #[error("--max-brokers {0} listeners are open already; raise --max-brokers")]
    TooManyBrokers(usize),
    /// The advertised host matches no --upstream-host-pattern.
    #[error("host '{0}' matches no --upstream-host-pattern")]
    HostNotAllowed(String),
    /// The advertised port is not a TCP port.
    #[error("invalid upstream port {0}")]
    InvalidPort(i32),
    /// No proxy port for the node (formula out of range, collision).
    #[error(transparent)]
    Port(#[from] PortError),
    /// The proxy port could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        reason: String,
    },
}

impl Refusal {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NegativeNodeId => "negative_node_id",
            Refusal::NodeIdTooLarge(_) => "node_id_too_large",
            Refusal::TooManyBrokers(_) => "max_brokers",
            Refusal::HostNotAllowed(_) => "host_not_allowed",
            Refusal::InvalidPort(_) => "invalid_port",
            Refusal::Port(_) => "port",
            Refusal::Bind { .. } => "bind",
        }
    }
}

/// How many refused node ids are remembered for log-once purposes; beyond it refusals are
/// only counted, so a hostile answer naming millions of ids cannot grow the set.
const MAX_REMEMBERED_REFUSALS: usize = 1024;

/// The broker table, shared by every connection. Written only by [`Registry::apply`] with
/// what the proxy's own Metadata requests return; client connections only read it.
#[derive(Debug)]
pub struct Registry {
    /// One port plan per listener set (the default set first).
    plans: Vec<PortPlan>,
    policy: TablePolicy,
    bind: IpAddr,
    advertised_host: StrBytes,
    brokers: Mutex<HashMap<i32, Broker>>,
    refused: Mutex<HashSet<(i32, &'static str)>>,
    /// Bumped whenever a broker is added or moves: what depends on the table (the names the
    /// free-text scrub searches for) is rebuilt only then.
    generation: AtomicU64,
}

impl Registry {
    /// An empty table whose listeners (one per node id and plan) bind `bind` and whose
    /// addresses advertise `advertised_host`.
    pub fn new(
        plans: Vec<PortPlan>,
        policy: TablePolicy,
        bind: IpAddr,
        advertised_host: String,
    ) -> Self {
        Self {
            plans,
            policy,
            bind,
            advertised_host: StrBytes::from_string(advertised_host),
            brokers: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashSet::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Changes each time the table does (a broker added or moved).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every known broker's upstream address and its proxy port in each listener set (by set
    /// index): the names the free-text scrub replaces, and what with.
    pub fn upstreams(&self) -> Vec<(UpstreamAddr, Vec<u16>)> {
        self.lock()
            .values()
            .map(|b| (b.upstream.clone(), b.ports.clone()))
            .collect()
    }

    /// The host every rewritten address carries.
    pub fn advertised_host(&self) -> &StrBytes {
        &self.advertised_host
    }

    /// The upstream address of a node id, if known.
    pub fn upstream(&self, node_id: i32) -> Option<UpstreamAddr> {
        self.lock().get(&node_id).map(|b| b.upstream.clone())
    }

    /// Every known broker: node id, upstream address, proxy port in the default listener set.
    pub fn snapshot(&self) -> Vec<(i32, UpstreamAddr, u16)> {
        let mut all: Vec<_> = self
            .lock()
            .iter()
            .map(|(id, b)| (*id, b.upstream.clone(), b.ports[0]))
            .collect();
        all.sort_by_key(|(id, _, _)| *id);
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Broker>> {
        self.brokers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a response on a client connection of listener set `set` may tell its client about
    /// `node_id`, which it names at `host:port`. Never changes the table.
    pub fn lookup(&self, set: usize, node_id: i32, host: &str, port: i32) -> Lookup {
        let brokers = self.lock();
        let Some(known) = brokers.get(&node_id) else {
            return Lookup::Unknown;
        };
        let advertised = self.advertise(known.ports[set]);
        if known.upstream.host.eq_ignore_ascii_case(host) && i32::from(known.upstream.port) == port
        {
            Lookup::Known(advertised)
        } else {
            Lookup::Differs(advertised)
        }
    }

    /// Puts what the proxy's own Metadata request returned into the table: new node ids get
    /// their listener bound here, synchronously, so that the port accepts connections before
    /// any client can learn it; a known node id whose host changed moves (its proxy port
    /// stays). Brokers outside the [`TablePolicy`] are refused, logged once per node id and
    /// reason, and counted. Returns the new listeners (listener set, node id, listener), which
    /// the caller must start serving.
    pub fn apply(&self, discovered: &[Discovered]) -> Vec<(usize, i32, std::net::TcpListener)> {
        let mut new = Vec::new();
        for d in discovered {
            match self.apply_one(d) {
                Ok(listeners) => new.extend(
                    listeners
                        .into_iter()
                        .enumerate()
                        .map(|(set, l)| (set, d.node_id, l)),
                ),
                Err(refusal) => self.refuse(d, &refusal),
            }
        }
        new
    }

    /// The node's listeners, one per plan, when it is new; none when it was known.
    fn apply_one(&self, d: &Discovered) -> Result<Vec<std::net::TcpListener>, Refusal> {
        let node_id = d.node_id;
        if node_id < 0 {
            return Err(Refusal::NegativeNodeId);
        }
        let upstream_port = u16::try_from(d.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(Refusal::InvalidPort(d.port))?;
        if !self
            .policy
            .host_patterns
            .iter()
            .any(|p| host_matches(p, &d.host))
        {
            return Err(Refusal::HostNotAllowed(d.host.clone()));
        }
        let upstream = UpstreamAddr {
            host: d.host.clone(),
            port: upstream_port,
        };
        let mut brokers = self.lock();
        if let Some(known) = brokers.get_mut(&node_id) {
            if known.upstream != upstream {
                tracing::info!(node_id, from = %known.upstream, to = %upstream, "broker moved; its proxy ports stay {:?}", known.ports);
                known.upstream = upstream;
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            return Ok(Vec::new());
        }
        if brokers.len() >= self.policy.max_brokers {
            return Err(Refusal::TooManyBrokers(self.policy.max_brokers));
        }
        let mut ports = Vec::with_capacity(self.plans.len());
        for plan in &self.plans {
            let overridden = plan.overrides.contains_key(&node_id);
            if !overridden && node_id as usize >= self.policy.max_brokers {
                return Err(Refusal::NodeIdTooLarge(self.policy.max_brokers));
            }
            let proxy_port = plan.port_for(node_id)?;
            if plan.reserved.contains(&proxy_port) || ports.contains(&proxy_port) {
                return Err(PortError::Collision {
                    node_id,
                    port: proxy_port,
                    taken_by: "is a bootstrap, admin or other identity's port".into(),
                }
                .into());
            }
            if let Some((other, _)) = brokers.iter().find(|(_, b)| b.ports.contains(&proxy_port)) {
                return Err(PortError::Collision {
                    node_id,
                    port: proxy_port,
                    taken_by: format!("node id {other} already listens on"),
                }
                .into());
            }
            ports.push(proxy_port);
        }
        let mut listeners = Vec::with_capacity(ports.len());
        for port in &ports {
            let addr = SocketAddr::new(self.bind, *port);
            // All or nothing: on a failure the listeners bound so far close again.
            listeners.push(bind_listener(addr).map_err(|e| Refusal::Bind {
                addr,
                reason: e.to_string(),
            })?);
        }
        tracing::info!(node_id, upstream = %upstream, ports = ?ports, "new broker; listening");
        brokers.insert(node_id, Broker { upstream, ports });
        self.generation.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!("kafka_proxy_broker_listeners").set(brokers.len() as f64);
        Ok(listeners)
    }

    fn refuse(&self, d: &Discovered, refusal: &Refusal) {
        let reason = refusal.reason();
        metrics::counter!("kafka_proxy_broker_refusals_total", "reason" => reason).increment(1);
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.len() < MAX_REMEMBERED_REFUSALS && refused.insert((d.node_id, reason)) {
            tracing::error!(
                node_id = d.node_id,
                host = %d.host.escape_debug(),
                port = d.port,
                reason,
                "broker not served: {refusal}"
            );
        }
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

    #[test]
    fn host_matches_exact_hosts_and_subdomains() {
        let yes = [
            ("*.msk.test", "b-1.msk.test"),
            ("*.msk.test", "B-1.MSK.TEST"),
            ("*.msk.test", "a.b-1.msk.test"),
            ("*.msk.test", "b-1.msk.test."),
            (
                "*.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com",
                "b-3.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com",
            ),
            ("localhost", "LocalHost"),
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "[::1]"),
            ("::1", "0:0:0:0:0:0:0:1"),
        ];
        for (pattern, host) in yes {
            assert!(host_matches(pattern, host), "{pattern} should match {host}");
        }
        let no = [
            ("*.msk.test", "msk.test"),
            ("*.msk.test", ".msk.test"),
            ("*.msk.test", "a..msk.test"),
            ("*.msk.test", "b-1.msk.test.evil.example"),
            ("*.msk.test", "b-1xmsk.test"),
            ("*.msk.test", "evilmsk.test"),
            ("*.msk.test", "b/1.msk.test"),
            ("*.msk.test", "b-1.msk.tést"),
            ("*.0.0.1", "127.0.0.1"),
            ("localhost", "localhost.evil.example"),
            ("b-1.msk.test", "b-2.msk.test"),
            ("127.0.0.1", "127.0.0.2"),
            ("localhost", ""),
        ];
        for (pattern, host) in no {
            assert!(
                !host_matches(pattern, host),
                "{pattern} must not match {host}"
            );
        }
    }

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

    /// A registry on 127.0.0.1 whose first derived ports are free.
    fn registry(max_brokers: usize, patterns: &[&str]) -> (Registry, u16) {
        // Each call its own region, so tests running in parallel do not pick the same ports.
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let region = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = (0..100)
            .map(|i| 20000 + (std::process::id() % 100) as u16 * 200 + region * 1000 % 9000 + i * 7)
            .find(|base| {
                (*base..*base + 5).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
            })
            .expect("five free ports in a row");
        let registry = Registry::new(
            vec![PortPlan {
                base,
                overrides: BTreeMap::new(),
                reserved: vec![],
            }],
            TablePolicy {
                max_brokers,
                host_patterns: patterns.iter().map(|p| p.to_string()).collect(),
            },
            "127.0.0.1".parse().unwrap(),
            "proxy.local".into(),
        );
        (registry, base)
    }

    fn d(node_id: i32, host: &str, port: i32) -> Discovered {
        Discovered {
            node_id,
            host: host.into(),
            port,
        }
    }

    #[tokio::test]
    async fn discovery_binds_once_and_keeps_the_port_when_a_broker_moves() {
        let (registry, base) = registry(8, &["*.msk.test"]);
        assert_eq!(registry.lookup(0, 1, "b-1.msk.test", 9094), Lookup::Unknown);
        let new = registry.apply(&[d(1, "b-1.msk.test", 9094)]);
        assert_eq!(new.len(), 1);
        assert_eq!((new[0].0, new[0].1), (0, 1));
        assert_eq!(new[0].2.local_addr().unwrap().port(), base + 1);
        let advertised = Advertised {
            host: StrBytes::from_static_str("proxy.local"),
            port: i32::from(base) + 1,
        };
        assert_eq!(
            registry.lookup(0, 1, "B-1.msk.test", 9094),
            Lookup::Known(advertised.clone())
        );
        // A response naming another address for node 1 changes nothing in the table.
        assert_eq!(
            registry.lookup(0, 1, "evil.example", 9094),
            Lookup::Differs(advertised)
        );
        assert_eq!(registry.upstream(1).unwrap().host, "b-1.msk.test");
        // Only the proxy's own Metadata moves a node; the port stays.
        assert!(registry.apply(&[d(1, "b-9.msk.test", 9094)]).is_empty());
        assert_eq!(registry.upstream(1).unwrap().host, "b-9.msk.test");
        assert_eq!(registry.snapshot()[0].2, base + 1);
    }

    #[tokio::test]
    async fn hostile_answers_open_no_listener_and_move_no_broker() {
        let (registry, _) = registry(4, &["*.msk.test"]);
        assert_eq!(registry.apply(&[d(1, "b-1.msk.test", 9094)]).len(), 1);
        let hostile = [
            d(-1, "b-1.msk.test", 9094),    // negative node id
            d(-9000, "b-1.msk.test", 9094), // negative, would map below the base
            d(4, "b-4.msk.test", 9094),     // not below --max-brokers
            d(60000, "b-5.msk.test", 9094),
            d(2, "attacker.example", 443), // host outside the pattern
            d(2, "b-2.msk.test", 0),       // invalid port
            d(2, "b-2.msk.test", 70000),
            d(1, "attacker.example", 443), // moving node 1 outside the pattern
        ];
        assert!(registry.apply(&hostile).is_empty());
        assert_eq!(registry.snapshot().len(), 1);
        assert_eq!(registry.upstream(1).unwrap().host, "b-1.msk.test");
        // With --max-brokers 2, ids 0 and 1 get listeners and id 2 does not.
        let (small, _) = self::registry(2, &["*.msk.test"]);
        let three: Vec<_> = (0..3).map(|i| d(i, "b.msk.test", 9094)).collect();
        assert_eq!(small.apply(&three).len(), 2);
        assert_eq!(small.lookup(0, 2, "b.msk.test", 9094), Lookup::Unknown);
    }

    #[tokio::test]
    async fn a_port_in_use_is_refused_not_a_leak() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let registry = Registry::new(
            vec![PortPlan {
                base: port - 5,
                overrides: BTreeMap::new(),
                reserved: vec![],
            }],
            TablePolicy {
                max_brokers: 16,
                host_patterns: vec!["*.msk.test".into()],
            },
            "127.0.0.1".parse().unwrap(),
            "proxy.local".into(),
        );
        assert!(registry.apply(&[d(5, "b-5.msk.test", 9094)]).is_empty());
        assert!(registry.snapshot().is_empty());
        assert_eq!(registry.lookup(0, 5, "b-5.msk.test", 9094), Lookup::Unknown);
    }
}
