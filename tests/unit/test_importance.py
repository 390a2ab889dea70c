"""isplit.importance: the batched extraction against a per-image reference of the public code's
algorithm and against Captum; the public-code variant; the Parquet files.

Models have random weights (fixed seed), 5 classes and tiny inputs (32 px; 64 px where
train-mode BatchNorm needs more than one value per channel at ResNet's last stage). The
reference comparisons run in float64 so that they test the algorithm, not float32 rounding
(a ReLU of a channel mean can cancel, which amplifies rounding in relative terms).
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from isplit.config import settings
from isplit.importance import gradcam as importance
from isplit.importance import stage
from isplit.io.tables import read_metadata
from isplit.nets import models
from tools.reference import reference_cui

NAMES = ("vgg16", "resnet50", "mobilenet_v2")


def _model(name: str, num_classes: int = 5, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.build(name, num_classes)


def _data(n: int, size: int, dtype=torch.float32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g, dtype=dtype)
    y = torch.tensor([0, 3, 1, 4, 2][:n])
    return x, y


def _wide(frame: pd.DataFrame) -> np.ndarray:
    return frame.pivot(index="sample", columns="layer_index", values="cui").to_numpy()


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_per_image_reference(name):
    model = _model(name).double()
    points = models.probe_points(model, input_size=32)
    x, y = _data(2, 32, torch.float64)
    loader = [(x[:1], y[:1]), (x[1:], y[1:])]  # two batches: sample positions run on
    stats = importance.ChannelStats(5)
    frame = importance.extract(model, points, loader, channel_stats=stats)
    assert frame["sample"].tolist() == [i for i in range(2) for _ in points]
    ref, pred, alphas = reference_cui(model, points, x, y, return_alpha=True)
    ours = _wide(frame)
    assert (ref > 0).mean() > 0.5  # the comparison is not about zeros
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-12 * np.abs(ref).max())
    assert frame.groupby("sample")["pred"].first().tolist() == pred.tolist()
    # per-class channel sums: each class here has one image, so mean_alpha is its α
    for n, label in enumerate(y.tolist()):
        for j, p in enumerate(points):
            np.testing.assert_allclose(
                stats.sum_alpha[p.index][label], alphas[n][j].numpy(), rtol=1e-6, atol=1e-14
            )


@pytest.mark.parametrize("name", NAMES)
def test_equals_captum_layer_gradcam(name):
    from captum.attr import LayerGradCam

    model = _model(name)
    points = models.probe_points(model, input_size=32)
    chans = {p.index: p.shape[0] for p in models.describe(model, points, 32)}
    x, y = _data(2, 32)
    ours = _wide(importance.extract(model, points, [(x, y)]))
    model.eval().requires_grad_(False)
    modules = dict(model.named_modules())
    for p in points:
        attr = LayerGradCam(model, modules[p.name]).attribute(
            x, target=y, relu_attributions=True, attr_dim_summation=True
        )
        cap = attr.mean(dim=(1, 2, 3)).detach().numpy() / chans[p.index]
        # float32: tolerance relative to the layer's scale (the map is a cancelling sum)
        scale = np.abs(cap).max()
        np.testing.assert_allclose(
            ours[:, p.index], cap, rtol=1e-4, atol=1e-5 * scale, err_msg=p.name
        )


def test_public_code_variant_reproduces_train_mode_bn_collapse():
    model = _model("resnet50")
    before = copy.deepcopy(model.state_dict())
    x, y = _data(2, 64)
    collapsed = {"conv1", "maxpool", "layer1.2", "layer2.3", "layer3.5"}  # docs/methods.md §1.4

    def max_alpha(variant):
        points = models.probe_points(model, variant, 64)
        stats = importance.ChannelStats(5)
        importance.extract(
            model, points, [(x, y)], target="pred", variant=variant, channel_stats=stats
        )
        return {p.name: float(np.abs(stats.sum_alpha[p.index]).max()) for p in points}

    public = max_alpha("public-code")
    others = [v for k, v in public.items() if k not in collapsed]
    assert max(public[k] for k in collapsed) < 1e-4 * min(others)
    assert max(public[k] for k in collapsed) < 1e-6 and min(others) > 1e-4
    paper = max_alpha("paper")
    assert min(paper.values()) > 1e-4  # eval mode: no collapse anywhere
    # the caller's model is untouched: BN running stats, mode, grad flags
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training  # build() returns a model in train mode; extract left it so
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name,size", [("resnet50", 64), ("vgg16", 32)])
def test_public_code_variant_equals_train_mode_reference(name, size):
    """Batch-1 train mode (BN batch statistics, VGG's dropout with the same RNG stream), the
    predicted class and the public probe list (VGG pre-ReLU convs + block1_conv2 quirk)."""
    model = _model(name)
    points = models.probe_points(model, "public-code", size)
    x, y = _data(2, size)
    torch.manual_seed(7)
    frame = importance.extract(model, points, [(x, y)], target="pred", variant="public-code")
    torch.manual_seed(7)
    ref, pred = reference_cui(copy.deepcopy(model), points, x, y, target="pred", train_mode=True)
    np.testing.assert_allclose(_wide(frame), ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    assert frame.groupby("sample")["pred"].first().tolist() == pred.tolist()


def test_extract_columns_dtypes_options():
    model = _model("mobilenet_v2")
    points = models.probe_points(model, input_size=32)
    x, y = _data(3, 32)
    frame = importance.extract(model, points, [(x, y)])
    assert list(frame.columns) == ["sample", "label", "pred", "layer", "layer_index", "cui"]
    dtypes = {c: str(t) for c, t in frame.dtypes.items() if c != "layer"}
    assert dtypes == {
        "sample": "int64",
        "label": "int64",
        "pred": "int64",
        "layer_index": "int64",
        "cui": "float64",
    }
    assert pd.api.types.is_string_dtype(frame["layer"])
    assert len(frame) == 3 * len(points)
    assert frame["layer"].tolist()[: len(points)] == [p.name for p in points]
    assert (frame["cui"] >= 0).all()
    # plain module names are accepted and give the same numbers
    by_name = importance.extract(model, [p.name for p in points], [(x, y)])
    pd.testing.assert_frame_equal(by_name, frame)
    # channel_reduce=sum is the mean times the channel count
    chans = np.array([p.shape[0] for p in models.describe(model, points, 32)])
    summed = importance.extract(model, points, [(x, y)], channel_reduce="sum")
    np.testing.assert_allclose(_wide(summed), _wide(frame) * chans, rtol=1e-5)
    # target=pred is target=label with the labels set to the predictions
    pred = torch.tensor(frame.groupby("sample")["pred"].first().to_numpy())
    by_pred = importance.extract(model, points, [(x, y)], target="pred")
    as_label = importance.extract(model, points, [(x, pred)])
    np.testing.assert_array_equal(_wide(by_pred), _wide(as_label))
    # a sub-list of probe points keeps their indices
    sub = importance.extract(model, points[3:5], [(x, y)])
    assert sorted(set(sub["layer_index"])) == [3, 4]
    with pytest.raises(ValueError, match="target"):
        importance.extract(model, points, [(x, y)], target="gt")
    with pytest.raises(ValueError, match="'nope' is not a cut point of MobileNetV2"):
        importance.extract(model, ["nope"], [(x, y)])


def test_run_writes_streamed_parquet(tmp_path, array_dataset):
    torch.manual_seed(0)
    model = models.build("mobilenet_v2", 3)
    classes = ["horizontal", "vertical", "blob"]
    meta = {
        "model": "mobilenet_v2",
        "num_classes": 3,
        "classes": classes,
        "input": {"image_size": 32, "grayscale_to_rgb": True, "normalize": "imagenet"},
    }
    models.save_model(tmp_path / "model.pt", model, meta)
    cfg = {"batch_size": 4, "max_images": 12, "row_group_rows": 1}
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        summary = stage.run(
            model_path=tmp_path / "model.pt",
            dataset_dir=array_dataset,
            samples_out=out / "samples.parquet",
            channels_out=out / "channels.parquet",
            cfg=cfg,
            seed=0,
            threads=1,
        )
        assert summary["n_images"] == 12 and summary["n_layers"] == 19
        assert sorted(p.name for p in out.iterdir()) == ["channels.parquet", "samples.parquet"]
        outs.append(out)
    for fname in ("samples.parquet", "channels.parquet"):  # deterministic bytes
        assert (outs[0] / fname).read_bytes() == (outs[1] / fname).read_bytes()

    s_file = pq.ParquetFile(outs[0] / "samples.parquet")
    assert s_file.schema_arrow.equals(importance.SAMPLES_SCHEMA, check_metadata=False)
    assert s_file.metadata.num_row_groups == 3  # one per batch of 4 images
    samples = pd.read_parquet(outs[0] / "samples.parquet")
    assert len(samples) == 12 * 19
    assert samples["sample"].tolist() == sorted(samples["sample"].tolist())
    assert (samples["class_name"] == np.array(classes)[samples["label"]]).all()
    assert samples["sample_id"].str.startswith("synthetic/").all()
    md = read_metadata(outs[0] / "samples.parquet")
    assert md["variant"] == "paper" and md["target"] == "label" and md["classes"] == classes
    assert [p["label"] for p in md["probe_points"]][:2] == ["f0", "f1"]
    # the CDE curve travels with the data: sizes at the model's input size
    sizes = [p.bytes for p in models.describe(model, models.probe_points(model, input_size=32), 32)]
    assert [p["bytes"] for p in md["probe_points"]] == sizes
    assert md["input_bytes"] == 4 * 3 * 32 * 32

    c_file = pq.ParquetFile(outs[0] / "channels.parquet")
    assert c_file.schema_arrow.equals(importance.CHANNELS_SCHEMA, check_metadata=False)
    channels = pd.read_parquet(outs[0] / "channels.parquet")
    chans = [
        p.shape[0] for p in models.describe(model, models.probe_points(model, input_size=32), 32)
    ]
    assert len(channels) == 3 * sum(chans)
    assert channels.groupby("class")["n"].first().tolist() == [4, 4, 4]

    # the same numbers as extract() on the same loader
    from torch.utils.data import DataLoader

    from isplit.data.loader import ManifestDataset, transform_from_config

    ds = ManifestDataset(
        array_dataset, "val", transform_from_config(meta["input"]), subset=12, seed=0
    )
    stats = importance.ChannelStats(3)
    frame = importance.extract(
        model,
        models.probe_points(model, input_size=32),
        DataLoader(ds, batch_size=4),
        channel_stats=stats,
    )
    np.testing.assert_allclose(samples["cui"].to_numpy(), frame["cui"].to_numpy(), rtol=1e-6)
    first = channels[(channels["layer_index"] == 5) & (channels["class"] == 1)]
    np.testing.assert_allclose(first["mean_alpha"].to_numpy(), stats.sum_alpha[5][1] / 4, rtol=1e-6)


def test_importance_settings():
    assert settings("importance", {}).resolved_target == "label"
    c = settings("importance", {"variant": "public-code"})
    assert c.resolved_target == "pred" and c.batch_size == 32 and c.max_images is None
    both = settings("importance", {"variant": "public-code", "target": "label"})
    assert both.resolved_target == "label"
    with pytest.raises(ValueError, match="importance.channel_reduce: 'max' is not one of"):
        settings("importance", {"channel_reduce": "max"})


def test_public_code_variant_explains_too_small_inputs():
    model = _model("mobilenet_v2")
    x, y = _data(1, 32)  # the last BatchNorm sees 1x1 maps: undefined at batch size 1
    with pytest.raises(ValueError, match="image_size"):
        importance.extract(
            model, models.probe_points(model, "public-code"), [(x, y)], variant="public-code"
        )
