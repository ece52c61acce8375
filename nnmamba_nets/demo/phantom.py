"""Generic building blocks for synthetic 3D MRI-like phantoms.

The demo datasets of the bundles (BraTS-like tumours, atrophy classification, fetal landmarks) are
drawn from these helpers so that every bundle runs with nothing downloaded. Everything is numpy,
deterministic given a ``numpy.random.Generator``, and works in voxel coordinates; ``voxel_affine``
turns a voxel grid into a NIfTI affine and ``save_nifti`` writes it.

Typical use::

    rng = np.random.default_rng(0)
    shape = (64, 64, 64)
    tissues = brain_tissue_labels(shape, rng)                       # 0 bg, 1 CSF, 2 GM, 3 WM
    image = np.choose(tissues, [0.0, 0.2, 0.6, 0.9]).astype(np.float32)
    image *= bias_field(shape, rng, strength=0.2)
    image = add_rician_noise(image, rng, sigma=0.03) * (tissues > 0)
    save_nifti("t1.nii.gz", image, voxel_affine(shape, spacing=(1.0, 1.0, 1.2)))
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

__all__ = [
    "TISSUE_BACKGROUND",
    "TISSUE_CSF",
    "TISSUE_GREY_MATTER",
    "TISSUE_WHITE_MATTER",
    "add_rician_noise",
    "bias_field",
    "blob_mask",
    "brain_tissue_labels",
    "random_rotation",
    "save_nifti",
    "shell",
    "smooth_random_field",
    "voxel_affine",
    "voxel_coordinates",
]

TISSUE_BACKGROUND = 0
TISSUE_CSF = 1
TISSUE_GREY_MATTER = 2
TISSUE_WHITE_MATTER = 3


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ValueError(f"shape must be three positive ints (d, h, w), got {tuple(shape)}.")
    return int(shape[0]), int(shape[1]), int(shape[2])


def voxel_coordinates(shape: Sequence[int]) -> np.ndarray:
    """Voxel index coordinates of a 3D grid.

    Args:
        shape: grid size (d, h, w).

    Returns:
        float32 array (3, d, h, w); ``coords[:, i, j, k] == (i, j, k)``.
    """
    axes = [np.arange(s, dtype=np.float32) for s in _check_shape(shape)]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def random_rotation(rng: np.random.Generator, max_angle_deg: float | Sequence[float] = 15.0) -> np.ndarray:
    """Rotation matrix composed of uniform random angles about the three axes.

    Args:
        rng: random generator.
        max_angle_deg: largest absolute angle per axis in degrees, one value or one per axis.
            Defaults to 15.

    Returns:
        (3, 3) orthonormal float64 matrix with determinant 1.
    """
    limits = np.broadcast_to(np.asarray(max_angle_deg, dtype=np.float64), (3,))
    ax, ay, az = np.deg2rad(rng.uniform(-limits, limits))
    rot_x = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rot_y = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rot_z = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def voxel_affine(
    shape: Sequence[int],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    flip: Sequence[bool] = (False, False, False),
    rotation: np.ndarray | None = None,
    centre_world: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Voxel-to-world affine of a grid whose centre maps to ``centre_world``.

    Args:
        shape: grid size (d, h, w).
        spacing: voxel size in mm per axis. Defaults to 1 mm isotropic.
        flip: negate the direction of each axis (e.g. ``(True, True, False)`` gives the LPS-style
            ``diag(-1, -1, 1)`` directions of BraTS files). Defaults to no flips.
        rotation: optional (3, 3) rotation applied to the axis directions.
        centre_world: world coordinates (mm) of the grid centre. Defaults to the origin.

    Returns:
        (4, 4) float64 affine for ``nibabel.Nifti1Image``.
    """
    dims = np.asarray(_check_shape(shape), dtype=np.float64)
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    if spacing_arr.shape != (3,) or np.any(spacing_arr <= 0):
        raise ValueError(f"spacing must be three positive floats, got {tuple(spacing)}.")
    directions = np.diag(np.where(np.asarray(flip, dtype=bool), -1.0, 1.0))
    if rotation is not None:
        directions = np.asarray(rotation, dtype=np.float64) @ directions
    linear = directions * spacing_arr  # column j = direction of voxel axis j times its spacing
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = np.asarray(centre_world, dtype=np.float64) - linear @ ((dims - 1) / 2)
    return affine


def smooth_random_field(shape: Sequence[int], rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean and unit standard deviation.

    Args:
        shape: grid size (d, h, w).
        rng: random generator.
        sigma: Gaussian smoothing width in voxels (larger = smoother). Defaults to 4.

    Returns:
        float32 array of ``shape``.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}.")
    field = ndimage.gaussian_filter(rng.standard_normal(_check_shape(shape)), sigma=sigma, mode="wrap")
    return ((field - field.mean()) / max(float(field.std()), 1e-8)).astype(np.float32)


def blob_mask(
    coords: np.ndarray,
    centre: Sequence[float],
    radii: Sequence[float],
    rotation: np.ndarray | None = None,
    roughness: np.ndarray | None = None,
    roughness_amplitude: float = 0.0,
) -> np.ndarray:
    """Rotated ellipsoid whose surface is displaced by a smooth field: an irregular, lobed blob.

    A voxel is inside when ``|R^T (x - centre) / radii| + roughness_amplitude * roughness(x) < 1``.

    Args:
        coords: voxel coordinates (3, d, h, w), e.g. from :func:`voxel_coordinates`.
        centre: blob centre in voxels.
        radii: semi-axes in voxels.
        rotation: optional (3, 3) rotation of the semi-axes.
        roughness: optional field of shape (d, h, w), e.g. :func:`smooth_random_field`.
        roughness_amplitude: how strongly ``roughness`` dents the surface (0.1-0.3 gives lobes).

    Returns:
        bool array (d, h, w).
    """
    radii_arr = np.asarray(radii, dtype=np.float32)
    if radii_arr.shape != (3,) or np.any(radii_arr <= 0):
        raise ValueError(f"radii must be three positive floats, got {tuple(radii)}.")
    offsets = coords - np.asarray(centre, dtype=np.float32).reshape(3, 1, 1, 1)
    if rotation is not None:
        offsets = np.einsum("ji,j...->i...", np.asarray(rotation, dtype=np.float32), offsets)  # R^T x
    level = np.sqrt(np.sum((offsets / radii_arr.reshape(3, 1, 1, 1)) ** 2, axis=0))
    if roughness is not None and roughness_amplitude:
        level = level + roughness_amplitude * roughness
    return level < 1.0


def shell(mask: np.ndarray, thickness: int) -> np.ndarray:
    """Inner shell of a mask: voxels of ``mask`` within ``thickness`` voxels of its boundary.

    Args:
        mask: bool array.
        thickness: shell width in voxels (>= 1).

    Returns:
        bool array, a subset of ``mask``.
    """
    if thickness < 1:
        raise ValueError(f"thickness must be >= 1, got {thickness}.")
    return mask & ~ndimage.binary_erosion(mask, iterations=thickness)


def brain_tissue_labels(
    shape: Sequence[int],
    rng: np.random.Generator,
    brain_fraction: float = 0.78,
    ventricle_scale: float = 1.0,
    cortex_thickness: float = 0.12,
    max_rotation_deg: float = 10.0,
) -> np.ndarray:
    """A brain-shaped tissue label map: lobed brain mask, grey-matter ribbon, white matter, ventricles.

    The brain is a flattened, slightly rotated ellipsoid with a rough (gyri-like) surface, split into
    two hemispheres by a midline CSF fissure (normal to axis 0), with deep grey nuclei and two lateral
    ventricles near the centre.

    Args:
        shape: grid size (d, h, w).
        rng: random generator.
        brain_fraction: brain extent as a fraction of the grid along each axis. Defaults to 0.78.
        ventricle_scale: scales the ventricles (e.g. > 1 mimics atrophy). Defaults to 1.
        cortex_thickness: grey-matter ribbon as a fraction of the brain radius. Defaults to 0.12.
        max_rotation_deg: largest random head rotation per axis. Defaults to 10.

    Returns:
        uint8 array of ``shape`` with values TISSUE_BACKGROUND, TISSUE_CSF, TISSUE_GREY_MATTER,
        TISSUE_WHITE_MATTER.
    """
    dims = np.asarray(_check_shape(shape), dtype=np.float32)
    if not 0.1 <= brain_fraction <= 1.0:
        raise ValueError(f"brain_fraction must be in [0.1, 1], got {brain_fraction}.")
    coords = voxel_coordinates(shape)
    centre = (dims - 1) / 2 + rng.uniform(-0.04, 0.04, 3) * dims
    radii = dims * brain_fraction / 2 * rng.uniform(0.9, 1.0, 3) * np.array([1.0, 1.1, 0.85])
    radii = np.minimum(radii, dims * 0.48)
    rotation = random_rotation(rng, max_rotation_deg)
    sulci = smooth_random_field(shape, rng, sigma=max(1.0, float(dims.min()) / 24))
    lobes = smooth_random_field(shape, rng, sigma=max(2.0, float(dims.min()) / 8))
    surface = 0.5 * lobes + 0.3 * sulci
    brain = blob_mask(coords, centre, radii, rotation, surface, 0.06)
    inner = blob_mask(coords, centre, radii * (1 - cortex_thickness), rotation, 0.4 * lobes + 0.6 * sulci, 0.15)

    labels = np.where(brain, TISSUE_GREY_MATTER, TISSUE_BACKGROUND).astype(np.uint8)
    labels[inner & brain] = TISSUE_WHITE_MATTER
    # CSF in the deepest sulci and in the midline fissure between the hemispheres (along axis 0)
    labels[brain & (sulci > 1.6)] = TISSUE_CSF
    local = np.einsum("ji,j...->i...", rotation.astype(np.float32), coords - centre.reshape(3, 1, 1, 1))
    fissure = (np.abs(local[0]) < max(0.6, float(dims[0]) / 96)) & (local[2] > 0.2 * radii[2])
    labels[brain & fissure] = TISSUE_CSF
    # deep grey nuclei and lateral ventricles, mirrored about the midline
    nucleus_radii = radii * np.array([0.14, 0.18, 0.16])
    ventricle_radii = radii * np.array([0.09, 0.35, 0.16]) * ventricle_scale
    for side in (-1.0, 1.0):
        nucleus_centre = centre + rotation @ np.array([side * radii[0] * 0.3, 0.05 * radii[1], -0.1 * radii[2]])
        labels[blob_mask(coords, nucleus_centre, nucleus_radii, rotation, lobes, 0.1) & brain] = TISSUE_GREY_MATTER
        ventricle_centre = centre + rotation @ np.array([side * radii[0] * 0.14, 0.0, 0.08 * radii[2]])
        labels[blob_mask(coords, ventricle_centre, ventricle_radii, rotation, lobes, 0.08) & brain] = TISSUE_CSF
    return labels


def bias_field(shape: Sequence[int], rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """Smooth multiplicative intensity inhomogeneity (MRI bias field).

    Args:
        shape: grid size (d, h, w).
        rng: random generator.
        strength: half-range of the log field; the field lies roughly in [exp(-s), exp(s)].
            Defaults to 0.2.

    Returns:
        float32 array of ``shape``, positive, around 1.
    """
    dims = np.asarray(_check_shape(shape), dtype=np.float32)
    unit = voxel_coordinates(shape) / np.maximum(dims - 1, 1).reshape(3, 1, 1, 1) * 2 - 1  # [-1, 1]
    linear = np.einsum("i,i...->...", rng.uniform(-1, 1, 3).astype(np.float32), unit)
    quadratic = np.einsum("i,i...->...", rng.uniform(-1, 1, 3).astype(np.float32), unit**2)
    log_field = linear + 0.5 * quadratic
    log_field = log_field / max(float(np.abs(log_field).max()), 1e-8) * strength
    return np.exp(log_field).astype(np.float32)


def add_rician_noise(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Magnitude-MRI (Rician) noise: ``|image + n1 + i n2|`` with n1, n2 ~ N(0, sigma^2).

    Args:
        image: noise-free magnitude image.
        rng: random generator.
        sigma: standard deviation of the complex Gaussian noise.

    Returns:
        float32 array, non-negative, same shape as ``image``.
    """
    real = image + rng.normal(0.0, sigma, image.shape)
    imaginary = rng.normal(0.0, sigma, image.shape)
    return np.sqrt(real**2 + imaginary**2).astype(np.float32)


def save_nifti(
    path: str | os.PathLike,
    data: np.ndarray,
    affine: np.ndarray,
    dtype: np.dtype | type | None = None,
    description: str = "",
) -> None:
    """Write ``data`` as a NIfTI-1 file with ``affine`` as both sform and qform (code 1, scanner).

    Args:
        path: output file, ``.nii`` or ``.nii.gz``; parent folders are created.
        data: 3D (or 4D, channel last) array.
        affine: (4, 4) voxel-to-world matrix.
        dtype: on-disk data type (``data`` is cast to it). Defaults to ``data.dtype``.
        description: text stored in the header's ``descrip`` field (max 80 bytes).
    """
    array = np.asarray(data)
    array = array.astype(np.dtype(dtype) if dtype is not None else array.dtype, copy=False)
    image = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64), dtype=array.dtype)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    if description:
        image.header["descrip"] = description.encode()[:80]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    nib.save(image, os.fspath(path))
