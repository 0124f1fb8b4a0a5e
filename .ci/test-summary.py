#!/usr/bin/env python3
"""Sums up what CI's test runs did: tests passed, failed and ignored (from cargo test's output),
and every skip with its reason (from the log zerohop_testkit::skip writes, ZEROHOP_SKIP_LOG).

Usage: test-summary.py TEST_OUTPUT SKIP_LOG
Exits 1 when a skip is not on .ci/expected-skips (the tests refuse those themselves in CI; this
is the second look), or when no test ran at all.
"""
import collections
import os
import re
import sys

RESULT = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
SKIP = re.compile(r"^SKIPPED (\S+): (.*?)(?: \((.*)\))?$")


def expected():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected-skips")
    with open(path) as f:
        return {l.strip() for l in f if l.strip() and not l.startswith("#")}


def main(output, skip_log):
    passed = failed = ignored = binaries = 0
    with open(output, errors="replace") as f:
        for line in f:
            m = RESULT.match(line.strip())
            if m:
                binaries += 1
                passed += int(m[1])
                failed += int(m[2])
                ignored += int(m[3])
    skips = []
    with open(skip_log, errors="replace") as f:
        for line in f:
            m = SKIP.match(line.rstrip("\n"))
            if m:
                skips.append((m[1], m[2], m[3] or ""))
    # A skipped test returned early yet libtest counts it as passed: take it out of "ran".
    skipped_tests = {t for t, _, _ in skips}
    print(f"tests: {passed - len(skipped_tests)} ran and passed, {len(skipped_tests)} skipped (counted "
          f"passed by libtest), {failed} failed, {ignored} ignored, in {binaries} test binaries")
    by_reason = collections.defaultdict(list)
    for test, missing, detail in skips:
        by_reason[missing].append((test, detail))
    ok = set(expected())
    bad = False
    for missing, tests in sorted(by_reason.items()):
        verdict = "expected" if missing in ok else "NOT EXPECTED"
        bad |= missing not in ok
        print(f"  skipped, {missing} ({verdict}): {len(tests)}")
        for test, detail in tests:
            print(f"    {test}" + (f": {detail}" if detail else ""))
    if binaries == 0:
        print("no test ran", file=sys.stderr)
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
