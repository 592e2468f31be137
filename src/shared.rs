//! The state every connection shares with the server: settings, the broker table, identities,
//! health, the memory budget, the proxy's own discovery rounds, and the counters and limits the
//! accept loops and the connections both use.
//!
//! It lives apart from [`crate::server`] (which builds it, accepts and shuts down) and
//! [`crate::connection`] (which reads it for every frame), as mini-redis keeps its `db.rs`
//! apart from its server and connection, so that neither imports the other.

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::Counter;
use tokio::sync::{mpsc, watch, Notify};

use crate::admin::Health;
use crate::brokers::Registry;
use crate::budget::Budget;
use crate::config::Settings;
use crate::identity::Identities;
use crate::kafka::scrub::{Needle, Scrubber};
use crate::resolve::Resolver;
use crate::topics::TopicNames;
use crate::upstream::FailureLog;

/// The free-text scrubs of every listener set, and the (broker table, resolver) generations
/// they were built from.
pub(crate) type BuiltScrubbers = ((u64, u64, u64), Arc<[Scrubber]>);

/// Most controller addresses remembered for the free-text scrub.
const MAX_CONTROLLERS: usize = 64;

/// The KRaft controllers' addresses as the cluster reports them (DescribeQuorum,
/// DescribeCluster with controller endpoints): not proxied, but named in no text either.
#[derive(Debug, Default)]
pub struct Controllers {
    known: Mutex<std::collections::HashSet<(String, u16)>>,
    generation: AtomicU64,
}

impl Controllers {
    /// Remembers a controller address (bounded; names longer than a DNS name are ignored).
    pub fn note(&self, host: &str, port: i32) {
        let Ok(port) = u16::try_from(port) else {
            return;
        };
        if host.is_empty() || host.len() > crate::kafka::scrub::MAX_NEEDLE_LEN {
            return;
        }
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let key = (host.to_ascii_lowercase(), port);
        if known.len() < MAX_CONTROLLERS && !known.contains(&key) {
            known.insert(key);
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn all(&self) -> Vec<(String, u16)> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.iter().cloned().collect()
    }
}

/// State every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// Validated settings.
    pub settings: Settings,
    /// Node id ↔ upstream ↔ proxy port.
    pub registry: Registry,
    /// Every identity (its TLS material, policy, metrics) and listener set; the default
    /// identity's TLS also holds the listeners' TLS.
    pub identities: Identities,
    /// Readiness, fed by every upstream connection attempt.
    pub health: Arc<Health>,
    /// The proxy's own Metadata rounds, the only writer of [`Shared::registry`].
    pub discovery: Discovery,
    /// Bytes read from clients.
    pub bytes_from_clients: Counter,
    /// Bytes read from brokers.
    pub bytes_from_brokers: Counter,
    /// Memory for frames larger than [`crate::kafka::frame::SMALL_FRAME_BYTES`], in bytes
    /// (--max-buffered-bytes); the connection pumps hold permits while such frames are in memory.
    pub budget: Arc<Budget>,
    /// Client connections open now, over all listeners (--max-connections).
    pub(crate) open_connections: AtomicUsize,
    pub(crate) failures: FailureLog,
    /// Broker name lookups, shared by every upstream connect (--dns-cache-ttl).
    pub(crate) resolver: Resolver,
    pub(crate) next_bootstrap: AtomicUsize,
    pub(crate) next_connection_id: AtomicU64,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Every connection holds a clone; when all are gone, draining is over.
    pub(crate) alive: mpsc::Sender<()>,
    /// Denial audit lines per identity and second ([`crate::logs::LineLimit`]).
    pub(crate) audit_denials: crate::logs::LineLimit,
    /// The free-text scrubs, one per listener set, with the (broker table, resolver)
    /// generations they were built from: rebuilt only when one of those changes.
    pub(crate) scrubbers: Mutex<Option<BuiltScrubbers>>,
    /// Controller addresses responses named, for the free-text scrub.
    pub controllers: Controllers,
    /// Topic id → name from the Metadata responses relayed, for audit lines.
    pub topics: TopicNames,
    /// With --tailnet-identities: who a tailnet peer is (tailscaled's whois, cached).
    pub tailnet: Option<crate::tailnet::Whois>,
}

impl Shared {
    /// The free-text scrubs (one per listener set, by set index): every upstream name and
    /// address the proxy knows (the broker table's hosts, their cached resolved addresses, the
    /// bootstrap hosts, the controllers responses named) → the address clients use. Rebuilt when the table or the resolver's
    /// answers changed since the last build, else shared.
    pub fn scrubbers(&self) -> Arc<[Scrubber]> {
        let now = (
            self.registry.generation(),
            self.resolver.generation(),
            self.controllers.generation(),
        );
        let mut cached = self.scrubbers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((built, scrubbers)) = cached.as_ref() {
            if *built == now {
                return scrubbers.clone();
            }
        }
        let upstreams = self.registry.upstreams();
        let controllers = self.controllers.all();
        let built: Arc<[Scrubber]> = self
            .identities
            .sets
            .iter()
            .enumerate()
            .map(|(set, listeners)| {
                let mut needles = Vec::new();
                let bootstraps = self
                    .settings
                    .upstream
                    .iter()
                    .map(|b| (b, Some(listeners.bootstrap_port)));
                let brokers = upstreams
                    .iter()
                    .map(|(up, ports)| (up, ports.get(set).copied()));
                // Brokers first: a bootstrap host that is also a broker maps to that broker's
                // own port, not the bootstrap port.
                for (up, proxy_port) in brokers.chain(bootstraps) {
                    let port = proxy_port.map(|p| (up.port, p));
                    needles.push(Needle {
                        host: up.host.clone(),
                        port,
                    });
                    if let Some(addrs) = self.resolver.cached(&up.host, up.port) {
                        needles.extend(addrs.iter().map(|a| Needle {
                            host: a.ip().to_string(),
                            port,
                        }));
                    }
                }
                // Controllers are not proxied: their port becomes 0, as in DescribeQuorum.
                needles.extend(controllers.iter().map(|(host, port)| Needle {
                    host: host.clone(),
                    port: Some((*port, 0)),
                }));
                Scrubber::new(&self.settings.advertised_host, needles)
            })
            .collect();
        *cached = Some((now, built.clone()));
        built
    }

    /// A limit was reached: counted as `kafka_proxy_limit_reached_total{limit}` and logged at
    /// most once per 30 s per limit (with how many were suppressed), naming the flag that
    /// raises it.
    pub fn limit_reached(
        &self,
        limit: &'static str,
        flag: &'static str,
        what: std::fmt::Arguments<'_>,
    ) {
        metrics::counter!("kafka_proxy_limit_reached_total", "limit" => limit).increment(1);
        if let Some(suppressed) = self.failures.should_log("limit", limit) {
            tracing::warn!(limit, suppressed, "{what}; limit set by {flag}");
        }
    }
}

/// Shortest time between two of the proxy's own Metadata rounds, however many clients ask
/// for confirmations: no client can make the proxy flood the cluster.
pub(crate) const MIN_DISCOVERY_GAP: Duration = Duration::from_secs(1);

/// The proxy's own Metadata rounds: periodic (--discovery-interval), and on request when a
/// response on a client connection names a broker the table does not know or at another
/// address. Rounds are rate-limited to one per `MIN_DISCOVERY_GAP`.
#[derive(Debug)]
pub struct Discovery {
    pub(crate) wake: Notify,
    /// (rounds started, rounds completed).
    pub(crate) rounds: watch::Sender<(u64, u64)>,
}

impl Discovery {
    pub(crate) fn new() -> Self {
        Self {
            wake: Notify::new(),
            rounds: watch::Sender::new((0, 0)),
        }
    }

    /// Asks for a round as soon as the rate limit allows, without waiting for it.
    pub fn request(&self) {
        self.wake.notify_one();
    }

    /// Asks for a round and waits, at most `timeout`, until a round that started after this
    /// call has completed. True if one did.
    pub async fn confirm(&self, timeout: Duration) -> bool {
        let mut rounds = self.rounds.subscribe();
        let target = rounds.borrow().0 + 1;
        self.request();
        tokio::time::timeout(timeout, rounds.wait_for(|(_, done)| *done >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_are_remembered_once_bounded_and_change_the_generation() {
        let c = Controllers::default();
        c.note("C-1.msk.test", 9093);
        c.note("c-1.msk.test", 9093);
        assert_eq!(c.all(), vec![("c-1.msk.test".to_owned(), 9093)]);
        assert_eq!(c.generation(), 1);
        c.note("", 9093);
        c.note("c-2", -1);
        c.note(&"x".repeat(300), 9093);
        assert_eq!(c.generation(), 1);
        for i in 0..MAX_CONTROLLERS + 10 {
            c.note(&format!("c{i}"), 9093);
        }
        assert_eq!(c.all().len(), MAX_CONTROLLERS);
    }
}
