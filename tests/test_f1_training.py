"""FramePack-F1 training on tiny random encoders and DiT built offline — dataset build (cached
features exactly as diffusers computes them), stage 2 on the F1 weights as published (diffusers folder),
bundles storing only what trained + a base reference, gradient checkpointing with ψ, memory plans,
generation with the same encoders — end to end through the CLI."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from f1_tiny import build_encoders, build_transformer
from pfvg_core.checkpoint import CheckpointError, weights_reference
from pfvg_core.data import LatentDataset
from pfvg_core.f1_encoders import F1Encoders
from pfvg_core.model import TRAINED_DIT_FILE, PFVGModel
from pfvg_core.sizing import nearest_bucket
from pfvg_core.cli import main
from pfvg_core.video_io import write_video

W, H, FPS, WINDOW = 64, 48, 15, 3


@pytest.fixture(scope="module")
def f1(tmp_path_factory):
    root = tmp_path_factory.mktemp("f1")
    enc = build_encoders(str(root / "enc"))
    dit = build_transformer(str(root / "f1"))
    vids = root / "videos"
    vids.mkdir()
    for k in range(2):
        fr = np.zeros((60, 72, 100, 3), np.uint8)
        for t in range(60):
            fr[t, :, :, 0] = (t * 4) % 255
            x = (t + 10 * k) % 80
            fr[t, 10:30, x:x + 20, 1] = 200
        write_video(fr, str(vids / f"v{k}.mp4"), 30)
    (vids / "v0.txt").write_text("a red field with a green box")
    (vids / "v1.txt").write_text("0: a green box\n1: the box goes right")
    write_video(np.zeros((3, 48, 64, 3), np.uint8), str(vids / "short.mp4"), 30)
    data = root / "data"
    rc = main(["dataset", "build", "--src", str(vids), "--out", str(data), "--encoders", enc, "--size", f"{W}x{H}",
               "--fps", str(FPS), "--window", str(WINDOW), "--device", "cpu"])
    assert rc == 0
    return {"root": root, "enc": enc, "dit": dit, "data": str(data), "videos": vids}


def _train_toml(f1, out, **extra):
    lines = [f'model = "{f1["dit"]}"', f'data = "{f1["data"]}"', f'out = "{out}"', f"window = {WINDOW}", "save_every = 1",
             'device = "cpu"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    lines += ["[[stage]]", 'name = "stage2-direct"', 'forcing = "direct"', 'params = "last-layers+semanticpack"', "steps = 2"]
    path = os.path.join(os.path.dirname(out), os.path.basename(out) + ".toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_dataset_caches_features_exactly_as_diffusers_computes_them(f1):
    from diffusers import HunyuanVideoFramepackPipeline

    ds = LatentDataset(f1["data"])
    assert ds.names == ["v0", "v1"]  # the 3-frame video is skipped (too short), not silently dropped from the report
    v0, v1 = ds[0], ds[1]
    meta = ds.meta(0)
    assert meta["latent_scale"] == pytest.approx(0.476986) and meta["temporal_factor"] == 4 and meta["size"] == [W, H]
    # 2 s at 30 fps resampled to 15 fps = 30 frames → 1 + 7 latent frames, 48×64 / 8
    assert tuple(v0.latents.shape) == (4, 1 + (30 - 1) // 4, H // 8, W // 8)
    # features = diffusers' own pipeline code on the same prompt (LLaMA template + crop, CLIP pooled)
    enc = F1Encoders.from_folder(f1["enc"])
    pipe = HunyuanVideoFramepackPipeline(transformer=None, scheduler=None, vae=None, image_encoder=None, feature_extractor=None,
                                         text_encoder=enc.part("text_encoder"), tokenizer=enc.part("tokenizer"),
                                         text_encoder_2=enc.part("text_encoder_2"), tokenizer_2=enc.part("tokenizer_2"))
    emb, pooled, mask = pipe.encode_prompt("a red field with a green box", device="cpu", dtype=torch.float32)
    assert torch.equal(v0.features["prompt_embeds.0"], emb[0]) and torch.equal(v0.features["pooled.0"], pooled[0])
    assert torch.equal(v0.features["prompt_mask.0"].bool(), mask[0].bool())
    # a timed schedule: one entry per line, and the line active at each clip's start time
    assert v1.prompts == ((0.0, "a green box"), (1.0, "the box goes right"))
    assert not torch.equal(v1.features["prompt_embeds.0"], v1.features["prompt_embeds.1"])
    assert v1.prompt_line(0.5) == 0 and v1.prompt_line(1.2) == 1
    # start-frame SigLIP features: the encoder on the dataset's first frame
    assert v0.features["image_embeds"].shape == (16, 16)


def test_streamed_vae_windows_give_the_whole_videos_latent_count(f1):
    enc = F1Encoders.from_folder(f1["enc"])
    codec = enc.codec()
    codec.tile_latents = 2  # windows of 9 frames
    frames = [np.full((16, 16, 3), i * 5, np.uint8) for i in range(23)]  # 23 frames → 1 + 5 latents (2 dropped)
    chunks = list(codec.encode_stream(frames))
    assert [c.shape[2] for c in chunks] == [3, 2, 1]
    assert sum(c.shape[2] for c in chunks) == 1 + (23 - 1) // 4
    # the first window is exactly the VAE on those 9 frames, scaled
    from pfvg_core.video_io import to_pixels

    first = codec.encode(to_pixels(np.stack(frames[:9])))
    assert torch.allclose(chunks[0], first)
    assert codec.decode(torch.cat(chunks, 2)).shape[2] == 1 + 4 * 5


def test_streamed_windows_carry_their_past_no_seam_every_window():
    """A causal VAE restarted at every window encodes that window's first frames without their past (and its first
    frame as a lone image latent): a seam every window. With the frames before each window as context, a causal
    encoder whose reach is within the context gives exactly one pass over the whole video. (HunyuanVideo's VAE also
    normalises over the frames it is given — GroupNorm — so any windowed encode, diffusers' temporal tiling included,
    differs from one pass by those statistics everywhere, not at the seams.)"""
    from pfvg_core.f1_encoders import stream_windows
    from pfvg_core.video_io import to_pixels

    def causal_encode(pixels):  # [1, 3, 1 + 4k, H, W] → [1, 3, 1 + k, H, W]: latent i sees frames 4i − 7 … 4i
        x = pixels.mean(dim=(3, 4), keepdim=True)
        padded = torch.cat([x[:, :, :1].expand(-1, -1, 7, -1, -1), x], 2)  # the first frame repeated (causal padding)
        reach = torch.stack([padded[:, :, j:j + x.shape[2]] * (j + 1) for j in range(8)]).sum(0)
        return reach[:, :, ::4]

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (4, 4, 3), dtype=np.uint8) for _ in range(41)]  # 1 + 10 latents
    whole = causal_encode(to_pixels(np.stack(frames)))
    restarted = torch.cat(list(stream_windows(frames, 2, causal_encode, context=0)), 2)
    with_past = torch.cat(list(stream_windows(frames, 2, causal_encode, context=2)), 2)
    assert restarted.shape == with_past.shape == whole.shape
    seams = [3, 5, 7, 9]  # each window's first latent (windows of 2 latents after the first 1 + 2)
    assert all(not torch.allclose(restarted[:, :, i], whole[:, :, i]) for i in seams)
    torch.testing.assert_close(with_past, whole)


def test_stage2_trains_f1_and_stores_only_what_trained(f1, tmp_path):
    out = str(tmp_path / "run")
    assert main(["train", "--config", _train_toml(f1, out, gradient_checkpointing="on")]) == 0
    model_dir = os.path.join(out, "model")
    assert not os.path.exists(os.path.join(model_dir, "dit.safetensors"))
    trained = load_file(os.path.join(model_dir, TRAINED_DIT_FILE))
    assert trained and all(k.startswith(("norm_out.linear.", "proj_out.")) for k in trained)
    with open(os.path.join(model_dir, "pfvg.json")) as f:
        meta = json.load(f)["meta"]
    assert meta["base"]["path"] == os.path.abspath(f1["dit"]) and meta["base"] == {**weights_reference(f1["dit"]), "trained_dit": sorted(trained)}
    assert meta["latent_scale"] == pytest.approx(0.476986) and meta["temporal_factor"] == 4 and meta["window"] == WINDOW
    # checkpoints are as small: no copy of the DiT
    ckpt = os.path.join(out, "checkpoints", "step-00000002", "model")
    assert sorted(os.listdir(ckpt)) == ["dit_trained.safetensors", "pfvg.json", "semanticpack.safetensors"]
    # loading = the base + what trained; the trained layers moved, the frozen ones did not
    model = PFVGModel.load(model_dir)
    base = PFVGModel.load(model_dir)
    from pfvg_core.backbone import load_dit

    plain = load_dit(f1["dit"])
    assert torch.equal(model.dit.transformer_blocks[0].attn.to_q.weight, plain.transformer_blocks[0].attn.to_q.weight)
    assert not torch.equal(model.dit.proj_out.weight, plain.proj_out.weight)
    assert torch.equal(model.dit.proj_out.weight, trained["proj_out.weight"]) and base.semanticpack.gate_open
    log = [json.loads(x) for x in open(os.path.join(out, "train_log.jsonl"))]
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)


def test_trained_model_refuses_other_base_weights(f1, tmp_path):
    out = str(tmp_path / "run")
    assert main(["train", "--config", _train_toml(f1, out)]) == 0
    cfg_path = os.path.join(out, "model", "pfvg.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    other = build_transformer(str(tmp_path / "other"), seed=1)
    cfg["meta"]["base"]["path"] = other
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    with pytest.raises(CheckpointError, match="not the ones this model was trained on"):
        PFVGModel.load(os.path.join(out, "model"))
    cfg["meta"]["base"]["path"] = str(tmp_path / "gone")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    with pytest.raises(CheckpointError, match="base weights .* not found"):
        PFVGModel.load(os.path.join(out, "model"))


def test_resume_overlays_what_trained_and_continues(f1, tmp_path):
    from pfvg_core.train import Trainer, load_config

    out = str(tmp_path / "run")
    cfg = load_config(_train_toml(f1, out))
    t = Trainer(cfg)
    t.run(max_steps=1)
    sp = {k: v.clone() for k, v in t.model.semanticpack.state_dict().items()}
    t2 = Trainer(load_config(_train_toml(f1, out)))
    assert t2.resume() and t2.pos.global_step == 1
    assert all(torch.equal(v, t2.model.semanticpack.state_dict()[k]) for k, v in sp.items())
    t2.run()
    assert t2.pos.global_step == 2 and os.path.isfile(os.path.join(out, "model", TRAINED_DIT_FILE))


def test_generate_with_the_trained_model_and_the_same_encoders(f1, tmp_path):
    out = str(tmp_path / "run")
    assert main(["train", "--config", _train_toml(f1, out)]) == 0
    from PIL import Image

    img = tmp_path / "start.png"
    Image.fromarray((np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)).save(img)
    video = tmp_path / "out.webp"
    rc = main(["generate", "--model", os.path.join(out, "model"), "--encoders", f1["enc"], "--image", str(img), "--prompt",
               "a green box", "--seconds", "1", "--size", str(W), str(H), "--steps", "2", "--out", str(video), "--device", "cpu"])
    assert rc == 0
    from pfvg_core.video_io import open_video

    r = open_video(str(video))
    frames = r.read_all()
    assert r.fps == pytest.approx(FPS, rel=0.05) and frames.shape[1:] == (H, W, 3)
    assert frames.shape[0] >= FPS  # at least the second asked (whole segments of 4·3 frames)
    # without encoders the F1 model cannot encode the image: one clear line, exit 2
    assert main(["generate", "--model", os.path.join(out, "model"), "--image", str(img), "--prompt", "x", "--seconds", "1",
                 "--out", str(tmp_path / "x.webp"), "--device", "cpu"]) == 2


def test_dataset_build_errors_name_the_input(f1, tmp_path, capsys):
    assert main(["dataset", "build", "--src", str(f1["videos"]), "--out", str(tmp_path / "d"), "--encoders",
                 str(tmp_path / "none")]) == 2
    assert "--encoders: folder not found" in capsys.readouterr().err
    assert main(["dataset", "build", "--src", str(f1["videos"]), "--out", str(tmp_path / "d"), "--encoders", f1["enc"],
                 "--size", "60x48"]) == 2
    assert "multiples of 16" in capsys.readouterr().err
    assert main(["dataset", "build", "--src", str(f1["videos"]), "--out", str(tmp_path / "d")]) == 2
    assert "--encoders FOLDER" in capsys.readouterr().err


def test_dataset_sizes_come_from_framepack_buckets(f1, tmp_path):
    """Without --size a video goes to the FramePack bucket nearest its aspect (here 100×72 → at resolution 256)."""
    out = tmp_path / "d"
    assert main(["dataset", "build", "--src", str(f1["videos"]), "--out", str(out), "--encoders", f1["enc"], "--resolution", "256",
                 "--fps", str(FPS), "--window", str(WINDOW), "--device", "cpu"]) == 0
    h, w = nearest_bucket(72, 100, 256)
    assert LatentDataset(str(out)).meta(0)["size"] == [w, h] and w % 16 == 0 and h % 16 == 0


def test_a_wrapped_f1_model_records_the_datasets_fps(f1):
    """A 16-channel F1 DiT gets latent_scale from wrap_dit; the trained bundle must still record the dataset's fps
    (generation would otherwise run at 8 fps)."""
    from pfvg_core.operations import load_model_path
    from pfvg_core.train import _check_dataset_fits

    model = load_model_path(f1["dit"], "f1")
    model.meta.update(latent_scale=0.476986, temporal_factor=4)  # as wrap_dit records for HunyuanVideo's 16 channels
    _check_dataset_fits(model, LatentDataset(f1["data"]))
    assert model.meta["fps"] == FPS
    model.meta["latent_scale"] = 1.0
    with pytest.raises(ValueError, match="latent_scale"):
        _check_dataset_fits(model, LatentDataset(f1["data"]))
