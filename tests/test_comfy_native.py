"""Issue 21: the pack as a native ComfyUI citizen, tested with stand-ins for ComfyUI's modules (CI has no
ComfyUI): a first run that needs no upload, inputs brought to the model's size, one source of truth for
inputs, the CPU thread rule, and the model held by ComfyUI's memory manager."""
import importlib
import os
import sys
import types

import pytest
import torch

import nodes
from nodes import comfy_io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = nodes.NODE_CLASS_MAPPINGS


def _fake_folder_paths(monkeypatch, tmp_path):
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(tmp_path / "models")
    fp.folder_names_and_paths = {}
    fp.get_input_directory = lambda: str(tmp_path / "input")
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    return fp


# --- a first run that works --------------------------------------------------------------------
def test_demo_start_image_is_copied_into_a_fresh_input_folder_once(tmp_path, monkeypatch):
    _fake_folder_paths(monkeypatch, tmp_path)
    written = comfy_io.install_demo_inputs()
    dst = tmp_path / "input" / "pfvg_start.png"
    assert written == [str(dst)]
    assert dst.read_bytes() == open(os.path.join(ROOT, "demo", "start.png"), "rb").read()
    assert [p.name for p in (tmp_path / "input").iterdir()] == ["pfvg_start.png"]  # no temporary file left
    dst.write_bytes(b"the user's own image")  # never replaced
    assert comfy_io.install_demo_inputs() == []
    assert dst.read_bytes() == b"the user's own image"


def test_demo_inputs_install_is_a_no_op_without_comfyui(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "folder_paths", None)  # import folder_paths → ImportError
    monkeypatch.chdir(tmp_path)
    assert comfy_io.install_demo_inputs() == [] and not (tmp_path / "input").exists()


def test_every_template_image_is_a_demo_input():
    sys.path.insert(0, os.path.join(ROOT, "workflows"))
    mw = importlib.import_module("make_workflows")
    for name, build in mw.WORKFLOWS.items():
        for node in build().api().values():
            if node["class_type"] == "LoadImage":
                assert node["inputs"]["image"] in comfy_io.DEMO_INPUTS, name
