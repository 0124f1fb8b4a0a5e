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
pub const CONNECTIONS: &str = "zerohop_connections_open";
pub const CONNECTIONS_REFUSED: &str = "zerohop_connections_refused_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often pending histogram samples are folded into their buckets.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide recorder once (later calls reuse it).
pub fn init() {
    HANDLE.get_or_init(|| {
        let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
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
}

/// The Prometheus text exposition.
pub fn render() -> String {
    HANDLE.get().and_then(Option::as_ref).map(PrometheusHandle::render).unwrap_or_default()
}

/// Serves the exposition at `GET /metrics` over plain HTTP/1.1 on `addr` (for Prometheus
/// scrapers; `--metrics-addr`). Returns the bound address.
pub async fn serve(addr: std::net::SocketAddr) -> std::io::Result<std::net::SocketAddr> {
    use hyper_util::rt::TokioIo;
    init();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let (status, body) = if req.uri().path() == "/metrics" {
                        (http::StatusCode::OK, render())
                    } else {
                        (http::StatusCode::NOT_FOUND, "GET /metrics\n".to_string())
                    };
                    let mut r = http::Response::new(crate::body::ChannelBody::full(bytes::Bytes::from(body)));
                    *r.status_mut() = status;
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    Ok(local)
}
