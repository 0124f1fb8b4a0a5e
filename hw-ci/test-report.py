#!/usr/bin/env python3
"""Counts a Rust test run by name: passed, failed, skipped, ignored, from libtest's output.

    test-report.py LOG --exit RC [--gpu auto|yes|no] [--json OUT]

LOG is the test binary's stdout and stderr together, run with `--test-threads=1 --nocapture`
(the tests' own lines then fall between `test NAME ... ` and its result). A test skipped itself
when it printed `SKIPPED <test>: <reason>` (zerohop_testkit::skip) or, the older form,
`skipped: <reason>` while it ran; libtest counts both `ok`, this script does not.

Exit status 0 when the run is sound, 1 when it is not: a test failed or never finished, RC is
not 0, libtest's own summary disagrees with the lines read, or no test ran; and, on a machine
with an NVIDIA GPU (`nvidia-smi -L` lists one, or /dev/nvidia0 exists; --gpu yes|no overrides),
any test skipped, except those that run only where there is no GPU (EXPECTED_WITH_A_GPU).
Needs only Python 3's standard library (hw-ci runners have no pip).
"""
import argparse
import json
import os
import re
import subprocess
import sys

# Tests that skip BECAUSE there is a GPU: the rest must run where there is one.
EXPECTED_WITH_A_GPU = {
    "a_missing_driver_is_a_typed_error_everywhere": "checks the typed error where there is no CUDA driver",
}

START = re.compile(r"^test (\S+) \.\.\. ?(.*)$")
RESULT = re.compile(r"^(ok|FAILED|ignored)(, .*)?$")
SUMMARY = re.compile(r"^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored;")
SKIP_NAMED = re.compile(r"^SKIPPED (\S+): (.*)$")
SKIP_PLAIN = re.compile(r"^skipped: (.*)$")


def parse(text):
    """Each test's result and skip reasons, and libtest's summed summary (None if absent)."""
    tests = {}  # name -> {"result": ok|FAILED|ignored|None, "skips": [reason]}
    order = []
    current = None
    summary = None

    def test(name):
        if name not in tests:
            tests[name] = {"result": None, "skips": []}
            order.append(name)
        return tests[name]

    def named(short):
        """The test a SKIPPED line names: its full name, or the one running that ends with it."""
        if short in tests or current is None:
            return short
        return current if current == short or current.endswith("::" + short) else short

    for raw in text.splitlines():
        line = raw.rstrip("\r")
        m = START.match(line)
        if m:
            current = m.group(1)
            test(current)
            line = m.group(2)
            if not line:
                continue
        m = SUMMARY.match(line)
        if m:
            summary = [a + int(b) for a, b in zip(summary or [0, 0, 0], m.groups())]
            current = None
            continue
        m = RESULT.match(line.strip())
        if m and current is not None:
            test(current)["result"] = m.group(1)
            current = None
            continue
        m = SKIP_NAMED.match(line.strip())
        if m:
            test(named(m.group(1)))["skips"].append(m.group(2))
            continue
        m = SKIP_PLAIN.match(line.strip())
        if m and current is not None:
            test(current)["skips"].append(m.group(1))
    return [(n, tests[n]) for n in order], summary


def gpu_here():
    """(whether this machine has an NVIDIA GPU, how that was seen)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
        if any(line.startswith("GPU ") for line in out.splitlines()):
            return True, "nvidia-smi -L"
    except (OSError, subprocess.SubprocessError):
        pass
    if os.path.exists("/dev/nvidia0"):
        return True, "/dev/nvidia0"
    return False, "neither nvidia-smi -L nor /dev/nvidia0"


def report(text, rc, gpu):
    tests, summary = parse(text)
    r = {"exit": rc, "gpu_present": gpu[0], "gpu_seen_by": gpu[1],
         "passed": [], "failed": [], "skipped": [], "ignored": [], "unfinished": [],
         "skipped_with_a_gpu": [], "problems": []}
    for name, t in tests:
        if t["result"] is None:
            r["unfinished"].append(name)
        elif t["result"] == "FAILED":
            r["failed"].append(name)
        elif t["result"] == "ignored":
            r["ignored"].append(name)
        elif t["skips"]:
            r["skipped"].append({"name": name, "reason": "; ".join(t["skips"])})
            if gpu[0] and name.rsplit("::", 1)[-1] not in EXPECTED_WITH_A_GPU:
                r["skipped_with_a_gpu"].append(name)
        else:
            r["passed"].append(name)
    r["counts"] = {k: len(r[k]) for k in ("passed", "failed", "skipped", "ignored", "unfinished")}
    c = r["counts"]
    if c["failed"]:
        r["problems"].append(f"{c['failed']} test(s) failed")
    if c["unfinished"]:
        r["problems"].append(f"never finished (the binary died or timed out): {', '.join(r['unfinished'])}")
    if r["skipped_with_a_gpu"]:
        r["problems"].append(f"skipped on a machine with a GPU ({gpu[1]}): {', '.join(r['skipped_with_a_gpu'])}")
    if not tests:
        r["problems"].append("no test ran")
    if summary is None:
        r["problems"].append("no libtest summary line: the run did not finish")
    elif summary != [c["passed"] + c["skipped"], c["failed"], c["ignored"]]:
        r["problems"].append(f"libtest's summary (passed, failed, ignored) {summary} disagrees with the lines read "
                             f"{[c['passed'] + c['skipped'], c['failed'], c['ignored']]}: run with --test-threads=1")
    if rc != 0:
        r["problems"].append(f"the test binary exited {rc}")
    r["ok"] = not r["problems"]
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("log")
    p.add_argument("--exit", type=int, required=True, help="the test binary's exit status")
    p.add_argument("--gpu", choices=["auto", "yes", "no"], default="auto")
    p.add_argument("--json")
    a = p.parse_args()
    with open(a.log, encoding="utf-8", errors="replace") as f:
        text = f.read()
    gpu = gpu_here() if a.gpu == "auto" else (a.gpu == "yes", "--gpu " + a.gpu)
    r = report(text, a.exit, gpu)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    c = r["counts"]
    print(f"tests: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped, {c['ignored']} ignored"
          + (f", {c['unfinished']} unfinished" if c["unfinished"] else "")
          + f" (GPU here: {'yes' if gpu[0] else 'no'}, {gpu[1]})")
    for name in r["failed"]:
        print(f"  FAILED  {name}")
    for s in r["skipped"]:
        print(f"  SKIPPED {s['name']}: {s['reason']}")
    for problem in r["problems"]:
        print(f"  PROBLEM {problem}")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
