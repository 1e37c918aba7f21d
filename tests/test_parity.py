"""Parity with the reference: with memory off and F1's local RoPE, our loop
(``sample_segment`` + ``step``, as ``generate_long_video`` runs them) equals diffusers'
``HunyuanVideoFramepackPipeline`` with F1 (vanilla) sampling on the same tiny random transformer,
tiny HunyuanVideo VAE and tiny SigLIP, with the same prompt embeddings, image latents, sigmas and
noise: one segment, then three chained segments with history."""
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoFramepackPipeline, UniPCMultistepScheduler
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_framepack import FramepackSamplingType
from PIL import Image
from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

from pfvg_core import loop
from pfvg_core.backbone import build_dit
from pfvg_core.loop import SamplerOptions, sample_segment
from pfvg_core.model import Conditioning, PFVGModel
from pfvg_core.state import MemoryConfig, init_state, step

WINDOW, STEPS, GUIDANCE, SEED, HW = 9, 4, 10.0, 7, 16  # latent window, steps, distilled guidance, seed, latent size


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    dit = build_dit("tiny", seed=11)
    vae = AutoencoderKLHunyuanVideo(latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                                    norm_num_groups=4).eval()
    siglip = SiglipVisionModel(SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                  num_attention_heads=2, image_size=32, patch_size=8)).eval()
    pipe = HunyuanVideoFramepackPipeline(
        text_encoder=None, tokenizer=None, transformer=dit, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential"),
        text_encoder_2=None, tokenizer_2=None, image_encoder=siglip,
        feature_extractor=SiglipImageProcessor(size={"height": 32, "width": 32}))
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(1)
    image = Image.fromarray((torch.rand(HW * 8, HW * 8, 3, generator=g) * 255).byte().numpy())
    prompt_embeds = torch.randn(1, 6, 32, generator=g)
    pooled = torch.randn(1, 16, generator=g)
    mask = torch.ones(1, 6)
    with torch.no_grad():
        pixels = pipe.video_processor.preprocess(image, HW * 8, HW * 8)
        image_embeds = pipe.encode_image(pixels)
    cond = Conditioning(prompt_embeds, mask.bool(), pooled, image_embeds)
    return pipe, dict(image=image, prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled, prompt_attention_mask=mask), cond, pixels


SCHEDULERS = {  # the pipeline's scheduler configured as FramePack samples (our flow.make_scheduler)
    "euler": lambda: FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential"),
    "unipc": lambda: UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, use_dynamic_shifting=True,
                                             time_shift_type="exponential", solver_order=2, solver_type="bh2"),
}


def _pipeline_sections(pipe, inputs, sections, sampler="euler"):
    pipe.scheduler = SCHEDULERS[sampler]()
    sigmas = np.linspace(1.0, 0.0, STEPS + 1)[:-1]
    frames = 33 * sections  # (window − 1)·4 + 1 = 33 video frames per section
    with torch.no_grad():
        out = pipe(**inputs, height=HW * 8, width=HW * 8, num_frames=frames, latent_window_size=WINDOW,
                   num_inference_steps=STEPS, sigmas=sigmas, guidance_scale=GUIDANCE, generator=torch.Generator().manual_seed(SEED),
                   output_type="latent", sampling_type=FramepackSamplingType.VANILLA)
    return out.frames  # per section: [image latent, every generated latent so far]


def _ours(pipe, pixels, cond, sections, monkeypatch, sampler="euler"):
    # The pipeline's generator first samples the image latents from the VAE, then each section's noise
    # in turn; our loop gets the same draws (its own seed stream is (seed, segment)).
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        start = pipe.prepare_image_latents(pixels, dtype=torch.float32, device="cpu", generator=g)
    noises = [torch.randn(1, 4, WINDOW, HW, HW, generator=g) for _ in range(sections)]
    monkeypatch.setattr(loop, "segment_noise", lambda state, device="cpu": noises[state.segment].to(device))
    if sampler == "unipc":
        # diffusers' pipeline hands the DiT UniPC's integer timesteps (⌊σ·1000⌋); FramePack and our loop give
        # σ·1000 exactly. Floor ours here so that everything else is compared.
        forward = pipe.transformer.forward
        monkeypatch.setattr(pipe.transformer, "forward", lambda *a, **kw: forward(*a, **{**kw, "timestep": kw["timestep"].floor()}))
    model = PFVGModel(pipe.transformer).eval()
    state = init_state(model, start, cond, SEED, MemoryConfig(window=WINDOW, rope="local", memory_mode="off"))
    options = SamplerOptions(steps=STEPS, distilled_guidance=GUIDANCE, sampler=sampler)
    segments = []
    for _ in range(sections):
        x = sample_segment(model, state, cond, options=options)
        state = step(model, state, x)
        segments.append(x)
    return start, segments


def test_one_segment_equals_the_diffusers_pipeline(reference, monkeypatch):
    pipe, inputs, cond, pixels = reference
    ref = _pipeline_sections(pipe, inputs, 1)
    start, ours = _ours(pipe, pixels, cond, 1, monkeypatch)
    assert torch.equal(ref[0][:, :, :1], start)  # the same image latents (tiny VAE, same seed)
    diff = (ref[0][:, :, 1:] - ours[0]).abs().max()
    assert diff <= 1e-4, diff
    assert ours[0].abs().mean() > 0.1  # a real sample, not zeros


@pytest.mark.parametrize("sampler", ["euler", "unipc"])
def test_three_chained_segments_with_history_equal_the_pipeline(reference, monkeypatch, sampler):
    pipe, inputs, cond, pixels = reference
    ref = _pipeline_sections(pipe, inputs, 3, sampler)[-1][:, :, 1:]  # all generated latents after 3 sections
    ours = torch.cat(_ours(pipe, pixels, cond, 3, monkeypatch, sampler)[1], dim=2)
    assert ref.shape == ours.shape == (1, 4, 3 * WINDOW, HW, HW)
    diff = (ref - ours).abs().max()
    assert diff <= 1e-4, diff
    # the history matters: segment 3 differs from what the same noise gives without history
    assert (ours[:, :, 2 * WINDOW:] - ours[:, :, :WINDOW]).abs().max() > 1e-2
