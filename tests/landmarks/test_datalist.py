"""Tests of nnmamba_nets.landmarks.datalist: pairing images with landmark files, checks, the datalist."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.common.datalists import SPLITS
from nnmamba_nets.demo.fetal import LANDMARK_NAMES
from nnmamba_nets.demo.phantom import save_nifti
from nnmamba_nets.landmarks.datalist import prepare_datalist
from nnmamba_nets.landmarks.io import Landmarks, write_landmarks


def write_case(folder, name, points, names=LANDMARK_NAMES, descriptions=None, suffix=".mrk.json"):
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = -30.0
    save_nifti(folder / "images" / f"{name}.nii.gz", np.zeros((40, 40, 30), np.float32), affine)
    write_landmarks(folder / "landmarks" / f"{name}{suffix}", Landmarks(list(names), points, None, descriptions))


def test_prepare_datalist_splits_and_relative_paths(tmp_path):
    points = np.tile([0.0, 0.0, 0.0], (6, 1)) + np.arange(6)[:, None]
    for index in range(10):
        write_case(tmp_path, f"case_{index}", points)
    output = tmp_path / "lists" / "datalist.json"
    assert prepare_datalist(tmp_path, output, val_fraction=0.2, test_fraction=0.2) == str(output)
    datalist = json.loads(output.read_text())
    assert [len(datalist[k]) for k in SPLITS] == [6, 2, 2]
    assert datalist["landmark_names"] == list(LANDMARK_NAMES)  # from the files, in their order
    assert datalist["landmark_descriptions"] == [""] * 6  # the files describe none
    by_folders = tmp_path / "lists" / "by_folders.json"
    prepare_datalist(None, by_folders, 0.2, 0.2, images=tmp_path / "images", landmarks=tmp_path / "landmarks")
    assert json.loads(by_folders.read_text()) == datalist
    item = datalist["test"][0]
    assert item["image"].startswith("../images/") and item["landmarks"].startswith("../landmarks/")
    assert item["image"].split("/")[-1].split(".")[0] == item["landmarks"].split("/")[-1].split(".")[0]


@pytest.mark.parametrize(
    "problem, pattern",
    [
        ("outside", r"case_bad\.mrk\.json on image .*case_bad\.nii\.gz: landmarks lie outside .*'ADV_end'"),
        ("missing", r"of the given names.*\n.*case_bad\.mrk\.json: expected 6 landmarks .*missing \['ADV_end'\]"),
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
        prepare_datalist(tmp_path, output, names=LANDMARK_NAMES)
    assert not output.exists()  # nothing written when a case is bad
    assert nib.load(tmp_path / "images" / "case_good.nii.gz").shape == (40, 40, 30)


AFIDS_NAMES = [str(i) for i in range(1, 5)]
AFIDS_DESCRIPTIONS = ["AC", "PC", "infracollicular sulcus", "PMJ"]


def test_afids_style_files_record_numeric_labels_and_their_descriptions(tmp_path):
    """Labels 1..n with the anatomical names as descriptions; a file without descriptions is fine."""
    points = np.arange(12, dtype=float).reshape(4, 3)
    for index in range(5):
        descriptions = None if index == 2 else AFIDS_DESCRIPTIONS
        write_case(tmp_path, f"sub-{index:02d}", points, AFIDS_NAMES, descriptions, suffix=".fcsv")
    datalist = json.loads(Path(prepare_datalist(tmp_path, tmp_path / "datalist.json", 0.2, 0.2)).read_text())
    assert datalist["landmark_names"] == AFIDS_NAMES and datalist["landmark_descriptions"] == AFIDS_DESCRIPTIONS
    given = prepare_datalist(tmp_path, tmp_path / "given.json", 0.2, 0.2, descriptions=AFIDS_DESCRIPTIONS)
    assert json.loads(Path(given).read_text())["landmark_descriptions"] == AFIDS_DESCRIPTIONS


@pytest.mark.parametrize(
    "problem, pattern",
    [
        ("description", r"sub-01\.fcsv: landmark '2' is described as 'PCC', .*sub-00\.fcsv has 'PC'"),
        ("given", r"sub-00\.fcsv: landmark '1' is described as 'AC', the given descriptions has 'ACC'"),
        ("duplicated", r"sub-01\.fcsv: landmark label '2' appears more than once"),
        ("other set", r"labels \['1', '2', '3', '4'\] of .*sub-00\.fcsv.*\n.*sub-01\.fcsv: .*unexpected \['5'\]"),
    ],
)
def test_bad_landmark_sets_name_the_file_and_what_was_expected(tmp_path, problem, pattern):
    points = np.zeros((4, 3))
    write_case(tmp_path, "sub-00", points, AFIDS_NAMES, AFIDS_DESCRIPTIONS, suffix=".fcsv")
    names, descriptions = list(AFIDS_NAMES), list(AFIDS_DESCRIPTIONS)
    if problem == "description":
        descriptions[1] = "PCC"
    elif problem == "duplicated":
        names[2] = "2"
    elif problem == "other set":
        names[3] = "5"
    write_case(tmp_path, "sub-01", points, names, descriptions, suffix=".fcsv")
    given = ["ACC", *AFIDS_DESCRIPTIONS[1:]] if problem == "given" else None
    with pytest.raises(ValueError, match=pattern):
        prepare_datalist(tmp_path, tmp_path / "datalist.json", 0.0, 0.0, descriptions=given)
    assert not (tmp_path / "datalist.json").exists()
    with pytest.raises(ValueError, match=r"got 3 descriptions for the 4 landmark names"):
        prepare_datalist(tmp_path, tmp_path / "datalist.json", 0.0, 0.0, names=AFIDS_NAMES, descriptions=["a"] * 3)
