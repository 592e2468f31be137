//! Configuration: command-line flags, each with an environment variable, and an optional TOML
//! file whose keys are the long flag names. Precedence: flag, then environment, then file, then
//! default. Everything is validated into [`Settings`] before anything listens, and each error
//! names the setting and what is wrong with it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::aws_iam::{self, CredentialSource, IamAuth};
use crate::brokers::{parse_host_pattern, PortPlan, UpstreamAddr};
use crate::policy::Policy;
use crate::proxy_protocol::Trusted;
use crate::sasl::{self, AuthKind, ScramCredentials, UpstreamAuth};
use crate::tls::{ClientCertFiles, ListenerTlsFiles, Passphrase, Secret, UpstreamTlsFiles};

/// Largest request a client may send, by default: Kafka's own `socket.request.max.bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;
/// Largest response a broker may send, by default. Fetch responses are bounded by the
/// consumer's `fetch.max.bytes` (50 MiB by default); this leaves room for larger settings.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Broker listeners the proxy opens at most, by default: far above any MSK cluster, low enough
/// that a cluster reporting absurd node ids cannot make the proxy open thousands of ports.
pub const DEFAULT_MAX_BROKERS: usize = 256;
/// Default --max-buffered-bytes: half of a 256 MiB task.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 128 * 1024 * 1024;
/// Default --min-client-read-rate: 64 KiB/s, a 50 MiB answer in under 14 minutes.
const DEFAULT_MIN_CLIENT_READ_RATE: u64 = 64 * 1024;

/// Smallest --max-buffered-bytes.
const MIN_BUFFERED_BYTES: usize = 1024 * 1024;
/// Largest --max-buffered-bytes (the budget is counted in u32 permits).
const MAX_BUFFERED_BYTES: usize = u32::MAX as usize;
/// Default --max-connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// `Some` unless zero.
fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}
/// The highest --max-brokers accepted.
pub const MAX_MAX_BROKERS: usize = 4096;

const AFTER_HELP: &str = "\
Examples:
  # Dev: a local mutual-TLS cluster (tests/dev starts one), clients use 127.0.0.1:9092
  kafka-tls-proxy --upstream b-1.msk.test:9094 --upstream-ca certs-dev/ca.pem \\
      --client-cert certs-dev/admin.pem --client-key certs-dev/admin.key

  # Amazon MSK from a Tailscale host: bind the tailnet address, advertise its MagicDNS name
  kafka-tls-proxy --upstream b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9094 \\
      --client-cert /etc/kafka-tls-proxy/client.pem --client-key /etc/kafka-tls-proxy/client.key \\
      --client-key-passphrase-file /etc/kafka-tls-proxy/key.pass \\
      --bind-address 100.101.102.103 --advertised-host kafka-proxy.tailnet-name.ts.net \\
      --allow-plaintext-listener

Every flag can also be set by its environment variable or in a TOML file given with --config,
whose keys are the long flag names (upstream = [\"b-1:9094\"], client-cert = \"...\").
Broker N listens on --broker-port-base + N unless --broker-port N=PORT says otherwise.";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "kafka-tls-proxy",
    version,
    about = "A Kafka proxy that lets clients without certificates reach a mutual-TLS cluster (Amazon MSK)",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// What to do; without a subcommand the proxy runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The proxy's options.
    #[command(flatten)]
    pub options: Options,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Run,
    /// Check certificates and upstream connectivity, list the brokers and the proxy port each
    /// gets, and print client settings to copy.
    Check,
    /// Ask a running proxy's admin listener (--admin-address) whether it is ready: exit 0 if
    /// so, 1 if not. For container health checks.
    Healthcheck,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// How a value from the configuration file fills an option that the flags and the environment
/// left unset. Implemented per field type of [`Options`], so that an option of a new type does
/// not compile until it says how it merges.
trait Merge {
    /// Merges `file`'s value into `self`, the one from the flags and the environment.
    fn merge(&mut self, file: Self);
}

/// A value given as a flag or in the environment wins over the file's.
impl<T> Merge for Option<T> {
    fn merge(&mut self, file: Self) {
        if self.is_none() {
            *self = file;
        }
    }
}

/// A switch is on when the flag, the environment or the file turns it on.
impl Merge for bool {
    fn merge(&mut self, file: Self) {
        *self |= file;
    }
}

/// `[[identity]]` tables come from the file when none are given otherwise.
impl Merge for Vec<IdentityOptions> {
    fn merge(&mut self, file: Self) {
        if self.is_empty() {
            *self = file;
        }
    }
}

/// Declares [`Options`] from one list of fields and generates `Options::merge` over every one
/// of them, so that a setting cannot be declared without its file value being merged. Each
/// field is declared once: its `#[arg]` gives the flag and environment variable, its doc
/// comment the help, its name (kebab-case) the TOML key, its type's [`Merge`] how the file
/// fills it; [`Options::into_settings`] must then use it (it destructures every field).
macro_rules! options {
    (
        $(#[$attr:meta])*
        pub struct Options {
            $( $(#[$field_attr:meta])* pub $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$attr])*
        pub struct Options {
            $( $(#[$field_attr])* pub $field: $ty, )*
        }

        impl Options {
            /// Fills what the flags and the environment left unset from `file`.
            fn merge(&mut self, file: Options) {
                $( Merge::merge(&mut self.$field, file.$field); )*
            }
        }
    };
}

options! {
/// Every option, as flags (each with an environment variable) or TOML keys. All optional here;
/// defaults and checks live in [`Options::into_settings`].
#[derive(Debug, Default, PartialEq, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    /// TOML file with any of these options (keys are the long flag names).
    #[arg(long, global = true, env = "KTP_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Upstream bootstrap broker, host:port. Repeat or comma-separate for several; the proxy
    /// tries the next when one fails. Example: b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9094
    #[arg(
        long,
        global = true,
        env = "KTP_UPSTREAM",
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    pub upstream: Option<Vec<String>>,

    /// PEM bundle of the CAs that sign the brokers' certificates. Default: the system roots
    /// (right for MSK, whose broker certificates are public ACM ones).
    #[arg(long, global = true, env = "KTP_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// Host a broker may be advertised at for the proxy to dial it with its client certificate,
    /// so that cluster metadata cannot send the proxy (and its certificate) elsewhere: an exact
    /// host (name or IP address) or *.domain (one or more labels in front of .domain; at least
    /// two labels after "*."), case-insensitive. Repeat or comma-separate. Default: for each
    /// --upstream host, *.REST for a name FIRST.REST where REST has a dot
    /// (b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com → *.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com,
    /// b-1.msk.test → *.msk.test), otherwise the exact host (localhost, 127.0.0.1).
    #[arg(
        long,
        global = true,
        env = "KTP_UPSTREAM_HOST_PATTERN",
        value_delimiter = ',',
        value_name = "PATTERN"
    )]
    pub upstream_host_pattern: Option<Vec<String>>,

    /// PEM certificate chain the proxy presents to the brokers (mutual TLS).
    #[arg(long, global = true, env = "KTP_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,

    /// PEM private key for --client-cert: PKCS#8, PKCS#1, SEC1, or encrypted PKCS#8.
    #[arg(long, global = true, env = "KTP_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,

    /// File holding the passphrase of an encrypted --client-key (trailing newline ignored).
    /// The passphrase itself can instead be given in KTP_CLIENT_KEY_PASSPHRASE: the proxy then
    /// re-executes itself at start without that variable, handing the passphrase over on a
    /// pipe, so that it does not stay readable in /proc/PID/environ.
    #[arg(
        long,
        global = true,
        env = "KTP_CLIENT_KEY_PASSPHRASE_FILE",
        value_name = "FILE"
    )]
    pub client_key_passphrase_file: Option<PathBuf>,

    /// How the proxy authenticates to the brokers: mtls (the default: --client-cert is the
    /// identity), scram-sha-256 or scram-sha-512 (SASL/SCRAM after the TLS handshake, Amazon
    /// MSK's port 9096), or aws-msk-iam (AWS_MSK_IAM with the AWS credentials of the default
    /// chain: web identity, container endpoint, instance profile…; MSK's port 9098);
    /// --client-cert is optional with SASL. README "MSK authentication".
    #[arg(long, global = true, env = "KTP_UPSTREAM_AUTH", value_name = "MECHANISM")]
    pub upstream_auth: Option<String>,

    /// SCRAM user name, with --upstream-auth scram-sha-256 or scram-sha-512.
    #[arg(long, global = true, env = "KTP_SASL_USERNAME", value_name = "NAME")]
    pub sasl_username: Option<String>,

    /// File holding the SCRAM password (trailing newline ignored), read at every
    /// authentication, so a rotated password is used from the next one on. The password
    /// itself is never a flag or an environment variable.
    #[arg(long, global = true, env = "KTP_SASL_PASSWORD_FILE", value_name = "FILE")]
    pub sasl_password_file: Option<PathBuf>,

    /// The AWS region the AWS_MSK_IAM signature is scoped to, with --upstream-auth
    /// aws-msk-iam. Default: the region in the --upstream broker names
    /// (b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com → eu-west-1).
    #[arg(long, global = true, env = "KTP_AWS_REGION", value_name = "REGION")]
    pub aws_region: Option<String>,

    /// Talk plaintext to the brokers (no TLS at all). Only for clusters without TLS.
    #[arg(long, global = true, env = "KTP_UPSTREAM_PLAINTEXT")]
    #[serde(default)]
    pub upstream_plaintext: bool,

    /// Address the proxy's listeners bind: 127.0.0.1 for local services, a tailnet address
    /// on a Tailscale host, 0.0.0.0 behind a load balancer. Default 127.0.0.1.
    #[arg(long, global = true, env = "KTP_BIND_ADDRESS", value_name = "IP")]
    pub bind_address: Option<IpAddr>,

    /// Port of the bootstrap listener that clients are configured with. Default 9092.
    #[arg(long, global = true, env = "KTP_BOOTSTRAP_PORT", value_name = "PORT")]
    pub bootstrap_port: Option<u16>,

    /// Broker N gets proxy port BASE + N. Default 9100 (MSK broker 1 → 9101).
    #[arg(long, global = true, env = "KTP_BROKER_PORT_BASE", value_name = "BASE")]
    pub broker_port_base: Option<u16>,

    /// The most broker listeners the proxy opens (1..=4096). Node ids served by the port
    /// formula must be 0..N-1; explicit --broker-port entries are always allowed. Default 256.
    /// --broker-port-base + N - 1 must not exceed 65535.
    #[arg(long, global = true, env = "KTP_MAX_BROKERS", value_name = "N")]
    pub max_brokers: Option<usize>,

    /// Explicit proxy port for a node id, overriding the formula. Repeatable. Example: 1001=9201
    #[arg(
        long,
        global = true,
        env = "KTP_BROKER_PORT",
        value_delimiter = ',',
        value_name = "NODE=PORT"
    )]
    pub broker_port: Option<Vec<String>>,

    /// Host name clients are told to dial for every broker: a MagicDNS name, localhost, a load
    /// balancer's name. Default: the bind address (required when binding 0.0.0.0 or ::).
    #[arg(long, global = true, env = "KTP_ADVERTISED_HOST", value_name = "HOST")]
    pub advertised_host: Option<String>,

    /// Allow a plaintext listener on a non-loopback address (clients without TLS then send
    /// their data unencrypted over that network; on a tailnet WireGuard already encrypts it).
    #[arg(long, global = true, env = "KTP_ALLOW_PLAINTEXT_LISTENER")]
    #[serde(default)]
    pub allow_plaintext_listener: bool,

    /// Addresses of TCP load balancers that send the PROXY protocol (v1 or v2) header on
    /// every connection to the client listeners: CIDR blocks or single addresses, repeat or
    /// comma-separate. A connection from one of them must start with a valid header (read
    /// within --first-frame-timeout, before any TLS handshake) or it is closed; the client
    /// address the header carries is the one logs and the audit log name. A connection from
    /// anywhere else is never read for a header. Example: 10.0.1.0/24 (HAProxy send-proxy-v2,
    /// an AWS NLB target group with proxy_protocol_v2.enabled). Default: none.
    #[arg(
        long,
        global = true,
        env = "KTP_PROXY_PROTOCOL_FROM",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub proxy_protocol_from: Option<Vec<String>>,

    /// Choose identities on the default listeners by who Tailscale says a client is: a
    /// connection from a tailnet address (100.64.0.0/10, fd7a:115c:a1e0::/48; the PROXY
    /// header's client address behind a balancer) is looked up with tailscaled's LocalAPI
    /// `whois`, and acts as the identity its application capability (--tailnet-capability)
    /// grants, else the first `[[identity]]` whose tailnet-login or tailnet-tag matches; a
    /// peer that matches nothing, or whose whois fails, is refused (see
    /// --tailnet-unmatched-default). Sources off the tailnet are chosen as before.
    #[arg(long, global = true, env = "KTP_TAILNET_IDENTITIES")]
    #[serde(default)]
    pub tailnet_identities: bool,

    /// tailscaled's LocalAPI socket for --tailnet-identities. Default
    /// /var/run/tailscale/tailscaled.sock.
    #[arg(long, global = true, env = "KTP_TAILSCALE_SOCKET", value_name = "PATH")]
    pub tailscale_socket: Option<PathBuf>,

    /// The application capability (granted in the tailnet policy file's `grants`, `app`
    /// field) whose values `{"identity": "<name>"}` say which identity a peer acts as.
    /// Default kafka-tls-proxy.dev/cap/identity.
    #[arg(long, global = true, env = "KTP_TAILNET_CAPABILITY", value_name = "NAME")]
    pub tailnet_capability: Option<String>,

    /// How long a whois answer is reused for new connections from the same tailnet address
    /// (a changed grant takes effect after at most this long). Default 10s.
    #[arg(long, global = true, env = "KTP_TAILNET_WHOIS_TTL", value_name = "DURATION")]
    pub tailnet_whois_ttl: Option<String>,

    /// With --tailnet-identities: a tailnet peer that no grant or rule names acts as the
    /// default identity (logged) instead of being refused.
    #[arg(long, global = true, env = "KTP_TAILNET_UNMATCHED_DEFAULT")]
    #[serde(default)]
    pub tailnet_unmatched_default: bool,

    /// PEM certificate for TLS on the proxy's own listeners (clients then connect with TLS).
    #[arg(long, global = true, env = "KTP_LISTENER_CERT", value_name = "FILE")]
    pub listener_cert: Option<PathBuf>,

    /// PEM private key for --listener-cert.
    #[arg(long, global = true, env = "KTP_LISTENER_KEY", value_name = "FILE")]
    pub listener_key: Option<PathBuf>,

    /// Allow a TLS listener without --listener-client-ca on a non-loopback address. Such a
    /// listener encrypts but authenticates no one: every client that reaches the address acts
    /// with the proxy's client certificate.
    #[arg(long, global = true, env = "KTP_ALLOW_UNAUTHENTICATED_TLS_LISTENER")]
    #[serde(default)]
    pub allow_unauthenticated_tls_listener: bool,

    /// Require clients to present a certificate signed by a CA in this PEM bundle.
    #[arg(
        long,
        global = true,
        env = "KTP_LISTENER_CLIENT_CA",
        value_name = "FILE"
    )]
    pub listener_client_ca: Option<PathBuf>,

    /// Largest request frame a client may send, in bytes; larger ones close the connection.
    /// Default 104857600 (Kafka's socket.request.max.bytes).
    #[arg(
        long,
        global = true,
        env = "KTP_MAX_REQUEST_BYTES",
        value_name = "BYTES"
    )]
    pub max_request_bytes: Option<usize>,

    /// Largest response frame accepted from a broker, in bytes. Default 268435456.
    #[arg(
        long,
        global = true,
        env = "KTP_MAX_RESPONSE_BYTES",
        value_name = "BYTES"
    )]
    pub max_response_bytes: Option<usize>,

    /// Time allowed to connect and finish the TLS handshake with a broker. Default 10s.
    #[arg(
        long,
        global = true,
        env = "KTP_CONNECT_TIMEOUT",
        value_name = "DURATION"
    )]
    pub connect_timeout: Option<String>,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish; also how long a
    /// connection whose client closed, reset or was refused waits for the answers to what it
    /// had forwarded. Default 25s (below Nomad's and Kubernetes' 30s kill timeouts).
    #[arg(
        long,
        global = true,
        env = "KTP_DRAIN_TIMEOUT",
        value_name = "DURATION"
    )]
    pub drain_timeout: Option<String>,

    /// How often the proxy asks the cluster for its brokers over mutual TLS, so that brokers
    /// added later get listeners before any client asks, and /readyz knows the cluster is
    /// reachable. Default 10s; 0 turns the periodic rounds off (the proxy still asks at start,
    /// and when a response names a broker it does not know: at most once a second).
    #[arg(
        long,
        global = true,
        env = "KTP_DISCOVERY_INTERVAL",
        value_name = "DURATION"
    )]
    pub discovery_interval: Option<String>,

    /// How long the addresses a broker name resolved to are reused for new upstream
    /// connections (a failed connect looks the name up again at once). Default 30s; 0 looks
    /// the name up on every connect.
    #[arg(
        long,
        global = true,
        env = "KTP_DNS_CACHE_TTL",
        value_name = "DURATION"
    )]
    pub dns_cache_ttl: Option<String>,

    /// Memory all connections together may hold in frames larger than 64 KiB (requests and
    /// responses being received, forwarded or rewritten). When it is used up, connections stop
    /// reading (TCP backpressure) until frames leave; nothing is dropped. A frame larger than
    /// the whole budget waits until it has the budget to itself. Default 134217728 (128 MiB,
    /// for a 256 MiB Nomad task); README "Sizing and limits".
    #[arg(
        long,
        global = true,
        env = "KTP_MAX_BUFFERED_BYTES",
        value_name = "BYTES"
    )]
    pub max_buffered_bytes: Option<usize>,

    /// Most client connections open at once, over all listeners; beyond it a new connection is
    /// accepted and closed at once (logged, counted). Default 10000.
    #[arg(long, global = true, env = "KTP_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// A client must send its first complete request within this time after connecting (TLS
    /// handshake included), or the connection closes. No upstream connection is opened before
    /// that first request. Default 10s.
    #[arg(
        long,
        global = true,
        env = "KTP_FIRST_FRAME_TIMEOUT",
        value_name = "DURATION"
    )]
    pub first_frame_timeout: Option<String>,

    /// Once a client has sent the first byte of a request (after its first), the rest must
    /// arrive within this time, not counting time spent waiting for --max-buffered-bytes that
    /// others hold. A request above 64 KiB, once its budget is held, must instead arrive at
    /// --min-client-read-rate or more over each window of this length (a stalled request
    /// holds the budget for one window at most). Default 30s.
    #[arg(
        long,
        global = true,
        env = "KTP_FRAME_TIMEOUT",
        value_name = "DURATION"
    )]
    pub frame_timeout: Option<String>,

    /// Slowest a client may read an answer, or send a request above 64 KiB once its budget is
    /// held, in bytes per second: a client that moves less than this, over a window of
    /// --frame-timeout, is closed and the budget its frame holds goes back (a consumer
    /// trickling its 50 MiB Fetch answer, or a producer its 50 MiB request, must not hold that
    /// budget indefinitely). 0 only closes a client that moves nothing for --frame-timeout.
    /// Default 65536 (64 KiB/s).
    #[arg(
        long,
        global = true,
        env = "KTP_MIN_CLIENT_READ_RATE",
        value_name = "BYTES_PER_SEC"
    )]
    pub min_client_read_rate: Option<u64>,

    /// A client connection that sends nothing for this long is closed, like Kafka's
    /// connections.max.idle.ms. Default 10m.
    #[arg(
        long,
        global = true,
        env = "KTP_CLIENT_IDLE_TIMEOUT",
        value_name = "DURATION"
    )]
    pub client_idle_timeout: Option<String>,

    /// When --bind-address is not (yet) an address of this host, keep retrying this long before
    /// giving up: on a Tailscale host, tailscaled can report ready before its address exists.
    /// Default 60s.
    #[arg(
        long,
        global = true,
        env = "KTP_BIND_RETRY_TIMEOUT",
        value_name = "DURATION"
    )]
    pub bind_retry_timeout: Option<String>,

    /// Admin HTTP listener (/metrics, /healthz, /readyz). Default 127.0.0.1:9644; "off" disables it.
    #[arg(long, global = true, env = "KTP_ADMIN_ADDRESS", value_name = "IP:PORT")]
    pub admin_address: Option<String>,

    /// Log format: text or json.
    #[arg(long, global = true, env = "KTP_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter, in tracing's EnvFilter syntax. Default "info". Example: info,kafka_tls_proxy=debug
    #[arg(long, global = true, env = "KTP_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// What clients of the default identity (the one these flags configure) may do at the
    /// cluster: full (default), read-only or no-admin. Defence in depth on top of the
    /// cluster's ACLs, never a replacement. README "Identities".
    #[arg(long, global = true, env = "KTP_POLICY", value_name = "POLICY")]
    pub policy: Option<String>,

    /// More identities, each with its own upstream certificate, policy and listeners, or chosen
    /// by the client's certificate: `[[identity]]` tables in the TOML file only.
    #[arg(skip)]
    #[serde(default)]
    pub identity: Vec<IdentityOptions>,
}
}

/// One `[[identity]]` table of the configuration file: another Kafka principal the proxy acts
/// as, for the clients of its own ports or of certificates that match it.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IdentityOptions {
    /// Name in logs, metrics and the audit log.
    pub name: String,
    /// Its bootstrap port (with `broker-port-base`): clients of these ports act as this
    /// identity. Leave both out to choose the identity by client certificate instead.
    pub bootstrap_port: Option<u16>,
    /// Its broker N listens on BASE + N.
    pub broker_port_base: Option<u16>,
    /// Explicit broker ports, NODE=PORT.
    #[serde(default)]
    pub broker_port: Vec<String>,
    /// Client certificate chain presented to the brokers.
    pub client_cert: Option<PathBuf>,
    /// Its key.
    pub client_key: Option<PathBuf>,
    /// Passphrase file of an encrypted key.
    pub client_key_passphrase_file: Option<PathBuf>,
    /// mtls (default), scram-sha-256, scram-sha-512 or aws-msk-iam (with the default
    /// identity's region and AWS credentials).
    pub upstream_auth: Option<String>,
    /// SCRAM user name.
    pub sasl_username: Option<String>,
    /// File holding the SCRAM password.
    pub sasl_password_file: Option<PathBuf>,
    /// full, read-only or no-admin.
    pub policy: Option<String>,
    /// On the default TLS listeners with client-certificate verification: clients whose
    /// certificate's subject common name matches one of these (exact, or with `*` wildcards)
    /// act as this identity.
    #[serde(default)]
    pub client_subject_cn: Vec<String>,
    /// Likewise for a DNS or IP subject alternative name of the client's certificate.
    #[serde(default)]
    pub client_san: Vec<String>,
    /// With --tailnet-identities: tailnet peers whose person's login matches one of these
    /// (exact, or with `*` wildcards such as `*@example.com`) act as this identity.
    #[serde(default)]
    pub tailnet_login: Vec<String>,
    /// Likewise for tagged nodes with one of these tags (`tag:reporting`).
    #[serde(default)]
    pub tailnet_tag: Vec<String>,
}

/// A configuration error: which setting, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// The flag (or TOML key) at fault.
    pub setting: &'static str,
    /// What is wrong.
    pub problem: String,
}

fn bad(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

/// Which clients of the default listeners act as an identity: by their verified certificate's
/// subject common name or a subject alternative name, each pattern exact or with `*` wildcards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertMatch {
    /// Patterns for the subject's common name.
    pub subject_cn: Vec<String>,
    /// Patterns for DNS or IP subject alternative names.
    pub san: Vec<String>,
}

impl CertMatch {
    /// True when no pattern is set (the identity has listeners of its own instead).
    pub fn is_empty(&self) -> bool {
        self.subject_cn.is_empty() && self.san.is_empty()
    }

    /// Whether a certificate with this common name and these alternative names matches.
    pub fn matches(&self, common_name: Option<&str>, sans: &[String]) -> bool {
        common_name.is_some_and(|cn| self.subject_cn.iter().any(|p| glob_matches(p, cn)))
            || sans
                .iter()
                .any(|name| self.san.iter().any(|p| glob_matches(p, name)))
    }
}

/// Which tailnet peers act as an identity (with --tailnet-identities), besides the peers the
/// capability grants it to: by the person's login, or by the node's tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailnetMatch {
    /// Patterns for the login of the person on a node without tags.
    pub logins: Vec<String>,
    /// Tags (`tag:name`, or with `*` wildcards) of tagged nodes.
    pub tags: Vec<String>,
}

impl TailnetMatch {
    /// True when no rule is set.
    pub fn is_empty(&self) -> bool {
        self.logins.is_empty() && self.tags.is_empty()
    }

    /// Whether a peer with this login and these tags matches. A tagged node's login is
    /// Tailscale's placeholder, never a person, so only its tags are read.
    pub fn matches(&self, login: &str, tags: &[String]) -> bool {
        if tags.is_empty() {
            self.logins.iter().any(|p| glob_matches(p, login))
        } else {
            tags.iter()
                .any(|tag| self.tags.iter().any(|p| glob_matches(p, tag)))
        }
    }
}

/// `*` matches any run of characters (none included); everything else matches itself,
/// ASCII case-insensitively. Why not regular expressions: an operator writes these in a config
/// file, and `svc-*` or `*.data.example.com` is all a certificate rule needs.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Iterative wildcard match with one backtrack point (linear in practice, no recursion).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi].eq_ignore_ascii_case(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// --tailnet-identities, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailnetSettings {
    /// How tailscaled is asked.
    pub whois: crate::tailnet::WhoisSettings,
    /// Whether a peer that nothing names acts as the default identity (else it is refused).
    pub unmatched_default: bool,
}

/// An identity from a `[[identity]]` table, validated.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// Name in logs, metrics and the audit log.
    pub name: String,
    /// Its own bootstrap port and broker port plan; `None` when it is chosen by client
    /// certificate on the default listeners.
    pub listeners: Option<(u16, PortPlan)>,
    /// Its upstream credentials (CA shared with the default identity).
    pub upstream_tls: UpstreamTlsFiles,
    /// How it authenticates to the brokers.
    pub auth: UpstreamAuth,
    /// What its clients may do.
    pub policy: Policy,
    /// Which verified client certificates on the default listeners act as it.
    pub client_match: CertMatch,
    /// Which tailnet peers on the default listeners act as it (by rule; the capability's
    /// grants name it too).
    pub tailnet_match: TailnetMatch,
}

/// Parses `upstream-auth` with its SCRAM user and password file: `mtls` and `aws-msk-iam` take
/// neither, a SCRAM mechanism needs both (the password file must be readable now);
/// `aws-msk-iam` takes its region and credentials from `iam`.
fn parse_auth(
    setting: &'static str,
    auth: Option<&str>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    iam: impl FnOnce() -> Result<IamAuth, ConfigError>,
) -> Result<UpstreamAuth, ConfigError> {
    let kind = auth
        .map(sasl::parse_kind)
        .transpose()
        .map_err(|e| bad(setting, e))?
        .unwrap_or(AuthKind::Mtls);
    let mechanism = match kind {
        AuthKind::Scram(mechanism) => mechanism,
        AuthKind::Mtls | AuthKind::AwsMskIam => {
            if username.is_some() || password_file.is_some() {
                return Err(bad(
                    setting,
                    "sasl-username and sasl-password-file need upstream-auth scram-sha-256 or scram-sha-512",
                ));
            }
            return match kind {
                AuthKind::AwsMskIam => iam().map(UpstreamAuth::AwsMskIam),
                _ => Ok(UpstreamAuth::Mtls),
            };
        }
    };
    let username = username
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad(setting, format!("{} needs sasl-username", mechanism.name())))?;
    if username.chars().any(char::is_control) {
        return Err(bad(setting, "sasl-username has control characters"));
    }
    let password_file = password_file.ok_or_else(|| {
        bad(
            setting,
            format!(
                "{} needs sasl-password-file (the password is only ever read from a file)",
                mechanism.name()
            ),
        )
    })?;
    check_readable(setting, &password_file)?;
    Ok(UpstreamAuth::Scram(ScramCredentials {
        mechanism,
        username,
        password_file,
    }))
}

/// The IAM settings: the region given, else the one in the broker names (all must agree),
/// and the default AWS credential chain.
fn iam_auth(region: Option<&str>, upstream: &[UpstreamAddr]) -> Result<IamAuth, ConfigError> {
    let region = match region.map(str::trim) {
        Some(region) => {
            if !aws_iam::is_region(region) {
                return Err(bad(
                    "--aws-region",
                    format!("'{region}' is not an AWS region name (like eu-west-1)"),
                ));
            }
            region.to_owned()
        }
        None => {
            let found: Vec<Option<String>> = upstream
                .iter()
                .map(|a| aws_iam::region_from_host(&a.host))
                .collect();
            match found.first() {
                Some(Some(first)) if found.iter().all(|r| r.as_ref() == Some(first)) => {
                    first.clone()
                }
                _ => {
                    return Err(bad(
                        "--aws-region",
                        "upstream-auth aws-msk-iam needs the cluster's region: give --aws-region, or --upstream broker names that carry it (b-1.CLUSTER.ID.c2.kafka.REGION.amazonaws.com)",
                    ))
                }
            }
        }
    };
    Ok(IamAuth {
        credentials: std::sync::Arc::new(CredentialSource::default_chain(&region)),
        region,
    })
}

/// Parses a policy name.
fn parse_policy(setting: &'static str, value: Option<&str>) -> Result<Policy, ConfigError> {
    value
        .map(|v| v.trim().parse().map_err(|e: String| bad(setting, e)))
        .unwrap_or(Ok(Policy::Full))
}

/// Parses NODE=PORT overrides.
fn parse_broker_ports(
    setting: &'static str,
    entries: &[String],
) -> Result<BTreeMap<i32, u16>, ConfigError> {
    let mut overrides = BTreeMap::new();
    for entry in entries {
        let (node, port) = entry
            .split_once('=')
            .ok_or_else(|| bad(setting, format!("'{entry}' is not NODE=PORT")))?;
        let node: i32 = node
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad(setting, format!("'{node}' is not a node id")))?;
        let port: u16 = port
            .trim()
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(setting, format!("'{port}' is not a port 1..=65535")))?;
        overrides.insert(node, port);
    }
    Ok(overrides)
}

/// The ports a set of listeners may use: a bootstrap port, a formula range, overrides.
struct PortClaim {
    owner: String,
    bootstrap: u16,
    range: std::ops::RangeInclusive<u32>,
    overrides: Vec<u16>,
}

impl PortClaim {
    fn ports(&self) -> impl Iterator<Item = (u32, &'static str)> + '_ {
        std::iter::once((u32::from(self.bootstrap), "bootstrap port"))
            .chain(self.range.clone().map(|p| (p, "broker port range")))
            .chain(
                self.overrides
                    .iter()
                    .map(|p| (u32::from(*p), "--broker-port")),
            )
    }
}

/// Errors when two identities' listeners could use the same port. A collision with a broker
/// port range says how wide that range is and that `--max-brokers` narrows it: the default
/// range is 256 ports, which a port chosen a little above another base easily falls into.
fn check_port_claims(claims: &[PortClaim], max_brokers: usize) -> Result<(), ConfigError> {
    let mut owners: std::collections::HashMap<u32, (&str, &'static str)> =
        std::collections::HashMap::new();
    for claim in claims {
        for (port, what) in claim.ports() {
            if let Some((other, other_what)) = owners.get(&port) {
                if *other != claim.owner.as_str() {
                    let hint = if [*other_what, what].contains(&"broker port range") {
                        format!(
                            "; a broker port range is broker-port-base .. broker-port-base + --max-brokers - 1 \
                             ({max_brokers} ports now): lower --max-brokers to narrow every range, or move the ports apart"
                        )
                    } else {
                        String::new()
                    };
                    return Err(bad(
                        "identity",
                        format!(
                            "port {port} is {other_what} of identity '{other}' and {what} of identity '{}'{hint}",
                            claim.owner
                        ),
                    ));
                }
            }
            owners.entry(port).or_insert((claim.owner.as_str(), what));
        }
    }
    Ok(())
}

/// Validated settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address every listener binds.
    pub bind_address: IpAddr,
    /// Port of the bootstrap listener.
    pub bootstrap_port: u16,
    /// Host every rewritten broker address carries.
    pub advertised_host: String,
    /// Node id → proxy port.
    pub ports: PortPlan,
    /// The most broker listeners to open; the port formula serves node ids 0..max_brokers-1
    /// (explicit --broker-port entries are always served).
    pub max_brokers: usize,
    /// Hosts a broker may be advertised at for the proxy to dial it: validated, lower-case
    /// patterns for [`crate::brokers::host_matches`] (exact hosts or `*.domain`).
    pub upstream_host_patterns: Vec<String>,
    /// Upstream bootstrap brokers, tried in turn.
    pub upstream: Vec<UpstreamAddr>,
    /// Upstream TLS; `None` only with --upstream-plaintext.
    pub upstream_tls: Option<UpstreamTlsFiles>,
    /// How the default identity authenticates to the brokers.
    pub upstream_auth: UpstreamAuth,
    /// TLS for the proxy's own listeners.
    pub listener_tls: Option<ListenerTlsFiles>,
    /// Sources whose connections start with a PROXY protocol header.
    pub proxy_protocol_from: Trusted,
    /// With --tailnet-identities: how tailnet peers on the default listeners are looked up.
    pub tailnet: Option<TailnetSettings>,
    /// Largest request frame.
    pub max_request_bytes: usize,
    /// Largest response frame.
    pub max_response_bytes: usize,
    /// Connect plus handshake timeout for upstream connections.
    pub connect_timeout: Duration,
    /// Drain time on shutdown, and for a connection whose client side has ended.
    pub drain_timeout: Duration,
    /// Broker discovery period; zero disables the periodic rounds.
    pub discovery_interval: Duration,
    /// How long a broker name's addresses are reused; zero disables the cache.
    pub dns_cache_ttl: Duration,
    /// Memory budget for frames larger than [`crate::kafka::frame::SMALL_FRAME_BYTES`], over all connections.
    pub max_buffered_bytes: usize,
    /// Most client connections at once.
    pub max_connections: usize,
    /// Time for a new client's first complete request.
    pub first_frame_timeout: Duration,
    /// Time for the rest of a request once its first byte arrived (waiting for budget not
    /// counted; a large request with its budget held is held to the floor rate instead).
    pub frame_timeout: Duration,
    /// Bytes per second a client must read, over each --frame-timeout, while an answer waits
    /// for it, and send of a large request whose budget is held (0: only some progress).
    pub min_client_read_rate: u64,
    /// Time a client connection may send nothing.
    pub client_idle_timeout: Duration,
    /// How long to retry binding an address that is not assigned yet.
    pub bind_retry_timeout: Duration,
    /// Admin HTTP listener.
    pub admin_address: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log: String,
    /// Policy of the default identity (the flags').
    pub policy: Policy,
    /// The identities of the configuration file's `[[identity]]` tables, in file order.
    pub identities: Vec<IdentitySettings>,
}

/// What the `[[identity]]` tables are checked against.
struct IdentityContext<'a> {
    default_bootstrap: u16,
    default_plan: &'a PortPlan,
    max_brokers: usize,
    upstream_ca: Option<PathBuf>,
    upstream_plaintext: bool,
    listener_verifies_clients: bool,
    /// How the default identity authenticates: every identity dials the same broker addresses
    /// (one listener), so all must authenticate the same kind of way; IAM identities share its
    /// region and AWS credentials.
    default_auth: &'a UpstreamAuth,
    /// Whether --tailnet-identities chooses identities on the default listeners.
    tailnet: bool,
}

/// Validates the `[[identity]]` tables: unique names, credentials present and readable,
/// either listeners of their own or certificate rules (which need client-certificate
/// verification on the default listeners), and no port two identities could both use.
fn identities(
    tables: Vec<IdentityOptions>,
    ctx: &IdentityContext<'_>,
) -> Result<Vec<IdentitySettings>, ConfigError> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    if ctx.upstream_plaintext {
        return Err(bad(
            "identity",
            "identities need mutual TLS to the brokers (not --upstream-plaintext)",
        ));
    }
    let span = |base: u16| u32::from(base)..=u32::from(base) + ctx.max_brokers as u32 - 1;
    let mut claims = vec![PortClaim {
        owner: "default".into(),
        bootstrap: ctx.default_bootstrap,
        range: span(ctx.default_plan.base),
        overrides: ctx.default_plan.overrides.values().copied().collect(),
    }];
    let mut names = vec!["default".to_owned()];
    let mut out = Vec::new();
    for t in tables {
        let name = t.name.trim().to_owned();
        let fail = |problem: String| bad("identity", format!("identity '{name}': {problem}"));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(bad(
                "identity",
                format!("'{}' is not a name (letters, digits, - _ .)", t.name),
            ));
        }
        if name.eq_ignore_ascii_case("default") {
            return Err(fail(
                "the name 'default' is reserved for the identity the flags and the file's top-level \
                 settings configure; give this identity another name"
                    .into(),
            ));
        }
        if names.contains(&name) {
            return Err(fail("the name is used twice".into()));
        }
        names.push(name.clone());
        let auth = parse_auth(
            "identity",
            t.upstream_auth.as_deref(),
            t.sasl_username,
            t.sasl_password_file,
            || match ctx.default_auth {
                UpstreamAuth::AwsMskIam(iam) => Ok(iam.clone()),
                _ => Err(bad(
                    "identity",
                    "upstream-auth aws-msk-iam needs the default identity to use it too (--upstream-auth aws-msk-iam): they share the broker listener, region and AWS credentials",
                )),
            },
        )
        .map_err(|e| fail(e.problem))?;
        if auth.listener_kind() != ctx.default_auth.listener_kind() {
            return Err(fail(format!(
                "upstream-auth {} differs from the default identity's ({}): every identity dials the \
                 same broker listener (--upstream), and a listener takes one kind of authentication \
                 (MSK: mutual TLS on 9094, SCRAM on 9096, IAM on 9098); run one proxy per kind",
                auth.name(),
                ctx.default_auth.listener_kind()
            )));
        }
        let client = match (t.client_cert, t.client_key) {
            (Some(cert), Some(key)) => Some(ClientCertFiles {
                cert,
                key,
                key_passphrase: t.client_key_passphrase_file.map(Passphrase::File),
            }),
            (None, None) if auth.is_sasl() => None,
            (None, _) => return Err(fail("client-cert is required".into())),
            (Some(_), None) => return Err(fail("client-key is required".into())),
        };
        if let Some(client) = &client {
            let passphrase = match &client.key_passphrase {
                Some(Passphrase::File(path)) => Some(path),
                _ => None,
            };
            for path in [Some(&client.cert), Some(&client.key), passphrase]
                .into_iter()
                .flatten()
            {
                check_readable("identity", path).map_err(|e| fail(e.problem))?;
            }
        }
        let policy = parse_policy("identity", t.policy.as_deref()).map_err(|e| fail(e.problem))?;
        let client_match = CertMatch {
            subject_cn: t
                .client_subject_cn
                .iter()
                .map(|p| p.trim().to_owned())
                .collect(),
            san: t.client_san.iter().map(|p| p.trim().to_owned()).collect(),
        };
        if client_match
            .subject_cn
            .iter()
            .chain(&client_match.san)
            .any(|p| p.is_empty())
        {
            return Err(fail("an empty client-subject-cn/client-san pattern".into()));
        }
        let tailnet_match = TailnetMatch {
            logins: t
                .tailnet_login
                .iter()
                .map(|p| p.trim().to_owned())
                .collect(),
            tags: t.tailnet_tag.iter().map(|p| p.trim().to_owned()).collect(),
        };
        if tailnet_match
            .logins
            .iter()
            .chain(&tailnet_match.tags)
            .any(|p| p.is_empty())
        {
            return Err(fail("an empty tailnet-login/tailnet-tag pattern".into()));
        }
        if let Some(tag) = tailnet_match.tags.iter().find(|t| !t.starts_with("tag:")) {
            return Err(fail(format!(
                "tailnet-tag '{tag}' is not a Tailscale tag (tag:name)"
            )));
        }
        if !tailnet_match.is_empty() && !ctx.tailnet {
            return Err(fail(
                "tailnet-login/tailnet-tag need --tailnet-identities".into(),
            ));
        }
        let has_rules = !client_match.is_empty() || !tailnet_match.is_empty();
        let listeners = match (t.bootstrap_port, t.broker_port_base) {
            (Some(bootstrap), Some(base)) if !has_rules => {
                if bootstrap == 0 || base == 0 {
                    return Err(fail("ports must be 1..=65535".into()));
                }
                if u32::from(base) + ctx.max_brokers as u32 - 1 > u32::from(u16::MAX) {
                    return Err(fail(format!(
                        "broker-port-base {base} + --max-brokers {} - 1 is above 65535",
                        ctx.max_brokers
                    )));
                }
                let overrides =
                    parse_broker_ports("identity", &t.broker_port).map_err(|e| fail(e.problem))?;
                let plan = PortPlan {
                    base,
                    overrides,
                    reserved: ctx.default_plan.reserved.clone(),
                };
                plan.validate().map_err(|e| fail(e.to_string()))?;
                claims.push(PortClaim {
                    owner: name.clone(),
                    bootstrap,
                    range: span(base),
                    overrides: plan.overrides.values().copied().collect(),
                });
                Some((bootstrap, plan))
            }
            (None, None) if has_rules || ctx.tailnet => {
                // With --tailnet-identities and no rule, the capability's grants alone name it.
                if !client_match.is_empty() && !ctx.listener_verifies_clients {
                    return Err(fail(
                        "client-subject-cn/client-san need --listener-client-ca (verified client certificates)".into(),
                    ));
                }
                None
            }
            (None, None) => {
                return Err(fail(
                    "give it bootstrap-port and broker-port-base, or client-subject-cn/client-san \
                     (or, with --tailnet-identities, tailnet rules or none: the capability's grants)"
                        .into(),
                ))
            }
            _ if has_rules => {
                return Err(fail(
                    "either its own ports or certificate/tailnet rules, not both".into(),
                ))
            }
            _ => {
                return Err(fail(
                    "bootstrap-port and broker-port-base go together".into(),
                ))
            }
        };
        out.push(IdentitySettings {
            name,
            listeners,
            upstream_tls: UpstreamTlsFiles {
                ca: ctx.upstream_ca.clone(),
                client,
            },
            auth,
            policy,
            client_match,
            tailnet_match,
        });
    }
    check_port_claims(&claims, ctx.max_brokers)?;
    // The admin port and the default bootstrap port are reserved in every plan already; an
    // identity's bootstrap port must not be one of them either.
    for (bootstrap, _) in out.iter().filter_map(|i| i.listeners.as_ref()) {
        if ctx.default_plan.reserved.contains(bootstrap) {
            return Err(bad(
                "identity",
                format!("bootstrap port {bootstrap} is the default bootstrap or admin port"),
            ));
        }
    }
    Ok(out)
}

/// Parses --admin-address: the default when unset, IP:PORT, or `None` for "off".
fn parse_admin_address(value: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    match value.map(str::trim) {
        None => Ok(Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9644))),
        Some("off") | Some("") => Ok(None),
        Some(addr) => addr.parse().map(Some).map_err(|_| {
            bad(
                "--admin-address",
                format!("'{addr}' is not IP:PORT (or 'off')"),
            )
        }),
    }
}

/// Parses "250ms", "10s", "2m" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 250ms, 10s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{s}': {e}"))
}

impl Options {
    /// Fills every unset option from the TOML file named by --config, if any.
    pub fn merge_file(mut self) -> Result<Self, ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| bad("--config", format!("{}: {e}", path.display())))?;
        let file: Options = toml::from_str(&text)
            .map_err(|e| bad("--config", format!("{}: {e}", path.display())))?;
        self.merge(file);
        Ok(self)
    }

    /// The admin listener address: the default, a parsed IP:PORT, or `None` for "off".
    pub fn admin_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_admin_address(self.admin_address.as_deref())
    }

    /// Applies defaults and checks everything. `passphrase_env` is the passphrase given in
    /// KTP_CLIENT_KEY_PASSPHRASE (which main takes out of the environment first), passed in so
    /// tests need not touch the environment.
    #[deny(unused_variables)]
    pub fn into_settings(self, passphrase_env: Option<Secret>) -> Result<Settings, ConfigError> {
        // Every option, by name: one that is declared but never used here does not compile.
        let Options {
            config: _, // read by merge_file
            upstream,
            upstream_ca,
            upstream_host_pattern,
            client_cert,
            client_key,
            client_key_passphrase_file,
            upstream_auth,
            sasl_username,
            sasl_password_file,
            aws_region,
            upstream_plaintext,
            bind_address,
            bootstrap_port,
            broker_port_base,
            max_brokers,
            broker_port,
            advertised_host,
            allow_plaintext_listener,
            listener_cert,
            listener_key,
            allow_unauthenticated_tls_listener,
            listener_client_ca,
            proxy_protocol_from,
            tailnet_identities,
            tailscale_socket,
            tailnet_capability,
            tailnet_whois_ttl,
            tailnet_unmatched_default,
            max_request_bytes,
            max_response_bytes,
            connect_timeout,
            drain_timeout,
            discovery_interval,
            dns_cache_ttl,
            max_buffered_bytes,
            max_connections,
            first_frame_timeout,
            frame_timeout,
            min_client_read_rate,
            client_idle_timeout,
            bind_retry_timeout,
            admin_address,
            log_format,
            log,
            policy,
            identity,
        } = self;
        let admin_address = parse_admin_address(admin_address.as_deref())?;
        let upstream: Vec<UpstreamAddr> = upstream
            .unwrap_or_default()
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| UpstreamAddr::parse(s.trim()).map_err(|e| bad("--upstream", e)))
            .collect::<Result<_, _>>()?;
        if upstream.is_empty() {
            return Err(bad(
                "--upstream",
                "at least one upstream broker is required, e.g. --upstream b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9094",
            ));
        }

        let upstream_auth = parse_auth(
            "--upstream-auth",
            upstream_auth.as_deref(),
            sasl_username,
            sasl_password_file,
            || iam_auth(aws_region.as_deref(), &upstream),
        )?;
        if aws_region.is_some() && !matches!(upstream_auth, UpstreamAuth::AwsMskIam(_)) {
            return Err(bad("--aws-region", "needs --upstream-auth aws-msk-iam"));
        }
        let upstream_tls = if upstream_plaintext {
            if upstream_auth.is_sasl() {
                return Err(bad(
                    "--upstream-plaintext",
                    "SASL to the brokers needs TLS (MSK's SCRAM and IAM ports 9096 and 9098 are TLS); leave out --upstream-plaintext",
                ));
            }
            if client_cert.is_some() || client_key.is_some() {
                return Err(bad(
                    "--upstream-plaintext",
                    "cannot be combined with --client-cert/--client-key",
                ));
            }
            None
        } else if client_cert.is_none() && client_key.is_none() && upstream_auth.is_sasl() {
            // SASL authenticates; TLS still verifies the brokers.
            if let Some(ca) = &upstream_ca {
                check_readable("--upstream-ca", ca)?;
            }
            Some(UpstreamTlsFiles {
                ca: upstream_ca,
                client: None,
            })
        } else {
            let cert = client_cert.ok_or_else(|| {
                bad(
                    "--client-cert",
                    "required for mutual TLS to the brokers (or set --upstream-auth scram-sha-512 with --sasl-username and --sasl-password-file, or pass --upstream-plaintext for a cluster without TLS)",
                )
            })?;
            let key =
                client_key.ok_or_else(|| bad("--client-key", "required with --client-cert"))?;
            let key_passphrase = match (&client_key_passphrase_file, passphrase_env) {
                (Some(file), _) => {
                    check_readable("--client-key-passphrase-file", file)?;
                    Some(Passphrase::File(file.clone()))
                }
                (None, Some(value)) => Some(Passphrase::Value(value)),
                (None, None) => None,
            };
            for (setting, path) in [
                ("--client-cert", Some(&cert)),
                ("--client-key", Some(&key)),
                ("--upstream-ca", upstream_ca.as_ref()),
            ] {
                if let Some(path) = path {
                    check_readable(setting, path)?;
                }
            }
            Some(UpstreamTlsFiles::mutual(
                upstream_ca,
                cert,
                key,
                key_passphrase,
            ))
        };

        let listener_tls = match (listener_cert, listener_key) {
            (Some(cert), Some(key)) => {
                check_readable("--listener-cert", &cert)?;
                check_readable("--listener-key", &key)?;
                if let Some(ca) = &listener_client_ca {
                    check_readable("--listener-client-ca", ca)?;
                }
                Some(ListenerTlsFiles {
                    cert,
                    key,
                    client_ca: listener_client_ca,
                })
            }
            (None, None) => {
                if listener_client_ca.is_some() {
                    return Err(bad(
                        "--listener-client-ca",
                        "needs --listener-cert and --listener-key",
                    ));
                }
                None
            }
            (Some(_), None) => return Err(bad("--listener-key", "required with --listener-cert")),
            (None, Some(_)) => return Err(bad("--listener-cert", "required with --listener-key")),
        };

        let proxy_protocol_from = match proxy_protocol_from {
            None => Trusted::default(),
            Some(entries) => {
                let entries: Vec<&str> = entries
                    .iter()
                    .map(|e| e.trim())
                    .filter(|e| !e.is_empty())
                    .collect();
                if entries.is_empty() {
                    return Err(bad(
                        "--proxy-protocol-from",
                        "at least one CIDR block or address is needed",
                    ));
                }
                Trusted::parse(&entries).map_err(|e| bad("--proxy-protocol-from", e))?
            }
        };
        let bind_address = bind_address.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        if listener_tls.is_none() && !bind_address.is_loopback() && !allow_plaintext_listener {
            return Err(bad(
                "--bind-address",
                format!("{bind_address} is not a loopback address and the listeners are plaintext; pass --allow-plaintext-listener to accept that (e.g. on a tailnet), or set --listener-cert/--listener-key"),
            ));
        }
        if let Some(tls) = &listener_tls {
            if tls.client_ca.is_none()
                && !bind_address.is_loopback()
                && !allow_unauthenticated_tls_listener
            {
                return Err(bad(
                    "--bind-address",
                    format!("{bind_address} is not a loopback address and the TLS listener verifies no client certificate, so every client that reaches it acts with the proxy's client certificate; set --listener-client-ca to require client certificates, or pass --allow-unauthenticated-tls-listener to accept that"),
                ));
            }
        }
        let advertised_host = match advertised_host {
            Some(host) if host.trim().is_empty() => {
                return Err(bad("--advertised-host", "must not be empty"))
            }
            Some(host) => host,
            None if bind_address.is_unspecified() => {
                return Err(bad(
                    "--advertised-host",
                    format!("required when binding {bind_address}: clients need a name or address they can dial"),
                ))
            }
            None => bind_address.to_string(),
        };

        let bootstrap_port = bootstrap_port.unwrap_or(9092);
        if bootstrap_port == 0 {
            return Err(bad("--bootstrap-port", "must be 1..=65535"));
        }
        let mut reserved = vec![bootstrap_port];
        if let Some(admin) = admin_address {
            if admin.ip() == bind_address
                || admin.ip().is_unspecified()
                || bind_address.is_unspecified()
            {
                if admin.port() == bootstrap_port {
                    return Err(bad("--admin-address", "uses the bootstrap port"));
                }
                reserved.push(admin.port());
            }
        }
        let overrides = parse_broker_ports("--broker-port", &broker_port.unwrap_or_default())?;
        let ports = PortPlan {
            base: broker_port_base.unwrap_or(9100),
            overrides,
            reserved,
        };
        ports
            .validate()
            .map_err(|e| bad("--broker-port", e.to_string()))?;
        let max_brokers = match max_brokers {
            None => DEFAULT_MAX_BROKERS,
            Some(n) if (1..=MAX_MAX_BROKERS).contains(&n) => n,
            Some(n) => {
                return Err(bad(
                    "--max-brokers",
                    format!("{n} is outside 1..={MAX_MAX_BROKERS}"),
                ))
            }
        };
        let last_port = usize::from(ports.base) + max_brokers - 1;
        if last_port > usize::from(u16::MAX) {
            return Err(bad(
                "--max-brokers",
                format!(
                    "--broker-port-base {} + --max-brokers {max_brokers} - 1 = {last_port}, above 65535; lower --broker-port-base or --max-brokers",
                    ports.base
                ),
            ));
        }
        let policy = parse_policy("--policy", policy.as_deref())?;
        let identities = identities(
            identity,
            &IdentityContext {
                default_bootstrap: bootstrap_port,
                default_plan: &ports,
                max_brokers,
                upstream_ca: upstream_tls.as_ref().and_then(|t| t.ca.clone()),
                upstream_plaintext: upstream_tls.is_none(),
                default_auth: &upstream_auth,
                listener_verifies_clients: listener_tls
                    .as_ref()
                    .is_some_and(|l| l.client_ca.is_some()),
                tailnet: tailnet_identities,
            },
        )?;
        let upstream_host_patterns = match upstream_host_pattern {
            Some(patterns) => {
                let patterns: Vec<String> = patterns
                    .iter()
                    .map(|p| parse_host_pattern(p).map_err(|e| bad("--upstream-host-pattern", e)))
                    .collect::<Result<_, _>>()?;
                if patterns.is_empty() {
                    return Err(bad(
                        "--upstream-host-pattern",
                        "at least one pattern is needed",
                    ));
                }
                dedup(patterns)
            }
            None => default_host_patterns(&upstream)?,
        };

        let duration = |setting: &'static str, value: Option<String>, default: Duration| {
            value
                .map(|v| parse_duration(&v).map_err(|e| bad(setting, e)))
                .unwrap_or(Ok(default))
        };
        let positive = |setting: &'static str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(bad(setting, "must be greater than 0")),
            Some(v) if v > i32::MAX as usize => Err(bad(setting, "must fit a Kafka int32 length")),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let tailnet = if tailnet_identities {
            let capability = tailnet_capability
                .map(|c| c.trim().to_owned())
                .unwrap_or_else(|| crate::tailnet::DEFAULT_CAPABILITY.to_owned());
            if !capability.contains('/') || capability.contains(char::is_whitespace) {
                return Err(bad(
                    "--tailnet-capability",
                    format!("'{capability}' is not an application capability name (domain/path, e.g. example.com/cap/kafka)"),
                ));
            }
            let ttl = duration(
                "--tailnet-whois-ttl",
                tailnet_whois_ttl,
                Duration::from_secs(10),
            )?;
            Some(TailnetSettings {
                whois: crate::tailnet::WhoisSettings {
                    socket: tailscale_socket
                        .unwrap_or_else(|| crate::tailnet::DEFAULT_SOCKET.into()),
                    capability,
                    ttl,
                },
                unmatched_default: tailnet_unmatched_default,
            })
        } else {
            for (setting, given) in [
                ("--tailscale-socket", tailscale_socket.is_some()),
                ("--tailnet-capability", tailnet_capability.is_some()),
                ("--tailnet-whois-ttl", tailnet_whois_ttl.is_some()),
                ("--tailnet-unmatched-default", tailnet_unmatched_default),
            ] {
                if given {
                    return Err(bad(setting, "needs --tailnet-identities"));
                }
            }
            None
        };
        let connect_timeout = duration(
            "--connect-timeout",
            connect_timeout,
            Duration::from_secs(10),
        )?;
        if connect_timeout.is_zero() {
            return Err(bad("--connect-timeout", "must be greater than 0"));
        }

        Ok(Settings {
            bind_address,
            bootstrap_port,
            advertised_host,
            ports,
            policy,
            identities,
            max_brokers,
            upstream_host_patterns,
            upstream,
            upstream_tls,
            upstream_auth,
            listener_tls,
            proxy_protocol_from,
            tailnet,
            max_request_bytes: positive(
                "--max-request-bytes",
                max_request_bytes,
                DEFAULT_MAX_REQUEST_BYTES,
            )?,
            max_response_bytes: positive(
                "--max-response-bytes",
                max_response_bytes,
                DEFAULT_MAX_RESPONSE_BYTES,
            )?,
            connect_timeout,
            drain_timeout: duration("--drain-timeout", drain_timeout, Duration::from_secs(25))?,
            discovery_interval: duration(
                "--discovery-interval",
                discovery_interval,
                Duration::from_secs(10),
            )?,
            dns_cache_ttl: duration("--dns-cache-ttl", dns_cache_ttl, Duration::from_secs(30))?,
            max_buffered_bytes: match max_buffered_bytes {
                Some(n) if n < MIN_BUFFERED_BYTES => {
                    return Err(bad(
                        "--max-buffered-bytes",
                        format!("must be at least {MIN_BUFFERED_BYTES} (1 MiB)"),
                    ))
                }
                Some(n) if n > MAX_BUFFERED_BYTES => {
                    return Err(bad(
                        "--max-buffered-bytes",
                        format!("must be at most {MAX_BUFFERED_BYTES}"),
                    ))
                }
                Some(n) => n,
                None => DEFAULT_MAX_BUFFERED_BYTES,
            },
            max_connections: match max_connections {
                Some(0) => return Err(bad("--max-connections", "must be greater than 0")),
                Some(n) => n,
                None => DEFAULT_MAX_CONNECTIONS,
            },
            first_frame_timeout: nonzero(duration(
                "--first-frame-timeout",
                first_frame_timeout,
                Duration::from_secs(10),
            )?)
            .ok_or_else(|| bad("--first-frame-timeout", "must be greater than 0"))?,
            frame_timeout: nonzero(duration(
                "--frame-timeout",
                frame_timeout,
                Duration::from_secs(30),
            )?)
            .ok_or_else(|| bad("--frame-timeout", "must be greater than 0"))?,
            min_client_read_rate: min_client_read_rate.unwrap_or(DEFAULT_MIN_CLIENT_READ_RATE),
            client_idle_timeout: nonzero(duration(
                "--client-idle-timeout",
                client_idle_timeout,
                Duration::from_secs(600),
            )?)
            .ok_or_else(|| bad("--client-idle-timeout", "must be greater than 0"))?,
            bind_retry_timeout: duration(
                "--bind-retry-timeout",
                bind_retry_timeout,
                Duration::from_secs(60),
            )?,
            admin_address,
            log_format: log_format.unwrap_or_default(),
            log: log.unwrap_or_else(|| "info".into()),
        })
    }
}

impl Settings {
    /// The start-up warnings for every way these settings let clients act as the proxy's
    /// principal without proving who they are, one line each: plaintext to the brokers, a
    /// plaintext listener off loopback, a TLS listener without client certificates off
    /// loopback. The config accepts these only when asked to explicitly (or on loopback);
    /// the log must still say so at every start. Empty when nothing applies.
    pub fn unauthenticated_warnings(&self) -> Vec<String> {
        let listen = SocketAddr::new(self.bind_address, self.bootstrap_port);
        let exposed = !self.bind_address.is_loopback();
        let mut warnings = Vec::new();
        if self.upstream_tls.is_none() {
            warnings.push(format!(
                "--upstream-plaintext: the proxy talks plaintext to the brokers (no encryption, no client certificate), and every client that reaches {listen} and the broker ports acts as the proxy's principal"
            ));
        }
        match &self.listener_tls {
            None if exposed => warnings.push(format!(
                "plaintext listener on non-loopback {listen} and the broker ports (--allow-plaintext-listener): clients are not authenticated and their traffic is not encrypted by the proxy; every client that reaches the address acts as the proxy's principal"
            )),
            Some(tls) if exposed && tls.client_ca.is_none() => warnings.push(format!(
                "TLS listener on non-loopback {listen} and the broker ports verifies no client certificate (--allow-unauthenticated-tls-listener): every client that reaches the address acts as the proxy's principal; set --listener-client-ca to require client certificates"
            )),
            _ => {}
        }
        warnings
    }
}

/// The patterns used when --upstream-host-pattern is not given: the domain of each
/// --upstream host, so that the brokers of the cluster the operator named can be dialled and
/// nothing else. An IP address or a name with fewer than two dots stands for itself;
/// `first.rest` where `rest` has a dot becomes `*.rest`.
fn default_host_patterns(upstream: &[UpstreamAddr]) -> Result<Vec<String>, ConfigError> {
    let patterns = upstream
        .iter()
        .map(|addr| {
            let host = addr.host.as_str();
            let derived = match host.split_once('.') {
                Some((_, rest)) if host.parse::<IpAddr>().is_err() && rest.contains('.') => {
                    format!("*.{rest}")
                }
                _ => host.to_owned(),
            };
            parse_host_pattern(&derived).map_err(|e| {
                bad(
                    "--upstream-host-pattern",
                    format!("no default from --upstream host '{host}' ({e}); set --upstream-host-pattern"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(dedup(patterns))
}

fn dedup(patterns: Vec<String>) -> Vec<String> {
    let mut unique: Vec<String> = Vec::with_capacity(patterns.len());
    for pattern in patterns {
        if !unique.contains(&pattern) {
            unique.push(pattern);
        }
    }
    unique
}

fn check_readable(setting: &'static str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| bad(setting, format!("{}: {e}", path.display())))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
