"""``python -m bench train-f1``: stage 2 of PFVG (Direct Forcing on the output layers + SemanticPack,
§4.1) on the FramePack-F1 DiT with random weights, one clip of ``window`` latent frames + its packed context +
ψ at 640×480, in each single-GPU memory plan:

- ``bf16`` — bf16 base, no checkpointing (fits only where ≈ 120 GB is free; measured where it fits);
- ``bf16_ckpt`` — bf16 base + gradient checkpointing per block (the ``80gb`` plan);
- ``fp8_ckpt`` — fp8 storage of the frozen matmul weights + checkpointing;
- ``fp8_ckpt_offload`` — fp8 + checkpointing + block offload to the CPU under backward (the ``24gb`` plan);

and teacher forcing in the ``bf16_ckpt`` plan for the Direct ÷ teacher ratio. Printed per plan: seconds per
clip, peak GPU memory; ratios measured in the same run. Targets: bf16_ckpt ≤ 40 GiB, fp8_ckpt ≤ 22 GiB,
fp8_ckpt_offload ≤ 14 GiB, Direct ÷ teacher ≤ 1.05, checkpointing ≤ 1.4× without it where both fit.
On a CPU it runs at reduced depth and size (CI covers the code path; the figures mean nothing there).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time

import torch

from pfvg_core.model import HUNYUAN_VIDEO_SCALE

PLANS = {
    "bf16": dict(base_storage="compute", offload="none", gradient_checkpointing="off"),
    "bf16_ckpt": dict(base_storage="compute", offload="none", gradient_checkpointing="on"),
    "fp8_ckpt": dict(base_storage="fp8_e4m3fn", offload="none", gradient_checkpointing="on"),
    "fp8_ckpt_offload": dict(base_storage="fp8_e4m3fn", offload="group", gradient_checkpointing="on"),
}
TARGETS_GIB = {"bf16_ckpt": 40, "fp8_ckpt": 22, "fp8_ckpt_offload": 14}


def _dataset(folder: str, cfg: dict, width: int, height: int, window: int, clips: int, text_len: int = 256) -> str:
    """One cached-feature video (random latents and features of F1's widths): 1 + clips·window latent frames."""
    from pfvg_core.atomic import write_json
    from pfvg_core.checkpoint import save_safetensors_atomic

    g = torch.Generator().manual_seed(0)
    t = {"latents": torch.randn(cfg["in_channels"], 1 + clips * window, height // 8, width // 8, generator=g),
         "prompt_embeds.0": torch.randn(text_len, cfg["text_embed_dim"], generator=g),
         "prompt_mask.0": torch.ones(text_len, dtype=torch.uint8),
         "pooled.0": torch.randn(cfg["pooled_projection_dim"], generator=g),
         "image_embeds": torch.randn(729, cfg["image_proj_dim"], generator=g)}
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, "v.json"), {"prompt": "bench", "prompts": [[0.0, "bench"]], "fps": 30.0,
                                                "frames": t["latents"].shape[1], "latent_scale": HUNYUAN_VIDEO_SCALE, "temporal_factor": 4})
    save_safetensors_atomic(t, os.path.join(folder, "v.safetensors"))
    return folder


def _model(cfg: dict, device: torch.device, storage: str, offload: str):
    """A random full-size (or reduced) F1 DiT in bf16, built straight on ``device``, with a fresh SemanticPack."""
    from pfvg_core.backbone import DiT, FP8, place_dit
    from pfvg_core.model import PFVGModel
    from pfvg_core.semanticpack import SemanticPack, SemanticPackConfig

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            dit = DiT.from_config(cfg)
    finally:
        torch.set_default_dtype(old)
    if offload == "group":
        dit.to("cpu")
    place_dit(dit, "cpu" if offload == "group" else device, torch.bfloat16, FP8.get(storage), "none")
    sp = SemanticPack(SemanticPackConfig.for_dit(cfg))
    model = PFVGModel(dit, sp, meta={"latent_scale": HUNYUAN_VIDEO_SCALE, "temporal_factor": 4})
    if offload == "group":  # the training block offload (offload.py), not inference's group offload
        from pfvg_core.train import with_block_offload

        return with_block_offload(model, device)
    return model.to(device)


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run_plan(plan: str, forcing: str, cfg: dict, data: str, device: torch.device, window: int, steps: int) -> dict:
    """Train ``steps`` + 1 steps of stage 2 in ``plan`` (the first is warm-up); seconds per clip and peak memory."""
    from pfvg_core.train import StageConfig, Trainer, TrainConfig

    p = PLANS[plan]
    model = None
    try:
        model = _model(cfg, device, p["base_storage"], p["offload"])
        with tempfile.TemporaryDirectory() as out:
            tc = TrainConfig(model="(bench)", data=data, out=out, window=window, device=str(device), save_every=10**6,
                             stages=[StageConfig("stage2", forcing, "last-layers+semanticpack", steps + 1)],
                             base_dtype="bfloat16", base_storage=p["base_storage"], offload=p["offload"],
                             gradient_checkpointing=p["gradient_checkpointing"], amp="bf16")
            trainer = Trainer(tc, model=model)
            trainer.run(max_steps=1)  # warm-up: kernels, allocator
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            t0 = time.perf_counter()
            trainer.run(max_steps=steps)
            _sync(device)
            seconds = time.perf_counter() - t0
            clips = steps * trainer.data.num_clips(0, window)
            peak = round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None
        return {"plan": plan, "forcing": forcing, "s_per_clip": round(seconds / clips, 4), "peak_gib": peak}
    except torch.OutOfMemoryError as e:
        return {"plan": plan, "forcing": forcing, "skipped": f"out of memory: {str(e).splitlines()[0][:160]}"}
    finally:
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


def bench_train_f1(config: str = "hunyuan-f1", width: int = 640, height: int = 480, window: int = 9, steps: int = 2,
                   plans: tuple = tuple(PLANS), layers: tuple | None = None, device: str = "auto", log: str | None = None) -> dict:
    """Every plan (+ teacher forcing in bf16_ckpt), ratios from the same run; each result appended to ``log``."""
    from pfvg_core.backbone import dit_config, resolve_device

    dev = resolve_device(device)
    cfg = dit_config(config)
    if layers:
        cfg.update(num_layers=int(layers[0]), num_single_layers=int(layers[1]))
    if width % 16 or height % 16:
        raise ValueError(f"size {width}x{height}: FramePack sizes are multiples of 16")
    unknown = [p for p in plans if p not in PLANS]
    if unknown:
        raise ValueError(f"plans {unknown}: expected some of {list(PLANS)}")
    result = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "config": config,
              "layers": [cfg["num_layers"], cfg["num_single_layers"]], "size": [width, height], "window": window,
              "params_b": None, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = _dataset(os.path.join(tmp, "data"), cfg, width, height, window, clips=2)
        runs = [(p, "direct") for p in plans] + ([("bf16_ckpt", "teacher")] if "bf16_ckpt" in plans else [])
        for plan, forcing in runs:
            row = run_plan(plan, forcing, cfg, data, dev, window, steps)
            result["rows"].append(row)
            if log:
                with open(log, "a") as f:
                    f.write(json.dumps(row) + "\n")
    by = {(r["plan"], r["forcing"]): r for r in result["rows"] if "s_per_clip" in r}
    ratios = {}
    if ("bf16_ckpt", "direct") in by and ("bf16_ckpt", "teacher") in by:
        ratios["direct_over_teacher"] = round(by["bf16_ckpt", "direct"]["s_per_clip"] / by["bf16_ckpt", "teacher"]["s_per_clip"], 3)
    if ("bf16_ckpt", "direct") in by and ("bf16", "direct") in by:
        ratios["ckpt_over_no_ckpt"] = round(by["bf16_ckpt", "direct"]["s_per_clip"] / by["bf16", "direct"]["s_per_clip"], 3)
    result["ratios"] = ratios
    result["targets"] = {plan: {"peak_gib": by[plan, "direct"]["peak_gib"], "target_gib": gib,
                                "met": None if by[plan, "direct"]["peak_gib"] is None else by[plan, "direct"]["peak_gib"] <= gib}
                         for plan, gib in TARGETS_GIB.items() if (plan, "direct") in by}
    with contextlib.suppress(Exception):
        from pfvg_core.backbone import DiT

        with torch.device("meta"):
            result["params_b"] = round(sum(p.numel() for p in DiT.from_config(cfg).parameters()) / 1e9, 3)
    return result


def run_train_f1(a) -> dict:
    """The CLI's ``bench train-f1`` (options shared with ``bench f1``); on a CPU: the tiny config, depth 1 + 1, 64×48,
    1 timed step."""
    from pfvg_core.backbone import resolve_device

    cpu = resolve_device(a.device).type == "cpu"
    plans = tuple(a.variants.split(",")) if a.variants else (("bf16_ckpt", "fp8_ckpt") if cpu else tuple(PLANS))
    return bench_train_f1(a.config or ("tiny" if cpu else "hunyuan-f1"), a.width or (64 if cpu else 640), a.height or (48 if cpu else 480),
                          steps=1 if cpu else 2, plans=plans, layers=a.layers or ((1, 1) if cpu else None), device=a.device,
                          log=a.log)
