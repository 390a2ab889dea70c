"""Splits and servers for the deployment tests: small random-weight splits calibrated on a
dataset, and ``isplit serve`` in a thread."""

from __future__ import annotations

import contextlib
import io
import threading

import torch

from isplit.data.loader import ManifestDataset, transform_from_config
from isplit.deploy import server, wire
from isplit.nets import models
from isplit.nets import split as split_mod

INPUT = {"image_size": 32, "grayscale_to_rgb": True, "normalize": "imagenet"}
CLASSES = ["horizontal", "vertical", "blob"]


def make_split(
    path,
    dataset,
    *,
    layer="layer1.1",
    quant_bits=None,
    seed=0,
    name="resnet18",
    model=None,
    with_split=False,
):
    """A random-weight split whose BatchNorm statistics come from the dataset, so its
    predictions depend on the image (with fresh statistics every image gets one class).
    ``model``: reuse an already built network (its BatchNorm statistics are recomputed);
    ``with_split``: return ``(path, split model)``."""
    torch.manual_seed(seed)
    model = models.build(name, len(CLASSES)) if model is None else model
    cfg = {"bottleneck": "ae", "ratio": 8, "stages": 2, "quant_bits": quant_bits}
    split = split_mod.build_split(model, layer, cfg, INPUT)
    ds = ManifestDataset(dataset, "train", transform_from_config(INPUT), subset=45)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    for m in split.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
    split.train()
    with torch.no_grad():
        split(x)
    split.eval()
    meta = {
        "model": name,
        "num_classes": len(CLASSES),
        "classes": CLASSES,
        "input": INPUT,
        "layer": layer,
        "bottleneck": cfg,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    split_mod.save_split(path, split, meta)
    return (path, split) if with_split else path


TEST_LIMITS = server.Limits(max_connections=16, handshake_s=10, message_s=10, idle_s=10)


@contextlib.contextmanager
def running_server(split_path, *, connections=1, frames_log=None, limits=TEST_LIMITS, secret=None):
    """``serve`` in a thread on a free loopback port; yields (address, result dict). The
    result gets ``rows`` and ``log`` (the server's log) when the block ends. ``split_path``:
    a split's path, or its server half already loaded (tests that start many servers)."""
    if isinstance(split_path, wire.Half):
        half = split_path
    else:
        half = wire.load_half(split_path, "server")
    listener = server.open_listener("127.0.0.1", 0)
    stop, result, log = threading.Event(), {}, io.StringIO()

    def run():
        result["rows"] = server.serve(
            listener,
            half,
            frames_log=frames_log,
            connections=connections,
            stop=stop,
            limits=limits,
            secret=secret,
            log=log,
        )

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield listener.getsockname()[:2], result
    finally:
        stop.set()
        thread.join(30)
        listener.close()
        result["log"] = log.getvalue()
        assert not thread.is_alive(), "the server thread did not stop"


def reference_predictions(split_path, frames):
    split, _ = split_mod.load_split(split_path)
    with torch.no_grad():
        return split(torch.stack([x for x, _ in frames])).argmax(1).tolist()
