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
            ("t", "input_last"), ("t", "engine_input_last"), ("t", "engine_chunk_first"),
            ("t", "engine_decoded_last"), ("t", "engine_chunk_last"), ("t", "result_first"), ("t", "result_last"), ("o", "result_first"),
            ("o", "result_last"), ("o", "answer_last"), ("push", "result_first"), ("push", "result_last")]
BOUND = ("bound = max(on_link + edge_tail, first_on_link + engine) + results_tail: what a streamed hop cannot\n"
         "beat, where on_link = seg_bytes*8/link (paced: max(duration, that)): the input cannot reach t sooner;\n"
         "  edge_tail = combined's tail after its last input byte with a paced upload (measured when\n"
         "         paced runs first; else 100 ms, the live-edge goal): t's engine after its last input byte;\n"
         "  first_on_link = the first picture's bytes*8/link (paced: 0, combined waits for them too);\n"
         "  engine = combined TTLB - combined upload time: t's engine cannot be faster once it starts;\n"
         "  results_tail = (rendition bytes of the segment * edge_tail / duration) * 8 / link: what is\n"
         "         made after the last input byte still has to cross back")


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
        tbf = ["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1mbit", "burst", "64kbit", "latency", "400ms"]
        for cmd in (["ip", "link", "set", "lo", "up"], tbf, ["iptables", "-t", "nat", "-L", "POSTROUTING", "-n"]):
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
                sh(*tc, "add", "dev", ifc, "root", "tbf", "rate", f"{int(rate)}bit", "burst", "64kbit",
                   "latency", "400ms")

    def spawn(self, h, args, log, hop_log):
        """`zerohop ARGS` on host `h`, its stderr in `log`, its hop events in `hop_log`."""
        env = dict(os.environ, NO_COLOR="1", ZEROHOP_HOP_LOG=hop_log)
        with open(log, "w") as err:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns(h), self.bin, *args], env=env, cwd=self.dir,
                                    stdout=subprocess.DEVNULL, stderr=err)
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
    log = os.path.join(run, "push.log")
    proc = net.spawn("b", args + list(files), log, os.path.join(run, "push.hop.jsonl"))
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        net.stop(proc)
        rc = f"timeout after {timeout} s"
    err = open(log, errors="replace").read()
    rows = {int(m[1]): (float(m[2]) / 1e3, float(m[3]) / 1e3) for m in map(PUSH_LINE.match, err.splitlines()) if m}
    ok = rc == 0 and len(rows) == len(files)
    if not ok:
        print(f"  push FAILED (exit {rc}), {len(rows)} of {len(files)} segments; see {run}/push.log:\n"
              + "\n".join("    " + l for l in err.splitlines()[-8:]))
    return rows, ok, out


def read_hops(path):
    """{seq: {event: [t, ...]}} from one process's hop log; {} where the binary wrote none."""
    hops = {}
    for line in open(path, errors="replace") if os.path.exists(path) else []:
        try:
            e = json.loads(line)
            hops.setdefault(int(e["seq"]), {}).setdefault(e["event"], []).append(float(e["t"]))
        except (ValueError, KeyError, TypeError):
            continue
    return hops


def event(hops, role, seq, name):
    """When `role` (push, o, t) saw `name` for `seq`: the earliest for *_first/*_start, the latest
    otherwise (several renditions); None if absent."""
    ts = hops.get(role, {}).get(seq, {}).get(name, [])
    return (min if name.endswith(("_first", "_start")) else max)(ts) if ts else None


def pct(v, q):
    """The q-quantile of `v` (linear between ranks); None for no values."""
    v = sorted(v)
    if not v:
        return None
    k = (len(v) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def duration_of(path, default):
    """The segment's duration by ffprobe, else `default`."""
    if not shutil.which("ffprobe"):
        return default
    p = sh("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path, check=False)
    return float(p.stdout) if re.fullmatch(r"\s*[\d.]+\s*", p.stdout) else default


def first_picture_bytes(path):
    """Bytes of the segment up to the end of its first video PES (its first picture): what must
    cross the link before anything can be decoded. Video PES start with a PUSI packet whose
    stream_id is 0xE0-0xEF; the first picture ends where the next one on that PID begins."""
    data, pid = open(path, "rb").read(), None
    for off in range(0, len(data) - 187, 188):
        pkt = data[off:off + 188]
        if pkt[0] != 0x47 or not pkt[1] & 0x40:
            continue
        p = ((pkt[1] & 0x1F) << 8) | pkt[2]
        start = 4 + (pkt[4] + 1 if pkt[3] & 0x20 else 0)
        if start + 4 <= 188 and pkt[start:start + 3] == b"\x00\x00\x01" and 0xE0 <= pkt[start + 3] <= 0xEF:
            if pid is None:
                pid = p
            elif p == pid:
                return off
    return len(data)


def default_input(workdir):
    """A 13.9 Mbit/s 1080p30 High segment with B-frames made by ffmpeg, else the committed fixture."""
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
        self.mbit = sum(map(os.path.getsize, files)) * 8 / sum(durations) / 1e6  # the links' unit
        self.failed = False
        self.edge_tail = 0.1

    def run(self, name, mode, rate, pace):
        """A fresh `mode` node (with a transcoder behind the NAT if split), O<->T at `rate`, one push."""
        run = os.path.join(self.net.dir, name)
        os.makedirs(run)
        self.net.limit(rate)
        procs = []
        try:
            node, fp = start_node(self.net, mode, run)
            procs.append(node)
            if mode == "orchestrator":
                procs.append(start_transcoder(self.net, fp, run))
            rows, ok, out = push(self.net, fp, name, self.files, pace, run, timeout=60 + 20 * len(self.files))
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
        hops = {h: read_hops(os.path.join(run, f"{h}.hop.jsonl")) for h in ("push", "o", "t")}
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
        dur, on_link = self.durations[seq], os.path.getsize(self.files[seq]) * 8 / rate
        on_link = max(dur, on_link) if paced else on_link
        engine = max(0.0, comb["rows"][seq][1] - self.upload_time(comb, seq, paced))
        first = 0.0 if paced else first_picture_bytes(self.files[seq]) * 8 / rate
        edge = self.edge_tail
        return max(on_link + edge, first + engine) + comb["outputs"][seq] * edge / dur * 8 / rate

    def summary(self, result, comb=None, rate=None, paced=False):
        seqs = [s for s in self.measured if s in result["rows"]]
        ttfb, ttlb = [result["rows"][s][0] for s in seqs], [result["rows"][s][1] for s in seqs]
        out = {"segments": seqs, "ttfb_p50": pct(ttfb, .5), "ttlb_p50": pct(ttlb, .5), "ttlb_p90": pct(ttlb, .9)}
        if comb is not None:
            bounds = [b for b in (self.bound(comb, s, rate, paced) for s in seqs) if b is not None]
            out["bound_p50"] = pct(bounds, .5)
        # The engine's live-edge tail where it ran (t in split, o in combined): its last rendition
        # chunk after its last input byte.
        tails = []
        for s in seqs:
            for role in ("t", "o"):
                a, b = event(result["hops"], role, s, "engine_input_last"), event(result["hops"], role, s, "engine_chunk_last")
                if a is not None and b is not None:
                    tails.append(b - a)
        out["engine_tail_p50"] = pct(tails, .5)
        return out


def timeline(result, seq):
    """Each present TIMELINE event of segment `seq`, ms from the push's upload_start."""
    hops, t0 = result["hops"], event(result["hops"], "push", seq, "upload_start")
    if t0 is None:
        return None
    return {f"{role} {name}": round((t - t0) * 1e3, 1)
            for role, name in TIMELINE if (t := event(hops, role, seq, name)) is not None}


def ms(s):
    return "     -" if s is None else f"{s * 1e3:6.0f}"


def ratio(a, b):
    return "    -" if a is None or not b else f"{a / b:5.2f}"


def measure(runner, kind, factors, pace):
    """Combined, then split at each factor, for one upload kind: (combined summary, rows, split results)."""
    paced, durations, measured = kind == "paced", runner.durations, runner.measured
    comb = runner.run(f"c-{kind}", "combined", None, pace)
    cs = runner.summary(comb)
    tails = [comb["rows"][s][1] - runner.upload_time(comb, s, paced) for s in measured if s in comb["rows"]]
    cs["tail_p50"] = pct(tails, .5)
    if paced and cs["tail_p50"] is not None:
        runner.edge_tail = cs["tail_p50"]
    cs["renditions_mbit"] = pct([comb["outputs"][s] * 8 / durations[s] / 1e6 for s in measured], .5)
    print(f"\n{kind} upload{f' (--pace {pace})' if pace else ''}: combined TTFB p50 {ms(cs['ttfb_p50'])} ms, "
          f"TTLB p50 {ms(cs['ttlb_p50'])} ms, tail p50 {ms(cs['tail_p50'])} ms; "
          f"renditions {cs['renditions_mbit'] or 0:.2f} Mbit/s per segment")
    print("  upload factor   link Mbit/s  TTFB p50  TTLB p50  TTLB p90  comb TTLB  split/comb  bound  split/bound  t's engine tail")
    rows, splits = [], []
    for i, factor in enumerate(factors):
        rate = factor * runner.mbit * 1e6
        split = runner.run(f"s-{kind}-{i}", "orchestrator", rate, pace)
        s = runner.summary(split, comb, rate, paced)
        rows.append({"upload": kind, "factor": factor, "link_mbit": rate / 1e6, **s,
                     "combined_ttlb_p50": cs["ttlb_p50"]})
        splits.append(split)
        print(f"  {kind:<6} {factor:5.2f}x {rate / 1e6:11.2f}  {ms(s['ttfb_p50'])} ms {ms(s['ttlb_p50'])} ms"
              f" {ms(s['ttlb_p90'])} ms  {ms(cs['ttlb_p50'])} ms      {ratio(s['ttlb_p50'], cs['ttlb_p50'])}"
              f" {ms(s['bound_p50'])} ms  {ratio(s['ttlb_p50'], s['bound_p50'])}   {ms(s['engine_tail_p50'])} ms")
    return cs, rows, splits


def pick_timeline(rows, splits):
    """The timeline of the median-TTLB segment of the row nearest 1.5x."""
    i = min(range(len(rows)), key=lambda i: abs(rows[i]["factor"] - 1.5))
    by_ttlb = sorted((splits[i]["rows"][q][1], q) for q in rows[i]["segments"])
    if not by_ttlb:
        return None
    seq = by_ttlb[(len(by_ttlb) - 1) // 2][1]
    return {"upload": rows[i]["upload"], "factor": rows[i]["factor"], "seq": seq, "events_ms": timeline(splits[i], seq)}


def print_timeline(tl):
    if not tl or not tl["events_ms"]:
        print("\ntimeline unavailable: the binary wrote no hop events (ZEROHOP_HOP_LOG)")
        return
    print(f"\ntimeline of split segment {tl['seq']} ({tl['upload']}, {tl['factor']}x; median TTLB), "
          "ms from the push's upload_start:")
    for k, v in tl["events_ms"].items():
        print(f"  {k:<22} {v:9.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", action="append", help="MPEG-TS segment (repeatable; cycled over the segments)")
    ap.add_argument("--duration", type=float, default=2.0, help="segment duration without ffprobe")
    ap.add_argument("--factors", default="1.2,1.5,2,4")
    ap.add_argument("--segments", type=int, default=10)
    ap.add_argument("--uploads", default="full,paced")
    ap.add_argument("--require-events", action="store_true",
                    help="fail (exit 1) when the timeline lacks an event: a process wrote no hop event")
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
    a.bin = os.path.abspath(a.bin)
    why = prerequisite_missing(a.bin)
    if why:
        print(f"skipped: {why}")
        return 0

    workdir, net, ok = tempfile.mkdtemp(prefix="zerohop-hop-"), None, False
    atexit.register(lambda: net and net.cleanup())
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    try:
        inputs = [os.path.abspath(f) for f in a.input] if a.input else [default_input(workdir)]
        files = [inputs[i % len(inputs)] for i in range(n)]
        durations = [duration_of(f, a.duration) for f in files]
        measured = list(range(1, n)) if n >= 4 else list(range(n))
        net = Net(a.bin, workdir)
        with open(os.path.join(workdir, "secret"), "w") as f:
            f.write(SECRET + "\n")
        runner = Runner(net, files, durations, measured)
        print(f"input: {', '.join(map(os.path.basename, inputs))}: {runner.mbit:.2f} Mbit/s, {durations[0]:.2f} s; "
              f"{n} segments per push (one stream, one connection); binary {a.bin}")
        print("medians over segments", "1.. (segment 0 is warm-up)" if n >= 4 else "all (fewer than 4: none skipped)")
        print(BOUND)
        report, rows, splits = {"input_mbit": runner.mbit, "segments": n, "combined": {}}, [], []
        # Paced first: its combined tail is the edge_tail of every row's bound.
        for kind in sorted(uploads, key=lambda k: k != "paced"):
            pace = math.ceil(max(map(os.path.getsize, inputs)) / (durations[0] * 100)) if kind == "paced" else 0
            report["combined"][kind], r, s = measure(runner, kind, factors, pace)
            rows += r
            splits += s
        # The timeline of a full-speed upload where there is one: there the hop has the most to hide.
        kind = "full" if "full" in uploads else uploads[0]
        pick = [i for i, r in enumerate(rows) if r["upload"] == kind]
        tl = pick_timeline([rows[i] for i in pick], [splits[i] for i in pick])
        print_timeline(tl)
        missing = [f"{r} {e}" for r, e in TIMELINE if f"{r} {e}" not in ((tl or {}).get("events_ms") or {})]
        if a.require_events and missing:
            print(f"hop events missing from the timeline: {', '.join(missing)}")
            runner.failed = True
        if a.json:
            with open(a.json, "w") as f:
                json.dump({**report, "rows": rows, "timeline": tl}, f, indent=2)
        ok = not runner.failed
    finally:
        if net:
            net.cleanup()
        if ok and not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
