"""``python -m bench world-train``: the embedded recipe's training step on a CPU, clip-samples per second per core.

What the embedded default's recipe (``research/embedded_recipe.py``) trains, measured as it trains: the shipped
default bundle (memory on, its trained gate), 20 s world videos encoded with its codec, teacher forcing on the
whole net (stage 1), one thread. Rows, each after one warm-up step, ``--steps`` timed steps of 8 clips per video:

- ``reference``: ψ's gate through an additive float mask at batch > 1 (the form before the gate rode in the head
  channels there too: a mask that trains sends SDPA to its math path);
- the same at batch 4 with the gate in the head channels and a boolean padding mask (``semanticpack``);
- batch 1, 8 and 16 (more videos per forward pass);
- bf16 autocast of the forward passes (``amp``);
- memory off (the shared pretraining's step);
- ``--compile``: ``torch.compile`` of the DiT's blocks (``speed.compile_blocks``; the compilation's seconds are
  the row's ``first_step_s``), at batch 4 and 16.

Ratios are to the reference row of the same run. A CPU figure: on a GPU see ``research/throughput.py``.
"""
from __future__ import annotations

import os
import tempfile
import time

import torch

from pfvg_core import world
from pfvg_core.data import write_latent_video
from pfvg_core.model import PFVGModel, resolve_model
from pfvg_core.train import StageConfig, TrainConfig, Trainer
from pfvg_core.video_io import to_pixels


def _dataset(folder: str, model: PFVGModel, videos: int, seconds: float) -> None:
    for k, s in enumerate(world.train_seeds(videos)):
        v = world.make_video(s, seconds=seconds, fps=8)
        with torch.no_grad():
            lat = model.codec.encode(to_pixels(v.frames))[0]
        write_latent_video(folder, f"world_{k:05d}", lat, v.prompt, 8.0)


def measure(data: str, setting: dict, steps: int = 2, clips: int = 8, model_path: str = "default") -> dict:
    """Clip-samples per second of one training setting (``video_batch``, ``memory_mode``, ``additive_mask``,
    ``compile``) on the latent folder ``data``."""
    model = resolve_model(model_path)
    nb = setting["video_batch"]
    row = dict(setting)
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(model="(bench)", data=data, out=out, stages=[StageConfig("bench", "teacher", "all", steps + 2)],
                          window=4, memory_mode=setting["memory_mode"], accumulate=8, videos_per_step=nb, video_batch=nb,
                          max_clips=clips, lr=1e-5, save_every=10**9, shift=2.0, device="cpu", psi_bptt=8,
                          compile=setting.get("compile", "off"), amp=setting.get("amp", "off"))
        model.injector.force_mask = bool(setting.get("additive_mask"))
        try:
            trainer = Trainer(cfg, model=model)
            t = time.perf_counter()
            trainer.run(max_steps=1)
            row["first_step_s"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            trainer.run(max_steps=steps)
            dt = time.perf_counter() - t
        finally:
            model.injector.force_mask = False
            torch._dynamo.reset()
    row["seconds_per_step"] = round(dt / steps, 3)
    row["clip_samples_per_s"] = round(steps * nb * clips / dt, 2)
    return row


def settings(compile_too: bool = False) -> list[dict]:
    on = {"memory_mode": "on", "additive_mask": False, "compile": "off"}
    rows = [dict(on, name="reference", video_batch=4, additive_mask=True), dict(on, name="gate in head channels", video_batch=4)]
    rows += [dict(on, name=f"batch {n}", video_batch=n) for n in (1, 8, 16)]
    rows.append(dict(on, name="bf16 autocast", video_batch=4, amp="bf16"))
    rows.append(dict(on, name="memory off", video_batch=4, memory_mode="off"))
    if compile_too:
        rows.append(dict(on, name="compiled blocks", video_batch=4, compile="blocks"))
        rows.append(dict(on, name="batch 16, compiled blocks", video_batch=16, compile="blocks"))
    return rows


def run(quick: bool = False, compile_too: bool = False, steps: int = 2) -> dict:
    torch.set_num_threads(1)
    rows_in = settings(compile_too)
    if quick:
        rows_in = [r for r in rows_in if r["name"] in ("reference", "gate in head channels")]
        for r in rows_in:
            r["video_batch"] = 2
    with tempfile.TemporaryDirectory() as data:
        _dataset(data, resolve_model("default"), max(r["video_batch"] for r in rows_in), 3.0 if quick else 20.0)
        rows = []
        for s in rows_in:
            try:
                rows.append(measure(data, s, steps=1 if quick else steps, clips=2 if quick else 8))
            except Exception as e:  # noqa: BLE001 - a setting that fails is a row with its error (a compiler error)
                rows.append({**s, "error": f"{type(e).__name__}: {str(e)[:200]}"})
    ref = rows[0].get("clip_samples_per_s")
    for r in rows:
        if ref and r.get("clip_samples_per_s"):
            r["ratio_to_reference"] = round(r["clip_samples_per_s"] / ref, 2)
    return {"what": "embedded recipe training step, one CPU thread", "threads": torch.get_num_threads(),
            "cpu": os.cpu_count(), "rows": rows}
