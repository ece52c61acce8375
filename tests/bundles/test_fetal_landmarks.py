"""Tests of the bundles/nnmamba_fetal_landmarks MONAI bundle, mostly through the real bundle CLI.

The end-to-end run uses a tiny synthetic dataset (4 training, 2 validation, 2 test cases) in pytest's tmp
folder, never the user's demo cache.
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from nnmamba_nets.common.datalists import read_datalist
from nnmamba_nets.demo.fetal import LANDMARK_NAMES
from nnmamba_nets.landmarks.io import read_landmarks
from tests.utils import (
    BUNDLES_DIR,
    assert_metadata_verifies,
    assert_net_in_out_verifies,
    assert_workflow_properties,
    cli_overrides,
    merged_configs,
    run_bundle,
)

BUNDLE = BUNDLES_DIR / "nnmamba_fetal_landmarks"
CONFIGS = BUNDLE / "configs"
META = ["--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf")]
TRAIN = str(CONFIGS / "train.yaml")
ENV = {"OMP_NUM_THREADS": "2"}


TINY_DEMO = {"demo#num_training": 4, "demo#num_validation": 2, "demo#num_test": 2}  # a tiny synthetic set


@pytest.mark.parametrize("config, workflow_type", [("train.yaml", "train"), ("inference.yaml", "infer")])
def test_check_properties(config, workflow_type, tmp_path, monkeypatch):
    monkeypatch.setenv("NNMAMBA_CACHE", str(tmp_path / "cache"))
    assert_workflow_properties(
        CONFIGS,
        str(CONFIGS / config),
        workflow_type,
        bundle_root=str(tmp_path / "bundle"),  # handlers create their folders: keep them out of the cwd
        **TINY_DEMO,
    )


def test_verify_metadata_offline():
    assert_metadata_verifies(CONFIGS)


def test_verify_net_in_out():
    assert_net_in_out_verifies(CONFIGS)


def test_multi_gpu_config_parses(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    parser = ConfigParser()
    parser.read_config([TRAIN, str(CONFIGS / "multi_gpu_train.yaml")])
    parser.parse()
    expected = torch.device("cuda:1") if torch.cuda.is_available() else torch.device("cpu")
    assert parser.get_parsed_content("device") == expected
    assert parser["network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
    assert parser["train#sampler"]["_target_"] == "DistributedSampler"
    assert parser["train#dataloader#sampler"].replace("::", "#") == "@train#sampler"
    assert parser.get_parsed_content("train#dataloader#shuffle") is False
    assert parser["validate#dataloader#sampler"].replace("::", "#") == "@validate#sampler"
    assert any("init_process_group" in step for step in parser["initialize"])


def test_evaluate_and_inference_configs_merge():
    parser = ConfigParser()
    parser.read_config([TRAIN, str(CONFIGS / "evaluate.yaml")])
    parser.parse()
    targets = [handler["_target_"] for handler in parser["validate#handlers"]]
    assert targets[-3:] == [
        "MetricsSaver",
        "nnmamba_nets.landmarks.handlers.LandmarkErrorReport",
        "nnmamba_nets.landmarks.handlers.LandmarkWriter",
    ]
    inference = ConfigParser()
    inference.read_config(str(CONFIGS / "inference.yaml"))
    for key in ("landmark_names", "pixdim", "spatial_size", "channels", "blocks", "heatmap_loss", "heatmap_sigma"):
        assert inference[key] == parser[key], key  # inference must preprocess like training


@pytest.mark.slow
def test_train_resume_evaluate_and_infer(tmp_path):
    """One epoch on a tiny dataset, resume to epoch 2, evaluate on the test split, infer with Slicer output."""
    env = {**ENV, "NNMAMBA_CACHE": str(tmp_path / "cache")}
    run_dir = tmp_path / "run"
    common = [*META, *cli_overrides({"bundle_root": str(run_dir), **TINY_DEMO, "batch_size": 2, "val_interval": 1})]
    run_bundle("run", "training", "--config_file", TRAIN, *common, "--max_epochs", "1", env=env)
    models = run_dir / "models"
    assert (models / "model.pt").is_file() and (models / "checkpoint_epoch=1.pt").is_file()
    resumed = run_bundle("run", "--config_file", TRAIN, *common, "--max_epochs", "2", "--resume", "true", env=env)
    assert "Epoch: 2/2" in resumed.stdout + resumed.stderr and (models / "checkpoint_epoch=2.pt").is_file()
    assert list((run_dir / "eval" / "train").glob("events.out.tfevents.*")), "TensorBoard logs"
    (datalist_file,) = (tmp_path / "cache").glob("fetal_landmarks_synthetic/*/datalist.json")  # the tiny demo set

    evaluation = run_bundle(
        "run", "--config_file", merged_configs(CONFIGS, "train.yaml", "evaluate.yaml"), *common, env=env
    )
    assert "val_mre" in evaluation.stdout + evaluation.stderr
    test_dir = run_dir / "eval" / "test"
    with open(test_dir / "metrics.csv") as stream:
        metrics = {name: float(value) for name, value in csv.reader(stream)}
    with open(test_dir / "landmark_errors.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 * 6 and {row["landmark"] for row in rows} == set(LANDMARK_NAMES)
    for row in rows:  # the error column is the distance between the written coordinates
        true_point = np.array([float(row[f"true_{a}"]) for a in "ras"])
        predicted = np.array([float(row[f"pred_{a}"]) for a in "ras"])
        assert abs(np.linalg.norm(true_point - predicted) - float(row["error_mm"])) < 1e-3
    with open(test_dir / "landmark_summary.csv") as stream:
        summary = list(csv.DictReader(stream))
    assert [row["landmark"] for row in summary] == [*LANDMARK_NAMES, "all"]
    assert abs(float(summary[-1]["mre_mm"]) - np.mean([float(r["error_mm"]) for r in rows])) < 1e-2
    assert metrics["val_mre"] == pytest.approx(float(summary[-1]["mre_mm"]), rel=1e-3)  # the summary keeps 4 digits
    assert len(list((test_dir / "landmarks").glob("*.mrk.json"))) == 2

    out_dir = tmp_path / "inference"
    missing = str(tmp_path / "missing.nii.gz")
    test_images = [item["image"] for item in read_datalist(datalist_file, path_keys=["image"])["test"]]
    result = run_bundle(
        "run",
        "--config_file",
        str(CONFIGS / "inference.yaml"),
        *META,
        *cli_overrides(
            {
                "bundle_root": str(run_dir),
                "output_dir": str(out_dir),
                "dataset_dir": [*test_images, missing],  # a list of files, no Python expression
                "save_heatmaps": True,
            }
        ),
        env=env,
        check=False,
    )
    assert result.returncode != 0 and "1 of 3 images were rejected" in result.stdout + result.stderr
    assert json.loads((out_dir / "rejected_cases.json").read_text()) == {missing: f"{missing!r}: no such file."}
    with open(out_dir / "landmarks.csv") as stream:
        table = list(csv.DictReader(stream))
    assert len(table) == 2  # the other images were still done
    for row in table:
        markups_file = out_dir / f"{row['case']}.mrk.json"
        landmarks = read_landmarks(markups_file)
        assert landmarks.names == list(LANDMARK_NAMES)
        assert json.loads(markups_file.read_text())["markups"][0]["coordinateSystem"] == "LPS"
        csv_lps = np.array([[float(row[f"{name}_{axis}"]) for axis in "lps"] for name in LANDMARK_NAMES])
        np.testing.assert_allclose(landmarks.points * [-1, -1, 1], csv_lps, atol=1e-3)  # CSV row = JSON, in LPS
        assert np.all((landmarks.confidence >= 0) & (landmarks.confidence <= 1))
        heatmaps = nib.load(out_dir / f"{row['case']}_heatmaps.nii.gz")
        assert heatmaps.shape == (32, 32, 32, 6)
