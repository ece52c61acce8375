"""Time the ``cpu`` scan backend against the plain sequential PyTorch loop, in one run.

The baseline is mamba_ssm's ``selective_scan_ref`` algorithm (``backend="ref"``): one PyTorch step
per position after materialising ``exp(delta * A)`` as (B, D, L, N). Every (backend, shape, pass)
runs in a fresh subprocess so that its peak resident memory can be read from ``ru_maxrss``; each
subprocess reports the best of ``--repeats`` timings after a warm-up call. Ratios compare numbers
taken in this same run (the machine is shared and noisy).

Usage::

    python benchmarks/bench_scan.py                      # the two issue shapes
    python benchmarks/bench_scan.py --shapes 1,64,2048,16 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

DEFAULT_SHAPES = ("1,128,32768,16", "1,256,4096,16")


def scan_inputs(batch: int, dim: int, length: int, d_state: int, requires_grad: bool):
    """Seeded random scan inputs (CPU float32, A < 0), as keyword arguments of ``selective_scan``."""
    import torch

    gen = torch.Generator().manual_seed(0)
    tensors = {
        "u": torch.randn(batch, dim, length, generator=gen),
        "delta": torch.randn(batch, dim, length, generator=gen) * 0.5,
        "A": -torch.rand(dim, d_state, generator=gen) - 0.5,
        "B": torch.randn(batch, d_state, length, generator=gen),
        "C": torch.randn(batch, d_state, length, generator=gen),
        "D": torch.randn(dim, generator=gen),
        "z": torch.randn(batch, dim, length, generator=gen),
        "delta_bias": torch.randn(dim, generator=gen) * 0.5,
    }
    return {k: v.requires_grad_(requires_grad) for k, v in tensors.items()}


def worker(backend: str, shape: tuple[int, int, int, int], backward: bool, repeats: int) -> dict:
    """Time one configuration in this process; returns seconds and the peak RSS growth in MiB."""
    import torch

    from nnmamba_nets.ssm import selective_scan

    inputs = scan_inputs(*shape, requires_grad=backward)
    warm = {k: (v[..., :64] if v.dim() == 3 else v).detach().requires_grad_(backward) for k, v in inputs.items()}
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = selective_scan(**warm, delta_softplus=True, backend=backend)  # compile / warm up
    if backward:
        out.sum().backward()
    times = []
    for _ in range(repeats):
        for v in inputs.values():
            v.grad = None
        start = time.perf_counter()
        out = selective_scan(**inputs, delta_softplus=True, backend=backend)
        if backward:
            out.backward(torch.ones_like(out))
        times.append(time.perf_counter() - start)
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_rss) / 1024
    return {"seconds": min(times), "peak_mib": peak_mib}


def run_in_subprocess(backend: str, shape: str, backward: bool, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", backend, "--shapes", shape, "--repeats", str(repeats)]
    if backward:
        cmd.append("--backward")
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES), help="B,D,L,N tuples")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of the cpu backend (best is kept)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--backward", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        shape = tuple(int(v) for v in args.shapes[0].split(","))
        print(json.dumps(worker(args.worker, shape, args.backward, args.repeats)))
        return

    import numba
    import torch

    print(
        f"torch {torch.__version__}, numba {numba.__version__}, threads: torch {torch.get_num_threads()}, "
        f"numba {numba.get_num_threads()}"
    )
    print(
        f"{'shape (B,D,L,N)':<18} {'pass':<9} {'cpu s':>8} {'ref s':>8} {'speed-up':>9} {'cpu MiB':>8} "
        f"{'ref MiB':>8} {'cpu ns/elem/thread':>19}"
    )
    for shape in args.shapes:
        batch, dim, length, d_state = (int(v) for v in shape.split(","))
        elements = batch * dim * length * d_state
        for backward in (False, True):
            fast = run_in_subprocess("cpu", shape, backward, args.repeats)
            slow = run_in_subprocess("ref", shape, backward, 1)
            per_elem = fast["seconds"] * numba.get_num_threads() / elements * 1e9
            print(
                f"{shape:<18} {'fwd+bwd' if backward else 'fwd':<9} {fast['seconds']:8.3f} {slow['seconds']:8.3f} "
                f"{slow['seconds'] / fast['seconds']:8.1f}x {fast['peak_mib']:8.0f} {slow['peak_mib']:8.0f} "
                f"{per_elem:19.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
