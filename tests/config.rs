//! Settings from a config file and the environment, as an operator gives them to the binary:
//! which one wins, and what a bad one says.

use std::path::Path;
use std::process::{Command, Output};

/// A directory of its own per test, removed when dropped (the binary's own test helper).
#[path = "../src/scratch.rs"]
mod scratch;
use scratch::ScratchDir;

/// The binary with no ZEROHOP_* variable of this process, run in `dir`.
fn zerohop(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zerohop"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ZEROHOP_") {
            c.env_remove(name);
        }
    }
    c.current_dir(dir);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The ladder a node would use is the first thing it checks: an unknown preset's name in the
/// error says which setting won, with nothing started.
#[test]
fn command_line_beats_environment_beats_file_beats_default() {
    let s = ScratchDir::new("config-precedence");
    let file = s.file("node.toml", "insecure-h2c = true\n[combined]\nprofiles = \"PfromFile\"\n");
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut c = zerohop(s.path());
        c.arg("combined").arg("--config").arg(&file);
        if let Some(v) = env {
            c.env("ZEROHOP_PROFILES", v);
        }
        if let Some(v) = flag {
            c.args(["--profiles", v]);
        }
        let o = c.output().expect("run");
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        stderr(&o)
    };
    assert!(run(None, None).contains("unknown profile preset \"PfromFile\""), "the file's value is taken");
    assert!(run(Some("PfromEnv"), None).contains("\"PfromEnv\""), "the environment beats the file");
    assert!(run(Some("PfromEnv"), Some("PfromFlag")).contains("\"PfromFlag\""), "the flag beats the environment");
    // ZEROHOP_CONFIG names the file as --config does.
    let o = zerohop(s.path()).arg("combined").env("ZEROHOP_CONFIG", &file).output().expect("run");
    assert!(stderr(&o).contains("\"PfromFile\""), "{}", stderr(&o));
}

#[test]
fn a_bad_value_names_the_file_the_line_the_key_and_what_to_write() {
    let s = ScratchDir::new("config-bad-value");
    let file = s.file("node.toml", "# a node\nservice-addr = \":8935\"\nmax-sessions = \"four\"\n");
    let o = zerohop(s.path()).arg("orchestrator").arg("--config").arg(&file).output().expect("run");
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "error: config file {}, line 3: key \"max-sessions\": invalid value \"four\": invalid digit found in string; \
             write a whole number, e.g. max-sessions = 4",
            file.display()
        )
    );
    // The file takes exactly what the flag takes: an address the flag refuses, refused.
    let file = s.file("addr.toml", "service-addr = \"https://node.example:8935\"\n");
    let o = zerohop(s.path()).arg("combined").arg("--config").arg(&file).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("key \"service-addr\": invalid value") && stderr(&o).contains("is a URL"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unknown_key_suggests_the_nearest_one() {
    let s = ScratchDir::new("config-unknown");
    let file = s.file("node.toml", "max_session = 4\n");
    let o = zerohop(s.path()).arg("combined").arg("--config").arg(&file).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "config file {}, line 1: key \"max_session\": not a setting of `zerohop combined`; did you mean \"max-sessions\"?",
            file.display()
        )),
        "{}",
        stderr(&o)
    );
    let o = zerohop(s.path()).arg("combined").arg("--config").arg(s.path().join("missing.toml")).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.toml") && stderr(&o).contains("No such file"), "{}", stderr(&o));
}

/// A required flag (--orch-addr) may come from the file; a list becomes one link per entry; a
/// file's setting that conflicts with a flag is clap's error, with what the file gave.
#[test]
fn the_transcoder_takes_its_orchestrators_from_the_file() {
    let s = ScratchDir::new("config-transcoder");
    let file = s.file(
        "node.toml",
        "[transcoder]\norch-addr = [\"127.0.0.1:9\", \"127.0.0.1:10\"]\norch-cert-sha256 = \"00\"\n",
    );
    // Past argument parsing: the next check is the credential, which there is none of.
    let o = zerohop(s.path()).arg("transcoder").arg("--config").arg(&file).output().expect("run");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no credential"), "{}", stderr(&o));
    // --insecure-h2c conflicts with the file's --orch-cert-sha256.
    let o = zerohop(s.path()).args(["transcoder", "--insecure-h2c", "--config"]).arg(&file).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("cannot be used with") && e.contains("note: the config file gave"), "{e}");
    assert!(e.contains("--orch-cert-sha256=00"), "{e}");
}
