"""The headless client against a fake busy ComfyUI: other jobs' events are ignored, the history
entry is waited for (it appears after the success event), outputs stay inside --out."""
import importlib.util
import json
import os
import queue
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("run_api", os.path.join(HERE, "..", "example_workflows", "run_api.py"))
run_api = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_api)

PID = "our-prompt"


def frame(obj) -> bytes:
    data = json.dumps(obj).encode()
    n = len(data)
    head = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + struct.pack(">H", n)
    return head + data


class FakeComfy:
    """/ws streams queued events; /prompt queues the job; /history answers {} ``history_misses`` times."""

    def __init__(self, events, history_misses=3, history=None):
        self.events, self.misses = events, history_misses
        self.history = history or {"status": {"status_str": "success", "completed": True},
                                   "outputs": {"9": {"images": [{"filename": "../../evil/v.webp", "subfolder": "", "type": "output"}]}}}
        self.ws_queue: queue.Queue = queue.Queue()
        self.history_calls = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.startswith("/ws"):
                    self.send_response(101, "Switching Protocols")
                    self.send_header("Upgrade", "websocket")
                    self.send_header("Connection", "Upgrade")
                    self.end_headers()
                    self.wfile.flush()
                    while True:
                        item = fake.ws_queue.get()
                        if item is None:
                            return
                        self.wfile.write(item)
                        self.wfile.flush()
                elif self.path.startswith("/history/"):
                    fake.history_calls += 1
                    body = {} if fake.history_calls <= fake.misses else {PID: fake.history}
                    self._send(json.dumps(body).encode())
                elif self.path.startswith("/view"):
                    self._send(b"VIDEO-BYTES")
                else:
                    self.send_error(404)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                for e in fake.events:
                    fake.ws_queue.put(frame(e))
                self._send(json.dumps({"prompt_id": PID}).encode())

            def _send(self, body):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.ws_queue.put(None)
        self.server.shutdown()


@pytest.fixture
def workflow(tmp_path):
    p = tmp_path / "wf.json"
    p.write_text(json.dumps({"1": {"class_type": "X", "inputs": {}}}))
    return str(p)


BUSY = [
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}}},
    {"type": "progress", "data": {"node": "4", "value": 7, "max": 9, "prompt_id": "someone-else"}},
    {"type": "pfvg.progress", "data": {"node": "4", "segment": 3, "segments": 8}},  # no prompt id: not ours
    {"type": "pfvg.progress", "data": {"node": "4", "segment": 5, "segments": 8, "prompt_id": "someone-else"}},
    {"type": "execution_error", "data": {"prompt_id": "someone-else", "node_id": "4", "exception_message": "theirs"}},
    {"type": "progress", "data": {"node": "4", "value": 1, "max": 2, "prompt_id": PID}},
    {"type": "pfvg.progress", "data": {"node": "4", "segment": 1, "segments": 2, "prompt_id": PID}},
    {"type": "execution_success", "data": {"prompt_id": PID}},
]


def test_waits_for_history_ignores_other_jobs_and_keeps_outputs_inside_out(tmp_path, workflow, capsys):
    fake = FakeComfy(BUSY, history_misses=3)
    try:
        rc = run_api.main([workflow, "--server", fake.address, "--out", str(tmp_path / "out"), "--history-timeout", "20"])
    finally:
        fake.close()
    err = capsys.readouterr().err
    assert rc == 0, err
    assert fake.history_calls == 4  # three misses, then the entry
    assert (tmp_path / "out" / "v.webp").read_bytes() == b"VIDEO-BYTES"
    assert not (tmp_path / "evil").exists()
    assert "theirs" not in err and "someone-else" not in err and "'segment': 3" not in err
    assert "'segment': 1" in err and "1/2" in err
    assert not [f for f in os.listdir(tmp_path / "out") if f.startswith(".tmp-")]


def test_missing_history_is_a_clear_bounded_error(tmp_path, workflow, capsys):
    fake = FakeComfy(BUSY, history_misses=10**6)
    try:
        rc = run_api.main([workflow, "--server", fake.address, "--out", str(tmp_path / "out"), "--history-timeout", "0.5"])
    finally:
        fake.close()
    assert rc == 1 and "no history entry" in capsys.readouterr().err


def test_our_error_is_reported(tmp_path, workflow, capsys):
    events = BUSY[:-1] + [{"type": "execution_error", "data": {"prompt_id": PID, "node_id": "4", "node_type": "T",
                                                               "exception_message": "ours failed"}}]
    fake = FakeComfy(events)
    try:
        rc = run_api.main([workflow, "--server", fake.address, "--out", str(tmp_path / "out")])
    finally:
        fake.close()
    err = capsys.readouterr().err
    assert rc == 1 and "ours failed" in err and "theirs" not in err
