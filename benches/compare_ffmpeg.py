#!/usr/bin/env python3
"""zerohop's CPU backend side by side with ffmpeg/libx264 on the same input and ladder.

For each contender: wall time (median of --runs), the ratio zerohop/ffmpeg, and per rendition
the luma PSNR and SSIM against a common reference (the source scaled by ffmpeg's bicubic
scaler) at equal target bitrate. Threads are matched to the machine (2 here).

Usage: benches/compare_ffmpeg.py [--input SEG.ts] [--runs N] [--json OUT.json]
Skips (exit 0, with a message) where ffmpeg is not installed.
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LADDER = [("720p", 1280, 720, 3000), ("480p", 854, 480, 1600), ("360p", 640, 360, 800)]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def timed(cmd, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run(cmd)
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def quality(out, src, w, h):
    """Luma PSNR and SSIM of `out` against the source scaled to w x h by ffmpeg (bicubic)."""
    graph = f"[1:v]setpts=PTS-STARTPTS,scale={w}:{h}:flags=bicubic[ref];[0:v]setpts=PTS-STARTPTS,split[a][b];[ref]split[r1][r2];[a][r1]psnr;[b][r2]ssim"
    p = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", out, "-i", src, "-lavfi", graph, "-f", "null", "-"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    psnr = re.search(r"PSNR y:([\d.inf]+)", p.stderr)
    ssim = re.search(r"SSIM Y:([\d.]+)", p.stderr)
    return (float(psnr.group(1)) if psnr else float("nan"), float(ssim.group(1)) if ssim else float("nan"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", default=os.path.join(ROOT, "tests/fixtures/h264_1080p30_high_bframes_aac.ts"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--zerohop", default=os.path.join(ROOT, "target/release/zerohop"))
    args = ap.parse_args()
    if not shutil.which("ffmpeg"):
        print("SKIPPED compare_ffmpeg: ffmpeg is not on PATH (apt-get install ffmpeg)")
        return 0
    if not os.path.exists(args.zerohop):
        run(["cargo", "build", "--release", "--quiet"], cwd=ROOT)
    threads = os.cpu_count() or 1
    tmp = tempfile.mkdtemp(prefix="zerohop-cmp-")
    ladder_json = json.dumps([{"name": n, "width": w, "height": h, "bitrate": k * 1000, "gop": 1} for n, w, h, k in LADDER])
    results = {"input": args.input, "threads": threads, "runs": args.runs, "contenders": {}}

    zdir = os.path.join(tmp, "zerohop")
    zcmd = [args.zerohop, "transcode", args.input, "-p", ladder_json, "-o", zdir]
    run(zcmd)  # warm the page cache
    med, all_t = timed(zcmd, args.runs)
    stem = os.path.splitext(os.path.basename(args.input))[0]
    outs = {n: os.path.join(zdir, f"{stem}_{n}.ts") for n, *_ in LADDER}
    results["contenders"]["zerohop"] = {"wall_s": med, "all_s": all_t, "outputs": outs}

    for preset in ["ultrafast", "superfast", "veryfast"]:
        fdir = os.path.join(tmp, preset)
        os.makedirs(fdir, exist_ok=True)
        split = f"[0:v]split={len(LADDER)}" + "".join(f"[s{i}]" for i in range(len(LADDER)))
        scales = ";".join(f"[s{i}]scale={w}:{h}:flags=bicubic[o{i}]" for i, (_, w, h, _) in enumerate(LADDER))
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-threads", str(threads), "-i", args.input,
               "-filter_complex", f"{split};{scales}"]
        fouts = {}
        for i, (n, w, h, k) in enumerate(LADDER):
            path = os.path.join(fdir, f"{n}.ts")
            fouts[n] = path
            cmd += ["-map", f"[o{i}]", "-map", "0:a?", "-c:a", "copy", "-c:v", "libx264", "-preset", preset,
                    "-tune", "zerolatency", "-threads", str(threads), "-b:v", f"{k}k", "-maxrate", f"{k}k",
                    "-bufsize", f"{k}k", "-g", "30", "-bf", "0", path]
        run(cmd)
        med, all_t = timed(cmd, args.runs)
        results["contenders"][f"ffmpeg-{preset}"] = {"wall_s": med, "all_s": all_t, "outputs": fouts}

    probe = json.loads(run(["ffprobe", "-v", "error", "-show_format", "-of", "json", args.input]).stdout)
    duration = float(probe["format"]["duration"])
    results["media_s"] = duration
    zt = results["contenders"]["zerohop"]["wall_s"]
    print(f"input {os.path.basename(args.input)}: {duration:.2f} s, ladder "
          + ", ".join(f"{n} {k} kbps" for n, _, _, k in LADDER) + f"; {threads} threads; median of {args.runs} runs\n")
    print(f"{'contender':<20} {'wall s':>7} {'RT ratio':>8} {'zerohop/it':>10}  " + "  ".join(f"{n:>22}" for n, *_ in LADDER))
    print(f"{'':<20} {'':>7} {'':>8} {'':>10}  " + "  ".join(f"{'PSNR-Y  SSIM   kbps':>22}" for _ in LADDER))
    for name, c in results["contenders"].items():
        c["renditions"] = {}
        cells = []
        for n, w, h, k in LADDER:
            p, s = quality(c["outputs"][n], args.input, w, h)
            kbps = os.path.getsize(c["outputs"][n]) * 8 / duration / 1000
            c["renditions"][n] = {"psnr_y": p, "ssim_y": s, "file_kbps": kbps}
            cells.append(f"{p:6.2f} {s:6.4f} {kbps:6.0f}")
        ratio = zt / c["wall_s"]
        c["zerohop_over_this"] = ratio
        print(f"{name:<20} {c['wall_s']:7.3f} {c['wall_s'] / duration:8.2f} {ratio:10.2f}  " + "  ".join(f"{x:>22}" for x in cells))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
