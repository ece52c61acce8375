"""Ablations of each bundle: parameters, forward time and demo metrics with and without Mamba, or in fp32 and bf16.

``--option mamba`` (the default) compares ``--mamba true`` with the no-Mamba ablation ``--mamba false``;
``--option amp`` compares float32 (``--amp false``) with mixed precision (``--amp true``: bfloat16 autocast
on a CPU, see ``nnmamba_nets.common.precision``). For each bundle the script builds the inference network
(``configs/inference.yaml``'s ``network_def``, demo settings) of both configurations, counts parameters,
times the forward pass through the bundle's own ``evaluator#inferer`` on one network input (``roi_size`` /
``spatial_size``, batch 1, ``eval()`` under ``torch.no_grad()``; the two configurations interleaved,
median of ``--repeats``) and reports the ratio measured in this run. Then, unless ``--no-training``, it
trains each configuration on the bundle's synthetic demo set with the bundle's own command (``python -m
monai.bundle run training``, demo defaults, the option on the command line) in a scratch copy of the
bundle, and evaluates the selected weights (best on validation) with ``evaluate.yaml`` on the validation and
test splits, in the same configuration. All figures are on SYNTHETIC demo data: they show what the option
changes in this pipeline, nothing about real images.

Usage::

    python benchmarks/bench_ablation.py                                   # all three bundles, about 15 min
    python benchmarks/bench_ablation.py --option amp --output amp.json    # fp32 against bf16 autocast
    python benchmarks/bench_ablation.py --bundles nnmamba_brats_segmentation --no-training
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_case import describe_machine  # this folder is on sys.path when a script of it runs
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the release builder's training and measuring (repository tooling, not the package)
from scripts.build_release import measure_metrics, train_demo_weights  # noqa: E402

BUNDLES = {  # bundle -> (network input id in inference.yaml, input channels, the metric to quote, higher is better)
    "nnmamba_brats_segmentation": ("roi_size", 4, "val_mean_dice", True),
    "nnmamba_adni_classification": ("spatial_size", 1, "val_auc", True),
    "nnmamba_fetal_landmarks": ("spatial_size", 1, "val_mre", False),
}
# option -> (name, value) of the baseline configuration, then of the compared one
OPTIONS = {"mamba": (("mamba", True), ("no_mamba", False)), "amp": (("fp32", False), ("bf16", True))}
NETWORK_OVERRIDES = {"nnmamba_fetal_landmarks": {"num_landmarks": 6}}  # the demo's landmarks; no protocol record


def build_forward(bundle: str, option: str, value: bool) -> tuple[Any, torch.nn.Module, tuple[int, ...]]:
    """The bundle's inference forward (``evaluator#inferer`` around ``network_def``, demo settings, on the CPU)
    with ``option`` set to ``value``: (a callable of the input, the network, the shape of one network input)."""
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "configs" / "inference.yaml"))
    parser.update({option: value, "device": "$torch.device('cpu')", **NETWORK_OVERRIDES.get(bundle, {})})
    size_id, channels, _, _ = BUNDLES[bundle]
    network = parser.get_parsed_content("network_def").eval()
    inferer = parser.get_parsed_content("evaluator#inferer")
    return (lambda x: inferer(x, network)), network, (1, channels, *parser.get_parsed_content(size_id))


def time_forward(forwards: dict[str, Any], shape: tuple[int, ...], repeats: int) -> dict[str, float]:
    """Median seconds of one forward pass of each configuration, interleaved (after one warm-up pass each)."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in forwards}
    with torch.no_grad():
        for forward in forwards.values():
            forward(x)  # warm-up: numba compilation, allocator
        for _ in range(repeats):
            for name, forward in forwards.items():
                start = time.perf_counter()
                forward(x)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def train_and_evaluate(bundle: str, option: str, name: str, value: bool, work: Path) -> dict:
    """Train on the demo set in a scratch copy of the bundle and evaluate on validation and test, as a
    release build does (``scripts/build_release.py``), with ``--<option> <value>``."""
    overrides = {option: str(value).lower()}
    start = time.perf_counter()
    weights, _ = train_demo_weights(REPO / "bundles" / bundle, overrides, work / name, capture=True)
    return {"training_s": round(time.perf_counter() - start, 1), **measure_metrics(weights.parents[1], overrides)}


def main(argv: list[str] | None = None) -> int:
    """Run the ablation of ``--option`` on the chosen bundles and print (and optionally write) the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--option", choices=sorted(OPTIONS), default="mamba", help="what to switch")
    parser.add_argument("--bundles", nargs="+", choices=sorted(BUNDLES), default=list(BUNDLES))
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per configuration")
    parser.add_argument("--no-training", action="store_true", help="parameters and forward time only")
    parser.add_argument("--output", help="also write the figures to this JSON file")
    options = parser.parse_args(argv)
    (base, base_value), (other, other_value) = OPTIONS[options.option]
    torch.manual_seed(0)
    machine = describe_machine("cpu")
    print(f"CPU: {machine}")
    print(f"option: {options.option}, {base} (--{options.option} {str(base_value).lower()}) against {other}")
    report = {"cpu": machine, "torch": torch.__version__, "option": options.option, "bundles": {}}
    with tempfile.TemporaryDirectory(prefix="nnmamba-ablation-") as scratch:
        for bundle in options.bundles:
            forwards, parameters, shape = {}, {}, ()
            for name, value in ((base, base_value), (other, other_value)):
                forwards[name], network, shape = build_forward(bundle, options.option, value)
                parameters[name] = sum(p.numel() for p in network.parameters())
            seconds = time_forward(forwards, shape, options.repeats)
            entry: dict[str, Any] = {
                "input": list(shape),
                "parameters": parameters,
                "forward_s": {name: round(value, 4) for name, value in seconds.items()},
                f"forward_ratio_{other}_to_{base}": round(seconds[other] / seconds[base], 3),
            }
            print(f"\n{bundle}: input {'x'.join(map(str, shape))}")
            print(f"  parameters: {base} {parameters[base]:,}, {other} {parameters[other]:,} "
                  f"({parameters[other] / parameters[base]:.3f}x)")  # fmt: skip
            print(f"  forward (median of {options.repeats}): {base} {seconds[base] * 1e3:.1f} ms, {other} "
                  f"{seconds[other] * 1e3:.1f} ms, ratio {seconds[other] / seconds[base]:.3f}")  # fmt: skip
            if not options.no_training:
                _, _, metric, higher_is_better = BUNDLES[bundle]
                for name, value in ((base, base_value), (other, other_value)):
                    entry[name] = runs = train_and_evaluate(bundle, options.option, name, value, Path(scratch))
                    print(f"  demo ({name}, SYNTHETIC data): training {runs['training_s']} s, {metric} validation "
                          f"{runs['validation'][metric]:.4f}, test {runs['test'][metric]:.4f}")  # fmt: skip
                difference = entry[other]["test"][metric] - entry[base]["test"][metric]
                verdict = (
                    "the same" if difference == 0 else "better" if (difference > 0) == higher_is_better else "worse"
                )
                print(f"  test {metric}: {other} minus {base} = {difference:+.4f} ({verdict} with {other})")
            report["bundles"][bundle] = entry
    if options.output:
        Path(options.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {options.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
