"""Segmentation helpers for the BraTS bundle where MONAI has no equivalent.

- :class:`ConvertBratsRegionsToLabels` / :class:`ConvertBratsRegionsToLabelsd`: the inverse of MONAI's
  ``ConvertToMultiChannelBasedOnBratsClasses``: overlapping region masks (TC, WT, ET) back to one
  BraTS label map (1 NCR, 2 ED, 3 ET for BraTS 2023).
- :class:`SaveLikeReferenced`: write a label map as NIfTI with the affine *and* header of the input
  file (MONAI's writers rebuild the header, dropping e.g. ``descrip``, units and qform codes).
- :class:`BratsHausdorffDistanceMetric`: HD95 with the BraTS rule for empty masks (MONAI returns NaN,
  which its mean then skips, so a model that predicts nothing would score a perfect 0).
- :func:`region_output_transform`: feeds one region channel to a MONAI metric handler, so each region
  gets its own Dice/HD95 entry in the logs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.handlers import from_engine
from monai.metrics import HausdorffDistanceMetric
from monai.metrics.utils import ignore_background
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_numpy

__all__ = [
    "BRATS_REGIONS",
    "BratsHausdorffDistanceMetric",
    "ConvertBratsRegionsToLabels",
    "ConvertBratsRegionsToLabelsd",
    "SaveLikeReferenced",
    "region_output_transform",
]

BRATS_REGIONS = ("TC", "WT", "ET")
"""Region channel order of ``ConvertToMultiChannelBasedOnBratsClasses`` and of the bundle's outputs."""


class ConvertBratsRegionsToLabels(Transform):
    """Binary region masks (TC, WT, ET) -> BraTS labels (NCR, ED, ET), channel first.

    ET voxels get ``et_label``; the rest of TC gets ``ncr_label``; the rest of WT gets ``ed_label``.
    Predictions that break the nesting ET in TC in WT are resolved in that priority order (an ET
    voxel outside the predicted TC is still ET), as in MONAI's brats bundle.

    Args:
        ncr_label: necrotic / non-enhancing tumour core. Defaults to 1.
        ed_label: peritumoral oedema (SNFH). Defaults to 2.
        et_label: enhancing tumour; 3 for BraTS 2023, 4 for BraTS 2018-2022. Defaults to 3.
    """

    def __init__(self, ncr_label: int = 1, ed_label: int = 2, et_label: int = 3) -> None:
        labels = (ncr_label, ed_label, et_label)
        if len(set(labels)) != 3 or min(labels) < 1 or max(labels) > 255:
            raise ValueError(f"ncr_label, ed_label, et_label must be distinct ints in 1..255, got {labels}.")
        self.ncr_label, self.ed_label, self.et_label = labels

    def __call__(self, regions: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """
        Args:
            regions: (3, spatial...) masks (bool or 0/1) in TC, WT, ET order.

        Returns:
            (1, spatial...) uint8 labels, the same array type as the input (MetaTensor metadata kept).
        """
        if regions.shape[0] != len(BRATS_REGIONS):
            raise ValueError(
                f"expected {len(BRATS_REGIONS)} region channels {BRATS_REGIONS}, got shape {tuple(regions.shape)}."
            )
        if isinstance(regions, torch.Tensor):
            masks = regions > 0.5
            labels = torch.zeros_like(masks[:1], dtype=torch.uint8)
        else:
            masks = np.asarray(regions) > 0.5
            labels = np.zeros_like(masks[:1], dtype=np.uint8)
        labels[masks[1:2]] = self.ed_label
        labels[masks[0:1]] = self.ncr_label
        labels[masks[2:3]] = self.et_label
        return labels


class ConvertBratsRegionsToLabelsd(MapTransform):
    """Dictionary version of :class:`ConvertBratsRegionsToLabels`.

    Args:
        keys: keys of the region masks to convert.
        ncr_label: see :class:`ConvertBratsRegionsToLabels`. Defaults to 1.
        ed_label: see :class:`ConvertBratsRegionsToLabels`. Defaults to 2.
        et_label: see :class:`ConvertBratsRegionsToLabels`. Defaults to 3.
        allow_missing_keys: don't raise for missing keys. Defaults to False.
    """

    def __init__(
        self,
        keys: KeysCollection,
        ncr_label: int = 1,
        ed_label: int = 2,
        et_label: int = 3,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ConvertBratsRegionsToLabels(ncr_label, ed_label, et_label)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class SaveLikeReferenced(MapTransform):
    """Write a (1, d, h, w) label map as ``<output_dir>/<name><output_postfix>.nii.gz`` with the affine and
    header of the reference NIfTI the image was loaded from.

    The data must already be on the reference file's voxel grid (invert any cropping/padding first, e.g.
    with ``Invertd``). Only the data type and scaling of the header change (to ``output_dtype``, no
    scaling); sform/qform codes, voxel sizes, units and description are kept.

    Args:
        keys: key of the label map to save.
        output_dir: output folder, created when missing.
        reference_key: key of the loaded image whose ``meta["filename_or_obj"]`` is the reference file.
            Defaults to ``"image"``.
        name_key: key whose value names the output file (e.g. ``"case_id"``); when missing, the reference
            file's name without extension is used. Defaults to ``"case_id"``.
        output_postfix: text appended to the name. Defaults to ``""``.
        output_dtype: on-disk type. Defaults to ``np.uint8``.
        allow_missing_keys: don't raise for missing keys. Defaults to False.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        reference_key: str = "image",
        name_key: str = "case_id",
        output_postfix: str = "",
        output_dtype: np.dtype | type = np.uint8,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = os.fspath(output_dir)
        self.reference_key = reference_key
        self.name_key = name_key
        self.output_postfix = output_postfix
        self.output_dtype = np.dtype(output_dtype)

    def _reference_file(self, data: Mapping[Hashable, Any]) -> str:
        reference = data.get(self.reference_key)
        meta = reference.meta if isinstance(reference, MetaTensor) else {}
        filename = meta.get("filename_or_obj")
        if isinstance(filename, Sequence) and not isinstance(filename, str):
            filename = filename[0]
        if not filename:
            raise ValueError(f"SaveLikeReferenced: {self.reference_key!r} has no 'filename_or_obj' metadata.")
        return os.fspath(filename)

    def _output_name(self, data: Mapping[Hashable, Any], reference_file: str) -> str:
        name = data.get(self.name_key)
        if not name:
            name = os.path.basename(reference_file)
            for extension in (".nii.gz", ".nii"):
                name = name.removesuffix(extension)
        return f"{name}{self.output_postfix}.nii.gz"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        reference_file = self._reference_file(d)
        reference = nib.load(reference_file)
        for key in self.key_iterator(d):
            labels = convert_to_numpy(d[key])
            if labels.ndim == 4 and labels.shape[0] == 1:
                labels = labels[0]
            if labels.shape != reference.shape[:3]:
                raise ValueError(
                    f"{key!r} has spatial shape {labels.shape}, expected the reference grid {reference.shape[:3]} "
                    f"of {reference_file!r}; invert the spatial preprocessing first."
                )
            header = reference.header.copy()
            header.set_data_dtype(self.output_dtype)
            image = nib.Nifti1Image(labels.astype(self.output_dtype), reference.affine, header=header)
            image.header.set_slope_inter(1.0, 0.0)
            image.header["cal_min"], image.header["cal_max"] = 0, 0
            os.makedirs(self.output_dir, exist_ok=True)
            nib.save(image, os.path.join(self.output_dir, self._output_name(d, reference_file)))
        return d


class BratsHausdorffDistanceMetric(HausdorffDistanceMetric):
    """Percentile Hausdorff distance (in voxels) with the BraTS rule for empty masks.

    Per case and channel: 0 when prediction and reference are both empty; the diagonal of the image
    grid when only one of them is empty (BraTS uses 373.13 mm, the diagonal of its 240x240x155 grid);
    otherwise MONAI's :class:`~monai.metrics.HausdorffDistanceMetric`.

    Args:
        include_background: whether to score the first channel. Defaults to True (the BraTS regions
            TC, WT, ET have no background channel).
        percentile: distance percentile. Defaults to 95.
        reduction: MONAI metric reduction. Defaults to ``"mean"``.
        get_not_nans: also return the number of values averaged. Defaults to False.
    """

    def __init__(
        self,
        include_background: bool = True,
        percentile: float = 95.0,
        reduction: str = "mean",
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(
            include_background=include_background,
            percentile=percentile,
            reduction=reduction,
            get_not_nans=get_not_nans,
        )

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """
        Args:
            y_pred: binarised prediction (B, C, spatial...).
            y: binarised reference of the same shape.

        Returns:
            (B, C) distances.
        """
        with warnings.catch_warnings():  # MONAI warns about empty masks, which are handled below
            warnings.filterwarnings("ignore", message=".* is all 0, this may result in nan/inf distance")
            distances = super()._compute_tensor(y_pred, y, **kwargs)
        if not self.include_background:
            y_pred, y = ignore_background(y_pred=y_pred, y=y)
        pred_empty = y_pred.flatten(2).sum(-1) == 0
        reference_empty = y.flatten(2).sum(-1) == 0
        diagonal = float(np.linalg.norm(np.asarray(y.shape[2:], dtype=np.float64)))
        distances = torch.where(pred_empty & reference_empty, torch.zeros_like(distances), distances)
        return torch.where(pred_empty ^ reference_empty, torch.full_like(distances, diagonal), distances)


def region_output_transform(channel: int, keys: Sequence[str] = ("pred", "label")) -> Callable[[Any], tuple]:
    """Output transform for a MONAI metric handler that keeps one region channel of pred and label.

    Args:
        channel: region index (0 TC, 1 WT, 2 ET in :data:`BRATS_REGIONS` order).
        keys: engine output keys of prediction and ground truth. Defaults to ``("pred", "label")``.

    Returns:
        callable mapping the decollated engine output to ``([pred_i[channel:channel+1]], [label_i[...]])``.

    Example (YAML)::

        val_dice_wt:
          _target_: MeanDice
          output_transform: "$nnmamba_nets.segmentation.region_output_transform(1)"
    """
    if channel < 0:
        raise ValueError(f"channel must be >= 0, got {channel}.")
    select = from_engine(list(keys))

    def transform(output: Any) -> tuple:
        preds, labels = select(output)
        return [p[channel : channel + 1] for p in preds], [y[channel : channel + 1] for y in labels]

    return transform
