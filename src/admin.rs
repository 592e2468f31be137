//! The operator's view: metrics (with handles resolved once, so that the per-frame path does
//! not look labels up for every frame), health and readiness, and the admin HTTP listener that
//! serves them.
//!
//! Label sets are bounded: API names, listener names (bootstrap or a broker's node id),
//! failure reasons. No label carries a client address.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::{Method, Request, Response};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::PrometheusHandle;

/// Highest API key with its own label; anything above shares the label "other".
const MAX_NAMED_API_KEY: usize = 100;

/// Per-API-key metric handles, created on first use of each API key: only APIs that really
/// pass through the proxy appear in `/metrics` (every series costs money in Datadog and the
/// like), and after the first use the per-frame cost is one atomic load.
#[derive(Debug)]
pub struct ApiMetrics {
    identity: String,
    slots: Vec<OnceLock<ApiHandles>>,
}

#[derive(Debug)]
struct ApiHandles {
    requests: Counter,
    responses: Counter,
    latency: Histogram,
    rewritten: Counter,
    denied: Counter,
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
    /// Empty slots for one identity's traffic; handles are made when an API key is first seen.
    pub fn new(identity: &str) -> Self {
        Self {
            identity: identity.to_owned(),
            slots: (0..=MAX_NAMED_API_KEY + 1)
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    fn handles(&self, api_key: i16) -> &ApiHandles {
        let index = usize::try_from(api_key)
            .ok()
            .filter(|k| *k <= MAX_NAMED_API_KEY)
            .unwrap_or(MAX_NAMED_API_KEY + 1);
        self.slots[index].get_or_init(|| {
            let api = if index > MAX_NAMED_API_KEY {
                "other".to_owned()
            } else {
                api_name(api_key)
            };
            let id = self.identity.clone();
            ApiHandles {
                requests: metrics::counter!("kafka_proxy_requests_total", "api" => api.clone(), "identity" => id.clone()),
                responses: metrics::counter!("kafka_proxy_responses_total", "api" => api.clone(), "identity" => id.clone()),
                latency: metrics::histogram!("kafka_proxy_request_duration_seconds", "api" => api.clone(), "identity" => id.clone()),
                rewritten: metrics::counter!("kafka_proxy_rewritten_responses_total", "api" => api.clone(), "identity" => id.clone()),
                denied: metrics::counter!("kafka_proxy_policy_denials_total", "api" => api, "identity" => id),
            }
        })
    }

    /// A request was denied by the identity's policy.
    pub fn denied(&self, api_key: i16) {
        self.handles(api_key).denied.increment(1);
    }

    /// A request was forwarded.
    pub fn request(&self, api_key: i16) {
        self.handles(api_key).requests.increment(1);
    }

    /// A response came back after `elapsed`.
    pub fn response(&self, api_key: i16, elapsed: Duration) {
        let handles = self.handles(api_key);
        handles.responses.increment(1);
        handles.latency.record(elapsed.as_secs_f64());
    }

    /// A response was rewritten.
    pub fn rewritten(&self, api_key: i16) {
        self.handles(api_key).rewritten.increment(1);
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

/// What `/healthz` and `/readyz` report.
///
/// Ready means: certificates are loaded (the process would not be running otherwise), an
/// upstream broker answered over mutual TLS within the readiness window, and the proxy is
/// not draining. A load balancer or Nomad then stops sending clients to a proxy that cannot
/// reach the cluster, and to one that is shutting down.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Milliseconds after `started` of the last good upstream contact, plus one (0 = never).
    last_upstream_ok: AtomicU64,
    draining: AtomicBool,
    window: Duration,
}

impl Health {
    /// A health record that counts upstream contact within `window` as recent.
    pub fn new(window: Duration) -> Self {
        Self {
            started: Instant::now(),
            last_upstream_ok: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            window,
        }
    }

    /// An upstream broker just completed a mutual-TLS handshake and answered.
    pub fn upstream_ok(&self) {
        let ms = self.started.elapsed().as_millis() as u64 + 1;
        self.last_upstream_ok.store(ms, Ordering::Relaxed);
    }

    /// An upstream check failed: readiness goes at once, not only when the window runs out.
    pub fn upstream_failed(&self) {
        self.last_upstream_ok.store(0, Ordering::Relaxed);
    }

    /// Shutdown began.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the proxy should receive clients, and if not, why.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("draining");
        }
        let last = self.last_upstream_ok.load(Ordering::Relaxed);
        if last == 0 {
            return Err("no upstream broker reachable over mutual TLS");
        }
        let age = self
            .started
            .elapsed()
            .saturating_sub(Duration::from_millis(last - 1));
        if age > self.window {
            return Err("no upstream broker reachable over mutual TLS recently");
        }
        Ok(())
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

type Body = http_body_util::Full<bytes::Bytes>;

fn respond(status: u16, content_type: &str, body: impl Into<bytes::Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::new(body.into()))
        .unwrap_or_else(|_| Response::new(Body::default()))
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the listener task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    prometheus: Option<PrometheusHandle>,
    health: Arc<Health>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(ADMIN_MAX_CONNECTIONS));
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // The admin port shares the process's descriptors with the proxy: a few scrapers and
        // probes need a handful of connections, nobody needs more.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("kafka_proxy_limit_reached_total", "limit" => "admin_connections")
                .increment(1);
            drop(socket);
            continue;
        };
        let prometheus = prometheus.clone();
        let health = health.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let response = match (request.method(), request.uri().path()) {
                (&Method::GET, "/metrics") => match &prometheus {
                    Some(handle) => respond(200, "text/plain; version=0.0.4", handle.render()),
                    None => respond(404, "text/plain", "metrics are not recorded\n"),
                },
                (&Method::GET, "/healthz") => respond(200, "text/plain", "ok\n"),
                (&Method::GET, "/readyz") => match health.readiness() {
                    Ok(()) => respond(200, "text/plain", "ready\n"),
                    Err(why) => respond(503, "text/plain", format!("not ready: {why}\n")),
                },
                (&Method::GET, _) => {
                    respond(404, "text/plain", "try /metrics, /healthz or /readyz\n")
                }
                _ => respond(405, "text/plain", "only GET\n"),
            };
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(socket);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(ADMIN_HEADER_TIMEOUT)
                .max_buf_size(ADMIN_MAX_BUF)
                .serve_connection(io, service);
            // Keep-alive connections end too: a scraper reconnects.
            let _ = tokio::time::timeout(ADMIN_CONNECTION_LIFETIME, connection).await;
            drop(slot);
        });
    }
}

/// Admin connections open at once; more are closed at once (counted).
const ADMIN_MAX_CONNECTIONS: usize = 32;
/// Time a client of the admin listener has to send its request headers.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one admin connection, keep-alive included.
const ADMIN_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Largest request head the admin listener buffers (hyper's minimum is 8 KiB).
const ADMIN_MAX_BUF: usize = 16 * 1024;

/// Asks a running proxy's admin listener whether it is ready (the `healthcheck` command).
pub async fn probe(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String), String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to the admin listener {addr}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header("host", addr.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).trim().to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap_or_else(|_| Err(format!("the admin listener {addr} did not answer in 5 s")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_upstream_contact_and_draining() {
        let health = Health::new(Duration::from_millis(200));
        assert!(
            health.readiness().is_err(),
            "not ready before any upstream contact"
        );
        health.upstream_ok();
        assert_eq!(health.readiness(), Ok(()));
        std::thread::sleep(Duration::from_millis(250));
        assert!(health.readiness().is_err(), "contact too long ago");
        health.upstream_ok();
        assert_eq!(health.readiness(), Ok(()));
        health.upstream_failed();
        assert!(health.readiness().is_err());
        health.upstream_ok();
        health.start_draining();
        assert_eq!(health.readiness(), Err("draining"));
    }

    #[tokio::test]
    async fn serves_health_and_readiness_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Arc::new(Health::default());
        let server = tokio::spawn(serve(listener, None, health.clone()));
        assert_eq!(probe(addr, "/healthz").await.unwrap().0, 200);
        let (status, body) = probe(addr, "/readyz").await.unwrap();
        assert_eq!(status, 503);
        assert!(body.contains("no upstream"), "{body}");
        health.upstream_ok();
        assert_eq!(probe(addr, "/readyz").await.unwrap(), (200, "ready".into()));
        assert_eq!(probe(addr, "/nope").await.unwrap().0, 404);
        server.abort();
    }
}
