"""Tests of nnmamba_nets.segmentation.nnunet: nnU-Net v1 plans read without running code."""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from nnmamba_nets.segmentation.nnunet import read_nnunet_plans
from tests.utils import run_module


def brats_plans() -> dict:
    """Plans shaped like those nnU-Net v1 writes for a 4-modality BraTS task (two stages, numpy arrays)."""
    stage = {
        "batch_size": 2,
        "num_pool_per_axis": [5, 5, 5],
        "patch_size": np.array([128, 128, 128]),
        "median_patient_size_in_voxels": np.array([138, 169, 138]),
        "current_spacing": np.array([1.0, 1.0, 1.0]),
        "original_spacing": np.array([1.0, 1.0, 1.0]),
        "do_dummy_2D_data_aug": False,
        "pool_op_kernel_sizes": [[2, 2, 2]] * 5,
        "conv_kernel_sizes": [[3, 3, 3]] * 6,
    }
    return {
        "num_stages": 2,
        "num_modalities": 4,
        "modalities": {0: "FLAIR", 1: "T1", 2: "T1c", 3: "T2"},
        "normalization_schemes": OrderedDict((channel, "nonCT") for channel in range(4)),
        "use_mask_for_norm": OrderedDict((channel, True) for channel in range(4)),
        "num_classes": 3,
        "all_classes": [1, 2, 3],
        "base_num_features": 32,
        "transpose_forward": [0, 1, 2],
        "plans_per_stage": {0: {**stage, "patch_size": np.array([96, 96, 96])}, 1: stage},
        "dataset_properties": {"intensityproperties": None, "size_reductions": {"case": np.float64(0.8)}},
    }


def write_model_pkl(path: Path, plans: dict, stage: int = 1) -> Path:
    """A ``<checkpoint>.model.pkl`` as nnU-Net v1's ``save_checkpoint`` writes it."""
    init = ("plans.pkl", 0, "/out/fold_0", "/preprocessed", True, stage, True, False, True)
    with open(path, "wb") as stream:
        pickle.dump({"init": init, "name": "nnUNetTrainerV2_nnMamba", "class": "<class ...>", "plans": plans}, stream)
    return path


def test_plans_give_the_patch_spacing_and_normalisation(tmp_path):
    plans = read_nnunet_plans(write_model_pkl(tmp_path / "model_final_checkpoint.model.pkl", brats_plans()))
    assert plans.trainer == "nnUNetTrainerV2_nnMamba" and plans.stage == 1
    assert plans.patch_size == (128, 128, 128) and plans.spacing == (1.0, 1.0, 1.0)
    assert plans.modalities == {0: "FLAIR", 1: "T1", 2: "T1c", 3: "T2"}
    assert plans.normalization == dict.fromkeys(range(4), "nonCT") and all(plans.use_mask_for_norm.values())
    assert plans.num_classes == 4  # background included
    assert plans.bundle_overrides() == {"roi_size": [128, 128, 128]}
    assert len(plans.notes()) == 2  # resampling and the softmax outputs; the normalisation matches the bundle's

    ct = brats_plans()
    ct["normalization_schemes"][0] = "CT"
    ct["use_mask_for_norm"][0] = False
    notes = read_nnunet_plans(write_model_pkl(tmp_path / "ct.model.pkl", ct, stage=0)).notes()
    assert any("{0: 'CT'}" in note for note in notes) and any("use_mask_for_norm" in note for note in notes)


def test_plans_command_line_prints_json(tmp_path):
    path = write_model_pkl(tmp_path / "model_best.model.pkl", brats_plans())
    report = json.loads(run_module("nnmamba_nets.segmentation.nnunet", str(path)).stdout)
    assert report["patch_size"] == [128, 128, 128] and report["bundle_overrides"] == {"roi_size": [128, 128, 128]}


class _Payload:
    """Pickles as ``open(marker, "w")``: the marker file exists if anything ran it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_plans_file_with_a_payload_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    plans = {**brats_plans(), "dataset_properties": _Payload(marker)}
    with pytest.raises(ValueError, match=r"refused io\.open.*Nothing was run"):
        read_nnunet_plans(write_model_pkl(tmp_path / "evil.model.pkl", plans))
    assert not marker.exists()


def test_files_that_are_not_plans_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pkl"):
        read_nnunet_plans(tmp_path / "nowhere.pkl")
    (tmp_path / "text.pkl").write_text("not a pickle")
    with pytest.raises(ValueError, match="text.pkl: not a readable nnU-Net plans pickle"):
        read_nnunet_plans(tmp_path / "text.pkl")
    with open(tmp_path / "other.pkl", "wb") as stream:
        pickle.dump({"plans": {"num_classes": 3}}, stream)
    with pytest.raises(ValueError, match="other.pkl: not nnU-Net v1 plans.*'plans_per_stage'"):
        read_nnunet_plans(tmp_path / "other.pkl")
