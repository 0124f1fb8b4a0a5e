//! What the bench pushes to: a combined node, or an orchestrator with remote transcoders
//! dialling in, all in this process on loopback HTTP/2 + TLS.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::watch;
use zerohop_control::relay::SessionFactory;
use zerohop_control::transcoder::{LinkError, TranscoderConfig};
use zerohop_control::{Client, Node, Transport};
use zerohop_engine::Ladder;

use crate::loopback::loopback_tls;

/// What the streams are pushed to: a combined node, or an orchestrator with remote
/// transcoders dialling in over loopback TLS (split mode).
pub struct Target {
    pub node: Node,
    pub transport: Transport,
    transcoders: Vec<RunningTranscoder>,
}

/// An in-process transcoder: its stop switch and its task.
type RunningTranscoder = (watch::Sender<bool>, tokio::task::JoinHandle<Result<(), LinkError>>);

impl Target {
    /// `transcoders` 0: a combined node with `sessions` local sessions. Otherwise an
    /// orchestrator with no local engine and `transcoders` transcoders sharing `sessions`.
    pub async fn start(
        ladder: &Ladder,
        sessions: usize,
        transcoders: usize,
        factory: &SessionFactory,
    ) -> Result<Target> {
        let (mut cfg, transport, _) = loopback_tls()?;
        cfg.default_ladder = ladder.clone();
        let secret = "bench transcoder secret".to_string();
        if transcoders == 0 {
            cfg.max_sessions = sessions;
            cfg.sessions = factory.clone();
        } else {
            cfg.max_sessions = 0;
            cfg.transcoders.shared = Some(secret.clone());
        }
        let node = Node::start(cfg).await?;
        let mut target = Target { node, transport, transcoders: Vec::new() };
        for i in 0..transcoders {
            let (stop_tx, stop) = watch::channel(false);
            let cfg = TranscoderConfig {
                orch_addr: target.node.local_addr().to_string(),
                transport: target.transport.clone(),
                id: format!("bench-t{i}"),
                secret: secret.clone(),
                max_sessions: sessions.div_ceil(transcoders).max(1) as u32,
                max_output: zerohop_control::transcoder::CPU_MAX_OUTPUT,
                sessions: factory.clone(),
                on_pin_mismatch: zerohop_control::transcoder::PinMismatch::Exit,
            };
            target.transcoders.push((stop_tx, tokio::spawn(zerohop_control::transcoder::run(cfg, stop))));
        }
        if transcoders > 0 {
            let mut c = Client::connect(&target.node.local_addr().to_string(), &target.transport, None).await?;
            anyhow::ensure!(
                transcoders_linked(&mut c, transcoders, Duration::from_secs(10)).await,
                "the bench's transcoders did not register within 10 s"
            );
        }
        Ok(target)
    }

    pub async fn shutdown(self) {
        for (stop, task) in self.transcoders {
            let _ = stop.send(true);
            let _ = task.await;
        }
        self.node.shutdown().await;
    }
}

/// Asks the node (`GET /v1/transcoders`) until `n` transcoders are linked; false when that did
/// not happen `within`.
pub async fn transcoders_linked(c: &mut Client, n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if let Ok((_, body)) = c.get("/v1/transcoders").await
            && serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v["transcoders"].as_array().map_or(0, Vec::len) == n)
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
