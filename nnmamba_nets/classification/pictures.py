"""Classification pictures: the ROC curve and the confusion matrix of an evaluation's ``predictions.csv``.

``python -m nnmamba_nets pictures classification eval/test`` reads ``predictions.csv`` (``image``,
``label``, ``prob_<class>`` per class, ``predicted``: the columns of
:class:`~nnmamba_nets.classification.handlers.ClassificationReport`) and writes ``roc_curve.png`` and
``confusion_matrix.png``. The AUC, accuracy and matrix come from
:func:`nnmamba_nets.classification.metrics.classification_metrics`, the code behind ``metrics.csv`` and
``confusion_matrix.csv``, so the pictures show the same numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnmamba_nets.classification.metrics import classification_metrics
from nnmamba_nets.common.pictures import figure_title, new_figure, read_table, save_figure

__all__ = ["classification_pictures", "read_predictions", "roc_points"]

PREDICTIONS_FILE = "predictions.csv"
_PROBABILITY_PREFIX = "prob_"


def read_predictions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Class probabilities and true labels of a ``predictions.csv`` with a ``label`` column.

    Args:
        path: the CSV file.

    Returns:
        ((n, num_classes) probabilities, (n,) true class indices, class names from the ``prob_<class>`` columns).

    Raises:
        ValueError: the file cannot be read, lacks the ``label`` column or two ``prob_<class>`` columns, is
            empty, or has a label that is not a class name or a probability that is not a number.
    """
    rows, columns = read_table(path)
    probability_columns = [name for name in columns if name.startswith(_PROBABILITY_PREFIX)]
    if "label" not in columns or len(probability_columns) < 2:
        raise ValueError(
            f"{os.fspath(path)!r} needs the columns 'label' and 'prob_<class>' for every class (at least two), as "
            f"evaluate.yaml writes them; its header has {columns}."
        )
    if not rows:
        raise ValueError(f"{os.fspath(path)!r} has no rows.")
    class_names = [name[len(_PROBABILITY_PREFIX) :] for name in probability_columns]
    probabilities, labels = [], []
    for line, row in enumerate(rows, start=2):
        if row["label"] not in class_names:
            raise ValueError(f"{os.fspath(path)!r} line {line}: label {row['label']!r} is not one of {class_names}.")
        try:
            probabilities.append([float(row[name]) for name in probability_columns])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{os.fspath(path)!r} line {line}: a probability is not a number ({error}).") from error
        labels.append(class_names.index(row["label"]))
    return np.array(probabilities), np.array(labels), class_names


def roc_points(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve of scores for a binary truth: one point per distinct score, from (0, 0) to (1, 1).

    Args:
        scores: (n,) scores, higher = more likely positive.
        positives: (n,) booleans, True for the positive class.

    Returns:
        (false positive rates, true positive rates).

    Raises:
        ValueError: only one class is present.
    """
    positives = np.asarray(positives, dtype=bool)
    if positives.all() or not positives.any():
        raise ValueError("a ROC curve needs positive and negative cases.")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores, sorted_truth = np.asarray(scores)[order], positives[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    true_positives = np.cumsum(sorted_truth)[last_of_each_score]
    false_positives = last_of_each_score + 1 - true_positives
    return (
        np.r_[0.0, false_positives / (~positives).sum()],
        np.r_[0.0, true_positives / positives.sum()],
    )


def classification_pictures(
    folder: str | os.PathLike, output_dir: str | os.PathLike | None = None, title: str | None = None, dpi: float = 100
) -> list[str]:
    """ROC curve and confusion matrix of an evaluation folder's ``predictions.csv``.

    Two classes: the ROC curve of p(``class_names[1]``), the positive class of the metrics. More classes: one
    one-vs-rest curve per class, and the macro AUC of the metrics in the title.

    Args:
        folder: the evaluation output folder (``eval/test``) holding ``predictions.csv``.
        output_dir: where to write ``roc_curve.png`` and ``confusion_matrix.png``. Defaults to None (``folder``).
        title: first line of the figure titles, e.g. the data set. Defaults to None.
        dpi: resolution. Defaults to 100.

    Returns:
        the paths of ``roc_curve.png`` and ``confusion_matrix.png``.

    Raises:
        ValueError: ``predictions.csv`` is missing or unusable (see :func:`read_predictions`), or holds a
            single class (no ROC curve).
    """
    folder = Path(folder).expanduser()
    source = folder / PREDICTIONS_FILE
    if not source.is_file():
        raise ValueError(f"no {PREDICTIONS_FILE} in {str(folder)!r}; expected an evaluation output folder (eval/test).")
    probabilities, labels, class_names = read_predictions(source)
    if len(set(labels.tolist())) < 2:
        raise ValueError(f"{str(source)!r} holds only the class {class_names[labels[0]]!r}: no ROC curve.")
    metrics = classification_metrics(probabilities, labels, class_names)
    target = Path(output_dir or folder)
    return [
        _roc_figure(probabilities, labels, class_names, metrics["auc"], target / "roc_curve.png", title, dpi),
        _confusion_figure(metrics, target / "confusion_matrix.png", title, dpi),
    ]


def _roc_figure(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    auc: float,
    path: Path,
    title: str | None,
    dpi: float,
) -> str:
    figure, axes = new_figure(1, 1, (4.2, 4.2))
    panel = axes[0, 0]
    curves = [1] if len(class_names) == 2 else range(len(class_names))
    for index in curves:
        if not (labels == index).any():
            continue  # an absent class has no one-vs-rest curve
        false_rates, true_rates = roc_points(probabilities[:, index], labels == index)
        rest = class_names[0] if len(class_names) == 2 else "rest"
        panel.plot(false_rates, true_rates, label=f"{class_names[index]} vs {rest}")
    panel.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    panel.set_xlabel("false positive rate (1 - specificity)")
    panel.set_ylabel("true positive rate (sensitivity)")
    panel.set_xlim(-0.01, 1.01)
    panel.set_ylim(-0.01, 1.01)
    panel.set_aspect("equal")
    panel.grid(alpha=0.3)
    panel.legend(loc="lower right", fontsize=8)
    average = "" if len(class_names) == 2 else "macro "
    figure.suptitle(figure_title(f"ROC curve, {average}AUC {auc:.3f} ({len(labels)} images)", title), fontsize=9)
    return save_figure(figure, path, dpi)


def _confusion_figure(metrics: dict, path: Path, title: str | None, dpi: float) -> str:
    matrix = np.array(metrics["confusion_matrix"])
    names = metrics["class_names"]
    figure, axes = new_figure(1, 1, (max(4.2, 1.6 + 1.1 * len(names)), 1.4 + 1.1 * len(names)))  # inches
    panel = axes[0, 0]
    image = panel.imshow(matrix, cmap="Blues", vmin=0)
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        panel.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=11)
    panel.set_xticks(range(len(names)), names)
    panel.set_yticks(range(len(names)), names)
    panel.set_xlabel("predicted class")
    panel.set_ylabel("true class")
    figure.colorbar(image, ax=panel, shrink=0.8, label="images")
    what = f"confusion matrix, accuracy {metrics['accuracy']:.3f}"
    figure.suptitle(figure_title(what, title), fontsize=9)
    return save_figure(figure, path, dpi)
