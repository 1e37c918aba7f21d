"""The experiments (``python -m research.experiments``): does the memory (SemanticPack ψ) and
does Direct Forcing help, measured against the truth on held-out world videos, with the statistics to decide.

Protocol (PFVG §4.1 recipe, Table 2 questions):

- data: ``train_videos`` world videos of the training split (≥ 20 s: camera and sprites return inside
  each clip sequence), a codec trained on them (sprite-weighted loss), their latents;
- shared pretraining (``base``): the DiT + encoders, teacher forcing, no memory (the FramePack-F1 stand-in);
- stage 1, per training seed: teacher forcing on the whole net from ``base``, memory on (a fresh
  SemanticPack) — ONE stage-1 checkpoint per seed, shared by every memory-on stage 2 — and memory off;
- stage 2, per seed, the same budget each: Direct Forcing (the paper's method), teacher forcing and
  Student Forcing from the memory-on stage-1 checkpoint; Direct Forcing from the memory-off one;
- evaluation: every model generates each of ``heldout`` held-out 60 s videos from its first frame and
  prompt; truth-anchored metrics (``metrics.evaluate``) and the three references (truth through the
  codec, first frame repeated, blurred first frame repeated);
- comparisons: paired differences (same seed, same video) with a 95 % interval from a two-level
  bootstrap (training seeds, then held-out videos): (a) memory on vs off (trained without memory),
  (a') memory on vs off at inference on the same model, (b) Direct vs teacher forcing in stage 2,
  (c) Direct vs Student Forcing.

Trainings and evaluations run as separate processes (``jobs`` at a time, e.g. many on one GPU); every
job is skipped when its result exists and resumes from its checkpoints, so a run cut by a time limit
continues where it stopped.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import dataclasses
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from pfvg_core import metrics
from pfvg_core.atomic import write_json, write_text
from pfvg_core.codec import ConvCodec
from pfvg_core.data import write_latent_video
from pfvg_core.loop import SamplerOptions, sample_segment, segments_for_seconds
from pfvg_core.model import PFVGModel
from pfvg_core.state import MemoryConfig, init_state, step
from pfvg_core.train import StageConfig, TrainConfig, Trainer
from pfvg_core.video_io import to_pixels, to_uint8_frames
from pfvg_core import world

# the repository's root (research/ sits in it) and the installed package's parent: recorded paths are relative to one
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def provenance_path(path: str | None) -> str | None:
    """A path as a model's provenance records it: relative to the repository root (or to the folder holding the
    installed ``pfvg_core``), else its base name — never a machine's absolute path."""
    if not path:
        return path
    import pfvg_core

    full = os.path.abspath(path)
    for root in (REPO_ROOT, os.path.dirname(os.path.dirname(os.path.abspath(pfvg_core.__file__)))):
        rel = os.path.relpath(full, root)
        if rel != "." and not rel.startswith(".."):
            return rel.replace(os.sep, "/")
    return os.path.basename(full.rstrip(os.sep))


def resolve_path(path: str) -> str:
    """A recorded (repository-relative) path back to one that opens: as given when it exists, else under the root."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    under = os.path.join(REPO_ROOT, path)
    return under if os.path.exists(under) else path


def recorded(value):
    """``value`` (budget, codec choice, result) with every ``warm_start`` path as ``provenance_path`` records it."""
    if isinstance(value, dict):
        return {k: provenance_path(v) if k == "warm_start" and isinstance(v, str) else recorded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [recorded(v) for v in value]
    return value


ALL = "MemoryPack + Direct Forcing"
VARIANTS = {  # name: (stage-1 memory, stage-2 forcing, stage-2 parameters, memory at inference)
    ALL: ("on", "direct", "last-layers+semanticpack", "on"),
    "MemoryPack + teacher forcing": ("on", "teacher", "last-layers+semanticpack", "on"),
    "MemoryPack + Student Forcing": ("on", "student", "last-layers+semanticpack", "on"),
    "FramePack only (no memory) + Direct Forcing": ("off", "direct", "last-layers", "off"),
}
INFERENCE_OFF = ALL + ", memory off at inference"  # the same models as ALL, ψ not used when generating
COMPARISONS = {  # name: (A, B): differences A − B
    "(a) memory on − off (trained without memory)": (ALL, "FramePack only (no memory) + Direct Forcing"),
    "(a') memory on − off at inference (same model)": (ALL, INFERENCE_OFF),
    "(b) Direct − teacher forcing in stage 2": (ALL, "MemoryPack + teacher forcing"),
    "(c) Direct − Student Forcing in stage 2": (ALL, "MemoryPack + Student Forcing"),
}
METRICS = ("mean_mse_to_truth", "revisit_error", "identity_colour_error", "identity_position_error", "tracking_corr",
           "delta_drift_mse_to_truth")


@dataclass
class Budget:
    """Every size of a run. Defaults: the GPU run; ``Budget.tiny()``: seconds on a CPU (tests)."""

    dit: str = "embedded"
    train_videos: int = 160
    seconds: float = 20.0
    heldout: int = 16
    heldout_seconds: float = 60.0
    codec_steps: int = 2000
    codec_channels: int = 8
    codec_width: int = 48
    codec_batch: int = 64
    sprite_weight: float = 20.0
    # other (channels, sprite_weight) codecs to train and measure beside it; the best is kept (``pick_codec``)
    codec_candidates: tuple = ((4, 0.0), (4, 20.0), (8, 0.0), (8, 50.0))
    base: int = 60  # optimizer steps (each: video_batch videos)
    stage1: int = 60
    stage2: int = 30
    video_batch: int = 16
    seeds: tuple = (0, 1, 2)
    window: int = 4
    steps: int = 12  # sampling steps at evaluation
    shift: float = 2.0  # the sampler's shift at evaluation
    train_shift: float = 2.0  # the training times' shift (``forcing.sample_t``): higher draws more high-noise clips
    motion_weight: float = 0.0  # the flow loss weighted to the latents that change (``train.motion_weights``; 0: plain)
    # the fraction of training videos whose panning camera is made fast (period ``FAST_PAN_PERIOD`` s, no tilt:
    # 4–8 px per frame): motion large enough for the DiT to learn to continue it (``research/motion_probe.py``)
    fast_pans: float = 0.0
    lr: float = 3e-4
    stage2_lr: float = 1e-4
    accumulate: int = 2  # shared pretraining: an optimizer step every 2 clips
    # stages 1–2: an optimizer step every psi_bptt clips, so that ψ's gradient runs psi_bptt updates deep
    # (an optimizer step cuts ψ's graph) — further back than the FramePack context (≈ 5 segments of 4 frames)
    psi_bptt: int = 8
    stage1_lr: float = 4e-4
    warmup: int = 10  # optimizer steps of linear warm-up at the start of every run (fresh AdamW)
    memory_tokens: int = 32
    student_steps: int = 5
    variants: tuple = tuple(VARIANTS)
    inference_off: bool = True
    # a model bundle to continue from (the shipped default): its codec is kept (no codec training), the shared
    # pretraining starts from its DiT and encoders, stage 1 with memory on from its SemanticPack
    warm_start: str | None = None
    # speed on a GPU (``research/throughput.py`` measures and picks them): bf16 autocast of the
    # forward passes (``off`` | ``bf16``: trainings and evaluations) and ``torch.compile`` of the DiT's blocks
    amp: str = "off"
    compile: str = "off"

    @classmethod
    def tiny(cls, **kw) -> "Budget":
        base = dict(dit="tiny", train_videos=2, seconds=3.0, heldout=2, heldout_seconds=4.0, codec_steps=3, codec_channels=4,
                    codec_width=8, codec_batch=4, codec_candidates=(), base=1, stage1=1, stage2=1, video_batch=1, seeds=(0, 1), steps=1,
                    accumulate=2, psi_bptt=2, memory_tokens=4, student_steps=1)
        base.update(kw)
        return cls(**base)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- data and codec -----------------------------------------------------------------------------
def train_codec(frames: np.ndarray, steps: int, seed: int = 0, log=print, channels: int = 8, width: int = 48,
                sprite_weight: float = 20.0, device: str = "cpu", batch: int = 64) -> ConvCodec:
    """Fit the ConvCodec (factor 4) on frames [N, H, W, 3] uint8 with ``codec.reconstruction_loss`` (L1 + MSE,
    weighted 1 + ``sprite_weight`` on sprite pixels), then normalise its latents. Returned on the CPU."""
    from pfvg_core.codec import reconstruction_loss

    torch.manual_seed(seed)
    dev = torch.device(device)
    codec = ConvCodec(channels, 4, width).to(dev)
    opt = torch.optim.AdamW(codec.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    x_all = torch.from_numpy(frames).float().div(127.5).sub(1).permute(0, 3, 1, 2)
    g = torch.Generator().manual_seed(seed)
    for s in range(steps):
        x = x_all[torch.randint(len(x_all), (batch,), generator=g)].to(dev)
        loss = reconstruction_loss(codec.dec(codec.enc(x)), x, sprite_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if s % 500 == 0 or s == steps - 1:
            log(f"codec step {s}: loss {loss.item():.4f}")
    with torch.no_grad():
        z = torch.cat([codec.enc(x_all[i : i + 256].to(dev)) for i in range(0, min(len(x_all), 4096), 256)])
        codec.latent_shift.fill_(float(z.mean()))
        codec.latent_scale.fill_(float(z.std()))
    return codec.cpu().eval()


def codec_fn(codec, device="cpu", chunk: int = 256):
    """frames [T, H, W, 3] uint8 → the same through the codec (for the references)."""
    def run(frames):
        out = []
        with torch.no_grad():
            for i in range(0, len(frames), chunk):
                x = to_pixels(frames[i : i + chunk]).to(device)
                out.append(to_uint8_frames(codec.decode(codec.encode(x)).cpu()))
        return np.concatenate(out)[: len(frames)]
    return run


def codec_fidelity(codec, videos, device="cpu") -> dict:
    """What the codec keeps, on world videos: each visible sprite's colour (per channel, 0–255: |mean of the
    reconstruction over the sprite's true pixels − its colour|, frames where it shows ≥ 12 pixels), the
    background (MSE off the sprites, 0–255²) and its texture (sharpness of the reconstruction / the truth)."""
    codec = codec.to(device)
    fn = codec_fn(codec, device)
    errs, bg, sharp = [], [], []
    for v in videos:
        rec = fn(v.frames).astype(np.float64)
        truth = v.frames.astype(np.float64)
        ids = v.sprite_ids
        for i, s in enumerate(v.params.sprites):
            colour = np.array(world.SPRITE_COLOURS[s.colour], np.float64)
            m = ids == i
            for k in np.nonzero(m.sum((1, 2)) >= 12)[0]:
                errs.append(np.abs(rec[k][m[k]].mean(0) - colour))
        off = ids < 0
        bg.append(float(((rec - truth) ** 2).mean(-1)[off].mean()))
        sharp.append(float(np.mean([metrics.sharpness(r / 255) / max(metrics.sharpness(t / 255), 1e-12)
                                    for r, t in zip(rec[::8], truth[::8])])))
    codec.cpu()
    e = np.array(errs).reshape(-1, 3)
    return {"sprite_colour_error_per_channel": [round(float(x), 2) for x in e.mean(0)] if len(e) else None,
            "sprite_colour_error_p90": round(float(np.percentile(e.max(1), 90)), 2) if len(e) else None,
            "sprite_appearances": int(len(e)), "background_mse": round(float(np.mean(bg)), 2),
            "sharpness_ratio": round(float(np.mean(sharp)), 4)}


def pick_codec(measured: list[dict]) -> dict:
    """The codec to keep: the lowest sprite colour error (worst channel) among those whose background error is
    within 25 % of the best background error (identity without losing the background texture)."""
    best_bg = min(m["background_mse"] for m in measured)
    ok = [m for m in measured if m["background_mse"] <= 1.25 * best_bg and m["sprite_colour_error_per_channel"]]
    return min(ok or measured, key=lambda m: max(m["sprite_colour_error_per_channel"] or [1e9]))


FAST_PAN_PERIOD = 6.0  # the world's fastest period (``WorldParams.sample``: 6–16 s)


def fast_pan_video(seed: int, seconds: float, period: float = FAST_PAN_PERIOD):
    """The world of ``seed`` with its camera made to pan (no tilt) every ``period`` seconds; None for a seed whose
    camera is static (pan amplitude 0)."""
    p = world.WorldParams.sample(seed)
    if p.pan == 0:
        return None
    return world.render(dataclasses.replace(p, period=float(period), tilt=0.0), seconds=seconds, fps=8.0)


def training_video(seed: int, b: Budget):
    """Training video ``seed`` of the budget: the world's own, or — for the ``fast_pans`` fraction of the seeds
    (by seed, so the same seeds in every run) whose camera pans — the same world with a fast pan."""
    if b.fast_pans > 0 and (seed * 2654435761 % 2**32) / 2**32 < b.fast_pans:
        v = fast_pan_video(seed, b.seconds)
        if v is not None:
            return v
    return world.make_video(seed, seconds=b.seconds, fps=8)


def prepare_data(work: str, b: Budget, device: str, log=print) -> tuple[ConvCodec, Budget]:
    """Training videos → codec (the budget's, or the best of ``codec_candidates`` on held-out videos; trained
    once, kept in ``work``) → latents. Returns the codec and the budget with the codec chosen."""
    from pfvg_core.checkpoint import save_safetensors_atomic

    path = os.path.join(work, "codec.safetensors")
    data = os.path.join(work, "latents")
    chosen = os.path.join(work, "codec.json")
    if b.warm_start and not os.path.isfile(path):  # continue from a bundle: its codec, never retrained
        warm = PFVGModel.load(resolve_path(b.warm_start))
        if not isinstance(warm.codec, ConvCodec):
            raise ValueError(f"warm_start {b.warm_start}: its codec is not a ConvCodec (not a world model of this recipe)")
        os.makedirs(work, exist_ok=True)
        save_safetensors_atomic(warm.codec.state_dict(), path)
        write_json(chosen, {"channels": warm.codec.latent_channels, "sprite_weight": b.sprite_weight, "width": warm.codec.width,
                            "warm_start": provenance_path(b.warm_start)}, indent=1)
    have_codec = os.path.isfile(path) and os.path.isfile(chosen)
    if have_codec:  # trained once (or carried back from another machine, research/carry.py): never trained again
        with open(chosen) as f:
            info = json.load(f)
        b = dataclasses.replace(b, codec_channels=info["channels"], sprite_weight=info["sprite_weight"],
                                codec_width=info.get("width", b.codec_width))
        codec = load_codec(work, b)
        if os.path.isfile(os.path.join(data, "done")):
            return codec, b
    t0 = time.time()
    if have_codec:  # rendered and encoded one video at a time (thousands of fresh videos never sit in memory at once)
        vids = (training_video(s, b) for s in world.train_seeds(b.train_videos))
        _write_latents(data, codec, vids, device)
        log(f"{b.train_videos} training videos × {b.seconds:g} s: latents ready with the codec in {work} ({time.time() - t0:.0f}s)")
        return codec, b
    vids = [training_video(s, b) for s in world.train_seeds(b.train_videos)]
    frames = np.concatenate([v.frames for v in vids])
    log(f"{len(vids)} training videos × {b.seconds:g} s, {len(frames)} frames ({time.time() - t0:.0f}s)")
    configs = [(b.codec_channels, b.sprite_weight)] + [tuple(c) for c in b.codec_candidates if tuple(c) != (b.codec_channels, b.sprite_weight)]
    held = [world.make_video(s, seconds=b.seconds, fps=8) for s in world.heldout_seeds(4, start=1000)] if len(configs) > 1 else []
    measured, codecs = [], []
    for ch, sw in configs:
        codec = train_codec(frames, b.codec_steps, 0, lambda m: None, ch, b.codec_width, sw, device, b.codec_batch)
        if held:
            measured.append({"channels": ch, "sprite_weight": sw, **codec_fidelity(codec, held, device)})
            log(f"codec {measured[-1]}")
        codecs.append(codec)
    pick = pick_codec(measured) if measured else {"channels": configs[0][0], "sprite_weight": configs[0][1]}
    codec = codecs[configs.index((pick["channels"], pick["sprite_weight"]))]
    b = dataclasses.replace(b, codec_channels=pick["channels"], sprite_weight=pick["sprite_weight"])
    os.makedirs(work, exist_ok=True)
    save_safetensors_atomic(codec.state_dict(), path)
    write_json(chosen, {**pick, "candidates": measured}, indent=1)
    _write_latents(data, codec, vids, device)
    log(f"codec ({pick['channels']} channels, sprite weight {pick['sprite_weight']:g}) and latents ready ({time.time() - t0:.0f}s)")
    return codec, b


def _write_latents(data: str, codec: ConvCodec, vids, device: str) -> None:
    """Every training video through the codec into the latent dataset ``data`` (``done`` marks it complete)."""
    shutil.rmtree(data, ignore_errors=True)
    enc = codec.to(device)
    for k, v in enumerate(vids):
        with torch.no_grad():
            lat = enc.encode(to_pixels(v.frames).to(device))[0]
        write_latent_video(data, f"world_{k:05d}", lat, v.prompt, 8.0, seed=int(v.params.seed))
    codec.cpu()
    open(os.path.join(data, "done"), "w").close()


# --- training jobs ------------------------------------------------------------------------------
def _train_config(b: Budget, data: str, out: str, stage: StageConfig, memory: str, seed: int, device: str) -> TrainConfig:
    pre = stage.name.startswith("base")
    return TrainConfig(model="(experiments)", data=data, out=out, stages=[stage], window=b.window, memory_mode=memory, seed=seed,
                       warmup_steps=b.warmup,
                       accumulate=b.accumulate if pre else b.psi_bptt, videos_per_step=b.video_batch, video_batch=b.video_batch,
                       lr=b.lr if pre else b.stage1_lr,
                       save_every=5, shift=b.train_shift, motion_weight=b.motion_weight, device=device, psi_bptt=b.psi_bptt, amp=b.amp, compile=b.compile)


def train_job(spec: dict) -> dict:
    """One training (a process of its own): ``spec`` = {work, budget, name, init, stage, memory, seed, device,
    fresh_semanticpack}. Skipped when done; resumes from its checkpoints. Returns {name, seconds, steps}.
    A training with ``compile`` that fails goes on without it from its last checkpoint (``compile_failed`` in
    the result): a compiler error on one run's graph must not end the whole run."""
    b = Budget(**spec["budget"])
    if b.compile == "off":
        return _train_job(spec)
    error = None
    t0 = time.time()
    try:
        return _train_job(spec)
    except Exception as e:  # noqa: BLE001 - any compiler / backend error: the eager path trains the same model
        error = f"{type(e).__name__}: {str(e)[:300]}"
    # (outside the handler: the failed attempt's model, trainer and traceback are freed before the retry)
    import gc

    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    left = None if not spec.get("max_seconds") else max(1.0, spec["max_seconds"] - (time.time() - t0))
    res = _train_job({**spec, "max_seconds": left, "budget": {**spec["budget"], "compile": "off"}})
    res["compile_failed"] = error
    write_json(os.path.join(spec["work"], spec["name"], "done.json"), res)
    return res


def _train_job(spec: dict) -> dict:
    torch.set_num_threads(1)
    b = Budget(**spec["budget"])
    out = os.path.join(spec["work"], spec["name"])
    done = os.path.join(out, "done.json")
    if os.path.isfile(done):
        with open(done) as f:
            return json.load(f)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True  # measured fastest for these small models (fp32 ≈ 0.8×, bf16 ≈ 0.7×)
        torch.backends.cudnn.allow_tf32 = True
    t0 = time.time()
    if spec["init"] is None and b.warm_start:  # continue from the bundle (its DiT, encoders, codec, SemanticPack)
        model = PFVGModel.load(resolve_path(b.warm_start))
    elif spec["init"] is None:
        model = fresh_model(spec["work"], b, spec["seed"])
    else:
        model = PFVGModel.load(os.path.join(spec["work"], spec["init"], "model"))
        if spec.get("fresh_semanticpack"):
            model = with_fresh_semanticpack(model, b, spec["seed"])
    model.meta.update({"resolution": [64, 64], "fps": 8, "window": b.window, "steps": b.steps, "shift": b.shift})
    st = StageConfig(**spec["stage"])
    cfg = _train_config(b, os.path.join(spec["work"], "latents"), out, st, spec["memory"], spec["seed"], spec["device"])
    trainer = Trainer(cfg, model=model)
    trainer.resume()
    # train until the time is up (``max_seconds`` of this job, or the absolute ``end_by`` of every training of a
    # run), then end the stage at the steps done
    # (the job's own cap always leaves it one step; only the call's deadline can leave it none: then it failed)
    cap_end = t0 + spec["max_seconds"] if spec.get("max_seconds") else math.inf
    end_by = spec.get("end_by") or math.inf
    if min(cap_end, end_by) < math.inf:
        while trainer.pos.stage == 0 and trainer.pos.step < st.steps:
            now = time.time()
            if now >= end_by or (now >= cap_end and trainer.pos.step > 0):
                break
            trainer.run(max_steps=1)
        if trainer.pos.stage == 0:  # cut by the time: the stage ends at the steps done
            if trainer.pos.step == 0:
                raise RuntimeError(f"{spec['name']}: its time was up before its first step (nothing trained)")
            st.steps = trainer.pos.step
    trainer.run()
    log = _read_log(out)
    res = {"name": spec["name"], "steps": st.steps, "seconds": round(time.time() - t0, 1),
           "seconds_per_step": float(np.median([r["seconds"] for r in log])) if log else None,
           "loss_last": float(np.mean([r["loss"] for r in log[-10:]]))}
    write_json(done, res)
    return res


def load_codec(work: str, b: Budget) -> ConvCodec:
    """The experiments folder's codec (``prepare_data`` trained or carried it), in eval mode."""
    from pfvg_core.checkpoint import load_module

    return load_module(os.path.join(work, "codec.safetensors"), ConvCodec(b.codec_channels, 4, b.codec_width), "codec").eval()


def fresh_model(work: str, b: Budget, seed: int) -> PFVGModel:
    """A newly initialised model of the budget's DiT config, no SemanticPack, with the folder's codec: what the
    shared pretraining starts from (and what ``throughput.probe`` trains)."""
    from pfvg_core.backbone import dit_config

    dit = dict(dit_config(b.dit), in_channels=b.codec_channels, out_channels=b.codec_channels)
    model = PFVGModel.build(dit, semanticpack=False, seed=seed, codec_factor=None)
    model.codec = load_codec(work, b)
    return model


def with_fresh_semanticpack(model: PFVGModel, b: Budget, seed: int) -> PFVGModel:
    """The same DiT, encoders and codec with a newly initialised SemanticPack (``memory_tokens`` tokens)."""
    fresh = PFVGModel.build(dict(model.dit.config), semanticpack={"memory_tokens": b.memory_tokens}, seed=seed + 1, codec_factor=None)
    for part in ("dit", "text_encoder", "image_encoder"):
        getattr(fresh, part).load_state_dict(getattr(model, part).state_dict())
    fresh.codec, fresh.meta = model.codec, dict(model.meta)
    return fresh


def _read_log(out: str) -> list[dict]:
    p = os.path.join(out, "train_log.jsonl")
    return [json.loads(line) for line in open(p) if line.strip()] if os.path.isfile(p) else []


def training_plan(b: Budget) -> list[list[dict]]:
    """The trainings in dependency order: phases of independent jobs (base; stage 1; stage 2)."""
    s1 = lambda: dict(name="stage1-teacher", forcing="teacher", params="all", steps=b.stage1)
    phases = [[dict(name="base", init=None, stage=dict(name="base-teacher", forcing="teacher", params="all", steps=b.base),
                    memory="off", seed=0)], [], []]
    needs = {VARIANTS[v][0] for v in b.variants}
    for seed in b.seeds:
        for mem in sorted(needs):
            phases[1].append(dict(name=f"stage1_memory_{mem}_seed{seed}", init="base", stage=s1(), memory=mem, seed=seed,
                                  fresh_semanticpack=mem == "on" and not (b.warm_start and seed == 0)))
        for v in b.variants:
            mem, forcing, params, _ = VARIANTS[v]
            phases[2].append(dict(name=f"{slug(v)}_seed{seed}", init=f"stage1_memory_{mem}_seed{seed}", memory=mem, seed=seed,
                                  stage=dict(name=f"stage2-{forcing}", forcing=forcing, params=params, steps=b.stage2,
                                             lr=b.stage2_lr, student_steps=b.student_steps)))
    return phases


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_").lower()


# --- evaluation ---------------------------------------------------------------------------------
def heldout_videos(b: Budget) -> list:
    return [world.make_video(s, seconds=b.heldout_seconds, fps=8) for s in world.heldout_seeds(b.heldout)]


def generate_batch(model: PFVGModel, videos, memory: str, window: int, steps: int, shift: float, seed: int = 0) -> list[np.ndarray]:
    """Every video generated from its first frame and prompt, all in one batch [B, ...] (same seconds each):
    the long-video loop (``init_state`` / ``sample_segment`` / ``step``), on the model's device."""
    dev = model.device

    def decode(x):  # the codec in float32 even under a bf16 autocast of the DiT (``inference_autocast``)
        with torch.autocast(dev.type, enabled=False):
            return model.codec.decode(x.float()).cpu()

    with torch.no_grad():
        with torch.autocast(dev.type, enabled=False):
            start = _starts(model, videos).to(dev)
        cond = model.conditioning([v.prompt for v in videos], start)
        state = init_state(model, start, cond, seed, MemoryConfig(window=window, memory_mode=memory))
        n = segments_for_seconds((len(videos[0].frames) - 1) / videos[0].fps, videos[0].fps, window)
        chunks = [decode(start)]
        opts = SamplerOptions(steps=steps, shift=shift)
        for _ in range(n):
            x = sample_segment(model, state, cond, None, opts)
            state = step(model, state, x)
            chunks.append(decode(x))
    video = torch.cat(chunks, 2)  # [B, 3, T, H, W]
    return [to_uint8_frames(video[i : i + 1])[: len(v.frames)] for i, v in enumerate(videos)]


def _starts(model: PFVGModel, videos) -> torch.Tensor:
    """Start latents [B, C, 1, h, w] of the videos' first frames."""
    return torch.cat([model.codec.encode(to_pixels(v.frames[:1]).to(model.device)) for v in videos])


def score(frames: np.ndarray, video) -> dict:
    s = metrics.evaluate(frames, video.truth, truth_frames=video.frames, fps=video.fps, sprite_ids=video.sprite_ids)
    s.pop("per_frame", None)
    return s


def score_model(model: PFVGModel, b: Budget, memory: str) -> list[dict]:
    """Every held-out video generated by ``model`` from its first frame and prompt, scored against the truth."""
    videos = heldout_videos(b)
    gen = generate_batch(model, videos, memory, b.window, b.steps, b.shift)
    return [{"seed": int(v.params.seed), **score(f, v)} for f, v in zip(gen, videos)]


def eval_job(spec: dict) -> dict:
    """Generate the held-out videos with one trained model and score them; cached in ``<run>/scores_<memory>.json``."""
    torch.set_num_threads(1)
    b = Budget(**spec["budget"])
    path = os.path.join(spec["work"], spec["run"], f"scores_{spec['memory']}.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    t0 = time.time()
    dev = torch.device(spec["device"])
    model = PFVGModel.load(os.path.join(spec["work"], spec["run"], "model"), device=dev)
    with inference_autocast(model, b):
        videos = score_model(model, b, spec["memory"])
    res = {"run": spec["run"], "memory": spec["memory"], "seconds": 0.0, "videos": videos}
    res["seconds"] = round(time.time() - t0, 1)
    write_json(path, res)
    return res


def inference_autocast(model: PFVGModel, b: Budget):
    """The budget's ``amp`` for generating: bf16 autocast on a GPU when the runs trained in bf16 (a context
    manager). On the CPU the generation stays in float32 (a CPU evaluation's scores unchanged). The blocks are
    not compiled for the evaluation: each evaluation process would compile them again for one model's videos."""
    if model.device.type != "cuda" or b.amp != "bf16":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def reference_job(spec: dict) -> dict:
    """One reference (``metrics.REFERENCES``) scored on every held-out video."""
    torch.set_num_threads(1)
    b = Budget(**spec["budget"])
    codec = load_codec(spec["work"], b).to(spec["device"])
    out = []
    for v in heldout_videos(b):
        frames = metrics.reference_videos(v.frames, codec_fn(codec, spec["device"]))[spec["reference"]]
        out.append({"seed": int(v.params.seed), **score(frames, v)})
    return {"reference": spec["reference"], "videos": out}


def evaluation_plan(b: Budget) -> list[tuple[str, str, str, int]]:
    """(row name, run folder, memory at inference, seed) for every evaluation."""
    plan = []
    for seed in b.seeds:
        for v in b.variants:
            plan.append((v, f"{slug(v)}_seed{seed}", VARIANTS[v][3], seed))
        if b.inference_off and ALL in b.variants:
            plan.append((INFERENCE_OFF, f"{slug(ALL)}_seed{seed}", "off", seed))
    return plan


# --- statistics ---------------------------------------------------------------------------------
def paired_interval(diff: np.ndarray, reps: int = 10_000, seed: int = 0) -> dict:
    """Mean of paired differences ``diff`` [seeds, videos] (NaN: undefined for that pair) and its 95 %
    interval by a two-level bootstrap: resample the training seeds, then the held-out videos."""
    d = np.asarray(diff, np.float64)
    if d.ndim != 2:
        raise ValueError(f"diff must be [seeds, videos], got shape {d.shape}")
    ok = ~np.isnan(d)
    if not ok.any():
        return {"mean": None, "low": None, "high": None, "pairs": 0}
    rng = np.random.default_rng(seed)
    s, v = d.shape
    si = rng.integers(0, s, (reps, s))
    vi = rng.integers(0, v, (reps, v))
    x = d[si[:, :, None], vi[:, None, :]]  # [reps, s, v]
    x = x.reshape(reps, -1)
    cnt = (~np.isnan(x)).sum(1)
    means = np.where(cnt > 0, np.nansum(x, 1) / np.maximum(cnt, 1), np.nan)
    means = means[~np.isnan(means)]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(np.nanmean(d)), "low": float(lo), "high": float(hi), "pairs": int(ok.sum())}


def compare(rows: dict[str, dict[int, list[dict]]], seeds, metric_names=METRICS) -> dict:
    """{comparison: {metric: paired_interval}} from rows {name: {seed: [scores per video]}} (videos in the same order)."""
    out = {}
    for comp, (a, bname) in COMPARISONS.items():
        if a not in rows or bname not in rows:
            continue
        both = [s for s in seeds if s in rows[a] and s in rows[bname]]  # (seeds an evaluation deadline cut: left out)
        if not both:
            continue
        out[comp] = {}
        for m in metric_names:
            d = np.array([[_num(x.get(m)) - _num(y.get(m)) for x, y in zip(rows[a][s], rows[bname][s])] for s in both])
            out[comp][m] = paired_interval(d)
    return out


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def markdown(result: dict) -> str:
    """The results as Markdown: the rows (mean ± std over every seed × video) with the three references,
    then each comparison's paired mean difference and 95 % interval."""
    rows = {name: [s for per in by_seed.values() for s in per] for name, by_seed in result["rows"].items()}
    rows.update(result["references"])
    cols = [c for c in METRICS]
    if all(r in rows for r in metrics.REFERENCES):
        text = metrics.markdown_table(rows, cols)
    else:  # a run cut before its references were scored: no table that cannot be read
        text = f"No table: the references {[r for r in metrics.REFERENCES if r not in rows]} were not evaluated.\n"
    lines = ["", "| comparison (A − B) | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for comp, per in result["comparisons"].items():
        cells = []
        for c in cols:
            r = per[c]
            if r["mean"] is None:
                cells.append("—")
            else:
                mark = " *" if r["low"] > 0 or r["high"] < 0 else ""
                cells.append(f"{r['mean']:+.3g} [{r['low']:+.3g}, {r['high']:+.3g}]{mark}")
        lines.append(f"| {comp} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Interval: 95 %, two-level bootstrap over training seeds and held-out videos; * = excludes zero. "
                 "↓ lower is better, ↑ higher is better.")
    if result.get("missing"):
        lines.append(f"Not evaluated (cut by the time limit; a later run on the same folder does them): {', '.join(result['missing'])}.")
    if result.get("failed"):
        lines.append("Not trained (failed, or starting from a run that failed): "
                     + "; ".join(f"{k}: {v}" for k, v in result["failed"].items()) + ".")
    if result.get("failed_evaluations"):
        lines.append("Evaluations that failed: " + "; ".join(f"{k}: {v}" for k, v in result["failed_evaluations"].items()) + ".")
    return text + "\n".join(lines) + "\n"


# --- the run ------------------------------------------------------------------------------------
def _pool(jobs: int):
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))


TRAIN_GRACE_S = 30.0  # a training still running this long after its deadline is stopped


def _unusable(pool) -> bool:
    """A pool a dead worker broke, or whose workers a deadline stopped (``run_jobs``)."""
    return bool(getattr(pool, "_broken", False) or getattr(pool, "_pfvg_stopped", False))


def _kill_workers(pool) -> None:
    for proc in list((getattr(pool, "_processes", None) or {}).values()):  # SIGKILL: a worker cannot ignore it
        proc.kill()
    pool._pfvg_stopped = True


def _shutdown(pool) -> None:
    """Shut a pool down without waiting on a worker a deadline stopped (it is killed; nothing is awaited)."""
    if getattr(pool, "_pfvg_stopped", False):
        _kill_workers(pool)
        pool.shutdown(wait=False, cancel_futures=True)
    else:
        pool.shutdown(cancel_futures=True)


def calibrate(b: Budget, base_seconds_per_step: float, seconds: dict) -> Budget:
    """Stage-1 and stage-2 steps that fit ``seconds`` {"stage1": s, "stage2": s} of wall clock, from the
    shared pretraining's measured seconds per step (one process alone on the device) and the slow-downs
    measured on an H200 with many processes at once (``SLOWDOWN``; ``seconds["slowdown"]`` overrides them,
    e.g. {"stage1": 1.3, "stage2": 1.0} for the default model trained alone). Every variant gets the same steps."""
    slow = {**SLOWDOWN, **seconds.get("slowdown", {})}
    s1 = max(1, int(seconds["stage1"] / (base_seconds_per_step * slow["stage1"])))
    s2 = max(1, int(seconds["stage2"] / (base_seconds_per_step * slow["stage2"])))
    return dataclasses.replace(b, stage1=s1, stage2=s2)


# with ``seconds``, the shared pretraining's step limit (the time ends it long before)
BASE_STEPS_UNTIL_TIME = 10**6

# per-step time relative to the shared pretraining alone: stage 1 runs 6 processes at once (+ ψ, BPTT);
# stage 2's slowest variant is Student Forcing (5 extra DiT evaluations per clip) among 12 processes
SLOWDOWN = {"stage1": 2.5, "stage2": 6.0}


def run_jobs(pool, specs: list, deadline: float | None = None, on_done=None, errors: dict | None = None) -> list:
    """``[(fn, spec), …]`` run in ``pool`` (or here, one after the other, when it is None); results in the order
    of ``specs``, None for each job the ``deadline`` (a ``time.time()`` value) cut — the pool's workers are then
    stopped — and for each job that failed (its error in ``errors[index]``; a worker that died breaks the pool:
    the jobs it took down are errors too). ``on_done(result)`` is called as each job finishes (e.g. to carry its
    scores off the machine). One job's failure never ends the others."""
    out: list = [None] * len(specs)
    errors = {} if errors is None else errors
    if pool is None:
        for i, (fn, x) in enumerate(specs):
            if deadline is not None and time.time() >= deadline:
                break
            try:
                out[i] = fn(x)
            except Exception as e:  # noqa: BLE001 - recorded, the next job runs
                errors[i] = f"{type(e).__name__}: {str(e)[:300]}"
                continue
            if on_done is not None:
                on_done(out[i])
        return out
    futures = {pool.submit(fn, x): i for i, (fn, x) in enumerate(specs)}
    try:
        for f in cf.as_completed(futures, timeout=None if deadline is None else max(0.0, deadline - time.time())):
            try:
                out[futures[f]] = f.result()
            except Exception as e:  # noqa: BLE001 - recorded (BrokenProcessPool: a worker died), the others go on
                errors[futures[f]] = f"{type(e).__name__}: {str(e)[:300]}"
                continue
            if on_done is not None:
                on_done(out[futures[f]])
    except cf.TimeoutError:
        for f in futures:
            f.cancel()
        _kill_workers(pool)  # jobs already running are stopped, not awaited; the pool is not used again
    return out


def run(work: str, b: Budget, device: str = "auto", jobs: int = 1, log=print, seconds: dict | None = None,
        on_trained=None, deadline: float | None = None, on_evaluated=None, train_jobs: int | None = None,
        train_deadline: float | None = None) -> dict:
    """Train every job of ``training_plan`` (``jobs`` processes at a time), evaluate every model on the held-out
    split, compare; writes ``experiments.json`` and ``experiments.md`` in ``work`` and returns the result.
    ``seconds`` {"base", "stage1", "stage2"}: size the stages by wall clock instead (``calibrate``): the shared
    pretraining trains for ``base`` seconds, and the stages get the steps that fit their seconds.
    ``on_trained(budget)``: called when every training is done, before the (long) evaluation. ``deadline`` (a
    ``time.time()`` value): evaluations not finished by then are left out (listed in ``missing``; a later run on
    the same folder does them), ``on_evaluated(result)`` is called as each evaluation finishes. ``train_jobs``:
    trainings at a time when fewer than ``jobs`` fit the device's memory (the evaluations still run ``jobs``);
    a phase with more jobs runs in waves, each job's safety cap divided among them. ``train_deadline`` (a
    ``time.time()`` value): every training ends by then at the steps it has done. A training that fails is
    recorded (``failed``) with the runs that needed it; the others go on."""
    dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    stored = os.path.join(work, "budget.json")
    stored_budget = os.path.isfile(stored)
    if stored_budget:  # every training of this folder is done (or carried back): its budget decides, nothing trains
        with open(stored) as f:
            b = Budget(**json.load(f))
        seconds = None
        log(f"{stored}: the runs are trained; evaluating them with the budget they were trained with")
    codec, b = prepare_data(work, b, dev, log)
    if seconds is not None:  # the shared pretraining trains for its seconds: its step count is what fits them
        b = dataclasses.replace(b, base=BASE_STEPS_UNTIL_TIME)
    trained: dict[str, dict] = {}
    failed: dict[str, str] = {}
    tj = min(jobs, train_jobs or jobs)
    # with a deadline, trainings always run in worker processes: a hung one is stopped, not awaited
    pooled = tj > 1 or train_deadline is not None
    pool = None

    def fresh_pool(size: int, old):
        if old is not None:
            _shutdown(old)
        return _pool(size)

    try:
        for k, phase in enumerate(training_plan(b)):
            if k == 1 and seconds is not None:  # the plan of stages 1–2 depends on the measured speed
                b = calibrate(b, trained.get("base", {}).get("seconds_per_step") or 1.0, seconds)
                log(f"calibrated: stage 1 {b.stage1} steps, stage 2 {b.stage2} steps")
            if k >= 1 and seconds is not None:
                phase = training_plan(b)[k]
            for job in [j for j in phase if j["init"] is not None and j["init"] not in trained]:
                failed[job["name"]] = f"not trained: it starts from {job['init']}, which did not train"
            phase = [j for j in phase if j["init"] is None or j["init"] in trained]
            if stored_budget:  # a trained folder (or runs carried back): evaluate what is there, never train
                for job in phase:
                    done_path = os.path.join(work, job["name"], "done.json")
                    if os.path.isfile(done_path):
                        with open(done_path) as f:
                            trained[job["name"]] = json.load(f)
                    else:
                        failed[job["name"]] = "not in this folder (it failed, or was left out, where it trained)"
                continue
            waves = max(1, math.ceil(len(phase) / tj))
            # base: trains for its seconds; stages 1–2: the calibrated steps, cut at 1.6× their seconds (divided
            # among the waves) only as a safety net (a cut run records fewer steps in its done.json)
            cap = None if seconds is None else seconds[("base", "stage1", "stage2")[k]] * (1.0 if k == 0 else 1.6) / waves
            common = {"work": work, "budget": b.to_dict(), "device": dev, "max_seconds": cap, "end_by": train_deadline}
            # a job still running this long after the training deadline is stopped (a hung compile, a stuck device)
            stop = None if train_deadline is None else train_deadline + TRAIN_GRACE_S
            todo = list(phase)
            for attempt in range(2):  # once more for the jobs a dying worker took down with it (BrokenProcessPool)
                if pooled and (pool is None or _unusable(pool)):
                    pool = fresh_pool(tj, pool)
                errors: dict[int, str] = {}
                results = run_jobs(pool if pooled else None, [(train_job, {**common, **job}) for job in todo], stop,
                                   errors=errors)
                again = []
                for i, (job, res) in enumerate(zip(todo, results)):
                    if res is not None:
                        trained[res["name"]] = res
                        log(f"trained {res['name']}: {res['steps']} steps, loss {res['loss_last']:.4f} ({res['seconds']:.0f}s; "
                            f"total {time.time() - t0:.0f}s)" + (f"; compile failed, trained eagerly: {res['compile_failed']}"
                                                                 if res.get("compile_failed") else ""))
                    elif attempt == 0 and "BrokenProcessPool" in errors.get(i, "") and (stop is None or time.time() < stop):
                        again.append(job)
                    else:
                        failed[job["name"]] = errors.get(i, "stopped: still running after the training deadline")
                        log(f"training {job['name']} FAILED: {failed[job['name']]}")
                if not again:
                    break
                log(f"a worker died; running {[j['name'] for j in again]} again on a new pool")
                todo = again
            if k == 0:
                if "base" not in trained:  # nothing else can train; no budget is written for a rerun to misread
                    raise RuntimeError(f"the shared pretraining failed: {failed.get('base')}")
                b = dataclasses.replace(b, base=trained["base"]["steps"])
        # the budget the runs were trained with (stage steps calibrated): what research/carry.py packs with them
        write_json(os.path.join(work, "budget.json"), b.to_dict(), indent=1)
        if on_trained is not None:
            on_trained(b)
        plan = evaluation_plan(b)
        if pool is not None and (tj != jobs or _unusable(pool)):  # evaluations: ``jobs`` at a time
            _shutdown(pool)
            pool = None
        if pool is None and jobs > 1:
            pool = _pool(jobs)
        common = {"work": work, "budget": b.to_dict(), "device": dev}
        # the references first (cheap, and a table without them cannot be read), then the trained models
        specs = [(reference_job, {**common, "reference": name}) for name in metrics.REFERENCES]
        todo = [i for i, (_, r, _, _) in enumerate(plan) if r in trained]
        specs += [(eval_job, {**common, "run": plan[i][1], "memory": plan[i][2]}) for i in todo]
        eval_errors: dict[int, str] = {}
        got = run_jobs(pool, specs, deadline, on_evaluated, eval_errors)
    finally:
        if pool is not None:
            _shutdown(pool)
    failed_evaluations = {}
    for i, msg in eval_errors.items():
        spec = specs[i][1]
        key = f"{spec['run']} (memory {spec['memory']})" if "run" in spec else f"reference {spec['reference']}"
        failed_evaluations[key] = msg
        log(f"evaluation {key} FAILED: {msg}")
    nref = len(metrics.REFERENCES)
    by_plan = dict(zip(todo, range(nref, len(specs))))
    rows: dict[str, dict[int, list[dict]]] = {}
    missing = []  # cut by the deadline (a later run on the folder does them)
    for i, (name, run_name, memory, seed) in enumerate(plan):
        j = by_plan.get(i)
        if j is None:
            continue  # not trained: in ``failed``
        if got[j] is not None:
            rows.setdefault(name, {})[seed] = got[j]["videos"]
        elif j not in eval_errors:
            missing.append(f"{run_name} (memory {memory})")
    refs = {res["reference"]: res["videos"] for res in got[:nref] if res is not None}
    missing += [f"reference {name}" for i, name in enumerate(metrics.REFERENCES) if got[i] is None and i not in eval_errors]
    log(f"evaluated {sum(len(v) for v in rows.values())} of {len(plan)} models × {b.heldout} held-out videos and "
        f"{len(refs)} references ({time.time() - t0:.0f}s)" + (f"; cut by the deadline: {missing}" if missing else ""))
    videos = heldout_videos(b)
    with open(os.path.join(work, "codec.json")) as f:
        codec_choice = json.load(f)
    result = {"budget": b.to_dict(), "device": dev, "jobs": jobs, "trained": trained, "rows": rows, "references": refs,
              "comparisons": compare(rows, b.seeds), "missing": missing, "failed": failed,
              "failed_evaluations": failed_evaluations,
              "codec": {**codec_fidelity(codec, videos, dev), "choice": codec_choice}, "seconds": round(time.time() - t0, 1)}
    write_json(os.path.join(work, "experiments.json"), result, indent=1)
    write_text(os.path.join(work, "experiments.md"), markdown(result))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.experiments", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="build/experiments")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--jobs", type=int, default=1, help="trainings / evaluations run at a time (processes)")
    ap.add_argument("--quick", action="store_true", help="a tiny budget (a smoke run on a CPU)")
    ap.add_argument("--budget", default=None, help="JSON object of Budget fields to override")
    ap.add_argument("--seconds", default=None, help='JSON {"base": s, "stage1": s, "stage2": s}: size the stages by wall clock')
    a = ap.parse_args(argv)
    kw = json.loads(a.budget) if a.budget else {}
    b = Budget.tiny(**kw) if a.quick else Budget(**kw)
    res = run(a.work, b, a.device, a.jobs, log=lambda m: print(m, file=sys.stderr, flush=True),
              seconds=json.loads(a.seconds) if a.seconds else None)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
