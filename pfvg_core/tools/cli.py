"""Command line: ``python -m pfvg_core generate|bench …``. Bad input → one clear line, exit 2."""
from __future__ import annotations

import argparse
import json
import sys

import torch

from ..checkpoint import CheckpointError
from ..model import resolve_model


class _Progress:
    """tqdm if available, else a plain line on stderr."""

    def __init__(self, total: int, desc: str):
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step")
        except ImportError:  # pragma: no cover
            self.bar = None
        self.total, self.n = total, 0

    def update(self, k: int = 1):
        self.n += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.n == self.total or self.n % 10 == 0:
            print(f"\r{self.n}/{self.total}", end="", file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def cmd_generate(a) -> int:
    from ..loop import PromptSchedule, SamplerOptions, generate_long_video, segments_for_seconds
    from ..state import MemoryConfig
    from ..framepack import Schedule
    from ..video_io import check_video_path, contact_sheet, load_image, to_uint8_frames, write_video

    if a.seconds <= 0:
        raise ValueError(f"--seconds must be > 0, got {a.seconds}")
    check_video_path(a.out)
    model = _load_model(a)
    if model.codec is None:
        raise ValueError(f"model {a.model} has no codec to encode the image and decode the video")
    meta = model.meta
    fps = a.fps or meta.get("fps", 8)
    size = tuple(a.size) if a.size else tuple(meta.get("resolution", (64, 64)))
    pixels = load_image(a.image, size=size, multiple=model.codec.factor)
    torch.manual_seed(a.seed)
    with torch.no_grad():
        start = model.codec.encode(pixels.to(model.device, model.dtype)).float()
    config = MemoryConfig(window=a.window or meta.get("window", 9), schedule=Schedule.parse(a.schedule), rope=a.rope, memory_mode=a.memory)
    options = SamplerOptions(steps=a.steps or meta.get("steps", 25), cfg=a.cfg, distilled_guidance=a.guidance,
                             shift=a.shift if a.shift is not None else meta.get("shift"), sampler=a.sampler)
    prompt = PromptSchedule.parse(a.prompt) if "\n" in a.prompt else a.prompt
    n = segments_for_seconds(a.seconds, fps, config.window, model.codec.temporal_factor)
    bar = _Progress(n * options.steps, "generate")
    def decode(latents):
        with torch.no_grad():
            return model.codec.decode(latents.to(model.device, model.dtype)).float().cpu()

    chunks = [decode(start)]
    try:
        for seg in generate_long_video(model, start, prompt, n, seed=a.seed, config=config, options=options, fps=fps,
                                       negative_prompt=a.negative, on_step=lambda e: bar.update()):
            chunks.append(decode(seg.latents))
    finally:
        bar.close()
    frames = to_uint8_frames(torch.cat(chunks, dim=2))[: int(round(a.seconds * fps)) + 1]
    write_video(frames, a.out, fps)
    if a.sheet:
        contact_sheet(frames, a.sheet)
    print(f"wrote {a.out}: {frames.shape[0]} frames, {frames.shape[0] / fps:.1f} s at {fps} fps, {n} segments")
    return 0


def _load_model(a):
    """The model of ``--model`` on ``--device`` in ``--dtype`` (``--storage``, ``--offload``, ``--attention``)."""
    from ..backbone import set_attention_backend

    model = resolve_model(a.model, dtype=a.dtype, device=a.device, storage=a.storage, offload=a.offload)
    if a.attention != "native":
        set_attention_backend(model.dit, a.attention)
    return model


def add_device_options(p: argparse.ArgumentParser) -> None:
    """--device / --dtype / --storage / --offload / --attention (backbone.load_dit, place_dit)."""
    from ..backbone import ATTENTION_BACKENDS, DTYPES, OFFLOAD, STORAGE

    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="compute dtype (bf16 on a GPU)")
    p.add_argument("--storage", default="auto", choices=STORAGE,
                   help="DiT weight storage: auto (an fp8 file stays fp8), compute, fp8_e4m3fn, fp8_e5m2 (layerwise casting)")
    p.add_argument("--offload", default="none", choices=OFFLOAD, help="group: DiT blocks rest on the CPU (24 GB cards)")
    p.add_argument("--attention", default="native", choices=ATTENTION_BACKENDS, help="attention backend (diffusers)")


def cmd_train(a) -> int:
    import os

    import torch.distributed as dist

    from ..train import Trainer, load_config

    cfg = load_config(a.config)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo" if not torch.cuda.is_available() else "nccl")
    try:
        trainer = Trainer(cfg)
        if not a.fresh and trainer.resume():
            print(f"resumed from step {trainer.pos.global_step}", file=sys.stderr)
        bar = _Progress(trainer.total_steps(), "train") if trainer.rank == 0 else None
        if bar is not None:
            bar.update(trainer.pos.global_step)

        def on_step(rec):
            if bar is not None:
                bar.update()
                if bar.bar is not None:
                    bar.bar.set_postfix(stage=rec["stage"], loss=f"{rec['loss']:.4f}")

        try:
            pos = trainer.run(on_step=on_step, max_steps=a.max_steps)
        finally:
            if bar is not None:
                bar.close()
        if trainer.rank == 0:
            where = os.path.join(cfg.out, "model") if pos.stage >= len(cfg.stages) else "(not finished)"
            print(f"trained {pos.global_step} steps; model: {where}; log: {os.path.join(cfg.out, cfg.log)}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def cmd_dataset(a) -> int:
    from ..data import build_dataset

    model = resolve_model(a.model)
    if model.codec is None:
        raise ValueError(f"model {a.model} has no codec to encode videos with")
    report = build_dataset(a.src, a.out, model.codec, size=tuple(a.size), fps=a.fps, window=a.window,
                           log=lambda m: print(m, file=sys.stderr))
    return 0 if any(v == "ok" for v in report.values()) else 1


def cmd_world(a) -> int:
    import os

    from ..video_io import check_video_path, write_video
    from ..world import make_video

    check_video_path(a.out)
    v = make_video(a.seed, seconds=a.seconds, fps=a.fps, view=a.size)
    write_video(v.frames, a.out, a.fps)
    truth = os.path.splitext(a.out)[0] + ".json"
    with open(truth, "w") as f:
        f.write(v.truth_json())
    print(f"wrote {a.out} ({len(v.frames)} frames) and {truth}: {v.prompt}")
    return 0


def cmd_eval(a) -> int:
    import os

    from ..data import read_frames
    from ..metrics import evaluate, plot_metrics

    if a.ablation:
        from . import experiments as ex

        b = ex.Budget.tiny() if a.quick else ex.Budget()
        res = ex.run(a.work, b, a.device, a.jobs, log=lambda m: print(m, file=sys.stderr, flush=True))
        print(json.dumps(res) if a.json else ex.markdown(res))
        return 0
    if not a.video:
        raise ValueError("eval needs --video (or --ablation)")
    if not os.path.exists(a.video):
        raise FileNotFoundError(f"video not found: {a.video}")
    frames = read_frames(a.video)
    truth = truth_frames = None
    fps = a.fps
    if a.truth:
        if not os.path.isfile(a.truth):
            raise FileNotFoundError(f"truth file not found: {a.truth}")
        with open(a.truth) as f:
            truth = json.load(f)
        fps = fps or truth.get("fps")
        if "params" in truth:  # a world video: re-render the true frames
            from ..world import Sprite, WorldParams, render

            p = dict(truth["params"])
            p["sprites"] = tuple(Sprite(**s) for s in p["sprites"])
            p["landmarks"] = tuple(tuple(x) for x in p["landmarks"])
            p["occluders"] = tuple(tuple(x) for x in p["occluders"])
            wp = WorldParams(**p)
            truth_frames = render(wp, seconds=(len(truth["camera"]) - 1) / truth["fps"], fps=truth["fps"]).frames
            if truth_frames.shape[1:] != frames.shape[1:]:
                truth_frames = None
    result = evaluate(frames, truth, truth_frames, fps=fps or 8.0)
    if a.features:
        from ..features import evaluate_features, load_image_features

        result["features"] = {os.path.basename(os.path.normpath(p)): evaluate_features(frames, load_image_features(p))
                              for p in a.features}
    if a.plot:
        plot_metrics(result["per_frame"], a.plot, fps=fps or 8.0)
    per = result.pop("per_frame")
    if a.per_frame:
        result["per_frame"] = per
    print(json.dumps(result) if a.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


def cmd_bench(a) -> int:
    from . import bench

    if a.what == "f1":
        from .bench_f1 import run_f1

        result = run_f1(a)
    else:
        result = bench.run(a.what, quick=a.quick, config=a.config or "small")
    print(json.dumps(result) if a.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pfvg_core", description="PFVG: long, consistent image-to-video")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="a long video from an image and a prompt")
    g.add_argument("--model", default="default", help="'default' (the embedded model), a PFVG model folder, or random:<config>")
    g.add_argument("--image", required=True)
    g.add_argument("--prompt", required=True, help="a prompt, or a schedule: one 'SECONDS: prompt' per line")
    g.add_argument("--negative", default=None, help="negative prompt (used when --cfg > 1)")
    g.add_argument("--seconds", type=float, required=True)
    g.add_argument("--out", required=True, help=".webp or .mp4")
    g.add_argument("--sheet", default=None, help="also write a contact-sheet PNG here")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int, default=None)
    g.add_argument("--sampler", choices=("euler", "unipc"), default="euler", help="euler, or unipc (FramePack's UniPC bh2)")
    g.add_argument("--cfg", type=float, default=1.0)
    g.add_argument("--guidance", type=float, default=10.0, help="distilled guidance")
    g.add_argument("--shift", type=float, default=None, help="static time shift (default: resolution-dependent)")
    g.add_argument("--fps", type=float, default=None)
    g.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=None)
    g.add_argument("--window", type=int, default=None, help="latent frames per segment")
    g.add_argument("--schedule", default="td_f16k4f2k2f1k1")
    g.add_argument("--rope", default="video", choices=["video", "local"])
    g.add_argument("--memory", default="on", choices=["on", "off", "zero"])
    add_device_options(g)
    g.set_defaults(func=cmd_generate)
    t = sub.add_parser("train", help="train with teacher / Direct / Student Forcing (runs under torchrun too)")
    t.add_argument("--config", required=True, help="TOML (or YAML) training config")
    t.add_argument("--fresh", action="store_true", help="ignore checkpoints under the output folder")
    t.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    t.set_defaults(func=cmd_train)
    d = sub.add_parser("dataset", help="encode videos / frame folders into a latent dataset")
    d.add_argument("action", choices=["build"])
    d.add_argument("--src", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--model", required=True, help="model folder (or random:<config>) whose codec encodes")
    d.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("W", "H"))
    d.add_argument("--fps", type=float, default=8.0)
    d.add_argument("--window", type=int, default=9)
    d.set_defaults(func=cmd_dataset)
    w = sub.add_parser("world", help="render a procedural world video with its ground truth (JSON beside it)")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--seconds", type=float, default=10.0)
    w.add_argument("--fps", type=float, default=8.0)
    w.add_argument("--size", type=int, default=64)
    w.add_argument("--out", required=True)
    w.set_defaults(func=cmd_world)
    e = sub.add_parser("eval", help="drift / consistency / revisit metrics of a video")
    e.add_argument("--video")
    e.add_argument("--truth", help="the world's truth JSON (camera per frame, parameters)")
    e.add_argument("--fps", type=float, default=None)
    e.add_argument("--plot", help="write a PNG of the metrics over time")
    e.add_argument("--json", action="store_true")
    e.add_argument("--per-frame", action="store_true", help="include per-frame values")
    e.add_argument("--features", action="append", metavar="FOLDER",
                   help="a local transformers vision model (CLIP, SigLIP, DINOv2…) for feature consistency; repeatable")
    e.add_argument("--ablation", action="store_true",
                   help="the experiments (tools/experiments.py): memory on/off, teacher/Direct/Student Forcing, 3 seeds each, "
                        "held-out split, paired 95 %% intervals")
    e.add_argument("--quick", action="store_true", help="with --ablation: a tiny budget (smoke run)")
    e.add_argument("--work", default="build/experiments", help="with --ablation: working folder")
    e.add_argument("--device", default="auto", help="with --ablation: auto | cpu | cuda")
    e.add_argument("--jobs", type=int, default=1, help="with --ablation: trainings/evaluations at a time (processes)")
    e.set_defaults(func=cmd_eval)
    b = sub.add_parser("bench", help="benchmarks printing ratios measured in one run")
    b.add_argument("what", choices=["loop", "train", "f1"])
    b.add_argument("--json", action="store_true")
    b.add_argument("--quick", action="store_true", help="fewer segments (smoke run)")
    b.add_argument("--config", default=None, help="DiT config to measure (loop/train: small; f1: hunyuan-f1)")
    from .bench_f1 import add_f1_options

    add_f1_options(b)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, CheckpointError, RuntimeError, OSError) as e:
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
