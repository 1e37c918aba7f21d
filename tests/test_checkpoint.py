import pytest
import torch

from pfvg_core.backbone import build_dit, load_dit, save_dit
from pfvg_core.checkpoint import CheckpointError
from pfvg_core.model import PFVGModel


def test_missing_file_is_named(tmp_path):
    p = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match="nope.safetensors"):
        load_dit(str(p), config="tiny")


def test_pickle_is_refused(tmp_path):
    p = tmp_path / "model.ckpt"
    torch.save({"a": torch.zeros(1)}, p)
    with pytest.raises(CheckpointError, match=r"model\.ckpt.*safetensors"):
        load_dit(str(p), config="tiny")


def test_truncated_file_is_named(tmp_path):
    p = tmp_path / "dit.safetensors"
    save_dit(build_dit("tiny"), str(p))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"dit\.safetensors.*truncated"):
        load_dit(str(p), config="tiny")


def test_other_config_is_named_with_the_mismatch(tmp_path):
    p = tmp_path / "small.safetensors"
    save_dit(build_dit("small"), str(p))
    with pytest.raises(CheckpointError, match=r"small\.safetensors.*another config.*shape mismatches"):
        load_dit(str(p), config="tiny")


def test_bundle_roundtrip_and_errors(tmp_path, tiny_model):
    folder = tmp_path / "bundle"
    tiny_model.save(str(folder))
    loaded = PFVGModel.load(str(folder))
    assert loaded.model_id == tiny_model.model_id
    for a, b in zip(tiny_model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    # a SemanticPack file from another config
    other = PFVGModel.build("tiny", semanticpack={"memory_tokens": 8}, seed=0)
    other.save(str(tmp_path / "other"))
    (folder / "semanticpack.safetensors").write_bytes((tmp_path / "other" / "semanticpack.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"semanticpack\.safetensors.*SemanticPack.*another config"):
        PFVGModel.load(str(folder))
    (folder / "semanticpack.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"semanticpack\.safetensors.*not found"):
        PFVGModel.load(str(folder))
    with pytest.raises(CheckpointError, match="not a PFVG model folder"):
        PFVGModel.load(str(tmp_path))
