"""One rendition's rate and quality, measured as codec engineers measure them.

- rate: the video elementary stream's bytes (every H.264 access unit, as ffprobe reads the PES
  payloads of the video PID; no TS packet, PAT/PMT or audio overhead) over the frames' duration;
- PSNR-Y: the mean over frames of each frame's luma PSNR (ffmpeg's `psnr` per-frame log; a frame
  identical to the reference, PSNR infinite, counts as 100 dB);
- SSIM: the mean over frames of each frame's luma SSIM (ffmpeg's `ssim` per-frame log), also given
  in dB as -10 log10(1 - SSIM) for the BD-rate fit;
- VMAF (where the installed ffmpeg has the `libvmaf` filter): its mean score.
The reference is the source the contenders decoded, scaled to the rendition's size by ffmpeg's
bicubic scaler (REFERENCE_SCALER): the same reference for every contender.
"""
import json, math, os, re, shutil, subprocess, tempfile

from bdrate import ssim_db

_VMAF = None
REFERENCE_SCALER = "bicubic"  # ffmpeg scale flags for the reference


def has_vmaf():
    global _VMAF
    if _VMAF is None:
        p = subprocess.run(["ffmpeg", "-hide_banner", "-filters"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
        _VMAF = bool(re.search(r"^\s*\S+\s+libvmaf\s", p.stdout, re.M))
    return _VMAF


def video_info(path):
    """(width, height, profile, total video access-unit bytes, access units)."""
    p = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                        "stream=width,height,profile:packet=size", "-of", "json", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    j = json.loads(p.stdout)
    s = j["streams"][0]
    sizes = [int(pk["size"]) for pk in j.get("packets", [])]
    return s["width"], s["height"], s.get("profile", "?"), sum(sizes), len(sizes)


def measure(dist, ref, fps):
    """Rate and quality of the rendition `dist` against the source `ref`."""
    w, h, profile, nbytes, units = video_info(dist)
    tmp = tempfile.mkdtemp(prefix="zerohop-rd-")
    try:
        vmaf = has_vmaf()
        n = 3 if vmaf else 2
        graph = (f"[0:v]setpts=PTS-STARTPTS,split={n}" + "".join(f"[d{i}]" for i in range(n)) + ";"
                 f"[1:v]setpts=PTS-STARTPTS,scale={w}:{h}:flags={REFERENCE_SCALER},split={n}" + "".join(f"[r{i}]" for i in range(n))
                 + ";[d0][r0]psnr=stats_file=psnr.log;[d1][r1]ssim=stats_file=ssim.log")
        if vmaf:
            graph += ";[d2][r2]libvmaf=n_threads=2"
        p = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", os.path.abspath(dist), "-i",
                            os.path.abspath(ref), "-lavfi", graph, "-f", "null", "-"],
                           cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"quality of {dist}: ffmpeg exited {p.returncode}: {p.stderr[-1500:]}")
        psnr = []
        for line in open(os.path.join(tmp, "psnr.log")):
            m = re.search(r"psnr_y:(\S+)", line)
            v = float(m.group(1))
            psnr.append(100.0 if math.isinf(v) else min(v, 100.0))
        ssim = [float(re.search(r"Y:(\S+)", line).group(1)) for line in open(os.path.join(tmp, "ssim.log"))]
        out = {
            "width": w, "height": h, "profile": profile, "frames": len(psnr), "access_units": units,
            "kbps": nbytes * 8 / (units / fps) / 1000 if units else float("nan"),
            "psnr_y": sum(psnr) / len(psnr), "ssim_y": sum(ssim) / len(ssim),
        }
        out["ssim_db"] = ssim_db(out["ssim_y"])
        if vmaf:
            m = re.search(r"VMAF score: ([\d.]+)", p.stderr)
            out["vmaf"] = float(m.group(1)) if m else float("nan")
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
