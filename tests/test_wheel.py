"""The package as a user installs it: the wheel built from this repository holds the engine, its command line and
the embedded model — and nothing of the research runners, benchmarks or tests; installed into a fresh
virtualenv it generates a video from a folder outside the repository."""
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "out", "dist", "__pycache__", "*.egg-info", ".pytest_cache",
                              ".whl", "models", "input", "output")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline (no build isolation) from a copy of the repository, so nothing is written into it."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (the dev extra)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("pfvg-*.whl")
    return whl


def test_the_wheel_holds_the_engine_and_the_embedded_model_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"pfvg_core", next(t for t in tops if t.endswith(".dist-info"))}, tops
    for f in ("pfvg_core/__main__.py", "pfvg_core/cli.py", "pfvg_core/assets/default/pfvg.json",
              "pfvg_core/assets/default/dit.safetensors", "pfvg_core/assets/default/codec.safetensors",
              "pfvg_core/assets/default/MODEL_CARD.md"):
        assert f in names, f
    research = ("experiments.py", "carry.py", "throughput.py", "embedded_recipe.py", "protocol.py", "dist_check.py",
                "engine.py", "suite.py", "train_f1.py")
    assert not [n for n in names if n.startswith("pfvg_core/tools/") or n.rsplit("/", 1)[-1] in research]
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names)


def _fresh_venv(folder: Path) -> Path:
    """A virtualenv without this repository, whose dependencies (torch, diffusers, …) are the running
    interpreter's: one .pth line per site folder of the running environment (the repository's folders left out)."""
    venv.EnvBuilder(with_pip=False).create(folder)
    py = folder / "bin" / "python"
    out = subprocess.run([sys.executable, "-I", "-c", "import sys; print('\\n'.join(sys.path))"], capture_output=True,
                         text=True, cwd=folder, check=True).stdout.split("\n")
    prefix = Path(sys.prefix).resolve()  # the running environment (make's .venv lives inside the repository)

    def shared(p: str) -> bool:
        r = Path(p).resolve()
        return not r.is_relative_to(ROOT) or r.is_relative_to(prefix)

    paths = [p for p in out if p and os.path.isdir(p) and shared(p)]
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True,
                          text=True, check=True).stdout.strip()
    Path(site, "zz_shared_dependencies.pth").write_text("\n".join(paths) + "\n")
    return py


def test_the_installed_wheel_generates_a_video_outside_the_repository(wheel, tmp_path):
    py = _fresh_venv(tmp_path / "venv")
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(ROOT / "demo" / "start.png", work / "start.png")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"

    def run(*args, timeout=300):
        return subprocess.run([str(py), *args], capture_output=True, text=True, cwd=work, env=env, timeout=timeout)

    where = run("-c", "import pfvg_core; print(pfvg_core.__file__)")
    assert where.returncode == 0 and Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout + where.stderr
    helped = run("-m", "pfvg_core", "--help")
    assert helped.returncode == 0 and "generate" in helped.stdout and "bench" not in helped.stdout
    for name in ("research", "bench"):  # the research runners and benchmarks are not installed
        assert run("-c", f"import {name}").returncode != 0
    made = run("-m", "pfvg_core", "generate", "--model", "default", "--image", "start.png", "--prompt", "a desert",
               "--seconds", "1", "--steps", "2", "--out", "v.webp")
    assert made.returncode == 0, made.stderr[-3000:]
    assert (work / "v.webp").stat().st_size > 0
