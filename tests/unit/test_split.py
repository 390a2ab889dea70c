import pytest
import torch

from isplit.nets import bottlenecks, models, split

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
    points = models.probe_points(model, input_size=64)
    for p in points:  # the last point included
        s = split.split_model(model, p.name, input_shape=(3, 64, 64)).eval()
        with torch.no_grad():
            assert torch.equal(s(x), ref), p.name
            assert tuple(s.head(x).shape[1:]) == p.shape  # the probed activation crosses
        head = {id(q) for q in s.head.parameters()}
        tail = {id(q) for q in s.tail.parameters()}
        assert not head & tail and head | tail == own, p.name


@pytest.mark.slow  # 4-7 s per network
@pytest.mark.parametrize("name", NETS)
def test_autoencoder_shapes_and_bytes_at_every_probe_point(nets, name):
    model = nets[name]
    for size in (64, 37):  # an odd size exercises the computed output padding
        x = torch.randn(2, 3, size, size)
        for p in models.probe_points(model, input_size=size):
            spec = {"ratio": 8, "stages": 2}
            s = split.split_model(model, p.name, "ae", input_shape=(3, size, size), spec=spec)
            s.eval()
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
            assert s.transmitted_bytes() == z[0].numel() * 4


@pytest.mark.slow  # ~9 s
def test_bytes_match_public_code_sizes(nets):
    # docs/methods.md: VGG16 at 224 px, pool3 → 12,544 B, block1 convs → 200,704 B
    vgg = models.build("vgg16", 5)
    pts = {p.label: p.name for p in models.probe_points(vgg)}
    spec = {"ratio": 8, "stages": 2}
    s = split.split_model(vgg, pts["block3_pool"], "ae", input_shape=(3, 224, 224), spec=spec)
    assert s.bottleneck.transmitted_bytes() == 12_544
    s = split.split_model(vgg, pts["block1_conv1"], "ae", input_shape=(3, 224, 224), spec=spec)
    assert s.bottleneck.transmitted_bytes() == 200_704


def test_quantised_code_and_options():
    ae = bottlenecks.AEBottleneck((64, 16, 16), ratio=8, stages=3, quant_bits=8)
    assert ae.code_shape == (32, 2, 2)
    assert ae.transmitted_bytes() == 32 * 2 * 2 + bottlenecks.QUANT_HEADER_BYTES
    a = torch.randn(4, 64, 16, 16, requires_grad=True)
    z = ae.encoder(a)
    q = ae.quantize(z)
    # at most 256 distinct values per image, within half a step of the float code
    assert all(len(torch.unique(q[i])) <= 256 for i in range(4))
    step = (z.flatten(1).amax(1) - z.flatten(1).amin(1)) / 255
    assert torch.all((q - z).flatten(1).abs().amax(1) <= step / 2 + 1e-6)
    ae(a).sum().backward()  # straight-through: the encoder still gets gradients
    assert ae.encoder[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="'layer1.0.conv1' is not a split point .*layer1.0,"):
        split.split_model(models.build("resnet18", 3), "layer1.0.conv1", input_shape=(3, 32, 32))


def test_raw_activation_can_be_quantised_too():
    model = models.build("resnet18", 3).eval()
    s = split.split_model(model, "layer3.1", "none", input_shape=(3, 32, 32), spec={})
    assert s.transmitted_bytes() == 256 * 2 * 2 * 4
    q = split.split_model(
        model, "layer3.1", "none", input_shape=(3, 32, 32), spec={"quant_bits": 8}
    )
    assert q.transmitted_bytes() == 256 * 2 * 2 + bottlenecks.QUANT_HEADER_BYTES
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(s(x), model(x))
        assert (q(x) - model(x)).abs().max() < 0.5  # quantisation error, not another model
        dev, srv = split.DeviceHalf(q), split.ServerHalf(q)
        code, scale, offset = dev(x)
        assert code.dtype == torch.uint8 and torch.allclose(
            srv(code, scale, offset), q(x), atol=1e-4
        )


#: the smallest member of every family of the catalogue
FAMILY_NETS = [
    "alexnet",
    "convnext_tiny",
    "efficientnet_b0",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "regnet_x_400mf",
    "resnet18",
    "shufflenet_v2_x0_5",
    "vgg11",
]


@pytest.mark.slow  # ~80 s: every probe point of nine networks
@pytest.mark.parametrize("name", FAMILY_NETS)
def test_budget_sends_exactly_code_bytes_at_every_split(name):
    """Equal bytes: what the device half really emits (8-bit values + scale + offset) is
    code_bytes at every probe point, for activations larger and smaller than the budget."""
    torch.manual_seed(0)
    model = models.build(name, 3).eval()
    size = 64
    x = torch.randn(2, 3, size, size)
    for budget in (1024, 200):
        sent = {}
        for p in models.probe_points(model):
            s = split.split_model(
                model, p.name, "budget", input_shape=(3, size, size), spec={"code_bytes": budget}
            ).eval()
            with torch.no_grad():
                q, scale, offset = split.DeviceHalf(s)(x)
                out = split.ServerHalf(s)(q, scale, offset)
            wire = (
                q[0].numel() * q.element_size() + scale[0:1].numel() * 4 + offset[0:1].numel() * 4
            )
            assert q.dtype == torch.uint8
            sent[p.name] = wire
            assert s.transmitted_bytes() == wire, (p.name, budget)
            assert out.shape == (2, 3)
        assert set(sent.values()) == {budget}, sent
