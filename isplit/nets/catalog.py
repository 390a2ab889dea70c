"""The classifiers isplit can split, by name, without importing torch.

The workflow checks an experiment's ``model`` against :data:`MODEL_NAMES` when it parses the
config, so a typo fails in the dry run with the list of names, not after the download.
The list is torchvision's classifiers of the families :func:`isplit.nets.models.chain` knows
(``tests`` check it against torchvision's own registry).
"""

from __future__ import annotations

#: torchvision model modules whose classifiers :func:`isplit.nets.models.chain` can cut
FAMILIES = ("alexnet", "convnext", "efficientnet", "mobilenetv2", "mobilenetv3", "regnet",
            "resnet", "shufflenetv2", "vgg")  # fmt: skip

MODEL_NAMES = (
    "alexnet",
    "convnext_base",
    "convnext_large",
    "convnext_small",
    "convnext_tiny",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_v2_l",
    "efficientnet_v2_m",
    "efficientnet_v2_s",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "regnet_x_16gf",
    "regnet_x_1_6gf",
    "regnet_x_32gf",
    "regnet_x_3_2gf",
    "regnet_x_400mf",
    "regnet_x_800mf",
    "regnet_x_8gf",
    "regnet_y_128gf",
    "regnet_y_16gf",
    "regnet_y_1_6gf",
    "regnet_y_32gf",
    "regnet_y_3_2gf",
    "regnet_y_400mf",
    "regnet_y_800mf",
    "regnet_y_8gf",
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "resnext50_32x4d",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "wide_resnet101_2",
    "wide_resnet50_2",
)


def check_model_name(name: str, where: str = "model") -> None:
    """Raise ValueError naming ``where`` and the supported names unless ``name`` is one."""
    if name not in MODEL_NAMES:
        raise ValueError(
            f"{where}: {name!r} is not a supported model; supported: {', '.join(MODEL_NAMES)}"
        )
