"""Heatmaps to landmark coordinates: per-channel argmax, sub-voxel refinement, voxel -> world.

Voxel coordinates are in the array index order of the heatmap's spatial dims, ``(i, j, k)`` for a
(batch, landmarks, d0, d1, d2) tensor; world coordinates are ``affine @ [i, j, k, 1]`` with the
image's 4x4 affine (for MONAI data, ``MetaTensor.affine``, typically RAS millimetres).
"""

from __future__ import annotations

import numpy as np
import torch

from nnmamba_nets.landmarks.coordinates import voxel_to_world

__all__ = ["decode_heatmaps"]

_TINY = float(np.finfo(np.float64).tiny)


def _as_plain_tensor(value: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(value).__name__}.")
    return torch.as_tensor(value).detach().as_subclass(torch.Tensor)  # MetaTensor -> plain tensor


def _parabola_vertex(left: torch.Tensor, center: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Offset in [-0.5, 0.5] of the vertex of the parabola through (-1, left), (0, center), (1, right).

    The fit is done on log values where all three are positive, so a sampled Gaussian peak is
    located exactly; otherwise on the raw values. No peak (flat or not a maximum) gives 0.
    """
    use_log = (left > 0) & (center > 0) & (right > 0)

    def values(v: torch.Tensor) -> torch.Tensor:
        return torch.where(use_log, torch.log(v.clamp(min=_TINY)), v)

    lv, cv, rv = values(left), values(center), values(right)
    curvature = lv - 2 * cv + rv
    peaked = curvature < 0
    offset = 0.5 * (lv - rv) / torch.where(peaked, curvature, torch.ones_like(curvature))
    return torch.where(peaked, offset, torch.zeros_like(offset)).clamp(-0.5, 0.5)


def _refine(heatmaps: torch.Tensor, index: list[torch.Tensor], peak: torch.Tensor) -> torch.Tensor:
    """Per-axis parabolic sub-voxel offsets (b, k, 3) around the integer peaks ``index`` (3 x (b, k))."""
    batch, channels = heatmaps.shape[:2]
    b_idx = torch.arange(batch, device=heatmaps.device)[:, None].expand(batch, channels)
    k_idx = torch.arange(channels, device=heatmaps.device)[None, :].expand(batch, channels)
    offsets = []
    for axis, size in enumerate(heatmaps.shape[2:]):
        neighbours = []
        for step in (-1, 1):
            moved = list(index)
            moved[axis] = (index[axis] + step).clamp(0, size - 1)
            neighbours.append(heatmaps[(b_idx, k_idx, *moved)].double())
        inside = (index[axis] > 0) & (index[axis] < size - 1)  # no refinement on the border
        offset = _parabola_vertex(neighbours[0], peak, neighbours[1])
        offsets.append(torch.where(inside, offset, torch.zeros_like(offset)))
    return torch.stack(offsets, dim=-1)


def decode_heatmaps(
    heatmaps: torch.Tensor | np.ndarray,
    affine: torch.Tensor | np.ndarray | None = None,
    refine: bool = True,
) -> dict[str, torch.Tensor | None]:
    """Locate one landmark per heatmap channel.

    The integer peak is the argmax of each channel. With ``refine``, each axis is refined by the
    vertex of a parabola through the peak and its two neighbours (fitted on log values when they
    are positive, which recovers the centre of a Gaussian blob exactly); peaks on the border are
    not refined along that axis.

    Args:
        heatmaps: (batch, landmarks, d0, d1, d2) tensor (MetaTensor) or array.
        affine: optional (4, 4) or (batch, 4, 4) voxel-to-world affine, e.g. ``image.affine``.
        refine: add the sub-voxel refinement. Defaults to True.

    Returns:
        dict with ``voxel`` (batch, landmarks, 3) float64 coordinates in array index order,
        ``world`` (batch, landmarks, 3) float64 or None without ``affine``, and ``confidence``
        (batch, landmarks): the heatmap value at the peak.

    Raises:
        TypeError: ``heatmaps`` or ``affine`` is neither a tensor nor an array.
        ValueError: ``heatmaps`` is not 5D or ``affine`` has the wrong shape.
    """
    maps = _as_plain_tensor(heatmaps, "heatmaps")
    if maps.dim() != 5 or min(maps.shape) == 0:
        raise ValueError(
            f"heatmaps must be a non-empty (batch, landmarks, d0, d1, d2) array, got shape {tuple(maps.shape)}."
        )
    batch, channels = maps.shape[:2]
    confidence, flat_index = maps.reshape(batch, channels, -1).max(dim=-1)  # (b, k) each
    index = list(torch.unravel_index(flat_index, tuple(maps.shape[2:])))  # 3 x (b, k)
    voxel = torch.stack(index, dim=-1).double()  # (b, k, 3)
    if refine:
        voxel = voxel + _refine(maps, index, confidence.double())
    world = None if affine is None else voxel_to_world(voxel, affine)
    return {"voxel": voxel, "world": world, "confidence": confidence}
