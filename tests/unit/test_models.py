import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from isplit.nets import catalog, graph, models

# Activation bytes at 224x224, float32, read off the public code's size curve (docs/methods.md §3.2)
VGG16_BYTES = [
    12845056,
    12845056,
    3211264,
    6422528,
    6422528,
    1605632,
    3211264,
    3211264,
    3211264,
    802816,
    1605632,
    1605632,
    1605632,
    401408,
    401408,
    401408,
    401408,
    100352,
]
RESNET50_BYTES = [3211264, 802816] + [3211264] * 3 + [1605632] * 4 + [802816] * 6 + [401408] * 3


FAMILIES = ["vgg16", "resnet50", "mobilenet_v2", "resnet18", "efficientnet_b0",
            "convnext_tiny", "mobilenet_v3_small", "regnet_y_400mf", "alexnet",
            "shufflenet_v2_x0_5", "vgg11_bn"]  # fmt: skip
MAIN = json.loads((Path(__file__).parent / "data" / "main_probe_points.json").read_text())


@pytest.mark.parametrize("name", FAMILIES + ["densenet121", "googlenet", "swin_t"])
def test_graph_halves_reproduce_forward(name):
    """At every probe point, head and tail cut from the traced graph compose to the model,
    bit for bit, at two batch sizes; the halves share the model's parameters."""
    torch.manual_seed(0)
    model = models.build(name, 7).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    mg = models.model_graph(model, 64)
    pts = models.probe_points(model, input_size=64)
    assert len(pts) >= 5
    assert [p.cut_index for p in pts] == sorted(p.cut_index for p in pts)
    for p in pts[:: max(1, len(pts) // 6)] + pts[-1:]:
        head, tail = graph.cut(mg, p.name)
        with torch.no_grad():
            a = head(x)
            assert tuple(a.shape[1:]) == p.shape and p.bytes == 4 * a[0].numel()
            assert torch.equal(tail(a), ref), p.name
            # batch 1: the batch size the tail reads comes from the cut tensor, not the trace
            torch.testing.assert_close(tail(head(x[:1])), ref[:1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "vgg11_bn", "regnet_x_400mf"])
def test_probe_points_are_mains(name):
    """The default probe points (both variants) of a few of the 56 models main cut by hand
    (the rest: the slow test below)."""
    check_against_main(name)


@pytest.mark.slow
def test_every_one_of_mains_56_models_keeps_its_probe_points():
    for name in MAIN["probe_points"]:
        check_against_main(name)


def check_against_main(name):
    with models.meta_init():
        model = models.build(name, 1000)
    for variant in models.VARIANTS:
        got = [[p.name, p.label] for p in models.probe_points(model, variant, 64)]
        assert got == MAIN["probe_points"][name][variant], (name, variant)
        cuts = {c.name for c in models.cut_points(model, 64)}
        assert {n for n, _ in got} <= cuts


@pytest.mark.slow
def test_every_torchvision_classifier_has_cut_points():
    """Every classifier of torchvision's registry traces and has probe points (on the meta
    device: structure only, no weights)."""
    sizes = {"maxvit_t": 224, "vit_h_14": 112, "inception_v3": 96}
    counts = {}
    for name in torchvision.models.list_models(module=torchvision.models):
        size = sizes.get(name, 64)
        with models.meta_init():
            model = models.build(name, 10, image_size=size)
        cuts = models.cut_points(model, size)
        counts[name] = (len(cuts), sum(c.probe for c in cuts))
        assert counts[name][1] >= 5, (name, counts[name])
    assert set(counts) == set(catalog.MODEL_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MAIN["cui"]))
def test_cui_equals_mains(name):
    """Grad-CAM CUI through the graph's taps equals main's hooks on modules, to 1e-6."""
    check_cui(name)


def test_cui_equals_mains_for_the_default_model():
    check_cui("mobilenet_v2")


def check_cui(name):
    from isplit.importance import gradcam

    rec = MAIN["cui"][name]
    torch.manual_seed(0)
    model = models.build(name, 5).eval()
    size = rec["image_size"]
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])
    for variant in ("paper", "public-code"):
        if variant not in rec:
            continue
        pts = models.probe_points(model, variant, size)
        assert [p.name for p in pts] == rec[variant]["layers"]
        frame = gradcam.extract(model, pts, [(x, y)], target="label", variant=variant)
        got = frame.pivot(index="sample", columns="layer_index", values="cui").to_numpy()
        np.testing.assert_allclose(got, np.array(rec[variant]["cui"]), rtol=0, atol=1e-6)


def test_paper_probe_points_and_sizes():
    vgg = models.build("vgg16", 10)
    pts = models.describe(vgg, input_size=224)
    assert [p.bytes for p in pts] == VGG16_BYTES
    assert pts[0].label == "block1_conv1" and pts[-1].label == "block5_pool"
    # post-ReLU conv outputs in the paper variant
    assert all(isinstance(vgg.get_submodule(p.name), (nn.ReLU, nn.MaxPool2d)) for p in pts)

    resnet = models.build("resnet50", 10)
    pts = models.describe(resnet, input_size=224)
    assert [p.bytes for p in pts] == RESNET50_BYTES
    assert [p.name for p in pts[:3]] == ["relu", "maxpool", "layer1.0"]
    assert pts[-1].label == "layer4_bottleneck_3"

    mnv2 = models.build("mobilenet_v2", 10)
    pts = models.probe_points(mnv2)
    assert [p.name for p in pts] == [f"features.{i}" for i in range(19)]


def test_public_code_probe_points_keep_its_quirks():
    vgg = models.build("vgg16", 10)
    pts = models.probe_points(vgg, "public-code")
    by_label = {p.label: p.name for p in pts}
    assert len(pts) == 18
    assert by_label["block1_conv1"] == "features.0"  # conv output, before its ReLU
    assert by_label["block1_conv2"] == "features.3"  # the skip-list bug: a ReLU
    assert by_label["block2_conv1"] == "features.5"
    resnet = models.build("resnet50", 10)
    assert models.probe_points(resnet, "public-code")[0].name == "conv1"
    with pytest.raises(ValueError, match="variant"):
        models.probe_points(vgg, "other")


@pytest.mark.slow  # ~6 s
def test_head_replaced_other_weights_kept(tmp_path):
    torch.manual_seed(1)
    src = torchvision_model("vgg16")
    path = tmp_path / "vgg.pth"
    torch.save(src.state_dict(), path)
    m = models.build("vgg16", 5, weights=path)
    sd, ref = m.state_dict(), src.state_dict()
    assert m.classifier[6].out_features == 5
    for k in ref:
        if k.startswith("classifier.6."):
            continue
        assert torch.equal(sd[k], ref[k]), k  # FC1/FC2 keep their pretrained weights
    assert models.classifier_head(m)[0] == "classifier.6"


def test_bad_weights_are_named(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save(torchvision_model("resnet18").state_dict(), path)
    with pytest.raises(ValueError, match="do not fit mobilenet_v2"):
        models.build("mobilenet_v2", 3, weights=path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        models.build("mobilenet_v2", 3, weights=junk)
    with pytest.raises(ValueError, match=r"missing keys \['features.0.0.weight'"):
        models.build("mobilenet_v2", 3, weights=path)
    torch.save(torchvision_model("resnet18"), tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="pickled object .*ResNet.*save model.state_dict"):
        models.build("resnet18", 3, weights=tmp_path / "pickled.pth")
    with pytest.raises(models.UnsupportedModel, match="unknown torchvision model"):
        models.build("no_such_net", 3)


def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(2)
    m = models.build("resnet18", 4).eval()
    models.save_model(tmp_path / "m.pt", m, {"model": "resnet18", "num_classes": 4, "x": [1]})
    m2, meta = models.load_model(tmp_path / "m.pt")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), m2.eval()(x))
    assert meta["x"] == [1]


def torchvision_model(name):
    import torchvision

    return torchvision.models.get_model(name, weights=None)
