//! Amazon MSK's IAM authentication (the AWS_MSK_IAM SASL mechanism, port 9098): the region, the
//! AWS credentials, and the signed JSON payload the one SaslAuthenticate request carries.
//!
//! The payload is what aws-msk-iam-auth (Java) sends: a SigV4 presigned-query signature of a
//! `GET https://<broker host>/?Action=kafka-cluster%3AConnect` for service `kafka-cluster`,
//! valid 15 minutes, signed header `host`, laid out as one flat JSON object of lower-case keys
//! (`version`, `host`, `user-agent`, `action`, `x-amz-algorithm`, `x-amz-credential`,
//! `x-amz-date`, `x-amz-security-token` with session credentials, `x-amz-signedheaders`,
//! `x-amz-expires`, `x-amz-signature`). The signature comes from the AWS SDK's `aws-sigv4`;
//! the credentials from `aws-config`'s default chain (environment, shared profile, web identity
//! token file, ECS/EKS container endpoint, EC2 IMDSv2), cached here and fetched again before
//! they expire, so every exchange (re-authentication included) signs with live credentials.
//!
//! Why a cache of our own: the SDK caches identities inside an SDK client's runtime (its
//! identity cache needs the client's runtime components); this process has no SDK client, only
//! the provider chain. The cache is one lock around one `Credentials`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::Region;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_smithy_runtime_api::client::identity::Identity;
use tokio::sync::{Mutex, OnceCell};

/// The SASL mechanism's name.
pub const MECHANISM: &str = "AWS_MSK_IAM";
/// The payload format version aws-msk-iam-auth sends.
pub const PAYLOAD_VERSION: &str = "2020_10_22";
/// The IAM action a connection asks for.
const ACTION: &str = "kafka-cluster:Connect";
/// The SigV4 service name.
const SERVICE: &str = "kafka-cluster";
/// How long a signature stays valid (the Java library's 15 minutes).
const SIGNATURE_EXPIRY: Duration = Duration::from_secs(15 * 60);
/// Credentials are fetched again when less than this much of their life is left…
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// …or less than this fraction of the life they had when fetched (short-lived credentials).
const REFRESH_FRACTION: f64 = 0.25;

/// Why the IAM payload could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// No provider of the default chain had credentials (or one failed).
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    /// Signing failed (a broker name that is not a valid URI host).
    #[error("cannot sign the AWS_MSK_IAM payload for '{host}': {reason}")]
    Sign {
        /// The broker host.
        host: String,
        /// What failed.
        reason: String,
    },
}

/// The region of an Amazon MSK broker name: `b-1.<cluster>.<id>.c2.kafka.<region>.amazonaws.com`
/// (provisioned, `vpce`/public variants included), `boot-<id>.c2.kafka-serverless.<region>.amazonaws.com`
/// (serverless), and the `.amazonaws.com.cn` partition. `None` for any other name.
pub fn region_from_host(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let suffix = match labels.as_slice() {
        [.., "amazonaws", "com"] => 2,
        [.., "amazonaws", "com", "cn"] => 3,
        _ => return None,
    };
    let end = labels.len() - suffix;
    // The label before the suffix is the region, the one before that names the service.
    if end < 2 || !matches!(labels[end - 2], "kafka" | "kafka-serverless") {
        return None;
    }
    let region = labels[end - 1];
    is_region(region).then(|| region.to_owned())
}

/// `xx-name-N` (us-east-1, eu-west-3, ap-southeast-2, us-gov-west-1, cn-north-1).
pub fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// Where the proxy's AWS credentials come from: the default chain, built on first use (it
/// reads the environment and profile files then), and the credentials last fetched.
pub struct CredentialSource {
    region: String,
    provider: OnceCell<SharedCredentialsProvider>,
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    credentials: Credentials,
    fetched: SystemTime,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSource")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl CredentialSource {
    /// The default chain, for STS calls (web identity) in `region`.
    pub fn default_chain(region: &str) -> Self {
        Self {
            region: region.to_owned(),
            provider: OnceCell::new(),
            cached: Mutex::new(None),
        }
    }

    /// A given provider instead of the default chain (tests, or an embedding program).
    pub fn with_provider(region: &str, provider: impl ProvideCredentials + 'static) -> Self {
        Self {
            region: region.to_owned(),
            provider: OnceCell::new_with(Some(SharedCredentialsProvider::new(provider))),
            cached: Mutex::new(None),
        }
    }

    /// Credentials valid for a while yet: the cached ones, or freshly fetched ones when those
    /// are near their end. One fetch at a time; callers waiting meanwhile get its result.
    pub async fn credentials(&self) -> Result<Credentials, IamError> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some(c) = cached.as_ref().filter(|c| !stale(c, now)) {
            return Ok(c.credentials.clone());
        }
        let provider = self
            .provider
            .get_or_init(|| async {
                let chain = DefaultCredentialsChain::builder()
                    .region(Region::new(self.region.clone()))
                    .build()
                    .await;
                SharedCredentialsProvider::new(chain)
            })
            .await;
        // A hung endpoint (IMDS, STS, the container agent) must not hold every connect
        // behind this lock; and credentials that have not expired yet stay usable when their
        // early refresh fails.
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, provider.provide_credentials())
            .await
            .map_err(|_| {
                IamError::Credentials(format!(
                    "no answer from the credential chain within {FETCH_TIMEOUT:?}"
                ))
            })
            .and_then(|r| r.map_err(|e| IamError::Credentials(error_chain(&e))));
        let credentials = match (fetched, cached.as_ref()) {
            (Ok(credentials), _) => credentials,
            (Err(e), Some(c)) if c.credentials.expiry().is_some_and(|x| x > now) => {
                tracing::warn!(error = %e, "refreshing AWS credentials failed; the cached ones are still valid and stay in use");
                return Ok(c.credentials.clone());
            }
            (Err(e), _) => return Err(e),
        };
        tracing::debug!(
            access_key_id = credentials.access_key_id(),
            expires_in = ?credentials.expiry().and_then(|e| e.duration_since(SystemTime::now()).ok()),
            "AWS credentials fetched"
        );
        *cached = Some(Cached {
            credentials: credentials.clone(),
            fetched: now,
        });
        Ok(credentials)
    }
}

/// True when `c` should be fetched again at `now`.
fn stale(c: &Cached, now: SystemTime) -> bool {
    let Some(expiry) = c.credentials.expiry() else {
        return false; // static credentials (environment, profile keys)
    };
    let life = expiry.duration_since(c.fetched).unwrap_or(Duration::ZERO);
    let margin = REFRESH_BEFORE.min(life.mul_f64(REFRESH_FRACTION));
    match expiry.duration_since(now) {
        Ok(left) => left <= margin,
        Err(_) => true,
    }
}

/// How long one fetch from the credential chain may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest error text kept from the SDK (its errors can carry a whole HTTP response).
const MAX_ERROR_TEXT: usize = 1024;

/// An error and its sources, on one line (the SDK's errors say the useful part in a source),
/// at most [`MAX_ERROR_TEXT`] bytes.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = error_chain_whole(e);
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

fn error_chain_whole(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// How an identity authenticates with IAM: the signing region and the credentials.
#[derive(Debug, Clone)]
pub struct IamAuth {
    /// The region the signature is scoped to (the cluster's).
    pub region: String,
    /// Where the credentials come from.
    pub credentials: Arc<CredentialSource>,
}

impl PartialEq for IamAuth {
    fn eq(&self, other: &Self) -> bool {
        self.region == other.region
    }
}

impl Eq for IamAuth {}

/// The AWS_MSK_IAM payload for a connection to broker `host`, signed at `time` with
/// `credentials` for `region`.
pub fn payload(
    credentials: &Credentials,
    host: &str,
    region: &str,
    time: SystemTime,
) -> Result<Vec<u8>, IamError> {
    let fail = |reason: String| IamError::Sign {
        host: host.to_owned(),
        reason,
    };
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(SIGNATURE_EXPIRY);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| fail(e.to_string()))?
        .into();
    let uri = format!("https://{host}/?Action=kafka-cluster%3AConnect");
    let request = SignableRequest::new(
        "GET",
        uri,
        std::iter::once(("host", host)),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| fail(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| fail(e.to_string()))?
        .into_parts();
    let mut fields = serde_json::Map::new();
    let mut put = |k: &str, v: &str| {
        fields.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
    };
    put("version", PAYLOAD_VERSION);
    put("host", host);
    put(
        "user-agent",
        concat!("kafka-tls-proxy/", env!("CARGO_PKG_VERSION")),
    );
    put("action", ACTION);
    for (name, value) in instructions.params() {
        put(&name.to_ascii_lowercase(), value);
    }
    serde_json::to_vec(&fields).map_err(|e| fail(e.to_string()))
}

/// What the broker's answer says: its request id (for the log), after checking it is the JSON
/// object MSK sends.
pub fn check_answer(bytes: &[u8]) -> Result<Option<String>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let object = value.as_object().ok_or("the answer is not a JSON object")?;
    if let Some(version) = object.get("version") {
        if version.as_str() != Some(PAYLOAD_VERSION) {
            return Err(format!(
                "the answer's version is {version}, not {PAYLOAD_VERSION}"
            ));
        }
    }
    Ok(object
        .get("request-id")
        .and_then(|v| v.as_str())
        .map(str::to_owned))
}

#[cfg(test)]
#[path = "aws_iam_tests.rs"]
mod tests;
