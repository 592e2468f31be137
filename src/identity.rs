//! Who a client acts as at the cluster.
//!
//! One process serves several Kafka principals: the default identity (configured by the
//! flags) and the `[[identity]]` tables of the configuration file. Each has its own upstream
//! certificate, policy and metrics; an identity either owns a set of listeners (its own
//! bootstrap port and broker ports: whoever reaches those ports acts as it — the network, e.g.
//! a tailnet ACL or a Nomad port per service, decides who that is), or is chosen by the
//! verified client certificate on the default listeners. The broker table is shared; upstream
//! connections are not.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use crate::admin::ApiMetrics;
use crate::brokers::PortPlan;
use crate::config::{CertMatch, Settings, TailnetMatch};
use crate::policy::Policy;
use crate::sasl::UpstreamAuth;
use crate::tailnet::Peer;
use crate::tls::{TlsLoadError, TlsState};

/// Index of the default identity and of the default listener set.
pub const DEFAULT: usize = 0;

/// One identity at run time.
#[derive(Debug)]
pub struct Identity {
    /// Name in logs, metrics and the audit log.
    pub name: String,
    /// Its upstream TLS (and, for the default identity, the listeners' TLS).
    pub tls: Arc<TlsState>,
    /// How it authenticates on each upstream connection (after TLS).
    pub auth: UpstreamAuth,
    /// What its clients may do.
    pub policy: Policy,
    /// Which verified client certificates on the default listeners act as it.
    pub client_match: CertMatch,
    /// Which tailnet peers on the default listeners act as it by rule (login, tag).
    pub tailnet_match: TailnetMatch,
    /// Its per-API metrics, labelled with its name.
    pub api_metrics: ApiMetrics,
}

/// A bootstrap port and the broker ports derived from it, and whom their clients act as.
#[derive(Debug, Clone)]
pub struct ListenerSet {
    /// The bootstrap port.
    pub bootstrap_port: u16,
    /// Node id → port.
    pub plan: PortPlan,
    /// The identity its clients act as (for the default set: unless a certificate rule picks
    /// another).
    pub identity: usize,
}

/// Why a client was refused an identity.
#[derive(Debug, thiserror::Error)]
pub enum Unmatched {
    /// Certificate rules are configured and the client presented no certificate.
    #[error("no client certificate, and identities are chosen by certificate on these ports")]
    NoCertificate,
    /// The client's certificate matched no identity.
    #[error("client certificate (subject '{subject}', names {names:?}) matches no identity")]
    NoMatch {
        /// The certificate's subject.
        subject: String,
        /// Its DNS/IP alternative names.
        names: Vec<String>,
    },
    /// tailscaled could not say who the tailnet peer is.
    #[error("tailnet peer unknown: {0}")]
    Whois(#[from] crate::tailnet::WhoisError),
    /// The tailnet policy grants the peer several identities.
    #[error("tailnet peer {peer} is granted several identities ({granted:?}) by {capability}: grant one")]
    TailnetAmbiguous {
        /// `login on node`.
        peer: String,
        /// The capability read.
        capability: String,
        /// The identity names granted.
        granted: Vec<String>,
    },
    /// The tailnet policy grants the peer an identity this proxy does not have (or one with
    /// ports of its own, which no grant gives).
    #[error("tailnet peer {peer} is granted identity '{name}' by {capability}, which is not configured here or has ports of its own")]
    TailnetUnknown {
        /// `login on node`.
        peer: String,
        /// The capability read.
        capability: String,
        /// The name granted.
        name: String,
    },
    /// No grant and no rule names the tailnet peer.
    #[error("tailnet peer {peer} (tags {tags:?}) is granted no identity ({capability}) and matches no tailnet-login/tailnet-tag rule")]
    TailnetNoMatch {
        /// `login on node`.
        peer: String,
        /// Its tags.
        tags: Vec<String>,
        /// The capability read.
        capability: String,
    },
}

/// Every identity and listener set; index [`DEFAULT`] is the flags' in both lists.
#[derive(Debug)]
pub struct Identities {
    /// The identities.
    pub all: Vec<Identity>,
    /// The listener sets.
    pub sets: Vec<ListenerSet>,
    /// Whether any identity is chosen by certificate on the default listeners.
    by_certificate: bool,
}

impl Identities {
    /// The default identity with `default_tls`, and one per `[[identity]]` table, whose TLS
    /// material is loaded here (any error is fatal at start).
    pub fn load(settings: &Settings, default_tls: Arc<TlsState>) -> Result<Self, TlsLoadError> {
        let mut all = vec![Identity {
            name: "default".into(),
            tls: default_tls,
            auth: settings.upstream_auth.clone(),
            policy: settings.policy,
            client_match: CertMatch::default(),
            tailnet_match: TailnetMatch::default(),
            api_metrics: ApiMetrics::new("default"),
        }];
        let mut sets = vec![ListenerSet {
            bootstrap_port: settings.bootstrap_port,
            plan: settings.ports.clone(),
            identity: DEFAULT,
        }];
        for extra in &settings.identities {
            let tls = TlsState::load(Some(extra.upstream_tls.clone()), None)?.named(&extra.name);
            let index = all.len();
            all.push(Identity {
                name: extra.name.clone(),
                tls: Arc::new(tls),
                auth: extra.auth.clone(),
                policy: extra.policy,
                client_match: extra.client_match.clone(),
                tailnet_match: extra.tailnet_match.clone(),
                api_metrics: ApiMetrics::new(&extra.name),
            });
            if let Some((bootstrap_port, plan)) = &extra.listeners {
                sets.push(ListenerSet {
                    bootstrap_port: *bootstrap_port,
                    plan: plan.clone(),
                    identity: index,
                });
            }
        }
        let by_certificate = all.iter().any(|i| !i.client_match.is_empty());
        Ok(Self {
            all,
            sets,
            by_certificate,
        })
    }

    /// Whether the clients of listener set `set` act as the identity their certificate
    /// matches (rather than the set's owner): the default set, when any identity has rules.
    pub fn chosen_by_certificate(&self, set: usize) -> bool {
        set == DEFAULT && self.by_certificate
    }

    /// The identity a client of listener set `set` acts as, given the certificate it presented
    /// (verified by the listener's TLS).
    pub fn choose(
        &self,
        set: usize,
        client_certificate: Option<&CertificateDer<'_>>,
    ) -> Result<usize, Unmatched> {
        let owner = self.sets[set].identity;
        if set != DEFAULT || !self.by_certificate {
            return Ok(owner);
        }
        let cert = client_certificate.ok_or(Unmatched::NoCertificate)?;
        let info = crate::tls::certificate_info(cert).ok_or(Unmatched::NoMatch {
            subject: "(unreadable)".into(),
            names: Vec::new(),
        })?;
        let common_name = crate::tls::common_name(cert);
        self.all
            .iter()
            .position(|i| i.client_match.matches(common_name.as_deref(), &info.names))
            .ok_or(Unmatched::NoMatch {
                subject: info.subject,
                names: info.names,
            })
    }

    /// The identity a tailnet peer acts as: the one the capability grants it (by name; one
    /// only), else the first identity whose tailnet rules match it, else the default identity
    /// when `unmatched_default`, else none.
    pub fn choose_on_tailnet(
        &self,
        peer: &Peer,
        capability: &str,
        unmatched_default: bool,
    ) -> Result<usize, Unmatched> {
        let mut granted = peer.granted.iter();
        match (granted.next(), granted.next()) {
            (Some(name), None) => {
                // Only identities chosen on the default listeners: one with ports of its own
                // is for whoever reaches those ports, not for a grant.
                let index = self.all.iter().position(|i| i.name == *name);
                return match index {
                    Some(index) if !self.owns_ports(index) => Ok(index),
                    _ => Err(Unmatched::TailnetUnknown {
                        peer: peer.describe(),
                        capability: capability.to_owned(),
                        name: name.clone(),
                    }),
                };
            }
            (Some(_), Some(_)) => {
                return Err(Unmatched::TailnetAmbiguous {
                    peer: peer.describe(),
                    capability: capability.to_owned(),
                    granted: peer.granted.iter().cloned().collect(),
                })
            }
            _ => {}
        }
        if let Some(index) = self.all.iter().enumerate().position(|(index, i)| {
            !self.owns_ports(index) && i.tailnet_match.matches(&peer.login, &peer.tags)
        }) {
            return Ok(index);
        }
        if unmatched_default {
            return Ok(DEFAULT);
        }
        Err(Unmatched::TailnetNoMatch {
            peer: peer.describe(),
            tags: peer.tags.clone(),
            capability: capability.to_owned(),
        })
    }

    /// Whether identity `index` (not the default) has listeners of its own.
    fn owns_ports(&self, index: usize) -> bool {
        index != DEFAULT && self.sets.iter().any(|s| s.identity == index)
    }

    /// Reloads every identity's certificates and keys, logging each outcome.
    pub fn reload_all(&self, why: &str) {
        for identity in &self.all {
            identity.tls.reload_and_log(why);
        }
    }
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
