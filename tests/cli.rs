//! The `zerohop` binary as a user runs it.

mod common;

use std::process::Command;

use common::fixture_path;
use zerohop_engine::probe::decode_video;

fn zerohop() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zerohop"))
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("zerohop-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn transcode_writes_one_file_per_segment_and_rendition() {
    let out = tmp("transcode");
    let o = zerohop()
        .args(["transcode", "-p", "P360p30fps16x9,P240p30fps16x9", "-o"])
        .arg(&out)
        .arg(fixture_path("stream_seq0.ts"))
        .arg(fixture_path("stream_seq1.ts"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("[2/2]"), "progress per segment: {stderr}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("real-time ratio"));
    for seg in ["stream_seq0", "stream_seq1"] {
        for r in ["P360p30fps16x9", "P240p30fps16x9"] {
            let data = std::fs::read(out.join(format!("{seg}_{r}.ts"))).expect("output file");
            assert_eq!(decode_video(&data).expect("decode").len(), 30);
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_input_fails_with_a_message_and_leaves_no_partial_file() {
    let out = tmp("bad");
    let o = zerohop()
        .args(["transcode", "-p", "P240p30fps16x9", "-o"])
        .arg(&out)
        .arg(fixture_path("h264_interlaced.ts"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(5), "a segment failed: 5");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("unsupported_interlaced") && stderr.contains("progressive"), "{stderr}");
    assert!(!stderr.contains("panicked"));
    let left: Vec<_> = std::fs::read_dir(&out).expect("out dir").collect();
    assert!(left.is_empty(), "no partial output: {left:?}");
    // A file that does not exist, a bad preset: errors, not panics.
    let o = zerohop().args(["transcode", "/nonexistent.ts", "-o"]).arg(&out).output().expect("run");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.ts"));
    let o = zerohop().args(["transcode", "-p", "P9000p"]).output().expect("run");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown profile preset"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn probe_says_whether_and_why_not() {
    let o = zerohop().arg("probe").arg(fixture_path("h264_1080p30_high_bframes_aac.ts")).output().expect("run");
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{s}");
    assert!(
        s.contains("1920x1080") && s.contains("High") && s.contains("60 decoded") && s.contains("transcodable: yes"),
        "{s}"
    );
    let o = zerohop().arg("probe").arg(fixture_path("hevc_320x240.ts")).output().expect("run");
    assert_eq!(o.status.code(), Some(4), "not transcodable: 4 (2 is a usage error)");
    assert!(String::from_utf8_lossy(&o.stdout).contains("H.265/HEVC"));
}

#[test]
fn demo_runs_a_combined_node_and_pushes_the_bundled_segments() {
    let out = tmp("demo");
    let o = zerohop().arg("demo").arg("-o").arg(&out).output().expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("TTFB") && stderr.contains("TTLB") && stderr.contains("real-time ratio"), "{stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("3 of 3 segment(s) ok"), "{stdout}");
    // The summary says why its ratios are slow exactly when the build lacks the assembly.
    let slow_note = stdout.contains("without OpenH264's assembly") && stdout.contains("apt-get install nasm");
    assert_eq!(slow_note, !zerohop_engine::build_info::openh264_has_asm(), "{stdout}");
    for (seq, frames) in [(0, 30), (1, 30), (2, 60)] {
        for r in ["720p", "480p", "360p", "240p"] {
            let data = std::fs::read(out.join(format!("demo_{seq}_{r}.ts"))).expect("rendition file");
            assert_eq!(decode_video(&data).expect("decode").len(), frames, "demo_{seq}_{r}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn transcoder_with_a_wrong_secret_and_push_without_trust_fail_clearly() {
    // No secret at all: refused before dialling.
    let o = zerohop()
        .args(["transcoder", "--orch-addr", "127.0.0.1:9", "--orch-cert-sha256"])
        .arg("0".repeat(64))
        .env_remove("ZEROHOP_ORCH_SECRET")
        .output()
        .expect("run");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no credential"), "{}", String::from_utf8_lossy(&o.stderr));
    // push without saying how to trust the node.
    let o = zerohop().arg("push").arg(fixture_path("stream_seq0.ts")).output().expect("run");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--orch-cert-sha256"));
}

#[test]
fn accel_cuda_without_a_gpu_fails_clearly_and_auto_falls_back_to_the_cpu() {
    let out = tmp("accel");
    let input = fixture_path("h264_360p25_baseline_noaudio.ts");
    let o = zerohop().args(["transcode", "--accel", "cuda", "-o"]).arg(&out).arg(&input).output().expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.success() {
        zerohop_testkit::skip("a machine without a GPU", format_args!("this machine has a usable GPU ({err})"));
        return;
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("built without the CUDA backend") || err.contains("no NVIDIA driver"),
        "says why the GPU backend is unavailable: {err}"
    );
    let o = zerohop().args(["transcode", "--accel", "auto", "-o"]).arg(&out).arg(&input).output().expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("using the CPU backend") && err.contains("backend: cpu"), "{err}");
    let r = std::fs::read(out.join("h264_360p25_baseline_noaudio_360p.ts")).expect("rendition written");
    assert!(!r.is_empty());
    let _ = std::fs::remove_dir_all(&out);
}

/// The environment's names are in `--help`; a value from the environment is used, and a bad one
/// names its variable; the secrets read from the environment are never echoed.
#[test]
fn settings_come_from_the_environment_too() {
    let o = zerohop()
        .args(["orchestrator", "--help"])
        .env("ZEROHOP_ORCH_SECRET", "s3cret-orch")
        .env("ZEROHOP_TOKEN", "s3cret-token")
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    for shown in [
        "[env: ZEROHOP_SERVICE_ADDR=",
        "[env: ZEROHOP_MAX_SESSIONS=",
        "[env: ZEROHOP_CONFIG=",
        "[env: ZEROHOP_ORCH_SECRET]",
        "[env: ZEROHOP_TOKEN]",
        "only with --max-sessions > 0",
    ] {
        assert!(help.contains(shown), "{shown} in {help}");
    }
    assert!(!help.contains("s3cret"), "a secret echoed: {help}");
    let o = zerohop().arg("orchestrator").env("ZEROHOP_SERVICE_ADDR", "nowhere").output().expect("run");
    assert_eq!(o.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("environment ZEROHOP_SERVICE_ADDR: invalid value \"nowhere\"") && err.contains("no port"),
        "{err}"
    );
    // A good value is used: the orchestrator's check for transcoders comes after parsing, and a
    // local engine (ZEROHOP_MAX_SESSIONS) lifts it; then the ladder named in the environment.
    let o = zerohop().arg("orchestrator").env_remove("ZEROHOP_ORCH_SECRET").output().expect("run");
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs transcoders"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = zerohop()
        .arg("orchestrator")
        .env("ZEROHOP_MAX_SESSIONS", "1")
        .env("ZEROHOP_PROFILES", "PfromEnv")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"PfromEnv\""), "{}", String::from_utf8_lossy(&o.stderr));
}
