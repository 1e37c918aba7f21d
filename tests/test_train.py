import math
import copy
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pfvg_core.data import LatentDataset, build_dataset, curriculum, write_latent_video
from pfvg_core.model import PFVGModel
from pfvg_core.train import StageConfig, TrainConfig, Trainer, _seed, flow_matching_loss, load_config, read_log, select_parameters
from pfvg_core.loop import segment_context
from pfvg_core.state import init_state

W = 4  # latent frames per clip in these tests


def make_data(folder, clips=(1, 2, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    for i, n in enumerate(clips):
        write_latent_video(str(folder), f"v{i}", torch.randn(4, 1 + n * W, 8, 8, generator=g), f"video number {i}", 8)
    return str(folder)


def config(tmp_path, **kw):
    base = dict(model="random:tiny", data=str(tmp_path / "data"), out=str(tmp_path / "out"), window=W, save_every=2,
                stages=[StageConfig("s1", "teacher", "all", 3), StageConfig("s2", "direct", "last-layers+semanticpack", 3)])
    base.update(kw)
    return TrainConfig(**base)


def test_curriculum_orders_by_clip_count_single_clip_first(tmp_path):
    make_data(tmp_path / "d", clips=(3, 1, 2, 1, 0))
    ds = LatentDataset(str(tmp_path / "d"))
    assert [ds.names[i] for i in curriculum(ds, W)] == ["v1", "v3", "v2", "v0"]  # v4 has no complete clip


def test_accumulating_clips_equals_one_step_on_their_summed_loss(tmp_path):
    make_data(tmp_path / "data", clips=(3,))
    tr = Trainer(config(tmp_path, stages=[StageConfig("s", "teacher", "all", 1)], grad_clip=0))
    ref = copy.deepcopy(tr.model)
    tr.train_video(0, scale=1.0)
    accumulated = {n: p.grad.clone() for n, p in tr.model.named_parameters() if p.grad is not None}
    # by hand: one backward of the summed loss over the three clips, same draws
    video = tr.data[0]
    ref.train()
    for p in ref.parameters():
        p.requires_grad_(True)
    cond = ref.conditioning(video.prompt, video.start())
    emb, mask, pooled = ref.encode_prompt(video.prompt)
    from pfvg_core.model import Conditioning
    cond = Conditioning(emb, mask, pooled, ref.image_encoder(video.start()))
    state = init_state(ref, video.start(), cond, config=tr.memory_config, grad=True)
    from pfvg_core.state import step
    total = 0
    for i in range(3):
        gen = torch.Generator().manual_seed(_seed(0, 0, 0, 0, i))
        clip = video.clip(i, W)
        total = total + flow_matching_loss(ref, segment_context(ref, state), clip, cond, gen, "logit_normal", 1.0, 10.0)
        state = step(ref, state, clip, grad=True)
    total.backward()
    manual = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
    assert set(manual) == set(accumulated) and len(manual) > 50
    for n in manual:
        assert torch.allclose(manual[n], accumulated[n], atol=1e-6, rtol=1e-4), n


def test_optimizer_steps_once_per_video_or_per_n_clips(tmp_path):
    make_data(tmp_path / "data", clips=(3,))
    tr = Trainer(config(tmp_path, stages=[StageConfig("s", "teacher", "all", 2)]))
    tr.run()
    assert next(iter(tr.optimizer.state.values()))["step"] == 2  # 2 videos → 2 steps
    tr2 = Trainer(config(tmp_path, out=str(tmp_path / "o2"), accumulate=2, stages=[StageConfig("s", "teacher", "all", 1)]))
    tr2.run()
    assert next(iter(tr2.optimizer.state.values()))["step"] == 2  # clips 1–2, then clip 3


@pytest.mark.parametrize("groups, changed", [
    ("last-layers", {"dit.norm_out.linear", "dit.proj_out"}),
    ("semanticpack", {"semanticpack."}),
    ("last-layers+semanticpack", {"dit.norm_out.linear", "dit.proj_out", "semanticpack."}),
])
def test_only_selected_parameters_change(tmp_path, groups, changed):
    make_data(tmp_path / "data", clips=(2,))
    tr = Trainer(config(tmp_path, stages=[StageConfig("s", "direct", groups, 1)]))
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    tr.run()
    after = dict(tr.model.named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    expected = {n for n in before if any(n.startswith(c) for c in changed)}
    assert moved and moved <= expected, sorted(moved - expected)[:5]
    assert any(n.startswith("dit.proj_out") for n in moved) == ("last-layers" in groups)
    with pytest.raises(ValueError, match="parameter group"):
        select_parameters(tr.model, "last-layer")


def test_resume_gives_the_same_next_losses_and_weights(tmp_path):
    make_data(tmp_path / "data")
    full = Trainer(config(tmp_path, out=str(tmp_path / "full")))
    full.run()
    part = Trainer(config(tmp_path, out=str(tmp_path / "part")))
    part.run(max_steps=5)  # "killed" after step 5; the last checkpoint is step 4
    again = Trainer(config(tmp_path, out=str(tmp_path / "part")))
    assert again.resume() and again.pos.global_step == 4 and again.pos.stage == 1
    again.run()
    a, b = read_log(str(tmp_path / "full")), read_log(str(tmp_path / "part"))
    assert [r["global_step"] for r in b] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    wa = load_file(str(tmp_path / "full" / "model" / "dit.safetensors"))
    wb = load_file(str(tmp_path / "part" / "model" / "dit.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


TOML = """
model = "random:tiny"
data = "data"
out = "{out}"
window = 4
save_every = 1
videos_per_step = {vps}
[[stage]]
name = "teacher"
forcing = "teacher"
params = "all"
steps = {s1}
[[stage]]
name = "direct"
forcing = "direct"
params = "last-layers+semanticpack"
steps = {s2}
"""


def _cli(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "pfvg_core", *args], capture_output=True, text=True, env=env, **kw)


def test_cli_train_two_stages_end_to_end_and_resume_after_kill(tmp_path):
    make_data(tmp_path / "data", clips=(1, 2, 2, 1))
    (tmp_path / "full.toml").write_text(TOML.format(out="full", vps=1, s1=4, s2=4))
    (tmp_path / "kill.toml").write_text(TOML.format(out="kill", vps=1, s1=4, s2=4))
    r = _cli(["train", "--config", str(tmp_path / "full.toml")], timeout=600)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-m", "pfvg_core", "train", "--config", str(tmp_path / "kill.toml")], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "kill" / "train_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 5):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = _cli(["train", "--config", str(tmp_path / "kill.toml")], timeout=600)
    assert r.returncode == 0 and "resumed from step" in r.stderr, r.stderr
    a, b = read_log(str(tmp_path / "full")), read_log(str(tmp_path / "kill"))
    assert [x["global_step"] for x in b] == list(range(1, 9))
    assert [x["loss"] for x in a] == [x["loss"] for x in b]
    assert [x["stage"] for x in b] == ["teacher"] * 4 + ["direct"] * 4
    assert PFVGModel.load(str(tmp_path / "kill" / "model")).semanticpack.gate_open


def test_invalid_config_options_are_named(tmp_path):
    (tmp_path / "a.toml").write_text('data = "d"\nlearning_rate = 1\n')
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(str(tmp_path / "a.toml"))
    (tmp_path / "b.toml").write_text('[[stage]]\nname = "x"\nforcing = "magic"\n')
    with pytest.raises(ValueError, match="forcing must be one of"):
        load_config(str(tmp_path / "b.toml"))
    (tmp_path / "c.toml").write_text('accumulate = "sometimes"\n')
    with pytest.raises(ValueError, match="accumulate"):
        load_config(str(tmp_path / "c.toml"))
    r = _cli(["train", "--config", str(tmp_path / "a.toml")])
    assert r.returncode == 2 and "learning_rate" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_dataset_build_reports_bad_videos_by_name(tmp_path, tiny_model):
    src = tmp_path / "src"
    (src / "walk").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(12):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / "walk" / f"{k:03d}.png")
    (src / "walk" / "prompt.txt").write_text("a person walks")
    frames = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(11)]
    frames[0].save(src / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    frames[0].save(src / "short.webp", save_all=True, append_images=frames[1:3], lossless=True)
    (src / "broken.webp").write_bytes(b"not an image")
    logs = []
    report = build_dataset(str(src), str(tmp_path / "out"), tiny_model.codec, size=(64, 64), window=W, log=logs.append)
    assert report["walk"] == "ok" and report["anim"] == "ok"
    assert report["short"].startswith("skipped: too short") and report["broken"].startswith("skipped")
    assert any(line.startswith("broken.webp: skipped") for line in logs)
    ds = LatentDataset(str(tmp_path / "out"))
    assert ds.names == ["anim", "walk"] and ds[1].prompt == "a person walks" and ds[1].latents.shape == (4, 12, 8, 8)


def test_direct_forcing_costs_no_extra_model_evaluation(tmp_path):
    make_data(tmp_path / "data", clips=(3,))
    counts = {}
    for forcing in ("teacher", "direct", "student"):
        tr = Trainer(config(tmp_path, out=str(tmp_path / forcing), stages=[StageConfig("s", forcing, "all", 1)]))
        calls = []
        h = tr.model.dit.register_forward_hook(lambda *a: calls.append(1))
        tr.run()
        h.remove()
        counts[forcing] = len(calls)
    assert counts == {"teacher": 3, "direct": 3, "student": 3 + 2 * 5}


def test_bench_train_quick_prints_the_two_ratios(monkeypatch, capsys):
    import json

    from bench import engine as bench
    from bench.__main__ import main as bench_main

    monkeypatch.setattr(bench, "run", lambda what, quick, config: bench.bench_train("tiny", clips=2, latent=8, videos=1, steps=2))
    assert bench_main(["train", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # timings are the benchmark's business (a loaded CI machine reorders them): here only that both
    # ratios are measured, finite and positive
    assert set(out) >= {"direct_over_teacher", "student_over_direct"}
    assert all(math.isfinite(out[k]) and out[k] > 0 for k in ("direct_over_teacher", "student_over_direct"))


def test_device_amp_and_bptt_options_are_checked(tmp_path):
    for bad in (dict(device="tpu"), dict(amp="fp8"), dict(psi_bptt=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            config(tmp_path, **bad)
    assert config(tmp_path, device="cpu").torch_device().type == "cpu"
    assert config(tmp_path).torch_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            config(tmp_path, device="cuda").torch_device()


def test_bf16_autocast_trains_close_to_fp32(tmp_path):
    make_data(tmp_path / "data", clips=(2,))
    losses = {}
    for amp in ("off", "bf16"):
        tr = Trainer(config(tmp_path, out=str(tmp_path / amp), device="cpu", amp=amp, stages=[StageConfig("s", "teacher", "all", 1)]))
        losses[amp] = tr.train_video(0, 1.0)
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in tr.model.parameters())
    assert losses["off"] != losses["bf16"]  # autocast really ran in bf16
    for a, b in zip(losses["off"], losses["bf16"]):
        assert abs(a - b) < 0.05 * abs(a)


def test_psi_bptt_backpropagates_through_k_memory_updates(tmp_path):
    """psi_bptt = 3 on a 3-clip video: the gradient is that of the summed loss with ψ₀ → ψ₁ → ψ₂ kept whole."""
    from pfvg_core.model import Conditioning
    from pfvg_core.state import step

    make_data(tmp_path / "data", clips=(3,))
    grads = {}
    for k in (1, 3):
        tr = Trainer(config(tmp_path, out=str(tmp_path / f"k{k}"), psi_bptt=k, grad_clip=0,
                            stages=[StageConfig("s", "teacher", "semanticpack", 1)]))
        ref = copy.deepcopy(tr.model)
        tr.train_video(0, scale=1.0)
        grads[k] = {n: p.grad.clone() for n, p in tr.model.named_parameters() if p.grad is not None}
    video = tr.data[0]
    ref.train()
    sp = ref.semanticpack
    for p in ref.parameters():
        p.requires_grad_(False)
    for p in sp.parameters():
        p.requires_grad_(True)
    cond = ref.conditioning(video.prompt, video.start())
    state = init_state(ref, video.start(), cond, config=tr.memory_config, grad=True)
    total, psi = 0, state.psi
    for i in range(3):
        gen = torch.Generator().manual_seed(_seed(0, 0, 0, 0, i))
        clip = video.clip(i, W)
        total = total + flow_matching_loss(ref, segment_context(ref, state.replace(psi=psi)), clip, cond, gen, "logit_normal", 1.0, 10.0)
        mask = state.psi_mask
        state = step(ref, state.replace(psi=psi), clip, grad=True)
        psi = sp.update(psi, clip, mask)  # not detached: the whole chain
    total.backward()
    manual = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
    assert set(manual) == set(grads[3])
    for n in manual:
        assert torch.allclose(manual[n], grads[3][n], atol=1e-6, rtol=1e-4), n
    assert any(not torch.allclose(grads[1][n], grads[3][n]) for n in manual)  # k = 1 cuts the chain


def test_video_batch_is_the_mean_of_each_video_on_its_own(tmp_path):
    """video_batch = 2: the two videos go through one forward [2, ...]; each clip's loss is the mean of the
    two videos' losses computed one at a time with the same t and noise."""
    from pfvg_core import flow
    from pfvg_core.forcing import sample_t
    from pfvg_core.loop import velocity
    from pfvg_core.state import step

    make_data(tmp_path / "data", clips=(2, 2))
    with pytest.raises(ValueError, match="video_batch"):
        config(tmp_path, video_batch=2)  # videos_per_step 1 is not a multiple of 2
    tr = Trainer(config(tmp_path, video_batch=2, videos_per_step=2, stages=[StageConfig("s", "teacher", "all", 1)]))
    ref = copy.deepcopy(tr.model)
    losses = tr.train_video([0, 1], scale=1.0)
    assert len(losses) == 2
    videos = [tr.data[0], tr.data[1]]
    states = [init_state(ref, v.start(), ref.conditioning(v.prompt, v.start()), config=tr.memory_config) for v in videos]
    for i in range(2):
        gen = torch.Generator().manual_seed(_seed(0, 0, 0, 0, i))
        t = sample_t(2, gen, "logit_normal", 1.0)
        clips = torch.cat([v.clip(i, W) for v in videos])
        noise = torch.randn(clips.shape, generator=gen)
        per = []
        for b, (v, st) in enumerate(zip(videos, states)):
            cond = ref.conditioning(v.prompt, v.start())
            with torch.no_grad():
                vel = velocity(ref, segment_context(ref, st), flow.interpolate(clips[b : b + 1], noise[b : b + 1], t[b : b + 1]), t[b : b + 1], cond, 10.0)
            per.append(torch.nn.functional.mse_loss(vel, flow.target_velocity(clips[b : b + 1], noise[b : b + 1])).item())
            states[b] = step(ref, st, clips[b : b + 1])
        assert abs(losses[i] - sum(per) / 2) < 1e-5 * max(1.0, abs(losses[i]))
    tr.run()
    assert read_log(tr.cfg.out)[-1]["clips"] == 4 and tr.pos.cursor == 0


def test_memory_option_is_a_deprecated_alias_of_memory_mode(tmp_path):
    (tmp_path / "old.toml").write_text('memory = "off"\n')
    with pytest.warns(DeprecationWarning, match="memory_mode"):
        assert load_config(str(tmp_path / "old.toml")).memory_mode == "off"
    (tmp_path / "new.toml").write_text('memory_mode = "zero"\n')
    cfg = load_config(str(tmp_path / "new.toml"))
    assert cfg.memory_mode == "zero" and cfg.memory_config().memory_mode == "zero" and "memory" not in cfg.to_dict()
    (tmp_path / "both.toml").write_text('memory = "off"\nmemory_mode = "zero"\n')
    with pytest.raises(ValueError, match="memory_mode only"):
        load_config(str(tmp_path / "both.toml"))
    with pytest.warns(DeprecationWarning):
        assert TrainConfig(memory="zero").memory_mode == "zero"
    from pfvg_core.cli import build_parser
    for flag in ("--memory-mode", "--memory"):
        args = build_parser().parse_args(["generate", "--model", "m", "--image", "i.png", "--prompt", "p", "--seconds", "1", "--out", "o.webp",
                                          flag, "off"])
        assert args.memory_mode == "off"
