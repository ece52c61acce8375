"""Tests of nnmamba_nets.classification: loss, post-processing, metrics, the report handler, image listing."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.metrics import ConfusionMatrixMetric, compute_roc_auc
from monai.transforms import Activationsd, Compose, EnsureChannelFirstd, LoadImaged, Resized

from nnmamba_nets.classification import (
    ClassificationLoss,
    ClassificationReport,
    balanced_class_weights,
    class_probabilities,
    classification_metrics,
    classification_postprocessing,
    list_images,
)
from nnmamba_nets.common.datasets import ErrorTolerantDataset

# ---- loss -------------------------------------------------------------------------------------------


def test_binary_loss_is_bce_on_one_logit():
    logits = torch.tensor([[0.3], [-1.2], [2.0]])
    labels = torch.tensor([[1], [0], [0]])
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(ClassificationLoss(2)(logits, labels), expected)
    torch.testing.assert_close(ClassificationLoss(2)(logits, labels.flatten()), expected)


def test_weighted_binary_loss_matches_cross_entropy_weighting():
    logits = torch.tensor([[0.3], [-1.2], [2.0]])
    labels = torch.tensor([1, 0, 0])
    per_sample = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float(), reduction="none")
    weights = torch.tensor([0.5, 3.0])[labels]
    loss = ClassificationLoss(2, class_weights=[0.5, 3.0])(logits, labels)
    torch.testing.assert_close(loss, (per_sample * weights).sum() / weights.sum())


def test_multiclass_loss_is_weighted_cross_entropy():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 2, 0])
    expected = F.cross_entropy(logits, labels, weight=torch.tensor([1.0, 2.0, 0.5]))
    torch.testing.assert_close(ClassificationLoss(3, [1.0, 2.0, 0.5])(logits, labels[:, None]), expected)


def test_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"logits of shape \(batch, 1\) for 2 classes, got \(4, 2\)"):
        ClassificationLoss(2)(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="class_weights must hold 3 positive"):
        ClassificationLoss(3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        ClassificationLoss(1)


def test_balanced_class_weights():
    items = [{"label": 0}, {"label": 0}, {"label": 0}, {"label": 1}]
    assert balanced_class_weights(items, 2) == pytest.approx([4 / 6, 4 / 2])
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no samples"):
        balanced_class_weights(items, 3)
    with pytest.raises(ValueError, match=r"labels \[5\] are outside"):
        balanced_class_weights([{"label": 5}, *items], 2)


# ---- post-processing and metrics ---------------------------------------------------------------------


def test_postprocessing_binary_and_multiclass():
    binary = classification_postprocessing(2)({"pred": torch.tensor([0.4]), "label": torch.tensor([1])})
    torch.testing.assert_close(binary["pred"], torch.sigmoid(torch.tensor([0.4])))
    assert binary["pred_label"].tolist() == [1.0]
    multi = classification_postprocessing(3)({"pred": torch.tensor([0.1, 2.0, -1.0]), "label": torch.tensor([2])})
    assert multi["pred"].sum().item() == pytest.approx(1.0)
    assert multi["pred_label"].tolist() == [0.0, 1.0, 0.0]
    assert multi["label"].tolist() == [0.0, 0.0, 1.0]


def test_class_probabilities():
    np.testing.assert_allclose(class_probabilities(torch.tensor([0.8])), [0.2, 0.8])
    np.testing.assert_allclose(class_probabilities(torch.tensor([0.1, 0.6, 0.3])), [0.1, 0.6, 0.3])


def test_binary_metrics_by_hand_and_against_monai():
    p_ad = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.7, 0.4])
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    metrics = classification_metrics(np.stack([1 - p_ad, p_ad], 1), labels, ["NC", "AD"])
    # predicted AD: 0.9, 0.8, 0.6, 0.7 -> TP 3, FN 1, FP 1, TN 3
    assert metrics["confusion_matrix"] == [[3, 1], [1, 3]]
    assert metrics["sensitivity"] == pytest.approx(0.75)
    assert metrics["specificity"] == pytest.approx(0.75)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["f1"] == pytest.approx(0.75)
    assert metrics["auc"] == pytest.approx(compute_roc_auc(torch.tensor(p_ad), torch.tensor(labels)))
    assert metrics["auc"] == pytest.approx(14 / 16)  # 14 of 16 (AD, NC) pairs ranked right
    predicted = torch.tensor(p_ad >= 0.5, dtype=torch.float32)[:, None]
    for monai_name, ours in (
        ("sensitivity", "sensitivity"),
        ("specificity", "specificity"),
        ("f1 score", "f1"),
        ("accuracy", "accuracy"),
        ("balanced accuracy", "balanced_accuracy"),
    ):
        monai_metric = ConfusionMatrixMetric(metric_name=monai_name)
        monai_metric(predicted, torch.tensor(labels, dtype=torch.float32)[:, None])
        assert metrics[ours] == pytest.approx(monai_metric.aggregate()[0].item()), ours


def test_multiclass_metrics_are_macro_averages():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]])
    labels = [0, 1, 2, 1, 1]
    metrics = classification_metrics(probabilities, labels, ["NC", "MCI", "AD"])
    assert metrics["confusion_matrix"] == [[1, 0, 0], [1, 1, 1], [0, 0, 1]]
    recall = [1.0, 1 / 3, 1.0]
    assert metrics["balanced_accuracy"] == pytest.approx(np.mean(recall))
    assert metrics["sensitivity"] == pytest.approx(np.mean(recall))
    assert metrics["specificity"] == pytest.approx(np.mean([3 / 4, 2 / 2, 3 / 4]))
    assert metrics["f1"] == pytest.approx(np.mean([2 / 3, 1 / 2, 2 / 3]))
    assert metrics["accuracy"] == pytest.approx(3 / 5)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="as many labels"):
        classification_metrics(np.zeros((2, 2)), [0], ["NC", "AD"])
    with pytest.raises(ValueError, match=r"labels must lie in 0..1"):
        classification_metrics(np.zeros((1, 2)), [3], ["NC", "AD"])


# ---- the report handler in a real MONAI evaluator --------------------------------------------------


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
    dataset = ErrorTolerantDataset(items, transform, placeholders={"image": (1, 4, 4, 4)})
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


def test_report_writes_predictions_errors_and_metrics(tmp_path):
    paths = write_images(tmp_path, [0.2, 0.9, 0.8, 0.1])
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(open(paths[1], "rb").read()[:40])  # truncated gzip
    items = [{"image": p, "name": p, "label": label} for p, label in zip(paths, [0, 1, 0, 0])]
    items.insert(2, {"image": str(broken), "name": str(broken), "label": 1})
    evaluator, rows = run_report(tmp_path, items, label_key="label")

    assert [row["image"] for row in rows] == [item["name"] for item in items]
    failed = rows[2]
    assert failed["prob_AD"] == "" and failed["predicted"] == "" and "Error: " in failed["error"]
    good = [row for row in rows if not row["error"]]
    assert [row["predicted"] for row in good] == ["NC", "AD", "AD", "NC"]
    assert float(good[1]["prob_AD"]) == pytest.approx(float(torch.sigmoid(torch.tensor(4.0))), abs=1e-5)
    assert float(good[1]["prob_NC"]) + float(good[1]["prob_AD"]) == pytest.approx(1.0)

    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["num_images"] == 4 and metrics["num_failed"] == 1
    assert metrics["confusion_matrix"] == [[2, 1], [0, 1]]
    assert metrics["sensitivity"] == 1.0 and metrics["specificity"] == pytest.approx(2 / 3)
    assert evaluator.state.metrics["auc"] == metrics["auc"]
    confusion = (tmp_path / "out" / "confusion_matrix.csv").read_text().splitlines()
    assert confusion == ["true \\ predicted,NC,AD", "NC,2,1", "AD,0,1"]
    assert "balanced_accuracy,0.8333" in (tmp_path / "out" / "metrics.csv").read_text()


def test_report_without_labels_writes_no_metrics(tmp_path):
    paths = write_images(tmp_path, [0.2, 0.9])
    _, rows = run_report(tmp_path, [{"image": p, "name": p} for p in paths], label_key=None)
    assert list(rows[0]) == ["image", "prob_NC", "prob_AD", "predicted", "error"]
    assert [row["predicted"] for row in rows] == ["NC", "AD"]
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_report_rejects_a_class_count_mismatch(tmp_path):
    paths = write_images(tmp_path, [0.2])
    transform = Compose([LoadImaged(keys="image", image_only=True), EnsureChannelFirstd(keys="image")])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(ErrorTolerantDataset([{"image": paths[0]}], transform, {"image": (1, 6, 6, 6)})),
        network=MeanIntensityNet(),
        val_handlers=[ClassificationReport(str(tmp_path), ["NC", "MCI", "AD"], label_key=None)],
    )
    with pytest.raises(ValueError, match=r"2 class probabilities for 3 class names"):
        evaluator.run()


# ---- listing inference inputs ------------------------------------------------------------------------


def test_list_images_from_folder_json_and_csv(tmp_path):
    for name in ("b.nii.gz", "a.nii", "notes.txt"):
        (tmp_path / name).touch()
    assert [i["name"] for i in list_images(str(tmp_path))] == [str(tmp_path / "a.nii"), str(tmp_path / "b.nii.gz")]

    (tmp_path / "list.json").write_text(json.dumps({"training": [{"image": "a.nii"}], "test": [{"image": "b.nii.gz"}]}))
    assert [i["image"] for i in list_images(str(tmp_path / "list.json"), split="test")] == [str(tmp_path / "b.nii.gz")]
    assert len(list_images(str(tmp_path / "list.json"))) == len(list_images(str(tmp_path / "list.json"), "")) == 2

    (tmp_path / "list.csv").write_text("image,label,split\na.nii,NC,training\nb.nii.gz,AD,test\n")
    assert [i["image"] for i in list_images(str(tmp_path / "list.csv"), split="test")] == [str(tmp_path / "b.nii.gz")]


def test_list_images_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a folder nor"):
        list_images(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="holds no images"):
        list_images(str(tmp_path))
    (tmp_path / "list.json").write_text(json.dumps({"training": []}))
    with pytest.raises(ValueError, match=r"has no key 'test'; it has \['training'\]"):
        list_images(str(tmp_path / "list.json"), split="test")
    (tmp_path / "list.csv").write_text("path,label\na.nii,NC\n")
    with pytest.raises(ValueError, match="lacks the column 'image'"):
        list_images(str(tmp_path / "list.csv"))
