//! `--cpu-encoder` as a user meets it: which encoder wrote the renditions (read from their SPS:
//! x264 writes High, OpenH264 Constrained Baseline), what start-up says, and the "x264 absent"
//! path, taken by pointing `ZEROHOP_X264_LIB` at a file that does not exist (never by hoping a
//! machine lacks x264: every machine with Debian's ffmpeg has it).

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const INPUT: &str = "h264_360p25_baseline_noaudio.ts";
const ABSENT: &str = "/nonexistent/libx264.so.164";

fn out_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cpu_encoder_{name}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `zerohop transcode` of the 360p25 fixture into one 240p rung, with `args`, the library
/// overridden by `lib` when given.
fn transcode(out: &Path, lib: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zerohop"));
    c.arg("transcode").arg(common::fixture_path(INPUT)).args(["-p", "P240p30fps16x9", "-o"]).arg(out).args(args);
    c.env_remove("ZEROHOP_CPU_ENCODER").env_remove("ZEROHOP_X264_PRESET").env_remove("ZEROHOP_X264_LIB");
    if let Some(l) = lib {
        c.env("ZEROHOP_X264_LIB", l);
    }
    c.output().expect("zerohop runs")
}

/// The H.264 profile_idc of the rendition written to `out`.
fn profile_of(out: &Path) -> u8 {
    let file = std::fs::read_dir(out).expect("output dir").next().expect("a rendition").expect("entry").path();
    let r = zerohop_engine::probe::probe(&std::fs::read(&file).expect("read"));
    assert!(r.verdict.is_ok(), "{}: {:?}", file.display(), r.verdict);
    r.sps.expect("SPS").profile_idc
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn auto_without_x264_falls_back_to_openh264_saying_why() {
    let out = out_dir("auto_absent");
    let o = transcode(&out, Some(ABSENT), &[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("CPU encoder: openh264") && err.contains(ABSENT), "start-up says why: {err}");
    assert_eq!(profile_of(&out), 66, "OpenH264 wrote it (Constrained Baseline)");
}

#[test]
fn x264_asked_for_and_absent_stops_with_what_to_do() {
    let out = out_dir("x264_absent");
    let o = transcode(&out, Some(ABSENT), &["--cpu-encoder", "x264"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(ABSENT), "names what was tried: {err}");
    assert!(err.contains("apt-get install libx264-164") && err.contains("--cpu-encoder openh264"), "{err}");
    assert!(!out.exists() || std::fs::read_dir(&out).expect("dir").next().is_none(), "nothing written");
}

#[test]
fn openh264_asked_for_never_loads_x264() {
    let out = out_dir("openh264");
    // Even a library that would fail to load is not tried.
    let o = transcode(&out, Some(ABSENT), &["--cpu-encoder", "openh264"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("CPU encoder: openh264 (--cpu-encoder openh264)"), "{err}");
    assert_eq!(profile_of(&out), 66);
}

/// With x264 installed, a process told `--cpu-encoder openh264` (or running a command that does
/// not encode) never loads it: glibc's loader, asked to (`LD_DEBUG=libs`), lists every library
/// it looks for.
#[test]
fn a_process_that_opted_out_never_loads_x264() {
    let out = out_dir("opted_out");
    for what in ["transcode --cpu-encoder openh264", "presets"] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_zerohop"));
        if what == "presets" {
            c.arg("presets");
        } else {
            c.arg("transcode").arg(common::fixture_path(INPUT)).args(["-p", "P240p30fps16x9", "-o"]).arg(&out);
            c.args(["--cpu-encoder", "openh264"]);
        }
        let o = c.env("LD_DEBUG", "libs").env_remove("ZEROHOP_X264_LIB").output().expect("runs");
        let err = stderr(&o);
        assert!(o.status.success(), "{what}: {err}");
        assert!(err.contains("libc.so"), "{what}: the loader lists what it loads (glibc): {err}");
        assert!(!err.contains("libx264"), "{what}: x264 was looked for");
    }
}

#[test]
fn x264_where_installed_writes_high_profile() {
    if !common::x264_ready("x264_where_installed_writes_high_profile") {
        return;
    }
    for args in [&[][..], &["--cpu-encoder", "x264", "--x264-preset", "veryfast"][..]] {
        let out = out_dir(if args.is_empty() { "auto" } else { "x264" });
        let o = transcode(&out, None, args);
        let err = stderr(&o);
        assert!(o.status.success(), "{args:?}: {err}");
        assert!(err.contains("CPU encoder: x264") && err.contains("GPL"), "{args:?}: {err}");
        assert_eq!(profile_of(&out), 100, "{args:?}: x264 wrote it (High)");
    }
}

#[test]
fn version_verbose_and_probe_say_what_auto_comes_to() {
    let v = Command::new(env!("CARGO_BIN_EXE_zerohop"))
        .args(["--version", "--verbose"])
        .env("ZEROHOP_X264_LIB", ABSENT)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(text.contains("CPU encoder (--cpu-encoder auto): openh264") && text.contains(ABSENT), "{text}");
    let p = Command::new(env!("CARGO_BIN_EXE_zerohop"))
        .arg("probe")
        .arg(common::fixture_path(INPUT))
        .env("ZEROHOP_X264_LIB", ABSENT)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&p.stdout);
    assert!(text.contains("CPU encoder (--cpu-encoder auto): openh264"), "{text}");
}

/// An orchestrator with no local engine (`--max-sessions` 0, its default) encodes nothing: it
/// neither loads libx264 nor refuses to start for want of it, even with `--cpu-encoder x264`.
#[test]
fn an_orchestrator_without_local_sessions_needs_no_cpu_encoder() {
    use std::io::{BufRead, BufReader};
    let secret = out_dir("orchestrator_secret");
    std::fs::create_dir_all(&secret).expect("dir");
    let secret = secret.join("secret");
    std::fs::write(&secret, "s3cret\n").expect("secret");
    let mut child = Command::new(env!("CARGO_BIN_EXE_zerohop"))
        .args(["orchestrator", "--insecure-h2c", "--service-addr", "127.0.0.1:0", "--cpu-encoder", "x264"])
        .arg("--orch-secret-file")
        .arg(&secret)
        .env("ZEROHOP_X264_LIB", ABSENT)
        .env_remove("ZEROHOP_CPU_ENCODER")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("zerohop runs");
    let mut said = Vec::new();
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        let line = line.expect("line");
        let serving = line.contains("orchestrator serving on");
        said.push(line);
        if serving {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let said = said.join("\n");
    assert!(said.contains("orchestrator serving on"), "it starts: {said}");
    assert!(!said.contains("CPU encoder") && !said.contains("libx264"), "no encoder chosen: {said}");
}
