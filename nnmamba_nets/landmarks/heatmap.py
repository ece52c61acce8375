"""World <-> voxel coordinates through an image affine, and Gaussian heatmap targets.

Landmarks are kept in **world** coordinates (RAS mm, the convention of nibabel and of ``MetaTensor.affine``)
through the whole pipeline. Spatial transforms (resampling, orientation, cropping, padding, flips, rotations)
change the voxel grid and update the image's ``affine``; they never move the anatomy in world space. The heatmap
target is therefore made at the end, from the world points and the affine of the *transformed* image
(:class:`LandmarkHeatmapd`), so it always sits on the right voxels.

MONAI's ``GenerateHeatmapd`` rounds every point to the nearest voxel before blurring (up to 0.87 voxel of target
error, 1.3 mm at 1.5 mm voxels); :func:`gaussian_heatmaps` evaluates the Gaussian at the exact sub-voxel position.
World to voxel uses MONAI's ``ApplyTransformToPoints``; voxel to world is
:func:`nnmamba_nets.landmarks.decode.voxel_to_world`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import ApplyTransformToPoints, MapTransform

__all__ = ["LandmarkHeatmapd", "check_inside", "gaussian_heatmaps", "world_to_voxel"]


def _as_float64(array: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A plain float64 tensor (a MetaTensor's own affine must not enter the point transform)."""
    tensor = array if isinstance(array, torch.Tensor) else torch.as_tensor(np.asarray(array))
    return tensor.as_subclass(torch.Tensor).to(torch.float64)


def _check_points(points: torch.Tensor, name: str) -> None:
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape (num_landmarks, 3), got {tuple(points.shape)}.")


def _check_affine(affine: torch.Tensor) -> None:
    if affine.shape != (4, 4):
        raise ValueError(f"affine must have shape (4, 4), got {tuple(affine.shape)}.")


def world_to_voxel(points: torch.Tensor | np.ndarray, affine: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Continuous voxel indices of world points: ``inverse(affine) @ [x, y, z, 1]``.

    Args:
        points: (K, 3) world coordinates (the system of ``affine``, RAS for nibabel/MONAI images).
        affine: (4, 4) voxel-to-world matrix of the image.

    Returns:
        (K, 3) float64 voxel coordinates (index ``i`` is the centre of voxel ``i``).
    """
    points_t, affine_t = _as_float64(points), _as_float64(affine)
    _check_points(points_t, "points")
    _check_affine(affine_t)
    converter = ApplyTransformToPoints(dtype=torch.float64, affine=affine_t, invert_affine=True)
    return torch.as_tensor(converter(points_t[None])[0]).as_subclass(torch.Tensor)


def gaussian_heatmaps(
    voxel_points: torch.Tensor | np.ndarray,
    spatial_shape: Sequence[int],
    sigma: float | Sequence[float] = 2.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """One Gaussian per point, centred at its exact (sub-voxel) position: ``exp(-|x - p|^2 / (2 sigma^2))``.

    The Gaussian is separable, so each heatmap is the outer product of three 1D profiles (cheap at any size).
    Its value is 1 at the (continuous) centre; the largest voxel value is below 1 when the centre lies between
    voxels.

    Args:
        voxel_points: (K, 3) voxel coordinates.
        spatial_shape: output spatial size (3 ints).
        sigma: standard deviation in voxels, one value or one per axis. Defaults to 2.
        dtype: output dtype. Defaults to float32.

    Returns:
        (K, *spatial_shape) heatmaps.
    """
    points = _as_float64(voxel_points)
    _check_points(points, "voxel_points")
    if len(spatial_shape) != 3:
        raise ValueError(f"spatial_shape must have 3 entries, got {tuple(spatial_shape)}.")
    sigmas = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (3,))
    if np.any(sigmas <= 0):
        raise ValueError(f"sigma must be positive, got {sigma}.")
    profiles = []
    for axis, (size, axis_sigma) in enumerate(zip(spatial_shape, sigmas)):
        grid = torch.arange(int(size), dtype=torch.float64)
        profiles.append(torch.exp(-((grid[None] - points[:, axis, None]) ** 2) / (2 * axis_sigma**2)))  # (K, size)
    heatmaps = torch.einsum("ki,kj,kl->kijl", *profiles)  # (K, d, h, w)
    return heatmaps.to(dtype)


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
    points = _as_float64(voxel_points)
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


def _image_source(image: torch.Tensor) -> str:
    if isinstance(image, MetaTensor):
        return str(image.meta.get("filename_or_obj", "image"))
    return "image"


class LandmarkHeatmapd(MapTransform):
    """Gaussian heatmap targets from world landmarks and the (transformed) image's affine.

    Put it after every spatial transform: the heatmap sits where the landmarks are on the image as it is now.

    Args:
        keys: keys of (K, 3) world (RAS) landmark coordinates, e.g. from
            :class:`~nnmamba_nets.landmarks.transforms.LoadLandmarksd`.
        ref_image_key: key of the image (a ``MetaTensor`` whose ``affine`` maps voxels to world).
        heatmap_keys: output keys, one per key. Defaults to ``"<key>_heatmap"``.
        sigma: Gaussian standard deviation in voxels of the image. Defaults to 2.
        voxel_keys: optional output keys for the (K, 3) voxel coordinates. Defaults to None (not stored).
        names: landmark names for error messages. Defaults to indices.
        allow_missing_keys: don't raise if a key is absent.

    Raises:
        ValueError: when a landmark lies outside the image (the message names the image file).
    """

    def __init__(
        self,
        keys: KeysCollection,
        ref_image_key: str = "image",
        heatmap_keys: KeysCollection | None = None,
        sigma: float | Sequence[float] = 2.0,
        voxel_keys: KeysCollection | None = None,
        names: Sequence[str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_image_key = ref_image_key
        self.heatmap_keys = self._per_key(heatmap_keys, "heatmap", "_heatmap")
        self.voxel_keys = self._per_key(voxel_keys, "voxel", None)
        self.sigma = sigma
        self.names = list(names) if names is not None else None

    def _per_key(self, keys: KeysCollection | None, what: str, suffix: str | None) -> list[Hashable | None]:
        if keys is None:
            return [f"{k}{suffix}" if suffix else None for k in self.keys]
        keys = [keys] if isinstance(keys, (str, int)) else list(keys)
        if len(keys) != len(self.keys):
            raise ValueError(f"got {len(keys)} {what} keys for {len(self.keys)} landmark keys.")
        return keys

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        image = d[self.ref_image_key]
        if not isinstance(image, MetaTensor):
            raise TypeError(f"{self.ref_image_key!r} must be a MetaTensor with an affine, got {type(image).__name__}.")
        spatial_shape = tuple(image.shape[1:])
        for key, heatmap_key, voxel_key in self.key_iterator(d, self.heatmap_keys, self.voxel_keys):
            voxels = world_to_voxel(d[key], image.affine)
            check_inside(voxels, spatial_shape, self.names, _image_source(image))
            heatmap = MetaTensor(gaussian_heatmaps(voxels, spatial_shape, self.sigma), affine=image.affine)
            d[heatmap_key] = heatmap
            if voxel_key is not None:
                d[voxel_key] = voxels.to(torch.float32)
        return d
