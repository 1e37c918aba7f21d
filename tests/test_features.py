"""Optional feature-network metrics: known answers on constructed features, and real (tiny, random)
transformers vision models saved to a local folder as a user's CLIP / DINOv2 would be."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pfvg_core.features import delta_drift_feature_consistency, evaluate_features, feature_consistency, load_image_features


def test_feature_consistency_known_answers():
    same = feature_consistency(np.tile([[3.0, 4.0]], (4, 1)))
    assert same["feature_consistency"] == pytest.approx(1.0) and same["feature_similarity_to_first"] == pytest.approx([1.0] * 4)
    # e1, e2, e1: to first [0, 1], to previous [0, 0] → ½(0+0), ½(1+0) → mean 0.25
    alt = feature_consistency(np.array([[1.0, 0.0], [0.0, 2.0], [5.0, 0.0]]))
    assert alt["feature_consistency"] == pytest.approx(0.25)
    assert alt["feature_consistency_first"] == pytest.approx(0.5) and alt["feature_consistency_neighbour"] == pytest.approx(0.0)
    opposite = feature_consistency(np.array([[1.0, 1.0], [-1.0, -1.0]]))
    assert opposite["feature_consistency"] == pytest.approx(-1.0)


def test_delta_drift_of_feature_consistency_is_computed_inside_each_window():
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    # 20 frames, windows of 3: the first window is constant (consistency 1), the last alternates
    # e1, e2, e1: to its own first [0, 1], to neighbours [0, 0] → ½(0+0), ½(1+0) → 0.25
    feats = np.array([e1] * 17 + [e1, e2, e1])
    assert delta_drift_feature_consistency(feats) == pytest.approx(0.75)
    # a video that changes once, early, and stays: consistent inside each window → no drift, although
    # its similarity to frame 0 went from 1 to 0 (the old per-frame definition would say 1)
    assert delta_drift_feature_consistency(np.array([e1] * 5 + [e2] * 15)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="T ≥ 2"):
        delta_drift_feature_consistency(np.ones((1, 2)))


@pytest.mark.parametrize("bad, msg", [(np.ones((1, 4)), "T ≥ 2"), (np.ones(4), "T ≥ 2"), (np.array([[1.0, 0], [0, 0]]), "all-zero")])
def test_feature_consistency_rejects_bad_features(bad, msg):
    with pytest.raises(ValueError, match=msg):
        feature_consistency(bad)


@pytest.fixture(scope="module")
def vision_models(tmp_path_factory):
    import transformers  # in the dev extra: installed by `make test`

    root = tmp_path_factory.mktemp("feature_models")
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    crop = dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(0)
    transformers.Dinov2Model(transformers.Dinov2Config(**small)).save_pretrained(root / "dino")
    transformers.BitImageProcessor(**crop).save_pretrained(root / "dino")
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=100, eos_token_id=2)
    clip = transformers.CLIPConfig(text_config=text, vision_config=small, projection_dim=16)
    transformers.CLIPModel(clip).save_pretrained(root / "clip")
    transformers.CLIPImageProcessor(**crop).save_pretrained(root / "clip")
    return root


@pytest.mark.parametrize("name, dim", [("dino", 32), ("clip", 16)])
def test_local_vision_model_features(vision_models, name, dim):
    fn = load_image_features(str(vision_models / name))
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    assert fn(frames).shape == (5, dim)
    still = evaluate_features(np.repeat(frames[:1], 5, 0), fn)
    assert still["feature_consistency"] == pytest.approx(1.0, abs=1e-6) and still["delta_drift_feature_consistency"] < 1e-6
    moving = evaluate_features(frames, fn)
    assert moving["feature_consistency"] < 1 - 1e-4


def test_feature_model_errors_name_the_folder(tmp_path, vision_models):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_features(str(tmp_path / "nowhere"))
    pickled = tmp_path / "pickled"  # weights only as a pickle: refused (safetensors only)
    pickled.mkdir()
    for f in ("config.json", "preprocessor_config.json"):
        (pickled / f).write_bytes((vision_models / "dino" / f).read_bytes())
    from safetensors.torch import load_file

    torch.save(load_file(str(vision_models / "dino" / "model.safetensors")), pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickled"):
        load_image_features(str(pickled))


def test_cli_eval_with_a_feature_model(tmp_path, vision_models):
    from PIL import Image

    rng = np.random.default_rng(1)
    frames = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(4)]
    video = tmp_path / "v.webp"
    frames[0].save(video, save_all=True, append_images=frames[1:], lossless=True, duration=125)
    out = subprocess.run([sys.executable, "-m", "pfvg_core", "eval", "--video", str(video), "--features", str(vision_models / "dino"), "--json"],
                         capture_output=True, text=True, check=True)
    feats = json.loads(out.stdout)["features"]["dino"]
    assert 0 < feats["feature_consistency"] < 1
