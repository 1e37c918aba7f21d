"""No non-finite number in what the pack ships or sends to the page: the workflows are strict JSON, and what the
nodes send to the UI (reports, progress events) carries null or a text where a number is not finite."""
import glob
import json
import math
import os
import sys

import numpy as np
import pytest
import torch

from nodes import comfy_io
from pfvg_core import metrics
from pfvg_core.validate import format_metric, json_safe, strict_json
from test_node_safety import server  # noqa: F401  (fixture)
from test_nodes import N, comfy_env  # noqa: F401  (fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
WF = os.path.join(os.path.dirname(HERE), "example_workflows")
sys.path.insert(0, WF)

import make_workflows as mw  # noqa: E402


def _strict(text):
    def refuse(constant):
        raise ValueError(f"non-finite number {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_strict_parse_refuses_nan_and_infinity():
    for bad in ('{"a": NaN}', '[Infinity]', '[-Infinity]'):
        with pytest.raises(ValueError, match="non-finite number"):
            _strict(bad)
    assert _strict('{"a": 1.5, "b": null}') == {"a": 1.5, "b": None}


@pytest.mark.parametrize("name", sorted(mw.WORKFLOWS))
def test_every_workflow_is_strict_json(name):
    g = mw.WORKFLOWS[name]()
    for data in (g.ui(), g.api()):
        _strict(json.dumps(data))
    with open(mw.ui_path(name), encoding="utf-8") as f:
        _strict(f.read())
    with open(os.path.join(WF, "api", f"{name}.json"), encoding="utf-8") as f:
        _strict(f.read())


def test_every_json_file_shipped_in_workflows_is_strict():
    files = glob.glob(os.path.join(WF, "**", "*.json"), recursive=True)
    assert len(files) >= 2 * len(mw.WORKFLOWS)
    for path in files:
        with open(path, encoding="utf-8") as f:
            _strict(f.read())


def test_json_safe_replaces_every_non_finite_number_by_null():
    data = {"a": math.nan, "b": [1.0, math.inf, -math.inf], "c": (np.float32("nan"), np.float64(2.5)),
            "d": torch.tensor(float("nan")), "e": np.array([1.0, np.nan]), "f": {"g": True, "h": 3, "i": "nan"}}
    safe = json_safe(data)
    assert safe == {"a": None, "b": [1.0, None, None], "c": [None, 2.5], "d": None, "e": [1.0, None],
                    "f": {"g": True, "h": 3, "i": "nan"}}
    assert _strict(strict_json(data)) == safe
    assert format_metric("drift", math.nan) == "drift: not finite" and format_metric("drift", 0.123456) == "drift: 0.12346"


def test_evaluate_drift_reports_a_non_finite_metric_as_text(comfy_env, monkeypatch):
    real = metrics.evaluate

    def broken(*a, **k):  # a metric that came out NaN / inf (e.g. a constant video)
        res = real(*a, **k)
        res.update(delta_drift_sharpness=math.nan, consistency_first=math.inf)
        return res

    monkeypatch.setattr(metrics, "evaluate", broken)
    out = N["PFVGEvaluateDrift"]().evaluate(torch.rand(8, 32, 32, 3, generator=torch.Generator().manual_seed(0)), 8.0)
    _strict(json.dumps(out["ui"]))
    report = out["ui"]["text"][0]
    assert "delta_drift_sharpness: not finite" in report and "consistency_first: not finite" in report
    assert "nan" not in report.lower().replace("not finite", "") and "inf" not in report.replace("not finite", "")


def test_progress_events_carry_null_for_a_non_finite_loss(comfy_env, server):
    p = comfy_io.Progress(2, "7")
    p.event({"train_step": 1, "loss": math.nan})
    p.event({"train_step": 2, "loss": torch.tensor(0.25)})
    sent = [d for e, d, _ in server.sent if e == "pfvg.progress"]
    assert [d["loss"] for d in sent] == [None, 0.25]
    for d in sent:
        _strict(json.dumps(d))
