//! The PROXY protocol (v1 text, v2 binary): the header a TCP load balancer (HAProxy with
//! `send-proxy-v2`, an AWS NLB with `proxy_protocol_v2.enabled`) writes before the client's
//! first byte, naming the client's address. Behind such a balancer the socket's peer is the
//! balancer; the header's source address is the one logs, the audit log and every
//! address-based rule must name.
//!
//! Trust: a header is read only from a connection whose socket peer is in `--proxy-protocol-from`
//! ([`Trusted`]); a connection from anywhere else is never read as a header (its first bytes
//! are Kafka or a TLS ClientHello, and whatever it sends is not believed). A trusted source must
//! send a valid header (a missing or broken one closes the connection): otherwise any client
//! that can reach the proxy through the balancer's network position could be taken for the
//! balancer, or a misconfigured balancer would silently log its own address.
//!
//! Reading: [`read_header`] reads exactly the header's bytes and not one more, so what follows
//! (the TLS ClientHello, the first Kafka frame) is left in the socket for the next reader.
//! [`progress`] says from the bytes so far how many more to read (v1: up to the line feed, at
//! most 107 bytes; v2: 16 fixed bytes, then the length they announce, at most
//! [`MAX_V2_PAYLOAD`]); [`parse`] hands the complete header to the `ppp` crate and takes the
//! source address from it. The time allowed is the caller's (--first-frame-timeout).

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature: the first 12 bytes of every v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v2: signature, version/command, family/protocol, 2-byte length.
const V2_FIXED: usize = 16;
/// Most bytes of addresses and TLVs a v2 header may announce. An IPv6 address block is 36
/// bytes, a Unix one 216; HAProxy's and AWS's TLVs (unique id, VPC endpoint id, TLS details)
/// are tens of bytes each. A header announcing more (up to 65535 is encodable) is refused
/// rather than read.
pub const MAX_V2_PAYLOAD: usize = 1024;
/// v1: the longest header the specification allows, CRLF included.
const V1_MAX: usize = 107;
/// v1: the shortest header, `PROXY UNKNOWN\r\n`.
const V1_MIN: usize = 15;
/// The most bytes [`read_header`] holds: a v2 header at its cap.
pub const MAX_HEADER_BYTES: usize = V2_FIXED + MAX_V2_PAYLOAD;

/// The addresses a trusted balancer connects from (`--proxy-protocol-from`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted(Vec<ipnet::IpNet>);

impl Trusted {
    /// Parses CIDR blocks (`10.0.0.0/16`, `fd00::/8`) or single addresses (`10.0.1.5`);
    /// the error names the entry at fault.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let nets = entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("'{entry}' is not a CIDR block or an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(nets))
    }

    /// True when no source is trusted: no connection is read for a header.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether connections from `peer` must start with a PROXY header. An IPv4 peer on a
    /// dual-stack socket (`::ffff:10.0.1.5`) is matched as its IPv4 address.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|net| net.contains(&peer))
    }

    /// The blocks, for the start-up log line.
    pub fn blocks(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// What a valid header says of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// A proxied connection from this client address (v1 TCP4/TCP6, v2 PROXY with an IPv4 or
    /// IPv6 address block).
    Client(SocketAddr),
    /// No client address: a v2 LOCAL command (the balancer's own connection, e.g. a health
    /// check), v1 UNKNOWN, or a v2 PROXY with an unspecified or Unix address family. The
    /// socket's own peer address stands.
    Local,
}

/// Why a trusted source's connection was closed before anything else was read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The first bytes are neither a v1 nor a v2 header.
    #[error("the first bytes are not a PROXY protocol header (is the balancer sending one? HAProxy: send-proxy-v2; AWS NLB: proxy_protocol_v2.enabled)")]
    NotAHeader,
    /// A v2 header announced more address and TLV bytes than [`MAX_V2_PAYLOAD`], or a v1
    /// line did not end within 107 bytes.
    #[error("PROXY protocol header too long: {0} bytes (v1: at most 107, v2: at most {MAX_HEADER_BYTES})")]
    Oversized(usize),
    /// The header's bytes were complete but invalid.
    #[error("invalid PROXY protocol header: {0}")]
    Malformed(String),
    /// The connection ended before the header was complete.
    #[error("connection closed after {0} bytes, before the PROXY protocol header was complete")]
    Closed(usize),
    /// Reading failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

impl HeaderError {
    /// The `outcome` label of `kafka_proxy_proxy_protocol_headers_total` (a fixed set).
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::NotAHeader => "not_a_header",
            Self::Oversized(_) => "oversized",
            Self::Malformed(_) => "malformed",
            Self::Closed(_) => "closed",
            Self::Io(_) => "io_error",
        }
    }
}

/// What [`progress`] says of the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Read exactly this many more bytes (never past the header's end).
    Need(usize),
    /// `buf` holds one whole header, and nothing after it.
    Complete,
}

/// From the bytes read so far (`buf`, which [`read_header`] only ever extends by what the
/// previous call asked for), how many more belong to the header, or why it cannot be one.
pub fn progress(buf: &[u8]) -> Result<Progress, HeaderError> {
    match buf.first() {
        None => Ok(Progress::Need(V1_MIN)),
        Some(b'P') => {
            let prefix = b"PROXY ";
            let n = buf.len().min(prefix.len());
            if buf[..n] != prefix[..n] {
                return Err(HeaderError::NotAHeader);
            }
            if buf.len() < V1_MIN {
                return Ok(Progress::Need(V1_MIN - buf.len()));
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(end) if end + 1 == buf.len() => Ok(Progress::Complete),
                // A line feed inside the shortest possible header: the line was shorter.
                Some(_) => Err(HeaderError::Malformed("v1 line ends too early".into())),
                None if buf.len() >= V1_MAX => Err(HeaderError::Oversized(buf.len())),
                None => Ok(Progress::Need(1)),
            }
        }
        Some(b'\r') => {
            let n = buf.len().min(V2_SIGNATURE.len());
            if buf[..n] != V2_SIGNATURE[..n] {
                return Err(HeaderError::NotAHeader);
            }
            if buf.len() < V2_FIXED {
                return Ok(Progress::Need(V2_FIXED - buf.len()));
            }
            let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            if payload > MAX_V2_PAYLOAD {
                return Err(HeaderError::Oversized(V2_FIXED + payload));
            }
            let total = V2_FIXED + payload;
            match total.checked_sub(buf.len()) {
                Some(0) => Ok(Progress::Complete),
                Some(more) => Ok(Progress::Need(more)),
                None => Err(HeaderError::Malformed(
                    "more bytes than the header announces".into(),
                )),
            }
        }
        Some(_) => Err(HeaderError::NotAHeader),
    }
}

/// Parses one complete header (as [`progress`] delimits it) with the `ppp` crate. Every TLV of
/// a v2 PROXY header must be well-formed (their contents are not used); a LOCAL header's
/// address block and TLVs are ignored, as the specification says.
pub fn parse(header: &[u8]) -> Result<Carried, HeaderError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(HeaderError::Oversized(header.len()));
    }
    if header.starts_with(V2_SIGNATURE) {
        let parsed =
            ppp::v2::Header::try_from(header).map_err(|e| HeaderError::Malformed(e.to_string()))?;
        if parsed.len() != header.len() {
            return Err(HeaderError::Malformed(
                "more bytes than the header announces".into(),
            ));
        }
        if parsed.command == ppp::v2::Command::Proxy {
            for tlv in parsed.tlvs() {
                tlv.map_err(|e| HeaderError::Malformed(e.to_string()))?;
            }
        }
        return Ok(match (parsed.command, parsed.addresses) {
            (ppp::v2::Command::Local, _) => Carried::Local,
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                Carried::Client(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                Carried::Client(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            (ppp::v2::Command::Proxy, _) => Carried::Local,
        });
    }
    if header.starts_with(b"PROXY ") {
        // ppp also takes a line ending in " \n"; the specification says CRLF.
        if !header.ends_with(b"\r\n") {
            return Err(HeaderError::Malformed(
                "v1 line does not end in CRLF".into(),
            ));
        }
        let parsed =
            ppp::v1::Header::try_from(header).map_err(|e| HeaderError::Malformed(e.to_string()))?;
        if parsed.header.len() != header.len() {
            return Err(HeaderError::Malformed(
                "bytes after the v1 line's CRLF".into(),
            ));
        }
        return Ok(match parsed.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Carried::Client(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Carried::Client(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Unknown => Carried::Local,
        });
    }
    Err(HeaderError::NotAHeader)
}

/// Reads one header from `stream`, exactly its bytes, and parses it. Every read is checked
/// at once (a TLS ClientHello or a Kafka frame is refused at its first bytes, not after
/// waiting for 15 of them). The caller bounds the time (--first-frame-timeout).
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Carried, HeaderError> {
    let mut buf = [0u8; MAX_HEADER_BYTES];
    let mut len = 0;
    loop {
        match progress(&buf[..len])? {
            Progress::Complete => return parse(&buf[..len]),
            Progress::Need(more) => {
                // `progress` never asks past MAX_HEADER_BYTES; checked all the same.
                let end = len
                    .checked_add(more)
                    .filter(|end| *end <= buf.len())
                    .ok_or(HeaderError::Oversized(len.saturating_add(more)))?;
                match stream.read(&mut buf[len..end]).await? {
                    0 => return Err(HeaderError::Closed(len)),
                    n => len += n,
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
