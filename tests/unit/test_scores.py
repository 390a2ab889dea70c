"""LogME, k-NN and the code reduction on cases with known answers."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from isplit.importance import scores


def test_evidence_is_the_gaussian_density_it_is_defined_as():
    """p(y | F, α, β) is the density of N(0, FFᵀ/α + I/β) at y, for n > D and n < D."""
    rng = np.random.default_rng(0)
    for n, d in ((40, 6), (12, 30)):
        f = rng.normal(size=(n, d))
        y = (rng.random(n) < 0.4).astype(float)
        for alpha, beta in ((0.5, 2.0), (3.0, 0.7)):
            cov = f @ f.T / alpha + np.eye(n) / beta
            expect = multivariate_normal(np.zeros(n), cov).logpdf(y)
            assert scores.evidence(f, y, alpha, beta) == pytest.approx(expect, rel=1e-9)


def test_fixed_point_is_the_evidence_maximum():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(60, 8))
    y = (f[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(float)
    alpha, beta, ev = scores.fit_evidence(f, y)
    assert ev == pytest.approx(scores.evidence(f, y, alpha, beta))
    best = minimize(
        lambda v: -scores.evidence(f, y, np.exp(v[0]), np.exp(v[1])),
        x0=[0.0, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000},
    )
    assert ev == pytest.approx(-best.fun, abs=1e-6)
    assert np.log(alpha) == pytest.approx(best.x[0], abs=1e-3)


def test_logme_ranks_informative_features_above_noise():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 300)
    centres = rng.normal(size=(3, 16)) * 2
    good = centres[labels] + rng.normal(size=(300, 16))
    noise = rng.normal(size=(300, 16))
    assert scores.logme(good, labels) > scores.logme(noise, labels)
    # LogME averages the classes' evidence per image: a per-class mean, nothing larger
    per_class = [scores.fit_evidence(good, (labels == k).astype(float))[2] / 300 for k in range(3)]
    assert scores.logme(good, labels) == pytest.approx(np.mean(per_class))


def test_knn_and_code_features():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 50)
    x = rng.normal(size=(100, 5)) + 3 * y[:, None]
    assert np.mean(scores.knn_predict(x[::2], y[::2], x[1::2]) == y[1::2]) > 0.95
    # activations of 12 channels at 4 positions; a code of 3 channels, first 10 values
    act = rng.normal(size=(30, 12, 4))
    train, val = scores.code_features(act[:20], [act[20:]], channels=3, values=10)
    assert train.shape == (20, 10) and val.shape == (10, 10)
    # 8 bits per image: at most 256 distinct values per row, min and max kept
    for row in train:
        assert len(np.unique(row)) <= 256
    kept, _ = scores.code_features(act[:20], [act[20:]], channels=20, values=10)
    flat = act[:20].reshape(20, -1)[:, :10]
    assert np.abs(kept - flat).max() <= (flat.max() - flat.min()) / 255


@pytest.mark.slow  # a network's forward passes and 30 fitted probes
def test_probe_stage_scores_every_point_with_every_predictor(array_dataset, tmp_path):
    """The probe stage on a real (tiny) network and data set: one row per probe point with
    every predictor, and each validation image's prediction per predictor and point."""
    import os

    import pandas as pd
    import torch

    from isplit.importance import probe
    from isplit.nets import models
    from tools.synthetic import INPUT

    torch.manual_seed(0)
    meta = {"model": "resnet18", "num_classes": 3, "input": INPUT,
            "classes": ["horizontal", "vertical", "blob"]}  # fmt: skip
    models.save_model(tmp_path / "ft.pt", models.build("resnet18", 3), meta)
    table = probe.run(
        model_path=tmp_path / "ft.pt",
        dataset_dir=array_dataset,
        out_path=tmp_path / "probe.parquet",
        outcomes_path=tmp_path / "outcomes.parquet",
        cfg={"probe_train_images": 60},
        seed=0,
        code_bytes=200,
        threads=1,
        log=open(os.devnull, "w"),
    )
    points = [p.name for p in models.probe_points(models.build("resnet18", 3))]
    assert table["layer"].tolist() == points
    for col in ("val_top1", "knn_val_top1", "code_val_balanced_accuracy", "logme"):
        assert table[col].notna().all(), col
    out = pd.read_parquet(tmp_path / "outcomes.parquet")
    assert set(out["predictor"]) == {"probe", "knn", "code"}
    assert (out.groupby(["layer", "predictor"]).size() == 60).all()  # 20 val images × 3
    # the table's accuracies are the outcomes' own
    mine = out[(out["predictor"] == "knn") & (out["layer"] == points[-1])]
    assert table["knn_val_top1"].iloc[-1] == pytest.approx((mine["pred"] == mine["label"]).mean())
