"""The load test of ``isplit serve`` (scripts/load_test_serve.py) at a small size: devices
streaming at once beside idle and trickling connections are all served, correctly, and the
server is still there afterwards. The full-size figures are in docs/reliability.md."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_load_test_serves_every_well_behaved_device():
    cmd = [sys.executable, "-m", "scripts.load_test_serve", "--quick", "--timeout", "20"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    frames = out["frames_per_device"]
    for phase in ("loaded_clean", "loaded"):
        r = out[phase]
        # every answer arrived and was the split model's (the script checks each one)
        assert r["clients_failed"] == 0, r["failures"]
        assert r["n"] == r["clients"] * frames
        # a generous bound: 8 devices share one server; a hang or a starved device fails
        assert r["max_ms"] < 5000, r
    assert out["loaded"]["idle"] == 3 and out["loaded"]["trickling"] == 2
    assert out["single_with_pests"]["n"] == out["after"]["n"] == frames
    assert out["server_alive"]
