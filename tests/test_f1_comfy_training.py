"""In ComfyUI (stand-ins with ComfyUI's semantics, no ComfyUI): Build Training Dataset with
ComfyUI's VAE / CLIP / CLIP vision writes the cached dataset, and its features equal what the inference nodes
feed the model; Direct Forcing Train trains a FramePack-F1 model from it without copying the frozen DiT."""
import json
import os
import types

import numpy as np
import pytest
import torch

from nodes import comfy_io
from pfvg_core.data import LatentDataset
from pfvg_core.model import TRAINED_DIT_FILE
from pfvg_core.operations import conditioning_from_features
from pfvg_core.sizing import fit_frame, nearest_bucket
from pfvg_core.train import cached_conditioning
from pfvg_core.video_io import write_video
from test_f1_path import F1_TINY, f1_env  # noqa: F401  (fixture)
from test_nodes import N, comfy_env  # noqa: F401  (fixture)


class FakeCLIPVision:
    """SigLIP as ComfyUI's CLIP_VISION: encode_image(IMAGE [B, H, W, 3], crop) → .last_hidden_state [B, N, D]."""

    def __init__(self):
        self.calls = []
        self.proj = torch.randn(3, F1_TINY["image_proj_dim"], generator=torch.Generator().manual_seed(2))

    def encode_image(self, image, crop=True):
        self.calls.append(crop)
        pooled = torch.nn.functional.adaptive_avg_pool2d(image.permute(0, 3, 1, 2), 2).flatten(2).transpose(1, 2)
        return types.SimpleNamespace(last_hidden_state=pooled @ self.proj)


def _videos(root):
    folder = root / "input" / "pfvg_videos"
    folder.mkdir(parents=True)
    for k in range(2):
        fr = np.zeros((50, 90, 120, 3), np.uint8)
        for t in range(50):
            fr[t, :, :, 2] = 40 + t
            fr[t, 20:50, (2 * t + 30 * k) % 90:(2 * t + 30 * k) % 90 + 30, 0] = 220
        write_video(fr, str(folder / f"clip{k}.mp4"), 30)
    (folder / "clip0.txt").write_text("a red box slides right")
    (folder / "clip1.txt").write_text("0: a red box\n[1s] the box slides right")
    return folder


OPTS = dict(resolution=256, fps=15.0, window=2, crop="center")


def test_dataset_built_in_comfyui_equals_what_inference_feeds_the_model(f1_env):  # noqa: F811
    env = f1_env
    videos = _videos(env.root)
    vision = FakeCLIPVision()
    (name,) = N["PFVGBuildTrainingDataset"]().build(env.vae, env.clip, vision, "pfvg_videos", "pfvg_f1_dataset", **OPTS)
    ds = LatentDataset(str(env.root / "input" / name))
    assert ds.names == ["clip0", "clip1"] and ds.meta(0)["latent_scale"] == pytest.approx(0.476986)
    model = N["PFVGLoadPackedDiT"]().load("diffusion_models/FramePackI2V_HY_F1.safetensors", "float32", "(none)")[0]
    h, w = nearest_bucket(90, 120, 256)
    assert ds.meta(0)["size"] == [w, h]
    # what the inference nodes give the model for this video's first frame and prompt
    from pfvg_core.video_io import open_video

    first = fit_frame(next(iter(open_video(str(videos / "clip0.mp4")))), (w, h), "crop")
    image = torch.from_numpy(first).float()[None] / 255  # LoadImage's IMAGE
    start = comfy_io.latent_in(model, {"samples": env.vae.encode(image)})
    tokens, pooled = comfy_io.prompt_features(env.clip.encode_from_tokens_scheduled(env.clip.tokenize("a red box slides right")))
    embeds = comfy_io.clip_vision_embeds(vision.encode_image(image, crop=False))  # the F1 template's crop "none"
    assert set(vision.calls) == {False}  # SigLIP squashes the frame, as FramePack and diffusers' pipeline
    inference = conditioning_from_features(model, tokens, pooled, start, embeds)
    v0 = ds[0]
    cached = cached_conditioning([v0], 0)
    assert torch.equal(cached.prompt_embeds, inference.prompt_embeds) and torch.equal(cached.pooled, inference.pooled)
    assert torch.equal(cached.prompt_mask, inference.prompt_mask)
    torch.testing.assert_close(cached.image_embeds, inference.image_embeds, rtol=0, atol=1e-6)
    torch.testing.assert_close(v0.start(), start, rtol=0, atol=1e-5)
    # a schedule keeps one entry per line, each as CLIP Text Encode gives it
    v1 = ds[1]
    line2 = comfy_io.prompt_features(env.clip.encode_from_tokens_scheduled("the box slides right"))[0]
    assert v1.prompts[1] == (1.0, "the box slides right") and torch.equal(v1.features["prompt_embeds.1"], line2[0])


def test_direct_forcing_train_trains_f1_without_copying_the_frozen_dit(f1_env):  # noqa: F811
    env = f1_env
    _videos(env.root)
    unloads = []
    env.mm.unload_all_models = lambda: unloads.append(1)
    N["PFVGBuildTrainingDataset"]().build(env.vae, env.clip, FakeCLIPVision(), "pfvg_videos", "pfvg_f1_dataset", **OPTS)
    model = N["PFVGLoadPackedDiT"]().load("diffusion_models/FramePackI2V_HY_F1.safetensors", "float32", "(none)")[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():  # as ComfyUI runs nodes
        trained, path = N["PFVGDirectForcingTrain"]().train(
            model, "pfvg_f1_dataset", "f1_trained", stage1_steps=0, stage2_steps=2, learning_rate=1e-3,
            stage2_params="last-layers+semanticpack", window=2, fps=15.0, seed=0, existing="refuse", gradient_checkpointing="on")
    assert unloads  # ComfyUI's other models were unloaded before training a FramePack-F1 model
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the input model is unchanged
    # the frozen blocks are shared (same storage), the trained layers are the trained model's own
    assert trained.dit.transformer_blocks[0].attn.to_q.weight.data_ptr() == model.dit.transformer_blocks[0].attn.to_q.weight.data_ptr()
    assert not torch.equal(trained.dit.proj_out.weight, model.dit.proj_out.weight)
    files = sorted(os.listdir(path))
    assert TRAINED_DIT_FILE in files and "dit.safetensors" not in files
    with open(os.path.join(path, "pfvg.json")) as f:
        assert json.load(f)["meta"]["base"]["trained_dit"]
