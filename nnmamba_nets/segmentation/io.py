"""Segmentation files for 3D Slicer and MONAI Label: named, coloured segments and 4-channel inputs.

* :func:`write_slicer_segmentation` writes a label map as a Slicer segmentation file (``.seg.nrrd``): a 3D NRRD
  in LPS space with Slicer's ``Segment<N>_*`` fields, so Slicer's *Add data* loads it as a *Segmentation* node
  whose segments carry their names and colours (and show in 3D). MONAI writes NRRD only through ITK
  (``ITKWriter``), which cannot add these fields, and Slicer's own reader needs Slicer; the format is documented
  at https://slicer.readthedocs.io/en/latest/developer_guide/modules/segmentations.html.
* :func:`stack_modalities` makes the one 4-channel NIfTI per case (channels last, T1n, T1c, T2w, T2-FLAIR) that the
  MONAI Label segmentation model and the bundle's file input take, from the four BraTS files, and copies the case's
  label map to MONAI Label's ``labels/final`` folder.

Command line (``python -m nnmamba_nets.segmentation.datalist stack``, see there).
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import nibabel as nib
import numpy as np

from nnmamba_nets.common.files import write_bytes_atomic
from nnmamba_nets.common.inference import partition_inputs
from nnmamba_nets.segmentation.datalist import (
    LABEL_ED,
    LABEL_ET,
    LABEL_NCR,
    LABEL_SUFFIX,
    MODALITIES,
    case_inputs,
    check_inference_case,
)

__all__ = ["BRATS_SEGMENTS", "SEG_NRRD_SUFFIX", "Segment", "stack_modalities", "write_slicer_segmentation"]

SEG_NRRD_SUFFIX = ".seg.nrrd"
"""The file ending Slicer reads as a segmentation (a plain ``.nrrd`` opens as a volume)."""


class Segment(NamedTuple):
    """One segment of a label map: its voxel value, display name and colour (RGB in 0..1)."""

    label: int
    name: str
    colour: tuple[float, float, float]


BRATS_SEGMENTS = (
    Segment(LABEL_NCR, "necrotic tumour core (NCR)", (0.894, 0.102, 0.110)),  # red
    Segment(LABEL_ED, "peritumoral edema (ED)", (0.302, 0.686, 0.290)),  # green
    Segment(LABEL_ET, "enhancing tumour (ET)", (1.0, 0.851, 0.184)),  # yellow
)
"""The BraTS 2023 labels as Slicer segments (the colours of the overlay pictures)."""

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])

_logger = logging.getLogger(__name__)


def _vector(values: np.ndarray) -> str:
    return "(" + ",".join(repr(float(value)) for value in values) + ")"


def _extent(labels: np.ndarray, value: int) -> str:
    """``minI maxI minJ maxJ minK maxK`` of the voxels equal to ``value``; Slicer's ``0 -1 ...`` when none."""
    where = np.nonzero(labels == value)
    if not where[0].size:
        return "0 -1 0 -1 0 -1"
    return " ".join(f"{axis.min()} {axis.max()}" for axis in where)


def write_slicer_segmentation(
    path: str | os.PathLike, labels: np.ndarray, affine: np.ndarray, segments: Sequence[Segment] = BRATS_SEGMENTS
) -> str:
    """Write a label map as a 3D Slicer segmentation (``.seg.nrrd``), whole, then renamed into place.

    Args:
        path: the output file; must end in ``.seg.nrrd``.
        labels: (i, j, k) integer label map in voxel order, as nibabel reads it (0 = background).
        affine: (4, 4) voxel-to-world affine in RAS (nibabel's, e.g. ``nib.load(reference).affine``).
        segments: the segments to name, one per label value; values not listed stay unnamed voxels Slicer
            ignores. Defaults to :data:`BRATS_SEGMENTS`.

    Returns:
        the path written.

    Raises:
        ValueError: a path without ``.seg.nrrd``, a label map that is not 3D or not integer in 0..255, an affine
            that is not 4 x 4, or two segments with the same label value.
    """
    path = os.fspath(path)
    if not path.endswith(SEG_NRRD_SUFFIX):
        raise ValueError(f"{path!r}: a Slicer segmentation file must end in {SEG_NRRD_SUFFIX!r}.")
    labels = np.asarray(labels)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 255:
        raise ValueError(
            f"{path!r}: labels must be a 3D integer label map with values in 0..255, got shape {labels.shape} of "
            f"{labels.dtype}."
        )
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"{path!r}: affine must be 4 x 4, got {affine.shape}.")
    if len({segment.label for segment in segments}) != len(segments):
        raise ValueError(f"{path!r}: two segments share a label value: {[s.label for s in segments]}.")
    directions = _RAS_TO_LPS @ affine[:3, :3]  # column n: the step of voxel axis n in LPS millimetres
    origin = _RAS_TO_LPS @ affine[:3, 3]
    header = [
        "NRRD0004",
        "# 3D Slicer segmentation: https://slicer.readthedocs.io/en/latest/developer_guide/modules/segmentations.html",
        "type: unsigned char",
        "dimension: 3",
        "space: left-posterior-superior",
        "sizes: " + " ".join(str(size) for size in labels.shape),
        "space directions: " + " ".join(_vector(directions[:, axis]) for axis in range(3)),
        "kinds: domain domain domain",
        "encoding: gzip",
        "space origin: " + _vector(origin),
        "Segmentation_ContainedRepresentationNames:=Binary labelmap|Closed surface|",
        "Segmentation_MasterRepresentation:=Binary labelmap",  # Slicer < 5.2 reads this name
        "Segmentation_SourceRepresentation:=Binary labelmap",
        "Segmentation_ReferenceImageExtentOffset:=0 0 0",
    ]
    for index, segment in enumerate(segments):
        header += [
            f"Segment{index}_Color:=" + " ".join(f"{channel:.6g}" for channel in segment.colour),
            f"Segment{index}_ColorAutoGenerated:=0",
            f"Segment{index}_Extent:={_extent(labels, segment.label)}",
            f"Segment{index}_ID:=Segment_{segment.label}",
            f"Segment{index}_LabelValue:={segment.label}",
            f"Segment{index}_Layer:=0",
            f"Segment{index}_Name:={segment.name}",
            f"Segment{index}_NameAutoGenerated:=0",
        ]
    # NRRD stores the first axis fastest: Fortran order of the (i, j, k) array
    voxels = gzip.compress(labels.astype(np.uint8).tobytes(order="F"), compresslevel=6, mtime=0)
    write_bytes_atomic(path, ("\n".join(header) + "\n\n").encode("utf-8") + voxels)
    return path


def _check_stackable(case: Mapping[str, Any]) -> None:
    """The check of a case to stack: a case folder's four files (:func:`check_inference_case`)."""
    if isinstance(case.get("image"), str):
        raise ValueError(f"{case['image']!r} is one file already; stack takes case folders of the four modality files.")
    check_inference_case(case)


def _write_whole(target: Path, write: Callable[[Path], object]) -> None:
    """Run ``write(partial)`` on a temporary name beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        write(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def stack_modalities(dataset_dir: str | os.PathLike | Sequence[str], output_dir: str | os.PathLike) -> list[str]:
    """Write each BraTS case as one 4-channel NIfTI, ``<output_dir>/<case_id>.nii.gz`` (channels last in the order
    T1n, T1c, T2w, T2-FLAIR, float32, on the grid, affine and header of the case's T1n file), and copy its label
    map, where the case folder has one, to ``<output_dir>/labels/final/<case_id>.nii.gz``: the layout of a MONAI
    Label datastore (``studies`` folder).

    Every case is checked first (files present, intact, finite, one grid and affine); a rejected case is named
    with its reason and the others are still written.

    Args:
        dataset_dir: one BraTS case folder, a folder of them, a datalist JSON / CSV (all splits) or a list of case
            folders.
        output_dir: the folder to write into (created).

    Returns:
        the 4-channel files written, in case order.

    Raises:
        ValueError: when any case was rejected (after writing the others), listing each with its reason.
    """
    cases = case_inputs(dataset_dir, split="")
    accepted, rejected = partition_inputs(cases, _check_stackable, "case_id")
    output = Path(output_dir).expanduser().resolve()
    written = []
    for case in accepted:
        channels = [nib.load(path) for path in case["image"]]
        data = np.stack([image.get_fdata(dtype=np.float32) for image in channels], axis=-1)  # (i, j, k, 4)
        header = channels[0].header.copy()
        header.set_data_dtype(np.float32)
        image = nib.Nifti1Image(data, channels[0].affine, header=header)
        image.header.set_slope_inter(1.0, 0.0)
        target = output / f"{case['case_id']}.nii.gz"
        _write_whole(target, functools.partial(nib.save, image))
        written.append(str(target))
        label = Path(case["image"][0]).with_name(f"{case['case_id']}-{LABEL_SUFFIX}.nii.gz")
        if label.is_file():
            _write_whole(output / "labels" / "final" / target.name, functools.partial(shutil.copyfile, label))
    _logger.info(
        "stacked %d case(s) (%s) into %s; %d rejected", len(written), ", ".join(MODALITIES), output, len(rejected)
    )
    if rejected:
        raise ValueError(
            f"{len(rejected)} of {len(cases)} cases were rejected (the others were written to {str(output)!r}):\n"
            + "\n".join(f"{name}: {reason}" for name, reason in rejected.items())
        )
    return written
