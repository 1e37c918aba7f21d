"""``python -m bench WHAT [options]``: the benchmarks (see each module's docstring for what it measures).

Bad input → one clear line, exit 2 (as the user CLI)."""
from __future__ import annotations

import argparse
import json
import sys

from pfvg_core.checkpoint import CheckpointError
from pfvg_core.validate import strict_json

WHAT = ("loop", "train", "f1", "train-f1", "cache", "compile", "steps", "threads", "decode", "world-train")


def run(a) -> dict | None:
    if a.what == "f1" and a.suite:
        from bench.suite import format_table, run_suite

        result = run_suite(a)
        if not a.json:  # a table (the JSON has every field)
            print(format_table(result))
            return None
        return result
    if a.what == "f1":
        from bench.f1 import run_f1

        return run_f1(a)
    if a.what == "train-f1":
        from bench.train_f1 import run_train_f1

        return run_train_f1(a)
    if a.what == "world-train":
        from bench.world_train import run as run_world_train

        return run_world_train(quick=a.quick, compile_too=a.compile)
    from bench import engine

    return engine.run(a.what, quick=a.quick, config=a.config or "small")


def build_parser() -> argparse.ArgumentParser:
    from bench.f1 import add_f1_options

    b = argparse.ArgumentParser(prog="python -m bench", description="benchmarks printing ratios measured in one run")
    b.add_argument("what", choices=WHAT)
    b.add_argument("--json", action="store_true")
    b.add_argument("--quick", action="store_true", help="fewer segments (smoke run)")
    b.add_argument("--config", default=None, help="DiT config to measure (loop/train: small; f1: hunyuan-f1)")
    b.add_argument("--compile", action="store_true", help="world-train: also measure torch.compile of the DiT's blocks")
    add_f1_options(b)
    return b


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        result = run(a)
    except (FileNotFoundError, ValueError, CheckpointError, RuntimeError, OSError) as e:
        lines = str(e).strip().splitlines()
        print(f"error: {(lines[0] if lines else type(e).__name__)[:400]}", file=sys.stderr)
        return 2
    if result is not None:
        print(strict_json(result) if a.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
