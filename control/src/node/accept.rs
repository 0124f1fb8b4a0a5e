//! The accept loop: connection limits per address and in all, the TLS handshake, which HTTP
//! (ALPN `h2` -> HTTP/2; `http/1.1` or no ALPN -> HTTP/1.1; cleartext: the HTTP/2 preface ->
//! h2c, else HTTP/1.1), HTTP/1.1 and HTTP/2 settings, and closing connections that send no
//! complete request in time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::routes::handle;
use super::state::{Peer, State};
use crate::metrics as m;

/// Accepts connections until `stopped` changes.
pub(super) async fn accept_loop(state: Arc<State>, listener: TcpListener, mut stopped: watch::Receiver<bool>) {
    let acceptor = state.config.tls.clone().map(TlsAcceptor::from);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
            },
            _ = stopped.changed() => break,
        };
        let Some(slot) = ConnectionSlot::admit(&state, peer.ip()) else {
            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "too_many_connections").increment(1);
            tracing::debug!(%peer, "connection limit reached; closed at accept");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(state.clone(), acceptor.clone(), tcp, peer, slot));
    }
}

/// One accepted connection: its handshake and its requests, counted until it ends.
async fn connection(
    state: Arc<State>,
    acceptor: Option<TlsAcceptor>,
    tcp: TcpStream,
    peer: SocketAddr,
    _slot: ConnectionSlot,
) {
    let first_by = tokio::time::Instant::now() + state.config.header_timeout;
    let Some(acceptor) = acceptor else {
        let version = match tokio::time::timeout_at(first_by, cleartext_version(&tcp)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "connection ended before its first bytes"),
            Err(_) => {
                metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "header_timeout").increment(1);
                return tracing::debug!(%peer, "no request in time; closing the connection");
            }
        };
        return serve_connection(version, tcp, state, peer, None, first_by).await;
    };
    match tokio::time::timeout_at(first_by, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            let (_, session) = tls.get_ref();
            let cert = session.peer_certificates().and_then(|c| c.first());
            let cert = cert.map(|c| Arc::from(crate::tls::fingerprint(c)));
            let version = if session.alpn_protocol() == Some(b"h2") { Version::H2 } else { Version::H1 };
            serve_connection(version, tls, state, peer, cert, first_by).await
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => {
            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "header_timeout").increment(1);
            tracing::debug!(%peer, "TLS handshake timed out");
        }
    }
}

/// Which HTTP a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    H1,
    H2,
}

/// The HTTP/2 connection preface (RFC 9113 3.4): an h2c client with prior knowledge starts so.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A cleartext connection's HTTP, from its first bytes (peeked, not consumed): the HTTP/2
/// preface, or anything else (HTTP/1.1).
async fn cleartext_version(tcp: &TcpStream) -> std::io::Result<Version> {
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != PREFACE[..n] {
            return Ok(Version::H1);
        }
        if n == PREFACE.len() {
            return Ok(Version::H2);
        }
        // A prefix of the preface so far: wait for more (bounded by the header timeout).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One admitted connection; counted until dropped.
struct ConnectionSlot {
    state: Arc<State>,
    ip: IpAddr,
}

impl ConnectionSlot {
    /// `None` when the peer (or the node) already has its limit of connections.
    fn admit(state: &Arc<State>, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut c = state.connections.lock();
        let total: usize = c.values().sum();
        let mine = c.get(&ip).copied().unwrap_or(0);
        if mine >= state.config.max_connections_per_ip || total >= state.config.max_connections {
            return None;
        }
        *c.entry(ip).or_insert(0) += 1;
        metrics::gauge!(m::CONNECTIONS).set((total + 1) as f64);
        Some(ConnectionSlot { state: state.clone(), ip })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self.state.connections.lock();
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
        metrics::gauge!(m::CONNECTIONS).set(c.values().sum::<usize>() as f64);
    }
}

/// Serves one connection in its HTTP; closes it when no complete request arrived by
/// `first_by`.
async fn serve_connection<IO>(
    version: Version,
    io: IO,
    state: Arc<State>,
    peer: SocketAddr,
    client_cert: Option<Arc<str>>,
    first_by: tokio::time::Instant,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let seen = Arc::new(AtomicBool::new(false));
    let seen_in_service = seen.clone();
    let who = Peer { ip: peer.ip(), port: peer.port(), client_cert };
    let config = &state.config;
    let (keepalive, max_streams) = (config.keepalive, config.max_streams_per_connection);
    let header_timeout = config.header_timeout;
    let service = service_fn(move |req| {
        seen_in_service.store(true, Ordering::Release);
        handle(state.clone(), who.clone(), req)
    });
    let silent = async {
        tokio::time::sleep_until(first_by).await;
        if seen.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    };
    // The two connection types differ; the watch on them is the same.
    macro_rules! serve {
        ($conn:expr) => {{
            let mut conn = std::pin::pin!($conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                    return;
                }
                _ = silent => {}
            }
            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "header_timeout").increment(1);
            tracing::debug!(%peer, "no complete request in time; closing the connection");
            // GOAWAY (or close) for a client that is merely early; a peer that ignores it is
            // cut off.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }};
    }
    match version {
        Version::H2 => {
            let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            h2.timer(TokioTimer::new())
                .keep_alive_interval(keepalive)
                .keep_alive_timeout(keepalive * 2)
                .max_concurrent_streams(max_streams)
                .max_header_list_size(16 * 1024)
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(16 << 20)
                .max_frame_size(crate::MAX_FRAME);
            serve!(h2.serve_connection(TokioIo::new(io), service))
        }
        Version::H1 => {
            let mut h1 = hyper::server::conn::http1::Builder::new();
            // One request at a time per connection; each request head within the header timeout.
            h1.timer(TokioTimer::new()).max_buf_size(H1_MAX_BUF).keep_alive(true).header_read_timeout(header_timeout);
            serve!(h1.serve_connection(TokioIo::new(io), service))
        }
    }
}

/// HTTP/1.1 read buffer, at most (hyper's default is about 400 KiB).
const H1_MAX_BUF: usize = 64 * 1024;
