"""Classification data: a CSV (image, label, subject, split) -> a MONAI datalist with subject-level splits.

The CSV format (header row required; the column names are arguments)::

    image,label,subject_id,split
    images/sub-001_scan-0.nii.gz,AD,sub-001,train
    images/sub-001_scan-1.nii.gz,AD,sub-001,train

``label`` is a class name (``class_names``) or a class index; relative image paths are relative to
the CSV's folder; ``subject_id`` defaults to the image path (one scan per subject) and ``split``
(``train``/``training``, ``val``/``validation``, ``test``) is drawn by subject, stratified by label,
when the column is absent, so that no subject's scans leak between splits. A bundle's ``dataset_dir``
is a folder holding such a CSV as ``dataset.csv`` (the layout of the synthetic demo set,
:mod:`nnmamba_nets.demo.adni`).

Command line::

    python -m nnmamba_nets.classification.datalist prepare /data/adni.csv --output_file /data/adni_datalist.json
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnmamba_nets.common.datalists import SPLITS, write_datalist

__all__ = [
    "CSV_NAME",
    "DEFAULT_CLASS_NAMES",
    "check_subject_disjoint",
    "prepare_datalist",
    "read_classification_csv",
    "split_by_subject",
]

DEFAULT_CLASS_NAMES = ("NC", "AD")
CSV_NAME = "dataset.csv"
"""The CSV a ``dataset_dir`` holds."""
# the spellings accepted in a CSV's split column
_SPLIT_ALIASES = {
    "train": "training",
    "training": "training",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "testing": "test",
}
_logger = logging.getLogger(__name__)


def _parse_label(value: str, class_names: Sequence[str], where: str) -> int:
    """Class index of a CSV label given as a class name or an index."""
    text = value.strip()
    if text in class_names:
        return list(class_names).index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(class_names):
        return int(text)
    raise ValueError(
        f"{where}: unknown label {value!r}; expected one of the class names {list(class_names)} "
        f"or an index 0..{len(class_names) - 1}."
    )


def read_classification_csv(
    csv_file: str,
    class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
    image_column: str = "image",
    label_column: str = "label",
    subject_column: str = "subject_id",
    split_column: str = "split",
) -> list[dict[str, Any]]:
    """Read and check a classification CSV (see the module docstring for the format).

    Args:
        csv_file: the CSV file (header row required).
        class_names: class names; a label is one of them or its index. Defaults to ("NC", "AD").
        image_column: column of image paths (absolute or relative to the CSV's folder).
        label_column: column of labels.
        subject_column: optional column of subject ids; without it every image is its own subject.
        split_column: optional column assigning rows to train/validation/test.

    Returns:
        one dict per row: ``image`` (absolute path), ``label`` (class index), ``subject_id`` (str)
        and ``split`` (a split name of :data:`~nnmamba_nets.common.datalists.SPLITS`, or None without a split
        column).

    Raises:
        ValueError: the file is missing or empty, a required column is missing, a label or split is
            unknown, an image is listed twice, or image files do not exist (all of them are named).
    """
    if len(class_names) < 2 or len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names must be at least two distinct names, got {list(class_names)}.")
    if not os.path.isfile(csv_file):
        raise ValueError(f"CSV file {csv_file!r} does not exist.")
    base_dir = os.path.dirname(os.path.abspath(csv_file))
    with open(csv_file, newline="") as stream:
        reader = csv.DictReader(stream)
        columns = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in (image_column, label_column) if name not in columns]
        if missing:
            raise ValueError(f"CSV file {csv_file!r} lacks the column(s) {missing}; its header has {columns}.")
        reader.fieldnames = columns
        rows = list(reader)
    if not rows:
        raise ValueError(f"CSV file {csv_file!r} has a header but no rows.")

    records: list[dict[str, Any]] = []
    missing_files: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        where = f"{csv_file}, line {line}"
        image = (row.get(image_column) or "").strip()
        if not image:
            raise ValueError(f"{where}: empty {image_column!r}.")
        path = os.path.normpath(os.path.join(base_dir, image))
        if path in seen:
            raise ValueError(f"{where}: image {image!r} is already listed on line {seen[path]}.")
        seen[path] = line
        if not os.path.isfile(path):
            missing_files.append(f"{image} (line {line})")
        split = None
        if split_column in columns:
            split_text = (row.get(split_column) or "").strip().lower()
            if split_text not in _SPLIT_ALIASES:
                raise ValueError(
                    f"{where}: unknown {split_column!r} value {row.get(split_column)!r}; expected one of "
                    f"{sorted(set(_SPLIT_ALIASES))}."
                )
            split = _SPLIT_ALIASES[split_text]
        subject_id = (row.get(subject_column) or "").strip() if subject_column in columns else ""
        records.append(
            {
                "image": path,
                "label": _parse_label(row.get(label_column) or "", class_names, where),
                "subject_id": subject_id or image,
                "split": split,
            }
        )
    if missing_files:
        shown = ", ".join(missing_files[:20]) + (
            f" and {len(missing_files) - 20} more" if len(missing_files) > 20 else ""
        )
        raise ValueError(f"CSV file {csv_file!r} lists {len(missing_files)} image file(s) that do not exist: {shown}.")
    return records


def split_by_subject(
    subject_labels: Sequence[tuple[str, int]], val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, str]:
    """Assign whole subjects to training/validation/test, stratified by label.

    Args:
        subject_labels: one ``(subject_id, label)`` per scan; a subject's stratum is its most
            frequent label (ties: the lower index), so converters stay in one split.
        val_fraction: fraction of each class's subjects in validation (rounded; at least one from
            each class with 3 or more subjects when > 0). Defaults to 0.2.
        test_fraction: fraction of each class's subjects in test, rounded the same way. Defaults to 0.2.
        seed: seed of the shuffle. Defaults to 0.

    Returns:
        mapping subject_id -> split name ("training", "validation" or "test").

    Raises:
        ValueError: bad fractions, or a requested split would get no subject.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            "val_fraction and test_fraction must be in [0, 1) with a sum below 1, "
            f"got {val_fraction} and {test_fraction}."
        )
    label_counts: dict[str, Counter] = defaultdict(Counter)
    for subject_id, label in subject_labels:
        label_counts[subject_id][int(label)] += 1
    strata: dict[int, list[str]] = defaultdict(list)
    for subject_id in sorted(label_counts):
        counts = label_counts[subject_id]
        strata[max(sorted(counts), key=lambda label: counts[label])].append(subject_id)

    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for label in sorted(strata):
        subjects = [strata[label][index] for index in rng.permutation(len(strata[label]))]
        # at least one subject per requested split from every class with 3 or more subjects
        minimum = 1 if len(subjects) >= 3 else 0
        num_test = max(int(round(len(subjects) * test_fraction)), minimum if test_fraction > 0 else 0)
        num_val = max(int(round(len(subjects) * val_fraction)), minimum if val_fraction > 0 else 0)
        for position, subject_id in enumerate(subjects):
            assignment[subject_id] = (
                "test" if position < num_test else "validation" if position < num_test + num_val else "training"
            )
    sizes = Counter(assignment.values())
    wanted = {"training": True, "validation": val_fraction > 0, "test": test_fraction > 0}
    empty = [split for split, needed in wanted.items() if needed and not sizes[split]]
    if empty:
        raise ValueError(
            f"{len(assignment)} subjects are too few for val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}: the split(s) {empty} would be empty."
        )
    return assignment


def check_subject_disjoint(datalist: Mapping[str, Any]) -> None:
    """Raise ValueError naming the subjects whose scans appear in more than one split of ``datalist``."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for split in SPLITS:
        for item in datalist.get(split, []):
            splits_of[str(item["subject_id"])].add(split)
    leaking = {subject: sorted(splits) for subject, splits in splits_of.items() if len(splits) > 1}
    if leaking:
        shown = dict(list(sorted(leaking.items()))[:10])
        raise ValueError(f"{len(leaking)} subject(s) have scans in more than one split (subject leakage): {shown}.")


def prepare_datalist(
    dataset_dir: str | os.PathLike,
    output_file: str | os.PathLike,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
    image_column: str = "image",
    label_column: str = "label",
    subject_column: str = "subject_id",
    split_column: str = "split",
) -> str:
    """Write the datalist JSON of a classification CSV, with subject-level splits.

    A ``split`` column is used as given (and checked for subject leakage); without one, whole
    subjects are drawn into the splits by :func:`split_by_subject`.

    Args:
        dataset_dir: a folder holding ``dataset.csv``, or the CSV file itself (see :func:`read_classification_csv`).
        output_file: the JSON file to write (paths relative to its folder; ``class_names`` recorded).
        val_fraction: validation fraction of subjects when the CSV has no split column. Defaults to 0.2.
        test_fraction: test fraction of subjects when the CSV has no split column. Defaults to 0.2.
        seed: seed of the drawn split. Defaults to 0.
        class_names: class names. Defaults to ("NC", "AD").
        image_column: column of image paths.
        label_column: column of labels.
        subject_column: column of subject ids (optional in the CSV).
        split_column: column of splits (optional in the CSV).

    Returns:
        the absolute path of ``output_file``; its items are ``{"image", "label": class index, "subject_id"}``.

    Raises:
        ValueError: for any problem of :func:`read_classification_csv`, a subject found in more than
            one split of the CSV's split column, or a split without images.
    """
    csv_file = Path(dataset_dir) / CSV_NAME if Path(dataset_dir).is_dir() else Path(dataset_dir)
    records = read_classification_csv(
        str(csv_file),
        class_names,
        image_column=image_column,
        label_column=label_column,
        subject_column=subject_column,
        split_column=split_column,
    )
    if records[0]["split"] is None:
        assignment = split_by_subject(
            [(record["subject_id"], record["label"]) for record in records], val_fraction, test_fraction, seed
        )
        for record in records:
            record["split"] = assignment[record["subject_id"]]
    splits: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for record in records:
        splits[record["split"]].append({key: record[key] for key in ("image", "label", "subject_id")})
    check_subject_disjoint(splits)
    if not splits["training"]:
        raise ValueError(f"CSV file {str(csv_file)!r} gives no training images.")
    for split, items in splits.items():
        counts = Counter(class_names[item["label"]] for item in items)
        _logger.info(
            "%s: %d images of %d subjects %s", split, len(items), len({i["subject_id"] for i in items}), dict(counts)
        )
    return write_datalist(output_file, {"class_names": list(class_names), **splits}, path_keys=("image",))


if __name__ == "__main__":
    import fire

    fire.Fire({"prepare": prepare_datalist})
