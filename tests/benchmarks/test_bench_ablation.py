"""benchmarks/bench_ablation.py runs and reports both configurations of each option (timings never asserted)."""

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


def test_amp_option_times_the_same_network_in_both_precisions(tmp_path: Path):
    out = tmp_path / "amp.json"
    run_python(
        str(REPO_ROOT / "benchmarks" / "bench_ablation.py"), "--option", "amp",
        "--bundles", "nnmamba_adni_classification", "--no-training", "--repeats", "1", "--output", str(out),
    )  # fmt: skip
    report = json.loads(out.read_text())
    entry = report["bundles"]["nnmamba_adni_classification"]
    assert report["option"] == "amp" and entry["parameters"]["fp32"] == entry["parameters"]["bf16"]
    assert entry["forward_s"]["fp32"] > 0 and entry["forward_s"]["bf16"] > 0 and "forward_ratio_bf16_to_fp32" in entry
