"""Tests of the bundles/nnmamba_brats_segmentation MONAI bundle, mostly through the real bundle CLI.

The end-to-end runs use a tiny synthetic dataset (4-6 cases of about 32^3 voxels, network width 16) in
pytest's tmp folders, never the user's demo cache.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from nnmamba_nets.common.datalists import read_datalist
from nnmamba_nets.demo import brats as demo_brats
from nnmamba_nets.nets import nnMambaSeg
from nnmamba_nets.segmentation import datalist as brats
from tests.segmentation.test_io import ras_affine_of, read_nrrd
from tests.utils import (
    BUNDLES_DIR,
    assert_metadata_verifies,
    assert_net_in_out_verifies,
    assert_workflow_properties,
    cli_overrides,
    merged_configs,
    run_bundle,
    run_module,
)

BUNDLE = BUNDLES_DIR / "nnmamba_brats_segmentation"
CONFIGS = BUNDLE / "configs"
META = ["--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf")]
TRAIN = str(CONFIGS / "train.yaml")
TINY = {"demo#num_cases": 4, "demo#size": 32, "roi_size": [32, 32, 32], "num_workers": 0, "sw_batch_size": 2}
ENV = {"OMP_NUM_THREADS": "2"}


@pytest.mark.parametrize("config, workflow_type", [("train.yaml", "train"), ("inference.yaml", "infer")])
def test_check_properties(config, workflow_type):
    assert_workflow_properties(CONFIGS, str(CONFIGS / config), workflow_type)


def test_verify_metadata_offline():
    assert_metadata_verifies(CONFIGS)


def test_verify_net_in_out():
    assert_net_in_out_verifies(CONFIGS)


def assert_same_grid_and_header(output_file: str, reference_file: str) -> np.ndarray:
    written, reference = nib.load(output_file), nib.load(reference_file)
    assert written.shape == reference.shape
    np.testing.assert_array_equal(written.affine, reference.affine)
    for field in ("descrip", "qform_code", "sform_code", "pixdim", "xyzt_units", "srow_x", "srow_y", "srow_z"):
        np.testing.assert_array_equal(written.header[field], reference.header[field])
    assert written.get_data_dtype() == np.uint8
    labels = np.asanyarray(written.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    return labels


@pytest.mark.slow
def test_train_resume_evaluate_and_infer_on_demo_data(tmp_path, monkeypatch):
    """One epoch on the embedded demo data, resume to epoch 2, evaluate on the test split, infer."""
    monkeypatch.setenv("NNMAMBA_CACHE", str(tmp_path / "cache"))  # for the CLI runs and for this process
    env = ENV
    common = [*META, *cli_overrides({**TINY, "bundle_root": str(tmp_path / "run"), "val_interval": 1})]
    run_bundle("run", "training", "--config_file", TRAIN, *common, "--max_epochs", "1", env=env)
    models, logs = tmp_path / "run" / "models", tmp_path / "run" / "eval"
    assert (models / "model.pt").is_file() and (models / "checkpoint_epoch=1.pt").is_file()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(logs / "train"))
    demo_datalist = demo_brats.demo_datalist(num_cases=4, size=32)  # the set training used, from the cache
    assert demo_datalist.startswith(str(tmp_path / "cache"))
    demo_dir = os.path.dirname(demo_datalist)
    best = torch.load(models / "model.pt", weights_only=True)
    assert set(best) == set(nnMambaSeg(4, 3, channels=16, head="logits").state_dict())  # a plain state_dict

    resumed = run_bundle(
        "run", "--config_file", TRAIN, *common, "--max_epochs", "2", "--resume", "true", env=env
    )  # `run` is the same as `run training`
    assert "Restored all variables from" in resumed.stdout + resumed.stderr
    assert "Epoch[2] Metrics" in resumed.stdout + resumed.stderr
    assert "Epoch[1] Metrics" not in resumed.stdout + resumed.stderr
    assert (models / "checkpoint_epoch=2.pt").is_file()

    run_bundle("run", "--config_file", merged_configs(CONFIGS, "train.yaml", "evaluate.yaml"), *common, env=env)
    test_ids = [case["case_id"] for case in read_datalist(demo_datalist)["test"]]
    summary = (logs / "test" / "metrics.csv").read_text()
    for metric in ("val_mean_dice", "val_dice_wt", "val_hd95_et", "val_mean_hd95"):
        assert metric in summary
    per_case = (logs / "test" / "val_mean_dice_raw.csv").read_text().splitlines()
    assert per_case[0] == "filename,class0,class1,class2,mean"
    assert [line.split(",")[0] for line in per_case[1:]] == test_ids

    output_dir = tmp_path / "labels"
    run_bundle(
        "run", "--config_file", str(CONFIGS / "inference.yaml"), *common, "--output_dir", str(output_dir), env=env
    )
    assert sorted(name for name in os.listdir(output_dir) if not name.startswith(".")) == [
        f"{case_id}{suffix}" for case_id in test_ids for suffix in (".nii.gz", ".seg.nrrd")
    ] + ["rejected_cases.json"]
    assert json.loads((output_dir / "rejected_cases.json").read_text()) == {}
    for case_id in test_ids:
        reference = os.path.join(demo_dir, case_id, f"{case_id}-t1n.nii.gz")
        assert_same_grid_and_header(str(output_dir / f"{case_id}.nii.gz"), reference)
        # the Slicer segmentation beside it: the same voxels at the same place, named segments
        fields, key_values, body = read_nrrd(output_dir / f"{case_id}.seg.nrrd")
        labels = nib.load(output_dir / f"{case_id}.nii.gz")
        np.testing.assert_allclose(ras_affine_of(fields), labels.affine, atol=1e-5)
        voxels = np.frombuffer(gzip.decompress(body), np.uint8).reshape(labels.shape, order="F")
        np.testing.assert_array_equal(voxels, np.asanyarray(labels.dataobj))
        assert key_values["Segment2_Name"] == "enhancing tumour (ET)"


@pytest.mark.slow
def test_deep_supervision_trains_and_the_weights_run_in_evaluation_and_inference(tmp_path, monkeypatch):
    """One epoch with the deep-supervision heads and MONAI's DeepSupervisionLoss; evaluation and inference
    load those weights strictly (deep_supervision as trained) and use the full-resolution output."""
    monkeypatch.setenv("NNMAMBA_CACHE", str(tmp_path / "cache"))
    common = [*META, *cli_overrides({**TINY, "bundle_root": str(tmp_path / "run"), "val_interval": 1})]
    run_bundle("run", "--config_file", TRAIN, *common, "--max_epochs", "1", "--deep_supervision", "true", env=ENV)
    weights = torch.load(tmp_path / "run" / "models" / "model.pt", weights_only=True)
    heads = nnMambaSeg(4, 3, channels=16, head="logits", deep_supervision=True).state_dict()
    assert set(weights) == set(heads) and any(key.startswith("ds3_cls_conv.") for key in weights)
    evaluate = merged_configs(CONFIGS, "train.yaml", "evaluate.yaml")
    run_bundle("run", "--config_file", evaluate, *common, "--deep_supervision", "true", env=ENV)
    assert "val_mean_dice" in (tmp_path / "run" / "eval" / "test" / "metrics.csv").read_text()
    output_dir = tmp_path / "labels"
    inference = ["--config_file", str(CONFIGS / "inference.yaml"), *common, "--output_dir", str(output_dir)]
    run_bundle("run", *inference, "--deep_supervision", "true", env=ENV)
    assert json.loads((output_dir / "rejected_cases.json").read_text()) == {}
    assert len(list(output_dir.glob("*.nii.gz"))) == len(read_datalist(demo_brats.demo_datalist(4, 32))["test"])


@pytest.fixture
def dataset_with_bad_cases(tmp_path) -> tuple[str, dict[str, str]]:
    """Four good cases of odd sizes plus one case each with a wrong channel count, a corrupt file and a
    missing modality. Returns the folder and ``{bad case id: expected text in its error}``."""
    root = str(tmp_path / "data")
    demo_brats.write_demo_set(root, num_cases=7, size=30, seed=3)
    cases = {c["case_id"]: c for c in brats.find_brats_cases(root)}
    wide, corrupt, missing = "BraTS-GLI-00004-000", "BraTS-GLI-00005-000", "BraTS-GLI-00006-000"
    t1n = nib.load(cases[wide]["image"][0])
    nib.save(nib.Nifti1Image(np.stack([np.asanyarray(t1n.dataobj)] * 2, -1), t1n.affine), cases[wide]["image"][0])
    with open(cases[corrupt]["image"][1], "rb") as handle:
        payload = gzip.compress(gzip.decompress(handle.read()))
    with open(cases[corrupt]["image"][1], "wb") as handle:
        handle.write(payload[: len(payload) // 2])  # truncated: the header reads, the data does not
    os.remove(cases[missing]["image"][3])
    os.remove(os.path.join(root, "datalist.json"))
    expected = {wide: "5 channel(s) in total, expected 4", corrupt: "cannot read the image", missing: "-t2f.nii.gz"}
    return root, expected


@pytest.mark.slow
def test_inference_writes_good_cases_and_names_bad_ones(dataset_with_bad_cases, tmp_path):
    root, expected = dataset_with_bad_cases
    models = tmp_path / "models"
    models.mkdir()
    torch.save(nnMambaSeg(4, 3, channels=16, head="logits").state_dict(), models / "model.pt")
    output_dir = tmp_path / "labels"
    result = run_bundle(
        "run",
        "--config_file",
        str(CONFIGS / "inference.yaml"),
        *META,
        *cli_overrides({**TINY, "dataset_dir": root, "ckpt_dir": str(models), "output_dir": str(output_dir)}),
        "--slicer_segmentation",
        "false",  # the NIfTI label maps only
        env=ENV,
        check=False,
    )
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert "3 of 7 cases were rejected" in log and "4 cases written to" in log
    rejected = json.loads((output_dir / "rejected_cases.json").read_text())
    assert sorted(rejected) == sorted(expected)
    for case_id, reason in expected.items():
        assert rejected[case_id].startswith(f"case {case_id}:") and reason in rejected[case_id]
    good = [f"BraTS-GLI-{i:05d}-000" for i in range(4)]
    assert sorted(name for name in os.listdir(output_dir) if not name.startswith(".")) == sorted(
        [f"{c}.nii.gz" for c in good] + ["rejected_cases.json"]
    )
    for case_id in good:  # sizes around 30 voxels: padded to 32 for the network and cropped back
        assert_same_grid_and_header(
            str(output_dir / f"{case_id}.nii.gz"), os.path.join(root, case_id, f"{case_id}-t1n.nii.gz")
        )


@pytest.mark.slow
def test_training_stops_naming_bad_cases(dataset_with_bad_cases, tmp_path):
    root, expected = dataset_with_bad_cases
    shutil.copy(  # the corrupt case's header is readable: only loading finds it, so leave it out here
        os.path.join(root, "BraTS-GLI-00000-000", "BraTS-GLI-00000-000-t1c.nii.gz"),
        os.path.join(root, "BraTS-GLI-00005-000", "BraTS-GLI-00005-000-t1c.nii.gz"),
    )
    result = run_bundle(
        "run",
        "training",
        "--config_file",
        TRAIN,
        *META,
        *cli_overrides({**TINY, "dataset_dir": root, "bundle_root": str(tmp_path / "run"), "max_epochs": 1}),
        env=ENV,
        check=False,
    )
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert "not usable" in log and "Epoch[1]" not in log
    for case_id in ("BraTS-GLI-00004-000", "BraTS-GLI-00006-000"):
        assert f"case {case_id}:" in log and expected[case_id] in log


@pytest.mark.slow
def test_multi_gpu_config_runs_two_cpu_processes(tmp_path):
    """torchrun with 2 processes, gloo backend on CPU, one short epoch."""
    # 14 cases: 10 training, 2 validation (one per process), 2 test
    root = str(tmp_path / "data")
    demo_brats.write_demo_set(root, num_cases=14, size=32, seed=4)
    run_dir = tmp_path / "run"
    result = run_module(
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        merged_configs(CONFIGS, "train.yaml", "multi_gpu_train.yaml"),
        *META,
        *cli_overrides({**TINY, "dataset_dir": root, "bundle_root": str(run_dir), "max_epochs": 1, "val_interval": 1}),
        launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        env={"OMP_NUM_THREADS": "1"},
    )
    log = result.stdout + result.stderr
    assert log.count("Epoch[1] Metrics -- val_dice_et") == 1  # only rank 0 logs
    assert (run_dir / "models" / "model.pt").is_file() and (run_dir / "models" / "checkpoint_epoch=1.pt").is_file()
