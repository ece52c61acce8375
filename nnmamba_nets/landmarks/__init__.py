"""Landmark detection helpers: heatmap targets and decoding, Slicer landmark files, metrics, MONAI transforms."""

from .decode import decode_heatmaps, voxel_to_world
from .heatmap import LandmarkHeatmapd, gaussian_heatmaps, world_to_voxel
from .io import Landmarks, read_landmarks, write_landmarks
from .losses import HeatmapLoss
from .metrics import RadialErrorMetric, radial_errors
from .transforms import DecodeLandmarksd, LoadLandmarksd

__all__ = [
    "DecodeLandmarksd",
    "HeatmapLoss",
    "LandmarkHeatmapd",
    "Landmarks",
    "LoadLandmarksd",
    "RadialErrorMetric",
    "decode_heatmaps",
    "gaussian_heatmaps",
    "radial_errors",
    "read_landmarks",
    "voxel_to_world",
    "world_to_voxel",
    "write_landmarks",
]
