"""Diagnosis ladder: what a checkpoint does on held-out world videos, one rung at a time.

    python -m research.ladder --model pfvg_core/assets/default --rungs r1,r2 --videos 16 --out build/ladder.json

``--model``: ``default``, ``random:<config>`` or any PFVG bundle folder. Every rung runs on held-out world
seeds (``world.heldout_seeds``: seeds ≥ ``world.HELDOUT_START``, never trained on) and reports a 95 %
percentile bootstrap interval over videos (every point of a video is resampled together, the same
resamples for every row, so differences between rows are paired).

- r1, teacher-forced one segment: the memory state is built from the TRUE video (codec latents of the true
  frames up to the segment start, appended with the engine's ``state.step``, so FramePack packs them and ψ
  memorizes them as in the loop), then ``loop.sample_segment`` generates the next segment. The camera shift
  over the segment is estimated from the decoded frames relative to the last history frame with the
  project's tracking estimator (``metrics.estimate_camera_path``: phase correlation between neighbours,
  integrated) and compared with the true shift (ground-truth camera path): correlation across videos and
  gain (least-squares slope of estimated on true shift; dx and dy of each segment are two points), plus the
  pixel error of the segment to the truth and to the last history frame copied. References in the same
  table: the true frames (the estimator alone), the truth through the codec (the estimator's ceiling for a
  latent model), the last frame copied (gain 0), the last frame blurred and copied, the first frame repeated.
- r2, prompt sensitivity: the first segment from the start frame with the true prompt, the same prompt and
  another noise seed (what noise alone changes), left↔right flipped, the amplitude changed, the period
  changed and "static camera". Over the videos whose camera pans: the measured horizontal shift against
  the shift the prompt states for that segment (sign agreement, ratio to the true prompt's shift, slope),
  and the relative change of the predicted latents against the true prompt's.
- r3 (optional): the whole-video rollout from the first frame (``loop.generate_long_video``) scored by the
  project's evaluation (``metrics.evaluate``) with its three references (``metrics.reference_videos``).

Deterministic for a fixed ``--seed`` (noise from the memory state's seed stream, a seeded bootstrap).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np
import torch

from pfvg_core import metrics, world
from pfvg_core.atomic import write_json
from pfvg_core.loop import SamplerOptions, generate_long_video, sample_segment, segments_for_seconds
from pfvg_core.model import resolve_model
from pfvg_core.state import MemoryConfig, init_state, step
from pfvg_core.video_io import to_pixels

RUNGS = ("r1", "r2", "r3")
GEN = "generated, memory {}"
REF_RAW = "(reference) true frames (estimator alone)"
REF_CODEC = "(reference) truth through the codec"
REF_COPY = "(reference) last frame copied"
REF_BLUR = "(reference) last frame blurred, copied"
REF_FIRST = "(reference) first frame repeated"
R2_TRUE = "true prompt"
R2_SEED = "true prompt, other noise seed"
R2_FLIP = "left↔right flipped"
R2_AMP = "amplitude changed"
R2_PERIOD = "period changed"
R2_STATIC = "static camera"
R2_VARIANTS = (R2_TRUE, R2_SEED, R2_FLIP, R2_AMP, R2_PERIOD, R2_STATIC)


# --- model, videos, codec ---------------------------------------------------------------------------------
def settings(model, steps: int | None = None, sampler: str | None = None, shift: float | None = None,
             window: int | None = None) -> dict:
    """Sampling settings: the bundle's (``meta``: window, steps, shift; the project's evaluation samples with
    these) unless given."""
    meta = model.meta or {}
    return {"window": int(window or meta.get("window", 4)), "steps": int(steps or meta.get("steps", 8)),
            "sampler": sampler or meta.get("sampler", "euler"), "shift": float(shift if shift is not None else meta.get("shift", 2.0))}


def heldout_videos(n: int, seconds: float, start: int = 0, fps: float = 8.0, view: int = 64) -> list:
    return [world.make_video(s, seconds=seconds, fps=fps, view=view) for s in world.heldout_seeds(n, start)]


def encode(model, videos) -> torch.Tensor:
    """Codec latents of every frame of every video [B, C, T, h, w] (float32, CPU)."""
    with torch.no_grad():
        return torch.cat([model.codec.encode(to_pixels(v.frames).to(model.device)).float().cpu() for v in videos])


def decode(model, latents: torch.Tensor) -> np.ndarray:
    """Latents [B, C, T, h, w] → uint8 frames [B, T, H, W, 3]."""
    with torch.no_grad():
        x = model.codec.decode(latents.to(model.device)).float().cpu()
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()


def unit(frames: np.ndarray) -> np.ndarray:
    return np.asarray(frames, np.float32) / 255.0


# --- the estimator --------------------------------------------------------------------------------------
def segment_shift(last: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Camera shift (dx, dy) px from frame ``last`` [H, W, 3] to the end of ``segment`` [T, H, W, 3]: the
    project's tracking estimator (``metrics.estimate_camera_path``) over [last, *segment]."""
    path = metrics.estimate_camera_path(np.concatenate([np.asarray(last)[None], np.asarray(segment)]))
    return path[-1] - path[0]


def score_segment(last: np.ndarray, segment: np.ndarray, truth: np.ndarray, copy_frame: np.ndarray) -> dict:
    """One row's point for one segment: estimated shift, MSE to the true frames and to ``copy_frame`` repeated."""
    seg = unit(segment)
    return {"shift": [float(x) for x in segment_shift(last, segment)],
            "mse_to_truth": float(((seg - unit(truth)) ** 2).mean()),
            "mse_to_copy": float(((seg - unit(copy_frame)[None]) ** 2).mean())}


# --- statistics -----------------------------------------------------------------------------------------
def _corr_slope(g: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation and least-squares slope of g on t along the last axis (0 where undefined)."""
    g = g - g.mean(-1, keepdims=True)
    t = t - t.mean(-1, keepdims=True)
    cov, vg, vt = (g * t).sum(-1), (g * g).sum(-1), (t * t).sum(-1)
    den = np.sqrt(vg * vt)
    corr = np.where(den > 1e-12, cov / np.where(den > 1e-12, den, 1.0), 0.0)
    slope = np.where(vt > 1e-12, cov / np.where(vt > 1e-12, vt, 1.0), 0.0)
    return corr, slope


def resamples(n: int, reps: int, seed: int) -> np.ndarray:
    """Bootstrap indices [reps, n] over videos (the first row: the sample itself)."""
    idx = np.random.default_rng(seed).integers(0, n, (reps, n))
    idx[0] = np.arange(n)
    return idx


def interval(values: np.ndarray) -> dict:
    """{value: the sample's statistic (row 0), low, high: 95 % percentile interval of the resamples}."""
    v = np.asarray(values, np.float64)
    lo, hi = np.percentile(v, [2.5, 97.5])
    return {"value": float(v[0]), "low": float(lo), "high": float(hi)}


def shift_stats(est: np.ndarray, true: np.ndarray, idx: np.ndarray) -> dict:
    """Correlation and gain of estimated vs true shifts. ``est``, ``true`` [videos, points]; ``idx`` resamples."""
    e, t = est[idx].reshape(len(idx), -1), true[idx].reshape(len(idx), -1)
    corr, slope = _corr_slope(e, t)
    return {"corr": interval(corr), "gain": interval(slope), "mean_abs_shift": interval(np.abs(e).mean(-1)),
            "error_px": interval(np.abs(e - t).mean(-1)), "_corr": corr, "_gain": slope}


def mean_stat(x: np.ndarray, idx: np.ndarray) -> dict:
    """Mean over videos (x [videos, ...]) with its interval; also the resampled means (for differences)."""
    m = np.asarray(x, np.float64).reshape(len(x), -1).mean(-1)[idx].mean(-1)
    return {**interval(m), "_means": m}


def public(d):
    """Drop the resampled arrays (keys starting with ``_``) for the JSON."""
    if isinstance(d, dict):
        return {k: public(v) for k, v in d.items() if not k.startswith("_")}
    return d


# --- r1: teacher-forced one segment ---------------------------------------------------------------------
def default_sampler(model, state, cond, opts: SamplerOptions) -> torch.Tensor:
    return sample_segment(model, state, cond, None, opts)


def r1_positions(positions, window: int) -> list[int]:
    """Segment indices n (segment n starts at frame 1 + n·window; its history: frames 0 … n·window)."""
    ps = sorted({int(p) for p in positions})
    if not ps or ps[0] < 1:
        raise ValueError(f"r1 positions must be segment indices ≥ 1 (a history of at least one segment), got {positions}")
    return ps


def run_r1(model, videos, latents: torch.Tensor, positions, memories=("on", "off"), opts: SamplerOptions = SamplerOptions(),
           window: int = 4, seed: int = 0, reps: int = 2000, sampler=default_sampler, log=print) -> dict:
    """Rung 1 (module docstring). ``sampler(model, state, cond, opts)`` → the segment's latents [B, C, window, h, w]
    (the engine's ``sample_segment``; tests pass oracles)."""
    t0, c0 = time.time(), time.process_time()
    positions = r1_positions(positions, window)
    b = len(videos)
    need = 1 + (positions[-1] + 1) * window
    if latents.shape[2] < need or any(len(v.frames) < need for v in videos):
        raise ValueError(f"r1 at segment {positions[-1]} needs videos of ≥ {need} frames")
    starts = latents[:, :, :1]
    with torch.no_grad():
        cond = model.conditioning([v.prompt for v in videos], starts.to(model.device))
    cams = np.stack([np.asarray(v.truth["camera"], np.float64) for v in videos])  # [B, T, 2]
    codec_frames = decode(model, latents[:, :, : need])  # [B, T, H, W, 3]
    names = [GEN.format(m) for m in memories] + [REF_RAW, REF_CODEC, REF_COPY, REF_BLUR, REF_FIRST]
    points = {n: [[] for _ in range(b)] for n in names}
    true_shift = [[] for _ in range(b)]
    gen_frames = {}
    for m in memories:  # the true history, segment by segment, through the engine's state update
        state = init_state(model, starts.to(model.device), cond, seed, MemoryConfig(window=window, memory_mode=m))
        done = 0
        for n in positions:
            while done < n:
                state = step(model, state, latents[:, :, 1 + done * window : 1 + (done + 1) * window].to(model.device))
                done += 1
            with torch.no_grad():
                x = sampler(model, state, cond, opts)
            gen_frames[(m, n)] = decode(model, x.float())
    for n in positions:
        s = 1 + n * window  # first frame of the segment; s − 1: the last history frame
        for i, v in enumerate(videos):
            truth = v.frames[s : s + window]
            last = codec_frames[i, s - 1]  # what the model was given (through the codec)
            true_shift[i].append(cams[i, s + window - 1] - cams[i, s - 1])
            rows = {REF_RAW: (v.frames[s - 1], truth), REF_CODEC: (last, codec_frames[i, s : s + window]),
                    REF_COPY: (last, np.repeat(last[None], window, 0)),
                    REF_BLUR: (last, np.repeat(metrics.blur(last[None])[0][None], window, 0)),
                    REF_FIRST: (last, np.repeat(v.frames[:1], window, 0))}
            for m in memories:
                rows[GEN.format(m)] = (last, gen_frames[(m, n)][i])
            for name, (ref_last, seg) in rows.items():
                points[name][i].append(score_segment(ref_last, seg, truth, last))
    idx = resamples(b, reps, seed)
    tshift = np.array([[c for p in per for c in p] for per in true_shift])  # [B, positions·2] (dx, dy of each)
    table = {}
    for name in names:
        est = np.array([[c for p in per for c in p["shift"]] for per in points[name]])
        table[name] = {**shift_stats(est, tshift, idx),
                       "mse_to_truth": mean_stat(np.array([[p["mse_to_truth"] for p in per] for per in points[name]]), idx),
                       "mse_to_copy": mean_stat(np.array([[p["mse_to_copy"] for p in per] for per in points[name]]), idx)}
    diffs = {}
    if "on" in memories and "off" in memories:
        a, c = table[GEN.format("on")], table[GEN.format("off")]
        diffs["memory on − off"] = {"corr": interval(a["_corr"] - c["_corr"]), "gain": interval(a["_gain"] - c["_gain"]),
                                    "mse_to_truth": interval(a["mse_to_truth"]["_means"] - c["mse_to_truth"]["_means"])}
    for m in memories:
        g, c = table[GEN.format(m)], table[REF_COPY]
        diffs[f"memory {m}: mse_to_truth − last frame copied's"] = interval(g["mse_to_truth"]["_means"] - c["mse_to_truth"]["_means"])
    secs, cpu = time.time() - t0, time.process_time() - c0
    log(f"r1: {b} videos × {len(positions)} segments × memory {'/'.join(memories)}: {cpu:.1f} CPU s ({secs:.1f} s wall)")
    return {"positions": positions, "segment_start_frames": [1 + n * window for n in positions],
            "true_abs_shift_px": float(np.abs(tshift).mean()), "rows": public(table), "differences": diffs,
            "points": {n: [[{k: p[k] for k in p} for p in per] for per in points[n]] for n in names},
            "true_shift": tshift.tolist(), "seconds": round(secs, 1), "cpu_seconds": round(cpu, 1)}


# --- r2: prompt sensitivity -----------------------------------------------------------------------------
def camera_clause(pan: float, tilt: float, period: float) -> str:
    """The camera part of a world prompt (``WorldParams.prompt``'s wording) for these parameters."""
    if pan == 0 and tilt == 0:
        return "static camera"
    moves = []
    if pan:
        moves.append(f"pans {'right' if pan > 0 else 'left'} {abs(pan):g} px and back every {period:g} s")
    if tilt:
        moves.append(f"tilts {'down' if tilt > 0 else 'up'} {abs(tilt):g} px and back twice")
    return "camera " + ", ".join(moves)


def first_segment_dx(pan: float, period: float, seconds: float) -> float:
    """Horizontal camera shift over [0, seconds] that a pan of amplitude ``pan`` and ``period`` makes."""
    return float(pan * (1 - math.cos(2 * math.pi * seconds / period)) / 2)


def prompt_variants(p: world.WorldParams, seconds: float) -> dict[str, tuple[str, float]]:
    """{variant: (prompt, horizontal shift it states for the first ``seconds``)} for a world with a panning camera."""
    full = p.prompt()
    clause, _, rest = full.partition("; ")
    if camera_clause(p.pan, p.tilt, p.period) != clause:
        raise RuntimeError(f"the world's prompt wording changed: {clause!r}; update research.ladder.camera_clause")
    amp = 2 * abs(p.pan) if abs(p.pan) <= 64 else 8 * round(abs(p.pan) / 16)
    amp = math.copysign(amp, p.pan)
    per = 2 * p.period if p.period <= 8 else float(round(p.period / 2))

    def with_clause(c: str) -> str:
        return f"{c}; {rest}" if rest else c

    true = first_segment_dx(p.pan, p.period, seconds)
    return {R2_TRUE: (full, true), R2_SEED: (full, true),
            R2_FLIP: (with_clause(camera_clause(-p.pan, p.tilt, p.period)), -true),
            R2_AMP: (with_clause(camera_clause(amp, p.tilt, p.period)), first_segment_dx(amp, p.period, seconds)),
            R2_PERIOD: (with_clause(camera_clause(p.pan, p.tilt, per)), first_segment_dx(p.pan, per, seconds)),
            R2_STATIC: (with_clause("static camera"), 0.0)}


def run_r2(model, videos, latents: torch.Tensor, memories=("on", "off"), opts: SamplerOptions = SamplerOptions(),
           window: int = 4, seed: int = 0, reps: int = 2000, sampler=default_sampler, log=print, segments: int = 1) -> dict:
    """Rung 2 (module docstring), on the videos whose camera pans. ``segments`` > 1: the shift over that many
    segments generated from the start frame by the loop (each segment after the first from the model's own
    history), against the shift the prompt states over that time."""
    t0, c0 = time.time(), time.process_time()
    if int(segments) != segments or segments < 1:
        raise ValueError(f"r2 segments must be a whole number ≥ 1, got {segments}")
    moving = [i for i, v in enumerate(videos) if v.params.pan != 0]
    if len(moving) < 2:
        raise ValueError(f"r2 needs at least 2 videos with a panning camera, got {len(moving)} of {len(videos)}")
    vids = [videos[i] for i in moving]
    frames_n = segments * window
    if latents.shape[2] < 1 + frames_n or any(len(v.frames) < 1 + frames_n for v in vids):
        raise ValueError(f"r2 over {segments} segments needs videos of ≥ {1 + frames_n} frames")
    lat = latents[moving][:, :, : 1 + frames_n]
    starts = lat[:, :, :1].to(model.device)
    seg_seconds = frames_n * model.temporal_factor / vids[0].fps
    variants = [prompt_variants(v.params, seg_seconds) for v in vids]
    first = decode(model, lat[:, :, :1])[:, 0]
    codec_seg = decode(model, lat[:, :, 1:])
    true_dx = np.array([v.truth["camera"][frames_n][0] - v.truth["camera"][0][0] for v in vids], np.float64)
    sign = np.sign([v.params.pan for v in vids])
    idx = resamples(len(vids), reps, seed)
    ref = {REF_RAW: np.array([segment_shift(v.frames[0], v.frames[1 : 1 + frames_n])[0] for v in vids]),
           REF_CODEC: np.array([segment_shift(first[i], codec_seg[i])[0] for i in range(len(vids))])}
    out = {"videos": [int(v.params.seed) for v in vids], "segments": segments, "segment_seconds": seg_seconds,
           "true_dx": true_dx.tolist(), "references": {}, "memory": {}}
    for name, est in ref.items():
        corr, slope = _corr_slope(est[idx], true_dx[idx])
        out["references"][name] = {"corr": interval(corr), "gain": interval(slope),
                                   "sign_agreement": interval((np.sign(est) == sign)[idx].mean(-1)),  # the stated sign
                                   "mean_abs_dx": interval(np.abs(est)[idx].mean(-1))}
    for m in memories:
        lats, dx = {}, {}
        for name in R2_VARIANTS:
            prompts = [vr[name][0] for vr in variants]
            with torch.no_grad():
                cond = model.conditioning(prompts, starts)
            state = init_state(model, starts, cond, seed + (1 if name == R2_SEED else 0),
                               MemoryConfig(window=window, memory_mode=m))
            xs = []
            for k in range(segments):
                with torch.no_grad():
                    xs.append(sampler(model, state, cond, opts).float().cpu())
                if k + 1 < segments:
                    state = step(model, state, xs[-1].to(model.device))
            x = torch.cat(xs, 2)
            lats[name] = x
            frames = decode(model, x)
            dx[name] = np.array([segment_shift(first[i], frames[i])[0] for i in range(len(vids))])
        base = lats[R2_TRUE].flatten(1)
        rows = {}
        for name in R2_VARIANTS:
            stated = np.array([vr[name][1] for vr in variants])
            along, stated_along = (dx[name] * sign)[idx].mean(-1), (stated * sign)[idx].mean(-1)
            change = ((lats[name].flatten(1) - base).norm(dim=1) / base.norm(dim=1).clamp_min(1e-12)).numpy()
            row = {"stated_along": float(stated_along[0]), "measured_along": interval(along),
                   "measured_abs": interval(np.abs(dx[name])[idx].mean(-1)), "relative_change": interval(change[idx].mean(-1))}
            if name != R2_STATIC:  # stated 0: no direction to agree with, no ratio
                row["sign_agreement"] = interval((np.sign(dx[name]) == np.sign(stated))[idx].mean(-1))
                row["shift_ratio"] = interval(along / np.where(np.abs(stated_along) > 1e-9, stated_along, np.nan))
            rows[name] = row
        # does the measured shift follow the stated one, across prompts (the seed variant left out)?
        names = [n for n in R2_VARIANTS if n != R2_SEED]
        est = np.stack([dx[n] for n in names], 1)  # [videos, variants]
        st = np.stack([np.array([vr[n][1] for vr in variants]) for n in names], 1)
        corr, slope = _corr_slope(est[idx].reshape(len(idx), -1), st[idx].reshape(len(idx), -1))
        out["memory"][m] = {"rows": rows, "follows_stated_shift": {"corr": interval(corr), "gain": interval(slope)},
                            "measured_dx": {n: dx[n].tolist() for n in R2_VARIANTS}}
    secs, cpu = time.time() - t0, time.process_time() - c0
    log(f"r2: {len(vids)} panning videos × {len(R2_VARIANTS)} prompts × {segments} segment(s) × memory {'/'.join(memories)}: {cpu:.1f} CPU s ({secs:.1f} s wall)")
    out["seconds"], out["cpu_seconds"] = round(secs, 1), round(cpu, 1)
    return out


# --- r3: the whole rollout, the project's evaluation -----------------------------------------------------
R3_METRICS = tuple(metrics.TRUTH_ANCHORED)


def run_r3(model, videos, memories=("on", "off"), opts: SamplerOptions = SamplerOptions(), window: int = 4, seed: int = 0,
           reps: int = 2000, log=print) -> dict:
    """Every video generated from its first frame and prompt (``loop.generate_long_video``), scored by
    ``metrics.evaluate`` beside ``metrics.reference_videos``; means over videos with their intervals."""
    t0, c0 = time.time(), time.process_time()
    fps = videos[0].fps
    with torch.no_grad():
        starts = torch.cat([model.codec.encode(to_pixels(v.frames[:1]).to(model.device)) for v in videos])
        cond = model.conditioning([v.prompt for v in videos], starts)
    n = segments_for_seconds((len(videos[0].frames) - 1) / fps, fps, window)

    def codec(f: np.ndarray) -> np.ndarray:  # frames [T, H, W, 3] through the codec
        with torch.no_grad():
            return decode(model, model.codec.encode(to_pixels(f).to(model.device)).float())[0]

    scores: dict[str, list[dict]] = {}
    for m in memories:
        chunks = [starts.cpu()]
        for r in generate_long_video(model, starts, "", n, seed, MemoryConfig(window=window, memory_mode=m), opts, fps,
                                     conditioning=cond):
            chunks.append(r.latents.float().cpu())
        frames = decode(model, torch.cat(chunks, 2))
        scores[GEN.format(m)] = [metrics.evaluate(frames[i][: len(v.frames)], v.truth, truth_frames=v.frames, fps=fps,
                                                  sprite_ids=v.sprite_ids) for i, v in enumerate(videos)]
    for name, per in metrics.evaluate_references(videos, codec).items():
        scores[name] = per
    idx = resamples(len(videos), reps, seed)
    rows = {}
    for name, per in scores.items():
        rows[name] = {}
        for k in R3_METRICS:
            vals = np.array([np.nan if s.get(k) is None else float(s[k]) for s in per])
            ok = ~np.isnan(vals)
            rows[name][k] = None if not ok.any() else {**interval(np.nanmean(np.where(ok, vals, np.nan)[idx], -1)), "videos": int(ok.sum())}
    secs, cpu = time.time() - t0, time.process_time() - c0
    log(f"r3: {len(videos)} videos × {n} segments × memory {'/'.join(memories)}: {cpu:.1f} CPU s ({secs:.1f} s wall)")
    points = {name: {k: [None if s.get(k) is None else float(s[k]) for s in per] for k in R3_METRICS}
              for name, per in scores.items()}
    return {"segments": n, "rows": rows, "differences": r3_differences(points, memories, idx), "points": points,
            "seconds": round(secs, 1), "cpu_seconds": round(cpu, 1)}


def r3_differences(points: dict, memories, idx: np.ndarray) -> dict:
    """Paired differences over videos (same resamples): each memory mode − every other mode, and − each still
    reference (first frame repeated, blurred first frame repeated), per metric; videos where either side has no
    value (a metric with no event in that video) are left out of that pair."""
    gens = [GEN.format(m) for m in memories]
    pairs = [(a, b) for i, a in enumerate(gens) for b in gens[i + 1:]]
    pairs += [(g, ref) for g in gens for ref in (metrics.REF_FIRST, metrics.REF_BLUR) if ref in points]
    out = {}
    for a, b in pairs:
        out[f"{a} − {b}"] = d = {}
        for k in R3_METRICS:
            x = np.array([np.nan if u is None or w is None else u - w for u, w in zip(points[a][k], points[b][k])])
            if np.isnan(x).all():
                d[k] = None
                continue
            with warnings.catch_warnings():  # row 0 (the sample) has a value; a resample with none is left out
                warnings.simplefilter("ignore", RuntimeWarning)
                m = np.nanmean(x[idx], -1)
            d[k] = {**interval(m[~np.isnan(m)]), "videos": int((~np.isnan(x)).sum())}
    return out


# --- the command ----------------------------------------------------------------------------------------
def _fmt(s: dict | None, digits: int = 3) -> str:
    if s is None:
        return "—"
    return f"{s['value']:.{digits}g} [{s['low']:.{digits}g}, {s['high']:.{digits}g}]"


def markdown(res: dict) -> str:
    """The ladder's tables (value [95 % interval])."""
    out = []
    if "r1" in res:
        r = res["r1"]
        out.append(f"r1 (segments starting at frames {r['segment_start_frames']}; mean |true shift| {r['true_abs_shift_px']:.2f} px)\n")
        out.append("| row | corr | gain | mean abs shift px | shift error px | MSE to truth | MSE to last frame |\n|---|---|---|---|---|---|---|")
        for name, row in r["rows"].items():
            out.append(f"| {name} | {_fmt(row['corr'], 2)} | {_fmt(row['gain'], 2)} | {_fmt(row['mean_abs_shift'])} | "
                       f"{_fmt(row['error_px'])} | {_fmt(row['mse_to_truth'])} | {_fmt(row['mse_to_copy'])} |")
        for name, d in r["differences"].items():
            if "corr" in d:
                out.append(f"\n{name}: corr {_fmt(d['corr'], 2)}, gain {_fmt(d['gain'], 2)}, MSE to truth {_fmt(d['mse_to_truth'])}")
            else:
                out.append(f"\n{name}: {_fmt(d)}")
        out.append("")
    if "r2" in res:
        r = res["r2"]
        out.append(f"r2 ({len(r['videos'])} panning videos, first {r.get('segments', 1)} segment(s) = {r['segment_seconds']:g} s; true |dx| "
                   f"{np.mean(np.abs(r['true_dx'])):.2f} px)\n")
        for name, row in r["references"].items():
            out.append(f"- {name}: corr {_fmt(row['corr'], 2)}, gain {_fmt(row['gain'], 2)}, sign agreement {_fmt(row['sign_agreement'], 2)}")
        for m, mr in r["memory"].items():
            out.append(f"\nmemory {m}: measured dx vs stated dx over the prompts: corr {_fmt(mr['follows_stated_shift']['corr'], 2)}, "
                       f"gain {_fmt(mr['follows_stated_shift']['gain'], 2)}\n")
            out.append("| prompt | stated shift along the pan px | measured along px | mean abs measured px | sign agreement | "
                       "measured / stated | relative change |\n|---|---|---|---|---|---|---|")
            for name, row in mr["rows"].items():
                out.append(f"| {name} | {row['stated_along']:.2f} | {_fmt(row['measured_along'])} | {_fmt(row['measured_abs'])} | "
                           f"{_fmt(row.get('sign_agreement'), 2)} | {_fmt(row.get('shift_ratio'), 2)} | {_fmt(row['relative_change'], 2)} |")
        out.append("")
    if "r3" in res:
        r = res["r3"]
        out.append(f"r3 ({r['segments']} segments)\n")
        out.append("| row | " + " | ".join(R3_METRICS) + " |\n|---|" + "---|" * len(R3_METRICS))
        for name, row in r["rows"].items():
            out.append(f"| {name} | " + " | ".join(_fmt(row[k]) for k in R3_METRICS) + " |")
        if r.get("differences"):
            out.append("\nPaired differences (over videos):\n\n| pair | " + " | ".join(R3_METRICS) + " |\n|---|" + "---|" * len(R3_METRICS))
            for name, d in r["differences"].items():
                out.append(f"| {name} | " + " | ".join(_fmt(d[k]) for k in R3_METRICS) + " |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.ladder", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="default, random:<config> or a PFVG bundle folder")
    ap.add_argument("--rungs", default="r1,r2", help="comma-separated: r1, r2, r3")
    ap.add_argument("--videos", type=int, default=16, help="held-out videos")
    ap.add_argument("--heldout-start", type=int, default=0, help="first held-out seed offset (world.heldout_seeds)")
    ap.add_argument("--positions", default="6,10,14", help="r1: segment indices to generate (each from the true history)")
    ap.add_argument("--memory", default="on,off", help="memory modes at inference: on, off, zero")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the bundle's)")
    ap.add_argument("--sampler", default=None, help="euler or unipc (default: the bundle's, else euler)")
    ap.add_argument("--shift", type=float, default=None, help="time shift (default: the bundle's, else 2)")
    ap.add_argument("--window", type=int, default=None, help="latent frames per segment (default: the bundle's, else 4)")
    ap.add_argument("--r2-segments", type=int, default=1, help="r2: segments generated from the start frame (1: the first)")
    ap.add_argument("--r3-seconds", type=float, default=60.0, help="r3: video length")
    ap.add_argument("--seed", type=int, default=0, help="noise and bootstrap seed")
    ap.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default=None, help="JSON output (the tables go to stdout)")
    a = ap.parse_args(argv)
    rungs = [r.strip() for r in a.rungs.split(",") if r.strip()]
    bad = [r for r in rungs if r not in RUNGS]
    if bad or not rungs:
        ap.error(f"--rungs: expected some of {RUNGS}, got {a.rungs!r}")
    memories = tuple(m.strip() for m in a.memory.split(",") if m.strip())
    torch.set_num_threads(a.threads)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    t0, c0 = time.time(), time.process_time()
    model = resolve_model(a.model)
    if model.codec is None:
        raise SystemExit("the ladder needs a model with its codec (a PFVG bundle with codec.safetensors)")
    st = settings(model, a.steps, a.sampler, a.shift, a.window)
    opts = SamplerOptions(steps=st["steps"], shift=st["shift"], sampler=st["sampler"])
    w = st["window"]
    positions = r1_positions(a.positions.split(","), w)
    fps = float((model.meta or {}).get("fps", 8))
    res = {"model": a.model, "heldout_seeds": world.heldout_seeds(a.videos, a.heldout_start), "settings": st,
           "memory": list(memories), "seed": a.seed, "reps": a.reps, "threads": a.threads}
    if "r1" in rungs or "r2" in rungs:
        frames = max(1 + (positions[-1] + 1) * w if "r1" in rungs else 1, 1 + a.r2_segments * w)
        videos = heldout_videos(a.videos, (frames - 1) / fps, a.heldout_start, fps)
        lat = encode(model, videos)
        if "r1" in rungs:
            res["r1"] = run_r1(model, videos, lat, positions, memories, opts, w, a.seed, a.reps, log=log)
        if "r2" in rungs:
            res["r2"] = run_r2(model, videos, lat, memories, opts, w, a.seed, a.reps, log=log, segments=a.r2_segments)
    if "r3" in rungs:
        videos = heldout_videos(a.videos, a.r3_seconds, a.heldout_start, fps)
        res["r3"] = run_r3(model, videos, memories, opts, w, a.seed, a.reps, log=log)
    res["seconds"], res["cpu_seconds"] = round(time.time() - t0, 1), round(time.process_time() - c0, 1)
    log(f"ladder: {res['cpu_seconds']:.1f} CPU s, {res['seconds']:.1f} s wall in all ({a.threads} thread{'s' if a.threads != 1 else ''})")
    print(markdown(res))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        write_json(a.out, res, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
