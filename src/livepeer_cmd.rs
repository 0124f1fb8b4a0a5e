//! `zerohop transcoder --livepeer-orch`: a zerohop transcoder in a go-livepeer orchestrator's
//! pool, over Livepeer's own protocol (see doc/livepeer.md).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use zerohop_control::client::Transport;
use zerohop_control::livepeer::transcoder::{LivepeerTranscoderConfig, run_shared};
use zerohop_control::tls::{Trust, parse_fingerprints};

use crate::node_cmd::{TranscoderArgs, run_transcoder};

/// `zerohop transcoder` with `--livepeer-orch ORCH`.
pub fn transcoder(a: TranscoderArgs, orch: String) -> Result<ExitCode> {
    crate::node_cmd::init_logs_as(a.logs.log_format);
    let secret = zerohop_control::secret::load(a.orch_secret_file.as_deref(), "ZEROHOP_ORCH_SECRET")
        .with_context(|| format!("reading {:?}", a.orch_secret_file))?;
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
        profiles: crate::accel_cmd::profiles_written(&sessions),
        sessions,
    };
    let caps: Vec<&str> = config.capabilities().iter().map(|c| c.name()).collect();
    let said = format!(
        "transcoder joining the Livepeer orchestrator {orch} ({} sessions; capabilities: {})",
        a.max_sessions,
        caps.join(", ")
    );
    run_transcoder(a.metrics_addr, "not registered with the Livepeer orchestrator", said, |stop, shared| async move {
        run_shared(config, stop, shared).await.map_err(anyhow::Error::from)
    })
}
