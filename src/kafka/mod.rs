//! The Kafka wire protocol as far as the proxy needs it.
//!
//! - [`wire`]: the one bounds-checked reader of network bytes: lengths, varints, tagged
//!   fields, request header peeks, and a walk of every response format the proxy decodes.
//! - [`frame`]: length-prefixed frames and the few header fields read without decoding
//!   (api key, version, correlation id, Produce `acks`), through [`wire`].
//! - [`codec`]: header versions, and decoding/encoding whole messages with kafka-protocol only
//!   after a [`wire`] walk has bounded them; also the proxy's own requests.
//! - [`rewrite`]: the one table of APIs whose responses carry broker addresses, and their
//!   rewrite.
//! - [`scrub`]: the table of APIs whose responses carry free text (error messages, config
//!   values), and the replacement of upstream names and addresses in it.
//! - [`requests`]: walkers over the requests the identity policy denies or audits and over
//!   the responses it audits, on top of [`wire`] (names, partitions, ids and error codes only;
//!   secrets and configuration values are stepped over).
//! - [`versions`]: the ApiVersions exchange, capped to the versions [`rewrite`] can decode.
//!
//! Everything else passes through as the original bytes, at any version, including API keys
//! the protocol library does not know. Imports only go down this list (versions → rewrite →
//! codec → wire; frame → codec, wire; requests → codec, wire).

mod address;
pub mod codec;
pub mod frame;
pub mod requests;
pub mod rewrite;
pub mod scrub;
pub mod versions;
pub mod wire;

use bytes::Bytes;

pub use address::{AddressMapper, Advertised, MapError};
pub use versions::API_VERSIONS;

/// True when the response to `api_key` at `version` must be looked at before it reaches the
/// client: ApiVersions (capped) and every [`rewrite::INSPECTED`] API from the version whose
/// responses can carry broker addresses.
pub fn needs_inspection(api_key: i16, version: i16) -> bool {
    api_key == API_VERSIONS || rewrite::needs_inspection(api_key, version)
}

/// False when a request must not be relayed: its response may carry broker addresses but the
/// proxy cannot decode that version (the capped ApiVersions answer never offered it), so the
/// connection closes instead. ApiVersions is always relayable: the connection answers versions
/// above what the proxy decodes itself. Likewise for a response with free text the proxy could
/// not search for upstream names ([`scrub::TEXT_CARRYING`], from the first version with text).
pub fn relayable(api_key: i16, version: i16) -> bool {
    let text = match scrub::text_carrying(api_key) {
        Some(t) if version >= t.text_from => (t.versions.min..=t.versions.max).contains(&version),
        _ => true,
    };
    let addresses = match rewrite::inspected(api_key) {
        Some(i) if version >= i.addresses_from => {
            (i.versions.min..=i.versions.max).contains(&version)
        }
        _ => true,
    };
    text && addresses
}

/// Inspects one response that [`needs_inspection`] selected: caps ApiVersions, rewrites broker
/// addresses. `Ok(None)`: forward the original bytes; `Ok(Some(frame))`: forward this complete
/// frame (length prefix included) instead.
pub fn inspect_response(
    api_key: i16,
    version: i16,
    payload: &Bytes,
    mapper: &mut dyn AddressMapper,
) -> Result<Option<Bytes>, rewrite::RewriteError> {
    if api_key == API_VERSIONS {
        versions::rewrite_api_versions(version, payload)
    } else {
        rewrite::rewrite_response(api_key, version, payload, mapper)
    }
}
