//! `zerohop push` against a real node whose start record names a rendition that is not a safe
//! file name (the node accepts `..` as a profile name): the push fails naming it, and neither a
//! file nor a `.part` is left; a clean ladder on the same node still writes its renditions.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SEGMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/h264_360p25_baseline_noaudio.ts");

fn zerohop() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zerohop"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zerohop-push-names-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A combined node over cleartext HTTP/2 on a free loopback port; killed when dropped.
fn start_node(data: &Path) -> (common::NodeProcess, String) {
    let addr = common::free_addr();
    let mut node = zerohop();
    node.args(["combined", "--insecure-h2c", "--service-addr", &addr, "--data-dir"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    (common::start_listening(&mut node, &addr), addr)
}

fn push(addr: &str, ladder: &str, out: &Path) -> std::process::Output {
    zerohop()
        .args(["push", "--insecure-h2c", "--orch", addr, "--stream", "s", "-p", ladder, "-o"])
        .arg(out)
        .arg(SEGMENT)
        .output()
        .expect("run push")
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_rendition_name_that_is_not_a_safe_file_name_is_refused_and_nothing_is_written() {
    let root = tmp("refused");
    let (_node, addr) = start_node(&tmp("data"));
    let bad = r#"[{"name":"..","width":320,"height":180,"bitrate":300000},{"name":"180p","width":320,"height":180,"bitrate":300000}]"#;
    let out = root.join("out");
    let o = push(&addr, bad, &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    // zerohop's own node refuses such a ladder up front (400 bad_profile, naming it); a server
    // that sends one anyway is met by push's own check (src/push_output.rs, property-tested).
    let named = stderr.contains(r#"rendition name "..""#) && stderr.contains("refused");
    let refused_by_node = stderr.contains("bad_profile") && stderr.contains(r#"profile "..""#);
    assert!(named || refused_by_node, "{stderr}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 of 1 segment(s) ok"));
    assert_eq!(listing(&out), Vec::<String>::new(), "no file, no .part");
    assert_eq!(listing(&root), ["out"], "nothing beside the output directory");

    let good = r#"[{"name":"180p","width":320,"height":180,"bitrate":300000}]"#;
    let o = push(&addr, good, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(listing(&out), ["s_0_180p.ts"]);
    let _ = std::fs::remove_dir_all(&root);
}
