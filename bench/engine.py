"""Benchmarks: ratios measured in one run (no timed unit tests). ``python -m bench loop --json``.

loop:
- ``segment_time_ratio``: mean time of segments 190–200 ÷ segments 2–12 (target ≤ 1.05: the
  context is bounded, so segment n costs the same as segment 2); each measured segment is the
  fastest of 3 timings of that same segment, to filter out load from other processes;
- ``rss_growth``: peak RSS after the last segment ÷ after segment 10, minus 1 (target ≤ 0.05);
- ``semanticpack_overhead``: segment time with memory on (gate open, ψ injected and updated) ÷
  memory off, minus 1 (target ≤ 0.05).

train (same model, same videos, one optimizer step = one video of ``clips`` clips):
- ``direct_over_teacher``: Direct Forcing step time ÷ teacher forcing (target ≤ 1.3);
- ``student_over_direct``: 5-step Student Forcing ÷ Direct Forcing (the paper: much larger).
Primary figures use the paper's stage-2 parameters (last layers + SemanticPack), where Direct
Forcing is used; ``last_layers_only`` repeats them with only the output layers trained (no backward
through the DiT) and ``all_params`` with every parameter trained. With Direct Forcing reusing the
loss forward, a Student Forcing step costs k·(clips − 1) more forwards than a teacher step: the
ratio is large only when the backward is cheap.

cache (``bench cache``; the embedded default model, the example image and prompt, Euler steps):
- per First Block Cache threshold, ``seconds`` (sampling the whole video) and ``speedup`` over no
  cache, ``pixel_mae`` (mean |Δ| of the decoded video to the uncached one, 0–255 scale) and
  ``latent_rel`` (relative L1 error of the latents). Threshold 0 is listed as the check that it
  equals no cache.

compile (``bench compile``): ``compile_seconds`` (first call, compiling the repeated blocks with
inductor), ``speedup`` of later calls over eager, ``max_abs_diff`` of the video.

steps (``bench steps``; the embedded default model): the error of each sampler/step count to a fine
reference (UniPC, 48 steps) as pixel MAE of the decoded video, and its sampling time; ``chosen``:
the fewest UniPC steps whose error is within ``tolerance`` (×1.05) of 12 Euler steps' error, and
its time relative to 12 Euler steps (the embedded default's sampler; ``model.EMBEDDED_SAMPLING``).

threads: sampling time of the embedded default with 1, 2, … intra-op threads.

decode (``bench decode``; the embedded default's codec, 64×64 at 8 fps, random latents of a video's shape): per
video length (30 s, 120 s, 600 s) the peak memory above the process's memory before the decode, as Long Video
Loop / Decode Latents decode (``decoding.decode_video`` into ComfyUI's IMAGE, ``chunked``) and as they did before
(one batch, then the IMAGE conversion: ``batched``, up to 120 s). Measured in a fresh process per row with the
kernel's peak resident set size (``/proc/self/clear_refs`` resets it, ``VmHWM`` reads it; elsewhere a thread
sampling the resident size every millisecond), so every intermediate counts. ``returned_mb``: the IMAGE's bytes;
``peak_over_returned``: peak ÷ returned; ``slope``: (peak at the longest − peak at the shortest) ÷ (returned at
the longest − returned at the shortest), the bytes of peak per byte of frames returned (target ≤ 1.2).
"""
from __future__ import annotations

import gc
import resource
import statistics
import time

import torch

from pfvg_core.loop import SamplerOptions, sample_segment
from pfvg_core.model import PFVGModel
from pfvg_core.state import MemoryConfig, init_state, step


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _segment_time(model, state, cond, options, repeats: int = 1) -> tuple[float, object]:
    """Time to sample and step one segment; with ``repeats`` > 1 the same segment (a state fully
    determines it) is timed several times and the fastest kept, filtering out load from elsewhere."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        x = sample_segment(model, state, cond, options=options)
        new_state = step(model, state, x)
        best = min(best, time.perf_counter() - t0)
    return best, new_state


def bench_loop(config: str = "small", segments: int = 1000, steps: int = 4, latent: int = 16, overhead_rounds: int = 12,
               overhead_steps: int = 25) -> dict:
    """Segment time and RSS over ``segments`` segments of ``steps`` Euler steps; SemanticPack overhead
    on segments of ``overhead_steps`` steps (the sampler's default: the per-segment ψ update is
    amortised over a real segment)."""
    torch.manual_seed(0)
    model = PFVGModel.build(config, seed=0)
    model.semanticpack.open_gate(-1.0)  # as a trained model: ψ tokens really enter the DiT
    model.refresh_id()
    c = model.latent_channels
    start = torch.randn(1, c, 1, latent, latent)
    with torch.no_grad():
        cond = model.conditioning("a red square moves right over a textured field", start)
    options = SamplerOptions(steps=steps)
    state = init_state(model, start, cond, seed=0, config=MemoryConfig(memory_mode="on"))
    times, rss = [], {}
    measured = set(range(2, 13)) | set(range(190, 201)) | set(range(segments - 11, segments))
    for n in range(segments):
        dt, state = _segment_time(model, state, cond, options, repeats=3 if n in measured else 1)
        times.append(dt)
        if n + 1 in (10, segments):
            gc.collect()
            rss[n + 1] = _rss_mb()
    early, late = times[2:13], times[190:201] if segments > 200 else times[-11:]
    # SemanticPack overhead: alternate on/off segments from states of the same age.
    options = SamplerOptions(steps=overhead_steps)
    s_on = init_state(model, start, cond, seed=1, config=MemoryConfig(memory_mode="on"))
    s_off = init_state(model, start, cond, seed=1, config=MemoryConfig(memory_mode="off"))
    for _ in range(3):  # past ψ₀ and the warm-up
        _, s_on = _segment_time(model, s_on, cond, options)
        _, s_off = _segment_time(model, s_off, cond, options)
    on, off = [], []
    for _ in range(overhead_rounds):
        dt, s_on = _segment_time(model, s_on, cond, options, repeats=2)
        on.append(dt)
        dt, s_off = _segment_time(model, s_off, cond, options, repeats=2)
        off.append(dt)
    return {
        "config": config, "segments": segments, "steps_per_segment": steps, "overhead_steps_per_segment": overhead_steps,
        "latent_hw": latent,
        "segment_time_ratio": round(statistics.mean(late) / statistics.mean(early), 4),
        "rss_growth": round(rss[segments] / rss[10] - 1.0, 4),
        "semanticpack_overhead": round(statistics.median(on) / statistics.median(off) - 1.0, 4),
        "segment_ms_early": round(1000 * statistics.mean(early), 2),
        "segment_ms_late": round(1000 * statistics.mean(late), 2),
        "rss_mb_10": round(rss[10], 1), "rss_mb_last": round(rss[segments], 1),
        "torch_threads": torch.get_num_threads(),
    }


def bench_train(config: str = "small", clips: int = 4, latent: int = 16, videos: int = 3, steps: int = 6) -> dict:
    import copy
    import tempfile

    from pfvg_core.data import write_latent_video
    from pfvg_core.train import StageConfig, TrainConfig, Trainer, read_log

    base = PFVGModel.build(config, seed=0)
    c = base.latent_channels
    window = 9
    out: dict = {"config": config, "clips_per_video": clips, "latent_hw": latent, "steps_timed": steps - 1}
    with tempfile.TemporaryDirectory() as tmp:
        g = torch.Generator().manual_seed(0)
        for v in range(videos):
            write_latent_video(f"{tmp}/data", f"v{v}", torch.randn(c, 1 + clips * window, latent, latent, generator=g), f"video {v}", 8)
        for label, params in (("stage2", "last-layers+semanticpack"), ("last_layers_only", "last-layers"), ("all_params", "all")):
            times = {}
            for forcing in ("teacher", "direct", "student"):
                cfg = TrainConfig(model=f"random:{config}", data=f"{tmp}/data", out=f"{tmp}/{label}-{forcing}", window=window,
                                  stages=[StageConfig(forcing, forcing, params, steps)], save_every=10**9)
                tr = Trainer(cfg, model=copy.deepcopy(base))
                tr.run()
                secs = [r["seconds"] for r in read_log(cfg.out)][1:]  # first step is warm-up
                times[forcing] = statistics.median(secs)
            figures = {"direct_over_teacher": round(times["direct"] / times["teacher"], 4),
                       "student_over_direct": round(times["student"] / times["direct"], 4),
                       "step_seconds": {k: round(v, 4) for k, v in times.items()}}
            if label == "stage2":
                out.update(figures)
            else:
                out[label] = figures
    return out


def _embedded_video(model=None, segments: int = 6, steps: int = 12, sampler: str = "euler", seed: int = 0):
    """(latents [1, C, T, H, W], decoded uint8 frames, sampling seconds) of the embedded default
    from the example image and prompt."""
    import os

    from pfvg_core.decoding import decode_video
    from pfvg_core.loop import generate_long_video
    from pfvg_core.model import load_embedded_model
    from pfvg_core.state import MemoryConfig
    from pfvg_core.video_io import load_image

    model = model or load_embedded_model()
    meta = model.meta
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository (bench/ is in it)
    ex = os.path.join(root, "demo")
    if os.path.isfile(os.path.join(ex, "start.png")):
        pixels = load_image(os.path.join(ex, "start.png"), size=tuple(meta.get("resolution", (64, 64))), multiple=model.codec.factor)
        with open(os.path.join(ex, "prompt.txt")) as f:
            prompt = f.read().strip()
    else:  # installed without demo/: a fixed random image
        pixels = torch.rand(1, 3, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
        prompt = "a red ball rolls right across a green striped field"
    with torch.no_grad():
        start = model.codec.encode(pixels)
    options = SamplerOptions(steps=steps, shift=meta.get("shift"), sampler=sampler)
    t0 = time.perf_counter()
    segs = [s.latents for s in generate_long_video(model, start, prompt, segments, seed=seed, options=options,
                                                   config=MemoryConfig(window=meta.get("window", 4)))]
    secs = time.perf_counter() - t0
    lat = torch.cat(segs, 2)
    frames = decode_video(model.codec, lat, layout="uint8")  # in bounded chunks (decoding.py)
    return lat, frames, secs


def _mae(a, b) -> float:
    import numpy as np

    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def bench_cache(segments: int = 6, thresholds=(0.0, 0.05, 0.1, 0.2, 0.3), repeats: int = 2) -> dict:
    from pfvg_core.model import load_embedded_model
    from pfvg_core.speed import set_step_cache

    model = load_embedded_model()
    _embedded_video(model, segments=1)  # warm-up
    ref_lat, ref_frames, base = _embedded_video(model, segments)
    base = min([base, *(_embedded_video(model, segments)[2] for _ in range(repeats - 1))])
    out = {"model": "embedded default", "segments": segments, "steps": 12, "sampler": "euler",
           "uncached_seconds": round(base, 3), "thresholds": {}, "torch_threads": torch.get_num_threads()}
    for th in thresholds:
        set_step_cache(model, th)
        try:
            lat, frames, secs = _embedded_video(model, segments)
            secs = min([secs, *(_embedded_video(model, segments)[2] for _ in range(repeats - 1))])
        finally:
            set_step_cache(model, None)
        out["thresholds"][str(th)] = {
            "seconds": round(secs, 3), "speedup": round(base / secs, 3), "pixel_mae": round(_mae(frames, ref_frames), 3),
            "latent_rel": round(float((lat - ref_lat).abs().sum() / ref_lat.abs().sum()), 5)}
    return out


def bench_compile(segments: int = 3) -> dict:
    from pfvg_core.model import load_embedded_model
    from pfvg_core.speed import compile_blocks

    model = load_embedded_model()
    _embedded_video(model, segments=1)
    ref_lat, _, base = _embedded_video(model, segments)
    compile_blocks(model, "blocks")
    t0 = time.perf_counter()
    _embedded_video(model, segments=1)
    compile_s = time.perf_counter() - t0
    lat, _, secs = _embedded_video(model, segments)
    secs = min(secs, _embedded_video(model, segments)[2])
    return {"model": "embedded default", "segments": segments, "eager_seconds": round(base, 3),
            "compiled_seconds": round(secs, 3), "compile_seconds": round(compile_s, 1), "speedup": round(base / secs, 3),
            "max_abs_diff": float((lat - ref_lat).abs().max()), "torch_threads": torch.get_num_threads()}


TOLERANCE = 1.05  # UniPC k "matches" 12 Euler steps when its error to the fine reference is ≤ 1.05 × Euler-12's


def bench_steps(segments: int = 4, seeds=(0, 1), unipc=range(4, 13)) -> dict:
    from pfvg_core.model import load_embedded_model

    model = load_embedded_model()
    _embedded_video(model, segments=1)

    def err_time(sampler, steps):
        errs, times = [], []
        for seed in seeds:
            _, frames, secs = _embedded_video(model, segments, steps, sampler, seed)
            errs.append(_mae(frames, refs[seed]))
            times.append(secs)
        return statistics.mean(errs), sum(times)

    refs = {seed: _embedded_video(model, segments, 48, "unipc", seed)[1] for seed in seeds}
    euler_err, euler_t = err_time("euler", 12)
    table = {"euler-12": {"pixel_mae": round(euler_err, 3), "seconds": round(euler_t, 3)}}
    chosen = None
    for k in unipc:
        e, t = err_time("unipc", k)
        table[f"unipc-{k}"] = {"pixel_mae": round(e, 3), "seconds": round(t, 3), "time_vs_euler12": round(t / euler_t, 3)}
        if chosen is None and e <= TOLERANCE * euler_err:
            chosen = k
    return {"model": "embedded default", "segments": segments, "seeds": list(seeds), "reference": "unipc-48",
            "tolerance": TOLERANCE, "table": table, "chosen_unipc_steps": chosen,
            "chosen_time_vs_euler12": table[f"unipc-{chosen}"]["time_vs_euler12"] if chosen else None}


def bench_threads(counts=(1, 2), segments: int = 4) -> dict:
    from pfvg_core.model import load_embedded_model

    model = load_embedded_model()
    old = torch.get_num_threads()
    out = {"model": "embedded default", "segments": segments, "cpus": __import__("os").cpu_count(), "seconds": {}}
    try:
        for n in counts:
            torch.set_num_threads(n)
            _embedded_video(model, segments=1)
            out["seconds"][str(n)] = round(min(_embedded_video(model, segments)[2] for _ in range(2)), 3)
    finally:
        torch.set_num_threads(old)
    base = out["seconds"][str(counts[0])]
    out["ratio_to_1"] = {k: round(v / base, 3) for k, v in out["seconds"].items()}
    return out


# --- decode: peak memory of decoding a whole video -----------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class _PeakRSS:
    """Peak resident memory (bytes) above the level at ``__enter__``: the kernel's high-water mark, reset on entry
    (Linux ≥ 4.0), else a thread sampling the resident size every millisecond."""

    def __enter__(self):
        import threading

        self.base = (_status_kb("VmRSS") or 0) * 1024
        self.exact = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.exact = _status_kb("VmHWM") is not None
        except OSError:
            pass
        self.high, self._stop = self.base, threading.Event()
        if not self.exact:
            def sample():
                while not self._stop.is_set():
                    self.high = max(self.high, (_status_kb("VmRSS") or 0) * 1024)
                    self._stop.wait(0.001)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.exact:
            self.high = (_status_kb("VmHWM") or 0) * 1024
        else:
            self._stop.set()
            self._thread.join()
            self.high = max(self.high, (_status_kb("VmRSS") or 0) * 1024)
        self.peak = max(0, self.high - self.base)
        return False


def decode_peak(seconds: float, mode: str = "chunked", fps: float = 8.0) -> dict:
    """One row of ``bench decode`` (run it in a fresh process): decode ``seconds`` of random latents of the embedded
    default's shape into a ComfyUI IMAGE, ``chunked`` (``operations.decode``, layout image) or ``batched`` (the
    codec on every frame at once, then the IMAGE conversion)."""
    import gc

    from pfvg_core.model import load_embedded_model
    from pfvg_core.operations import decode

    model = load_embedded_model()
    w, h = model.meta.get("resolution", (64, 64))
    f = model.codec.factor
    frames = int(round(seconds * fps)) + 1  # the start frame, then the video
    lat = torch.randn(1, model.latent_channels, frames, h // f, w // f, generator=torch.Generator().manual_seed(0))

    def batched(x):
        with torch.no_grad():
            px = model.codec.decode(x)
        y = (px.float().clamp(-1, 1) + 1) / 2
        return y.permute(0, 2, 3, 4, 1).reshape(-1, *y.shape[3:], 3).contiguous()

    run = batched if mode == "batched" else (lambda x: decode(model, x, layout="image"))
    run(lat[:, :, :2])  # warm-up: kernels and allocator set up outside the measurement
    gc.collect()
    with _PeakRSS() as m:
        out = run(lat)
    return {"seconds": seconds, "frames": frames, "mode": mode, "returned_mb": round(out.numel() * out.element_size() / 2**20, 2),
            "peak_mb": round(m.peak / 2**20, 2), "exact_peak": m.exact}


def bench_decode(seconds=(30, 120, 600), batched_up_to: float = 120) -> dict:
    """``bench decode`` (module docstring): one fresh process per row."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository (bench/ is in it)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    rows = []
    for mode in ("chunked", "batched"):
        for s in seconds:
            if mode == "batched" and s > batched_up_to:
                continue
            code = f"import json; from bench.engine import decode_peak; print(json.dumps(decode_peak({float(s)!r}, {mode!r})))"
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            row["peak_over_returned"] = round(row["peak_mb"] / row["returned_mb"], 3)
            rows.append(row)
    out = {"codec": "embedded default", "fps": 8.0, "rows": rows}
    for mode in ("chunked", "batched"):
        r = [x for x in rows if x["mode"] == mode]
        if len(r) >= 2:
            out[f"slope_{mode}"] = round((r[-1]["peak_mb"] - r[0]["peak_mb"]) / (r[-1]["returned_mb"] - r[0]["returned_mb"]), 3)
    return out


def run(what: str, quick: bool = False, config: str = "small") -> dict:
    if what == "cache":
        return bench_cache(segments=2 if quick else 6, thresholds=(0.0, 0.2) if quick else (0.0, 0.05, 0.1, 0.2, 0.3),
                           repeats=1 if quick else 2)
    if what == "compile":
        return bench_compile(segments=1 if quick else 3)
    if what == "steps":
        return bench_steps(segments=1 if quick else 4, seeds=(0,) if quick else (0, 1), unipc=(4, 8) if quick else range(4, 13))
    if what == "threads":
        return bench_threads(segments=1 if quick else 4)
    if what == "loop":
        return bench_loop(config, segments=220 if quick else 1000, overhead_rounds=4 if quick else 12)
    if what == "train":
        return bench_train(config, steps=3 if quick else 6)
    if what == "decode":
        return bench_decode(seconds=(30, 120) if quick else (30, 120, 600))
    raise ValueError(f"unknown benchmark {what!r}")
