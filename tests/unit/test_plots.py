"""The figures (``isplit.figures``) on synthetic stage outputs in the formats the stages write,
and the Pareto front they draw (``isplit.evaluation.pareto``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from isplit.cli.figures import plot_cui
from isplit.evaluation.pareto import pareto_front
from isplit.figures import cui, latency, splits, style
from isplit.importance.candidates import ALL_COLUMNS
from isplit.io.tables import with_metadata, write_tsv

SPLIT_FIGURES = (
    "accuracy_by_split",
    "cui_vs_accuracy",
    "accuracy_vs_bytes",
    "per_class_accuracy",
    "predictors",
)
CUI_FIGURES = ("cui_curve", "cui_per_class")

# MobileNetV2 at 224 px: (channels, side) of each features block's output
MOBILENET_V2 = [(32, 112), (16, 112)] + [(24, 56)] * 2 + [(32, 28)] * 3 + [(64, 14)] * 4
MOBILENET_V2 += [(96, 14)] * 3 + [(160, 7)] * 3 + [(320, 7), (1280, 7)]
INPUT_BYTES = 4 * 3 * 224 * 224


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
    input_point: bool = False,
    exclude_first: int = 0,
) -> dict:
    """Synthetic ``curve.parquet`` (with the importance stage's metadata),
    ``candidates_all.tsv``, ``splits.parquet`` and ``quality.json``; ``evaluate`` = the probe
    positions retrained (default all); ``input_point`` adds the public code's input point."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n = len(shapes)
    evaluate = list(range(n)) if evaluate is None else list(evaluate)
    layers = [f"features.{i}" for i in range(n)]
    labels = [label(i) for i in range(n)]
    classes = [f"class_{c:03d}" for c in range(n_classes)]
    act = np.array([4 * c * s * s for c, s in shapes], dtype=np.int64)
    t = np.linspace(0, 1, n)
    cui_ = 10 ** (-3 + 1.5 * np.sin(3 * np.pi * t) * t + 0.2 * rng.normal(size=n))
    class_cui = cui_[None, :] * 10 ** (0.3 * rng.normal(size=(n_classes, n)))
    log = np.log10(cui_)

    curve = []
    first = [-1] if input_point else []
    for g, vals, k in [("all", cui_, -1)] + [
        (classes[c], class_cui[c], c) for c in range(n_classes)
    ]:
        for i in first + list(range(n)):
            j = max(i, 0)  # the input point repeats the first layer's value
            curve.append(
                {"layer_index": i, "layer": "input" if i < 0 else layers[i],
                 "label": "input" if i < 0 else labels[i], "group": g, "class": k,
                 "n": 50 if k >= 0 else 50 * n_classes, "mean": vals[j], "std": vals[j] / 2,
                 "log10_mean": np.log10(vals[j])}
            )  # fmt: skip
    points = [
        {"index": i, "name": layers[i], "label": labels[i], "shape": [c, s, s], "bytes": int(b)}
        for i, ((c, s), b) in enumerate(zip(shapes, act, strict=True))
    ]
    meta = {"model": "mobilenet_v2", "input": {"image_size": 224}, "variant": "paper",
            "target": "label", "split": "test", "classes": classes, "input_point": input_point,
            "probe_points": points, "input_bytes": INPUT_BYTES}  # fmt: skip
    table = pa.Table.from_pandas(pd.DataFrame(curve), preserve_index=False)
    table = table.replace_schema_metadata(with_metadata(table.schema, meta).metadata)
    pq.write_table(table, root / "curve.parquet")

    allowed = np.arange(n) >= exclude_first
    is_max = _local_maxima(log)
    best = int(np.flatnonzero(allowed)[np.argmax(log[allowed])])
    cde = act < np.r_[INPUT_BYTES, act[:-1]]
    class_best = np.flatnonzero(allowed)[np.argmax(class_cui[:, allowed], axis=1)]
    cand = pd.DataFrame(
        {"layer": layers, "layer_index": range(n), "label": labels, "cui": cui_,
         "log10_cui": log, "bytes": act, "allowed": allowed, "isplit_max": is_max,
         "isplit_best": np.arange(n) == best, "cde": cde, "selected": allowed,
         "class_best": [json.dumps([classes[c] for c in np.flatnonzero(class_best == i)])
                        for i in range(n)],
         "reasons": "oracle"}
    )[list(ALL_COLUMNS)]  # fmt: skip
    write_tsv(cand, root / "candidates_all.tsv")

    ev = np.array(evaluate)
    top1 = np.clip(0.55 + 0.35 * np.sqrt(t) + 0.02 * rng.normal(size=n), 0, 1)
    code = np.array([max(1, c // 4) * s * s + 8 for c, s in shapes], dtype=np.int64)
    sp = cand.iloc[ev][["layer", "layer_index", "label", "cui", "log10_cui", "reasons"]]
    sp = sp.reset_index(drop=True)
    sp["top1"] = top1[ev]
    sp["top1_lo"], sp["top1_hi"] = top1[ev] - 0.03, top1[ev] + 0.02
    sp["val_top1"] = top1[ev] + 0.01
    sp["bytes"] = code[ev]
    sp["bytes_float32"] = 4 * code[ev]
    sp["activation_bytes"] = act[ev]
    for col in ("head_params", "tail_params", "encoder_params", "decoder_params", "head_flops",
                "encoder_flops", "decoder_flops", "tail_flops"):  # fmt: skip
        sp[col] = rng.integers(1_000, 1_000_000, size=len(ev))
    sp["train_seconds"] = 30.0
    per_class = np.clip(top1[ev][None, :] + 0.15 * rng.normal(size=(n_classes, len(ev))), 0, 1)
    per_class_cols = {f"acc:{classes[c]}": per_class[c] for c in range(n_classes)}
    sp = pd.concat([sp, pd.DataFrame(per_class_cols)], axis=1)
    sp.to_parquet(root / "splits.parquet", index=False)

    acc, val = sp["top1"].to_numpy(), sp["val_top1"].to_numpy()
    bi = int(np.argmax(val))  # the measured best is chosen on validation

    def summary(v, width=0.1):
        return {"value": v, "ci": [v - width, v + width]} if v is not None else None

    cui_rho = _corr(sp["log10_cui"].to_numpy(), acc)["spearman"]
    size_rho = _corr(-np.log10(act[ev].astype(float)), acc)["spearman"]
    q = {
        "metric": "top1",
        "n_points": len(ev),
        "measured_best": {"layer": layers[ev[bi]], "label": labels[ev[bi]], "val": val[bi],
                          "test": summary(acc[bi], 0.02)},
        "predictors": {
            "cui_mean": {"spearman": summary(None if null_corr else cui_rho),
                         "choice": layers[best] if best in evaluate else None},
            "size": {"spearman": summary(None if null_corr else size_rho), "choice": None},
            "random": {"spearman": {"value": 0.0, "ci": None}, "regret": summary(0.05, 0.02)},
        },
        "partial_spearman_cui_given_size_depth": summary(0.1),
        "cui_adds_to_size": False,
        "per_class": [],
    }  # fmt: skip
    if best in evaluate:
        regret = float(acc[bi] - top1[best])
        q["predictors"]["cui_mean"]["regret"] = summary(regret, 0.02)
    for c in range(n_classes):
        own = int(class_best[c])
        q["per_class"].append(
            {"class": classes[c],
             "predicted": {"own_best": layers[own], "global_best": layers[best],
                           "gain": summary(0.01), "beyond_ci": c == 0}}
        )  # fmt: skip
    if finetuned is not None:
        q["finetuned"] = {"test": summary(finetuned, 0.01), "val": summary(finetuned, 0.01)}
    (root / "quality.json").write_text(json.dumps(q, indent=1))
    return {
        "splits_path": root / "splits.parquet",
        "curve_path": root / "curve.parquet",
        "candidates_path": root / "candidates_all.tsv",
        "quality_path": root / "quality.json",
    }


def cui_inputs(inputs: dict) -> dict:
    return {k: inputs[k] for k in ("curve_path", "candidates_path")}


def make_latency_inputs(root: Path, inputs: dict, *, max_p95_s: float = 0.2) -> dict:
    """``latency.parquet`` over two links and ``recommendation.json`` made from it by the
    recommendation stage, for the splits of ``inputs``."""
    from isplit.recommend.recommend import run

    sp = pd.read_parquet(inputs["splits_path"])
    n = len(sp)
    rows = []
    for profile, bw, scale in (("wifi", 50e6, 1.0), ("lte", 5e6, 3.0)):
        ends = [("LC", "LC", -1, 4), ("RC", "RC", n, INPUT_BYTES // 4)]
        for layer, lab, li, nbytes in ends + list(
            zip(sp["layer"], sp["label"], sp["layer_index"], sp["bytes"], strict=True)
        ):
            p95 = scale * (0.02 + 8 * nbytes / bw + 0.002 * (li + 1))
            rows.append({"layer": layer, "label": lab, "layer_index": int(li),
                         "profile": profile, "protocol": "tcp", "loss": 0.01,
                         "bandwidth_bps": bw, "delay_s": 0.005, "bytes": int(nbytes),
                         "device_s": 0.001 * (li + 2), "server_s": 0.005,
                         "latency_p50_s": 0.8 * p95, "latency_p95_s": p95, "frame_loss": 0.0,
                         "fps_max": 1 / p95})  # fmt: skip
    pd.DataFrame(rows).to_parquet(root / "latency.parquet", index=False)
    (root / "finetune.json").write_text(json.dumps({"test": {"top1": 0.912, "per_class": {}}}))
    run(latency_path=root / "latency.parquet", splits_path=inputs["splits_path"],
        finetune_metrics_path=root / "finetune.json", cfg={"max_p95_s": max_p95_s},
        out_json=root / "recommendation.json")  # fmt: skip
    return {
        "latency_path": root / "latency.parquet",
        "recommendation_path": root / "recommendation.json",
        "splits_path": inputs["splits_path"],
    }


def into(out: Path, stems) -> dict[str, list[Path]]:
    """The figure arguments that draw each of ``stems`` as ``out/<stem>.png`` and ``.pdf``."""
    return {s: [out / f"{s}.png", out / f"{s}.pdf"] for s in stems}


def check_figures(paths, out: Path, stems, *, landscape=()) -> dict[str, np.ndarray]:
    """Exactly ``stems`` as PNG + PDF, whole, no temporary files left; returns the PNGs."""
    expected = [out / f"{s}.{e}" for s in stems for e in ("png", "pdf")]
    assert list(paths) == expected
    images = {}
    for p in expected:
        data = p.read_bytes()
        assert len(data) > 10_000, p
        assert data.startswith(b"\x89PNG\r\n\x1a\n" if p.suffix == ".png" else b"%PDF"), p
    assert not list(out.glob(".*tmp*")), "temporary files left behind"
    for s in stems:
        img = imread(out / f"{s}.png")
        h, w = img.shape[:2]
        assert h > 300 and w > 300, (s, img.shape)
        if s in landscape:
            assert 0.5 < h / w < 1.3, (s, img.shape)
        assert img[..., :3].std() > 0.05, f"{s} is blank"
        assert (img[..., :3] < 0.5).mean() > 0.002, f"{s} has next to no ink"
        images[s] = img
    return images


@pytest.fixture()
def captured(monkeypatch):
    """The Figure objects saved, by stem, to check what was drawn on them."""
    figs = {}
    save = style.save_figure

    def keep(fig, paths):
        figs[Path(paths[0]).stem] = fig
        return save(fig, paths)

    monkeypatch.setattr(style, "save_figure", keep)
    return figs


def placed_labels(fig) -> list[str]:
    """The point labels of ``fig``'s first axes, checked to lie inside the axes, clear of
    each other and of every marker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PathCollection
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()
    ax = fig.axes[0]
    frame = ax.get_window_extent(renderer)
    texts = [t for t in ax.texts if t.get_text().startswith("f")]
    boxes = [Text.get_window_extent(t, renderer) for t in texts]  # the text, not its leader
    marks = []
    for c in ax.collections:
        if isinstance(c, PathCollection):
            pts = c.get_offset_transform().transform(c.get_offsets())
            for (x, y), s in zip(pts, np.resize(c.get_sizes(), len(pts)), strict=True):
                h = np.sqrt(s) / 2 * fig.dpi / 72  # the marker's half width, pixels
                marks.append(Bbox.from_extents(x - h, y - h, x + h, y + h))
    for t, b in zip(texts, boxes, strict=True):
        assert frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
        assert not any(b.overlaps(o) for o in boxes if o is not b), t.get_text()
        assert not any(b.overlaps(m) for m in marks), t.get_text()
    return [t.get_text() for t in texts]


LANDSCAPE = ("accuracy_by_split", "cui_vs_accuracy", "accuracy_vs_bytes")


def test_split_figures_mobilenet_all_points(tmp_path, captured):
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "figs"
    paths = splits.split_figures(**inputs, **into(out, SPLIT_FIGURES))
    images = check_figures(paths, out, SPLIT_FIGURES, landscape=LANDSCAPE)
    h, w = images["accuracy_by_split"].shape[:2]
    assert w > h  # wide x axis for 19 probe points
    for stem in ("cui_vs_accuracy", "accuracy_vs_bytes"):
        labels = placed_labels(captured[stem])
        assert sorted(labels) == sorted(f"f{i}" for i in range(19)), stem
    # the candidate kinds come from the typed flags: one gold star, at the predicted best
    cand = pd.read_csv(inputs["candidates_path"], sep="\t")
    best = cand.loc[cand["isplit_best"], "layer_index"].tolist()
    stars = [c for c in captured["accuracy_by_split"].axes[0].collections
             if c.get_label() == style.KIND_LABELS["isplit_best"]]  # fmt: skip
    assert len(stars) == 1 and stars[0].get_offsets()[:, 0].tolist() == best


def test_accuracy_vs_bytes_shows_lc_and_the_camera_options(tmp_path, captured):
    """LC and the camera's frames are points of the same plane, on the same front."""
    inputs = make_inputs(tmp_path / "in", shapes=MOBILENET_V2[:6])
    m = json.loads(Path(inputs["quality_path"]).read_text()).get("metric", "top1")
    camera = pd.DataFrame(
        {"option": ["raw", "jpeg90"], "bytes_mean": [90_000.0, 9_000.0],
         m: [0.5, 0.99], f"{m}_lo": [0.4, 0.95], f"{m}_hi": [0.6, 1.0]}
    )  # fmt: skip
    camera.to_parquet(tmp_path / "camera.parquet")
    out = tmp_path / "figs"
    splits.split_figures(
        **inputs, **into(out, SPLIT_FIGURES), camera_path=tmp_path / "camera.parquet"
    )
    ax = captured["accuracy_vs_bytes"].axes[0]
    texts = {t.get_text(): t for t in ax.texts}
    assert {"LC", "raw", "jpeg90"} <= set(texts)
    # jpeg90 is more accurate than every split and LC: it ends the front, in bold; raw does not
    assert texts["jpeg90"].get_fontweight() == "bold"
    assert texts["raw"].get_fontweight() == "normal"
    assert ax.get_xlim()[1] > 90_000 and ax.get_xlim()[0] < 4
    options = splits._no_split_options(json.loads(Path(inputs["quality_path"]).read_text()), camera)
    assert options["name"].tolist()[-2:] == ["RC-raw", "RC-jpeg90"]


def test_split_figures_subset_single_split_and_null_correlations(tmp_path):
    inputs = make_inputs(tmp_path / "in", evaluate=[7], null_corr=True, finetuned=None)
    out = tmp_path / "figs"
    check_figures(splits.split_figures(**inputs, **into(out, SPLIT_FIGURES)), out, SPLIT_FIGURES)


def test_split_figures_many_classes_is_a_tall_heatmap(tmp_path):
    inputs = make_inputs(tmp_path / "in", n_classes=200, evaluate=[1, 3, 6, 10, 13, 16, 18])
    out = tmp_path / "figs"
    images = check_figures(
        splits.split_figures(**inputs, **into(out, SPLIT_FIGURES)), out, SPLIT_FIGURES
    )
    h, w = images["per_class_accuracy"].shape[:2]
    assert h > 1.5 * w


@pytest.mark.slow
def test_split_figures_rerun_byte_identical(tmp_path):
    # the split figures: they hold the most (label placement, text); saving is shared
    inputs = make_inputs(tmp_path / "in", shapes=MOBILENET_V2[:5], n_classes=3)
    out = tmp_path / "figs"
    first = splits.split_figures(**inputs, **into(out, SPLIT_FIGURES))
    data = {p: p.read_bytes() for p in first}
    assert splits.split_figures(**inputs, **into(out, SPLIT_FIGURES)) == first
    assert {p: p.read_bytes() for p in first} == data


def test_cui_curve_sizes_flags_and_input_point(tmp_path, captured):
    inputs = make_inputs(tmp_path / "in", input_point=True, exclude_first=2, n_classes=5)
    out = tmp_path / "figs"
    paths = cui.cui_figures(**cui_inputs(inputs), **into(out, CUI_FIGURES))
    check_figures(paths, out, CUI_FIGURES, landscape=("cui_curve",))
    ax, ax2 = captured["cui_curve"].axes
    # the size axis: the input image at x = 0, then the recorded sizes of the probe points
    (size_line,) = ax2.get_lines()
    sizes = [INPUT_BYTES] + [4 * c * s * s for c, s in MOBILENET_V2]
    assert size_line.get_ydata().tolist() == sizes
    # shaded: the input point and the two excluded first layers
    shaded = [p for p in ax.patches if p.get_facecolor()[:3] == pytest.approx((0.9, 0.9, 0.9))]
    assert len(shaded) == 3
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["input", "f0"]
    # 5 classes: small multiples, each with its class-best star
    panels = [a for a in captured["cui_per_class"].axes if a.get_visible()]
    assert len(panels) == 5
    assert all("best f" in a.get_title() for a in panels)


def test_cui_per_class_heatmap_above_twelve_classes(tmp_path, captured):
    inputs = make_inputs(tmp_path / "in", n_classes=30)
    out = tmp_path / "figs"
    images = check_figures(
        cui.cui_figures(**cui_inputs(inputs), **into(out, CUI_FIGURES)), out, CUI_FIGURES
    )
    (ax, _colorbar) = captured["cui_per_class"].axes
    (stars,) = ax.collections
    cand = pd.read_csv(inputs["candidates_path"], sep="\t")
    want = sorted(
        (row, li)
        for li, names in zip(cand["layer_index"], cand["class_best"], strict=True)
        for row in (int(name.split("_")[1]) for name in json.loads(names))
    )
    got = sorted((int(y), int(x)) for x, y in stars.get_offsets())
    assert got == want and len(got) == 30
    assert images["cui_per_class"].shape[0] > 300


def test_selected_candidates_only_are_refused(tmp_path):
    inputs = make_inputs(tmp_path / "in", shapes=MOBILENET_V2[:4], n_classes=2)
    selected = tmp_path / "in" / "candidates.tsv"
    table = pd.read_csv(inputs["candidates_path"], sep="\t")
    table[["layer", "layer_index", "label", "cui", "log10_cui", "bytes", "reasons"]].to_csv(
        selected, sep="\t", index=False
    )
    with pytest.raises(ValueError, match="pass candidates_all.tsv"):
        cui.cui_figures(
            **cui_inputs(inputs) | {"candidates_path": selected}, **into(tmp_path, CUI_FIGURES)
        )
    with pytest.raises(ValueError, match="pass candidates_all.tsv"):
        splits.split_figures(
            **inputs | {"candidates_path": selected}, **into(tmp_path, SPLIT_FIGURES)
        )
    assert not list(tmp_path.glob("*.png"))


def test_plot_command_writes_exactly_the_files_it_is_given(tmp_path):
    """Each figure goes to the paths its option names, whatever they are called, in the
    format of each suffix; a path that is not .png or .pdf, or a figure given no path, is
    refused before anything is drawn."""
    inputs = make_inputs(tmp_path / "in", shapes=MOBILENET_V2[:4], n_classes=2)
    args = ["--curve", str(inputs["curve_path"])]
    args += ["--candidates-all", str(inputs["candidates_path"])]
    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(
        plot_cui, [*args, "--cui-curve", str(out / "a.png"), "--cui-per-class", str(out / "b.svg")]
    )
    assert r.exit_code == 2 and f"{out / 'b.svg'}: a figure is written as .png" in r.output
    r = runner.invoke(plot_cui, [*args, "--cui-curve", str(out / "a.png")])
    assert r.exit_code == 2 and "--cui-per-class" in r.output
    assert not out.exists()

    r = runner.invoke(
        plot_cui,
        [*args, "--cui-curve", str(out / "one.pdf"), "--cui-curve", str(out / "sub" / "two.png"),
         "--cui-per-class", str(out / "three.png")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["one.pdf", "sub/two.png", "three.png"]
    assert (out / "one.pdf").read_bytes().startswith(b"%PDF")
    assert (out / "sub" / "two.png").read_bytes().startswith(b"\x89PNG")


def test_latency_figure(tmp_path):
    inputs = make_inputs(tmp_path / "in", shapes=MOBILENET_V2[:8], n_classes=3)
    lat = make_latency_inputs(tmp_path / "in", inputs)
    out = tmp_path / "figs"
    check_figures(
        latency.latency_figure(**lat, **into(out, ["latency_accuracy"])), out, ["latency_accuracy"]
    )
    frame = pd.read_parquet(lat["latency_path"])
    assert latency.pick_setting(frame, "lte") == ("tcp", 0.01)
    with pytest.raises(ValueError, match="no tcp results at loss 0.05"):
        latency.pick_setting(frame, "lte", loss=0.05)


@pytest.mark.slow
def test_figures_import_no_torch(tmp_path):
    """Figures run where torch is not installed: any import of it fails in this subprocess."""
    inputs = make_inputs(tmp_path / "in", shapes=MOBILENET_V2[:4], n_classes=2)
    lat = make_latency_inputs(tmp_path / "in", inputs)
    args = {k: str(v) for k, v in (inputs | lat).items()}
    stems = (*CUI_FIGURES, *SPLIT_FIGURES, "latency_accuracy")
    figs = {k: [str(p) for p in v] for k, v in into(tmp_path / "out", stems).items()}
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None
        from isplit.figures import cui, latency, splits
        a, f = {args!r}, {figs!r}
        cui.cui_figures(curve_path=a["curve_path"], candidates_path=a["candidates_path"],
                        cui_curve=f["cui_curve"], cui_per_class=f["cui_per_class"])
        splits.split_figures(splits_path=a["splits_path"], curve_path=a["curve_path"],
                             candidates_path=a["candidates_path"],
                             quality_path=a["quality_path"],
                             **{{k: f[k] for k in {SPLIT_FIGURES!r}}})
        latency.latency_figure(latency_path=a["latency_path"],
                               recommendation_path=a["recommendation_path"],
                               splits_path=a["splits_path"],
                               latency_accuracy=f["latency_accuracy"])
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
        assert bad == ["torch"], bad  # only the blocked entry itself
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 8


def test_style_helpers():
    assert style.si(1.5e6, "B") == "1.5 MB"
    assert style.si(999, "B") == "999 B"
    assert style.si(5e6, "b/s") == "5 Mb/s"
    # a legend proxy is as large as the points it stands for (markersize² = scatter area)
    h = style.PICK.handle(scale=0.5)
    assert h.get_markersize() ** 2 == pytest.approx(0.5 * style.PICK.area)
    assert h.get_markerfacecolor() == "gold" and h.get_linestyle() == "None"


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
    front = pareto_front(cost=nbytes, value=acc)
    assert front.dtype.kind == "i"
    assert front.tolist() == expected


def test_pareto_front_is_exactly_the_non_dominated_set():
    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(1, 15))
        b = rng.integers(1, 6, size=n).astype(float)
        a = rng.integers(0, 5, size=n) / 4
        front = set(pareto_front(cost=b, value=a).tolist())
        for i in range(n):
            dominated = any(
                b[j] <= b[i] and a[j] >= a[i] and (b[j] < b[i] or a[j] > a[i]) for j in range(n)
            )
            duplicate_before = any(b[j] == b[i] and a[j] == a[i] for j in range(i))
            assert (i in front) == (not dominated and not duplicate_before)


def test_pareto_front_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        pareto_front(cost=[1, 2], value=[0.5])


def test_latency_points_sit_where_the_recommendation_ranks_them():
    """With qos.classes the recommendation ranks by the classes' mean recall, which is not the
    metric column of latency.parquet: the figure must plot the former, as points_table does."""
    from isplit.recommend.recommend import points_table

    lat = pd.DataFrame({"layer": ["a", "b"], "frame_loss": [0.0, 0.1],
                        "delivered_val_top1": [0.99, 0.98]})  # fmt: skip
    rec = {"accuracy": {"a": 0.4, "b": 0.5}}
    cand = pd.DataFrame({"layer": ["a", "b"], "val": [0.4, 0.5], "val_lo": [0.4, 0.5],
                         "val_hi": [0.4, 0.5], "test": [0.3, 0.6], "test_lo": [0.3, 0.6],
                         "test_hi": [0.3, 0.6], "device_params": [1.0, 2.0],
                         "device_flops": [1.0, 2.0]})  # fmt: skip
    got = latency.plotted_accuracy(lat, rec)
    assert np.allclose(got, [0.4, 0.45])
    assert np.allclose(got, points_table(lat, cand)["accuracy"])
