"""Every file the pack writes goes through here: a temporary file in the same folder, then a rename.

A kill at any point (SIGKILL, power cut after the fsync) leaves either the old file or the new one,
never half a file, and a reader never sees a partial write. Temporary files are named
``.tmp-<pid>-<random>-<name>`` (hidden, same extension as the target, so writers that pick a format
from the extension — Pillow, ffmpeg — still work); a leftover one whose process is gone is stale:
readers skip dot-files and ``clean_stale`` removes them. Files get the mode an ordinary ``open``
would give (0666 minus the umask, usually 0644), or the mode of the file they replace.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import time
from typing import Callable, Iterator

TMP_PREFIX = ".tmp-"
STALE_AGE_S = 24 * 3600  # a temp file of a live process older than this is stale too (pid reuse, other hosts)
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFullError(OSError):
    """The disk (or quota, or file size limit) ran out while writing; the previous file is unchanged."""


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would race with other threads)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode(path: str) -> int:
    """The mode a new ``path`` gets: that of the file it replaces, else 0666 & ~umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


def temp_name(path: str) -> str:
    folder, base = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{base}")


def is_temp(name: str) -> bool:
    return os.path.basename(name).startswith(TMP_PREFIX)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _explain(path: str, e: BaseException) -> BaseException:
    """Turn 'no space left' (also as safetensors' IoError text) into one clear DiskFullError."""
    code = getattr(e, "errno", None)
    text = str(e)
    if code in _FULL or "No space left" in text or "File too large" in text or "Disk quota" in text:
        err = DiskFullError(f"{path}: disk full (or file size limit reached) while writing; the previous file, if any, is unchanged")
        err.errno = code or errno.ENOSPC
        return err
    return e


@contextlib.contextmanager
def atomic_path(path: str, fsync: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    For writers that need a file name (Pillow, ffmpeg, safetensors). On any error the temporary
    file is removed and ``path`` is left as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mode = file_mode(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise OSError(f"{path}: the writer produced no file")
        os.chmod(tmp, mode)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        _remove(tmp)
        err = _explain(path, e)
        if err is e:
            raise
        raise err from e
    if fsync:
        _fsync_dir(folder)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", fsync: bool = True, **kw):
    """``open`` for writing whose result appears only when the ``with`` block succeeds."""
    if not any(c in mode for c in "wx"):
        raise ValueError(f"atomic_open: mode {mode!r} is not a write mode")
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, mode, **kw) as f:
            yield f


def write_bytes(path: str, data: bytes) -> str:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return path


def write_text(path: str, text: str) -> str:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def write_json(path: str, obj, **kw) -> str:
    return write_text(path, json.dumps(obj, **kw))


def write_with(path: str, writer: Callable[[str], object]) -> str:
    """Call ``writer(temporary_path)`` and publish its file at ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return path


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unavailable."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yield a temporary folder beside ``path``; on success it replaces the folder ``path``.

    The swap is atomic where the OS can exchange two paths (Linux); elsewhere the old folder is
    renamed aside just before the new one takes its place (a kill in between leaves it as a
    stale temporary folder, not lost)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = temp_name(path)
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.isdir(path):
            if _exchange(tmp, path):
                _remove(tmp)  # now holds the old folder
            else:
                old = temp_name(path)
                os.replace(path, old)
                os.replace(tmp, path)
                _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(parent)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return True
    return True


def is_stale(path: str, now: float | None = None) -> bool:
    """A temporary file left behind: its writer process is gone, or it is older than a day."""
    name = os.path.basename(path)
    pid_text = name[len(TMP_PREFIX):].split("-", 1)[0] if name.startswith(TMP_PREFIX) else ""
    if not pid_text.isdigit():  # not one of ours (.tmp-<pid>-…): never removed
        return False
    try:
        age = (now or time.time()) - os.lstat(path).st_mtime
    except OSError:
        return False
    return age > STALE_AGE_S or not _pid_alive(int(pid_text))


def clean_stale(folder: str) -> list[str]:
    """Remove stale temporary files/folders directly in ``folder``; returns what was removed."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for n in names:
        p = os.path.join(folder, n)
        if is_stale(p):
            _remove(p)
            removed.append(p)
    return removed


def check_writable(path: str, what: str = "output") -> str:
    """Fail early if a file cannot be created at ``path`` (folder missing and not creatable,
    no permission, a folder in the way): probe with a temporary file, removed at once."""
    if os.path.isdir(path):
        raise ValueError(f"{what} {path}: is a folder, expected a file name")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        probe = temp_name(path)
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"{what} {path}: cannot write there ({e.strerror or e})") from e
    return path
