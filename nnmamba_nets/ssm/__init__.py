"""Mamba mixer and selective-scan backends (CUDA kernels, Triton, numba CPU kernel, PyTorch)."""

from .backends import (
    BACKENDS,
    ENV_VAR,
    BackendChoice,
    backend_status,
    cpu_has_native_bf16,
    resolve_backend,
    selective_scan,
)
from .mamba import Mamba
from .reference import selective_scan_ref, selective_scan_torch

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "BackendChoice",
    "Mamba",
    "backend_status",
    "cpu_has_native_bf16",
    "resolve_backend",
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_torch",
]
