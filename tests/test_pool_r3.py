"""Pooling r3 runs over sampling seeds: per-video means over the seeds, then paired intervals over videos."""
import json

import pytest

from pfvg_core import metrics
from research import ladder, pool_r3

ON, OFF = ladder.GEN.format("on"), ladder.GEN.format("off")


def _run(shift: float, missing: bool = False):
    base = [0.1, 0.4, 0.2, 0.3]
    pts = {ON: {k: [b + shift for b in base] for k in ladder.R3_METRICS},
           OFF: {k: [b + 1.0 for b in base] for k in ladder.R3_METRICS},
           metrics.REF_FIRST: {k: ([None] if missing else [0.5]) + [0.5, 0.5, 0.5] for k in ladder.R3_METRICS}}
    return {"segments": 3, "points": pts, "differences": {}}


def test_pool_averages_each_video_over_the_seeds_then_pairs_over_videos():
    res = pool_r3.pool([_run(0.0), _run(0.5, missing=True)], reps=200)
    k = ladder.R3_METRICS[0]
    assert res["points"][ON][k] == pytest.approx([0.35, 0.65, 0.45, 0.55])  # base + (0 + 0.5) / 2
    assert res["points"][metrics.REF_FIRST][k] == [0.5, 0.5, 0.5, 0.5]  # a seed without a value: the other seed's
    d = res["differences"][f"{ON} − {OFF}"][k]
    assert d["value"] == pytest.approx(-0.75) and d["low"] == pytest.approx(-0.75) and d["high"] == pytest.approx(-0.75)
    assert res["rows"][ON][k]["value"] == pytest.approx(0.5) and res["seeds"] == 2 and res["videos"] == 4
    assert "4 videos, each averaged over 2 sampling seeds" in pool_r3.markdown(res)


def test_pool_refuses_runs_that_do_not_match(tmp_path, capsys):
    bad = _run(0.0)
    bad["points"][ON] = {k: [0.1] for k in ladder.R3_METRICS}
    with pytest.raises(ValueError, match="same rows"):
        pool_r3.pool([_run(0.0), bad])
    p = tmp_path / "no_r3.json"
    p.write_text(json.dumps({"r1": {}}))
    assert pool_r3.main([str(p), "--out", str(tmp_path / "o.json")]) == 2
    assert "no r3 rung" in capsys.readouterr().err
