"""One validation place (pfvg_core/validate.py) and the CLI's clear errors."""
import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pfvg_core import validate
from pfvg_core.checkpoint import CheckpointError
from pfvg_core.model import PFVGModel
from pfvg_core import cli
from pfvg_core.cli import main
from pfvg_core.video_io import load_image


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", "1e999", 0, -1, 1e308, "abc", True, None, [1]])
def test_non_finite_and_out_of_range_numbers_are_named(value):
    with pytest.raises(ValueError, match=r"^cfg: expected a finite number in \[1, 100\]"):
        validate.number("cfg", value, validate.SAMPLING["cfg"])


def test_good_numbers_pass_converted():
    assert validate.number("steps", "12", validate.SAMPLING["steps"]) == 12
    assert validate.number("steps", 12.0, validate.SAMPLING["steps"]) == 12
    assert validate.number("shift", None, validate.SAMPLING["shift"]) is None
    assert validate.number("seed", 2**64 - 1, validate.SAMPLING["seed"]) == 2**64 - 1
    assert validate.number("fps", torch.tensor(8.0), validate.SAMPLING["fps"]) == 8.0
    with pytest.raises(ValueError, match="steps: expected an integer"):
        validate.number("steps", 2.5, validate.SAMPLING["steps"])


def test_error_messages_cut_huge_inputs():
    with pytest.raises(ValueError) as e:
        validate.number("cfg", "9" * 100_000 + "x", validate.SAMPLING["cfg"])
    assert len(str(e.value)) < 200 and "100003 characters" in str(e.value)


@pytest.mark.parametrize("text, expected", [
    ("a red ball", "a red ball"),
    ("a red ball\nrolls across a field", "a red ball\nrolls across a field"),  # a multi-line plain prompt
    ("abc: x", "abc: x"),
    ("note: 5 balls\nmore text", "note: 5 balls\nmore text"),
    ("0: a cat\n[2.5s] a dog\n5: a bird", ((0.0, "a cat"), (2.5, "a dog"), (5.0, "a bird"))),
    ("[0s] a cat", ((0.0, "a cat"),)),
])
def test_prompt_rule(text, expected):
    assert validate.prompt_entries(text) == expected


@pytest.mark.parametrize("text, msg", [
    ("0: a cat\na dog", "line 2 'a dog' has no start time"),
    ("0: a cat\nabc: x", "line 2 'abc: x' has no start time"),
    ("a cat\n5: a dog", "line 2 '5: a dog' starts with a time but line 1 does not"),
    ("3: a cat", "must start at 0"),
    ("0: a\n5: b\n2: c", "start 2s is not after the previous 5s"),
    ("0: a\n5:", "no prompt after the time 5s"),
])
def test_prompt_rule_errors(text, msg):
    with pytest.raises(ValueError, match=msg):
        validate.prompt_entries(text)


def test_a_16_bit_png_is_scaled_not_white(tmp_path):
    grad = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(grad).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    px = load_image(str(tmp_path / "g16.png"))  # [-1, 1]
    assert px.min() < -0.95 and px.max() > 0.95 and abs(float(px.mean())) < 0.05


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    return str(p)


def run(capsys, *argv):
    rc = main(list(argv))
    return rc, capsys.readouterr().err.strip().splitlines()


BASE = ["--model", "random:tiny", "--prompt", "x", "--seconds", "1", "--fps", "4", "--steps", "1"]


@pytest.mark.parametrize("args, msg", [
    (["--steps", "0"], "--steps: expected an integer in [1, 1000], got 0"),
    (["--fps", "0"], "--fps: expected a finite number in [0.1, 240], got 0"),
    (["--window", "0"], "--window: expected an integer in [1, 64], got 0"),
    (["--cfg", "nan"], "--cfg: expected a finite number in [1, 100], got nan"),
    (["--guidance", "nan"], "--guidance: expected a finite number in [0, 100], got nan"),
    (["--shift", "nan"], "--shift: expected a finite number"),
    (["--shift", "inf"], "--shift: expected a finite number"),
    (["--seconds", "inf"], "--seconds: expected a finite number in [0.1, 3600], got inf"),
    (["--seed", "-1"], "--seed: expected an integer"),
    (["--size", "0", "64"], "--size W: expected an integer in [8, 4096]"),
    (["--prompt", "0: a cat\nthen a dog"], "--prompt line 2 'then a dog' has no start time"),
    (["--schedule", "f99999k1"], "--schedule: packs 99999 frames"),
    (["--sheet", "sheet.gif"], "expected a .png, .jpg or .webp"),
])
def test_generate_refuses_bad_values_before_any_work(tmp_path, image, capsys, monkeypatch, args, msg):
    monkeypatch.setattr(cli, "resolve_model", lambda spec: pytest.fail("the model was loaded before the inputs were checked"))
    argv = ["generate", "--image", image, "--out", str(tmp_path / "v.webp")] + BASE
    rc, err = run(capsys, *argv, *args)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and msg in err[0], err


def test_an_unwritable_out_is_found_before_generating(tmp_path, image, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(cli, "resolve_model", lambda spec: pytest.fail("generated before checking --out"))
    rc, err = run(capsys, "generate", "--image", image, "--out", str(tmp_path / "file" / "v.webp"), *BASE)
    assert rc == 2 and "cannot write there" in err[0]
    rc, err = run(capsys, "generate", "--image", image, "--out", str(tmp_path), *BASE)  # a folder
    assert rc == 2 and "expected a .webp" in err[0]


def test_huge_inputs_are_not_echoed_in_full(tmp_path, image, capsys):
    rc, err = run(capsys, "generate", "--image", image, "--out", str(tmp_path / "v.webp"), *BASE[2:], "--model", "m" * 100_000)
    assert rc == 2 and len(err) == 1 and len(err[0]) < 600
    rc, err = run(capsys, "generate", "--image", image, "--out", str(tmp_path / "v.webp"), *BASE, "--schedule", "f" * 100_000)
    assert rc == 2 and len(err) == 1 and len(err[0]) < 600


def test_non_finite_weights_are_an_error_not_a_black_video(tmp_path, image, capsys):
    m = PFVGModel.build("tiny", seed=0)
    with torch.no_grad():
        m.dit.proj_out.weight.fill_(float("nan"))
    m.save(str(tmp_path / "nan_model"))
    out = tmp_path / "v.webp"
    rc, err = run(capsys, "generate", "--image", image, "--out", str(out), *BASE[2:], "--model", str(tmp_path / "nan_model"))
    assert rc == 2 and "non-finite" in err[-1] and not out.exists()


@pytest.mark.parametrize("cfg, msg", [
    ([1, 2], "expected a JSON object"),
    ({"format": "pfvg-bundle", "version": 1}, "no 'dit' config"),
    ({"format": "pfvg-bundle", "dit": {}, "extra": 1}, "unknown keys ['extra']"),
    ({"format": "pfvg-bundle", "dit": 5}, "'dit' has the wrong type"),
    ({"format": "pfvg-bundle", "dit": "tiny", "text_encoder": {"max_len": "long"}}, "invalid model config"),
    ({"format": "pfvg-bundle", "dit": {"num_layers": "many"}}, "invalid 'dit' config"),
])
def test_pfvg_json_structure_errors_name_the_file(tmp_path, tiny_model, cfg, msg):
    folder = tmp_path / "m"
    tiny_model.save(str(folder))
    (folder / "pfvg.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as e:
        PFVGModel.load(str(folder))
    assert "pfvg.json" in str(e.value) and msg in str(e.value)


def test_world_and_eval_numbers_are_checked(tmp_path, capsys):
    for args, msg in [(["world", "--seconds", "nan", "--out", str(tmp_path / "w.webp")], "--seconds"),
                      (["world", "--fps", "-4", "--out", str(tmp_path / "w.webp")], "--fps"),
                      (["world", "--size", "100000", "--out", str(tmp_path / "w.webp")], "--size"),
                      (["eval", "--video", str(tmp_path / "none.webp"), "--fps", "inf"], "--fps")]:
        rc, err = run(capsys, *args)
        assert rc == 2 and msg in err[0], (args, err)
    assert not os.path.exists(tmp_path / "w.webp")
