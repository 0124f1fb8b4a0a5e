//! The one way a test skips, for every crate of the workspace.
//!
//! A test that cannot run here (a tool, a library, a right or a GPU is missing) calls
//! [`skip`] and returns. The skip is:
//! - printed, as `SKIPPED <test>: <missing> (<detail>)`, so `--nocapture` output and hw-ci's
//!   report can count skips by name;
//! - recorded, one line per skip, in the file `ZEROHOP_SKIP_LOG` names (if set), which `.ci/run`
//!   sums up at the end of the run;
//! - refused where `CI=true` unless `missing` is on `.ci/expected-skips`: there the test fails,
//!   since a green run must not hide work that never ran.
#![forbid(unsafe_code)]

use std::io::Write;

/// The skips CI expects (`.ci/expected-skips`, compiled in so every test binary agrees).
const EXPECTED: &str = include_str!("../../.ci/expected-skips");

/// Whether `missing` is on the list of skips CI expects.
pub fn expected_in_ci(missing: &str) -> bool {
    EXPECTED.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).any(|l| l == missing)
}

/// Whether this run is CI's (`CI=true`, as GitHub Actions and `.ci/run` set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The name of the running test: libtest names each test's thread after it.
fn test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => "<unnamed test>".to_owned(),
    }
}

/// One skip as printed and recorded.
fn line(test: &str, missing: &str, detail: &str) -> String {
    if detail.is_empty() {
        format!("SKIPPED {test}: {missing}")
    } else {
        format!("SKIPPED {test}: {missing} ({detail})")
    }
}

/// Skips the running test because `missing` (a short, stable name: "ffprobe", "libx264 build
/// 164", "root", "no NVIDIA GPU") is not here; `detail` says more (how to install it, the error
/// seen). The caller returns right after. Panics, failing the test, where CI runs and `missing`
/// is not an expected skip.
pub fn skip(missing: &str, detail: impl std::fmt::Display) {
    let test = test_name();
    let text = line(&test, missing, &detail.to_string());
    eprintln!("{text}");
    record(&text);
    if let Err(refused) = allowed(in_ci(), missing) {
        panic!("{text}: {refused}");
    }
}

/// Whether a skip for `missing` may pass: always outside CI, in CI only when expected.
fn allowed(ci: bool, missing: &str) -> Result<(), String> {
    if !ci || expected_in_ci(missing) {
        return Ok(());
    }
    Err(format!(
        "CI must not skip this (CI=true and {missing:?} is not on .ci/expected-skips); \
         install or grant what is missing in .ci/run"
    ))
}

/// Appends a skip to `ZEROHOP_SKIP_LOG`, if set: one short `write` in append mode, so lines
/// of tests running at once in several processes do not interleave.
fn record(text: &str) {
    let Some(path) = std::env::var_os("ZEROHOP_SKIP_LOG") else { return };
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
    match file {
        Ok(mut f) => {
            if let Err(e) = f.write_all(format!("{text}\n").as_bytes()) {
                panic!("ZEROHOP_SKIP_LOG {}: {e}", path.to_string_lossy());
            }
        }
        Err(e) => panic!("ZEROHOP_SKIP_LOG {}: {e}", path.to_string_lossy()),
    }
}

/// Whether `program` runs here (`program -version` or `--version` succeeds).
pub fn have(program: &str) -> bool {
    ["-version", "--version"].iter().any(|flag| {
        std::process::Command::new(program)
            .arg(flag)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Skips the running test (see [`skip`]) unless every one of `programs` runs here; says which
/// Debian package has them. Returns whether the test can go on.
pub fn require(programs: &[&str], package: &str) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !have(p)).collect();
    if missing.is_empty() {
        return true;
    }
    skip(&missing.join(", "), format_args!("not installed; Debian: apt-get install {package}"));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_gpu_is_expected_in_ci() {
        assert!(expected_in_ci("no NVIDIA GPU"));
        for other in ["ffprobe", "libx264 build 164", "root", "", "#", "no NVIDIA"] {
            assert!(!expected_in_ci(other), "{other:?}");
        }
    }

    #[test]
    fn ci_refuses_every_skip_but_the_expected_ones() {
        assert_eq!(allowed(false, "ffprobe"), Ok(()));
        assert_eq!(allowed(true, "no NVIDIA GPU"), Ok(()));
        let refused = allowed(true, "ffprobe").expect_err("refused in CI");
        assert!(refused.contains(".ci/expected-skips"), "{refused}");
    }

    #[test]
    fn a_skip_names_its_test_and_reason() {
        assert_eq!(line("a::b", "ffprobe", "apt-get install ffmpeg"), "SKIPPED a::b: ffprobe (apt-get install ffmpeg)");
        assert_eq!(line("a::b", "root", ""), "SKIPPED a::b: root");
        assert_eq!(test_name(), "tests::a_skip_names_its_test_and_reason");
    }

    #[test]
    fn a_program_that_is_not_there_is_missing() {
        assert!(!have("zerohop-no-such-program"));
    }
}
