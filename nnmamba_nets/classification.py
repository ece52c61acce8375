"""Image classification parts the bundles need and MONAI does not provide.

* :class:`ClassificationLoss`: one loss for binary (a single logit, BCE) and multi-class (N logits,
  CE) networks, with optional class weights, taking class-index labels either way.
* :func:`balanced_class_weights` and :func:`classification_postprocessing` (MONAI transforms that
  turn logits into probabilities and discrete predictions for MONAI's ROCAUC/ConfusionMatrix).
* :func:`classification_metrics`: AUC, accuracy, F1, sensitivity, specificity, balanced accuracy
  and the confusion matrix of class probabilities.
* :class:`ClassificationReport`: an ignite handler that writes per-image class probabilities and
  predicted labels to CSV, images that failed to load (see
  :class:`nnmamba_nets.common.datasets.ErrorTolerantDataset`) as rows naming the error, and, when
  labels are known, the metrics and confusion matrix to JSON and CSV.
* :func:`list_images`: the images of a folder, a datalist JSON or a CSV, for inference.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.metrics import compute_roc_auc
from monai.transforms import Activationsd, AsDiscreted, Compose, CopyItemsd

__all__ = [
    "NIFTI_SUFFIXES",
    "ClassificationLoss",
    "balanced_class_weights",
    "classification_postprocessing",
    "class_probabilities",
    "classification_metrics",
    "ClassificationReport",
    "list_images",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_logger = logging.getLogger(__name__)


def _check_num_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")


def _label_indices(label: torch.Tensor) -> torch.Tensor:
    """Class indices (b,) of labels given as indices (b,) or (b, 1), or one-hot (b, c) with c > 1."""
    if label.ndim == 2 and label.shape[1] > 1:
        return label.argmax(dim=1)
    return label.reshape(label.shape[0]).round().long()


class ClassificationLoss(nn.Module):
    """Cross-entropy for binary and multi-class classification with class-index labels.

    With ``num_classes == 2`` the network has a single logit (the positive class, index 1) and the
    loss is binary cross-entropy; otherwise it has ``num_classes`` logits and the loss is softmax
    cross-entropy. Class weights follow ``torch.nn.CrossEntropyLoss``: each sample is weighted by
    its class's weight and the mean is taken over the weights, for both cases.

    Args:
        num_classes: number of classes (>= 2).
        class_weights: optional weight per class (length ``num_classes``), e.g. from
            :func:`balanced_class_weights`. Defaults to None (unweighted).
    """

    def __init__(self, num_classes: int = 2, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        _check_num_classes(num_classes)
        self.num_classes = num_classes
        if class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
            if weights.numel() != num_classes or bool((weights <= 0).any()):
                raise ValueError(
                    f"class_weights must hold {num_classes} positive numbers, got {list(map(float, weights))}."
                )
            self.register_buffer("class_weights", weights)
        else:
            self.class_weights = None

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Loss of a batch.

        Args:
            logits: (batch, 1) for binary, (batch, num_classes) otherwise.
            label: class indices (batch,) or (batch, 1).

        Returns:
            scalar loss.
        """
        out_channels = 1 if self.num_classes == 2 else self.num_classes
        if logits.ndim != 2 or logits.shape[1] != out_channels:
            raise ValueError(
                f"expected logits of shape (batch, {out_channels}) for {self.num_classes} classes, "
                f"got {tuple(logits.shape)}."
            )
        target = _label_indices(torch.as_tensor(label, device=logits.device))
        if self.num_classes > 2:
            return F.cross_entropy(logits, target, weight=self.class_weights)
        losses = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype), reduction="none")
        if self.class_weights is None:
            return losses.mean()
        sample_weights = self.class_weights[target]
        return (losses * sample_weights).sum() / sample_weights.sum()


def balanced_class_weights(items: Sequence[dict], num_classes: int, label_key: str = "label") -> list[float]:
    """Class weights inversely proportional to class frequency (``n / (num_classes * n_c)``).

    Args:
        items: datalist items (e.g. the training split), each with an integer ``label_key``.
        num_classes: number of classes.
        label_key: key of the class index. Defaults to "label".

    Returns:
        one weight per class; they average to 1 over the samples.

    Raises:
        ValueError: a class has no sample, or a label is out of range.
    """
    _check_num_classes(num_classes)
    counts = Counter(int(item[label_key]) for item in items)
    unknown = sorted(set(counts) - set(range(num_classes)))
    if unknown:
        raise ValueError(f"labels {unknown} are outside 0..{num_classes - 1}.")
    empty = [index for index in range(num_classes) if not counts[index]]
    if empty:
        raise ValueError(f"class(es) {empty} have no samples; cannot weight them.")
    total = sum(counts.values())
    return [total / (num_classes * counts[index]) for index in range(num_classes)]


def classification_postprocessing(
    num_classes: int, pred_key: str = "pred", label_key: str = "label", discrete_key: str = "pred_label"
) -> Compose:
    """MONAI transforms from logits to what MONAI's ``ROCAUC`` and ``ConfusionMatrix`` handlers take.

    ``pred_key`` becomes probabilities (sigmoid of the single logit for 2 classes, softmax over
    ``num_classes`` logits otherwise); ``discrete_key`` gets the predicted class (thresholded at 0.5,
    or one-hot of the argmax); for more than 2 classes the label becomes one-hot too.

    Args:
        num_classes: number of classes.
        pred_key: key of the network output. Defaults to "pred".
        label_key: key of the (1,) class-index label. Defaults to "label".
        discrete_key: new key of the discrete prediction. Defaults to "pred_label".

    Returns:
        a Compose of MONAI dictionary transforms, applied per (decollated) item.
    """
    _check_num_classes(num_classes)
    binary = num_classes == 2
    transforms = [
        Activationsd(keys=pred_key, sigmoid=binary, softmax=not binary),
        CopyItemsd(keys=pred_key, names=discrete_key),
    ]
    if binary:
        transforms.append(AsDiscreted(keys=discrete_key, threshold=0.5))
    else:
        transforms.append(
            AsDiscreted(keys=[discrete_key, label_key], argmax=[True, False], to_onehot=[num_classes, num_classes])
        )
    return Compose(transforms)


def class_probabilities(pred: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-class probabilities of one item: (1,) -> [1 - p, p] (binary), (c,) -> as is."""
    values = np.asarray(torch.as_tensor(pred).detach().cpu().float(), dtype=np.float64).reshape(-1)
    return np.array([1.0 - values[0], values[0]]) if values.size == 1 else values


def classification_metrics(
    probabilities: np.ndarray, labels: Sequence[int], class_names: Sequence[str]
) -> dict[str, Any]:
    """Classification metrics of class probabilities.

    For 2 classes the positive class is index 1 (``class_names[1]``) and the prediction is
    ``p_1 >= 0.5``; sensitivity, specificity and F1 refer to the positive class. For more classes
    the prediction is the argmax and sensitivity, specificity, F1 and AUC are macro averages of the
    one-vs-rest values. Balanced accuracy is the mean per-class recall in both cases.

    Args:
        probabilities: (n, num_classes) class probabilities.
        labels: n true class indices.
        class_names: the class names (their number sets num_classes).

    Returns:
        dict with ``num_images``, ``auc`` (NaN when a class is absent), ``accuracy``, ``f1``,
        ``sensitivity``, ``specificity``, ``balanced_accuracy``, ``class_names`` and
        ``confusion_matrix`` (rows: true class, columns: predicted class).
    """
    num_classes = len(class_names)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1, num_classes)
    labels_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels_arr) != len(probabilities) or len(labels_arr) == 0:
        raise ValueError(
            f"need as many labels as probability rows (> 0), got {len(labels_arr)} and {len(probabilities)}."
        )
    if labels_arr.min() < 0 or labels_arr.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {sorted(set(labels_arr.tolist()))}.")
    binary = num_classes == 2
    predicted = (probabilities[:, 1] >= 0.5).astype(np.int64) if binary else probabilities.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels_arr, predicted), 1)

    true_positive = np.diag(confusion).astype(np.float64)
    actual = confusion.sum(axis=1).astype(np.float64)
    called = confusion.sum(axis=0).astype(np.float64)
    total = float(confusion.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = true_positive / actual
        specificity = (total - actual - called + true_positive) / (total - actual)
        f1 = 2 * true_positive / (actual + called)
    if binary:
        auc = (
            compute_roc_auc(torch.as_tensor(probabilities[:, 1]), torch.as_tensor(labels_arr))
            if len(set(labels_arr)) > 1
            else float("nan")
        )
        sensitivity, specificity_value, f1_value = recall[1], specificity[1], f1[1]
    else:
        one_hot = torch.as_tensor(np.eye(num_classes)[labels_arr])
        auc = compute_roc_auc(torch.as_tensor(probabilities), one_hot, average="macro")
        sensitivity, specificity_value, f1_value = np.nanmean(recall), np.nanmean(specificity), np.nanmean(f1)
    return {
        "num_images": int(total),
        "auc": float(auc),
        "accuracy": float(true_positive.sum() / total),
        "f1": float(f1_value),
        "sensitivity": float(sensitivity),
        "specificity": float(specificity_value),
        "balanced_accuracy": float(np.nanmean(recall)),
        "class_names": list(class_names),
        "confusion_matrix": confusion.tolist(),
    }


def _batch_names(batch: Sequence[dict], name_key: str, image_key: str) -> list[str]:
    """Image names of a decollated batch: the ``name_key`` strings, else the image's meta filename."""
    names = []
    for position, item in enumerate(batch):
        name = item.get(name_key)
        if name is None:
            meta = getattr(item.get(image_key), "meta", {})
            name = meta.get("filename_or_obj", f"item {position}")
        names.append(str(name))
    return names


class ClassificationReport:
    """Ignite handler: per-image probabilities and predicted labels to CSV; metrics when labels exist.

    Attach it to a MONAI evaluator with ``decollate=True`` (the default) and postprocessing that
    turns ``pred`` into probabilities (:func:`classification_postprocessing`). Each run writes
    ``predictions_file`` with the columns ``image``, [``label``,] ``prob_<class>`` per class,
    ``predicted`` (class name) and ``error``. An item whose batch entry carries a non-empty
    ``error_key`` string (see :class:`nnmamba_nets.common.datasets.ErrorTolerantDataset`) is written
    with empty probabilities and its error message, logged, and left out of the metrics. With
    ``label_key`` set, ``metrics.json``, ``metrics.csv`` and ``confusion_matrix.csv`` follow
    (:func:`classification_metrics`), and the metrics go to ``engine.state.metrics`` too. Under
    torch.distributed the rows of all ranks are gathered and rank 0 writes.

    Args:
        output_dir: folder of the files (created).
        class_names: class names, in class-index order.
        label_key: batch key of the true class index, or None for unlabelled inference.
            Defaults to "label".
        pred_key: output key of the probabilities. Defaults to "pred".
        name_key: batch key of an image name string; without it the image's meta filename is used.
            Defaults to "name".
        image_key: batch key of the image. Defaults to "image".
        error_key: batch key of the load-error message. Defaults to "error".
        predictions_file: file name of the per-image CSV. Defaults to "predictions.csv".
        metrics_prefix: prefix of the metric names put in ``engine.state.metrics``. Defaults to "".
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        label_key: str | None = "label",
        pred_key: str = "pred",
        name_key: str = "name",
        image_key: str = "image",
        error_key: str = "error",
        predictions_file: str = "predictions.csv",
        metrics_prefix: str = "",
    ) -> None:
        if len(class_names) < 2:
            raise ValueError(f"class_names must name at least two classes, got {list(class_names)}.")
        self.output_dir = output_dir
        self.class_names = [str(name) for name in class_names]
        self.label_key = label_key
        self.pred_key = pred_key
        self.name_key = name_key
        self.image_key = image_key
        self.error_key = error_key
        self.predictions_file = predictions_file
        self.metrics_prefix = metrics_prefix
        self._rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Register the handler's events on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self._rows = []

    def _collect(self, engine: Engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        if not isinstance(batch, list) or not isinstance(output, list):
            raise ValueError("ClassificationReport needs decollated batches: create the evaluator with decollate=True.")
        for name, item, result in zip(_batch_names(batch, self.name_key, self.image_key), batch, output):
            error = str(item.get(self.error_key) or "")
            row: dict[str, Any] = {"image": name, "error": error, "probabilities": None, "label": None}
            if not error:
                probabilities = class_probabilities(result[self.pred_key])
                if probabilities.size != len(self.class_names):
                    raise ValueError(
                        f"{name}: {probabilities.size} class probabilities for {len(self.class_names)} class names "
                        f"{self.class_names}; check out_channels and class_names."
                    )
                row["probabilities"] = probabilities.tolist()
            if self.label_key is not None:
                row["label"] = int(_label_indices(torch.as_tensor(item[self.label_key]).reshape(1, -1))[0])
            self._rows.append(row)

    def _write(self, engine: Engine) -> None:
        rows = [row for rank_rows in idist.all_gather(self._rows) for row in rank_rows]
        scored = [row for row in rows if row["probabilities"] is not None]
        failed = [row for row in rows if row["probabilities"] is None]
        metrics = None
        if self.label_key is not None and scored:
            metrics = classification_metrics(
                np.array([row["probabilities"] for row in scored]), [row["label"] for row in scored], self.class_names
            )
            metrics["num_failed"] = len(failed)
            for name in ("auc", "accuracy", "f1", "sensitivity", "specificity", "balanced_accuracy"):
                engine.state.metrics[f"{self.metrics_prefix}{name}"] = metrics[name]
        for row in failed:
            _logger.error("could not classify %s: %s", row["image"], row["error"])
        if idist.get_rank() != 0:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        self._write_predictions(rows)
        _logger.info(
            "classified %d of %d images (%d failed) -> %s",
            len(scored),
            len(rows),
            len(failed),
            os.path.join(self.output_dir, self.predictions_file),
        )
        if metrics is not None:
            self._write_metrics(metrics)

    def _write_predictions(self, rows: list[dict[str, Any]]) -> None:
        header = ["image"] + (["label"] if self.label_key is not None else [])
        header += [f"prob_{name}" for name in self.class_names] + ["predicted", "error"]
        with open(os.path.join(self.output_dir, self.predictions_file), "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(header)
            for row in rows:
                line = [row["image"]] + ([self.class_names[row["label"]]] if self.label_key is not None else [])
                if row["probabilities"] is None:
                    line += [""] * len(self.class_names) + ["", row["error"]]
                else:
                    line += [f"{p:.6f}" for p in row["probabilities"]] + [self._predicted(row["probabilities"]), ""]
                writer.writerow(line)

    def _predicted(self, probabilities: Sequence[float]) -> str:
        """Predicted class name, with the same rule as :func:`classification_metrics`."""
        if len(self.class_names) == 2:
            return self.class_names[int(probabilities[1] >= 0.5)]
        return self.class_names[int(np.argmax(probabilities))]

    def _write_metrics(self, metrics: dict[str, Any]) -> None:
        with open(os.path.join(self.output_dir, "metrics.json"), "w") as stream:
            json.dump(metrics, stream, indent=2)
        with open(os.path.join(self.output_dir, "metrics.csv"), "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["metric", "value"])
            for name, value in metrics.items():
                if not isinstance(value, list):
                    writer.writerow([name, value])
        with open(os.path.join(self.output_dir, "confusion_matrix.csv"), "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["true \\ predicted"] + self.class_names)
            for name, counts in zip(self.class_names, metrics["confusion_matrix"]):
                writer.writerow([name] + counts)
        summary = ", ".join(
            f"{name} {metrics[name]:.4f}"
            for name in ("auc", "accuracy", "f1", "sensitivity", "specificity", "balanced_accuracy")
        )
        _logger.info(
            "%d images: %s -> %s", metrics["num_images"], summary, os.path.join(self.output_dir, "metrics.json")
        )


def list_images(source: str, split: str | None = None, image_column: str = "image") -> list[dict[str, str]]:
    """Images to classify, from a folder, a datalist JSON or a CSV.

    Args:
        source: a folder (its ``*.nii``/``*.nii.gz`` files, sorted), a ``.json`` datalist (a list of
            items with ``image``, or a dict of such lists), or a ``.csv`` with an ``image_column``
            (relative paths are relative to the file's folder).
        split: for a JSON dict, the key to take; for a CSV with a ``split`` column, the rows to take.
            None or ``""`` (the bundle CLI cannot pass None) take everything. Defaults to None.
        image_column: CSV column of the image paths. Defaults to "image".

    Returns:
        items ``{"image": path, "name": path}``, in order.

    Raises:
        ValueError: the source does not exist, has no images, or lacks the split or column.
    """
    split = split or None
    if os.path.isdir(source):
        paths = sorted(
            p for p in glob.glob(os.path.join(source, "*")) if p.endswith(NIFTI_SUFFIXES) and os.path.isfile(p)
        )
    elif source.endswith(".json") and os.path.isfile(source):
        paths = _datalist_images(source, split)
    elif source.endswith(".csv") and os.path.isfile(source):
        paths = _csv_images(source, split, image_column)
    else:
        raise ValueError(f"inference input {source!r} is neither a folder nor an existing .json datalist or .csv file.")
    if not paths:
        raise ValueError(f"inference input {source!r} holds no images" + (f" for split {split!r}." if split else "."))
    return [{"image": path, "name": path} for path in paths]


def _datalist_images(json_file: str, split: str | None) -> list[str]:
    with open(json_file) as stream:
        content = json.load(stream)
    if isinstance(content, dict):
        if split is not None and split not in content:
            raise ValueError(f"datalist {json_file!r} has no key {split!r}; it has {sorted(content)}.")
        items = content[split] if split is not None else [item for key in sorted(content) for item in content[key]]
    else:
        items = content
    base_dir = os.path.dirname(os.path.abspath(json_file))
    return [os.path.join(base_dir, item["image"] if isinstance(item, dict) else item) for item in items]


def _csv_images(csv_file: str, split: str | None, image_column: str) -> list[str]:
    with open(csv_file, newline="") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        if image_column not in columns:
            raise ValueError(f"CSV file {csv_file!r} lacks the column {image_column!r}; its header has {columns}.")
        if split is not None and "split" not in columns:
            raise ValueError(f"CSV file {csv_file!r} has no 'split' column to select {split!r} from.")
        rows = [row for row in reader if split is None or row["split"].strip() == split]
    base_dir = os.path.dirname(os.path.abspath(csv_file))
    return [os.path.join(base_dir, row[image_column].strip()) for row in rows]
