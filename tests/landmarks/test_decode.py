"""Tests of nnmamba_nets.landmarks.decode: synthetic heatmaps with known landmark positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from nnmamba_nets.landmarks.coordinates import voxel_to_world
from nnmamba_nets.landmarks.decode import decode_heatmaps

SPATIAL = (24, 20, 28)


def gaussian_heatmaps(centres: torch.Tensor, sigma: float = 2.5, scale: float = 255.0) -> torch.Tensor:
    """(b, k, *SPATIAL) Gaussian blobs at sub-voxel ``centres`` (b, k, 3), peak ``scale``."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in SPATIAL], indexing="ij"))
    sq_dist = ((grid[None, None] - centres[..., None, None, None]) ** 2).sum(dim=2)  # (b, k, d0, d1, d2)
    return (scale * torch.exp(-sq_dist / (2 * sigma**2))).float()


@pytest.fixture
def centres() -> torch.Tensor:
    """(2, 3, 3) interior centres with fractional parts away from 0.5 (so the nearest voxel is unique)."""
    gen = torch.Generator().manual_seed(0)
    whole = torch.stack([torch.randint(3, s - 3, (2, 3), generator=gen) for s in SPATIAL], dim=-1)
    fraction = torch.rand(2, 3, 3, generator=gen, dtype=torch.float64) * 0.8 - 0.4  # in [-0.4, 0.4)
    return whole.double() + fraction


def non_trivial_affines() -> torch.Tensor:
    """Two affines: a rotation with anisotropic spacing, and a sheared one; both translated."""
    rotation = torch.tensor([[0.0, -0.8, 0.0, 12.5], [1.2, 0.0, 0.0, -40.0], [0.0, 0.0, 2.0, 3.0], [0, 0, 0, 1]])
    sheared = torch.tensor([[0.9, 0.1, 0.0, -7.0], [0.0, 1.1, 0.3, 5.0], [0.2, 0.0, -1.5, 60.0], [0, 0, 0, 1]])
    return torch.stack([rotation, sheared]).double()


def test_argmax_gives_the_nearest_voxel(centres):
    result = decode_heatmaps(gaussian_heatmaps(centres), refine=False)
    torch.testing.assert_close(result["voxel"], centres.round())
    assert result["world"] is None


def test_refinement_recovers_sub_voxel_centres_in_voxel_and_world_space(centres):
    affines = non_trivial_affines()
    result = decode_heatmaps(gaussian_heatmaps(centres), affine=affines)
    assert result["voxel"].shape == result["world"].shape == (2, 3, 3)
    torch.testing.assert_close(result["voxel"], centres, rtol=0, atol=1e-3)
    homogeneous = torch.cat([centres, torch.ones(2, 3, 1, dtype=torch.float64)], dim=-1)  # (b, k, 4)
    expected_world = torch.einsum("bij,bkj->bki", affines, homogeneous)[..., :3]
    torch.testing.assert_close(result["world"], expected_world, rtol=0, atol=5e-3)
    torch.testing.assert_close(result["confidence"], gaussian_heatmaps(centres).amax(dim=(2, 3, 4)))


def test_single_numpy_affine_applies_to_every_batch_item_and_metatensor_input(centres):
    affine = non_trivial_affines()[1].numpy()
    heatmaps = MetaTensor(gaussian_heatmaps(centres), affine=torch.as_tensor(affine))
    result = decode_heatmaps(heatmaps, affine=affine)
    assert type(result["voxel"]) is torch.Tensor
    expected = centres @ torch.as_tensor(affine[:3, :3]).T + torch.as_tensor(affine[:3, 3])
    torch.testing.assert_close(result["world"], expected, rtol=0, atol=5e-3)
    torch.testing.assert_close(voxel_to_world(result["voxel"], affine), result["world"])


def test_refinement_of_negative_logit_peaks():
    """A quadratic peak of negative values (logits head) is located exactly by the raw-value fit."""
    centre = torch.tensor([10.3, 7.8, 15.1], dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in SPATIAL], indexing="ij"))
    heatmap = -1.0 - ((grid - centre[:, None, None, None]) ** 2).sum(0)
    result = decode_heatmaps(heatmap[None, None])
    torch.testing.assert_close(result["voxel"][0, 0], centre, rtol=0, atol=1e-9)


def test_border_and_empty_channels_are_not_refined():
    heatmaps = torch.zeros(1, 2, *SPATIAL)
    heatmaps[0, 0, 0, 5, 27] = 3.0  # peak on two borders
    heatmaps[0, 0, 0, 4, 27] = 1.0
    heatmaps[0, 0, 0, 6, 27] = 2.0
    result = decode_heatmaps(heatmaps)
    assert torch.isfinite(result["voxel"]).all()
    assert result["voxel"][0, 0, 0] == 0 and result["voxel"][0, 0, 2] == 27
    assert 5 < result["voxel"][0, 0, 1] < 5.5  # pulled towards the larger neighbour
    torch.testing.assert_close(result["voxel"][0, 1], torch.zeros(3, dtype=torch.float64))  # all-zero channel
    assert result["confidence"].tolist() == [[3.0, 0.0]]


def test_bad_inputs():
    with pytest.raises(
        ValueError, match=r"heatmaps must be a non-empty \(batch, landmarks, d0, d1, d2\).*\(2, 8, 8, 8\)"
    ):
        decode_heatmaps(torch.zeros(2, 8, 8, 8))
    with pytest.raises(ValueError, match=r"affine must have shape \(4, 4\) or \(2, 4, 4\).*got \(3, 3\)"):
        decode_heatmaps(torch.rand(2, 1, 4, 4, 4), affine=np.eye(3))
    with pytest.raises(ValueError, match=r"got \(3, 4, 4\)"):
        decode_heatmaps(torch.rand(2, 1, 4, 4, 4), affine=torch.eye(4).repeat(3, 1, 1))
    with pytest.raises(TypeError, match="must be a torch.Tensor or numpy array, got list"):
        decode_heatmaps([[[[[1.0]]]]])
