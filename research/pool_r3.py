"""Pool the ladder's r3 runs of one model over sampling seeds: the (a) table on a CPU.

    python -m research.pool_r3 build/a_seed0.json build/a_seed1.json build/a_seed2.json --out build/a.json

Each input is ``python -m research.ladder --rungs r3 --memory on,off,zero --seed S`` on the same held-out videos.
Per video, every metric is averaged over the seeds (what a video scores, the sampling noise averaged out), then
the rows and the paired differences (memory modes against each other and against the still references) are
recomputed over videos with the ladder's bootstrap (``ladder.r3_differences``). The per-seed differences are kept
beside the pooled ones, so that what holds on every seed can be told from what holds on average only.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np

from pfvg_core.atomic import write_json
from research import ladder


def pool(results: list[dict], reps: int = 2000, seed: int = 0) -> dict:
    """``results``: the ``r3`` parts of ladder runs with per-video ``points`` (same rows, same videos)."""
    if not results:
        raise ValueError("pool_r3: no r3 results given")
    names = list(results[0]["points"])
    n = len(next(iter(results[0]["points"].values()))[ladder.R3_METRICS[0]])
    for r in results:
        if list(r["points"]) != names or any(len(r["points"][k][m]) != n for k in names for m in ladder.R3_METRICS):
            raise ValueError("pool_r3: every input must hold the same rows over the same number of videos")
    points = {}
    for name in names:
        points[name] = {}
        for m in ladder.R3_METRICS:
            per = np.array([[np.nan if x is None else x for x in r["points"][name][m]] for r in results], np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a video with no value on any seed: NaN
                mean = np.nanmean(per, 0)
            points[name][m] = [None if np.isnan(x) else float(x) for x in mean]
    idx = ladder.resamples(n, reps, seed)
    rows = {}
    for name in names:
        rows[name] = {}
        for m in ladder.R3_METRICS:
            v = np.array([np.nan if x is None else x for x in points[name][m]])
            ok = ~np.isnan(v)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a video with no value on any seed: NaN
                means = np.nanmean(np.where(ok, v, np.nan)[idx], -1)
            rows[name][m] = None if not ok.any() else {**ladder.interval(means[~np.isnan(means)]), "videos": int(ok.sum())}
    memories = [k.split()[-1] for k in names if k.startswith(ladder.GEN.format(""))]
    return {"seeds": len(results), "videos": n, "segments": results[0].get("segments"), "rows": rows, "differences": ladder.r3_differences(points, memories, idx),
            "per_seed_differences": [r.get("differences") for r in results], "points": points}


def markdown(res: dict) -> str:
    head = f"{res['videos']} videos, each averaged over {res['seeds']} sampling seeds, then bootstrapped over videos\n\n"
    return head + ladder.markdown({"r3": res})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.pool_r3", description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="ladder JSON files with an r3 rung")
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=2000)
    a = ap.parse_args(argv)
    results = []
    for path in a.inputs:
        with open(path) as f:
            d = json.load(f)
        if "r3" not in d or "points" not in d["r3"]:
            print(f"error: {path}: no r3 rung with per-video points (run the ladder with --rungs r3)", file=sys.stderr)
            return 2
        results.append(d["r3"])
    try:
        res = pool(results, a.reps)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(res))
    write_json(a.out, res, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
