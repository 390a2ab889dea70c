"""isplit.importance.candidates: local maxima, CDE drops, modes, the TSV checkpoint."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from isplit.importance import candidates as cand
from isplit.importance import cui
from isplit.io.tables import read_candidates, with_metadata, write_tsv
from isplit.nets import models


def idx(mask) -> list[int]:
    return np.flatnonzero(mask).tolist()


@pytest.mark.parametrize(
    "values,expected",
    [
        ([0, 1, 0], [1]),
        ([1, 3, 2, 3, 1], [1, 3]),
        ([0, 1, 1, 1, 0], [1]),  # plateau: once, at its first point
        ([1, 2, 2, 3], [3]),  # a rising shelf is not a maximum; the higher last point is
        ([3, 2, 1], [0]),  # first point higher than its one neighbour
        ([1, 2, 3], [2]),  # last point
        ([2, 2, 1], [0]),  # plateau touching the start
        ([1, 2, 2], [1]),  # plateau touching the end
        ([5, 5, 5], []),  # constant: none
        ([4], []),
        ([], []),
        ([1, 0, 0, 1], [0, 3]),  # valley plateau is not a maximum
        ([1, np.nan, 2, 1], []),  # NaN is never a maximum, nor are its neighbours
        ([-np.inf, -3, -np.inf], [1]),  # log10(0) = -inf
    ],
)
def test_local_maxima(values, expected):
    assert idx(cand.local_maxima(values)) == expected


def test_local_maxima_without_ends_is_the_public_rule_minus_its_artefacts():
    assert idx(cand.local_maxima([3, 2, 1], ends=False)) == []
    assert idx(cand.local_maxima([1, 2, 3], ends=False)) == []
    assert idx(cand.local_maxima([1, 3, 2, 3, 1], ends=False)) == [1, 3]
    assert idx(cand.local_maxima([2, 2, 1, 3, 0], ends=False)) == [3]


def test_monotone_curves_and_global_max_is_a_local_max():
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = np.round(rng.normal(size=rng.integers(2, 12)), 1)
        m = cand.local_maxima(v)
        if np.ptp(v) > 0:
            assert m[int(np.argmax(v))]  # the first global maximum is always flagged
        # every flagged point is >= its neighbours
        for i in idx(m):
            assert (i == 0 or v[i - 1] < v[i]) and (i == len(v) - 1 or v[i + 1] <= v[i])
    assert idx(cand.local_maxima(np.arange(6.0))) == [5]
    assert idx(cand.local_maxima(-np.arange(6.0))) == [0]


def test_size_drops():
    sizes = [100, 400, 100, 200, 200, 50]
    assert idx(cand.size_drops(sizes, input_size=30)) == [2, 5]
    assert idx(cand.size_drops(sizes, input_size=300)) == [0, 2, 5]
    assert idx(cand.size_drops(sizes)) == [2, 5]


def _curve(values, classes=None, input_point=False):
    """A curve table (cui.curve's layout) from log10 values per group."""
    rows = []
    groups = [("all", -1, values)] + [(n, k, v) for k, (n, v) in enumerate((classes or {}).items())]
    for group, k, vals in groups:
        if input_point:
            rows.append((-1, "input", "input", group, k, 10, 10.0 ** vals[0], 0.0, vals[0]))
        for i, v in enumerate(vals):
            rows.append((i, f"m{i}", f"L{i}", group, k, 10, 10.0**v, 0.0, v))
    return pd.DataFrame(rows, columns=list(cui.COLUMNS))


SIZES = {f"m{i}": s for i, s in enumerate([400, 400, 100, 200, 200, 50, 50])}


def test_duplicated_input_point_changes_nothing():
    # the public code's curve: input = first layer, second lower -> it would star x=1
    values = [-5.0, -5.5, -4.0, -4.2, -3.0, -3.5, -3.9]
    with_input = cand.select(_curve(values, input_point=True), SIZES)
    without = cand.select(_curve(values), SIZES)
    pd.testing.assert_frame_equal(with_input, without)
    assert (with_input["layer_index"] >= 0).all()  # the input is never a candidate
    # first layer lower than the second: not a maximum, with or without the input point
    rising = [-5.0, -4.0, -4.5, -4.2, -3.0, -3.5, -3.9]
    t = cand.select(_curve(rising, input_point=True), SIZES)
    assert idx(t["isplit_max"]) == [1, 4]
    # the public code's rule (ends never count) never reports the first layer
    t = cand.select(_curve(values, input_point=True), SIZES, ends=False)
    assert idx(t["isplit_max"]) == [2, 4]


def test_select_modes_flags_and_reasons():
    values = [-5.0, -5.5, -4.0, -4.2, -3.0, -3.5, -3.9]
    classes = {"cat": [-5, -5, -4, -4, -4, -3.5, -3.8], "dog": [-6, -1, -4, -4, -4, -4, -4]}
    c = _curve(values, classes)
    t = cand.select(c, SIZES, mode="union", input_size=300)
    assert list(t.columns) == list(cand.ALL_COLUMNS)
    assert idx(t["isplit_max"]) == [0, 2, 4]
    assert idx(t["isplit_best"]) == [4]
    assert idx(t["cde"]) == [2, 5]
    assert t["class_best"].tolist() == [[], ["dog"], [], [], [], ["cat"], []]
    assert t["reasons"].tolist() == [
        "isplit-max",
        "class-best:dog",
        "isplit-max;cde",
        "",
        "isplit-max;isplit-best",
        "class-best:cat;cde",
        "",
    ]
    assert idx(t["selected"]) == [0, 1, 2, 4, 5]
    assert idx(cand.select(c, SIZES, mode="isplit")["selected"]) == [0, 1, 2, 4, 5]
    assert idx(cand.select(c, SIZES, mode="isplit", per_class=False)["selected"]) == [0, 2, 4]
    assert idx(cand.select(c, SIZES, mode="cde")["selected"]) == [2, 5]
    t_all = cand.select(c, SIZES, mode="all", exclude_first=1, exclude_last=1)
    assert idx(t_all["selected"]) == [1, 2, 3, 4, 5]
    assert t_all["reasons"][3] == "oracle" and t_all["reasons"][0] == "isplit-max"
    # exclusions: flags stay (whole curve), best and class bests move into the range
    t = cand.select(c, SIZES, mode="isplit", exclude_first=2, exclude_last=3)
    assert idx(t["allowed"]) == [2, 3]
    assert idx(t["isplit_best"]) == [2]
    assert t["class_best"].tolist()[2:4] == [["cat", "dog"], []]
    assert idx(t["selected"]) == [2]
    with pytest.raises(ValueError, match="leave none"):
        cand.select(c, SIZES, exclude_first=4, exclude_last=3)
    with pytest.raises(ValueError, match="mode"):
        cand.select(c, SIZES, mode="best")
    with pytest.raises(ValueError, match="no activation size"):
        cand.select(c, {"m0": 1})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return models.build("mobilenet_v2", 3)


def _samples_for(model, n_classes=3, per_class=4, seed=0):
    rng = np.random.default_rng(seed)
    points = models.probe_points(model)
    rows = []
    for s in range(n_classes * per_class):
        lab = s % n_classes
        for p in points:
            rows.append(
                (
                    s,
                    lab,
                    lab,
                    p.name,
                    p.index,
                    p.label,
                    float(rng.lognormal(-6 + np.sin(p.index + lab), 0.5)),
                )
            )
    return pd.DataFrame(
        rows, columns=["sample", "label", "pred", "layer", "layer_index", "layer_label", "cui"]
    )


def _curve_file(model, path, n_classes=3, per_class=4, input_point=False):
    """curve.parquet as the pipeline writes it: the probe points' sizes in its metadata."""
    points = models.describe(model, models.probe_points(model), 32)
    meta = {
        "probe_points": [{"name": p.name, "bytes": p.bytes} for p in points],
        "input_bytes": 4 * 3 * 32 * 32,
    }
    names = ["a", "b", "c"] if n_classes == 3 else [f"class{i:02d}" for i in range(n_classes)]
    curve = cui.curve(_samples_for(model, n_classes, per_class), names, input_point=input_point)
    schema = with_metadata(pa.Schema.from_pandas(curve, preserve_index=False), meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(curve, schema=schema, preserve_index=False), path)
    return {p.name: p.bytes for p in points}


def test_run_writes_deterministic_tsv(tmp_path, model):
    curve_path = tmp_path / "cui" / "curve.parquet"
    sizes = _curve_file(model, curve_path)
    out, every = tmp_path / "candidates.tsv", tmp_path / "candidates_all.tsv"
    chosen = cand.run(curve_path=curve_path, cfg={"mode": "union"}, out_tsv=out, all_tsv=every)
    text = out.read_text()
    assert text.splitlines()[0].split("\t") == list(cand.COLUMNS)
    back = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert back["layer"].tolist() == chosen["layer"].tolist()
    assert back["layer_index"].is_monotonic_increasing
    assert back["bytes"].tolist() == [sizes[n] for n in back["layer"]]
    assert back["reasons"].str.len().gt(0).all()
    all_points = read_candidates(every)
    assert len(all_points) == len(sizes) and list(all_points.columns) == list(cand.ALL_COLUMNS)
    assert all_points["selected"].dtype == bool and all_points["selected"].sum() == len(back)
    assert sum(len(c) for c in all_points["class_best"]) == 3  # each class has one best split
    # rerun: byte-identical, and an identical file is not rewritten (mtime kept)
    os.utime(out, ns=(1, 1))
    cand.run(curve_path=curve_path, cfg={"mode": "union"}, out_tsv=out, all_tsv=every)
    assert out.read_text() == text and out.stat().st_mtime_ns == 1
    assert not list(tmp_path.glob(".*tmp*"))


def test_run_names_a_curve_without_sizes(tmp_path, model):
    curve_path = tmp_path / "curve.parquet"
    cui.curve(_samples_for(model), ["a", "b", "c"]).to_parquet(curve_path)
    with pytest.raises(ValueError, match="activation sizes.*rerun the importance stage"):
        cand.run(curve_path=curve_path, cfg={}, out_tsv=tmp_path / "c.tsv", all_tsv=tmp_path / "a")
    assert not (tmp_path / "c.tsv").exists()


def test_class_names_with_separators_survive_the_file(tmp_path):
    values = [-5.0, -4.0, -4.5]
    c = _curve(values, {"a;b": [-1, -2, -3], "cat": [-3, -2, -1]})
    t = cand.select(c, {f"m{i}": 10 - i for i in range(3)}, input_size=300)
    path = tmp_path / "all.tsv"
    write_tsv(t.assign(class_best=[json.dumps(x) for x in t["class_best"]]), path)
    back = read_candidates(path)
    assert back["class_best"].tolist() == [["a;b"], [], ["cat"]]
    assert back["isplit_best"].tolist() == [False, True, False]
