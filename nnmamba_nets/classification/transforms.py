"""Label and prediction formats of the classification bundle: one logit for two classes, N logits otherwise.

A two-class network has a single logit (the positive class, index 1): its probability is the sigmoid
and the other class gets ``1 - p``. A network of N > 2 classes has N logits and a softmax. Labels are
class indices.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import Activationsd

__all__ = ["check_num_classes", "class_probabilities", "classification_postprocessing", "label_indices"]


def check_num_classes(num_classes: int) -> None:
    """Raise ValueError unless ``num_classes`` is an int >= 2."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")


def label_indices(label: torch.Tensor) -> torch.Tensor:
    """Class indices (b,) of labels given as indices (b,) or (b, 1), or one-hot (b, c) with c > 1."""
    label = torch.as_tensor(label)
    if label.ndim == 2 and label.shape[1] > 1:
        return label.argmax(dim=1)
    return label.reshape(label.shape[0]).round().long()


def classification_postprocessing(num_classes: int, pred_key: str = "pred") -> Activationsd:
    """The post-processing of the bundle: network logits to class probabilities, per (decollated) item.

    Args:
        num_classes: number of classes; 2 applies a sigmoid to the single logit, more a softmax.
        pred_key: key of the network output. Defaults to "pred".

    Returns:
        MONAI's ``Activationsd`` doing that.
    """
    check_num_classes(num_classes)
    return Activationsd(keys=pred_key, sigmoid=num_classes == 2, softmax=num_classes > 2)


def class_probabilities(pred: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-class probabilities of one item: (1,) -> [1 - p, p] (binary), (c,) -> as is."""
    values = np.asarray(torch.as_tensor(pred).detach().cpu().float(), dtype=np.float64).reshape(-1)
    return np.array([1.0 - values[0], values[0]]) if values.size == 1 else values
