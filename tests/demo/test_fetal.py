"""Tests of nnmamba_nets.demo.fetal: the synthetic fetal-head landmark set."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from nnmamba_nets.common.datalists import SPLITS, read_datalist
from nnmamba_nets.demo.fetal import (
    LANDMARK_DESCRIPTIONS,
    LANDMARK_NAMES,
    PROTOCOL,
    demo_datalist,
    synthesize_case,
    write_demo_set,
)
from nnmamba_nets.landmarks.coordinates import world_to_voxel
from nnmamba_nets.landmarks.datalist import PATH_KEYS, check_case
from nnmamba_nets.landmarks.io import read_landmarks
from nnmamba_nets.landmarks.protocol import LandmarkProtocol


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_case_geometry_and_landmarks_on_edges(seed):
    image, affine, landmarks = synthesize_case(np.random.default_rng([3, seed]))
    again = synthesize_case(np.random.default_rng([3, seed]))
    np.testing.assert_array_equal(image, again[0])  # deterministic
    np.testing.assert_array_equal(landmarks, again[2])
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    assert np.all((spacing >= 1.0) & (spacing <= 2.0)) and np.ptp(spacing) > 0.01  # anisotropic, 1-2 mm
    directions = affine[:3, :3] / spacing
    assert np.abs(np.abs(directions) - np.eye(3)).max() > 0.05  # oblique: not axis-aligned
    voxels = world_to_voxel(landmarks, affine).numpy()
    assert np.all(voxels > 2) and np.all(voxels < np.array(image.shape) - 3)
    # every landmark sits on a strong edge (tip of an ellipsoid): top 10% of the gradient magnitudes
    gradient = np.sqrt(sum(g**2 for g in np.gradient(ndimage.gaussian_filter(image, 1.0))))
    at_landmarks = ndimage.map_coordinates(gradient, voxels.T, order=1)
    assert np.all(at_landmarks > np.percentile(gradient, 90)), at_landmarks
    # anatomical layout (RAS): TCD right/left, HDV superior/inferior, ADV anterior/posterior, in the head frame
    tcd, hdv, adv = (landmarks[i] - landmarks[i + 1] for i in (0, 2, 4))
    assert 25 < np.linalg.norm(tcd) < 45 and 12 < np.linalg.norm(hdv) < 25 and 9 < np.linalg.norm(adv) < 20
    assert tcd[0] > 0.8 * np.linalg.norm(tcd) * np.cos(np.deg2rad(40))


def test_demo_set_layout_and_datalist(tmp_path):
    datalist_file = write_demo_set(tmp_path / "set", num_training=2, num_validation=1, num_test=1, seed=5)
    datalist = read_datalist(datalist_file, path_keys=PATH_KEYS)
    assert [len(datalist[split]) for split in SPLITS] == [2, 1, 1]
    assert datalist["landmark_names"] == list(LANDMARK_NAMES)
    assert datalist["landmark_descriptions"] == list(LANDMARK_DESCRIPTIONS)
    assert LandmarkProtocol.from_datalist(datalist) == PROTOCOL
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == ["datalist.json", "images", "landmarks"]
    for item in datalist["test"]:
        check_case(item["image"], item["landmarks"], LANDMARK_NAMES)
        assert json.loads(open(item["landmarks"]).read())["markups"][0]["coordinateSystem"] == "LPS"
        landmarks = read_landmarks(item["landmarks"])
        assert landmarks.names == list(LANDMARK_NAMES) and landmarks.descriptions == list(LANDMARK_DESCRIPTIONS)


def test_demo_datalist_is_generated_once(tmp_path, monkeypatch):
    monkeypatch.setenv("NNMAMBA_CACHE", str(tmp_path))
    path = demo_datalist(num_training=2, num_validation=1, num_test=1, seed=5)
    first = read_datalist(path, path_keys=PATH_KEYS)["training"][0]["image"]
    stamp = open(first, "rb").read()
    assert demo_datalist(num_training=2, num_validation=1, num_test=1, seed=5) == path
    assert open(first, "rb").read() == stamp
