//! Unit tests of src/identity.rs: which identity a tailnet peer acts as.

use std::collections::BTreeSet;

use super::*;

fn identities(rules: &[(&str, &[&str], &[&str])]) -> Identities {
    let tls = Arc::new(TlsState::load(None, None).unwrap());
    let identity = |name: &str, logins: &[&str], tags: &[&str]| Identity {
        name: name.into(),
        tls: tls.clone(),
        auth: UpstreamAuth::Mtls,
        policy: Policy::Full,
        client_match: CertMatch::default(),
        tailnet_match: TailnetMatch {
            logins: logins.iter().map(|s| s.to_string()).collect(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
        },
        api_metrics: ApiMetrics::new(name),
    };
    let mut all = vec![identity("default", &[], &[])];
    all.extend(rules.iter().map(|(n, l, t)| identity(n, l, t)));
    // "owned" has ports of its own.
    let owned = all.iter().position(|i| i.name == "owned");
    let sets = owned
        .map(|identity| ListenerSet {
            bootstrap_port: 19192,
            plan: PortPlan {
                base: 19200,
                overrides: Default::default(),
                reserved: Default::default(),
            },
            identity,
        })
        .into_iter()
        .collect();
    Identities {
        all,
        sets,
        by_certificate: false,
    }
}

fn peer(login: &str, tags: &[&str], granted: &[&str]) -> Peer {
    Peer {
        login: login.into(),
        node: "laptop".into(),
        tags: tags.iter().map(|s| s.to_string()).collect(),
        granted: granted
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
    }
}

const CAP: &str = "example.com/cap/kafka";

#[test]
fn the_grant_decides_then_rules_in_order_then_nothing() {
    let ids = identities(&[
        ("reporting", &[], &[]),
        ("people", &["*@example.com"], &[]),
        ("alice", &["alice@example.com"], &[]),
        ("ci", &[], &["tag:ci"]),
    ]);
    let choose = |p: &Peer, fallback| ids.choose_on_tailnet(p, CAP, fallback);
    // The capability's grant wins over any rule.
    assert_eq!(
        choose(&peer("alice@example.com", &[], &["reporting"]), false).unwrap(),
        1
    );
    assert_eq!(
        choose(&peer("x@y", &[], &["default"]), false).unwrap(),
        DEFAULT
    );
    // Rules in file order: the first match.
    assert_eq!(
        choose(&peer("alice@example.com", &[], &[]), false).unwrap(),
        2
    );
    assert_eq!(choose(&peer("runner", &["tag:ci"], &[]), false).unwrap(), 4);
    // Nothing names the peer: refused, naming it, unless the default is allowed.
    let e = choose(&peer("eve@evil.example", &[], &[]), false).unwrap_err();
    assert!(matches!(e, Unmatched::TailnetNoMatch { .. }));
    assert!(e.to_string().contains("eve@evil.example on laptop"), "{e}");
    assert_eq!(
        choose(&peer("eve@evil.example", &[], &[]), true).unwrap(),
        DEFAULT
    );
    // A grant of an identity not configured here, or of two, is refused even with the fallback.
    let e = choose(&peer("a@example.com", &[], &["nope"]), true).unwrap_err();
    assert!(e.to_string().contains("'nope'"), "{e}");
    let e = choose(&peer("a@example.com", &[], &["ci", "reporting"]), true).unwrap_err();
    assert!(matches!(e, Unmatched::TailnetAmbiguous { .. }), "{e}");
}

#[test]
fn no_grant_or_rule_gives_an_identity_with_ports_of_its_own() {
    let ids = identities(&[
        ("owned", &["*@example.com"], &[]),
        ("people", &["*@example.com"], &[]),
    ]);
    let e = ids
        .choose_on_tailnet(&peer("a@example.com", &[], &["owned"]), CAP, true)
        .unwrap_err();
    assert!(matches!(e, Unmatched::TailnetUnknown { .. }), "{e}");
    // Its rule is passed over for the next identity's.
    assert_eq!(
        ids.choose_on_tailnet(&peer("a@example.com", &[], &[]), CAP, false)
            .unwrap(),
        2
    );
}
