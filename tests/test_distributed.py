"""FSDP2 training across processes on the CPU (gloo), tiny configs (pfvg_core/distributed.py).

Every launch is bounded by a timeout and its processes are killed on expiry, so a deadlock fails the
test instead of hanging CI. Ranks are started either by torchrun (the user's command) or by hand with
torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), which lets a test SIGKILL
the whole job or give one rank other data.
"""
import contextlib
import os
import signal
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from pfvg_core.data import LatentDataset, curriculum, step_order, write_latent_video
from pfvg_core.model import PFVGModel
from pfvg_core.train import Trainer, load_config, read_log

W = 4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH_TIMEOUT = 240  # seconds for one launch (2 processes importing torch + diffusers on a shared 2-core CPU)

TOML = """
model = "{model}"
data = "data"
out = "{out}"
window = 4
save_every = 1
videos_per_step = 2
[[stage]]
name = "teacher"
forcing = "teacher"
params = "all"
steps = 2
[[stage]]
name = "direct"
forcing = "direct"
params = "last-layers+semanticpack"
steps = 2
"""


def make_data(folder, clips, seed=0, channels=4):
    g = torch.Generator().manual_seed(seed)
    for i, n in enumerate(clips):
        write_latent_video(str(folder), f"v{i}", torch.randn(channels, 1 + n * W, 8, 8, generator=g), f"video number {i}", 8)
    return str(folder)


def _env(**kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", PFVG_DIST_TIMEOUT_S="120")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(kw)
    return env


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(configs: list[str], log_dir) -> list[subprocess.Popen]:
    """One process per config, with torchrun's environment (rank i reads configs[i])."""
    port, world = _port(), len(configs)
    procs = []
    for r, cfg in enumerate(configs):
        err = open(os.path.join(str(log_dir), f"rank{r}-{port}.err"), "w")
        env = _env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-m", "pfvg_core", "train", "--config", cfg], env=env,
                                      stdout=subprocess.DEVNULL, stderr=err))
        procs[-1].err_path = err.name
    return procs


def wait_ranks(procs, timeout=LAUNCH_TIMEOUT) -> list[tuple[int, str]]:
    """(return code, stderr) of each rank; every rank still running at the deadline is killed (a hang fails)."""
    deadline = time.time() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        raise AssertionError(f"ranks still running after {timeout} s (hung): "
                             + " | ".join(open(p.err_path).read()[-600:] for p in procs))
    return [(p.returncode, open(p.err_path).read()) for p in procs]


def torchrun(nproc: int, config: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                           "-m", "pfvg_core", "train", "--config", config], capture_output=True, text=True, env=_env(),
                          timeout=LAUNCH_TIMEOUT)


def weights(folder) -> dict[str, torch.Tensor]:
    out = {}
    for f in ("dit", "semanticpack", "text_encoder", "image_encoder", "codec"):
        out.update({f"{f}.{k}": v for k, v in load_file(os.path.join(str(folder), "model", f"{f}.safetensors")).items()})
    return out


# --- equal work per step ------------------------------------------------------------------------
def test_step_order_puts_only_videos_of_one_clip_count_in_a_step(tmp_path):
    make_data(tmp_path / "d", clips=(1, 2, 2, 1, 3, 2, 1))
    ds = LatentDataset(str(tmp_path / "d"))
    assert step_order(ds, W, 1) == curriculum(ds, W)  # one video per step: the curriculum as it was
    order = step_order(ds, W, 2)
    assert len(order) % 2 == 0 and set(order) == set(curriculum(ds, W))
    for k in range(0, len(order), 2):
        assert ds.num_clips(order[k], W) == ds.num_clips(order[k + 1], W), [ds.names[i] for i in order]
    capped = step_order(ds, W, 2, max_clips=2)  # with max_clips the 2- and 3-clip videos share steps
    assert len(capped) == 8 and ds.names[capped[-1]] == "v4"
    make_data(tmp_path / "e", clips=(2, 2, 2))  # one clip count: steps wrap around the curriculum as before
    ds = LatentDataset(str(tmp_path / "e"))
    assert step_order(ds, W, 2) == curriculum(ds, W)


# --- two processes ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory):
    """One uninterrupted 2-process torchrun run from a model folder (sharded loading), the same run in one
    process, and a 2-process run SIGKILLed after a checkpoint, its output copied aside before any resume."""
    tmp = tmp_path_factory.mktemp("fsdp")
    make_data(tmp / "data", clips=(1, 2, 2, 1))
    PFVGModel.build("tiny", seed=0).save(str(tmp / "init"))
    for name in ("one", "two", "kill"):
        (tmp / f"{name}.toml").write_text(TOML.format(model="init", out=name))
    one = Trainer(load_config(str(tmp / "one.toml")))  # one process, no process group: the reference
    one.run()
    r = torchrun(2, str(tmp / "two.toml"))
    assert r.returncode == 0, r.stderr[-3000:]
    procs = start_ranks([str(tmp / "kill.toml")] * 2, tmp)
    log, deadline = tmp / "kill" / "train_log.jsonl", time.time() + LAUNCH_TIMEOUT
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
        assert all(p.poll() is None for p in procs), "a rank ended before it could be killed"
        time.sleep(0.02)
    for p in procs:  # the whole job dies at once (a node lost, a scheduler's kill)
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()
    shutil.copytree(tmp / "kill", tmp / "kill-copy")
    return tmp


def test_two_fsdp_processes_train_the_same_weights_as_one(fsdp_runs):
    """Same steps, videos and losses; weights equal up to float32 reduction order: FSDP sums the two ranks'
    gradients in a reduce-scatter while one process accumulates them video after video, so the sums round
    differently (~1e-7 relative), and AdamW's normalised steps carry that to ~1e-7 of the weights after 4 steps."""
    a, b = read_log(str(fsdp_runs / "one")), read_log(str(fsdp_runs / "two"))
    assert [x["videos"] for x in a] == [x["videos"] for x in b] and len(a) == 4
    assert [x["stage"] for x in b] == ["teacher"] * 2 + ["direct"] * 2
    assert all(abs(x["loss"] - y["loss"]) <= 1e-5 * abs(x["loss"]) for x, y in zip(a, b))
    wa, wb = weights(fsdp_runs / "one"), weights(fsdp_runs / "two")
    assert set(wa) == set(wb) and len(wa) > 50
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5, rtol=1e-4), (k, float((wa[k] - wb[k]).abs().max()))
    ckpt = fsdp_runs / "two" / "checkpoints"
    latest = (ckpt / "latest").read_text().strip()
    assert latest == "step-00000004" and (ckpt / latest / "dcp" / ".metadata").is_file()
    assert sorted(os.listdir(ckpt / latest)) == ["dcp", "rng-0.json", "rng-1.json", "trainer.json"]


def test_gradient_checkpointing_under_fsdp_trains_the_weights_of_one_plain_process(fsdp_runs):
    """FSDP2 sharding and per-block gradient checkpointing together (what a full-size DiT uses under torchrun):
    2 processes with checkpointing on train the weights of one process without it (teacher stage on the whole
    net, then Direct Forcing on the output layers + SemanticPack: ψ's path through recomputed blocks)."""
    toml = TOML.format(model="init", out="ckpt").replace("save_every = 1", 'save_every = 1\ngradient_checkpointing = "on"')
    (fsdp_runs / "ckpt.toml").write_text(toml)
    r = torchrun(2, str(fsdp_runs / "ckpt.toml"))
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = read_log(str(fsdp_runs / "one")), read_log(str(fsdp_runs / "ckpt"))
    assert [x["videos"] for x in a] == [x["videos"] for x in b] and len(b) == 4
    assert all(abs(x["loss"] - y["loss"]) <= 1e-5 * abs(x["loss"]) for x, y in zip(a, b))
    wa, wb = weights(fsdp_runs / "one"), weights(fsdp_runs / "ckpt")
    assert set(wa) == set(wb)
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5, rtol=1e-4), (k, float((wa[k] - wb[k]).abs().max()))


def test_sigkill_then_resume_on_two_processes_gives_the_uninterrupted_run(fsdp_runs):
    done = read_log(str(fsdp_runs / "kill-copy"))
    assert 2 <= len(done) < 4 and not (fsdp_runs / "kill-copy" / "model").exists()
    codes = wait_ranks(start_ranks([str(fsdp_runs / "kill.toml")] * 2, fsdp_runs))
    assert all(c == 0 for c, _ in codes), codes[0][1][-2000:]
    assert "resumed from step" in codes[0][1]
    a, b = read_log(str(fsdp_runs / "two")), read_log(str(fsdp_runs / "kill"))
    assert [x["global_step"] for x in b] == [1, 2, 3, 4]
    assert [x["loss"] for x in a] == [x["loss"] for x in b]  # bit for bit: same ranks, same reduction order
    wa, wb = weights(fsdp_runs / "two"), weights(fsdp_runs / "kill")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_two_process_checkpoint_resumes_on_one_process(fsdp_runs):
    """DCP reshards: the 2-rank checkpoint loads into a 1-rank FSDP run (here in the test process); the rest
    of the run matches the 2-rank run up to reduction order."""
    (fsdp_runs / "kill-copy.toml").write_text(TOML.format(model="init", out="kill-copy"))
    with one_rank(fsdp_runs):
        tr = Trainer(load_config(str(fsdp_runs / "kill-copy.toml")))
        assert tr.resume() and tr.pos.global_step == len(read_log(str(fsdp_runs / "kill-copy")))
        tr.run()
    a, b = read_log(str(fsdp_runs / "two")), read_log(str(fsdp_runs / "kill-copy"))
    assert [x["global_step"] for x in b] == [1, 2, 3, 4]
    assert all(abs(x["loss"] - y["loss"]) <= 1e-5 * abs(x["loss"]) for x, y in zip(a, b))
    wa, wb = weights(fsdp_runs / "two"), weights(fsdp_runs / "kill-copy")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5, rtol=1e-4) for k in wa)


def test_the_consolidated_export_loads_and_generates(fsdp_runs):
    from pfvg_core.loop import SamplerOptions, generate_long_video
    from pfvg_core.state import MemoryConfig

    model = PFVGModel.load(str(fsdp_runs / "two" / "model"))
    assert model.semanticpack.gate_open  # stage 2 opened and trained ψ's gate
    start = torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    segs = list(generate_long_video(model, start, "a red ball", 2, seed=3, config=MemoryConfig(window=W),
                                    options=SamplerOptions(steps=2)))
    assert len(segs) == 2 and all(s.latents.shape == (1, 4, W, 8, 8) and torch.isfinite(s.latents).all() for s in segs)
    one = PFVGModel.load(str(fsdp_runs / "one" / "model"))
    again = list(generate_long_video(one, start, "a red ball", 2, seed=3, config=MemoryConfig(window=W),
                                     options=SamplerOptions(steps=2)))
    assert torch.allclose(segs[-1].latents, again[-1].latents, atol=1e-3)  # the same model as one process trains


def test_ranks_with_different_data_are_refused_not_hung(tmp_path):
    make_data(tmp_path / "a" / "data", clips=(1, 1))
    make_data(tmp_path / "b" / "data", clips=(1, 2))  # rank 1's second video has two clips: FSDP would deadlock
    for d in ("a", "b"):
        (tmp_path / d / "t.toml").write_text(TOML.format(model="random:tiny", out="out"))
    t = time.time()
    codes = wait_ranks(start_ranks([str(tmp_path / "a" / "t.toml"), str(tmp_path / "b" / "t.toml")], tmp_path), timeout=180)
    # each rank reports the error (exit 2); gloo's teardown may then abort a rank whose peer left first
    assert all(c != 0 for c, _ in codes), codes
    for _, err in codes:
        assert "disagree: data differs from rank 0's on rank(s) [1]" in err and "config" not in err.split("disagree:")[1][:40], err[-800:]
    assert time.time() - t < 180
    assert not (tmp_path / "a" / "out" / "train_log.jsonl").exists()  # not one step was taken


def test_the_device_check_script_runs_on_the_cpu(tmp_path, monkeypatch):
    """The FSDP check for one GPU (research/dist_check.py) at the tiny width with gloo, as one rank with torchrun's
    environment in this process (on a GPU it runs under torchrun)."""
    import json

    from research import dist_check

    for k, v in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_port())).items():
        monkeypatch.setenv(k, v)
    assert dist_check.main(["--out", str(tmp_path / "w"), "--dit", "tiny", "--latent", "8x8", "--window", "4",
                            "--device", "cpu", "--report", str(tmp_path / "report.json")]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["ok"] and rep["backend"] == "gloo" and rep["world"] == 1 and len(rep["losses"]) == 2
    assert rep["segment_shape"] == [1, 4, W, 8, 8] and rep["local_shard_params"] == rep["params"]
    import torch.distributed as dist

    assert not dist.is_initialized()  # the script leaves no process group behind


# --- one rank, in this process (no launch cost) ----------------------------------------------------
@contextlib.contextmanager
def one_rank(tmp_path):
    """A world-size-1 gloo process group in the test process: the FSDP path without spawning."""
    import torch.distributed as dist

    from pfvg_core import distributed

    store = os.path.join(str(tmp_path), f"store-{os.getpid()}-{time.time_ns()}")  # a FileStore file is used once
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        yield distributed.current("cpu")
    finally:
        distributed.shutdown()


def test_one_fsdp_rank_with_and_without_cpu_offload_trains_as_one_plain_process(tmp_path):
    from pfvg_core.checkpoint import CheckpointError
    from pfvg_core.train import StageConfig, TrainConfig

    make_data(tmp_path / "data", clips=(1, 2))

    def config(out, **kw):
        return TrainConfig(model="random:tiny", data=str(tmp_path / "data"), out=str(tmp_path / out), window=W, save_every=1,
                           stages=[StageConfig("s", "teacher", "all", 2)], **kw)

    def run(out, **kw):
        tr = Trainer(config(out, **kw))
        tr.run()
        return tr, {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone() for k, v in tr.model.state_dict().items()}

    _, plain = run("plain")  # no process group: no FSDP, AdamW's for-loop kernels
    with one_rank(tmp_path):
        tr, sharded = run("fsdp")
        assert type(tr.model.dit.proj_out.weight).__name__ == "DTensor" and len(tr.optimizer.param_groups) == 2
        _, offloaded = run("offload", cpu_offload=True)
        bf16, _ = run("bf16", amp="bf16")  # the GPU's policy: bf16 gathered weights and compute, fp32 master weights
        assert tr.model.dit.proj_out.weight.dtype == torch.float32 == bf16.model.dit.proj_out.weight.dtype
        with pytest.raises(CheckpointError, match="single-process checkpoint, but this run is distributed"):
            Trainer(config("plain")).resume()
    assert all(torch.equal(sharded[k], offloaded[k]) for k in sharded)  # on the CPU offloading moves nothing
    # one rank sums nothing: the only difference is AdamW's foreach kernels vs its for-loop (last bits)
    assert all(torch.allclose(plain[k], sharded[k], atol=1e-6, rtol=1e-5) for k in plain)
    assert not all(torch.equal(plain[k], PFVGModel.build("tiny", seed=0).state_dict()[k]) for k in plain)
    l32, l16 = read_log(str(tmp_path / "fsdp")), read_log(str(tmp_path / "bf16"))
    assert all(abs(a["loss"] - b["loss"]) < 0.02 * a["loss"] for a, b in zip(l32, l16)), (l32, l16)  # bf16 rounding


def test_each_rank_reads_the_rows_fsdp_gives_it():
    from pfvg_core.distributed import Dist, _rows

    for n in (1, 2, 5, 7, 16, 3072):
        for world in (1, 2, 3, 4, 8):
            chunks = torch.arange(n).chunk(world)  # DTensor's Shard(0) split
            for r in range(world):
                a, b = _rows(n, Dist(r, world, r, torch.device("cpu"), None))
                got = list(range(a, b))
                assert got == (chunks[r].tolist() if r < len(chunks) else []), (n, world, r)


def test_one_gpu_name_for_several_processes_is_refused(monkeypatch):
    from pfvg_core import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match="names one GPU, but 2 processes run"):
        distributed.init_from_env("cuda:0")
