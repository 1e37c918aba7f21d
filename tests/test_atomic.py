"""Every write is temp file + rename (pfvg_core/atomic.py): a SIGKILL at several points of a write
leaves the old or the new file, never a broken one; stale temp files are skipped and cleaned;
files are readable by other users; a full disk is one clear error and the old file survives."""
import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from pfvg_core import atomic
from pfvg_core.checkpoint import save_safetensors_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The child writes the NEW version of ``target``; ``point`` says where it kills itself:
#   mid     — the parent kills it while the temporary file exists (data being written)
#   fsync   — all data written, before the fsync
#   rename  — just before the rename
#   after   — just after the rename
CHILD = textwrap.dedent("""
    import os, signal, sys
    kind, target, point = sys.argv[1:4]
    from pfvg_core import atomic
    real_replace, real_fsync = os.replace, os.fsync
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    def replace(a, b):
        if point == "rename" and b == target:
            die()
        real_replace(a, b)
        if point == "after" and b == target:
            die()
    def fsync(fd):
        if point == "fsync":
            die()
        real_fsync(fd)
    os.replace, os.fsync = replace, fsync
    import new_content
    print("ready", flush=True)
    new_content.write(kind, target, slow=(point == "mid"))
    print("finished", flush=True)
""")

CONTENT = textwrap.dedent("""
    import json, os
    import numpy as np
    def frames(version, n=6):
        rng = np.random.default_rng(version)
        return rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    def write(kind, path, version=2, slow=False):
        from pfvg_core import atomic
        if kind == "json":
            big = "x" * (40_000_000 if slow else 1000)
            atomic.write_json(path, {"version": version, "pad": big})
        elif kind == "safetensors":
            import torch
            from pfvg_core.checkpoint import save_safetensors_atomic
            n = 12_000_000 if slow else 1000
            save_safetensors_atomic({"w": torch.full((n,), float(version))}, path)
        elif kind == "webp":
            from pfvg_core.video_io import write_video
            write_video(frames(version, 300 if slow else 6), path, 8)
        elif kind == "sheet":
            from pfvg_core.video_io import contact_sheet
            contact_sheet(frames(version, 200 if slow else 6), path, count=200 if slow else 24)
""")

EXT = {"json": ".json", "safetensors": ".safetensors", "webp": ".webp", "sheet": ".png"}


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _load_content(tmp_path):
    (tmp_path / "new_content.py").write_text(CONTENT)
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        import new_content
        importlib.reload(new_content)
        return new_content
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize("kind, point", [
    ("json", "mid"), ("json", "fsync"), ("json", "rename"), ("json", "after"),
    ("safetensors", "mid"), ("safetensors", "rename"),
    ("webp", "mid"), ("webp", "after"),
    ("sheet", "fsync"),
])
def test_sigkill_during_a_write_leaves_old_or_new_never_broken(tmp_path, kind, point):
    content = _load_content(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    target = str(folder / ("file" + EXT[kind]))
    content.write(kind, target, version=1)
    old = _digest(target)
    ref = str(tmp_path / ("reference" + EXT[kind]))
    content.write(kind, ref, version=2, slow=(point == "mid"))
    new = _digest(ref)
    (tmp_path / "child.py").write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]), OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), kind, target, point], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if point == "mid":  # kill while the temporary file is being written
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            if any(atomic.is_temp(n) for n in os.listdir(folder)):
                p.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
    out, err = p.communicate(timeout=120)
    assert p.returncode == -signal.SIGKILL, (out, err)
    assert "finished" not in out
    got = _digest(target)
    assert got in (old, new), "the target is neither the old nor the new file"
    assert got == (new if point == "after" else old)
    if kind == "json":
        assert json.load(open(target))["version"] in (1, 2)
    leftovers = [n for n in os.listdir(folder) if atomic.is_temp(n)]
    if point != "after":
        assert leftovers, "the kill should have left the temporary file behind"
    assert sorted(atomic.clean_stale(str(folder))) == sorted(str(folder / n) for n in leftovers)
    assert os.listdir(folder) == [os.path.basename(target)]


def test_a_live_writers_temp_file_is_not_stale_and_readers_skip_it(tmp_path):
    live = tmp_path / f".tmp-{os.getpid()}-abcd-v.safetensors"
    live.write_bytes(b"partial")
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".tmp-{int(p.stdout)}-abcd-w.safetensors"
    dead.write_bytes(b"partial")
    assert not atomic.is_stale(str(live)) and atomic.is_stale(str(dead))
    atomic.clean_stale(str(tmp_path))
    assert live.exists() and not dead.exists()
    old = tmp_path / ".tmp-1-abcd-x.json"
    old.write_text("{")
    os.utime(old, (time.time() - 2 * atomic.STALE_AGE_S, time.time() - 2 * atomic.STALE_AGE_S))
    assert atomic.is_stale(str(old))
    foreign = tmp_path / ".tmp-editor-swap"  # another program's file, however old, is left alone
    foreign.write_text("x")
    os.utime(foreign, (time.time() - 2 * atomic.STALE_AGE_S, time.time() - 2 * atomic.STALE_AGE_S))
    atomic.clean_stale(str(tmp_path))
    assert foreign.exists() and not old.exists()


def test_saved_files_are_readable_by_other_users(tmp_path):
    old = os.umask(0o022)
    try:
        p = str(tmp_path / "w.safetensors")
        save_safetensors_atomic({"a": torch.zeros(2)}, p)
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
        atomic.write_json(str(tmp_path / "a.json"), {"a": 1})
        assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o644
        os.chmod(p, 0o640)  # a replaced file keeps the mode its owner gave it
        save_safetensors_atomic({"a": torch.ones(2)}, p)
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    finally:
        os.umask(old)


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    p = tmp_path / "v.json"
    p.write_text('{"old": true}')

    def bad(tmp):
        open(tmp, "w").write('{"half')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(atomic.DiskFullError, match="disk full.*previous file.*unchanged"):
        atomic.write_with(str(p), bad)
    assert json.loads(p.read_text()) == {"old": True} and os.listdir(tmp_path) == ["v.json"]


def test_model_folder_is_replaced_whole(tmp_path):
    folder = tmp_path / "model"
    for v in (1, 2):
        with atomic.atomic_dir(str(folder)) as tmp:
            for name in ("a", "b"):
                open(os.path.join(tmp, name), "w").write(str(v))
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert [open(folder / n).read() for n in ("a", "b")] == ["2", "2"]


def test_disk_full_is_one_clear_line_and_the_old_video_survives(tmp_path):
    from PIL import Image

    img = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "v.webp"
    out.write_bytes(b"OLD VIDEO")
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # files over 4 KiB: 'file too large'
        from pfvg_core.cli import main
        sys.exit(main(["generate", "--model", "random:tiny", "--image", {str(img)!r}, "--prompt", "x",
                       "--seconds", "2", "--fps", "4", "--steps", "1", "--out", {str(out)!r}]))
    """)
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("generate")]
    assert r.returncode == 2 and len(lines) >= 1 and "disk full" in lines[-1], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert out.read_bytes() == b"OLD VIDEO"
    assert sorted(os.listdir(tmp_path)) == ["start.png", "v.webp"]
