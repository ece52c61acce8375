"""Tests of nnmamba_nets.classification.datalist: the CSV -> datalist preparer with subject-level splits."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from nnmamba_nets.classification.datalist import (
    DEFAULT_CLASS_NAMES,
    check_subject_disjoint,
    prepare_datalist,
    read_classification_csv,
    split_by_subject,
)
from nnmamba_nets.common.datalists import SPLITS, read_datalist


def write_csv(path, header, rows) -> str:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture
def multi_scan_csv(tmp_path):
    """A CSV of 40 subjects (20 per class), every third with 3 scans; image files exist (empty)."""
    (tmp_path / "images").mkdir()
    rows = []
    for subject in range(40):
        for scan in range(3 if subject % 3 == 0 else 1):
            name = f"images/s{subject:02d}_{scan}.nii.gz"
            (tmp_path / name).touch()
            rows.append([name, DEFAULT_CLASS_NAMES[subject % 2], f"s{subject:02d}"])
    return write_csv(tmp_path / "data.csv", ["image", "label", "subject_id"], rows)


def prepared(source, tmp_path, name="datalist.json", **kwargs) -> dict:
    """The datalist ``prepare_datalist`` writes for ``source``, read back."""
    return read_datalist(prepare_datalist(source, tmp_path / name, **kwargs), path_keys=["image"])


def subjects_by_split(datalist) -> dict[str, set[str]]:
    return {split: {item["subject_id"] for item in datalist[split]} for split in SPLITS}


# ---- subject-level splits ---------------------------------------------------------------------------


def test_drawn_split_keeps_subjects_whole_and_is_stratified(multi_scan_csv, tmp_path):
    datalist = prepared(multi_scan_csv, tmp_path, val_fraction=0.2, test_fraction=0.2, seed=0)
    check_subject_disjoint(datalist)
    by_split = subjects_by_split(datalist)
    assert not (by_split["training"] & by_split["validation"])
    assert not (by_split["training"] & by_split["test"])
    assert not (by_split["validation"] & by_split["test"])
    assert sum(len(s) for s in by_split.values()) == 40
    for split, expected in (("validation", 8), ("test", 8), ("training", 24)):
        labels = [item["label"] for item in datalist[split]]
        assert len(by_split[split]) == expected
        assert {0, 1} <= set(labels)
    # every scan of a multi-scan subject sits in its subject's split
    for split in SPLITS:
        for item in datalist[split]:
            assert os.path.basename(item["image"]).startswith(item["subject_id"])
    assert prepared(multi_scan_csv, tmp_path, "again.json", seed=0) == datalist
    assert prepared(multi_scan_csv, tmp_path, "other.json", seed=1) != datalist


def test_leak_check_catches_an_image_level_split(multi_scan_csv):
    """A split by image (the reference scripts' mistake) leaks; the check must say so."""
    records = read_classification_csv(multi_scan_csv)
    order = np.random.default_rng(0).permutation(len(records))
    datalist = {"training": [], "validation": [], "test": []}
    for position, index in enumerate(order):
        split = ("training", "validation", "test")[position % 3]
        datalist[split].append(records[index])
    with pytest.raises(ValueError, match="subject leakage"):
        check_subject_disjoint(datalist)


def test_given_split_column_is_used_and_checked(tmp_path):
    for name in ("a0", "a1", "b0", "c0"):
        (tmp_path / f"{name}.nii.gz").touch()
    rows = [["a0.nii.gz", "AD", "a", "train"], ["a1.nii.gz", "AD", "a", "train"], ["b0.nii.gz", "NC", "b", "val"]]
    rows.append(["c0.nii.gz", "1", "c", "test"])
    datalist = prepared(write_csv(tmp_path / "ok.csv", ["image", "label", "subject_id", "split"], rows), tmp_path)
    assert [len(datalist[k]) for k in ("training", "validation", "test")] == [2, 1, 1]
    assert datalist["test"][0]["label"] == 1

    rows[1][3] = "test"  # subject a now in training and test
    with pytest.raises(ValueError, match=r"subject leakage.*'a'"):
        prepare_datalist(
            write_csv(tmp_path / "leak.csv", ["image", "label", "subject_id", "split"], rows), tmp_path / "x.json"
        )


def test_split_by_subject_errors():
    with pytest.raises(ValueError, match="val_fraction and test_fraction"):
        split_by_subject([("a", 0)], val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="too few"):
        split_by_subject([("a", 0), ("b", 1)], val_fraction=0.2, test_fraction=0.2)


def test_datalist_records_relative_paths_and_class_names_and_a_folder_works(multi_scan_csv, tmp_path):
    content = json.loads(open(prepare_datalist(multi_scan_csv, tmp_path / "out" / "datalist.json")).read())
    assert content["class_names"] == list(DEFAULT_CLASS_NAMES)
    assert content["training"][0]["image"].startswith("../images/")
    os.rename(multi_scan_csv, tmp_path / "dataset.csv")  # a dataset_dir holds dataset.csv
    assert prepared(tmp_path, tmp_path, "from_folder.json") == prepared(tmp_path / "dataset.csv", tmp_path)


# ---- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, rows, message",
    [
        (
            ["path", "label"],
            [["x.nii.gz", "AD"]],
            r"lacks the column\(s\) \['image'\]; its header has \['path', 'label'\]",
        ),
        (["image", "diagnosis"], [["x.nii.gz", "AD"]], r"lacks the column\(s\) \['label'\]"),
        (
            ["image", "label"],
            [["x.nii.gz", "MCI"]],
            r"line 2: unknown label 'MCI'; expected one of the class names \['NC', 'AD'\]",
        ),
        (["image", "label"], [["x.nii.gz", "2"]], "unknown label '2'"),
        (
            ["image", "label"],
            [["x.nii.gz", "AD"], ["missing.nii.gz", "NC"]],
            r"1 image file\(s\) that do not exist: missing.nii.gz \(line 3\)",
        ),
        (["image", "label"], [["x.nii.gz", "AD"], ["x.nii.gz", "NC"]], "already listed on line 2"),
        (["image", "label", "split"], [["x.nii.gz", "AD", "holdout"]], "unknown 'split' value 'holdout'"),
        (["image", "label"], [], "has a header but no rows"),
    ],
)
def test_bad_csv_is_reported_clearly(tmp_path, header, rows, message):
    (tmp_path / "x.nii.gz").touch()
    csv_file = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(ValueError, match=message):
        read_classification_csv(csv_file)


def test_missing_csv_and_bad_class_names(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_classification_csv(str(tmp_path / "nope.csv"))
    with pytest.raises(ValueError, match="at least two distinct"):
        read_classification_csv(str(tmp_path / "nope.csv"), class_names=["AD"])
