"""isplit.evaluation: intervals over images and seeds, predictors against retrained splits, and
no choice ever made on test data."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from isplit.evaluation import quality
from isplit.evaluation.gather import Run, gather
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


def job(layer: str, seeds, acc_val, acc_test, rng, size=1000, shape=(16, 4, 4)):
    """A retraining job's files (one split, every seed), as ``gather`` reads them."""
    runs = [
        {
            "seed": s,
            "train_seconds": 1.0,
            "test": {"per_class": {"a": acc_test, "b": acc_test}, "macro_f1": acc_test},
            "val": {"per_class": {"a": acc_val, "b": acc_val}},
        }
        for s in seeds
    ]
    m = {
        "layer": layer,
        "seeds": list(seeds),
        "runs": runs,
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
    preds = pd.concat(
        [predictions(acc_val, acc_test, rng).assign(seed=s) for s in seeds], ignore_index=True
    )
    return Run(Path(f"{layer}/metrics.json"), m, preds)


def finetuned(rng):
    return {"classes": CLASSES}, predictions(0.9, 0.9, rng)


def test_every_choice_is_made_on_validation_not_test():
    """l1 is best on validation, l2 on test: every chooser must pick l1 and report test."""
    rng = np.random.default_rng(2)
    accs = {"l0": (0.60, 0.60), "l1": (0.90, 0.70), "l2": (0.70, 0.92)}
    runs = [job(layer, (0, 1), v, t, rng) for layer, (v, t) in accs.items()]
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
    runs = [job(f"l{i}", (0,), a, a, rng, size=int(s)) for i, (s, a) in pairs]
    log_cui = -np.log10(sizes) + 0.001 * rng.normal(size=len(sizes))  # CUI = 1 / size
    cand = candidates(len(sizes), log_cui, sizes)
    g = gather(cand, runs, *finetuned(rng), n_boot=200)
    q = quality.quality(g, "top1", n_boot=200)
    assert q["predictors"]["cui_mean"]["rho"]["value"] > 0.8
    assert q["predictors"]["size"]["rho"]["value"] > 0.8
    assert q["cui_adds_to_size"] is False
    assert q["within_size_cui"]["pairs"] == 4


def test_run_writes_tables_and_summary(tmp_path):
    rng = np.random.default_rng(4)
    accs = [(0.6, 0.61), (0.8, 0.78), (0.7, 0.72)]
    cand = candidates(3, [-3.0, -2.0, -2.5], [4000, 2000, 1000])
    cand.assign(class_best=[json.dumps(c) for c in cand["class_best"]]).to_csv(
        tmp_path / "c.tsv", sep="\t", index=False
    )
    paths = []
    for i, (v, t) in enumerate(accs):
        r = job(f"l{i}", (0, 1), v, t, rng)
        d = tmp_path / f"l{i}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps(r.metrics))
        r.predictions.to_parquet(d / "predictions.parquet")
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
        outcomes_out=tmp_path / "o.parquet",
    )
    outcomes = pd.read_parquet(tmp_path / "o.parquet")
    # every split's two seeds and the fine-tuned model, on the N validation images each
    assert outcomes.groupby(["layer", "seed"]).size().to_dict() == {
        **{(f"l{i}", s): N for i in range(3) for s in (0, 1)},
        ("finetuned", 0): N,
    }
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
    # three splits leave nothing for the partial statistic: the criterion cannot hold, and
    # the verdict the summary states is the one quality.json computed
    assert q["partial_cui_given_size_depth"]["value"] is None and not q["cui_adds_to_size"]
    assert "it **does not hold** here" in md and "it **holds** here" not in md


def test_unknown_split_is_refused():
    rng = np.random.default_rng(5)
    cand = candidates(2, [-2.0, -1.0], [2000, 1000])
    with pytest.raises(ValueError, match="not among the candidates"):
        gather(cand, [job("l7", (0,), 0.5, 0.5, rng)], *finetuned(rng), n_boot=10)


def test_a_missing_seed_is_an_error_naming_the_job():
    """Seeds are aligned by number: a split whose job lacks a configured seed stops the
    gathering with the job's file and the seeds it holds."""
    rng = np.random.default_rng(6)
    cand = candidates(2, [-2.0, -1.0], [2000, 1000])
    runs = [job("l0", (0, 1, 2), 0.6, 0.6, rng), job("l1", (0, 2), 0.7, 0.7, rng)]
    with pytest.raises(ValueError, match=r"l1/metrics.json: .* holds seeds \[0, 2\].*\[0, 1, 2\]"):
        gather(cand, runs, *finetuned(rng), seeds=[0, 1, 2], n_boot=10)
    # the same seeds in another order are the same experiment
    g = gather(cand, runs[:1] + [job("l1", (2, 1, 0), 0.7, 0.7, rng)], *finetuned(rng), n_boot=10)
    assert g.seeds == [0, 1, 2] and g.splits["n_seeds"].tolist() == [3, 3]


def test_quality_reports_methods_paired_differences_and_whole_procedure_regret():
    """quality.json names each interval's method, gives paired differences of CUI with depth,
    size and the best other predictor (chosen on validation), and regret intervals that are
    not [0, 0] when a predictor happens to pick the validation winner."""
    rng = np.random.default_rng(7)
    n = 8
    sizes = [8000, 4000, 4000, 2000, 2000, 1000, 1000, 500]
    accs = [0.6, 0.63, 0.66, 0.7, 0.72, 0.75, 0.795, 0.8]  # l6 and l7 nearly tied
    runs = [
        job(f"l{i}", (0, 1), a, a, rng, size=s)
        for i, (a, s) in enumerate(zip(accs, sizes, strict=True))
    ]
    cand = candidates(n, np.linspace(-4, -2, n), sizes)  # CUI rises with depth: picks l7
    g = gather(cand, runs, *finetuned(rng), n_boot=100)
    q = quality.quality(g, "top1", n_boot=300)
    assert q["methods"]["rho"].startswith("test inversion")
    assert q["predictors"]["cui_mean"]["rho"]["method"] == "inversion"
    assert set(q["paired"]) >= {"cui_mean_minus_depth", "cui_mean_minus_size"}
    regret = q["predictors"]["cui_mean"]["regret"]
    assert q["predictors"]["cui_mean"]["choice"] == "l7"
    # the validation winner is uncertain between the late splits: the interval is not [0, 0]
    assert regret["ci"][0] < regret["ci"][1] and 0 < q["measured_best"]["chosen_share"] < 1
    assert len(q["tables"]["test_accuracy"]) == n


def test_probe_outcomes_on_other_images_are_not_rescored():
    """Validation-scored predictors are rescored per replicate only when they saw the splits'
    validation images; on other images their value stays fixed (no error)."""
    import pandas as pd

    from isplit.evaluation import predictors

    ids = pd.Index(["v0", "v1", "v2"])
    same = pd.DataFrame({"layer": "l0", "predictor": "knn", "sample_id": ["v2", "v0", "v1"],
                         "label": [1, 0, 1], "pred": [1, 1, 1]})  # fmt: skip
    out = predictors.outcomes(same, ["l0", "l1"], ids, 2)
    assert out["knn"].correct[0, 0].tolist() == [0.0, 1.0, 1.0]  # in the splits' order
    assert np.isnan(out["knn"].correct[1]).all()  # no outcomes for l1: fixed value
    other = same.assign(sample_id=["v0", "v1", "v9"])
    assert predictors.outcomes(other, ["l0"], ids, 2) == {}


def test_cui_in_depth_order_is_undefined_beyond_depth_and_says_so():
    """CUI ranking the splits exactly as depth leaves nothing beyond size and depth: the
    statistics are undefined, with a note, not a number."""
    rng = np.random.default_rng(6)
    sizes = np.array([8000, 4000, 4000, 2000, 2000, 1000, 1000, 500])
    runs = [job(f"l{i}", (0,), 0.7, 0.7, rng, size=int(s)) for i, s in enumerate(sizes)]
    cand = candidates(len(sizes), np.arange(len(sizes), dtype=float), sizes)
    g = gather(cand, runs, *finetuned(rng), n_boot=100)
    q = quality.quality(g, "top1", n_boot=100)
    for key in ("within_size_cui", "partial_cui_given_size_depth"):
        assert q[key]["value"] is None and q[key]["note"].startswith("undefined"), key
    assert q["cui_adds_to_size"] is False
    assert q["predictors"]["cui_mean"]["rho"]["value"] is not None
