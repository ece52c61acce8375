"""Tests of nnmamba_nets.data.adni: the synthetic two-class brain MRI set and the CSV -> datalist preparer."""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.data.adni import (
    DEFAULT_CLASS_NAMES,
    check_subject_disjoint,
    ensure_demo_data,
    prepare_datalist,
    read_classification_csv,
    sample_subject,
    split_by_subject,
    synthesize_scan,
)


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


def subjects_by_split(datalist) -> dict[str, set[str]]:
    return {split: {item["subject_id"] for item in items} for split, items in datalist.items()}


# ---- synthetic anatomy ------------------------------------------------------------------------------


def test_scan_is_deterministic_and_well_formed():
    subject = sample_subject(np.random.default_rng([0, 1]), label=1)
    first, affine = synthesize_scan(subject, np.random.default_rng([0, 1, 0]), spatial_size=24)
    again, _ = synthesize_scan(subject, np.random.default_rng([0, 1, 0]), spatial_size=24)
    follow_up, _ = synthesize_scan(subject, np.random.default_rng([0, 1, 1]), spatial_size=24)
    assert first.shape == (24, 24, 24) and first.dtype == np.float32
    assert np.isfinite(first).all() and first.min() >= 0
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, follow_up)  # new pose, contrast and noise
    np.testing.assert_allclose(np.diag(affine)[:3], [208 / 24] * 3)


def test_ad_subjects_have_more_atrophy_with_overlap():
    normal = [sample_subject(np.random.default_rng([1, i]), 0) for i in range(200)]
    disease = [sample_subject(np.random.default_rng([2, i]), 1) for i in range(200)]
    for field in ("severity", "ventricle_scale", "csf_gap_mm", "sulcal_fraction"):
        assert np.mean([getattr(s, field) for s in disease]) > np.mean([getattr(s, field) for s in normal]), field
    assert np.mean([s.cortex_mm for s in disease]) < np.mean([s.cortex_mm for s in normal])
    # not separable by the latent severity alone
    assert max(s.severity for s in normal) > min(s.severity for s in disease)


def test_ad_scans_have_more_csf_in_the_brain_centre():
    """The anatomy reaches the image: dark (CSF) voxels in the central region, averaged over subjects."""

    def dark_fraction(label: int) -> float:
        fractions = []
        for index in range(6):
            subject = sample_subject(np.random.default_rng([3, label, index]), label)
            image, _ = synthesize_scan(subject, np.random.default_rng([3, label, index, 0]), spatial_size=32)
            centre = image[10:22, 8:24, 12:24]
            fractions.append(np.mean(centre < 0.4 * np.percentile(image, 99)))
        return float(np.mean(fractions))

    assert dark_fraction(1) > dark_fraction(0) + 0.02


def test_sample_subject_rejects_bad_label():
    with pytest.raises(ValueError, match="label must be 0"):
        sample_subject(np.random.default_rng(0), 2)


# ---- demo dataset -----------------------------------------------------------------------------------


def test_demo_data_is_generated_once_with_multi_scan_subjects(tmp_path):
    csv_file = ensure_demo_data(str(tmp_path), num_subjects=10, spatial_size=16, seed=3)
    with open(csv_file, newline="") as stream:
        rows = list(csv.DictReader(stream))
    scans = defaultdict(list)
    for row in rows:
        scans[row["subject_id"]].append(row)
        assert row["label"] in DEFAULT_CLASS_NAMES
        assert os.path.isfile(os.path.join(os.path.dirname(csv_file), row["image"]))
    assert len(scans) == 10 and any(len(subject_rows) >= 2 for subject_rows in scans.values())
    assert all(len({row["split"] for row in subject_rows}) == 1 for subject_rows in scans.values())
    image = nib.load(os.path.join(os.path.dirname(csv_file), rows[0]["image"]))
    assert image.shape == (16, 16, 16)

    stamp = os.path.getmtime(csv_file)
    assert ensure_demo_data(str(tmp_path), num_subjects=10, spatial_size=16, seed=3) == csv_file
    assert os.path.getmtime(csv_file) == stamp  # reused, not regenerated
    other = ensure_demo_data(str(tmp_path), num_subjects=6, spatial_size=16, seed=3)
    assert other != csv_file  # other settings never overwrite


def test_demo_data_rejects_too_few_subjects(tmp_path):
    with pytest.raises(ValueError, match="num_subjects"):
        ensure_demo_data(str(tmp_path), num_subjects=1)


# ---- subject-level splits ---------------------------------------------------------------------------


def test_drawn_split_keeps_subjects_whole_and_is_stratified(multi_scan_csv):
    datalist = prepare_datalist(multi_scan_csv, val_fraction=0.2, test_fraction=0.2, seed=0)
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
    for items in datalist.values():
        for item in items:
            assert os.path.basename(item["image"]).startswith(item["subject_id"])
    assert prepare_datalist(multi_scan_csv, seed=0) == datalist
    assert prepare_datalist(multi_scan_csv, seed=1) != datalist


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
    datalist = prepare_datalist(write_csv(tmp_path / "ok.csv", ["image", "label", "subject_id", "split"], rows))
    assert [len(datalist[k]) for k in ("training", "validation", "test")] == [2, 1, 1]
    assert datalist["test"][0]["label"] == 1

    rows[1][3] = "test"  # subject a now in training and test
    with pytest.raises(ValueError, match=r"subject leakage.*'a'"):
        prepare_datalist(write_csv(tmp_path / "leak.csv", ["image", "label", "subject_id", "split"], rows))


def test_split_by_subject_errors():
    with pytest.raises(ValueError, match="val_fraction and test_fraction"):
        split_by_subject([("a", 0)], val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="too few"):
        split_by_subject([("a", 0), ("b", 1)], val_fraction=0.2, test_fraction=0.2)


def test_datalist_is_written_when_asked(multi_scan_csv, tmp_path):
    output = tmp_path / "out" / "datalist.json"
    datalist = prepare_datalist(multi_scan_csv, output_file=str(output))
    assert json.loads(output.read_text()) == datalist


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
