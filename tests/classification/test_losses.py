"""Tests of nnmamba_nets.classification.losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nnmamba_nets.classification.losses import ClassificationLoss, balanced_class_weights


def test_binary_loss_is_bce_on_one_logit():
    logits = torch.tensor([[0.3], [-1.2], [2.0]])
    labels = torch.tensor([[1], [0], [0]])
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(ClassificationLoss(2)(logits, labels), expected)
    torch.testing.assert_close(ClassificationLoss(2)(logits, labels.flatten()), expected)


def test_weighted_binary_loss_matches_cross_entropy_weighting():
    logits = torch.tensor([[0.3], [-1.2], [2.0]])
    labels = torch.tensor([1, 0, 0])
    per_sample = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float(), reduction="none")
    weights = torch.tensor([0.5, 3.0])[labels]
    loss = ClassificationLoss(2, class_weights=[0.5, 3.0])(logits, labels)
    torch.testing.assert_close(loss, (per_sample * weights).sum() / weights.sum())


def test_multiclass_loss_is_weighted_cross_entropy():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 2, 0])
    expected = F.cross_entropy(logits, labels, weight=torch.tensor([1.0, 2.0, 0.5]))
    torch.testing.assert_close(ClassificationLoss(3, [1.0, 2.0, 0.5])(logits, labels[:, None]), expected)


def test_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"logits of shape \(batch, 1\) for 2 classes, got \(4, 2\)"):
        ClassificationLoss(2)(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="class_weights must hold 3 positive"):
        ClassificationLoss(3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        ClassificationLoss(1)


def test_balanced_class_weights():
    items = [{"label": 0}, {"label": 0}, {"label": 0}, {"label": 1}]
    assert balanced_class_weights(items, 2) == pytest.approx([4 / 6, 4 / 2])
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no samples"):
        balanced_class_weights(items, 3)
    with pytest.raises(ValueError, match=r"labels \[5\] are outside"):
        balanced_class_weights([{"label": 5}, *items], 2)
