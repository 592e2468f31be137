//! The PROXY protocol header reader (src/proxy_protocol.rs `read_header`, and through it
//! `progress` and `parse` with the `ppp` crate): the bytes a trusted balancer's connection
//! starts with, delivered in reads of at most N bytes (the first input byte chooses N).
//!
//! Invariants: no panic and no read past [`MAX_HEADER_BYTES`]; the reader never consumes a
//! byte after the header (what follows belongs to TLS or Kafka); the result does not depend on
//! how the bytes arrive (reads of 1 byte and of N agree on the outcome, and on the bytes
//! consumed when a header is accepted, and agree with `parse` of those bytes); an accepted header is one by the specification's framing (a v1 line of
//! 15..=107 bytes ending in CRLF, or a v2 header of 16 + its announced length, at most the
//! cap) whose client address is the one its bytes spell; a closed stream was consumed whole;
//! an oversized v2 header announced more than the cap.
#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use kafka_tls_proxy::proxy_protocol::{
    parse, read_header, Carried, HeaderError, MAX_HEADER_BYTES, MAX_V2_PAYLOAD,
};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

/// A stream that hands out its bytes in reads of at most `chunk`, and counts what was taken.
struct Chunked<'a> {
    bytes: &'a [u8],
    taken: usize,
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self
            .chunk
            .min(buf.remaining())
            .min(self.bytes.len() - self.taken);
        let start = self.taken;
        buf.put_slice(&self.bytes[start..start + n]);
        self.taken += n;
        Poll::Ready(Ok(()))
    }
}

/// `read_header` over `bytes` in reads of at most `chunk`: the result and the bytes consumed.
/// The stream never pends, so one poll completes it.
fn read(bytes: &[u8], chunk: usize) -> (Result<Carried, HeaderError>, usize) {
    let mut stream = Chunked {
        bytes,
        taken: 0,
        chunk,
    };
    let result = {
        let mut future = std::pin::pin!(read_header(&mut stream));
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(result) => result,
            Poll::Pending => panic!("read_header pended on a stream that never does"),
        }
    };
    (result, stream.taken)
}

use std::future::Future;

/// The same outcome, errors compared by kind and count.
fn same(a: &Result<Carried, HeaderError>, b: &Result<Carried, HeaderError>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(HeaderError::Closed(x)), Err(HeaderError::Closed(y))) => x == y,
        (Err(HeaderError::Oversized(x)), Err(HeaderError::Oversized(y))) => x == y,
        (Err(x), Err(y)) => x.outcome() == y.outcome(),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(control % 64);
    let (result, consumed) = read(stream, chunk);
    let (bytewise, consumed_bytewise) = read(stream, 1);
    assert!(consumed <= MAX_HEADER_BYTES, "read {consumed} bytes");
    // After a refusal the connection closes, so larger reads may have taken a few more bytes
    // of what was refused; an accepted header is always exactly its bytes.
    if result.is_ok() || bytewise.is_ok() {
        assert_eq!(
            consumed, consumed_bytewise,
            "consumed bytes depend on the reads"
        );
    }
    assert!(
        same(&result, &bytewise),
        "reads of {chunk}: {result:?}, of 1: {bytewise:?}"
    );
    let header = &stream[..consumed];
    match &result {
        Ok(carried) => {
            assert!(
                same(&result, &parse(header)),
                "parse of the consumed bytes differs"
            );
            if header.starts_with(b"PROXY ") {
                assert!((15..=107).contains(&header.len()) && header.ends_with(b"\r\n"));
                if let Carried::Client(addr) = carried {
                    let line = std::str::from_utf8(header).expect("an accepted v1 line is text");
                    let words: Vec<&str> = line.trim_end().split(' ').collect();
                    assert_eq!(words[2].parse::<IpAddr>().ok(), Some(addr.ip()), "{line:?}");
                    assert_eq!(words[4].parse::<u16>().ok(), Some(addr.port()), "{line:?}");
                }
            } else {
                assert!(header.len() >= 16);
                let announced = usize::from(u16::from_be_bytes([header[14], header[15]]));
                assert_eq!(header.len(), 16 + announced);
                assert!(announced <= MAX_V2_PAYLOAD);
                if let Carried::Client(addr) = carried {
                    assert_eq!(header[12] & 0x0f, 1, "a client address only from PROXY");
                    let want = match header[13] >> 4 {
                        1 => SocketAddr::new(
                            IpAddr::from(<[u8; 4]>::try_from(&header[16..20]).unwrap()),
                            u16::from_be_bytes([header[24], header[25]]),
                        ),
                        2 => SocketAddr::new(
                            IpAddr::from(<[u8; 16]>::try_from(&header[16..32]).unwrap()),
                            u16::from_be_bytes([header[48], header[49]]),
                        ),
                        family => panic!("a client address from family {family}"),
                    };
                    assert_eq!(*addr, want);
                }
            }
        }
        Err(HeaderError::Closed(n)) => {
            assert_eq!(*n, stream.len(), "closed before the end of the stream");
            assert_eq!(consumed, stream.len());
        }
        Err(HeaderError::Oversized(n)) => {
            assert!(*n > MAX_HEADER_BYTES || (header.starts_with(b"PROXY ") && *n == 107));
        }
        Err(_) => {}
    }
});
