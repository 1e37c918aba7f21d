"""Dependency floor: the declared diffusers floor has every sampler we offer
(UniPC's ``set_timesteps`` takes ``sigmas`` only from 0.37), and tomli is declared for Python < 3.11."""
import inspect
import os
import re

import diffusers
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from pfvg_core import flow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _version(text):
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


def _declared(path):
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    m = re.search(r"diffusers>=([\d.]+)", text)
    assert m, f"{path} declares no diffusers floor"
    return text, _version(m.group(1))


def test_diffusers_floor_is_where_every_sampler_works():
    for path in ("pyproject.toml", "requirements.txt"):
        text, floor = _declared(path)
        assert floor >= (0, 37), f"{path}: diffusers 0.36 and older have no sigmas in UniPC set_timesteps"
        assert re.search(r"tomli;\s*python_version\s*<\s*['\"]3\.11['\"]", text), f"{path}: tomli for Python < 3.11"
    assert _version(diffusers.__version__) >= _declared("pyproject.toml")[1]
    # what the samplers need from the installed diffusers (the floor's API)
    assert "sigmas" in inspect.signature(UniPCMultistepScheduler.set_timesteps).parameters
    assert "mu" in inspect.signature(UniPCMultistepScheduler.set_timesteps).parameters
    assert "time_shift_type" in inspect.signature(FlowMatchEulerDiscreteScheduler.__init__).parameters
    for sampler in flow.SAMPLERS:  # each builds on FramePack's shifted sigmas (tests/test_flow.py integrates them)
        assert len(flow.make_scheduler(sampler, 5, mu=1.1).timesteps) == 5


def test_video_and_progress_dependencies_are_declared_unpinned():
    for path in ("pyproject.toml", "requirements.txt"):
        with open(os.path.join(ROOT, path)) as f:
            text = f.read()
        for name in ("av", "tqdm"):  # PyAV for MP4/WebM (no ffmpeg program), tqdm for the CLI progress
            assert re.search(rf"^\s*\"?{name}\"?,?\s*(#.*)?$", text, re.M), f"{path}: {name} not declared unpinned"
