#!/usr/bin/env python3
"""Run an API-format workflow on a running ComfyUI, follow its progress, download its outputs.
Standard library only.

    python workflows/run_api.py workflows/api/pfvg_long_video_embedded.json \\
        --server 127.0.0.1:8188 --upload demo/start.png:pfvg_start.png --out outputs/

``--set NODE.INPUT=VALUE`` overrides an input (JSON value, e.g. --set 4.seconds=10).
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
        return b0 & 0x0F, data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow")
    ap.add_argument("--server", default="127.0.0.1:8188")
    ap.add_argument("--upload", action="append", default=[], metavar="LOCAL[:NAME]", help="upload an input image first")
    ap.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=JSON")
    ap.add_argument("--out", default="outputs")
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
    while True:
        op, data = ws.recv()
        if op != 1:
            continue  # binary previews
        msg = json.loads(data)
        d = msg.get("data", {})
        if d.get("prompt_id") not in (None, pid):
            continue
        kind = msg["type"]
        if kind == "progress":
            print(f"\r[{time.time() - t0:6.1f}s] node {d['node']}: {d['value']}/{d['max']}", end="", file=sys.stderr)
        elif kind == "pfvg.progress":
            print(f"\n  {d}", file=sys.stderr)
        elif kind == "execution_error":
            print(f"\nerror in node {d.get('node_id')} ({d.get('node_type')}): {d.get('exception_message')}", file=sys.stderr)
            return 1
        elif kind == "executing" and d.get("node") is None:
            break
        elif kind == "execution_success":
            break
    print(f"\ndone in {time.time() - t0:.1f}s", file=sys.stderr)
    hist = json.loads(http(a.server, f"/history/{pid}"))[pid]
    os.makedirs(a.out, exist_ok=True)
    for nid, out in hist.get("outputs", {}).items():
        for key in ("images", "gifs", "videos", "animated"):
            for item in out.get(key, []) if isinstance(out.get(key), list) else []:
                if not isinstance(item, dict) or "filename" not in item:
                    continue
                q = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""), "type": item.get("type", "output")})
                path = os.path.join(a.out, item["filename"])
                with open(path, "wb") as f:
                    f.write(http(a.server, f"/view?{q}"))
                print(path)
        if "text" in out:
            print(f"node {nid} text: {out['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
