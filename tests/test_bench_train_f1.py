"""``bench train-f1`` on a CPU at tiny size: the GPU call's code path, every plan measured or
skipped with its reason, ratios from the same run."""
import json
import math

import pytest

from bench.train_f1 import bench_train_f1
from bench.__main__ import main as bench_main


def test_every_plan_is_measured_or_skipped_with_a_reason(tmp_path):
    log = tmp_path / "rows.jsonl"
    r = bench_train_f1("tiny", width=32, height=32, window=2, steps=1, plans=("bf16", "bf16_ckpt", "fp8_ckpt_offload"),
                       device="cpu", log=str(log))
    rows = {(x["plan"], x["forcing"]): x for x in r["rows"]}
    assert set(rows) == {("bf16", "direct"), ("bf16_ckpt", "direct"), ("fp8_ckpt_offload", "direct"), ("bf16_ckpt", "teacher")}
    for key in (("bf16", "direct"), ("bf16_ckpt", "direct"), ("bf16_ckpt", "teacher"), ("fp8_ckpt_offload", "direct")):
        assert rows[key]["s_per_clip"] > 0
    assert math.isfinite(r["ratios"]["direct_over_teacher"]) and math.isfinite(r["ratios"]["ckpt_over_no_ckpt"])
    assert len(log.read_text().splitlines()) == 4  # each row written as it comes (a cut call keeps what it measured)


def test_command_line(capsys):
    assert bench_main(["train-f1", "--json", "--device", "cpu", "--width", "32", "--height", "32", "--variants", "bf16_ckpt"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"] == "tiny" and out["layers"] == [1, 1] and out["ratios"]["direct_over_teacher"] > 0
    assert bench_main(["train-f1", "--device", "cpu", "--variants", "int4"]) == 2
    with pytest.raises(ValueError, match="multiples of 16"):
        bench_train_f1("tiny", width=30, height=32, device="cpu")
