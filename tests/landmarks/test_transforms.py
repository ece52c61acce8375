"""World <-> voxel, heatmap targets and decoding: landmarks stay on the anatomy through spatial transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    Flipd,
    Orientationd,
    RandAffined,
    ResizeWithPadOrCropd,
    Rotated,
    Spacingd,
    SpatialCropd,
)

from nnmamba_nets.demo.phantom import random_rotation, voxel_affine, voxel_coordinates
from nnmamba_nets.landmarks.coordinates import voxel_to_world, world_to_voxel
from nnmamba_nets.landmarks.decode import decode_heatmaps
from nnmamba_nets.landmarks.heatmap import gaussian_heatmaps
from nnmamba_nets.landmarks.losses import HeatmapLoss
from nnmamba_nets.landmarks.transforms import DecodeLandmarksd, LandmarkHeatmapd

SHAPE = (40, 34, 46)
WORLD_POINTS = np.array([[10.0, -6.5, 4.25], [-12.3, 8.1, -3.0], [1.7, 15.2, 9.9], [-4.4, -14.0, -10.6]])
BLOB_SIGMA_MM = 2.5


def oblique_affine(seed: int = 0) -> np.ndarray:
    """Anisotropic, rotated (oblique) and partly flipped voxel grid, centred near the origin."""
    rng = np.random.default_rng(seed)
    return voxel_affine(
        SHAPE,
        spacing=(1.2, 1.7, 1.4),
        flip=(True, False, True),
        rotation=random_rotation(rng, 25.0),
        centre_world=(1.0, -2.0, 0.5),
    )


def blob_image(affine: np.ndarray, filename: str = "blobs.nii.gz") -> MetaTensor:
    """An image with one Gaussian blob (sigma 2.5 mm) at every WORLD_POINTS location."""
    world = np.einsum("ij,j...->...i", affine[:3, :3], voxel_coordinates(SHAPE)) + affine[:3, 3]  # (d, h, w, 3)
    distances = ((world[None] - WORLD_POINTS[:, None, None, None]) ** 2).sum(-1)
    image = np.exp(-distances / (2 * BLOB_SIGMA_MM**2)).sum(0).astype(np.float32)
    return MetaTensor(
        torch.from_numpy(image)[None], affine=torch.from_numpy(affine), meta={"filename_or_obj": filename}
    )


def test_world_voxel_round_trip_under_oblique_affine():
    affine = oblique_affine()
    voxels = world_to_voxel(WORLD_POINTS, affine)
    expected = np.linalg.solve(affine, np.c_[WORLD_POINTS, np.ones(4)].T).T[:, :3]
    np.testing.assert_allclose(voxels.numpy(), expected, atol=1e-9)
    np.testing.assert_allclose(voxel_to_world(voxels[None], affine)[0].numpy(), WORLD_POINTS, atol=1e-9)


@pytest.mark.parametrize("sigma", [1.0, 2.0, (1.5, 2.5, 2.0)])
def test_world_heatmap_decode_world_round_trip(sigma):
    """world -> voxel -> Gaussian heatmap -> argmax + refinement -> world, within 0.05 voxel (spec: 0.5)."""
    affine = oblique_affine(1)
    voxels = world_to_voxel(WORLD_POINTS, affine)
    heatmaps = gaussian_heatmaps(voxels, SHAPE, sigma=sigma)
    assert heatmaps.shape == (4, *SHAPE) and float(heatmaps.max()) <= 1.0
    decoded = decode_heatmaps(heatmaps[None], affine=affine)
    voxel_error = (decoded["voxel"][0] - voxels).norm(dim=-1)
    assert float(voxel_error.max()) < 0.05
    world_error_mm = (decoded["world"][0] - torch.from_numpy(WORLD_POINTS)).norm(dim=-1)
    assert float(world_error_mm.max()) < 0.05 * 1.7  # largest voxel side


RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # MONAI's default, given so it does not warn


def spatial_pipelines() -> dict[str, Compose]:
    keys = "image"
    return {
        "resample": Compose([Orientationd(keys, "RAS", labels=RAS_LABELS), Spacingd(keys, (2.0, 2.0, 2.0))]),
        "flip": Compose([Flipd(keys, spatial_axis=0), Flipd(keys, spatial_axis=2)]),
        "rotate": Compose([Rotated(keys, angle=(0.3, -0.2, 0.25), keep_size=False)]),
        "crop_pad": Compose(
            [SpatialCropd(keys, roi_start=(4, 2, 6), roi_end=(38, 34, 40)), ResizeWithPadOrCropd(keys, (48, 40, 32))]
        ),
        "all": Compose(
            [
                Orientationd(keys, "RAS", labels=RAS_LABELS),
                Spacingd(keys, (1.5, 1.5, 1.5)),
                Flipd(keys, spatial_axis=1),
                RandAffined(
                    keys,
                    prob=1.0,
                    rotate_range=(0.3, 0.3, 0.3),
                    scale_range=(0.1, 0.1, 0.1),
                    translate_range=(2, 2, 2),
                    padding_mode="zeros",
                ),
                ResizeWithPadOrCropd(keys, (48, 48, 48)),
            ]
        ).set_random_state(seed=3),
    }


@pytest.mark.parametrize("name", ["resample", "flip", "rotate", "crop_pad", "all"])
def test_landmarks_stay_on_the_anatomy_through_spatial_transforms(name):
    """After each transform chain, the heatmap target made from the world points and the transformed image's
    affine peaks on the image's blobs, and decodes back to the original world points."""
    data = {"image": blob_image(oblique_affine(2)), "landmarks": torch.from_numpy(WORLD_POINTS)}
    data = spatial_pipelines()[name](data)
    data = LandmarkHeatmapd("landmarks", "image", "heatmap", sigma=1.5, voxel_keys="voxels")(data)
    image, heatmap = data["image"], data["heatmap"]
    assert heatmap.shape[1:] == image.shape[1:]
    np.testing.assert_allclose(heatmap.affine.numpy(), image.affine.numpy())

    decoded = decode_heatmaps(heatmap[None], affine=image.affine)
    np.testing.assert_allclose(decoded["world"][0].numpy(), WORLD_POINTS, atol=0.1)

    # the image content moved the same way: the blob centroid around each target is the landmark
    spacing = np.linalg.norm(image.affine.numpy()[:3, :3], axis=0)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in image.shape[1:]], indexing="ij"), -1).astype(np.float64)
    for index, voxel in enumerate(data["voxels"].numpy()):
        window = np.linalg.norm((grid - voxel) * spacing, axis=-1) < 2.0 * BLOB_SIGMA_MM
        weights = image[0].numpy() * window
        assert weights.sum() > 0.5 * window.sum() * np.exp(-2.0), f"no blob around landmark {index} after {name}"
        centroid = (grid * weights[..., None]).sum((0, 1, 2)) / weights.sum()
        centroid_world = voxel_to_world(torch.from_numpy(centroid)[None, None], image.affine)[0, 0].numpy()
        assert np.linalg.norm(centroid_world - WORLD_POINTS[index]) < 0.5 * spacing.max(), (name, index)


def test_landmark_outside_the_image_names_the_file():
    affine = oblique_affine()
    data = {
        "image": blob_image(affine, filename="/data/case_42.nii.gz"),
        "landmarks": torch.tensor([[500.0, 0.0, 0.0]]),
    }
    with pytest.raises(ValueError, match=r"case_42\.nii\.gz: landmarks lie outside the image grid.*'TCD_start'"):
        LandmarkHeatmapd("landmarks", names=["TCD_start"])(data)


@pytest.mark.parametrize("activation", ["softmax", "none"])
def test_decode_landmarksd_world_coordinates_and_confidence(activation):
    affine = oblique_affine(4)
    heatmaps = gaussian_heatmaps(world_to_voxel(WORLD_POINTS, affine), SHAPE, sigma=1.5)
    prediction = torch.log(heatmaps.clamp(min=1e-30)) if activation == "softmax" else heatmaps  # logits or heatmaps
    image = MetaTensor(torch.zeros(1, *SHAPE), affine=torch.from_numpy(affine))
    out = DecodeLandmarksd("pred", activation=activation, heatmap_suffix="_heatmaps")(
        {"pred": prediction, "image": image}
    )
    np.testing.assert_allclose(out["pred_landmarks"].numpy(), WORLD_POINTS, atol=0.05)
    assert out["pred_confidence"].shape == (4,)
    assert bool((out["pred_confidence"] > (0.95 if activation == "softmax" else 0.85)).all())  # peak off the grid
    assert out["pred_heatmaps"].shape == (4, *SHAPE)
    # a spread-out (uncertain) prediction gets a low confidence
    flat = DecodeLandmarksd("pred", activation="softmax")({"pred": torch.zeros(4, *SHAPE), "image": image})
    assert bool((flat["pred_confidence"] < 0.01).all())


def test_decode_landmarksd_needs_an_affine():
    with pytest.raises(ValueError, match="no \\(4, 4\\) affine under 'image'"):
        DecodeLandmarksd("pred")({"pred": torch.zeros(2, 8, 8, 8), "image": torch.zeros(1, 8, 8, 8)})


def test_heatmap_losses():
    target = gaussian_heatmaps(torch.tensor([[5.2, 6.0, 7.7], [3.0, 9.1, 4.4]]), (16, 16, 16), sigma=1.5)[None]
    kl = HeatmapLoss("softmax_ce")
    assert float(kl(torch.log(target.clamp(min=1e-30)), target)) < 1e-4  # the target itself scores ~0
    assert float(kl(torch.zeros_like(target), target)) > 1.0
    mse = HeatmapLoss("mse", target_scale=255.0)
    assert float(mse(255.0 * target, target)) == 0.0
    with pytest.raises(ValueError, match="kind must be one of"):
        HeatmapLoss("l1")
    with pytest.raises(ValueError, match="positive mass"):
        kl(torch.zeros_like(target), torch.zeros_like(target))
