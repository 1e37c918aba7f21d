"""The paper's Table 2 in miniature (``python -m pfvg_core eval --ablation``).

Five variants fine-tuned from one shared pretrained backbone with the same budget (optimizer steps,
videos, seed) on the same world videos, then evaluated on a fixed split of held-out world videos,
generated from each first frame + prompt:

- ``F1 w/ CT``: FramePack only (memory off), teacher forcing;
- ``MemoryPack``: + SemanticPack, teacher forcing;
- ``zero-ψ₀ MemoryPack``: SemanticPack with ψ₀ = 0;
- ``Student Forcing``: MemoryPack, stage 2 with 5-step Student Forcing;
- ``All``: MemoryPack, stage 2 with Direct Forcing (the paper's method).

Columns: Δdrift of sharpness and of the error to the truth, consistency to the first frame and
between neighbours, revisit consistency, and mean error to the truth.
"""
from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import torch

from ..data import write_encoded_video
from ..loop import SamplerOptions, generate_long_video, segments_for_seconds
from ..metrics import evaluate
from ..model import PFVGModel, load_embedded_model
from ..state import MemoryConfig
from ..train import StageConfig, TrainConfig, Trainer
from ..video_io import to_pixels, to_uint8_frames
from ..world import make_video

VARIANTS = {
    "F1 w/ CT": dict(memory="off", stage2=None),
    "MemoryPack": dict(memory="on", stage2="teacher"),
    "zero-ψ₀ MemoryPack": dict(memory="zero", stage2="teacher"),
    "Student Forcing": dict(memory="on", stage2="student"),
    "All (MemoryPack + Direct Forcing)": dict(memory="on", stage2="direct"),
}
REFERENCES = ["(reference) true video", "(reference) true video through the codec", "(reference) first frame repeated"]
COLUMNS = ["delta_drift_sharpness", "delta_drift_mse_to_truth", "consistency_first", "consistency_neighbour",
           "revisit_consistency", "mean_mse_to_truth"]


def run_ablation(work: str, codec, dit: str = "embedded", train_videos: int = 48, seconds: float = 4.5, base: int = 600,
                 stage1: int = 200, stage2: int = 100, eval_seeds=(20_000, 20_001, 20_002, 20_003), eval_seconds: float = 24.0,
                 window: int = 4, steps: int = 12, seed: int = 0, log=print, per_video: dict | None = None) -> dict:
    """Train every variant with the same budget and evaluate it; returns {variant: {column: value}}.

    As in the paper, every variant starts from the same pretrained FramePack-style backbone (here: the
    DiT + encoders trained for ``base`` videos with teacher forcing and no memory, standing in for
    FramePack-F1), then gets ``stage1`` videos of teacher forcing on the whole net with its own memory
    mode (a fresh SemanticPack where it has one) and ``stage2`` videos of its stage-2 strategy. Runs
    that are identical up to a point (the three memory-on variants share stage 1) are trained once
    and reloaded from the saved model: training is deterministic, so this changes no number, only the time.
    ``per_video`` (a dict), when given, receives {variant: [scores of each evaluation video]}."""
    data = os.path.join(work, "latents")
    shutil.rmtree(data, ignore_errors=True)
    for k in range(train_videos):
        v = make_video(seed + k, seconds=seconds, fps=8)
        write_encoded_video(data, f"world_{k:05d}", v.frames, codec, v.prompt, 8.0)
    evals = [make_video(s, seconds=eval_seconds, fps=8) for s in eval_seeds]

    def train(model, name, stage, memory):
        cfg = TrainConfig(model="(ablation)", data=data, out=os.path.join(work, name), stages=[stage], window=window,
                          memory=memory, seed=seed, accumulate=2, lr=3e-4, save_every=10**9, shift=2.0)
        shutil.rmtree(cfg.out, ignore_errors=True)
        t0 = time.time()
        trainer = Trainer(cfg, model=model)
        trainer.run()
        log(f"trained {name}: {stage.steps} videos, {stage.forcing} forcing on {stage.params} ({time.time() - t0:.0f}s)")
        return trainer.model

    pretrained = PFVGModel.build(dit, semanticpack=False, seed=seed)
    pretrained = train(pretrained, "base", StageConfig("base", "teacher", "all", base), "off")
    after_stage1 = {}
    table = {}

    def record(name, rows):
        table[name] = {c: _mean([r[c] for r in rows]) for c in COLUMNS}
        if per_video is not None:
            per_video[name] = [{"seed": int(s), **{c: r[c] for c in COLUMNS}} for s, r in zip(eval_seeds, rows)]

    for name, spec in VARIANTS.items():
        memory = spec["memory"]
        if memory not in after_stage1:
            model = _from_pretrained(pretrained, dit, semanticpack=memory != "off", seed=seed)
            train(model, f"stage1_memory_{memory}", StageConfig("stage1", "teacher", "all", stage1), memory)
            after_stage1[memory] = os.path.join(work, f"stage1_memory_{memory}", "model")
        model = PFVGModel.load(after_stage1[memory])  # each variant continues from its own copy
        if spec["stage2"] is not None:
            st2 = StageConfig("stage2", spec["stage2"], "last-layers+semanticpack", stage2)
        else:  # same budget: the second stage keeps teacher forcing on the output layers
            st2 = StageConfig("stage2", "teacher", "last-layers", stage2)
        model = train(model, _slug(name), st2, memory).eval()
        model.codec = codec
        model.refresh_id()
        record(name, [_generate_and_score(model, v, memory, window, steps) for v in evals])
        log(f"{name}: {table[name]}")
    for name, rows in reference_scores(evals, codec).items():
        record(name, rows)
    return table


def reference_scores(videos, codec) -> dict[str, list[dict]]:
    """The same metrics for videos no model generated, to read the table against: the truth itself
    (what a perfect model scores), the truth through the codec (the best any latent model can do) and
    the first frame repeated (a model that never moves: perfect consistency, no motion)."""
    out = {name: [] for name in REFERENCES}
    for v in videos:
        with torch.no_grad():
            rec = to_uint8_frames(codec.decode(codec.encode(to_pixels(v.frames))))[: len(v.frames)]
        still = np.repeat(v.frames[:1], len(v.frames), 0)
        for name, frames in zip(REFERENCES, (v.frames, rec, still)):
            out[name].append(evaluate(frames, v.truth, truth_frames=v.frames, fps=v.fps))
    return out


def _from_pretrained(pretrained: PFVGModel, dit: str, semanticpack: bool, seed: int) -> PFVGModel:
    """The pretrained backbone and encoders, with a freshly initialised SemanticPack when asked."""
    model = PFVGModel.build(dit, semanticpack=semanticpack, seed=seed + 1)
    for part in ("dit", "text_encoder", "image_encoder"):
        getattr(model, part).load_state_dict(getattr(pretrained, part).state_dict())
    model.codec = pretrained.codec
    return model


def _generate_and_score(model, video, memory, window, steps, shift: float | None = 2.0) -> dict:
    """Generate the world video from its first frame and prompt; score it against its truth."""
    with torch.no_grad():
        start = model.codec.encode(to_pixels(video.frames[:1]))
        n = segments_for_seconds((len(video.frames) - 1) / video.fps, video.fps, window)
        chunks = [model.codec.decode(start)]
        for r in generate_long_video(model, start, video.prompt, n, seed=0, config=MemoryConfig(window=window, memory_mode=memory),
                                     options=SamplerOptions(steps=steps, shift=shift)):
            chunks.append(model.codec.decode(r.latents))
    frames = to_uint8_frames(torch.cat(chunks, 2))[: len(video.frames)]
    return evaluate(frames, video.truth, truth_frames=video.frames, fps=video.fps)


def _mean(values):
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_").lower()


def markdown(table: dict, per_video: dict | None = None) -> str:
    """The table as Markdown (4 significant digits); with ``per_video``, each cell also shows the
    standard deviation over the evaluation videos (mean ± std)."""
    def cell(name, c):
        v = table[name][c]
        if v is None:
            return "—"
        vals = [r[c] for r in (per_video or {}).get(name, []) if r[c] is not None]
        return f"{v:.4g} ± {np.std(vals):.2g}" if len(vals) > 1 else f"{v:.4g}"

    head = "| variant | " + " | ".join(COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join(f"| {name} | " + " | ".join(cell(name, c) for c in COLUMNS) + " |\n" for name in table)


def main_ablation(work: str = "build/ablation", quick: bool = False, log=print) -> tuple[dict, dict]:
    """Run the ablation with the embedded model's codec; writes ablation.{json,md} in ``work`` and
    returns (mean table, per-video scores)."""
    base = load_embedded_model()
    if base.codec is None:
        raise ValueError("the ablation needs the embedded default model's codec")
    kw = dict(train_videos=4, base=2, stage1=2, stage2=2, eval_seeds=(20_000,), eval_seconds=4.0, steps=2) if quick else {}
    per_video: dict = {}
    table = run_ablation(work, base.codec, **kw, log=log, per_video=per_video)
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "ablation.json"), "w") as f:
        json.dump({"mean": table, "videos": per_video}, f, indent=1)
    with open(os.path.join(work, "ablation.md"), "w") as f:
        f.write(markdown(table, per_video))
    return table, per_video
