"""The whole protocol in one bounded run — a dry run of the exact command at tiny size on the
CPU, the deadline that keeps the evaluation inside the call, the throughput probe's choice, compiled training."""
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

import pytest
import torch

from research import carry, throughput
from research import experiments as ex


def test_the_call_runs_end_to_end_and_its_output_resumes_anywhere(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    r = subprocess.run([sys.executable, "-m", "research.protocol", "--quick", "--device", "cpu", "--jobs", "2",
                        "--out", str(out), "--work", str(work), "--seconds", "90", "--no-compile"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.load(open(out / "report.json"))
    phases = report["phases"]
    assert [p["phase"] for p in phases] == ["data", "probe", "train", "eval", "total"]
    train = phases[2]
    assert all(train["throughput"][k]["clip_samples_per_s"] > 0 for k in ("base", "stage1", "stage2"))
    assert train["steps"]["stage2"] >= 1 and phases[3]["missing"] == [] and phases[3]["failed"] == {}
    assert train["budget_seconds"]["slowdown"]["stage2"] >= 2.5  # one run's cost × runs sharing the device
    probe = report["throughput"]
    assert [row["video_batch"] for row in probe["rows"]] == [1, 2, 2] and probe["rows"][2]["amp"] == "bf16"
    assert probe["chosen"] in probe["rows"] and probe["ratio_to_reference"] > 0
    assert train["video_batch"] == probe["chosen"]["video_batch"] and train["amp"] == probe["chosen"]["amp"]
    # the table: every variant and seed, the references, the comparisons (a)-(c)
    res = report["experiments"]
    assert set(res["rows"]) == set(ex.VARIANTS) | {ex.INFERENCE_OFF} and all(set(v) == {"0", "1"} for v in res["rows"].values())
    assert set(res["references"]) == set(ex.metrics.REFERENCES) and len(res["comparisons"]) == 4
    assert "(reference) blurred first frame repeated" in report["experiments_md"]
    # the output folder: the report, the scores and the trained runs packed (research/carry.py)
    files = sorted(os.listdir(out))
    assert {"report.json", "scores.json", "runs-000.safetensors"} <= set(files)
    # back on another machine: the runs rebuilt, the scores restored, nothing trained or evaluated again
    elsewhere = tmp_path / "elsewhere"
    written = carry.unpack_runs(str(out), str(elsewhere), log=lambda m: None)
    assert len(written) == 1 + 4 + 8
    scores = json.load(open(out / "scores.json"))
    assert sum(len(v) for v in scores.values()) == len(ex.evaluation_plan(ex.Budget(**res["budget"])))
    for run, per in scores.items():
        for name, text in per.items():
            assert (elsewhere / run / name).read_text() == text
    again = ex.run(str(elsewhere), ex.Budget.tiny(), "cpu", 1, log=lambda m: None)
    assert again["rows"] == {k: {int(s): v for s, v in per.items()} for k, per in res["rows"].items()}


def test_a_deadline_cuts_the_jobs_it_reaches_and_keeps_the_finished_ones():
    pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"))
    try:
        done = []
        t0 = time.time()
        out = ex.run_jobs(pool, [(abs, -3), (time.sleep, 30), (abs, -4)], deadline=time.time() + 8, on_done=done.append)
        assert out[0] == 3 and out[1] is None and out[2] is None and done == [3]
    finally:
        pool.shutdown(cancel_futures=True)
    assert time.time() - t0 < 20  # the sleeping job was stopped, not awaited (shutdown included)
    errors = {}
    assert ex.run_jobs(None, [(abs, -1), (abs, "x"), (abs, -2)], errors=errors) == [1, None, 2]
    assert list(errors) == [1] and "TypeError" in errors[1]
    assert ex.run_jobs(None, [(abs, -1), (abs, -2)], deadline=time.time() - 1) == [None, None]
    assert ex.run_jobs(None, [(abs, -1), (abs, -2)]) == [1, 2]


def test_comparisons_use_the_seeds_both_rows_have():
    row = lambda v: [{m: v for m in ex.METRICS}]  # noqa: E731
    rows = {ex.ALL: {0: row(1.0), 1: row(2.0)}, ex.INFERENCE_OFF: {0: row(0.5)}}
    comp = ex.compare(rows, (0, 1))
    assert list(comp) == ["(a') memory on − off at inference (same model)"]
    assert comp["(a') memory on − off at inference (same model)"]["mean_mse_to_truth"]["mean"] == pytest.approx(0.5)


def test_the_probe_resolves_best_amp_and_chooses_by_a_run_s_throughput(monkeypatch):
    rates = {(64, "off", "off"): 1000.0, (64, "bf16", "off"): 1500.0, (64, "bf16", "blocks"): 3000.0, (16, "off", "off"): 300.0}
    asked = []

    def fake(work, b, device, s, steps, clips):
        asked.append(s)
        rate = rates[(s["video_batch"], s["amp"], s["compile"])]
        return {**s, "clip_samples_per_s": rate, "seconds_per_step": 1.0, "first_step_s": 40.0 if s["compile"] != "off" else 1.0}

    monkeypatch.setattr(throughput, "measure", fake)
    res = throughput.probe("w", None, "cpu", throughput.settings((64,)), log=lambda m: None, horizon_s=60.0)
    assert asked[-1] == {"video_batch": 64, "amp": "bf16", "compile": "blocks"}  # "best" = the faster eager amp
    # compiled: 3000/s but 39 s lost of a 60 s run → 1050/s effective < 1500/s of bf16 eager
    assert res["chosen"]["compile"] == "off" and res["chosen"]["amp"] == "bf16" and res["ratio_to_reference"] == 5.0
    long = throughput.choose(res["rows"], horizon_s=600.0)
    assert long["compile"] == "blocks"
    assert throughput.choose([{"video_batch": 1, "error": "OOM"}]) is None
    asked.clear()  # near its stop the probe measures what is quick and starts no compilation
    late = throughput.probe("w", None, "cpu", throughput.settings((64,)), log=lambda m: None,
                            stop_at=time.time() + throughput.COMPILE_ESTIMATE_S / 2)
    assert [s["compile"] for s in asked] == ["off"] * 3 and "compilation" in late["rows"][-1]["skipped"]
    assert late["chosen"]["compile"] == "off"
    b = throughput.apply(ex.Budget.tiny(), long)
    assert (b.video_batch, b.amp, b.compile) == (64, "bf16", "blocks")


def test_restore_scores_writes_only_missing_score_files_of_known_runs(tmp_path):
    src, work = tmp_path / "src", tmp_path / "work"
    (work / "run_a").mkdir(parents=True)
    (work / "run_a" / "scores_off.json").write_text("old")
    src.mkdir()
    (src / carry.SCORES).write_text(json.dumps({"run_a": {"scores_on.json": "new", "scores_off.json": "newer", "x.txt": "no"},
                                                "../evil": {"scores_on.json": "no"}, "absent": {"scores_on.json": "no"}}))
    assert carry.restore_scores(str(src), str(work), log=lambda m: None) == 1
    assert (work / "run_a" / "scores_on.json").read_text() == "new" and (work / "run_a" / "scores_off.json").read_text() == "old"
    assert not (work / "run_a" / "x.txt").exists() and not (tmp_path / "evil").exists()


def test_compiled_blocks_train_like_eager_with_memory_on(tmp_path):
    """``TrainConfig.compile = "blocks"`` (torch.compile of the DiT's blocks, inductor) gives the eager losses and
    weights on the ψ path (memory on, SemanticPack trained through the blocks)."""
    from pfvg_core.data import write_latent_video
    from pfvg_core.model import PFVGModel
    from pfvg_core.train import StageConfig, TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    for k in range(2):
        write_latent_video(str(tmp_path / "data"), f"v{k}", torch.randn(4, 9, 8, 8, generator=g), f"prompt {k}", 8.0)
    results = []
    for mode in ("off", "blocks"):
        model = PFVGModel.build("tiny", semanticpack={"memory_tokens": 4}, seed=0)
        cfg = TrainConfig(model="(test)", data=str(tmp_path / "data"), out=str(tmp_path / mode), window=4, memory_mode="on",
                          stages=[StageConfig("s1", "teacher", "all", 1)], videos_per_step=2, video_batch=2, accumulate=2,
                          psi_bptt=2, compile=mode, device="cpu", save_every=100)
        trainer = Trainer(cfg, model=model)
        trainer.run()
        log = [json.loads(line) for line in open(tmp_path / mode / "train_log.jsonl")]
        results.append((log[0]["loss"], {k: v.clone() for k, v in trainer.model.dit.state_dict().items()}))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-4)
    assert all(torch.allclose(results[0][1][k], results[1][1][k], atol=1e-5) for k in results[0][1])
    with pytest.raises(ValueError, match="compile must be one of"):
        TrainConfig(compile="max-autotune")


def test_trainings_at_a_time_follow_the_measured_memory():
    from research.protocol import training_processes

    assert training_processes(None, None, 8, 16) == 16  # the CPU: no memory figure, every job
    assert training_processes(1.0, 80.0, 8, 16) == 7  # 0.85 × 80 GiB ÷ (8 × 1 GiB + a 0.6 GiB CUDA context)
    assert training_processes(20.0, 80.0, 8, 16) == 1  # never fewer than one
    assert throughput.choose([{"video_batch": 256, "clip_samples_per_s": 9.0, "seconds_per_step": 1.0, "peak_gib": 30.0},
                              {"video_batch": 64, "clip_samples_per_s": 5.0, "seconds_per_step": 1.0, "peak_gib": 6.0}],
                             max_peak_gib=8.5)["video_batch"] == 64


def test_a_compiler_error_in_a_training_goes_on_eagerly(tmp_path, monkeypatch):
    """A run whose compiled blocks fail trains without compile from its last checkpoint; the result says so."""
    import pfvg_core.train as train_mod

    def broken(model, mode):
        raise RuntimeError("inductor: no compiler for this graph")

    monkeypatch.setattr(train_mod, "compile_blocks", broken)
    b = ex.Budget.tiny(compile="blocks")
    ex.prepare_data(str(tmp_path), b, "cpu", log=lambda m: None)
    job = ex.training_plan(b)[0][0]
    res = ex.train_job({"work": str(tmp_path), "budget": b.to_dict(), "device": "cpu", "max_seconds": None, **job})
    assert "inductor" in res["compile_failed"] and res["steps"] == b.base
    assert json.load(open(tmp_path / "base" / "done.json"))["compile_failed"] == res["compile_failed"]
    assert os.path.isfile(tmp_path / "base" / "model" / "dit.safetensors")


def test_generation_under_a_bf16_autocast_decodes_in_float32():
    """The evaluation's bf16 path (``inference_autocast`` on a GPU): the DiT under autocast, the codec in float32;
    the frames are the same shape and close to float32's (here on the CPU's bf16 autocast)."""
    import numpy as np

    from pfvg_core.codec import ConvCodec
    from pfvg_core.model import PFVGModel

    b = ex.Budget.tiny(heldout=1, heldout_seconds=2.0)
    model = PFVGModel.build("tiny", semanticpack={"memory_tokens": 4}, seed=0, codec_factor=None)
    model.codec = ConvCodec(4, 4, 8).eval()
    videos = ex.heldout_videos(b)
    plain = ex.generate_batch(model, videos, "on", b.window, 2, b.shift)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = ex.generate_batch(model, videos, "on", b.window, 2, b.shift)
    assert half[0].dtype == np.uint8 and half[0].shape == plain[0].shape
    assert np.abs(half[0].astype(int) - plain[0].astype(int)).mean() < 8
    assert ex.inference_autocast(model, ex.Budget.tiny(amp="bf16")).__class__.__name__ == "nullcontext"  # CPU: fp32


def test_a_failed_training_is_recorded_and_the_rest_trains_and_is_evaluated(tmp_path, monkeypatch):
    """One job's failure (a compiler error, out of memory) must not end the whole run: the runs that start from it
    are left out with it, every other run trains and is evaluated, and the comparisons use what exists."""
    real = ex.train_job

    def flaky(spec):
        if spec["name"] == "stage1_memory_on_seed1":
            raise RuntimeError("CUDA out of memory (injected)")
        return real(spec)

    monkeypatch.setattr(ex, "train_job", flaky)
    b = ex.Budget.tiny(heldout_seconds=2.0)
    res = ex.run(str(tmp_path), b, "cpu", 1, log=lambda m: None)
    assert "out of memory" in res["failed"]["stage1_memory_on_seed1"]
    seed1_on = [f"{ex.slug(v)}_seed1" for v, (mem, *_) in ex.VARIANTS.items() if mem == "on"]
    assert all("stage1_memory_on_seed1" in res["failed"][r] for r in seed1_on) and len(res["failed"]) == 1 + len(seed1_on)
    assert set(res["trained"]) == {j["name"] for ph in ex.training_plan(b) for j in ph} - set(res["failed"])
    assert set(res["rows"][ex.ALL]) == {0} and set(res["rows"]["FramePack only (no memory) + Direct Forcing"]) == {0, 1}
    assert res["missing"] == [] and "Not trained" in ex.markdown(res)  # not cut by a deadline: failed
    assert res["comparisons"]["(a) memory on − off (trained without memory)"]["mean_mse_to_truth"]["pairs"] == b.heldout


def test_a_deadline_before_the_first_step_is_a_failure_and_a_trained_folder_never_trains(tmp_path, monkeypatch):
    """A job whose time is up before its first step failed (no run with 0 steps and a NaN loss is compared); a
    folder with a budget.json (trained, or carried back) evaluates what it has and trains nothing, even a run that
    is missing (it failed or was left out where it trained)."""
    b = ex.Budget.tiny(seeds=(0,), heldout_seconds=2.0)
    ex.prepare_data(str(tmp_path), b, "cpu", log=lambda m: None)
    job = ex.training_plan(b)[0][0]
    with pytest.raises(RuntimeError, match="before its first step"):
        ex.train_job({"work": str(tmp_path), "budget": b.to_dict(), "device": "cpu", "max_seconds": 100.0,
                      "end_by": time.time() - 1, **job})
    assert not os.path.exists(tmp_path / "base" / "done.json")
    res = ex.run(str(tmp_path), b, "cpu", 1, log=lambda m: None)
    assert res["failed"] == {} and len(res["rows"]) == len(ex.VARIANTS) + 1
    gone = f"{ex.slug(ex.ALL)}_seed0"
    import shutil

    shutil.rmtree(tmp_path / gone)
    for f in tmp_path.glob("*/scores_*.json"):
        f.unlink()
    calls = []
    monkeypatch.setattr(ex, "train_job", lambda spec: calls.append(spec["name"]))
    again = ex.run(str(tmp_path), b, "cpu", 1, log=lambda m: None)
    assert calls == [] and "not in this folder" in again["failed"][gone]
    assert ex.ALL not in again["rows"] and ex.INFERENCE_OFF not in again["rows"] and len(again["rows"]) == len(ex.VARIANTS) - 1
    text = ex.markdown(again)
    assert "Not trained" in text and gone in text


def test_compiled_training_backpropagates_through_graphs_kept_across_clips(tmp_path):
    """Encoders trained with the DiT keep their graph across a video's clips (``retain_graph``), as ψ's truncated
    backpropagation does: compiled blocks must take that backward too (donated buffers off), and give the
    eager losses."""
    from pfvg_core.data import write_latent_video
    from pfvg_core.model import PFVGModel
    from pfvg_core.train import StageConfig, TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    write_latent_video(str(tmp_path / "data"), "v0", torch.randn(4, 13, 8, 8, generator=g), "prompt", 8.0)
    losses = {}
    for mode in ("off", "blocks"):
        model = PFVGModel.build("tiny", semanticpack={"memory_tokens": 4}, seed=0)
        cfg = TrainConfig(model="(test)", data=str(tmp_path / "data"), out=str(tmp_path / mode), window=4, memory_mode="on",
                          stages=[StageConfig("s1", "teacher", "all", 2)], accumulate=3, psi_bptt=3, compile=mode,
                          device="cpu", save_every=100)
        Trainer(cfg, model=model).run()
        losses[mode] = [json.loads(line)["loss"] for line in open(tmp_path / mode / "train_log.jsonl")]
    assert len(losses["blocks"]) == 2 and losses["blocks"] == pytest.approx(losses["off"], rel=1e-4)
