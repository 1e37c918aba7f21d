"""Video files through PyAV (no ffmpeg program needed) and Pillow: fps kept, frames streamed, writes atomic."""
import os
import types

import numpy as np
import pytest

from pfvg_core.data import read_frames
from pfvg_core.video_io import open_video, read_video, write_video


def _frames(t=20, h=48, w=64):
    fr = np.zeros((t, h, w, 3), np.uint8)
    for k in range(t):
        fr[k, :, :, 0] = (10 * k) % 256
        fr[k, 10:20, k : k + 10, 1] = 255
    return fr


@pytest.mark.parametrize("ext,fps", [("mp4", 12.5), ("webm", 24.0), ("webp", 12.5)])
def test_round_trip_keeps_fps_and_frames_without_an_ffmpeg_program(tmp_path, monkeypatch, ext, fps):
    monkeypatch.setenv("PATH", "")  # PyAV carries FFmpeg's libraries: no binary on PATH
    fr = _frames()
    path = str(tmp_path / f"v.{ext}")
    write_video(iter(list(fr)), path, fps)  # any iterable of frames, consumed one at a time
    r = open_video(path)
    assert r.fps == pytest.approx(fps) and r.size == (64, 48)
    got = r.read_all()
    assert got.shape == fr.shape
    assert np.abs(got.astype(int) - fr.astype(int)).mean() < 3.0  # lossy codecs at high quality
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary file left


def test_reading_streams_one_frame_at_a_time(tmp_path):
    path = str(tmp_path / "v.mp4")
    write_video(_frames(30), path, 8)
    gen, fps = read_video(path)
    assert isinstance(gen, types.GeneratorType) and fps == pytest.approx(8)
    first = next(gen)
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8
    assert 1 + sum(1 for _ in gen) == 30
    small = open_video(path, resize=(32, 24)).read_all(limit=5)
    assert small.shape == (5, 24, 32, 3)
    assert read_frames(path, size=(32, 24)).shape == (30, 24, 32, 3)  # dataset building reads through PyAV too


def test_odd_size_is_padded_for_yuv420(tmp_path):
    path = str(tmp_path / "odd.mp4")
    write_video(_frames(5, 33, 47), path, 8)
    assert open_video(path).read_all().shape == (5, 34, 48, 3)


def test_errors_name_the_file_and_keep_the_old_video(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(_frames(5), str(path), 8)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="no frames"):
        write_video(iter([]), str(path), 8)
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="fps"):
        write_video(_frames(2), str(path), 0)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="bad.mp4"):
        open_video(str(bad))
    (tmp_path / "v.txt").write_text("x")
    with pytest.raises(ValueError, match="expected a video"):
        open_video(str(tmp_path / "v.txt"))
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        open_video(str(tmp_path / "nope.mp4"))


def test_dataset_videos_are_resampled_to_the_asked_fps(tmp_path):
    """`dataset build --fps` resamples (it was only written as metadata): 30 frames at 30 fps → 8 at 8 fps."""
    import numpy as np

    from pfvg_core.video_io import write_video

    path = str(tmp_path / "v.mp4")
    write_video(np.zeros((30, 24, 32, 3), np.uint8), path, 30)
    assert read_frames(path, size=(32, 24), fps=8.0).shape[0] == 8
    assert read_frames(path, size=(32, 24), fps=30.0).shape[0] == 30
