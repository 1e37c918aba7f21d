"""bench.gate_cost: the gated attention path timed against the plain one, with the computed work ratios."""
import pytest

from bench.gate_cost import main, measure


def test_gate_cost_measures_both_paths_and_computes_the_work_ratios(capsys):
    r = measure(tokens=64, heads=2, head_dim=128, psi_tokens=8, repeats=1)
    assert r["plain_s"] > 0 and r["gated_s"] > 0 and r["gated_over_plain"] == pytest.approx(r["gated_s"] / r["plain_s"])
    assert r["gate_channels"] == 8 and r["work_ratio_exact_head"] == pytest.approx(136 / 128)
    assert r["work_ratio_head_rounded_to_32"] == pytest.approx(160 / 128)
    assert main(["--tokens", "32", "--repeats", "1"]) == 0
    assert "gated ÷ plain" in capsys.readouterr().out
