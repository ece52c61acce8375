"""Selective-scan backends and the rule that picks one.

Backends (all share the signature of :func:`selective_scan`):

* ``cuda``: ``mamba_ssm``'s fused CUDA kernel (optional GPU extra), CUDA tensors only.
* ``triton``: a Triton kernel compiled at run time, CUDA tensors (or ``TRITON_INTERPRET=1``).
* ``cpu``: a fused numba kernel, parallel over batch x channels, CPU tensors only.
* ``torch``: chunked pure PyTorch, any device.
* ``ref``: the plain sequential loop (:func:`~nnmamba_nets.ssm.reference.selective_scan_ref`), any
  device; never chosen by ``auto``: the slow oracle for tests and the baseline of the benchmarks.

``auto`` (the default) takes, for CUDA tensors, ``cuda`` > ``triton`` > ``torch`` and, for CPU
tensors, ``cpu`` > ``torch``. The environment variable ``NNMAMBA_SCAN_BACKEND`` replaces ``auto``
(and ``None``); an explicit backend name as argument overrides it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from functools import cache
from typing import Callable

import torch

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "BackendChoice",
    "backend_status",
    "cpu_has_native_bf16",
    "probe_package",
    "resolve_backend",
    "selective_scan",
    "get_scan_fn",
]

BACKENDS = ("cuda", "triton", "cpu", "torch", "ref")
ENV_VAR = "NNMAMBA_SCAN_BACKEND"
_INSTALL_HINTS = {
    "cuda": "install the GPU extra (see README: MAMBA_FORCE_BUILD=TRUE pip install -r requirements-gpu.txt)",
    "triton": "install triton (it ships with CUDA builds of PyTorch: pip install triton)",
    "cpu": "install numba (pip install numba)",
    "torch": "",
    "ref": "",
}
_BACKEND_MODULES = {
    "cuda": "mamba_ssm.ops.selective_scan_interface",
    "triton": "triton",
    "cpu": "numba",
    "torch": "torch",
    "ref": "torch",
}
_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendChoice:
    """A resolved backend: its name and why it was chosen."""

    name: str
    reason: str


@cache
def probe_package(module: str) -> tuple[bool, str]:
    """Whether ``module`` imports here.

    Args:
        module: dotted module name; its top-level package gives the version.

    Returns:
        ``(available, detail)`` where ``detail`` is ``"<package> <version>"`` or the import error.
    """
    package = module.split(".")[0]
    if importlib.util.find_spec(package) is None:
        return False, f"{package} is not installed"
    try:
        importlib.import_module(module)
    except Exception as error:  # a broken CUDA build raises ImportError, OSError, RuntimeError...
        return False, f"{module} failed to import: {type(error).__name__}: {error}"
    return True, f"{package} {getattr(importlib.import_module(package), '__version__', '?')}"


def backend_status(name: str) -> tuple[bool, str]:
    """Whether backend ``name``'s package imports here (see :func:`probe_package`)."""
    return probe_package(_BACKEND_MODULES[name])


_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of native bf16 arithmetic


@cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX-BF16 instructions).

    Where it does, oneDNN runs bf16 convolutions and matmuls at up to twice the float32 speed, so
    ``torch.autocast("cpu", dtype=torch.bfloat16)`` pays off; elsewhere bf16 is emulated and usually
    slower than float32.

    Returns:
        True if PyTorch reports AVX512-BF16 or AMX support (or, failing that, ``/proc/cpuinfo`` lists
        one of their flags).
    """
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(probe) for probe in probes):
        return any(probe() for probe in probes)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = {word for line in cpuinfo if line.startswith("flags") for word in line.split()}
    except OSError:
        return False
    return any(flag in flags for flag in _BF16_CPU_FLAGS)


def _triton_runs_on(device: torch.device) -> bool:
    """CUDA tensors, or CPU tensors when triton's interpreter was on when our kernels were defined."""
    if device.type == "cuda":
        return True
    if os.environ.get("TRITON_INTERPRET") != "1":
        return False
    kernels = sys.modules.get(f"{__package__}.triton_scan")
    return kernels is None or kernels._INTERPRETED


def _supports(name: str, device: torch.device) -> tuple[bool, str]:
    """Whether backend ``name`` can run tensors on ``device`` here, with the reason if not."""
    available, detail = backend_status(name)
    if not available:
        return False, detail
    if name == "cuda" and device.type != "cuda":
        return False, "mamba_ssm kernels need CUDA tensors"
    if name == "triton" and not _triton_runs_on(device):
        return False, "triton kernels need CUDA tensors (or TRITON_INTERPRET=1)"
    if name == "cpu" and device.type != "cpu":
        return False, "the numba kernel needs CPU tensors"
    return True, detail


def resolve_backend(backend: str | None, device: torch.device | str) -> BackendChoice:
    """Pick the backend for tensors on ``device``.

    Args:
        backend: ``"auto"`` or ``None`` (both read ``NNMAMBA_SCAN_BACKEND`` if set, else choose
            automatically), or one of :data:`BACKENDS`.
        device: where the tensors live.

    Returns:
        The chosen backend and the reason.

    Raises:
        ValueError: unknown backend name.
        RuntimeError: an explicitly requested backend cannot run here (the message says how to fix it).
    """
    device = torch.device(device)
    source = "argument"
    if backend in (None, "auto") and os.environ.get(ENV_VAR, "").strip():
        backend, source = os.environ[ENV_VAR].strip().lower(), f"${ENV_VAR}"
    backend = backend or "auto"
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"Unknown scan backend {backend!r} (from {source}); expected 'auto' or one of {BACKENDS}.")
    if backend != "auto":
        ok, detail = _supports(backend, device)
        if not ok:
            hint = _INSTALL_HINTS[backend]
            raise RuntimeError(
                f"Scan backend {backend!r} (from {source}) cannot run on {device.type}: {detail}."
                + (f" To use it, {hint}." if hint else "")
            )
        return BackendChoice(backend, f"requested by {source} ({detail})")
    order = ("cuda", "triton", "torch") if device.type == "cuda" else ("cpu", "torch")
    skipped = []
    for name in order:
        ok, detail = _supports(name, device)
        if ok:
            reason = f"auto: {detail}" + (f" ({'; '.join(skipped)})" if skipped else "")
            return BackendChoice(name, reason)
        skipped.append(f"{name} unavailable: {detail}")
    raise AssertionError("unreachable: the torch backend always runs")  # pragma: no cover


@cache
def get_scan_fn(name: str) -> Callable[..., torch.Tensor]:
    """The scan function implementing backend ``name`` (imported on first use)."""
    if name == "cuda":
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        return selective_scan_fn
    if name == "triton":
        from .triton_scan import selective_scan_triton

        return selective_scan_triton
    if name == "cpu":
        from .cpu_scan import selective_scan_cpu

        return selective_scan_cpu
    from .reference import selective_scan_ref, selective_scan_torch

    return selective_scan_ref if name == "ref" else selective_scan_torch


@cache
def _log_auto_choice(device_type: str, choice: BackendChoice) -> None:
    _logger.info(
        "nnmamba_nets: selective scan on %s tensors uses backend %r (%s)", device_type, choice.name, choice.reason
    )


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    backend: str | None = None,
) -> torch.Tensor:
    """Selective scan with the semantics of ``mamba_ssm``'s ``selective_scan_fn`` (real ``A``).

    ``h_t = exp(dt_t * A) h_{t-1} + dt_t * B_t * u_t``; ``y_t = C_t . h_t + D * u_t``;
    ``out_t = y_t * silu(z_t)``, with ``dt = softplus(delta + delta_bias)`` if ``delta_softplus``.
    Differentiable in every tensor argument on every backend.

    Args:
        u: (batch, dim, L) input.
        delta: (batch, dim, L) time steps (before bias and softplus).
        A: (dim, d_state) real, normally negative.
        B: (batch, d_state, L) input-dependent.
        C: (batch, d_state, L) input-dependent.
        D: optional (dim,) skip connection.
        z: optional (batch, dim, L) gate.
        delta_bias: optional (dim,) bias added to ``delta``.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        backend: ``"cuda"``, ``"triton"``, ``"cpu"``, ``"torch"``, ``"ref"``, or ``"auto"``/``None``
            (``NNMAMBA_SCAN_BACKEND`` if set, else the automatic choice).

    Returns:
        (batch, dim, L) tensor in the dtype of ``u``.
    """
    choice = resolve_backend(backend, u.device)
    _log_auto_choice(u.device.type, choice)
    fn = get_scan_fn(choice.name)
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
