"""Cut points from the traced graph (isplit.nets.graph, isplit.nets.blocks) on networks no
hand-written layer list knows: the worked example (a residual block, parallel branches,
functional glue) and a small token network (N x L x D activations)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from isplit.importance import gradcam, probe
from isplit.latency import compute
from isplit.nets import bottlenecks, graph, models, split

EXAMPLE = "python:examples/custom_net.py:build"


class TokenNet(nn.Module):
    """Patches → tokens (N × L × D, channels last) → two pre-norm residual MLP blocks → mean
    over tokens → classifier: a transformer's layout without attention."""

    def __init__(self, num_classes: int = 4, dim: int = 8):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.blocks = nn.Sequential(*[TokenBlock(dim) for _ in range(2)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = self.norm(self.blocks(x))
        return self.head(x.mean(1))


class TokenBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.ln, self.fc1, self.fc2 = (
            nn.LayerNorm(dim),
            nn.Linear(dim, 2 * dim),
            nn.Linear(2 * dim, dim),
        )

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.ln(x))))


def test_worked_example_cut_points():
    """Between blocks only: nothing inside the residual blocks or the branches is a cut point;
    functional ops of forward are named by their op; the probe points are the blocks."""
    torch.manual_seed(0)
    model = models.build(EXAMPLE, 5).eval()
    cuts = models.cut_points(model, 32)
    names = [c.name for c in cuts]
    assert names == ["stem", "bn", "relu", "block1.add", "block1", "max_pool2d", "branches",
                     "block2.add", "block2", "adaptive_avg_pool2d", "flatten"]  # fmt: skip
    assert [c.name for c in cuts if c.probe] == ["relu", "block1", "max_pool2d", "branches",
                                                 "block2"]  # fmt: skip
    by = {c.name: c for c in cuts}
    assert by["branches"].shape == (32, 16, 16) and by["branches"].bytes == 4 * 32 * 16 * 16
    assert by["block1"].flops > by["relu"].flops > 0 and by["block2"].layers == 7
    x = torch.randn(3, 3, 32, 32)
    mg = models.model_graph(model, 32)
    with torch.no_grad():
        ref = model(x)
        for c in cuts:
            head, tail = graph.cut(mg, c.name)
            assert torch.equal(tail(head(x)), ref), c.name
    with pytest.raises(ValueError, match="'block1.conv2' is not a cut point of CustomNet"):
        mg.point("block1.conv2")


def test_tokens_are_reduced_on_their_channel_axis():
    """CUI of an N × L × D point: α over the D channels averaged over the L tokens, the map
    over tokens (docs/methods.md, "Token activations"), computed by hand with autograd."""
    torch.manual_seed(0)
    model = TokenNet().eval()
    points = models.probe_points(model, input_size=16)
    assert [p.name for p in points] == ["patch", "blocks.0", "blocks.1", "norm"]
    assert [p.channel_axis for p in points] == [0, 1, 1, 1] and points[1].shape == (16, 8)
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 3])
    frame = gradcam.extract(model, points, [(x, y)])
    acts = {}
    hook = model.blocks[1].register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    logits = model(x)
    hook.remove()
    a = acts["a"]
    (g,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), a)
    alpha = g.mean(1)  # (N, D): over tokens
    cam = torch.relu((alpha[:, None, :] * a).mean(2))  # (N, L): over channels
    want = cam.mean(1).detach().numpy()
    got = frame[frame["layer"] == "blocks.1"].sort_values("sample")["cui"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # the linear probe pools tokens the same way: one feature per channel
    feats, _, _ = probe.pooled_features(model, points, [(x, y)], "cpu")
    np.testing.assert_allclose(feats[2], a.mean(1).detach().numpy(), rtol=1e-5, atol=1e-7)
    # and the ae bottleneck of a token point is pointwise: L tokens of D / ratio values
    s = split.split_model(model, "blocks.0", "ae", input_shape=(3, 16, 16), spec={"ratio": 4})
    assert isinstance(s.bottleneck, bottlenecks.PointwiseAE) and s.bottleneck.code_shape == (16, 2)
    assert s(x).shape == (2, 4)


def test_measured_table_times_the_device_half_as_one_program(tmp_path):
    """compute.side_times on a measured table: the fp32 'device' rows, LC's full model."""
    rows = [("f3", "device", "fp32", 0.002), ("f3", "device", "int8", 0.001),
            ("LC", "full", "fp32", 0.010), ("LC", "full", "int8", 0.006)]  # fmt: skip
    table = pd.DataFrame(rows, columns=["layer", "part", "precision", "median_s"])
    table = table.assign(model="m", input_size=32, p95_s=table["median_s"] * 1.5)
    path = tmp_path / "measured.parquet"
    table.to_parquet(path)
    t = compute.side_times(table, {"table": str(path)}, side="device", layers=["f3"])
    assert t == {"f3": 0.002, compute.LC: 0.010, compute.RC: 0.0}
    with pytest.raises(ValueError, match="lacks device timings"):
        compute.side_times(table, {"table": str(path)}, side="device", layers=["f9"])
