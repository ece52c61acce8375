"""MONAI transforms of the BraTS bundle where MONAI has no equivalent.

- :class:`ConvertBratsRegionsToLabels` / :class:`ConvertBratsRegionsToLabelsd`: the inverse of MONAI's
  ``ConvertToMultiChannelBasedOnBratsClasses``: overlapping region masks (TC, WT, ET) back to one
  BraTS label map (1 NCR, 2 ED, 3 ET for BraTS 2023).
- :class:`SaveLikeReferenced`: write a label map as NIfTI with the affine *and* header of the input
  file (MONAI's ``SaveImaged`` rebuilds the header, dropping e.g. ``descrip``, ``xyzt_units`` and qform codes).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_numpy

from nnmamba_nets.segmentation.datalist import LABEL_ED, LABEL_ET, LABEL_NCR
from nnmamba_nets.segmentation.io import SEG_NRRD_SUFFIX, Segment, write_slicer_segmentation

__all__ = [
    "BRATS_REGIONS",
    "ConvertBratsRegionsToLabels",
    "ConvertBratsRegionsToLabelsd",
    "SaveLikeReferenced",
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

    def __init__(self, ncr_label: int = LABEL_NCR, ed_label: int = LABEL_ED, et_label: int = LABEL_ET) -> None:
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
        ncr_label: int = LABEL_NCR,
        ed_label: int = LABEL_ED,
        et_label: int = LABEL_ET,
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
    header of the reference NIfTI the image was loaded from, and optionally the same labels as a 3D Slicer
    segmentation ``<name><output_postfix>.seg.nrrd`` with segment names and colours
    (:func:`~nnmamba_nets.segmentation.io.write_slicer_segmentation`). MONAI's ``SaveImaged`` writes the affine
    only, not the reference's header, and no Slicer segment fields.

    The data must already be on the reference file's voxel grid (invert any cropping/padding first, e.g.
    with ``Invertd``). Only the data type and scaling of the header change (to ``output_dtype``, no
    scaling); sform/qform codes, voxel sizes, units and description are kept. The file is written whole
    under a temporary name, then renamed.

    Args:
        keys: key of the label map to save.
        output_dir: output folder, created when missing.
        reference_key: key of the loaded image whose ``meta["filename_or_obj"]`` is the reference file.
            Defaults to ``"image"``.
        name_key: key whose value names the output file (e.g. ``"case_id"``); when missing, the reference
            file's name without extension is used. Defaults to ``"case_id"``.
        output_postfix: text appended to the name. Defaults to ``""``.
        output_dtype: on-disk type. Defaults to ``np.uint8``.
        slicer_segments: the segments of the ``.seg.nrrd`` written beside the NIfTI (e.g.
            :data:`~nnmamba_nets.segmentation.io.BRATS_SEGMENTS`); None writes none. Defaults to None.
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
        slicer_segments: Sequence[Segment] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = os.fspath(output_dir)
        self.reference_key = reference_key
        self.name_key = name_key
        self.output_postfix = output_postfix
        self.output_dtype = np.dtype(output_dtype)
        self.slicer_segments = slicer_segments

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
        """The output file name without extension."""
        name = data.get(self.name_key)
        if not name:
            name = os.path.basename(reference_file)
            for extension in (".nii.gz", ".nii"):
                name = name.removesuffix(extension)
        return f"{name}{self.output_postfix}"

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
            target = os.path.join(self.output_dir, self._output_name(d, reference_file))
            partial = os.path.join(self.output_dir, f".tmp-{os.getpid()}-{os.path.basename(target)}.nii.gz")
            nib.save(image, partial)  # written whole, then renamed: never a half-written label map
            os.replace(partial, f"{target}.nii.gz")
            if self.slicer_segments is not None:
                write_slicer_segmentation(
                    f"{target}{SEG_NRRD_SUFFIX}", labels.astype(np.int64), reference.affine, self.slicer_segments
                )
        return d
