// PFVG frontend extension: live state of the Long Video Loop (segments, seconds, memory size)
// from the node's "pfvg.progress" events, and the latest segment preview kept on the node.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const LOOP = "PFVGLongVideoLoop";
const TRAIN = "PFVGDirectForcingTrain";

function statusText(d) {
  if (d.train_step !== undefined) return `step ${d.train_step} · loss ${Number(d.loss).toFixed(4)}`;
  const secs = Number(d.seconds || 0).toFixed(1);
  return `segment ${d.segment}/${d.segments} · ${secs} s · ψ ${d.memory_tokens} tokens · history ${d.history_frames} frames`;
}

function nodeFor(id) {
  return id === undefined || id === null ? null : app.graph?.getNodeById(Number(id));
}

app.registerExtension({
  name: "pfvg.longvideo",
  setup() {
    let running = null;
    api.addEventListener("executing", (e) => {
      const id = e.detail?.node ?? e.detail;
      running = nodeFor(id);
    });
    api.addEventListener("pfvg.progress", (e) => {
      const node = nodeFor(e.detail?.node);
      if (!node) return;
      node.pfvgStatus = statusText(e.detail);
      node.setDirtyCanvas(true, true);
    });
    api.addEventListener("b_preview", (e) => {
      // keep the latest preview of a PFVG node after the run ends
      if (!running || (running.type !== LOOP && running.type !== TRAIN)) return;
      if (running.pfvgPreviewUrl) URL.revokeObjectURL(running.pfvgPreviewUrl);
      running.pfvgPreviewUrl = URL.createObjectURL(e.detail);
      const img = new Image();
      img.onload = () => { running && (running.pfvgPreview = img); app.graph.setDirtyCanvas(true); };
      img.src = running.pfvgPreviewUrl;
    });
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== LOOP && nodeData.name !== TRAIN) return;
    const onDraw = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const r = onDraw?.apply(this, arguments);
      if (this.flags?.collapsed) return r;
      if (this.pfvgStatus) {
        ctx.save();
        ctx.font = "12px sans-serif";
        ctx.fillStyle = "#9cf";
        ctx.fillText(this.pfvgStatus, 8, -8);
        ctx.restore();
      }
      const showOwn = this.pfvgPreview && !(this.imgs && this.imgs.length);
      if (showOwn) {
        const w = this.size[0] - 16, h = Math.min(w, 160);
        const y = this.size[1] - h - 8;
        if (y > 40) ctx.drawImage(this.pfvgPreview, 8, y, w, h);
      }
      return r;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function () {
      const r = onExecuted?.apply(this, arguments);
      if (this.pfvgStatus) this.pfvgStatus = "done · " + this.pfvgStatus;
      return r;
    };
  },
});

// Evaluate Drift: show its text report on the node after it runs (the node also returns it as a STRING
// output, e.g. for ComfyUI's Preview Any).
const DRIFT = "PFVGEvaluateDrift";
const REPORT = "pfvg_report";

app.registerExtension({
  name: "pfvg.driftreport",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== DRIFT) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const r = onExecuted?.apply(this, arguments);
      const text = (message?.text || []).join("\n");
      let w = this.widgets?.find((x) => x.name === REPORT);
      if (!w) {
        w = ComfyWidgets.STRING(this, REPORT, ["STRING", { multiline: true }], app).widget;
        w.serialize = false; // a display, not an input: not saved in the workflow
        if (w.inputEl) {
          w.inputEl.readOnly = true;
          w.inputEl.style.opacity = 0.85;
        }
      }
      w.value = text;
      const size = this.computeSize();
      this.setSize([Math.max(this.size[0], size[0], 320), Math.max(this.size[1], size[1] + 140)]);
      app.graph.setDirtyCanvas(true, true);
      return r;
    };
  },
});
