"""isplit.plots.split_figures (accuracy per split, CUI vs accuracy, bytes Pareto front, per-class
heatmap) on synthetic pipeline outputs, and the Pareto-front helper."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.image import imread

from isplit import plots
from isplit.importance import METADATA_KEY

FIGURES = ("accuracy_by_split", "cui_vs_accuracy", "accuracy_vs_bytes", "per_class_accuracy")

# MobileNetV2 at 224 px: (channels, side) of each features block's output
MOBILENET_V2 = [(32, 112), (16, 112)] + [(24, 56)] * 2 + [(32, 28)] * 3 + [(64, 14)] * 4
MOBILENET_V2 += [(96, 14)] * 3 + [(160, 7)] * 3 + [(320, 7), (1280, 7)]


def _local_maxima(v: np.ndarray) -> np.ndarray:
    left = np.r_[-np.inf, v[:-1]]
    right = np.r_[v[1:], -np.inf]
    return (v > left) & (v >= right)


def _corr(x: np.ndarray, y: np.ndarray) -> dict:
    if len(x) < 3:
        return {"n": len(x), "spearman": None, "spearman_p": None, "pearson": None,
                "pearson_p": None}  # fmt: skip
    rank = lambda v: np.argsort(np.argsort(v)).astype(float)  # noqa: E731
    return {
        "n": len(x),
        "spearman": float(np.corrcoef(rank(x), rank(y))[0, 1]),
        "spearman_p": 0.0123,
        "pearson": float(np.corrcoef(x, y)[0, 1]),
        "pearson_p": 3e-5,
    }


def make_inputs(
    root: Path,
    *,
    shapes=MOBILENET_V2,
    n_classes: int = 10,
    evaluate=None,
    finetuned: float | None = 0.912,
    seed: int = 0,
    label=lambda i: f"f{i}",
    null_corr: bool = False,
) -> dict:
    """Synthetic ``splits.parquet``, ``curve.parquet``, ``candidates.tsv``, ``quality.json``
    as the pipeline writes them; ``evaluate`` = the probe positions retrained (default all)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n = len(shapes)
    evaluate = list(range(n)) if evaluate is None else list(evaluate)
    layers = [f"features.{i}" for i in range(n)]
    labels = [label(i) for i in range(n)]
    classes = [f"class_{c:03d}" for c in range(n_classes)]
    act = np.array([4 * c * s * s for c, s in shapes], dtype=np.int64)
    t = np.linspace(0, 1, n)
    cui = 10 ** (-3 + 1.5 * np.sin(3 * np.pi * t) * t + 0.2 * rng.normal(size=n))
    class_cui = cui[None, :] * 10 ** (0.3 * rng.normal(size=(n_classes, n)))
    log = np.log10(cui)

    curve = []
    for g, vals, k in [("all", cui, -1)] + [
        (classes[c], class_cui[c], c) for c in range(n_classes)
    ]:
        for i in range(n):
            curve.append(
                {"layer_index": i, "layer": layers[i], "label": labels[i], "group": g,
                 "class": k, "n": 50 if k >= 0 else 50 * n_classes, "mean": vals[i],
                 "std": vals[i] / 2, "log10_mean": np.log10(vals[i])}
            )  # fmt: skip
    meta = {"model": "mobilenet_v2", "input": {"image_size": 224}, "variant": "paper",
            "target": "label", "classes": classes}  # fmt: skip
    table = pa.Table.from_pandas(pd.DataFrame(curve), preserve_index=False)
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    pq.write_table(table, root / "curve.parquet")

    is_max = _local_maxima(log)
    best = int(np.argmax(log))
    cde = act < np.r_[4 * 3 * 224 * 224, act[:-1]]
    class_best = np.argmax(class_cui, axis=1)
    reasons = []
    for i in range(n):
        r = ["isplit-max"] if is_max[i] else []
        r += ["isplit-best"] if i == best else []
        r += [f"class-best:{classes[c]}" for c in range(n_classes) if class_best[c] == i]
        r += ["cde"] if cde[i] else []
        reasons.append(";".join(r + ["oracle"]))
    cand = pd.DataFrame(
        {"layer": layers, "layer_index": range(n), "label": labels, "cui": cui, "log10_cui": log,
         "bytes": act, "reasons": reasons}
    )  # fmt: skip
    cand.to_csv(root / "candidates.tsv", sep="\t", index=False)

    ev = np.array(evaluate)
    top1 = np.clip(0.55 + 0.35 * np.sqrt(t) + 0.02 * rng.normal(size=n), 0, 1)
    code = np.array([max(1, c // 4) * s * s + 8 for c, s in shapes], dtype=np.int64)
    splits = cand.iloc[ev].reset_index(drop=True).drop(columns="bytes")
    splits["top1"] = top1[ev]
    splits["val_top1"] = top1[ev] + 0.01
    splits["bytes"] = code[ev]
    splits["bytes_float32"] = 4 * code[ev]
    splits["activation_bytes"] = act[ev]
    for col in ("head_params", "tail_params", "encoder_params", "decoder_params", "head_flops",
                "encoder_flops", "decoder_flops", "tail_flops"):  # fmt: skip
        splits[col] = rng.integers(1_000, 1_000_000, size=len(ev))
    splits["train_seconds"] = 30.0
    per_class = np.clip(top1[ev][None, :] + 0.15 * rng.normal(size=(n_classes, len(ev))), 0, 1)
    per_class_cols = {f"acc:{classes[c]}": per_class[c] for c in range(n_classes)}
    splits = pd.concat([splits, pd.DataFrame(per_class_cols)], axis=1)
    splits.to_parquet(root / "splits.parquet", index=False)

    acc = splits["top1"].to_numpy()
    bi = int(np.argmax(acc))
    q = {
        "n_points": len(ev),
        "cui_vs_accuracy": _corr(splits["log10_cui"].to_numpy(), acc),
        "cde_size_vs_accuracy": _corr(np.log10(act[ev].astype(float)), acc),
        "measured_best": {"layer": layers[ev[bi]], "label": labels[ev[bi]], "top1": acc[bi]},
        "predicted_best": None,
        "per_class": [],
    }
    if null_corr:
        for key in ("cui_vs_accuracy", "cde_size_vs_accuracy"):
            q[key] = {k: None for k in q[key]} | {"n": len(ev)}
    if best in evaluate:
        pa_ = float(top1[best])
        q["predicted_best"] = {"layer": layers[best], "label": labels[best], "top1": pa_,
                               "rank": int((acc > pa_).sum()) + 1, "of": len(ev),
                               "accuracy_lost": float(acc[bi] - pa_)}  # fmt: skip
    col = {int(i): j for j, i in enumerate(ev)}
    for c in range(n_classes):
        own = int(class_best[c])
        at_own = float(per_class[c, col[own]]) if own in col else None
        at_glob = float(per_class[c, col[best]]) if best in col else None
        q["per_class"].append(
            {"class": classes[c], "own_best_layer": layers[own], "top1_at_own_best": at_own,
             "top1_at_global_best": at_glob,
             "gain": None if at_own is None or at_glob is None else at_own - at_glob}
        )  # fmt: skip
    if finetuned is not None:
        q["finetuned_top1"] = finetuned
    (root / "quality.json").write_text(json.dumps(q, indent=1))
    return {
        "splits_path": root / "splits.parquet",
        "curve_path": root / "curve.parquet",
        "candidates_path": root / "candidates.tsv",
        "quality_path": root / "quality.json",
    }


def _check_outputs(paths, out: Path) -> None:
    expected = {out / f"{s}.{e}" for s in FIGURES for e in ("png", "pdf")}
    assert set(paths) == expected
    for p in expected:
        assert p.is_file() and p.stat().st_size > 10_000, p
    assert not list(out.glob(".*tmp*")), "temporary files left behind"
    for s in FIGURES:
        img = imread(out / f"{s}.png")
        h, w = img.shape[:2]
        assert h > 300 and w > 300
        if s == "per_class_accuracy":
            continue
        assert 0.5 < h / w < 1.3, (s, img.shape)  # landscape-ish plots
        assert img[..., :3].std() > 0.05  # not blank
    assert (out / "per_class_accuracy.pdf").read_bytes().startswith(b"%PDF")


def test_split_figures_mobilenet_all_points(tmp_path):
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "figs"
    paths = plots.split_figures(**inputs, out_dir=out)
    _check_outputs(paths, out)
    # wide x axis for 19 probe points
    h, w = imread(out / "accuracy_by_split.png").shape[:2]
    assert w > h


def test_split_figures_subset_single_split_and_null_correlations(tmp_path):
    inputs = make_inputs(tmp_path / "in", evaluate=[7], null_corr=True, finetuned=None)
    q = json.loads(inputs["quality_path"].read_text())
    assert q["cui_vs_accuracy"]["spearman"] is None
    out = tmp_path / "figs"
    _check_outputs(plots.split_figures(**inputs, out_dir=out), out)


def test_split_figures_many_classes_is_a_tall_heatmap(tmp_path):
    inputs = make_inputs(tmp_path / "in", n_classes=200, evaluate=[1, 3, 6, 10, 13, 16, 18])
    out = tmp_path / "figs"
    _check_outputs(plots.split_figures(**inputs, out_dir=out), out)
    h, w = imread(out / "per_class_accuracy.png").shape[:2]
    assert h > 1.5 * w


def test_split_figures_rerun_overwrites(tmp_path):
    inputs = make_inputs(tmp_path / "in", shapes=MOBILENET_V2[:5], n_classes=3)
    out = tmp_path / "figs"
    first = plots.split_figures(**inputs, out_dir=out)
    png = (out / "accuracy_by_split.png").read_bytes()
    assert plots.split_figures(**inputs, out_dir=out) == first
    assert (out / "accuracy_by_split.png").read_bytes() == png  # deterministic


@pytest.mark.parametrize(
    "nbytes,acc,expected",
    [
        ([100, 200, 300], [0.5, 0.6, 0.7], [0, 1, 2]),  # every step buys accuracy
        ([100, 200, 300], [0.7, 0.6, 0.5], [0]),  # the smallest is also the best
        ([300, 100, 200], [0.9, 0.5, 0.4], [1, 0]),  # order by bytes; 200 B dominated
        ([100, 100, 200], [0.5, 0.6, 0.6], [1]),  # equal bytes: the better; equal acc: fewer
        ([100, 100, 200], [0.6, 0.6, 0.7], [0, 2]),  # exact duplicates: the first only
        ([100, 200, 300, 400], [0.5, 0.8, 0.7, 0.8], [0, 1]),  # equal acc, more bytes: no
        ([100, np.nan, 300], [0.5, 0.9, np.nan], [0]),  # non-finite ignored
        ([], [], []),
        ([42], [0.3], [0]),
    ],
)
def test_pareto_front(nbytes, acc, expected):
    front = plots.pareto_front(nbytes, acc)
    assert front.dtype.kind == "i"
    assert front.tolist() == expected


def test_pareto_front_is_exactly_the_non_dominated_set():
    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(1, 15))
        b = rng.integers(1, 6, size=n).astype(float)
        a = rng.integers(0, 5, size=n) / 4
        front = set(plots.pareto_front(b, a).tolist())
        for i in range(n):
            dominated = any(
                b[j] <= b[i] and a[j] >= a[i] and (b[j] < b[i] or a[j] > a[i]) for j in range(n)
            )
            duplicate_before = any(b[j] == b[i] and a[j] == a[i] for j in range(i))
            assert (i in front) == (not dominated and not duplicate_before)


def test_pareto_front_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        plots.pareto_front([1, 2], [0.5])
