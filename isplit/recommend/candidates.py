"""The candidates a recommendation chooses between: every evaluated split, LC (the whole model on
the device) and the remote-computing options (the camera's frame sent raw or as JPEG), each
with what it sends, the work on each side and its accuracies (:func:`endpoints`), and the part
whose measured time it takes where compute is timed rather than modelled (``timed_as``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from isplit.latency import compute, stats

ACCURACY = ("test", "test_lo", "test_hi", "val", "val_lo", "val_hi")
# a camera option's candidate name: ``RC-raw``, ``RC-jpeg50``
CAMERA_PREFIX = f"{compute.RC}-"
WORK = ("device_flops", "device_layers", "device_params", "server_flops", "server_layers")


def _col(s: pd.DataFrame, name: str, fallback: str | None = None) -> pd.Series:
    if name in s:
        return s[name].astype(float)
    if fallback is not None and fallback in s:
        return s[fallback].astype(float)
    return pd.Series(np.nan, index=s.index)


def _end_accuracy(finetune: Mapping | None, metric: str) -> dict:
    out = dict.fromkeys(ACCURACY, np.nan)
    if finetune is None:
        return out
    for split, key in (("test", "test"), ("val", "val")):
        m = finetune.get(split, {})
        if metric not in m:
            continue
        v = float(m[metric])
        lo, hi = (m.get(f"{metric}_lo"), m.get(f"{metric}_hi"))
        if lo is None and m.get("n"):
            lo, hi = stats.wilson(round(v * m["n"]), int(m["n"]))
        out[key] = v
        out[f"{key}_lo"] = v if lo is None else float(lo)
        out[f"{key}_hi"] = v if hi is None else float(hi)
    return out


def endpoints(
    splits: pd.DataFrame,
    finetune: Mapping | None,
    *,
    input_size: int | None = None,
    metric: str = "top1",
    camera: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The candidates, one row each: the splits in probe order between LC (first) and the
    remote-computing options (last), with ``bytes``, the work of :data:`WORK` and the
    accuracies of :data:`ACCURACY`.

    A candidate is just (name, bytes per frame, device FLOPs / weight layers / parameters,
    server FLOPs / weight layers, accuracies); nothing downstream treats LC and RC specially.
    The whole model is any split's head + tail (the bottleneck is not part of it).

    ``camera`` (``camera.parquet``, :mod:`isplit.camera.frames`) makes the camera frame the
    input: every split and LC then also pays the device's resize of the frame to the network's
    input, and RC becomes one candidate per option a camera can send — ``RC-raw`` (the frame at
    its own resolution and channels) and ``RC-jpeg<q>`` (its mean JPEG size; the device pays the
    encoding), the server paying the resize and the whole model, each with the fine-tuned
    model's accuracy on what the server decodes. Without it, a single ``RC`` sends the raw uint8
    frame at the model's input size (:func:`.compute.rc_bytes`; −1 without ``input_size``).

    Accuracies, for one ``metric`` (``top1`` or ``balanced_accuracy``): ``test`` and ``val``
    (choices are made on validation, test is reported beside it) with 95 % intervals
    ``*_lo``/``*_hi`` — splits: the columns ``<metric>[_lo|_hi]`` and ``val_<metric>[_lo|_hi]``
    of ``splits.parquet``, the point value where the intervals are absent; LC/RC: the camera
    table, else the fine-tuned model's ``metrics.json`` with a Wilson interval over its ``n``
    images. Per-class recalls as ``acc:<class>`` (test) and ``val_acc:<class>``.
    """
    s = splits.sort_values("layer_index") if "layer_index" in splits else splits
    s = s.reset_index(drop=True)
    resize = float(camera["resize_flops"].iloc[0]) if camera is not None and len(camera) else 0.0
    rows = pd.DataFrame(
        {
            "layer": s["layer"].astype(str),
            "label": s["label"].astype(str) if "label" in s else s["layer"].astype(str),
            "layer_index": s["layer_index"].astype(int) if "layer_index" in s else range(len(s)),
            "bytes": s["bytes"].astype(int),
            "device_flops": (s["head_flops"] + s["encoder_flops"]).astype(float) + resize,
            "device_layers": _col(s, "head_layers") + _col(s, "encoder_layers"),
            "device_params": (s["head_params"] + s["encoder_params"]).astype(float),
            "server_flops": (s["decoder_flops"] + s["tail_flops"]).astype(float),
            "server_layers": _col(s, "decoder_layers") + _col(s, "tail_layers"),
            "test": _col(s, metric),
            "val": _col(s, f"val_{metric}"),
        }
    )
    for split in ("test", "val"):
        prefix = "" if split == "test" else "val_"
        rows[f"{split}_lo"] = _col(s, f"{prefix}{metric}_lo", f"{prefix}{metric}")
        rows[f"{split}_hi"] = _col(s, f"{prefix}{metric}_hi", f"{prefix}{metric}")
    for c in [c for c in s.columns if c.startswith(("acc:", "val_acc:"))]:
        rows[c] = s[c].astype(float)
    whole = {
        "flops": float(s["head_flops"].iloc[0] + s["tail_flops"].iloc[0]) if len(s) else np.nan,
        "layers": float(_col(s, "head_layers").iloc[0] + _col(s, "tail_layers").iloc[0])
        if len(s)
        else np.nan,
        "params": float(s["head_params"].iloc[0] + s["tail_params"].iloc[0]) if len(s) else np.nan,
    }
    recall_cols = [c for c in rows if c.startswith(("acc:", "val_acc:"))]

    def recalls(split_metrics: Mapping) -> dict:
        out = {}
        for c in recall_cols:
            split, cls = ("val", c[8:]) if c.startswith("val_acc:") else ("test", c[4:])
            out[c] = float(split_metrics.get(split, {}).get("per_class", {}).get(cls, np.nan))
        return out

    def end(name, index, nbytes, device, server, acc, per_class) -> dict:
        return {
            "layer": name,
            "label": name,
            "layer_index": index,
            "bytes": nbytes,
            **{f"device_{k}": v for k, v in device.items()},
            **{f"server_{k}": v for k, v in server.items()},
            **acc,
            **per_class,
        }

    n = int(rows["layer_index"].max()) + 1 if len(rows) else 0
    nothing = {"flops": 0.0, "layers": 0.0, "params": 0.0}
    ft_recalls = recalls(finetune or {})
    ends = [
        end(
            compute.LC,
            -1,
            compute.LC_RESULT_BYTES,
            {**whole, "flops": whole["flops"] + resize},
            {"flops": 0.0, "layers": 0.0},
            _end_accuracy(finetune, metric),
            ft_recalls,
        )
    ]
    server_all = {"flops": whole["flops"] + resize, "layers": whole["layers"]}
    if camera is None or not len(camera):
        rc = compute.rc_bytes(input_size) if input_size else -1
        ends.append(
            end(compute.RC, n, rc, nothing, server_all, _end_accuracy(finetune, metric), ft_recalls)
        )
    else:
        for i, c in enumerate(camera.to_dict("records")):
            acc = {
                "test": c[metric],
                "test_lo": c[f"{metric}_lo"],
                "test_hi": c[f"{metric}_hi"],
                "val": c[f"val_{metric}"],
                "val_lo": c[f"val_{metric}_lo"],
                "val_hi": c[f"val_{metric}_hi"],
            }
            device = {**nothing, "flops": float(c["encode_flops"])}
            # the camera options' per-class recalls are not measured: NaN, so a per-class
            # constraint never passes them by accident
            per_class = dict.fromkeys(recall_cols, np.nan)
            name = CAMERA_PREFIX + str(c["option"])
            nbytes = int(round(c["bytes_mean"]))
            ends.append(end(name, n + i, nbytes, device, server_all, acc, per_class))
    out = pd.concat([pd.DataFrame(ends[:1]), rows, pd.DataFrame(ends[1:])], ignore_index=True)
    # a camera option's encoding and resizing are not timed on this machine: where compute is
    # timed it costs what RC's whole model costs
    out["timed_as"] = [compute.RC if x.startswith(CAMERA_PREFIX) else x for x in out["layer"]]
    return out.astype({"layer_index": int, "bytes": int})


def is_endpoint(layer: str) -> bool:
    """LC, RC and the camera options ``RC-<option>``: the candidates that are no split."""
    return layer in (compute.LC, compute.RC) or layer.startswith(CAMERA_PREFIX)
