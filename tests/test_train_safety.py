"""Training loses nothing: --fresh starts a clean run (the old one kept aside), pruning never
deletes what ``latest`` names, stale temp files are skipped, a cancel raised inside the step hook
keeps the finished step, bad config values are named."""
import json
import os
import subprocess
import sys

import pytest
import torch

from pfvg_core.data import LatentDataset, write_latent_video
from pfvg_core.loop import Cancelled
from pfvg_core.train import StageConfig, TrainConfig, Trainer, load_config, read_log

W = 4


def make_data(folder, clips=(1, 2)):
    g = torch.Generator().manual_seed(0)
    for i, n in enumerate(clips):
        write_latent_video(str(folder), f"v{i}", torch.randn(4, 1 + n * W, 8, 8, generator=g), f"video {i}", 8)
    return str(folder)


def config(tmp_path, steps=(2, 2), save_every=2, **kw):
    base = dict(model="random:tiny", data=str(tmp_path / "data"), out=str(tmp_path / "out"), window=W, save_every=save_every,
                stages=[StageConfig("s1", "teacher", "all", steps[0]), StageConfig("s2", "direct", "last-layers+semanticpack", steps[1])])
    base.update(kw)
    return TrainConfig(**base)


def latest(out):
    root = os.path.join(out, "checkpoints")
    return open(os.path.join(root, "latest")).read().strip(), sorted(d for d in os.listdir(root) if not d.startswith("latest"))


def test_pruning_keeps_what_latest_names_even_beside_an_older_longer_run(tmp_path):
    make_data(tmp_path / "data")
    old = Trainer(config(tmp_path, steps=(4, 4)))
    old.run()  # checkpoints step 6 and 8 stay, log has 8 steps
    assert latest(str(tmp_path / "out"))[1] == ["step-00000006", "step-00000008"]
    new = Trainer(config(tmp_path, steps=(1, 1), save_every=1))  # not resumed, not fresh: the node's resume=False path
    new.run(max_steps=1)
    name, folders = latest(str(tmp_path / "out"))
    assert name == "step-00000001" and name in folders  # before: pruned at once ("names compared"), latest dangling
    assert all(os.path.isfile(tmp_path / "out" / "checkpoints" / d / "trainer.json") for d in folders)
    again = Trainer(config(tmp_path, steps=(1, 1), save_every=1))
    assert again.resume() and again.pos.global_step == 1


def test_fresh_moves_the_old_run_aside_and_starts_clean(tmp_path):
    make_data(tmp_path / "data")
    Trainer(config(tmp_path, steps=(3, 3))).run()
    old_dit = open(tmp_path / "out" / "model" / "dit.safetensors", "rb").read()
    tr = Trainer(config(tmp_path, steps=(1, 1), save_every=1))
    moved = tr.start_fresh()
    assert moved and sorted(os.listdir(moved)) == ["checkpoints", "model", "train_log.jsonl"]
    assert open(os.path.join(moved, "model", "dit.safetensors"), "rb").read() == old_dit  # nothing lost
    assert not os.path.exists(tmp_path / "out" / "model")  # the old model is not taken for this run's
    tr.run()
    assert [r["global_step"] for r in read_log(str(tmp_path / "out"))] == [1, 2]  # the old log is not appended to
    assert latest(str(tmp_path / "out")) == ("step-00000002", ["step-00000001", "step-00000002"])
    assert os.path.isfile(tmp_path / "out" / "model" / "pfvg.json")


def test_cli_fresh_then_resume(tmp_path):
    make_data(tmp_path / "data")
    toml = ('model = "random:tiny"\ndata = "data"\nout = "out"\nwindow = 4\nsave_every = 1\n'
            '[[stage]]\nname = "a"\nforcing = "teacher"\nparams = "all"\nsteps = {n}\n')
    env = dict(os.environ, OMP_NUM_THREADS="1")
    (tmp_path / "long.toml").write_text(toml.format(n=4))
    (tmp_path / "short.toml").write_text(toml.format(n=3))
    run = lambda *a: subprocess.run([sys.executable, "-m", "pfvg_core", "train", *a], capture_output=True, text=True, env=env, timeout=600)
    assert run("--config", str(tmp_path / "long.toml")).returncode == 0
    r = run("--config", str(tmp_path / "short.toml"), "--fresh", "--max-steps", "2")
    assert r.returncode == 0 and "moved to" in r.stderr, r.stderr
    r = run("--config", str(tmp_path / "short.toml"))
    assert r.returncode == 0 and "resumed from step 2" in r.stderr, r.stderr
    assert [x["global_step"] for x in read_log(str(tmp_path / "out"))] == [1, 2, 3]


def test_stale_temp_files_are_ignored_and_cleaned(tmp_path):
    data = make_data(tmp_path / "data")
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = os.path.join(data, f".tmp-{int(p.stdout)}-1a2b-v9.safetensors")  # a killed atomic save
    open(stale, "wb").write(b"\0" * 10)
    ds = LatentDataset(data)
    assert ds.names == ["v0", "v1"] and not os.path.exists(stale)
    ckpt = tmp_path / "out" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / f".tmp-{int(p.stdout)}-step-00000001").mkdir()
    tr = Trainer(config(tmp_path))
    assert not any(n.startswith(".tmp-") for n in os.listdir(ckpt))
    assert tr.resume() is False


class Interrupt(Exception):
    """Stands in for ComfyUI's InterruptProcessingException, raised inside the progress hook."""


def test_cancel_raised_inside_the_step_hook_keeps_the_finished_step(tmp_path):
    make_data(tmp_path / "data")
    full = Trainer(config(tmp_path, out=str(tmp_path / "full"), save_every=10))
    full.run()

    def hook(rec):
        if rec["global_step"] == 3:
            raise Interrupt()

    tr = Trainer(config(tmp_path, save_every=10))
    with pytest.raises(Interrupt):
        tr.run(on_step=hook)
    assert latest(str(tmp_path / "out"))[0] == "step-00000003"  # before: nothing saved (log at 3, no checkpoint)
    again = Trainer(config(tmp_path, save_every=10))
    assert again.resume() and again.pos.global_step == 3
    again.run()
    log = read_log(str(tmp_path / "out"))
    assert [r["global_step"] for r in log] == [1, 2, 3, 4]  # no step logged twice
    assert [r["loss"] for r in log] == [r["loss"] for r in read_log(str(tmp_path / "full"))]


def test_cancel_check_saves_the_last_finished_step(tmp_path):
    make_data(tmp_path / "data")
    calls = []
    tr = Trainer(config(tmp_path, save_every=10))
    with pytest.raises(Cancelled):
        tr.run(cancel=lambda: calls.append(1) or len(calls) > 2)
    assert latest(str(tmp_path / "out"))[0] == "step-00000002"


def test_a_log_line_cut_by_a_kill_is_skipped(tmp_path):
    make_data(tmp_path / "data")
    tr = Trainer(config(tmp_path, save_every=1))
    tr.run(max_steps=2)
    with open(tmp_path / "out" / "train_log.jsonl", "a") as f:
        f.write('{"global_step": 3, "lo')
    assert [r["global_step"] for r in read_log(str(tmp_path / "out"))] == [1, 2]
    again = Trainer(config(tmp_path, save_every=1))
    assert again.resume()
    again.run()
    assert [r["global_step"] for r in read_log(str(tmp_path / "out"))] == [1, 2, 3, 4]


@pytest.mark.parametrize("text, msg", [
    ('model = 5\n', "model: expected a text, got 5"),
    ('lr = "fast"\n', "lr: expected a number"),
    ('lr = nan\n', "lr: expected a finite number"),
    ('shift = inf\n', "shift: expected a finite number"),
    ('window = 100000000\n', "window: expected an integer in [1, 64]"),
    ('seed = -1\n', "seed: expected an integer"),
    ('stage = 3\n', "stages: expected a list"),
    ('[[stage]]\nname = "a"\nsteps = 0\n', "steps: expected an integer in [1,"),
    ('[[stage]]\nname = "a"\nsteps = 1.5\n', "steps: expected an integer"),
    ('[[stage]]\nname = "a"\nlr = nan\n', "lr: expected a finite number"),
    ('[[stage]]\nname = "a"\nwhat = 1\n', "unknown stage option"),
])
def test_config_type_and_number_errors_are_named(tmp_path, text, msg):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ValueError) as e:
        load_config(str(tmp_path / "c.toml"))
    assert msg in str(e.value)


def test_config_errors_are_one_cli_line(tmp_path):
    (tmp_path / "c.toml").write_text('model = 5\nlr = nan\n')
    r = subprocess.run([sys.executable, "-m", "pfvg_core", "train", "--config", str(tmp_path / "c.toml")],
                       capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_cli_refuses_to_train_over_a_model_it_cannot_resume(tmp_path, capsys):
    from pfvg_core.model import PFVGModel
    from pfvg_core.cli import main

    make_data(tmp_path / "data")
    PFVGModel.build("tiny", seed=3).save(str(tmp_path / "out" / "model"))  # someone's model, no checkpoints
    before = (tmp_path / "out" / "model" / "dit.safetensors").read_bytes()
    (tmp_path / "c.toml").write_text('model = "random:tiny"\ndata = "data"\nout = "out"\nwindow = 4\n'
                                     '[[stage]]\nname = "a"\nsteps = 1\n')
    assert main(["train", "--config", str(tmp_path / "c.toml")]) == 2
    assert "holds an earlier run (model) with no checkpoint to resume: add --fresh" in capsys.readouterr().err
    assert (tmp_path / "out" / "model" / "dit.safetensors").read_bytes() == before
    assert main(["train", "--config", str(tmp_path / "c.toml"), "--fresh"]) == 0
    (moved,) = os.listdir(tmp_path / "out" / "previous")
    assert (tmp_path / "out" / "previous" / moved / "model" / "dit.safetensors").read_bytes() == before
