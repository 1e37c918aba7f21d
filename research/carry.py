"""Move trained experiment runs to another machine as a few compact files (``pack_runs``) and rebuild them
there (``unpack_runs``), so that an evaluation cut short resumes on any machine from the rebuilt runs (``experiments.run`` skips every training whose
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


def _read_text(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return f.read()


def pack_runs(work: str, dest: str, max_file_bytes: int = 2**30, max_files: int | None = None, log=print) -> list[str]:
    """Pack every finished run of the experiments folder ``work`` (and its codec) into ``dest``, in files of at most
    ``max_file_bytes``. Returns the files written. Raises ``ValueError`` naming the sizes when they need more than
    ``max_files`` files (no limit by default)."""
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

    shards = shard(tensors)
    if max_files is not None and len(shards) > max_files:
        total = sum(v.numel() * v.element_size() for v in tensors.values())
        raise ValueError(f"the runs need {len(shards)} files of ≤ {max_file_bytes} bytes ({total} bytes of tensors); "
                         f"at most {max_files} files were asked for: pack fewer runs or allow larger files")
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
    p.add_argument("--max-file-mib", type=float, default=1024.0, help="largest file to write")
    p.add_argument("--max-files", type=int, default=None, help="refuse to write more files than this")
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
