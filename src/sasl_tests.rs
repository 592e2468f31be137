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
