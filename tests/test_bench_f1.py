"""``python -m bench f1`` runs on a CPU at reduced depth and size:
the same code as on the GPU, so CI covers the path; the figures are only checked for shape here."""
import json

from bench.f1 import bench_f1
from bench.__main__ import main as bench_main


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
    rc = bench_main(["f1", "--json", "--device", "cpu", "--config", "tiny", "--layers", "1", "1", "--width", "32",
               "--height", "32", "--steps", "1", "--variants", "bf16", "--log", str(log)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layers"] == [1, 1] and out["variants"][0]["variant"] == "bf16"
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) >= 3 and lines[-1]["variants"][0]["ours_on"]["segment_s"] > 0  # partial results as they come
    assert bench_main(["f1", "--device", "cpu", "--config", "tiny", "--width", "30", "--variants", "bf16"]) == 2


# --- bench f1 --suite: every speed option in one call -----------------------------------------
import math  # noqa: E402

import pytest  # noqa: E402

from bench.suite import RESULT_FILE, bench_f1_suite  # noqa: E402


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    r = bench_f1_suite("tiny", width=32, height=32, steps=2, device="cpu", thresholds=(0.1, 5.0, 0.0), error_bound=1.0,
                       out_dir=str(out))
    return r, out


def test_suite_measures_every_row_group_or_says_why_not(suite):
    r, out = suite
    by = {row["name"]: row for row in r["rows"]}
    assert json.loads((out / RESULT_FILE).read_text()) == json.loads(json.dumps(r))  # the file holds what was returned
    measured = ["diffusers", "bf16", "bf16 + cache 0.1", "bf16 + cache 5", "bf16 + cache 0", "bf16 + attention native",
                "bf16 + memory on", "bf16 + compile (first segment)", "bf16 + compile", "bf16 + compile + cache", "fp8 storage"]
    for name in measured:
        row = by[name]
        assert "skipped" not in row and "failed" not in row, row
        assert row["segment_s"] > 0 and math.isfinite(row["over_diffusers"]) and row["over_diffusers"] > 0, row
        assert row["s_per_frame"] == round(row["segment_s"] / 36, 4)
    for name in measured[1:]:
        assert math.isfinite(by[name]["err_to_bf16"]) and by[name].get("finite", True)
    # skipped rows name what is missing (CI has no GPU; flash / sage need their packages there too)
    for backend in ("flash", "sage", "cudnn"):
        assert "needs a CUDA GPU" in by[f"bf16 + attention {backend}"]["skipped"]
    for name in ("fp8", "fp8 + cache", "fp8 + compile (first segment)", "fp8 + compile", "fp8 + compile + cache"):
        assert "fp8 compute needs a CUDA GPU with fp8 tensor cores" in by[name]["skipped"]
    assert "group offload needs a CUDA device" in by["fp8 storage + offload"]["skipped"]
    assert not r["stopped_early"] and r["fastest_attention"] == "native"


def test_suite_errors_are_measured_against_the_bf16_uncached_video(suite):
    by = {row["name"]: row for row in suite[0]["rows"]}
    assert by["bf16"]["err_to_bf16"] == 0.0
    assert by["bf16 + cache 0"]["err_to_bf16"] == 0.0  # threshold 0 never skips: the same video
    assert by["bf16 + compile"]["err_to_bf16"] == 0.0  # eager-backend compile on the CPU: the same arithmetic
    assert by["bf16 + cache 5"]["err_to_bf16"] > 0  # every step after the first reuses the cache: a different video
    assert by["bf16 + compile (first segment)"]["compile_s"] == pytest.approx(
        by["bf16 + compile (first segment)"]["segment_s"] - by["bf16 + compile"]["segment_s"], abs=0.011)
    psi = by["bf16 + attention native"]["psi_check"]
    assert psi["finite"] and psi["rel_diff_to_native"] == 0.0 and psi["steps"] == 2
    assert math.isfinite(by["bf16 + memory on"]["on_over_off"])
    assert by["fp8 storage"]["err_to_bf16"] > 0  # fp8 weights: not the float32 video


def test_suite_recommends_the_fastest_threshold_within_the_bound(suite):
    r = suite[0]
    rec = r["recommended_step_cache"]
    curve = [row for row in r["rows"] if row["name"] == "bf16" or row["name"].startswith("bf16 + cache")]
    within = [row for row in curve if row["err_to_bf16"] <= rec["error_bound"]]
    assert rec["s_per_frame"] == min(row["s_per_frame"] for row in within)
    assert rec["threshold"] in (0.0, 0.1, 5.0) and rec["err_to_bf16"] <= 1.0
    assert r["rows"][[x["name"] for x in r["rows"]].index("bf16 + compile + cache")]["step_cache"] == rec["threshold"]


def test_suite_stops_at_its_time_budget_and_keeps_what_it_measured(tmp_path):
    r = bench_f1_suite("tiny", width=32, height=32, steps=1, device="cpu", groups=("diffusers", "cache", "fp8"),
                       thresholds=(0.1,), budget_s=0, out_dir=str(tmp_path))
    by = {row["name"]: row for row in r["rows"]}
    assert by["bf16"]["segment_s"] > 0  # the reference always runs
    assert "time budget" in by["diffusers"]["skipped"] and "time budget" in by["bf16 + cache 0.1"]["skipped"]
    assert "fp8 compute needs" in by["fp8"]["skipped"]  # a missing device is said before the budget
    assert r["stopped_early"] and r["recommended_step_cache"]["threshold"] == 0.0  # only the uncached point: cache off
    assert json.loads((tmp_path / RESULT_FILE).read_text())["rows"][-1]["name"] == r["rows"][-1]["name"]
    assert {row["name"] for row in r["rows"]} == {"diffusers", "bf16", "bf16 + cache 0.1", "fp8", "fp8 + cache",
                                                  "fp8 + compile (first segment)", "fp8 + compile", "fp8 + compile + cache"}


def test_suite_command_line_prints_a_table_and_refuses_bad_input(capsys, tmp_path):
    rc = bench_main(["f1", "--suite", "--device", "cpu", "--config", "tiny", "--width", "32", "--height", "32",
               "--steps", "1", "--groups", "cache", "--thresholds", "0.2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "bf16 + cache 0.2" in out and "recommended step cache" in out
    assert json.loads((tmp_path / RESULT_FILE).read_text())["groups"] == ["cache"]
    assert bench_main(["f1", "--suite", "--device", "cpu", "--config", "tiny", "--groups", "everything"]) == 2
    assert "unknown row groups" in capsys.readouterr().err
    assert bench_main(["f1", "--suite", "--device", "cpu", "--config", "tiny", "--thresholds", "0.1,x"]) == 2


def test_suite_without_the_cache_group_says_why_the_cached_combinations_are_missing():
    r = bench_f1_suite("tiny", width=32, height=32, steps=1, device="cpu", groups=("compile",))
    by = {row["name"]: row for row in r["rows"]}
    assert set(by) == {"bf16", "bf16 + compile (first segment)", "bf16 + compile", "bf16 + compile + cache"}
    assert "no recommended step cache threshold" in by["bf16 + compile + cache"]["skipped"]
    assert by["bf16 + compile"]["err_to_bf16"] == 0.0 and "recommended_step_cache" not in r


def test_suite_names_the_f1_workflow_default_from_its_rows(suite):
    """The suite's own recommendation is the fastest row within the bound, as Load Packed DiT widgets."""
    from bench.settings import WORKFLOW_SETTINGS

    r = suite[0]
    rec = r["recommended_settings"]
    assert set(rec["widgets"]) == set(WORKFLOW_SETTINGS)
    assert rec["row"] in r["rows"] and rec["row"]["err_to_bf16"] <= 1.0 and "failed" not in rec["row"]
    eligible = [x for x in r["rows"] if "s_per_frame" in x and "failed" not in x and x.get("memory", "off") == "off"
                and "first segment" not in x["name"] and x["name"] != "diffusers" and x.get("err_to_bf16", 9) <= 1.0]
    assert rec["fastest"]["row"]["s_per_frame"] == min(x["s_per_frame"] for x in eligible)
    portable = [x for x in eligible if x.get("attention", "native") == "native" and not x.get("compile", "off").startswith("blocks")]
    assert rec["row"]["s_per_frame"] == min(x["s_per_frame"] for x in portable)
    from pfvg_core.backbone import ATTENTION_BACKENDS, OFFLOAD, STORAGE
    from pfvg_core.speed import COMPILE_MODES, COMPUTE_MODES

    for w in (rec["widgets"], rec["fastest"]["widgets"]):  # the suite's own row values become accepted widget values
        assert w["compute"] in COMPUTE_MODES and w["attention"] in ATTENTION_BACKENDS and w["compile"] in COMPILE_MODES
        assert w["storage"] in STORAGE and w["offload"] in OFFLOAD
