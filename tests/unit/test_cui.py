"""isplit.importance.cui: the curve over all images and per class, the input point, the file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from isplit.importance import cui
from isplit.io.tables import METADATA_KEY, read_metadata

CLASSES = ["cat", "dog", "cow"]


def _samples(n=30, n_layers=5, seed=0, counts=(5, 15, 10)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(labels)
    rows = []
    for s, lab in enumerate(labels):
        for li in range(n_layers):
            rows.append(
                (
                    s,
                    int(lab),
                    int(lab),
                    f"m.{li}",
                    li,
                    f"L{li}",
                    float(rng.lognormal(-8 + li % 3, 1.0)),
                )
            )
    return pd.DataFrame(
        rows, columns=["sample", "label", "pred", "layer", "layer_index", "layer_label", "cui"]
    )


def test_curve_columns_and_values():
    s = _samples()
    c = cui.curve(s, CLASSES)
    assert list(c.columns) == list(cui.COLUMNS)
    assert c["group"].drop_duplicates().tolist() == ["all", "cat", "dog", "cow"]
    glob = c[c["group"] == "all"]
    assert glob["layer_index"].tolist() == [0, 1, 2, 3, 4]
    assert glob["label"].tolist() == ["L0", "L1", "L2", "L3", "L4"]
    assert (glob["class"] == -1).all() and (glob["n"] == 30).all()
    expect = s.groupby("layer_index")["cui"].mean().to_numpy()
    np.testing.assert_allclose(glob["mean"], expect, rtol=1e-12)
    np.testing.assert_allclose(glob["std"], s.groupby("layer_index")["cui"].std(ddof=1), rtol=1e-12)
    np.testing.assert_allclose(glob["log10_mean"], np.log10(expect), rtol=1e-12)
    assert c[c["group"] == "dog"]["n"].tolist() == [15] * 5
    assert c[c["group"] == "dog"]["class"].tolist() == [1] * 5


def test_per_class_means_weighted_by_counts_equal_global_mean():
    s = _samples(counts=(3, 17, 10))
    c = cui.curve(s, CLASSES)
    per = c[c["group"] != "all"]
    weighted = (per["mean"] * per["n"]).groupby(per["layer_index"]).sum() / per.groupby(
        "layer_index"
    )["n"].sum()
    glob = c[c["group"] == "all"].set_index("layer_index")["mean"]
    np.testing.assert_allclose(weighted.to_numpy(), glob.to_numpy(), rtol=1e-12)


def test_input_point_zero_and_missing_class():
    s = _samples(counts=(10, 0, 5))
    s.loc[s["layer_index"] == 2, "cui"] = 0.0
    c = cui.curve(s, CLASSES, input_point=True)
    assert c["group"].drop_duplicates().tolist() == ["all", "cat", "cow"]  # no empty class
    glob = c[c["group"] == "all"].reset_index(drop=True)
    assert glob["layer_index"].tolist() == [-1, 0, 1, 2, 3, 4]
    assert glob.loc[0, "layer"] == "input" and glob.loc[0, "label"] == "input"
    assert glob.loc[0, "mean"] == glob.loc[1, "mean"]
    assert glob.loc[3, "log10_mean"] == -np.inf
    without = cui.curve(s, CLASSES)
    assert len(c) == len(without) + 3  # one input row per group
    # labels fall back to module names
    no_labels = cui.curve(s.drop(columns="layer_label"), CLASSES)
    assert no_labels["label"].tolist()[:2] == ["m.0", "m.1"]
    with pytest.raises(ValueError, match="labels outside"):
        cui.curve(s, ["cat"])


def test_run_reads_metadata_and_writes_schema(tmp_path):
    s = _samples()
    s["class_name"] = np.array(CLASSES)[s["label"]]
    meta = {"variant": "public-code", "classes": CLASSES, "model": "vgg16"}
    table = pa.Table.from_pandas(s, preserve_index=False).replace_schema_metadata(
        {METADATA_KEY: json.dumps(meta).encode()}
    )
    pq.write_table(table, tmp_path / "samples.parquet")
    out = tmp_path / "cui" / "curve.parquet"
    c = cui.run(samples_path=tmp_path / "samples.parquet", out_path=out)
    assert pq.read_schema(out).equals(cui.SCHEMA, check_metadata=False)
    md = read_metadata(out)
    assert md["input_point"] is True and md["classes"] == CLASSES and md["model"] == "vgg16"
    back = pd.read_parquet(out)
    assert (back["layer_index"] == -1).sum() == 4  # public-code: input point in every group
    pd.testing.assert_frame_equal(back, c, check_dtype=False)
    first = out.read_bytes()
    cui.run(samples_path=tmp_path / "samples.parquet", out_path=out)
    assert out.read_bytes() == first  # deterministic
    # input_point overrides the variant's own
    c2 = cui.run(samples_path=tmp_path / "samples.parquet", out_path=out, input_point=False)
    assert (c2["layer_index"] >= 0).all() and set(CLASSES) <= set(c2["group"])
