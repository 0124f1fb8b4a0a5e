//! `zerohop transcoder --livepeer-orch`: a zerohop transcoder in a go-livepeer orchestrator's
//! pool, over Livepeer's own protocol (see doc/livepeer.md).

use std::process::ExitCode;

use anyhow::{Result, bail};
use zerohop_control::client::Transport;
use zerohop_control::livepeer::transcoder::{LivepeerTranscoderConfig, run};
use zerohop_control::tls::{Trust, parse_fingerprints};
use zerohop_engine::codec::CpuEncoder;
use zerohop_engine::profile::CodecProfile;

use crate::node_cmd::{TranscoderArgs, build_info, runtime, shutdown_signal};

/// How a transcoder joins a go-livepeer orchestrator.
#[derive(Debug, clap::Args)]
pub struct LivepeerTranscoderArgs {
    /// Join this go-livepeer orchestrator's pool (HOST:PORT, its -serviceAddr) with Livepeer's
    /// own transcoder protocol, instead of a zerohop orchestrator's link. The secret is its
    /// -orchSecret, from --orch-secret-file or ZEROHOP_ORCH_SECRET; capacity is
    /// --max-sessions. Needs --livepeer-insecure or --livepeer-pin.
    #[arg(long, value_parser = crate::node_cmd::orch_addr, conflicts_with_all = ["orch_addr", "client_identity_dir", "transcoder_id", "insecure_h2c", "orch_cert_sha256", "ca_file"])]
    pub livepeer_orch: Option<String>,
    /// Accept whatever certificate the Livepeer orchestrator presents, as go-livepeer's own
    /// transcoders do (it makes a new self-signed one at every start).
    #[arg(long, requires = "livepeer_orch", conflicts_with = "livepeer_pin")]
    pub livepeer_insecure: bool,
    /// Accept only the Livepeer orchestrator certificate with this SHA-256 (for an orchestrator
    /// given a fixed certificate); several, comma-separated, accept any.
    #[arg(long, requires = "livepeer_orch")]
    pub livepeer_pin: Option<String>,
}

/// The H.264 profiles whose decoders read what this node's encoders write: NVENC writes what it
/// is asked; the CPU encoders write what they write (OpenH264 Constrained Baseline, read by all;
/// x264 High).
pub fn profiles_written(sessions: &zerohop_control::relay::SessionFactory) -> Vec<CodecProfile> {
    let all = vec![CodecProfile::Baseline, CodecProfile::Main, CodecProfile::High];
    let nvenc_everywhere = !sessions.devices.is_empty() && sessions.devices.iter().all(|d| d.encode == "gpu");
    match CpuEncoder::process_default() {
        _ if nvenc_everywhere => all,
        CpuEncoder::OpenH264 => all,
        CpuEncoder::X264 { .. } => vec![CodecProfile::High],
    }
}

pub fn transcoder(a: TranscoderArgs, orch: String, secret: Option<String>) -> Result<ExitCode> {
    let lp = &a.livepeer;
    let trust = match (&lp.livepeer_pin, lp.livepeer_insecure) {
        (Some(pins), _) => {
            parse_fingerprints(pins)?;
            Trust::Pin(pins.clone())
        }
        (None, true) => Trust::AnyCertificate,
        (None, false) => bail!(
            "a go-livepeer orchestrator makes a new self-signed certificate at every start, so zerohop cannot verify it \
             the usual way: give --livepeer-insecure to accept any certificate (what go-livepeer's own transcoders do), \
             or --livepeer-pin SHA256 for an orchestrator started with a fixed certificate"
        ),
    };
    let Some(secret) = secret else {
        bail!(
            "no secret for the Livepeer orchestrator: put its -orchSecret in --orch-secret-file FILE or ZEROHOP_ORCH_SECRET"
        );
    };
    if a.max_sessions == 0 {
        bail!("--max-sessions 0: a Livepeer orchestrator refuses a transcoder of zero capacity; give 1 or more");
    }
    let sessions = crate::accel_cmd::factory(a.accel.accel, &a.accel.gpus, a.accel.gpu_options())?;
    let host = orch.rsplit_once(':').map_or(orch.as_str(), |(h, _)| h).trim_matches(['[', ']']).to_string();
    let config = LivepeerTranscoderConfig {
        orch_addr: orch.clone(),
        transport: Transport::Tls { trust, server_name: host },
        secret,
        capacity: a.max_sessions,
        profiles: profiles_written(&sessions),
        sessions,
    };
    let caps: Vec<&str> = config.capabilities().iter().map(|c| c.name()).collect();
    let rt = runtime()?;
    rt.block_on(async move {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("stopping: finishing the tasks in progress, then leaving");
            let _ = stop_tx.send(true);
        });
        build_info();
        if let Some(m) = a.metrics_addr {
            let ready: zerohop_control::metrics::Readiness = std::sync::Arc::new(|| Ok(()));
            let bound = zerohop_control::metrics::serve(m, ready).await?;
            eprintln!("metrics: http://{bound}/metrics (and /healthz, /readyz)");
        }
        eprintln!(
            "transcoder joining the Livepeer orchestrator {orch} ({} sessions; capabilities: {})",
            a.max_sessions,
            caps.join(", ")
        );
        run(config, stop).await.map_err(anyhow::Error::from)
    })?;
    Ok(ExitCode::SUCCESS)
}
