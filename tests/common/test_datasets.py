"""Tests of nnmamba_nets.common.datasets.ErrorTolerantDataset."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, MetaTensor

from nnmamba_nets.common.datasets import ErrorTolerantDataset, describe_error


def load(item: dict) -> dict:
    """A transform that fails for negative values and returns a MetaTensor of 2 x value otherwise."""
    if item["value"] < 0:
        raise OSError(f"cannot read value {item['value']}")
    size = 3 if item["value"] == 99 else 2
    return {**item, "image": MetaTensor(torch.full((1, size), float(item["value"])))}


ITEMS = [{"value": 1, "name": "one"}, {"value": -1, "name": "broken"}, {"value": 99, "name": "wrong size"}]


def test_failed_items_become_placeholders_with_their_error():
    dataset = ErrorTolerantDataset(ITEMS, load, placeholders={"image": (1, 2)})
    good, broken, wrong = (dataset[i] for i in range(3))
    assert good["error"] == "" and good["name"] == "one"
    assert type(good["image"]) is torch.Tensor and good["image"].tolist() == [[1.0, 1.0]]
    assert broken["error"] == "OSError: cannot read value -1" and broken["name"] == "broken"
    assert broken["image"].tolist() == [[0.0, 0.0]]
    assert "ValueError: 'image' has shape (1, 3)" in wrong["error"]


def test_good_and_failed_items_collate_together():
    loader = DataLoader(ErrorTolerantDataset(ITEMS, load, placeholders={"image": (1, 2)}), batch_size=3, num_workers=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 1, 2)
    assert batch["name"] == ["one", "broken", "wrong size"]
    assert [bool(e) for e in batch["error"]] == [False, True, True]


def test_placeholders_required():
    with pytest.raises(ValueError, match="placeholders must name"):
        ErrorTolerantDataset(ITEMS, load, placeholders={})


def test_describe_error_reports_the_innermost_cause():
    try:
        try:
            raise KeyError("image")
        except KeyError as inner:
            raise RuntimeError("applying transform") from inner
    except RuntimeError as outer:
        assert describe_error(outer) == "KeyError: 'image'"
