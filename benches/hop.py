"""What the orchestrator -> transcoder hop costs: split mode against combined, over real links.

Network namespaces on this machine, as in tests/netns.rs: a router `r` (ip_forward), the
orchestrator `o` 10.77.1.2, a transcoder `t` 10.77.2.2 behind the router's NAT (MASQUERADE; only
replies routed in), a broadcaster `b` 10.77.3.2. `b` pushes N consecutive MPEG-TS segments of one
stream (one `zerohop push`) to `o`:
  combined: `o` runs `zerohop combined` and transcodes itself (no hop);
  split:    `o` runs `zerohop orchestrator`, `t` dials out to it and transcodes; the O<->T path
            is rate-limited both ways (tc tbf on r's link towards t and on t's own link) at
            factor x the segment's bitrate.
Uploads are `full` (as fast as the link allows) or `paced` (real time, in 10 ms pieces). Per row:
TTFB/TTLB of split, combined's TTLB, and a bound a streamed hop should approach (see the header).
With ZEROHOP_HOP_LOG support in the binary, each process logs hop events (JSON lines) and one
split segment's timeline is printed. Nothing about time is asserted: exit 1 only if a push failed
or a process died; exit 0 with "skipped: ..." where root, iproute2, tc, iptables or the binary
is missing.

    sudo python3 benches/hop.py [--smallest] [--factors 1.2,1.5,2,4] [--segments 10]
        [--uploads full,paced] [--input FILE ...] [--duration 2.0] [--json FILE] [--bin PATH]
"""
import argparse, atexit, glob, json, math, os, re, shutil, signal, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "h264_1080p30_high_bframes_aac.ts")
ORCH, SECRET = "10.77.1.2", "hop-bench-shared-secret"
METRICS = f"http://{ORCH}:9935/metrics"
PUSH_LINE = re.compile(r"^\[(\d+)\] .*: TTFB ([\d.]+) ms, TTLB ([\d.]+) ms")
TIMELINE = [("push", "upload_end"), ("o", "upload_last"), ("o", "task_input_last"), ("t", "input_first"),
            ("t", "input_last"), ("t", "result_first"), ("t", "result_last"), ("o", "result_first"),
            ("o", "result_last"), ("o", "answer_last"), ("push", "result_first"), ("push", "result_last")]
BOUND = ("bound = on_link + tail + results_tail, where on_link = seg_bytes*8/link (paced: max(duration, that)),\n"
         "  tail = combined TTLB - combined upload time (push upload_end - upload_start; else 0 full, duration paced),\n"
         "  results_tail = (rendition bytes of the segment * tail / duration) * 8 / link")


def sh(*cmd, check=True):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p


def prerequisite_missing(binary):
    """Why this cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_NET_ADMIN)"
    for tool in ("ip", "tc", "iptables"):
        if not shutil.which(tool):
            return f"{tool} not installed (Debian: iproute2, iptables)"
    if not os.access(binary, os.X_OK):
        return f"no binary at {binary} (cargo build --release)"
    probe = f"zhbprobe{os.getpid()}"
    if sh("ip", "netns", "add", probe, check=False).returncode != 0:
        return "`ip netns add` failed"
    try:
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1mbit", "burst", "64kbit", "latency", "400ms"],
                    ["iptables", "-t", "nat", "-L", "POSTROUTING", "-n"]):
            if sh("ip", "netns", "exec", probe, *cmd, check=False).returncode != 0:
                return f"`{' '.join(cmd)}` fails in a namespace"
    finally:
        sh("ip", "netns", "del", probe, check=False)
    return None


class Net:
    """Router, hosts and the processes in them; cleanup() undoes all of it (idempotent)."""

    def __init__(self, binary, workdir):
        self.p, self.bin, self.dir = f"zhb{os.getpid() % 10000}", binary, workdir
        self.hosts, self.procs = [], []
        self.add_ns("r")
        sh("ip", "netns", "exec", self.ns("r"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for h, i, nat in (("o", 1, False), ("t", 2, True), ("b", 3, False)):
            self.add_host(h, i, nat)

    def ns(self, h):
        return self.p + h

    def add_ns(self, h):
        sh("ip", "netns", "add", self.ns(h))
        self.hosts.append(h)
        sh("ip", "-n", self.ns(h), "link", "set", "lo", "up")

    def add_host(self, h, i, nat):
        self.add_ns(h)
        hi, ri, net = f"{self.p}{h}0", f"{self.p}r{i}", f"10.77.{i}.0/24"
        sh("ip", "link", "add", hi, "type", "veth", "peer", "name", ri)
        sh("ip", "link", "set", hi, "netns", self.ns(h))
        sh("ip", "link", "set", ri, "netns", self.ns("r"))
        sh("ip", "-n", self.ns(h), "addr", "add", f"10.77.{i}.2/24", "dev", hi)
        sh("ip", "-n", self.ns("r"), "addr", "add", f"10.77.{i}.1/24", "dev", ri)
        sh("ip", "-n", self.ns(h), "link", "set", hi, "up")
        sh("ip", "-n", self.ns("r"), "link", "set", ri, "up")
        sh("ip", "-n", self.ns(h), "route", "add", "default", "via", f"10.77.{i}.1")
        if nat:
            r = ["ip", "netns", "exec", self.ns("r"), "iptables"]
            sh(*r, "-t", "nat", "-A", "POSTROUTING", "-s", net, "!", "-d", net, "-j", "MASQUERADE")
            sh(*r, "-A", "FORWARD", "-d", net, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
            sh(*r, "-A", "FORWARD", "-d", net, "-j", "DROP")

    def limit(self, rate):
        """tbf at `rate` bit/s on both directions of O<->T (None: no limit)."""
        for h, ifc in (("r", f"{self.p}r2"), ("t", f"{self.p}t0")):
            tc = ["ip", "netns", "exec", self.ns(h), "tc", "qdisc"]
            sh(*tc, "del", "dev", ifc, "root", check=False)
            if rate:
                sh(*tc, "add", "dev", ifc, "root", "tbf", "rate", f"{int(rate)}bit", "burst", "64kbit", "latency", "400ms")

    def cmd(self, h, args, log, hop_log):
        env = dict(os.environ, NO_COLOR="1", ZEROHOP_HOP_LOG=hop_log)
        return ["ip", "netns", "exec", self.ns(h), self.bin, *args], env, log

    def spawn(self, h, args, log, hop_log):
        argv, env, log = self.cmd(h, args, log, hop_log)
        with open(log, "w") as err:
            proc = subprocess.Popen(argv, env=env, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=err)
        self.procs.append(proc)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def metric(self, url, name):
        script = "import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1],timeout=3).read().decode())"
        p = sh("ip", "netns", "exec", self.ns("o"), sys.executable, "-c", script, url, check=False)
        for line in p.stdout.splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
                return float(line.split()[-1])
        return None

    def cleanup(self):
        while self.procs:
            self.stop(self.procs.pop())
        while self.hosts:
            sh("ip", "netns", "del", self.ns(self.hosts.pop()), check=False)


class Died(Exception):
    pass


def wait_for(proc, log, what, within=30):
    t0 = time.time()
    while True:
        text = open(log, errors="replace").read()
        if what in text:
            return text
        if proc.poll() is not None or time.time() - t0 > within:
            raise Died(f"{what!r} not in {log} (exit {proc.poll()}):\n{text[-2000:]}")
        time.sleep(0.1)


def start_node(net, mode, run):
    """`zerohop combined|orchestrator` on o; its process and certificate fingerprint."""
    secret = os.path.join(net.dir, "secret")
    args = [mode, "--service-addr", f"{ORCH}:8935", "--metrics-addr", f"{ORCH}:9935",
            "--data-dir", os.path.join(net.dir, "o-data"), "--orch-secret-file", secret]
    log = os.path.join(run, f"o-{mode}.log")
    proc = net.spawn("o", args, log, os.path.join(run, "o.hop.jsonl"))
    text = wait_for(proc, log, "serving on")
    at = text.index("certificate SHA-256: ") + len("certificate SHA-256: ")
    return proc, text[at:at + 64]


def start_transcoder(net, fp, run):
    args = ["transcoder", "--orch-secret-file", os.path.join(net.dir, "secret"), "--transcoder-id", "t1",
            "--orch-cert-sha256", fp, "--orch-addr", f"{ORCH}:8935", "--max-sessions", "2",
            "--metrics-addr", "127.0.0.1:9936"]
    proc = net.spawn("t", args, os.path.join(run, "t-transcoder.log"), os.path.join(run, "t.hop.jsonl"))
    t0 = time.time()
    while net.metric(METRICS, "zerohop_transcoders_connected") != 1.0:
        if proc.poll() is not None or time.time() - t0 > 30:
            raise Died(f"transcoder not connected within 30 s (exit {proc.poll()}); log in {run}")
        time.sleep(0.2)
    time.sleep(1.0)  # let the link settle through the rate limit before the first push
    return proc


def push(net, fp, stream, files, pace, run, timeout):
    """One `zerohop push` of `files` from b; ({seq: (ttfb_s, ttlb_s)}, ok, output dir)."""
    out = os.path.join(run, "out")
    args = ["push", "--orch", f"{ORCH}:8935", "--stream", stream, "--orch-cert-sha256", fp, "-o", out]
    args += ["--pace", str(pace)] if pace else []
    argv, env, _ = net.cmd("b", args + list(files), None, os.path.join(run, "push.hop.jsonl"))
    try:
        p = subprocess.run(argv, env=env, cwd=net.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
        err, rc = p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        err, rc = e.stderr or "", f"timeout after {timeout} s"
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
    with open(os.path.join(run, "push.log"), "w") as f:
        f.write(err)
    rows = {int(m[1]): (float(m[2]) / 1e3, float(m[3]) / 1e3) for m in map(PUSH_LINE.match, err.splitlines()) if m}
    ok = rc == 0 and len(rows) == len(files)
    if not ok:
        print(f"  push FAILED (exit {rc}), {len(rows)} of {len(files)} segments; see {run}/push.log:\n"
              + "\n".join("    " + l for l in err.splitlines()[-8:]))
    return rows, ok, out


def read_hops(path):
    """{role: {seq: {event: [t, ...]}}} from a hop log; {} where the binary wrote none."""
    hops = {}
    if not os.path.exists(path):
        return hops
    for line in open(path, errors="replace"):
        try:
            e = json.loads(line)
            hops.setdefault(e["role"], {}).setdefault(int(e["seq"]), {}).setdefault(e["event"], []).append(float(e["t"]))
        except (ValueError, KeyError, TypeError):
            continue
    return hops


def event(hops, role, seq, name):
    """The event's time: the earliest for *_first/*_start, the latest otherwise; None if absent."""
    ts = [t for r in ([role] if role else hops) for t in hops.get(r, {}).get(seq, {}).get(name, [])]
    return (min if name.endswith(("_first", "_start")) else max)(ts) if ts else None


def pct(v, q):
    v = sorted(v)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def duration_of(path, default):
    if shutil.which("ffprobe"):
        p = sh("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path, check=False)
        try:
            return float(p.stdout.strip())
        except ValueError:
            pass
    return default


def default_input(workdir):
    if not shutil.which("ffmpeg"):
        return FIXTURE
    out = os.path.join(workdir, "seg-13mbit-1080p30.ts")
    p = sh("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2", "-c:v", "libx264",
           "-preset", "veryfast", "-profile:v", "high", "-bf", "3", "-x264-params", "b-adapt=0", "-b:v", "13M",
           "-maxrate", "13M", "-bufsize", "6M", "-g", "60", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
           "-f", "mpegts", out, check=False)
    return out if p.returncode == 0 else FIXTURE


class Runner:
    """The runs of one benchmark: each a fresh node (and transcoder) on the same namespaces."""

    def __init__(self, net, files, durations, measured):
        self.net, self.files, self.durations, self.measured = net, files, durations, measured
        self.failed = False

    def run(self, name, mode, rate, pace):
        run = os.path.join(self.net.dir, name)
        os.makedirs(run)
        self.net.limit(rate)
        procs = []
        try:
            node, fp = start_node(self.net, mode, run)
            procs.append(node)
            if mode == "orchestrator":
                procs.append(start_transcoder(self.net, fp, run))
            timeout = 60 + 20 * len(self.files)
            rows, ok, out = push(self.net, fp, name, self.files, pace, run, timeout)
            dead = [p.args[5] for p in procs if p.poll() is not None]
            if dead:
                print(f"  process died during {name}: {dead}; logs in {run}")
            self.failed |= not ok or bool(dead)
        except Died as e:
            print(f"  {name}: {e}")
            self.failed, rows, out = True, {}, os.path.join(run, "out")
        finally:
            for p in procs:
                self.net.stop(p)
        hops = {"push": read_hops(os.path.join(run, "push.hop.jsonl")).get("push", {})}
        for h in ("o", "t"):
            for role, segs in read_hops(os.path.join(run, f"{h}.hop.jsonl")).items():
                hops.setdefault(h, {}).update(segs)
        outputs = {s: sum(os.path.getsize(f) for f in glob.glob(os.path.join(out, f"{name}_{s}_*.ts")))
                   for s in range(len(self.files))}
        return {"rows": rows, "hops": hops, "outputs": outputs}

    def upload_time(self, result, seq, paced):
        a, b = event(result["hops"], "push", seq, "upload_start"), event(result["hops"], "push", seq, "upload_end")
        return b - a if a is not None and b is not None else (self.durations[seq] if paced else 0.0)

    def bound(self, comb, seq, rate, paced):
        """The row's bound for segment `seq` (see BOUND), or None without combined's numbers."""
        if seq not in comb["rows"]:
            return None
        dur, seg_bytes = self.durations[seq], os.path.getsize(self.files[seq])
        on_link = seg_bytes * 8 / rate
        on_link = max(dur, on_link) if paced else on_link
        tail = max(0.0, comb["rows"][seq][1] - self.upload_time(comb, seq, paced))
        return on_link + tail + comb["outputs"][seq] * tail / dur * 8 / rate

    def summary(self, result, comb=None, rate=None, paced=False):
        seqs = [s for s in self.measured if s in result["rows"]]
        ttfb, ttlb = [result["rows"][s][0] for s in seqs], [result["rows"][s][1] for s in seqs]
        out = {"segments": seqs, "ttfb_p50": pct(ttfb, .5), "ttlb_p50": pct(ttlb, .5), "ttlb_p90": pct(ttlb, .9)}
        if comb is not None:
            bounds = [b for b in (self.bound(comb, s, rate, paced) for s in seqs) if b is not None]
            out["bound_p50"] = pct(bounds, .5)
        return out


def timeline(result, seq):
    hops, t0 = result["hops"], event(result["hops"], "push", seq, "upload_start")
    if t0 is None:
        return None
    return {f"{role} {name}": round((t - t0) * 1e3, 1)
            for role, name in TIMELINE if (t := event(hops, role, seq, name)) is not None}


def finite(v):
    """`v` with NaN as null (strict JSON)."""
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [finite(x) for x in v]
    return None if isinstance(v, float) and math.isnan(v) else v


def ms(s):
    return "     -" if s is None or math.isnan(s) else f"{s * 1e3:6.0f}"


def ratio(a, b):
    return "    -" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:5.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", action="append", help="MPEG-TS segment (repeatable)")
    ap.add_argument("--duration", type=float, default=2.0, help="segment duration without ffprobe")
    ap.add_argument("--factors", default="1.2,1.5,2,4")
    ap.add_argument("--segments", type=int, default=10)
    ap.add_argument("--uploads", default="full,paced")
    ap.add_argument("--smallest", action="store_true", help="CI size: 1.5x, 2 segments, full upload")
    ap.add_argument("--json", help="write rows and the timeline here")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "zerohop"))
    ap.add_argument("--keep", action="store_true", help="keep the logs and outputs")
    a = ap.parse_args()
    factors, uploads, n = [float(f) for f in a.factors.split(",")], a.uploads.split(","), a.segments
    if a.smallest:
        factors, uploads, n = [1.5], ["full"], 2
    if bad := [u for u in uploads if u not in ("full", "paced")]:
        ap.error(f"unknown upload kind {bad}")
    why = prerequisite_missing(a.bin)
    if why:
        print(f"skipped: {why}")
        return 0

    workdir = tempfile.mkdtemp(prefix="zerohop-hop-")
    net = None

    def cleanup():
        if net:
            net.cleanup()

    atexit.register(cleanup)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    ok = False
    try:
        inputs = [os.path.abspath(f) for f in a.input] if a.input else [default_input(workdir)]
        files = [inputs[i % len(inputs)] for i in range(n)]
        durations = [duration_of(f, a.duration) for f in files]
        mbit = sum(os.path.getsize(f) for f in inputs) * 8 / sum(duration_of(f, a.duration) for f in inputs) / 1e6
        measured = list(range(1, n)) if n >= 4 else list(range(n))
        print(f"input: {', '.join(map(os.path.basename, inputs))}: {mbit:.2f} Mbit/s, {durations[0]:.2f} s; "
              f"{n} segments per push (one stream, one connection); binary {a.bin}")
        print("medians over segments " + ("1.. (segment 0 is warm-up)" if n >= 4 else "all (fewer than 4: no warm-up skipped)"))
        print(BOUND)
        net = Net(a.bin, workdir)
        with open(os.path.join(workdir, "secret"), "w") as f:
            f.write(SECRET + "\n")
        runner = Runner(net, files, durations, measured)
        report, rows, tl = {"input_mbit": mbit, "segments": n, "factors": factors, "combined": {}}, [], None
        for kind in uploads:
            paced = kind == "paced"
            pace = math.ceil(max(os.path.getsize(f) for f in inputs) / (durations[0] * 100)) if paced else 0
            comb = runner.run(f"c-{kind}", "combined", None, pace)
            cs = runner.summary(comb)
            report["combined"][kind] = cs
            tails = [comb["rows"][s][1] - runner.upload_time(comb, s, paced) for s in measured if s in comb["rows"]]
            print(f"\n{kind} upload{f' (--pace {pace})' if pace else ''}: combined TTFB p50 {ms(cs['ttfb_p50'])} ms, "
                  f"TTLB p50 {ms(cs['ttlb_p50'])} ms, tail p50 {ms(pct(tails, .5))} ms")
            print("  upload factor   link Mbit/s  TTFB p50  TTLB p50  TTLB p90  comb TTLB  split/comb  bound  split/bound")
            for i, factor in enumerate(factors):
                rate = factor * mbit * 1e6
                split = runner.run(f"s-{kind}-{i}", "orchestrator", rate, pace)
                s = runner.summary(split, comb, rate, paced)
                row = {"upload": kind, "factor": factor, "link_mbit": rate / 1e6, **s, "combined_ttlb_p50": cs["ttlb_p50"]}
                rows.append(row)
                print(f"  {kind:<6} {factor:5.2f}x {rate / 1e6:11.2f}  {ms(s['ttfb_p50'])} ms {ms(s['ttlb_p50'])} ms"
                      f" {ms(s['ttlb_p90'])} ms  {ms(cs['ttlb_p50'])} ms      {ratio(s['ttlb_p50'], cs['ttlb_p50'])}"
                      f" {ms(s['bound_p50'])} ms  {ratio(s['ttlb_p50'], s['bound_p50'])}")
                if tl is None and kind == uploads[0] and factor == min(factors, key=lambda f: abs(f - 1.5)):
                    by_ttlb = sorted((split["rows"][q][1], q) for q in s["segments"])
                    if by_ttlb:
                        seq = by_ttlb[(len(by_ttlb) - 1) // 2][1]
                        tl = {"upload": kind, "factor": factor, "seq": seq, "events_ms": timeline(split, seq)}
        print()
        if tl and tl["events_ms"]:
            print(f"timeline of split segment {tl['seq']} ({tl['upload']}, {tl['factor']}x; median TTLB), "
                  "ms from the push's upload_start:")
            for k, v in tl["events_ms"].items():
                print(f"  {k:<22} {v:9.1f}")
        else:
            print("timeline unavailable: the binary wrote no hop events (ZEROHOP_HOP_LOG)")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(finite({**report, "rows": rows, "timeline": tl}), f, indent=2)
        ok = not runner.failed
    finally:
        cleanup()
        if ok and not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
