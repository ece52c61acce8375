"""Tests of nnmamba_nets.demo.brats: the synthetic BraTS-like set and its place in the demo cache."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.common.datalists import SPLITS, read_datalist
from nnmamba_nets.demo import brats
from nnmamba_nets.segmentation.datalist import LABEL_ED, LABEL_ET, LABEL_NCR, MODALITIES, check_datalist


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("brats") / "data"
    brats.write_demo_set(folder, num_cases=6, size=32, seed=1)
    return str(folder)


def test_generated_cases_follow_the_brats_layout(demo_dir):
    case_dirs = sorted(d for d in os.listdir(demo_dir) if d.startswith("BraTS-"))
    assert case_dirs == [f"BraTS-GLI-{i:05d}-000" for i in range(6)]
    case = os.path.join(demo_dir, case_dirs[0])
    suffixes = sorted(name[len(case_dirs[0]) + 1 :] for name in os.listdir(case))
    assert suffixes == sorted(f"{m}.nii.gz" for m in (*MODALITIES, "seg"))
    seg = nib.load(os.path.join(case, f"{case_dirs[0]}-seg.nii.gz"))
    t1c = nib.load(os.path.join(case, f"{case_dirs[0]}-t1c.nii.gz"))
    labels = np.asanyarray(seg.dataobj)
    assert seg.get_data_dtype() == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}
    assert (labels == LABEL_ED).any() and (labels == LABEL_NCR).any()
    np.testing.assert_allclose(seg.affine, t1c.affine)
    assert seg.affine[0, 0] < 0 and seg.affine[1, 1] < 0  # LPS-style axes as in BraTS files
    image = np.asanyarray(t1c.dataobj).astype(np.float32)
    assert image[labels == 0].min() == 0 and image.max() > 100  # skull-stripped, MRI-like units
    if (labels == LABEL_ET).any():  # the enhancing rim is brighter than the necrotic core on T1c
        assert image[labels == LABEL_ET].mean() > 1.5 * image[labels == LABEL_NCR].mean()


def test_the_set_has_a_checked_datalist_and_is_deterministic(demo_dir, tmp_path):
    datalist = check_datalist(read_datalist(os.path.join(demo_dir, "datalist.json")))
    assert [len(datalist[split]) for split in SPLITS] == [4, 1, 1]
    brats.write_demo_set(tmp_path / "again", num_cases=6, size=32, seed=1)
    name = "BraTS-GLI-00003-000/BraTS-GLI-00003-000-t2f.nii.gz"
    np.testing.assert_array_equal(
        np.asanyarray(nib.load(os.path.join(demo_dir, name)).dataobj),
        np.asanyarray(nib.load(tmp_path / "again" / name).dataobj),
    )


def test_writing_never_touches_a_foreign_folder(tmp_path):
    (tmp_path / "user_data").mkdir()
    (tmp_path / "user_data" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        brats.write_demo_set(tmp_path / "user_data", num_cases=3, size=24)
    assert os.listdir(tmp_path / "user_data") == ["notes.txt"]
    with pytest.raises(ValueError, match="num_cases"):
        brats.write_demo_set(tmp_path / "x", num_cases=2)


def test_demo_datalist_is_built_once_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNMAMBA_CACHE", str(tmp_path / "cache"))
    path = brats.demo_datalist(num_cases=3, size=24, seed=2)
    assert path.startswith(str(tmp_path / "cache" / brats.DEMO_NAME)) and os.path.isfile(path)
    stamp = os.path.getmtime(path)
    assert brats.demo_datalist(num_cases=3, size=24, seed=2) == path and os.path.getmtime(path) == stamp
