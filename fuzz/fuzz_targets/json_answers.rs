//! The JSON the proxy reads from outside: tailscaled's whois answers (src/tailnet.rs `parse`,
//! for --tailnet-identities) and the broker's AWS_MSK_IAM SaslAuthenticate answer
//! (src/aws_iam.rs `check_answer`). The first input byte picks which; the rest is the body.
//!
//! Invariants: no panic; a whois answer accepted names a non-empty login, and every field it
//! keeps is within the bounds the proxy promises (each at most `MAX_FIELD_BYTES`, at most
//! `MAX_LIST` tags and granted identities); an IAM answer accepted is a JSON object whose
//! `version`, when present, is the payload's.
#![no_main]

use kafka_tls_proxy::aws_iam::{check_answer, PAYLOAD_VERSION};
use kafka_tls_proxy::tailnet::{parse, MAX_FIELD_BYTES, MAX_LIST};
use libfuzzer_sys::fuzz_target;

const CAPABILITY: &str = "example.com/cap/kafka-tls-proxy";

fuzz_target!(|input: &[u8]| {
    let Some((&which, body)) = input.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(peer) = parse(body, CAPABILITY) {
            assert!(!peer.login.is_empty());
            assert!(peer.login.len() <= MAX_FIELD_BYTES);
            assert!(peer.node.len() <= MAX_FIELD_BYTES);
            assert!(peer.tags.len() <= MAX_LIST && peer.granted.len() <= MAX_LIST);
            assert!(peer
                .tags
                .iter()
                .chain(&peer.granted)
                .all(|t| t.len() <= MAX_FIELD_BYTES));
        }
    } else if check_answer(body).is_ok() {
        let value: serde_json::Value = serde_json::from_slice(body).expect("accepted, so JSON");
        let object = value.as_object().expect("accepted, so an object");
        if let Some(version) = object.get("version") {
            assert_eq!(version.as_str(), Some(PAYLOAD_VERSION));
        }
    }
});
