"""Generic MONAI transform helpers shared by the bundles."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.transforms import Transform

__all__ = ["NameCaseOnError", "describe_error"]


def describe_error(error: BaseException) -> str:
    """``"<Type>: <message>"`` of the innermost cause (MONAI wraps transform errors in RuntimeErrors)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


class NameCaseOnError(Transform):
    """Run a dictionary transform and, if it fails, re-raise naming the case and its input files.

    MONAI's loaders report e.g. a truncated ``.nii.gz`` as ``EOFError`` without the file name; wrapping
    ``LoadImaged`` in this transform turns that into ``ValueError("case BraTS-GLI-00012-000: ...")``.
    The wrapped transform must not be random (it is cached like any deterministic transform).

    Args:
        transform: the dictionary transform to run, e.g. ``LoadImaged``.
        case_key: data key holding the case name. Defaults to ``"case_id"``.
        file_keys: data keys whose values (paths) are listed in the message. Defaults to
            ``("image", "label")``.

    Example::

        NameCaseOnError(LoadImaged(keys=["image", "label"]))
    """

    def __init__(
        self, transform: Transform, case_key: str = "case_id", file_keys: Sequence[Hashable] = ("image", "label")
    ) -> None:
        self.transform = transform
        self.case_key = case_key
        self.file_keys = tuple(file_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> Any:
        try:
            return self.transform(data)
        except Exception as error:
            files = {key: data[key] for key in self.file_keys if key in data}
            raise ValueError(
                f"case {data.get(self.case_key, '<unnamed case>')}: {type(self.transform).__name__} failed with "
                f"{describe_error(error)} (files: {files})"
            ) from error
