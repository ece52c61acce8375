"""The Triton scan against the torch backend on CUDA, for ``benchmarks/gpu_check.sh``.

For each shape (B, D, L, N) and dtype: the largest difference of the Triton output and of every
gradient from the torch backend's (relative to the largest torch value), and the best of
``--repeats`` timings of forward and of forward + backward of both backends. Without a CUDA device
it says so, writes ``{"skipped": reason}`` and exits 0, so the script runs on any machine.

Usage::

    python benchmarks/gpu_check.py --json out/scan.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench_scan import scan_inputs

SHAPES = ((2, 128, 4096, 16), (1, 256, 32768, 16))
DTYPES = ("float32", "bfloat16")


def timed(fn, repeats: int) -> float:
    """Best wall time of ``fn`` over ``repeats`` calls after one warm-up, with CUDA synchronised."""
    import torch

    fn()
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def compare(shape: tuple[int, int, int, int], dtype_name: str, repeats: int) -> dict[str, float]:
    """Errors and timings of the triton backend against the torch backend at one shape and dtype."""
    import torch

    from nnmamba_nets.ssm import selective_scan

    dtype = getattr(torch, dtype_name)
    base = scan_inputs(*shape, requires_grad=False)
    inputs = {k: (v.to(dtype) if v.dim() == 3 else v).cuda() for k, v in base.items()}  # activations in dtype
    grad_out = torch.randn(shape[0], shape[1], shape[2], device="cuda", dtype=dtype)
    results: dict[str, float] = {}
    outputs = {}
    for backend in ("triton", "torch"):
        leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}

        def forward(leaves=leaves, backend=backend):
            return selective_scan(**leaves, delta_softplus=True, backend=backend)

        def forward_backward(leaves=leaves, forward=forward):
            for leaf in leaves.values():
                leaf.grad = None
            forward().backward(grad_out)

        with torch.no_grad():
            results[f"{backend}_forward_s"] = timed(forward, repeats)
        results[f"{backend}_forward_backward_s"] = timed(forward_backward, repeats)
        outputs[backend] = {"out": forward().detach().float()} | {k: v.grad.float() for k, v in leaves.items()}
    for name, expected in outputs["torch"].items():
        scale = expected.abs().max().item() + 1e-12
        results[f"max_rel_diff_{name}"] = (outputs["triton"][name] - expected).abs().max().item() / scale
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (best kept). Default: 5")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        report: dict = {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
        print(f"SKIPPED: {report['skipped']}")
    else:
        report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cases": []}
        print(f"GPU: {report['gpu']}, torch {torch.__version__}")
        for shape in SHAPES:
            for dtype_name in DTYPES:
                figures = compare(shape, dtype_name, args.repeats)
                report["cases"].append({"shape": shape, "dtype": dtype_name} | figures)
                worst = max(v for k, v in figures.items() if k.startswith("max_rel_diff"))
                ms = {k: v * 1e3 for k, v in figures.items() if k.endswith("_s")}
                print(
                    f"{str(shape):<22} {dtype_name:<9} triton fwd {ms['triton_forward_s']:8.2f} ms, fwd+bwd "
                    f"{ms['triton_forward_backward_s']:8.2f} ms | torch fwd {ms['torch_forward_s']:8.2f} ms, fwd+bwd "
                    f"{ms['torch_forward_backward_s']:8.2f} ms | largest relative diff (output, grads) {worst:.2e}",
                    flush=True,
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
