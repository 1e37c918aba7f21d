"""FramePack-F1 on a GPU: ``python -m bench f1 --json``.

The ``hunyuan-f1`` transformer with random weights, one segment of ``window`` latent frames at
``width``×``height`` with ``steps`` Euler steps, timed in one run for each storage variant:

- ``diffusers``: ``HunyuanVideoFramepackPipeline`` (F1 vanilla sampling, latent output) on the same
  transformer, with a tiny random VAE and SigLIP for the start image (its own cost is negligible);
- ``ours_off`` / ``ours_on``: our loop (``sample_segment`` + ``step``), memory off / on (SemanticPack
  gate open, ψ of M tokens, F1 local RoPE), the second segment of a state (past ψ₀).

Figures: seconds per generated video frame (a segment = window × 4 frames), peak GPU memory,
``off_over_diffusers`` (target ≤ 1.02) and ``on_over_off`` (target ≤ 1.05) per variant; variants
``bf16`` (compute and storage), ``fp8`` (fp8_e4m3fn storage, bf16 compute: layerwise casting) and
``fp8_offload`` (the same with block-level group offload; target peak ≤ 24 GB at 640×480).

On a CPU the same code runs at a reduced depth and size (``--layers 1 --width 128 --height 96
--steps 2``, float32) so CI covers the path; its timings mean nothing.
"""
from __future__ import annotations

import argparse
import gc
import json
import time

import numpy as np
import torch

from pfvg_core.backbone import build_dit, dit_config, place_dit, resolve_device
from pfvg_core.loop import SamplerOptions, sample_segment
from pfvg_core.model import Conditioning, PFVGModel
from pfvg_core.semanticpack import SemanticPack, SemanticPackConfig
from pfvg_core.state import MemoryConfig, init_state, step

VARIANTS = {"bf16": (None, "none"), "fp8": (torch.float8_e4m3fn, "none"), "fp8_offload": (torch.float8_e4m3fn, "group")}
TEMPORAL_FACTOR = 4  # HunyuanVideo VAE: one latent frame = 4 video frames


def add_f1_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("bench f1")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda")
    g.add_argument("--layers", type=int, nargs=2, default=None, metavar=("DOUBLE", "SINGLE"),
                   help="transformer depth (default: the config's; on a CPU 1 1)")
    g.add_argument("--width", type=int, default=None, help="video width (default 640; CPU 128)")
    g.add_argument("--height", type=int, default=None, help="video height (default 480; CPU 96)")
    g.add_argument("--steps", type=int, default=None, help="sampling steps (default 25; CPU 2)")
    g.add_argument("--variants", default=None, help="comma-separated: bf16,fp8,fp8_offload (CPU default: bf16,fp8)")
    g.add_argument("--no-diffusers", action="store_true", help="skip diffusers' pipeline loop")
    g.add_argument("--log", default=None, help="append each result as a JSON line to this file as it comes")
    g.add_argument("--suite", action="store_true",
                   help="every speed option in one call (bench/suite.py): diffusers, First Block Cache sweep, attention "
                        "backends with the ψ check, memory on, fp8 compute, torch.compile, fp8 storage; errors to the bf16 video")
    g.add_argument("--groups", default=None, help="with --suite: comma-separated row groups (default: all of "
                                                   "diffusers,cache,attention,memory,fp8,compile,storage)")
    g.add_argument("--budget-s", type=float, default=None,
                   help="with --suite: stop starting rows after this many seconds (default 330 on a GPU); what ran is kept")
    g.add_argument("--out", default=None, help="with --suite: folder for bench_f1_suite.json (rewritten after each row)")
    g.add_argument("--thresholds", default=None, help="with --suite: step cache thresholds (default 0.05,0.1,0.15,0.2,0.3,0)")
    g.add_argument("--error-bound", type=float, default=None,
                   help="with --suite: largest error to the bf16 video for the recommended step cache (default 0.05)")
    g.add_argument("--compile-backend", default=None, help="with --suite: torch.compile backend (default: inductor on a GPU, "
                                                            "eager on a CPU)")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_gb(dev: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None


def _reset_peak(dev: torch.device) -> float | None:
    """Reset the peak counter; returns the memory resident before the timed run (GiB)."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        return round(torch.cuda.memory_allocated(dev) / 2**30, 2)
    return None


def _dit_on_gpu_gb(dit) -> float:
    """DiT parameters resident on a GPU (GiB): all of them without offload, ~none between forwards with it."""
    return round(sum(p.numel() * p.element_size() for p in dit.parameters() if p.device.type == "cuda") / 2**30, 2)


@torch.no_grad()
def random_dit(cfg: dict, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A randomly initialised packed DiT made directly on ``device`` (normal(0, 0.02) matrices, unit
    norms, zero biases): no CPU copy of a 12.9 B model."""
    model = build_dit(cfg, device="meta")
    model = torch.nn.Module.to_empty(model, device=device)
    torch.nn.Module.to(model, dtype)
    g = torch.Generator(device).manual_seed(seed)
    for name, p in model.named_parameters():
        if p.ndim >= 2:
            p.normal_(0.0, 0.02, generator=g)
        else:
            p.fill_(1.0 if ("norm" in name and name.endswith("weight")) else 0.0)
    return model.eval()


def _tiny_reference_parts(latent_channels: int, image_dim: int, device: torch.device, dtype: torch.dtype):
    """A tiny random HunyuanVideo VAE (8× space, 4× time) and SigLIP (``image_dim`` wide, 729 tokens
    at 384 px as the real one) for the pipeline's start image."""
    from diffusers import AutoencoderKLHunyuanVideo
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo(latent_channels=latent_channels, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                                    norm_num_groups=4).to(device).eval()
    siglip = SiglipVisionModel(SiglipVisionConfig(hidden_size=image_dim, intermediate_size=64, num_hidden_layers=1,
                                                  num_attention_heads=2, image_size=384, patch_size=14)).to(device, dtype).eval()
    return vae, siglip, SiglipImageProcessor(size={"height": 384, "width": 384})


def diffusers_runner(dit, vae, siglip, processor, prompt, pooled, dev: torch.device, dtype: torch.dtype, width: int,
                     height: int, window: int):
    """diffusers' ``HunyuanVideoFramepackPipeline`` on ``dit`` (F1 vanilla sampling, latent output, one
    segment of ``window`` latent frames) and ``run(n_steps)`` calling it."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoFramepackPipeline
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_framepack import FramepackSamplingType
    from PIL import Image

    pipe = HunyuanVideoFramepackPipeline(
        text_encoder=None, tokenizer=None, transformer=dit, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential"),
        text_encoder_2=None, tokenizer_2=None, image_encoder=siglip, feature_extractor=processor)
    pipe.set_progress_bar_config(disable=True)
    image = Image.fromarray((np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8))

    def run(n_steps):
        return pipe(image=image, prompt_embeds=prompt.to(dev, dtype), pooled_prompt_embeds=pooled.to(dev, dtype),
                    prompt_attention_mask=torch.ones(1, prompt.shape[1], device=dev), height=height, width=width,
                    num_frames=(window - 1) * TEMPORAL_FACTOR + 1, latent_window_size=window, num_inference_steps=n_steps,
                    sigmas=np.linspace(1.0, 0.0, n_steps + 1)[:-1], guidance_scale=10.0,
                    generator=torch.Generator().manual_seed(0), output_type="latent",
                    sampling_type=FramepackSamplingType.VANILLA)

    return pipe, run


def _time(fn, dev) -> float:
    _sync(dev)
    t0 = time.perf_counter()
    fn()
    _sync(dev)
    return time.perf_counter() - t0


def bench_variant(name: str, cfg: dict, dev: torch.device, dtype: torch.dtype, width: int, height: int, steps: int,
                  window: int = 9, diffusers_loop: bool = True, log=None) -> dict:
    storage, offload = VARIANTS[name]
    if offload == "group" and dev.type != "cuda":
        return {"variant": name, "skipped": "group offload needs a CUDA device"}
    out: dict = {"variant": name, "storage": str(storage or dtype).replace("torch.", ""), "offload": offload}
    dit = random_dit(cfg, dev, dtype)
    if storage is not None:
        dit.enable_layerwise_casting(storage_dtype=storage, compute_dtype=dtype)
        dit._pfvg_storage = storage
    place_dit(dit, dev, dtype, storage, offload)
    h, w = height // 8, width // 8
    frames = window * TEMPORAL_FACTOR
    g = torch.Generator().manual_seed(0)
    c = cfg["in_channels"]
    prompt = torch.randn(1, 256, cfg["text_embed_dim"], generator=g)
    pooled = torch.randn(1, cfg["pooled_projection_dim"], generator=g)
    vae, siglip, processor = _tiny_reference_parts(c, cfg["image_proj_dim"], dev, dtype)

    if diffusers_loop:
        pipe, run_pipe = diffusers_runner(dit, vae, siglip, processor, prompt, pooled, dev, dtype, width, height, window)

        run_pipe(1)  # warm-up
        resident = _reset_peak(dev)
        secs = _time(lambda: run_pipe(steps), dev)
        out["diffusers"] = {"s_per_frame": round(secs / frames, 4), "segment_s": round(secs, 3), "peak_gb": _peak_gb(dev),
                            "resident_gb": resident, "dit_on_gpu_gb": _dit_on_gpu_gb(dit)}
        if log:
            log(out)
        del pipe

    # our loop on the same transformer (a SemanticPack added for memory on)
    sp = SemanticPack(SemanticPackConfig.for_dit(cfg)).to(dev, dtype)
    sp.open_gate(0.0)
    model = PFVGModel(dit, sp).eval()
    with torch.no_grad():
        px = torch.rand(1, 3, 384, 384, generator=g).to(dev, dtype)
        image_embeds = siglip(pixel_values=px).last_hidden_state
        start = vae.encode(torch.rand(1, 3, 1, height, width, generator=g).to(dev) * 2 - 1).latent_dist.mode()
    cond = Conditioning(prompt, torch.ones(1, prompt.shape[1], dtype=torch.bool), pooled, image_embeds)
    start = (start * vae.config.scaling_factor).float().cpu()
    for memory in ("off", "on"):
        state = init_state(model, start, cond, 0, MemoryConfig(window=window, rope="local", memory_mode=memory))
        warm = SamplerOptions(steps=1, distilled_guidance=10.0)
        state = step(model, state, sample_segment(model, state, cond, options=warm))  # warm-up, past ψ₀
        opts = SamplerOptions(steps=steps, distilled_guidance=10.0)
        resident = _reset_peak(dev)
        secs = _time(lambda: step(model, state, sample_segment(model, state, cond, options=opts)), dev)
        out[f"ours_{memory}"] = {"s_per_frame": round(secs / frames, 4), "segment_s": round(secs, 3), "peak_gb": _peak_gb(dev),
                                 "resident_gb": resident}
        if log:
            log(out)
    if "diffusers" in out:
        out["off_over_diffusers"] = round(out["ours_off"]["segment_s"] / out["diffusers"]["segment_s"], 4)
    out["on_over_off"] = round(out["ours_on"]["segment_s"] / out["ours_off"]["segment_s"], 4)
    del model, dit, sp, vae, siglip
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return out


def check_loading(dev: torch.device, dtype: torch.dtype) -> dict:
    """The loading paths users take, on ``dev``: a tiny bundle saved and loaded with each storage /
    offload option, one segment sampled; relative difference to the float32 CPU segment."""
    import tempfile

    from pfvg_core.state import MemoryConfig as MC

    ref_model = PFVGModel.build("tiny", seed=0)
    ref_model.semanticpack.open_gate(0.0)
    start = torch.randn(1, 4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    opts = SamplerOptions(steps=3)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref_model.save(tmp)

        def segment(model):
            cond = model.conditioning("a red ball", start)
            state = init_state(model, start, cond, 0, MC(window=3))
            state = step(model, state, sample_segment(model, state, cond, options=opts))
            return sample_segment(model, state, cond, options=opts).float().cpu()

        ref = segment(PFVGModel.load(tmp))
        for name, (storage, offload) in VARIANTS.items():
            if offload == "group" and dev.type != "cuda":
                continue
            try:
                x = segment(PFVGModel.load(tmp, dtype=dtype, device=dev, storage=storage or "compute", offload=offload))
                out[name] = {"rel_diff_to_fp32_cpu": round(float((x - ref).norm() / ref.norm()), 5), "finite": bool(torch.isfinite(x).all())}
            except Exception as e:
                out[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return out


def bench_setup(config: str, layers, width: int, height: int, device, dtype):
    """(device, compute dtype, DiT config at ``layers`` depth) of an F1 benchmark, its frame size checked."""
    dev = resolve_device(device)
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    cfg = dit_config(config)
    if layers is not None:
        cfg["num_layers"], cfg["num_single_layers"] = int(layers[0]), int(layers[1])
    if width % 16 or height % 16:
        raise ValueError(f"width and height must be multiples of 16 (8× VAE, 2× patches), got {width}×{height}")
    return dev, dtype, cfg


def bench_f1(config: str = "hunyuan-f1", layers: tuple[int, int] | None = None, width: int = 640, height: int = 480,
             steps: int = 25, variants=("bf16", "fp8", "fp8_offload"), device="auto", dtype=None, diffusers_loop: bool = True,
             log=None) -> dict:
    dev, dtype, cfg = bench_setup(config, layers, width, height, device, dtype)
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; expected some of {list(VARIANTS)}")
    result = {"config": config, "layers": [cfg["num_layers"], cfg["num_single_layers"]], "size": [width, height],
              "steps": steps, "window": 9, "frames_per_segment": 9 * TEMPORAL_FACTOR, "device": str(dev),
              "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, "compute_dtype": str(dtype).replace("torch.", ""),
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "variants": []}
    result["load_checks"] = check_loading(dev, dtype)
    if log:
        log({**result, "partial": None})
    for v in variants:
        try:
            rec = bench_variant(v, cfg, dev, dtype, width, height, steps, diffusers_loop=diffusers_loop,
                                log=(lambda r: log({**result, "partial": r})) if log else None)
        except Exception as e:  # keep the other variants' figures; report what failed
            rec = {"variant": v, "error": f"{type(e).__name__}: {e}"[:500]}
        gc.collect()  # a failed variant's frames hold its model until collected
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        result["variants"].append(rec)
        if log:
            log({**result, "partial": None})
    return result


def run_f1(a) -> dict:
    dev = resolve_device(a.device)
    cpu = dev.type != "cuda"
    layers = tuple(a.layers) if a.layers else ((1, 1) if cpu else None)
    if a.suite:
        raise ValueError("--suite runs through bench.suite.run_suite (python -m bench dispatches it)")
    variants = tuple((a.variants or ("bf16,fp8" if cpu else "bf16,fp8,fp8_offload")).split(","))

    def log(rec):
        if a.log:
            with open(a.log, "a") as f:
                f.write(json.dumps(rec) + "\n")

    return bench_f1(a.config or "hunyuan-f1", layers, a.width or (128 if cpu else 640), a.height or (96 if cpu else 480),
                    a.steps or (2 if cpu else 25), variants, dev, diffusers_loop=not a.no_diffusers, log=log)
