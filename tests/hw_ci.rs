//! hw-ci's bundle reads more than exit codes: its `run` (hw-ci/bundle-run) against stub binaries
//! (a GPU test executable printing libtest's lines for a pass, a fail and two skips; a `zerohop`
//! that finds no GPU) counts the tests by name in `report.json` and exits 1; the counter
//! (hw-ci/test-report.py) fails a skip on a machine with a GPU and a run that never finished.
//! Needs bash and python3 (`.ci/run` installs python3), no GPU.

#[path = "../src/scratch.rs"]
#[allow(dead_code)] // shared with the binary and other tests; here only new(), path() and file()
mod scratch;

use std::path::Path;
use std::process::Command;

use scratch::ScratchDir;
use serde_json::Value;

const HW_CI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hw-ci");

/// A pass, a fail, a skip in the older form and one through zerohop_testkit::skip, as the real
/// executable prints them with `--test-threads=1 --nocapture`.
const FAILING_RUN: &str = "
running 4 tests
test cuda::passes ... ok
test cuda::fails ... thread 'cuda::fails' panicked at engine/tests/cuda_gpu.rs:9:5:
boom
FAILED
test cuda::skips_plain ... skipped: no CUDA driver on this machine
ok
test cuda::skips_named ... SKIPPED cuda::skips_named: no NVIDIA GPU (CUDA_ERROR_NO_DEVICE)
ok

failures:
    cuda::fails

test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s
";

/// Every test `ok`: one skips because there is a driver (expected with a GPU), one because the
/// NVDEC library is missing (a failure with a GPU).
const SKIPPING_RUN: &str = "
running 3 tests
test cuda::a_missing_driver_is_a_typed_error_everywhere ... skipped: this machine has a CUDA driver
ok
test cuda::gpu_kernel_matches_the_cpu_emulation ... ok
test cuda::nvdec_pictures_equal_the_reference_decode ... skipped: libnvcuvid.so.1 not found
ok

test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s
";

fn have_python() -> bool {
    zerohop_testkit::require(&["python3"], "python3")
}

/// An executable script at `path`.
fn script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    let status = Command::new("chmod").arg("+x").arg(path).status().expect("chmod");
    assert!(status.success());
}

/// A stub test executable that prints `output` and exits `rc`.
fn stub_tests(path: &Path, output: &str, rc: i32) {
    script(path, &format!("#!/usr/bin/env bash\ncat <<'OUT'\n{output}OUT\nexit {rc}\n"));
}

/// test-report.py over `output`: its exit status and JSON.
fn count(s: &ScratchDir, output: &str, rc: i32, gpu: &str) -> (i32, Value) {
    let log = s.file("tests.log", output);
    let json = s.path().join("counts.json");
    let o = Command::new("python3")
        .arg(format!("{HW_CI}/test-report.py"))
        .arg(&log)
        .args(["--exit", &rc.to_string(), "--gpu", gpu, "--json"])
        .arg(&json)
        .output()
        .expect("python3");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code().expect("exit status"), serde_json::from_str(&text).expect("JSON"))
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array().expect("array").iter().map(|n| n.get("name").unwrap_or(n).as_str().expect("name")).collect()
}

#[test]
fn the_bundle_report_counts_gpu_tests_by_name_and_a_failure_fails_the_run() {
    if !have_python() {
        return;
    }
    let s = ScratchDir::new("hw-ci-bundle");
    let dir = s.path().join("bundle");
    std::fs::create_dir_all(dir.join("tests")).expect("mkdir");
    std::fs::copy(format!("{HW_CI}/bundle-run"), dir.join("run")).expect("run");
    std::fs::copy(format!("{HW_CI}/test-report.py"), dir.join("test-report.py")).expect("test-report.py");
    stub_tests(&dir.join("tests/cuda_gpu"), FAILING_RUN, 101);
    script(
        &dir.join("zerohop"),
        "#!/usr/bin/env bash\ncase \"$1\" in --version) echo stub ;; gpu-info) exit 3 ;; *) exit 1 ;; esac\n",
    );
    let out = s.path().join("out");
    let o =
        Command::new("bash").arg(dir.join("run")).arg("--out").arg(&out).env("HW_CI_GPU", "no").output().expect("run");
    let log = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "a failed test fails the run: {log}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).expect("JSON");
    let t = &report["gpu_tests"];
    assert_eq!(t["counts"]["passed"], 1, "{t}");
    assert_eq!(t["counts"]["failed"], 1, "{t}");
    assert_eq!(t["counts"]["skipped"], 2, "{t}");
    assert_eq!(names(&t["passed"]), ["cuda::passes"]);
    assert_eq!(names(&t["failed"]), ["cuda::fails"]);
    assert_eq!(names(&t["skipped"]), ["cuda::skips_plain", "cuda::skips_named"]);
    assert_eq!(t["skipped"][1]["reason"], "no NVIDIA GPU (CUDA_ERROR_NO_DEVICE)");
    // ffprobe's presence is in the report either way, and its absence said in report.md.
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    let has_ffprobe = Command::new("sh").args(["-c", "command -v ffprobe"]).output().expect("sh").status.success();
    assert_eq!(report["ffprobe"].is_string(), has_ffprobe, "{report}");
    assert_eq!(md.contains("ffprobe absent"), !has_ffprobe, "{md}");
    assert!(md.contains("GPU tests: 1 passed, 1 failed, 2 skipped") && md.contains("- FAILED cuda::fails"), "{md}");
}

#[test]
fn a_skip_fails_where_there_is_a_gpu_and_an_unfinished_run_fails_anywhere() {
    if !have_python() {
        return;
    }
    let s = ScratchDir::new("hw-ci-counts");
    let (rc, r) = count(&s, SKIPPING_RUN, 0, "no");
    assert_eq!(rc, 0, "no GPU: skips pass: {r}");
    assert_eq!((r["counts"]["passed"].as_u64(), r["counts"]["skipped"].as_u64()), (Some(1), Some(2)), "{r}");

    let (rc, r) = count(&s, SKIPPING_RUN, 0, "yes");
    assert_eq!(rc, 1, "{r}");
    assert_eq!(names(&r["skipped_with_a_gpu"]), ["cuda::nvdec_pictures_equal_the_reference_decode"]);

    // The binary died in a test: no result, no summary.
    let died = "\nrunning 2 tests\ntest cuda::passes ... ok\ntest cuda::crashes ... ";
    let (rc, r) = count(&s, died, 139, "no");
    assert_eq!(rc, 1, "{r}");
    assert_eq!(names(&r["unfinished"]), ["cuda::crashes"]);
}
