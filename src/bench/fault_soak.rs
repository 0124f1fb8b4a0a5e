//! `zerohop bench --fault-soak N`: N segments through a split node made of real processes (this
//! binary as an orchestrator and two transcoders, over loopback HTTP/2 + TLS) while faults are
//! injected at random:
//!
//! * a transcoder killed (SIGKILL) and restarted a moment later;
//! * a transcoder stalled (SIGSTOP for 1-4 s, then SIGCONT) — past the task deadline, or not;
//! * the orchestrator reloaded (SIGHUP), or killed and restarted on the same address;
//! * a broadcaster that hangs up mid-segment;
//! * a corrupt segment (truncated, bit-flipped, or garbage).
//!
//! Every segment ends as exactly one of: **ok** (the renditions decode with the expected frame
//! counts), **error** (the broadcaster was told: an HTTP status with a code, an in-band error
//! record, or a dropped connection), **abandoned** (the broadcaster hung up on purpose) or
//! **lost** (no answer within a minute, or output passed off as complete that is not). Lost
//! must be 0. RSS of every process is sampled over time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use zerohop_control::framing::Kind;
use zerohop_control::tls::{self, Trust};
use zerohop_control::{Client, ClientError, Transport, Upload};
use zerohop_engine::probe::decode_video;
use zerohop_engine::{Ladder, MemorySink, Session, SessionConfig, StreamSession};

const LADDER: &str = "P360p30fps16x9,P240p30fps16x9";
const SECRET: &str = "fault-soak-shared-secret"; // no spaces: `id secret` lines of --transcoder-secrets
const CLEAN: [(&str, &[u8]); 2] =
    [("360p25", crate::fixtures::BASELINE_360P25), ("720p30", crate::fixtures::STREAM_SEQ0)];

/// A small xorshift generator: reproducible runs from `--seed`, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One child process of the soak, restartable.
struct Proc {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Proc {
    fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut child = Command::new(std::env::current_exe()?)
            .args(&self.args)
            .env("ZEROHOP_ORCH_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        // A child that dies at once (its port taken, a bad argument) did not start: say why.
        std::thread::sleep(Duration::from_millis(100));
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "{} exited at once ({status}): {}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-s", sig, &pid.to_string()]).status();
        }
    }

    fn rss_kib(&self) -> Option<u64> {
        super::procstat::rss_kib_of(self.pid()?)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill();
    }
}

/// What became of one segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    Ok,
    Error(String),
    Abandoned,
    Lost(String),
}

struct Tally {
    fates: BTreeMap<String, u64>,
    ok: u64,
    errors: u64,
    abandoned: u64,
    lost: Vec<String>,
    done: u64,
    /// 503s answered by retrying (not segment outcomes).
    retried_503: u64,
}

/// Frames each rendition of a clean input must have (from a local run of the engine).
fn expected_frames(ladder: &Ladder, input: &[u8]) -> Result<Vec<usize>> {
    let mut s = Session::open(SessionConfig::new(ladder.clone()))?;
    let (sinks, boxed) = MemorySink::ladder(ladder.len());
    s.transcode(Bytes::copy_from_slice(input), boxed)?;
    sinks.iter().map(|m| Ok(decode_video(&m.take())?.len())).collect()
}

fn corrupt(rng: &mut Rng, data: &[u8]) -> (String, Bytes) {
    let mut d = data.to_vec();
    match rng.below(3) {
        0 => {
            d.truncate(d.len() * (20 + rng.below(60) as usize) / 100);
            ("corrupt:truncated".into(), Bytes::from(d))
        }
        1 => {
            for _ in 0..1 + rng.below(40) {
                let i = rng.below(d.len() as u64) as usize;
                d[i] ^= 1 << rng.below(8);
            }
            ("corrupt:bitflips".into(), Bytes::from(d))
        }
        _ => {
            let g: Vec<u8> = (0..4096 + rng.below(60_000)).map(|_| rng.next() as u8).collect();
            ("corrupt:garbage".into(), Bytes::from(g))
        }
    }
}

struct Setup {
    addr: String,
    transport: Transport,
}

async fn connect(s: &Setup) -> Client {
    loop {
        if let Ok(mut c) = Client::connect(&s.addr, &s.transport, None).await
            && c.get("/healthz").await.is_ok()
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One broadcaster: `n` segments of its own streams, some corrupt, some hung up on.
async fn broadcaster(
    id: usize,
    n: u64,
    setup: Arc<Setup>,
    expected: Arc<Vec<Vec<usize>>>,
    tally: Arc<Mutex<Tally>>,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    let mut client = connect(&setup).await;
    for seq in 0..n {
        let which = rng.below(CLEAN.len() as u64) as usize;
        let (kind, data) = if rng.chance(10) {
            corrupt(&mut rng, CLEAN[which].1)
        } else {
            ("clean".into(), Bytes::from_static(CLEAN[which].1))
        };
        let hang_up = rng.chance(5).then(|| Duration::from_millis(20 + rng.below(300)));
        let stream = format!("b{id}-{}", CLEAN[which].0);
        let mut frames: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        let limit = hang_up.unwrap_or(Duration::from_secs(60));
        // As a live broadcaster does, a 503 (at capacity, no transcoder yet) is retried after a
        // moment, for up to 10 s.
        let mut retries = 0;
        let outcome = loop {
            frames.clear();
            let push = client.push(&stream, seq, Some(LADDER), Upload::Full(data.clone()), |r| {
                if r.kind == Kind::Chunk {
                    frames.entry(r.rendition).or_default().extend_from_slice(&r.payload);
                }
            });
            match tokio::time::timeout(limit, push).await {
                Ok(Err(ClientError::Status { status, .. }))
                    if status == http::StatusCode::SERVICE_UNAVAILABLE && retries < 50 =>
                {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => break other,
            }
        };
        tally.lock().retried_503 += retries;
        let fate = match outcome {
            Err(_) if hang_up.is_some() => Fate::Abandoned,
            Err(_) => Fate::Lost("no answer within 60 s".into()),
            Ok(Err(ClientError::Status { code, .. })) => Fate::Error(code),
            Ok(Err(_)) => {
                // Connection-level: the orchestrator went away (the broadcaster sees it).
                client = connect(&setup).await;
                Fate::Error("connection_lost".into())
            }
            Ok(Ok(o)) if o.ok() => {
                if kind == "clean" {
                    let got: Vec<usize> = frames.values().map(|b| decode_video(b).map_or(0, |f| f.len())).collect();
                    if got == expected[which] {
                        Fate::Ok
                    } else {
                        Fate::Lost(format!(
                            "{stream}/{seq}: passed as complete with frames {got:?}, expected {:?}",
                            expected[which]
                        ))
                    }
                } else {
                    // A corrupt input the decoder got through: fine, if what came out decodes.
                    let decodes = frames.values().all(|b| decode_video(b).is_ok());
                    if decodes {
                        Fate::Ok
                    } else {
                        Fate::Lost(format!("{stream}/{seq}: undecodable output passed as complete"))
                    }
                }
            }
            Ok(Ok(o)) => {
                let code = o
                    .trailers
                    .as_ref()
                    .and_then(|t| t.get(zerohop_control::headers::ERROR_CODE))
                    .and_then(|v| v.to_str().ok());
                Fate::Error(code.unwrap_or("in_band_error").to_string())
            }
        };
        {
            let mut t = tally.lock();
            let key = match &fate {
                Fate::Ok => format!("ok ({kind})"),
                Fate::Error(c) => format!("error {c} ({kind})"),
                Fate::Abandoned => "abandoned by the broadcaster".into(),
                Fate::Lost(_) => format!("LOST ({kind})"),
            };
            *t.fates.entry(key).or_default() += 1;
            match fate {
                Fate::Ok => t.ok += 1,
                Fate::Error(_) => t.errors += 1,
                Fate::Abandoned => t.abandoned += 1,
                Fate::Lost(why) => t.lost.push(why),
            }
            t.done += 1;
        }
        if hang_up.is_some() {
            // A broadcaster that hung up comes back on a fresh connection.
            client = connect(&setup).await;
        }
    }
}

/// Runs the soak; prints a report and writes it as JSON when asked.
pub fn run(n: u64, seed: Option<u64>, json_out: Option<&Path>) -> Result<std::process::ExitCode> {
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let ladder: Ladder = LADDER.parse()?;
    let expected = Arc::new(CLEAN.iter().map(|(_, d)| expected_frames(&ladder, d)).collect::<Result<Vec<_>>>()?);
    let dir = std::env::temp_dir().join(format!("zerohop-fault-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (identity, _) = tls::self_signed_in(&dir.join("orch"), &["localhost".into()])?;
    let fp = identity.fingerprint();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    std::fs::write(dir.join("transcoders"), format!("t1 {SECRET}\nt2 {SECRET}\n"))?;
    let mut orch = Proc {
        name: "orchestrator".into(),
        args: vec![
            "orchestrator".into(),
            "--service-addr".into(),
            addr.clone(),
            "--data-dir".into(),
            dir.join("orch").display().to_string(),
            "--transcoder-secrets".into(),
            dir.join("transcoders").display().to_string(),
            "--task-deadline".into(),
            "4".into(),
        ],
        log: dir.join("orchestrator.log"),
        child: None,
        starts: 0,
    };
    let transcoder = |i: usize| Proc {
        name: format!("t{i}"),
        args: vec![
            "transcoder".into(),
            "--orch-addr".into(),
            addr.clone(),
            "--transcoder-id".into(),
            format!("t{i}"),
            "--orch-cert-sha256".into(),
            fp.clone(),
            "--max-sessions".into(),
            "1".into(),
        ],
        log: dir.join(format!("t{i}.log")),
        child: None,
        starts: 0,
    };
    let mut ts = [transcoder(1), transcoder(2)];
    orch.start()?;
    for t in &mut ts {
        t.start()?;
    }
    let setup = Arc::new(Setup {
        addr: addr.clone(),
        transport: Transport::Tls { trust: Trust::Pin(fp.clone()), server_name: "localhost".into() },
    });
    let tally = Arc::new(Mutex::new(Tally {
        fates: BTreeMap::new(),
        ok: 0,
        errors: 0,
        abandoned: 0,
        lost: Vec::new(),
        done: 0,
        retried_503: 0,
    }));
    eprintln!("fault soak: {n} segments, seed {seed}, processes' logs in {}", dir.display());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let started = Instant::now();
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut rss: Vec<serde_json::Value> = Vec::new();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let progress = super::progress::Progress::new("fault soak", n);
    // A child that cannot be restarted ends the soak with the reason (it would only idle).
    let mut stopped: Option<anyhow::Error> = None;
    rt.block_on(async {
        // Wait for the node and both transcoders.
        // (Not all there in 10 s: the soak starts anyway; segments meanwhile get a 503 and retry.)
        let _ = super::target::transcoders_linked(&mut connect(&setup).await, 2, Duration::from_secs(10)).await;
        let per = n.div_ceil(2);
        let pushers: Vec<_> = (0..2u64)
            .map(|b| {
                let count = per.min(n - b * per.min(n));
                tokio::spawn(broadcaster(
                    b as usize,
                    count,
                    setup.clone(),
                    expected.clone(),
                    tally.clone(),
                    seed ^ (b + 1),
                ))
            })
            .collect();
        let mut next_fault = Instant::now() + Duration::from_millis(1000 + rng.below(3000));
        let mut next_sample = Instant::now();
        let mut last_done = 0;
        let mut last_progress = Instant::now();
        while !pushers.iter().all(|p| p.is_finished()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let done = tally.lock().done;
            if done != last_done {
                last_done = done;
                last_progress = Instant::now();
            }
            if Instant::now() >= next_sample {
                next_sample += Duration::from_secs(2);
                rss.push(json!({
                    "t_s": started.elapsed().as_secs_f64(), "segments": done,
                    "orchestrator_kib": orch.rss_kib(), "orchestrator_starts": orch.starts,
                    "t1_kib": ts[0].rss_kib(), "t2_kib": ts[1].rss_kib(),
                }));
                let t = tally.lock();
                let detail =
                    format!("ok {}  error {}  abandoned {}  lost {}", t.ok, t.errors, t.abandoned, t.lost.len());
                progress.update(done, &detail);
            }
            if Instant::now() < next_fault {
                continue;
            }
            next_fault = Instant::now() + Duration::from_millis(500 + rng.below(1500));
            let i = rng.below(2) as usize;
            match rng.below(100) {
                0..=34 => {
                    *faults.entry("transcoder killed and restarted").or_default() += 1;
                    ts[i].kill();
                    tokio::time::sleep(Duration::from_millis(200 + rng.below(1500))).await;
                    if let Err(e) = ts[i].start() {
                        stopped = Some(e.context(format!("restarting transcoder t{}", i + 1)));
                        break;
                    }
                }
                35..=69 => {
                    *faults.entry("transcoder stalled (SIGSTOP 1-4 s)").or_default() += 1;
                    ts[i].signal("STOP");
                    tokio::time::sleep(Duration::from_millis(1000 + rng.below(3000))).await;
                    ts[i].signal("CONT");
                }
                70..=89 => {
                    *faults.entry("orchestrator reloaded (SIGHUP)").or_default() += 1;
                    orch.signal("HUP");
                }
                _ => {
                    *faults.entry("orchestrator killed and restarted").or_default() += 1;
                    orch.kill();
                    tokio::time::sleep(Duration::from_millis(100 + rng.below(500))).await;
                    if let Err(e) = orch.start() {
                        stopped = Some(e.context("restarting the orchestrator"));
                        break;
                    }
                }
            }
            if last_progress.elapsed() > Duration::from_secs(120) {
                eprintln!("\nno segment finished for 2 minutes; stopping");
                break;
            }
        }
        for p in pushers {
            p.abort();
        }
    });
    progress.finish();
    if let Some(e) = stopped {
        return Err(e.context("the fault soak stopped: a child process could not be restarted"));
    }
    let wall = started.elapsed();
    let t = tally.lock();
    println!("fault soak: {} segments in {:.0} s (seed {seed})", t.done, wall.as_secs_f64());
    println!(
        "  ok {}   error {}   abandoned {}   LOST {}   ({} 503s retried by the broadcasters)",
        t.ok,
        t.errors,
        t.abandoned,
        t.lost.len(),
        t.retried_503
    );
    for (k, v) in &t.fates {
        println!("    {v:>5}  {k}");
    }
    println!("  faults injected:");
    for (k, v) in &faults {
        println!("    {v:>5}  {k}");
    }
    for why in t.lost.iter().take(10) {
        println!("  lost: {why}");
    }
    // RSS over time (every 2 s, in the JSON); here the range of each process over the run
    // (a restarted process starts small again, so growth is read per life in the JSON).
    for key in ["orchestrator_kib", "t1_kib", "t2_kib"] {
        let v: Vec<u64> = rss.iter().filter_map(|s| s[key].as_u64()).collect();
        if let (Some(lo), Some(hi)) = (v.iter().min(), v.iter().max()) {
            println!(
                "  {:<13} RSS {:.1}-{:.1} MiB over {} samples",
                key.trim_end_matches("_kib"),
                *lo as f64 / 1024.0,
                *hi as f64 / 1024.0,
                v.len()
            );
        }
    }
    let report = json!({
        "segments": t.done, "wall_s": wall.as_secs_f64(), "seed": seed,
        "ok": t.ok, "error": t.errors, "abandoned": t.abandoned, "lost": t.lost.len(), "retried_503": t.retried_503,
        "lost_detail": t.lost, "fates": t.fates, "faults": faults, "rss": rss,
    });
    if let Some(p) = json_out {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
        println!("  report: {}", p.display());
    }
    let lost = t.lost.len();
    let done = t.done;
    drop(t);
    drop(orch);
    drop(ts);
    if lost > 0 || done < n {
        bail!("{lost} segment(s) lost, {done} of {n} finished");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(std::process::ExitCode::SUCCESS)
}
