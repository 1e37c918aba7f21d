"""web/pfvg.js: the status line is drawn below the title, "done" shows after a job without UI
output, and another job's events are not drawn. Run under Node with stub ComfyUI modules where
Node is installed; the listener and drawing contracts are also checked in the source."""
import json
import os
import re
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
JS = os.path.join(HERE, "..", "web", "pfvg.js")

STUB = """
export const app = globalThis.__pfvg.app;
"""
API = """
export const api = globalThis.__pfvg.api;
"""
HARNESS = r"""
const api = new EventTarget();
let ext = null;
const nodes = new Map();
const app = {
  registerExtension: (e) => { ext = e; },
  graph: { getNodeById: (id) => nodes.get(id) ?? null, setDirtyCanvas() {} },
};
globalThis.__pfvg = { app, api };
await import("./extensions/pfvg/pfvg.js");
const proto = {};
const nodeType = { prototype: proto };
await ext.beforeRegisterNodeDef(nodeType, { name: "PFVGLongVideoLoop" });
ext.setup();
function makeNode(id) {
  const n = Object.create(proto);
  // widgets laid out as ComfyUI does: one under another from y = 10, each computeSize()[1] (or 20) high;
  // an image preview (and its size label) would start below the last widget
  Object.assign(n, { id, type: "PFVGLongVideoLoop", size: [300, 120], flags: {},
    widgets: [{ name: "seed", value: 0 }, { name: "seconds", value: 10 }],
    addCustomWidget(w) { this.widgets.push(w); return w; },
    computeSize() { return [300, 10 + this.widgets.reduce((h, w) => h + (w.computeSize ? w.computeSize(300)[1] : 20) + 4, 0)]; },
    setSize(s) { this.size = s; }, setDirtyCanvas() {} });
  nodes.set(id, n);
  return n;
}
function draw(n) {
  const calls = [];
  const ctx = { save() {}, restore() {}, drawImage() {}, fillText: (t, x, y) => calls.push({ t, x, y }) };
  n.onDrawForeground(ctx);
  let y = 10;
  for (const w of n.widgets) {
    const h = w.computeSize ? w.computeSize(n.size[0])[1] : 20;
    if (w.draw) w.draw(ctx, n, n.size[0], y, h);
    w.top = y;
    y += h + 4;
  }
  n.widgetsBottom = y;
  return calls;
}
const send = (type, detail) => api.dispatchEvent(new CustomEvent(type, { detail }));
const a = makeNode(4);
const out = {};
send("execution_start", { prompt_id: "mine" });
send("executing", { node: "4", prompt_id: "mine" });
send("pfvg.progress", { node: "4", prompt_id: "mine", segment: 1, segments: 2, seconds: 1, memory_tokens: 16, history_frames: 9 });
out.running = draw(a);
send("pfvg.progress", { node: "4", prompt_id: "theirs", segment: 7, segments: 9, seconds: 5, memory_tokens: 16, history_frames: 9 });
send("pfvg.progress", { node: "4", segment: 8, segments: 9, seconds: 6, memory_tokens: 16, history_frames: 9 });
out.afterOther = draw(a);
send("execution_success", { prompt_id: "mine" });
out.done = draw(a);
// the frontend's "executing" detail can be a bare node id: "done" still shows at the end
// a node whose ComfyUI image preview widget came before the status line: the line goes above it
const b = makeNode(5);
b.widgets.push({ name: "$$canvas-image-preview", computeSize: (w) => [w, 200] });
send("execution_start", { prompt_id: "second" });
send("executing", "5");
send("pfvg.progress", { node: "5", prompt_id: "second", train_step: 3, loss: 0.5 });
send("executing", null);
send("execution_success", { prompt_id: "second" });
out.bare = draw(b);
out.bareWidgets = b.widgets.map((w) => w.name);
const c = makeNode(6);
c.onNodeCreated();
out.created = c.widgets.map((w) => w.name);
out.height = a.size[1];
out.widgets = a.widgets.map((w) => ({ name: w.name, serialize: w.serialize, top: w.top }));
out.widgetsBottom = a.widgetsBottom;
console.log(JSON.stringify(out));
"""


def test_status_below_title_done_shown_other_jobs_ignored(tmp_path):
    src = open(JS).read()
    for event in ("execution_start", "executing", "execution_success", "execution_error", "execution_interrupted", "pfvg.progress"):
        assert f'addEventListener("{event}"' in src, event
    assert "prompt_id" in src
    assert not re.search(r"fillText\([^)]*,\s*-\d", src), "status drawn at a negative y (over the title)"
    node = shutil.which("node")
    if node is None:  # the behaviour below needs Node; the source contract above still holds
        return
    (tmp_path / "scripts").mkdir()
    (tmp_path / "extensions" / "pfvg").mkdir(parents=True)
    (tmp_path / "scripts" / "app.js").write_text(STUB)
    (tmp_path / "scripts" / "api.js").write_text(API)
    shutil.copy(JS, tmp_path / "extensions" / "pfvg" / "pfvg.js")
    (tmp_path / "harness.mjs").write_text(HARNESS)
    r = subprocess.run([node, str(tmp_path / "harness.mjs")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    (line,) = out["running"]
    assert line["t"].startswith("segment 1/2") and line["y"] > 0  # inside the node body, under the title bar
    status = out["widgets"][-1]
    assert status["name"] == "pfvg_status" and status["serialize"] is False  # a widget of its own, not saved
    # drawn inside its own widget row: below the other widgets, above where ComfyUI's previews start
    assert status["top"] < line["y"] <= out["widgetsBottom"] and out["widgets"][1]["top"] < status["top"]
    assert out["height"] >= out["widgetsBottom"]  # the node grew to hold the line
    assert out["afterOther"][0]["t"].startswith("segment 1/2")  # another prompt's (or an unaddressed) event changed nothing
    assert out["done"][0]["t"].startswith("done · segment 1/2")
    # above ComfyUI's image preview (whose size label sits under the image), and there from the node's creation
    assert out["bareWidgets"][-2:] == ["pfvg_status", "$$canvas-image-preview"]
    assert out["created"][-1] == "pfvg_status"
    assert out["bare"][0]["t"] == "done · step 3 · loss 0.5000"
