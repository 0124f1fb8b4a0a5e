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
fn a_livepeer_transcoder_says_what_it_needs_before_dialling() {
    let run = |extra: &[&str], secret: Option<&str>| {
        let mut c = zerohop();
        c.args(["transcoder", "--livepeer-orch", "127.0.0.1:9"]).args(extra).env_remove("ZEROHOP_ORCH_SECRET");
        if let Some(s) = secret {
            c.env("ZEROHOP_ORCH_SECRET", s);
        }
        let o = c.output().expect("run");
        assert!(!o.status.success(), "{extra:?}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // How to trust an orchestrator whose certificate changes at every start: said, with both ways.
    let said = run(&[], Some("s"));
    assert!(said.contains("--livepeer-insecure") && said.contains("--livepeer-pin"), "{said}");
    assert!(said.contains("new self-signed certificate at every start"), "{said}");
    // The secret: where to put it.
    let said = run(&["--livepeer-insecure"], None);
    assert!(said.contains("-orchSecret") && said.contains("ZEROHOP_ORCH_SECRET"), "{said}");
    // Zero capacity, refused here as the orchestrator would.
    let said = run(&["--livepeer-insecure", "--max-sessions", "0"], Some("s"));
    assert!(said.contains("zero capacity"), "{said}");
    // zerohop's own link flags do not mix with it.
    let said = run(&["--livepeer-insecure", "--orch-addr", "127.0.0.1:8"], Some("s"));
    assert!(said.contains("cannot be used with"), "{said}");
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

/// Flags of other programs that README.md and doc/*.md name beside zerohop's, each with the
/// program it belongs to. Every other `--flag` in those pages is taken for zerohop's and must be
/// in its help. A flag that zerohop has too (`--gpus` of `docker run`, `--self-test` of
/// `benches/bdrate.py`) needs no entry: it is in the help either way.
const FOREIGN_FLAGS: &[(&str, &str)] = &[
    ("--all", "cargo fmt"),
    ("--all-targets", "cargo clippy"),
    ("--bench", "cargo bench"),
    ("--build-arg", "docker build"),
    ("--check", "cargo fmt"),
    ("--cubin-dir", "kernels/check/check_kernels.py"),
    ("--data-binary", "curl"),
    ("--factors", "benches/hop.py"),
    ("--features", "cargo (`--features cuda`)"),
    ("--http1.1", "curl"),
    ("--http2", "curl"),
    ("--http2-prior-knowledge", "curl"),
    ("--ignored", "libtest (`cargo test -- --ignored`)"),
    ("--markdown", "benches/compare_ffmpeg.py"),
    ("--pinnedpubkey", "curl"),
    ("--prebuilt", "hw-ci/run"),
    ("--reference-scaler", "benches/compare_ffmpeg.py"),
    ("--release", "cargo"),
    ("--require-events", "benches/hop.py"),
    ("--segments", "benches/hop.py"),
    ("--smallest", "benches/hop.py"),
    ("--strict", "kubernetes-validate"),
    ("--warn-on-spills", "ptxas"),
    ("--workspace", "cargo"),
];

/// The `--flag`s written in `text`: `--` not inside a word, then letters, digits, dots and
/// dashes, less trailing dots. A run that ends in a dash (`--zerohop-<32 hex>`, a multipart
/// boundary) or starts with one (a Markdown table's `|---|`) is no flag.
fn long_flags(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("--").map(|p| p + i) {
        i = at + 2;
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'-') {
            continue;
        }
        let end = text[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            .map_or(text.len(), |p| p + i);
        let name = text[i..end].trim_end_matches('.');
        if name.starts_with(|c: char| c.is_ascii_alphanumeric()) && !name.ends_with('-') {
            out.push(format!("--{name}"));
        }
        i = end;
    }
    out
}

/// The long flags and visible aliases `zerohop --help` and `zerohop <command> --help` list, for
/// every command: the option lines' own flags (not the flags their descriptions mention) and
/// `[aliases: ...]`.
fn help_flags() -> std::collections::BTreeSet<String> {
    let help = |args: &[&str]| {
        let o = zerohop().args(args).output().expect("run");
        assert!(o.status.success(), "zerohop {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).expect("utf-8 help")
    };
    let top = help(&["--help"]);
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.contains(&"combined") && commands.len() >= 10, "commands in --help: {commands:?}");
    let mut flags = std::collections::BTreeSet::new();
    for text in std::iter::once(top.clone()).chain(commands.iter().map(|c| help(&[c, "--help"]))) {
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('-') {
                flags.extend(long_flags(line.split("  ").next().unwrap_or(line)));
            }
            for aliases in line.split("[alias").skip(1) {
                flags.extend(long_flags(aliases.split(']').next().unwrap_or("")));
            }
        }
    }
    flags
}

#[test]
fn every_flag_the_docs_name_is_in_the_help() {
    assert_eq!(
        long_flags("`--tls-cert/--tls-key`, --http1.1, --zerohop-<hex> |---| a -- b --x."),
        ["--tls-cert", "--tls-key", "--http1.1", "--x"]
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("doc"))
        .expect("doc/")
        .map(|e| e.expect("doc/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    let known = help_flags();
    let mut wrong = Vec::new();
    let mut foreign_used = std::collections::BTreeSet::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("page");
        let name = page.strip_prefix(root).unwrap_or(page).display().to_string();
        for (n, line) in text.lines().enumerate() {
            for flag in long_flags(line) {
                if let Some((f, _)) = FOREIGN_FLAGS.iter().find(|(f, _)| *f == flag) {
                    foreign_used.insert(*f);
                } else if !known.contains(&flag) {
                    wrong.push(format!("{name}:{}: {flag}", n + 1));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "flags the docs name that zerohop's help does not list (fix the page; a flag of another program goes into \
         FOREIGN_FLAGS with its program):\n{}",
        wrong.join("\n")
    );
    for (flag, program) in FOREIGN_FLAGS {
        assert!(
            !known.contains(*flag),
            "{flag} is zerohop's own flag, not only {program}'s: drop it from FOREIGN_FLAGS"
        );
        assert!(foreign_used.contains(flag), "{flag} ({program}) is named in no page: drop it from FOREIGN_FLAGS");
    }
}

/// `ZEROHOP_HOP_LOG`: a paced push and the combined node it pushes to each write their events,
/// one JSON line apiece, and on the clock they share the events come in the order the bytes
/// went: upload begun and ended at both ends, the engine's last input, first and last chunk,
/// the answer's last byte, the push's last result byte.
#[test]
fn hop_events_of_a_push_and_its_node_line_up_on_one_clock() {
    let dir = tmp("hop-log");
    std::fs::create_dir_all(&dir).expect("dir");
    let (node_log, push_log) = (dir.join("node.jsonl"), dir.join("push.jsonl"));
    let addr = common::free_addr();
    let mut node = zerohop();
    node.args(["combined", "--insecure-h2c", "--service-addr", &addr, "--data-dir"])
        .arg(dir.join("data"))
        .env("ZEROHOP_HOP_LOG", &node_log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _node = common::start_listening(&mut node, &addr);
    let sample = fixture_path("h264_720p30_main_slices_aac.ts");
    // The 1 s segment at its real-time rate, in 10 ms pieces.
    let pace = (std::fs::metadata(&sample).expect("fixture").len() / 100 + 1).to_string();
    let o = zerohop()
        .args(["push", "--insecure-h2c", "--orch", &addr, "--stream", "hop", "--pace", &pace, "-o"])
        .arg(dir.join("out"))
        .arg(&sample)
        .env("ZEROHOP_HOP_LOG", &push_log)
        .output()
        .expect("run push");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let events = |path: &std::path::Path| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    };
    let (node, push) = (events(&node_log), events(&push_log));
    let at = |lines: &[serde_json::Value], role: &str, event: &str| -> f64 {
        let e =
            lines.iter().find(|e| e["role"] == role && e["event"] == event && e["stream"] == "hop" && e["seq"] == 0);
        e.and_then(|e| e["t"].as_f64()).unwrap_or_else(|| panic!("no {role} {event} in {lines:?}"))
    };
    let order = [
        at(&push, "push", "upload_start"),
        at(&node, "combined", "upload_first"),
        at(&push, "push", "upload_end"),
        at(&node, "combined", "upload_last"),
        at(&node, "combined", "engine_chunk_last"),
        at(&node, "combined", "answer_last"),
        at(&push, "push", "result_last"),
    ];
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "events out of order: {order:?}");
    // The engine's last input comes after the upload's first byte and before its last chunk; it
    // may come before or after the node sees the upload's end (the last data, then the end).
    let engine_input = at(&node, "combined", "engine_input_last");
    assert!(at(&node, "combined", "upload_first") <= engine_input, "{engine_input}");
    assert!(engine_input <= at(&node, "combined", "engine_chunk_last"), "{engine_input}");
    let first_chunk = at(&node, "combined", "engine_chunk_first");
    assert!(
        first_chunk < at(&node, "combined", "upload_last"),
        "a paced upload's first rendition bytes come before its end"
    );
    assert!(at(&push, "push", "result_first") <= at(&push, "push", "result_last"));
    let _ = std::fs::remove_dir_all(&dir);
}
