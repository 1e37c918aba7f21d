import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pfvg_core.cli import main


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "start.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    return p


def test_generate_writes_an_animated_webp(tmp_path, image):
    out = tmp_path / "v.webp"
    sheet = tmp_path / "sheet.png"
    rc = main(["generate", "--image", str(image), "--prompt", "a red ball", "--seconds", "3", "--fps", "4",
               "--steps", "2", "--out", str(out), "--sheet", str(sheet)])
    assert rc == 0
    with Image.open(out) as v:
        assert v.n_frames == 13 and v.size == (64, 64)  # 3 s at 4 fps + the start frame
    assert Image.open(sheet).size[0] == 8 * 64


@pytest.mark.parametrize("args, msg", [
    (["--image", "missing.png", "--seconds", "2"], "image not found"),
    (["--seconds", "0"], "--seconds: expected a finite number in [0.1, 3600]"),
    (["--seconds", "2", "--model", "no/such/model"], "model folder not found"),
    (["--seconds", "2", "--out", "video.gif"], "expected a .webp, .mp4 or .webm"),
])
def test_bad_inputs_give_one_clear_line_and_nonzero_exit(tmp_path, image, args, msg):
    base = {"--image": str(image), "--prompt": "x", "--out": str(tmp_path / "o.webp"), "--steps": "1", "--fps": "4"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1] if args[i] != "--out" else str(tmp_path / args[i + 1])
    argv = [sys.executable, "-m", "pfvg_core", "generate"] + [x for kv in base.items() for x in kv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], r.stderr


def test_unreadable_model_is_one_line(tmp_path, image):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pfvg.json").write_text("{not json")
    r = subprocess.run([sys.executable, "-m", "pfvg_core", "generate", "--model", str(bad), "--image", str(image),
                        "--prompt", "x", "--seconds", "1", "--out", str(tmp_path / "o.webp")], capture_output=True, text=True)
    assert r.returncode == 2 and "unreadable model config" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bench_loop_quick_prints_the_three_figures(capsys, monkeypatch):
    from bench import engine as bench
    from bench.__main__ import main as bench_main

    monkeypatch.setattr(bench, "run", lambda what, quick, config: bench.bench_loop("tiny", segments=14, overhead_rounds=2, overhead_steps=2))
    assert bench_main(["loop", "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    for k in ("segment_time_ratio", "rss_growth", "semanticpack_overhead"):
        assert isinstance(out[k], float)
    assert out["segments"] == 14


def test_generate_with_device_dtype_and_fp8_storage_options(tmp_path, image):
    out = tmp_path / "v.webp"
    rc = main(["generate", "--image", str(image), "--prompt", "a red ball", "--seconds", "1", "--fps", "4",
               "--steps", "1", "--out", str(out), "--device", "cpu", "--dtype", "bf16", "--storage", "fp8_e4m3fn"])
    assert rc == 0
    with Image.open(out) as v:
        assert v.n_frames == 5
    # an unknown device is one clear line
    rc = main(["generate", "--image", str(image), "--prompt", "x", "--seconds", "1", "--out", str(out), "--device", "tpu"])
    assert rc == 2


def test_generate_compute_fp8_on_a_cpu_is_one_clear_line(tmp_path, image, capsys):
    out = tmp_path / "v.webp"
    rc = main(["generate", "--image", str(image), "--prompt", "x", "--seconds", "1", "--fps", "4", "--steps", "1",
               "--out", str(out), "--device", "cpu", "--compute", "fp8"])
    err = capsys.readouterr().err
    assert rc == 2 and "fp8 compute needs a CUDA GPU" in err and "8.9" in err and not out.exists()
