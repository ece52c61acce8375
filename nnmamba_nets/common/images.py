"""Checks of input image files before they reach a network: readable, intact, finite, the right shape.

Every bundle's inference checks its inputs with :func:`check_image_file` first and lists the ones it
rejects, with the reason, instead of running the network on data that cannot be trusted. Ours because
nibabel reads a ``.nii.gz`` without checking its gzip CRC (a corrupted stream can decompress to wrong
voxels without an error) and MONAI's ``LoadImage`` checks neither values nor the affine.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass

import nibabel as nib
import numpy as np

__all__ = ["ImageInfo", "check_image_file"]

_CHUNK = 1 << 22


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`check_image_file` found: the spatial shape, the number of channels and the affine."""

    spatial_shape: tuple[int, int, int]
    channels: int
    affine: np.ndarray


def _check_gzip_stream(path: str) -> None:
    """Decompress the whole file; raises on a truncated stream or a CRC / length mismatch."""
    with gzip.open(path, "rb") as stream:
        while stream.read(_CHUNK):
            pass


def check_image_file(path: str | os.PathLike, read_data: bool = True) -> ImageInfo:
    """Check one NIfTI (or other nibabel) image file and describe it.

    Args:
        path: the image file: a 3D volume, or 4D with channels last (a 5D NIfTI vector image with a
            singleton 4th dimension counts as channels too).
        read_data: also decompress the whole file, check its gzip CRC (``.gz``) and that every voxel is
            finite. Defaults to True; False checks the header only.

    Returns:
        the image's spatial shape, channel count and voxel-to-world affine.

    Raises:
        ValueError: naming the file and what is wrong: missing, unreadable, a corrupt gzip stream, not
            3D/4D, NaN or infinite voxels, or an affine that maps no volume (not invertible, or NaN).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path!r}: no such file.")
    try:
        if read_data and path.lower().endswith(".gz"):
            _check_gzip_stream(path)
        image = nib.load(path)
        shape = tuple(int(s) for s in image.shape)
        data = np.asanyarray(image.dataobj) if read_data else None
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise ValueError(f"{path!r}: cannot read the image ({type(error).__name__}: {error}).") from error
    if len(shape) == 3:
        channels = 1
    elif len(shape) == 4:
        channels = shape[3]
    elif len(shape) == 5 and shape[3] == 1:  # NIfTI vector images keep channels in dim 5
        channels = shape[4]
    else:
        raise ValueError(f"{path!r}: shape {shape}, expected a 3D volume (or 4D with channels last).")
    if data is not None and not np.all(np.isfinite(data)):
        raise ValueError(f"{path!r}: the image holds NaN or infinite values.")
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"{path!r}: its affine maps no volume (singular or not finite):\n{affine}")
    return ImageInfo(spatial_shape=shape[:3], channels=channels, affine=affine)  # type: ignore[arg-type]
