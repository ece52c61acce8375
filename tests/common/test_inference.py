"""Tests of nnmamba_nets.common.inference: inputs checked before the network, one report of the rejected."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.common import inference
from nnmamba_nets.common.inference import (
    REJECTED_FILE,
    begin_inference,
    finish_inference,
    image_check,
    partition_inputs,
)


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
    begin_inference(tmp_path)
    finish_inference({}, tmp_path, processed=3)
    assert json.loads((tmp_path / REJECTED_FILE).read_text()) == {}  # a rerun never leaves a stale list
    begin_inference(tmp_path)
    with pytest.raises(ValueError, match=r"1 of 4 cases were rejected .*\nbad.nii.gz: NaN"):
        finish_inference({"bad.nii.gz": "NaN"}, tmp_path, processed=3)
    assert json.loads((tmp_path / REJECTED_FILE).read_text()) == {"bad.nii.gz": "NaN"}


def test_a_rerun_clears_only_the_previous_runs_outputs(tmp_path):
    (tmp_path / "notes.txt").write_text("the user's own file")
    begin_inference(tmp_path)
    for name in ("a.mrk.json", "b.mrk.json"):
        (tmp_path / name).write_text("first run")
    finish_inference({}, tmp_path, processed=2)
    begin_inference(tmp_path)  # the second run starts: the first run's outputs go, the user's file stays
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["notes.txt"]
    (tmp_path / "c.mrk.json").write_text("second run")
    finish_inference({}, tmp_path, processed=1)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "c.mrk.json",
        "notes.txt",
        "rejected_cases.json",
    ]


def test_a_crashed_run_is_cleared_too_and_concurrent_runs_refuse(tmp_path):
    begin_inference(tmp_path)
    (tmp_path / "half.mrk.json").write_text("a run that never finished")
    code = f"from nnmamba_nets.common.inference import begin_inference; begin_inference({str(tmp_path)!r})"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "another inference run is writing into" in other.stderr
    _release(tmp_path)  # as when this process (the crashed run) ends
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert not (tmp_path / "half.mrk.json").exists()


def _release(folder) -> None:
    os.close(inference._held_locks.pop(str(folder.resolve())))
