//! The node commands: `combined`, `orchestrator`, `transcoder`; how a client trusts the node it
//! dials (shared with `push`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use zerohop_control::broadcasters::BroadcasterTokens;
use zerohop_control::node::TranscoderSecrets;
use zerohop_control::tls::{self, Trust};
use zerohop_control::transcoder::PinMismatch;
use zerohop_control::{Node, NodeConfig, Transport};
use zerohop_engine::Ladder;

/// Options of `zerohop combined` and `zerohop orchestrator`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Address to serve broadcasters and players on (HTTP/1.1 and HTTP/2 over TLS): IP:PORT,
    /// HOST:PORT, or :PORT for every address.
    #[arg(long, default_value = "127.0.0.1:8935", value_parser = listen_addr)]
    pub service_addr: SocketAddr,
    /// Where the self-signed certificate is created on first start.
    #[arg(long, default_value = "zerohop-data")]
    pub data_dir: PathBuf,
    /// PEM certificate chain instead of the self-signed one (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert's certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve cleartext (HTTP/1.1, and HTTP/2 with prior knowledge) instead of TLS. For labs,
    /// tests and encoders on the same host only.
    #[arg(long, visible_alias = "insecure-cleartext")]
    pub insecure_h2c: bool,
    /// HLS playback (/stream/...) only with a broadcaster token (Authorization: Bearer).
    #[arg(long)]
    pub private_playback: bool,
    /// With --private-playback, also URLs signed with this key (`zerohop sign-url`), for players
    /// that cannot send a token. The file holds at least 32 random bytes.
    #[arg(long, requires = "private_playback", value_name = "FILE")]
    pub playback_key_file: Option<PathBuf>,
    /// Serve go-livepeer gateways (`livepeer -gateway -orchAddr`) offchain on this port:
    /// GetOrchestrator, POST /segment and the renditions by URL. Any gateway that reaches the
    /// port may use it, as with go-livepeer offchain (see doc/livepeer.md).
    #[arg(long)]
    pub livepeer_gateways: bool,
    /// Segments the in-process engine transcodes at once (default: 2 for `combined`, 0 for
    /// `orchestrator`, which then uses remote transcoders only). Beyond all capacity: 503.
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// File holding the shared secret remote transcoders present (its first line). Without it,
    /// the secret itself from the environment (never the command line): [env: ZEROHOP_ORCH_SECRET]
    #[arg(long)]
    pub orch_secret_file: Option<PathBuf>,
    /// Per-transcoder secrets: lines of `id secret` (remove a line to revoke one transcoder).
    #[arg(long)]
    pub transcoder_secrets: Option<PathBuf>,
    /// Transcoders authenticated by mutual TLS: lines of `id sha256-of-client-certificate`
    /// (remove a line and SIGHUP to revoke one).
    #[arg(long)]
    pub transcoder_certs: Option<PathBuf>,
    /// How long a remote transcoder may take for a segment before it is failed over.
    #[arg(long, default_value = "8", value_name = "SECONDS")]
    pub task_deadline: f64,
    /// Default ladder for segments that name none (presets or JSON).
    #[arg(short, long)]
    pub profiles: Option<String>,
    /// File holding the bearer token broadcasters must present (its first line). Without it, the
    /// token itself from the environment (never the command line): [env: ZEROHOP_TOKEN]
    #[arg(long, conflicts_with = "broadcaster_tokens")]
    pub token_file: Option<PathBuf>,
    /// Broadcasters that may push: lines of `name token [max-streams]`; a stream belongs to the
    /// token that created it. Re-read on SIGHUP.
    #[arg(long)]
    pub broadcaster_tokens: Option<PathBuf>,
    /// Also serve /metrics, /healthz and /readyz over plain HTTP/1.1 here (Prometheus, probes).
    #[arg(long, visible_alias = "monitor", value_parser = listen_addr)]
    pub metrics_addr: Option<SocketAddr>,
    // The in-process engine's backend: `combined` always has one, `orchestrator` only with
    // --max-sessions > 0 (serve_node opens no session factory otherwise).
    #[command(flatten, next_help_heading = "In-process engine (orchestrator: only with --max-sessions > 0)")]
    pub accel: crate::accel_cmd::AccelArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub logs: LogArgs,
}

/// What a peer can make the node hold, and for how long (doc/operations.md: Limits and bounds).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Largest segment upload (MiB); larger: 413 too_large.
    #[arg(long, default_value = "64", value_name = "MIB")]
    pub max_segment_mib: u64,
    /// An upload that sends nothing this long is cut off (408 upload_stalled).
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub upload_idle: f64,
    /// A connection must complete its first request this soon after it was accepted.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub header_timeout: f64,
    /// A stream's session is closed after this long without segments.
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    pub stream_idle: f64,
    /// HTTP/2 PING interval; a peer silent for twice this is dropped.
    #[arg(long, default_value = "5", value_name = "SECONDS")]
    pub keepalive: f64,
    /// Open connections per peer address.
    #[arg(long, default_value = "256")]
    pub max_connections_per_ip: usize,
    /// Open connections in all.
    #[arg(long, default_value = "16384")]
    pub max_connections: usize,
    /// Concurrent HTTP/2 requests per connection.
    #[arg(long, default_value = "256")]
    pub max_streams_per_connection: u32,
    /// Failed authentications per address per minute before 429s.
    #[arg(long, default_value = "5")]
    pub auth_max_failures: u32,
    /// HLS playback: segments kept per stream (a stream idle longer than its window is dropped).
    #[arg(long, default_value = "6", value_name = "SEGMENTS")]
    pub hls_window: usize,
    /// HLS playback: streams kept (the one updated longest ago makes room); 0: no playback.
    #[arg(long, default_value = "32")]
    pub hls_max_streams: usize,
    /// HLS playback responses being sent at once; more get 503 at_capacity.
    #[arg(long, default_value = "64")]
    pub max_playback_requests: usize,
}

impl LimitArgs {
    fn apply(&self, cfg: &mut NodeConfig) {
        let secs = |v: f64, max: f64| Duration::from_secs_f64(v.clamp(0.05, max));
        cfg.max_segment_bytes = self.max_segment_mib.clamp(1, 4096) << 20;
        cfg.upload_idle = secs(self.upload_idle, 3600.0);
        cfg.header_timeout = secs(self.header_timeout, 3600.0);
        cfg.idle_timeout = secs(self.stream_idle, 86400.0);
        cfg.keepalive = secs(self.keepalive, 3600.0);
        cfg.max_connections_per_ip = self.max_connections_per_ip.max(1);
        cfg.max_connections = self.max_connections.max(1);
        cfg.auth_max_failures = self.auth_max_failures.max(1);
        cfg.max_streams_per_connection = self.max_streams_per_connection.max(1);
        cfg.hls_window = self.hls_window.clamp(1, 1000);
        cfg.hls_max_streams = self.hls_max_streams;
        cfg.max_playback_requests = self.max_playback_requests.max(1);
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event; colour only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line (time stamp, level, target, fields), for log shippers.
    Json,
}

/// Logging options of the long-running commands.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Logs")]
pub struct LogArgs {
    /// Log format on stderr. RUST_LOG filters the events (default `info`; e.g.
    /// `RUST_LOG=zerohop_control=debug`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Text logs on stderr (colour only on a terminal), filtered by RUST_LOG.
pub fn init_logs() {
    init_logs_as(LogFormat::Text);
}

pub fn init_logs_as(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second call (tests, or a command that already set logging up) keeps the first.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// An address to listen on: IP:PORT, HOST:PORT (resolved once, the first address), or :PORT
/// (every IPv4 address).
pub fn listen_addr(s: &str) -> std::result::Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let hint = "write IP:PORT (0.0.0.0:8935), HOST:PORT (node1.example.net:8935) or :PORT (:8935)";
    if s.contains("://") {
        return Err(format!("{s:?} is a URL; {hint}"));
    }
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("{port:?} is not a port; {hint}"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} has no port; {hint}"))?;
    port.parse::<u16>().map_err(|_| format!("{port:?} is not a port; {hint}"))?;
    s.to_socket_addrs()
        .map_err(|e| format!("{host:?} does not resolve ({e}); {hint}"))?
        .next()
        .ok_or_else(|| format!("{host:?} has no address; {hint}"))
}

/// An orchestrator to dial: HOST:PORT or IP:PORT (a host name is resolved at each dial, so a
/// moved orchestrator is found again). Anything else is refused at start-up, saying what to write.
pub fn orch_addr(s: &str) -> std::result::Result<String, String> {
    let hint = "write HOST:PORT, e.g. orchestrator.example.net:8935, 10.0.0.5:8935 or [2001:db8::5]:8935";
    if let Some((scheme, _)) = s.split_once("://") {
        return Err(format!("{s:?} is a URL ({scheme}://); {hint}"));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} has no port; {hint}"));
    };
    if host.is_empty() || host.contains('/') || (host.contains(':') && !(host.starts_with('[') && host.ends_with(']')))
    {
        return Err(format!("{s:?} is not HOST:PORT; {hint}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.to_string()),
        _ => Err(format!("{port:?} is not a port; {hint}")),
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Options of `zerohop transcoder`.
#[derive(Debug, clap::Args)]
pub struct TranscoderArgs {
    /// The orchestrator, HOST:PORT (a host name is resolved at each dial). Repeat it to serve
    /// several orchestrators at once (or comma-separate them): one link each, all sharing
    /// --max-sessions.
    #[arg(long, value_parser = orch_addr, value_delimiter = ',', required_unless_present = "livepeer_orch")]
    pub orch_addr: Vec<String>,
    #[command(flatten)]
    pub livepeer: LivepeerTranscoderArgs,
    /// File holding this transcoder's secret (its first line). Without it, the secret itself from
    /// the environment (never the command line): [env: ZEROHOP_ORCH_SECRET]
    #[arg(long)]
    pub orch_secret_file: Option<PathBuf>,
    /// This transcoder's id, unique among the orchestrator's transcoders (default: the host name
    /// from the OS; a new link with the id of a live one replaces it, whose tasks fail over).
    #[arg(long)]
    pub transcoder_id: Option<String>,
    /// Segments transcoded at once (advertised capacity).
    #[arg(long, default_value_t = 2)]
    pub max_sessions: u32,
    /// Authenticate by mutual TLS with the certificate in this directory (`cert.pem`,
    /// `key.pem`; created self-signed when absent, and its SHA-256 printed for the
    /// orchestrator's --transcoder-certs file). The secret is then optional.
    #[arg(long, conflicts_with = "insecure_h2c")]
    pub client_identity_dir: Option<PathBuf>,
    /// Stop when the orchestrator's certificate matches no pin, instead of retrying with backoff
    /// and an error each time (an orchestrator restarted without its identity can then be fixed
    /// without touching every transcoder).
    #[arg(long)]
    pub exit_on_pin_mismatch: bool,
    /// Serve /metrics, /healthz and /readyz (ready: linked to the orchestrator) over plain
    /// HTTP/1.1 here.
    #[arg(long, value_parser = listen_addr)]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub accel: crate::accel_cmd::AccelArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub logs: LogArgs,
}

/// How a transcoder joins a go-livepeer orchestrator.
#[derive(Debug, clap::Args)]
pub struct LivepeerTranscoderArgs {
    /// Join this go-livepeer orchestrator's pool (HOST:PORT, its -serviceAddr) with Livepeer's
    /// own transcoder protocol, instead of a zerohop orchestrator's link. The secret is its
    /// -orchSecret, from --orch-secret-file or ZEROHOP_ORCH_SECRET; capacity is
    /// --max-sessions. Needs --livepeer-insecure or --livepeer-pin.
    #[arg(long, value_parser = orch_addr, conflicts_with_all = ["orch_addr", "client_identity_dir", "transcoder_id", "insecure_h2c", "orch_cert_sha256", "ca_file"])]
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

/// How a client (`push`, `transcoder`) decides to trust the node it dials.
#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// Trust the node whose certificate has this SHA-256 (printed by the node at start); several,
    /// comma-separated, accept any of them (to rotate a certificate).
    #[arg(long, conflicts_with_all = ["ca_file", "insecure_h2c"])]
    pub orch_cert_sha256: Option<String>,
    /// Trust nodes whose certificate chains to a CA in this PEM file.
    #[arg(long, conflicts_with = "insecure_h2c")]
    pub ca_file: Option<PathBuf>,
    /// Name the certificate is checked for with --ca-file (default: the host dialled).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Cleartext HTTP/2 (the node runs with --insecure-h2c).
    #[arg(long)]
    pub insecure_h2c: bool,
}

impl TrustArgs {
    /// The transport for dialling `addr` (HOST:PORT).
    pub fn transport(&self, addr: &str) -> Result<Transport> {
        let host = self
            .server_name
            .clone()
            .unwrap_or_else(|| addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']).to_string());
        Ok(if self.insecure_h2c {
            Transport::H2c
        } else if let Some(fp) = &self.orch_cert_sha256 {
            Transport::Tls { trust: Trust::Pin(fp.clone()), server_name: host }
        } else if let Some(ca) = &self.ca_file {
            Transport::Tls { trust: Trust::CaFile(ca.clone()), server_name: host }
        } else {
            bail!(
                "say how to trust the node: --orch-cert-sha256 FINGERPRINT (printed by the node), --ca-file FILE, or --insecure-h2c"
            );
        })
    }
}

pub fn transcoder(a: TranscoderArgs) -> Result<ExitCode> {
    init_logs_as(a.logs.log_format);
    let secret = zerohop_control::secret::load(a.orch_secret_file.as_deref(), "ZEROHOP_ORCH_SECRET")
        .with_context(|| format!("reading {:?}", a.orch_secret_file))?;
    let id = match a.transcoder_id.clone() {
        Some(id) => id,
        None => host_name(std::path::Path::new(HOST_NAME))?,
    };
    let mut client_identity = None;
    if let Some(dir) = &a.client_identity_dir {
        let (identity, created) = tls::self_signed_in(dir, std::slice::from_ref(&id))?;
        if created {
            eprintln!("created a client certificate in {}", dir.display());
        }
        eprintln!(
            "client certificate SHA-256: {}  (orchestrator's --transcoder-certs: `{id} {0}`)",
            identity.fingerprint()
        );
        client_identity = Some(std::sync::Arc::new(identity));
    }
    let secret = match (secret, &client_identity) {
        (Some(s), _) => s,
        (None, Some(_)) if !a.trust.insecure_h2c => String::new(),
        (None, _) => bail!(
            "no credential: give --orch-secret-file FILE, set ZEROHOP_ORCH_SECRET, or use --client-identity-dir (mutual TLS)"
        ),
    };
    let sessions = crate::accel_cmd::factory(a.accel.accel, &a.accel.gpus, a.accel.gpu_options())?;
    let mut configs = Vec::new();
    for addr in &a.orch_addr {
        let mut transport = a.trust.transport(addr)?;
        if let (Some(identity), Transport::Tls { trust, server_name }) = (&client_identity, &transport) {
            let (trust, server_name, identity) = (trust.clone(), server_name.clone(), identity.clone());
            transport = Transport::MutualTls { trust, server_name, identity };
        }
        configs.push(zerohop_control::transcoder::TranscoderConfig {
            orch_addr: addr.clone(),
            transport,
            id: id.clone(),
            secret: secret.clone(),
            max_sessions: a.max_sessions.max(1),
            max_output: zerohop_control::transcoder::CPU_MAX_OUTPUT,
            sessions: sessions.clone(),
            on_pin_mismatch: if a.exit_on_pin_mismatch { PinMismatch::Exit } else { PinMismatch::Retry },
        });
    }
    let said = format!("transcoder dialling {} ({} sessions)", a.orch_addr.join(", "), a.max_sessions);
    run_transcoder(a.metrics_addr, "not linked to any orchestrator", said, |stop, shared| async move {
        zerohop_control::transcoder::run_all(configs, stop, shared).await.map_err(anyhow::Error::from)
    })
}

/// A transcoder's process around its links: SIGINT/SIGTERM turn `stop` (the links finish their
/// tasks, then return), the build line, and `--metrics-addr` with a `/readyz` that is ready
/// while a link is registered (else `not_ready`).
pub fn run_transcoder<F>(
    metrics_addr: Option<SocketAddr>,
    not_ready: &'static str,
    said: String,
    links: impl FnOnce(tokio::sync::watch::Receiver<bool>, zerohop_control::transcoder::Shared) -> F,
) -> Result<ExitCode>
where
    F: std::future::Future<Output = Result<()>>,
{
    let rt = runtime()?;
    rt.block_on(async move {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("stopping: finishing the tasks in progress, then leaving");
            let _ = stop_tx.send(true);
        });
        build_info();
        let shared = zerohop_control::transcoder::Shared::default();
        if let Some(m) = metrics_addr {
            let up = shared.clone();
            let ready: zerohop_control::metrics::Readiness =
                std::sync::Arc::new(move || if up.linked() > 0 { Ok(()) } else { Err(not_ready.into()) });
            let bound = zerohop_control::metrics::serve(m, ready).await.with_context(|| format!("metrics on {m}"))?;
            eprintln!("metrics: http://{bound}/metrics (and /healthz, /readyz)");
        }
        eprintln!("{said}");
        links(stop, shared).await
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn orchestrator(a: NodeArgs) -> Result<ExitCode> {
    serve_node(a, 0, "orchestrator")
}

pub fn combined(a: NodeArgs) -> Result<ExitCode> {
    serve_node(a, 2, "combined node")
}

/// Who may dial in: `--transcoder-secrets` (id secret per line) and the shared
/// `--orch-secret-file` / ZEROHOP_ORCH_SECRET. Read at start and again on SIGHUP.
fn load_secrets(a: &NodeArgs) -> Result<TranscoderSecrets> {
    // Strict: a malformed line is an error naming the file and the line (at start it stops the
    // node; on SIGHUP the old table is kept).
    let mut secrets = TranscoderSecrets::read_files(a.transcoder_secrets.as_deref(), a.transcoder_certs.as_deref())?;
    secrets.shared = zerohop_control::secret::load(a.orch_secret_file.as_deref(), "ZEROHOP_ORCH_SECRET")
        .with_context(|| format!("reading {:?}", a.orch_secret_file))?;
    Ok(secrets)
}

/// `--broadcaster-tokens` (named, with stream limits), else `--token-file` / ZEROHOP_TOKEN (one
/// token), else none. Read at start and again on SIGHUP.
fn load_broadcasters(a: &NodeArgs) -> Result<BroadcasterTokens> {
    if let Some(f) = &a.broadcaster_tokens {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        return BroadcasterTokens::parse_file(&text).with_context(|| format!("in {}", f.display()));
    }
    let token = zerohop_control::secret::load(a.token_file.as_deref(), "ZEROHOP_TOKEN")
        .with_context(|| format!("reading {:?}", a.token_file))?;
    Ok(token.map(BroadcasterTokens::single).unwrap_or_default())
}

fn serve_node(a: NodeArgs, default_sessions: usize, what: &str) -> Result<ExitCode> {
    init_logs_as(a.logs.log_format);
    let max_sessions = a.max_sessions.unwrap_or(default_sessions);
    let secrets = load_secrets(&a)?;
    if max_sessions == 0 && secrets.shared.is_none() && secrets.per_id.is_empty() && secrets.certs.is_empty() {
        bail!(
            "an orchestrator without a local engine needs transcoders: give --orch-secret-file, --transcoder-secrets or --transcoder-certs"
        );
    }
    let ladder = crate::ladder_cmd::read_ladder(a.profiles.as_deref(), None, || Ok(Ladder::default_ladder()))?;
    let broadcasters = load_broadcasters(&a)?;
    if a.private_playback && broadcasters.is_empty() {
        bail!(
            "--private-playback needs broadcaster tokens: give --token-file or --broadcaster-tokens (or ZEROHOP_TOKEN)"
        );
    }
    let playback_key = a.playback_key_file.as_deref().map(crate::sign_url_cmd::read_key).transpose()?;
    let tls = if a.insecure_h2c {
        eprintln!(
            "WARNING: serving cleartext HTTP/1.1 and HTTP/2 (--insecure-h2c): anyone on the path can read and alter video"
        );
        None
    } else {
        let identity = match (&a.tls_cert, &a.tls_key) {
            (Some(c), Some(k)) => tls::load_identity(c, k)?,
            _ => {
                let (id, created) =
                    tls::self_signed_in(&a.data_dir, &["localhost".into(), a.service_addr.ip().to_string()])?;
                if created {
                    eprintln!("created a self-signed certificate in {}", a.data_dir.display());
                }
                id
            }
        };
        eprintln!("certificate SHA-256: {}  (transcoders and pushers: --orch-cert-sha256 {0})", identity.fingerprint());
        Some(tls::server_config(identity)?)
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let mut cfg = NodeConfig::new(a.service_addr, tls);
        cfg.max_sessions = max_sessions;
        cfg.default_ladder = ladder;
        cfg.broadcasters = broadcasters;
        cfg.transcoders = secrets;
        cfg.task_deadline = Duration::from_secs_f64(a.task_deadline.clamp(1.0, 3600.0));
        cfg.private_playback = a.private_playback;
        cfg.playback_key = playback_key;
        cfg.livepeer_gateways = a.livepeer_gateways;
        a.limits.apply(&mut cfg);
        if max_sessions > 0 {
            cfg.sessions = crate::accel_cmd::factory(a.accel.accel, &a.accel.gpus, a.accel.gpu_options())?;
        }
        cfg.livepeer_profiles = crate::accel_cmd::profiles_written(&cfg.sessions);
        let backend = cfg.sessions.backend.clone();
        let node = Node::start(cfg).await.with_context(|| format!("listening on {}", a.service_addr))?;
        build_info();
        if let Some(m) = a.metrics_addr {
            let bound =
                zerohop_control::metrics::serve(m, node.readiness()).await.with_context(|| format!("metrics on {m}"))?;
            eprintln!("metrics: http://{bound}/metrics (and /healthz, /readyz)");
        }
        eprintln!(
            "{what} serving on {} ({max_sessions} local sessions on {}); SIGHUP reloads transcoder secrets and broadcaster tokens; Ctrl-C or SIGTERM stops",
            node.local_addr(),
            backend
        );
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let stop = shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = hup.recv() => {
                    match load_secrets(&a) {
                        Ok(s) => {
                            let (ids, shared) = (s.per_id.len() + s.certs.len(), s.shared.is_some());
                            let closed = node.reload_transcoders(s);
                            eprintln!("SIGHUP: {ids} transcoder ids{}; {closed} revoked link(s) closed",
                                      if shared { " + a shared secret" } else { "" });
                        }
                        Err(e) => eprintln!("SIGHUP: keeping the old transcoder secrets: {e:#}"),
                    }
                    match load_broadcasters(&a) {
                        Ok(t) => {
                            eprintln!("SIGHUP: {} broadcaster token(s)", t.len());
                            node.reload_broadcasters(t);
                        }
                        Err(e) => eprintln!("SIGHUP: keeping the old broadcaster tokens: {e:#}"),
                    }
                }
            }
        }
        eprintln!("stopping: no new connections; segments in progress finish");
        node.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Where the kernel keeps this host's name (what `gethostname(2)` returns).
const HOST_NAME: &str = "/proc/sys/kernel/hostname";

/// The host name the OS gives (the default transcoder id), read from `path`; an error asking
/// for `--transcoder-id` when there is none.
fn host_name(path: &std::path::Path) -> Result<String> {
    let name = std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default();
    if name.is_empty() || name == "(none)" {
        bail!(
            "this host has no name ({} is missing or empty): give the transcoder an id with --transcoder-id",
            path.display()
        );
    }
    Ok(name)
}

/// `zerohop_build_info`: this binary's revision, profile, target and features as labels.
fn build_info() {
    zerohop_control::metrics::init();
    zerohop_control::metrics::build_info(&[
        ("revision", env!("ZEROHOP_GIT").to_string()),
        ("profile", env!("ZEROHOP_PROFILE").to_string()),
        ("target", env!("ZEROHOP_TARGET").to_string()),
        ("features", env!("ZEROHOP_FEATURES").to_string()),
    ]);
}

#[cfg(test)]
mod host_name_tests {
    use super::*;

    #[test]
    fn the_default_transcoder_id_is_the_host_name_or_an_error_asking_for_one() {
        let dir = crate::scratch::ScratchDir::new("host-name");
        let named = dir.file("named", "gpu-box-7\n");
        assert_eq!(host_name(&named).expect("a name"), "gpu-box-7");
        for unnamed in ["", "(none)\n"] {
            std::fs::write(&named, unnamed).expect("write");
            let e = host_name(&named).expect_err("no name").to_string();
            assert!(e.contains("--transcoder-id"), "{e}");
        }
        let e = host_name(&dir.path().join("missing")).expect_err("no file").to_string();
        assert!(e.contains("--transcoder-id"), "{e}");
        // This machine's kernel has a name (what the transcoder uses by default).
        assert!(!host_name(std::path::Path::new(HOST_NAME)).expect("this host's name").is_empty());
    }
}
