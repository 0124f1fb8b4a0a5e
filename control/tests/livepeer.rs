//! zerohop's transcoder in a go-livepeer orchestrator's pool (`livepeer::transcoder::run`)
//! against a stand-in for go-livepeer's orchestrator (control/tests/livepeer/orchestrator.py):
//! gRPC `RegisterTranscoder` and `NotifySegment`s encoded with go-livepeer's own protobuf schema
//! as Livepeer publishes it for Python (not zerohop's messages), `GET` of the input,
//! `POST /transcodeResults` read with Python's email package and go-livepeer's checks, and its
//! deadline that drops a slow transcoder's link. The renditions that come back are probed with
//! zerohop's engine and their `Pixels` checked against what is in them.
//!
//! Skips, saying so, without the Python venv (run control/tests/livepeer/setup.sh).

mod common;
#[path = "livepeer/orchestrator_tests.rs"]
mod orchestrator_tests;
#[path = "livepeer/vectors.rs"]
mod vectors;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use zerohop_control::client::Transport;
use zerohop_control::livepeer::capabilities::LIVEPEER_VERSION;
use zerohop_control::livepeer::errors;
use zerohop_control::livepeer::transcoder::{self, LivepeerLinkError, LivepeerTranscoderConfig};
use zerohop_control::relay::SessionFactory;
use zerohop_control::tls::Trust;
use zerohop_engine::Ladder;
use zerohop_engine::codec::CpuEncoder;
use zerohop_engine::probe;
use zerohop_engine::profile::CodecProfile;

const SECRET: &str = "livepeer-test-secret";
const BASELINE_360: &str = "h264_360p25_baseline_noaudio.ts";
const MAIN_720: &str = "h264_720p30_main_slices_aac.ts";
/// go-livepeer's default ladder (the orchestrator's default too), in order: name, box.
const LADDER: [(&str, u32, u32); 2] = [("P240p30fps16x9", 426, 240), ("P360p30fps16x9", 640, 360)];
/// LPMS's `ffmpeg.NonRetryableErrs` (lpms c44af7253bc9), which a gateway compares exactly.
const LPMS_NON_RETRYABLE: &[&str] = &[
    "Unsupported input pixel format",
    "Error initializing filtergraph",
    "Too many outputs",
    "Unsupported input codec",
    "No keyframes in input",
    "Unrecoverable state, restart process",
    "Encoded frames runaway",
    "Decoder not found",
    "Demuxer not found",
    "Encoder not found",
    "Muxer not found",
    "Option not found",
    "Invalid argument",
    "Invalid data found when processing input",
    "TranscoderInvalidResolution",
    "TranscoderInvalidVideo",
    "TranscoderUnrecognizedFormat",
    "TranscoderUnrecognizedProfile",
    "TranscoderInvalidGOP",
    "TranscoderIncompatibleDevices",
];

/// One test at a time: the CPU transcodes run against the orchestrator's deadlines.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture_path(name: &str) -> String {
    root().join("tests/fixtures").join(name).display().to_string()
}

/// The test venv's python, or `None` after skipping.
fn python() -> Option<PathBuf> {
    let py = root().join("target/livepeer-venv/bin/python");
    let stubs = root().join("target/livepeer-stubs/lp_rpc_pb2.py");
    if py.exists() && stubs.exists() {
        Some(py)
    } else {
        zerohop_testkit::skip("no Livepeer test venv", "run control/tests/livepeer/setup.sh");
        None
    }
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zerohop-livepeer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

/// The orchestrator, running (killed when dropped).
/// Starts `cmd` (its stderr into `log`) and waits up to 30 s for its first line of stdout: the
/// child, its stdout (kept open: it may write more) and that line.
async fn first_line(mut cmd: Command, log: &Path, what: &str) -> (Child, std::io::BufReader<ChildStdout>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    // Off the runtime's threads (the read ends when the process does, at worst).
    let read = tokio::task::spawn_blocking(move || {
        let mut stdout = stdout;
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        (stdout, line)
    });
    match tokio::time::timeout(Duration::from_secs(30), read).await {
        Ok(r) => {
            let (stdout, line) = r.expect("reader");
            (child, stdout, line)
        }
        Err(_) => {
            let _ = child.kill();
            panic!("{what} said nothing in 30 s:\n{}", std::fs::read_to_string(log).unwrap_or_default())
        }
    }
}

struct Orch {
    child: Child,
    /// Held open: the orchestrator may write to it.
    _stdout: std::io::BufReader<ChildStdout>,
    port: u16,
    report: PathBuf,
    log: PathBuf,
}

impl Orch {
    async fn start(py: &Path, name: &str, args: &[String]) -> Orch {
        let dir = tempdir(name);
        let report = dir.join("report.json");
        let log = dir.join("orchestrator.log");
        let mut cmd = Command::new(py);
        cmd.arg(root().join("control/tests/livepeer/orchestrator.py"))
            .args(["--secret", SECRET, "--deadline-s", "60", "--report"])
            .arg(&report)
            .args(args);
        let (mut child, stdout, line) = first_line(cmd, &log, "the orchestrator").await;
        let Some(port) = line.strip_prefix("listening ").and_then(|p| p.trim().parse().ok()) else {
            let _ = child.kill();
            panic!(
                "the orchestrator did not say `listening <port>`:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        };
        Orch { child, _stdout: stdout, port, report, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn report(&self) -> Value {
        let text = std::fs::read_to_string(&self.report).unwrap_or_else(|e| panic!("report: {e}\n{}", self.log()));
        serde_json::from_str(&text).expect("report JSON")
    }

    /// Waits for the orchestrator to finish its plan; its report.
    async fn finish(&mut self) -> Value {
        let until = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < until, "the orchestrator did not finish in 90 s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "the orchestrator exited {status}:\n{}", self.log());
        let r = self.report();
        assert_eq!(r["done"], true, "{r:#}");
        r
    }
}

impl Drop for Orch {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Kept for a look after a failure: the report, the parts and the orchestrator's log.
        if !std::thread::panicking()
            && let Some(dir) = self.report.parent()
        {
            let _ = std::fs::remove_dir_all(dir);
            let _ = std::fs::remove_dir_all(format!("{}-plan", dir.display()));
        }
    }
}

/// The H.264 profiles this build's CPU encoder writes (as `zerohop transcoder` advertises them).
fn profiles_written() -> Vec<CodecProfile> {
    match CpuEncoder::process_default() {
        CpuEncoder::OpenH264 => vec![CodecProfile::Baseline, CodecProfile::Main, CodecProfile::High],
        CpuEncoder::X264 { .. } => vec![CodecProfile::High],
    }
}

fn config(port: u16, secret: &str, capacity: u32) -> LivepeerTranscoderConfig {
    LivepeerTranscoderConfig {
        orch_addr: format!("127.0.0.1:{port}"),
        transport: Transport::Tls { trust: Trust::AnyCertificate, server_name: "localhost".into() },
        secret: secret.into(),
        capacity,
        sessions: SessionFactory::cpu(),
        profiles: profiles_written(),
    }
}

/// Runs zerohop's transcoder against `orch` until the orchestrator has finished; then stops it.
async fn transcode_with(orch: &mut Orch, capacity: u32) -> Value {
    let (stop_tx, stop) = watch::channel(false);
    let zerohop = tokio::spawn(transcoder::run(config(orch.port, SECRET, capacity), stop));
    let report = orch.finish().await;
    let _ = stop_tx.send(true);
    let ended = tokio::time::timeout(Duration::from_secs(30), zerohop).await;
    let ended = ended.expect("zerohop's transcoder stops when asked").expect("join");
    assert!(ended.is_ok(), "{ended:?}");
    report
}

fn plan(dir_name: &str, entries: Value) -> String {
    let p = tempdir(&format!("{dir_name}-plan")).join("plan.json");
    std::fs::write(&p, entries.to_string()).expect("plan");
    p.display().to_string()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// (frames, width, height) of a segment as zerohop's engine sees it.
fn frames_and_size(bytes: &[u8], what: &str) -> (u64, u32, u32) {
    let p = probe::probe(bytes);
    assert!(p.verdict.is_ok(), "{what}: {:?}", p.verdict);
    let sps = p.sps.unwrap_or_else(|| panic!("{what}: no SPS"));
    assert!(p.frames_decoded > 0, "{what}: no pictures");
    (p.frames_decoded, sps.width, sps.height)
}

/// A task that succeeded: two parts in ladder order, each `video/mp2t` with `Pixels` = frames x
/// width x height of what it holds, the request's `Pixels` = the input's decoded pixels.
fn assert_transcoded(task: &Value, input: &str) {
    let what = format!("task {} ({input})", task["task_id"]);
    assert_eq!(task["notified"], true, "{what}: {task:#}");
    assert_eq!(task["error"], Value::Null, "{what}: {task:#}");
    assert_eq!(task["o_error"], Value::Null, "{what}: {task:#}");
    assert_eq!(task["late"], false, "{what}: {task:#}");
    assert_eq!(task["http_status"], 200, "{what}: {task:#}");
    let ct = task["content_type"].as_str().unwrap_or_default();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{what}: {ct}");
    assert_eq!(task["ignored_parts"], json!([]), "{what}: parts without Pixels: {task:#}");

    let data = common::fixture(input);
    let (frames, w, h) = frames_and_size(&data, input);
    assert_eq!(task["pixels_header"], json!(frames * u64::from(w) * u64::from(h)), "{what}: decoded pixels");

    let parts = task["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), LADDER.len(), "{what}: {task:#}");
    for (i, (part, (name, bw, bh))) in parts.iter().zip(LADDER).enumerate() {
        assert_eq!(part["index"], i);
        assert_eq!(part["content_type"], "video/mp2t", "{what} part {i}");
        let bytes = std::fs::read(part["file"].as_str().expect("file")).expect("part bytes");
        assert_eq!(part["length"], bytes.len(), "{what} part {i}");
        let (pf, pw, ph) = frames_and_size(&bytes, &format!("{what} part {i}"));
        let ladder: Ladder = name.parse().expect("preset");
        let want = ladder.profiles()[0].output_size(w, h);
        assert_eq!((pw, ph), want, "{what} part {i}: size");
        // The fixtures are 16:9, so the boxes are filled exactly.
        assert_eq!((pw, ph), (bw, bh), "{what} part {i}: size");
        assert_eq!(part["pixels"], json!(pf * u64::from(pw) * u64::from(ph)), "{what} part {i}: Pixels");
    }
}

fn tasks(r: &Value) -> &Vec<Value> {
    r["tasks"].as_array().expect("tasks")
}

fn accepted_once(r: &Value) {
    assert_eq!(r["accepted_registrations"], 1, "the link stayed up: {:#}", r["registrations"]);
    let reg = &r["registrations"][0];
    assert_eq!(reg["ended_at_ms"], Value::Null, "{reg:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_segments_come_back_as_renditions_with_livepeers_pixel_counts() {
    let Some(py) = python() else { return };
    let _one = SERIAL.lock().await;
    let (a, b) = (fixture_path(BASELINE_360), fixture_path(MAIN_720));
    let mut orch = Orch::start(&py, "three", &args(&["--segment", &a, "--segment", &b, "--segment", &a])).await;
    let started = Instant::now();
    let r = transcode_with(&mut orch, 1).await;
    eprintln!("three segments in {:?}", started.elapsed());

    let regs = r["registrations"].as_array().expect("registrations");
    assert_eq!(regs.len(), 1, "{regs:#?}");
    let reg = &regs[0];
    assert_eq!((&reg["secret_ok"], &reg["capacity"], &reg["refused"]), (&json!(true), &json!(1), &Value::Null));
    assert_eq!(reg["version"], LIVEPEER_VERSION);
    let caps: Vec<u64> = serde_json::from_value(reg["capability_ids"].clone()).expect("ids");
    for needed in [0, 1, 12] {
        assert!(caps.contains(&needed), "the job's bits H.264, MPEGTS, AuthToken: {caps:?}");
    }
    assert!(!caps.contains(&2), "zerohop writes no MP4 and must not say so: {caps:?}");
    accepted_once(&r);

    let t = tasks(&r);
    assert_eq!(t.len(), 3, "{t:#?}");
    for (i, (task, input)) in t.iter().zip([BASELINE_360, MAIN_720, BASELINE_360]).enumerate() {
        assert_eq!((&task["task_id"], &task["seq"]), (&json!(i), &json!(i)), "go-livepeer counts tasks from 0");
        assert_transcoded(task, input);
    }
    let gets = r["segment_gets"].as_array().expect("gets");
    assert_eq!(gets.len(), 3, "one GET per task: {gets:#?}");
    assert!(gets.iter().all(|g| g["status"] == 200), "{gets:#?}");
    let posts = r["results_posts"].as_array().expect("posts");
    assert_eq!(posts.len(), 3, "one POST per task: {posts:#?}");
    assert!(posts.iter().all(|p| p["status"] == 200 && p["http_version"] == "2"), "{posts:#?}");
}

/// Polls the report until `ready` holds for it.
async fn report_when(orch: &Orch, ready: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = orch.report();
        if ready(&r) || Instant::now() > until {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_and_a_zero_capacity_are_fatal_as_in_go_livepeer() {
    let Some(py) = python() else { return };
    let _one = SERIAL.lock().await;
    let seg = fixture_path(BASELINE_360);
    // go-livepeer's way (grpc-go behind net/http): headers, then the status in trailers.
    let orch = Orch::start(&py, "secret", &args(&["--segment", &seg, "--refusal", "go"])).await;
    let (_stop_tx, stop) = watch::channel(false);
    let ended =
        tokio::time::timeout(Duration::from_secs(20), transcoder::run(config(orch.port, "not-the-secret", 1), stop))
            .await
            .expect("a refused secret ends run() at once");
    assert!(matches!(ended, Err(LivepeerLinkError::InvalidSecret { .. })), "{ended:?}\n{}", orch.log());
    let r = report_when(&orch, |r| !r["registrations"].as_array().is_none_or(Vec::is_empty)).await;
    let regs = r["registrations"].as_array().expect("registrations");
    assert_eq!(regs.len(), 1, "no redial after a refusal: {regs:#?}");
    assert_eq!((&regs[0]["secret_ok"], &regs[0]["refused"]), (&json!(false), &json!(errors::INVALID_SECRET)));
    assert!(tasks(&r).is_empty());
    drop(orch);

    // A trailers-only refusal (a native grpc-go server's) is read the same.
    let orch = Orch::start(&py, "capacity", &args(&["--segment", &seg, "--refusal", "trailers-only"])).await;
    let (_stop_tx, stop) = watch::channel(false);
    let ended = tokio::time::timeout(Duration::from_secs(20), transcoder::run(config(orch.port, SECRET, 0), stop))
        .await
        .expect("a refused capacity ends run() at once");
    assert!(matches!(ended, Err(LivepeerLinkError::ZeroCapacity { capacity: 0, .. })), "{ended:?}\n{}", orch.log());
    let r = report_when(&orch, |r| !r["registrations"].as_array().is_none_or(Vec::is_empty)).await;
    let regs = r["registrations"].as_array().expect("registrations");
    assert_eq!(regs.len(), 1, "{regs:#?}");
    let reg = &regs[0];
    assert_eq!((&reg["secret_ok"], &reg["capacity"]), (&json!(true), &json!(0)));
    assert_eq!(reg["refused"], errors::ZERO_CAPACITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ladder_zerohop_cannot_make_gets_a_retryable_text_and_the_link_stays_up() {
    let Some(py) = python() else { return };
    let _one = SERIAL.lock().await;
    let seg = fixture_path(BASELINE_360);
    let mp4 =
        json!([{"name": "P240p30fps16x9", "width": 426, "height": 240, "bitrate": 600000, "fps": 30, "format": "MP4"}]);
    let plan = plan(
        "mp4",
        json!([
            // The job's own bits ask for MP4 (2), which zerohop does not advertise: a
            // go-livepeer orchestrator sends it no such task.
            {"segment": seg, "profiles": mp4},
            // Bits that hide the MP4 (an orchestrator that does not check): zerohop refuses the
            // ladder itself, with a text a gateway retries elsewhere (another transcoder may
            // make MP4).
            {"segment": seg, "profiles": mp4, "job_caps": [0, 1, 12]},
            {"segment": seg},
        ]),
    );
    let mut orch = Orch::start(&py, "mp4", &args(&["--plan", &plan])).await;
    let r = transcode_with(&mut orch, 1).await;
    let t = tasks(&r);
    assert_eq!(t.len(), 3, "{t:#?}");
    assert_eq!((&t[0]["notified"], &t[0]["task_id"]), (&json!(false), &Value::Null), "{:#}", t[0]);
    assert_eq!(t[0]["o_error"], "no transcoders can provide requested capabilities");
    assert_eq!((&t[1]["task_id"], &t[2]["task_id"]), (&json!(0), &json!(1)), "no task id for a task never sent");

    assert_eq!(t[1]["notified"], true, "{:#}", t[1]);
    assert_eq!(t[1]["content_type"], "livepeer/transcoding-error");
    let text = t[1]["error"].as_str().expect("an error text");
    assert!(text.starts_with("zerohop cannot make this ladder") && text.contains("output format 1"), "{text}");
    assert!(!LPMS_NON_RETRYABLE.contains(&text), "retryable: {text}");
    assert_eq!((&t[1]["late"], &t[1]["http_status"]), (&json!(false), &json!(200)));
    assert_eq!(t[1]["parts"], json!([]));

    assert_transcoded(&t[2], BASELINE_360);
    accepted_once(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_lpms_non_retryable_text_and_the_next_segment_still_succeeds() {
    let Some(py) = python() else { return };
    let _one = SERIAL.lock().await;
    let (garbage, good) = (fixture_path("garbage.ts"), fixture_path(MAIN_720));
    let mut orch = Orch::start(&py, "garbage", &args(&["--segment", &garbage, "--segment", &good])).await;
    let r = transcode_with(&mut orch, 1).await;
    let t = tasks(&r);
    assert_eq!(t.len(), 2, "{t:#?}");

    let verdict = probe::probe(&common::fixture("garbage.ts")).verdict;
    let code = verdict.as_ref().expect_err("garbage is refused").code();
    let text = errors::lpms_text(code).unwrap_or_else(|| panic!("no LPMS text for {code}"));
    assert!(LPMS_NON_RETRYABLE.contains(&text), "{text}");
    assert_eq!(t[0]["content_type"], "livepeer/transcoding-error", "{:#}", t[0]);
    assert_eq!(t[0]["error"], text, "{:#}", t[0]);
    assert_eq!(t[0]["late"], false);

    assert_transcoded(&t[1], MAIN_720);
    accepted_once(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_deadline_drops_the_link_and_zerohop_registers_again() {
    let Some(py) = python() else { return };
    let _one = SERIAL.lock().await;
    let (slow, good) = (fixture_path(MAIN_720), fixture_path(BASELINE_360));
    // Task 0's deadline is max(1 ms, 4 x 1 ms): missed for sure; task 1's is 4 x 2 s.
    let plan = plan("redial", json!([{"segment": slow, "duration_ms": 1}, {"segment": good, "duration_ms": 2000}]));
    let mut orch =
        Orch::start(&py, "redial", &args(&["--plan", &plan, "--min-timeout-ms", "1", "--expect-redial"])).await;
    let r = transcode_with(&mut orch, 1).await;

    let regs = r["registrations"].as_array().expect("registrations");
    assert_eq!(r["accepted_registrations"], 2, "{regs:#?}");
    assert_eq!(r["redialed"], true);
    let reason = regs[0]["end_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("Remote transcoder took too long"), "{reason}");
    let gap = regs[1]["at_ms"].as_i64().expect("at") - regs[0]["ended_at_ms"].as_i64().expect("ended");
    assert!((0..5000).contains(&gap), "redialled {gap} ms after the link was dropped");

    let t = tasks(&r);
    assert_eq!(t.len(), 2, "{t:#?}");
    assert_eq!(t[0]["deadline_ms"], 4);
    assert_eq!((&t[0]["late"], &t[0]["o_error"]), (&json!(true), &json!("Remote transcoder took too long")));
    // zerohop finished task 0 anyway and posted it: go-livepeer answers 200 and drops it.
    assert_eq!(t[0]["late_result"], true, "{:#}", t[0]);
    assert_eq!(t[0]["registration"], 0);
    let late_post = r["results_posts"].as_array().expect("posts").iter().find(|p| p["task_id"] == "0").cloned();
    assert_eq!(late_post.as_ref().map(|p| p["status"].clone()), Some(json!(200)), "{late_post:?}");

    assert_eq!(t[1]["registration"], 1, "task 1 went to the new link");
    assert_transcoded(&t[1], BASELINE_360);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_answered_only_with_the_first_segment_stays_up_while_idle() {
    let Some(py) = python() else { return };
    let _one = SERIAL.lock().await;
    // go-livepeer's gRPC (grpc-go behind net/http) sends the answer's headers with the first
    // NotifySegment: an orchestrator without work leaves the call unanswered. Held past zerohop's
    // HTTP/2 keep-alive timeout (10 s), the link must stay up.
    let seg = fixture_path(BASELINE_360);
    let mut orch = Orch::start(&py, "held", &args(&["--segment", &seg, "--hold-registration-ms", "11000"])).await;
    let r = transcode_with(&mut orch, 1).await;
    accepted_once(&r);
    let t = tasks(&r);
    assert_eq!(t.len(), 1, "{t:#?}");
    let held =
        t[0]["notified_at_ms"].as_i64().expect("notified") - r["registrations"][0]["at_ms"].as_i64().expect("at");
    assert!(held >= 11_000, "the first notify came {held} ms after the registration");
    assert_transcoded(&t[0], BASELINE_360);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_at_once_up_to_the_capacity_and_go_livepeer_refuses_the_one_over() {
    let Some(py) = python() else { return };
    let _one = SERIAL.lock().await;
    let (a, b) = (fixture_path(BASELINE_360), fixture_path(MAIN_720));
    // One session per segment, all notified at once; zerohop registers a capacity of 2.
    let mut orch =
        Orch::start(&py, "concurrent", &args(&["--concurrent", "--segment", &a, "--segment", &b, "--segment", &a]))
            .await;
    let r = transcode_with(&mut orch, 2).await;
    assert_eq!(r["registrations"][0]["capacity"], 2);
    accepted_once(&r);
    let t = tasks(&r);
    assert_eq!(t.len(), 3, "{t:#?}");
    let sessions: std::collections::HashSet<&str> = t.iter().filter_map(|t| t["session_id"].as_str()).collect();
    assert_eq!(sessions.len(), 3, "one session per segment");
    assert_transcoded(&t[0], BASELINE_360);
    assert_transcoded(&t[1], MAIN_720);
    assert_eq!((&t[2]["notified"], &t[2]["task_id"]), (&json!(false), &Value::Null), "{:#}", t[2]);
    assert_eq!(t[2]["o_error"], "no transcoders available", "over the capacity of 2");
}
