"""Time and peak memory of nnMambaSeg on CPU: the fast configuration against the reference's way.

Configurations (same network, same weights, same results):

* ``fast``: ``backend="auto"``: with numba, the fused ``cpu`` mixer kernels, which compute the four
  channel-spatial Siamese views together without building them (else the chunked ``torch`` scan
  with the views batched into one mixer call).
* ``baseline``: ``backend="ref"`` (the plain sequential scan loop, as ``mamba_ssm``'s
  ``selective_scan_ref``) and four separate mixer calls per MambaLayer, as the reference code.
* ``separate_views`` (not run by default): ``batch_views=False`` with ``auto``; on the fused cpu path
  the views are never built, so this equals ``fast`` there.

Passes: ``forward`` (``eval()`` under ``torch.no_grad()``, inference) and ``train`` (``train()``
forward + backward of a scalar loss). The baseline's backward keeps PyTorch's autograd graph of the
whole sequential loop, so its peak memory is large (about 14 GiB at 1x4x128^3): by default it runs
only for inputs up to 96^3 (``--baseline-train-max-side 128`` includes the larger one).

Memory: every case runs in a fresh subprocess. After a warm-up pass on a 32^3 input (which loads
the libraries and compiles the numba kernels), the case records ``resource.getrusage`` ``ru_maxrss``
(the process's peak resident set size), runs the timed passes and reports how much that peak grew:
the extra host memory the pass needed. ``tracemalloc`` cannot see PyTorch's C++ allocations, and
``torch.profiler`` memory tracking would slow down the sequential baseline further.

Usage::

    python benchmarks/bench_networks.py                      # 1x4x128^3 and 1x1x96^3, both passes
    python benchmarks/bench_networks.py --sizes 1x64 --passes forward --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "fast": {"backend": "auto", "batch_views": True},
    "baseline": {"backend": "ref", "batch_views": False},
    "separate_views": {"backend": "auto", "batch_views": False},
}
PASSES = ("forward", "train")
WARMUP_SIZE = 32


def parse_size(text: str) -> tuple[int, int]:
    """``"4x128"`` -> (4 channels, 128 voxels per side)."""
    try:
        channels, side = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like CHANNELSxSIDE, e.g. 4x128") from error
    if channels < 1 or side < 16 or side % 16:
        raise argparse.ArgumentTypeError(f"size {text!r}: need >= 1 channel and a side that is a multiple of 16")
    return channels, side


def run_case(config: str, channels: int, side: int, pass_name: str, repeats: int, width: int) -> dict:
    """Build the network, warm up, then time ``repeats`` passes; runs inside the worker subprocess."""
    import torch

    from nnmamba_nets import nnMambaSeg

    torch.manual_seed(0)
    net = nnMambaSeg(in_channels=channels, out_channels=6, channels=width, **CONFIGS[config])
    training = pass_name == "train"
    net.train(training)

    def one_pass(x: torch.Tensor) -> None:
        if training:
            net.zero_grad(set_to_none=True)
            net(x).float().square().mean().backward()
        else:
            with torch.no_grad():
                net(x)

    one_pass(torch.randn(1, channels, WARMUP_SIZE, WARMUP_SIZE, WARMUP_SIZE))
    x = torch.randn(1, channels, side, side, side)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        one_pass(x)
        seconds.append(time.perf_counter() - start)
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scan = net.layer1[1].mamba_layer.mamba.backend_for(x.device).name
    return {
        "seconds": seconds,
        "peak_growth_mib": (peak_after - peak_before) / 1024,
        "peak_rss_mib": peak_after / 1024,
        "scan_backend": scan,
    }


def spawn_case(config: str, channels: int, side: int, pass_name: str, repeats: int, width: int) -> dict:
    """Run one case in a fresh interpreter and return its measurements."""
    command = [sys.executable, __file__, "--worker", json.dumps([config, channels, side, pass_name, repeats, width])]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {config} {channels}x{side}^3 {pass_name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe_machine() -> str:
    import torch

    from nnmamba_nets.ssm import resolve_backend

    auto = resolve_backend("auto", "cpu")
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; torch {torch.__version__} ({torch.get_num_threads()} threads); "
        f"backend auto on cpu -> {auto.name} ({auto.reason})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [parse_size(p) for p in s.split(",")],
        default="4x128,1x96",
        help="comma-separated CHANNELSxSIDE inputs (batch 1). Default: 4x128,1x96",
    )
    parser.add_argument(
        "--passes",
        type=lambda s: s.split(","),
        default="forward,train",
        help=f"comma-separated subset of {PASSES}. Default: forward,train",
    )
    parser.add_argument(
        "--configs",
        type=lambda s: s.split(","),
        default="fast,baseline",
        help=f"comma-separated subset of {tuple(CONFIGS)}. Default: fast,baseline",
    )
    parser.add_argument("--repeats", type=int, default=1, help="timed passes per case (median reported). Default: 1")
    parser.add_argument("--channels", type=int, default=32, help="network width. Default: 32 (the paper's)")
    parser.add_argument(
        "--baseline-train-max-side",
        type=int,
        default=96,
        help="largest side for the baseline's train pass (about 14 GiB of memory at 128). Default: 96",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_case(*json.loads(args.worker))))
        return
    for name, chosen, allowed in (("--passes", args.passes, PASSES), ("--configs", args.configs, tuple(CONFIGS))):
        if not set(chosen) <= set(allowed):
            parser.error(f"{name} must be a subset of {allowed}, got {chosen}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")

    print(f"nnMambaSeg(channels={args.channels}, out_channels=6) on CPU: {describe_machine()}")
    header = f"{'input':<12} {'pass':<8} {'config':<14} {'scan':<5} {'time s':>9} {'peak +MiB':>10} {'peak MiB':>9}"
    print(header + "\n" + "-" * len(header), flush=True)
    summary = []
    for channels, side in args.sizes:
        for pass_name in args.passes:
            results = {}
            for config in args.configs:
                row = f"{f'1x{channels}x{side}^3':<12} {pass_name:<8} {config:<14}"
                if config == "baseline" and pass_name == "train" and side > args.baseline_train_max_side:
                    print(f"{row} skipped (side > --baseline-train-max-side={args.baseline_train_max_side})")
                    continue
                result = spawn_case(config, channels, side, pass_name, args.repeats, args.channels)
                result["median"] = statistics.median(result["seconds"])
                results[config] = result
                print(
                    f"{row} {result['scan_backend']:<5} {result['median']:>9.2f} {result['peak_growth_mib']:>10.0f} "
                    f"{result['peak_rss_mib']:>9.0f}",
                    flush=True,
                )
            if {"fast", "baseline"} <= results.keys():
                fast, base = results["fast"], results["baseline"]
                summary.append(
                    f"1x{channels}x{side}^3 {pass_name}: speed-up {base['median'] / fast['median']:.1f}x, "
                    f"peak memory growth baseline/fast "
                    f"{base['peak_growth_mib'] / max(fast['peak_growth_mib'], 1):.2f}"
                )
    if summary:
        print("\nbaseline / fast:\n  " + "\n  ".join(summary))


if __name__ == "__main__":
    main()
