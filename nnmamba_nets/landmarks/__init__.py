"""Landmark detection helpers: heatmap targets and decoding, Slicer landmark files, metrics, MONAI transforms."""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule; imported on first use, so that the networks (which need only ``decode``) do
# not pay for importing MONAI through the transforms.
_EXPORTS = {
    "DecodeLandmarksd": "transforms",
    "HeatmapLoss": "losses",
    "LandmarkHeatmapd": "heatmap",
    "Landmarks": "io",
    "LoadLandmarksd": "transforms",
    "RadialErrorMetric": "metrics",
    "decode_heatmaps": "decode",
    "gaussian_heatmaps": "heatmap",
    "radial_errors": "metrics",
    "read_landmarks": "io",
    "voxel_to_world": "decode",
    "world_to_voxel": "heatmap",
    "write_landmarks": "io",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


__all__ = sorted(_EXPORTS)
