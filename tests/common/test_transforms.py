"""Tests of nnmamba_nets.common.transforms."""

from __future__ import annotations

import numpy as np
import pytest
from monai.transforms import LoadImaged

from nnmamba_nets.common.transforms import NameCaseOnError, describe_error
from nnmamba_nets.demo import phantom


def test_name_case_on_error_names_case_and_files(tmp_path):
    good, truncated = tmp_path / "good.nii.gz", tmp_path / "truncated.nii.gz"
    phantom.save_nifti(good, np.random.default_rng(0).random((16, 16, 16)), np.eye(4), dtype=np.float32)
    truncated.write_bytes(good.read_bytes()[:1000])
    loader = NameCaseOnError(LoadImaged(keys="image", image_only=True))
    assert loader({"image": str(good), "case_id": "A"})["image"].shape == (16, 16, 16)
    with pytest.raises(ValueError, match=r"case B: LoadImaged failed with .*truncated\.nii\.gz"):
        loader({"image": str(truncated), "case_id": "B"})


def test_describe_error_reports_the_innermost_cause():
    try:
        try:
            raise KeyError("image")
        except KeyError as inner:
            raise RuntimeError("applying transform") from inner
    except RuntimeError as outer:
        assert describe_error(outer) == "KeyError: 'image'"
