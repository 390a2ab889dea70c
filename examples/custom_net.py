"""A small CNN of one's own, split by isplit: ``model: "python:examples/custom_net.py:build"``.

It has what a hand-written layer list cannot cut but the traced graph can: a residual block
(whose skip connection makes its inside no cut point), two parallel branches joined by a
concatenation, and functional glue in ``forward`` (ReLU, pooling, flatten). ``isplit
probe-points --model python:examples/custom_net.py:build --input-size 32 --all`` lists its cut
points. The workflow imports this file only because a config names it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Residual(nn.Module):
    """Two 3×3 convolutions with a skip connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class Branches(nn.Module):
    """A 1×1 and a 3×3 path side by side, concatenated (an Inception-style block)."""

    def __init__(self, cin: int, each: int):
        super().__init__()
        self.narrow = nn.Conv2d(cin, each, 1)
        self.wide = nn.Conv2d(cin, each, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.narrow(x)), F.relu(self.wide(x))], dim=1)


class CustomNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.block1 = Residual(width)
        self.branches = Branches(width, width)
        self.block2 = Residual(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = self.block1(x)
        x = F.max_pool2d(x, 2)
        x = self.branches(x)
        x = self.block2(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def build(num_classes: int = 10) -> nn.Module:
    """The network with ``num_classes`` outputs (isplit passes the dataset's class count)."""
    return CustomNet(num_classes)
