"""Tests of nnmamba_nets.demo.adni: the synthetic two-class brain MRI set."""

from __future__ import annotations

import csv
import os
from collections import defaultdict

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.classification.datalist import DEFAULT_CLASS_NAMES, check_subject_disjoint
from nnmamba_nets.common.datalists import SPLITS, read_datalist
from nnmamba_nets.demo.adni import demo_datalist, sample_subject, synthesize_scan, write_demo_set


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


def test_demo_set_has_multi_scan_subjects_kept_in_one_split(tmp_path):
    datalist_file = write_demo_set(tmp_path / "set", num_subjects=10, image_size=16, seed=3)
    with open(tmp_path / "set" / "dataset.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    scans = defaultdict(list)
    for row in rows:
        scans[row["subject_id"]].append(row)
        assert row["label"] in DEFAULT_CLASS_NAMES
        assert os.path.isfile(tmp_path / "set" / row["image"])
    assert len(scans) == 10 and any(len(subject_rows) >= 2 for subject_rows in scans.values())
    assert all(len({row["split"] for row in subject_rows}) == 1 for subject_rows in scans.values())
    assert nib.load(tmp_path / "set" / rows[0]["image"]).shape == (16, 16, 16)
    datalist = read_datalist(datalist_file, path_keys=["image"])
    check_subject_disjoint(datalist)
    assert sum(len(datalist[split]) for split in SPLITS) == len(rows) and datalist["class_names"] == ["NC", "AD"]
    assert all(os.path.isfile(item["image"]) for split in SPLITS for item in datalist[split])


def test_demo_datalist_is_cached_and_settings_never_overwrite(tmp_path, monkeypatch):
    monkeypatch.setenv("NNMAMBA_CACHE", str(tmp_path))
    path = demo_datalist(num_subjects=8, image_size=16, seed=3)
    stamp = os.path.getmtime(path)
    assert demo_datalist(num_subjects=8, image_size=16, seed=3) == path and os.path.getmtime(path) == stamp
    assert demo_datalist(num_subjects=10, image_size=16, seed=3) != path


def test_demo_set_rejects_too_few_subjects(tmp_path):
    with pytest.raises(ValueError, match="num_subjects"):
        write_demo_set(tmp_path / "x", num_subjects=1)
