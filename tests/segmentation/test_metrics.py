"""Tests of nnmamba_nets.segmentation.metrics: the BraTS HD95 rule and per-region metric handlers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnmamba_nets.segmentation.metrics import BratsHausdorffDistanceMetric, region_output_transform


def test_hausdorff_follows_the_brats_empty_mask_rule():
    reference = torch.zeros(1, 1, 10, 10, 10)
    reference[0, 0, 2:5, 2:5, 2:5] = 1
    empty = torch.zeros_like(reference)
    shifted = torch.roll(reference, shifts=2, dims=2)
    metric = BratsHausdorffDistanceMetric()
    diagonal = float(np.sqrt(300.0))
    assert metric(empty, reference).item() == pytest.approx(diagonal)
    assert metric(reference, empty).item() == pytest.approx(diagonal)
    assert metric(empty, empty).item() == 0.0
    assert metric(reference, reference).item() == 0.0
    assert metric(shifted, reference).item() == pytest.approx(2.0)
    assert metric.aggregate().item() == pytest.approx((2 * diagonal + 2.0) / 5)


def test_region_output_transform_selects_one_channel():
    output = [{"pred": torch.arange(3.0).reshape(3, 1), "label": torch.arange(3.0, 6.0).reshape(3, 1)}] * 2
    preds, labels = region_output_transform(1)(output)
    assert [p.tolist() for p in preds] == [[[1.0]]] * 2 and [y.tolist() for y in labels] == [[[4.0]]] * 2
    with pytest.raises(ValueError, match="channel"):
        region_output_transform(-1)
