"""Can the embedded DiT learn to continue a motion it is shown, when the motion is large? A research command.

    python -m research.motion_probe --model pfvg_core/assets/default --minutes 20 --out build/motion_probe.json

The diagnosis ladder's first rung (``research/ladder.py``, r1) finds that the shipped default does not continue
the camera's pan from the true history. The world's pans are slow there (≈ 1.75 px per frame, under one latent
cell of the factor-4 codec). This probe asks the question on a world where the motion is hard to miss: every
video pans (no static camera, no tilt) with a period of ``--period`` seconds (default 6, the world's fastest),
so the camera moves 4–8 px per frame (1–2 latent cells) in mid-pan. It

1. scores r1 (teacher-forced one segment, memory off) on held-out videos of that world before training;
2. trains the model's shared-pretraining stage on it (teacher forcing, whole net, memory off, fresh videos —
   none is repeated) for ``--minutes`` of one CPU core;
3. scores r1 again on the same videos, with the ladder's references;
4. with ``--world-videos N``: r1 before and after also on N held-out videos of the world as it is (slow pans,
   static cameras, tilts): does what it learnt on fast pans carry over to the world the default is judged on?

If the correlation and gain rise here, the architecture and loss can learn to read motion from the history and
the shipped default's failure is one of data and scale (slow pans, too few updates); if they do not, the next
step is the model's input (how much full-size context it sees) or its size, not more of the same training.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

from pfvg_core import world
from pfvg_core.atomic import write_json
from pfvg_core.data import write_latent_video
from pfvg_core.loop import SamplerOptions
from pfvg_core.model import PFVGModel, resolve_model
from pfvg_core.train import StageConfig, TrainConfig, Trainer
from pfvg_core.video_io import to_pixels
from research import ladder
from research.experiments import fast_pan_video


def videos(seeds, n: int, seconds: float, period: float) -> list:
    out = []
    for s in seeds:
        v = fast_pan_video(s, seconds, period)
        if v is not None:
            out.append(v)
        if len(out) == n:
            return out
    raise ValueError(f"fewer than {n} panning seeds in the range given")


def score_r1(model: PFVGModel, held: list, opts: SamplerOptions, reps: int, log=print) -> dict:
    lat = ladder.encode(model, held)
    return ladder.run_r1(model, held, lat, positions=(6, 10, 14), memories=("off",), opts=opts, window=4, reps=reps, log=log)


def train(model: PFVGModel, work: str, minutes: float, n_videos: int, period: float, log=print, mix: float | None = None) -> dict:
    """The shared-pretraining stage on fresh fast-pan videos for ``minutes`` (one thread). Returns steps, clip-samples.
    ``mix``: instead, the recipe's training videos with that ``fast_pans`` fraction (the world's own videos, some of
    whose pans are made fast: ``experiments.training_video``)."""
    from research.experiments import Budget, training_video

    data = os.path.join(work, "latents")
    os.makedirs(data, exist_ok=True)
    seeds = iter(range(0, world.HELDOUT_START))
    k = 0
    while k < n_videos:  # rendered and encoded one at a time
        s = next(seeds)
        v = fast_pan_video(s, 10.0, period) if mix is None else training_video(s, Budget(seconds=10.0, fast_pans=mix))
        if v is None:
            continue
        with torch.no_grad():
            lat = model.codec.encode(to_pixels(v.frames))[0]
        write_latent_video(data, f"pan_{k:05d}", lat, v.prompt, 8.0, seed=int(v.params.seed))
        k += 1
    cfg = TrainConfig(model="(motion probe)", data=data, out=os.path.join(work, "run"),
                      stages=[StageConfig("base", "teacher", "all", 10**6)], window=4, memory_mode="off", accumulate=2,
                      videos_per_step=4, video_batch=4, lr=3e-4, warmup_steps=5, save_every=10**9, shift=2.0, device="cpu")
    trainer = Trainer(cfg, model=model)
    end = time.time() + 60 * minutes
    while time.time() < end:
        trainer.run(max_steps=1)
    log(f"trained {trainer.pos.step} steps ({trainer.pos.step * 4} videos)")
    return {"steps": trainer.pos.step, "videos": trainer.pos.step * 4}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.motion_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--minutes", type=float, default=20.0, help="training time (one CPU thread)")
    ap.add_argument("--period", type=float, default=6.0, help="the camera's period in seconds")
    ap.add_argument("--videos", type=int, default=16, help="held-out videos for r1")
    ap.add_argument("--train-videos", type=int, default=600, help="fresh training videos written (more than it trains on)")
    ap.add_argument("--mix", type=float, default=None,
                    help="train on the world's own videos with this fraction of fast pans (the recipe's fast_pans) instead")
    ap.add_argument("--world-videos", type=int, default=0, help="also r1 on this many held-out videos of the world as it is")
    ap.add_argument("--steps", type=int, default=8, help="sampling steps (Euler, shift 2)")
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = resolve_model(a.model)
    held = videos(world.heldout_seeds(4 * a.videos), a.videos, 10.0, a.period)
    opts = SamplerOptions(steps=a.steps, sampler="euler", shift=2.0)
    res = {"model": a.model, "period": a.period, "videos": [int(v.params.seed) for v in held], "minutes": a.minutes}
    plain = ladder.heldout_videos(a.world_videos, seconds=10.0) if a.world_videos else []
    res["before"] = ladder.public(score_r1(model, held, opts, a.reps))
    if plain:
        res["world_before"] = ladder.public(score_r1(model, plain, opts, a.reps))
    with tempfile.TemporaryDirectory() as work:
        res["training"] = train(model, work, a.minutes, a.train_videos, a.period, mix=a.mix)
    res["mix"] = a.mix
    model.dit.eval()
    res["after"] = ladder.public(score_r1(model, held, opts, a.reps))
    if plain:
        res["world_after"] = ladder.public(score_r1(model, plain, opts, a.reps))
    for when in ("before", "after", "world_before", "world_after"):
        if when in res:
            print(f"{when}:\n" + ladder.markdown({"r1": res[when]}))
    write_json(a.out, res, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
