//! Listeners, accept loops, broker discovery and shutdown.
//!
//! [`run`] takes the bootstrap listener and a shutdown future, so tests drive the whole proxy
//! in-process on ports they choose. Broker listeners open as the broker table learns node ids.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::admin::Health;
use crate::brokers::{Discovered, Registry, TablePolicy, UpstreamAddr};
use crate::budget::Budget;
use crate::config::Settings;
use crate::connection::{self, ConnectionError};
use crate::identity::{self, Identities};
use crate::proxy_protocol::{self, Carried};
use crate::resolve::Resolver;
use crate::sasl::Session;
use crate::shared::{Discovery, Shared, MIN_DISCOVERY_GAP};
use crate::tls::{TlsFailure, TlsState};
use crate::upstream::{self, FailureLog, Stream, UpstreamError};

/// Which listener a client came in on: its listener set (and so, usually, its identity) and
/// which broker it must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Index into [`Identities::sets`].
    pub set: usize,
    /// The broker behind the listener.
    pub kind: TargetKind,
}

/// Bootstrap or one broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// The bootstrap listener: any reachable upstream broker will do.
    Bootstrap,
    /// The listener of one broker.
    Broker(i32),
}

impl Target {
    /// The listener set's name for logs: its identity's.
    fn set_name(&self, shared: &Shared) -> String {
        shared.identities.all[shared.identities.sets[self.set].identity]
            .name
            .clone()
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be set up.
    #[error("listener: {0}")]
    Listen(std::io::Error),
    /// An identity's certificates or key could not be loaded.
    #[error("identity: {0}")]
    Identity(#[from] crate::tls::TlsLoadError),
}

/// Runs the proxy until `shutdown` completes, then drains: stops accepting, lets in-flight
/// requests finish within the drain timeout, and returns.
pub async fn run(
    settings: Settings,
    tls: Arc<TlsState>,
    health: Arc<Health>,
    bootstrap: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let identities = Identities::load(&settings, tls)?;
    // The other listener sets' bootstrap ports; the default one was bound by the caller.
    let mut bootstraps = vec![bootstrap];
    for set in &identities.sets[1..] {
        let addr = SocketAddr::new(settings.bind_address, set.bootstrap_port);
        let listener = crate::brokers::bind_listener(addr)
            .and_then(TcpListener::from_std)
            .map_err(StartError::Listen)?;
        bootstraps.push(listener);
    }
    let registry = Registry::new(
        identities.sets.iter().map(|s| s.plan.clone()).collect(),
        TablePolicy {
            max_brokers: settings.max_brokers,
            host_patterns: settings.upstream_host_patterns.clone(),
        },
        settings.bind_address,
        settings.advertised_host.clone(),
    );
    let drain_timeout = settings.drain_timeout;
    let budget = Budget::new(settings.max_buffered_bytes);
    let tailnet = settings
        .tailnet
        .as_ref()
        .map(|t| crate::tailnet::Whois::new(t.whois.clone(), budget.clone()));
    let resolver = Resolver::new(settings.dns_cache_ttl);
    let shared = Arc::new(Shared {
        settings,
        registry,
        identities,
        health,
        discovery: Discovery::new(),
        bytes_from_clients: metrics::counter!("kafka_proxy_bytes_total", "direction" => "from_clients"),
        bytes_from_brokers: metrics::counter!("kafka_proxy_bytes_total", "direction" => "from_brokers"),
        budget,
        open_connections: AtomicUsize::new(0),
        failures: FailureLog::new(Duration::from_secs(30)),
        resolver,
        next_bootstrap: AtomicUsize::new(0),
        next_connection_id: AtomicU64::new(0),
        shutdown: stop_rx,
        alive: alive_tx,
        audit_denials: crate::logs::LineLimit::new(
            Duration::from_secs(1),
            crate::connection::DENIALS_PER_SECOND,
        ),
        scrubbers: std::sync::Mutex::new(None),
        controllers: Default::default(),
        topics: Default::default(),
        tailnet,
    });

    for (set, bootstrap) in bootstraps.into_iter().enumerate() {
        let identity = &shared.identities.all[shared.identities.sets[set].identity];
        tracing::info!(
            address = %bootstrap.local_addr().map_err(StartError::Listen)?,
            identity = %identity.name,
            policy = ?identity.policy,
            upstream = ?shared.settings.upstream.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "bootstrap listener ready"
        );
        let target = Target {
            set,
            kind: TargetKind::Bootstrap,
        };
        tokio::spawn(accept_loop(shared.clone(), bootstrap, target));
    }
    if !shared.settings.proxy_protocol_from.is_empty() {
        tracing::info!(
            from = ?shared.settings.proxy_protocol_from.blocks(),
            "connections from these sources must start with a PROXY protocol header (v1 or v2); its client address is the one logged and audited"
        );
    }
    // Identities without listeners of their own: the certificate or the tailnet chooses them.
    for identity in &shared.identities.all {
        if !identity.client_match.is_empty() {
            tracing::info!(
                identity = %identity.name,
                policy = ?identity.policy,
                subject_cn = ?identity.client_match.subject_cn,
                san = ?identity.client_match.san,
                "identity chosen by client certificate on the default listeners"
            );
        }
    }
    if let Some(tailnet) = &shared.settings.tailnet {
        tracing::info!(
            socket = %tailnet.whois.socket.display(),
            capability = %tailnet.whois.capability,
            whois_ttl = ?tailnet.whois.ttl,
            unmatched = if tailnet.unmatched_default { "default identity" } else { "refused" },
            "tailnet peers on the default listeners act as the identity Tailscale's whois names: the capability's grant, else the first tailnet-login/tailnet-tag rule"
        );
        for identity in &shared.identities.all {
            tracing::info!(
                identity = %identity.name,
                policy = ?identity.policy,
                granted_as = %format_args!("{{\"identity\": \"{}\"}}", identity.name),
                logins = ?identity.tailnet_match.logins,
                tags = ?identity.tailnet_match.tags,
                "identity chosen on the tailnet"
            );
        }
    }
    // The default identity's material is watched and reloaded by the caller (main).
    for identity in &shared.identities.all[1..] {
        identity.tls.record_expiry();
        tokio::spawn(identity.tls.clone().watch(crate::tls::CERT_WATCH_PERIOD));
    }
    if shared.identities.all.len() > 1 {
        if let Ok(mut hangup) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            let reload = shared.clone();
            let mut stop = shared.shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.wait_for(|stop| *stop) => return,
                        signal = hangup.recv() => if signal.is_none() { return },
                    }
                    for identity in &reload.identities.all[1..] {
                        identity.tls.reload_and_log("SIGHUP");
                    }
                }
            });
        }
    }
    tokio::spawn(discovery_loop(shared.clone()));

    shutdown.await;
    tracing::info!(drain_timeout = ?drain_timeout, "shutting down: no new connections, draining");
    shared.health.start_draining();
    let _ = stop_tx.send(true);
    drop(shared);
    // Each connection drops its sender when done; recv returns None once all are gone.
    if tokio::time::timeout(drain_timeout + Duration::from_secs(1), alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout passed with connections still open");
    }
    Ok(())
}

/// Starts accepting on a freshly bound broker listener of listener set `set`.
pub(crate) fn spawn_broker_listener(
    shared: Arc<Shared>,
    set: usize,
    node_id: i32,
    listener: std::net::TcpListener,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let target = Target {
        set,
        kind: TargetKind::Broker(node_id),
    };
    tokio::spawn(accept_loop(shared, listener, target));
    Ok(())
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, target: Target) {
    let name = match target.kind {
        TargetKind::Bootstrap => "bootstrap".to_owned(),
        TargetKind::Broker(id) => format!("broker-{id}"),
    };
    let owner = shared.identities.all[shared.identities.sets[target.set].identity]
        .name
        .clone();
    let open = metrics::gauge!("kafka_proxy_client_connections_open", "listener" => name.clone(), "identity" => owner.clone());
    let total = metrics::counter!("kafka_proxy_client_connections_total", "listener" => name.clone(), "identity" => owner.clone());
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::error!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        total.increment(1);
        let max = shared.settings.max_connections;
        if shared.open_connections.fetch_add(1, Ordering::AcqRel) >= max {
            shared.open_connections.fetch_sub(1, Ordering::AcqRel);
            shared.limit_reached(
                "connections",
                "--max-connections",
                format_args!("{max} client connections open: closing a new one at once"),
            );
            drop(socket);
            continue;
        }
        let accepted = std::time::Instant::now();
        let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
        // On listeners whose identity the certificate chooses, the span names it once chosen.
        // Behind a trusted balancer the socket's peer is the balancer (`via`); `peer`, the
        // client, is known once the PROXY header is read.
        // On a tailnet, `user` and `node` name the person and the node once whois answers.
        let chosen_later = shared.identities.chosen_by_certificate(target.set)
            || (target.set == identity::DEFAULT && shared.tailnet.is_some());
        let proxied = shared.settings.proxy_protocol_from.contains(peer.ip());
        let empty = tracing::field::Empty;
        let span = if proxied {
            tracing::info_span!("conn", id, via = %peer, listener = %name, identity = empty, peer = empty, user = empty, node = empty)
        } else {
            tracing::info_span!("conn", id, %peer, listener = %name, identity = empty, user = empty, node = empty)
        };
        if !chosen_later {
            span.record("identity", tracing::field::display(&owner));
        }
        let shared = shared.clone();
        let open = open.clone();
        tokio::spawn(
            async move {
                open.increment(1.0);
                let alive = shared.alive.clone();
                serve(&shared, socket, peer, proxied, target, accepted).await;
                open.decrement(1.0);
                shared.open_connections.fetch_sub(1, Ordering::AcqRel);
                drop(alive);
            }
            .instrument(span),
        );
    }
}

async fn serve(
    shared: &Arc<Shared>,
    mut socket: TcpStream,
    peer: SocketAddr,
    proxied: bool,
    target: Target,
    accepted: std::time::Instant,
) {
    let _ = socket.set_nodelay(true);
    let local = socket.local_addr().ok();
    // From a trusted balancer, the PROXY header comes first (before a TLS ClientHello) and
    // names the client; its time counts against the time for the first request.
    let peer = if proxied {
        match client_behind_balancer(shared, &mut socket, peer, accepted).await {
            Some(client) => client,
            None => return,
        }
    } else {
        peer
    };
    let tls = &shared.identities.all[identity::DEFAULT].tls;
    // The default listeners refuse certificates that match no identity in the handshake.
    let listener_tls = if target.set == identity::DEFAULT {
        tls.default_listener()
    } else {
        tls.listener()
    };
    let client = match listener_tls {
        None => Stream::Plain(socket),
        Some(config) => {
            // The handshake counts against the time for the first request.
            let handshake = tokio_rustls::TlsAcceptor::from(config).accept(socket);
            let deadline = accepted + shared.settings.first_frame_timeout;
            match tokio::time::timeout_at(deadline.into(), handshake).await {
                Ok(Ok(tls)) => Stream::Server(Box::new(tls)),
                Ok(Err(e)) => {
                    // A certificate matching no identity was logged (rate-limited) by the
                    // verifier that refused it.
                    let unmatched = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                        .is_some_and(|r| {
                            *r == rustls::Error::InvalidCertificate(
                                rustls::CertificateError::ApplicationVerificationFailure,
                            )
                        });
                    if unmatched {
                        tracing::debug!(error = %e, "client TLS handshake failed");
                    } else {
                        tracing::info!(error = %e, "client TLS handshake failed");
                    }
                    return;
                }
                Err(_) => {
                    tracing::info!("client TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let certificate = match &client {
        Stream::Server(tls) => tls.get_ref().1.peer_certificates().and_then(|c| c.first()),
        _ => None,
    };
    // A peer on a tailnet address: Tailscale says who it is (within the first request's time).
    let on_tailnet = match &shared.tailnet {
        Some(whois)
            if target.set == identity::DEFAULT && crate::tailnet::decides(peer, local, proxied) =>
        {
            let deadline = accepted + shared.settings.first_frame_timeout;
            match whois.lookup(peer.ip(), deadline).await {
                Ok(found) => {
                    let span = tracing::Span::current();
                    span.record("user", tracing::field::display(&found.login));
                    span.record("node", tracing::field::display(&found.node));
                    Some(found)
                }
                Err(e) => {
                    refuse_tailnet(shared, &peer.ip().to_string(), e.outcome(), &e.into());
                    return;
                }
            }
        }
        _ => None,
    };
    let choice = match (&on_tailnet, &shared.settings.tailnet) {
        (Some(found), Some(tailnet)) => shared.identities.choose_on_tailnet(
            found,
            &tailnet.whois.capability,
            tailnet.unmatched_default,
        ),
        _ => shared.identities.choose(target.set, certificate),
    };
    let chosen = match choice {
        Ok(chosen) => {
            let name = tracing::field::display(&shared.identities.all[chosen].name);
            tracing::Span::current().record("identity", name);
            chosen
        }
        Err(e) => {
            match &on_tailnet {
                Some(found) => refuse_tailnet(shared, &found.describe(), "unmatched", &e),
                None => {
                    metrics::counter!("kafka_proxy_identity_refusals_total").increment(1);
                    tracing::warn!(error = %e, "client refused");
                }
            }
            return;
        }
    };
    // Who the client is, for the audit log: the tailnet person and node, its certificate's
    // subject, else the listener.
    let principal = match &on_tailnet {
        Some(found) => format!("tailnet {}", found.describe()),
        None => certificate
            .and_then(crate::tls::certificate_info)
            .map(|c| c.subject)
            .unwrap_or_else(|| format!("listener {}", target.set_name(shared))),
    };
    let client_info = connection::Client {
        identity: chosen,
        set: target.set,
        peer,
        principal,
    };
    tracing::debug!(%peer, "accepted");
    let connect = connect_upstream(shared, target, chosen);
    match connection::relay(
        shared.clone(),
        client,
        client_info,
        accepted,
        connect,
        shared.shutdown.clone(),
    )
    .await
    {
        Ok(()) => tracing::debug!("closed"),
        Err(ConnectionError::ClientIo(e)) => tracing::debug!(error = %e, "client went away"),
        Err(ConnectionError::NoUpstream) => {} // logged by connect_upstream
        Err(e @ ConnectionError::ClientTimeout { .. }) => tracing::debug!(error = %e, "closed"),
        Err(ConnectionError::BrokerIo(e)) if TlsFailure::classify(&e) != TlsFailure::Other => {
            // With TLS 1.3 a broker that rejects the proxy's certificate says so after the
            // handshake, on the first read.
            let failure = TlsFailure::classify(&e);
            crate::admin::upstream_failure(failure.as_str());
            if let Some(suppressed) = shared.failures.should_log("upstream", failure.as_str()) {
                tracing::error!(reason = failure.as_str(), suppressed, error = %e, "{}", failure.advice());
            }
        }
        Err(e) => tracing::warn!(error = %e, "connection closed"),
    }
}

/// Logs (at most once a period per peer and reason, with a count) and counts a tailnet peer
/// refused: whois failed, or nothing names it.
fn refuse_tailnet(shared: &Shared, who: &str, reason: &'static str, error: &identity::Unmatched) {
    metrics::counter!("kafka_proxy_identity_refusals_total").increment(1);
    if let Some(suppressed) = shared.failures.should_log(who, reason) {
        tracing::warn!(reason, suppressed, error = %error, "tailnet client refused");
    }
}

/// Reads the PROXY protocol header of a connection from a trusted balancer (`balancer`) and
/// returns the client's address (the balancer's own for LOCAL/UNKNOWN headers), recorded as
/// the span's `peer`; `None` when the connection must close (logged, rate-limited per
/// outcome; counted in `kafka_proxy_proxy_protocol_headers_total{outcome}`).
async fn client_behind_balancer(
    shared: &Shared,
    socket: &mut TcpStream,
    balancer: SocketAddr,
    accepted: std::time::Instant,
) -> Option<SocketAddr> {
    let deadline = accepted + shared.settings.first_frame_timeout;
    let read = proxy_protocol::read_header(socket);
    let (outcome, result) = match tokio::time::timeout_at(deadline.into(), read).await {
        Ok(Ok(Carried::Client(client))) => ("accepted", Ok(client)),
        Ok(Ok(Carried::Local)) => ("local", Ok(balancer)),
        Ok(Err(e)) => (e.outcome(), Err(e.to_string())),
        Err(_) => (
            "timeout",
            Err(format!(
                "no complete PROXY protocol header within --first-frame-timeout ({:?})",
                shared.settings.first_frame_timeout
            )),
        ),
    };
    metrics::counter!("kafka_proxy_proxy_protocol_headers_total", "outcome" => outcome)
        .increment(1);
    match result {
        Ok(client) => {
            tracing::Span::current().record("peer", tracing::field::display(client));
            Some(client)
        }
        Err(error) => {
            if let Some(suppressed) = shared.failures.should_log("proxy-protocol", outcome) {
                tracing::warn!(
                    outcome,
                    suppressed,
                    %error,
                    "closed: a connection from a trusted PROXY protocol source (--proxy-protocol-from) did not start with a valid header"
                );
            }
            None
        }
    }
}

/// Connects to the broker a listener stands for; for the bootstrap listener, to any upstream
/// bootstrap broker, starting with the next in turn and moving on when one fails.
async fn connect_upstream(
    shared: &Arc<Shared>,
    target: Target,
    identity: usize,
) -> Option<(Stream, Option<Session>)> {
    let tls = shared.identities.all[identity].tls.upstream();
    let auth = &shared.identities.all[identity].auth;
    let candidates: Vec<UpstreamAddr> = match target.kind {
        TargetKind::Broker(node_id) => match shared.registry.upstream(node_id) {
            Some(addr) => vec![addr],
            None => {
                tracing::warn!(node_id, "no upstream address known for this broker");
                return None;
            }
        },
        TargetKind::Bootstrap => {
            let all = &shared.settings.upstream;
            let first = shared.next_bootstrap.fetch_add(1, Ordering::Relaxed) % all.len();
            all.iter()
                .cycle()
                .skip(first)
                .take(all.len())
                .cloned()
                .collect()
        }
    };
    for addr in &candidates {
        match upstream::open(
            addr,
            tls.clone(),
            auth,
            shared.settings.connect_timeout,
            &shared.resolver,
        )
        .await
        {
            Ok(opened) => {
                metrics::counter!("kafka_proxy_upstream_connections_total").increment(1);
                shared.health.upstream_ok();
                return Some(opened);
            }
            Err(e @ UpstreamError::Sasl { .. }) => {
                // Another bootstrap broker would refuse the same credentials: this client
                // closes, with the broker's reason in the log.
                report_upstream_failure(shared, addr, &e);
                return None;
            }
            Err(e) => report_upstream_failure(shared, addr, &e),
        }
    }
    None
}

fn report_upstream_failure(shared: &Shared, addr: &UpstreamAddr, error: &UpstreamError) {
    crate::admin::upstream_failure(error.reason());
    if let Some(suppressed) = shared
        .failures
        .should_log(&addr.to_string(), error.reason())
    {
        tracing::error!(broker = %addr, reason = error.reason(), suppressed, "{error}");
    }
}

/// Asks the cluster for its brokers now and then, so that every broker has a listener before
/// a client needs it: after a proxy restart, clients that remember broker ports reconnect
/// straight to them. Also answers [`Discovery::confirm`] requests.
async fn discovery_loop(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let interval = shared.settings.discovery_interval;
    loop {
        shared
            .discovery
            .rounds
            .send_modify(|(started, _)| *started += 1);
        discover_once(&shared).await;
        shared.discovery.rounds.send_modify(|(_, done)| *done += 1);
        let periodic = async {
            if interval.is_zero() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(interval.saturating_sub(MIN_DISCOVERY_GAP)).await
            }
        };
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(MIN_DISCOVERY_GAP) => {}
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = periodic => {}
            _ = shared.discovery.wake.notified() => {}
        }
    }
}

/// One discovery round: the first bootstrap broker that answers teaches the broker table.
pub(crate) async fn discover_once(shared: &Arc<Shared>) -> bool {
    for addr in &shared.settings.upstream {
        let default = &shared.identities.all[identity::DEFAULT];
        let connected = upstream::open(
            addr,
            default.tls.upstream(),
            &default.auth,
            shared.settings.connect_timeout,
            &shared.resolver,
        )
        .await;
        let mut stream = match connected {
            Ok((s, _)) => s,
            Err(e) => {
                report_upstream_failure(shared, addr, &e);
                continue;
            }
        };
        match upstream::discover(&mut stream, shared.settings.connect_timeout).await {
            Ok(brokers) => {
                let discovered: Vec<Discovered> = brokers
                    .into_iter()
                    .map(|b| Discovered {
                        node_id: b.node_id,
                        host: b.host,
                        port: b.port,
                    })
                    .collect();
                for (set, node_id, listener) in shared.registry.apply(&discovered) {
                    if let Err(e) = spawn_broker_listener(shared.clone(), set, node_id, listener) {
                        tracing::error!(node_id, error = %e, "cannot serve the broker's listener");
                    }
                }
                shared.health.upstream_ok();
                return true;
            }
            Err(e) => tracing::warn!(broker = %addr, error = %e, "broker discovery failed"),
        }
    }
    shared.health.upstream_failed();
    false
}
