"""The benchmark scripts run and fail cleanly on this machine (their figures are never asserted)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*args], capture_output=True, text=True, timeout=timeout, check=False, cwd=BENCHMARKS.parent)


def test_case_geometry_and_arguments():
    bench = load("bench_case")
    assert bench.parse_shape("4x240x240x155") == (4, 240, 240, 155)
    for bad in ("4x240x240", "4x100x240x155", "fourx1x1x1"):
        with pytest.raises(Exception, match="shape"):
            bench.parse_shape(bad)
    assert bench.window_count((240, 240, 155)) == 18  # what the SlidingWindowInferer runs
    assert bench.window_count((128, 128, 128)) == 1


def test_gpu_check_script_parses():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    done = run(bash, "-n", str(BENCHMARKS / "gpu_check.sh"))
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallbacks without CUDA")
def test_gpu_parts_skip_cleanly_without_cuda(tmp_path):
    out = tmp_path / "scan.json"
    done = run(sys.executable, str(BENCHMARKS / "gpu_check.py"), "--json", str(out))
    assert done.returncode == 0 and "SKIPPED: no CUDA device" in done.stdout
    assert "no CUDA device" in json.loads(out.read_text())["skipped"]
    done = run(sys.executable, str(BENCHMARKS / "bench_case.py"), "--device", "cuda")
    assert done.returncode == 2 and "--device cuda: no CUDA device is available here" in done.stderr


def test_window_profile_worker_accounts_for_the_window():
    """The per-part profile of one 128^3 window (fp32) runs, and its parts add up to the window."""
    done = run(
        sys.executable,
        str(BENCHMARKS / "bench_case.py"),
        "--worker",
        json.dumps(["profile", "fp32", [1, 128, 128, 128]]),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    profile = json.loads(done.stdout.strip().splitlines()[-1])
    parts = profile["parts"]
    assert profile["window_seconds"] > 0 and min(parts.values()) >= 0
    assert sum(parts.values()) == pytest.approx(profile["window_seconds"], rel=1e-6)
    assert parts["mixer: scan kernel"] > 0 and parts["mixer: causal conv kernel"] > 0
