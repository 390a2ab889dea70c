"""How well zero-retraining predictors foretell a split's accuracy, with intervals.

I-SPLIT's claim is that the CUI curve predicts the accuracy a split reaches after retraining.
A reviewer's first question is whether it predicts more than simpler quantities do, so CUI is
compared with the simplest baselines and with stronger zero-retraining predictors on the same
retrained splits (:mod:`isplit.evaluation.predictors`). Nothing here is ever chosen on test
data: the measured best split is the one best on validation, and so is every "best other".

For each predictor:

* ``rho``: how strongly it ranks the splits by test accuracy: the correlation of its ranks with
  the splits' accuracies, with an interval by test inversion whose coverage is measured
  (:mod:`isplit.evaluation.association`);
* ``regret`` of its argmax: the test accuracy lost against the measured best, with an interval
  that resamples the **whole procedure**: in every replicate the validation images, the test
  images and the seeds are redrawn together (:mod:`isplit.evaluation.resample`), the measured
  best is re-chosen on that replicate's validation set, the validation-scored predictors
  rescore on it, and the regret is recomputed on its test set (percentile interval).

Because CUI is close to the inverse of the activation size in ReLU networks, CUI's own
contribution is the **partial** statistic given size and depth, and the **within-size**
statistic (among splits of equal activation size, beyond a common depth trend). Paired
differences ρ(CUI) − ρ(depth), ρ(CUI) − ρ(size) and ρ(CUI) − ρ(best other predictor, chosen
on validation) compare predictors on the same splits and images. The criterion, fixed before
the study's runs (config/validate.yaml): CUI adds to size and depth if the partial and the
within-size statistics of CUI are both positive with intervals excluding 0.

Per class: is a class's own best split better for that class than the global best? Both as
measured (each chosen on validation) and as I-SPLIT predicts (the class's CUI maximum against
the global CUI maximum), as the test recall gained, with whole-procedure intervals.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from isplit.evaluation import association, predictors, resample
from isplit.evaluation.gather import Gathered, gather, read_runs
from isplit.evaluation.stats import interval_from
from isplit.io.files import write_json, write_table
from isplit.io.tables import read_candidates

CRITERION = (
    "CUI adds to activation size and depth if the partial statistic of CUI given size and "
    "depth and the within-size statistic are both positive with 95 % intervals excluding 0"
)
METHODS = {
    "accuracy": "percentile bootstrap: test images (within class) and seeds resampled",
    "rho": "test inversion with the bootstrap covariance of the split accuracies "
    "(isplit.evaluation.association; coverage checked by simulation)",
    "regret": "percentile bootstrap of the whole procedure: validation images, test images and "
    "seeds resampled together, the measured best re-chosen on each replicate's validation set",
}
#: the fine-tuned model's name in ``outcomes.parquet`` (LC and RC without a camera table)
FINETUNED = "finetuned"
#: CUI itself, and what "best other predictor" is chosen from
CUI = "cui_mean"
OTHERS = ("size", "depth", "probe", "knn", "logme", "code")


def _num(v):
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _summary(point: float, ci) -> dict:
    return {"value": _num(point), "ci": [_num(ci[0]), _num(ci[1])]}


def _pct(point: float, boot) -> dict:
    return _summary(point, interval_from(point, boot, "percentile"))


def _first_argmax(v: np.ndarray) -> int | None:
    ok = np.isfinite(v)
    return int(np.argmax(np.where(ok, v, -np.inf))) if ok.any() else None


def _row_argmax(v: np.ndarray) -> np.ndarray:
    return np.argmax(np.where(np.isfinite(v), v, -np.inf), axis=1)


class Study:
    """The data of one experiment's quality analysis, and the replicates every interval uses."""

    def __init__(self, g: Gathered, metric: str, *, probe=None, probe_outcomes=None,
                 n_boot: int = 2000, seed: int = 0):  # fmt: skip
        self.g, self.metric, self.seed = g, metric, seed
        val, test = g.outcomes["val"], g.outcomes["test"]
        self.draws = resample.draw(val.labels, test.labels, val.correct.shape[1], n_boot, seed)
        self.acc_val = resample.point(val, metric)
        self.acc_test = resample.point(test, metric)
        self.boot_val = resample.metric_rows(val, self.draws.val, self.draws.seeds, metric)
        self.boot_test = resample.metric_rows(test, self.draws.test, self.draws.seeds, metric)
        self.sigma = resample.noise_covariance(test, metric)
        self.best = int(np.argmax(self.acc_val))
        self.best_b = _row_argmax(self.boot_val)
        splits = g.splits
        self.sizes = splits["activation_bytes"].to_numpy(float)
        self.values = predictors.values(splits, probe, metric)
        self.depth = self.values["depth"]
        layers = list(splits["layer"])
        ids = pd.Index(g.val_ids or [])
        scored = predictors.outcomes(probe_outcomes, layers, ids, len(g.classes))
        self.boot_values = {}
        ones = np.ones((self.draws.n, 1))
        for name, c in scored.items():
            if name in self.values:
                rows = resample.metric_rows(c, self.draws.val, ones, metric)
                self.boot_values[name] = np.where(np.isfinite(rows), rows, self.values[name])

    # ------------------------------------------------------------------ association
    def association(self, x: np.ndarray, kind: str = "plain", minus: np.ndarray | None = None):
        """Statistic ``kind`` of predictor ``x`` (minus predictor ``minus``: a paired
        difference) against test accuracy, with its inverted interval; over the splits where
        the predictors are known."""
        ok = np.isfinite(x) if minus is None else np.isfinite(x) & np.isfinite(minus)
        if ok.sum() < 4:
            return {"value": None, "ci": [None, None], "n_points": int(ok.sum())}
        other = None if minus is None else minus[ok]
        a, m = association.setup(kind, x[ok], self.sizes[ok], self.depth[ok], other)
        if not np.all(np.isfinite(a)):
            return {
                "value": None,
                "ci": [None, None],
                "n_points": int(ok.sum()),
                "note": "undefined: the design (size, depth) explains the predictor's ranks",
            }
        acc, sigma = self.acc_test[ok], self.sigma[np.ix_(ok, ok)]
        value = association.measured(a, m, acc)
        ci = association.interval(a, m, acc, sigma, seed=self.seed)
        return {**_summary(value, ci), "n_points": int(ok.sum()), "method": "inversion"}

    def on_validation(self, x: np.ndarray) -> float:
        ok = np.isfinite(x)
        a, m = association.setup("plain", x[ok], self.sizes[ok], self.depth[ok])
        return association.measured(a, m, self.acc_val[ok])

    # ------------------------------------------------------------------ regret
    def regret(self, name: str) -> tuple[int | None, dict | None]:
        x = self.values[name]
        choice = _first_argmax(x)
        if choice is None:
            return None, None
        if name in self.boot_values:
            choice_b = _row_argmax(self.boot_values[name])
        else:
            choice_b = np.full(self.draws.n, choice)
        rows = np.arange(self.draws.n)
        boot = self.boot_test[rows, self.best_b] - self.boot_test[rows, choice_b]
        point = self.acc_test[self.best] - self.acc_test[choice]
        out = _pct(point, boot)
        out["chosen_on_validation"] = name in self.boot_values
        return choice, out

    def random_regret(self) -> dict:
        rows = np.arange(self.draws.n)
        boot = self.boot_test[rows, self.best_b] - self.boot_test.mean(axis=1)
        return _pct(self.acc_test[self.best] - self.acc_test.mean(), boot)


def quality(g: Gathered, metric: str, *, probe=None, probe_outcomes=None, n_boot: int = 2000,
            seed: int = 0) -> dict:  # fmt: skip
    """The ``quality.json`` document (see the module docstring)."""
    st = Study(g, metric, probe=probe, probe_outcomes=probe_outcomes, n_boot=n_boot, seed=seed)
    splits = g.splits
    layers, labels = list(splits["layer"]), list(splits["label"])
    out_predictors = {}
    for name, x in st.values.items():
        choice, regret = st.regret(name)
        out_predictors[name] = {
            "rho": st.association(x),
            "choice": None if choice is None else layers[choice],
            "choice_label": None if choice is None else labels[choice],
            "regret": regret,
        }
    out_predictors["random"] = {
        "rho": {"value": 0.0, "ci": None, "note": "0 in expectation"},
        "choice": None,
        "regret": st.random_regret(),
    }
    cui = st.values[CUI]
    partial = st.association(cui, "partial")
    within = {**st.association(cui, "within_size"), "pairs": association.size_pairs(st.sizes)}
    others = {k: st.on_validation(st.values[k]) for k in OTHERS if k in st.values}
    others = {k: v for k, v in others.items() if np.isfinite(v)}
    best_other = max(others, key=others.get) if others else None
    paired = {
        f"{CUI}_minus_{k}": st.association(cui, minus=st.values[k]) for k in ("depth", "size")
    }
    if best_other is not None:
        paired["cui_mean_minus_best_other"] = {
            **st.association(cui, minus=st.values[best_other]),
            "other": best_other,
            "chosen_by": "highest ρ with validation accuracy",
        }

    def positive(s):
        return s["ci"] is not None and s["ci"][0] is not None and s["ci"][0] > 0

    rows = np.arange(st.draws.n)
    return {
        "metric": metric,
        "selection": "validation (every choice); test reported",
        "methods": METHODS,
        "n_points": int(len(splits)),
        "n_seeds": [int(x) for x in splits["n_seeds"]],
        "seeds": [int(x) for x in g.seeds],
        "n_images": {"val": g.outcomes["val"].n_images, "test": g.outcomes["test"].n_images},
        "n_bootstrap": n_boot,
        "measured_best": {
            "layer": layers[st.best],
            "label": labels[st.best],
            "val": _num(st.acc_val[st.best]),
            "test": _pct(st.acc_test[st.best], st.boot_test[rows, st.best_b]),
            "chosen_share": float(np.mean(st.best_b == st.best)),
        },
        "predictors": out_predictors,
        "partial_cui_given_size_depth": partial,
        "within_size_cui": within,
        "paired": paired,
        "criterion": CRITERION,
        "cui_adds_to_size": bool(positive(partial) and positive(within)),
        "per_class": per_class(g, st),
        # what pooling across pairs recomputes the statistics from (scripts/study_results.py)
        "tables": {
            "layers": layers,
            "test_accuracy": [float(v) for v in st.acc_test],
            "noise_covariance": st.sigma.tolist(),
            "activation_bytes": [float(v) for v in st.sizes],
            "depth": [float(v) for v in st.depth],
            "predictors": {k: [_num(v) for v in x] for k, x in st.values.items()},
        },
        "finetuned": {
            s: _pct(
                resample.point(g.finetuned[s], metric)[0],
                resample.metric_rows(
                    g.finetuned[s],
                    st.draws.val if s == "val" else st.draws.test,
                    np.ones((st.draws.n, 1)),
                    metric,
                )[:, 0],
            )
            for s in ("val", "test")
        },
    }


def per_class(g: Gathered, st: Study) -> list[dict]:
    """For each class: its own best split against the global best, measured (both chosen on
    validation, re-chosen in every replicate) and predicted (its CUI maximum against the
    global CUI maximum), as the gain in test recall of that class, with an interval."""
    val, test, splits = g.outcomes["val"], g.outcomes["test"], g.splits
    layers = list(splits["layer"])
    global_pred = _first_argmax(splits["log10_cui"].to_numpy(float))
    rows = np.arange(st.draws.n)
    out = []
    for k, name in enumerate(g.classes):
        entry = {"class": name, "n_test": int((test.labels == k).sum())}
        if not (test.labels == k).any() or not (val.labels == k).any():
            out.append(entry)
            continue
        rv = resample.metric_rows(val, st.draws.val, st.draws.seeds, "recall", [k])
        rt = resample.metric_rows(test, st.draws.test, st.draws.seeds, "recall", [k])
        point_v = resample.point(val, "recall", [k])
        point_t = resample.point(test, "recall", [k])
        own, own_b = int(np.argmax(point_v)), _row_argmax(rv)
        gain = _pct(point_t[own] - point_t[st.best], rt[rows, own_b] - rt[rows, st.best_b])
        entry["measured"] = {
            "own_best": layers[own],
            "global_best": layers[st.best],
            "gain": gain,
            "beyond_ci": bool(gain["ci"][0] is not None and gain["ci"][0] > 0),
        }
        col = f"cui:{name}"
        if col in splits and global_pred is not None:
            pred_own = _first_argmax(splits[col].to_numpy(float))
            if pred_own is not None:
                gain = _pct(
                    point_t[pred_own] - point_t[global_pred], rt[:, pred_own] - rt[:, global_pred]
                )
                entry["predicted"] = {
                    "own_best": layers[pred_own],
                    "global_best": layers[global_pred],
                    "gain": gain,
                    "beyond_ci": bool(gain["ci"][0] is not None and gain["ci"][0] > 0),
                }
        out.append(entry)
    return out


def validation_outcomes(runs, finetune_predictions: pd.DataFrame) -> pd.DataFrame:
    """Every validation image's prediction by every split (per seed) and by the fine-tuned
    model (``layer`` = ``finetuned``, seed 0): what the recommendation's paired tie test
    compares options on (``outcomes.parquet``: layer, seed, sample_id, label, pred)."""
    cols = ["layer", "seed", "sample_id", "label", "pred"]
    parts = [
        r.predictions.loc[r.predictions["split"] == "val"].assign(layer=r.metrics["layer"])[cols]
        for r in runs
    ]
    ft = finetune_predictions[finetune_predictions["split"] == "val"]
    parts.append(ft.assign(layer=FINETUNED, seed=0)[cols])
    return pd.concat(parts, ignore_index=True)


def run(
    *,
    candidates_path: str | Path,
    metrics_paths: list[str | Path],
    finetune_metrics: str | Path,
    curve_path: str | Path | None = None,
    probe_path: str | Path | None = None,
    probe_outcomes_path: str | Path | None = None,
    seeds: list[int] | None = None,
    metric: str = "top1",
    n_boot: int = 2000,
    seed: int = 0,
    splits_out: str | Path,
    quality_out: str | Path,
    outcomes_out: str | Path | None = None,
) -> dict:
    """Retraining jobs' files → ``splits.parquet`` and ``quality.json``. The fine-tuned
    model's ``predictions.parquet`` sits beside its ``metrics.json``; ``curve_path`` adds each
    class's CUI (``cui:<class>`` columns) for the per-class prediction."""
    finetune_metrics = Path(finetune_metrics)
    ft = json.loads(finetune_metrics.read_text())
    ft_pred = pd.read_parquet(finetune_metrics.with_name("predictions.parquet"))
    g = gather(
        read_candidates(candidates_path),
        read_runs(metrics_paths),
        ft,
        ft_pred,
        seeds=seeds,
        n_boot=n_boot,
        seed=seed,
    )
    if curve_path is not None:
        curve = pd.read_parquet(curve_path)
        for name in g.classes:
            part = curve[curve["group"] == name].set_index("layer")["log10_mean"]
            g.splits[f"cui:{name}"] = g.splits["layer"].map(part)
    probe = pd.read_parquet(probe_path) if probe_path else None
    outcomes = pd.read_parquet(probe_outcomes_path) if probe_outcomes_path else None
    q = quality(g, metric, probe=probe, probe_outcomes=outcomes, n_boot=n_boot, seed=seed)
    write_table(g.splits, splits_out)
    write_json(quality_out, q, allow_nan=False)
    if outcomes_out is not None:
        write_table(validation_outcomes(read_runs(metrics_paths), ft_pred), outcomes_out)
    return q
