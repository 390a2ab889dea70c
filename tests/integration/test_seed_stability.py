"""The recommendation at 5 % loss does not depend on the simulation seed — on the
default config's four links, both protocols, with MobileNetV2-at-32-px-like candidates (one to a
few packets per frame: the p95 knife edge). About a minute."""

import pandas as pd

from tools import seed_runs

# layer, bytes sent, head MFLOPs, head weight layers, validation top-1
SPLITS = [
    ("features.3", 1536, 2.0, 8, 0.90),
    ("features.6", 768, 4.0, 17, 0.93),
    ("features.10", 512, 6.5, 29, 0.945),
    ("features.13", 768, 8.5, 38, 0.951),
    ("features.15", 640, 10.0, 44, 0.967),
    ("features.16", 640, 10.8, 47, 0.962),
]


def splits_table() -> pd.DataFrame:
    rows = []
    for i, (layer, nbytes, mflops, layers, acc) in enumerate(SPLITS):
        rows.append(
            {
                "layer": layer,
                "layer_index": i,
                "label": layer,
                "bytes": nbytes,
                "top1": acc - 0.003,
                "val_top1": acc,
                "val_top1_lo": acc - 0.01,
                "val_top1_hi": acc + 0.01,
                "head_flops": mflops * 1e6,
                "encoder_flops": 0.2e6,
                "decoder_flops": 0.2e6,
                "tail_flops": (12.0 - mflops) * 1e6,
                "head_params": 1e5 * (i + 1),
                "encoder_params": 1e4,
                "decoder_params": 1e4,
                "tail_params": 2.2e6 - 1e5 * (i + 1),
                "head_layers": layers,
                "encoder_layers": 2,
                "decoder_layers": 2,
                "tail_layers": 53 - layers,
            }
        )
    return pd.DataFrame(rows)


def test_recommendation_at_five_percent_loss_is_seed_independent(tmp_path):
    ft = {"test": {"top1": 0.964, "n": 1000}, "val": {"top1": 0.973, "n": 1000}}
    cfg = {"profiles": ["sei", "wifi-n", "lte", "ieee802154"], "losses": [0.05]}
    qos = {"max_p95_s": 0.1, "min_accuracy": 0.9}
    answers = seed_runs.answers(tmp_path, splits_table(), ft, cfg, qos, range(5))
    assert len(answers[0]) == 8
    assert all(a == answers[0] for a in answers), answers
