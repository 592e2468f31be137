//! kafka-tls-proxy lets Kafka clients without certificates reach a cluster that demands
//! mutual TLS, first of all Amazon MSK.
//!
//! A client connects to the proxy's bootstrap port in plaintext (or TLS the proxy
//! terminates). The proxy opens a mutual-TLS connection to a broker on the client's behalf
//! and relays frames as the original bytes, except responses that carry broker addresses:
//! those are rewritten so that every broker the client learns of is one of the proxy's own
//! ports, one per broker node id.
//!
//! How a frame crosses the proxy, and the module for each step:
//!
//! - [`config`]: flags, environment and TOML file → validated [`config::Settings`].
//! - [`server`]: the bootstrap listener, broker listeners, accept loops, broker discovery,
//!   shutdown and drain. [`server::run`] takes its listener and a shutdown future.
//! - [`proxy_protocol`]: on a connection from a trusted load balancer (`--proxy-protocol-from`),
//!   the PROXY protocol header read before anything else (TLS included): the client address
//!   the connection's logs and audit lines name.
//! - [`shared`]: the state the server builds and every connection reads (settings, broker
//!   table, identities, budget, discovery rounds, limits).
//! - [`identity`]: whom a client acts as at the cluster (its listener set, its verified
//!   certificate or, on a tailnet, who Tailscale says it is picks the identity: upstream
//!   certificate, policy, metrics).
//! - [`tailnet`]: with `--tailnet-identities`, who a peer on a tailnet address is: tailscaled's
//!   LocalAPI `whois` (login, node, tags, the application capability granted to it), asked
//!   once per address for a short time, its answer charged to the budget.
//! - [`connection`]: one client ↔ one broker, under the connection limits: the upstream
//!   connection opens after the first complete request; the read side (`connection/inbound.rs`)
//!   reads frames under the memory rules and time limits; the request pump peeks each header and
//!   plans the request once (`connection/plan.rs`: policy, local answers, versions, acks,
//!   inspection, audit), numbers it with the proxy's own correlation id and forwards bytes; the
//!   response pump pairs each answer with its request, restores the client's id and does what
//!   the request's plan says of its answer (inspect, rewrite, audit).
//! - [`kafka`]: the one bounds-checked reader of network bytes ([`kafka::wire`], which also
//!   says which versions are flexible, from kafka-protocol), framing and header peeks
//!   ([`kafka::frame`]), bounded decoding and encoding ([`kafka::codec`]), the table of
//!   address-carrying APIs and their rewrite ([`kafka::rewrite`]), the ApiVersions negotiation
//!   ([`kafka::versions`]), the request walkers the policy reads ([`kafka::requests`]), and
//!   the scrub of upstream names from the free text of responses ([`kafka::scrub`]).
//! - [`policy`]: what each identity may ask of the cluster (`full`, `read-only`, `no-admin`):
//!   the one table over every API key (`policy/table.rs`: access, denial error kind, audited,
//!   versions), denials answered with each API's own authorization error (`policy/deny.rs`),
//!   and the audit of cluster-changing requests (`policy/audit.rs`: what they change, what the
//!   broker answered).
//! - [`budget`]: the process-wide memory budget for large frames and for the bytes the proxy
//!   builds itself (its own answers, rewritten responses: charged before they are built),
//!   without hoarding or starvation, and the memory of large frames itself (pooled mappings the
//!   budget hands out with the budget).
//! - [`brokers`]: node id ↔ upstream address ↔ proxy port, the port formula, and the policy
//!   for what the cluster's own Metadata may add (client responses only read the table).
//! - [`topics`]: topic id → name from the Metadata responses relayed, bounded, so that audit
//!   lines name a topic by name when a request names it by id.
//! - [`upstream`]: connecting to brokers with mutual TLS (and SASL when the identity uses
//!   it); the proxy's own Metadata request.
//! - [`sasl`]: how an identity authenticates upstream (mutual TLS, SCRAM or AWS_MSK_IAM), the
//!   SASL exchange on a new connection and its renewal inside the relay (KIP-368), and the
//!   answer to a client that tries SASL with the proxy.
//! - [`aws_iam`]: Amazon MSK's IAM authentication: the region of a broker name, AWS
//!   credentials from the SDK's default chain (cached, fetched again before they expire), and
//!   the SigV4-signed payload of an AWS_MSK_IAM exchange.
//! - [`resolve`]: broker names → addresses, one lookup per name per `--dns-cache-ttl`.
//! - [`tls`]: certificates and keys, rustls configurations, reload, failure classification.
//! - [`admin`]: metrics, health and readiness, the admin HTTP listener.
//! - [`logs`]: what keeps the log trustworthy: control characters escaped in every text line,
//!   audit entries bounded, audit ids.
//! - [`check`]: the `check` diagnostic command.
//!
//! Imports go down this list's dependency order and never in a circle: `server` and
//! `connection` both use `shared`, not each other; `config` uses `brokers`, `policy`,
//! `proxy_protocol`, `sasl` (which uses `aws_iam`), `tailnet` and `tls`, none of which uses `config`; inside `kafka`, `wire` imports
//! nothing of ours and every other module only what sits below it.

pub mod admin;
pub mod aws_iam;
pub mod brokers;
pub mod budget;
pub mod check;
pub mod config;
pub mod connection;
pub mod identity;
pub mod kafka;
pub mod logs;
pub mod policy;
pub mod proxy_protocol;
pub mod resolve;
pub mod sasl;
pub mod server;
pub mod shared;
pub mod tailnet;
pub mod tls;
pub mod topics;
pub mod upstream;
