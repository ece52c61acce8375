"""Tests of nnmamba_nets.classification.handlers.ClassificationReport in a real MONAI evaluator."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.transforms import Activationsd, Compose, EnsureChannelFirstd, LoadImaged, Resized

from nnmamba_nets.classification.handlers import ClassificationReport


class MeanIntensityNet(torch.nn.Module):
    """Logit = 10 * (mean intensity - 0.5): bright images are "AD"."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10 * (x.mean(dim=(1, 2, 3, 4))[:, None] - 0.5)


def write_images(folder, values):
    paths = []
    for index, value in enumerate(values):
        path = folder / f"img{index}.nii.gz"
        nib.save(nib.Nifti1Image(np.full((6, 6, 6), value, np.float32), np.eye(4)), str(path))
        paths.append(str(path))
    return paths


def run_report(tmp_path, items, label_key):
    transform = Compose(
        [
            LoadImaged(keys="image", image_only=True),
            EnsureChannelFirstd(keys="image"),
            Resized(keys="image", spatial_size=(4, 4, 4)),
        ]
    )
    dataset = Dataset(items, transform)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(dataset, batch_size=2, num_workers=0),
        network=MeanIntensityNet(),
        postprocessing=Activationsd(keys="pred", sigmoid=True),
        val_handlers=[ClassificationReport(str(tmp_path / "out"), ["NC", "AD"], label_key=label_key)],
    )
    evaluator.run()
    with open(tmp_path / "out" / "predictions.csv", newline="") as stream:
        return evaluator, list(csv.DictReader(stream))


def test_report_writes_predictions_and_the_confusion_matrix(tmp_path):
    paths = write_images(tmp_path, [0.2, 0.9, 0.8, 0.1, 0.7])
    items = [{"image": p, "name": p, "label": label} for p, label in zip(paths, [0, 1, 0, 0, 1])]
    evaluator, rows = run_report(tmp_path, items, label_key="label")

    assert [row["image"] for row in rows] == [item["name"] for item in items]
    assert list(rows[0]) == ["image", "label", "prob_NC", "prob_AD", "predicted"]
    assert [row["predicted"] for row in rows] == ["NC", "AD", "AD", "NC", "AD"]
    assert float(rows[1]["prob_AD"]) == pytest.approx(float(torch.sigmoid(torch.tensor(4.0))), abs=1e-5)
    assert float(rows[1]["prob_NC"]) + float(rows[1]["prob_AD"]) == pytest.approx(1.0)

    confusion = (tmp_path / "out" / "confusion_matrix.csv").read_text().splitlines()
    assert confusion == ["true \\ predicted,NC,AD", "NC,2,1", "AD,0,2"]
    assert not list((tmp_path / "out").glob(".tmp-*"))  # written whole, then renamed


def test_report_without_labels_writes_no_confusion_matrix(tmp_path):
    paths = write_images(tmp_path, [0.2, 0.9])
    _, rows = run_report(tmp_path, [{"image": p, "name": p} for p in paths], label_key=None)
    assert list(rows[0]) == ["image", "prob_NC", "prob_AD", "predicted"]
    assert [row["predicted"] for row in rows] == ["NC", "AD"]
    assert not (tmp_path / "out" / "confusion_matrix.csv").exists()


def test_report_rejects_a_class_count_mismatch(tmp_path):
    paths = write_images(tmp_path, [0.2])
    transform = Compose([LoadImaged(keys="image", image_only=True), EnsureChannelFirstd(keys="image")])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset([{"image": paths[0]}], transform)),
        network=MeanIntensityNet(),
        val_handlers=[ClassificationReport(str(tmp_path), ["NC", "MCI", "AD"], label_key=None)],
    )
    with pytest.raises(ValueError, match=r"2 class probabilities for 3 class names"):
        evaluator.run()
