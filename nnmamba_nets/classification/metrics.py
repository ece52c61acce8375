"""Classification metrics: AUC, accuracy, F1, sensitivity, specificity, balanced accuracy, confusion matrix.

One definition serves validation (:func:`classification_metric_handlers`, ignite handlers of
:class:`ClassificationMetric`) and evaluation (the same handlers in ``evaluate.yaml``, and
:func:`classification_metrics` for the report's confusion matrix), so both report the same numbers
from the same code. Per-class true/false positives/negatives come from MONAI's
``get_confusion_matrix`` and each score from ``compute_confusion_matrix_metric``; AUC is MONAI's
``compute_roc_auc``. Ours only chooses how the per-class scores are combined, where MONAI's
``ConfusionMatrixMetric`` falls short for more than two classes (its reductions pool the one-vs-rest
counts, so its "accuracy" is not the top-1 accuracy):

- two classes (one logit, the positive class is index 1): the prediction is ``p_1 >= 0.5``;
  sensitivity, specificity and F1 are those of the positive class (the same as MONAI's
  ``ConfusionMatrixMetric`` on the thresholded logit);
- more classes: the prediction is the argmax; sensitivity, specificity, F1 and AUC are macro
  averages of the one-vs-rest values;
- always: accuracy = fraction of correct predictions; balanced accuracy = mean per-class recall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import CumulativeIterationMetric, compute_roc_auc
from monai.metrics.confusion_matrix import compute_confusion_matrix_metric, get_confusion_matrix

from nnmamba_nets.classification.transforms import check_num_classes, class_probabilities, label_indices

__all__ = [
    "METRIC_NAMES",
    "ClassificationMetric",
    "classification_metric_handlers",
    "classification_metrics",
    "predicted_classes",
]

METRIC_NAMES = ("auc", "accuracy", "f1", "sensitivity", "specificity", "balanced_accuracy")
_PER_CLASS = {"sensitivity": "sensitivity", "specificity": "specificity", "f1": "f1 score"}


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """(n,) predicted class indices of (n, num_classes) probabilities: ``p_1 >= 0.5`` for 2 classes, else argmax."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[1] == 2:
        return (probabilities[:, 1] >= 0.5).astype(np.int64)
    return probabilities.argmax(axis=1)


def classification_metrics(
    probabilities: np.ndarray, labels: Sequence[int], class_names: Sequence[str]
) -> dict[str, Any]:
    """The classification metrics of class probabilities (see the module docstring for the definitions).

    Args:
        probabilities: (n, num_classes) class probabilities.
        labels: n true class indices.
        class_names: the class names (their number sets num_classes).

    Returns:
        dict with ``num_images``, the :data:`METRIC_NAMES` (``auc`` is NaN when a class is absent),
        ``class_names`` and ``confusion_matrix`` (rows: true class, columns: predicted class).

    Raises:
        ValueError: no labels, not as many labels as probability rows, or labels out of range.
    """
    num_classes = len(class_names)
    check_num_classes(num_classes)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1, num_classes)
    labels_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels_arr) != len(probabilities) or len(labels_arr) == 0:
        raise ValueError(
            f"need as many labels as probability rows (> 0), got {len(labels_arr)} and {len(probabilities)}."
        )
    if labels_arr.min() < 0 or labels_arr.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {sorted(set(labels_arr.tolist()))}.")
    predicted = predicted_classes(probabilities)
    one_hot = F.one_hot(torch.as_tensor(labels_arr), num_classes).float()  # (n, c)
    counts = get_confusion_matrix(F.one_hot(torch.as_tensor(predicted), num_classes).float(), one_hot).sum(0)  # (c, 4)
    per_class = {name: compute_confusion_matrix_metric(monai, counts).double() for name, monai in _PER_CLASS.items()}
    binary = num_classes == 2
    if binary:
        auc = (
            compute_roc_auc(torch.as_tensor(probabilities[:, 1]), torch.as_tensor(labels_arr))
            if len(set(labels_arr)) > 1
            else float("nan")
        )
        scores = {name: float(values[1]) for name, values in per_class.items()}
    else:
        present = one_hot.sum(0) > 0
        auc = (
            compute_roc_auc(torch.as_tensor(probabilities), one_hot, average="macro")
            if bool(present.all())
            else float("nan")
        )
        scores = {name: float(np.nanmean(values.numpy())) for name, values in per_class.items()}
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels_arr, predicted), 1)
    return {
        "num_images": int(len(labels_arr)),
        "auc": float(auc),
        "accuracy": float(counts[:, 0].sum() / len(labels_arr)),
        **scores,
        "balanced_accuracy": float(np.nanmean(per_class["sensitivity"].numpy())),
        "class_names": list(class_names),
        "confusion_matrix": confusion.tolist(),
    }


class ClassificationMetric(CumulativeIterationMetric):
    """One of :data:`METRIC_NAMES`, collected over iterations (distributed-safe) and computed by
    :func:`classification_metrics` on all items at the end.

    Inputs per iteration: ``y_pred`` class probabilities, (batch, 1) for two classes (the positive
    class) or (batch, num_classes), and ``y`` class indices (batch,) or (batch, 1), as tensors or lists
    of per-item tensors.

    Args:
        metric_name: one of :data:`METRIC_NAMES`.
        num_classes: number of classes (>= 2).
    """

    def __init__(self, metric_name: str, num_classes: int) -> None:
        super().__init__()
        if metric_name not in METRIC_NAMES:
            raise ValueError(f"metric_name must be one of {METRIC_NAMES}, got {metric_name!r}.")
        check_num_classes(num_classes)
        self.metric_name = metric_name
        self.num_classes = num_classes

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """(batch, num_classes + 1): the class probabilities and the label of each item."""
        if y is None:
            raise ValueError("ClassificationMetric needs the labels y.")
        rows = [class_probabilities(p) for p in torch.as_tensor(y_pred).detach().cpu()]
        if any(len(row) != self.num_classes for row in rows):
            raise ValueError(
                f"expected predictions of (batch, {1 if self.num_classes == 2 else self.num_classes}) for "
                f"{self.num_classes} classes, got {tuple(torch.as_tensor(y_pred).shape)}."
            )
        labels = label_indices(torch.as_tensor(y).detach().cpu().reshape(len(rows), -1)).double()
        return torch.cat([torch.as_tensor(np.stack(rows)), labels[:, None]], dim=1)

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """The metric over all collected items, as a 0-dim float64 tensor."""
        rows = self.get_buffer()
        if not isinstance(rows, torch.Tensor) or rows.numel() == 0:
            raise ValueError("ClassificationMetric has no data to aggregate; call it on predictions first.")
        names = [str(index) for index in range(self.num_classes)]
        metrics = classification_metrics(rows[:, :-1].numpy(), rows[:, -1].long().numpy(), names)
        return torch.tensor(metrics[self.metric_name], dtype=torch.float64)


def classification_metric_handlers(
    num_classes: int,
    names: Sequence[str] = METRIC_NAMES,
    prefix: str = "val_",
    output_transform: Callable | None = None,
) -> dict[str, IgniteMetricHandler]:
    """Ignite metric handlers ``<prefix><name>`` of :class:`ClassificationMetric`, for trainers and evaluators.

    Args:
        num_classes: number of classes.
        names: metrics to make, from :data:`METRIC_NAMES`. Defaults to all.
        prefix: metric name prefix. Defaults to ``"val_"``.
        output_transform: overrides ``from_engine(["pred", "label"])`` (probabilities and class indices).

    Returns:
        ordered dict metric name -> handler.
    """
    transform = output_transform or from_engine(["pred", "label"])
    return {
        f"{prefix}{name}": IgniteMetricHandler(
            ClassificationMetric(name, num_classes), output_transform=transform, save_details=False
        )
        for name in names
    }
