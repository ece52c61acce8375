"""Crash-safe training: a real training killed with SIGKILL while it saves resumes to the run it would have been.

The segmentation bundle (the three bundles share the checkpoint handlers of nnmamba_nets.common.checkpoints)
trains a tiny demo set for three epochs; ``crash_training.py`` kills copies of that run inside a checkpoint
write, between writing a checkpoint and removing the previous one, and inside the first write of
``model.pt``. Each must leave complete files only, and the resumed run must end with the weights of the
uninterrupted one (random states travel in the checkpoints).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnmamba_nets.common.checkpoints import resume_checkpoint
from tests.utils import BUNDLES_DIR, cli_overrides, run_bundle, run_python

CONFIGS = BUNDLES_DIR / "nnmamba_brats_segmentation" / "configs"
CRASH = str(Path(__file__).with_name("crash_training.py"))
TINY = {"demo#num_cases": 4, "demo#size": 32, "roi_size": [32, 32, 32], "num_workers": 0, "sw_batch_size": 2}
EPOCHS = 3

pytestmark = pytest.mark.slow


def training(run_dir: Path, max_epochs: int, resume: bool = False) -> list[str]:
    overrides = {**TINY, "bundle_root": str(run_dir), "val_interval": 1, "max_epochs": max_epochs, "resume": resume}
    return ["run", "training", "--config_file", str(CONFIGS / "train.yaml"), *cli_overrides(overrides)]


def weights(path: Path) -> dict[str, torch.Tensor]:
    content = torch.load(path, map_location="cpu", weights_only=True)
    return content["model"] if "model" in content and "trainer" in content else content


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict[str, str]:
    return {"OMP_NUM_THREADS": "2", "NNMAMBA_CACHE": str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, environment) -> Path:
    """The models folder of the run without interruption."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    run_bundle(*training(run_dir, EPOCHS), env=environment)
    return run_dir / "models"


def assert_only_complete_files(models: Path) -> None:
    for path in models.iterdir():
        if not path.name.startswith("."):  # hidden: the saver's temporary files
            weights(path)  # every file under its final name loads


@pytest.mark.parametrize("moment", ["inside:checkpoint_epoch=2", "before-removal:checkpoint_epoch=1"])
def test_killed_while_checkpointing_resumes_to_the_same_weights(moment, uninterrupted, environment, tmp_path):
    killed = run_python(CRASH, moment, *training(tmp_path, EPOCHS), env=environment, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    models = tmp_path / "models"
    assert_only_complete_files(models)
    expected_epoch = 1 if moment.startswith("inside") else 2
    assert resume_checkpoint(models, True) == str(models / f"checkpoint_epoch={expected_epoch}.pt")
    resumed = run_bundle(*training(tmp_path, EPOCHS, resume=True), env=environment)
    log = resumed.stdout + resumed.stderr
    assert f"Restored all variables from {models / f'checkpoint_epoch={expected_epoch}.pt'}" in log
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == [
        f"checkpoint_epoch={EPOCHS}.pt",
        "model.pt",
    ]
    for name in (f"checkpoint_epoch={EPOCHS}.pt", "model.pt"):  # the run it would have been
        reference, result = weights(uninterrupted / name), weights(models / name)
        for key, tensor in reference.items():
            torch.testing.assert_close(result[key], tensor, rtol=0, atol=0, msg=f"{name}: {key}")


def test_killed_inside_the_first_model_write_leaves_no_partial_model(environment, tmp_path):
    killed = run_python(CRASH, "inside:model.pt", *training(tmp_path, EPOCHS), env=environment, check=False)
    assert killed.returncode == -9
    models = tmp_path / "models"
    assert not (models / "model.pt").exists()  # only the hidden temporary file holds the half-written bytes
    assert [p.name for p in models.iterdir() if p.name.startswith(".tmp-ckpt-")]
    resumed = run_bundle(*training(tmp_path, EPOCHS, resume=True), env=environment, check=False)
    assert resumed.returncode != 0 and "train without resume first" in resumed.stderr  # nothing to resume from
    run_bundle(*training(tmp_path, 1), env=environment)  # a fresh start works
    assert_only_complete_files(models)
