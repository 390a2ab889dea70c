import pytest
import torch
from torch import nn

from isplit.nets import models

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


@pytest.mark.parametrize(
    "name",
    [
        "vgg16",
        "resnet50",
        "mobilenet_v2",
        "resnet18",
        "efficientnet_b0",
        "convnext_tiny",
        "mobilenet_v3_small",
        "regnet_y_400mf",
        "alexnet",
        "shufflenet_v2_x0_5",
        "vgg11_bn",
    ],
)
def test_chain_reproduces_forward(name):
    torch.manual_seed(0)
    model = models.build(name, 7).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), models.run_chain(models.chain(model), x))
    pts = models.probe_points(model)
    assert len(pts) >= 5
    names = dict(model.named_modules())
    assert all(p.name in names for p in pts)
    assert [p.chain_index for p in pts] == sorted(p.chain_index for p in pts)


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
    with pytest.raises(models.UnsupportedModel, match="DenseNet"):
        models.build("densenet121", 3)
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
