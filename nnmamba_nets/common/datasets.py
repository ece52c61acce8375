"""Datasets shared by the bundles."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data import Dataset
from monai.utils import convert_to_tensor

__all__ = ["ErrorTolerantDataset", "describe_error"]

_logger = logging.getLogger(__name__)


def describe_error(error: BaseException) -> str:
    """``"<Type>: <message>"`` of the innermost cause (MONAI wraps transform errors in RuntimeErrors)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


class ErrorTolerantDataset(Dataset):
    """A dataset whose items never raise: an item whose transform fails becomes a placeholder.

    For inference over many files, one unreadable or malformed image must not stop the others.
    Each returned item holds the input item's keys: the ``placeholders`` keys with the transformed
    tensors (as plain tensors, without MONAI metadata, so that good and failed items collate
    together at any batch size) and every other key with its input value (e.g. a ``name`` string),
    plus ``error_key``: ``""`` for a good item, else the error message. A failed item gets zeros of
    the placeholder shape; the consumer must skip it by its error (e.g.
    :class:`nnmamba_nets.classification.ClassificationReport`). Failures are logged with the name.

    Args:
        data: input items (dicts), e.g. ``[{"image": path, "name": path}, ...]``.
        transform: the (deterministic) transform of an item.
        placeholders: key -> shape of the transformed tensor, e.g. ``{"image": (1, 64, 64, 64)}``;
            a good item's tensor of another shape raises (it could not collate anyway).
        name_key: key of the item's name in logs. Defaults to "name".
        error_key: key of the error message added to every item. Defaults to "error".
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        transform: Callable | None,
        placeholders: Mapping[str, Sequence[int]],
        name_key: str = "name",
        error_key: str = "error",
    ) -> None:
        super().__init__(data=data, transform=transform)
        if not placeholders:
            raise ValueError("placeholders must name at least one key and its tensor shape.")
        self.placeholders = {key: tuple(int(size) for size in shape) for key, shape in placeholders.items()}
        self.name_key = name_key
        self.error_key = error_key

    def _transform(self, index: int) -> dict[str, Any]:
        item = dict(self.data[index])
        try:
            transformed = self.transform(item) if self.transform is not None else item
            tensors = {key: convert_to_tensor(transformed[key], track_meta=False) for key in self.placeholders}
            for key, tensor in tensors.items():
                if tuple(tensor.shape) != self.placeholders[key]:
                    raise ValueError(
                        f"{key!r} has shape {tuple(tensor.shape)} after the transforms, "
                        f"expected {self.placeholders[key]}."
                    )
            error = ""
        except Exception as exc:
            error = describe_error(exc)
            _logger.error("item %s failed and is skipped: %s", item.get(self.name_key, index), error)
            tensors = {key: torch.zeros(shape) for key, shape in self.placeholders.items()}
        item.update(tensors)
        item[self.error_key] = error
        return item
