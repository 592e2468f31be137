//! `kafka-tls-proxy check`: the diagnostic for an engineer's first day. It walks the path a
//! client's connection takes (certificates, TCP, TLS, SASL, ApiVersions, Metadata), says at which
//! step it breaks and what to do about it, and prints the broker table and client settings.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Settings;
use crate::resolve::Resolver;
use crate::sasl::{SaslError, UpstreamAuth};
use crate::tls::{self, certificate_info, TlsFailure, TlsLoadError};
use crate::upstream::{self, DiscoveredBroker, DiscoveryError, Stream, UpstreamError};

/// Runs every check and returns the report and whether all passed.
pub async fn run(settings: &Settings) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let _ = writeln!(out, "kafka-tls-proxy {} check\n", env!("CARGO_PKG_VERSION"));

    let config = match &settings.upstream_tls {
        None => {
            let _ = writeln!(
                out,
                "Certificates\n  upstream is plaintext (--upstream-plaintext): nothing to check\n"
            );
            None
        }
        Some(files) => {
            let _ = writeln!(out, "Certificates");
            match &files.client {
                Some(client) => {
                    describe_chain(&mut out, "client certificate", &client.cert, &mut ok)
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  client certificate: none (the proxy authenticates with {})",
                        settings.upstream_auth.name()
                    );
                }
            }
            match &files.ca {
                Some(ca) => describe_chain(&mut out, "trusted CAs", ca, &mut ok),
                None => {
                    let _ = writeln!(out, "  trusted CAs: the system roots (no --upstream-ca)");
                }
            }
            match tls::upstream_config(files) {
                Ok(config) => {
                    if let Some(client) = &files.client {
                        let _ = writeln!(
                            out,
                            "  private key {}: loaded, matches the certificate",
                            client.key.display()
                        );
                    }
                    let _ = writeln!(out);
                    Some(std::sync::Arc::new(config))
                }
                Err(e) => {
                    let _ = writeln!(out, "  FAIL {e}\n       fix: {}\n", load_advice(&e));
                    return (finish(out, false), false);
                }
            }
        }
    };

    if let Some(tailnet) = &settings.tailnet {
        check_tailnet(&mut out, &tailnet.whois, settings.connect_timeout, &mut ok).await;
    }

    let _ = writeln!(out, "Upstream brokers");
    let mut brokers: Option<Vec<DiscoveredBroker>> = None;
    // Every check resolves anew: it reports what the name resolves to now.
    let resolver = Resolver::new(Duration::ZERO);
    for addr in &settings.upstream {
        let started = Instant::now();
        let mut stream = match upstream::connect(
            addr,
            config.clone(),
            settings.connect_timeout,
            &resolver,
        )
        .await
        {
            Ok(stream) => stream,
            Err(e) => {
                ok = false;
                let _ = writeln!(
                    out,
                    "  {addr}: FAIL {e}\n       fix: {}",
                    connect_advice(&e)
                );
                continue;
            }
        };
        let mut line = format!(
            "  {addr}: connected in {} ms",
            started.elapsed().as_millis()
        );
        if let Stream::Client(tls) = &stream {
            let (_, session) = tls.get_ref();
            let version = session
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default();
            let peer = session
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(certificate_info)
                .map(|i| i.subject)
                .unwrap_or_default();
            let _ = write!(
                line,
                ", {version}, broker certificate {peer}, name verified"
            );
        }
        if settings.upstream_auth.is_sasl() {
            match upstream::authenticate(
                &mut stream,
                &settings.upstream_auth,
                &addr.host,
                settings.connect_timeout,
            )
            .await
            {
                Ok(session) => {
                    match &settings.upstream_auth {
                        UpstreamAuth::Scram(credentials) => {
                            let _ = write!(
                                line,
                                ", SASL {} as '{}': authenticated",
                                credentials.mechanism.name(),
                                credentials.username
                            );
                        }
                        UpstreamAuth::AwsMskIam(iam) => {
                            let _ = write!(
                                line,
                                ", SASL AWS_MSK_IAM (region {}{}): authenticated",
                                iam.region,
                                iam_who(iam).await
                            );
                        }
                        UpstreamAuth::Mtls => {}
                    }
                    if let Some(lifetime) = session.and_then(|s| s.lifetime) {
                        let _ = write!(
                            line,
                            " (session {lifetime:?}, renewed by the proxy before it ends)"
                        );
                    }
                }
                Err(e) => {
                    ok = false;
                    let _ = writeln!(
                        out,
                        "{line}\n  {addr}: FAIL SASL: {e}\n       fix: {}",
                        sasl_advice(&e)
                    );
                    continue;
                }
            }
        }
        match upstream::api_versions(&mut stream, settings.connect_timeout).await {
            Ok(versions) => {
                let _ = write!(line, ", ApiVersions: {} APIs", versions.api_keys.len());
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(
                    out,
                    "{line}\n  {addr}: FAIL ApiVersions: {e}\n       fix: {}",
                    request_advice(&e)
                );
                continue;
            }
        }
        match upstream::discover(&mut stream, settings.connect_timeout).await {
            Ok(found) => {
                let _ = writeln!(out, "{line}, Metadata: {} brokers", found.len());
                brokers.get_or_insert(found);
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(
                    out,
                    "{line}\n  {addr}: FAIL Metadata: {e}\n       fix: {}",
                    request_advice(&e)
                );
            }
        }
    }

    let Some(brokers) = brokers else {
        let _ = writeln!(out, "\nNo upstream broker answered; nothing more to check.");
        return (finish(out, false), false);
    };
    let _ = writeln!(
        out,
        "\nBrokers (clients reach each at {}:PORT)",
        settings.advertised_host
    );
    let _ = writeln!(
        out,
        "  {:>6}  {:<50}  {:<10}  proxy port",
        "node", "upstream", "rack"
    );
    for b in &brokers {
        let port = match settings.ports.port_for(b.node_id) {
            Ok(p) => p.to_string(),
            Err(e) => {
                ok = false;
                format!("FAIL {e}")
            }
        };
        let _ = writeln!(
            out,
            "  {:>6}  {:<50}  {:<10}  {port}",
            b.node_id,
            format!("{}:{}", b.host, b.port),
            b.rack.as_deref().unwrap_or("-")
        );
    }

    let bootstrap = format!("{}:{}", settings.advertised_host, settings.bootstrap_port);
    let (protocol, kcat_tls) = match &settings.listener_tls {
        None => ("PLAINTEXT", String::new()),
        Some(_) => (
            "SSL",
            " -X security.protocol=ssl -X ssl.ca.location=<CA of --listener-cert>".to_owned(),
        ),
    };
    let _ = writeln!(
        out,
        "\nClient settings (once the proxy runs with these options)\n  kcat:  kcat -b {bootstrap}{kcat_tls} -L\n  Java / librdkafka properties:\n    bootstrap.servers={bootstrap}\n    security.protocol={protocol}"
    );
    (finish(out, ok), ok)
}

/// Asks tailscaled's LocalAPI the way the proxy will (whois, here of 127.0.0.1, which is no
/// peer): an answer, "no peer" included, shows the socket reachable and whois permitted.
async fn check_tailnet(
    out: &mut String,
    whois: &crate::tailnet::WhoisSettings,
    timeout: Duration,
    ok: &mut bool,
) {
    use crate::tailnet::{Whois, WhoisError};
    let _ = writeln!(out, "Tailnet identities (--tailnet-identities)");
    let client = Whois::new(
        whois.clone(),
        crate::budget::Budget::new(crate::tailnet::MAX_ANSWER_BYTES),
    );
    let asked = client
        .lookup(
            std::net::Ipv4Addr::LOCALHOST.into(),
            Instant::now() + timeout,
        )
        .await;
    match asked {
        Ok(_) | Err(WhoisError::NotAPeer) => {
            let _ = writeln!(
                out,
                "  tailscaled's LocalAPI {}: answers whois; identities come from the capability {} and the tailnet rules\n",
                whois.socket.display(),
                whois.capability
            );
        }
        Err(e) => {
            *ok = false;
            let fix = match e {
                WhoisError::Unreachable { .. } | WhoisError::Timeout => {
                    "is tailscaled running, and is --tailscale-socket its socket (default /var/run/tailscale/tailscaled.sock)? In a container or a sandboxed unit, that path must be mounted in"
                }
                WhoisError::Status { .. } => {
                    "tailscaled refused this user its whois: run the proxy as a user tailscaled lets read (any local user by default)"
                }
                _ => "is --tailscale-socket tailscaled's LocalAPI socket, and not another service's?",
            };
            let _ = writeln!(out, "  FAIL {e}\n       fix: {fix}\n");
        }
    }
}

fn finish(mut out: String, ok: bool) -> String {
    let _ = writeln!(
        out,
        "\n{}",
        if ok {
            "All checks passed."
        } else {
            "Some checks FAILED (see above)."
        }
    );
    out
}

fn describe_chain(out: &mut String, what: &str, path: &std::path::Path, ok: &mut bool) {
    let chain = match tls::load_certs("certificate", path) {
        Ok(chain) => chain,
        Err(e) => {
            *ok = false;
            let _ = writeln!(out, "  {what}: FAIL {e}");
            return;
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let _ = writeln!(
        out,
        "  {what}: {} ({} certificate(s))",
        path.display(),
        chain.len()
    );
    for info in chain.iter().filter_map(certificate_info) {
        let days = (info.not_after - now) / 86_400;
        let state = if info.not_after < now {
            *ok = false;
            format!("EXPIRED {} days ago — renew it", -days)
        } else if info.not_before > now {
            *ok = false;
            "NOT YET VALID — check the clock".to_owned()
        } else if days < 30 {
            format!("expires in {days} days — renew soon")
        } else {
            format!("valid for {days} more days")
        };
        let _ = writeln!(
            out,
            "    subject {}\n    issuer  {}\n    {state}",
            info.subject, info.issuer
        );
    }
}

fn load_advice(e: &TlsLoadError) -> &'static str {
    match e {
        TlsLoadError::Read { .. } => "check the path and that this user may read the file",
        TlsLoadError::Parse { .. } => {
            "the file must be PEM (-----BEGIN ...-----); convert DER or PKCS#12 with openssl"
        }
        TlsLoadError::PassphraseMissing(_) => {
            "set --client-key-passphrase-file or KTP_CLIENT_KEY_PASSPHRASE"
        }
        TlsLoadError::Decrypt { .. } => {
            "the passphrase does not open the key; check --client-key-passphrase-file"
        }
        TlsLoadError::Config { .. } => "--client-key must be the private key of --client-cert",
    }
}

fn connect_advice(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Connect { .. } => {
            "check the host name and port (MSK mutual TLS is 9094, or 9194 over public access), DNS, security groups and the VPN route"
        }
        UpstreamError::Timeout { .. } => {
            "nothing answered: a security group or firewall probably drops the traffic, or the VPN route is missing"
        }
        UpstreamError::InvalidName { .. } => "use the broker's DNS name as --upstream",
        UpstreamError::Tls { failure, .. } => failure.advice(),
        UpstreamError::Sasl { source, .. } => sasl_advice(source),
    }
}

/// Which access key signed (not secret; names the credentials in AWS's own logs).
async fn iam_who(iam: &crate::aws_iam::IamAuth) -> String {
    match iam.credentials.credentials().await {
        Ok(c) => format!(", access key {}", c.access_key_id()),
        Err(_) => String::new(),
    }
}

fn sasl_advice(e: &SaslError) -> &'static str {
    match e {
        SaslError::Iam(crate::aws_iam::IamError::Credentials(_)) => {
            "the proxy found no AWS credentials: give the task a role (ECS task role, EKS/Nomad workload identity with AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, or an EC2 instance profile reachable over IMDSv2), or a profile in the shared config files"
        }
        SaslError::Iam(_) => "use the broker's DNS name as --upstream",
        SaslError::PasswordFile { .. } => {
            "check --sasl-password-file's path and that this user may read it"
        }
        SaslError::Mechanism { .. } => {
            "use the port of the mechanism: MSK's SASL/SCRAM port 9096 (SCRAM-SHA-512 only) with --upstream-auth scram-sha-512, or its IAM port 9098 with --upstream-auth aws-msk-iam"
        }
        SaslError::Refused { advice, .. } if *advice == crate::sasl::IAM_REFUSED => {
            "the broker refused the IAM signature: the credentials' role needs kafka-cluster:Connect on the cluster ARN in its IAM policy; a wrong --aws-region or a skewed clock also fail here (the broker's message above says which)"
        }
        SaslError::Refused { .. } => {
            "check --sasl-username and the password in --sasl-password-file; on MSK the secret must be associated with the cluster (AmazonMSK_ prefix, customer-managed KMS key)"
        }
        SaslError::Protocol(_) | SaslError::ServerSignature => {
            "the broker's SCRAM answers are not valid: is --upstream a Kafka SASL_SSL listener, and the same cluster the user was created on?"
        }
        SaslError::Transport(_) => {
            "the broker closed or stalled during SASL: is --upstream the SASL port (MSK: 9096 for SCRAM, 9098 for IAM)?"
        }
    }
}

fn request_advice(e: &DiscoveryError) -> &'static str {
    match e {
        // With TLS 1.3 the broker judges the client certificate after the handshake, so its
        // verdict arrives as an alert on the first read.
        DiscoveryError::Io(io) if TlsFailure::classify(io) != TlsFailure::Other => {
            TlsFailure::classify(io).advice()
        }
        DiscoveryError::Timeout => "the broker accepted the connection but did not answer: is this a Kafka listener, and the right port?",
        _ => "the broker closed the connection or answered something unexpected: is this the mutual-TLS listener (MSK: 9094)? check the cluster's logs",
    }
}
