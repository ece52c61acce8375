"""The classification report: per-image class probabilities and predicted labels, and the confusion matrix.

Ours because MONAI's ``ClassificationSaver`` writes no header (no class names) and no predicted class, and
appends to its file instead of writing it whole; the metrics themselves go to ``engine.state.metrics``
through :func:`nnmamba_nets.classification.metrics.classification_metric_handlers` and to
``metrics.csv`` through MONAI's ``MetricsSaver``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events

from nnmamba_nets.classification.metrics import classification_metrics, predicted_classes
from nnmamba_nets.classification.transforms import class_probabilities, label_indices
from nnmamba_nets.common.files import write_text_atomic

__all__ = ["ClassificationReport"]

_logger = logging.getLogger(__name__)


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


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\n").writerows(rows)
    return stream.getvalue()


class ClassificationReport:
    """Ignite handler: per-image probabilities and predicted labels to CSV, the confusion matrix when labels exist.

    Attach it to a MONAI evaluator with ``decollate=True`` (the default) and postprocessing that
    turns ``pred`` into probabilities (:func:`~nnmamba_nets.classification.transforms.classification_postprocessing`).
    Each run writes ``predictions_file`` with the columns ``image``, [``label``,] ``prob_<class>`` per
    class and ``predicted`` (class name); inputs that cannot be trusted are rejected before the network
    (:func:`nnmamba_nets.common.inference.partition_inputs`). With ``label_key`` set,
    ``confusion_matrix.csv`` follows (rows: true class, columns: predicted class). Files are written
    whole, then renamed into place. Under torch.distributed the rows of all ranks are gathered and rank
    0 writes.

    Args:
        output_dir: folder of the files (created).
        class_names: class names, in class-index order.
        label_key: batch key of the true class index, or None for unlabelled inference.
            Defaults to "label".
        pred_key: output key of the probabilities. Defaults to "pred".
        name_key: batch key of an image name string; without it the image's meta filename is used.
            Defaults to "name".
        image_key: batch key of the image. Defaults to "image".
        predictions_file: file name of the per-image CSV. Defaults to "predictions.csv".
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        label_key: str | None = "label",
        pred_key: str = "pred",
        name_key: str = "name",
        image_key: str = "image",
        predictions_file: str = "predictions.csv",
    ) -> None:
        if len(class_names) < 2:
            raise ValueError(f"class_names must name at least two classes, got {list(class_names)}.")
        self.output_dir = output_dir
        self.class_names = [str(name) for name in class_names]
        self.label_key = label_key
        self.pred_key = pred_key
        self.name_key = name_key
        self.image_key = image_key
        self.predictions_file = predictions_file
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
            probabilities = class_probabilities(result[self.pred_key])
            if probabilities.size != len(self.class_names):
                raise ValueError(
                    f"{name}: {probabilities.size} class probabilities for {len(self.class_names)} class names "
                    f"{self.class_names}; check out_channels and class_names."
                )
            row: dict[str, Any] = {"image": name, "probabilities": probabilities.tolist(), "label": None}
            if self.label_key is not None:
                row["label"] = int(label_indices(torch.as_tensor(item[self.label_key]).reshape(1, -1))[0])
            self._rows.append(row)

    def _write(self, engine: Engine) -> None:
        rows = [row for rank_rows in idist.all_gather(self._rows) for row in rank_rows]
        if idist.get_rank() != 0:
            return
        predictions = os.path.join(self.output_dir, self.predictions_file)
        write_text_atomic(predictions, _csv_text(self._prediction_rows(rows)))
        _logger.info("classified %d images -> %s", len(rows), predictions)
        if self.label_key is not None and rows:
            probabilities = np.array([row["probabilities"] for row in rows])
            metrics = classification_metrics(probabilities, [row["label"] for row in rows], self.class_names)
            table = [["true \\ predicted", *self.class_names]]
            table += [[name, *counts] for name, counts in zip(self.class_names, metrics["confusion_matrix"])]
            write_text_atomic(os.path.join(self.output_dir, "confusion_matrix.csv"), _csv_text(table))

    def _prediction_rows(self, rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
        header = ["image"] + (["label"] if self.label_key is not None else [])
        lines: list[list[Any]] = [header + [f"prob_{name}" for name in self.class_names] + ["predicted"]]
        for row in rows:
            line = [row["image"]] + ([self.class_names[row["label"]]] if self.label_key is not None else [])
            predicted = int(predicted_classes(np.array([row["probabilities"]]))[0])
            lines.append(line + [f"{p:.6f}" for p in row["probabilities"]] + [self.class_names[predicted]])
        return lines
