//! Metrics the proxy records, with handles resolved once so that the per-frame path does not
//! look labels up in the registry for every frame.
//!
//! Label sets are bounded: API names, listener names (bootstrap or a broker's node id),
//! failure reasons. No label carries a client address.

use metrics::{Counter, Histogram};

/// Highest API key with its own label; anything above shares the label "other".
const MAX_NAMED_API_KEY: usize = 100;

/// Per-API-key metric handles.
#[derive(Debug)]
pub struct ApiMetrics {
    requests: Vec<Counter>,
    responses: Vec<Counter>,
    latency: Vec<Histogram>,
    rewritten: Vec<Counter>,
}

/// The name of an API key for labels: "Metadata", "Produce", ..., or the number for keys the
/// protocol library does not know.
pub fn api_name(api_key: i16) -> String {
    match kafka_protocol::messages::ApiKey::try_from(api_key) {
        Ok(key) => format!("{key:?}").trim_end_matches("Key").to_owned(),
        Err(()) => api_key.to_string(),
    }
}

impl ApiMetrics {
    /// Creates the handles; call after the metrics recorder is installed.
    pub fn new() -> Self {
        let label = |key: usize| {
            if key > MAX_NAMED_API_KEY {
                "other".to_owned()
            } else {
                api_name(key as i16)
            }
        };
        let each = |f: &dyn Fn(String) -> Counter| {
            (0..=MAX_NAMED_API_KEY + 1).map(|k| f(label(k))).collect()
        };
        Self {
            requests: each(&|api| metrics::counter!("kafka_proxy_requests_total", "api" => api)),
            responses: each(&|api| metrics::counter!("kafka_proxy_responses_total", "api" => api)),
            rewritten: each(&|api| {
                metrics::counter!("kafka_proxy_rewritten_responses_total", "api" => api)
            }),
            latency: (0..=MAX_NAMED_API_KEY + 1)
                .map(|k| {
                    metrics::histogram!("kafka_proxy_request_duration_seconds", "api" => label(k))
                })
                .collect(),
        }
    }

    fn index(api_key: i16) -> usize {
        usize::try_from(api_key)
            .ok()
            .filter(|k| *k <= MAX_NAMED_API_KEY)
            .unwrap_or(MAX_NAMED_API_KEY + 1)
    }

    /// A request was forwarded.
    pub fn request(&self, api_key: i16) {
        self.requests[Self::index(api_key)].increment(1);
    }

    /// A response came back after `elapsed`.
    pub fn response(&self, api_key: i16, elapsed: std::time::Duration) {
        let i = Self::index(api_key);
        self.responses[i].increment(1);
        self.latency[i].record(elapsed.as_secs_f64());
    }

    /// A response was rewritten.
    pub fn rewritten(&self, api_key: i16) {
        self.rewritten[Self::index(api_key)].increment(1);
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts a frame the proxy refused, by reason.
pub fn frame_rejected(reason: &'static str) {
    metrics::counter!("kafka_proxy_frames_rejected_total", "reason" => reason).increment(1);
}

/// Counts a failed upstream connection attempt, by reason.
pub fn upstream_failure(reason: &'static str) {
    metrics::counter!("kafka_proxy_upstream_failures_total", "reason" => reason).increment(1);
}
