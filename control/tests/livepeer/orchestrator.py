#!/usr/bin/env python3
"""A stand-in for a go-livepeer orchestrator (v0.8.11) that has remote transcoders, for testing
zerohop's Livepeer transcoder client (control/src/livepeer/transcoder.rs) in CI.

It does what go-livepeer's orchestrator does with a remote transcoder:
  server/ot_rpc.go        RegisterTranscoder (gRPC, server streaming) and POST /transcodeResults
  core/orchestrator.go    RemoteTranscoder.Transcode (NotifySegment, the max(8 s, 4 x duration)
                          timer, dropping the link of a transcoder that misses it),
                          RemoteTranscoderManager (session -> transcoder, capacity, capability
                          check), endTranscodingSession (the empty-URL notify)
  core/streamdata.go      NetSegData (which fullProfiles field, 'invalid' legacy bytes, zero hash)
  core/capabilities.go    JobCapabilities (the job's capability bits)
  server/rpc.go           one TLS port: HTTP/2 with an application/grpc content type is gRPC,
                          anything else (HTTP/2 or HTTP/1.1) the plain HTTP mux
and encodes and decodes every protobuf message with go-livepeer's own schema as Livepeer
publishes it compiled for Python (lp_rpc_pb2.py from the PyPI package livepeer-gateway; see
setup.sh), not with anything zerohop wrote. HTTP/2 is hyper-h2's; multipart/mixed is parsed by
Python's own email package.

gRPC the way go-livepeer serves it: its orchestrator runs grpc-go behind net/http
(grpc.Server.ServeHTTP), so the response headers of RegisterTranscoder go out with the first
message, and a refusal ("invalid secret", "zero capacity": status 2 UNKNOWN) is response headers
and then trailers, not a trailers-only answer (--refusal trailers-only sends the latter, as a
native grpc-go server would). A link the orchestrator drops (a missed deadline) ends with
trailers grpc-status 0: the handler returns nil.

HTTP/1.1 (a client that negotiates http/1.1, or no ALPN): a minimal server, one request per
connection, Content-Length bodies only; gRPC never goes over it (as in Go, it lands in the mux).

Where this differs from go-livepeer on purpose: one orchestrator "stream" (a session id, one
segment at a time) unless --concurrent (a session per segment, all at once); a segment with no
transcoder waits for one until --deadline-s instead of failing at once; task ids count from 0
as go-livepeer's do (--first-task-id to change it; 0 is absent on the wire, proto3's default).

Usage: see --help. The first line on stdout is "listening <port>"; everything else is logged to
stderr. Exit status: 0 after the report; 2 no transcoder registered by --deadline-s; 3
--expect-redial and no second registration; 4 a segment found no transcoder by the deadline.

The report (--report) is JSON, rewritten after every event and complete once "done" is true:
  registrations[]   n, at_ms, peer, secret_ok, capacity, has_capabilities, capabilities (the
                    bitstring words), capability_ids, capacities, version, refused (the gRPC
                    message or null), ended_at_ms, end_reason
  accepted_registrations, redialed (two or more accepted)
  tasks[]           task_id (null if never sent), seq, segment, session_id, duration_ms,
                    deadline_ms, registration (which link), notified, notified_at_ms,
                    content_type, pixels_header (the request's decoded Pixels), error (the
                    livepeer/transcoding-error text), late (the deadline passed first: the link
                    was dropped), late_result (a result came after it: answered 200, dropped),
                    result_ms, http_status, parts[] {index, content_type, pixels, length,
                    sha256, headers, phash_length, file}, ignored_parts[] (no Pixels: dropped as
                    go-livepeer drops them), o_error (what go-livepeer's orchestrator makes of
                    the task: the error text, "Remote transcoder took too long",
                    "MismatchedSegments", "ZeroSegments", a capacity or capability refusal)
  results_posts[]   every POST /transcodeResults: at_ms, http_version, task_id, content_type,
                    status, answer
  segment_gets[]    every GET of an input: at_ms, path, http_version, status
Each rendition part's bytes go to <report>.parts/<task>_<index>.ts.
"""

from __future__ import annotations

import argparse
import asyncio
import email.message
import email.parser
import email.policy
import hashlib
import json
import os
import re
import secrets as rand
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# go-livepeer's constants.
HTTP_TIMEOUT_MS = 8000  # common.HTTPTimeout: the shortest wait for a remote transcoder's result
PROTO_VER_LPT = "Livepeer-Transcoder-1.0"  # server/ot_rpc.go protoVerLPT
TRANSCODING_ERROR_MIME = "livepeer/transcoding-error"
MAX_SEG_SIZE = 300 * 8000 * 1000 // 8  # common.MaxSegSize: 5 min at 8000 kbit/s
ERR_SECRET = "invalid secret"
ERR_ZERO_CAPACITY = "zero capacity"
ERR_TIMEOUT = "Remote transcoder took too long"
ERR_NO_TRANSCODERS = "no transcoders available"
ERR_NO_COMPATIBLE = "no transcoders can provide requested capabilities"
AUTH_TOKEN_VALID_S = 30 * 60  # server/rpc.go authTokenValidPeriod

# core/capabilities.go
CAP_H264, CAP_MPEGTS, CAP_MP4, CAP_FRACTIONAL = 0, 1, 2, 3
CAP_PROFILE_BASELINE = 7  # .. 10: Main, High, Constrained High
CAP_GOP, CAP_AUTH_TOKEN = 11, 12
CAP_SEGMENT_SLICING = 26
CAP_HEVC_ENCODE, CAP_VP8_ENCODE, CAP_VP9_ENCODE = 16, 19, 20
DEFAULT_CAPABILITIES = list(range(0, 13)) + [14, 26]  # for a transcoder that sends none

# lpms ffmpeg/videoprofile.go presets; go-livepeer's default -transcodingOptions.
DEFAULT_PROFILES = [
    {"name": "P240p30fps16x9", "width": 426, "height": 240, "bitrate": 600000, "fps": 30},
    {"name": "P360p30fps16x9", "width": 640, "height": 360, "bitrate": 1200000, "fps": 30},
]

pb = None  # lp_rpc_pb2, imported in main() from --stubs


def log(*args):
    print(time.strftime("%H:%M:%S"), "orchestrator:", *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Small pieces of Go's behaviour.


def go_parse_int64(s):
    """strconv.ParseInt(s, 10, 64): an optional sign, decimal digits, nothing else."""
    if s is None or not re.fullmatch(r"[+-]?[0-9]+", s):
        raise ValueError(f'strconv.ParseInt: parsing "{s or ""}": invalid syntax')
    v = int(s)
    if not -(1 << 63) <= v < (1 << 63):
        raise ValueError(f'strconv.ParseInt: parsing "{s}": value out of range')
    return v


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"


def go_parse_media_type(value):
    """mime.ParseMediaType's media type (lowercased) and parameters; ValueError as it fails.
    The parameters are read by the email package."""
    if value is None or not value.strip():
        raise ValueError("mime: no media type")
    kind = value.split(";", 1)[0].strip()
    if not re.fullmatch(_TOKEN + "(/" + _TOKEN + ")?", kind):
        raise ValueError("mime: expected token after slash" if "/" in kind else "mime: no media type")
    if "/" not in kind:
        raise ValueError("mime: expected slash after first token")
    m = email.message.Message()
    m["Content-Type"] = value
    params = {k.lower(): v for k, v in (m.get_params() or [])[1:]}
    return kind.lower(), params


def grpc_percent_encode(msg):
    """grpc-go encodeGrpcMessage: bytes outside 0x20..0x7e, and '%', as %XX."""
    out = []
    for b in msg.encode():
        out.append(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}")
    return "".join(out)


def grpc_frame(message):
    data = message.SerializeToString()
    return b"\x00" + len(data).to_bytes(4, "big") + data


def bitstring(caps):
    """core.NewCapabilityString: capability c sets bit c%64 of word c//64."""
    words = []
    for c in caps:
        if c < 0:
            continue
        while len(words) <= c // 64:
            words.append(0)
        words[c // 64] |= 1 << (c % 64)
    return words


def caps_of(words):
    return [w * 64 + b for w, word in enumerate(words) for b in range(64) if word >> b & 1]


def bits_compatible(job, have):
    """CapabilityString.CompatibleWith: job is a subset of have (and no longer than it)."""
    if len(job) > len(have):
        return False
    return all(job[i] & have[i] == job[i] for i in range(len(job)))


def job_capabilities(profiles, sliced=False):
    """core.JobCapabilities for an H.264 8-bit 4:2:0 input, no verification, no object storage
    (segment parameters add SegmentSlicing): the bits go-livepeer's gateway requires of a job."""
    caps = {CAP_AUTH_TOKEN, CAP_H264}
    if sliced:
        caps.add(CAP_SEGMENT_SLICING)
    for p in profiles:
        caps.add(CAP_MP4 if p.format == pb.VideoProfile.MP4 else CAP_MPEGTS)
        caps.add({0: CAP_H264, 1: CAP_HEVC_ENCODE, 2: CAP_VP8_ENCODE, 3: CAP_VP9_ENCODE}.get(p.encoder, -2))
        if p.fpsDen > 0:
            caps.add(CAP_FRACTIONAL)
        if p.profile:
            caps.add(CAP_PROFILE_BASELINE + p.profile - 1)
        if p.gop != 0:
            caps.add(CAP_GOP)
    return sorted(c for c in caps if c >= 0)


def net_capabilities(caps):
    """Capabilities.ToNetCapabilities of a job's set: capacity 1 each, no version."""
    c = pb.Capabilities(bitstring=bitstring(caps))
    for cap in caps:
        c.capacities[cap] = 1
    c.constraints.minVersion = ""
    c.constraints.SetInParent()
    return c


def video_profiles(dicts):
    """VideoProfile messages from JSON objects in the proto's JSON form (names or numbers for
    the enums), parsed by protobuf's own json_format."""
    from google.protobuf import json_format

    return [json_format.ParseDict(d, pb.VideoProfile()) for d in dicts]


def put_profiles(seg, profiles):
    """core.NetSegData: fullProfiles when every output is TS with integer fps, default H.264
    profile and GOP; fullProfiles2 when not all TS but otherwise plain; else fullProfiles3."""
    plain = all(p.fpsDen == 0 and p.profile == 0 and p.gop == 0 for p in profiles)
    all_ts = all(p.format == pb.VideoProfile.MPEGTS for p in profiles)
    field = (seg.fullProfiles if all_ts else seg.fullProfiles2) if plain else seg.fullProfiles3
    field.extend(profiles)


# ---------------------------------------------------------------------------------------------
# State.


class Registration:
    def __init__(self, orch, req, peer, http_version):
        self.n = len(orch.registrations)
        self.at = orch.elapsed_ms()
        self.peer = peer
        self.secret_ok = req.secret == orch.args.secret
        self.capacity = req.capacity
        self.has_capabilities = req.HasField("capabilities")
        caps = req.capabilities if self.has_capabilities else net_capabilities(DEFAULT_CAPABILITIES)
        self.bitstring = list(caps.bitstring)
        self.version = caps.version
        self.capacities = dict(caps.capacities)
        self.refused = None
        self.ended_at = None
        self.end_reason = None

    def report(self):
        return {
            "n": self.n,
            "at_ms": self.at,
            "peer": self.peer,
            "secret_ok": self.secret_ok,
            "capacity": self.capacity,
            "has_capabilities": self.has_capabilities,
            "capabilities": self.bitstring,
            "capability_ids": caps_of(self.bitstring),
            "capacities": {str(k): v for k, v in sorted(self.capacities.items())},
            "version": self.version,
            "refused": self.refused,
            "ended_at_ms": self.ended_at,
            "end_reason": self.end_reason,
        }


class Link:
    """A registered transcoder: its RegisterTranscoder stream (core.RemoteTranscoder)."""

    def __init__(self, conn, stream_id, reg):
        self.conn = conn
        self.stream_id = stream_id
        self.reg = reg
        self.load = 0
        self.eof = asyncio.Event()  # rt.done(): the orchestrator drops it, or the stream ended
        self.why = None

    def done(self, why):
        if not self.eof.is_set():
            self.why = why
            self.eof.set()

    async def send(self, message):
        await self.conn.grpc_send(self.stream_id, grpc_frame(message))


class Task:
    def __init__(self, task_id, job, session, link):
        self.id = task_id
        self.job = job
        self.session = session
        self.link_n = link.reg.n if link else None
        self.sent_at = None
        self.deadline_ms = None
        self.result = asyncio.get_running_loop().create_future()
        self.late = False
        self.record = {
            "task_id": task_id,
            "seq": job["seq"],
            "segment": job["segment"],
            "session_id": session,
            "duration_ms": job["duration_ms"],
            "deadline_ms": None,
            "registration": self.link_n,
            "notified": False,
            "notified_at_ms": None,
            "content_type": None,
            "pixels_header": None,
            "error": None,
            "late": False,
            "late_result": False,
            "result_ms": None,
            "http_status": None,
            "parts": [],
            "ignored_parts": [],
            "o_error": None,
        }


class Orchestrator:
    def __init__(self, args):
        self.args = args
        self.start = time.monotonic()
        self.registrations = []
        self.links = []  # live transcoders, as RemoteTranscoderManager.remoteTranscoders
        self.link_added = asyncio.Event()
        self.sessions = {}  # session id -> Link (streamSessions)
        self.store = {}  # (session id, "<seq>.tempfile") -> bytes (the in-memory object store)
        self.tasks = {}  # task id -> Task, while its Transcode waits (taskChans)
        self.all_tasks = []
        self.posts = []
        self.gets = []
        self.next_task_id = args.first_task_id
        self.port = None
        self.done = False
        self.exit_message = None
        self.parts_dir = Path(args.report + ".parts") if args.report else None
        if self.parts_dir:
            shutil.rmtree(self.parts_dir, ignore_errors=True)
            self.parts_dir.mkdir(parents=True)

    def elapsed_ms(self):
        return round((time.monotonic() - self.start) * 1000)

    def base_url(self):
        return f"https://{self.args.service_host}:{self.port}"

    # -- the report --------------------------------------------------------------------------

    def write_report(self):
        if not self.args.report:
            return
        accepted = [r for r in self.registrations if r.refused is None]
        doc = {
            "done": self.done,
            "exit_message": self.exit_message,
            "port": self.port,
            "registrations": [r.report() for r in self.registrations],
            "accepted_registrations": len(accepted),
            "redialed": len(accepted) >= 2,
            "tasks": [t.record for t in self.all_tasks],
            "results_posts": self.posts,
            "segment_gets": self.gets,
        }
        tmp = self.args.report + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, self.args.report)

    # -- RegisterTranscoder (server/ot_rpc.go, core/orchestrator.go Manage) -----------------

    async def register(self, conn, stream_id, req, peer):
        reg = Registration(self, req, peer, "2")
        self.registrations.append(reg)
        log(f"RegisterTranscoder #{reg.n} from {peer}: capacity {req.capacity}, version {reg.version!r}, "
            f"capabilities {caps_of(reg.bitstring)}, secret {'ok' if reg.secret_ok else 'WRONG'}")
        if not reg.secret_ok:
            reg.refused = ERR_SECRET
        elif req.capacity <= 0:
            reg.refused = ERR_ZERO_CAPACITY
        self.write_report()
        if reg.refused:
            await conn.grpc_finish(stream_id, 2, reg.refused, refusal=True)
            return
        link = Link(conn, stream_id, reg)
        conn.links[stream_id] = link
        self.links.append(link)
        self.link_added.set()
        await link.eof.wait()
        if link in self.links:
            self.links.remove(link)
        for sid, l in list(self.sessions.items()):
            if l is link:
                del self.sessions[sid]
        reg.ended_at = self.elapsed_ms()
        reg.end_reason = link.why
        log(f"transcoder #{reg.n} gone: {link.why}")
        self.write_report()
        # The handler returns nil: the stream ends with status OK (if it is still there).
        await conn.grpc_finish(stream_id, 0, "", refusal=False)

    def live_links(self):
        return [l for l in self.links if not l.eof.is_set()]

    def select(self, session, caps_bits):
        """RemoteTranscoderManager.selectTranscoder: the session's transcoder, else the least
        loaded compatible one (version checks pass: the job sets no minVersion)."""
        link = self.sessions.get(session)
        if link is not None and not link.eof.is_set():
            return link, None
        live = self.live_links()
        if not live:
            return None, ERR_NO_TRANSCODERS
        order = sorted(live, key=lambda l: l.load / max(l.reg.capacity, 1), reverse=True)
        for l in reversed(order):
            if bits_compatible(caps_bits, l.reg.bitstring):
                if l.load >= l.reg.capacity:
                    return None, ERR_NO_TRANSCODERS
                l.load += 1
                self.sessions[session] = l
                return l, None
        return None, ERR_NO_COMPATIBLE

    def complete_session(self, session):
        link = self.sessions.pop(session, None)
        if link is not None:
            link.load -= 1

    async def wait_for_link(self, until):
        while not self.live_links():
            self.link_added.clear()
            left = until - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.link_added.wait(), left)
            except asyncio.TimeoutError:
                return False
        return True

    # -- RemoteTranscoderManager.Transcode / RemoteTranscoder.Transcode ----------------------

    async def transcode(self, job, session, auth_token, until):
        """One segment; returns its Task (None if never notified)."""
        caps = job["caps"]
        if not await self.wait_for_link(until):
            return None
        link, err = self.select(session, bitstring(caps))
        # addTaskChan: an id per attempt on a chosen transcoder (none when none was chosen).
        task_id = None if err else self.next_task_id
        if not err:
            self.next_task_id += 1
        task = Task(task_id, job, session, link)
        self.all_tasks.append(task)
        if err:
            task.record["o_error"] = err
            log(f"task {task_id} seq {job['seq']}: {err}")
            self.write_report()
            return task
        self.tasks[task_id] = task
        try:
            name = f"{job['seq']}.tempfile"
            self.store[(session, name)] = job["data"]
            seg = pb.SegData(
                manifestId=self.args.manifest_id.encode(),
                seq=job["seq"],
                hash=bytes(32),
                profiles=b"invalid",
                duration=job["duration_ms"],
            )
            seg.capabilities.CopyFrom(net_capabilities(caps))
            seg.auth_token.CopyFrom(auth_token)
            put_profiles(seg, job["profiles"])
            if job["segment_parameters"] is not None:
                seg.segment_parameters.CopyFrom(pb.SegParameters(**job["segment_parameters"]))
            seg.ForceSessionReinit = job["force_session_reinit"]
            msg = pb.NotifySegment(
                url=f"{self.base_url()}/stream/{session}/{name}",
                segData=seg,
                taskId=task_id,
                orchId=self.args.orch_id,
                profiles=b"invalid",
            )
            try:
                await link.send(msg)
            except Exception as e:  # a send failure: drop the transcoder, try another
                link.done(f"send failed: {e}")
                self.complete_session(session)
                task.record["o_error"] = f"send failed: {e}"
                self.tasks.pop(task_id, None)
                self.write_report()
                return await self.transcode(job, session, auth_token, until)
            task.sent_at = time.monotonic()
            task.record["notified"] = True
            task.record["notified_at_ms"] = self.elapsed_ms()
            duration_ms = job["duration_ms"] or 2000  # coreSegMetadata: 0 means 2 s
            task.deadline_ms = max(self.args.min_timeout_ms, 4 * duration_ms)
            task.record["deadline_ms"] = task.deadline_ms
            log(f"task {task_id} seq {job['seq']} -> transcoder #{link.reg.n} ({job['segment']}, "
                f"deadline {task.deadline_ms} ms)")
            self.write_report()
            try:
                await asyncio.wait_for(asyncio.shield(task.result), task.deadline_ms / 1000)
            except asyncio.TimeoutError:
                task.late = True
                task.record["late"] = True
                task.record["o_error"] = ERR_TIMEOUT
                log(f"task {task_id}: {ERR_TIMEOUT} after {task.deadline_ms} ms: dropping transcoder #{link.reg.n}")
                link.done(f"task {task_id}: {ERR_TIMEOUT}")
                self.complete_session(session)
                self.write_report()
                return task
            if task.record["o_error"]:
                self.complete_session(session)
            return task
        finally:
            self.tasks.pop(task_id, None)

    async def end_session(self, session):
        """core/orchestrator.go endTranscodingSession: tell the session's transcoder, forget it."""
        link = self.sessions.get(session)
        if link is not None and not link.eof.is_set():
            msg = pb.NotifySegment(url="")
            msg.segData.auth_token.session_id = session
            try:
                await link.send(msg)
                log(f"session {session} ended (empty-URL notify to transcoder #{link.reg.n})")
            except Exception as e:
                log(f"session {session}: the end notify failed: {e}")
        self.complete_session(session)
        for key in [k for k in self.store if k[0] == session]:
            del self.store[key]

    # -- POST /transcodeResults (server/ot_rpc.go TranscodeResults) -------------------------

    def transcode_results(self, headers, body, http_version):
        """Returns (status, text) as go-livepeer answers, and records what it read."""
        post = {"at_ms": self.elapsed_ms(), "http_version": http_version, "task_id": headers.get("taskid"),
                "content_type": headers.get("content-type"), "status": None, "answer": None}
        self.posts.append(post)

        def answer(status, text):
            post["status"], post["answer"] = status, text
            self.write_report()
            return status, text

        if headers.get("authorization") != PROTO_VER_LPT:
            return answer(401, "Unauthorized\n")
        if headers.get("credentials") != self.args.secret:
            return answer(401, "Unauthorized\n")
        try:
            media_type, params = go_parse_media_type(headers.get("content-type"))
        except ValueError as e:
            return answer(415, f"{e}\n")
        try:
            tid = go_parse_int64(headers.get("taskid"))
        except ValueError:
            return answer(400, "Invalid Task ID\n")

        task = self.tasks.get(tid)
        known = next((t for t in self.all_tasks if t.id == tid), None)
        if task is None and known is not None and known.late:
            known.record["late_result"] = True
            known.record["late_result_ms"] = round((time.monotonic() - known.sent_at) * 1000)
        rec = (task or known).record if (task or known) else None

        if media_type == TRANSCODING_ERROR_MIME:
            text = body.decode("utf-8", "replace")
            log(f"task {tid}: transcoding error {text!r}" + ("" if task else " (no task waits: dropped)"))
            if rec is not None and task is not None:
                rec.update(content_type=headers.get("content-type"), error=text, http_status=200, o_error=text)
                rec["result_ms"] = round((time.monotonic() - task.sent_at) * 1000)
                self.deliver(task)
            elif rec is not None:
                rec["late_result_error"] = text
            return answer(200, "OK")

        try:
            decoded_pixels = go_parse_int64(headers.get("pixels"))
        except ValueError:
            return answer(400, "Invalid Pixels\n")

        if media_type != "multipart/mixed":
            # Any other type: 200 and nothing delivered (the task will time out).
            log(f"task {tid}: content type {media_type!r}: ignored, as go-livepeer does")
            return answer(200, "OK")

        parts, ignored, err = self.read_parts(headers.get("content-type"), params, body)
        if task is not None:
            rec.update(content_type=headers.get("content-type"), pixels_header=decoded_pixels,
                       error=None, http_status=500 if err else 200)
            rec["result_ms"] = round((time.monotonic() - task.sent_at) * 1000)
            rec["ignored_parts"] = ignored
            rec["parts"] = [self.save_part(tid, i, p) for i, p in enumerate(parts)]
            rec["o_error"] = err or self.check_renditions(task, parts)
            log(f"task {tid}: {len(parts)} renditions, decoded pixels {decoded_pixels}"
                + (f", error {rec['o_error']!r}" if rec["o_error"] else ""))
            self.deliver(task)
        elif rec is not None:
            rec["late_result_parts"] = len(parts)
            log(f"task {tid}: a result after the deadline: answered and dropped, as go-livepeer does")
        if err:
            return answer(500, f"{err}\n")
        return answer(200, "OK")

    def deliver(self, task):
        if not task.result.done():
            task.result.set_result(True)

    def read_parts(self, content_type, params, body):
        """The multipart body, read by Python's email package (with the request's Content-Type
        as the message's header), kept as go-livepeer keeps it: a part with a Pixels header is
        a rendition; an application/octet-stream part without one is the previous rendition's
        perceptual hash; anything else is dropped. Returns (renditions, ignored, error)."""
        parts, ignored = [], []
        boundary = params.get("boundary")
        if not boundary:
            return parts, ignored, "multipart: boundary is empty"
        head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n"
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + body)
        defects = [type(d).__name__ for d in msg.defects]
        if not msg.is_multipart() or any(d in ("StartBoundaryNotFoundDefect",) for d in defects):
            return parts, ignored, "multipart: NextPart: EOF"
        for i, part in enumerate(msg.get_payload()):
            data = part.get_payload(decode=True) or b""
            if len(data) > MAX_SEG_SIZE:
                return parts, ignored, "body exceeds max size"
            pixels = part.get_all("Pixels")
            ctype = part.get("Content-Type")
            if pixels:
                try:
                    px = go_parse_int64(pixels[0].strip())
                except ValueError as e:
                    return parts, ignored, str(e)
                parts.append({"content_type": ctype, "pixels": px, "data": data, "phash": None,
                              "headers": list(part.keys())})
            elif ctype == "application/octet-stream":
                if not parts:
                    return parts, ignored, "Unknown perceptual hash"
                parts[-1]["phash"] = data
            else:
                ignored.append({"index": i, "content_type": ctype, "length": len(data),
                                "headers": list(part.keys())})
        if "CloseBoundaryNotFoundDefect" in defects:
            return parts, ignored, "multipart: NextPart: EOF"
        return parts, ignored, None

    def save_part(self, tid, index, p):
        out = {"index": index, "content_type": p["content_type"], "pixels": p["pixels"], "length": len(p["data"]),
               "sha256": hashlib.sha256(p["data"]).hexdigest(), "headers": p["headers"],
               "phash_length": None if p["phash"] is None else len(p["phash"]), "file": None}
        if self.parts_dir:
            f = self.parts_dir / f"{tid}_{index}.ts"
            f.write_bytes(p["data"])
            out["file"] = str(f)
        return out

    def check_renditions(self, task, parts):
        """core/orchestrator.go transcodeSeg: one rendition per profile, each at least 25 bytes."""
        if len(parts) != len(task.job["profiles"]):
            return "MismatchedSegments"
        if any(len(p["data"]) < 25 for p in parts):
            return "ZeroSegments"
        return None

    # -- GET /stream/<session>/<seq>.tempfile ------------------------------------------------

    def stream_get(self, method, path, http_version):
        m = re.fullmatch(r"/stream/([^/]+)/([^/]+)", path.split("?", 1)[0])
        data = self.store.get((m.group(1), m.group(2))) if m else None
        self.gets.append({"at_ms": self.elapsed_ms(), "path": path, "http_version": http_version,
                          "status": 200 if data is not None else 404})
        if data is None:
            return 404, "text/plain; charset=utf-8", b"404 page not found\n"
        return 200, "video/mp2t", data if method != "HEAD" else b""

    def http(self, method, path, headers, body, http_version):
        """The plain HTTP mux: (status, content type, body)."""
        p = path.split("?", 1)[0]
        if p == "/transcodeResults":
            status, text = self.transcode_results(headers, body, http_version)
            return status, "text/plain; charset=utf-8", text.encode()
        if p.startswith("/stream/") and method in ("GET", "HEAD"):
            return self.stream_get(method, path, http_version)
        return 404, "text/plain; charset=utf-8", b"404 page not found\n"


# ---------------------------------------------------------------------------------------------
# HTTP/2 (hyper-h2) on one TLS connection.


class H2Conn:
    def __init__(self, orch, reader, writer):
        import h2.config
        import h2.connection

        self.orch = orch
        self.reader = reader
        self.writer = writer
        self.peer = "%s:%s" % writer.get_extra_info("peername")[:2]
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams = {}  # id -> {"headers", "body", "ended", "dispatched", "headers_sent", "closed"}
        self.links = {}
        self.window = asyncio.Event()
        self.closed = False
        self.handlers = set()

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.writer.write(data)

    async def run(self):
        import h2.events
        import h2.exceptions
        import h2.settings

        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        self.conn.increment_flow_control_window((1 << 24) - 65535)
        self.flush()
        try:
            while True:
                data = await self.reader.read(1 << 16)
                if not data:
                    break
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError as e:
                    log(f"HTTP/2 protocol error from {self.peer}: {e}")
                    self.flush()
                    break
                for ev in events:
                    self.on_event(ev)
                self.flush()
                await self.writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as e:
            log(f"connection from {self.peer}: {e}")
        finally:
            self.closed = True
            self.window.set()
            for link in self.links.values():
                link.done("the connection closed")
            try:
                self.writer.close()
            except Exception:
                pass

    def on_event(self, ev):
        import h2.events as E

        if isinstance(ev, E.RequestReceived):
            self.streams[ev.stream_id] = {"headers": ev.headers, "body": bytearray(), "ended": False,
                                          "dispatched": False, "headers_sent": False, "closed": False}
            if ev.stream_ended:
                self.on_end(ev.stream_id)
        elif isinstance(ev, E.DataReceived):
            s = self.streams.get(ev.stream_id)
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if s is not None:
                s["body"] += ev.data
                self.maybe_dispatch(ev.stream_id)
            if ev.stream_ended:
                self.on_end(ev.stream_id)
        elif isinstance(ev, E.StreamEnded):
            self.on_end(ev.stream_id)
        elif isinstance(ev, E.StreamReset):
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s["closed"] = True
            link = self.links.get(ev.stream_id)
            if link is not None:
                link.done(f"the transcoder reset the stream (code {ev.error_code})")
            self.window.set()
        elif isinstance(ev, (E.WindowUpdated, E.RemoteSettingsChanged)):
            self.window.set()
        elif isinstance(ev, E.ConnectionTerminated):
            for link in self.links.values():
                link.done(f"GOAWAY from the transcoder (code {ev.error_code})")
            self.window.set()

    def on_end(self, sid):
        s = self.streams.get(sid)
        if s is not None:
            s["ended"] = True
            self.maybe_dispatch(sid)

    def is_grpc(self, s):
        return dict(s["headers"]).get("content-type", "").startswith("application/grpc")

    def maybe_dispatch(self, sid):
        s = self.streams[sid]
        if s["dispatched"]:
            return
        # gRPC: one whole request message is enough (grpc-go reads it, then calls the handler).
        grpc_ready = self.is_grpc(s) and len(s["body"]) >= 5 and \
            len(s["body"]) >= 5 + int.from_bytes(s["body"][1:5], "big")
        if not (s["ended"] or grpc_ready):
            return
        s["dispatched"] = True
        t = asyncio.create_task(self.handle(sid))
        self.handlers.add(t)
        t.add_done_callback(self.handlers.discard)

    async def handle(self, sid):
        s = self.streams[sid]
        h = {}
        for k, v in s["headers"]:
            h.setdefault(k.lower(), v)
        method, path = h.get(":method", ""), h.get(":path", "")
        try:
            if self.is_grpc(s):
                await self.grpc(sid, path, bytes(s["body"]))
            else:
                status, ctype, body = self.orch.http(method, path, h, bytes(s["body"]), "2")
                await self.respond(sid, status, ctype, body)
        except Exception as e:  # a handler's bug must not take the server down
            log(f"stream {sid} {method} {path}: {type(e).__name__}: {e}")
            import traceback

            traceback.print_exc(file=sys.stderr)

    # -- sending --------------------------------------------------------------------------

    async def send_data(self, sid, data, end_stream):
        view = memoryview(data)
        while len(view):
            while True:
                s = self.streams.get(sid)
                if self.closed or s is None or s["closed"]:
                    raise ConnectionError("the stream is gone")
                window = self.conn.local_flow_control_window(sid)
                if window > 0:
                    break
                self.window.clear()
                await self.window.wait()
            n = min(window, self.conn.max_outbound_frame_size, len(view))
            self.conn.send_data(sid, bytes(view[:n]))
            view = view[n:]
            self.flush()
            await self.writer.drain()
        if end_stream:
            self.conn.end_stream(sid)
            self.flush()
            await self.writer.drain()

    async def respond(self, sid, status, ctype, body):
        headers = [(":status", str(status)), ("content-type", ctype), ("content-length", str(len(body)))]
        if status >= 400:
            headers.append(("x-content-type-options", "nosniff"))
        self.conn.send_headers(sid, headers, end_stream=not body)
        self.flush()
        if body:
            await self.send_data(sid, body, end_stream=True)
        self.streams[sid]["closed"] = True

    def grpc_headers(self, sid):
        s = self.streams[sid]
        if s["headers_sent"]:
            return
        s["headers_sent"] = True
        ctype = dict(s["headers"]).get("content-type", "application/grpc")
        # grpc-go's serverHandlerTransport.writeCommonHeaders
        self.conn.send_headers(sid, [(":status", "200"), ("content-type", ctype),
                                     ("trailer", "Grpc-Status"), ("trailer", "Grpc-Message"),
                                     ("trailer", "Grpc-Status-Details-Bin")])
        self.flush()

    async def grpc_send(self, sid, frame):
        s = self.streams.get(sid)
        if self.closed or s is None or s["closed"]:
            raise ConnectionError("the stream is gone")
        self.grpc_headers(sid)
        await self.send_data(sid, frame, end_stream=False)

    async def grpc_finish(self, sid, code, message, refusal):
        s = self.streams.get(sid)
        if self.closed or s is None or s["closed"]:
            return
        status = [("grpc-status", str(code))]
        if message:
            status.append(("grpc-message", grpc_percent_encode(message)))
        try:
            if refusal and self.orch.args.refusal == "trailers-only" and not s["headers_sent"]:
                ctype = dict(s["headers"]).get("content-type", "application/grpc")
                self.conn.send_headers(sid, [(":status", "200"), ("content-type", ctype)] + status, end_stream=True)
            else:
                self.grpc_headers(sid)
                self.conn.send_headers(sid, status, end_stream=True)
            s["closed"] = True
            self.flush()
            await self.writer.drain()
        except Exception as e:
            log(f"stream {sid}: the gRPC status could not be sent: {e}")

    async def grpc(self, sid, path, body):
        if len(body) < 5:
            return await self.grpc_finish(sid, 13, "grpc: error reading request: unexpected EOF", True)
        if body[0] != 0:
            return await self.grpc_finish(sid, 12, "grpc: Decompressor is not installed for grpc-encoding", True)
        n = int.from_bytes(body[1:5], "big")
        message = body[5:5 + n]
        if path != "/net.Transcoder/RegisterTranscoder":
            service, _, method = path.lstrip("/").partition("/")
            if service in ("net.Transcoder", "net.Orchestrator"):
                text = f"unknown method {method} for service {service}"
            else:
                text = f"unknown service {service}"
            return await self.grpc_finish(sid, 12, text, True)
        try:
            req = pb.RegisterRequest.FromString(message)
        except Exception as e:
            return await self.grpc_finish(sid, 13, f"grpc: error unmarshalling request: {e}", True)
        await self.orch.register(self, sid, req, self.peer)


# ---------------------------------------------------------------------------------------------
# HTTP/1.1: minimal (one request, Content-Length bodies, then close).


async def serve_http1(orch, reader, writer):
    import http.client
    import io

    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        line, _, rest = head.partition(b"\r\n")
        method, path, _version = line.decode("latin-1").split(" ", 2)
        msg = http.client.parse_headers(io.BytesIO(rest))
        headers = {k.lower(): v for k, v in reversed(msg.items())}
        if "chunked" in headers.get("transfer-encoding", "").lower():
            status, ctype, body = 411, "text/plain; charset=utf-8", b"this stand-in reads Content-Length bodies only\n"
        else:
            n = int(headers.get("content-length", "0") or 0)
            data = await reader.readexactly(n) if n else b""
            status, ctype, body = orch.http(method, path, headers, data, "1.1")
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 411: "Length Required",
                  415: "Unsupported Media Type", 500: "Internal Server Error"}.get(status, "Status")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, ValueError, ssl.SSLError) as e:
        log(f"HTTP/1.1: {type(e).__name__}: {e}")
    finally:
        writer.close()


# ---------------------------------------------------------------------------------------------
# TLS: a fresh self-signed certificate at every start (server/cert.go), made by openssl.


def tls_context(host):
    d = tempfile.mkdtemp(prefix="lp-orch-cert-")
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    san = f"IP:{host}" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", host) else f"DNS:{host}"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "365", "-subj", f"/CN={host}",
         "-addext", f"subjectAltName=DNS:{host},{san}" if san.startswith("IP:") else f"subjectAltName={san}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
         "-addext", "extendedKeyUsage=serverAuth"],
        check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # what Go's http.Server offers
    shutil.rmtree(d, ignore_errors=True)
    return ctx


# ---------------------------------------------------------------------------------------------
# The segments to send.


def build_plan(args):
    """Jobs: {segment, data, duration_ms, profiles, caps, seq}."""
    entries = []
    if args.plan:
        with open(args.plan) as f:
            entries = json.load(f)
        if not isinstance(entries, list):
            sys.exit("--plan: a JSON list of objects")
    else:
        for _ in range(args.repeat):
            entries += [{"segment": s} for s in args.segment]
    if not entries:
        sys.exit("nothing to send: give --segment FILE (or --plan FILE)")
    default_profiles = json.loads(args.profiles) if args.profiles else DEFAULT_PROFILES
    jobs, seq, cache = [], args.first_seq, {}
    for e in entries:
        path = e["segment"]
        if path not in cache:
            cache[path] = Path(path).read_bytes()
        profiles = video_profiles(e.get("profiles", default_profiles))
        caps = e.get("job_caps")
        if caps is None and args.job_caps:
            caps = [int(c) for c in args.job_caps.split(",") if c.strip()]
        params = e.get("segment_parameters")
        if caps is None:
            caps = job_capabilities(profiles, sliced=params is not None)
        seq = e.get("seq", seq)
        jobs.append({"segment": path, "data": cache[path], "duration_ms": int(e.get("duration_ms", args.duration_ms)),
                     "profiles": profiles, "caps": sorted(caps), "seq": seq, "segment_parameters": params,
                     "force_session_reinit": bool(e.get("force_session_reinit", False))})
        seq += 1
    return jobs


def auth_token(session):
    return pb.AuthToken(token=rand.token_bytes(32), session_id=session, expiration=int(time.time()) + AUTH_TOKEN_VALID_S)


async def drive(orch, jobs):
    args = orch.args
    until = orch.start + args.deadline_s
    if not await orch.wait_for_link(until):
        return 2, f"no transcoder registered (with the right secret and a capacity) within {args.deadline_s} s"
    if args.hold_registration_ms:
        await asyncio.sleep(args.hold_registration_ms / 1000)
    base = rand.token_hex(4)  # core.RandomManifestID
    if args.concurrent:
        # One session per segment (several streams at once), all notified together.
        sessions = [f"{base}{i:02x}" if len(jobs) > 1 else base for i in range(len(jobs))]
        tokens = [auth_token(s) for s in sessions]
        tasks = await asyncio.gather(*(orch.transcode(j, s, t, until) for j, s, t in zip(jobs, sessions, tokens)))
    else:
        sessions = [base]
        token = auth_token(base)
        tasks = []
        for j in jobs:
            t = await orch.transcode(j, base, token, until)
            tasks.append(t)
            if t is None:
                break
    for s in sessions:
        await orch.end_session(s)
    if any(t is None for t in tasks):
        return 4, f"no transcoder to send a segment to before the deadline ({args.deadline_s} s)"
    if args.expect_redial:
        while len([r for r in orch.registrations if r.refused is None]) < 2:
            orch.link_added.clear()
            left = until - time.monotonic()
            if left <= 0:
                return 3, "--expect-redial: the dropped transcoder did not register again before the deadline"
            try:
                await asyncio.wait_for(orch.link_added.wait(), left)
            except asyncio.TimeoutError:
                pass
    # Linger for results after their deadline (go-livepeer answers and drops them).
    linger_until = time.monotonic() + args.linger_ms / 1000
    while time.monotonic() < linger_until:
        if all(not t.late or t.record["late_result"] for t in tasks if t):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(args.settle_ms / 1000)
    return 0, None


async def amain(args):
    jobs = build_plan(args)
    orch = Orchestrator(args)
    ctx = tls_context(args.service_host)

    async def on_conn(reader, writer):
        ssl_obj = writer.get_extra_info("ssl_object")
        alpn = ssl_obj.selected_alpn_protocol() if ssl_obj else None
        try:
            if alpn == "h2":
                await H2Conn(orch, reader, writer).run()
            else:
                await serve_http1(orch, reader, writer)
        except asyncio.CancelledError:  # the server is shutting down
            writer.close()

    server = await asyncio.start_server(on_conn, args.host, args.port, ssl=ctx)
    orch.port = server.sockets[0].getsockname()[1]
    print(f"listening {orch.port}", flush=True)
    log(f"listening on {args.host}:{orch.port}; {len(jobs)} segments; secret {args.secret!r}")
    orch.write_report()
    rc, message = await drive(orch, jobs)
    orch.done = True
    orch.exit_message = message
    orch.write_report()
    if message:
        log(message)
        print(f"orchestrator.py: {message}", file=sys.stderr, flush=True)
    else:
        log(f"done: report in {args.report}")
    server.close()
    return rc


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--secret", required=True, help="the orchestrator's -orchSecret")
    p.add_argument("--segment", action="append", default=[], help="an input segment (MPEG-TS file); repeatable")
    p.add_argument("--repeat", type=int, default=1, help="send the --segment list this many times (seq increasing)")
    p.add_argument("--plan", help="JSON list of {segment, duration_ms?, profiles?, job_caps?, seq?, "
                   "segment_parameters?: {from, to} (ms), force_session_reinit?} instead of --segment")
    p.add_argument("--duration-ms", type=int, default=2000, help="SegData.duration of each segment (ms)")
    p.add_argument("--profiles", help="the ladder: JSON list of VideoProfile objects (proto JSON names); "
                   "default P240p30fps16x9,P360p30fps16x9")
    p.add_argument("--job-caps", help="comma-separated capability ids to require instead of the job's own "
                   "(core.JobCapabilities of the ladder)")
    p.add_argument("--min-timeout-ms", type=int, default=HTTP_TIMEOUT_MS,
                   help="the shortest wait for a result (go-livepeer: common.HTTPTimeout, 8000)")
    p.add_argument("--concurrent", action="store_true",
                   help="notify every segment at once, one session each (capacity permitting, as go-livepeer)")
    p.add_argument("--expect-redial", action="store_true",
                   help="after a dropped link, wait for the transcoder to register again (else exit 3)")
    p.add_argument("--hold-registration-ms", type=int, default=0,
                   help="wait this long after the first registration before the first notify")
    p.add_argument("--refusal", choices=["go", "trailers-only"], default="go",
                   help="how a refused registration is answered: go = response headers then trailers "
                   "(grpc-go behind net/http, as go-livepeer), trailers-only = one HEADERS frame")
    p.add_argument("--first-task-id", type=int, default=0, help="go-livepeer's task counter starts at 0")
    p.add_argument("--first-seq", type=int, default=0)
    p.add_argument("--manifest-id", default="zerohop-livepeer-test")
    p.add_argument("--orch-id", default="offchain")
    p.add_argument("--report", help="write the JSON report here (and parts to REPORT.parts/)")
    p.add_argument("--deadline-s", type=float, default=120, help="give up (exit 2/3/4) after this long")
    p.add_argument("--linger-ms", type=int, default=3000,
                   help="after the last segment, wait up to this long for results that came after their deadline")
    p.add_argument("--settle-ms", type=int, default=200, help="a last pause before the report")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--service-host", default="127.0.0.1", help="host in the segment URLs (the serviceAddr)")
    p.add_argument("--stubs", default=str(ROOT / "target" / "livepeer-stubs"), help="where lp_rpc_pb2.py is")
    args = p.parse_args()

    global pb
    sys.path.insert(0, args.stubs)
    try:
        import lp_rpc_pb2
    except ImportError as e:
        sys.exit(f"orchestrator.py: cannot import lp_rpc_pb2 from {args.stubs} ({e}); run control/tests/livepeer/setup.sh")
    pb = lp_rpc_pb2
    try:
        rc = asyncio.run(amain(args))
    except KeyboardInterrupt:
        rc = 130
    sys.exit(rc)


if __name__ == "__main__":
    main()
