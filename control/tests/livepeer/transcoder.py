#!/usr/bin/env python3
"""A stand-in for a go-livepeer TRANSCODER (`livepeer -transcoder -orchAddr`), for zerohop's tests
of its orchestrator.

It behaves as go-livepeer v0.9.1's server/ot_rpc.go does (runTranscoder, runTranscode,
sendTranscodeResult), with go-livepeer's own generated messages (lp_rpc_pb2 from the
livepeer-gateway wheel, which zerohop did not write):

  1. gRPC `RegisterTranscoder` over HTTP/2 + TLS (no certificate check): RegisterRequest{secret,
     capacity, capabilities}, the capabilities being what a go-livepeer 0.9.1 software transcoder
     advertises (DefaultCapabilities + OptionalCapabilities less HEVC/VP8/VP9 encoders and VP9
     decoding, 1 per capability, version "0.9.1", empty constraints). A refusal (`invalid secret`,
     `zero capacity`) is fatal.
  2. It reads the server-streamed NotifySegments. An empty URL with a session id ends that
     session (recorded). Anything else is a task, run on its own thread (go-livepeer has no limit
     of its own; the orchestrator keeps to the capacity):
       * the job's capability bits must be ours (else `incompatible segment capabilities`);
       * GET the URL (HTTP/1.1, no certificate check, the whole request, body included, within
         4 s; a status other than 200 is an error whose text is the status, e.g. `404 Not
         Found`);
       * "transcode" it with Debian's ffmpeg, one output per profile of segData.fullProfiles
         (scaled to WxH, the bitrate, the frame rate when one is set, MPEG-TS, audio copied);
       * POST https://<orch>/transcodeResults over HTTP/2 with Authorization:
         Livepeer-Transcoder-1.0, Credentials: <secret>, TaskId, Pixels (the input's decoded
         pixels: frames x width x height, from ffprobe) and a multipart/mixed body, one part per
         profile with Content-Type, Content-Length and Pixels (that output's frames x width x
         height, from ffprobe), written as Go's mime/multipart writes them; or, on a failure,
         Content-Type livepeer/transcoding-error with the error's text.

Traps, to test the orchestrator:
  --omit-pixels-of N  part N (from 0) goes without its Pixels header (go-livepeer's orchestrator
                      drops such a part without a word)
  --delay-ms D        waits D ms before posting the results
  --error TEXT        answers every task with this error (after fetching its input)
  --exit-after N      runs N tasks and exits once they have been answered (later notifies are
                      noted in the report's not_run, not run)

Prints `registered` on stdout once the orchestrator has answered the registration with its
headers (or the refusal's message, and exits 1). Writes a JSON report (--report) after every
event: registration, tasks [{task_id, url, session, manifest_id, seq, profiles, state,
get_status, posted_status, ...}], ended_sessions, stream_end.
"""
import argparse
import http.client
import json
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import h2.config
import h2.connection
import h2.events

# go-livepeer's messages as Livepeer compiled them (control/tests/livepeer/setup.sh puts them there).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "target", "livepeer-stubs"))
import lp_rpc_pb2 as pb  # noqa: E402
from lpwire import bitstring, compatible, grpc_frame  # noqa: E402

VERSION = "0.9.1"
# What a go-livepeer 0.9.1 software transcoder registers with (cmd/livepeer/starter: Default +
# Optional capabilities less HEVC_Decode 15, HEVC_Encode 16, VP9_Decode 18, VP8_Encode 19,
# VP9_Encode 20), as tests/fixtures/livepeer/go-transcoder.RegisterRequest.bin holds it.
DEFAULT_CAPS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 26]
OPTIONAL_CAPS = [15, 16, 17, 18, 21, 22, 23, 24, 25, 27, 28, 29, 30, 31, 32, 34, 36]
SOFTWARE_CAPS = sorted(set(DEFAULT_CAPS + OPTIONAL_CAPS) - {15, 16, 18, 19, 20})
PROTO_VER_LPT = "Livepeer-Transcoder-1.0"
TRANSCODING_ERROR_MIME = "livepeer/transcoding-error"
# net.VideoProfile_Format / _Profile numbers.
FORMAT_MPEGTS, FORMAT_MP4 = 0, 1
X264_PROFILE = {1: "baseline", 2: "main", 3: "high", 4: "high"}


def tls_context(alpn):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn)
    return ctx


def h2_connect(host, port):
    raw = socket.create_connection((host, port), timeout=10)
    sock = tls_context(["h2"]).wrap_socket(raw, server_hostname=host)
    if sock.selected_alpn_protocol() != "h2":
        raise RuntimeError(f"ALPN gave {sock.selected_alpn_protocol()!r}, not h2")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def h2_post(host, port, path, headers, body, timeout=30):
    """One POST on its own HTTP/2 connection (as golang.org/x/net/http2.Transport does it):
    the status and the body."""
    sock, conn = h2_connect(host, port)
    try:
        sid = conn.get_next_available_stream_id()
        hdrs = [(":method", "POST"), (":scheme", "https"), (":authority", f"{host}:{port}"), (":path", path)] + headers
        conn.send_headers(sid, hdrs, end_stream=not body)
        pending = memoryview(body)
        status, got, ended = None, bytearray(), False
        until = time.monotonic() + timeout
        while not ended:
            while pending:
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                piece, pending = pending[:window], pending[window:]
                conn.send_data(sid, bytes(piece), end_stream=not pending)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            left = until - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no answer to POST {path} in {timeout} s")
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("connection closed")
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    status = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    got += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    ended = True
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    raise RuntimeError(f"stream reset: {ev.error_code}")
        return status, bytes(got)
    finally:
        try:
            conn.close_connection()
            sock.sendall(conn.data_to_send())
        except OSError:
            pass
        sock.close()


class Timeout(Exception):
    pass


def download(url, within=4.0):
    """go-livepeer's core.DownloadData: a plain HTTP/1.1 GET (http.Transport with its own TLS
    config: no h2) whose whole request, body included, must end within common.HTTPTimeout / 2
    = 4 s (http.Client.Timeout); a status other than 200 is an error whose text is the status."""
    u = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + within

    def left():
        t = deadline - time.monotonic()
        if t <= 0:
            raise Timeout()
        return t

    c = http.client.HTTPSConnection(u.hostname, u.port, timeout=within, context=tls_context(["http/1.1"]))
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        try:
            c.request("GET", path)
            sock = c.sock  # kept: http.client drops it from the connection once a response ends it
            sock.settimeout(left())
            r = c.getresponse()
        except (Timeout, socket.timeout):
            raise RuntimeError(f"Get \"{url}\": context deadline exceeded "
                               "(Client.Timeout exceeded while awaiting headers)") from None
        body = bytearray()
        try:
            while True:
                sock.settimeout(left())
                piece = r.read1(65536)
                if not piece:
                    break
                body += piece
                left()
        except (Timeout, socket.timeout):
            raise RuntimeError("context deadline exceeded (Client.Timeout or context cancellation while "
                               "reading body)") from None
        return r.status, f"{r.status} {r.reason}", bytes(body)
    finally:
        c.close()


def probe(path):
    """(frames, width, height) of the first video stream, as ffprobe decodes it."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=nb_read_frames,width,height", "-of", "json", path],
        capture_output=True, text=True, timeout=30)
    streams = json.loads(out.stdout or "{}").get("streams") or []
    if not streams:
        return 0, 0, 0
    s = streams[0]
    return int(s.get("nb_read_frames") or 0), int(s.get("width") or 0), int(s.get("height") or 0)


def transcode(input_path, profiles, workdir):
    """One ffmpeg run, one output per profile: the outputs' paths, or raises with ffmpeg's text."""
    cmd = ["ffmpeg", "-nostdin", "-y", "-v", "error", "-i", input_path]
    outs = []
    for i, p in enumerate(profiles):
        out = os.path.join(workdir, f"out{i}.{'mp4' if p.format == FORMAT_MP4 else 'ts'}")
        vf = f"scale={p.width}:{p.height}"
        if p.fps > 0:
            vf += f",fps={p.fps}/{p.fpsDen or 1}"
        cmd += ["-map", "0:v:0", "-map", "0:a?", "-vf", vf, "-c:v", "libx264", "-preset", "ultrafast",
                "-b:v", str(p.bitrate), "-pix_fmt", "yuv420p"]
        if p.profile in X264_PROFILE:
            cmd += ["-profile:v", X264_PROFILE[p.profile]]
        cmd += ["-c:a", "copy", "-f", "mp4" if p.format == FORMAT_MP4 else "mpegts", out]
        outs.append(out)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
        raise RuntimeError(lines[-1] if lines else f"ffmpeg exited {r.returncode}")
    return outs


def multipart(boundary, parts):
    """Go's mime/multipart Writer: CreatePart with its headers in sorted key order, then Close."""
    body = bytearray()
    for i, (headers, data) in enumerate(parts):
        body += (b"\r\n" if i else b"") + f"--{boundary}\r\n".encode()
        for k in sorted(headers):
            body += f"{k}: {headers[k]}\r\n".encode()
        body += b"\r\n" + data
    body += f"\r\n--{boundary}--\r\n".encode()
    return bytes(body)


class Report:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.data = dict(registration=None, tasks=[], ended_sessions=[], stream_end=None, done=False)

    def update(self, fn=None):
        with self.lock:
            if fn:
                fn(self.data)
            if not self.path:
                return
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.data, f, indent=1)
            os.replace(tmp, self.path)


class Transcoder:
    def __init__(self, a):
        self.a = a
        self.host, port = a.orch_addr.rsplit(":", 1)
        self.port = int(port)
        self.report = Report(a.report)
        self.caps = bitstring(SOFTWARE_CAPS)
        self.answered = 0
        self.answered_lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []

    # --- the registration and its stream of notifies (runTranscoder) ---

    def run(self):
        caps = pb.Capabilities(bitstring=self.caps, version=VERSION, constraints=pb.Capabilities.Constraints())
        for c in SOFTWARE_CAPS:
            caps.capacities[c] = 1
        req = pb.RegisterRequest(secret=self.a.secret, capacity=self.a.capacity, capabilities=caps)
        try:
            sock, conn = h2_connect(self.host, self.port)
        except (OSError, RuntimeError) as e:
            # go-livepeer would retry with its backoff; a test wants to know at once.
            self.report.update(lambda r: r.update(registration=dict(ok=False, connect_error=str(e)), done=True))
            print(f"cannot connect: {e}", flush=True)
            return 1
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":authority", f"{self.host}:{self.port}"),
                                (":path", "/net.Transcoder/RegisterTranscoder"),
                                ("content-type", "application/grpc"), ("te", "trailers")])
        conn.send_data(sid, grpc_frame(req), end_stream=True)
        sock.sendall(conn.data_to_send())
        buf = bytearray()
        # The answer's headers came (at), and `registered` was said. A go-livepeer orchestrator
        # (grpc-go behind net/http) may send a refusal as headers and then trailers: `registered`
        # waits for a first notify, or for 100 ms without trailers.
        answered_at, registered = None, False
        end = None
        sock.settimeout(0.05)

        def announce():
            nonlocal registered
            if not registered:
                registered = True
                self.report.update(lambda r: r.__setitem__("registration", dict(ok=True, at=time.time())))
                print("registered", flush=True)

        while end is None and not self.stop.is_set():
            if answered_at is not None and time.monotonic() - answered_at >= 0.1:
                announce()
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                end = dict(reason=f"connection: {e}")
                break
            if not data:
                end = dict(reason="connection closed")
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    h = dict(ev.headers)
                    if "grpc-status" in h and h["grpc-status"] != "0":
                        return self.refused(h)
                    if h.get(":status") != "200":
                        return self.refused(dict(h, **{"grpc-message": f"HTTP status {h.get(':status')}"}))
                    answered_at = time.monotonic()
                elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id == sid:
                    h = dict(ev.headers)
                    if not registered:
                        return self.refused(h)
                    end = dict(reason="trailers", grpc_status=h.get("grpc-status"),
                               grpc_message=urllib.parse.unquote(h.get("grpc-message", "")))
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                    announce()
                    buf += ev.data
                    while len(buf) >= 5:
                        flag, n = struct.unpack(">BI", buf[:5])
                        if len(buf) < 5 + n:
                            break
                        raw, buf = bytes(buf[5:5 + n]), buf[5 + n:]
                        if flag != 0:
                            raise RuntimeError("a compressed gRPC message")
                        self.notified(pb.NotifySegment.FromString(raw))
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    end = dict(reason=f"stream reset: {ev.error_code}")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    end = dict(reason=f"GOAWAY: {ev.error_code}")
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid and end is None:
                    end = dict(reason="stream ended")
            out = conn.data_to_send()
            if out:
                try:
                    sock.sendall(out)
                except OSError as e:
                    end = dict(reason=f"connection: {e}")
        if not registered:
            self.report.update(lambda r: r.update(registration=dict(ok=False, ended=end), done=True))
            print(f"ended before registering: {end}", flush=True)
            return 1
        # As go-livepeer: the tasks in flight finish before the transcoder goes.
        for t in self.threads:
            t.join()
        self.report.update(lambda r: r.update(stream_end=end or dict(reason=f"exit after {self.a.exit_after} tasks"),
                                              done=True))
        try:
            sock.close()
        except OSError:
            pass
        return 0

    def refused(self, h):
        status = h.get("grpc-status")
        message = urllib.parse.unquote(h.get("grpc-message", ""))
        self.report.update(lambda r: r.update(registration=dict(ok=False, grpc_status=status, grpc_message=message),
                                              done=True))
        print(f"refused: gRPC status {status}: {message}", flush=True)
        return 1

    def notified(self, n):
        sd = n.segData if n.HasField("segData") else None
        session = sd.auth_token.session_id if sd is not None and sd.HasField("auth_token") else ""
        if sd is not None and session and not n.url:
            # The session's teardown (n.Transcoder.EndTranscodingSession): nothing to do for a
            # software transcoder but to note it.
            self.report.update(lambda r: r["ended_sessions"].append(session))
            return
        if self.a.exit_after and len(self.threads) >= self.a.exit_after:
            # On its way out (--exit-after): a task it will not run, noted.
            self.report.update(lambda r: r.setdefault("not_run", []).append(n.taskId))
            return
        task = dict(task_id=n.taskId, url=n.url, session=session, orch_id=n.orchId,
                    manifest_id=sd.manifestId.decode(errors="replace") if sd is not None else None,
                    seq=sd.seq if sd is not None else None, duration=sd.duration if sd is not None else None,
                    profiles=[dict(name=p.name, width=p.width, height=p.height, bitrate=p.bitrate, fps=p.fps,
                                   fps_den=p.fpsDen, format=p.format, profile=p.profile, gop=p.gop)
                              for p in (sd.fullProfiles if sd is not None else [])],
                    legacy_profiles=n.profiles.decode(errors="replace"), state="notified", notified_at=time.time(),
                    get_status=None, posted_status=None, error=None, parts=[])
        self.report.update(lambda r: r["tasks"].append(task))
        t = threading.Thread(target=self.run_task, args=(n, task), daemon=True)
        self.threads.append(t)
        t.start()

    # --- one task (runTranscode, sendTranscodeResult) ---

    def set(self, task, **kv):
        self.report.update(lambda r: task.update(kv))

    def run_task(self, n, task):
        try:
            self.transcode_task(n, task)
        except Exception as e:  # the stand-in's own trouble: in the report, not silent
            self.set(task, state="crashed", crash=f"{type(e).__name__}: {e}")
        with self.answered_lock:
            self.answered += 1
            if self.a.exit_after and self.answered >= self.a.exit_after:
                self.stop.set()

    def transcode_task(self, n, task):
        sd = n.segData if n.HasField("segData") else None
        if sd is None:
            return self.post(n, task, error="empty seg data")
        needed = list(sd.capabilities.bitstring) if sd.HasField("capabilities") else []
        if not compatible(needed, self.caps):
            return self.post(n, task, error="incompatible segment capabilities")
        fetch_started = time.monotonic()
        try:
            status, text, data = download(n.url)
        except Exception as e:
            self.set(task, state="fetch failed", fetch_seconds=time.monotonic() - fetch_started)
            return self.post(n, task, error=str(e))
        self.set(task, get_status=status, input_bytes=len(data), state="fetched",
                 fetch_seconds=time.monotonic() - fetch_started)
        if status != 200:
            return self.post(n, task, error=text)
        if self.a.error is not None:
            return self.post(n, task, error=self.a.error)
        with tempfile.TemporaryDirectory(prefix="zerohop-go-transcoder-") as work:
            src = os.path.join(work, f"{task['manifest_id']}-{sd.seq}.tempfile")
            with open(src, "wb") as f:
                f.write(data)
            started = time.monotonic()
            try:
                outs = transcode(src, list(sd.fullProfiles), work)
            except Exception as e:
                self.set(task, state="transcode failed")
                return self.post(n, task, error=str(e))
            frames, w, h = probe(src)
            decoded = frames * w * h
            parts = []
            for i, (p, out) in enumerate(zip(sd.fullProfiles, outs)):
                pf, pw, ph = probe(out)
                body = open(out, "rb").read()
                parts.append(dict(index=i, content_type="video/mp4" if p.format == FORMAT_MP4 else "video/mp2t",
                                  length=len(body), pixels=pf * pw * ph, frames=pf, width=pw, height=ph,
                                  pixels_sent=i != self.a.omit_pixels_of, data=body))
            self.set(task, state="transcoded", transcode_seconds=time.monotonic() - started, decoded_pixels=decoded,
                      input_frames=frames, input_size=[w, h],
                      parts=[{k: v for k, v in p.items() if k != "data"} for p in parts])
            self.post(n, task, parts=parts, decoded=decoded)

    def post(self, n, task, error=None, parts=(), decoded=0):
        if self.a.delay_ms:
            self.set(task, state="delaying")
            time.sleep(self.a.delay_ms / 1000)
        if error is not None:
            content_type, body, decoded = TRANSCODING_ERROR_MIME, error.encode(), 0
            self.set(task, error=error)
        else:
            boundary = "%020x" % random.getrandbits(80)  # common.RandName: 20 hex digits
            encoded = []
            for p in parts:
                hdrs = {"Content-Type": p["content_type"], "Content-Length": str(len(p["data"]))}
                if p["pixels_sent"]:
                    hdrs["Pixels"] = str(p["pixels"])
                encoded.append((hdrs, p["data"]))
            content_type, body = f"multipart/mixed; boundary={boundary}", multipart(boundary, encoded)
        headers = [("authorization", PROTO_VER_LPT), ("credentials", self.a.secret), ("content-type", content_type),
                   ("taskid", str(n.taskId)), ("pixels", str(decoded))]
        self.set(task, state="posting", content_type=content_type)
        try:
            status, answer = h2_post(self.host, self.port, "/transcodeResults", headers, body)
        except Exception as e:
            return self.set(task, state="post failed", post_error=f"{type(e).__name__}: {e}")
        self.set(task, state="posted", posted_status=status, posted_answer=answer.decode(errors="replace").strip(),
                 posted_at=time.time())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orch-addr", "--orchAddr", required=True, help="HOST:PORT of the orchestrator")
    ap.add_argument("--secret", required=True, help="the orchestrator's secret (-orchSecret)")
    ap.add_argument("--capacity", type=int, default=10, help="-maxSessions (go-livepeer's default: 10)")
    ap.add_argument("--report", help="JSON report, rewritten after every event")
    ap.add_argument("--omit-pixels-of", type=int, default=-1, help="part N (from 0) goes without Pixels")
    ap.add_argument("--delay-ms", type=int, default=0, help="wait before posting results")
    ap.add_argument("--error", help="answer every task with this error text")
    ap.add_argument("--exit-after", type=int, default=0, help="exit after this many tasks")
    a = ap.parse_args()
    return Transcoder(a).run()


if __name__ == "__main__":
    sys.exit(main())
