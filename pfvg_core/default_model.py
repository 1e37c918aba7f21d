"""Recipe for the embedded default model (``make train-default``): codec, then the paper's two stages
on the procedural world. Runs on CPU (and on a GPU when one is there).

1. world videos (64×64, 8 fps) → train the ConvCodec (factor 4, 4 channels), normalise its latents;
2. encode the videos into a latent dataset;
3. stage 1: teacher forcing on the whole net (DiT ``embedded`` config + SemanticPack + encoders);
4. stage 2: Direct Forcing on the output layers + SemanticPack;
5. save the bundle to ``pfvg_core/assets/default`` with the training log.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import torch

from .codec import ConvCodec
from .data import write_latent_video
from .model import PFVGModel
from .train import StageConfig, TrainConfig, Trainer, read_log
from .world import make_video

ASSETS = os.path.join(os.path.dirname(__file__), "assets", "default")


def train_codec(frames: np.ndarray, steps: int, seed: int = 0, log=print) -> ConvCodec:
    """Fit the ConvCodec on frames [N, H, W, 3] uint8 (L1 + MSE), then normalise its latents."""
    torch.manual_seed(seed)
    codec = ConvCodec(4, 4, 32)
    opt = torch.optim.AdamW(codec.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    x_all = torch.from_numpy(frames).float().div(127.5).sub(1).permute(0, 3, 1, 2)
    g = torch.Generator().manual_seed(seed)
    for s in range(steps):
        idx = torch.randint(len(x_all), (16,), generator=g)
        x = x_all[idx]
        rec = codec.dec(codec.enc(x))
        loss = (rec - x).abs().mean() + ((rec - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if s % 200 == 0 or s == steps - 1:
            log(f"codec step {s}: loss {loss.item():.4f}")
    with torch.no_grad():
        z = torch.cat([codec.enc(x_all[i : i + 256]) for i in range(0, min(len(x_all), 2048), 256)])
        codec.latent_shift.fill_(float(z.mean()))
        codec.latent_scale.fill_(float(z.std()))
    return codec.eval()


def build(out: str = ASSETS, work: str = "build/default", videos: int = 160, seconds: float = 4.5, stage1: int = 3000,
          stage2: int = 600, codec_steps: int = 1500, seed: int = 0, log=print) -> str:
    t0 = time.time()
    os.makedirs(work, exist_ok=True)
    vids = [make_video(seed + k, seconds=seconds, fps=8) for k in range(videos)]
    frames = np.concatenate([v.frames for v in vids])
    log(f"{videos} world videos, {len(frames)} frames ({time.time() - t0:.0f}s)")
    codec = train_codec(frames, codec_steps, seed, log)
    data = os.path.join(work, "latents")
    shutil.rmtree(data, ignore_errors=True)
    with torch.no_grad():
        for k, v in enumerate(vids):
            px = torch.from_numpy(v.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
            write_latent_video(data, f"world_{k:05d}", codec.encode(px)[0], v.prompt, 8.0)
    log(f"latents written ({time.time() - t0:.0f}s)")
    model = PFVGModel.build("embedded", seed=seed)
    model.codec = codec
    model.meta.update({"resolution": [64, 64], "fps": 8, "window": 4, "steps": 12, "shift": 2.0})
    cfg = TrainConfig(model="(built)", data=data, out=os.path.join(work, "run"), window=4, lr=3e-4, warmup_steps=100,
                      accumulate=2, seed=seed, save_every=250, shift=2.0,
                      stages=[StageConfig("stage1-teacher", "teacher", "all", stage1),
                              StageConfig("stage2-direct", "direct", "last-layers+semanticpack", stage2, lr=1e-4)])
    trainer = Trainer(cfg, model=model)
    if trainer.resume():
        log(f"resumed at step {trainer.pos.global_step}")
    last = [time.time()]

    def on_step(rec):
        if rec["global_step"] % 50 == 0:
            log(f"{rec['stage']} step {rec['step']} loss {rec['loss']:.4f} ({time.time() - t0:.0f}s)")

    trainer.run(on_step=on_step)
    trained = trainer.model
    trained.codec = codec  # the codec is not trained by the DiT stages
    trained.meta.update(model.meta)
    trained.meta["recipe"] = {"videos": videos, "seconds": seconds, "codec_steps": codec_steps, "stage1": stage1, "stage2": stage2,
                              "seed": seed, "train_config": cfg.to_dict()}
    shutil.rmtree(out, ignore_errors=True)
    trained.save(out)
    shutil.copy(os.path.join(cfg.out, cfg.log), os.path.join(out, "train_log.jsonl"))
    log(f"saved {out} ({time.time() - t0:.0f}s)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pfvg_core.default_model", description=__doc__)
    ap.add_argument("--out", default=ASSETS)
    ap.add_argument("--work", default="build/default")
    ap.add_argument("--videos", type=int, default=160)
    ap.add_argument("--stage1", type=int, default=3000)
    ap.add_argument("--stage2", type=int, default=600)
    ap.add_argument("--codec-steps", type=int, default=1500)
    a = ap.parse_args(argv)
    build(a.out, a.work, a.videos, stage1=a.stage1, stage2=a.stage2, codec_steps=a.codec_steps,
          log=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
