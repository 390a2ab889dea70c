"""Compute profiles (timed and named), network profiles and the latency table
(``isplit.latency``)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from isplit.config import settings
from isplit.latency import compute, devices, profiles, profiling
from isplit.latency import simulate as latency
from isplit.latency.link import Link, Stream, fps_max
from isplit.nets import models
from isplit.nets.split import build_split, save_split
from isplit.recommend.candidates import endpoints

INPUT = {"image_size": 32, "grayscale_to_rgb": True, "normalize": "imagenet"}
CLASSES = ["a", "b", "c"]


def synthetic_splits(n: int = 5) -> pd.DataFrame:
    """A splits.parquet-like table: accuracy and head size grow with depth, bytes shrink."""
    rows = []
    for i in range(n):
        top1 = 0.6 + 0.3 * i / max(n - 1, 1)
        rows.append(
            {
                "layer": f"features.{i}",
                "layer_index": i,
                "label": f"F{i}",
                "top1": top1,
                "bytes": 4000 // (i + 1),
                "head_params": 1000 * (i + 1),
                "encoder_params": 100,
                "decoder_params": 100,
                "tail_params": 1000 * (n - i),
                "head_flops": 10_000 * (i + 1),
                "encoder_flops": 500,
                "decoder_flops": 500,
                "tail_flops": 10_000 * (n - i),
                "head_layers": 3 * (i + 1),
                "encoder_layers": 2,
                "decoder_layers": 2,
                "tail_layers": 3 * (n - i),
                "val_top1": top1 + 0.01,
                **{f"acc:{c}": top1 + d for c, d in zip(CLASSES, (-0.1, 0.0, 0.1), strict=True)},
            }
        )
    return pd.DataFrame(rows)


def synthetic_compute(layers, model="mobilenet_v2", size=32) -> pd.DataFrame:
    rows = []
    for i, layer in enumerate(layers):
        for part, t in (
            ("head", 1e-4 * (i + 1)),
            ("encoder", 1e-5),
            ("decoder", 1e-5),
            ("tail", 1e-4 * (len(layers) - i)),
        ):
            rows.append((model, size, layer, part, t, 1.5 * t, 10))
    full = 1e-4 * (len(layers) + 1)
    rows += [(model, size, end, "full", full, 1.5 * full, 10) for end in ("LC", "RC")]
    return pd.DataFrame(rows, columns=[*compute.TABLE_COLUMNS, "n"])


@pytest.fixture()
def experiment(tmp_path):
    splits = synthetic_splits()
    splits.to_parquet(tmp_path / "splits.parquet")
    synthetic_compute(list(splits["layer"])).to_parquet(tmp_path / "compute.parquet")
    per_class = {"a": 0.85, "b": 0.9, "c": 0.95}
    (tmp_path / "finetune.json").write_text(
        json.dumps(
            {
                "test": {"top1": 0.9, "per_class": per_class, "n": 1000},
                "val": {"top1": 0.92, "n": 1000},
            }
        )
    )
    return tmp_path


# --------------------------------------------------------------------------- compute


def test_compute_run_times_every_part(tmp_path):
    torch.manual_seed(0)
    model = models.build("mobilenet_v2", 3)
    meta = {"model": "mobilenet_v2", "num_classes": 3, "input": INPUT}
    models.save_model(tmp_path / "model.pt", model, meta)
    cfg = {"bottleneck": "ae", "ratio": 8, "stages": 2, "quant_bits": 8}
    paths = {}
    for layer in ("features.3", "features.17", "features.18"):
        split = build_split(model, layer, cfg, INPUT)
        save_split(tmp_path / f"{layer}.pt", split, {**meta, "layer": layer, "bottleneck": cfg})
        paths[layer] = tmp_path / f"{layer}.pt"
    before = torch.get_num_threads()
    out = tmp_path / "compute.parquet"
    df = profiling.run(
        model_path=tmp_path / "model.pt",
        split_paths=paths,
        out_path=out,
        repeats=3,
        warmup=1,
        threads=1,
    )
    assert torch.get_num_threads() == before
    assert out.is_file() and not list(tmp_path.glob(".*tmp*"))
    pd.testing.assert_frame_equal(df, pd.read_parquet(out))
    assert list(df["layer"].unique()) == ["features.3", "features.17", "features.18", "LC", "RC"]
    assert list(df.loc[df["layer"] == "features.3", "part"]) == list(compute.PARTS)
    assert set(df.loc[df["layer"].isin(["LC", "RC"]), "part"]) == {"full"}
    assert (df["median_s"] > 0).all() and (df["p95_s"] >= df["median_s"]).all()
    assert (df["n"] == 3).all() and set(df["model"]) == {"mobilenet_v2"}
    assert set(df["input_size"]) == {32}
    # the output is itself a valid device table
    compute.read_table(out)


def test_side_times_scale_and_sum_the_right_parts():
    local = synthetic_compute(["l0", "l1"])
    dev = compute.side_times(local, {"scale": 10}, side="device", layers=["l0", "l1"])
    srv = compute.side_times(local, {"scale": 0.5}, side="server", layers=["l0", "l1"])
    assert dev["l0"] == pytest.approx(10 * (1e-4 + 1e-5))
    assert srv["l0"] == pytest.approx(0.5 * (2e-4 + 1e-5))
    assert dev["LC"] == pytest.approx(10 * 3e-4) and dev["RC"] == 0
    assert srv["RC"] == pytest.approx(0.5 * 3e-4) and srv["LC"] == 0


def test_side_times_import_a_device_table(tmp_path):
    local = synthetic_compute(["l0", "l1"])
    measured = synthetic_compute(["l0", "l1"])
    measured["median_s"] *= 7
    other = synthetic_compute(["l0", "l1"], size=64)  # rows of another input size are ignored
    table = pd.concat([measured, other.assign(median_s=1.0)])
    table[list(compute.TABLE_COLUMNS)].to_csv(tmp_path / "device.csv", index=False)
    dev = compute.side_times(
        local, {"table": str(tmp_path / "device.csv")}, side="device", layers=["l0", "l1"]
    )
    assert dev["l1"] == pytest.approx(7 * (2e-4 + 1e-5))
    with pytest.raises(ValueError, match="lacks device timings"):
        compute.side_times(
            local, {"table": str(tmp_path / "device.csv")}, side="device", layers=["l0", "l9"]
        )
    measured.drop(columns=["p95_s"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="lacks columns"):
        compute.read_table(tmp_path / "bad.csv")


# --------------------------------------------------------------------------- profiles


def test_profiles_resolve_defaults_overrides_and_custom():
    ps = profiles.resolve(None)
    assert [p.name for p in ps] == list(profiles.DEFAULT_PROFILES)
    sei = profiles.PROFILES["sei"]
    assert (sei.bandwidth_bps, sei.delay_s, sei.losses) == (1e9, 100e-6, profiles.SEI_LOSSES)
    assert all(p.source for p in profiles.PROFILES.values())
    ps = profiles.resolve(
        ["lte", {"name": "mine", "bandwidth_bps": 5e6, "delay_s": 0.01}], losses=[0.0, 0.02]
    )
    assert [p.losses for p in ps] == [(0.0, 0.02), (0.0, 0.02)]
    assert ps[1].kind == "custom" and ps[1].mtu == 1500
    with pytest.raises(ValueError, match="unknown network profile"):
        profiles.resolve(["5g"])
    with pytest.raises(ValueError, match="repeat"):
        profiles.resolve(["sei", "sei"])
    md = profiles.table_markdown()
    assert "| sei | 1 Gb/s | 0.1 ms | 1500 |" in md and "ieee802154" in md


# --------------------------------------------------------------------------- latency table


def test_named_profiles_match_the_fit_to_their_published_latencies():
    bench = pd.read_csv(Path(__file__).parents[2] / "scripts" / "device_benchmarks.csv")
    assert set(bench["device"]) == set(devices.PROFILES)
    for name, rows in bench.groupby("device"):
        f = devices.fit(rows["flops"], rows["layers"], rows["latency_ms"] / 1e3)
        p = devices.PROFILES[name]
        assert p.gflops == pytest.approx(f.gflops, rel=0.01), name
        assert p.layer_overhead_s == pytest.approx(f.layer_overhead_s, rel=0.01), name
        assert f.median_abs_error < 0.25, name
        assert p.source and p.source in devices.SOURCES.values()
    # MobileNetV2 at 224 px (0.6 GFLOP, 53 weight layers) on the Pi: tens of ms, as published
    # for the quantised model (26 ms); the fit is of float networks
    assert 0.02 < devices.PROFILES["rpi4-cpu"].seconds(0.602e9, 53) < 0.05


def test_devices_resolve_named_custom_and_timed():
    assert devices.resolve(None, "device").name == devices.DEFAULT_DEVICE
    assert devices.resolve(None, "server").name == devices.DEFAULT_SERVER
    assert devices.resolve({"profile": "stm32h7-mcu"}, "device").max_params == 2e6
    mine = devices.resolve({"gflops": 2, "layer_overhead_s": 1e-4, "name": "mine"}, "device")
    assert mine.kind == "custom" and mine.seconds(2e9, 10) == pytest.approx(1.001)
    assert devices.resolve({"scale": 20}, "device") is None
    assert devices.resolve({"table": "x.csv"}, "server") is None
    with pytest.raises(ValueError, match="not both"):
        devices.resolve({"profile": "rpi4-cpu", "scale": 2}, "device")
    with pytest.raises(ValueError, match="unknown compute profile"):
        devices.resolve({"profile": "cray"}, "device")
    assert "| xavier-gpu |" in devices.table_markdown()


def _simulate(experiment, cfg, **kw):
    ft = json.loads((experiment / "finetune.json").read_text())
    return latency.run_simulation(
        candidates=endpoints(pd.read_parquet(experiment / "splits.parquet"), ft, input_size=32),
        compute_path=kw.pop("compute_path", None),
        cfg=cfg,
        out_path=kw.pop("out_path", experiment / "latency.parquet"),
        seed=kw.pop("seed", 0),
        workers=kw.pop("workers", 1),
    )


def test_run_simulation_table(experiment):
    cfg = {"profiles": ["sei", "ieee802154"], "losses": [0.0, 0.02], "n_frames": 200}
    df = _simulate(experiment, cfg)
    assert list(df.columns) == latency.COLUMNS
    assert len(df) == 7 * 2 * 2 * 2  # (5 splits + LC + RC) × profiles × losses × protocols
    pd.testing.assert_frame_equal(df, pd.read_parquet(experiment / "latency.parquet"))
    assert set(df["device_profile"]) == {"rpi4-cpu"} and set(df["server_profile"]) == {"xavier-gpu"}
    rc = df[df["layer"] == "RC"]
    assert set(rc["bytes"]) == {3 * 32 * 32} and set(rc["device_s"]) == {0.0}
    assert set(rc["device_params"]) == {0.0}
    lc = df[df["layer"] == "LC"]
    assert set(lc["bytes"]) == {compute.LC_RESULT_BYTES} and set(lc["server_s"]) == {0.0}
    assert set(lc["top1"]) == {0.9} and set(lc["val_top1"]) == {0.92}
    # the whole model = head + tail of any split, charged by the named profiles
    pi = devices.PROFILES["rpi4-cpu"]
    assert lc["device_s"].iloc[0] == pytest.approx(pi.seconds(60_000, 18))
    row = df[(df["layer"] == "features.0") & (df["profile"] == "sei")].iloc[0]
    assert row["device_s"] == pytest.approx(pi.seconds(10_500, 5))
    assert row["server_s"] == pytest.approx(devices.PROFILES["xavier-gpu"].seconds(50_500, 17))
    assert row["packets"] == 4 and row["wire_bytes"] == 4000 + 4 * 62
    expect = fps_max(
        Link(1e9, 1e-4), Stream(4000, "tcp", device_s=row["device_s"], server_s=row["server_s"])
    )
    assert row["fps_max"] == pytest.approx(expect)
    # the closed forms hold on a wire; a MAC (802.15.4 here) has none, and its retries hide loss
    assert df.loc[df["profile"] == "ieee802154", "analytic_s"].isna().all()
    mac = df[(df["profile"] == "ieee802154") & (df["loss"] > 0) & (df["protocol"] == "udp")]
    assert (mac["frame_loss"] < 1 - 0.98 ** mac["packets"]).all() and mac["p_clean"].isna().all()
    df = df[df["profile"] == "sei"]
    zero = df[df["loss"] == 0]
    udp = zero["protocol"] == "udp"
    np.testing.assert_allclose(zero[udp]["latency_p50_s"], zero[udp]["analytic_s"], rtol=1e-9)
    # TCP: a pure ACK may go back just before the answer (which carries the rest)
    ack = 8 * (40 + 14) / zero[~udp]["bandwidth_bps"]
    extra = zero[~udp]["latency_p50_s"] - zero[~udp]["analytic_s"]
    assert ((extra > -1e-12) & (extra <= ack + 1e-12)).all()
    assert (df["latency_p95_lo_s"] <= df["latency_p95_s"]).all()
    assert (df["latency_p95_s"] <= df["latency_p95_hi_s"]).all()
    assert (df.loc[df["protocol"] == "tcp", "frame_loss"] == 0).all()
    udp = df[(df["loss"] > 0) & (df["protocol"] == "udp")]
    np.testing.assert_allclose(udp["frame_loss"], 1 - 0.98 ** udp["packets"], rtol=1e-12)
    np.testing.assert_allclose(udp["delivered_top1"], udp["top1"] * (1 - udp["frame_loss"]))
    assert (df["loss_model"] == "iid").all() and (df["simulator"] == "builtin").all()


def test_run_simulation_with_timed_sides(experiment):
    synthetic_compute(list(synthetic_splits()["layer"])).to_parquet(experiment / "compute.parquet")
    cfg = {"profiles": ["sei"], "losses": [0.0], "n_frames": 20, "device": {"scale": 20}}
    with pytest.raises(ValueError, match="needs --compute"):
        _simulate(experiment, cfg)
    df = _simulate(experiment, cfg, compute_path=experiment / "compute.parquet")
    row = df[df["layer"] == "features.0"].iloc[0]
    assert row["device_s"] == pytest.approx(20 * (1e-4 + 1e-5))
    assert row["device_profile"] == "scale:20" and row["server_profile"] == "xavier-gpu"


def test_run_simulation_is_deterministic(experiment):
    cfg = {
        "profiles": ["wifi-n"],
        "losses": [0.05],
        "n_frames": 60,
        "fps": 30,
        "loss_model": {"kind": "gilbert-elliott", "burst_length": 3},
    }
    a = _simulate(experiment, cfg, out_path=experiment / "a.parquet", seed=4)
    # spread over processes: every simulation is seeded by itself, the table is the same
    b = _simulate(experiment, cfg, out_path=experiment / "b.parquet", seed=4, workers=2)
    pd.testing.assert_frame_equal(a, b)
    assert (experiment / "a.parquet").read_bytes() == (experiment / "b.parquet").read_bytes()
    assert set(a["fps"]) == {30.0} and a["loss_model"].str.startswith("gilbert-elliott").all()


def test_settings_reject_unknown_keys():
    with pytest.raises(ValueError, match="latency: .*'n_frame' was unexpected"):
        settings("latency", {"n_frame": 3})
    with pytest.raises(ValueError, match="latency.protocols.0: 'sctp' is not one of"):
        settings("latency", {"protocols": ["sctp"]})
    assert settings("latency", None).n_frames == 2000
    with pytest.raises(ValueError, match="latency.device.profile"):
        settings("latency", {"device": {"profile": "cray"}})


def camera_table() -> pd.DataFrame:
    """camera.parquet as the camera stage writes it: a 300x300 grey frame, raw and one JPEG."""
    rows = []
    for option, nbytes, enc, acc in (("raw", 90_000, 0, 0.90), ("jpeg75", 9_000, 3.6e6, 0.86)):
        row = {"option": option, "bytes_mean": nbytes, "encode_flops": enc, "resize_flops": 7e5}
        for prefix in ("", "val_"):
            row.update({f"{prefix}top1": acc, f"{prefix}top1_lo": acc - 0.02,
                        f"{prefix}top1_hi": acc + 0.02})  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def test_the_camera_frame_makes_the_remote_options_and_costs_the_device_its_resize(experiment):
    ft = json.loads((experiment / "finetune.json").read_text())
    plain = endpoints(synthetic_splits(), ft, input_size=32)
    cam = endpoints(synthetic_splits(), ft, input_size=32, camera=camera_table())
    assert plain["layer"].tolist()[-1] == "RC"
    assert cam["layer"].tolist()[-2:] == ["RC-raw", "RC-jpeg75"] and "RC" not in set(cam["layer"])
    rc = cam.set_index("layer")
    assert rc.loc["RC-raw", "bytes"] == 90_000 and rc.loc["RC-jpeg75", "bytes"] == 9_000
    assert rc.loc["RC-jpeg75", "device_flops"] == 3.6e6  # the device encodes the JPEG
    assert rc.loc["RC-raw", "device_flops"] == 0
    assert rc.loc["RC-jpeg75", "val"] == pytest.approx(0.86)  # accuracy on the decoded frame
    # every split and LC also pays the resize of the frame, on the device; RC on the server
    split_cols = [c for c in cam["layer"] if c.startswith("features.")]
    diff = (
        cam.set_index("layer").loc[split_cols, "device_flops"]
        - plain.set_index("layer").loc[split_cols, "device_flops"]
    )
    assert (diff == 7e5).all()
    assert rc.loc["LC", "device_flops"] == plain.set_index("layer").loc["LC", "device_flops"] + 7e5
    assert rc.loc["RC-raw", "server_flops"] == rc.loc["LC", "device_flops"]
