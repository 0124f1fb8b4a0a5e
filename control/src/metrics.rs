//! Prometheus series (`zerohop_*`). The engine's plain stats become series here.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const SEGMENTS_RECEIVED: &str = "zerohop_segments_received_total";
pub const SEGMENTS_TRANSCODED: &str = "zerohop_segments_transcoded_total";
pub const SEGMENTS_FAILED: &str = "zerohop_segments_failed_total";
pub const UPLOAD: &str = "zerohop_upload_seconds";
pub const QUEUE: &str = "zerohop_queue_seconds";
pub const TTFB: &str = "zerohop_time_to_first_byte_seconds";
pub const TTLB: &str = "zerohop_time_to_last_byte_seconds";
pub const TRANSCODE: &str = "zerohop_transcode_seconds";
pub const REALTIME_RATIO: &str = "zerohop_realtime_ratio";
pub const BYTES_IN: &str = "zerohop_bytes_received_total";
pub const CAPACITY: &str = "zerohop_capacity_sessions";
pub const LOAD: &str = "zerohop_load_sessions";
pub const STREAMS: &str = "zerohop_streams_active";
pub const TRANSCODER_STREAMS: &str = "zerohop_transcoder_streams_open";
pub const TRANSCODERS: &str = "zerohop_transcoders_connected";
pub const RETRIES: &str = "zerohop_segment_retries_total";
pub const AUTH_FAILURES: &str = "zerohop_transcoder_auth_failures_total";
pub const LINK_TAKEOVERS: &str = "zerohop_link_takeovers_total";
pub const TRANSCODER_TASKS_ABANDONED: &str = "zerohop_transcoder_tasks_abandoned_total";
pub const CONNECTIONS: &str = "zerohop_connections_open";
pub const CONNECTIONS_REFUSED: &str = "zerohop_connections_refused_total";
pub const ORCHESTRATORS_LINKED: &str = "zerohop_orchestrators_linked";
pub const FRAMES_DECODED: &str = "zerohop_frames_decoded_total";
pub const FRAMES_ENCODED: &str = "zerohop_frames_encoded_total";
pub const BYTES_SENT: &str = "zerohop_bytes_sent_total";
pub const BUILD_INFO: &str = "zerohop_build_info";

/// Whether a process can take work now (`GET /readyz`): `Err` says why not.
pub type Readiness = std::sync::Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often pending histogram samples are folded into their buckets.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide recorder once (later calls reuse it).
pub fn init() {
    HANDLE.get_or_init(|| {
        // 0.8 is a bucket bound: the real-time ratio a capacity is judged by (p95 <= 0.8).
        let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.0, 4.0, 8.0, 16.0];
        let builder = PrometheusBuilder::new().set_buckets(&buckets).ok()?;
        match builder.install_recorder() {
            Ok(h) => {
                describe();
                // `install_recorder` leaves upkeep to us: without it every histogram sample
                // waits in a queue until the next scrape, so a node nobody scrapes grows by
                // a few hundred bytes per segment (measured by `zerohop bench --soak`).
                let upkeep = h.clone();
                let spawned = std::thread::Builder::new().name("zh-metrics".into()).spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "no metrics upkeep thread; histograms drain only when scraped");
                }
                Some(h)
            }
            Err(e) => {
                tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics will be empty");
                None
            }
        }
    });
}

fn describe() {
    metrics::describe_counter!(SEGMENTS_RECEIVED, "Segments received from broadcasters.");
    metrics::describe_counter!(SEGMENTS_TRANSCODED, "Segments transcoded completely.");
    metrics::describe_counter!(SEGMENTS_FAILED, "Segments that failed, by reason (engine error code or refusal).");
    metrics::describe_histogram!(UPLOAD, metrics::Unit::Seconds, "Request start to the last uploaded byte.");
    metrics::describe_histogram!(
        QUEUE,
        metrics::Unit::Seconds,
        "Request start to a transcoder starting on the segment (reading its input)."
    );
    metrics::describe_histogram!(TTFB, metrics::Unit::Seconds, "Request start to first result byte.");
    metrics::describe_histogram!(TTLB, metrics::Unit::Seconds, "Request start to last result byte.");
    metrics::describe_histogram!(TRANSCODE, metrics::Unit::Seconds, "Engine time per segment.");
    metrics::describe_histogram!(REALTIME_RATIO, "Transcode time divided by media duration.");
    metrics::describe_counter!(BYTES_IN, metrics::Unit::Bytes, "Segment bytes uploaded.");
    metrics::describe_gauge!(CAPACITY, "Segments this node transcodes at once.");
    metrics::describe_gauge!(LOAD, "Segments being transcoded now.");
    metrics::describe_gauge!(STREAMS, "Streams with an open session.");
    metrics::describe_gauge!(TRANSCODER_STREAMS, "Streams with open sessions on this remote transcoder.");
    metrics::describe_gauge!(TRANSCODERS, "Remote transcoders connected.");
    metrics::describe_counter!(RETRIES, "Segments moved to another transcoder after a failure.");
    metrics::describe_gauge!(CONNECTIONS, "Open client connections (broadcasters, transcoders, scrapers).");
    metrics::describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed by a limit: too_many_connections (per address or in all) or header_timeout."
    );
    metrics::describe_counter!(AUTH_FAILURES, "Transcoder connections refused for a bad id or secret.");
    metrics::describe_counter!(
        LINK_TAKEOVERS,
        "Transcoder links closed because a new link with the same id replaced them (their tasks failed over)."
    );
    metrics::describe_counter!(
        TRANSCODER_TASKS_ABANDONED,
        "Tasks this remote transcoder stopped because the orchestrator replaced its link (and had failed them over)."
    );
    metrics::describe_counter!(
        FRAMES_DECODED,
        "Pictures the engine decoded (where it ran: in process or on a transcoder)."
    );
    metrics::describe_counter!(FRAMES_ENCODED, "Pictures the engine encoded, every rendition counted.");
    metrics::describe_counter!(BYTES_SENT, metrics::Unit::Bytes, "Rendition TS bytes the engine produced.");
    metrics::describe_gauge!(ORCHESTRATORS_LINKED, "Orchestrators this transcoder is linked to now.");
    metrics::describe_gauge!(BUILD_INFO, "Always 1; the labels say which build this is.");
}

/// Sets `zerohop_build_info` (always 1) with the version, whether OpenH264 has its assembly,
/// and what the binary adds (`revision`, `profile`, `features`...).
pub fn build_info(extra: &[(&'static str, String)]) {
    let asm = if zerohop_engine::build_info::openh264_has_asm() { "yes" } else { "no" };
    let mut labels =
        vec![metrics::Label::new("version", env!("CARGO_PKG_VERSION")), metrics::Label::new("openh264_asm", asm)];
    labels.extend(extra.iter().map(|(k, v)| metrics::Label::new(*k, v.clone())));
    metrics::gauge!(BUILD_INFO, labels).set(1.0);
}

/// The Prometheus text exposition.
pub fn render() -> String {
    HANDLE.get().and_then(Option::as_ref).map(PrometheusHandle::render).unwrap_or_default()
}

/// Serves, over plain HTTP/1.1 on `addr` (`--metrics-addr`): `GET /metrics` (the Prometheus
/// exposition), `GET /healthz` (200 while the process serves) and `GET /readyz` (200 when
/// `ready` says it can take work, else 503 with why), for scrapers, kubelets and load balancers.
/// Returns the bound address.
pub async fn serve(addr: std::net::SocketAddr, ready: Readiness) -> std::io::Result<std::net::SocketAddr> {
    use hyper_util::rt::TokioIo;
    init();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let ready = ready.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let ready = ready.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(req.method(), req.uri().path(), &ready)) }
                });
                // A scraper that hangs up mid-answer ends only its own connection.
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await.ok();
            });
        }
    });
    Ok(local)
}

/// The metrics port's answer for `path`.
fn respond(method: &http::Method, path: &str, ready: &Readiness) -> http::Response<crate::body::ChannelBody> {
    let json = |status: http::StatusCode, code: &str, message: &str| {
        let body = serde_json::json!({"code": code, "message": message}).to_string() + "\n";
        (status, "application/json", body)
    };
    let get = *method == http::Method::GET || *method == http::Method::HEAD;
    let (status, content_type, body) = match path {
        "/metrics" | "/healthz" | "/readyz" if !get => {
            json(http::StatusCode::METHOD_NOT_ALLOWED, crate::fault::code::METHOD_NOT_ALLOWED, "only GET here")
        }
        "/metrics" => (http::StatusCode::OK, "text/plain; version=0.0.4", render()),
        "/healthz" => json(http::StatusCode::OK, crate::fault::code::OK, "serving"),
        "/readyz" => match ready() {
            Ok(()) => json(http::StatusCode::OK, crate::fault::code::OK, "ready to take work"),
            Err(why) => json(http::StatusCode::SERVICE_UNAVAILABLE, crate::fault::code::NOT_READY, &why),
        },
        _ => json(http::StatusCode::NOT_FOUND, crate::fault::code::NOT_FOUND, "GET /metrics, /healthz or /readyz"),
    };
    let mut r = http::Response::new(crate::body::ChannelBody::full(bytes::Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    if status == http::StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
    }
    r
}
