// PFVG frontend extension: live state of the Long Video Loop and Direct Forcing Train nodes
// (segments, seconds, memory size / training step and loss) from their "pfvg.progress" events,
// a visible "done" (or "stopped" / "error") when the job ends, and the latest preview kept on the node.
//
// Only this tab's jobs are drawn: ComfyUI sends "execution_start" to the client that queued a
// prompt, so its prompt ids are ours; an event carrying another prompt id is ignored.
// The end of a job is read from "executing" (node null) / "execution_success": ComfyUI does not call
// onExecuted for nodes without UI output, which these are.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const LOOP = "PFVGLongVideoLoop";
const TRAIN = "PFVGDirectForcingTrain";
const PFVG = new Set([LOOP, TRAIN]);
const LINE = 20; // px: the height of the status line, a widget of its own under the node's other widgets
const STATUS = "pfvg_status";

function statusText(d) {
  if (d.train_step !== undefined) return `step ${d.train_step} · loss ${d.loss === null ? "not finite" : Number(d.loss).toFixed(4)}`;
  const secs = Number(d.seconds || 0).toFixed(1);
  return `segment ${d.segment}/${d.segments} · ${secs} s · ψ ${d.memory_tokens} tokens · history ${d.history_frames} frames`;
}

function nodeFor(id) {
  return id === undefined || id === null ? null : app.graph?.getNodeById(Number(id));
}

function redraw(node) {
  if (node?.setDirtyCanvas) node.setDirtyCanvas(true, true);
  else app.graph?.setDirtyCanvas?.(true, true);
}

function statusLine(node) {
  const prefix = { done: "done", stopped: "stopped", error: "error" }[node.pfvgState];
  return prefix ? (node.pfvgStatus ? `${prefix} · ${node.pfvgStatus}` : prefix) : node.pfvgStatus;
}

// The status line is a widget of its own (not saved with the workflow): ComfyUI lays its widgets out one
// under another; its image preview (with the size label under it) is a widget too ("$$canvas-image-preview"),
// so the status line is kept above that one and never overlaps anything ComfyUI draws. Added when the node is
// created (and, for a node made before this extension ran, on its first event); the node grows to hold it.
function makeRoom(node) {
  if (node.widgets?.some((w) => w.name === STATUS) || !node.addCustomWidget) return;
  const widget = node.addCustomWidget({
    name: STATUS,
    type: STATUS,
    value: "",
    serialize: false,
    options: { serialize: false },
    computeSize: (width) => [width, LINE],
    draw(ctx, n, width, y) {
      const text = statusLine(n);
      if (!text) return;
      ctx.save();
      ctx.font = "12px sans-serif";
      ctx.fillStyle = { done: "#8d8", error: "#f88", stopped: "#fc8" }[n.pfvgState] ?? "#9cf";
      ctx.fillText(text, 12, y + LINE - 6, Math.max(10, width - 24));
      ctx.restore();
    },
  });
  const widgets = node.widgets ?? [];
  const preview = widgets.findIndex((w) => typeof w.name === "string" && w.name.startsWith("$$"));
  if (preview > -1 && preview < widgets.indexOf(widget)) {  // ComfyUI's preview came first: go above it
    widgets.splice(widgets.indexOf(widget), 1);
    widgets.splice(preview, 0, widget);
  }
  const min = node.computeSize ? node.computeSize() : node.size;
  if (node.size && node.size[1] < min[1]) node.setSize?.([Math.max(node.size[0], min[0]), min[1]]);
}

// Evaluate Drift: show its text report on the node after it runs (the node also returns it as a STRING
// output, e.g. for ComfyUI's Preview Any).
const DRIFT = "PFVGEvaluateDrift";
const REPORT = "pfvg_report";

function addDriftReport(nodeType) {
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (message) {
    const r = onExecuted?.apply(this, arguments);
    const text = (message?.text || []).join("\n");
    let w = this.widgets?.find((x) => x.name === REPORT);
    if (!w) {
      const el = document.createElement("textarea");
      el.readOnly = true;
      el.style.cssText = "width:100%;height:100%;font:11px monospace;opacity:0.85;resize:none;";
      w = this.addDOMWidget(REPORT, "pfvg_report", el, {
        serialize: false, // a display, not an input: not saved in the workflow
        getValue: () => el.value,
        setValue: (v) => { el.value = v; },
      });
      w.serialize = false;
      w.pfvgEl = el;
    }
    w.pfvgEl.value = text;
    const size = this.computeSize();
    this.setSize([Math.max(this.size[0], size[0], 320), Math.max(this.size[1], size[1] + 140)]);
    app.graph.setDirtyCanvas(true, true);
    return r;
  };
}

app.registerExtension({
  name: "pfvg.longvideo",
  setup() {
    const mine = new Set(); // prompt ids this tab queued (execution_start is addressed to us)
    const touched = new Map(); // prompt id → PFVG nodes that ran in it
    let running = null;
    let runningPrompt = null;
    let current = null; // our prompt being executed (the frontend's "executing" detail may be a bare node id)

    // the server addresses pfvg.progress to the queuing client with its prompt id; anything else is not ours
    const ours = (d) => d?.prompt_id !== undefined && d?.prompt_id !== null && mine.has(d.prompt_id);

    const finish = (pid, state) => {
      for (const node of touched.get(pid) ?? []) {
        node.pfvgState = state;
        redraw(node);
      }
      touched.delete(pid);
      if (runningPrompt === pid) running = runningPrompt = null;
    };

    api.addEventListener("execution_start", (e) => {
      const pid = e.detail?.prompt_id;
      if (pid === undefined) return;
      mine.add(pid);
      touched.set(pid, []);
      current = pid;
    });
    api.addEventListener("executing", (e) => {
      const d = e.detail;
      const id = d && typeof d === "object" ? d.node : d;
      // ComfyUI sends "executing" to the queuing client only; without a prompt id it is the current one
      const pid = (d && typeof d === "object" ? d.prompt_id : undefined) ?? current ?? undefined;
      if (pid !== undefined && !mine.has(pid)) return;
      if (id === null || id === undefined) {
        if (pid !== undefined) finish(pid, "done");
        return;
      }
      running = nodeFor(id);
      runningPrompt = pid ?? null;
      if (running && PFVG.has(running.type)) {
        running.pfvgState = "running";
        if (pid !== undefined && !touched.get(pid)?.includes(running)) touched.get(pid)?.push(running);
        redraw(running);
      }
    });
    api.addEventListener("execution_success", (e) => {
      const pid = e.detail?.prompt_id;
      if (mine.has(pid)) finish(pid, "done");
    });
    api.addEventListener("execution_interrupted", (e) => {
      const pid = e.detail?.prompt_id;
      if (mine.has(pid)) finish(pid, "stopped");
    });
    api.addEventListener("execution_error", (e) => {
      const pid = e.detail?.prompt_id;
      if (mine.has(pid)) finish(pid, "error");
    });
    api.addEventListener("pfvg.progress", (e) => {
      if (!ours(e.detail)) return;
      const node = nodeFor(e.detail?.node);
      if (!node) return;
      node.pfvgStatus = statusText(e.detail);
      node.pfvgState = "running";
      makeRoom(node);
      redraw(node);
    });
    api.addEventListener("b_preview", (e) => {
      // keep the latest preview of a PFVG node after the run ends
      if (!running || !PFVG.has(running.type)) return;
      const node = running;
      if (node.pfvgPreviewUrl) URL.revokeObjectURL(node.pfvgPreviewUrl);
      node.pfvgPreviewUrl = URL.createObjectURL(e.detail);
      const img = new Image();
      img.onload = () => { node.pfvgPreview = img; redraw(node); };
      img.src = node.pfvgPreviewUrl;
    });
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === DRIFT) return addDriftReport(nodeType);
    if (!PFVG.has(nodeData.name)) return;
    const onCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onCreated?.apply(this, arguments);
      makeRoom(this);
      return r;
    };
    const onDraw = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const r = onDraw?.apply(this, arguments);
      if (this.flags?.collapsed) return r;
      // the latest preview, kept after the run, when ComfyUI shows no image of its own on the node
      const showOwn = this.pfvgPreview && !(this.imgs && this.imgs.length);
      if (showOwn) {
        const w = this.size[0] - 16, h = Math.min(w, 160);
        const y = this.size[1] - h - 4;
        if (y > 40) ctx.drawImage(this.pfvgPreview, 8, y, w, h);
      }
      return r;
    };
  },
});
