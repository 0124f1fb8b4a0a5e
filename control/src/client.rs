//! The broadcaster's client: pushes segments to a node over HTTP/2 and reads the result stream
//! as it arrives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::body::ChannelBody;
use crate::framing::{FramingError, Kind, Record, RecordReader};
use crate::tls::{Identity, Trust, client_config_with};

/// How to reach the node.
#[derive(Debug, Clone)]
pub enum Transport {
    /// TLS with ALPN h2; `server_name` is what the certificate is checked for (CA trust).
    Tls { trust: Trust, server_name: String },
    /// TLS presenting our own certificate too (a transcoder authenticated by mutual TLS).
    MutualTls { trust: Trust, server_name: String, identity: Arc<Identity> },
    /// Cleartext HTTP/2 with prior knowledge (`--insecure-h2c`).
    H2c,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the node's certificate does not match the pinned SHA-256 (--orch-cert-sha256); refusing to talk to it")]
    CertificateMismatch,
    #[error("HTTP/2: {0}")]
    Http(#[from] hyper::Error),
    #[error("node answered {status}: [{code}] {message}")]
    Status { status: StatusCode, code: String, message: String },
    #[error("result stream: {0}")]
    Framing(#[from] FramingError),
}

/// What the upload looks like.
#[derive(Debug, Clone)]
pub enum Upload {
    /// As fast as the connection takes it, in 64 KiB pieces.
    Full(Bytes),
    /// `piece` bytes every `interval` (a live encoder's pace, or a throttled test).
    Paced { data: Bytes, piece: usize, interval: Duration },
}

/// The outcome of one push.
#[derive(Debug, Clone, Default)]
pub struct PushOutcome {
    pub renditions: Vec<String>,
    /// Request start to the first rendition byte.
    pub ttfb: Duration,
    /// Request start to the end of the result stream.
    pub ttlb: Duration,
    /// Request start to the last upload byte handed to HTTP/2.
    pub upload_time: Duration,
    /// Per rendition (index, error JSON) for in-band errors.
    pub errors: Vec<(u8, String)>,
    /// The end record's JSON.
    pub end: Option<serde_json::Value>,
    pub trailers: Option<HeaderMap>,
}

impl PushOutcome {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
            && self.trailers.as_ref().and_then(|t| t.get(crate::headers::STATUS)).is_some_and(|v| v == "ok")
    }
}

/// One HTTP/2 connection to a node.
#[derive(Debug)]
pub struct Client {
    sender: SendRequest<ChannelBody>,
    authority: String,
    token: Option<String>,
    scheme: &'static str,
}

impl Client {
    pub async fn connect(addr: &str, transport: &Transport, token: Option<String>) -> Result<Client, ClientError> {
        let tcp =
            TcpStream::connect(addr).await.map_err(|source| ClientError::Connect { addr: addr.into(), source })?;
        let _ = tcp.set_nodelay(true);
        let mut h2 = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(16 << 20)
            .max_frame_size(crate::MAX_FRAME);
        let (sender, scheme) = match transport {
            Transport::Tls { trust, server_name } | Transport::MutualTls { trust, server_name, .. } => {
                let identity = match transport {
                    Transport::MutualTls { identity, .. } => Some(&**identity),
                    _ => None,
                };
                let config = client_config_with(trust, identity).map_err(|e| ClientError::Tls(e.to_string()))?;
                let name = ServerName::try_from(server_name.clone()).map_err(|e| ClientError::Tls(e.to_string()))?;
                let tls = TlsConnector::from(config).connect(name, tcp).await.map_err(|e| {
                    let pinned = matches!(trust, crate::tls::Trust::Pin(_));
                    if pinned && e.to_string().contains("ApplicationVerificationFailure") {
                        ClientError::CertificateMismatch
                    } else {
                        ClientError::Tls(e.to_string())
                    }
                })?;
                let (sender, conn) = h2.handshake(TokioIo::new(tls)).await?;
                tokio::spawn(conn);
                (sender, "https")
            }
            Transport::H2c => {
                let (sender, conn) = h2.handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                (sender, "http")
            }
        };
        Ok(Client { sender, authority: addr.to_string(), token, scheme })
    }

    /// A request to `path` on this node, with the URI filled in.
    pub fn request(&self, method: http::Method, path: &str) -> http::request::Builder {
        Request::builder().method(method).uri(format!("{}://{}{path}", self.scheme, self.authority))
    }

    /// Sends a request on this connection (usable from many tasks at once: HTTP/2 streams).
    pub async fn send(&self, req: Request<ChannelBody>) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let mut sender = self.sender.clone();
        sender.ready().await?;
        Ok(sender.send_request(req).await?)
    }

    /// A plain GET (health, metrics, transcoder status; with the token when there is one):
    /// status and body.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, Bytes), ClientError> {
        let mut req = self.request(http::Method::GET, path);
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(ChannelBody::empty()).map_err(|e| ClientError::Tls(e.to_string()))?;
        let resp = self.send(req).await?;
        let status = resp.status();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }

    /// Ends a stream on the node (frees its session).
    pub async fn end_stream(&mut self, stream: &str) -> Result<StatusCode, ClientError> {
        let mut req = self.request(http::Method::DELETE, &format!("/v1/streams/{stream}"));
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(ChannelBody::empty()).map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(self.send(req).await?.status())
    }

    /// Pushes one segment; `on_record` sees every result record as it arrives.
    pub async fn push(
        &mut self,
        stream: &str,
        seq: u64,
        profiles: Option<&str>,
        upload: Upload,
        mut on_record: impl FnMut(&Record),
    ) -> Result<PushOutcome, ClientError> {
        let started = Instant::now();
        let seq_text = seq.to_string();
        crate::hop_log::event(stream, &seq_text, "upload_start");
        let (tx, body) = ChannelBody::channel(8);
        let mut req = self.request(http::Method::POST, &format!("/v1/streams/{stream}/segments/{seq}"));
        if let Some(p) = profiles {
            req = req.header(crate::headers::PROFILES, p);
        }
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Upload::Full(d) = &upload {
            req = req.header(http::header::CONTENT_LENGTH, d.len());
        }
        let req = req.body(body).map_err(|e| ClientError::Tls(e.to_string()))?;
        let (upload_tx, mut upload_rx) = tokio::sync::oneshot::channel();
        let (hop_stream, hop_seq) = (stream.to_string(), seq_text.clone());
        tokio::spawn(async move {
            let (data, piece, interval) = match upload {
                Upload::Full(d) => (d, 64 * 1024, Duration::ZERO),
                Upload::Paced { data, piece, interval } => (data, piece.max(1), interval),
            };
            // Piece n is due at n x interval from the start (not interval after the last one:
            // timer slack would add up, and a paced upload would run late of its real time).
            let origin = tokio::time::Instant::now();
            let mut off = 0;
            let mut n = 0u32;
            while off < data.len() {
                let end = (off + piece).min(data.len());
                if tx.send(Ok(Frame::data(data.slice(off..end)))).await.is_err() {
                    return;
                }
                off = end;
                n = n.saturating_add(1);
                if !interval.is_zero() && off < data.len() {
                    tokio::time::sleep_until(origin + interval * n).await;
                }
            }
            crate::hop_log::event(&hop_stream, &hop_seq, "upload_end");
            let _ = upload_tx.send(started.elapsed());
        });
        let resp = self.send(req).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if status != StatusCode::OK {
            let bytes = body.collect().await?.to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(ClientError::Status {
                status,
                code: v["code"].as_str().unwrap_or("unknown").to_string(),
                message: v["message"].as_str().unwrap_or_else(|| std::str::from_utf8(&bytes).unwrap_or("")).to_string(),
            });
        }
        let mut out = PushOutcome::default();
        let mut reader = RecordReader::new();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            let frame = match frame.into_data() {
                Ok(d) => {
                    reader.push(&d);
                    while let Some(rec) = reader.poll() {
                        let rec = rec?;
                        match rec.kind {
                            Kind::Start => {
                                let v: serde_json::Value = serde_json::from_slice(&rec.payload).unwrap_or_default();
                                out.renditions = v["renditions"]
                                    .as_array()
                                    .map(|a| a.iter().filter_map(|n| n.as_str().map(String::from)).collect())
                                    .unwrap_or_default();
                            }
                            Kind::Chunk => {
                                if first.is_none() {
                                    crate::hop_log::event(stream, &seq_text, "result_first");
                                }
                                first.get_or_insert_with(|| started.elapsed());
                            }
                            Kind::Error => {
                                out.errors.push((rec.rendition, String::from_utf8_lossy(&rec.payload).into()))
                            }
                            Kind::End => out.end = serde_json::from_slice(&rec.payload).ok(),
                            Kind::Done => {}
                        }
                        on_record(&rec);
                    }
                    continue;
                }
                Err(f) => f,
            };
            if let Ok(t) = frame.into_trailers() {
                out.trailers = Some(t);
            }
        }
        reader.finish()?;
        out.ttlb = started.elapsed();
        crate::hop_log::event(stream, &seq_text, "result_last");
        out.ttfb = first.unwrap_or(out.ttlb);
        out.upload_time = upload_rx.try_recv().unwrap_or(out.ttlb);
        Ok(out)
    }
}
