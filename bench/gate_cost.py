"""What a trained memory gate costs in attention: ``python -m bench.gate_cost [--tokens N] [--repeats R] [--json]``.

A gate g ≠ 1 (every trained model) makes each block take ``semanticpack._GatedMemoryAttnProcessor``'s gated path:
q, k, v widened by ``gate_channels`` head channels (log g carried in one of them, the rest zero), one attention of
the wider head, the output sliced back. This times that against the plain path (the diffusers processor's attention
at the real head size) on this machine, at FramePack-F1's heads (24 × 128), and prints the ratio measured in one run
beside the computed ratio of attention work: (d + pad) / d for a kernel that takes the wider head as it is, and the
ratio after rounding the head size up to a multiple of 32 (what flash-attention's kernels do: 136 → 160)."""
from __future__ import annotations

import argparse
import json
import math
import time

import torch


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(tokens: int = 2048, heads: int = 24, head_dim: int = 128, psi_tokens: int = 64, repeats: int = 3,
            device: str = "cpu") -> dict:
    """Seconds of the plain and the gated attention of one block (batch 1), best of ``repeats``, and the ratios."""
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    from pfvg_core.semanticpack import gate_channels

    dev = torch.device(device)
    dtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, tokens, heads, head_dim, generator=g).to(dev, dtype) for _ in range(3))
    pad = gate_channels(torch.device("cuda"))  # the GPU's 8 channels (the CPU path needs 1; timed with the GPU's)
    scale = head_dim ** -0.5
    log_gate = math.log(0.9)

    def plain():
        return dispatch_attention_fn(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=scale)

    def gated():  # the steps of _GatedMemoryAttnProcessor._gated around the attention
        qa = q.new_zeros(1, tokens, heads, pad)
        qa[..., 0] = 1
        ka = k.new_zeros(1, tokens, heads, pad)
        ka[:, -psi_tokens:, :, 0] = log_gate / scale
        out = dispatch_attention_fn(torch.cat([q, qa], -1), torch.cat([k, ka], -1), torch.cat([v, torch.zeros_like(ka)], -1),
                                    attn_mask=None, dropout_p=0.0, is_causal=False, scale=scale)
        return out[..., :head_dim]

    with torch.no_grad():
        t_plain, t_gated = _time(plain, repeats), _time(gated, repeats)
    rounded = 32 * math.ceil((head_dim + pad) / 32)
    return {"device": str(dev), "tokens": tokens, "heads": heads, "head_dim": head_dim, "gate_channels": pad,
            "plain_s": t_plain, "gated_s": t_gated, "gated_over_plain": t_gated / t_plain,
            "work_ratio_exact_head": (head_dim + pad) / head_dim, "work_ratio_head_rounded_to_32": rounded / head_dim}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gate_cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    r = measure(a.tokens, repeats=a.repeats, device=a.device)
    if a.json:
        print(json.dumps(r, indent=1))
    else:
        print(f"{r['device']}, {r['tokens']} tokens, {r['heads']}×{r['head_dim']} heads: plain {r['plain_s'] * 1e3:.1f} ms, "
              f"gated {r['gated_s'] * 1e3:.1f} ms, gated ÷ plain {r['gated_over_plain']:.2f} (computed work: "
              f"{r['work_ratio_exact_head']:.3f} at head {r['head_dim'] + r['gate_channels']}, "
              f"{r['work_ratio_head_rounded_to_32']:.2f} where kernels round heads up to 32)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
