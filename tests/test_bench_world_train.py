"""``python -m bench world-train``: the embedded recipe's training step on a CPU (code path at smoke size)."""
import json
import math

from bench.__main__ import main as bench_main


def test_world_train_quick_measures_both_attention_forms(capsys):
    assert bench_main(["world-train", "--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in out["rows"]}
    assert set(rows) == {"reference", "gate in head channels"} and rows["reference"]["additive_mask"] is True
    # timings are the benchmark's business: here that each row ran and its ratio is measured against the reference
    assert rows["reference"]["ratio_to_reference"] == 1.0
    assert all(math.isfinite(r["clip_samples_per_s"]) and r["clip_samples_per_s"] > 0 and "error" not in r for r in rows.values())
