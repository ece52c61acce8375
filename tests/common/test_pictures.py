"""Training curves from TensorBoard event files, the 3D slice helpers, and the `pictures` command line."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from nnmamba_nets.common.pictures import (
    _metric_groups,
    _read_scalars,
    main,
    plane_slice,
    read_volume,
    training_curves,
    voxel_spacing,
)
from tests.picture_checks import assert_png
from tests.utils import run_module

EPOCHS, ITERATIONS = 4, 10  # iterations per epoch


def write_training_events(folder) -> None:
    """Event files as a bundle's training writes them: a trainer writer (loss per iteration, its key metric per
    epoch) and a validation writer (metrics per epoch), two files in one folder."""
    trainer, validator = SummaryWriter(str(folder)), SummaryWriter(str(folder))
    for epoch in range(1, EPOCHS + 1):
        for iteration in range(1, ITERATIONS + 1):
            step = (epoch - 1) * ITERATIONS + iteration
            trainer.add_scalar("train_loss", 1.0 / step, step)
        trainer.add_scalar("train_mean_dice", 0.1 * epoch, epoch)
        for name, value in {"val_mean_dice": 0.2, "val_dice_tc": 0.1, "val_accuracy": 0.5, "val_hd95_tc": 9.0}.items():
            validator.add_scalar(name, value * epoch, epoch)
    trainer.close()
    validator.close()


def test_read_scalars_merges_files_and_keeps_the_newer_value_of_a_step(tmp_path):
    write_training_events(tmp_path)
    rerun = SummaryWriter(str(tmp_path))  # a rerun in the same folder writes epoch 1 again
    rerun.add_scalar("val_mean_dice", 0.9, 1)
    rerun.close()
    scalars = _read_scalars(tmp_path)
    assert sorted(scalars) == ["train_loss", "train_mean_dice", "val_accuracy", "val_dice_tc", "val_hd95_tc",
                               "val_mean_dice"]  # fmt: skip
    steps, values = scalars["train_loss"]
    np.testing.assert_array_equal(steps, np.arange(1, EPOCHS * ITERATIONS + 1))
    np.testing.assert_allclose(values, 1.0 / steps, rtol=1e-6)
    np.testing.assert_allclose(scalars["val_mean_dice"][1], [0.9, 0.4, 0.6, 0.8], rtol=1e-6)


def test_metric_groups_by_family_with_the_lone_scores_together():
    def series(*values: float) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(1, len(values) + 1), np.array(values)

    groups = _metric_groups(
        {
            "train_mean_dice": series(0.5),
            "val_mean_dice": series(0.6),
            "val_dice_tc": series(0.7),
            "val_hd95_tc": series(3.0),
            "val_hd95_wt": series(4.0),
            "val_accuracy": series(0.8),
            "val_balanced_accuracy": series(0.7),
            "val_mean_hd95": series(5.0),  # shares "hd95"
            "val_mre": series(2.5),  # alone and above 1: a panel of its own
        }
    )
    assert groups == {
        "dice": ["train_mean_dice", "val_mean_dice", "val_dice_tc"],
        "hd95": ["val_hd95_tc", "val_hd95_wt", "val_mean_hd95"],
        "scores": ["val_accuracy", "val_balanced_accuracy"],
        "mre": ["val_mre"],
    }


def test_training_curves_png(tmp_path):
    write_training_events(tmp_path / "train")
    paths = training_curves(tmp_path / "train", output_dir=tmp_path / "out", title="synthetic demo data", dpi=40)
    assert paths == [str(tmp_path / "out" / "training_curves.png")]
    # panels: loss, dice, hd95, scores -> 2 rows of 3 panels of 4.2 x 3.0 inches
    assert_png(paths[0], (3 * 4.2, 2 * 3.0), dpi=40)


@pytest.mark.parametrize("make", ["missing", "empty", "no_scalars"])
def test_training_curves_bad_folder(tmp_path, make):
    folder = tmp_path / "train"
    if make != "missing":
        folder.mkdir()
    if make == "no_scalars":
        writer = SummaryWriter(str(folder))  # an event file with an image and no scalar
        writer.add_image("validation_image", np.zeros((1, 4, 4)), 1)
        writer.close()
    expected = {"missing": "is not a folder", "empty": "no TensorBoard event files", "no_scalars": "hold no scalars"}
    with pytest.raises(ValueError, match=expected[make]):
        training_curves(folder)


def test_read_volume_reorients_to_ras_and_keeps_world_positions(tmp_path):
    data = np.zeros((6, 5, 4), dtype=np.float32)
    data[1, 3, 2] = 7.0
    affine = np.array([[-2.0, 0, 0, 10], [0, -1.0, 0, 20], [0, 0, 1.5, -5], [0, 0, 0, 1]])  # LPS-like axes
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "image.nii.gz")
    volume, ras_affine = read_volume(tmp_path / "image.nii.gz")
    assert np.all(np.diag(ras_affine)[:3] > 0)  # voxel axes now point to R, A, S
    np.testing.assert_allclose(voxel_spacing(ras_affine), [2.0, 1.0, 1.5])
    bright = np.argwhere(volume == 7.0)[0]
    np.testing.assert_allclose((ras_affine @ [*bright, 1])[:3], (affine @ [1, 3, 2, 1])[:3])
    assert plane_slice(volume, "axial", bright).shape == (6, 5)
    assert plane_slice(volume, "coronal", bright)[bright[0], bright[2]] == 7.0
    assert plane_slice(volume, "sagittal", [99, 0, 0]).shape == (5, 4)  # the fixed index is clipped


def test_read_volume_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot read image"):
        read_volume(tmp_path / "missing.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), tmp_path / "four.nii.gz")
    with pytest.raises(ValueError, match="expected a 3D volume"):
        read_volume(tmp_path / "four.nii.gz")
    with pytest.raises(ValueError, match="has 2 channels, channel 2 requested"):
        read_volume(tmp_path / "four.nii.gz", channel=2)
    assert read_volume(tmp_path / "four.nii.gz", channel=1)[0].shape == (3, 3, 3)


def test_command_line_writes_and_prints_the_png(tmp_path):
    write_training_events(tmp_path)
    result = run_module("nnmamba_nets", "pictures", "curves", str(tmp_path), "--dpi", "30", timeout=300)
    assert result.stdout.split() == [str(tmp_path / "training_curves.png")]
    assert_png(tmp_path / "training_curves.png", (3 * 4.2, 2 * 3.0), dpi=30)


def test_command_line_errors(tmp_path, capsys):
    assert main(["curves", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "pictures curves: error: no TensorBoard event files" in error and str(tmp_path) in error
    with pytest.raises(SystemExit) as usage:
        main(["segmentation", str(tmp_path)])  # --datalist is required
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as unknown:
        main(["histogram", str(tmp_path)])
    assert unknown.value.code == 2


def test_import_nnmamba_nets_does_not_import_matplotlib():
    code = "import sys, nnmamba_nets, nnmamba_nets.__main__; print(sorted({'matplotlib', 'monai'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert done.stdout.strip() == "[]"
