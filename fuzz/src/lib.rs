//! What the fuzz targets (`fuzz_targets/`) and the seed generator (`examples/seeds.rs`) share:
//! how a target reads its input, so that the seeds are written in exactly that format, and the
//! fixed address mapper.
//!
//! Input formats (one per target):
//!
//! - `frames`: [`FramesInput`]: two control bytes (reader limit, read mode, how the stream is
//!   cut into reads), then the byte stream a peer sends.
//! - `rewrite`, `node_endpoints`, `api_versions`, `scrub`: [`split_keyed`]: one byte selecting the api key
//!   from the target's list, one byte for the version (as `i8`), then the response payload
//!   (response header + body, no length prefix), as `kafka::inspect_response` gets it.
//! - `own_responses`: one byte selecting the request the proxy sent (see [`OWN_REQUESTS`]),
//!   then the bytes the broker answered, length prefix included.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use kafka_tls_proxy::kafka::scrub::{self, Needle, Scrubber};
use kafka_tls_proxy::kafka::{rewrite, AddressMapper, Advertised, MapError};

/// The host every broker and controller is mapped to by [`FixedMapper`].
pub const PROXY_HOST: &str = "proxy.local";
/// The port every broker is mapped to. Its big-endian bytes (00 00 23 84) hold no host name
/// character, which the leak check of the `rewrite` target relies on.
pub const PROXY_PORT: i32 = 9092;
/// The port every controller is mapped to (fits DescribeQuorum's uint16; bytes 23 85).
pub const CONTROLLER_PORT: i32 = 9093;

/// Maps every broker to `PROXY_HOST:PROXY_PORT` and every controller to
/// `PROXY_HOST:CONTROLLER_PORT`, remembering the hosts it was asked about.
#[derive(Debug, Default)]
pub struct FixedMapper {
    /// `(node id, host)` of every `map_broker` and `map_controller` call, in order.
    pub asked: Vec<(i32, String)>,
}

impl AddressMapper for FixedMapper {
    fn map_broker(&mut self, node_id: i32, host: &str, _port: i32) -> Result<Advertised, MapError> {
        self.asked.push((node_id, host.to_owned()));
        Ok(Advertised {
            host: StrBytes::from_static_str(PROXY_HOST),
            port: PROXY_PORT,
        })
    }

    fn map_controller(&mut self, node_id: i32, host: &str, _port: i32) -> Advertised {
        self.asked.push((node_id, host.to_owned()));
        Advertised {
            host: StrBytes::from_static_str(PROXY_HOST),
            port: CONTROLLER_PORT,
        }
    }
}

/// Api keys of the `rewrite` target: ApiVersions, then every API whose responses carry broker
/// addresses (`rewrite::INSPECTED`, so a new entry there is fuzzed without a change here).
pub fn rewrite_keys() -> Vec<i16> {
    std::iter::once(ApiKey::ApiVersions as i16)
        .chain(rewrite::INSPECTED.iter().map(|i| i.key as i16))
        .collect()
}

/// Api keys of the `scrub` target: every API whose responses carry free text
/// (`scrub::TEXT_CARRYING`, so a new entry there is fuzzed without a change here).
pub fn scrub_keys() -> Vec<i16> {
    scrub::TEXT_CARRYING.iter().map(|t| t.key as i16).collect()
}

/// The upstream hosts of the `scrub` target's scrubber, each on port 9094 (proxied at 30001+i).
pub const SCRUB_HOSTS: [&str; 4] = ["b-1.msk.test", "b-2.msk.test", "127.0.0.11", "10.0.0.2"];

/// The scrubber of the `scrub` target: [`SCRUB_HOSTS`] → [`PROXY_HOST`].
pub fn scrubber() -> Scrubber {
    Scrubber::new(
        PROXY_HOST,
        SCRUB_HOSTS.iter().enumerate().map(|(i, h)| Needle {
            host: (*h).to_owned(),
            port: Some((9094, 30001 + i as u16)),
        }),
    )
}

/// Api keys of the `node_endpoints` target: the responses checked for `node_endpoints` without
/// decoding.
pub const NODE_ENDPOINTS_KEYS: [i16; 2] = [ApiKey::Produce as i16, ApiKey::Fetch as i16];

/// Api keys of the `api_versions` target (the key byte is there only to share the format).
pub const API_VERSIONS_KEYS: [i16; 1] = [ApiKey::ApiVersions as i16];

/// Splits a keyed input: api key `keys[data[0] % len]`, version `data[1] as i8`, payload.
pub fn split_keyed<'a>(keys: &[i16], data: &'a [u8]) -> Option<(i16, i16, &'a [u8])> {
    match data {
        [k, v, payload @ ..] => Some((
            keys[usize::from(*k) % keys.len()],
            i16::from(*v as i8),
            payload,
        )),
        _ => None,
    }
}

/// The input [`split_keyed`] reads back as `(api_key, version, payload)`.
pub fn keyed(keys: &[i16], api_key: i16, version: i16, payload: &[u8]) -> Vec<u8> {
    let k = keys
        .iter()
        .position(|&k| k == api_key)
        .unwrap_or_else(|| panic!("api key {api_key} is not among {keys:?}"));
    let v = i8::try_from(version).expect("version fits i8");
    let mut out = Vec::with_capacity(2 + payload.len());
    out.push(k as u8);
    out.push(v as u8);
    out.extend_from_slice(payload);
    out
}

/// A request the proxy sends on its own (src/upstream.rs `exchange`), and how it reads the
/// answer.
#[derive(Debug, Clone, Copy)]
pub struct OwnRequest {
    /// Api key of the request.
    pub api_key: ApiKey,
    /// Version the proxy sends.
    pub version: i16,
    /// Response header version of the answer.
    pub header_version: i16,
}

/// What `upstream::discover` (Metadata v12, `DISCOVERY_METADATA_VERSION`) and
/// `upstream::api_versions` (ApiVersions v3, response header v0 always) send.
pub const OWN_REQUESTS: [OwnRequest; 2] = [
    OwnRequest {
        api_key: ApiKey::Metadata,
        version: 12,
        header_version: 1,
    },
    OwnRequest {
        api_key: ApiKey::ApiVersions,
        version: 3,
        header_version: 0,
    },
];

/// `MAX_OWN_RESPONSE_BYTES` of src/upstream.rs: the largest answer the proxy reads to its own
/// requests.
pub const MAX_OWN_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// `OWN_CORRELATION_ID` of src/upstream.rs.
pub const OWN_CORRELATION_ID: i32 = 1;

/// Frame size limits the `frames` target picks from (client frames are limited by
/// `--max-request-bytes`, 100 MiB by default; broker frames by `--max-response-bytes`).
pub const FRAME_LIMITS: [usize; 4] = [64, 4096, 100 * 1024 * 1024, 256 * 1024 * 1024];
/// Largest single read the `frames` target simulates, by control bits.
pub const READ_SIZES: [usize; 4] = [1, 7, 512, 65536];

/// The `frames` target's input: how to read, and the byte stream.
#[derive(Debug, Clone, Copy)]
pub struct FramesInput<'a> {
    /// Largest frame body the reader accepts.
    pub max_frame: usize,
    /// `FrameReader::next_frame` (one frame at a time) instead of `next_chunk`.
    pub one_frame_at_a_time: bool,
    /// Largest read.
    pub max_read: usize,
    /// Seed of the read sizes.
    pub seed: u8,
    /// What the peer sends.
    pub stream: &'a [u8],
}

impl<'a> FramesInput<'a> {
    /// Control byte 0: bits 0-1 frame limit, bit 2 one frame at a time, bits 3-4 read size;
    /// control byte 1: read size seed.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let [ctl, seed, stream @ ..] = data else {
            return None;
        };
        Some(Self {
            max_frame: FRAME_LIMITS[usize::from(ctl & 3)],
            one_frame_at_a_time: ctl & 4 != 0,
            max_read: READ_SIZES[usize::from((ctl >> 3) & 3)],
            seed: *seed,
            stream,
        })
    }

    /// The control bytes for a limit index, mode, read size index and seed, followed by `stream`.
    pub fn encode(limit: u8, one_frame_at_a_time: bool, read: u8, seed: u8, stream: &[u8]) -> Vec<u8> {
        let ctl = (limit & 3) | (u8::from(one_frame_at_a_time) << 2) | ((read & 3) << 3);
        let mut out = vec![ctl, seed];
        out.extend_from_slice(stream);
        out
    }

    /// The sizes of the reads the stream arrives in (each at least 1 byte, at most
    /// `max_read`), from a small deterministic generator.
    pub fn reads(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut rest = self.stream;
        let mut state = u32::from(self.seed)
            .wrapping_mul(0x9e37_79b9)
            .wrapping_add(0x7f4a_7c15);
        let max_read = self.max_read;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let n = (1 + state as usize % max_read).min(rest.len());
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Some(head)
        })
    }
}

/// A byte of a host name as the leak check counts it: letters, digits, `.`, `-`, `_`.
pub fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// Occurrences (overlapping ones too) of `needle` in `haystack`.
pub fn count(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || needle.len() > haystack.len() {
        return 0;
    }
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}
