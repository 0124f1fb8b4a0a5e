//! The node's HTTP/1.1 and HTTP/2 server: the orchestrator's broadcaster API, the transcoder link, and (in
//! combined mode) an in-process transcoder.
//!
//! `POST /v1/streams/{stream}/segments/{seq}` (`segment`) stores the upload in a
//! replayable buffer as it arrives and places the segment with the [`Scheduler`]: on the
//! in-process engine, or on a remote transcoder that reads the same buffer
//! (`GET /v1/tasks/{id}/input`) while it is still arriving and streams its records back
//! (`POST /v1/tasks/{id}/results`). The broadcaster's answer starts with the first encoded
//! chunk; errors before that are an HTTP status with a JSON `{code, message}` body
//! ([`NodeError`](crate::fault::NodeError) decides the status), errors after it an in-band
//! record and `zerohop-status` / `zerohop-error-code` trailers. A remote task that fails before
//! any result byte reached the broadcaster is retried on another transcoder.
//!
//! Transcoders dial in with `POST /v1/transcoders/link` (id and secret, capacity in the first
//! report): the request body carries their live load reports, the response body their tasks,
//! both as JSON lines, for as long as the connection lives.
//!
//! The files, each using only those listed before it: `secrets` and `config` (settings),
//! `reply` (responses), `state` (what connections share), `auth`, `dispatch` (placement's
//! outcome, failover, housekeeping), `links`, `status`, `tasks`, `segment`, `routes`, `accept`,
//! and this one, which starts and reloads the node.
//!
//! [`Scheduler`]: crate::scheduler::Scheduler

mod accept;
mod auth;
mod config;
mod dispatch;
mod links;
mod livepeer;
mod livepeer_transcoders;
mod playback;
mod reply;
mod routes;
mod secrets;
mod segment;
mod state;
mod status;
mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use self::config::NodeConfig;
pub use self::secrets::{Credential, LineError, SecretsFileError, TranscoderSecrets};
use self::state::State;
use crate::broadcasters::BroadcasterTokens;
use crate::scheduler::TranscoderId;

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    state: Arc<State>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Node {
    /// `GET /readyz`'s answer, for the metrics port too: some capacity, in process or linked.
    pub fn readiness(&self) -> crate::metrics::Readiness {
        let state = self.state.clone();
        Arc::new(move || state.readiness())
    }

    /// Binds and starts serving.
    pub async fn start(config: NodeConfig) -> std::io::Result<Node> {
        crate::metrics::init();
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(config));
        state.update_capacity_metrics();
        // Published by housekeeping from now on; registered at once so a scrape always finds it.
        metrics::gauge!(crate::metrics::STREAMS).set(0.0);
        let (stop, stopped) = watch::channel(false);
        let serving = state.clone();
        let task = tokio::spawn(async move {
            let housekeeping = tokio::spawn(dispatch::housekeeping(serving.clone()));
            accept::accept_loop(serving, listener, stopped).await;
            housekeeping.abort();
        });
        Ok(Node { addr, stop, task, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces who may dial in (the secrets file was edited; SIGHUP). Links of transcoders
    /// whose id is no longer admitted are closed at once: their tasks fail over and a redial
    /// gets 401. Returns how many links were closed.
    pub fn reload_transcoders(&self, secrets: TranscoderSecrets) -> usize {
        let state = &self.state;
        let revoked: Vec<TranscoderId> = state
            .links
            .lock()
            .iter()
            .filter(|(_, l)| !secrets.still_admits(&l.name, &l.credential))
            .map(|(id, _)| *id)
            .collect();
        *state.transcoders.write() = secrets;
        let mut links = state.links.lock();
        for id in &revoked {
            if let Some(l) = links.remove(id) {
                tracing::warn!(transcoder = %l.name, "transcoder revoked; link closed");
                let _ = l.close.send(true);
            }
        }
        revoked.len()
    }

    /// Re-reads the secrets and certificates files (SIGHUP) and reloads from them, keeping
    /// `shared`. A file that cannot be used keeps the old table, logs why and returns the
    /// error; else returns how many links were closed.
    pub fn reload_transcoders_from(
        &self,
        secrets: Option<&std::path::Path>,
        certs: Option<&std::path::Path>,
        shared: Option<String>,
    ) -> Result<usize, SecretsFileError> {
        match TranscoderSecrets::read_files(secrets, certs) {
            Ok(t) => Ok(self.reload_transcoders(TranscoderSecrets { shared, ..t })),
            Err(e) => {
                tracing::error!(error = %e, "keeping the old transcoder secrets");
                Err(e)
            }
        }
    }

    /// Replaces who may push (the tokens file was edited; SIGHUP). A removed token is refused
    /// from its next request on; streams keep their owner names, so a renamed token does not
    /// take over another broadcaster's streams.
    pub fn reload_broadcasters(&self, tokens: BroadcasterTokens) {
        *self.state.broadcasters.write() = tokens;
    }

    /// Stops accepting connections (connections in progress finish on their own).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
