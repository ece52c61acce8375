"""A whole BraTS-sized case on CPU: nnMambaSeg against MONAI's SegResNet, in float32 and bfloat16.

Both networks segment one 4 x 240 x 240 x 155 case (random values built in memory: the time does
not depend on the content) with the same MONAI ``SlidingWindowInferer`` (128^3 windows, overlap
0.5, gaussian blending, sw_batch_size 1: 18 windows), random weights, ``eval()`` under
``torch.no_grad()``:

* ``nnMambaSeg(in_channels=4, out_channels=3, channels=32)``: the paper's width, default backend
  (the fused numba kernels on CPU);
* ``SegResNet(init_filters=16, blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1], dropout_prob=0.2)``:
  the configuration of MONAI's ``brats_mri_segmentation`` bundle.

Precisions: float32, and ``torch.autocast("cpu", dtype=torch.bfloat16)`` where the CPU has native
bfloat16 (AVX512-BF16 or AMX, see :func:`nnmamba_nets.ssm.cpu_has_native_bf16`; ``--bf16 always``
runs it regardless). A training step (forward, backward and an Adam step on one 1 x 4 x 128^3 crop,
``train()`` mode) is timed the same way. Every measurement runs in a fresh process: it builds the
network, runs one 128^3 window to warm up (library initialisation, numba kernels loaded from the
cache), times the case, and reports the process's peak resident memory (``ru_maxrss``, the whole
process). Ratios compare figures of the same run; ``--rounds`` repeats the whole set in turn (each
measurement in a fresh process again) and reports medians, which evens out a shared machine's load.

A per-part profile of one 128^3 window of nnMambaSeg (mixer parts against the convolutions) follows
(``--no-profile`` skips it); ``--baseline`` times the reference's way (sequential ``ref`` scan, four
separate view calls) on one window and extrapolates it to the case, labelled as such.

``--device cuda`` runs the case and the training step on the GPU instead (bf16 where
``torch.cuda.is_bf16_supported()``; the scan backend ``auto`` picks mamba_ssm or Triton), adds the
peak GPU memory and skips the CPU-only profile and baseline.

Usage::

    python benchmarks/bench_case.py                      # case + training step, fp32 and bf16, profile
    python benchmarks/bench_case.py --baseline --rounds 3       # on a shared machine
    python benchmarks/bench_case.py --shape 4x128x128x128 --no-train   # a smaller case (quick check)
    python benchmarks/bench_case.py --device cuda --repeats 3          # on a GPU
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
from contextlib import nullcontext
from typing import Any

NETWORKS = ("SegResNet", "nnMambaSeg")
PRECISIONS = ("fp32", "bf16")
ROI = 128
SEGRESNET = {"init_filters": 16, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "dropout_prob": 0.2}


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``"4x240x240x155"`` -> (channels, d, h, w)."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"shape {text!r} must look like CxDxHxW, e.g. 4x240x240x155") from error
    if len(shape) != 4 or min(shape) < 1 or min(shape[1:]) < ROI:
        raise argparse.ArgumentTypeError(f"shape {text!r}: need 4 positive sizes, every spatial size >= {ROI}")
    return shape  # type: ignore[return-value]


def build_network(name: str, in_channels: int, backend: str = "auto", batch_views: bool = True):
    """One of :data:`NETWORKS` with 3 output channels (BraTS' TC, WT, ET) and seeded random weights."""
    import torch

    torch.manual_seed(0)
    if name == "SegResNet":
        from monai.networks.nets import SegResNet

        return SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=3, **SEGRESNET)
    from nnmamba_nets import nnMambaSeg

    return nnMambaSeg(in_channels=in_channels, out_channels=3, channels=32, backend=backend, batch_views=batch_views)


def precision_context(device: str, precision: str):
    """``torch.autocast`` to bfloat16 on ``device`` for ``"bf16"``, nothing for ``"fp32"``."""
    import torch

    return torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def synchronize(device: str) -> None:
    """Wait for the device's queued work (timings on CUDA would otherwise stop early)."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def sliding_window_inferer():
    from monai.inferers import SlidingWindowInferer

    return SlidingWindowInferer(roi_size=(ROI,) * 3, sw_batch_size=1, overlap=0.5, mode="gaussian")


def window_count(spatial: tuple[int, int, int]) -> int:
    """Number of windows the inferer runs on a case of this spatial size."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    interval = _get_scan_interval(spatial, (ROI,) * 3, 3, (0.5,) * 3)
    return len(dense_patch_slices(spatial, (ROI,) * 3, interval))


def peak_memory(device: str) -> dict[str, float]:
    """The process's peak resident memory, and on CUDA the peak memory allocated on the GPU (GiB)."""
    import torch

    peak = {"peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}
    if device == "cuda":
        peak["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 1024**3
    return peak


def run_inference(network: str, precision: str, shape: tuple[int, ...], repeats: int, device: str) -> dict[str, Any]:
    """Worker: time the whole case ``repeats`` times after a one-window warm-up."""
    import torch

    net = build_network(network, shape[0]).eval().to(device)
    inferer = sliding_window_inferer()
    case = torch.randn((1, *shape), generator=torch.Generator().manual_seed(1)).to(device)
    seconds = []
    with torch.no_grad(), precision_context(device, precision):
        net(case[..., :ROI, :ROI, :ROI])
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            out = inferer(case, net)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "out_dtype": str(out.dtype)} | peak_memory(device)


def run_training(network: str, precision: str, shape: tuple[int, ...], repeats: int, device: str) -> dict[str, Any]:
    """Worker: time forward + backward + Adam step on one (1, channels, 128^3) crop, after one warm-up step."""
    import torch

    net = build_network(network, shape[0]).train().to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(1, shape[0], ROI, ROI, ROI, generator=generator).to(device)
    target = (torch.rand(1, 3, ROI, ROI, ROI, generator=generator) > 0.5).float().to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with precision_context(device, precision):
            logits = net(x)
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target).backward()
        optimizer.step()

    step()
    seconds = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds} | peak_memory(device)


def run_baseline_window(precision: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """Worker: one 128^3 window of nnMambaSeg the reference's way (``ref`` scan, four view calls)."""
    import torch

    net = build_network("nnMambaSeg", shape[0], backend="ref", batch_views=False).eval()
    x = torch.randn(1, shape[0], ROI, ROI, ROI, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), precision_context("cpu", precision):
        start = time.perf_counter()
        net(x)
        seconds = time.perf_counter() - start
    return {"seconds": [seconds]} | peak_memory("cpu")


def run_profile(precision: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """Worker: where one 128^3 window of nnMambaSeg spends its time, by wrapping the parts' entry points."""
    import torch

    from nnmamba_nets.nets.blocks import MambaLayer
    from nnmamba_nets.ssm import Mamba, cpu_mixer
    from nnmamba_nets.ssm.cpu_scan import ScanProblem

    totals: dict[str, float] = {}

    def timed(name: str, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - start

        return wrapper

    net = build_network("nnMambaSeg", shape[0]).eval()
    MambaLayer.forward = timed("MambaLayer", MambaLayer.forward)
    Mamba.forward_views = timed("mixer", Mamba.forward_views)
    cpu_mixer.conv_silu = timed("mixer: causal conv kernel", cpu_mixer.conv_silu)
    ScanProblem.forward = timed("mixer: scan kernel", ScanProblem.forward)
    x = torch.randn(1, shape[0], ROI, ROI, ROI, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), precision_context("cpu", precision):
        net(x)
        totals.clear()
        start = time.perf_counter()
        net(x)
        window = time.perf_counter() - start
    mixer, layer = totals.get("mixer", 0.0), totals.get("MambaLayer", 0.0)
    kernels = totals.get("mixer: causal conv kernel", 0.0) + totals.get("mixer: scan kernel", 0.0)
    parts = {
        "mixer: causal conv kernel": totals.get("mixer: causal conv kernel", 0.0),
        "mixer: scan kernel": totals.get("mixer: scan kernel", 0.0),
        "mixer: projections and the rest": mixer - kernels,
        "MambaLayer 1x1 convs, BN, ReLU, residual": layer - mixer,
        "rest of the network (3D convs, BN, up-sampling)": window - layer,
    }
    return {"window_seconds": window, "parts": parts}


WORKERS = {"infer": run_inference, "train": run_training, "baseline": run_baseline_window, "profile": run_profile}


def spawn(kind: str, *args: Any) -> dict[str, Any]:
    """Run one worker in a fresh interpreter and return its JSON result."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps([kind, *args])]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {kind} {args} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe_machine(device: str) -> str:
    """CPU model, the flags that matter here, threads, library versions, the GPU if used, and the load."""
    import numba
    import torch

    from nnmamba_nets.ssm import cpu_has_native_bf16

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    shown = " ".join(flag for flag in wanted if flag in flags) or "unknown"
    gpu = f", GPU {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})" if device == "cuda" else ""
    return (
        f"{model} (flags: {shown}; native bf16: {cpu_has_native_bf16()}), {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numba {numba.__version__}{gpu}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def median(result: dict[str, Any]) -> float:
    return statistics.median(result["seconds"])


def print_table(title: str, rows: list[tuple[str, str, dict[str, Any] | str]], reference: dict[str, float]) -> None:
    """Rows of (network, precision, result or skip reason); ratio = seconds / SegResNet's at that precision."""
    print(f"\n{title}")
    gpu = any(isinstance(result, dict) and "peak_gpu_gib" in result for _, _, result in rows)
    header = f"  {'network':<12} {'precision':<10} {'seconds':>9} {'vs SegResNet':>13} {'peak RSS GiB':>13}"
    header += f" {'peak GPU GiB':>13}" if gpu else ""
    print(header + "\n  " + "-" * (len(header) - 2))
    for network, precision, result in rows:
        if isinstance(result, str):
            print(f"  {network:<12} {precision:<10} {result}")
            continue
        ratio = median(result) / reference[precision]
        line = f"  {network:<12} {precision:<10} {median(result):>9.2f} {ratio:>12.2f}x {result['peak_gib']:>13.2f}"
        print(line + (f" {result['peak_gpu_gib']:>13.2f}" if gpu else ""))


def bf16_choice(mode: str, device: str) -> tuple[bool, str]:
    """Whether to run bf16, and the note that says why not."""
    import torch

    from nnmamba_nets.ssm import cpu_has_native_bf16

    if mode == "never":
        return False, ""
    native = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_native_bf16()
    if mode == "always" or native:
        return True, ""
    where = "this GPU" if device == "cuda" else "this CPU (AVX512-BF16/AMX)"
    return False, f"no native bf16 on {where}: bf16 skipped (--bf16 always runs it)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=parse_shape, default="4x240x240x155", help="CxDxHxW. Default: 4x240x240x155")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per process (median). Default: 1")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every measurement this many times, in turn, each in a fresh process (medians, largest peaks; "
        "evens out the load of a shared machine). Default: 1",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run. Default: cpu")
    parser.add_argument(
        "--bf16",
        choices=("auto", "always", "never"),
        default="auto",
        help="bf16 autocast runs: where the device has native bf16 (auto), always, or never. Default: auto",
    )
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument("--no-profile", action="store_true", help="skip the per-part profile of one window (CPU)")
    parser.add_argument("--baseline", action="store_true", help="add the reference-style baseline (one window, CPU)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *worker_args = json.loads(args.worker)
        print(json.dumps(WORKERS[kind](*worker_args)))
        return
    if min(args.repeats, args.rounds) < 1:
        parser.error(f"--repeats and --rounds must be >= 1, got {args.repeats} and {args.rounds}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")

    print(f"Machine: {describe_machine(args.device)}")
    run_bf16, bf16_note = bf16_choice(args.bf16, args.device)
    precisions = ["fp32", "bf16"] if run_bf16 else ["fp32"]
    shape = tuple(args.shape)
    windows = window_count(shape[1:])
    print(
        f"Case on {args.device}: 1 x {' x '.join(map(str, shape))}, SlidingWindowInferer {ROI}^3, overlap 0.5, "
        f"gaussian, sw_batch_size 1 ({windows} windows); one fresh process per measurement"
    )
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    kinds = ["infer"] + ([] if args.no_train else ["train"])
    for round_index in range(args.rounds):
        for kind in kinds:
            for precision in precisions:
                for network in NETWORKS:
                    result = spawn(kind, network, precision, shape, args.repeats, args.device)
                    print(
                        f"  round {round_index + 1}: {kind} {network} {precision}: {median(result):.2f} s", flush=True
                    )
                    merged = results.setdefault((kind, network, precision), {"seconds": []})
                    merged["seconds"] += result.pop("seconds")
                    for key, value in result.items():  # peaks: the largest of the rounds
                        merged[key] = max(merged.get(key, value), value) if isinstance(value, float) else value
    for kind, title in (("infer", "Whole case (inference)"), ("train", f"Training step at 1 x {shape[0]} x {ROI}^3")):
        if kind not in kinds:
            continue
        reference = {p: median(results[kind, "SegResNet", p]) for p in precisions}
        rows: list[tuple[str, str, dict[str, Any] | str]] = [
            (network, precision, results[kind, network, precision]) for precision in precisions for network in NETWORKS
        ]
        if bf16_note:
            rows.append(("both", "bf16", bf16_note))
        print_table(title, rows, reference)
    if args.device == "cpu" and args.baseline:
        base = spawn("baseline", "fp32", shape)
        ours = median(results["infer", "nnMambaSeg", "fp32"])
        extrapolated = base["seconds"][0] * windows
        print(
            f"\nReference-style baseline (ref scan, four view calls), fp32: {base['seconds'][0]:.2f} s for one "
            f"window, EXTRAPOLATED x {windows} windows = {extrapolated:.0f} s for the case "
            f"({extrapolated / ours:.1f}x our measured case; blending overhead not included)"
        )
    if args.device == "cpu" and not args.no_profile:
        for precision in precisions:
            profile = spawn("profile", precision, shape)
            window = profile["window_seconds"]
            print(f"\nProfile of one {ROI}^3 window of nnMambaSeg, {precision}: {window:.2f} s")
            for part, seconds in profile["parts"].items():
                print(f"  {part:<50} {seconds:>7.3f} s {100 * seconds / window:>5.1f}%")
    print(f"\nLoad average at the end: {', '.join(f'{load:.2f}' for load in os.getloadavg())} (1, 5, 15 min)")


if __name__ == "__main__":
    main()
