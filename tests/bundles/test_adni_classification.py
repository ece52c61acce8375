"""Tests of the bundle bundles/nnmamba_adni_classification (AD vs NC classification with nnMambaEncoder).

Everything runs on a tiny synthetic dataset generated into tmp_path; nothing depends on the demo cache.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil

import pytest
from monai.bundle import ConfigParser, verify_net_in_out
from monai.bundle.reference_resolver import ReferenceResolver

from nnmamba_nets.classification.datalist import check_subject_disjoint
from nnmamba_nets.classification.metrics import METRIC_NAMES, classification_metrics
from nnmamba_nets.common.checkpoints import latest_checkpoint
from nnmamba_nets.common.datalists import read_datalist
from nnmamba_nets.demo.adni import write_demo_set
from tests.utils import (
    BUNDLES_DIR,
    assert_metadata_verifies,
    assert_workflow_properties,
    cli_overrides,
    run_bundle,
    run_module,
)

BUNDLE = BUNDLES_DIR / "nnmamba_adni_classification"
CONFIGS = BUNDLE / "configs"
META = str(CONFIGS / "metadata.json")
LOGGING = str(CONFIGS / "logging.conf")
TRAIN = str(CONFIGS / "train.yaml")
NETWORK = {"spatial_size": [24, 24, 24], "channels": 4, "blocks": 1}
TINY = {**NETWORK, "demo#num_subjects": 12, "demo#image_size": 24, "batch_size": 4, "num_workers": 0}
ENV = {"OMP_NUM_THREADS": "2"}


def tiny_overrides(tmp_path) -> dict:
    return {**TINY, "bundle_root": str(tmp_path)}


def test_metadata_verifies_offline_with_the_cli():
    assert_metadata_verifies(CONFIGS)


@pytest.mark.parametrize("mamba_seq", [False, True])
def test_network_matches_metadata(mamba_seq):
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=TRAIN, device="cpu", mamba_seq=mamba_seq)


@pytest.mark.parametrize(
    "config_files, workflow_type", [([TRAIN], "train"), ([str(CONFIGS / "inference.yaml")], "infer")]
)
def test_check_properties_is_clean(tmp_path, monkeypatch, config_files, workflow_type):
    monkeypatch.setenv("NNMAMBA_CACHE", str(tmp_path / "cache"))
    assert_workflow_properties(CONFIGS, config_files, workflow_type, **tiny_overrides(tmp_path))


def unresolved_references(parser: ConfigParser) -> set[str]:
    refs = ReferenceResolver.find_refs_in_config(parser.get(), id="")
    return {ref for ref in refs if ref not in parser}


@pytest.mark.parametrize("extra", ["multi_gpu_train.yaml", "evaluate.yaml"])
def test_merged_configs_parse_and_resolve(extra):
    parser = ConfigParser()
    parser.read_config([TRAIN, str(CONFIGS / extra)])
    parser.parse()
    assert unresolved_references(parser) == set()
    if extra == "multi_gpu_train.yaml":
        assert parser["network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
        assert parser["train#dataloader#sampler"].replace("::", "#") == "@train#sampler"
        assert parser["validate#dataloader#sampler"].replace("::", "#") == "@validate#sampler"
        assert parser["train#sampler#_target_"] == parser["validate#sampler#_target_"] == "DistributedSampler"
        assert any("destroy_process_group" in expression for expression in parser["finalize"])


@pytest.mark.slow
def test_bad_csv_stops_training_with_a_clear_error(tmp_path):
    (tmp_path / "a.nii.gz").touch()
    (tmp_path / "dataset.csv").write_text("image,label\na.nii.gz,AD\nb.nii.gz,NC\n")
    result = run_bundle(
        "run",
        "training",
        "--config_file",
        TRAIN,
        "--dataset_dir",
        str(tmp_path),
        "--bundle_root",
        str(tmp_path),
        cwd=BUNDLE,
        check=False,
        timeout=600,
    )
    assert result.returncode != 0
    assert "lists 1 image file(s) that do not exist: b.nii.gz (line 3)" in result.stderr


def read_csv(path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_train_resume_evaluate_and_infer_through_the_cli(tmp_path):
    overrides = cli_overrides(tiny_overrides(tmp_path))
    train = ["run", "training", "--config_file", TRAIN, "--meta_file", META, "--logging_file", LOGGING, *overrides]

    run_bundle(
        *train, "--max_epochs", "2", cwd=BUNDLE, env={**ENV, "NNMAMBA_CACHE": str(tmp_path / "cache")}, timeout=900
    )
    models = tmp_path / "models"
    assert (models / "model.pt").is_file() and (models / "checkpoint_epoch=2.pt").is_file()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "eval" / "train"))
    (datalist_file,) = (tmp_path / "cache").glob("adni_synthetic/*/datalist.json")
    datalist = read_datalist(datalist_file, path_keys=["image"])
    check_subject_disjoint(datalist)
    assert all(datalist[split] for split in ("training", "validation", "test"))

    env = {**ENV, "NNMAMBA_CACHE": str(tmp_path / "cache")}
    resumed = run_bundle(*train, "--max_epochs", "3", "--resume", "True", cwd=BUNDLE, env=env, timeout=900)
    assert "resuming from iteration" in resumed.stdout + resumed.stderr
    assert "epoch 2 until 3 epochs" in resumed.stdout + resumed.stderr
    assert latest_checkpoint(str(models)) == str(models / "checkpoint_epoch=3.pt")

    evaluate = ["run", "--config_file", f"['{TRAIN}','{CONFIGS / 'evaluate.yaml'}']", "--logging_file", LOGGING]
    run_bundle(*evaluate, *overrides, cwd=BUNDLE, env=env, timeout=900)
    with open(tmp_path / "eval" / "test" / "metrics.csv", newline="") as stream:
        metrics = {name: float(value) for name, value in csv.reader(stream)}
    assert sorted(metrics) == sorted(f"val_{name}" for name in METRIC_NAMES)  # the validation metrics
    assert 0.0 <= metrics["val_accuracy"] <= 1.0
    predictions = read_csv(tmp_path / "eval" / "test" / "predictions.csv")
    assert len(predictions) == len(datalist["test"])
    expected = classification_metrics(
        [[float(row["prob_NC"]), float(row["prob_AD"])] for row in predictions],
        [("NC", "AD").index(row["label"]) for row in predictions],
        ["NC", "AD"],
    )
    for name in METRIC_NAMES:  # the report's rows give the same numbers as the metric handlers
        assert metrics[f"val_{name}"] == pytest.approx(expected[name], abs=1e-5, nan_ok=True), name
    confusion = (tmp_path / "eval" / "test" / "confusion_matrix.csv").read_text().splitlines()
    assert sum(int(v) for line in confusion[1:] for v in line.split(",")[1:]) == len(datalist["test"])

    # inference over a folder with two good images, a truncated NIfTI and a text file named .nii
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = [item["image"] for item in datalist["test"][:2]]
    for path in good:
        shutil.copy(path, inputs)
    (inputs / "broken.nii.gz").write_bytes(open(good[0], "rb").read()[:2000])
    (inputs / "notes.nii").write_text("not an image")
    infer = ["run", "--config_file", str(CONFIGS / "inference.yaml"), "--logging_file", LOGGING]
    result = run_bundle(
        *infer,
        *cli_overrides({**NETWORK, "bundle_root": str(tmp_path), "dataset_dir": str(inputs)}),
        cwd=BUNDLE,
        env=env,
        timeout=900,
        check=False,
    )
    assert result.returncode != 0  # something was rejected
    output_dir = tmp_path / "eval" / "inference"
    rows = {os.path.basename(row["image"]): row for row in read_csv(output_dir / "predictions.csv")}
    assert sorted(rows) == sorted(os.path.basename(p) for p in good)  # the others were still classified
    for row in rows.values():
        assert row["predicted"] in ("NC", "AD")
        assert float(row["prob_NC"]) + float(row["prob_AD"]) == pytest.approx(1.0, abs=1e-5)
    rejected = json.loads((output_dir / "rejected_cases.json").read_text())
    assert sorted(os.path.basename(name) for name in rejected) == ["broken.nii.gz", "notes.nii"]
    assert all("cannot read the image" in reason for reason in rejected.values())

    # a rerun into the same folder leaves only its own outputs; a concurrent run is refused
    rerun = cli_overrides({**NETWORK, "bundle_root": str(tmp_path), "dataset_dir": [good[0]]})
    run_bundle(*infer, *rerun, cwd=BUNDLE, env=env, timeout=900)
    assert [os.path.basename(row["image"]) for row in read_csv(output_dir / "predictions.csv")] == [
        os.path.basename(good[0])
    ]
    assert json.loads((output_dir / "rejected_cases.json").read_text()) == {}
    with open(output_dir / ".nnmamba-inference.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run holds the folder
        refused = run_bundle(*infer, *rerun, cwd=BUNDLE, env=env, timeout=900, check=False)
    assert refused.returncode != 0 and "another inference run is writing into" in refused.stdout + refused.stderr
    assert len(read_csv(output_dir / "predictions.csv")) == 1  # untouched


@pytest.mark.slow
def test_multi_gpu_config_trains_with_two_cpu_processes(tmp_path):
    """multi_gpu_train.yaml under torchrun: DDP with gloo on CPU, 2 ranks, rank 0 writes the models."""
    configs = f"['{TRAIN}','{CONFIGS / 'multi_gpu_train.yaml'}']"
    overrides = cli_overrides({**tiny_overrides(tmp_path), "batch_size": 2, "max_epochs": 1})
    launcher = ("-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2")
    result = run_module(
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        configs,
        "--logging_file",
        LOGGING,
        *overrides,
        cwd=BUNDLE,
        env={"OMP_NUM_THREADS": "1", "NNMAMBA_CACHE": str(tmp_path / "cache")},
        launcher=launcher,
        timeout=900,
    )
    assert "val_auc" in result.stdout + result.stderr
    assert (tmp_path / "models" / "model.pt").is_file()
    assert (tmp_path / "models" / "checkpoint_epoch=1.pt").is_file()


@pytest.mark.slow
def test_three_classes_with_a_drawn_subject_split(tmp_path):
    """class_names of 3 -> 3 logits and CE; a CSV without split column -> subjects drawn into splits."""
    write_demo_set(tmp_path / "data", num_subjects=18, image_size=24)
    rows = read_csv(tmp_path / "data" / "dataset.csv")
    (tmp_path / "three").mkdir()
    with open(tmp_path / "three" / "dataset.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["image", "label", "subject_id"])
        for row in rows:
            label = ("NC", "MCI", "AD")[int(row["subject_id"][4:]) % 3]
            writer.writerow([str(tmp_path / "data" / row["image"]), label, row["subject_id"]])
    overrides = cli_overrides(
        {
            **NETWORK,
            "class_names": ["NC", "MCI", "AD"],
            "dataset_dir": str(tmp_path / "three"),
            "bundle_root": str(tmp_path),
            "num_workers": 0,
            "batch_size": 4,
            "max_epochs": 1,
        }
    )
    run_bundle("run", "training", "--config_file", TRAIN, "--logging_file", LOGGING, *overrides, cwd=BUNDLE, env=ENV)
    datalist = json.loads((tmp_path / "eval" / "train" / "datalist.json").read_text())  # the split of dataset_dir
    check_subject_disjoint(datalist)
    assert {item["label"] for item in datalist["training"]} == {0, 1, 2}

    evaluate = f"['{TRAIN}','{CONFIGS / 'evaluate.yaml'}']"
    run_bundle("run", "--config_file", evaluate, "--logging_file", LOGGING, *overrides, cwd=BUNDLE, env=ENV)
    confusion = (tmp_path / "eval" / "test" / "confusion_matrix.csv").read_text().splitlines()
    assert confusion[0] == "true \\ predicted,NC,MCI,AD" and len(confusion) == 4
    assert list(read_csv(tmp_path / "eval" / "test" / "predictions.csv")[0])[2:5] == ["prob_NC", "prob_MCI", "prob_AD"]
    assert "val_balanced_accuracy" in (tmp_path / "eval" / "test" / "metrics.csv").read_text()
