"""Tiny random FramePack-F1 files built offline (nothing downloaded): an encoders folder in the layout of
diffusers' HunyuanVideo pipelines (HunyuanVideo VAE, LLaMA + byte-level tokenizer, CLIP text + tokenizer,
SigLIP + image processor) and a diffusers transformer folder of the ``tiny`` packed-DiT config, with widths
that fit each other (text 32, pooled 16, image 16, latent channels 4)."""
from __future__ import annotations

import os

import torch

from pfvg_core.backbone import CONFIGS, build_dit


def _byte_tokenizer(folder: str, max_len: int, eos: str = "</s>"):
    """A byte-level BPE tokenizer with no merges (every byte a token) + pad/eos/bos, saved with save_pretrained."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<s>": 1, eos: 2, "<unk>": 3}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
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
    tok = _byte_tokenizer(os.path.join(folder, "tokenizer"), 1024)
    LlamaModel(LlamaConfig(vocab_size=len(tok), hidden_size=cfg["text_embed_dim"], intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2)).save_pretrained(os.path.join(folder, "text_encoder"))
    tok2 = _byte_tokenizer(os.path.join(folder, "tokenizer_2"), 77)
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
