import torch

from pfvg_core.framepack import History, pack_history
from pfvg_core.rope import time_indices


def test_video_mode_uses_absolute_indices_with_the_image_at_zero():
    frames = torch.randn(1, 4, 19, 16, 16)
    hist = History(frames, torch.arange(101, 120))  # frames 101..119 of the video
    packed = pack_history(hist, torch.randn(1, 4, 1, 16, 16))
    idx = time_indices("video", packed, window_start=120, window=9)
    assert idx.clean.tolist() == [0, 119]
    assert idx.history_2x.tolist() == [117, 118]
    assert idx.history_4x.tolist() == list(range(101, 117))
    assert idx.latents.tolist() == list(range(120, 129))


def test_local_mode_is_the_same_for_every_segment():
    a = pack_history(History(torch.randn(1, 4, 19, 16, 16), torch.arange(1, 20)), torch.randn(1, 4, 1, 16, 16))
    b = pack_history(History(torch.randn(1, 4, 19, 16, 16), torch.arange(500, 519)), torch.randn(1, 4, 1, 16, 16))
    ia, ib = time_indices("local", a, 20, 9), time_indices("local", b, 519, 9)
    for f in ("latents", "clean", "history_2x", "history_4x"):
        assert torch.equal(getattr(ia, f), getattr(ib, f))
    # in video mode the same two segments differ: their absolute positions are kept
    assert not torch.equal(time_indices("video", a, 20, 9).latents, time_indices("video", b, 519, 9).latents)
