"""The no-Mamba ablation of each bundle: parameters, forward time and demo metrics with and without Mamba.

For each bundle the script builds the inference network (``configs/inference.yaml``'s ``network_def``, demo
settings) with ``mamba`` true and false, counts parameters, times the forward pass on one network input
(``roi_size`` / ``spatial_size``, batch 1, ``eval()`` under ``torch.no_grad()``; the two configurations
interleaved, median of ``--repeats``) and reports the ratio measured in this run. Then, unless
``--no-training``, it trains each configuration on the bundle's synthetic demo set with the bundle's own
command (``python -m monai.bundle run training``, demo defaults, ``--mamba true|false``) in a scratch copy
of the bundle, and evaluates the selected weights (best on validation) with ``evaluate.yaml`` on the
validation and test splits. All figures are on SYNTHETIC demo data: they show what the Mamba layers change
in this pipeline, nothing about real images.

Usage::

    python benchmarks/bench_ablation.py                                   # all three bundles, about 15 min
    python benchmarks/bench_ablation.py --bundles nnmamba_brats_segmentation --no-training
    python benchmarks/bench_ablation.py --output ablation.json            # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]
BUNDLES = {  # bundle -> (network input id in inference.yaml, input channels, the metric to quote, higher is better)
    "nnmamba_brats_segmentation": ("roi_size", 4, "val_mean_dice", True),
    "nnmamba_adni_classification": ("spatial_size", 1, "val_auc", True),
    "nnmamba_fetal_landmarks": ("spatial_size", 1, "val_mre", False),
}
NETWORK_OVERRIDES = {"nnmamba_fetal_landmarks": {"num_landmarks": 6}}  # the demo's landmarks; no protocol record
CONFIG_ARGS = ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"]


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build_network(bundle: str, mamba: bool) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The bundle's inference network (demo settings) and the shape of one network input."""
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "configs" / "inference.yaml"))
    parser.update({"mamba": mamba, **NETWORK_OVERRIDES.get(bundle, {})})
    size_id, channels, _, _ = BUNDLES[bundle]
    network = parser.get_parsed_content("network_def").eval()
    return network, (1, channels, *parser.get_parsed_content(size_id))


def time_forward(networks: dict[bool, torch.nn.Module], shape: tuple[int, ...], repeats: int) -> dict[bool, float]:
    """Median seconds of one forward pass of each network, the two interleaved (after one warm-up pass each)."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    times: dict[bool, list[float]] = {flag: [] for flag in networks}
    with torch.no_grad():
        for network in networks.values():
            network(x)  # warm-up: numba compilation, allocator
        for _ in range(repeats):
            for flag, network in networks.items():
                start = time.perf_counter()
                network(x)
                times[flag].append(time.perf_counter() - start)
    return {flag: statistics.median(values) for flag, values in times.items()}


def run_bundle(args: list[str], cwd: Path) -> float:
    """``python -m monai.bundle <args>`` in ``cwd``; returns its wall time, raises with its output on failure."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"monai.bundle {' '.join(args)} failed in {cwd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return time.perf_counter() - start


def read_metrics(path: Path) -> dict[str, float]:
    with open(path, newline="", encoding="utf-8") as stream:
        return {name: float(value) for name, value in csv.reader(stream)}  # MetricsSaver: name,value rows


def train_and_evaluate(bundle: str, mamba: bool, work: Path) -> dict:
    """Train on the demo set in a scratch copy of the bundle, evaluate on validation and test."""
    copy = work / f"{bundle}-mamba-{str(mamba).lower()}"
    shutil.copytree(REPO / "bundles" / bundle, copy, ignore=shutil.ignore_patterns("eval", "models", "__pycache__"))
    flag = ["--mamba", str(mamba).lower()]
    seconds = run_bundle(["run", "training", "--config_file", "configs/train.yaml", *CONFIG_ARGS, *flag], copy)
    result = {"training_s": round(seconds, 1)}
    for split in ("validation", "test"):
        configs = "['configs/train.yaml','configs/evaluate.yaml']"
        run_bundle(["run", "--config_file", configs, *CONFIG_ARGS, *flag, "--eval_split", split], copy)
        result[split] = read_metrics(copy / "eval" / split / "metrics.csv")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", choices=sorted(BUNDLES), default=list(BUNDLES))
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per configuration")
    parser.add_argument("--no-training", action="store_true", help="parameters and forward time only")
    parser.add_argument("--output", help="also write the figures to this JSON file")
    options = parser.parse_args(argv)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores visible, torch {torch.__version__}, {threads} threads")
    report = {"cpu": cpu_model(), "torch": torch.__version__, "bundles": {}}
    with tempfile.TemporaryDirectory(prefix="nnmamba-ablation-") as scratch:
        for bundle in options.bundles:
            networks, shape = {}, None
            for mamba in (True, False):
                networks[mamba], shape = build_network(bundle, mamba)
            parameters = {flag: sum(p.numel() for p in net.parameters()) for flag, net in networks.items()}
            seconds = time_forward(networks, shape, options.repeats)
            entry = {
                "input": list(shape),
                "parameters": {"mamba": parameters[True], "no_mamba": parameters[False]},
                "forward_s": {"mamba": round(seconds[True], 4), "no_mamba": round(seconds[False], 4)},
                "forward_ratio_no_mamba_to_mamba": round(seconds[False] / seconds[True], 3),
            }
            print(f"\n{bundle}: input {'x'.join(map(str, shape))}")
            print(f"  parameters: mamba {parameters[True]:,}, no mamba {parameters[False]:,} "
                  f"({parameters[False] / parameters[True]:.3f}x)")  # fmt: skip
            print(f"  forward (median of {options.repeats}): mamba {seconds[True] * 1e3:.1f} ms, no mamba "
                  f"{seconds[False] * 1e3:.1f} ms, ratio {entry['forward_ratio_no_mamba_to_mamba']:.3f}")  # fmt: skip
            if not options.no_training:
                _, _, metric, higher_is_better = BUNDLES[bundle]
                for mamba in (True, False):
                    name = "mamba" if mamba else "no_mamba"
                    entry[name] = runs = train_and_evaluate(bundle, mamba, Path(scratch))
                    print(f"  demo ({name}, SYNTHETIC data): training {runs['training_s']} s, {metric} validation "
                          f"{runs['validation'][metric]:.4f}, test {runs['test'][metric]:.4f}")  # fmt: skip
                difference = entry["no_mamba"]["test"][metric] - entry["mamba"]["test"][metric]
                better = "better" if (difference > 0) == higher_is_better else "worse"
                print(f"  test {metric}: no mamba minus mamba = {difference:+.4f} ({better} without Mamba)")
            report["bundles"][bundle] = entry
    if options.output:
        Path(options.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {options.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
