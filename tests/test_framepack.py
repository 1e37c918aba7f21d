import pytest
import torch

from pfvg_core.framepack import F1_SCHEDULE, History, Schedule, pack_history
from pfvg_core.rope import time_indices


def _history(t, c=4, h=16, w=16, first=0):
    frames = torch.arange(t, dtype=torch.float32).view(1, 1, t, 1, 1).expand(1, c, t, h, w).clone()
    return History(frames, torch.arange(first, first + t))


def _grow(schedule, n, c=4, h=16, w=16):
    """History after appending n frames one by one to [start]."""
    hist = History(torch.zeros(1, c, 1, h, w), torch.zeros(1, dtype=torch.long))
    for i in range(1, n + 1):
        hist = hist.append(torch.full((1, c, 1, h, w), float(i)), torch.tensor([i]), schedule)
    return hist


def test_schedule_notation_roundtrip_and_errors():
    s = Schedule.parse("f16k4f2k2f1k1")
    assert s == F1_SCHEDULE and s.groups == ((16, 4), (2, 2), (1, 1)) and s.length == 19 and s.tail == "delete"
    assert Schedule.parse("tc_f16k4f4k2f1k1").tail == "compress"
    assert Schedule.parse(s.name) == s
    for bad in ["", "f3k4", "f16k3", "x_f1k1", "f16k4f2k2f1k1_td"]:
        with pytest.raises(ValueError):
            Schedule.parse(bad)


def test_default_layout_equals_framepack_f1():
    """F1: indices split as [start, 16, 2, 1, window] = [0 | 1..16 | 17,18 | 19 | 20..28]."""
    start = torch.full((1, 4, 1, 16, 16), -1.0)
    packed = pack_history(_history(30), start)
    assert packed.history_4x.latents.shape[2] == 16
    assert packed.history_2x.latents.shape[2] == 2
    assert packed.clean.latents.shape[2] == 2  # start ⊕ 1x
    assert torch.equal(packed.clean.latents[:, :, 0], start[:, :, 0])
    # the newest frame is the 1x frame, the two before it are 2x, the 16 before those 4x
    assert packed.clean.latents[0, 0, 1, 0, 0] == 29
    assert packed.history_2x.latents[0, 0, :, 0, 0].tolist() == [27, 28]
    assert packed.history_4x.latents[0, 0, :, 0, 0].tolist() == list(range(11, 27))
    idx = time_indices("local", packed, window_start=30, window=9)
    layout = torch.cat([idx.clean[:1], idx.history_4x, idx.history_2x, idx.clean[1:], idx.latents])
    assert layout.tolist() == list(range(0, 29))
    sizes = [1, idx.history_4x.numel(), idx.history_2x.numel(), idx.clean.numel() - 1, idx.latents.numel()]
    assert sizes == [1, 16, 2, 1, 9]


def test_short_history_is_zero_padded_like_f1():
    hist = History(torch.ones(1, 4, 1, 16, 16), torch.zeros(1, dtype=torch.long))  # only the start latent
    packed = pack_history(hist, torch.ones(1, 4, 1, 16, 16))
    assert packed.history_4x.latents.abs().sum() == 0 and packed.history_2x.latents.abs().sum() == 0
    assert packed.clean.latents[0, 0, 1].mean() == 1  # the start latent is the newest history frame
    assert packed.history_2x.indices.tolist() == [-2, -1]


@pytest.mark.parametrize("tail", ["delete", "compress"])
def test_context_tokens_stop_growing_once_history_exceeds_schedule(tail):
    s = Schedule(tail=tail)
    counts = [pack_history(_grow(s, n), torch.zeros(1, 4, 1, 16, 16), s).num_tokens() for n in range(0, 60, 3)]
    assert all(a <= b for a, b in zip(counts, counts[1:]))
    assert len(set(counts[7:])) == 1  # n ≥ 21 > 19
    # the history kept in memory is bounded too
    assert _grow(s, 100).frames.shape[2] == s.length


def test_tail_options_behave_as_documented():
    start = torch.zeros(1, 4, 1, 16, 16)
    d, c, a = Schedule(tail="delete"), Schedule(tail="compress"), Schedule(tail="append")
    n_d = pack_history(_grow(d, 40), start, d).num_tokens()
    n_c = pack_history(_grow(c, 40), start, c).num_tokens()
    assert n_c == n_d + 4  # one extra k4 slot (2x2 tokens at 16x16)
    hc = _grow(c, 40)
    assert hc.tail_count == 22 and torch.allclose(hc.tail_sum / hc.tail_count, torch.full_like(start, 10.5))  # frames 0..21
    n_a = [pack_history(_grow(a, n), start, a).num_tokens() for n in (30, 60)]
    assert n_a[1] > n_a[0] > n_d  # append grows with the video


def test_history_append_never_mutates():
    s = F1_SCHEDULE
    h = _grow(s, 25)
    before = (h.frames.clone(), h.indices.clone())
    h2 = h.append(torch.full((1, 4, 3, 16, 16), 99.0), torch.tensor([26, 27, 28]), s)
    assert torch.equal(h.frames, before[0]) and torch.equal(h.indices, before[1])
    assert h2.indices[-3:].tolist() == [26, 27, 28] and h2.frames.shape[2] == 19
