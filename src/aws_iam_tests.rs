use super::*;

use std::sync::atomic::{AtomicU32, Ordering};

#[test]
fn regions_come_from_msk_broker_names() {
    let cases = [
        (
            "b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com",
            Some("eu-west-1"),
        ),
        (
            "B-3.MyCluster.ABC123.C12.Kafka.US-EAST-2.AmazonAWS.com.",
            Some("us-east-2"),
        ),
        (
            "b-2-public.mycluster.abc123.c2.kafka.ap-southeast-2.amazonaws.com",
            Some("ap-southeast-2"),
        ),
        (
            "boot-abcd1234.c2.kafka-serverless.us-west-2.amazonaws.com",
            Some("us-west-2"),
        ),
        (
            "b-1.mycluster.abc123.c2.kafka.cn-north-1.amazonaws.com.cn",
            Some("cn-north-1"),
        ),
        (
            "b-1.mycluster.abc123.c2.kafka.us-gov-west-1.amazonaws.com",
            Some("us-gov-west-1"),
        ),
        ("b-1.msk.test", None),
        ("localhost", None),
        ("127.0.0.1", None),
        // Another service's name, a name merely ending like one, a malformed region.
        ("sqs.eu-west-1.amazonaws.com", None),
        ("kafka.eu-west-1.amazonaws.com.evil.example", None),
        ("b-1.x.kafka.eu_west_1.amazonaws.com", None),
        ("b-1.x.kafka.1-2-3.amazonaws.com", None),
        ("kafka.amazonaws.com", None),
    ];
    for (host, want) in cases {
        assert_eq!(region_from_host(host).as_deref(), want, "{host}");
    }
    assert!(is_region("eu-central-1"));
    assert!(!is_region("eu-central"));
    assert!(!is_region("EU-west-1"));
    assert!(!is_region("e-west-1"));
}

fn time(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn fields(bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_slice(bytes).unwrap() {
        serde_json::Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// 2020-10-22T12:00:00Z.
const SIGNED_AT: u64 = 1_603_368_000;

#[test]
fn payload_has_the_shape_aws_msk_iam_auth_sends() {
    let host = "b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com";
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "test",
    );
    let f = fields(&payload(&creds, host, "eu-west-1", time(SIGNED_AT)).unwrap());
    let get = |k: &str| f.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    assert_eq!(get("version"), "2020_10_22");
    assert_eq!(get("host"), host);
    assert_eq!(get("action"), "kafka-cluster:Connect");
    assert!(get("user-agent").starts_with("kafka-tls-proxy/"));
    assert_eq!(get("x-amz-algorithm"), "AWS4-HMAC-SHA256");
    assert_eq!(
        get("x-amz-credential"),
        "AKIDEXAMPLE/20201022/eu-west-1/kafka-cluster/aws4_request"
    );
    assert_eq!(get("x-amz-date"), "20201022T120000Z");
    assert_eq!(get("x-amz-expires"), "900");
    assert_eq!(get("x-amz-signedheaders"), "host");
    let signature = get("x-amz-signature");
    assert_eq!(signature.len(), 64);
    assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!f.contains_key("x-amz-security-token"));
    // Nothing else, and never the secret.
    assert_eq!(f.len(), 10, "{f:?}");
    let text =
        String::from_utf8(payload(&creds, host, "eu-west-1", time(SIGNED_AT)).unwrap()).unwrap();
    assert!(!text.contains("wJalrXUtnFEMI"));

    // Session credentials add the token (signed, as the Java library does); the signature
    // changes with it, with the time and with the host.
    let session = Credentials::new(
        "ASIAEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("IQoJb3JpZ2luX2VjEXAMPLE/+=".into()),
        None,
        "test",
    );
    let g = fields(&payload(&session, host, "eu-west-1", time(SIGNED_AT)).unwrap());
    assert_eq!(
        g.get("x-amz-security-token").and_then(|v| v.as_str()),
        Some("IQoJb3JpZ2luX2VjEXAMPLE/+=")
    );
    assert_eq!(g.len(), 11);
    let sig = |c: &Credentials, h: &str, t: u64| {
        fields(&payload(c, h, "eu-west-1", time(t)).unwrap())["x-amz-signature"].clone()
    };
    assert_ne!(
        sig(&creds, host, SIGNED_AT),
        sig(&creds, host, SIGNED_AT + 1)
    );
    assert_ne!(
        sig(&creds, host, SIGNED_AT),
        sig(
            &creds,
            "b-2.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com",
            SIGNED_AT
        )
    );
    assert_eq!(sig(&creds, host, SIGNED_AT), sig(&creds, host, SIGNED_AT));
}

#[test]
fn answers_are_checked() {
    assert_eq!(
        check_answer(br#"{"version":"2020_10_22","request-id":"a1b2"}"#).unwrap(),
        Some("a1b2".to_owned())
    );
    assert_eq!(check_answer(b"{}").unwrap(), None);
    assert!(check_answer(br#"{"version":"2099_01_01"}"#).is_err());
    assert!(check_answer(b"[1]").is_err());
    assert!(check_answer(b"not json").is_err());
}

/// Counts its calls; each call hands out a new key expiring `life` from now.
#[derive(Debug)]
struct Rotating {
    calls: Arc<AtomicU32>,
    life: Option<Duration>,
}

impl ProvideCredentials for Rotating {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let life = self.life;
        aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
            format!("AKID{n}"),
            "secret",
            None,
            life.map(|l| SystemTime::now() + l),
            "test",
        )))
    }
}

#[tokio::test]
async fn credentials_are_cached_until_near_their_end() {
    // Six hours of life: fetched once, reused.
    let calls = Arc::new(AtomicU32::new(0));
    let source = CredentialSource::with_provider(
        "eu-west-1",
        Rotating {
            calls: calls.clone(),
            life: Some(Duration::from_secs(6 * 3600)),
        },
    );
    for _ in 0..5 {
        assert_eq!(source.credentials().await.unwrap().access_key_id(), "AKID1");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Static credentials never expire.
    let calls = Arc::new(AtomicU32::new(0));
    let source = CredentialSource::with_provider(
        "eu-west-1",
        Rotating {
            calls: calls.clone(),
            life: None,
        },
    );
    source.credentials().await.unwrap();
    source.credentials().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn credentials_near_their_end_are_stale() {
    let fetched = time(1_000_000);
    let cached = |life: u64| Cached {
        credentials: Credentials::new(
            "AKID",
            "s",
            None,
            Some(fetched + Duration::from_secs(life)),
            "t",
        ),
        fetched,
    };
    let at = |secs: u64| fetched + Duration::from_secs(secs);
    // Six hours: fetched again in the last five minutes.
    assert!(!stale(&cached(6 * 3600), at(6 * 3600 - 301)));
    assert!(stale(&cached(6 * 3600), at(6 * 3600 - 300)));
    // Twenty seconds: in the last quarter (five seconds).
    assert!(!stale(&cached(20), at(14)));
    assert!(stale(&cached(20), at(15)));
    // Expired.
    assert!(stale(&cached(20), at(21)));
}
