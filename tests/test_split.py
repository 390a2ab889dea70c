import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from isplit import models, retrain, split

NETS = ["vgg16", "resnet50", "mobilenet_v2"]


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {n: models.build(n, 5).eval() for n in NETS}


@pytest.mark.parametrize("name", NETS)
def test_identity_split_at_every_probe_point(nets, name):
    model = nets[name]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    own = {id(p) for p in model.parameters()}
    points = models.probe_points(model)
    for p in points:  # the last point included
        s = split.split_model(model, p.name).eval()
        with torch.no_grad():
            assert torch.equal(s(x), ref), p.name
        head = {id(q) for q in s.head.parameters()}
        tail = {id(q) for q in s.tail.parameters()}
        assert not head & tail and head | tail == own, p.name
        assert s.head.names[-1] == p.name
    assert points[-1].name == split.split_model(model, points[-1].name).head.names[-1]


@pytest.mark.parametrize("name", NETS)
def test_autoencoder_shapes_and_bytes_at_every_probe_point(nets, name):
    model = nets[name]
    for size in (64, 37):  # an odd size exercises the computed output padding
        x = torch.randn(2, 3, size, size)
        for p in models.probe_points(model):
            s = split.split_model(model, p.name, "ae", input_shape=(3, size, size)).eval()
            with torch.no_grad():
                a = s.head(x)
                z = s.bottleneck.encoder(a)
                r = s.bottleneck(a)
                out = s(x)
            assert r.shape == a.shape, (p.name, size)
            assert out.shape == (2, 5)
            c = a.shape[1]
            f = max(1, round(c / 8))
            expect = (2 * f, -(-a.shape[2] // 4), -(-a.shape[3] // 4))
            assert tuple(z.shape[1:]) == expect, (p.name, size)
            # bytes per image = what a real forward of the encoder produces, float32
            assert s.bottleneck.transmitted_bytes() == z[0].numel() * 4
            assert split.transmitted_bytes(s, (3, size, size)) == z[0].numel() * 4


def test_bytes_match_public_code_sizes(nets):
    # method.md §5.1: VGG16 at 224 px, pool3 → 12,544 B, block1 convs → 200,704 B
    vgg = models.build("vgg16", 5)
    pts = {p.label: p.name for p in models.probe_points(vgg)}
    s = split.split_model(vgg, pts["block3_pool"], "ae", input_shape=(3, 224, 224))
    assert s.bottleneck.transmitted_bytes() == 12_544
    s = split.split_model(vgg, pts["block1_conv1"], "ae", input_shape=(3, 224, 224))
    assert s.bottleneck.transmitted_bytes() == 200_704


def test_quantised_code_and_options():
    ae = split.AEBottleneck((64, 16, 16), ratio=8, stages=3, quant_bits=8)
    assert ae.code_shape == (32, 2, 2)
    assert ae.transmitted_bytes() == 32 * 2 * 2 + split.QUANT_HEADER_BYTES
    a = torch.randn(4, 64, 16, 16, requires_grad=True)
    z = ae.encoder(a)
    q = ae.quantize(z)
    # at most 256 distinct values per image, within half a step of the float code
    assert all(len(torch.unique(q[i])) <= 256 for i in range(4))
    step = (z.flatten(1).amax(1) - z.flatten(1).amin(1)) / 255
    assert torch.all((q - z).flatten(1).abs().amax(1) <= step / 2 + 1e-6)
    ae(a).sum().backward()  # straight-through: the encoder still gets gradients
    assert ae.encoder[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not a split point"):
        split.split_model(models.build("resnet18", 3), "layer1.0.conv1")


def test_retrain_resumes_after_kill(array_dataset, tmp_path):
    torch.manual_seed(0)
    model = models.build("resnet18", 3)
    meta = {"model": "resnet18", "num_classes": 3, "input": {"image_size": 32}}
    models.save_model(tmp_path / "ft.pt", model, meta)
    cfg = {
        "bottleneck": "ae",
        "ratio": 8,
        "stages": 2,
        "epochs": 4,
        "batch_size": 30,
        "optimizer": "adam",
        "lr": 0.003,
        "schedule": "onecycle",
        "recon_weight": 0.1,
    }

    def cmd(out):
        return [
            sys.executable,
            "-m",
            "isplit",
            "retrain-split",
            "--model",
            str(tmp_path / "ft.pt"),
            "--dataset",
            str(array_dataset),
            "--layer",
            "layer2.0",
            "--config",
            json.dumps(cfg),
            "--seed",
            "1",
            "--out",
            str(out),
            "--threads",
            "1",
        ]

    r = subprocess.run(cmd(tmp_path / "a"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen(
        cmd(tmp_path / "b"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = tmp_path / "b" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    r = subprocess.run(cmd(tmp_path / "b"), capture_output=True, text=True)
    assert r.returncode == 0 and "resuming from" in r.stderr, r.stderr
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["layer"] == "layer2.0" and m["bytes"] == m["bytes_float32"] == 32 * 1 * 1 * 4
    assert m["activation_shape"] == [128, 4, 4] and m["code_shape"] == [32, 1, 1]
    assert m["head_params"] + m["tail_params"] == sum(p.numel() for p in model.parameters())
    assert m["head_flops"] > 0 and m["tail_flops"] > 0 and m["encoder_flops"] > 0
    # the frozen backbone really stayed frozen
    s, _ = retrain.load_split(tmp_path / "a" / "model.pt")
    base = model.state_dict()
    head = dict(s.head.named_parameters())
    assert torch.equal(head["steps.0.weight"], base["conv1.weight"])
    assert 0 <= m["test"]["top1"] <= 1 and m["test"]["n"] == 60
