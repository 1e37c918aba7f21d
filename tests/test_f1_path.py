"""The FramePack-F1 path a ComfyUI user takes, without ComfyUI and
without real weights: the shipped F1 workflow run end to end with a tiny random F1-format DiT in
``diffusion_models/`` and stand-ins with ComfyUI's semantics for the HunyuanVideo text encoders (CLIP),
SigLIP (CLIP vision) and the HunyuanVideo VAE (8× space, 4× time, raw latents in LATENT)."""
import json
import os
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from nodes import comfy_io
from pfvg_core.backbone import CONFIGS, build_dit, save_dit
from pfvg_core.model import HUNYUAN_VIDEO_SCALE
from test_nodes import N, comfy_env  # noqa: F401  (fixture)
from test_workflows import WF, run_api

F1_TINY = dict(CONFIGS["tiny"], in_channels=16, out_channels=16)  # HunyuanVideo's 16 latent channels


class FakeVAE:
    """ComfyUI's HunyuanVideo VAE as the nodes see it: IMAGE [T, H, W, 3] → raw latents [1, 16, (T−1)/4+1, H/8, W/8];
    latents [B, 16, T, h, w] → IMAGE [B·((T−1)·4+1), 8h, 8w, 3]. The raw latents have std ≈ 1/0.476986, as the real one."""

    def __init__(self):
        g = torch.Generator().manual_seed(3)
        self.mix = torch.randn(16, 3, generator=g)
        self.decoded = []

    def encode(self, pixels):
        t = pixels.shape[0]
        x = torch.nn.functional.avg_pool2d(pixels.permute(0, 3, 1, 2) * 2 - 1, 8)  # [T, 3, h, w]
        lat = torch.einsum("cr,trhw->cthw", self.mix, x)[:, :: 4][None]
        assert lat.shape[2] == (t - 1) // 4 + 1
        return lat / HUNYUAN_VIDEO_SCALE

    def decode(self, samples):
        self.decoded.append(samples)
        b, c, t, h, w = samples.shape
        rgb = torch.einsum("cr,bcthw->btrhw", self.mix, samples * HUNYUAN_VIDEO_SCALE).tanh()
        rgb = rgb.repeat_interleave(4, dim=1)[:, 3:]  # (T − 1)·4 + 1 frames
        up = torch.nn.functional.interpolate(rgb.reshape(-1, 3, h, w), scale_factor=8)
        return ((up + 1) / 2).permute(0, 2, 3, 1).reshape(-1, 8 * h, 8 * w, 3)


class FakeCLIP:
    """HunyuanVideo's text encoders as ComfyUI's CLIP: features that depend on the text."""

    def __init__(self):
        self.encoded = []

    def tokenize(self, text):
        return text

    def encode_from_tokens_scheduled(self, tokens):
        self.encoded.append(tokens)
        g = torch.Generator().manual_seed(sum(tokens.encode()) % 10_000)
        return [[torch.randn(1, 7, F1_TINY["text_embed_dim"], generator=g),
                 {"pooled_output": torch.randn(1, F1_TINY["pooled_projection_dim"], generator=g)}]]


@pytest.fixture
def f1_env(comfy_env, tmp_path, monkeypatch):  # noqa: F811
    os.makedirs(tmp_path / "diffusion_models")
    save_dit(build_dit(F1_TINY, seed=5), str(tmp_path / "diffusion_models" / "FramePackI2V_HY_F1.safetensors"))
    # ComfyUI's latent preview with HunyuanVideo's latent format (stand-ins recording what they get)
    lf = types.ModuleType("comfy.latent_formats")

    class HunyuanVideo:
        scale_factor = HUNYUAN_VIDEO_SCALE
        latent_channels = 16

    lf.HunyuanVideo = HunyuanVideo
    lp = types.ModuleType("latent_preview")
    previews = []

    class Previewer:
        def decode_latent_to_preview_image(self, fmt, x0):
            previews.append(x0)
            return ("JPEG", "preview", 512)

    lp.get_previewer = lambda device, fmt: Previewer() if isinstance(fmt, HunyuanVideo) else None
    monkeypatch.setitem(sys.modules, "comfy.latent_formats", lf)
    monkeypatch.setitem(sys.modules, "latent_preview", lp)
    sys.modules["comfy"].latent_formats = lf
    (tmp_path / "input" / "pfvg_start.png").parent.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "input" / "pfvg_start.png")
    return types.SimpleNamespace(root=tmp_path, previews=previews, bars=comfy_env.bars, mm=comfy_env.mm, vae=FakeVAE(),
                                 clip=FakeCLIP())


def _fakes(env):
    return {
        "DualCLIPLoader": lambda **kw: (env.clip,),
        "CLIPVisionLoader": lambda **kw: ("siglip",),
        "CLIPVisionEncode": lambda clip_vision, image, crop: (types.SimpleNamespace(
            last_hidden_state=torch.randn(1, 4, F1_TINY["image_proj_dim"], generator=torch.Generator().manual_seed(1))),),
        "VAELoader": lambda **kw: (env.vae,),
        "VAEEncode": lambda pixels, vae: ({"samples": vae.encode(pixels)},),
        "VAEDecodeTiled": lambda samples, vae, **kw: (vae.decode(samples["samples"]),),
    }


def test_f1_workflow_runs_and_makes_the_requested_seconds(f1_env):
    """10 s at 30 fps gives 10 s ± one segment: seconds use the VAE's temporal factor 4 (9 latent frames = 36 frames)."""
    wf = json.load(open(os.path.join(WF, "api", "pfvg_framepack_f1_long_video.json")))
    for node in wf.values():
        if node["class_type"] == "PFVGLongVideoLoop":
            assert node["inputs"]["steps"] == 25 and node["inputs"]["sampler"] == "unipc"
            assert node["inputs"]["distilled_guidance"] == 10.0 and node["inputs"]["cfg"] == 1.0 and node["inputs"]["shift"] == 0.0
            node["inputs"].update(seconds=10.0, steps=1)  # keep CI fast
        if node["class_type"] == "PFVGEncodePsi0":
            assert node["inputs"]["rope"] == "local" and node["inputs"]["window"] == 9 and node["inputs"]["fps"] == 30.0
            assert node["inputs"]["resolution"] == 640 and isinstance(node["inputs"]["vae"], list)  # image → bucket → VAE
            node["inputs"]["resolution"] = 64  # keep CI fast: the tiny model at the 64 bucket
    (video,) = run_api(wf, str(f1_env.root / "input"), _fakes(f1_env))
    assert video["fps"] == 30.0
    seconds = video["images"].shape[0] / 30.0
    assert abs(seconds - 10.0) <= 36 / 30.0, seconds
    # every line of the schedule was encoded with the CLIP, once
    assert f1_env.clip.encoded == ["a red ball rolls right across a green striped field past a yellow triangle",
                                   "the ball slows down and stops beside the yellow triangle"]
    # a preview of each sampling step's denoised window through ComfyUI's latent preview (HunyuanVideo format)
    assert len(f1_env.previews) == 9 and all(x.shape[1] == 16 and x.shape[2] == 1 for x in f1_env.previews)


def test_latents_cross_the_node_boundary_in_comfyui_convention(f1_env):
    """LATENT in and out hold the VAE's raw latents; the DiT sees raw × 0.476986 (HunyuanVideo's scale)."""
    model = N["PFVGLoadPackedDiT"]().load("diffusion_models/FramePackI2V_HY_F1.safetensors", "auto", "(none)")[0]
    assert model.latent_scale == pytest.approx(HUNYUAN_VIDEO_SCALE) and model.temporal_factor == 4
    assert ("soft_empty_cache",) in f1_env.mm.calls  # ComfyUI's memory management was asked first
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    raw = f1_env.vae.encode(image)
    feats = f1_env.clip.encode_from_tokens_scheduled("a cat")
    vision = _fakes(f1_env)["CLIPVisionEncode"](None, None, None)[0]
    mem = N["PFVGEncodePsi0"]().encode(model, fps=30.0, window=9, schedule="td_f16k4f2k2f1k1", rope="local", memory_mode="off",
                                       conditioning=feats, latent={"samples": raw}, clip_vision_output=vision)[0]
    assert torch.allclose(mem.start_latent, raw * HUNYUAN_VIDEO_SCALE)
    seg = N["PFVGSegmentSampler"]().sample(model=model, memory=mem, seed=0, steps=2, cfg=1.0, distilled_guidance=10.0,
                                           shift=0.0, sampler="unipc", conditioning=feats)[0]
    stepped = N["PFVGMemoryPackStep"]().step(model, mem, seg)[0]
    # the state keeps model latents: raw × scale of what left the node
    assert torch.allclose(stepped.history.frames[:, :, -9:], seg["samples"] * HUNYUAN_VIDEO_SCALE, atol=1e-6)
    m = torch.randn(1, 16, 3, 8, 8)
    out = comfy_io.latent_out(model, m)
    assert torch.allclose(out["samples"], m / HUNYUAN_VIDEO_SCALE) and torch.allclose(comfy_io.latent_in(model, out), m, atol=1e-6)


def test_embedded_codec_latents_are_unscaled_and_one_frame_per_latent(f1_env):
    model = N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "auto", "(none)")[0]
    assert model.latent_scale == 1.0 and comfy_io.latent_scale(model) == 1.0
    assert model.temporal_factor == model.codec.temporal_factor


def test_prompt_schedule_node_keeps_the_text_schedule_semantics(f1_env):
    prompts = N["PFVGEncodePromptSchedule"]().encode(f1_env.clip, "0: a cat\n[12s] a dog\n13: a bird")[0]
    assert [t for t, _ in prompts.entries] == [0.0, 12.0, 13.0]  # same parser and rule as the text schedule
    with pytest.raises(ValueError, match="no start time"):
        N["PFVGEncodePromptSchedule"]().encode(f1_env.clip, "0: a cat\na bird")
    assert prompts.text_at(11.9) == "a cat" and prompts.text_at(12.0) == "a dog" and prompts.text_at(30) == "a bird"
    tokens, pooled = prompts.prompt_at(12.5)
    assert torch.equal(tokens, f1_env.clip.encode_from_tokens_scheduled("a dog")[0][0])
    with pytest.raises(ValueError, match="CLIP"):
        N["PFVGEncodePromptSchedule"]().encode("not a clip", "0: x")
    with pytest.raises(ValueError, match="not after"):
        N["PFVGEncodePromptSchedule"]().encode(f1_env.clip, "0: a\n[5s] b\n[2s] c")


def test_loader_widgets_reach_the_engine(f1_env):
    """storage fp8 (layerwise casting), ComfyUI's device and memory calls, and a clear error for a missing backend."""
    load = N["PFVGLoadPackedDiT"]().load
    model = load("diffusion_models/FramePackI2V_HY_F1.safetensors", "bfloat16", "(none)", storage="fp8_e4m3fn")[0]
    q = dict(model.dit.named_parameters())["transformer_blocks.0.attn.to_q.weight"]
    assert q.dtype == torch.float8_e4m3fn and model.dtype == torch.bfloat16 and model.device == torch.device("cpu")
    assert model.meta["rope"] == "local" and model.meta["latent_format"] == "hunyuan_video"
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="'flash' is not usable"):
            load("diffusion_models/FramePackI2V_HY_F1.safetensors", "auto", "(none)", attention="flash")


def test_f1_template_squashes_the_start_image_for_siglip_as_framepack():
    """FramePack and diffusers' FramePack pipeline give SigLIP the whole bucket-sized frame resized to 384×384
    (SiglipImageProcessor: no crop); ComfyUI's CLIP Vision Encode does that with crop 'none' ('center' would cut
    the sides of a 640×480 frame)."""
    wf = json.load(open(os.path.join(WF, "api", "pfvg_framepack_f1_long_video.json")))
    crops = [n["inputs"]["crop"] for n in wf.values() if n["class_type"] == "CLIPVisionEncode"]
    assert crops == ["none"]
    from transformers import SiglipImageProcessor

    proc = SiglipImageProcessor(size={"height": 32, "width": 32})
    assert not getattr(proc, "do_center_crop", False) and proc.size == {"height": 32, "width": 32}
