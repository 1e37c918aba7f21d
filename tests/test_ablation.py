import torch

from pfvg_core.tools.ablation import COLUMNS, REFERENCES, VARIANTS, _from_pretrained, _slug, markdown, run_ablation
from pfvg_core.codec import PatchCodec
from pfvg_core.model import PFVGModel
from pfvg_core.train import read_log


def test_ablation_trains_and_scores_every_variant_with_the_same_budget(tmp_path):
    codec = PatchCodec(4, 8)
    logs, per_video = [], {}
    table = run_ablation(str(tmp_path), codec, dit="tiny", train_videos=2, seconds=2.0, base=2, stage1=1, stage2=1,
                         eval_seeds=(20_000, 20_001), eval_seconds=2.0, window=4, steps=1, log=logs.append, per_video=per_video)
    assert list(table) == list(VARIANTS) + REFERENCES
    truth = table["(reference) true video"]
    assert truth["mean_mse_to_truth"] == 0 and truth["delta_drift_mse_to_truth"] == 0
    assert table["(reference) first frame repeated"]["consistency_first"] == 1.0
    for row in table.values():
        assert set(row) == set(COLUMNS)
        assert 0 <= row["consistency_neighbour"] <= 1 and row["mean_mse_to_truth"] >= 0
    # the same budget each: one shared pretraining, stage 1 per memory mode, stage 2 per variant
    assert len(read_log(str(tmp_path / "base"))) == 2
    for memory in ("off", "on", "zero"):
        assert len(read_log(str(tmp_path / f"stage1_memory_{memory}"))) == 1
    for name in VARIANTS:
        assert table[name]["mean_mse_to_truth"] > 0
    stage2 = {name: [r["stage"] for r in read_log(str(tmp_path / _slug(name)))] for name in VARIANTS}
    assert all(s == ["stage2"] for s in stage2.values()), stage2
    for name, rows in per_video.items():  # the table is the mean over the evaluation videos
        assert [r["seed"] for r in rows] == [20_000, 20_001]
        assert abs(table[name]["mean_mse_to_truth"] - sum(r["mean_mse_to_truth"] for r in rows) / 2) < 1e-9
    md = markdown(table)
    assert md.count("\n") == 2 + len(table) and "F1 w/ CT" in md and "±" not in md
    known = sum(v is not None for row in table.values() for v in row.values())  # revisits need a longer video
    assert known >= len(VARIANTS) and markdown(table, per_video).count("±") == known


def test_variants_start_from_the_pretrained_backbone_with_a_fresh_semanticpack():
    pretrained = PFVGModel.build("tiny", semanticpack=False, seed=3)
    with torch.no_grad():
        for p in pretrained.dit.parameters():
            p.add_(0.01)  # stands in for pretraining
    model = _from_pretrained(pretrained, "tiny", semanticpack=True, seed=3)
    for (k, a), (_, b) in zip(pretrained.dit.state_dict().items(), model.dit.state_dict().items()):
        assert torch.equal(a, b), k
    assert model.semanticpack is not None and not model.semanticpack.gate_open
    assert _from_pretrained(pretrained, "tiny", semanticpack=False, seed=3).semanticpack is None
