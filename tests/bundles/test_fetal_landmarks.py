"""Tests of the bundles/nnmamba_fetal_landmarks MONAI bundle, mostly through the real bundle CLI.

The end-to-end run uses a tiny synthetic dataset (4 training, 2 validation, 2 test cases) in pytest's tmp
folder, never the user's demo cache.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from nnmamba_nets.common.datalists import read_datalist
from nnmamba_nets.demo import fetal
from nnmamba_nets.demo.fetal import LANDMARK_NAMES
from nnmamba_nets.demo.phantom import save_nifti
from nnmamba_nets.landmarks.datalist import PATH_KEYS, prepare_datalist
from nnmamba_nets.landmarks.io import Landmarks, read_landmarks, write_landmarks
from nnmamba_nets.landmarks.protocol import PROTOCOL_FILE, MissingProtocolError
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
    fetal.PROTOCOL.save(tmp_path / "bundle" / "models" / PROTOCOL_FILE)  # what training records for inference
    assert_workflow_properties(
        CONFIGS,
        str(CONFIGS / config),
        workflow_type,
        bundle_root=str(tmp_path / "bundle"),  # handlers create their folders: keep them out of the cwd
        **TINY_DEMO,
    )


def test_verify_metadata_offline():
    assert_metadata_verifies(CONFIGS)


def test_verify_net_in_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # bundle_root "." of the CLI: a bundle whose training recorded the demo's landmarks
    fetal.PROTOCOL.save(tmp_path / "models" / PROTOCOL_FILE)
    assert_net_in_out_verifies(CONFIGS)


def test_inference_without_a_trained_protocol_names_what_to_pass(tmp_path):
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.yaml"))
    parser["bundle_root"] = str(tmp_path)
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps the expression's error, which it chains
        parser.get_parsed_content("network_def")
    assert isinstance(raised.value.__cause__, MissingProtocolError)
    message = str(raised.value.__cause__)
    assert str(tmp_path / "models" / PROTOCOL_FILE) in message and "--landmark_names" in message
    parser["landmark_names"] = ["a", "b", "c"]  # an explicit channel order still works without the record
    assert parser.get_parsed_content("network_def").conv8.conv[-1].out_channels == 3


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
    for key in (
        "landmark_names",
        "landmark_descriptions",
        "pixdim",
        "spatial_size",
        "channels",
        "blocks",
        "heatmap_loss",
        "heatmap_sigma",
    ):
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
    assert "Epoch [2/2]" in resumed.stderr and (models / "checkpoint_epoch=2.pt").is_file()  # the progress bar
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
    assert [row["description"] for row in summary] == [*fetal.LANDMARK_DESCRIPTIONS, ""]  # from the demo's files
    assert json.loads((test_dir / "landmark_summary.json").read_text()) == [  # the same rows, unrounded
        {k: v if k in ("landmark", "description") else pytest.approx(float(v), rel=1e-3) for k, v in row.items()}
        for row in summary
    ]
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
        assert landmarks.names == list(LANDMARK_NAMES) and landmarks.descriptions == list(fetal.LANDMARK_DESCRIPTIONS)
        assert json.loads(markups_file.read_text())["markups"][0]["coordinateSystem"] == "LPS"
        csv_lps = np.array([[float(row[f"{name}_{axis}"]) for axis in "lps"] for name in LANDMARK_NAMES])
        np.testing.assert_allclose(landmarks.points * [-1, -1, 1], csv_lps, atol=1e-3)  # CSV row = JSON, in LPS
        assert np.all((landmarks.confidence >= 0) & (landmarks.confidence <= 1))
        heatmaps = nib.load(out_dir / f"{row['case']}_heatmaps.nii.gz")
        assert heatmaps.shape == (32, 32, 32, 6)


# Ten landmarks as the AFIDs protocol names them: numeric labels, the anatomical names as descriptions.
TEN_NAMES = [str(index) for index in range(1, 11)]
TEN_DESCRIPTIONS = [
    "AC",
    "PC",
    "infracollicular sulcus",
    "PMJ",
    "superior interpeduncular fossa",
    "R superior LMS",
    "L superior LMS",
    "R inferior LMS",
    "L inferior LMS",
    "Culmen",
]


def write_ten_landmark_set(folder) -> None:
    """8 synthetic heads whose 10 landmarks are the demo's six, the midpoints of its three diameters and their
    centre; odd cases as AFIDs-style .fcsv files (Slicer 4.10, RAS), even ones as .mrk.json (LPS)."""
    for index in range(8):
        image, affine, six = fetal.synthesize_case(np.random.default_rng([7, index]), spacing_range=(2.0, 2.0))
        points = np.vstack([six, (six[0::2] + six[1::2]) / 2, six.mean(axis=0, keepdims=True)])
        case = f"sub-{index:02d}"
        save_nifti(folder / "images" / f"{case}.nii.gz", image, affine)
        if index % 2:
            lines = [
                "# Markups fiducial file version = 4.10",
                "# CoordinateSystem = 0",
                "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID",
            ]
            for number, (label, text, point) in enumerate(zip(TEN_NAMES, TEN_DESCRIPTIONS, points), start=1):
                xyz = ",".join(repr(float(v)) for v in point)
                lines.append(f"vtkMRMLMarkupsFiducialNode_{number},{xyz},0,0,0,1,1,1,1,{label},{text},")
            (folder / "landmarks").mkdir(exist_ok=True)
            (folder / "landmarks" / f"{case}.fcsv").write_text("\n".join(lines) + "\n")
        else:
            landmarks = Landmarks(TEN_NAMES, points, descriptions=TEN_DESCRIPTIONS)
            write_landmarks(folder / "landmarks" / f"{case}.mrk.json", landmarks, coordinate_system="LPS")


@pytest.mark.slow
def test_any_named_landmark_set_trains_and_infers_without_config_edits(tmp_path):
    """10 landmarks named by their files: training records them beside the weights, inference writes them back."""
    dataset = tmp_path / "afids"
    write_ten_landmark_set(dataset)
    datalist = read_datalist(prepare_datalist(dataset, tmp_path / "datalist.json", 0.25, 0.25), PATH_KEYS)
    assert datalist["landmark_names"] == TEN_NAMES and datalist["landmark_descriptions"] == TEN_DESCRIPTIONS

    run_dir = tmp_path / "run"
    splits = {"val_fraction": 0.25, "test_fraction": 0.25, "batch_size": 2, "val_interval": 1, "max_epochs": 1}
    common = [*META, *cli_overrides({"bundle_root": str(run_dir), "dataset_dir": str(dataset), **splits})]
    run_bundle("run", "training", "--config_file", TRAIN, *common, env=ENV)
    record = json.loads((run_dir / "models" / PROTOCOL_FILE).read_text())
    assert record == {"landmark_names": TEN_NAMES, "landmark_descriptions": TEN_DESCRIPTIONS}
    split_file = run_dir / "eval" / "train" / "datalist.json"
    assert read_datalist(split_file, PATH_KEYS) == datalist  # the bundle's own split of dataset_dir

    out_dir = tmp_path / "inference"
    formats = [".mrk.json", ".fcsv", ".csv"]
    overrides = {"bundle_root": str(run_dir), "output_dir": str(out_dir), "landmark_formats": formats}
    run_bundle(
        "run",
        "--config_file",
        str(CONFIGS / "inference.yaml"),
        *META,
        *cli_overrides({**overrides, "dataset_dir": str(split_file)}),  # its test split; no landmark names given
        env=ENV,
    )
    cases = [Path(item["image"]).name.split(".")[0] for item in datalist["test"]]
    for case in cases:
        predicted = {suffix: read_landmarks(out_dir / f"{case}{suffix}") for suffix in formats}
        for suffix, landmarks in predicted.items():
            assert landmarks.names == TEN_NAMES and landmarks.descriptions == TEN_DESCRIPTIONS, suffix
            np.testing.assert_allclose(landmarks.points, predicted[".mrk.json"].points, atol=1e-6)
        markup = json.loads((out_dir / f"{case}.mrk.json").read_text())["markups"][0]
        assert [p["description"] for p in markup["controlPoints"]] == TEN_DESCRIPTIONS  # not the confidences
        assert [m["name"] for m in markup["measurements"]] == ["confidence"]
        fcsv_rows = [line.split(",") for line in (out_dir / f"{case}.fcsv").read_text().splitlines()[3:]]
        assert [(row[11], row[12]) for row in fcsv_rows] == list(zip(TEN_NAMES, TEN_DESCRIPTIONS))  # label, desc
