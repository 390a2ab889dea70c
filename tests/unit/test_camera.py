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


def test_paired_difference_with_the_fine_tuned_model(array_dataset, tmp_path):
    """The comparison pairs the images: a model right exactly where the baseline is right
    differs by 0 with a zero-width interval; one always wrong differs by minus the baseline."""
    import pandas as pd

    first = baseline.run(dataset_dir=array_dataset, out_path=tmp_path / "a.json", size=16)
    _, labels, ids = baseline.pixels(array_dataset, "test", 16, None, 0)
    x = [baseline.pixels(array_dataset, s, 16, None, 0)[0] for s in ("train", "test")]
    mean, std = x[0].mean(0), x[0].std(0) + 1e-6
    w = baseline.fit((x[0] - mean) / std, baseline.pixels(array_dataset, "train", 16, None, 0)[1],
                     int(labels.max()) + 1, first["chosen_l2"])  # fmt: skip
    same = baseline.predict(w, (x[1] - mean) / std)
    for name, pred in (("same", same), ("wrong", (labels + 1) % (labels.max() + 1))):
        path = tmp_path / f"{name}.parquet"
        rows = {"split": "test", "sample_id": ids[::-1], "label": labels[::-1], "pred": pred[::-1]}
        pd.DataFrame(rows).to_parquet(path)  # another order: pairs are found by sample id
        out = baseline.run(dataset_dir=array_dataset, out_path=tmp_path / "b.json", size=16,
                           n_boot=200, finetuned_predictions=path)  # fmt: skip
        d = out["finetuned_minus_baseline"]["balanced_accuracy"]
        if name == "same":
            assert d["value"] == 0 and d["ci"] == [0, 0] and d["n"] == len(ids)
        else:
            assert d["value"] == pytest.approx(-out["test"]["balanced_accuracy"])
            assert d["ci"][0] <= d["value"] <= d["ci"][1] < 0
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"split": "test", "sample_id": ["x"], "label": [0], "pred": [0]}).to_parquet(bad)
    with pytest.raises(ValueError, match="no test prediction"):
        baseline.run(dataset_dir=array_dataset, out_path=tmp_path / "c.json", size=16,
                     finetuned_predictions=bad)  # fmt: skip
    assert not (tmp_path / "c.json").exists()
    assert json.loads((tmp_path / "b.json").read_text())["n"]["test"] == len(ids)
