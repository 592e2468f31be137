//! Who a tailnet peer is, as Tailscale knows it.
//!
//! On a tailnet, the proxy's host runs tailscaled, which knows every peer that can reach it:
//! the person logged in on it, the node's name and tags, and the application capabilities the
//! tailnet policy file grants that peer towards this host (`grants` with an `app` field). Its
//! LocalAPI answers `GET /localapi/v0/whois?addr=IP` on a Unix socket with that JSON
//! (`apitype.WhoIsResponse` in tailscale.com/client/tailscale/apitype: `Node`, `UserProfile`,
//! `CapMap`); Tailscale's own pgproxy authorises Postgres clients the same way.
//!
//! This module asks, once per peer address for a short time ([`Whois`]: a bounded cache, one
//! request in flight per address shared by every connection waiting for it, the answer's
//! bytes charged to the memory budget) and keeps only what identity rules read ([`Peer`]).
//! The socket is tailscaled's, so its answers are trusted as much as the tailnet is; they are
//! still network-sized text, so every field is bounded and every log line escapes it.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::sync::OnceCell;

use crate::budget::Budget;

/// Where tailscaled listens for LocalAPI requests on Linux.
pub const DEFAULT_SOCKET: &str = "/var/run/tailscale/tailscaled.sock";

/// The application capability the proxy reads unless configured otherwise: grant it in the
/// tailnet policy file with `{"identity": "<name>"}`.
pub const DEFAULT_CAPABILITY: &str = "kafka-tls-proxy.dev/cap/identity";

/// Largest whois answer read (a node's JSON with its host information is a few KiB).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Peer addresses remembered at once; the oldest is forgotten first.
pub const CACHE_ENTRIES: usize = 4096;

/// Longest login, node name, tag or identity name kept from an answer.
pub const MAX_FIELD_BYTES: usize = 256;

/// Most tags or granted identity names kept from an answer.
pub const MAX_LIST: usize = 16;

/// How the proxy asks tailscaled, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoisSettings {
    /// tailscaled's LocalAPI socket.
    pub socket: PathBuf,
    /// The application capability whose `identity` values name identities.
    pub capability: String,
    /// How long an answer is reused for new connections from the same address.
    pub ttl: Duration,
}

/// What Tailscale says of a peer: as much as identity rules, logs and the audit log need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The login of the person on the node (`UserProfile.LoginName`); for a tagged node,
    /// Tailscale's placeholder (`tagged-devices`).
    pub login: String,
    /// The node's name (`Node.ComputedName`, else the first label of `Node.Name`).
    pub node: String,
    /// The node's ACL tags (`tag:...`); empty for a person's node.
    pub tags: Vec<String>,
    /// The distinct `identity` values of the configured capability granted to the peer.
    pub granted: BTreeSet<String>,
}

impl Peer {
    /// The bytes it holds (charged while it is cached).
    fn held_bytes(&self) -> usize {
        let strings = self.tags.iter().chain(&self.granted);
        std::mem::size_of::<Self>()
            + self.login.len()
            + self.node.len()
            + strings.map(|t| t.len() + 64).sum::<usize>()
    }

    /// Who the peer is, for logs and the audit log: `login on node`.
    pub fn describe(&self) -> String {
        format!("{} on {}", self.login, self.node)
    }
}

/// Whether an address is one Tailscale hands out (100.64.0.0/10, fd7a:115c:a1e0::/48), so that
/// whois can name its peer. Other sources are never asked about.
pub fn is_tailnet(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 100 && (b & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0xfd7a && s[1] == 0x115c && s[2] == 0xa1e0
        }
    }
}

/// Whether a client's identity is Tailscale's to say: it comes from a tailnet address, and
/// either a trusted balancer's PROXY header names that address, or the connection itself came
/// to this host's tailnet address (so not over another network that reuses 100.64.0.0/10, such
/// as a carrier-grade NAT or a VPC, where an address proves nothing) from another node (this
/// host's own processes are not tailnet peers: they are chosen as off the tailnet).
pub fn decides(
    peer: std::net::SocketAddr,
    local: Option<std::net::SocketAddr>,
    proxied: bool,
) -> bool {
    let client = peer.ip().to_canonical();
    if !is_tailnet(client) {
        return false;
    }
    if proxied {
        return true;
    }
    local.is_some_and(|l| {
        let here = l.ip().to_canonical();
        is_tailnet(here) && here != client
    })
}

/// Why whois gave no peer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WhoisError {
    /// The LocalAPI socket could not be reached or the exchange broke.
    #[error("tailscaled's LocalAPI ({socket}) unreachable: {reason}")]
    Unreachable {
        /// The socket asked.
        socket: String,
        /// What failed.
        reason: String,
    },
    /// tailscaled does not know the address (404): not a peer of this node.
    #[error("tailscaled knows no peer with this address")]
    NotAPeer,
    /// tailscaled refused or failed the request.
    #[error("tailscaled answered HTTP {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The first line of its body.
        message: String,
    },
    /// The answer was not whois JSON, or a field was larger than the proxy keeps.
    #[error("unreadable whois answer: {0}")]
    Malformed(String),
    /// The memory budget could not hold the answer now.
    #[error("no memory budget for a whois answer now (--max-buffered-bytes)")]
    NoBudget,
    /// No answer within the connection's time for its first request.
    #[error("no whois answer within --first-frame-timeout")]
    Timeout,
}

impl WhoisError {
    /// The `outcome` label of `kafka_proxy_tailnet_whois_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::NotAPeer => "not_a_peer",
            Self::Status { .. } => "refused",
            Self::Malformed(_) => "malformed",
            Self::NoBudget => "no_budget",
            Self::Timeout => "timeout",
        }
    }
}

/// One cached address: the answer once known, shared by every connection that waits for it.
struct Slot {
    asked: Instant,
    peer: OnceCell<Known>,
}

/// A peer kept in the cache, its bytes charged to the budget until it is forgotten.
struct Known {
    peer: Arc<Peer>,
    _charge: crate::budget::Held,
}

/// The whois client with its cache.
pub struct Whois {
    settings: WhoisSettings,
    budget: Arc<Budget>,
    cache: Mutex<lru::LruCache<IpAddr, Arc<Slot>>>,
}

impl std::fmt::Debug for Whois {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whois")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Whois {
    /// A client for `settings.socket`, charging answers to `budget`.
    pub fn new(settings: WhoisSettings, budget: Arc<Budget>) -> Self {
        let entries = NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Self {
            settings,
            budget,
            cache: Mutex::new(lru::LruCache::new(entries)),
        }
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &WhoisSettings {
        &self.settings
    }

    /// Who the peer at `ip` is: from the cache while its answer is younger than the TTL, else
    /// asked (once for every connection from `ip` waiting at the same time), by `deadline`.
    /// Failures are not cached: the next connection asks again.
    pub async fn lookup(&self, ip: IpAddr, deadline: Instant) -> Result<Arc<Peer>, WhoisError> {
        let ip = ip.to_canonical();
        let slot = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(&ip) {
                Some(slot) if slot.asked.elapsed() < self.settings.ttl => slot.clone(),
                _ => {
                    let slot = Arc::new(Slot {
                        asked: Instant::now(),
                        peer: OnceCell::new(),
                    });
                    cache.put(ip, slot.clone());
                    slot
                }
            }
        };
        if let Some(known) = slot.peer.get() {
            count("cached");
            return Ok(known.peer.clone());
        }
        let ask = slot.peer.get_or_try_init(|| async {
            let known = self.ask(ip).await.and_then(|peer| {
                let charge = self
                    .budget
                    .try_charge(peer.held_bytes())
                    .ok_or(WhoisError::NoBudget)?;
                Ok(Known {
                    peer: Arc::new(peer),
                    _charge: charge,
                })
            });
            count(match &known {
                Ok(_) => "asked",
                Err(e) => e.outcome(),
            });
            known
        });
        match tokio::time::timeout_at(deadline.into(), ask).await {
            Ok(result) => result.map(|known| known.peer.clone()),
            Err(_) => {
                count("timeout");
                Err(WhoisError::Timeout)
            }
        }
    }

    /// One LocalAPI request.
    async fn ask(&self, ip: IpAddr) -> Result<Peer, WhoisError> {
        let unreachable = |reason: String| WhoisError::Unreachable {
            socket: self.settings.socket.display().to_string(),
            reason,
        };
        // The answer's bytes are held until parsed: charged first, at their bound.
        let _charge = self
            .budget
            .try_charge(MAX_ANSWER_BYTES)
            .ok_or(WhoisError::NoBudget)?;
        let stream = tokio::net::UnixStream::connect(&self.settings.socket)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        // The connection's task ends with this lookup, however it ends (a timeout included).
        let _driver = AbortOnDrop(tokio::spawn(connection));
        let request = hyper::Request::get(format!("/localapi/v0/whois?addr={ip}"))
            // The LocalAPI's own host name and the header it requires of HTTP clients.
            .header("host", "local-tailscaled.sock")
            .header("sec-tailscale", "localapi")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()));
        let result = match response {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                    .collect()
                    .await
                    .map_err(|e| {
                        WhoisError::Malformed(format!(
                            "body: {e} (at most {MAX_ANSWER_BYTES} bytes)"
                        ))
                    })
                    .map(|b| b.to_bytes());
                match (status, body) {
                    (200, Ok(body)) => parse(&body, &self.settings.capability),
                    (404, _) => Err(WhoisError::NotAPeer),
                    (_, Ok(body)) => Err(WhoisError::Status {
                        status,
                        message: first_line(&body),
                    }),
                    (_, Err(e)) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        result
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("kafka_proxy_tailnet_whois_total", "outcome" => outcome).increment(1);
}

fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(MAX_FIELD_BYTES).collect()
}

/// The parts of `apitype.WhoIsResponse` the proxy reads; everything else is ignored.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    node: AnswerNode,
    user_profile: AnswerProfile,
    // Only the configured capability's values are read: the others stay raw text.
    #[serde(default)]
    cap_map: Option<std::collections::HashMap<String, Box<serde_json::value::RawValue>>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AnswerNode {
    #[serde(default)]
    name: String,
    #[serde(default)]
    computed_name: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AnswerProfile {
    #[serde(default)]
    login_name: String,
}

/// Reads a whois answer: the login, the node's name and tags, and the identity names the
/// capability `capability` grants (values `{"identity": "<name>"}`; other values are ignored).
pub fn parse(body: &[u8], capability: &str) -> Result<Peer, WhoisError> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| WhoisError::Malformed(e.to_string()))?;
    let field = |what: &str, value: String| {
        if value.len() > MAX_FIELD_BYTES {
            Err(WhoisError::Malformed(format!(
                "{what} longer than {MAX_FIELD_BYTES} bytes"
            )))
        } else {
            Ok(value)
        }
    };
    let login = field("login", answer.user_profile.login_name)?;
    if login.is_empty() {
        return Err(WhoisError::Malformed("no UserProfile.LoginName".into()));
    }
    let node = if answer.node.computed_name.is_empty() {
        answer.node.name.split('.').next().unwrap_or("").to_owned()
    } else {
        answer.node.computed_name
    };
    let node = field("node name", node)?;
    let tags = answer.node.tags.unwrap_or_default();
    if tags.len() > MAX_LIST {
        return Err(WhoisError::Malformed(format!("more than {MAX_LIST} tags")));
    }
    let tags = tags
        .into_iter()
        .map(|t| field("tag", t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut granted = BTreeSet::new();
    let values: Vec<serde_json::Value> =
        match answer.cap_map.and_then(|mut caps| caps.remove(capability)) {
            Some(raw) => serde_json::from_str::<Option<Vec<serde_json::Value>>>(raw.get())
                .map_err(|e| WhoisError::Malformed(format!("{capability}: {e}")))?
                .unwrap_or_default(),
            None => Vec::new(),
        };
    for value in values {
        if let Some(name) = value.get("identity").and_then(|n| n.as_str()) {
            granted.insert(field("granted identity", name.to_owned())?);
            if granted.len() > MAX_LIST {
                return Err(WhoisError::Malformed(format!(
                    "more than {MAX_LIST} granted identities"
                )));
            }
        }
    }
    Ok(Peer {
        login,
        node,
        tags,
        granted,
    })
}

#[cfg(test)]
#[path = "tailnet_tests.rs"]
mod tests;
