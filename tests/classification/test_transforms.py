"""Tests of nnmamba_nets.classification.transforms: logits to probabilities, label formats."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnmamba_nets.classification.transforms import class_probabilities, classification_postprocessing, label_indices


def test_postprocessing_binary_and_multiclass():
    binary = classification_postprocessing(2)({"pred": torch.tensor([0.4]), "label": torch.tensor([1])})
    torch.testing.assert_close(binary["pred"], torch.sigmoid(torch.tensor([0.4])))
    multi = classification_postprocessing(3)({"pred": torch.tensor([0.4, 1.0, -2.0])})
    torch.testing.assert_close(multi["pred"], torch.softmax(torch.tensor([0.4, 1.0, -2.0]), 0))
    assert multi["pred"].sum().item() == pytest.approx(1.0)


def test_class_probabilities():
    np.testing.assert_allclose(class_probabilities(torch.tensor([0.8])), [0.2, 0.8])
    np.testing.assert_allclose(class_probabilities(torch.tensor([0.1, 0.6, 0.3])), [0.1, 0.6, 0.3])


def test_label_indices_of_indices_and_one_hot():
    assert label_indices(torch.tensor([[1], [0]])).tolist() == [1, 0]
    assert label_indices(torch.tensor([[0, 0, 1], [1, 0, 0]])).tolist() == [2, 0]
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        classification_postprocessing(1)
