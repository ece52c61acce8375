"""Segmentation overlay: image, reference and prediction through the tumour centre, and its errors."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.common.pictures import main
from nnmamba_nets.segmentation.datalist import MODALITIES
from nnmamba_nets.segmentation.pictures import segmentation_overlay, tumour_centre
from tests.picture_checks import assert_png
from tests.utils import run_module

SHAPE = (20, 18, 12)
AFFINE = np.array([[-1.0, 0, 0, 30], [0, -1.0, 0, 40], [0, 0, 1.5, -9], [0, 0, 0, 1]])  # BraTS-like LPS axes
CASE = "BraTS-GLI-00007-000"
OVERLAY_SIZE = (3 * 2.6, 3 * 2.6)  # 3 planes x (image, reference, prediction)


def tumour_labels(shift: int = 0) -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[5 + shift : 13 + shift, 4:12, 3:9] = 2  # ED
    labels[7 + shift : 11 + shift, 6:10, 4:8] = 3  # ET
    labels[8 + shift : 10 + shift, 7:9, 5:7] = 1  # NCR
    return labels


def write_case(folder, with_label: bool = True) -> str:
    """One BraTS case (four contrasts, a label), its prediction in ``folder/inference`` and the datalist JSON."""
    rng = np.random.default_rng(0)
    case_dir = folder / CASE
    case_dir.mkdir(parents=True)
    images = []
    for modality in MODALITIES:
        path = case_dir / f"{CASE}-{modality}.nii.gz"
        nib.save(nib.Nifti1Image(rng.uniform(1, 2, SHAPE).astype(np.float32), AFFINE), path)
        images.append(str(path))
    item = {"case_id": CASE, "image": images}
    if with_label:
        nib.save(nib.Nifti1Image(tumour_labels(), AFFINE), case_dir / f"{CASE}-seg.nii.gz")
        item["label"] = str(case_dir / f"{CASE}-seg.nii.gz")
    (folder / "inference").mkdir()
    nib.save(nib.Nifti1Image(tumour_labels(shift=1), AFFINE), folder / "inference" / f"{CASE}.nii.gz")
    datalist = folder / "datalist.json"
    datalist.write_text(
        json.dumps({"training": [], "validation": [], "test": [{"case_id": "other", "image": images}, item]})
    )
    return str(datalist)


def test_tumour_centre_prefers_the_first_non_empty_map():
    reference, prediction = tumour_labels(), tumour_labels(shift=2)
    np.testing.assert_allclose(tumour_centre([reference, prediction]), np.argwhere(reference > 0).mean(axis=0))
    empty = np.zeros(SHAPE)
    np.testing.assert_allclose(tumour_centre([empty, prediction]), np.argwhere(prediction > 0).mean(axis=0))
    np.testing.assert_allclose(tumour_centre([None, empty]), (np.array(SHAPE) - 1) / 2)


@pytest.mark.parametrize("with_label", [True, False])
def test_overlay_png(tmp_path, with_label):
    datalist = write_case(tmp_path, with_label)
    paths = segmentation_overlay(tmp_path / "inference", datalist, title="synthetic demo data", dpi=40)
    assert paths == [str(tmp_path / "inference" / f"overlay_{CASE}.png")]
    assert_png(paths[0], OVERLAY_SIZE, dpi=40)


def test_overlay_of_a_four_channel_file(tmp_path):
    datalist = write_case(tmp_path)
    item = json.loads((tmp_path / "datalist.json").read_text())["test"][1]
    stacked = np.stack([nib.load(path).get_fdata(dtype=np.float32) for path in item["image"]], axis=-1)
    nib.save(nib.Nifti1Image(stacked, AFFINE), tmp_path / "case.nii.gz")
    item["image"] = str(tmp_path / "case.nii.gz")
    (tmp_path / "datalist.json").write_text(json.dumps({"test": [item]}))
    paths = segmentation_overlay(
        tmp_path / "inference", datalist, case=CASE, modality="t2f", output_dir=tmp_path, dpi=30
    )
    assert_png(paths[0], OVERLAY_SIZE, dpi=30)


def test_overlay_errors(tmp_path):
    datalist = write_case(tmp_path)
    inference = tmp_path / "inference"
    with pytest.raises(ValueError, match=r"case 'nope' is not in the 'test' list of datalist .*datalist.json"):
        segmentation_overlay(inference, datalist, case="nope")
    with pytest.raises(ValueError, match=r"no prediction .*other.nii.gz"):
        segmentation_overlay(inference, datalist, case="other")
    with pytest.raises(ValueError, match="split must be one of"):
        segmentation_overlay(inference, datalist, split="train")
    with pytest.raises(ValueError, match="modality must be one of"):
        segmentation_overlay(inference, datalist, modality="flair")
    with pytest.raises(ValueError, match="has a prediction <case_id>.nii.gz"):
        segmentation_overlay(tmp_path, datalist)  # a folder without predictions
    content = json.loads((tmp_path / "datalist.json").read_text())
    content["test"][1]["image"] = content["test"][1]["image"][:3]
    (tmp_path / "short.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=f"case '{CASE}' lists 3 image files; expected 4"):
        segmentation_overlay(inference, tmp_path / "short.json")
    with pytest.raises(ValueError, match="cannot read datalist"):
        segmentation_overlay(inference, tmp_path / "missing.json")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), AFFINE), inference / f"{CASE}.nii.gz")
    with pytest.raises(ValueError, match=r"prediction .* is not on the grid of the case's image"):
        segmentation_overlay(inference, datalist)


def test_command_line(tmp_path, capsys):
    datalist = write_case(tmp_path)
    result = run_module(
        "nnmamba_nets", "pictures", "segmentation", str(tmp_path / "inference"), "--datalist", datalist,
        "--dpi", "30", "--title", "synthetic demo data", timeout=300,
    )  # fmt: skip
    assert result.stdout.split() == [str(tmp_path / "inference" / f"overlay_{CASE}.png")]
    assert main(["segmentation", str(tmp_path / "inference"), "--datalist", datalist, "--case", "nope"]) == 1
    assert "case 'nope' is not in the 'test' list" in capsys.readouterr().err
