"""Landmark views from landmark_errors.csv: world -> voxel, the sheet of one case, the errors."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.common.pictures import main
from nnmamba_nets.landmarks.pictures import landmark_views, world_to_voxel
from tests.picture_checks import assert_png
from tests.utils import run_module

SHAPE = (24, 20, 16)
NAMES = ("TCD_start", "TCD_end", "HDV_start")
HEADER = ["image", "case", "landmark", "description", "true_r", "true_a", "true_s", "pred_r", "pred_a", "pred_s",
          "error_mm", "confidence"]  # fmt: skip


def oblique_affine() -> np.ndarray:
    """An oblique, anisotropic, axis-flipped voxel grid, as in the fetal demo images."""
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1.2, 1.0, 2.0])
    affine[:3, 3] = [15.0, -10.0, -16.0]
    return affine


def write_evaluation(folder, cases=("case_a", "case_b"), header=HEADER) -> None:
    """Images and a ``landmark_errors.csv`` as ``LandmarkErrorReport`` writes it (image paths absolute)."""
    folder.mkdir(parents=True, exist_ok=True)
    affine, rng = oblique_affine(), np.random.default_rng(0)
    rows = []
    for case in cases:
        image = folder / f"{case}.nii.gz"
        nib.save(nib.Nifti1Image(rng.uniform(0, 1, SHAPE).astype(np.float32), affine), image)
        for index, name in enumerate(NAMES):
            true_point = (affine @ [6 + 5 * index, 8, 7, 1])[:3]
            predicted = true_point + [1.0, -2.0, 0.5]
            error = np.linalg.norm(predicted - true_point)
            values = [*true_point, *predicted, error, 0.9]
            row = [str(image), case, name, f"{name} description", *[f"{v:.4f}" for v in values]]
            rows.append(dict(zip(HEADER, row)))
    with open(folder / "landmark_errors.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_world_to_voxel_inverts_the_affine():
    affine, voxels = oblique_affine(), np.array([[0.0, 0, 0], [3.5, 2.0, 7.25]])
    world = (affine @ np.c_[voxels, np.ones(2)].T).T[:, :3]
    np.testing.assert_allclose(world_to_voxel(affine, world), voxels, atol=1e-9)


@pytest.mark.parametrize("case", [None, "case_b"])
def test_landmark_sheet(tmp_path, case):
    write_evaluation(tmp_path)
    paths = landmark_views(tmp_path, case=case, output_dir=tmp_path / "out", title="synthetic demo data", dpi=40)
    assert paths == [str(tmp_path / "out" / f"landmarks_{case or 'case_a'}.png")]  # default: the first case
    assert_png(paths[0], (3 * 2.3, len(NAMES) * 2.3), dpi=40)  # a row per landmark, a column per plane


def test_relative_image_paths_are_relative_to_the_table(tmp_path):
    write_evaluation(tmp_path)
    table = (tmp_path / "landmark_errors.csv").read_text().replace(str(tmp_path) + "/", "")
    (tmp_path / "landmark_errors.csv").write_text(table)
    assert_png(landmark_views(tmp_path, dpi=30)[0], (3 * 2.3, len(NAMES) * 2.3), dpi=30)


def test_errors_name_the_file_and_what_was_expected(tmp_path):
    with pytest.raises(ValueError, match="no landmark_errors.csv in"):
        landmark_views(tmp_path)
    write_evaluation(tmp_path)
    with pytest.raises(ValueError, match=r"case 'case_c' is not in .*landmark_errors.csv'; its cases: \['case_a'"):
        landmark_views(tmp_path, case="case_c")
    with pytest.raises(ValueError, match="view_mm must be positive"):
        landmark_views(tmp_path, view_mm=0)
    (tmp_path / "case_a.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"cannot read image .*case_a.nii.gz"):
        landmark_views(tmp_path)
    write_evaluation(tmp_path, header=[name for name in HEADER if name != "pred_s"])
    with pytest.raises(ValueError, match=r"landmark_errors.csv' lacks the column\(s\) \['pred_s'\]"):
        landmark_views(tmp_path)
    write_evaluation(tmp_path)
    table = (tmp_path / "landmark_errors.csv").read_text().splitlines()
    table[1] = table[1].replace(table[1].split(",")[-2], "nan?")  # error_mm of the first row
    (tmp_path / "landmark_errors.csv").write_text("\n".join(table) + "\n")
    with pytest.raises(ValueError, match=r"a value of the columns \['error_mm'\] is not a number"):
        landmark_views(tmp_path)


def test_command_line(tmp_path, capsys):
    write_evaluation(tmp_path)
    result = run_module(
        "nnmamba_nets", "pictures", "landmarks", str(tmp_path), "--case", "case_b", "--view_mm", "40", "--dpi", "30",
        timeout=300,
    )  # fmt: skip
    assert result.stdout.split() == [str(tmp_path / "landmarks_case_b.png")]
    assert main(["landmarks", str(tmp_path), "--case", "case_c"]) == 1
    assert "pictures landmarks: error: case 'case_c' is not in" in capsys.readouterr().err
