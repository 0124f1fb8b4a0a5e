//! A node's settings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use zerohop_engine::Ladder;

use super::secrets::TranscoderSecrets;
use crate::broadcasters::BroadcasterTokens;
use crate::relay::SessionFactory;
use crate::scheduler::default_deadline;

/// Node settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    /// `None`: cleartext, HTTP/1.1 or HTTP/2 with prior knowledge (only with `--insecure-h2c`).
    pub tls: Option<Arc<ServerConfig>>,
    /// Segments the in-process engine transcodes at once; 0 for an orchestrator that only uses
    /// remote transcoders.
    pub max_sessions: usize,
    pub default_ladder: Ladder,
    /// Broadcasters must send `Authorization: Bearer <token>` with one of these tokens, and hold
    /// at most their limit of live streams; empty: anyone may push.
    pub broadcasters: BroadcasterTokens,
    /// Transcoders that may dial in; none: the link endpoint is closed.
    pub transcoders: TranscoderSecrets,
    /// Largest accepted segment upload.
    pub max_segment_bytes: u64,
    /// HTTP/2 PING interval; a peer silent for twice this is dropped.
    pub keepalive: Duration,
    /// A stream's session is closed after this long without segments.
    pub idle_timeout: Duration,
    /// How long a remote task may run before it is failed over.
    pub task_deadline: Duration,
    /// An upload that sends nothing for this long is cut off (slow-body clients).
    pub upload_idle: Duration,
    /// Failed transcoder authentications per peer address per minute before it gets 429s.
    pub auth_max_failures: u32,
    /// Opens the in-process engine's sessions (CPU by default; GPUs when the binary says so).
    pub sessions: SessionFactory,
    /// A connection that has not sent one complete request this long after it was accepted
    /// (TLS handshake included) is closed: slowloris on the preface or the first headers.
    pub header_timeout: Duration,
    /// Open connections per peer address; more are closed at accept.
    pub max_connections_per_ip: usize,
    /// Open connections in all.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (requests) per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams_per_connection: u32,
    /// HLS playback: segments kept per stream (`--hls-window`).
    pub hls_window: usize,
    /// HLS playback: streams kept (`--hls-max-streams`); 0 turns playback off.
    pub hls_max_streams: usize,
    /// Playback requests served at once; more get 503 `at_capacity`.
    pub max_playback_requests: usize,
    /// Playback only with a broadcaster token (`--private-playback`)...
    pub private_playback: bool,
    /// ...or with a URL signed by this key (`--playback-key-file`, `zerohop sign-url`).
    pub playback_key: Option<crate::signed_url::PlaybackKey>,
    /// Serve go-livepeer gateways offchain (`--livepeer-gateways`): `GetOrchestrator`,
    /// `POST /segment`, the renditions by URL, `EndTranscodingSession`. Any gateway that reaches
    /// the port may use it, as with go-livepeer offchain.
    pub livepeer_gateways: bool,
    /// The H.264 profiles whose decoders read what this node's encoders write (its Livepeer
    /// capability bits).
    pub livepeer_profiles: Vec<zerohop_engine::profile::CodecProfile>,
}

impl NodeConfig {
    pub fn new(listen: SocketAddr, tls: Option<Arc<ServerConfig>>) -> NodeConfig {
        NodeConfig {
            listen,
            tls,
            max_sessions: 2,
            default_ladder: Ladder::default_ladder(),
            broadcasters: BroadcasterTokens::default(),
            transcoders: TranscoderSecrets::default(),
            max_segment_bytes: crate::relay::DEFAULT_MAX_SEGMENT,
            keepalive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            task_deadline: default_deadline(Duration::from_secs(2)),
            upload_idle: Duration::from_secs(10),
            auth_max_failures: 5,
            sessions: SessionFactory::cpu(),
            header_timeout: Duration::from_secs(10),
            max_connections_per_ip: 256,
            max_connections: 16384,
            max_streams_per_connection: 256,
            hls_window: crate::hls::DEFAULT_WINDOW,
            hls_max_streams: crate::hls::DEFAULT_MAX_STREAMS,
            max_playback_requests: 64,
            private_playback: false,
            playback_key: None,
            livepeer_gateways: false,
            livepeer_profiles: vec![zerohop_engine::profile::CodecProfile::Baseline],
        }
    }
}
