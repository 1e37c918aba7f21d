"""research/carry.py: trained runs leave a machine as a few compact files and are rebuilt elsewhere, where the
evaluation resumes without training anything again."""
import json
import os
import shutil

import pytest
import torch

from pfvg_core.checkpoint import CheckpointError, read_safetensors
from research import carry
from research import experiments as ex

VARIANTS = (ex.ALL, "FramePack only (no memory) + Direct Forcing")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("exp"))
    b = ex.Budget.tiny(variants=VARIANTS, seeds=(0,), heldout_seconds=3.0, base=2, stage1=2)
    res = ex.run(work, b, device="cpu", jobs=1, log=lambda m: None)
    return work, b, res


def _weights(folder):
    return {p: read_safetensors(os.path.join(folder, "model", f"{p}.safetensors"))
            for p in carry.PARTS if os.path.isfile(os.path.join(folder, "model", f"{p}.safetensors"))}


def test_pack_and_unpack_rebuild_every_run(trained, tmp_path):
    work, b, res = trained
    dest = tmp_path / "carried"
    files = carry.pack_runs(work, str(dest), max_file_bytes=2 * 2**20, log=lambda m: None)
    assert len(files) >= 2 and all(os.path.getsize(f) <= 2 * 2**20 for f in files)  # several small files
    total = sum(os.path.getsize(f) for f in files)
    whole = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(work) for f in fs
                if f.endswith(".safetensors") and r.endswith(os.sep + "model") and "checkpoints" not in r)
    assert total < 0.8 * whole  # shared tensors are stored once
    other = tmp_path / "elsewhere"
    names = carry.unpack_runs(str(dest), str(other), log=lambda m: None)
    runs = [j["name"] for phase in ex.training_plan(b) for j in phase]
    assert names == runs
    manifest = json.loads(carry.safe_open(files[0], "pt").metadata()["manifest"])
    for name in runs:
        a, c = _weights(os.path.join(work, name)), _weights(os.path.join(other, name))
        assert sorted(a) == sorted(c)
        err = manifest["runs"][name]["max_abs_error"]
        for p in a:
            assert sorted(a[p]) == sorted(c[p])
            for k in a[p]:
                how = manifest["runs"][name]["tensors"][f"{p}/{k}"]
                if how == "exact" and manifest["runs"][name]["init"] is None:
                    assert torch.equal(a[p][k], c[p][k]), (name, p, k)
                else:  # bf16 differences (stage 1), and what shares them (stage 2): within the recorded rounding
                    ref_err = max(err, manifest["runs"].get(manifest["runs"][name]["init"] or "", {}).get("max_abs_error", 0.0))
                    assert (a[p][k] - c[p][k]).abs().max() <= ref_err + 1e-12, (name, p, k)
        # stage 2 stores only what it trained: its output layers (+ SemanticPack), exactly
        if name.startswith(ex.slug(ex.ALL)):
            stored = {k for k, how in manifest["runs"][name]["tensors"].items() if how != "same"}
            assert stored and all(k.startswith(("dit/norm_out.linear", "dit/proj_out", "semanticpack/")) for k in stored)
            assert all(manifest["runs"][name]["tensors"][k] == "exact" for k in stored)
        for f in ("done.json", "train_log.jsonl"):
            assert open(os.path.join(work, name, f)).read() == open(os.path.join(other, name, f)).read()
    assert open(os.path.join(work, "budget.json")).read() == open(os.path.join(other, "budget.json")).read()
    assert torch.equal(read_safetensors(os.path.join(work, "codec.safetensors"))["enc.0.weight"],
                       read_safetensors(os.path.join(other, "codec.safetensors"))["enc.0.weight"])


def test_evaluation_resumes_from_carried_runs_without_training(trained, tmp_path):
    work, b, res = trained
    dest = tmp_path / "carried"
    carry.pack_runs(work, str(dest), log=lambda m: None)
    other = str(tmp_path / "elsewhere")
    carry.unpack_runs(str(dest), other, log=lambda m: None)
    for name in os.listdir(other):  # the evaluation is redone from the rebuilt weights
        for f in os.listdir(os.path.join(other, name)) if os.path.isdir(os.path.join(other, name)) else []:
            if f.startswith("scores_"):
                os.remove(os.path.join(other, name, f))
    logs = {n: open(os.path.join(other, n, "train_log.jsonl")).read() for n in os.listdir(other)
            if os.path.isfile(os.path.join(other, n, "train_log.jsonl"))}
    # a caller's different budget does not retrain: the folder's budget.json decides
    again = ex.run(other, ex.Budget.tiny(variants=VARIANTS, seeds=(0,), stage2=5), device="cpu", jobs=1, log=lambda m: None)
    assert again["budget"] == json.loads(json.dumps(res["budget"]))
    for n, text in logs.items():
        assert open(os.path.join(other, n, "train_log.jsonl")).read() == text  # nothing trained
    for name in res["rows"]:
        for x, y in zip(res["rows"][name][0], again["rows"][name][0]):
            assert x["seed"] == y["seed"]
            assert abs(x["mean_mse_to_truth"] - y["mean_mse_to_truth"]) < 1e-3


def test_pack_refuses_what_does_not_fit_and_unpack_names_bad_input(trained, tmp_path):
    work, _, _ = trained
    with pytest.raises(ValueError, match="at most 1 files were asked for"):
        carry.pack_runs(work, str(tmp_path / "x"), max_file_bytes=2**20 + 1000, max_files=1, log=lambda m: None)
    with pytest.raises(FileNotFoundError, match="not a folder of packed runs"):
        carry.unpack_runs(str(tmp_path), str(tmp_path / "w"), log=lambda m: None)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "runs-000.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="runs-000.safetensors"):
        carry.unpack_runs(str(bad), str(tmp_path / "w"), log=lambda m: None)
    empty = tmp_path / "untrained"
    shutil.copytree(work, empty)
    os.remove(empty / "budget.json")
    with pytest.raises(FileNotFoundError, match="budget"):
        carry.pack_runs(str(empty), str(tmp_path / "y"), log=lambda m: None)
