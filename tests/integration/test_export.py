"""Export of a split's two halves (isplit.deploy.export): the exported pair computes the split
model's output, the manifest describes it, and the directory appears whole or not at all."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from isplit.data.loader import ManifestDataset, transform_from_config
from isplit.deploy import device, export, wire
from isplit.nets import models
from tools.deploy import make_split, reference_predictions, running_server

INPUT = {"image_size": 32, "grayscale_to_rgb": True, "normalize": "imagenet"}
CASES = [("resnet18", "layer1.1"), ("mobilenet_v2", "features.3"), ("vgg11", "features.5")]


def images_of(dataset, n=12):
    ds = ManifestDataset(dataset, "test", transform_from_config(INPUT), subset=n)
    return torch.stack([ds[i][0] for i in range(len(ds))])


@pytest.fixture(scope="module")
def exported(tmp_path_factory, array_dataset):
    """Export each (model, layer, quant_bits) once per module: ``get(...) -> (split path,
    export dir, files, the split model saved there)``. A network is built once for both
    quantisation settings (VGG's classifier alone is 0.5 GB)."""
    root = tmp_path_factory.mktemp("export")
    built, done = {}, {}

    def get(name, layer, quant_bits):
        key = (name, layer, quant_bits)
        if key not in done:
            if name not in built:
                torch.manual_seed(0)
                built[name] = models.build(name, 3)
            tag = f"{name}-{quant_bits or 'f32'}"
            path, split = make_split(
                root / tag / "splits" / layer / "model.pt",
                array_dataset,
                layer=layer,
                quant_bits=quant_bits,
                name=name,
                model=built[name],
                with_split=True,
            )
            out_dir = root / tag / "deploy" / layer
            files = export.export_split(path, out_dir)
            done[key] = (path, out_dir, files, split)
        return done[key]

    return get


@pytest.mark.parametrize("quant_bits", [None, 8])
@pytest.mark.parametrize(("name", "layer"), CASES)
def test_exported_pair_matches_split_model(exported, array_dataset, name, layer, quant_bits):
    path, out_dir, files, split = exported(name, layer, quant_bits)
    names = ["device.pt2", "server.pt2", "device.onnx", "server.onnx", "manifest.json"]
    assert [p.name for p in files] == names
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in files)
    assert [p.name for p in out_dir.parent.iterdir()] == [layer]  # no temp dir left behind

    device, server, manifest = export.load_exported(out_dir)
    x = images_of(array_dataset)
    with torch.no_grad():
        ref = split(x)
        code = device(x)
        got = server(*code) if quant_bits else server(code)
        one = server(*device(x[:1])) if quant_bits else server(device(x[:1]))  # batch of 1
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(one, ref[:1], rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(1), ref.argmax(1))

    q = code[0] if quant_bits else code
    tb = split.bottleneck.transmitted_bytes()
    assert manifest["layer"] == layer and manifest["model"] == name
    assert manifest["code"]["shape"] == list(q.shape[1:]) == list(split.bottleneck.code_shape)
    assert manifest["code"]["dtype"] == ("uint8" if quant_bits else "float32")
    assert q.dtype == (torch.uint8 if quant_bits else torch.float32)
    assert manifest["code"]["payload_bytes"] == tb == manifest["identity"]["payload_bytes"]
    assert manifest["classes"] == ["horizontal", "vertical", "blob"]
    assert manifest["input"]["shape"] == [3, 32, 32]
    assert manifest["input"]["mean"] == [0.485, 0.456, 0.406]
    assert manifest["format"] == "torch.export"

    # the ONNX halves, in onnxruntime: the same codes (8-bit: exactly) and logits
    onnx_dev, onnx_srv, _ = export.load_exported(out_dir, runtime="onnx")
    o_code = onnx_dev(x)
    o_code = o_code if isinstance(o_code, tuple) else (o_code,)
    t_code = code if isinstance(code, tuple) else (code,)
    if quant_bits:
        assert o_code[0].dtype == torch.uint8 and torch.equal(o_code[0], t_code[0])
        torch.testing.assert_close(o_code[1:], t_code[1:], rtol=1e-5, atol=1e-6)
    else:
        torch.testing.assert_close(o_code[0], t_code[0], rtol=1e-4, atol=1e-4)
    o_logits = onnx_srv(*o_code)
    torch.testing.assert_close(o_logits, ref, rtol=1e-4, atol=1e-4)
    assert torch.equal(o_logits.argmax(1), ref.argmax(1))
    assert torch.equal(onnx_srv(*onnx_dev(x[:1])).argmax(1) if quant_bits
                       else onnx_srv(onnx_dev(x[:1])).argmax(1), ref[:1].argmax(1))  # fmt: skip
    for side in ("device", "server"):
        assert manifest["onnx"][side]["file"] == f"{side}.onnx"
    assert max(manifest["onnx"]["max_abs_diff_vs_torch"].values()) <= 1e-4


SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    d = sys.argv[1]
    m = json.load(open(d + "/manifest.json"))
    dev = torch.export.load(d + "/" + m["device"]["file"]).module()
    srv = torch.export.load(d + "/" + m["server"]["file"]).module()
    x = torch.zeros(1, *m["input"]["shape"])
    q, scale, offset = dev(x)
    print(json.dumps({"isplit": "isplit" in sys.modules, "shape": list(q.shape[1:]),
                      "logits": list(srv(q, scale, offset).shape)}))
    """
)


def test_export_runs_without_isplit_and_serves(exported, array_dataset, tmp_path):
    """The exported halves load in a Python that never imports isplit, and an export directory
    serves against the original model.pt (same digest: the handshake accepts it)."""
    path, out_dir, _, _ = exported("resnet18", "layer1.1", 8)
    r = subprocess.run(
        [sys.executable, "-I", "-c", SCRIPT, str(out_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert res == {"isplit": False, "shape": manifest["code"]["shape"], "logits": [1, 3]}

    half = wire.load_half(out_dir, "device")
    assert half.identity == wire.load_half(path, "server").identity
    frames = device.load_frames(array_dataset, "test", half.input_cfg, n=9)
    with running_server(path) as (address, _):
        rows = device.stream(address, half, frames, timeout_s=10)
    assert [r["pred"] for r in rows] == reference_predictions(path, frames)


def test_onnx_halves_serve_over_tcp(exported, array_dataset):
    """isplit device / isplit serve with runtime onnx: both halves in onnxruntime give the
    split model's predictions, and the ONNX pair is accepted by a torch server (one split)."""
    path, out_dir, _, _ = exported("mobilenet_v2", "features.3", 8)
    dev = wire.load_half(out_dir, "device", runtime="onnx")
    srv = wire.load_half(out_dir, "server", runtime="onnx")
    frames = device.load_frames(array_dataset, "test", dev.input_cfg, n=9)
    expected = reference_predictions(path, frames)
    with running_server(srv) as (address, _):
        rows = device.stream(address, dev, frames, timeout_s=10)
    assert [r["pred"] for r in rows] == expected
    with running_server(path) as (address, _):
        rows = device.stream(address, dev, frames, timeout_s=10)
    assert [r["pred"] for r in rows] == expected
    with pytest.raises(ValueError, match="runs an export directory"):
        wire.load_half(path, "device", runtime="onnx")


def test_failed_export_leaves_the_old_one(exported, monkeypatch):
    path, out_dir, _, _ = exported("resnet18", "layer1.1", None)
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch.export, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export.export_split(path, out_dir)
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert [p.name for p in out_dir.parent.iterdir()] == [out_dir.name]


def test_replace_dir_swaps_whole_directories(tmp_path):
    dst = tmp_path / "deploy"
    for version in ("old", "new"):
        src = tmp_path / f".tmp-{version}"
        src.mkdir()
        (src / "manifest.json").write_text(version)
        export._replace_dir(src, dst)
        assert (dst / "manifest.json").read_text() == version
        assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]


def test_load_exported_rejects_a_modified_file(exported, tmp_path):
    import shutil

    _, out_dir, _, _ = exported("resnet18", "layer1.1", None)
    copy = tmp_path / "copy"
    shutil.copytree(out_dir, copy)
    with open(copy / "server.pt2", "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="sha256"):
        export.load_exported(copy)
