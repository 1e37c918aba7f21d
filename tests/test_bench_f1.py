"""``python -m pfvg_core bench f1`` runs on a CPU at reduced depth and size (issue 12, deliverable 8):
the same code as on the GPU, so CI covers the path; the figures are only checked for shape here."""
import json

from pfvg_core.tools.bench_f1 import bench_f1
from pfvg_core.tools.cli import main


def test_bench_f1_on_cpu_reports_every_variant_beside_diffusers():
    r = bench_f1("tiny", width=64, height=64, steps=2, variants=("bf16", "fp8", "fp8_offload"), device="cpu")
    assert r["device"] == "cpu" and r["frames_per_segment"] == 36 and r["size"] == [64, 64]
    by = {v["variant"]: v for v in r["variants"]}
    assert "group offload needs a CUDA device" in by["fp8_offload"]["skipped"]
    for name in ("bf16", "fp8"):
        v = by[name]
        for k in ("diffusers", "ours_off", "ours_on"):
            assert v[k]["s_per_frame"] > 0 and v[k]["segment_s"] > 0
        assert v["off_over_diffusers"] > 0 and v["on_over_off"] > 0
    assert by["fp8"]["storage"] == "float8_e4m3fn" and by["bf16"]["storage"] == "float32"
    checks = r["load_checks"]  # a saved bundle loaded with each option samples like the float32 original
    assert checks["bf16"] == {"rel_diff_to_fp32_cpu": 0.0, "finite": True}
    assert checks["fp8"]["finite"] and 0 < checks["fp8"]["rel_diff_to_fp32_cpu"] < 0.1


def test_bench_f1_command_line_prints_json(capsys, tmp_path):
    log = tmp_path / "f1.jsonl"
    rc = main(["bench", "f1", "--json", "--device", "cpu", "--config", "tiny", "--layers", "1", "1", "--width", "32",
               "--height", "32", "--steps", "1", "--variants", "bf16", "--log", str(log)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layers"] == [1, 1] and out["variants"][0]["variant"] == "bf16"
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) >= 3 and lines[-1]["variants"][0]["ours_on"]["segment_s"] > 0  # partial results as they come
    assert main(["bench", "f1", "--device", "cpu", "--config", "tiny", "--width", "30", "--variants", "bf16"]) == 2
