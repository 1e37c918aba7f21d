"""A short end-to-end check of the FSDP2 training path on the machine at hand (docs/training.md, "Several GPUs").

    python -m torch.distributed.run --standalone --nproc_per_node 1 -m research.dist_check --out build/dist-check

The FramePack-F1 DiT at full width and reduced depth (``--layers`` dual-stream + ``--single-layers``
single-stream blocks) is written as a PFVG bundle, then trained through ``train.Trainer`` exactly as
``pfvg_core train`` does under torchrun: meta-device build and sharded loading of the bundle, FSDP2 per
block, bf16 mixed precision on CUDA, one teacher-forcing step on the whole net, a sharded (DCP)
checkpoint, a resume from it in a new trainer, one Direct Forcing step on the output layers +
SemanticPack, and the consolidated export, which rank 0 loads and samples one segment from.
It asserts where the weights and the collectives live (``cuda:LOCAL_RANK`` under NCCL) and writes a
JSON report (times, peak memory, losses). ``--dit tiny`` runs it on the CPU with gloo (the test suite does).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import torch


def _config(name: str, layers: int, single: int) -> dict:
    from pfvg_core.backbone import dit_config

    cfg = dit_config(name)
    cfg.update(num_layers=layers, num_single_layers=single)
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.dist_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="work folder (bundle, data, checkpoints; shared by all ranks)")
    p.add_argument("--dit", default="hunyuan-f1", help="DiT config whose width is kept (hunyuan-f1; tiny on the CPU)")
    p.add_argument("--layers", type=int, default=1, help="dual-stream blocks (F1 has 20)")
    p.add_argument("--single-layers", type=int, default=1, help="single-stream blocks (F1 has 40)")
    p.add_argument("--latent", default="16x16", help="latent H×W of the synthetic videos (8× the pixels)")
    p.add_argument("--window", type=int, default=9, help="latent frames per clip")
    p.add_argument("--cpu-offload", action="store_true", help="FSDP CPUOffloadPolicy")
    p.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK when there is CUDA) or cpu")
    p.add_argument("--report", default=None, help="JSON report path (rank 0)")
    a = p.parse_args(argv)

    from pfvg_core import distributed
    from pfvg_core.data import write_latent_video
    from pfvg_core.loop import SamplerOptions, generate_long_video
    from pfvg_core.model import PFVGModel
    from pfvg_core.state import MemoryConfig
    from pfvg_core.train import StageConfig, TrainConfig, Trainer, read_log

    if not distributed.launched():
        print("run under torchrun: python -m torch.distributed.run --standalone --nproc_per_node N -m research.dist_check ...",
              file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    ctx = distributed.init_from_env(a.device)
    import torch.distributed as dist

    report: dict = {"world": ctx.world, "backend": dist.get_backend(), "device": str(ctx.device),
                    "torch": torch.__version__, "dit": a.dit, "layers": [a.layers, a.single_layers]}
    try:
        h, w = (int(x) for x in a.latent.lower().split("x"))
        cfg = _config(a.dit, a.layers, a.single_layers)
        bundle, data, out = (os.path.join(a.out, n) for n in ("bundle", "data", "run"))
        if ctx.rank == 0:  # the "base weights": a random bundle, built on the device (fast), written once
            t = time.perf_counter()
            with torch.device(ctx.device):
                model = PFVGModel.build(cfg, codec_factor=None, seed=0)
            report["params"] = sum(q.numel() for q in model.dit.parameters())
            model.save(bundle)
            del model
            g = torch.Generator().manual_seed(0)
            c = cfg["in_channels"]
            for i, clips in enumerate([1] * ctx.world + [2] * ctx.world):  # two clip-count groups
                write_latent_video(data, f"v{i}", torch.randn(c, 1 + clips * a.window, h, w, generator=g), f"video {i}", 8)
            report["bundle_s"] = round(time.perf_counter() - t, 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        dist.barrier()
        tc = TrainConfig(model=bundle, data=data, out=out, window=a.window, videos_per_step=ctx.world, save_every=1,
                         amp="auto", cpu_offload=a.cpu_offload, device=a.device, gradient_checkpointing="on",
                         stages=[StageConfig("teacher", "teacher", "all", 1), StageConfig("direct", "direct", "last-layers+semanticpack", 1)])
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        tr = Trainer(tc)  # meta init + sharded loading of the bundle's DiT
        report["load_s"] = round(time.perf_counter() - t, 2)
        shards = {n: q for n, q in tr.model.dit.named_parameters()}
        kinds = {type(q).__name__ for q in shards.values()}
        assert kinds == {"DTensor"}, f"DiT parameters are {kinds}, expected DTensor shards only"
        where = {str(q.to_local().device) for q in shards.values()}
        want = "cpu" if a.cpu_offload else str(ctx.device)
        assert where == {want}, f"DiT shards live on {where}, expected {want}"
        report["local_shard_params"] = sum(q.to_local().numel() for q in shards.values())
        t = time.perf_counter()
        tr.run(max_steps=1)  # teacher forcing, whole net; checkpoint at step 1 (DCP)
        report["step1_s"] = round(time.perf_counter() - t, 2)
        del tr
        t = time.perf_counter()
        again = Trainer(dataclasses.replace(tc, save_every=1000))  # (no second checkpoint: time on the device)
        assert again.resume() and again.pos.global_step == 1, "the sharded checkpoint of step 1 did not resume"
        again.run()  # Direct Forcing step on the output layers + SemanticPack, then the consolidated export
        report["resume_step2_export_s"] = round(time.perf_counter() - t, 2)
        if torch.cuda.is_available():
            report["peak_gib"] = round(torch.cuda.max_memory_allocated(ctx.device) / 2**30, 2)
        if ctx.rank == 0:
            losses = [r["loss"] for r in read_log(out)]
            assert len(losses) == 2 and all(math.isfinite(x) for x in losses), f"losses {losses}"
            report["losses"] = losses
            t = time.perf_counter()
            m = PFVGModel.load(os.path.join(out, "model"), dtype="bfloat16" if ctx.device.type == "cuda" else "float32",
                               device=ctx.device)
            start = torch.randn(1, cfg["in_channels"], 1, h, w, generator=torch.Generator().manual_seed(1)).to(ctx.device)
            seg = next(generate_long_video(m, start, "a red ball", 1, seed=0, config=MemoryConfig(window=a.window),
                                           options=SamplerOptions(steps=2)))
            assert torch.isfinite(seg.latents).all(), "the exported model generated non-finite latents"
            report["generate_s"] = round(time.perf_counter() - t, 2)
            report["segment_shape"] = list(seg.latents.shape)
        dist.barrier()
        report["ok"] = True
    except Exception as e:
        report["ok"] = False
        report["error"] = f"{type(e).__name__}: {e}"[:2000]
        raise
    finally:
        report["total_s"] = round(time.perf_counter() - t0, 2)
        if ctx.rank == 0:
            text = json.dumps(report, indent=1)
            print(text)
            if a.report:
                os.makedirs(os.path.dirname(os.path.abspath(a.report)), exist_ok=True)
                with open(a.report, "w") as f:
                    f.write(text + "\n")
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
