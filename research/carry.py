"""Carry trained experiment runs off a machine that returns only a few small files (``pack_runs``), and
rebuild them elsewhere (``unpack_runs``), so that a training cut short during its evaluation is not lost:
the evaluation resumes on any machine from the rebuilt runs (``experiments.run`` skips every training whose
``done.json`` exists).

The runs of one experiments folder share most of their weights: a stage-2 run changes only the layers its
stage trains, and a stage-1 run starts from the shared pretraining. Each run is therefore stored against the
run it was initialised from (``experiments.training_plan``):

- a tensor equal to its reference's is not stored;
- a run that trains every parameter (the shared pretraining, stage 1) stores its changed tensors as a bf16
  difference from its reference when it has one (``w = ref + Δ``, ``lossy``; the rebuilt weights differ by at
  most bf16's rounding of Δ, recorded per run as ``max_abs_error``);
- every other changed tensor (stage 2's output layers and SemanticPack) is stored exactly.

Files: ``runs-000.safetensors`` … (each at most ``max_file_bytes``; the manifest — budget, codec choice, every
run's bundle config, logs, scores and how each tensor is stored — is the metadata of the first file).
"""
from __future__ import annotations

import json
import os

import torch
from safetensors import safe_open

from pfvg_core.atomic import write_text
from pfvg_core.checkpoint import CheckpointError, read_safetensors, save_safetensors_atomic
from pfvg_core.model import BUNDLE_FILE
from research import experiments as ex

PARTS = ("dit", "semanticpack", "text_encoder", "image_encoder", "codec")
FORMAT = "pfvg-runs-1"
ROOT_JSON = ("codec.json", "budget.json")
SCORES = "scores.json"  # beside the packed files: {run: {scores_<memory>.json: text}} (``protocol.write_scores``)


def _plan_inits(budget: ex.Budget) -> dict[str, tuple[str | None, bool]]:
    """run name → (the run it starts from, whether it trains every parameter)."""
    out = {}
    for phase in ex.training_plan(budget):
        for job in phase:
            out[job["name"]] = (job["init"], job["stage"]["params"] == "all")
    return out


def drop_order(budget: ex.Budget, runs: list[str]) -> list[str]:
    """The order in which runs are left out when a pack does not fit: the last seed first, and within a seed its
    stage-2 runs before its stage-1 runs (no run is kept without the run it starts from). Never left out: the
    shared pretraining and the default's chain (stage 1 with memory and the paper's method, seed 0)."""
    keep = {"base", "stage1_memory_on_seed0", f"{ex.slug(ex.ALL)}_seed0"}
    where = {job["name"]: (job["seed"], k) for k, phase in enumerate(ex.training_plan(budget)) for job in phase}
    return sorted((r for r in runs if r not in keep and r in where), key=lambda r: (-where[r][0], -where[r][1], runs.index(r)))


def _read_text(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return f.read()


def pack_runs(work: str, dest: str, max_file_bytes: int = 15 * 2**20, max_files: int = 8, log=print,
              max_total_bytes: int | None = None, drop_to_fit: bool = False) -> list[str]:
    """Pack every finished run of the experiments folder ``work`` (and its codec) into ``dest``. Returns the
    files written. Raises ``ValueError`` naming the sizes when they do not fit ``max_files`` files (and
    ``max_total_bytes`` in all) — unless ``drop_to_fit``: then the last runs of the plan are left out until the
    rest fits (stage 2 of the last seed first; a run is never kept without the run it starts from), and the
    manifest lists them (``dropped``)."""
    bpath = os.path.join(work, "budget.json")
    if not os.path.isfile(bpath):
        raise FileNotFoundError(f"{bpath}: no budget of a finished training in {work} (experiments.run writes it)")
    with open(bpath) as f:
        budget = ex.Budget(**json.load(f))
    inits = _plan_inits(budget)
    manifest = {"format": FORMAT, "root": {n: _read_text(os.path.join(work, n)) for n in ROOT_JSON}, "runs": {}}
    tensors: dict[str, torch.Tensor] = {}
    codec = read_safetensors(os.path.join(work, "codec.safetensors"), "codec")
    tensors.update({f"codec.safetensors/{k}": v for k, v in codec.items()})
    loaded: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for name, (init, trains_all) in inits.items():  # the plan's order: references come first
        folder = os.path.join(work, name)
        if not os.path.isfile(os.path.join(folder, "done.json")):
            continue
        parts = {p: read_safetensors(os.path.join(folder, "model", f"{p}.safetensors"), f"{name} {p}")
                 for p in PARTS if os.path.isfile(os.path.join(folder, "model", f"{p}.safetensors"))}
        loaded[name] = parts
        ref = loaded.get(init) if init else None
        lossy = trains_all and ref is not None
        how, err = {}, 0.0
        for p, sd in parts.items():
            for k, w in sd.items():
                key = f"{name}/{p}/{k}"
                r = None if ref is None else ref.get(p, {}).get(k)
                if r is not None and r.shape == w.shape and r.dtype == w.dtype and torch.equal(r, w):
                    how[f"{p}/{k}"] = "same"
                elif lossy and r is not None and r.shape == w.shape and w.is_floating_point():
                    d = (w.float() - r.float()).to(torch.bfloat16)
                    tensors[key] = d
                    err = max(err, float(((r.float() + d.float()).to(w.dtype) - w).abs().max()) if w.numel() else 0.0)
                    how[f"{p}/{k}"] = "delta-bf16"
                else:
                    tensors[key] = w
                    how[f"{p}/{k}"] = "exact"
        files = {n: _read_text(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
                 if n in ("done.json", "train_log.jsonl") or (n.startswith("scores_") and n.endswith(".json"))}
        manifest["runs"][name] = {"init": init if ref is not None else None, "max_abs_error": err,
                                  "bundle": _read_text(os.path.join(folder, "model", BUNDLE_FILE)),
                                  "files": files, "tensors": how}
        log(f"packed {name}: {sum(v == 'same' for v in how.values())} tensors shared, "
            f"{sum(v == 'delta-bf16' for v in how.values())} bf16 differences, {sum(v == 'exact' for v in how.values())} exact")
    def shard(tensors):  # tensors in a fixed order, a new file when the next tensor would pass the size limit
        shards: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        for k, v in tensors.items():
            n = v.numel() * v.element_size()
            if shards[-1] and size + n > max_file_bytes - 2**20:  # leave room for the header and the manifest
                shards.append({})
                size = 0
            shards[-1][k] = v
            size += n
        return shards

    def fits(shards):
        total = sum(v.numel() * v.element_size() for sh in shards for v in sh.values()) + 2**20 * len(shards)
        return len(shards) <= max_files and (max_total_bytes is None or total <= max_total_bytes)

    shards = shard(tensors)
    manifest["dropped"] = []
    if drop_to_fit and not fits(shards):
        for name in drop_order(budget, list(manifest["runs"])):
            del manifest["runs"][name]
            tensors = {k: v for k, v in tensors.items() if not k.startswith(f"{name}/")}
            manifest["dropped"].append(name)
            shards = shard(tensors)
            if fits(shards):
                break
    if manifest["dropped"]:
        log(f"left out to fit {max_files} files / {max_total_bytes} bytes: {manifest['dropped']}")
    if not fits(shards):
        total = sum(v.numel() * v.element_size() for v in tensors.values())
        raise ValueError(f"the runs need {len(shards)} files of ≤ {max_file_bytes} bytes ({total} bytes of tensors); "
                         f"at most {max_files} files" + (f" and {max_total_bytes} bytes" if max_total_bytes else "")
                         + " can be carried: pack fewer runs or a smaller model")
    os.makedirs(dest, exist_ok=True)
    paths = []
    for i, shard in enumerate(shards):
        path = os.path.join(dest, f"runs-{i:03d}.safetensors")
        meta = {"format": FORMAT, "shard": str(i), "shards": str(len(shards))}
        if i == 0:
            meta["manifest"] = json.dumps(manifest)
        save_safetensors_atomic(shard, path, metadata=meta)
        paths.append(path)
    log(f"{len(paths)} files, {sum(os.path.getsize(p) for p in paths)} bytes in {dest}")
    return paths


def unpack_runs(src: str, work: str, log=print) -> list[str]:
    """Rebuild the runs packed in ``src`` into the experiments folder ``work`` (runs already there are left as
    they are). Returns the names of the runs written."""
    first = os.path.join(src, "runs-000.safetensors")
    if not os.path.isfile(first):
        raise FileNotFoundError(f"{first}: not a folder of packed runs (pack_runs writes runs-000.safetensors …)")
    try:
        with safe_open(first, "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - the file's own error, named
        raise CheckpointError(f"{first}: not a readable safetensors file: {e}") from e
    if meta.get("format") != FORMAT or "manifest" not in meta:
        raise CheckpointError(f"{first}: not a pack of runs (format {meta.get('format')!r}, expected {FORMAT!r})")
    manifest = json.loads(meta["manifest"])
    tensors: dict[str, torch.Tensor] = {}
    for i in range(int(meta["shards"])):
        tensors.update(read_safetensors(os.path.join(src, f"runs-{i:03d}.safetensors"), f"packed runs, file {i}"))
    os.makedirs(work, exist_ok=True)
    for n, text in manifest["root"].items():
        if text is not None and not os.path.isfile(os.path.join(work, n)):
            write_text(os.path.join(work, n), text)
    codec_path = os.path.join(work, "codec.safetensors")
    if not os.path.isfile(codec_path):
        save_safetensors_atomic({k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("codec.safetensors/")},
                                codec_path)
    rebuilt: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    written = []
    for name, run in manifest["runs"].items():
        ref = rebuilt.get(run["init"]) if run["init"] else None
        parts: dict[str, dict[str, torch.Tensor]] = {}
        for pk, how in run["tensors"].items():
            p, k = pk.split("/", 1)
            if how == "same":
                w = ref[p][k]
            elif how == "delta-bf16":
                r = ref[p][k]
                w = (r.float() + tensors[f"{name}/{pk}"].float()).to(r.dtype)
            else:
                w = tensors[f"{name}/{pk}"]
            parts.setdefault(p, {})[k] = w
        rebuilt[name] = parts
        folder = os.path.join(work, name)
        if os.path.isfile(os.path.join(folder, "done.json")):
            continue
        model = os.path.join(folder, "model")
        os.makedirs(model, exist_ok=True)
        for p, sd in parts.items():
            save_safetensors_atomic(sd, os.path.join(model, f"{p}.safetensors"))
        write_text(os.path.join(model, BUNDLE_FILE), run["bundle"])
        for n, text in sorted(run["files"].items(), key=lambda kv: kv[0] == "done.json"):  # done.json last
            write_text(os.path.join(folder, n), text)
        written.append(name)
        log(f"unpacked {name} (max weight error {run['max_abs_error']:.2e})")
    restore_scores(src, work, log)
    return written


def restore_scores(src: str, work: str, log=print) -> int:
    """The evaluations finished after the runs were packed (``src/scores.json``), written into their run folders
    of ``work`` where they are missing, so that the evaluation resumes without doing them again. Returns how many."""
    path = os.path.join(src, SCORES)
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        scores = json.load(f)
    n = 0
    for run, files in scores.items():
        folder = os.path.join(work, run)
        if os.sep in run or run.startswith(".") or not os.path.isdir(folder):
            continue
        for name, text in files.items():
            if name.startswith("scores_") and name.endswith(".json") and "/" not in name and not os.path.isfile(os.path.join(folder, name)):
                write_text(os.path.join(folder, name), text)
                n += 1
    log(f"restored {n} evaluations from {path}")
    return n


def main(argv=None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m research.carry", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="experiments folder → a few files")
    p.add_argument("work")
    p.add_argument("dest")
    p.add_argument("--max-file-mib", type=float, default=15.0)
    p.add_argument("--max-files", type=int, default=8)
    u = sub.add_parser("unpack", help="packed files → experiments folder")
    u.add_argument("src")
    u.add_argument("work")
    a = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if a.cmd == "pack":
        pack_runs(a.work, a.dest, int(a.max_file_mib * 2**20), a.max_files, log)
    else:
        unpack_runs(a.src, a.work, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
