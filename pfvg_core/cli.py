"""Command line: ``python -m pfvg_core generate|world|eval|dataset|train …``. Bad input → one clear line, exit 2."""
from __future__ import annotations

import argparse
import json
import sys

import torch
from tqdm.auto import tqdm  # progress bars on stderr (a dependency of the pack)

from .checkpoint import CheckpointError
from .model import resolve_model
from .validate import strict_json


def cmd_generate(a) -> int:
    from .loop import PromptSchedule, SamplerOptions, generate_long_video, segments_for_seconds
    import numpy as np

    from .decoding import decode_video
    from .extend import state_from_video
    from .sizing import fit_frames, model_size
    from .lora import load_lora, parse_lora_arg, with_loras
    from .speed import compile_blocks, set_step_cache, set_threads
    from .state import MemoryConfig
    from .validate import SAMPLING, Limit, check_finite, number, prompt_entries
    from .video_io import (check_image_path, check_video_path, contact_sheet, load_image, open_video, resample,
                            write_video)

    # every input is checked before any work (validate.py: finite, bounded, named in the error)
    seconds = number("--seconds", a.seconds, SAMPLING["seconds"])
    seed = number("--seed", a.seed, SAMPLING["seed"])
    cfg_scale = number("--cfg", a.cfg, SAMPLING["cfg"])
    guidance = number("--guidance", a.guidance, SAMPLING["distilled_guidance"])
    shift = number("--shift", a.shift, SAMPLING["shift"])
    steps = number("--steps", a.steps, SAMPLING["steps"]) if a.steps is not None else None
    fps = number("--fps", a.fps, SAMPLING["fps"]) if a.fps is not None else None
    window = number("--window", a.window, SAMPLING["window"]) if a.window is not None else None
    size = (number("--size W", a.size[0], SAMPLING["width"]), number("--size H", a.size[1], SAMPLING["height"])) if a.size else None
    schedule = _schedule("--schedule", a.schedule)
    entries = prompt_entries(a.prompt, "--prompt")
    prompt = PromptSchedule(entries) if isinstance(entries, tuple) else entries
    if a.negative is not None:
        prompt_entries(a.negative, "--negative")
    check_video_path(a.out)
    if a.sheet:
        check_image_path(a.sheet, "--sheet")
    if (a.image is None) == (a.extend is None):
        raise ValueError("give either --image (a new video) or --extend VIDEO (continue a video)")
    threshold = number("--step-cache", a.step_cache, Limit(0.0, 10.0, optional=True)) if a.step_cache is not None else None
    set_threads(number("--threads", a.threads, Limit(1, 1024, integer=True)))
    loras = [parse_lora_arg(x) for x in a.lora or ()]
    encoders = _encoders(a)
    if encoders is not None and a.extend is not None:
        raise ValueError("--extend with --encoders (FramePack-F1) is not supported yet: extend with the embedded model, "
                         "or in ComfyUI with its VAE")
    reader = open_video(a.extend) if a.extend is not None else None  # fails before the model loads
    model = _load_model(a)
    codec = model.codec
    if encoders is not None:  # FramePack-F1: HunyuanVideo's VAE, LLaMA + CLIP prompts, SigLIP image features
        codec = encoders.codec()
        model.prompt_encoder = encoders.encode_prompt
        _check_latent_scale(model, codec)
    if codec is None:
        raise ValueError(f"model {a.model} has no codec to encode the image and decode the video: "
                         "give --encoders FOLDER (HunyuanVideo's VAE and text/image encoders)")
    if loras:
        model = with_loras(model, [(load_lora(path, model.dit), strength) for path, strength in loras])
    set_step_cache(model, threshold)
    compile_blocks(model, a.compile)
    meta = model.meta
    fps = fps if fps is not None else number("model fps", meta.get("fps", 8), SAMPLING["fps"])
    if size is None and encoders is not None:  # FramePack-F1: the bucket nearest the image's aspect (sizing.py)
        from PIL import Image

        with Image.open(a.image) as im:
            size = model_size(meta, None, im.size[1], im.size[0], number("--resolution", a.resolution, SAMPLING["resolution"]))
    size = size or model_size(meta, codec.factor, 1, 1)  # sizing.py: the rule the nodes use too
    config = MemoryConfig(window=window if window is not None else meta.get("window", 9), schedule=schedule, rope=a.rope,
                          memory_mode=a.memory_mode)
    defaults = model.sampling_defaults
    sampler = a.sampler or defaults["sampler"]
    if steps is None:  # the model's step count belongs to its default sampler
        steps = defaults["steps"] if sampler == defaults["sampler"] else int(meta.get("steps", 25))
    options = SamplerOptions(steps=steps, cfg=cfg_scale, distilled_guidance=guidance,
                             shift=shift if shift is not None else meta.get("shift"), sampler=sampler)
    n = segments_for_seconds(seconds, fps, config.window, codec.temporal_factor)
    number("segments (--seconds × --fps ÷ window)", n, SAMPLING["segments"])
    torch.manual_seed(seed)
    first_prompt = prompt.entries[0][1] if isinstance(prompt, PromptSchedule) else prompt
    state = None
    if reader is not None:  # the source video's frames become the history and ψ (extend.py)
        def source():  # the source video's frames at the generation's size (sizing.fit_frames)
            return fit_frames(iter(reader), _fit(size, codec.factor), a.fit)

        state = state_from_video(model, resample(source(), reader.fps, fps), first_prompt, seed, config, fps=fps)
        start = state.start_latent
    else:
        pixels = load_image(a.image, size=size, multiple=codec.factor, fit=a.fit)
        with torch.no_grad():
            start = codec.encode(pixels.to(model.device, model.dtype) if encoders is None else pixels).float()
        image_embeds = encoders.encode_image(pixels) if encoders is not None else None
    bar = tqdm(total=n * options.steps, desc="generate", unit="step")

    dev, dt = (model.device, model.dtype) if encoders is None else (None, None)
    finite = lambda what: lambda px, t0: check_finite(what, px)  # noqa: E731 (every decoded chunk, before it is kept)
    keep = int(round(seconds * fps)) + (0 if reader is not None else 1)
    new, t = None, 0  # the new frames, allocated once (decoding.decode_video writes each chunk into its place)

    def put(frames):
        nonlocal new, t
        if new is None:
            new = np.empty((keep, *frames.shape[1:]), np.uint8)
        k = min(len(frames), keep - t)
        new[t : t + k] = frames[:k]
        t += k

    if reader is None and encoders is None:
        put(decode_video(codec, start, layout="uint8", device=dev, dtype=dt, on_chunk=finite("start frame")))
    latents = [start]
    try:
        for seg in generate_long_video(model, state if state is not None else start, prompt, n, seed=seed, config=config,
                                       options=options, fps=fps, negative_prompt=a.negative, on_step=lambda e: bar.update(),
                                       image_embeds=None if reader is not None else image_embeds):
            if encoders is None:
                put(decode_video(codec, seg.latents, layout="uint8", device=dev, dtype=dt,
                                 on_chunk=finite(f"segment {seg.index}")))
            else:  # a causal video VAE decodes the whole latent video (in overlapping windows), not segment by segment
                latents.append(seg.latents.float().cpu())
    finally:
        bar.close()
    if encoders is not None:
        put(decode_video(codec, torch.cat(latents, dim=2), layout="uint8", on_chunk=finite("video")))
    new = new[:t]
    if reader is not None:  # the source (at the generation's size and fps), then its continuation
        frames = np.concatenate([np.stack(list(resample(source(), reader.fps, fps))), new])
    else:
        frames = new
    write_video(frames, a.out, fps)
    if a.sheet:
        contact_sheet(frames, a.sheet)
    extra = f", {frames.shape[0] - new.shape[0]} of them from {a.extend}" if reader is not None else ""
    print(f"wrote {a.out}: {frames.shape[0]} frames{extra}, {frames.shape[0] / fps:.1f} s at {fps} fps, {n} segments")
    return 0


def _encoders(a):
    """FramePack-F1's encoders from ``--encoders`` and the per-part options, or None when none is given."""
    from .f1_encoders import PARTS, F1Encoders

    parts = {p: getattr(a, p, None) for p in PARTS if getattr(a, p, None)}
    if not getattr(a, "encoders", None) and not parts:
        return None
    return F1Encoders.from_folder(a.encoders, device=a.device, dtype=a.dtype, **parts)


def _check_latent_scale(model, codec) -> None:
    if abs(model.latent_scale - codec.scale) > 1e-6:
        raise ValueError(f"the VAE's scaling factor {codec.scale} is not the model's latent scale {model.latent_scale}: "
                         "these encoders are not the ones the model was trained with")


def add_encoder_options(p: argparse.ArgumentParser) -> None:
    from .f1_encoders import PARTS

    p.add_argument("--encoders", default=None, metavar="FOLDER",
                   help="FramePack-F1's encoders in diffusers' HunyuanVideo layout (vae/, text_encoder/ + tokenizer/, "
                        "text_encoder_2/ + tokenizer_2/, image_encoder/ + feature_extractor/)")
    for part in PARTS:
        p.add_argument(f"--{part.replace('_', '-')}", dest=part, default=None, metavar="PATH", help=f"{part} folder (overrides --encoders)")
    p.add_argument("--resolution", type=int, default=640, help="FramePack resolution bucket (multiples of 16; 640 as FramePack)")


def _parse_size(values, what: str = "--size"):
    """``--size W H`` or ``--size WxH`` → (W, H) ints, or None."""
    if not values:
        return None
    if len(values) == 1 and "x" in str(values[0]).lower():
        values = str(values[0]).lower().split("x")
    if len(values) != 2:
        raise ValueError(f"{what}: expected W H or WxH, got {' '.join(map(str, values))!r}")
    try:
        return int(values[0]), int(values[1])
    except ValueError as e:
        raise ValueError(f"{what}: expected whole numbers W H or WxH, got {' '.join(map(str, values))!r}") from e


def _fit(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The generation size (W, H), each a multiple of the codec factor."""
    w, h = size
    return max(multiple, w - w % multiple), max(multiple, h - h % multiple)


def _schedule(name: str, text: str):
    from .framepack import Schedule

    from .validate import MAX_SCHEDULE_FRAMES

    sched = Schedule.parse(text)
    if sched.length > MAX_SCHEDULE_FRAMES:
        raise ValueError(f"{name}: packs {sched.length} frames; at most {MAX_SCHEDULE_FRAMES}")
    return sched


def _load_model(a):
    """The model of ``--model`` on ``--device`` in ``--dtype`` (``--storage``, ``--offload``, ``--attention``, ``--compute``)."""
    from .backbone import set_attention_backend

    from .semanticpack import gated_attention_problem
    from .speed import set_compute

    model = resolve_model(a.model, dtype=a.dtype, device=a.device, storage=a.storage, offload=a.offload)
    if a.attention != "native":
        why = gated_attention_problem(model, a.attention)
        if why is not None:
            raise ValueError(f"--attention {a.attention}: {why}")
        set_attention_backend(model.dit, a.attention)
    set_compute(model, getattr(a, "compute", "dtype"))
    return model


def add_device_options(p: argparse.ArgumentParser) -> None:
    """--device / --dtype / --storage / --offload / --attention / --compute (backbone.load_dit, place_dit, speed.set_compute)."""
    from .backbone import ATTENTION_BACKENDS, DTYPES, OFFLOAD, STORAGE
    from .speed import COMPUTE_MODES

    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="compute dtype (bf16 on a GPU)")
    p.add_argument("--storage", default="auto", choices=STORAGE,
                   help="DiT weight storage: auto (an fp8 file stays fp8), compute, fp8_e4m3fn, fp8_e5m2 (layerwise casting)")
    p.add_argument("--offload", default="none", choices=OFFLOAD, help="group: DiT blocks rest on the CPU (24 GB cards)")
    p.add_argument("--attention", default="native", choices=ATTENTION_BACKENDS, help="attention backend (diffusers)")
    p.add_argument("--compute", default="dtype", choices=COMPUTE_MODES,
                   help="DiT matmuls: dtype (in --dtype), fp8 (fp8 tensor cores via torchao: compute capability ≥ 8.9; "
                        "combine with --storage fp8_e4m3fn for the lowest memory), or auto (fp8 where it can run, else dtype)")


def cmd_train(a) -> int:
    import os

    from . import distributed
    from .train import Trainer, load_config
    from .validate import Limit, number

    cfg = load_config(a.config)
    max_steps = number("--max-steps", a.max_steps, Limit(1, 10**9, integer=True, optional=True))
    if distributed.launched():  # torchrun: FSDP2 on cuda:LOCAL_RANK (NCCL), or on the CPU (gloo) with device = "cpu"
        distributed.init_from_env(cfg.device)
    try:
        trainer = Trainer(cfg)
        if a.fresh:
            moved = trainer.start_fresh()
            if moved:
                print(f"--fresh: the previous run in {cfg.out} was moved to {moved}", file=sys.stderr)
        elif trainer.resume():
            print(f"resumed from step {trainer.pos.global_step}", file=sys.stderr)
        elif trainer.existing_run():  # never train over an earlier run that cannot be resumed
            raise ValueError(f"{cfg.out} holds an earlier run ({', '.join(trainer.existing_run())}) with no checkpoint to "
                             "resume: add --fresh to start over (the old run is moved aside) or choose another out")
        bar = tqdm(total=trainer.total_steps(), desc="train", unit="step") if trainer.rank == 0 else None
        if bar is not None:
            bar.update(trainer.pos.global_step)

        def on_step(rec):
            if bar is not None:
                bar.update()
                bar.set_postfix(stage=rec["stage"], loss=f"{rec['loss']:.4f}")

        try:
            pos = trainer.run(on_step=on_step, max_steps=max_steps)
        finally:
            if bar is not None:
                bar.close()
        if trainer.rank == 0:
            where = os.path.join(cfg.out, "model") if pos.stage >= len(cfg.stages) else "(not finished)"
            print(f"trained {pos.global_step} steps; model: {where}; log: {os.path.join(cfg.out, cfg.log)}")
    finally:
        distributed.shutdown()
    return 0


def cmd_dataset(a) -> int:
    from .data import build_dataset, build_f1_dataset
    from .validate import SAMPLING, number

    raw = _parse_size(a.size)
    size = (number("--size W", raw[0], SAMPLING["width"]), number("--size H", raw[1], SAMPLING["height"])) if raw else None
    window = number("--window", a.window, SAMPLING["window"])
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    encoders = _encoders(a)
    if encoders is not None:  # FramePack-F1: cached latents, prompt and image features (data.build_f1_dataset)
        if a.model:
            raise ValueError("give --model (a codec bundle) or --encoders (FramePack-F1), not both")
        fps = number("--fps", a.fps if a.fps is not None else 30.0, SAMPLING["fps"])
        if size is not None and (size[0] % 16 or size[1] % 16):
            raise ValueError(f"--size {size[0]}x{size[1]}: FramePack sizes are multiples of 16")
        report = build_f1_dataset(a.src, a.out, encoders, size=size, resolution=number("--resolution", a.resolution, SAMPLING["resolution"]),
                                  fps=fps, window=window, log=log)
    else:
        if not a.model:
            raise ValueError("give --model (a PFVG model folder whose codec encodes) or --encoders FOLDER (FramePack-F1)")
        fps = number("--fps", a.fps if a.fps is not None else 8.0, SAMPLING["fps"])
        model = resolve_model(a.model)
        if model.codec is None:
            raise ValueError(f"model {a.model} has no codec to encode videos with: for FramePack-F1 give --encoders FOLDER")
        report = build_dataset(a.src, a.out, model.codec, size=size or (64, 64), fps=fps, window=window, log=log)
    return 0 if any(v == "ok" for v in report.values()) else 1


def cmd_world(a) -> int:
    import os

    from .atomic import check_writable, write_text
    from .validate import SAMPLING, Limit, number
    from .video_io import check_video_path, write_video
    from .world import make_video

    seed = number("--seed", a.seed, SAMPLING["seed"])
    seconds = number("--seconds", a.seconds, SAMPLING["seconds"])
    fps = number("--fps", a.fps, SAMPLING["fps"])
    size = number("--size", a.size, Limit(8, 1024, integer=True))
    check_video_path(a.out)
    truth = os.path.splitext(a.out)[0] + ".json"
    check_writable(truth, "truth file")
    v = make_video(seed, seconds=seconds, fps=fps, view=size)
    write_video(v.frames, a.out, fps)
    write_text(truth, v.truth_json())
    print(f"wrote {a.out} ({len(v.frames)} frames) and {truth}: {v.prompt}")
    return 0


def cmd_eval(a) -> int:
    import os

    from .data import read_frames
    from .metrics import evaluate, plot_metrics

    from .validate import SAMPLING, number

    fps = number("--fps", a.fps, SAMPLING["fps"]) if a.fps is not None else None
    if not a.video:
        raise ValueError("eval needs --video")
    if not os.path.exists(a.video):
        raise FileNotFoundError(f"video not found: {a.video}")
    if a.plot:
        from .video_io import check_image_path

        check_image_path(a.plot, "--plot")
    try:
        frames = read_frames(a.video)
    except ValueError as e:
        raise ValueError(f"--video {a.video}: {e}") from e
    truth = truth_frames = None
    if a.truth:
        if not os.path.isfile(a.truth):
            raise FileNotFoundError(f"truth file not found: {a.truth}")
        try:
            with open(a.truth) as f:
                truth = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"--truth {a.truth}: not a JSON file ({e})") from e
        if not isinstance(truth, dict):
            raise ValueError(f"--truth {a.truth}: expected a world truth object")
        fps = fps or number("truth fps", truth.get("fps", 8.0), SAMPLING["fps"])
        if "params" in truth:  # a world video: re-render the true frames
            from .world import Sprite, WorldParams, render

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
        from .features import evaluate_features, load_image_features

        result["features"] = {os.path.basename(os.path.normpath(p)): evaluate_features(frames, load_image_features(p))
                              for p in a.features}
    if a.plot:
        plot_metrics(result["per_frame"], a.plot, fps=fps or 8.0)
    per = result.pop("per_frame")
    if a.per_frame:
        result["per_frame"] = per
    print(strict_json(result) if a.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors do not echo a huge value in full."""

    def error(self, message):
        if len(message) > 300:
            message = message[:300] + f"… ({len(message)} characters)"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    from .rope import ROPE_MODES
    from .sizing import FIT_MODES
    from .state import MEMORY_MODES

    p = _Parser(prog="python -m pfvg_core", description="PFVG: long, consistent image-to-video")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="a long video from an image and a prompt")
    g.add_argument("--model", default="default", help="'default' (the embedded model), a PFVG model folder, or random:<config>")
    g.add_argument("--image", default=None, help="start image of a new video")
    g.add_argument("--extend", default=None, metavar="VIDEO",
                   help="continue this video instead (MP4/WebM/WebP/GIF: its frames become the history and ψ); "
                        "--seconds is then the length added; the output holds the source and its continuation")
    g.add_argument("--prompt", required=True, help="a prompt, or a schedule: one 'SECONDS: prompt' per line")
    g.add_argument("--negative", default=None, help="negative prompt (used when --cfg > 1)")
    g.add_argument("--seconds", type=float, required=True)
    g.add_argument("--out", required=True, help=".webp, .mp4 or .webm")
    g.add_argument("--sheet", default=None, help="also write a contact-sheet PNG here")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int, default=None)
    g.add_argument("--sampler", choices=("euler", "unipc"), default=None,
                   help="euler, or unipc (FramePack's UniPC bh2); default: the model's (embedded default: unipc, 9 steps)")
    g.add_argument("--cfg", type=float, default=1.0)
    g.add_argument("--guidance", type=float, default=10.0, help="distilled guidance")
    g.add_argument("--shift", type=float, default=None, help="static time shift (default: resolution-dependent)")
    g.add_argument("--fps", type=float, default=None)
    g.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=None,
                   help="generation size (default: the model's native size, pfvg_core.sizing)")
    g.add_argument("--fit", choices=FIT_MODES, default="crop",
                   help="bring the image / video to that size: crop (scale to cover, centre crop; default) or stretch")
    g.add_argument("--window", type=int, default=None, help="latent frames per segment")
    g.add_argument("--schedule", default="td_f16k4f2k2f1k1")
    g.add_argument("--rope", default="video", choices=ROPE_MODES)
    g.add_argument("--memory-mode", "--memory", dest="memory_mode", default="on", choices=MEMORY_MODES,
                   help="SemanticPack on, off, or ψ₀ = 0 (--memory: deprecated alias)")
    g.add_argument("--threads", type=int, default=1,
                   help="CPU intra-op threads (default 1: on a busy 2-core machine 2 threads were 5× slower; raise it "
                        "on an idle many-core machine for large models)")
    g.add_argument("--step-cache", type=float, default=None, metavar="THRESHOLD",
                   help="First Block Cache: skip the DiT's later blocks while the first block's residual changes by less "
                        "than THRESHOLD (0.05–0.2 typical; off by default; `python -m bench cache` measures it)")
    g.add_argument("--compile", choices=("off", "blocks"), default="off",
                   help="torch.compile the transformer blocks (slow first segment; off by default)")
    g.add_argument("--lora", action="append", metavar="FILE[:STRENGTH]",
                   help="a HunyuanVideo / FramePack LoRA (.safetensors; diffusers, kohya/musubi or ComfyUI key names), "
                        "strength 1 unless given; repeatable (LoRAs add up)")
    add_device_options(g)
    add_encoder_options(g)
    g.set_defaults(func=cmd_generate)
    t = sub.add_parser("train", help="train with teacher / Direct / Student Forcing (runs under torchrun too)")
    t.add_argument("--config", required=True, help="TOML (or YAML) training config")
    t.add_argument("--fresh", action="store_true",
                   help="start over: an earlier run in the output folder (log, model, checkpoints) is moved to out/previous/<time>")
    t.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    t.set_defaults(func=cmd_train)
    d = sub.add_parser("dataset", help="encode videos / frame folders into a latent dataset")
    d.add_argument("action", choices=["build"])
    d.add_argument("--src", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--model", default=None, help="model folder (or random:<config>) whose codec encodes (embedded-style models)")
    d.add_argument("--size", nargs="+", default=None, metavar="W H | WxH",
                   help="frame size (default: 64x64 with --model; FramePack's nearest bucket with --encoders)")
    d.add_argument("--fps", type=float, default=None, help="resample videos to this rate (default 8; 30 with --encoders)")
    d.add_argument("--window", type=int, default=9)
    d.add_argument("--device", default="auto", help="where the encoders run: auto, cpu, cuda, cuda:N")
    d.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="encoder dtype (bf16 on a GPU)")
    add_encoder_options(d)
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
    e.set_defaults(func=cmd_eval)
    return p


def _line(e: BaseException, limit: int = 400) -> str:
    """The first line of an error, cut to ``limit`` characters (huge inputs are not echoed)."""
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, CheckpointError, RuntimeError, OSError) as e:
        print(f"error: {_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, and a distinct exit status
        print(f"error: internal {type(e).__name__}: {_line(e)} (please report this)", file=sys.stderr)
        return 3
