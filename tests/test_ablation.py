import torch

from pfvg_core.ablation import COLUMNS, VARIANTS, markdown, run_ablation
from pfvg_core.codec import PatchCodec


def test_ablation_trains_and_scores_every_variant_with_the_same_budget(tmp_path):
    codec = PatchCodec(4, 8)
    logs = []
    table = run_ablation(str(tmp_path), codec, dit="tiny", train_videos=2, seconds=2.0, stage1=1, stage2=1,
                         eval_seeds=(20_000,), eval_seconds=2.0, window=4, steps=1, log=logs.append)
    assert list(table) == list(VARIANTS)
    for row in table.values():
        assert set(row) == set(COLUMNS)
        assert 0 <= row["consistency_neighbour"] <= 1 and row["mean_mse_to_truth"] > 0
    from pfvg_core.train import read_log

    from pfvg_core.ablation import _slug

    budgets = {name: len(read_log(str(tmp_path / _slug(name)))) for name in VARIANTS}
    assert set(budgets.values()) == {2}, budgets  # the same number of optimizer steps (videos) each
    md = markdown(table)
    assert md.count("\n") == 2 + len(VARIANTS) and "F1 w/ CT" in md
