//! What a running node shares between its connections: the scheduler, the streams' sessions,
//! the remote tasks in flight, the transcoder links and who may connect.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch};
use zerohop_engine::Ladder;

use super::config::NodeConfig;
use super::secrets::{Credential, TranscoderSecrets};
use crate::broadcasters::{BroadcasterTokens, StreamOwners};
use crate::hls::HlsStore;
use crate::metrics as m;
use crate::relay::{DeviceCaps, InputBuf, Out, SessionSlot};
use crate::scheduler::{Scheduler, TaskId, TranscoderId};
use crate::secret::AuthLimiter;

/// The in-process transcoder's id in the scheduler.
pub(super) const LOCAL: TranscoderId = 0;

pub(super) struct StreamSlot {
    pub session: SessionSlot,
    pub last_used: Instant,
}

/// A segment on its way, whatever runs it.
pub(super) struct Job {
    pub stream: String,
    pub seq: String,
    pub ladder: Ladder,
    /// A clip of the segment (a Livepeer gateway's segment slicing), else the whole.
    pub options: zerohop_engine::SegmentOptions,
    pub input: Arc<InputBuf>,
    pub out: mpsc::Sender<Out>,
    /// A result byte reached the broadcaster: no more retries.
    pub started: Arc<AtomicBool>,
    /// When the request arrived (queue time = until a transcoder starts reading the input).
    pub received: Instant,
}

/// A transcoder's live link.
pub(super) struct Link {
    pub name: String,
    /// Where it came from (the address named when another link with its id replaces it).
    pub peer: SocketAddr,
    /// When it was made.
    pub since: Instant,
    /// Links of this id that replaced a live one in a row, this one included (0: it replaced
    /// none); two boxes sharing an id take over from each other and count up.
    pub takeovers: u32,
    /// What it says it runs on (capabilities header).
    pub backend: String,
    pub gpus: Vec<DeviceCaps>,
    pub credential: Credential,
    pub tasks: mpsc::Sender<Bytes>,
    /// Ends the link (the transcoder was revoked, or a new link with its id replaced it).
    pub close: watch::Sender<bool>,
}

pub(super) struct State {
    pub config: NodeConfig,
    pub scheduler: Mutex<Scheduler>,
    pub streams: Mutex<HashMap<String, StreamSlot>>,
    /// Remote tasks in flight.
    pub jobs: Mutex<HashMap<TaskId, Job>>,
    /// At most one per transcoder id (`Link::name`). Where both are held, `links` is locked
    /// before `scheduler`, so a link and its scheduler entry come and go together.
    pub links: Mutex<HashMap<TranscoderId, Link>>,
    pub next_link: AtomicU64,
    /// Who may dial in; replaced by `Node::reload_transcoders` (SIGHUP) without a restart.
    pub transcoders: RwLock<TranscoderSecrets>,
    pub auth_limiter: Mutex<AuthLimiter>,
    /// Who may push; replaced by `Node::reload_broadcasters` (SIGHUP).
    pub broadcasters: RwLock<BroadcasterTokens>,
    /// Which broadcaster holds which live stream.
    pub owners: Mutex<StreamOwners>,
    /// Open connections per peer address.
    pub connections: Mutex<HashMap<IpAddr, usize>>,
    /// What HLS players are served.
    pub hls: Mutex<HlsStore>,
    /// Playback requests being served (bounded so viewers cannot slow transcoding).
    pub playback: Arc<tokio::sync::Semaphore>,
    /// Livepeer gateways' sessions and the renditions they fetch.
    pub livepeer: Mutex<crate::livepeer::sessions::GatewaySessions>,
    /// go-livepeer transcoders' links: the token in their input URLs -> the link.
    pub livepeer_links: Mutex<HashMap<String, TranscoderId>>,
}

impl State {
    pub fn new(config: NodeConfig) -> State {
        // Counters at 0 from the start, so a scrape shows none happened rather than nothing.
        metrics::counter!(m::LINK_TAKEOVERS).increment(0);
        let mut scheduler = Scheduler::new(config.task_deadline);
        if config.max_sessions > 0 {
            scheduler.add_local(LOCAL, config.max_sessions as u32);
        }
        State {
            scheduler: Mutex::new(scheduler),
            streams: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            next_link: AtomicU64::new(1),
            transcoders: RwLock::new(config.transcoders.clone()),
            broadcasters: RwLock::new(config.broadcasters.clone()),
            owners: Mutex::new(StreamOwners::new(config.idle_timeout)),
            connections: Mutex::new(HashMap::new()),
            hls: Mutex::new(HlsStore::new(config.hls_window, config.hls_max_streams)),
            playback: Arc::new(tokio::sync::Semaphore::new(config.max_playback_requests)),
            livepeer: Mutex::new(crate::livepeer::sessions::GatewaySessions::new(random_key())),
            livepeer_links: Mutex::default(),
            auth_limiter: Mutex::new(AuthLimiter::new(config.auth_max_failures, std::time::Duration::from_secs(60))),
            config,
        }
    }

    /// Whether the node can take work: some transcoding capacity, in process or on a linked
    /// transcoder (`GET /readyz`). A node at full load is still ready: it answers 503 with
    /// `Retry-After` per segment, which a load balancer should not read as a dead node.
    pub fn readiness(&self) -> Result<(), String> {
        let (capacity, _) = self.scheduler.lock().totals();
        if capacity > 0 {
            Ok(())
        } else {
            Err("no transcoding capacity: no in-process sessions and no transcoder linked".into())
        }
    }

    /// Publishes capacity, load and the number of links.
    pub fn update_capacity_metrics(&self) {
        let (capacity, load) = self.scheduler.lock().totals();
        metrics::gauge!(m::CAPACITY).set(f64::from(capacity));
        metrics::gauge!(m::LOAD).set(f64::from(load));
        metrics::gauge!(m::TRANSCODERS).set(self.links.lock().len() as f64);
    }
}

/// A key for this process's Livepeer auth tokens (a restart invalidates them, as go-livepeer's).
fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut key) {
        // Without randomness the tokens are forgeable: say so loudly; the node still serves its
        // own API.
        tracing::error!(error = %e, "no random bytes for the Livepeer token key; Livepeer gateway tokens are weak");
    }
    key
}

/// Who is on the other end of a connection, as far as the transport says.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    pub ip: IpAddr,
    /// Its source port: with `ip`, names the connection in logs.
    pub port: u16,
    /// SHA-256 of the client certificate it proved it holds (mutual TLS), if any.
    pub client_cert: Option<Arc<str>>,
}

impl Peer {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}
