"""Tests of nnmamba_nets.data.brats: synthetic generator, folder preparer, datalists and case checks."""

from __future__ import annotations

import gzip
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.data import brats


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> str:
    """Six small synthetic cases (generated once for this module)."""
    return brats.generate_synthetic_brats(tmp_path_factory.mktemp("brats") / "data", num_cases=6, size=32, seed=1)


def copy_dataset(source: str, destination) -> str:
    shutil.copytree(source, destination)
    return os.fspath(destination)


def test_generated_cases_follow_the_brats_layout(synthetic_dir):
    case_dirs = sorted(d for d in os.listdir(synthetic_dir) if d.startswith("BraTS-"))
    assert case_dirs == [f"BraTS-GLI-{i:05d}-000" for i in range(6)]
    case = os.path.join(synthetic_dir, case_dirs[0])
    suffixes = sorted(name[len(case_dirs[0]) + 1 :] for name in os.listdir(case))
    assert suffixes == sorted(f"{m}.nii.gz" for m in (*brats.MODALITIES, "seg"))
    seg = nib.load(os.path.join(case, f"{case_dirs[0]}-seg.nii.gz"))
    t1c = nib.load(os.path.join(case, f"{case_dirs[0]}-t1c.nii.gz"))
    labels = np.asanyarray(seg.dataobj)
    assert seg.get_data_dtype() == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}
    assert (labels == brats.LABEL_ED).any() and (labels == brats.LABEL_NCR).any()
    np.testing.assert_allclose(seg.affine, t1c.affine)
    assert seg.affine[0, 0] < 0 and seg.affine[1, 1] < 0  # LPS-style axes as in BraTS files
    image = np.asanyarray(t1c.dataobj).astype(np.float32)
    assert image[labels == 0].min() == 0 and image.max() > 100  # skull-stripped, MRI-like units
    # the enhancing rim is brighter than the necrotic core on T1c
    if (labels == brats.LABEL_ET).any():
        assert image[labels == brats.LABEL_ET].mean() > 1.5 * image[labels == brats.LABEL_NCR].mean()


def test_generation_is_deterministic_and_reused(synthetic_dir, tmp_path):
    again = brats.generate_synthetic_brats(tmp_path / "again", num_cases=6, size=32, seed=1)
    name = "BraTS-GLI-00003-000/BraTS-GLI-00003-000-t2f.nii.gz"
    np.testing.assert_array_equal(
        np.asanyarray(nib.load(os.path.join(synthetic_dir, name)).dataobj),
        np.asanyarray(nib.load(os.path.join(again, name)).dataobj),
    )
    stamp = os.path.getmtime(os.path.join(again, name))
    assert brats.generate_synthetic_brats(again, num_cases=6, size=32, seed=1) == again
    assert os.path.getmtime(os.path.join(again, name)) == stamp  # complete: not generated twice


def test_generation_never_writes_into_a_foreign_folder(tmp_path):
    (tmp_path / "user_data").mkdir()
    (tmp_path / "user_data" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        brats.generate_synthetic_brats(tmp_path / "user_data", num_cases=3, size=24)
    assert os.listdir(tmp_path / "user_data") == ["notes.txt"]
    with pytest.raises(ValueError, match="num_cases"):
        brats.generate_synthetic_brats(tmp_path / "x", num_cases=2)


def test_split_is_fixed_disjoint_and_complete():
    cases = [{"case_id": f"BraTS-GLI-{i:05d}-000"} for i in range(20)]
    splits = brats.split_cases(cases, 0.15, 0.15, seed=0)
    assert [len(splits[k]) for k in brats.DATALIST_KEYS] == [14, 3, 3]
    ids = [c["case_id"] for k in brats.DATALIST_KEYS for c in splits[k]]
    assert sorted(ids) == sorted(c["case_id"] for c in cases)
    assert brats.split_cases(list(reversed(cases)), 0.15, 0.15, seed=0) == splits  # order-independent
    assert brats.split_cases(cases, 0.15, 0.15, seed=1) != splits
    with pytest.raises(ValueError, match="at least 3"):
        brats.split_cases(cases[:2])
    with pytest.raises(ValueError, match="sum < 1"):
        brats.split_cases(cases, 0.5, 0.5)


def test_prepare_writes_a_relative_datalist_that_loads_back(synthetic_dir, tmp_path):
    output = tmp_path / "lists" / "datalist.json"
    splits = brats.prepare_brats_datalist(synthetic_dir, output)
    content = json.loads(output.read_text())
    first = content["training"][0]
    assert not os.path.isabs(first["image"][0]) and first["image"][0].endswith("-t1n.nii.gz")
    assert [os.path.basename(p)[-10:-7] for p in first["image"]] == list(brats.MODALITIES)
    loaded = brats.load_datalist(output)
    for key in brats.DATALIST_KEYS:
        assert [c["case_id"] for c in loaded[key]] == [c["case_id"] for c in splits[key]]
        assert all(os.path.isfile(p) for c in loaded[key] for p in [*c["image"], c["label"]])
    assert brats.brats_datalist(dataset_dir=synthetic_dir) == splits
    assert brats.brats_datalist(dataset_dir="/nonexistent", datalist=output) == loaded  # datalist wins


def test_find_cases_rejects_a_folder_without_cases(tmp_path):
    with pytest.raises(FileNotFoundError, match="no BraTS case folder"):
        brats.find_brats_cases(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        brats.find_brats_cases(tmp_path / "missing")


def test_inference_cases_list_every_folder_without_labels(synthetic_dir):
    cases = brats.brats_inference_cases(dataset_dir=synthetic_dir)
    assert len(cases) == 6 and all("label" not in c for c in cases)
    with pytest.raises(ValueError, match="split"):
        brats.brats_inference_cases(datalist="unused.json", split="train")


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
    assert "cannot read NIfTI" in messages[corrupt] and "-t1c.nii.gz" in messages[corrupt]
    assert "5 channel(s) in total, expected 4" in messages[wide]
    brats.check_brats_case(cases[truncated])  # the header alone is fine ...
    with pytest.raises(ValueError, match=f"case {truncated}: cannot read NIfTI"):
        brats.check_brats_case(cases[truncated], read_data=True)  # ... the data is not

    valid, errors = brats.partition_valid_cases(list(cases.values()), require_label=True, read_data=True)
    assert sorted(errors) == [missing, corrupt, wide, truncated]
    assert [c["case_id"] for c in valid] == ["BraTS-GLI-00004-000", "BraTS-GLI-00005-000"]
    with pytest.raises(ValueError, match="4 of 6 case"):
        brats.require_valid_cases(list(cases.values()), read_data=True)
    assert brats.require_valid_cases(valid) == valid
    with pytest.raises(ValueError, match=f"3 of 6 case.*\n.*{missing}"):  # headers only: truncated data passes
        brats.brats_datalist(dataset_dir=root, check_cases=True)

    report = tmp_path / "rejected.json"
    with pytest.raises(ValueError, match="4 case\\(s\\) were skipped"):
        brats.raise_for_rejected_cases(errors, report)
    assert json.loads(report.read_text()) == errors
    brats.raise_for_rejected_cases({})  # nothing rejected: no error


def test_grid_mismatch_is_reported(synthetic_dir, tmp_path):
    root = copy_dataset(synthetic_dir, tmp_path / "data")
    case = brats.find_brats_cases(root)[0]
    reference = nib.load(case["label"])
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), reference.affine), case["label"])
    with pytest.raises(ValueError, match="different voxel grids"):
        brats.check_brats_case(case)
