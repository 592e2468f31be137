use super::*;

/// A v2 header built byte by byte from the specification (section 2.2), not by `ppp`.
fn v2(command: u8, family_protocol: u8, block: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20 | command);
    h.push(family_protocol);
    h.extend_from_slice(&(block.len() as u16).to_be_bytes());
    h.extend_from_slice(block);
    h
}

const PROXY: u8 = 1;
const LOCAL: u8 = 0;
const TCP4: u8 = 0x11;
const TCP6: u8 = 0x21;
const UNSPEC: u8 = 0x00;

fn ipv4_block() -> Vec<u8> {
    // 203.0.113.7:51234 → 10.0.1.21:9092
    let mut b = vec![203, 0, 113, 7, 10, 0, 1, 21];
    b.extend_from_slice(&51234u16.to_be_bytes());
    b.extend_from_slice(&9092u16.to_be_bytes());
    b
}

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut t = vec![kind];
    t.extend_from_slice(&(value.len() as u16).to_be_bytes());
    t.extend_from_slice(value);
    t
}

/// Reads `input` the way a connection does: through `read_header` on a stream that then still
/// holds what followed the header.
fn read(input: &[u8]) -> (Result<Carried, HeaderError>, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut stream = input;
        let result = read_header(&mut stream).await;
        (result, stream.to_vec())
    })
}

fn client(addr: &str) -> Carried {
    Carried::Client(addr.parse().unwrap())
}

#[test]
fn v1_tcp4_and_tcp6_carry_the_source_address_and_leave_what_follows() {
    let kafka = b"\0\0\0\x15rest of a kafka frame";
    for (line, want) in [
        (
            "PROXY TCP4 203.0.113.7 10.0.1.21 51234 9092\r\n",
            "203.0.113.7:51234",
        ),
        (
            "PROXY TCP6 2001:db8::7 2001:db8::15 51234 9092\r\n",
            "[2001:db8::7]:51234",
        ),
        (
            // The longest v1 line: 107 bytes.
            "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        ),
    ] {
        let mut input = line.as_bytes().to_vec();
        input.extend_from_slice(kafka);
        let (result, rest) = read(&input);
        assert_eq!(result.unwrap(), client(want), "{line:?}");
        assert_eq!(rest, kafka, "exactly the header was read: {line:?}");
    }
}

#[test]
fn v1_unknown_means_the_socket_address() {
    for line in ["PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"] {
        let mut input = line.as_bytes().to_vec();
        input.extend_from_slice(b"\x16\x03\x01");
        let (result, rest) = read(&input);
        assert_eq!(result.unwrap(), Carried::Local, "{line:?}");
        assert_eq!(rest, b"\x16\x03\x01", "a TLS ClientHello stays unread");
    }
}

#[test]
fn v1_malformed_lines_are_refused() {
    for line in [
        "PROXY TCP4 203.0.113.7 10.0.1.21 51234\r\n", // a port missing
        "PROXY TCP4 2001:db8::7 10.0.1.21 51234 9092\r\n", // IPv6 under TCP4
        "PROXY TCP4 203.0.113.7 10.0.1.21 051234 9092\r\n", // leading zero
        "PROXY TCP4 203.0.113.7 10.0.1.21 65536 9092\r\n", // port out of range
        "PROXY UDP4 203.0.113.7 10.0.1.21 1 2\r\n",
        "PROXY TCP4 203.0.113.7 10.0.1.21 1 2\n", // LF without CR
        "PROXY UNKNOWN\n\r\n",                    // the line ends too early
        "PROXY TCP4 203.0.113.7 10.0.1.21 1 2 \n", // found by the fuzzer: ppp takes it
    ] {
        let (result, _) = read(line.as_bytes());
        assert!(
            matches!(result, Err(HeaderError::Malformed(_))),
            "{line:?}: {result:?}"
        );
    }
}

#[test]
fn v2_tcp4_and_tcp6_carry_the_source_address() {
    let (result, rest) = read(&[v2(PROXY, TCP4, &ipv4_block()), b"next".to_vec()].concat());
    assert_eq!(result.unwrap(), client("203.0.113.7:51234"));
    assert_eq!(rest, b"next");

    let mut block = Vec::new();
    block.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    block.extend_from_slice(
        &"2001:db8::15"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    block.extend_from_slice(&443u16.to_be_bytes());
    block.extend_from_slice(&9092u16.to_be_bytes());
    let (result, rest) = read(&[v2(PROXY, TCP6, &block), b"next".to_vec()].concat());
    assert_eq!(result.unwrap(), client("[2001:db8::7]:443"));
    assert_eq!(rest, b"next");
}

#[test]
fn v2_local_and_unspecified_mean_the_socket_address() {
    // LOCAL: the balancer's own connection (health checks); any block is ignored.
    for header in [
        v2(LOCAL, UNSPEC, &[]),
        v2(LOCAL, TCP4, &ipv4_block()),
        v2(PROXY, UNSPEC, &[]),
        v2(PROXY, UNSPEC, &[1, 2, 3]),
    ] {
        let (result, rest) = read(&[header.clone(), b"x".to_vec()].concat());
        assert_eq!(result.unwrap(), Carried::Local, "{header:x?}");
        assert_eq!(rest, b"x");
    }
}

#[test]
fn v2_tlvs_are_skipped_when_well_formed_and_refused_when_not() {
    // PP2_TYPE_UNIQUE_ID (0x05), AWS's VPC endpoint id (0xEA), a NOOP (0x04).
    let mut block = ipv4_block();
    block.extend(tlv(0x05, b"haproxy-unique-id-1"));
    block.extend(tlv(0xEA, b"\x01vpce-0123456789abcdef"));
    block.extend(tlv(0x04, &[]));
    let (result, rest) = read(&[v2(PROXY, TCP4, &block), b"k".to_vec()].concat());
    assert_eq!(result.unwrap(), client("203.0.113.7:51234"));
    assert_eq!(rest, b"k");

    // A TLV whose length runs past the header's end, and two stray bytes.
    for bad in [
        [ipv4_block(), vec![0x05, 0, 10, b'a']].concat(),
        [ipv4_block(), vec![0x05, 0]].concat(),
    ] {
        let (result, _) = read(&v2(PROXY, TCP4, &bad));
        assert!(
            matches!(result, Err(HeaderError::Malformed(_))),
            "{result:?}"
        );
    }
}

#[test]
fn v2_invalid_fields_are_refused() {
    let mut wrong_version = v2(PROXY, TCP4, &ipv4_block());
    wrong_version[12] = 0x11;
    let mut wrong_command = v2(PROXY, TCP4, &ipv4_block());
    wrong_command[12] = 0x2F;
    let wrong_family = v2(PROXY, 0x41, &ipv4_block());
    let short_block = v2(PROXY, TCP6, &ipv4_block()); // 12 bytes where IPv6 needs 36
    for header in [wrong_version, wrong_command, wrong_family, short_block] {
        let (result, _) = read(&header);
        assert!(
            matches!(result, Err(HeaderError::Malformed(_))),
            "{header:x?}: {result:?}"
        );
    }
}

#[test]
fn truncated_headers_are_closed_connections() {
    let full_v1 = b"PROXY TCP4 203.0.113.7 10.0.1.21 51234 9092\r\n".to_vec();
    let full_v2 = v2(PROXY, TCP4, &ipv4_block());
    for full in [full_v1, full_v2] {
        for cut in 1..full.len() {
            let (result, _) = read(&full[..cut]);
            assert!(
                matches!(result, Err(HeaderError::Closed(n)) if n == cut),
                "cut at {cut} of {}: {result:?}",
                full.len()
            );
        }
    }
}

#[test]
fn oversized_headers_are_refused_without_reading_them() {
    // A v2 header announcing more than the cap: refused after its 16 fixed bytes.
    let mut fixed = v2(PROXY, TCP4, &[]);
    let announced = MAX_V2_PAYLOAD + 1;
    fixed[14..16].copy_from_slice(&(announced as u16).to_be_bytes());
    let mut input = fixed.clone();
    input.extend(vec![0u8; announced]);
    let (result, rest) = read(&input);
    assert!(
        matches!(result, Err(HeaderError::Oversized(n)) if n == V2_FIXED + announced),
        "{result:?}"
    );
    assert_eq!(
        rest.len(),
        announced,
        "nothing after the fixed part was read"
    );
    fixed[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(matches!(read(&fixed).0, Err(HeaderError::Oversized(_))));

    // At the cap exactly: read (an IPv4 block, then one NOOP TLV filling the rest).
    let mut block = ipv4_block();
    block.extend(tlv(0x04, &vec![0u8; MAX_V2_PAYLOAD - 12 - 3]));
    assert_eq!(
        read(&v2(PROXY, TCP4, &block)).0.unwrap(),
        client("203.0.113.7:51234")
    );

    // A v1 line without a line feed within 107 bytes.
    let long = format!("PROXY TCP4 {}", "1".repeat(200));
    let (result, rest) = read(long.as_bytes());
    assert!(
        matches!(result, Err(HeaderError::Oversized(107))),
        "{result:?}"
    );
    assert_eq!(rest.len(), long.len() - 107);
}

#[test]
fn anything_else_is_not_a_header() {
    // A Kafka ApiVersions request and a TLS ClientHello, as a client that talks to the proxy
    // directly (not through the balancer) sends them; an HTTP request; a near miss of each.
    for input in [
        &b"\0\0\0\x21\0\x12\0\x03\0\0\0\x01\0\x09rdkafka"[..],
        b"\x16\x03\x01\x02\0\x01\0\x01\xfc\x03\x03",
        b"GET /readyz HTTP/1.1\r\n\r\n",
        b"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"\r\n\r\n\0\r\nQUIZ\n\x21\x11\0\x0c",
    ] {
        let (result, _) = read(input);
        assert!(
            matches!(result, Err(HeaderError::NotAHeader)),
            "{input:x?}: {result:?}"
        );
    }
}

#[test]
fn progress_never_asks_past_the_header() {
    let header = v2(PROXY, TCP4, &ipv4_block());
    let mut len = 0;
    let mut steps = vec![];
    while let Progress::Need(n) = progress(&header[..len]).unwrap() {
        steps.push(n);
        len += n;
        assert!(len <= header.len());
    }
    assert_eq!(len, header.len());
    assert_eq!(steps, [V1_MIN, 1, 12]);
    assert!(matches!(
        progress(&[header.clone(), vec![0]].concat()),
        Err(HeaderError::Malformed(_))
    ));
}

#[test]
fn trusted_sources_are_cidr_blocks_or_addresses() {
    let t = Trusted::parse(&["10.0.0.0/16", "192.0.2.7", "fd00::/8", " 10.9.9.9/8 "]).unwrap();
    for (peer, trusted) in [
        ("10.0.255.1", true),
        ("10.1.0.1", true), // 10.9.9.9/8 is 10.0.0.0/8
        ("192.0.2.7", true),
        ("192.0.2.8", false),
        ("::ffff:10.0.0.1", true), // an IPv4 client of a dual-stack listener
        ("fd12::1", true),
        ("fe80::1", false),
        ("127.0.0.1", false),
    ] {
        assert_eq!(t.contains(peer.parse().unwrap()), trusted, "{peer}");
    }
    assert_eq!(t.blocks()[3], "10.0.0.0/8");
    assert!(Trusted::parse(&["10.0.0.0/33"]).is_err());
    assert!(Trusted::parse(&["balancer.internal"])
        .unwrap_err()
        .contains("balancer.internal"));
    assert!(Trusted::default().is_empty());
    assert!(!Trusted::default().contains("10.0.0.1".parse().unwrap()));
}
