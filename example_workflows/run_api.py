#!/usr/bin/env python3
"""Run an API-format workflow on a running ComfyUI, follow its progress, download its outputs.
Standard library only.

    python example_workflows/run_api.py example_workflows/api/pfvg_long_video_embedded.json \\
        --server 127.0.0.1:8188 --upload demo/start.png:pfvg_start.png --out outputs/

``--set NODE.INPUT=VALUE`` overrides an input (JSON value, e.g. --set 4.seconds=10).

Only this job's events are shown (those carrying its prompt id); after the job ends the client
waits (bounded, ``--history-timeout``) for its history entry before downloading, and writes each
output through a temporary file and a rename.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


def http(server: str, path: str, data: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(f"http://{server}{path}", data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def upload(server: str, local: str, name: str) -> None:
    boundary = uuid.uuid4().hex
    with open(local, "rb") as f:
        payload = f.read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + payload + \
           f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n--{boundary}--\r\n".encode()
    http(server, "/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


class WebSocket:
    """A minimal RFC 6455 client: text frames in, nothing out but the handshake."""

    def __init__(self, server: str, path: str):
        host, _, port = server.partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=600)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake failed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode(errors="replace"))

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("websocket closed")
            buf += chunk
        return buf

    def recv(self) -> tuple[int, bytes]:
        """One frame: (opcode, payload). Raises ConnectionError when the server closes."""
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._exact(8))[0]
        mask = self._exact(4) if b1 & 0x80 else None
        data = self._exact(n)
        if mask:
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        if b0 & 0x0F == 8:
            raise ConnectionError("websocket closed by the server")
        return b0 & 0x0F, data


def wait_history(server: str, pid: str, timeout: float) -> dict:
    """The job's /history entry, polled until it appears (a busy server writes it after the
    success event) or ``timeout`` seconds pass."""
    deadline = time.time() + timeout
    delay = 0.1
    while True:
        try:
            hist = json.loads(http(server, f"/history/{urllib.parse.quote(pid)}"))
        except (urllib.error.URLError, OSError, json.JSONDecodeError):
            hist = {}
        if isinstance(hist, dict) and pid in hist:
            return hist[pid]
        if time.time() >= deadline:
            raise TimeoutError(f"no history entry for prompt {pid} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(1.0, delay * 2)


def download(server: str, item: dict, out: str) -> str:
    """Save one output file under ``out`` (its base name only: no path from the server escapes ``out``)."""
    name = os.path.basename(str(item["filename"]).replace("\\", "/"))
    if name in ("", ".", ".."):
        raise ValueError(f"bad output file name {item['filename']!r}")
    q = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""), "type": item.get("type", "output")})
    data = http(server, f"/view?{q}")
    path = os.path.join(out, name)
    tmp = os.path.join(out, f".tmp-{os.getpid()}-{name}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow")
    ap.add_argument("--server", default="127.0.0.1:8188")
    ap.add_argument("--upload", action="append", default=[], metavar="LOCAL[:NAME]", help="upload an input image first")
    ap.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=JSON")
    ap.add_argument("--out", default="outputs")
    ap.add_argument("--history-timeout", type=float, default=120.0, metavar="S",
                    help="seconds to wait for the job's history entry after it ends")
    a = ap.parse_args(argv)
    with open(a.workflow) as f:
        wf = json.load(f)
    for s in a.set:
        key, _, val = s.partition("=")
        nid, _, inp = key.partition(".")
        if nid not in wf:
            print(f"--set {s}: no node {nid}", file=sys.stderr)
            return 2
        try:
            wf[nid]["inputs"][inp] = json.loads(val)
        except json.JSONDecodeError:
            wf[nid]["inputs"][inp] = val
    for u in a.upload:
        local, _, name = u.partition(":")
        upload(a.server, local, name or os.path.basename(local))
    client = uuid.uuid4().hex
    ws = WebSocket(a.server, f"/ws?clientId={client}")
    try:
        resp = json.loads(http(a.server, "/prompt", json.dumps({"prompt": wf, "client_id": client}).encode(),
                               {"Content-Type": "application/json"}))
    except urllib.error.HTTPError as e:
        print(f"rejected: {e.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    pid = resp["prompt_id"]
    print(f"queued {pid}", file=sys.stderr)
    t0 = time.time()
    ended = False
    try:
        while True:
            op, data = ws.recv()
            if op != 1:
                continue  # binary previews, pings
            msg = json.loads(data)
            d = msg.get("data")
            if not isinstance(d, dict) or d.get("prompt_id") != pid:
                continue  # another job's event (or a broadcast without a prompt id)
            kind = msg.get("type")
            if kind == "progress":
                print(f"\r[{time.time() - t0:6.1f}s] node {d.get('node')}: {d.get('value')}/{d.get('max')}", end="", file=sys.stderr)
            elif kind == "pfvg.progress":
                print(f"\n  {d}", file=sys.stderr)
            elif kind == "execution_error":
                print(f"\nerror in node {d.get('node_id')} ({d.get('node_type')}): {d.get('exception_message')}", file=sys.stderr)
                return 1
            elif kind == "execution_interrupted":
                print("\ninterrupted", file=sys.stderr)
                return 1
            elif kind == "execution_success" or (kind == "executing" and d.get("node") is None):
                ended = True
                break
    except (ConnectionError, OSError) as e:  # the socket went away: the history says how the job ended
        print(f"\n({e}; reading the job's history instead)", file=sys.stderr)
    try:
        hist = wait_history(a.server, pid, a.history_timeout)
    except TimeoutError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    status = hist.get("status", {}) if isinstance(hist.get("status"), dict) else {}
    if status.get("status_str") == "error" or (not ended and status.get("completed") is False):
        print(f"\nerror: the job did not succeed ({status.get('status_str', 'unknown')})", file=sys.stderr)
        return 1
    print(f"\ndone in {time.time() - t0:.1f}s", file=sys.stderr)
    os.makedirs(a.out, exist_ok=True)
    for nid, out in hist.get("outputs", {}).items():
        for key in ("images", "gifs", "videos", "animated"):
            for item in out.get(key, []) if isinstance(out.get(key), list) else []:
                if not isinstance(item, dict) or "filename" not in item:
                    continue
                print(download(a.server, item, a.out))
        if "text" in out:
            print(f"node {nid} text: {out['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
