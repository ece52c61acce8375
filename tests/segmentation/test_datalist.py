"""Tests of nnmamba_nets.segmentation.datalist: the BraTS folder preparer, case checks and inference inputs."""

from __future__ import annotations

import gzip
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.common.datalists import SPLITS, read_datalist
from nnmamba_nets.common.inference import partition_inputs
from nnmamba_nets.demo.brats import write_demo_set
from nnmamba_nets.segmentation import datalist as brats


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> str:
    """Six small synthetic cases in the BraTS 2023 layout (generated once for this module)."""
    folder = tmp_path_factory.mktemp("brats") / "data"
    write_demo_set(folder, num_cases=6, size=32, seed=1)
    return str(folder)


def copy_dataset(source: str, destination) -> str:
    shutil.copytree(source, destination)
    return os.fspath(destination)


def test_prepare_writes_a_relative_seeded_split_that_reads_back(synthetic_dir, tmp_path):
    output = tmp_path / "lists" / "datalist.json"
    assert brats.prepare_datalist(synthetic_dir, output) == str(output)
    content = json.loads(output.read_text())
    assert [len(content[split]) for split in SPLITS] == [4, 1, 1]  # at least one validation and one test case
    first = content["training"][0]
    assert not os.path.isabs(first["image"][0]) and first["image"][0].endswith("-t1n.nii.gz")
    assert [os.path.basename(p)[-10:-7] for p in first["image"]] == list(brats.MODALITIES)
    loaded = read_datalist(output)
    ids = [case["case_id"] for split in SPLITS for case in loaded[split]]
    assert sorted(ids) == [f"BraTS-GLI-{i:05d}-000" for i in range(6)]
    assert all(os.path.isfile(p) for split in SPLITS for c in loaded[split] for p in [*c["image"], c["label"]])
    again = tmp_path / "again.json"
    brats.prepare_datalist(synthetic_dir, again, seed=0)
    assert read_datalist(again)["test"] == loaded["test"]  # the split depends on the case ids and the seed only


def test_find_cases_rejects_a_folder_without_cases(tmp_path):
    with pytest.raises(FileNotFoundError, match="no BraTS case folder"):
        brats.find_brats_cases(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        brats.find_brats_cases(tmp_path / "missing")


def test_case_inputs_from_folders_files_lists_and_datalists(synthetic_dir, tmp_path):
    cases = brats.case_inputs(synthetic_dir)
    assert len(cases) == 6 and all("label" not in c and len(c["image"]) == 4 for c in cases)
    one = os.path.join(synthetic_dir, "BraTS-GLI-00002-000")
    assert [c["case_id"] for c in brats.case_inputs(one)] == ["BraTS-GLI-00002-000"]  # a single case folder
    stacked = tmp_path / "stacked-case.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 4), np.float32), np.eye(4)), str(stacked))
    listed = brats.case_inputs([one, str(stacked)])
    assert [c["case_id"] for c in listed] == ["BraTS-GLI-00002-000", "stacked-case"]
    assert listed[1]["image"] == str(stacked)
    brats.prepare_datalist(synthetic_dir, tmp_path / "list.json")
    test_ids = [c["case_id"] for c in read_datalist(tmp_path / "list.json")["test"]]
    assert [c["case_id"] for c in brats.case_inputs(str(tmp_path / "list.json"), "test")] == test_ids
    assert len(brats.case_inputs(str(tmp_path / "list.json"), "")) == 6
    with pytest.raises(ValueError, match="dataset_dir .* does not exist"):
        brats.case_inputs(str(tmp_path / "missing"))


def test_case_checks_name_the_case_and_the_problem(synthetic_dir, tmp_path):
    root = copy_dataset(synthetic_dir, tmp_path / "data")
    cases = {c["case_id"]: c for c in brats.find_brats_cases(root)}
    missing, corrupt, wide, truncated = (f"BraTS-GLI-{i:05d}-000" for i in range(4))
    os.remove(cases[missing]["image"][3])
    with open(cases[corrupt]["image"][1], "wb") as handle:
        handle.write(b"not a nifti file")
    reference = nib.load(cases[wide]["image"][0])
    two_channels = np.stack([np.asanyarray(reference.dataobj)] * 2, axis=-1)
    nib.save(nib.Nifti1Image(two_channels, reference.affine), cases[wide]["image"][0])
    with open(cases[truncated]["image"][2], "rb") as handle:
        payload = gzip.decompress(handle.read())
    with open(cases[truncated]["image"][2], "wb") as handle:
        handle.write(gzip.compress(payload)[:2000])

    messages = {}
    for case_id in (missing, corrupt, wide):
        with pytest.raises(ValueError) as error:
            brats.check_brats_case(cases[case_id])
        messages[case_id] = str(error.value)
        assert messages[case_id].startswith(f"case {case_id}:")
    assert "missing file" in messages[missing] and "-t2f.nii.gz" in messages[missing]
    assert "cannot read the image" in messages[corrupt] and "-t1c.nii.gz" in messages[corrupt]
    assert "5 channel(s) in total, expected 4" in messages[wide]
    brats.check_brats_case(cases[truncated])  # the header alone is fine ...
    with pytest.raises(ValueError, match=f"case {truncated}: .*cannot read the image"):
        brats.check_brats_case(cases[truncated], read_data=True)  # ... the data is not

    valid, errors = partition_inputs(list(cases.values()), brats.check_inference_case, "case_id")
    assert sorted(errors) == [missing, corrupt, wide, truncated]
    assert [c["case_id"] for c in valid] == ["BraTS-GLI-00004-000", "BraTS-GLI-00005-000"]
    with pytest.raises(ValueError, match="4 of 6 case"):
        brats.require_valid_cases(list(cases.values()), read_data=True)
    assert brats.require_valid_cases(valid) == valid
    brats.prepare_datalist(root, tmp_path / "list.json")
    with pytest.raises(ValueError, match=f"3 of 6 case.*\n.*{missing}"):  # headers only: truncated data passes
        brats.check_datalist(read_datalist(tmp_path / "list.json"))


def test_inference_check_rejects_nan_crc_errors_and_moved_affines(synthetic_dir, tmp_path):
    root = copy_dataset(synthetic_dir, tmp_path / "data")
    cases = {c["case_id"]: c for c in brats.find_brats_cases(root, require_label=False)}
    nan_case, crc_case, moved_case, good = (f"BraTS-GLI-{i:05d}-000" for i in range(4))
    t1n = nib.load(cases[nan_case]["image"][0])
    values = np.asanyarray(t1n.dataobj).astype(np.float32)
    values[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(values, t1n.affine), cases[nan_case]["image"][0])  # float32 on disk
    payload = bytearray(open(cases[crc_case]["image"][1], "rb").read())
    payload[-6] ^= 0xFF  # the gzip trailer's CRC: nibabel alone reads these voxels without complaint
    open(cases[crc_case]["image"][1], "wb").write(payload)
    t2w = nib.load(cases[moved_case]["image"][2])
    shifted = t2w.affine.copy()
    shifted[:3, 3] += 5.0  # same grid, moved 5 mm: not co-registered
    nib.save(nib.Nifti1Image(np.asanyarray(t2w.dataobj), shifted, t2w.header), cases[moved_case]["image"][2])
    valid, errors = partition_inputs(list(cases.values()), brats.check_inference_case, "case_id")
    assert "NaN or infinite" in errors[nan_case]
    assert "CRC check failed" in errors[crc_case] and "-t1c.nii.gz" in errors[crc_case]
    assert "different affines" in errors[moved_case] and "-t2w.nii.gz" in errors[moved_case]
    assert [case["case_id"] for case in valid] == [good, "BraTS-GLI-00004-000", "BraTS-GLI-00005-000"]


def test_check_datalist_names_cases_without_a_case_id(synthetic_dir, tmp_path):
    case = brats.find_brats_cases(synthetic_dir)[0]
    datalist = {"training": [{"image": case["image"], "label": case["label"]}], "validation": [], "test": []}
    assert brats.check_datalist(datalist)["training"][0]["case_id"] == case["case_id"]


def test_grid_mismatch_is_reported(synthetic_dir, tmp_path):
    root = copy_dataset(synthetic_dir, tmp_path / "data")
    case = brats.find_brats_cases(root)[0]
    reference = nib.load(case["label"])
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), reference.affine), case["label"])
    with pytest.raises(ValueError, match="different voxel grids"):
        brats.check_brats_case(case)


def test_a_folder_not_named_like_a_case_is_reported_not_skipped(synthetic_dir, tmp_path):
    root = copy_dataset(synthetic_dir, tmp_path / "data")
    os.rename(os.path.join(root, "BraTS-GLI-00005-000"), os.path.join(root, "patient_5"))
    accepted, rejected = partition_inputs(brats.case_inputs(root), brats.check_inference_case, "case_id")
    assert len(accepted) == 5 and list(rejected) == ["patient_5"]
    assert "not named like a BraTS case" in rejected["patient_5"]
