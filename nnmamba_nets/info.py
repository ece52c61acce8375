"""Environment report: package versions and the scan backend each device would use, and why."""

from __future__ import annotations

import platform

import torch

from .ssm.backends import BACKENDS, ENV_VAR, cpu_has_native_bf16, probe_package, resolve_backend

__all__ = ["environment_report"]

_PACKAGES = ("torch", "numba", "monai", "mamba_ssm", "causal_conv1d", "triton")


def _backend_line(device: str) -> str:
    """``'<device> tensors -> <backend>: <reason>'`` (or the error that an override raises)."""
    try:
        choice = resolve_backend(None, device)
    except (RuntimeError, ValueError) as error:
        return f"{device} tensors -> error: {error}"
    return f"{device} tensors -> {choice.name}: {choice.reason}"


def environment_report() -> str:
    """A multi-line report of versions, CUDA and the selective-scan backend choice per device.

    Returns:
        The report text (what ``python -m nnmamba_nets info`` prints).
    """
    import os

    from . import __version__

    lines = [f"nnmamba_nets {__version__} (python {platform.python_version()}, {platform.machine()})"]
    for name in _PACKAGES:
        lines.append(f"  {name:<14} {probe_package(name)[1]}")
    cuda = torch.cuda.is_available()
    lines.append(
        f"  CUDA           {'available: ' + torch.cuda.get_device_name(0) if cuda else 'not available'}"
        f" (torch built with CUDA {torch.version.cuda})"
    )
    lines.append(
        "  CPU bf16       " + ("native (AVX512-BF16/AMX)" if cpu_has_native_bf16() else "emulated (no AVX512-BF16/AMX)")
    )
    override = os.environ.get(ENV_VAR)
    lines.append(
        f"Scan backend (${ENV_VAR}={override!r}; choices: auto, {', '.join(BACKENDS)}):"
        if override
        else f"Scan backend (auto; set ${ENV_VAR} to one of {', '.join(BACKENDS)} to override):"
    )
    lines.append("  " + _backend_line("cpu"))
    lines.append(
        "  " + _backend_line("cuda") + ("" if cuda else "   [no CUDA device here: what CUDA tensors would use]")
    )
    return "\n".join(lines)
