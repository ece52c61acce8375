"""benchmarks/bench_ablation.py runs and reports both configurations (its timings are never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.utils import REPO_ROOT, run_python


def test_ablation_without_training_counts_both_networks(tmp_path: Path):
    out = tmp_path / "ablation.json"
    done = run_python(
        str(REPO_ROOT / "benchmarks" / "bench_ablation.py"),
        "--bundles", "nnmamba_fetal_landmarks", "nnmamba_adni_classification",
        "--no-training", "--repeats", "1", "--output", str(out),
    )  # fmt: skip
    assert "CPU:" in done.stdout
    report = json.loads(out.read_text())["bundles"]
    for bundle, entry in report.items():
        assert entry["parameters"]["no_mamba"] < entry["parameters"]["mamba"], bundle
        assert entry["forward_s"]["mamba"] > 0 and entry["forward_s"]["no_mamba"] > 0
