"""World <-> voxel coordinates of landmarks through an image affine, and the inside-the-image check.

Landmarks are kept in **world** coordinates (RAS mm, the convention of nibabel and of ``MetaTensor.affine``)
through the whole pipeline. Both directions use MONAI's ``ApplyTransformToPoints`` (float64). It is
imported on first use, not with this module, because the networks' ``decode`` (torch only) imports this
module and ``import nnmamba_nets`` must not import MONAI.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["check_inside", "voxel_to_world", "world_to_voxel"]


def _as_float64(array: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """A plain float64 tensor (a MetaTensor's own affine must not enter the point transform)."""
    if not isinstance(array, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(array).__name__}.")
    return torch.as_tensor(array).detach().as_subclass(torch.Tensor).to(torch.float64)


def _apply(points: torch.Tensor, affine: torch.Tensor, invert: bool) -> torch.Tensor:
    """(c, k, 3) points mapped by one (4, 4) affine (or its inverse) with MONAI's ``ApplyTransformToPoints``."""
    from monai.transforms import ApplyTransformToPoints

    converter = ApplyTransformToPoints(dtype=torch.float64, affine=affine.cpu(), invert_affine=invert)
    return torch.as_tensor(converter(points.cpu())).as_subclass(torch.Tensor).to(points.device)


def world_to_voxel(points: torch.Tensor | np.ndarray, affine: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Continuous voxel indices of world points: ``inverse(affine) @ [x, y, z, 1]``.

    Args:
        points: (K, 3) world coordinates (the system of ``affine``, RAS for nibabel/MONAI images).
        affine: (4, 4) voxel-to-world matrix of the image.

    Returns:
        (K, 3) float64 voxel coordinates (index ``i`` is the centre of voxel ``i``).

    Raises:
        ValueError: the shapes do not fit.
    """
    points_t, affine_t = _as_float64(points, "points"), _as_float64(affine, "affine")
    if points_t.ndim != 2 or points_t.shape[1] != 3:
        raise ValueError(f"points must have shape (num_landmarks, 3), got {tuple(points_t.shape)}.")
    if affine_t.shape != (4, 4):
        raise ValueError(f"affine must have shape (4, 4), got {tuple(affine_t.shape)}.")
    return _apply(points_t[None], affine_t, invert=True)[0]


def voxel_to_world(voxel: torch.Tensor, affine: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Map voxel coordinates to world coordinates with a 4x4 affine per batch item (or one for all).

    Args:
        voxel: (batch, k, 3) voxel coordinates (i, j, k).
        affine: (4, 4), (1, 4, 4) or (batch, 4, 4) affine(s), tensor or array.

    Returns:
        (batch, k, 3) float64 world coordinates ``affine[:3, :3] @ v + affine[:3, 3]``.

    Raises:
        ValueError: the affine's shape does not fit.
    """
    matrix = _as_float64(affine, "affine")
    given_shape = tuple(matrix.shape)
    if matrix.dim() == 2:
        matrix = matrix[None]
    if matrix.dim() != 3 or matrix.shape[1:] != (4, 4) or matrix.shape[0] not in (1, voxel.shape[0]):
        raise ValueError(
            f"affine must have shape (4, 4) or ({voxel.shape[0]}, 4, 4) for a batch of "
            f"{voxel.shape[0]}, got {given_shape}."
        )
    points = voxel.detach().to(torch.float64)
    if matrix.shape[0] == 1:  # one affine: the batch is ApplyTransformToPoints' channel dimension
        return _apply(points, matrix[0], invert=False)
    return torch.stack([_apply(item[None], item_affine, invert=False)[0] for item, item_affine in zip(points, matrix)])


def check_inside(
    voxel_points: torch.Tensor | np.ndarray,
    spatial_shape: Sequence[int],
    names: Sequence[str] | None = None,
    source: str = "image",
) -> None:
    """Raise if any voxel point lies outside the image grid ``[-0.5, size - 0.5]`` on some axis.

    Args:
        voxel_points: (K, 3) voxel coordinates.
        spatial_shape: the grid size.
        names: landmark names for the message. Defaults to indices.
        source: the image (file) named in the message.

    Raises:
        ValueError: listing the landmarks outside and their voxel coordinates.
    """
    points = _as_float64(voxel_points, "voxel_points")
    upper = torch.as_tensor([float(s) - 0.5 for s in spatial_shape], dtype=torch.float64)
    inside = ((points >= -0.5) & (points <= upper)).all(dim=1)
    if not bool(inside.all()):
        labels = list(names) if names is not None else [str(i) for i in range(len(points))]
        outside = {labels[i]: [round(float(v), 2) for v in points[i]] for i in torch.nonzero(~inside).flatten()}
        raise ValueError(
            f"{source}: landmarks lie outside the image grid of shape {tuple(int(s) for s in spatial_shape)} "
            f"(voxel coordinates {outside}); check that the landmark file belongs to this image and uses "
            "the right coordinate system."
        )
