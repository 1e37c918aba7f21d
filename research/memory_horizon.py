"""How long does ψ remember? A research command.

    python -m research.memory_horizon --model pfvg_core/assets/default --videos 8 --updates 8 --out build/horizon.json

SemanticPack's memory is updated once per segment, ψₙ₊₁ = Squeeze(ψₙ, Memorize(xⁿ)) (PFVG §3.1). Whether it is a
long-term memory is a property of Squeeze: how much of ψₙ survives into ψₙ₊₁. This command measures it on held-out
world videos, with the true latents as the segments (the ladder's teacher-forced state, ``state.step``):

- **ψ₀'s trace**: the same videos with ψ₀ = prompt ⊕ image features (memory ``on``) and ψ₀ = 0 (memory ``zero``):
  ‖ψₙ(on) − ψₙ(zero)‖ / ‖ψₙ(on)‖ after each update n. A memory that keeps its start keeps this away from 0.
- **carry**: at each update, ‖Squeeze(ψₙ, m) − Squeeze(0, m)‖ / ‖Squeeze(ψₙ, m)‖ for the same m = Memorize(xⁿ):
  the part of ψₙ₊₁ that comes from ψₙ (0: ψₙ₊₁ is a function of the last segment only).

Per update: the median over videos and the range (min, max).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from pfvg_core.atomic import write_json
from pfvg_core.model import resolve_model
from pfvg_core.state import MemoryConfig, init_state, step
from research import ladder


def horizon(model, latents: torch.Tensor, prompts: list[str], updates: int, window: int = 4) -> dict:
    """``latents`` [B, C, T, h, w] with T ≥ 1 + updates·window. Returns per-update ψ₀ trace and carry (module doc)."""
    if latents.shape[2] < 1 + updates * window:
        raise ValueError(f"memory_horizon: {updates} updates of {window} frames need ≥ {1 + updates * window} latent frames")
    if model.semanticpack is None:
        raise ValueError("memory_horizon: the model has no SemanticPack")
    start = latents[:, :, :1].to(model.device)
    with torch.no_grad():
        cond = model.conditioning(prompts, start)
        states = {m: init_state(model, start, cond, 0, MemoryConfig(window=window, memory_mode=m)) for m in ("on", "zero")}
        trace, carry = [], []
        for n in range(updates):
            seg = latents[:, :, 1 + n * window : 1 + (n + 1) * window].to(model.device)
            psi, mask = states["on"].psi, states["on"].psi_mask
            with_psi = model.semanticpack.update(psi, seg.to(model.dtype), mask)
            without = model.semanticpack.update(torch.zeros_like(psi), seg.to(model.dtype), mask)
            carry.append(_rel(with_psi - without, with_psi))
            states = {m: step(model, s, seg) for m, s in states.items()}
            trace.append(_rel(states["on"].psi - states["zero"].psi, states["on"].psi))
    return {"updates": updates, "window": window, "psi0_trace": [_summary(x) for x in trace], "carry": [_summary(x) for x in carry]}


def _rel(diff: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    return (diff.flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-12)).float().cpu().numpy()


def _summary(x: np.ndarray) -> dict:
    return {"median": float(np.median(x)), "min": float(x.min()), "max": float(x.max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.memory_horizon", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--updates", type=int, default=8)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = resolve_model(a.model)
    vids = ladder.heldout_videos(a.videos, seconds=(1 + a.updates * a.window) / 8.0)
    res = {"model": a.model, "videos": [int(v.params.seed) for v in vids],
           **horizon(model, ladder.encode(model, vids), [v.prompt for v in vids], a.updates, a.window)}
    print("| update | seconds | ψ₀'s trace | carry from ψₙ |\n|---|---|---|---|")
    for n, (t, c) in enumerate(zip(res["psi0_trace"], res["carry"]), 1):
        print(f"| {n} | {n * a.window / 8:g} | {t['median']:.4f} [{t['min']:.4f}, {t['max']:.4f}] | "
              f"{c['median']:.3f} [{c['min']:.3f}, {c['max']:.3f}] |")
    write_json(a.out, res, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
