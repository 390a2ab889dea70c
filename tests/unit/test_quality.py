import json

import numpy as np
import pandas as pd
import pytest

from isplit.evaluation import quality
from isplit.report import summary

CLASSES = ["a", "b"]


def candidates():
    return pd.DataFrame(
        {
            "layer": ["l0", "l1", "l2", "l3"],
            "layer_index": [0, 1, 2, 3],
            "label": ["L0", "L1", "L2", "L3"],
            "cui": [1e-3, 1e-2, 1e-1, 5e-2],
            "log10_cui": np.log10([1e-3, 1e-2, 1e-1, 5e-2]),
            "bytes": [4000, 2000, 1000, 3000],
            "reasons": [
                "cde",
                "isplit-max;class-best:a",
                "isplit-max;isplit-best;class-best:b",
                "oracle",
            ],
            "isplit_best": [False, False, True, False],
            # a class named like a prefix of another must not match it
            "class_best": [["aa"], ["a"], ["b"], []],
        }
    )


def metrics(layer, top1, acc_a, acc_b, activation_bytes):
    return {
        "layer": layer,
        "test": {"top1": top1, "per_class": {"a": acc_a, "b": acc_b}},
        "val": {"top1": top1},
        "bytes": activation_bytes // 64,
        "bytes_float32": activation_bytes // 64,
        "activation_bytes": activation_bytes,
        "head_params": 10,
        "tail_params": 20,
    }


def test_quality_numbers(tmp_path):
    cand = candidates()
    ms = [
        metrics("l0", 0.50, 0.4, 0.6, 4000),
        metrics("l1", 0.70, 0.9, 0.5, 2000),
        metrics("l2", 0.80, 0.7, 0.9, 1000),
        metrics("l3", 0.75, 0.6, 0.9, 3000),
    ]
    splits = quality.gather(cand, ms)
    assert list(splits["layer"]) == ["l0", "l1", "l2", "l3"]
    assert splits["acc:a"].tolist() == [0.4, 0.9, 0.7, 0.6]
    q = quality.quality(splits, cand, CLASSES)
    # CUI order l0 < l1 < l3 < l2 is exactly the accuracy order: Spearman 1
    assert q["cui_vs_accuracy"]["spearman"] == pytest.approx(1.0)
    assert q["cui_vs_accuracy"]["n"] == 4
    # size ranks 4,2,1,3 vs accuracy ranks 1,2,4,3: rho = 1 - 6*18/(4*15) = -0.8
    assert q["cde_size_vs_accuracy"]["spearman"] == pytest.approx(-0.8)
    assert q["predicted_best"]["layer"] == "l2" and q["predicted_best"]["rank"] == 1
    assert q["predicted_best"]["accuracy_lost"] == pytest.approx(0.0)
    assert q["measured_best"]["layer"] == "l2"
    per = {e["class"]: e for e in q["per_class"]}
    assert per["a"]["own_best_layer"] == "l1"
    assert per["a"]["top1_at_own_best"] == 0.9 and per["a"]["top1_at_global_best"] == 0.7
    assert per["a"]["gain"] == pytest.approx(0.2)
    assert per["b"]["gain"] == pytest.approx(0.0)

    cand.assign(class_best=[json.dumps(c) for c in cand["class_best"]]).to_csv(
        tmp_path / "c.tsv", sep="\t", index=False
    )
    paths = []
    for m in ms:
        p = tmp_path / f"{m['layer']}.json"
        p.write_text(json.dumps(m))
        paths.append(p)
    ft = tmp_path / "ft.json"
    ft.write_text(
        json.dumps({"model": "m", "dataset": "d", "classes": CLASSES, "test": {"top1": 0.9}})
    )
    q2 = quality.run(
        candidates_path=tmp_path / "c.tsv",
        metrics_paths=paths,
        finetune_metrics=ft,
        splits_out=tmp_path / "s.parquet",
        quality_out=tmp_path / "q.json",
    )
    assert q2["finetuned_top1"] == 0.9
    assert json.loads((tmp_path / "q.json").read_text())["predicted_best"]["layer"] == "l2"
    summary.write_summary(
        exp="e",
        splits_path=tmp_path / "s.parquet",
        quality_path=tmp_path / "q.json",
        finetune_metrics=ft,
        recommendation_path=None,
        out_path=tmp_path / "summary.md",
    )
    md = (tmp_path / "summary.md").read_text()
    assert "| CUI (I-SPLIT) | 1.000 |" in md and "`L2`" in md and "ranks 1 of 4" in md


def test_predicted_best_rank_and_loss():
    cand = candidates()
    ms = [
        metrics("l0", 0.9, 0.9, 0.9, 4000),
        metrics("l1", 0.7, 0.7, 0.7, 2000),
        metrics("l2", 0.6, 0.6, 0.6, 1000),
    ]
    splits = quality.gather(cand, ms)
    q = quality.quality(splits, cand, CLASSES)
    assert q["predicted_best"]["rank"] == 3 and q["predicted_best"]["of"] == 3
    assert q["predicted_best"]["accuracy_lost"] == pytest.approx(0.3)
    assert q["cui_vs_accuracy"]["spearman"] == pytest.approx(-1.0)


def test_unknown_split_and_degenerate_inputs():
    cand = candidates()
    with pytest.raises(ValueError, match="not among the candidates"):
        quality.gather(cand, [metrics("zz", 0.5, 0.5, 0.5, 100)])
    splits = quality.gather(
        cand, [metrics("l0", 0.5, 0.5, 0.5, 4000), metrics("l1", 0.5, 0.5, 0.5, 2000)]
    )
    q = quality.quality(splits, cand, CLASSES)
    assert q["cui_vs_accuracy"]["spearman"] is None  # two points, constant accuracy
    assert q["predicted_best"] is None  # l2 (the predicted best) was not evaluated
