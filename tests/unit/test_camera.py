"""The remote-computing options (raw frame, JPEG) and the pixel baseline, on synthetic data."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from isplit.camera import frames
from isplit.evaluation import baseline
from isplit.nets import models
from tools.synthetic import INPUT


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cam") / "model.pt"
    models.save_model(
        path,
        models.build("mobilenet_v2", 3),
        {"model": "mobilenet_v2", "num_classes": 3, "classes": ["h", "v", "b"], "input": INPUT},
    )
    return path


def test_raw_and_jpeg_options(model_path, array_dataset, tmp_path):
    table = frames.run(
        model_path=model_path,
        dataset_dir=array_dataset,
        out_path=tmp_path / "camera.parquet",
        predictions_path=tmp_path / "pred.parquet",
        qualities=[90, 30],
        eval_subset=None,
        seed=0,
        n_boot=100,
        threads=1,
    )
    assert table["option"].tolist() == ["raw", "jpeg90", "jpeg30"]
    raw = table.set_index("option").loc["raw"]
    assert raw["bytes_mean"] == 28 * 28 and json.loads(raw["frame_shape"]) == [1, 28, 28]
    assert raw["encode_flops"] == 0 and raw["resize_flops"] > 0
    q90, q30 = (table.set_index("option").loc[o] for o in ("jpeg90", "jpeg30"))
    assert q30["bytes_mean"] < q90["bytes_mean"]  # lower quality, fewer bytes
    for _, r in table.iterrows():
        for m in ("top1", "balanced_accuracy"):
            assert r[m + "_lo"] <= r[m] <= r[m + "_hi"]
    pred = pd.read_parquet(tmp_path / "pred.parquet")
    assert set(pred["split"]) == {"val", "test"} and len(pred) == 3 * 2 * 60
    # the raw option is the model's own prediction on the undistorted frame
    from isplit.data.loader import ManifestDataset, transform_from_config

    ds = ManifestDataset(array_dataset, "test", transform_from_config(INPUT))
    model, _ = models.load_model(model_path)
    with torch.no_grad():
        ref = model.eval()(torch.stack([ds[i][0] for i in range(len(ds))])).argmax(1).numpy()
    got = pred[(pred["option"] == "raw") & (pred["split"] == "test")]["pred"].to_numpy()
    np.testing.assert_array_equal(got, ref)


def test_resize_work_grows_with_the_frame():
    small = frames.resize_flops((1, 100, 100), 96)
    big = frames.resize_flops((1, 300, 300), 96)
    assert 0 < small < big
    assert frames.resize_flops((3, 300, 300), 96) == 3 * big


def test_pixel_baseline_learns_the_synthetic_classes(array_dataset, tmp_path):
    out = baseline.run(dataset_dir=array_dataset, out_path=tmp_path / "b.json", size=16, n_boot=100)
    assert out["chosen_l2"] in baseline.GRID and out["chosen_on"].startswith("validation")
    assert out["test"]["balanced_accuracy"] > 0.9  # stripes and blobs are linearly separable
    lo, hi = out["test"]["balanced_accuracy_ci"]
    assert lo <= out["test"]["balanced_accuracy"] <= hi
    assert json.loads((tmp_path / "b.json").read_text())["n"] == {
        "train": 180,
        "val": 60,
        "test": 60,
    }
