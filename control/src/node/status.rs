//! `GET /v1/transcoders`: who does the work, for operators (and the fault tests).

use std::time::Instant;

use serde_json::json;

use super::reply::{self, Resp};
use super::state::State;

pub(super) fn transcoders(state: &State) -> Resp {
    // Links, then the scheduler (their lock order): one consistent view, one entry per link.
    let links = state.links.lock();
    let snapshot = state.scheduler.lock().snapshot(Instant::now());
    let local = &state.config.sessions;
    let list: Vec<serde_json::Value> = snapshot
        .iter()
        .map(|t| {
            let (name, backend, gpus, peer) = if t.local {
                ("local", local.backend.as_str(), local.devices.as_slice(), None)
            } else if let Some(l) = links.get(&t.id) {
                (l.name.as_str(), l.backend.as_str(), l.gpus.as_slice(), Some(l.peer.to_string()))
            } else {
                ("", "", &[][..], None)
            };
            json!({
                "id": t.id,
                "name": name,
                "backend": backend,
                "gpus": gpus,
                "local": t.local,
                "peer": peer,
                "capacity": t.capacity,
                "load": t.load,
                "tasks": t.tasks,
                "max_output": [t.caps.max_width, t.caps.max_height],
                "strikes": t.strikes,
                "cooldown_s": t.cooldown.as_secs_f64(),
            })
        })
        .collect();
    reply::full(json!({ "transcoders": list }).to_string(), "application/json")
}
