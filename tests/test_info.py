"""``python -m nnmamba_nets info`` explains the backend choice."""

from __future__ import annotations

import os
import subprocess
import sys


def run_info(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "NNMAMBA_SCAN_BACKEND"} | env
    done = subprocess.run(
        [sys.executable, "-m", "nnmamba_nets", "info"], capture_output=True, text=True, check=True, env=environ
    )
    return done.stdout


def test_info_reports_versions_and_choices() -> None:
    text = run_info()
    for package in ("torch", "numba", "mamba_ssm", "causal_conv1d"):
        assert f"  {package} " in text
    assert "cpu tensors -> cpu: auto: numba" in text
    cuda_line = next(line for line in text.splitlines() if "cuda tensors ->" in line)
    assert "mamba_ssm" in cuda_line  # why the cuda kernels were not chosen (not installed here)


def test_info_shows_environment_override_and_its_errors() -> None:
    assert "cpu tensors -> torch: requested by $NNMAMBA_SCAN_BACKEND" in run_info(NNMAMBA_SCAN_BACKEND="torch")
    assert "Unknown scan backend 'nope'" in run_info(NNMAMBA_SCAN_BACKEND="nope")
