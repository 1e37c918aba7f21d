"""The GPU user's path on a CPU: ``meta`` plays the card (``tests/fake_card.py``) and ComfyUI's stand-ins move the
weights the way ``comfy/model_patcher.py``'s ``ModelPatcher.load`` does (module by module with ``.to``, then the
whole model on a full load; a partial load leaves modules behind). A tensor made on the wrong device raises."""
import os

import pytest
import torch

import nodes
from nodes import comfy_io
from test_comfy_native import _fake_folder_paths
from fake_card import CARD, FakeCard, devices_of, install_comfy, read_files_to_the_card, register_card_backend

N = nodes.NODE_CLASS_MAPPINGS
MEMORY = dict(window=4, schedule="td_f16k4f2k2f1k1", rope="video", memory_mode="on", fps=8.0)
LOOP = dict(seed=0, seconds=1.0, segments=1, prompt_schedule="a ball", steps=1, cfg=1.0, distilled_guidance=10.0, shift=2.0,
            sampler="euler")


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    _fake_folder_paths(monkeypatch, tmp_path)
    with FakeCard():
        yield install_comfy(monkeypatch)


def test_the_card_refuses_a_cpu_tensor_and_reads_back_as_zeros():
    with FakeCard():
        x = torch.ones(2, device=CARD)
        with pytest.raises(RuntimeError, match="device"):
            x + torch.ones(2)
        assert torch.equal(x.cpu(), torch.zeros(2)) and x.sum().item() == 0


def test_execution_device_follows_the_weights_moved_by_comfyui(comfy):
    from pfvg_core.model import resolve_model

    m = resolve_model("random:tiny")
    patcher = comfy.ModelPatcher(comfy_io.HeldModel(m, m.device), CARD, torch.device("cpu"))
    comfy.mm.load_models_gpu([patcher])
    assert devices_of(m) == {"meta"} and m.device == CARD  # was: the device recorded at load (cpu)
    patcher.detach()
    assert m.device == torch.device("cpu")


def test_embedded_nodes_run_on_the_card(comfy):
    patcher = N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)")[0]
    state = N["PFVGEncodePsi0"]().encode(patcher, image=torch.rand(1, 64, 64, 3), prompt="a ball", **MEMORY)[0]
    engine = comfy_io.unwrap(patcher)
    assert devices_of(engine) == {"meta"} and engine.device == CARD
    (lat,) = N["PFVGSegmentSampler"]().sample(patcher, state, seed=0, prompt="a ball", steps=1, cfg=1.0,
                                              distilled_guidance=10.0, shift=2.0, sampler="euler")[:1]
    assert lat["samples"].device.type == "cpu"  # a LATENT crosses the node boundary on the CPU, as ComfyUI keeps it
    lat2, images, last, fps = N["PFVGLongVideoLoop"]().run(patcher, state, **LOOP)
    assert images.shape[0] == 5 and images.device.type == "cpu" and fps == 8.0


def test_a_partial_load_that_leaves_modules_behind_is_completed(tmp_path, monkeypatch):
    _fake_folder_paths(monkeypatch, tmp_path)
    with FakeCard():
        comfy = install_comfy(monkeypatch, free_bytes=200_000)  # room for a few modules only
        patcher = N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)")[0]
        engine = comfy_io.load_for_run(patcher)
        assert [c[2] for c in comfy.calls if c[0] == "load_models_gpu"] == [False, True]  # completed: a full load
        assert devices_of(engine) == {"meta"}


# --- FramePack-F1 in ComfyUI on the card: the shipped F1 workflow, tiny ---------------------------------------------
from test_f1_path import _fakes, f1_env  # noqa: E402,F401  (fixture)
from test_nodes import comfy_env  # noqa: E402,F401  (fixture)
from test_workflows import WF, run_api  # noqa: E402
from test_cli import image  # noqa: E402,F401  (fixture)


def _f1_workflow(**loader):
    import json
    import os

    wf = json.load(open(os.path.join(WF, "api", "pfvg_framepack_f1_long_video.json")))
    for node in wf.values():
        if node["class_type"] == "PFVGLongVideoLoop":
            node["inputs"].update(seconds=2.0, steps=1)
        if node["class_type"] == "PFVGEncodePsi0":
            node["inputs"]["resolution"] = 64
        if node["class_type"] == "PFVGLoadPackedDiT":
            node["inputs"].update(loader)
    return wf


@pytest.mark.parametrize("loader", [dict(), dict(storage="fp8_e4m3fn")], ids=["none", "fp8_storage"])
def test_f1_workflow_runs_on_the_card(f1_env, monkeypatch, loader):  # noqa: F811
    card = install_comfy(monkeypatch)
    with FakeCard():
        (video,) = run_api(_f1_workflow(**loader), str(f1_env.root / "input"), _fakes(f1_env))
    assert video["images"].shape[0] > 0 and video["images"].device.type == "cpu"
    (patcher,) = {id(m): m for c in card.calls if c[0] == "load_models_gpu" for m in c[1]}.values()
    engine = comfy_io.unwrap(patcher)
    assert engine.device == CARD and devices_of(engine) == {"meta"}


def test_group_offload_in_comfyui_keeps_the_small_modules_where_the_dit_computes(f1_env, monkeypatch):  # noqa: F811
    """ComfyUI's patcher for offload 'group' loads to the offload device (the hooks move the blocks), and its full load
    moves every module there — SemanticPack too. (A step is not run here: diffusers' hooks swap ``param.data`` between
    devices, which a meta tensor cannot take.)"""
    card = install_comfy(monkeypatch)
    with FakeCard():
        patcher = N["PFVGLoadPackedDiT"]().load("diffusion_models/FramePackI2V_HY_F1.safetensors", "float32", "(none)",
                                                offload="group")[0]
        assert patcher.load_device == torch.device("cpu")
        engine = comfy_io.load_for_run(patcher)
        assert card.calls[-1][0] == "load_models_gpu" and patcher.model.device == torch.device("cpu")
        assert engine.device == CARD  # diffusers' onload device, not where the weights rest
        assert devices_of(engine.dit.transformer_blocks) == {"cpu"} and devices_of(engine.semanticpack) == {"meta"}


# --- the engine on the card: LoRA, the CLI, training ------------------------------------------------------------------
def test_lora_matrices_follow_the_dit_to_the_card(tmp_path):
    from safetensors.torch import save_file

    from pfvg_core.lora import load_lora, with_loras
    from pfvg_core.model import PFVGModel
    from pfvg_core.loop import segment_context
    from pfvg_core.state import init_state
    from test_lora import _pair, _velocity

    def velocity_where_it_computes(m):  # as the loop calls it: the window on the model's device
        start = torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        cond = m.conditioning("a cat", start)
        ctx = segment_context(m, init_state(m, start, cond, seed=0))
        x = torch.randn(1, 4, 9, 8, 8).to(m.device)
        return m.predict_velocity(x, torch.full((1,), 0.5), cond, ctx.packed, ctx.indices, ctx.psi_tokens, ctx.psi_mask, 10.0)

    model = PFVGModel.build("tiny", seed=0)
    a, b = _pair(32, 32, 8)
    save_file({"transformer.single_transformer_blocks.0.attn.to_v.lora_A.weight": a,
               "transformer.single_transformer_blocks.0.attn.to_v.lora_B.weight": b}, tmp_path / "1.safetensors")
    view = with_loras(model, [(load_lora(str(tmp_path / "1.safetensors"), model.dit), 1.0)])
    _velocity(view)  # a run on the CPU first (the LoRA's matrices prepared there)
    with FakeCard():
        model.to(CARD)  # as ComfyUI's load moves the shared modules
        assert view.device == CARD
        assert velocity_where_it_computes(view).device == CARD  # was: the CPU matrices of the first run added to the card's activations


def test_cli_generate_on_the_card(tmp_path, image, monkeypatch):
    from pfvg_core.cli import main

    read_files_to_the_card(monkeypatch)
    with FakeCard():
        rc = main(["generate", "--image", str(image), "--prompt", "a red ball", "--seconds", "1", "--fps", "4",
                   "--steps", "1", "--out", str(tmp_path / "v.webp"), "--device", "meta"])
    assert rc == 0 and (tmp_path / "v.webp").is_file()


from test_f1_training import _train_toml, f1  # noqa: E402,F401  (fixture)


@pytest.mark.parametrize("plan", ["80gb"])
def test_stage2_trains_one_step_on_the_card(f1, tmp_path, monkeypatch, plan):  # noqa: F811
    """``device = "cuda"`` with the card standing for CUDA: the frozen bf16 base, the trained layers and every tensor a
    step makes (clips, noise, t, ψ) where the DiT computes. (The 24gb plan's block offload swaps ``param.data`` between
    devices, which a meta tensor cannot take: its order of moves is tested on the CPU in test_grad_checkpointing.)"""
    import pfvg_core.train_config as train_config
    from pfvg_core.cli import main

    read_files_to_the_card(monkeypatch)
    register_card_backend(monkeypatch)
    monkeypatch.setattr(train_config, "resolve_device", lambda d: CARD)
    out = str(tmp_path / "run")
    path = _train_toml(f1, out, plan=plan)
    with open(path) as fh:
        text = fh.read().replace('device = "cpu"', 'device = "cuda"').replace("steps = 2", "steps = 1")
    with open(path, "w") as fh:
        fh.write(text)
    with FakeCard():
        assert main(["train", "--config", path]) == 0
    assert os.path.isfile(os.path.join(out, "model", "pfvg.json"))
