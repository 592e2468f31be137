//! Decoding and encoding whole messages with kafka-protocol, always behind the bounds checks of
//! [`super::wire`].
//!
//! kafka-protocol allocates `Vec::with_capacity(count)` straight from array counts on the wire,
//! so nothing from the network reaches [`Decodable::decode`] before a [`wire`] walk has checked
//! every count and length in it against the bytes that are really there. The proxy's own
//! requests (broker discovery, `check`) are encoded and their answers decoded here too, so there
//! is one path for every message the proxy decodes, whoever asked for it.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes, VersionRange};

use super::wire::{self, WalkFn};

/// Why a message could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes do not form a valid message of that api key and version.
    #[error("cannot decode api key {api_key} v{version}: {reason}")]
    Decode {
        /// Api key of the message.
        api_key: i16,
        /// Version of the message.
        version: i16,
        /// What was wrong with the bytes.
        reason: String,
    },
    /// A message could not be encoded.
    #[error("cannot encode api key {api_key} v{version}: {reason}")]
    Encode {
        /// Api key of the message.
        api_key: i16,
        /// Version of the message.
        version: i16,
        /// What kafka-protocol reported.
        reason: String,
    },
    /// kafka-protocol cannot decode this version of the message.
    #[error("api key {api_key} v{version} is outside the versions the proxy can decode")]
    UnsupportedVersion {
        /// Api key of the message.
        api_key: i16,
        /// Version of the message.
        version: i16,
    },
}

/// Versions of a request/response pair that the proxy can both decode and encode:
/// `<Req as Message>::VERSIONS` ∩ `<Resp as Message>::VERSIONS` (NOT `ApiKey::valid_versions`,
/// which includes unstable versions).
pub const fn versions_of<Req: Message, Resp: Message>() -> VersionRange {
    let (a, b) = (Req::VERSIONS, Resp::VERSIONS);
    VersionRange {
        min: if a.min > b.min { a.min } else { b.min },
        max: if a.max < b.max { a.max } else { b.max },
    }
}

/// The request header version of `api_key` at `version` (1 for api keys the crate does not know:
/// the fixed fields and client id sit at the same place in v1 and v2).
pub fn request_header_version(api_key: i16, version: i16) -> i16 {
    ApiKey::try_from(api_key).map_or(1, |key| key.request_header_version(version))
}

/// The response header version of `api_key` at `version` (ApiVersions answers always use v0;
/// so does an api key the crate does not know, as far as the correlation id is concerned).
pub fn response_header_version(api_key: i16, version: i16) -> i16 {
    ApiKey::try_from(api_key).map_or(0, |key| key.response_header_version(version))
}

/// Errors unless kafka-protocol can decode `M` at `version`.
pub fn check_version<M: Message>(api_key: i16, version: i16) -> Result<(), CodecError> {
    if version < M::VERSIONS.min || version > M::VERSIONS.max {
        return Err(CodecError::UnsupportedVersion { api_key, version });
    }
    Ok(())
}

fn decode_error(api_key: i16, version: i16, reason: impl ToString) -> CodecError {
    CodecError::Decode {
        api_key,
        version,
        reason: reason.to_string(),
    }
}

/// Decodes a response payload (response header + body, no length prefix) after `walk` has
/// checked every length in it against the real bytes. Returns the length of the response
/// header (kept as raw bytes by callers that re-encode) and the body. Trailing bytes after the
/// body are an error: they mean the version or the bytes are not what they claim.
pub fn decode_response<M: Message + Decodable>(
    api_key: i16,
    version: i16,
    header_version: i16,
    payload: &Bytes,
    walk: WalkFn,
) -> Result<(usize, M), CodecError> {
    check_version::<M>(api_key, version)?;
    let mut w = wire::Walker::new(payload);
    w.response_header(header_version)
        .and_then(|()| walk(&mut w, version))
        .map_err(|reason| decode_error(api_key, version, reason))?;

    // Zero-copy: decoding from a Bytes clone keeps records and strings as slices of `payload`.
    let mut buf = payload.clone();
    ResponseHeader::decode(&mut buf, header_version)
        .map_err(|e| decode_error(api_key, version, format!("response header: {e:#}")))?;
    let header_len = payload.len() - buf.len();
    let msg = M::decode(&mut buf, version)
        .map_err(|e| decode_error(api_key, version, format!("{e:#}")))?;
    if !buf.is_empty() {
        return Err(decode_error(
            api_key,
            version,
            format!("{} bytes left after the message", buf.len()),
        ));
    }
    Ok((header_len, msg))
}

/// Encodes `header` (raw response or request header bytes) and `msg` into one complete frame
/// with its length prefix, in a single allocation of the exact size.
pub fn encode_frame<M: Encodable>(
    api_key: i16,
    version: i16,
    header: &[u8],
    msg: &M,
) -> Result<Bytes, CodecError> {
    let encode_error = |reason: String| CodecError::Encode {
        api_key,
        version,
        reason,
    };
    let body_len = msg
        .compute_size(version)
        .map_err(|e| encode_error(format!("{e:#}")))?;
    let len = header.len() + body_len;
    let len_prefix =
        i32::try_from(len).map_err(|_| encode_error(format!("frame of {len} bytes")))?;
    let mut out = BytesMut::with_capacity(4 + len);
    out.put_i32(len_prefix);
    out.put_slice(header);
    msg.encode(&mut out, version)
        .map_err(|e| encode_error(format!("{e:#}")))?;
    if out.len() != 4 + len {
        return Err(encode_error(format!(
            "encoded {} bytes, computed {}",
            out.len() - 4,
            len
        )));
    }
    Ok(out.freeze())
}

/// Encodes a request the proxy originates itself, as one complete frame, naming the proxy as
/// the client.
pub fn encode_request<M: Message + Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &M,
) -> Result<Bytes, CodecError> {
    let api_key = key as i16;
    check_version::<M>(api_key, version)?;
    let mut header = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("kafka-tls-proxy")))
        .encode(&mut header, key.request_header_version(version))
        .map_err(|e| CodecError::Encode {
            api_key,
            version,
            reason: format!("request header: {e:#}"),
        })?;
    encode_frame(api_key, version, &header, request)
}
