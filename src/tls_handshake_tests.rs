//! In-memory handshakes against the listener configuration with an identity rule.

use super::*;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConnection, ServerConnection};

fn dev(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs-dev")
        .join(file)
}

/// The listener with client CA `ca.pem`, accepting only certificates whose CN is `readonly`.
fn server(with_rule: bool) -> Arc<ServerConfig> {
    let files = ListenerTlsFiles {
        cert: dev("proxy-server.pem"),
        key: dev("proxy-server.key"),
        client_ca: Some(dev("ca.pem")),
    };
    let rule = ClientRule(Arc::new(|cert| {
        common_name(cert).as_deref() == Some("readonly")
    }));
    Arc::new(listener_config_with(&files, with_rule.then_some(&rule)).unwrap())
}

/// A client presenting `who`'s certificate (signed by `ca.pem`).
fn client(who: &str) -> ClientConnection {
    let files = UpstreamTlsFiles::mutual(
        Some(dev("ca.pem")),
        dev(&format!("{who}.pem")),
        dev(&format!("{who}.key")),
        None,
    );
    let config = Arc::new(upstream_config(&files).unwrap());
    let name = ServerName::try_from("localhost").unwrap();
    ClientConnection::new(config, name).unwrap()
}

/// Runs the handshake (and a first exchange) in memory: the server's error and the client's.
fn handshake(
    mut c: ClientConnection,
    config: Arc<ServerConfig>,
) -> (Option<rustls::Error>, Option<rustls::Error>) {
    let mut s = ServerConnection::new(config).unwrap();
    let (mut server_err, mut client_err) = (None, None);
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            s.read_tls(&mut &buf[..]).unwrap();
            if let Err(e) = s.process_new_packets() {
                server_err.get_or_insert(e);
            }
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            c.read_tls(&mut &buf[..]).unwrap();
            if let Err(e) = c.process_new_packets() {
                client_err.get_or_insert(e);
            }
        }
        if server_err.is_some() && client_err.is_some() {
            break;
        }
    }
    (server_err, client_err)
}

#[test]
fn a_certificate_matching_no_identity_is_refused_in_the_handshake_with_access_denied() {
    let (server_err, client_err) = handshake(client("service"), server(true));
    assert_eq!(
        server_err,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure
        ))
    );
    assert_eq!(
        client_err,
        Some(rustls::Error::AlertReceived(AlertDescription::AccessDenied))
    );
}

#[test]
fn a_matching_certificate_and_listeners_without_a_rule_complete_the_handshake() {
    for (who, rule) in [("readonly", true), ("service", false)] {
        let (server_err, client_err) = handshake(client(who), server(rule));
        assert_eq!((server_err, client_err), (None, None), "{who}");
    }
}
