"""Tests of nnmamba_nets.demo.phantom (synthetic anatomy helpers)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.demo import phantom


def test_voxel_coordinates_index_the_grid():
    coords = phantom.voxel_coordinates((3, 4, 5))
    assert coords.shape == (3, 3, 4, 5)
    assert coords[:, 2, 1, 4].tolist() == [2.0, 1.0, 4.0]


def test_random_rotation_is_a_proper_rotation():
    rotation = phantom.random_rotation(np.random.default_rng(0), 30.0)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_voxel_affine_maps_the_centre_and_spacing():
    shape, spacing, centre = (10, 20, 31), (1.0, 2.0, 1.5), (5.0, -3.0, 7.0)
    affine = phantom.voxel_affine(shape, spacing, flip=(True, True, False), centre_world=centre)
    middle = (np.asarray(shape) - 1) / 2
    np.testing.assert_allclose(affine[:3, :3] @ middle + affine[:3, 3], centre)
    np.testing.assert_allclose(np.diag(affine)[:3], [-1.0, -2.0, 1.5])
    with pytest.raises(ValueError, match="spacing"):
        phantom.voxel_affine(shape, (1.0, 0.0, 1.0))


def test_blob_mask_is_an_ellipsoid_without_roughness():
    coords = phantom.voxel_coordinates((21, 21, 21))
    mask = phantom.blob_mask(coords, (10, 10, 10), (8, 4, 4))
    assert mask[10, 10, 10] and mask[17, 10, 10] and not mask[10, 15, 10]
    assert mask.sum() == pytest.approx(4 / 3 * np.pi * 8 * 4 * 4, rel=0.1)
    with pytest.raises(ValueError, match="radii"):
        phantom.blob_mask(coords, (10, 10, 10), (8, -1, 4))


def test_shell_is_a_boundary_subset():
    mask = np.zeros((9, 9, 9), dtype=bool)
    mask[1:8, 1:8, 1:8] = True
    rim = phantom.shell(mask, 1)
    assert (rim <= mask).all() and rim.sum() == 7**3 - 5**3


def test_brain_tissue_labels_are_deterministic_and_plausible():
    first = phantom.brain_tissue_labels((48, 48, 48), np.random.default_rng(3))
    second = phantom.brain_tissue_labels((48, 48, 48), np.random.default_rng(3))
    np.testing.assert_array_equal(first, second)
    counts = np.bincount(first.ravel(), minlength=4)
    assert counts[phantom.TISSUE_BACKGROUND] > 0.3 * first.size  # a head inside the grid
    assert counts[phantom.TISSUE_WHITE_MATTER] > counts[phantom.TISSUE_CSF] > 0
    assert counts[phantom.TISSUE_GREY_MATTER] > 0
    assert first[0, 0, 0] == phantom.TISSUE_BACKGROUND
    bigger = phantom.brain_tissue_labels((48, 48, 48), np.random.default_rng(3), ventricle_scale=1.6)
    assert (bigger == phantom.TISSUE_CSF).sum() > counts[phantom.TISSUE_CSF]


def test_fields_and_noise():
    rng = np.random.default_rng(0)
    field = phantom.smooth_random_field((16, 16, 16), rng, sigma=2.0)
    assert abs(field.mean()) < 1e-5 and field.std() == pytest.approx(1.0, rel=1e-4)
    bias = phantom.bias_field((16, 16, 16), rng, strength=0.2)
    assert bias.min() >= np.exp(-0.2) - 1e-6 and bias.max() <= np.exp(0.2) + 1e-6
    noisy = phantom.add_rician_noise(np.zeros((16, 16, 16), np.float32), rng, sigma=0.1)
    assert noisy.min() >= 0 and noisy.mean() == pytest.approx(0.1 * np.sqrt(np.pi / 2), rel=0.05)


def test_save_nifti_keeps_affine_dtype_and_description(tmp_path):
    affine = phantom.voxel_affine((4, 5, 6), (1.0, 1.0, 2.0), flip=(True, False, False))
    path = tmp_path / "sub" / "image.nii.gz"
    phantom.save_nifti(path, np.arange(120).reshape(4, 5, 6), affine, dtype=np.int16, description="test image")
    image = nib.load(path)
    np.testing.assert_allclose(image.affine, affine)
    assert image.get_data_dtype() == np.int16 and image.header["descrip"].item() == b"test image"
    assert image.header["sform_code"] == 1 and image.header["qform_code"] == 1
