"""Tiny random FramePack-F1 files built offline (nothing downloaded): an encoders folder in the layout of
diffusers' HunyuanVideo pipelines (HunyuanVideo VAE, LLaMA + byte-level tokenizer, CLIP text + tokenizer,
SigLIP + image processor) and a diffusers transformer folder of the ``tiny`` packed-DiT config, with widths
that fit each other (text 32, pooled 16, image 16, latent channels 4)."""
from __future__ import annotations

import os

import torch

from pfvg_core.backbone import CONFIGS, build_dit


# Words the tests' prompts use; the rest of the vocabulary is FramePack's prompt template (so that, as with the real
# LLaMA tokenizer, the template is ~100 tokens and the prompt survives diffusers' crop at 95).
WORDS = "a an the red green blue box field ball moves goes rolls right left up down with and in of camera pans x"


def _word_tokenizer(folder: str, max_len: int, eos: str = "</s>"):
    """A word-level tokenizer (template words + WORDS, others <unk>) with pad/bos/eos, saved with save_pretrained."""
    import re

    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_framepack import DEFAULT_PROMPT_TEMPLATE
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(re.findall(r"\w+|[^\w\s]+", DEFAULT_PROMPT_TEMPLATE["template"] + " " + WORDS)))
    vocab = {"<pad>": 0, "<s>": 1, eos: 2, "<unk>": 3}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token=eos,
                                   unk_token="<unk>", model_max_length=max_len)
    fast.save_pretrained(folder)
    return fast


def build_encoders(folder: str, seed: int = 0) -> str:
    """Write a tiny random F1 encoders folder; returns it."""
    from diffusers import AutoencoderKLHunyuanVideo
    from transformers import (CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel, SiglipImageProcessor, SiglipVisionConfig,
                              SiglipVisionModel)

    cfg = CONFIGS["tiny"]
    torch.manual_seed(seed)
    os.makedirs(folder, exist_ok=True)
    tok = _word_tokenizer(os.path.join(folder, "tokenizer"), 1024)
    LlamaModel(LlamaConfig(vocab_size=len(tok), hidden_size=cfg["text_embed_dim"], intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2)).save_pretrained(os.path.join(folder, "text_encoder"))
    tok2 = _word_tokenizer(os.path.join(folder, "tokenizer_2"), 77)
    CLIPTextModel(CLIPTextConfig(vocab_size=len(tok2), hidden_size=cfg["pooled_projection_dim"], intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                 pad_token_id=0, bos_token_id=1, eos_token_id=tok2.eos_token_id)).save_pretrained(
        os.path.join(folder, "text_encoder_2"))
    SiglipVisionModel(SiglipVisionConfig(hidden_size=cfg["image_proj_dim"], intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=32, patch_size=8)).save_pretrained(
        os.path.join(folder, "image_encoder"))
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(os.path.join(folder, "feature_extractor"))
    AutoencoderKLHunyuanVideo(latent_channels=cfg["in_channels"], block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                              norm_num_groups=4, scaling_factor=0.476986).save_pretrained(os.path.join(folder, "vae"))
    return folder


def build_transformer(folder: str, seed: int = 0) -> str:
    """A diffusers folder of the tiny packed DiT (the published F1 layout, tiny)."""
    build_dit("tiny", seed=seed).save_pretrained(folder, safe_serialization=True)
    return folder
