"""Tests of nnmamba_nets.common.inference: inputs checked before the network, one report of the rejected."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.common.inference import REJECTED_FILE, finish_inference, image_check, partition_inputs


def test_partition_keeps_the_good_and_the_reasons_for_the_rest(tmp_path):
    good = tmp_path / "good.nii.gz"
    two = tmp_path / "two_channels.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), str(good))
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 2), np.float32), np.eye(4)), str(two))
    items = [{"image": str(p), "name": str(p)} for p in (good, tmp_path / "gone.nii.gz", two)]
    accepted, rejected = partition_inputs(items, image_check(1))
    assert accepted == [items[0]]
    assert list(rejected) == [str(tmp_path / "gone.nii.gz"), str(two)]
    assert "no such file" in rejected[str(tmp_path / "gone.nii.gz")]
    assert "2 channel(s), the network takes 1" in rejected[str(two)]


def test_finish_writes_the_report_always_and_fails_when_anything_was_rejected(tmp_path):
    finish_inference({}, tmp_path, processed=3)
    assert json.loads((tmp_path / REJECTED_FILE).read_text()) == {}  # a rerun never leaves a stale list
    with pytest.raises(ValueError, match=r"1 of 4 cases were rejected .*\nbad.nii.gz: NaN"):
        finish_inference({"bad.nii.gz": "NaN"}, tmp_path, processed=3)
    assert json.loads((tmp_path / REJECTED_FILE).read_text()) == {"bad.nii.gz": "NaN"}
