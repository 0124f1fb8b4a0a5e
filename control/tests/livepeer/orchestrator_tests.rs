//! zerohop as a go-livepeer ORCHESTRATOR, in-process (`zerohop_control::Node`), against
//! stand-ins for go-livepeer's other two roles that speak with go-livepeer's own protobuf
//! messages (lp_rpc_pb2 as Livepeer publishes it):
//!
//! * control/tests/livepeer/transcoder.py, a go-livepeer transcoder (`livepeer -transcoder
//!   -orchAddr`, v0.9.1's server/ot_rpc.go): `RegisterTranscoder`, the `NotifySegment`s, a GET of
//!   the input, ffmpeg, `POST /transcodeResults`; and its traps (a part without `Pixels`, an
//!   error text, a death mid-task).
//! * control/tests/livepeer/gateway.py, a go-livepeer gateway: `GetOrchestrator`, `POST /segment`,
//!   the renditions by URL, `EndTranscodingSession`; and its traps (a wrong hash, a forged token,
//!   a job zerohop cannot do).
//!
//! What comes back is probed with zerohop's engine.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zerohop_control::livepeer::errors;
use zerohop_control::node::TranscoderSecrets;
use zerohop_control::{Client, ClientError, Node, PushOutcome, Upload};

use super::{BASELINE_360, MAIN_720, fixture_path, frames_and_size, root, tempdir};
use crate::common;

/// The orchestrator's shared secret (`--orch-secret-file`).
const SECRET: &str = "zerohop-orchestrator-secret";
/// common::LADDER's rungs, in its order: name, width, height (16:9 fixtures fill them).
const PUSH_LADDER: [(&str, u32, u32); 2] = [("P360p30fps16x9", 640, 360), ("P240p30fps16x9", 426, 240)];
/// go-livepeer's default ladder, the gateway's, in its order.
const GATEWAY_LADDER: [(&str, u32, u32); 2] = [("P240p30fps16x9", 426, 240), ("P360p30fps16x9", 640, 360)];

/// One test of this module at a time (each runs ffmpeg or the CPU engine); the module's tests
/// may run beside one test of the transcoder's (which hold their own lock).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn stubs() -> PathBuf {
    root().join("target/livepeer-stubs")
}

fn script(name: &str) -> PathBuf {
    root().join("control/tests/livepeer").join(name)
}

/// A zerohop orchestrator without sessions of its own that admits go-livepeer transcoders with
/// [`SECRET`] (and zerohop transcoders with it too).
async fn orchestrator() -> (Node, String) {
    common::start_node(|cfg| {
        cfg.max_sessions = 0;
        cfg.transcoders = TranscoderSecrets { shared: Some(SECRET.into()), ..TranscoderSecrets::default() };
    })
    .await
}

/// The go-livepeer transcoder stand-in, running (killed when dropped).
struct GoTranscoder {
    child: Child,
    /// Held open: it may write to it.
    _stdout: std::io::BufReader<ChildStdout>,
    /// What it said first: `registered`, or its refusal.
    said: String,
    report: PathBuf,
    log: PathBuf,
}

impl GoTranscoder {
    /// Starts transcoder.py against `node` with [`SECRET`] and `args` (later ones win), and
    /// waits for its first line.
    async fn start(py: &Path, name: &str, node: &Node, args: &[&str]) -> GoTranscoder {
        let dir = tempdir(&format!("orch-{name}"));
        let report = dir.join("report.json");
        let log = dir.join("transcoder.log");
        let mut cmd = Command::new(py);
        cmd.arg(script("transcoder.py"))
            .env("PYTHONPATH", stubs())
            .arg("--orch-addr")
            .arg(node.local_addr().to_string())
            .args(["--secret", SECRET, "--report"])
            .arg(&report)
            .args(args);
        let (child, stdout, said) = super::first_line(cmd, &log, "transcoder.py").await;
        GoTranscoder { child, _stdout: stdout, said: said.trim().to_string(), report, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn expect_registered(&self) {
        assert_eq!(self.said, "registered", "transcoder.py:\n{}", self.log());
    }

    fn report(&self) -> Value {
        let text = std::fs::read_to_string(&self.report).unwrap_or_else(|e| panic!("report: {e}\n{}", self.log()));
        serde_json::from_str(&text).expect("report JSON")
    }

    /// Polls the report until `ready` holds for it (panics after 30 s).
    async fn report_when(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + common::EVENT;
        loop {
            let r = self.report();
            if ready(&r) {
                return r;
            }
            assert!(Instant::now() < until, "transcoder.py: waited in vain for {what}: {r:#}\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its exit status, once it has exited (panics after 30 s).
    async fn exited(&mut self) -> std::process::ExitStatus {
        let until = Instant::now() + common::EVENT;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < until, "transcoder.py did not exit:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, as a crashed or unplugged transcoder: its connections close at once.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GoTranscoder {
    fn drop(&mut self) {
        self.kill();
        // Kept for a look after a failure.
        if !std::thread::panicking()
            && let Some(dir) = self.report.parent()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The tasks of a transcoder's report.
fn tasks(r: &Value) -> &Vec<Value> {
    r["tasks"].as_array().expect("tasks")
}

/// Pushes `fixture` as segment `seq` of `stream` with common::LADDER.
async fn try_push(
    c: &mut Client,
    stream: &str,
    seq: u64,
    fixture: &str,
) -> Result<(PushOutcome, common::Renditions), ClientError> {
    let data = Upload::Full(common::fixture(fixture));
    let pushed = tokio::time::timeout(Duration::from_secs(40), common::push_collect(c, stream, seq, data, || {}));
    pushed.await.expect("the push ends")
}

/// [`try_push`], which must get its results.
async fn push(c: &mut Client, stream: &str, seq: u64, fixture: &str) -> (PushOutcome, common::Renditions) {
    try_push(c, stream, seq, fixture).await.expect("push")
}

/// How a push failed: the error code and message, whether the node said it before the results
/// (an HTTP status) or in them (an error record and the trailers); `None` when it did not fail.
fn failure(r: &Result<(PushOutcome, common::Renditions), ClientError>) -> Option<(String, String)> {
    match r {
        Err(ClientError::Status { code, message, .. }) => Some((code.clone(), message.clone())),
        Err(e) => panic!("the push broke: {e}"),
        Ok((o, outs)) if !o.ok() => {
            assert!(outs.is_empty(), "no rendition bytes: {:?}", outs.keys().collect::<Vec<_>>());
            let text = o.errors.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>().join("\n");
            Some((common::error_code(o).unwrap_or_else(|| panic!("no error code: {o:?}")).to_string(), text))
        }
        Ok(_) => None,
    }
}

/// Each rendition of a push decodes, at its rung's size; (frames, width, height) of each.
fn assert_push_ladder(outs: &common::Renditions, what: &str) -> Vec<(u64, u32, u32)> {
    assert_eq!(outs.len(), PUSH_LADDER.len(), "{what}: renditions {:?}", outs.keys().collect::<Vec<_>>());
    PUSH_LADDER
        .iter()
        .enumerate()
        .map(|(i, (name, w, h))| {
            let bytes = &outs[&(i as u8)];
            let (f, pw, ph) = frames_and_size(bytes, &format!("{what}: rendition {i} ({name})"));
            assert_eq!((pw, ph), (*w, *h), "{what}: rendition {i} ({name})");
            (f, pw, ph)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_livepeer_transcoder_registers_transcodes_a_push_and_hears_the_streams_end() {
    let Some(py) = super::python() else { return };
    let _one = SERIAL.lock().await;
    let (node, fp) = orchestrator().await;
    let t = GoTranscoder::start(&py, "push", &node, &["--capacity", "2"]).await;
    t.expect_registered();
    let mut c = common::connect(&node, &fp, None).await.expect("client");

    let list = common::transcoder_list(&mut c).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["backend"], "go-livepeer", "{:#}", list[0]);
    assert_eq!((&list[0]["capacity"], &list[0]["local"]), (&json!(2), &json!(false)), "{:#}", list[0]);

    let (o, outs) = push(&mut c, "golive", 0, BASELINE_360).await;
    assert!(o.ok(), "{o:?}\n{}", t.log());
    let probed = assert_push_ladder(&outs, "the go-livepeer transcoder's renditions");

    let r = t.report_when("the task posted", |r| tasks(r).first().is_some_and(|t| t["state"] == "posted")).await;
    let task = &tasks(&r)[0];
    assert_eq!(tasks(&r).len(), 1, "{r:#}");
    assert_eq!((&task["session"], &task["manifest_id"], &task["seq"]), (&json!("golive"), &json!("golive"), &json!(0)));
    let url = task["url"].as_str().unwrap_or_default();
    assert!(url.starts_with(&format!("https://{}/", node.local_addr())), "the input is on the node: {url}");
    assert_eq!(task["get_status"], 200, "{task:#}");
    assert_eq!(task["input_bytes"], common::fixture(BASELINE_360).len(), "the whole upload");
    let names: Vec<&str> =
        task["profiles"].as_array().expect("profiles").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, PUSH_LADDER.map(|(n, _, _)| n), "the ladder, in order, as fullProfiles");
    assert_eq!((&task["posted_status"], &task["error"]), (&json!(200), &Value::Null), "{task:#}");
    // What it sent is what the push got: the same bytes, and ffprobe's count of pixels is
    // zerohop's (frames x width x height of each rendition).
    for (i, (part, (f, w, h))) in task["parts"].as_array().expect("parts").iter().zip(&probed).enumerate() {
        assert_eq!(part["length"], outs[&(i as u8)].len(), "rendition {i}: {part:#}");
        assert_eq!(part["pixels"], json!(f * u64::from(*w) * u64::from(*h)), "rendition {i}: {part:#}");
    }

    // The broadcaster ends the stream: the transcoder holding its session is told, as
    // go-livepeer tells it (an empty URL and the session's id).
    assert_eq!(c.end_stream("golive").await.expect("delete"), http::StatusCode::OK);
    let r = t.report_when("the session's end", |r| r["ended_sessions"].as_array().is_some_and(|s| !s.is_empty())).await;
    assert_eq!(r["ended_sessions"], json!(["golive"]));
    assert_eq!(tasks(&r).len(), 1, "the end is no task: {r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_and_a_zero_capacity_are_refused_with_go_livepeers_texts() {
    let Some(py) = super::python() else { return };
    let _one = SERIAL.lock().await;
    let (node, fp) = orchestrator().await;
    for (args, text) in [
        (&["--secret", "not-the-secret"][..], errors::INVALID_SECRET),
        (&["--capacity", "0"][..], errors::ZERO_CAPACITY),
    ] {
        let mut t = GoTranscoder::start(&py, "refused", &node, args).await;
        assert!(t.said.ends_with(&format!(": {text}")), "{args:?}: {}\n{}", t.said, t.log());
        let status = t.exited().await;
        assert_eq!(status.code(), Some(1), "a refusal is fatal: {}", t.log());
        let reg = &t.report()["registration"];
        assert_eq!(reg["ok"], false, "{reg:#}");
        // go-livepeer's transcoder compares the message exactly (checkTranscoderError).
        assert_eq!(reg["grpc_message"], text, "{reg:#}");
        assert_ne!(reg["grpc_status"], "0", "{reg:#}");
    }
    let mut c = common::connect(&node, &fp, None).await.expect("client");
    assert_eq!(common::transcoders(&mut c).await, 0, "neither joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendition_without_pixels_fails_the_segment_with_a_typed_error() {
    let Some(py) = super::python() else { return };
    let _one = SERIAL.lock().await;
    let (node, fp) = orchestrator().await;
    let t = GoTranscoder::start(&py, "nopixels", &node, &["--omit-pixels-of", "1"]).await;
    t.expect_registered();
    let mut c = common::connect(&node, &fp, None).await.expect("client");
    let r = try_push(&mut c, "nopixels", 0, BASELINE_360).await;
    // go-livepeer's orchestrator drops a part without Pixels and then finds one rendition for
    // two profiles (MismatchedSegments): the broadcaster must hear it, not get half a ladder.
    let (code, text) = failure(&r).unwrap_or_else(|| panic!("a push with half a ladder succeeded: {r:?}"));
    assert_eq!(code, zerohop_control::fault::code::TRANSCODER_LOST, "{text}");
    assert!(text.contains("MismatchedSegments"), "{text}");
    let r = t.report_when("the task posted", |r| tasks(r).first().is_some_and(|t| t["state"] == "posted")).await;
    let parts = tasks(&r)[0]["parts"].as_array().expect("parts").clone();
    assert_eq!(parts.iter().map(|p| p["pixels_sent"].clone()).collect::<Vec<_>>(), [json!(true), json!(false)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lpms_error_text_becomes_zerohops_error_code() {
    let Some(py) = super::python() else { return };
    let _one = SERIAL.lock().await;
    let (node, fp) = orchestrator().await;
    let t = GoTranscoder::start(&py, "error", &node, &["--error", "No keyframes in input"]).await;
    t.expect_registered();
    let mut c = common::connect(&node, &fp, None).await.expect("client");
    let r = try_push(&mut c, "noframes", 0, BASELINE_360).await;
    // LPMS's text for an input without pictures is zerohop's own code for it.
    let (code, text) = failure(&r).unwrap_or_else(|| panic!("the error was lost: {r:?}"));
    assert_eq!(code, "no_pictures", "{text}");
    assert!(text.contains("No keyframes in input"), "{text}");
    let r = t.report_when("the error posted", |r| tasks(r).first().is_some_and(|t| t["state"] == "posted")).await;
    let task = &tasks(&r)[0];
    assert_eq!((&task["content_type"], &task["posted_status"]), (&json!("livepeer/transcoding-error"), &json!(200)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_livepeer_transcoder_killed_mid_task_fails_over_and_the_push_succeeds() {
    let Some(py) = super::python() else { return };
    let _one = SERIAL.lock().await;
    let (node, fp) = orchestrator().await;
    // It would post its results only after 30 s: it is killed before.
    let mut t = GoTranscoder::start(&py, "killed", &node, &["--delay-ms", "30000"]).await;
    t.expect_registered();
    let mut c = common::connect(&node, &fp, None).await.expect("client");
    let data = Upload::Full(common::fixture(BASELINE_360));
    let pushed = tokio::spawn(async move {
        let r = common::push_collect(&mut c, "failover", 0, data, || {}).await;
        (c, r)
    });
    t.report_when("the task transcoded and held", |r| tasks(r).first().is_some_and(|t| t["state"] == "delaying")).await;

    // A zerohop transcoder with the shared secret joins; then the go-livepeer one dies.
    let addr = node.local_addr().to_string();
    let (rt, _zerohop) = common::spawn_transcoder(common::transcoder_config(&addr, &fp, "zerohop-t", SECRET));
    let mut c2 = common::connect(&node, &fp, None).await.expect("client");
    common::wait_for_transcoders(&mut c2, 2).await;
    let killed = Instant::now();
    t.kill();

    let (mut c, r) = tokio::time::timeout(Duration::from_secs(40), pushed).await.expect("the push ends").expect("join");
    let (o, outs) = r.expect("push");
    assert!(o.ok(), "the retry on the zerohop transcoder: {o:?}");
    assert_push_ladder(&outs, "the retry's renditions");
    assert!(killed.elapsed() < Duration::from_secs(8), "failed over at the link's end, not at the deadline");
    let list = common::transcoder_list(&mut c).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_ne!(list[0]["backend"], "go-livepeer", "{:#}", list[0]);
    drop(node);
    rt.shutdown_background();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_uploaded_at_a_live_pace_for_over_4_s_still_reaches_a_go_livepeer_transcoder() {
    let Some(py) = super::python() else { return };
    let _one = SERIAL.lock().await;
    let (node, fp) = orchestrator().await;
    let t = GoTranscoder::start(&py, "paced", &node, &[]).await;
    t.expect_registered();
    let mut c = common::connect(&node, &fp, None).await.expect("client");
    // A live encoder's pace: the segment's bytes over 5 s (a 6 s HLS segment sent as it is
    // made). go-livepeer's orchestrator notifies its transcoder once it has the whole segment;
    // the transcoder's GET of the input (core.DownloadData) must end within 4 s.
    let data = common::fixture(BASELINE_360);
    let piece = data.len().div_ceil(18);
    let paced = Upload::Paced { data, piece, interval: Duration::from_millis(300) };
    let started = Instant::now();
    let pushed = tokio::time::timeout(Duration::from_secs(40), common::push_collect(&mut c, "paced", 0, paced, || {}));
    let r = pushed.await.expect("the push ends");
    assert!(started.elapsed() > Duration::from_secs(5), "the upload took {:?}", started.elapsed());
    let report = t.report_when("the task answered", |r| tasks(r).first().is_some_and(|t| t["state"] == "posted")).await;
    let task = &tasks(&report)[0];
    assert_eq!((&task["get_status"], &task["error"]), (&json!(200), &Value::Null), "the input in time: {task:#}");
    let (o, outs) = r.unwrap_or_else(|e| panic!("push: {e}\n{task:#}"));
    assert!(o.ok(), "{o:?}");
    assert_push_ladder(&outs, "the paced segment's renditions");
}

/// A temp dir, removed when dropped unless the test failed (kept for a look).
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs gateway.py against `node` with `args` to its end; its report, and the dir that holds
/// it and the renditions it fetched.
async fn gateway(py: &Path, name: &str, node: &Node, args: &[&str]) -> (Value, Dir) {
    let dir = Dir(tempdir(&format!("gateway-{name}")));
    let report = dir.0.join("report.json");
    let mut cmd = Command::new(py);
    cmd.arg(script("gateway.py"))
        .env("PYTHONPATH", stubs())
        .arg("--orch")
        .arg(node.local_addr().to_string())
        .arg("--report")
        .arg(&report)
        .args(args)
        .stdin(Stdio::null());
    let run = tokio::task::spawn_blocking(move || cmd.output());
    let out = tokio::time::timeout(Duration::from_secs(40), run).await.expect("gateway.py ends").expect("join");
    let out = out.expect("gateway.py runs");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "gateway.py exited {}:\n{said}", out.status);
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("report: {e}\n{said}"));
    (serde_json::from_str(&text).expect("report JSON"), dir)
}

async fn combined_node(livepeer_gateways: bool) -> Node {
    common::start_node(|cfg| {
        cfg.max_sessions = 2;
        cfg.livepeer_gateways = livepeer_gateways;
    })
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_livepeer_gateway_gets_renditions_with_their_pixels_and_ends_its_session() {
    let Some(py) = super::python() else { return };
    let _one = SERIAL.lock().await;
    let node = combined_node(true).await;
    let (a, b) = (fixture_path(BASELINE_360), fixture_path(MAIN_720));
    let (r, _dir) = gateway(&py, "renditions", &node, &["--segment", &a, "--segment", &b]).await;

    assert_eq!(r["get_orchestrator"]["error"], Value::Null, "{r:#}");
    assert_eq!(r["orchestrator"]["compatible"], true, "{r:#}");
    assert_eq!(r["discarded"], Value::Null, "{r:#}");
    let segments = r["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 2, "{r:#}");
    for (seq, s) in segments.iter().enumerate() {
        let what = format!("segment {seq} ({})", s["input"]);
        assert_eq!(s["status"], 200, "{what}: {s:#}");
        assert_eq!(s["error"], Value::Null, "{what}: {s:#}");
        assert_eq!((&s["seq"], &s["result_seq"]), (&json!(seq), &json!(seq)), "{what}");
        assert_eq!(s["has_info"], true, "{what}: the result carries the orchestrator's info");
        // The 200 came at once, the result after the transcode; well within the gateway's wait.
        let (headers, end, within) =
            (s["headers_seconds"].as_f64(), s["end_seconds"].as_f64(), s["headers_within"].as_f64());
        let (headers, end, within) = (headers.expect("headers"), end.expect("end"), within.expect("within"));
        eprintln!("{what}: the 200 after {headers:.3} s, the result after {end:.3} s");
        assert!(headers < within / 2.0, "{what}: headers after {headers} s (the gateway waits {within} s)");
        assert!(headers < end, "{what}: the 200 came before the transcode ended ({headers} s, {end} s)");
        let renditions = s["renditions"].as_array().expect("renditions");
        assert_eq!(renditions.len(), GATEWAY_LADDER.len(), "{what}: {s:#}");
        for (i, (rendition, (name, w, h))) in renditions.iter().zip(GATEWAY_LADDER).enumerate() {
            assert_eq!(rendition["fetch_status"], 200, "{what} rendition {i}: {rendition:#}");
            let bytes = std::fs::read(rendition["file"].as_str().expect("file")).expect("rendition bytes");
            assert_eq!(rendition["length"], bytes.len());
            let (f, pw, ph) = frames_and_size(&bytes, &format!("{what} rendition {i} ({name})"));
            assert_eq!((pw, ph), (w, h), "{what} rendition {i} ({name})");
            assert_eq!(rendition["pixels"], json!(f * u64::from(pw) * u64::from(ph)), "{what} rendition {i}: pixels");
        }
    }
    // EndTranscodingSession: answered, and the session's renditions are gone.
    assert_eq!(r["end_session_error"], Value::Null, "{r:#}");
    assert_eq!(r["fetch_after_end"], 404, "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_livepeer_gateways_wrong_hash_forged_token_and_mp4_job_are_refused() {
    let Some(py) = super::python() else { return };
    let _one = SERIAL.lock().await;
    let node = combined_node(true).await;
    let seg = fixture_path(BASELINE_360);

    let (r, _dir) = gateway(&py, "bad-hash", &node, &["--segment", &seg, "--bad-hash"]).await;
    let s = &r["segments"][0];
    assert_eq!(
        (&s["status"], &s["error"]),
        (&json!(403), &json!("Forbidden")),
        "a body whose Keccak-256 is not the SegData's: {r:#}"
    );
    assert_eq!(s["renditions"], Value::Null, "{r:#}");

    let (r, _dir) = gateway(&py, "forged", &node, &["--segment", &seg, "--forge-token"]).await;
    let s = &r["segments"][0];
    assert_eq!((&s["status"], &s["error"]), (&json!(403), &json!("invalid auth token")), "{r:#}");

    // A job that needs MP4 (2): zerohop does not say it writes MP4, so go-livepeer's discovery
    // does not use it.
    let (r, _dir) = gateway(&py, "mp4", &node, &["--segment", &seg, "--extra-cap", "2"]).await;
    assert_eq!(r["get_orchestrator"]["error"], Value::Null, "{r:#}");
    assert_eq!(r["orchestrator"]["compatible"], false, "{r:#}");
    assert!(r["discarded"].is_string(), "{r:#}");
    assert_eq!(r["segments"], json!([]), "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_livepeer_gateways_refuses_get_orchestrator() {
    let Some(py) = super::python() else { return };
    let _one = SERIAL.lock().await;
    let node = combined_node(false).await;
    let (r, _dir) = gateway(&py, "off", &node, &["--segment", &fixture_path(BASELINE_360)]).await;
    let err = r["get_orchestrator"]["error"].as_str().unwrap_or_default();
    assert!(err.starts_with("gRPC status 12:"), "UNIMPLEMENTED: {r:#}");
    assert_eq!(r["orchestrator"], Value::Null, "{r:#}");
    assert_eq!(r["segments"], json!([]), "{r:#}");
}
