use super::*;

/// RFC 7677 §3: the SCRAM-SHA-256 example exchange, byte for byte.
#[test]
fn rfc7677_example() {
    let mut client = ScramClient::with_nonce(
        Mechanism::ScramSha256,
        "user",
        "rOprNGfwEbeRWgbNEkqO".into(),
    );
    assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let server_first =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    let client_final = client.client_final("pencil", server_first).unwrap();
    assert_eq!(
        String::from_utf8(client_final).unwrap(),
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    client
        .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        .unwrap();
    assert!(matches!(
        client.verify_server_final(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
        Err(SaslError::ServerSignature)
    ));
    assert!(matches!(
        client.verify_server_final(b"e=invalid-proof"),
        Err(SaslError::Refused { .. })
    ));
}

#[test]
fn hostile_server_first_messages_are_refused() {
    let first = |m: &str| {
        ScramClient::with_nonce(Mechanism::ScramSha512, "u", "abc".into())
            .client_final("p", m.as_bytes())
            .map(|_| ())
    };
    // The nonce must extend the client's.
    assert!(first("r=xyz123,s=QUJD,i=4096").is_err());
    assert!(first("r=abc,s=QUJD,i=4096").is_err());
    // Iterations outside Kafka's bounds (CPU cost a server could impose).
    assert!(first("r=abcdef,s=QUJD,i=100000000").is_err());
    assert!(first("r=abcdef,s=QUJD,i=1").is_err());
    assert!(first("r=abcdef,s=!!,i=4096").is_err());
    assert!(first("r=abcdef,i=4096").is_err());
    assert!(first("m=ext,r=abcdef,s=QUJD,i=4096").is_err());
    assert!(first("r=abcdef,s=QUJD,i=4096").is_ok());
}

#[test]
fn usernames_are_escaped() {
    let client = ScramClient::with_nonce(Mechanism::ScramSha512, "a=b,c", "n".into());
    assert_eq!(client.client_first(), b"n,,n=a=3Db=2Cc,r=n");
}

#[test]
fn clients_asking_for_sasl_get_an_error_answer() {
    let header = |api_key: ApiKey, api_version| RequestHeader {
        api_key: api_key as i16,
        api_version,
        correlation_id: 7,
    };
    let frame = client_answer(&header(ApiKey::SaslHandshake, 1))
        .unwrap()
        .unwrap();
    let decoded = SaslHandshakeResponse::decode(&mut frame.slice(8..), 1).unwrap();
    assert_eq!(frame.slice(4..8).as_ref(), 7i32.to_be_bytes());
    assert_eq!(decoded.error_code, UNSUPPORTED_SASL_MECHANISM);
    let frame = client_answer(&header(ApiKey::SaslAuthenticate, 2))
        .unwrap()
        .unwrap();
    // Response header v1: correlation id and an empty tagged-field section.
    let decoded = SaslAuthenticateResponse::decode(&mut frame.slice(9..), 2).unwrap();
    assert_eq!(decoded.error_code, ILLEGAL_SASL_STATE);
    assert_eq!(decoded.error_message.unwrap().as_str(), CLIENT_SASL_MESSAGE);
    assert!(client_answer(&header(ApiKey::SaslAuthenticate, 99))
        .unwrap()
        .is_none());
    assert!(client_answer(&header(ApiKey::Metadata, 1)).is_none());
}

/// A broker that enables AWS_MSK_IAM and answers the authentication with `auth`.
struct ScriptedBroker {
    auth: SaslAuthenticateResponse,
    sent: Vec<(ApiKey, Bytes)>,
}

impl Transport for ScriptedBroker {
    async fn round_trip<M: Message + Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &M,
    ) -> Result<Bytes, SaslError> {
        let mut body = bytes::BytesMut::new();
        request.encode(&mut body, version).unwrap();
        self.sent.push((key, body.freeze()));
        let mut out = bytes::BytesMut::new();
        // Correlation id, then (SaslAuthenticate v2: flexible) an empty tagged-field section.
        out.extend_from_slice(&1i32.to_be_bytes());
        match key {
            ApiKey::SaslHandshake => SaslHandshakeResponse::default()
                .with_mechanisms(vec![StrBytes::from_static_str("AWS_MSK_IAM")])
                .encode(&mut out, version)
                .unwrap(),
            _ => {
                out.extend_from_slice(&[0]);
                self.auth.encode(&mut out, version).unwrap()
            }
        }
        Ok(out.freeze())
    }
}

fn iam() -> UpstreamAuth {
    UpstreamAuth::AwsMskIam(IamAuth {
        region: "eu-west-1".into(),
        credentials: Arc::new(aws_iam::CredentialSource::with_provider(
            "eu-west-1",
            aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"),
        )),
    })
}

#[tokio::test]
async fn iam_refusals_surface_the_brokers_message() {
    let mut broker = ScriptedBroker {
        auth: SaslAuthenticateResponse::default()
            .with_error_code(58)
            .with_error_message(Some(StrBytes::from_static_str("[abc-123]: Access denied"))),
        sent: Vec::new(),
    };
    let host = "b-1.c.x.c2.kafka.eu-west-1.amazonaws.com";
    let err = authenticate(&mut broker, &iam(), host).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("(error 58): [abc-123]: Access denied"),
        "{text}"
    );
    assert!(text.contains("kafka-cluster:Connect"), "{text}");
    assert_eq!(err.reason(), "sasl_refused");
    // Handshake for AWS_MSK_IAM, then one SaslAuthenticate carrying the JSON payload.
    assert_eq!(broker.sent.len(), 2);
    let handshake = SaslHandshakeRequest::decode(&mut broker.sent[0].1.clone(), 1).unwrap();
    assert_eq!(handshake.mechanism.as_str(), "AWS_MSK_IAM");
    let auth = SaslAuthenticateRequest::decode(&mut broker.sent[1].1.clone(), 2).unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&auth.auth_bytes).unwrap();
    assert_eq!(payload["host"], host);
    assert_eq!(payload["action"], "kafka-cluster:Connect");
}

#[tokio::test]
async fn iam_sessions_last_what_the_broker_grants() {
    let mut broker = ScriptedBroker {
        auth: SaslAuthenticateResponse::default()
            .with_auth_bytes(Bytes::from_static(
                br#"{"version":"2020_10_22","request-id":"r-1"}"#,
            ))
            .with_session_lifetime_ms(15_000),
        sent: Vec::new(),
    };
    let session = authenticate(&mut broker, &iam(), "b-1.msk.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.lifetime, Some(Duration::from_secs(15)));
    assert_eq!(&*session.host, "b-1.msk.test");
    let renew = session.renew_at().unwrap() - session.started;
    assert_eq!(renew, Duration::from_millis(12_750));

    // An answer that is not MSK's JSON is a protocol error.
    broker.auth = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from_static(b"?"));
    let err = authenticate(&mut broker, &iam(), "b-1.msk.test")
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "sasl_protocol");
}
