"""Synthetic fetal-head demo data and the (image, landmarks) -> datalist preparer."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from nnmamba_nets.data.fetal import (
    LANDMARK_NAMES,
    check_case,
    ensure_demo_dataset,
    prepare_datalist,
    synthesize_case,
)
from nnmamba_nets.data.phantom import save_nifti
from nnmamba_nets.landmarks.heatmap import world_to_voxel
from nnmamba_nets.landmarks.io import Landmarks, read_landmarks, write_landmarks


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


def test_demo_dataset_is_generated_once(tmp_path):
    datalist_file = ensure_demo_dataset(str(tmp_path), num_training=2, num_validation=1, num_test=1, seed=5)
    with open(datalist_file) as stream:
        datalist = json.load(stream)
    assert [len(datalist[k]) for k in ("training", "validation", "test")] == [2, 1, 1]
    folder = tmp_path / "synthetic-v1_train2_val1_test1_seed5"
    first = folder / datalist["training"][0]["image"]
    stamp = first.stat().st_mtime_ns
    assert ensure_demo_dataset(str(tmp_path), num_training=2, num_validation=1, num_test=1, seed=5) == datalist_file
    assert first.stat().st_mtime_ns == stamp  # reused, not rewritten
    for item in datalist["test"]:
        check_case(folder / item["image"], folder / item["landmarks"])
        document = json.loads((folder / item["landmarks"]).read_text())
        assert document["markups"][0]["coordinateSystem"] == "LPS"
        assert read_landmarks(folder / item["landmarks"]).names == list(LANDMARK_NAMES)


def write_case(folder, name, points, names=LANDMARK_NAMES):
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = -30.0
    save_nifti(folder / "images" / f"{name}.nii.gz", np.zeros((40, 40, 30), np.float32), affine)
    write_landmarks(folder / "landmarks" / f"{name}.mrk.json", Landmarks(list(names), points))


def test_prepare_datalist_splits_and_relative_paths(tmp_path):
    points = np.tile([0.0, 0.0, 0.0], (6, 1)) + np.arange(6)[:, None]
    for index in range(10):
        write_case(tmp_path, f"case_{index}", points)
    output = tmp_path / "lists" / "datalist.json"
    datalist = prepare_datalist(
        tmp_path / "images", tmp_path / "landmarks", output, val_fraction=0.2, test_fraction=0.2
    )
    assert [len(datalist[k]) for k in ("training", "validation", "test")] == [6, 2, 2]
    assert json.loads(output.read_text()) == datalist
    item = datalist["test"][0]
    assert item["image"].startswith("../images/") and item["landmarks"].startswith("../landmarks/")
    assert item["image"].split("/")[-1].split(".")[0] == item["landmarks"].split("/")[-1].split(".")[0]


@pytest.mark.parametrize(
    "problem, pattern",
    [
        ("outside", r"case_bad\.mrk\.json on image .*case_bad\.nii\.gz: landmarks lie outside .*'ADV_end'"),
        ("missing", r"case_bad\.mrk\.json: expected 6 landmarks .*missing \['ADV_end'\]"),
        ("extra", r"case_bad\.mrk\.json: expected 6 landmarks .*unexpected \['extra'\]"),
        ("unpaired", r"without a matching image or landmark file.*case_alone"),
    ],
)
def test_prepare_datalist_rejects_bad_cases_naming_the_file(tmp_path, problem, pattern):
    points = np.zeros((6, 3))
    write_case(tmp_path, "case_good", points)
    if problem == "outside":
        bad = points.copy()
        bad[5] = [0.0, 0.0, 100.0]
        write_case(tmp_path, "case_bad", bad)
    elif problem == "missing":
        write_case(tmp_path, "case_bad", points[:5], LANDMARK_NAMES[:5])
    elif problem == "extra":
        write_case(tmp_path, "case_bad", np.zeros((7, 3)), [*LANDMARK_NAMES, "extra"])
    else:
        write_landmarks(tmp_path / "landmarks" / "case_alone.mrk.json", Landmarks(list(LANDMARK_NAMES), points))
    output = tmp_path / "datalist.json"
    with pytest.raises(ValueError, match=pattern):
        prepare_datalist(tmp_path / "images", tmp_path / "landmarks", output)
    assert not output.exists()  # nothing written when a case is bad
    assert nib.load(tmp_path / "images" / "case_good.nii.gz").shape == (40, 40, 30)
