"""Tests of nnmamba_nets.classification.metrics: the definitions, and that validation handlers give the same."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.metrics import ConfusionMatrixMetric, compute_roc_auc

from nnmamba_nets.classification.metrics import METRIC_NAMES, classification_metric_handlers, classification_metrics


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


@pytest.mark.parametrize("num_classes", [2, 3])
def test_validation_handlers_report_what_the_evaluation_computes(num_classes):
    """The handlers in an ignite engine, over batches, give the numbers of ``classification_metrics``."""
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, 12)
    logits = rng.normal(size=(12, num_classes)) + 2 * np.eye(num_classes)[labels]
    probabilities = torch.softmax(torch.as_tensor(logits), 1).numpy()
    outputs = (  # what the bundle's post-processing gives: (1,) for two classes, (c,) otherwise
        [torch.tensor([p[1]]) for p in probabilities] if num_classes == 2 else [torch.tensor(p) for p in probabilities]
    )
    batches = [
        [{"pred": outputs[i], "label": torch.tensor([labels[i]])} for i in range(start, start + 4)]
        for start in (0, 4, 8)
    ]
    engine = Engine(lambda engine, batch: batch)
    handlers = classification_metric_handlers(num_classes, prefix="val_")
    assert list(handlers) == [f"val_{name}" for name in METRIC_NAMES]
    for name, handler in handlers.items():
        handler.attach(engine, name)
    engine.run(batches)
    expected = classification_metrics(probabilities, labels, [str(i) for i in range(num_classes)])
    for name in METRIC_NAMES:
        assert engine.state.metrics[f"val_{name}"] == pytest.approx(expected[name], nan_ok=True), name
