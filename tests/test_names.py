"""Names and folders typed into the nodes (validate.path_name, safe_join) and the training's output folder
(operations.training_output): checked before any work, a rerun never fails and never overwrites."""
import os

import pytest

from nodes import comfy_io
from pfvg_core import operations as ops
from pfvg_core.model import BUNDLE_FILE
from pfvg_core.validate import MAX_NAME_BYTES, joined_path, path_name
from test_nodes import N, _model, _train, comfy_env  # noqa: F401  (fixture)


@pytest.mark.parametrize("name", ["pfvg_world", "sub/folder", "Ünïcödé vidéos", "a" * MAX_NAME_BYTES, "x\\y"])
def test_usable_names_pass_unchanged(name):
    assert path_name("folder", name) == name


@pytest.mark.parametrize("name, message", [
    ("a" * 100_000, r"output_name: expected a name of at most 1024 bytes, got 100000 bytes"),
    ("a" * 256, r"output_name: each file or folder name may have at most 255 bytes, 'a{39}… \(258 characters\) has 256"),
    ("é" * 128, r"output_name: each file or folder name may have at most 255 bytes"),  # 256 bytes in UTF-8
    ("/".join(["b" * 200] * 6), r"output_name: expected a name of at most 1024 bytes, got 1205 bytes"),
    ("bad\nname", r"output_name: 'bad\\nname' contains '\\n'; a name may not contain control characters"),
    ("what?", r"output_name: 'what\?' contains '\?'"),
    ("   ", r"output_name is empty"),
    (7, r"output_name: expected a text \(a file or folder name\), got 7 \(int\)"),
])
def test_bad_names_are_refused_naming_the_input(name, message):
    with pytest.raises(ValueError, match=message):
        path_name("output_name", name)


def test_a_joined_path_longer_than_the_file_system_takes_is_refused():
    assert joined_path("folder", "/r/" + "a" * 100) == "/r/" + "a" * 100
    with pytest.raises(ValueError, match=r"folder: the path it gives is 4123 bytes long, more than the 4000"):
        joined_path("folder", "/" + "/".join(["r" * 200] * 20) + "/" + "a" * 102)
    with pytest.raises(ValueError, match=r"^folder: the path it gives is \d+ bytes long"):
        comfy_io.safe_join("/" + "/".join(["r" * 250] * 16), "short", "folder")


def test_long_names_reach_no_file_system_call(comfy_env, monkeypatch):
    """A 100 000-character output_name and a 300-character folder: the node's own error, nothing created."""
    calls = []
    monkeypatch.setattr(os, "makedirs", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError, match=r"^output_name: expected a name of at most 1024 bytes, got 100000 bytes"):
        _train(_model(), "pfvg_world", "n" * 100_000, 1, 0)
    with pytest.raises(ValueError, match=r"^folder: each file or folder name may have at most 255 bytes"):
        N["PFVGWorldVideos"]().render("f" * 300, 1, 2.0, 8.0, 0)
    with pytest.raises(ValueError, match=r"^dataset: expected a name of at most 1024 bytes"):
        _train(_model(), "d" * 5000, "ok", 1, 0)
    assert calls == []


def _taken(path, what=BUNDLE_FILE):
    os.makedirs(path, exist_ok=True)
    if what == "run":
        os.makedirs(os.path.join(path, "run"))
    else:
        open(os.path.join(path, what), "w").close()


def test_training_output_counts_up_past_taken_folders(tmp_path):
    out = str(tmp_path / "pfvg_trained")
    assert ops.training_output(out, "new") == out  # free: itself
    os.makedirs(out)
    assert ops.training_output(out, "new") == out  # an empty folder is free too
    _taken(out)
    assert ops.training_output(out, "new") == out + "_00001"
    _taken(out + "_00001", "run")
    _taken(out + "_00002", "latents")
    assert ops.training_output(out, "new") == out + "_00003"
    for mode in ("refuse", "resume", "overwrite"):  # the other choices act on the folder named
        assert ops.training_output(out, mode) == out
    with pytest.raises(ValueError, match="existing: expected one of"):
        ops.training_output(out, "replace")
    long = str(tmp_path / ("l" * 250))
    _taken(long)
    with pytest.raises(ValueError, match=r"output_name: .* is taken and too long for a counter to be added \(at most 249"):
        ops.training_output(long, "new")


def test_the_training_template_reruns_without_touching_the_first_model(comfy_env):
    """existing = new (the default): the second run of the same workflow saves to <name>_00001."""
    from pfvg_core.model import PFVGModel

    assert ops.TrainOptions().existing == "new"
    world = N["PFVGWorldVideos"]().render("world", 1, 2.5, 8.0, 0)[0]
    model = _model()
    first, path1 = _train(model, world, "again", 1, 0, existing="new")
    before = (comfy_env.root / "models" / "pfvg" / "again" / "dit.safetensors").read_bytes()
    second, path2 = _train(model, world, "again", 1, 0, existing="new", seed=1)
    assert os.path.basename(path1) == "again" and os.path.basename(path2) == "again_00001"
    assert (comfy_env.root / "models" / "pfvg" / "again" / "dit.safetensors").read_bytes() == before
    assert PFVGModel.load(path2).model_id == second.model_id != PFVGModel.load(path1).model_id


def test_pressing_run_again_trains_again_not_served_from_comfyuis_cache():
    """ComfyUI reuses a node's cached outputs while its inputs and IS_CHANGED value are the same: Direct Forcing Train
    gives a new value every time, so a second press of Run with the same settings trains (and saves) again."""
    node = N["PFVGDirectForcingTrain"]
    inputs = dict(model=None, dataset="pfvg_world", output_name="pfvg_trained")
    values = {node.IS_CHANGED(**inputs) for _ in range(3)}
    assert len(values) == 3 and all(isinstance(v, str) and v == v for v in values)  # distinct, never NaN
