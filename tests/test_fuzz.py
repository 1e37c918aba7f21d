"""Fuzz (bounded, seeded): random bad values for every CLI option and training-config option end in
one clear error (exit 2, or argparse's usage error) or a valid output — never a traceback, never
an internal error (exit 3), never a non-finite frame."""
import contextlib
import io
import json
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from pfvg_core import video_io
from pfvg_core.cli import main
from pfvg_core.train import TrainConfig, load_config

SEED = int(os.environ.get("PFVG_FUZZ_SEED", "1515"))  # CI: fixed; set it to explore
PER_OPTION = 4  # random bad values tried per option

BAD = ["nan", "NaN", "inf", "-inf", "-1", "0", "-0.0", "1e308", "1e-320", str(2**70), "-" + str(2**70), "abc", "", " ",
       "0x10", "١٢", "1_0", "x" * 5000, "../../etc/passwd", "/dev/null", "f16k4f2k2f1k1\n", "0: a\n1: b", "a\n5: b",
       "\u202e", "1e", "--", "None", "[]", "{}",
       # edge values that are valid: the output must then be a real video
       "0.01", "0.1", "1", "2", "100", "euler", "unipc", "video", "local", "off", "zero", "ta_f4k4f1k1", "tc_f2k2f1k1"]


def _image(tmp_path):
    p = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    return str(p)


def _run(argv):
    """(exit status, stderr). argparse's own errors exit 2 with a usage line: a clear error too."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, err.getvalue()


@pytest.fixture
def finite_frames(monkeypatch):
    """Every frame that reaches a video file must be finite: each chunk the decoder makes is looked at before it is
    kept (``decoding.decode_video``, which the CLI decodes with)."""
    from pfvg_core import decoding

    real = decoding.decode_video
    seen = []

    def checked(codec, latents, **kw):
        inner = kw.get("on_chunk")

        def look(px, t0):
            if inner is not None:
                inner(px, t0)  # the CLI's own check first: a non-finite chunk must stop the run there
            assert torch.isfinite(px).all(), "a non-finite frame reached the output"
            seen.append(tuple(px.shape))

        return real(codec, latents, **{**kw, "on_chunk": look})

    monkeypatch.setattr(decoding, "decode_video", checked)
    return seen


def _cases(options, rng, combos):
    for opt in options:  # each option alone, then a few options at once
        for value in rng.sample(BAD, PER_OPTION):
            yield {opt: value}
    for _ in range(combos):
        yield {opt: rng.choice(BAD) for opt in rng.sample(options, 3)}


def _fuzz(tmp_path, command, base: dict, options, rng, combos=20):
    outcomes = []
    for case in _cases(options, rng, combos):
        args = dict(base)
        for opt, value in case.items():
            if opt == "--size" and command == "generate":
                args[opt] = [value, rng.choice(["64", value])]
            else:
                args[opt] = [value]
        argv = [command] + [x for k, v in args.items() for x in [k, *v]]
        rc, err = _run(argv)
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("generate:", "\r"))]
        where = f"{command} " + " ".join(f"{k}={v[:40]!r}" for k, v in case.items())
        assert "Traceback" not in err, where
        assert rc in (0, 2), f"{where}: exit {rc}: {err[-500:]}"
        if rc == 2:
            assert lines and ("error:" in lines[-1]), f"{where}: {err[-500:]}"
            assert len(lines[-1]) < 700, f"{where}: error line of {len(lines[-1])} characters"
        outcomes.append(rc)
    return outcomes


def test_fuzz_generate_options(tmp_path, finite_frames):
    rng = random.Random(SEED)
    image = _image(tmp_path)
    base = {"--model": ["random:tiny"], "--image": [image], "--prompt": ["a ball"], "--seconds": ["1"], "--fps": ["4"],
            "--steps": ["1"], "--window": ["2"], "--out": [str(tmp_path / "v.webp")]}
    options = ["--model", "--image", "--prompt", "--negative", "--seconds", "--out", "--sheet", "--seed", "--steps", "--sampler",
               "--cfg", "--guidance", "--shift", "--fps", "--size", "--window", "--schedule", "--rope", "--memory-mode"]
    outcomes = _fuzz(tmp_path, "generate", base, options, rng)
    assert outcomes.count(2) > len(outcomes) // 2 and outcomes.count(0) >= 1  # the fuzz hits both paths
    assert finite_frames  # valid runs wrote frames, all finite


def test_fuzz_world_dataset_eval_options(tmp_path):
    rng = random.Random(SEED + 1)
    video = tmp_path / "w.webp"
    assert _run(["world", "--seconds", "2", "--out", str(video)])[0] == 0
    _fuzz(tmp_path, "world", {"--seconds": ["1"], "--out": [str(tmp_path / "w2.webp")]},
          ["--seed", "--seconds", "--fps", "--size", "--out"], rng)
    src = tmp_path / "src"
    src.mkdir()
    os.link(video, src / "a.webp")
    _fuzz(tmp_path, "dataset", {"--src": [str(src)], "--out": [str(tmp_path / "data")], "--model": ["random:tiny"], "--window": ["2"]},
          ["--src", "--out", "--model", "--size", "--fps", "--window"], rng)
    _fuzz(tmp_path, "eval", {"--video": [str(video)], "--truth": [str(tmp_path / "w.json")]},
          ["--video", "--truth", "--fps", "--plot"], rng)


TOML_VALUES = ["nan", "inf", "-inf", "-1", "0", "1e308", "-1e308", str(2**62), '"abc"', '""', "true", "[]", "[1, 2]", "{}",
               '"random:nope"', '"../x"', "1.5", "0.0"]


def test_fuzz_training_config_options(tmp_path):
    rng = random.Random(SEED + 2)
    names = [f for f in TrainConfig.__dataclass_fields__ if f != "stages"] + ["stage.name", "stage.forcing", "stage.params",
                                                                                 "stage.steps", "stage.lr", "stage.student_steps"]
    good = 0
    for name in names:
        for value in rng.sample(TOML_VALUES, PER_OPTION):
            key = name.split(".")[-1]
            line = f"{key} = {value}\n"
            text = ('[[stage]]\nname = "a"\n' + line) if name.startswith("stage.") else (line + '[[stage]]\nname = "a"\n')
            (tmp_path / "c.toml").write_text(text)
            try:
                load_config(str(tmp_path / "c.toml"))
                good += 1
            except ValueError as e:
                assert len(str(e)) < 700 and str(e).strip(), (name, value)
    assert good >= 1
