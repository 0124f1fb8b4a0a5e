//! Across real network hops: hosts in their own network namespaces on one machine, joined by veth
//! links through a router namespace that NATs the transcoders' network (iptables MASQUERADE) and
//! can rate-limit (tc tbf) or silence (iptables DROP) a path. The processes are the built
//! `zerohop` binary, the client is `zerohop push`, the transport is HTTP/2 over TLS with the
//! orchestrator's certificate pinned.
//!
//! ```text
//!  broadcaster 10.77.3.2 ─┐
//!                         ├─ router (10.77.1.1 / 10.77.2.1 / 10.77.3.1) ── NAT ── transcoder 10.77.2.2
//!  orchestrator 10.77.1.2 ┘        forwards; MASQUERADE for 10.77.2.0/24; nothing routes into it
//! ```
//!
//! Needs root, iproute2 and iptables (`.ci/run` installs them); skips with a printed reason where
//! namespaces cannot be made. Every address is inside namespaces this test made.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::fixture_path;
use zerohop_engine::probe::decode_video;

const BIN: &str = env!("CARGO_BIN_EXE_zerohop");
const ORCH: &str = "10.77.1.2";
const SECRET: &str = "netns-shared-secret";

/// Why the harness cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref().ok() != Some("0") {
        return Some("not root: network namespaces need CAP_NET_ADMIN".into());
    }
    for tool in ["ip", "iptables", "tc"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is not installed (Debian: iproute2, iptables)"));
        }
    }
    let probe = format!("zhprobe{}", std::process::id());
    if !run("ip", &["netns", "add", &probe]) {
        return Some("`ip netns add` failed: no network namespaces here".into());
    }
    run("ip", &["netns", "del", &probe]);
    None
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn must(cmd: &str, args: &[&str]) {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

macro_rules! skip_unless_namespaces {
    () => {
        if let Some(why) = unavailable() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// The four hosts and the router; everything is torn down on drop.
struct Net {
    /// Namespace and interface name prefix, unique per test and process.
    p: String,
    dir: PathBuf,
    procs: Vec<Child>,
}

impl Net {
    fn new(tag: &str) -> Net {
        let p = format!("zh{}{tag}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("zerohop-netns-{p}"));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).expect("test dir");
        let net = Net { p, dir, procs: Vec::new() };
        let p = &net.p;
        for h in ["o", "r", "t", "b"] {
            must("ip", &["netns", "add", &format!("{p}{h}")]);
            net.ip(h, &["link", "set", "lo", "up"]);
        }
        // (host, its address, router side's address, router interface index)
        for (h, addr, gw, i) in
            [("o", ORCH, "10.77.1.1", 1), ("t", "10.77.2.2", "10.77.2.1", 2), ("b", "10.77.3.2", "10.77.3.1", 3)]
        {
            let (hi, ri) = (format!("{p}{h}0"), format!("{p}r{i}"));
            must("ip", &["link", "add", &hi, "type", "veth", "peer", "name", &ri]);
            must("ip", &["link", "set", &hi, "netns", &format!("{p}{h}")]);
            must("ip", &["link", "set", &ri, "netns", &format!("{p}r")]);
            net.ip(h, &["addr", "add", &format!("{addr}/24"), "dev", &hi]);
            net.ip("r", &["addr", "add", &format!("{gw}/24"), "dev", &ri]);
            net.ip(h, &["link", "set", &hi, "up"]);
            net.ip("r", &["link", "set", &ri, "up"]);
            net.ip(h, &["route", "add", "default", "via", gw]);
        }
        net.exec("r", "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        let public = format!("{p}r1");
        net.exec(
            "r",
            "iptables",
            &["-t", "nat", "-A", "POSTROUTING", "-s", "10.77.2.0/24", "-o", &public, "-j", "MASQUERADE"],
        );
        // Behind the NAT: nothing reaches the transcoders' network but replies.
        net.exec(
            "r",
            "iptables",
            &[
                "-A",
                "FORWARD",
                "-d",
                "10.77.2.0/24",
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            ],
        );
        net.exec("r", "iptables", &["-A", "FORWARD", "-d", "10.77.2.0/24", "-j", "DROP"]);
        net
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.p)
    }

    fn ip(&self, host: &str, args: &[&str]) {
        let ns = self.ns(host);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        must("ip", &all);
    }

    fn exec(&self, host: &str, cmd: &str, args: &[&str]) {
        let ns = self.ns(host);
        let mut all = vec!["netns", "exec", ns.as_str(), cmd];
        all.extend_from_slice(args);
        must("ip", &all);
    }

    /// Starts `zerohop ARGS` on `host`, its stderr in `<dir>/<log>`.
    fn spawn(&mut self, host: &str, log: &str, args: &[&str]) -> PathBuf {
        let path = self.dir.join(log);
        let err = std::fs::File::create(&path).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host), BIN])
            .args(args)
            .env("ZEROHOP_ORCH_SECRET", SECRET)
            .env("NO_COLOR", "1")
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn zerohop");
        self.procs.push(child);
        path
    }

    /// An orchestrator on 10.77.1.2:8935 (metrics on :9935) taking transcoders with the shared
    /// secret; returns its certificate's fingerprint. `local` in-process sessions (combined).
    fn orchestrator(&mut self, mode: &str) -> String {
        let secret = self.dir.join("orch-secret");
        std::fs::write(&secret, SECRET).expect("secret");
        let secret = secret.to_string_lossy().into_owned();
        let service = format!("{ORCH}:8935");
        let metrics = format!("{ORCH}:9935");
        let log = self.spawn(
            "o",
            &format!("{mode}.log"),
            &[
                mode,
                "--service-addr",
                &service,
                "--metrics-addr",
                &metrics,
                "--data-dir",
                "orch-data",
                "--orch-secret-file",
                &secret,
            ],
        );
        let text = wait_for(&log, "serving on", Duration::from_secs(20));
        let at =
            text.find("certificate SHA-256: ").expect("the fingerprint is printed") + "certificate SHA-256: ".len();
        text[at..at + 64].to_string()
    }

    /// A transcoder behind the NAT, dialling the orchestrator.
    fn transcoder(&mut self, fingerprint: &str) -> PathBuf {
        let secret = self.dir.join("t-secret");
        std::fs::write(&secret, SECRET).expect("secret");
        let secret = secret.to_string_lossy().into_owned();
        let orch = format!("{ORCH}:8935");
        self.spawn(
            "t",
            "transcoder.log",
            &[
                "transcoder",
                "--orch-addr",
                &orch,
                "--orch-secret-file",
                &secret,
                "--transcoder-id",
                "t-nat",
                "--orch-cert-sha256",
                fingerprint,
                "--max-sessions",
                "2",
            ],
        )
    }

    /// `zerohop push` from the broadcaster's host.
    fn push(&self, fingerprint: &str, stream: &str, fixture: &str, out: &Path) -> Output {
        self.push_paced(fingerprint, stream, &fixture_path(fixture), out, None)
    }

    /// `zerohop push`, uploading `pace` bytes per 10 ms (as a live encoder would) when given.
    fn push_paced(&self, fingerprint: &str, stream: &str, input: &Path, out: &Path, pace: Option<u64>) -> Output {
        let orch = format!("{ORCH}:8935");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns("b"), BIN, "push"]).arg(input);
        cmd.args(["--orch", &orch, "--stream", stream, "-p", "P360p30fps16x9,P240p30fps16x9"]);
        cmd.args(["--orch-cert-sha256", fingerprint]).arg("-o").arg(out);
        if let Some(pace) = pace {
            cmd.args(["--pace", &pace.to_string()]);
        }
        cmd.output().expect("run push")
    }

    /// One Prometheus series' value from the orchestrator's metrics port, read on its own host.
    fn metric(&self, name: &str) -> Option<f64> {
        let url = format!("http://{ORCH}:9935/metrics");
        let script =
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())";
        let o =
            Command::new("ip").args(["netns", "exec", &self.ns("o"), "python3", "-c", script, &url]).output().ok()?;
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = text.lines().find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))?;
        line.split_whitespace().last()?.parse().ok()
    }

    /// Waits until the orchestrator reports `n` connected transcoders.
    fn wait_transcoders(&self, n: f64, within: Duration) -> Duration {
        let t0 = Instant::now();
        while self.metric("zerohop_transcoders_connected") != Some(n) {
            assert!(t0.elapsed() < within, "{n} transcoder(s) connected within {within:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        t0.elapsed()
    }

    /// Drops everything the transcoder's host sends or is sent through the router (a silent path).
    fn silence(&self, on: bool) {
        let op = if on { "-I" } else { "-D" };
        self.exec("r", "iptables", &[op, "FORWARD", "-s", "10.77.2.0/24", "-j", "DROP"]);
        self.exec("r", "iptables", &[op, "FORWARD", "-d", "10.77.1.1", "-p", "tcp", "--sport", "8935", "-j", "DROP"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.procs {
            c.kill().ok();
            c.wait().ok();
        }
        for h in ["o", "r", "t", "b"] {
            run("ip", &["netns", "del", &self.ns(h)]);
        }
        if !std::thread::panicking() {
            std::fs::remove_dir_all(&self.dir).ok();
        } else {
            eprintln!("logs kept in {}", self.dir.display());
        }
    }
}

/// Waits until `log` contains `what`; returns the log.
fn wait_for(log: &Path, what: &str, within: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(t0.elapsed() < within, "{what:?} in {} within {within:?}:\n{text}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each rendition written by a push decodes completely.
fn renditions_complete(out: &Path, frames: usize) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(out).expect("output dir").flatten() {
        let data = std::fs::read(e.path()).expect("rendition");
        assert_eq!(decode_video(&data).expect("decodes").len(), frames, "{}", e.path().display());
        n += 1;
    }
    n
}

#[test]
fn a_transcoder_behind_nat_dials_out_and_transcodes() {
    skip_unless_namespaces!();
    let mut net = Net::new("a");
    let fp = net.orchestrator("orchestrator");
    net.transcoder(&fp);
    net.wait_transcoders(1.0, Duration::from_secs(20));
    let out = net.dir.join("out");
    let o = net.push(&fp, "nat", "h264_720p30_main_slices_aac.ts", &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(renditions_complete(&out, 30), 2, "both renditions, every frame");
    // The link crossed the NAT: the orchestrator saw the router's address, never the transcoder's.
    let ns = net.ns("r");
    let nat = Command::new("ip")
        .args(["netns", "exec", &ns, "iptables", "-t", "nat", "-L", "POSTROUTING", "-v", "-x", "-n"])
        .output()
        .expect("iptables");
    let table = String::from_utf8_lossy(&nat.stdout);
    let packets: u64 = table
        .lines()
        .find(|l| l.contains("MASQUERADE"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the MASQUERADE rule");
    assert!(packets > 0, "the transcoder's connection was masqueraded:\n{table}");
}

#[test]
fn a_silent_nat_path_is_noticed_and_the_transcoder_relinks_by_itself() {
    skip_unless_namespaces!();
    let mut net = Net::new("s");
    let fp = net.orchestrator("orchestrator");
    let tlog = net.transcoder(&fp);
    net.wait_transcoders(1.0, Duration::from_secs(20));
    // The path through the NAT goes silent for longer than the keepalive bound (the orchestrator
    // pings every 5 s and gives up after 10 s more; the transcoder's client likewise).
    net.silence(true);
    let gone = net.wait_transcoders(0.0, Duration::from_secs(25));
    wait_for(&tlog, "link to orchestrator lost", Duration::from_secs(25));
    // Meanwhile a broadcaster gets a clear answer, not a hang and not a partial success.
    let out = net.dir.join("during");
    let o = net.push(&fp, "silent", "h264_360p25_baseline_noaudio.ts", &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "no transcoder: the push fails: {stderr}");
    assert!(std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0) == 0, "nothing passed off as complete");
    net.silence(false);
    let back = net.wait_transcoders(1.0, Duration::from_secs(40));
    let out = net.dir.join("after");
    let o = net.push(&fp, "silent", "h264_360p25_baseline_noaudio.ts", &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(renditions_complete(&out, 25), 2);
    eprintln!(
        "silent path: orchestrator dropped the link after {gone:?}; transcoder re-linked {back:?} after the path returned"
    );
}

/// Median TTLB (s) of three live-paced pushes of `input` (`secs` of media, `frames` pictures) on
/// a node of `mode` ("combined": no hop; "orchestrator": with a NAT'd transcoder whose path to
/// the orchestrator is rate-limited to `rate`).
fn median_ttlb(tag: &str, mode: &str, rate: Option<&str>, input: &Path, secs: f64, frames: usize) -> f64 {
    let mut net = Net::new(tag);
    if let Some(rate) = rate {
        // Only the O<->T path: the router's side towards the transcoder (input going out to it)
        // and the transcoder's own link (results coming back); the broadcaster's is not limited.
        for (host, ifc) in [("r", format!("{}r2", net.p)), ("t", format!("{}t0", net.p))] {
            let tbf = ["qdisc", "add", "dev", &ifc, "root", "tbf", "rate", rate, "burst", "64kbit", "latency", "400ms"];
            net.exec(host, "tc", &tbf);
        }
    }
    let fp = net.orchestrator(mode);
    if mode == "orchestrator" {
        net.transcoder(&fp);
        net.wait_transcoders(1.0, Duration::from_secs(20));
    }
    // Uploaded as a live encoder sends it: the segment's bytes spread over its duration.
    let bytes = std::fs::metadata(input).expect("input").len();
    let pace = (bytes as f64 / (secs * 100.0)).ceil() as u64;
    let mut v = Vec::new();
    for i in 0..3 {
        let out = net.dir.join(format!("out{i}"));
        let t0 = Instant::now();
        let o = net.push_paced(&fp, tag, input, &out, Some(pace));
        assert!(o.status.success(), "{tag}: {}", String::from_utf8_lossy(&o.stderr));
        v.push(t0.elapsed().as_secs_f64());
        assert_eq!(renditions_complete(&out, frames), 2);
    }
    v.sort_by(f64::total_cmp);
    v[1]
}

/// Split mode against combined over O<->T links rate-limited with tbf. Reported, not asserted
/// (speed belongs to benchmarks); every segment must complete with every frame.
#[test]
fn split_mode_over_rate_limited_links() {
    skip_unless_namespaces!();
    // The committed 1080p fixture (~1.4 Mbit/s) on links of 1.5x, 3x and 7x its bitrate.
    let fixture = fixture_path("h264_1080p30_high_bframes_aac.ts");
    let mbit = std::fs::metadata(&fixture).expect("fixture").len() as f64 * 8.0 / 2.0 / 1e6;
    let mut rows =
        vec![(format!("{mbit:.1} Mbit/s fixture, no hop"), median_ttlb("c", "combined", None, &fixture, 2.0, 60))];
    for (i, factor) in [1.5, 3.0, 7.0].into_iter().enumerate() {
        let rate = format!("{}kbit", (mbit * factor * 1000.0) as u64);
        let t = median_ttlb(&format!("f{i}"), "orchestrator", Some(&rate), &fixture, 2.0, 60);
        rows.push((format!("{mbit:.1} Mbit/s fixture, O<->T {rate} ({factor}x)"), t));
    }
    // A 13 Mbit/s 1080p segment on 20, 50 and 100 Mbit/s links, where ffmpeg can make one.
    let big = std::env::temp_dir().join(format!("zerohop-netns-13mbit-{}.ts", std::process::id()));
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t"])
        .args([
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "13M",
            "-maxrate",
            "13M",
            "-bufsize",
            "6M",
        ])
        .args(["-g", "30", "-bf", "0", "-pix_fmt", "yuv420p", "-f", "mpegts"])
        .arg(&big)
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let mbit = std::fs::metadata(&big).expect("made").len() as f64 * 8.0 / 2.0 / 1e6;
        rows.push((format!("{mbit:.1} Mbit/s 1080p, no hop"), median_ttlb("C", "combined", None, &big, 2.0, 60)));
        for (i, rate) in ["20mbit", "50mbit", "100mbit"].into_iter().enumerate() {
            let t = median_ttlb(&format!("g{i}"), "orchestrator", Some(rate), &big, 2.0, 60);
            rows.push((format!("{mbit:.1} Mbit/s 1080p, O<->T {rate}"), t));
        }
        std::fs::remove_file(&big).ok();
    } else {
        eprintln!("ffmpeg with libx264 not installed: the 13 Mbit/s rows are left out");
    }
    eprintln!("TTLB, median of 3 live-paced pushes (split/combined in brackets):");
    let mut base = f64::NAN;
    for (what, t) in &rows {
        if what.ends_with("no hop") {
            base = *t;
        }
        eprintln!("  {what:<48} {t:.3} s  ({:.2})", t / base);
    }
}
