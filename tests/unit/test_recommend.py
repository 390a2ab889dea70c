"""QoS recommendation, Pareto front, markdown table and figure (``isplit.recommend``)."""

import json
import math

import pandas as pd
import pytest

from isplit.figures import latency as figures
from isplit.recommend import recommend, recommend_text
from tools import seed_runs

CLASSES = ["a", "b", "c"]


def splits_table() -> pd.DataFrame:
    # layer: (top1, per-class offsets, head params)
    spec = {"l0": (0.70, 1_000), "l1": (0.80, 5_000), "l2": (0.85, 20_000), "l3": (0.85, 40_000)}
    rows = []
    for i, (layer, (top1, head)) in enumerate(spec.items()):
        rows.append(
            {
                "layer": layer,
                "layer_index": i,
                "label": layer.upper(),
                "top1": top1,
                "val_top1": top1,
                "bytes": 1000,
                "head_params": head,
                "encoder_params": 100,
                "tail_params": 50_000 - head,
                "decoder_params": 100,
                "head_flops": 10 * head,
                "encoder_flops": 1000,
                "decoder_flops": 1000,
                "tail_flops": 10 * (50_000 - head),
                # per-class recall: chosen on validation; l0's class-a test recall is much lower
                # than its validation recall, so a chooser reading test would not pick it
                "val_acc:a": top1 - 0.2 if layer != "l0" else 0.95,
                "val_acc:b": top1,
                "val_acc:c": top1 + 0.05,
                "acc:a": top1 - 0.2 if layer != "l0" else 0.60,
                "acc:b": top1,
                "acc:c": top1 + 0.05,
            }
        )
    return pd.DataFrame(rows)


def latency_table(p95: dict, frame_loss: dict | None = None, profile="p", protocol="tcp"):
    rows = []
    order = {"LC": -1, "l0": 0, "l1": 1, "l2": 2, "l3": 3, "RC": 4}
    for layer, v in p95.items():
        rows.append(
            {
                "layer": layer,
                "label": layer.upper() if layer.startswith("l") else layer,
                "layer_index": order[layer],
                "profile": profile,
                "protocol": protocol,
                "loss": 0.0,
                "bandwidth_bps": 1e6,
                "delay_s": 1e-3,
                "bytes": 1000,
                "device_s": 0.01,
                "server_s": 0.01,
                "latency_p50_s": v,
                "latency_p95_s": v,
                "frame_loss": (frame_loss or {}).get(layer, 0.0),
                "fps_max": 10.0,
            }
        )
    return pd.DataFrame(rows)


P95 = {"LC": 0.30, "l0": 0.05, "l1": 0.08, "l2": 0.12, "l3": 0.10, "RC": 0.50}


@pytest.fixture()
def files(tmp_path):
    splits_table().to_parquet(tmp_path / "splits.parquet")
    (tmp_path / "finetune.json").write_text(
        json.dumps(
            {
                "classes": CLASSES,
                "test": {"top1": 0.9, "per_class": {"a": 0.7, "b": 0.9, "c": 0.95}},
                "val": {"top1": 0.9, "per_class": {"a": 0.7, "b": 0.9, "c": 0.95}},
            }
        )
    )

    def run(p95=P95, cfg=None, frame_loss=None, lat=None, splits=None):
        (lat if lat is not None else latency_table(p95, frame_loss)).to_parquet(
            tmp_path / "latency.parquet"
        )
        if splits is not None:
            splits.to_parquet(tmp_path / "splits.parquet")
        return recommend.run(
            latency_path=tmp_path / "latency.parquet",
            splits_path=tmp_path / "splits.parquet",
            finetune_metrics_path=tmp_path / "finetune.json",
            cfg=cfg,
            out_json=tmp_path / "recommendation.json",
        )

    run.dir = tmp_path
    return run


def test_most_accurate_feasible_split_wins(files):
    rec = files(cfg={"max_p95_s": 0.2})
    g = rec["groups"][0]
    assert g["status"] == "ok" and g["recommended"]["layer"] == "l3"  # 0.85 at 0.10 beats l2
    assert set(g["feasible"]) == {"l0", "l1", "l2", "l3"}
    # without constraints LC / RC (the fine-tuned model, 0.9) win, the faster one first
    g = files(cfg={})["groups"][0]
    assert g["recommended"]["layer"] == "LC"


def test_ties_break_on_lower_p95(files):
    g = files(p95={**P95, "l2": 0.09}, cfg={"max_p95_s": 0.2})["groups"][0]
    assert g["recommended"]["layer"] == "l2"


def test_device_and_loss_constraints(files):
    g = files(cfg={"max_device_params": 10_000})["groups"][0]
    assert g["recommended"]["layer"] == "RC"  # LC needs 50k params on the device, RC none
    assert g["recommended"]["device_params"] == 0
    g = files(cfg={"max_device_params": 10_000, "max_p95_s": 0.2})["groups"][0]
    assert g["recommended"]["layer"] == "l1"
    assert g["recommended"]["device_params"] == 5_100
    g = files(cfg={"max_p95_s": 0.2, "max_frame_loss": 0.01}, frame_loss={"l3": 0.05})
    assert g["groups"][0]["recommended"]["layer"] == "l2"
    g = files(cfg={"max_device_flops": 60_000, "include_endpoints": False})["groups"][0]
    assert g["recommended"]["layer"] == "l1" and g["n_candidates"] == 4


def test_class_subset_accuracy(files):
    rec = files(cfg={"classes": ["a"], "max_p95_s": 0.2})
    assert rec["accuracy"]["l0"] == pytest.approx(0.95)  # validation recall
    assert rec["test_accuracy"]["l0"] == pytest.approx(0.60)  # reported, never chosen on
    assert rec["groups"][0]["recommended"]["layer"] == "l0"
    assert rec["selection"] == "validation"
    assert "['a']" in rec["accuracy_metric"]
    rec = files(cfg={"classes": ["a", "c"]})
    assert rec["accuracy"]["LC"] == pytest.approx((0.7 + 0.95) / 2)
    with pytest.raises(ValueError, match="unknown classes"):
        files(cfg={"classes": ["zebra"]})


def test_nothing_feasible_gives_the_nearest_miss(files):
    g = files(cfg={"max_p95_s": 0.06, "min_accuracy": 0.8})["groups"][0]
    assert g["status"] == "none" and g["recommended"] is None
    assert "nothing meets the constraints" in g["message"]
    miss = g["nearest_miss"]
    # l1: 0.08 s is 33 % over 0.06 s, accurate enough; l0: in time but 0.10 short (score 0.10)
    assert miss["layer"] == "l0"
    (v,) = miss["violations"]
    assert v["constraint"] == "min_accuracy" and v["excess"] == pytest.approx(0.10)
    g = files(cfg={"max_p95_s": 0.06, "min_accuracy": 0.75})["groups"][0]
    (v,) = g["nearest_miss"]["violations"]
    assert g["nearest_miss"]["layer"] == "l0" and v["excess"] == pytest.approx(0.05)
    # l1 is 5 ms (1/15) over 75 ms: nearer than l0's 0.10 accuracy shortfall
    g = files(cfg={"max_p95_s": 0.075, "min_accuracy": 0.8})["groups"][0]
    (v,) = g["nearest_miss"]["violations"]
    assert g["nearest_miss"]["layer"] == "l1" and v["constraint"] == "max_p95_s"
    assert v["excess"] == pytest.approx(0.005) and v["score"] == pytest.approx(1 / 15)


def test_pareto_front(files):
    g = files(cfg={})["groups"][0]
    front = [(p["layer"], p["latency_p95_s"]) for p in g["pareto"]]
    # l0 (0.70, 0.05) → l1 (0.80, 0.08) → l3 (0.85, 0.10) → LC (0.9, 0.30); l2 and RC dominated
    assert [x for x, _ in front] == ["l0", "l1", "l3", "LC"]


def test_no_delivered_frame_fails_the_latency_limit_and_json_is_strict(files):
    rec = files(p95={**P95, "l3": math.nan}, cfg={"max_p95_s": 0.2})
    g = rec["groups"][0]
    assert g["recommended"]["layer"] == "l2"
    text = (files.dir / "recommendation.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == rec


def test_groups_markdown_and_figure(files, tmp_path):
    lat = pd.concat(
        [
            latency_table(P95, profile="fast"),
            latency_table({k: 2 * v for k, v in P95.items()}, profile="slow"),
            latency_table({k: 3 * v for k, v in P95.items()}, profile="slow", protocol="udp"),
        ]
    )
    rec = files(lat=lat, cfg={"max_p95_s": 0.2, "min_accuracy": 0.75})
    keys = [(g["profile"], g["protocol"]) for g in rec["groups"]]
    assert keys == [("fast", "tcp"), ("slow", "tcp"), ("slow", "udp")]
    assert [g["status"] for g in rec["groups"]] == ["ok", "ok", "none"]
    md = recommend_text.markdown_table(rec)
    assert md.count("\n| fast |") + md.count("\n| slow |") == 3
    assert "nothing meets the constraints" in md and "max_p95_s = 0.2" in md
    assert md == recommend_text.markdown_table(files.dir / "recommendation.json")
    paths = figures.latency_figure(
        latency_path=files.dir / "latency.parquet",
        recommendation_path=files.dir / "recommendation.json",
        splits_path=files.dir / "splits.parquet",
        latency_accuracy=[tmp_path / "fig" / "latency.png", tmp_path / "fig" / "latency.pdf"],
    )
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert figures.pick_setting(lat, "slow") == ("tcp", 0.0)
    assert figures.pick_setting(lat, "slow", protocol="udp") == ("udp", 0.0)


def test_unknown_qos_key(files):
    with pytest.raises(ValueError, match="qos: .*.max_latency. was unexpected"):
        files(cfg={"max_latency": 1})


# --------------------------------------------------------------------- seed stability


def test_chosen_on_validation_with_interval_ties(files):
    splits = splits_table()
    # l3 is best on test but not on validation: the choice never looks at test
    splits["top1"] = [0.70, 0.80, 0.85, 0.95]
    splits["val_top1"] = [0.70, 0.83, 0.86, 0.84]
    rec = files(cfg={"max_p95_s": 0.2}, splits=splits)
    g = rec["groups"][0]
    assert rec["selection"] == "validation" and rec["metric"] == "top1"
    assert g["recommended"]["layer"] == "l2" and g["tied"] == ["l2"]
    assert g["recommended"]["test_accuracy"] == pytest.approx(0.85)
    assert rec["test_accuracy"]["l3"] == pytest.approx(0.95)
    # overlapping intervals are no tie any more: only a paired test on the same images makes
    # one (test_paired_ties_decide_the_recommendation)
    splits["val_top1_lo"] = splits["val_top1"] - 0.03
    splits["val_top1_hi"] = splits["val_top1"] + 0.03
    g = files(cfg={"max_p95_s": 0.2}, splits=splits)["groups"][0]
    assert g["tied"] == ["l2"] and g["recommended"]["layer"] == "l2"
    assert g["tie_test"]["method"].startswith("equal accuracy")


def _outcomes(tmp_path, correct: dict[str, list], labels):
    """outcomes.parquet from each option's per-seed correctness on shared images."""
    import numpy as np

    rows = []
    for layer, seeds in correct.items():
        for s, right in enumerate(seeds):
            pred = np.where(right, labels, (labels + 1) % 3)
            ids = [f"v{i}" for i in range(len(labels))]
            rows.append(
                pd.DataFrame(
                    {"layer": layer, "seed": s, "label": labels, "pred": pred, "sample_id": ids}
                )
            )
    pd.concat(rows).to_parquet(tmp_path / "outcomes.parquet")
    return tmp_path / "outcomes.parquet"


def test_paired_ties_decide_the_recommendation(files, tmp_path):
    """l1 (0.08 s) disagrees with l3 (0.10 s, the most accurate feasible) on 3 of 1,200
    images: a paired tie within the 1-point margin, so the faster l1 wins; l0 (0.05 s) is 8
    points worse on the same images: no tie, whatever its interval."""
    import numpy as np

    rng = np.random.default_rng(0)
    labels = np.arange(1200) % 3
    base = rng.random(1200) < 0.85
    near = base.copy()
    near[np.flatnonzero(base)[:3]] = False
    worse = base.copy()
    worse[np.flatnonzero(base)[:96]] = False
    path = _outcomes(tmp_path, {"finetuned": [base], "l0": [worse, worse], "l1": [near, near],
                                "l2": [worse, worse], "l3": [base, base]}, labels)  # fmt: skip
    splits = splits_table()
    acc = {k: float(v.mean()) for k, v in (("l0", worse), ("l1", near), ("l2", worse))}
    splits["val_top1"] = [acc["l0"], acc["l1"], acc["l2"], float(base.mean())]
    splits.to_parquet(files.dir / "splits.parquet")
    latency_table(P95).to_parquet(files.dir / "latency.parquet")

    def run(margin):
        return recommend.run(
            latency_path=files.dir / "latency.parquet",
            splits_path=files.dir / "splits.parquet",
            finetune_metrics_path=files.dir / "finetune.json",
            cfg={"max_p95_s": 0.2, "margin": margin},
            out_json=files.dir / "recommendation.json",
            outcomes_path=path,
        )

    g = run(0.01)["groups"][0]
    assert g["recommended"]["layer"] == "l1" and g["tied"] == ["l1", "l3"]
    diff = g["tie_test"]["differences"]
    assert diff["l1"]["equivalent"] and not diff["l0"]["equivalent"]
    assert diff["l0"]["difference"] == pytest.approx(96 / 1200)
    assert g["tie_test"]["margin"] == 0.01
    # a margin of 0 makes nothing equivalent: the most accurate one stands alone
    assert run(0.0)["groups"][0]["recommended"]["layer"] == "l3"


def test_udp_frame_loss_discounts_the_accuracy(files):
    lat = latency_table(P95, {"l3": 0.5, "LC": 0.0}, protocol="udp")
    g = files(lat=lat, cfg={"max_p95_s": 0.2, "min_accuracy": 0.8})["groups"][0]
    # l3 delivers half its frames: 0.85 × 0.5 < 0.8, so l2 (0.85, no loss) is chosen
    assert g["recommended"]["layer"] == "l2"
    pts = {p["layer"]: p for p in g["pareto"]}
    assert "l3" not in g["feasible"]
    g = files(lat=lat, cfg={})["groups"][0]
    point = next(p for p in g["pareto"] if p["layer"] == "l1")
    assert point["accuracy"] == pytest.approx(0.8) and point["val_accuracy"] == pytest.approx(0.8)
    assert pts  # the front is there either way


def test_the_device_profile_memory_limit_applies(files):
    lat = latency_table(P95).assign(device_max_params=[50_000.0] * 6)
    lat["device_params"] = [50_000.0, 1_100, 5_100, 20_100, 40_100, 0.0]
    lat.loc[lat["layer"] == "LC", "device_params"] = 60_000.0
    g = files(lat=lat, cfg={})["groups"][0]
    assert "LC" not in g["feasible"] and g["recommended"]["layer"] == "RC"
    g = files(lat=lat, cfg={"max_p95_s": 0.35, "include_endpoints": True})["groups"][0]
    assert g["recommended"]["layer"] == "l3"


def test_recommendation_at_five_percent_loss_is_the_same_for_five_seeds(tmp_path):
    """At 5 % loss the answer does not depend on the simulation seed. One-packet
    splits sit on the p95 knife edge there (P(frame needs a retransmission) = p = 5 %)."""
    splits = splits_table()
    splits["bytes"] = [4000, 1000, 600, 900]  # 4, 1, 1 and 1 packets
    for col, v in (("head_layers", [5, 10, 20, 30]), ("tail_layers", [30, 25, 15, 5])):
        splits[col] = v
    splits[["encoder_layers", "decoder_layers"]] = 2
    ft = {"test": {"top1": 0.9, "n": 1000}, "val": {"top1": 0.9, "n": 1000}}
    cfg = {"profiles": ["sei", "wifi-n"], "losses": [0.05], "n_frames": 1000, "n_boot": 50}
    qos = {"max_p95_s": 0.1, "min_accuracy": 0.8}
    answers = seed_runs.answers(tmp_path, splits, ft, cfg, qos, range(5))
    assert all(a == answers[0] for a in answers), answers
