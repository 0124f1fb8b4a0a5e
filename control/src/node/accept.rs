//! The accept loop: connection limits per address and in all, the TLS handshake, HTTP/2
//! settings, and closing connections that send no complete request in time.

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
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .keep_alive_interval(state.config.keepalive)
        .keep_alive_timeout(state.config.keepalive * 2)
        .max_concurrent_streams(state.config.max_streams_per_connection)
        .max_header_list_size(16 * 1024)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(crate::MAX_FRAME);
    let Some(acceptor) = acceptor else {
        return serve_connection(&h2, tcp, state, peer, None, first_by).await;
    };
    match tokio::time::timeout_at(first_by, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
            let cert = cert.map(|c| Arc::from(crate::tls::fingerprint(c)));
            serve_connection(&h2, tls, state, peer, cert, first_by).await
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => {
            metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "header_timeout").increment(1);
            tracing::debug!(%peer, "TLS handshake timed out");
        }
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

/// Serves one connection; closes it when no complete request arrived by `first_by`.
async fn serve_connection<IO>(
    h2: &hyper::server::conn::http2::Builder<TokioExecutor>,
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
    let who = Peer { ip: peer.ip(), client_cert };
    let service = service_fn(move |req| {
        seen_in_service.store(true, Ordering::Release);
        handle(state.clone(), who.clone(), req)
    });
    let mut conn = std::pin::pin!(h2.serve_connection(TokioIo::new(io), service));
    let silent = async {
        tokio::time::sleep_until(first_by).await;
        if seen.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    };
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
    // GOAWAY for a client that is merely early; a peer that ignores it is cut off.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
}
