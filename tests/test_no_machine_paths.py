"""No machine's absolute paths in the repository: not in its text files, not in the shipped model's metadata."""
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# an absolute path into a machine's own folders (a slash not preceded by a word, dot or tilde character)
MACHINE_PATH = re.compile(r"(?<![\w.~\-/])/(?:work|tmp|home|root|Users|mnt|scratch|var/folders)/")


def _tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for n in filter(None, names):
        p = ROOT / n.decode()
        if not p.is_file():
            continue
        data = p.read_bytes()
        if b"\0" in data[:8192]:  # binary (weights, images)
            continue
        files.append(p)
    return files


def _hits(text: str) -> list[str]:
    return [text[max(0, m.start() - 40): m.end() + 40] for m in MACHINE_PATH.finditer(text)]


def test_the_pattern_finds_machine_paths_and_leaves_relative_ones():
    root = "/"  # the examples are built here so that this file holds no machine path itself
    assert _hits(f'"warm_start": "{root}work/main/pfvg_core/assets/default"') and _hits(f"--out {root}tmp/x")
    assert _hits(f"({root}home/u/a)")
    assert not _hits("pfvg_core/assets/default, build/tmp/x, models/home/y, https://example.org/tmp/z, ~/work/x")


def test_no_tracked_text_file_holds_a_machine_path():
    files = _tracked_text_files()
    assert len(files) > 50 and any(f.name == "README.md" for f in files)
    bad = {str(f.relative_to(ROOT)): _hits(f.read_text(errors="replace")) for f in files}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, bad


def test_the_shipped_model_metadata_records_no_machine_path():
    found = sorted((ROOT / "pfvg_core" / "assets").rglob("*.json"))
    assert any(f.name == "pfvg.json" for f in found)

    def strings(x):
        if isinstance(x, dict):
            for k, v in x.items():
                yield from strings(k)
                yield from strings(v)
        elif isinstance(x, list):
            for v in x:
                yield from strings(v)
        elif isinstance(x, str):
            yield x

    for f in found:
        bad = [s for s in strings(json.loads(f.read_text())) if s.startswith("/") or MACHINE_PATH.search(s)]
        assert not bad, (f.name, bad[:5])
