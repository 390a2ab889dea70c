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
from isplit.nets import aliases, bottlenecks, graph, models, split

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


class _Writes(nn.Module):
    """conv → (probe) → in-place ReLU; a view of the probe written in place; a write into the
    tensor the probe was computed in place from; a positional F.relu(x, True)."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=how == "module")
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        a = self.conv(x)
        if self.how == "earlier":  # probe = relu_(a); then a (same storage) is written
            b = torch.relu_(a)
            c = self.conv2(b)
            a.mul_(2)
            return self.fc((c + a).mean((2, 3)))
        if self.how == "view":
            v = a.flatten(2)
            v.add_(1)
        elif self.how == "positional":
            a = F.relu(a, True)
        else:
            a = self.act(a)
        return self.fc(self.conv2(a).mean((2, 3)))


def _overwritten(model: nn.Module, node_name: str) -> bool:
    mg = graph.analyse(model.eval(), (3, 8, 8), "fc")
    node = next(n for n in mg.gm.graph.nodes if n.name == node_name)
    return aliases.overwritten_after(mg.gm, [node])[0]


@pytest.mark.parametrize("how", ["module", "view", "positional"])
def test_overwritten_after_finds_in_place_writes(how):
    """The conv output is written later by an in-place op (on it or on a view of it): a hook
    that keeps it must keep a copy; the output of the next conv is never written."""
    assert _overwritten(_Writes(how), "conv")
    assert not _overwritten(_Writes(how), "conv2")


def test_overwritten_after_follows_the_tensor_an_in_place_result_shares():
    assert _overwritten(_Writes("earlier"), "relu_")
    assert not _overwritten(_Writes("plain"), "act")  # ReLU(inplace=False): a new tensor


def test_taps_copy_only_where_the_graph_writes_later():
    """VGG16's paper probes (after its in-place ReLUs) are never written again; among its
    public-code probes exactly the convs are, by the in-place ReLU after each."""
    model = models.build("vgg16", 5).eval()
    for variant, expect in (("paper", set()), ("public-code", None)):
        points = models.probe_points(model, variant, 32)
        mg = graph.analyse(model, (3, 32, 32), "classifier")
        _, taps = graph.tapped(mg, [p.name for p in points])
        modules = dict(model.named_modules())
        conv_then_relu = {p.name for p in points if isinstance(modules.get(p.name), nn.Conv2d)}
        got = {name for name, t in taps.items() if t.overwritten}
        assert got == (expect if expect is not None else conv_then_relu), variant
