"""isplit.evaluation: intervals over images and seeds, predictors against retrained splits, and
no choice ever made on test data."""

import json

import numpy as np
import pandas as pd
import pytest

from isplit.evaluation import quality, stats
from isplit.evaluation.gather import gather
from isplit.evaluation.metrics import classification_metrics
from isplit.report import summary

CLASSES = ["a", "b"]
N = 200  # images per split (val and test)


def candidates(n_points: int, log10_cui, sizes) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "layer": [f"l{i}" for i in range(n_points)],
            "layer_index": range(n_points),
            "label": [f"L{i}" for i in range(n_points)],
            "cui": 10.0 ** np.asarray(log10_cui, float),
            "log10_cui": np.asarray(log10_cui, float),
            "bytes": sizes,
            "reasons": "",
            "isplit_best": [bool(i == int(np.argmax(log10_cui))) for i in range(n_points)],
            "class_best": [[] for _ in range(n_points)],
        }
    )


def predictions(acc_val: float, acc_test: float, rng, labels=None) -> pd.DataFrame:
    """A job's predictions with the given accuracies on shared images (ids v0…, t0…)."""
    rows = []
    for split, acc in (("val", acc_val), ("test", acc_test)):
        y = labels if labels is not None else np.arange(N) % 2
        right = rng.random(N) < acc
        pred = np.where(right, y, 1 - y)
        for i in range(N):
            rows.append((split, i, f"{split[0]}{i}", int(y[i]), int(pred[i])))
    return pd.DataFrame(rows, columns=["split", "position", "sample_id", "label", "pred"])


def job(layer: str, seed: int, acc_val, acc_test, rng, size=1000, shape=(16, 4, 4)):
    m = {
        "layer": layer,
        "seed": seed,
        "test": {"per_class": {"a": acc_test, "b": acc_test}, "macro_f1": acc_test},
        "val": {"per_class": {"a": acc_val, "b": acc_val}},
        "bytes": size // 16,
        "activation_bytes": size,
        "activation_shape": list(shape),
        "head_flops": 10 + int(layer[1:]),
        "encoder_flops": 1,
        "decoder_flops": 1,
        "tail_flops": 100 - int(layer[1:]),
        "head_params": 1,
        "tail_params": 1,
        "encoder_params": 1,
        "decoder_params": 1,
    }
    return m, predictions(acc_val, acc_test, rng)


def finetuned(rng):
    return {"classes": CLASSES}, predictions(0.9, 0.9, rng)


def test_interval_is_honest_about_images_and_seeds():
    rng = np.random.default_rng(0)
    correct = (rng.random((1, 3, 400)) < 0.8).astype(float)
    c = stats.Correctness(correct, np.arange(400) % 2, 2)
    boot = stats.bootstrap(c, stats.accuracy, n=500)
    lo, hi = stats.interval(boot[:, 0])
    mean = stats.accuracy(c)[0]
    assert lo < mean < hi
    # images alone (means of 3 seeds, n = 400) give a width of ~0.045; resampling the seeds too
    # adds their spread: wider, but of the same order
    assert 0.04 < hi - lo < 0.1
    # balanced accuracy is the mean of the per-class recalls
    y = np.array([0] * 90 + [1] * 10)
    p = np.array([0] * 90 + [0] * 5 + [1] * 5)
    m = classification_metrics(y, p, 2)
    assert m["top1"] == pytest.approx(0.95) and m["balanced_accuracy"] == pytest.approx(0.75)
    c2 = stats.Correctness((p == y).astype(float)[None, None, :], y, 2)
    assert stats.balanced_accuracy(c2)[0] == pytest.approx(0.75)


def test_rank_statistics():
    assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert np.isnan(stats.spearman([1, 2, 3], [5, 5, 5]))
    rng = np.random.default_rng(1)
    n = 300
    size = rng.normal(size=n)
    depth = rng.normal(size=n)
    acc = -size + 0.3 * rng.normal(size=n)
    x = -size + 0.3 * rng.normal(size=n)  # a predictor that only knows the size
    assert stats.spearman(x, acc) > 0.85
    assert abs(stats.partial_spearman(x, acc, [-size, depth])) < 0.2
    y = x + 0.5 * rng.normal(size=n)
    z = y + 0.01 * rng.normal(size=n)  # knows what y knows beyond the size
    assert stats.partial_spearman(z, y, [-size, depth]) > 0.9
    groups = np.array([0, 0, 0, 1, 1])
    assert stats.kendall_within_groups([1, 2, 3, 5, 4], [1, 2, 3, 0, 1], groups) == pytest.approx(
        (3 - 1) / 4
    )
    assert stats.group_pairs(groups) == 4


def test_every_choice_is_made_on_validation_not_test():
    """l1 is best on validation, l2 on test: every chooser must pick l1 and report test."""
    rng = np.random.default_rng(2)
    accs = {"l0": (0.60, 0.60), "l1": (0.90, 0.70), "l2": (0.70, 0.92)}
    runs = [job(layer, s, v, t, rng) for layer, (v, t) in accs.items() for s in (0, 1)]
    cand = candidates(3, [-3.0, -2.0, -1.0], [4000, 2000, 1000])
    g = gather(cand, runs, *finetuned(rng), n_boot=200)
    q = quality.quality(g, "top1", n_boot=200)
    assert q["measured_best"]["layer"] == "l1"
    assert q["measured_best"]["test"]["value"] == pytest.approx(g.splits["top1"][1])
    # CUI's argmax is l2, the test winner: its regret against the val choice is negative
    assert q["predictors"]["cui_mean"]["choice"] == "l2"
    assert q["predictors"]["cui_mean"]["regret"]["value"] < 0
    assert q["selection"].startswith("validation")
    # per class: the own best is chosen on validation too
    for e in q["per_class"]:
        assert e["measured"]["own_best"] == "l1" and e["measured"]["global_best"] == "l1"
    assert g.splits["n_seeds"].tolist() == [2, 2, 2]
    row = g.splits.iloc[1]
    assert row["top1_lo"] < row["top1"] < row["top1_hi"]
    assert row["val_top1"] == pytest.approx(0.9, abs=0.06)


def test_cui_that_is_only_size_does_not_pass_the_criterion():
    rng = np.random.default_rng(3)
    sizes = np.array([8000, 4000, 4000, 2000, 2000, 1000, 1000, 500, 500, 250])
    acc = 0.5 + 0.04 * np.log2(8000 / sizes)  # accuracy follows the size exactly
    pairs = enumerate(zip(sizes, acc, strict=True))
    runs = [job(f"l{i}", 0, a, a, rng, size=int(s)) for i, (s, a) in pairs]
    log_cui = -np.log10(sizes) + 0.001 * rng.normal(size=len(sizes))  # CUI = 1 / size
    cand = candidates(len(sizes), log_cui, sizes)
    g = gather(cand, runs, *finetuned(rng), n_boot=200)
    q = quality.quality(g, "top1", n_boot=200)
    assert q["predictors"]["cui_mean"]["spearman"]["value"] > 0.8
    assert q["predictors"]["size"]["spearman"]["value"] > 0.8
    assert q["cui_adds_to_size"] is False
    assert q["kendall_cui_within_equal_size"]["pairs"] == 4


def test_run_writes_tables_and_summary(tmp_path):
    rng = np.random.default_rng(4)
    accs = [(0.6, 0.61), (0.8, 0.78), (0.7, 0.72)]
    cand = candidates(3, [-3.0, -2.0, -2.5], [4000, 2000, 1000])
    cand.assign(class_best=[json.dumps(c) for c in cand["class_best"]]).to_csv(
        tmp_path / "c.tsv", sep="\t", index=False
    )
    paths = []
    for i, (v, t) in enumerate(accs):
        for s in (0, 1):
            m, p = job(f"l{i}", s, v, t, rng)
            d = tmp_path / f"l{i}" / f"seed{s}"
            d.mkdir(parents=True)
            (d / "metrics.json").write_text(json.dumps(m))
            p.to_parquet(d / "predictions.parquet")
            paths.append(d / "metrics.json")
    ft = tmp_path / "ft"
    ft.mkdir()
    meta, pred = finetuned(rng)
    (ft / "metrics.json").write_text(json.dumps({**meta, "model": "m", "dataset": "d"}))
    pred.to_parquet(ft / "predictions.parquet")
    q = quality.run(
        candidates_path=tmp_path / "c.tsv",
        metrics_paths=paths,
        finetune_metrics=ft / "metrics.json",
        metric="balanced_accuracy",
        n_boot=100,
        splits_out=tmp_path / "s.parquet",
        quality_out=tmp_path / "q.json",
    )
    assert json.loads((tmp_path / "q.json").read_text())["metric"] == "balanced_accuracy"
    splits = pd.read_parquet(tmp_path / "s.parquet")
    assert {"balanced_accuracy_lo", "val_top1_hi", "acc:a", "n_seeds"} <= set(splits.columns)
    assert q["measured_best"]["layer"] == "l1"
    summary.write_summary(
        exp="e",
        splits_path=tmp_path / "s.parquet",
        quality_path=tmp_path / "q.json",
        finetune_metrics=ft / "metrics.json",
        recommendation_path=None,
        out_path=tmp_path / "summary.md",
    )
    md = (tmp_path / "summary.md").read_text()
    assert "balanced accuracy" in md and "| CUI, channel mean (I-SPLIT) |" in md
    # the verdict the summary states is the one quality.json computed, and only that one
    holds = q["cui_adds_to_size"]
    assert ("it **holds** here" in md) == holds, md
    assert ("it **does not hold** here" in md) == (not holds), md


def test_unknown_split_is_refused():
    rng = np.random.default_rng(5)
    cand = candidates(2, [-2.0, -1.0], [2000, 1000])
    with pytest.raises(ValueError, match="not among the candidates"):
        gather(cand, [job("l7", 0, 0.5, 0.5, rng)], *finetuned(rng), n_boot=10)
