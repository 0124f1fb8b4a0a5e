#!/usr/bin/env python3
"""A stand-in for a go-livepeer GATEWAY (broadcaster), offchain, for zerohop's tests.

It behaves as go-livepeer's gateway does against an orchestrator (server/rpc.go
GetOrchestratorInfo, server/segment_rpc.go SubmitSegment, server/broadcast.go downloadResults),
with go-livepeer's own generated messages (lp_rpc_pb2 from the livepeer-gateway wheel, which
zerohop did not write):

  1. GetOrchestrator over gRPC (HTTP/2, TLS, no certificate check): the answer must come within
     the discovery timeout (500 ms), name a transcoder URL, carry an auth token, and advertise
     capabilities that the job's are a subset of (go-livepeer's CompatibleWith).
  2. Per segment, POST {transcoder}/segment with Livepeer-Segment (base64 SegData whose hash is
     the Keccak-256 of the body), an empty Livepeer-Payment, Content-Type video/MP2T. The trap:
     the gateway gives up when the response headers take longer than max(2 s, duration / 2).
     The body is a TranscodeResult: an error, or one URL and pixel count per rendition.
  3. Each rendition URL is fetched with a plain HTTP/1.1 GET (4 s), as downloadResults does.
  4. EndTranscodingSession with the session's token.

Prints nothing but errors; writes a JSON report (--report) and each rendition to
<report>.parts/<seq>_<index>.ts. Exit status 0 when it ran (whatever the orchestrator said).
"""
import argparse
import base64
import http.client
import json
import os
import socket
import ssl
import struct
import sys
import time
import urllib.parse

import h2.config
import h2.connection
import h2.events
from Crypto.Hash import keccak

import lp_rpc_pb2 as pb
from lpwire import bitstring, compatible, grpc_frame  # noqa: E402

# core/capabilities.go numbers.
CAP_H264, CAP_MPEGTS, CAP_GOP, CAP_AUTH_TOKEN = 0, 1, 11, 12
CAP_MP4, CAP_MPEG7, CAP_SLICING = 2, 14, 26
DISCOVERY_TIMEOUT = 0.5
DEFAULT_PROFILES = [
    dict(name="P240p30fps16x9", width=426, height=240, bitrate=600000, fps=30),
    dict(name="P360p30fps16x9", width=640, height=360, bitrate=1200000, fps=30),
]


def keccak256(data):
    k = keccak.new(digest_bits=256)
    k.update(data)
    return k.digest()


def grpc_unframe(data):
    flag, n = struct.unpack(">BI", data[:5])
    assert flag == 0, "compressed gRPC message"
    return data[5:5 + n]


class H2Client:
    """One HTTP/2 connection over TLS without certificate checks (go-livepeer's clients skip
    verification), requests one at a time."""

    def __init__(self, host, port):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        if self.sock.selected_alpn_protocol() != "h2":
            raise RuntimeError(f"ALPN gave {self.sock.selected_alpn_protocol()!r}, not h2")
        self.authority = f"{host}:{port}"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def request(self, method, path, headers, body=b"", headers_within=None):
        """Status, headers, body, trailers and the times (s) to the headers and to the end.
        With `headers_within`, gives up (returns status None) when the headers take longer."""
        start = time.monotonic()
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":authority", self.authority), (":path", path)] + headers
        self.conn.send_headers(sid, hdrs, end_stream=not body)
        self.flush()
        pending = memoryview(body)
        resp = dict(status=None, headers={}, body=bytearray(), trailers={}, t_headers=None, t_end=None)
        ended = False
        while not ended:
            while pending:
                window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                if window <= 0:
                    break
                piece, pending = pending[:window], pending[window:]
                self.conn.send_data(sid, bytes(piece), end_stream=not pending)
            self.flush()
            if headers_within is not None and resp["t_headers"] is None:
                left = headers_within - (time.monotonic() - start)
                if left <= 0:
                    self.conn.reset_stream(sid)
                    self.flush()
                    resp["gave_up_after"] = time.monotonic() - start
                    return resp
                self.sock.settimeout(left)
            else:
                self.sock.settimeout(30)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise RuntimeError("connection closed")
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    resp["headers"] = dict(ev.headers)
                    resp["status"] = int(resp["headers"][":status"])
                    resp["t_headers"] = time.monotonic() - start
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    resp["body"] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id == sid:
                    resp["trailers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    ended = True
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    raise RuntimeError(f"stream reset: {ev.error_code}")
            self.flush()
        resp["t_end"] = time.monotonic() - start
        resp["body"] = bytes(resp["body"])
        return resp

    def grpc(self, path, message, reply_type):
        r = self.request("POST", path, [("content-type", "application/grpc"), ("te", "trailers")], grpc_frame(message))
        status = r["trailers"].get("grpc-status", r["headers"].get("grpc-status"))
        if status != "0":
            msg = r["trailers"].get("grpc-message", r["headers"].get("grpc-message", ""))
            return None, f"gRPC status {status}: {urllib.parse.unquote(msg)}", r["t_end"]
        raw = grpc_unframe(r["body"])
        dump(f"{path.rsplit('/', 1)[-1]}-reply", raw)
        return reply_type.FromString(raw), None, r["t_end"]


DUMP = {"dir": None, "n": 0}


def dump(what, data):
    if DUMP["dir"]:
        os.makedirs(DUMP["dir"], exist_ok=True)
        with open(os.path.join(DUMP["dir"], f"{DUMP['n']:04}-{what}.bin"), "wb") as f:
            f.write(data)
        DUMP["n"] += 1


def fetch(url):
    """go-livepeer's DownloadData: a plain HTTP/1.1 GET, 4 s, status 200."""
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    c = http.client.HTTPSConnection(u.hostname, u.port, timeout=4, context=ctx)
    c.request("GET", u.path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orch", required=True, help="HOST:PORT")
    ap.add_argument("--segment", action="append", required=True)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--duration-ms", type=int, default=2000)
    ap.add_argument("--profiles", help="JSON list of VideoProfile fields (default: go-livepeer's default ladder)")
    ap.add_argument("--extra-cap", type=int, action="append", default=[], help="a capability the job also needs")
    ap.add_argument("--bad-hash", action="store_true", help="send a wrong hash")
    ap.add_argument("--forge-token", action="store_true", help="send a token the orchestrator did not issue")
    ap.add_argument("--report", required=True)
    ap.add_argument("--dump", help="write every message the orchestrator sent here (test vectors)")
    a = ap.parse_args()

    DUMP["dir"] = a.dump
    host, port = a.orch.rsplit(":", 1)
    profiles = json.loads(a.profiles) if a.profiles else DEFAULT_PROFILES
    job_caps = bitstring([CAP_H264, CAP_MPEGTS, CAP_AUTH_TOKEN] +
                         ([CAP_GOP] if any(p.get("gop", 0) for p in profiles) else []) + a.extra_cap)
    report = dict(segments=[])
    parts_dir = a.report + ".parts"
    os.makedirs(parts_dir, exist_ok=True)

    client = H2Client(host, int(port))
    req = pb.OrchestratorRequest(address=bytes(20), capabilities=pb.Capabilities(bitstring=job_caps))
    info, err, took = client.grpc("/net.Orchestrator/GetOrchestrator", req, pb.OrchestratorInfo)
    report["get_orchestrator"] = dict(error=err, seconds=took, within_discovery_timeout=took <= DISCOVERY_TIMEOUT)
    if info is None:
        json.dump(report, open(a.report, "w"), indent=1)
        return
    have = list(info.capabilities.bitstring) if info.HasField("capabilities") else None
    report["orchestrator"] = dict(
        transcoder=info.transcoder, has_auth_token=info.HasField("auth_token"),
        session_id=info.auth_token.session_id, capabilities=have,
        version=info.capabilities.version if have is not None else None,
        compatible=have is not None and compatible(job_caps, have))
    if not info.transcoder or not info.HasField("auth_token") or not report["orchestrator"]["compatible"]:
        report["discarded"] = "go-livepeer's discovery would not use this orchestrator"
        json.dump(report, open(a.report, "w"), indent=1)
        return

    auth = info.auth_token
    if a.forge_token:
        auth = pb.AuthToken(token=b"forged", session_id=auth.session_id, expiration=auth.expiration)
    seg_url = urllib.parse.urlsplit(info.transcoder)
    seg_client = client if f"{seg_url.hostname}:{seg_url.port}" == client.authority else H2Client(seg_url.hostname, seg_url.port)
    seq = 0
    for _ in range(a.repeat):
        for path in a.segment:
            data = open(path, "rb").read()
            seg = pb.SegData(manifestId=b"zerohop-test-stream", seq=seq,
                             hash=bytes(32) if a.bad_hash else keccak256(data),
                             duration=a.duration_ms, capabilities=pb.Capabilities(bitstring=job_caps),
                             auth_token=auth)
            for p in profiles:
                seg.fullProfiles.append(pb.VideoProfile(**p))
            headers = [("content-type", "video/MP2T"), ("livepeer-segment", base64.b64encode(seg.SerializeToString()).decode()),
                       ("livepeer-payment", "")]
            within = max(2.0, 0.5 * a.duration_ms / 1000)
            r = seg_client.request("POST", "/segment", headers, data, headers_within=within)
            entry = dict(seq=seq, input=os.path.basename(path), status=r["status"], headers_seconds=r["t_headers"],
                         end_seconds=r["t_end"], headers_within=within)
            if r["status"] is None:
                entry["gave_up"] = f"no response headers within {within} s"
            elif r["status"] != 200:
                entry["error"] = r["body"].decode(errors="replace").strip()
            else:
                dump("TranscodeResult", r["body"])
                res = pb.TranscodeResult.FromString(r["body"])
                entry["result_seq"] = res.seq
                entry["has_info"] = res.HasField("info")
                if res.WhichOneof("result") == "error":
                    entry["error"] = res.error
                elif res.WhichOneof("result") == "data":
                    entry["renditions"] = []
                    for i, s in enumerate(res.data.segments):
                        status, body = fetch(s.url)
                        f = os.path.join(parts_dir, f"{seq}_{i}.ts")
                        open(f, "wb").write(body)
                        entry["renditions"].append(dict(url=s.url, pixels=s.pixels, fetch_status=status,
                                                        length=len(body), file=f))
                else:
                    entry["error"] = "UnknownResponse"
            report["segments"].append(entry)
            seq += 1
    _, err, _ = client.grpc("/net.Orchestrator/EndTranscodingSession",
                            pb.EndTranscodingSessionRequest(auth_token=auth), pb.EndTranscodingSessionResponse)
    report["end_session_error"] = err
    if report["segments"] and report["segments"][-1].get("renditions"):
        status, _ = fetch(report["segments"][-1]["renditions"][0]["url"])
        report["fetch_after_end"] = status
    json.dump(report, open(a.report, "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
