"""The classification loss: binary cross-entropy on one logit, or cross-entropy on N logits.

Ours because MONAI has no loss that switches between the two by the number of classes with class
weights normalised the same way; both parts are torch's own functions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from nnmamba_nets.classification.transforms import check_num_classes, label_indices

__all__ = ["ClassificationLoss", "balanced_class_weights"]


class ClassificationLoss(nn.Module):
    """Cross-entropy for binary and multi-class classification with class-index labels.

    With ``num_classes == 2`` the network has a single logit (the positive class, index 1) and the
    loss is binary cross-entropy; otherwise it has ``num_classes`` logits and the loss is softmax
    cross-entropy. Class weights follow ``torch.nn.CrossEntropyLoss``: each sample is weighted by
    its class's weight and the mean is taken over the weights, for both cases.

    Args:
        num_classes: number of classes (>= 2).
        class_weights: optional weight per class (length ``num_classes``), e.g. from
            :func:`balanced_class_weights`. Defaults to None (unweighted).
    """

    def __init__(self, num_classes: int = 2, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.num_classes = num_classes
        if class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
            if weights.numel() != num_classes or bool((weights <= 0).any()):
                raise ValueError(
                    f"class_weights must hold {num_classes} positive numbers, got {list(map(float, weights))}."
                )
            self.register_buffer("class_weights", weights)
        else:
            self.class_weights = None

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Loss of a batch.

        Args:
            logits: (batch, 1) for binary, (batch, num_classes) otherwise.
            label: class indices (batch,) or (batch, 1).

        Returns:
            scalar loss.
        """
        out_channels = 1 if self.num_classes == 2 else self.num_classes
        if logits.ndim != 2 or logits.shape[1] != out_channels:
            raise ValueError(
                f"expected logits of shape (batch, {out_channels}) for {self.num_classes} classes, "
                f"got {tuple(logits.shape)}."
            )
        target = label_indices(torch.as_tensor(label, device=logits.device))
        if self.num_classes > 2:
            return F.cross_entropy(logits, target, weight=self.class_weights)
        losses = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype), reduction="none")
        if self.class_weights is None:
            return losses.mean()
        sample_weights = self.class_weights[target]
        return (losses * sample_weights).sum() / sample_weights.sum()


def balanced_class_weights(items: Sequence[Mapping], num_classes: int, label_key: str = "label") -> list[float]:
    """Class weights inversely proportional to class frequency (``n / (num_classes * n_c)``).

    Args:
        items: datalist items (e.g. the training split), each with an integer ``label_key``.
        num_classes: number of classes.
        label_key: key of the class index. Defaults to "label".

    Returns:
        one weight per class; they average to 1 over the samples.

    Raises:
        ValueError: a class has no sample, or a label is out of range.
    """
    check_num_classes(num_classes)
    counts = Counter(int(item[label_key]) for item in items)
    unknown = sorted(set(counts) - set(range(num_classes)))
    if unknown:
        raise ValueError(f"labels {unknown} are outside 0..{num_classes - 1}.")
    empty = [index for index in range(num_classes) if not counts[index]]
    if empty:
        raise ValueError(f"class(es) {empty} have no samples; cannot weight them.")
    total = sum(counts.values())
    return [total / (num_classes * counts[index]) for index in range(num_classes)]
