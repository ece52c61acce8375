"""Segmentation pictures: one case's image, reference and predicted BraTS labels in three orthogonal slices.

``python -m nnmamba_nets pictures segmentation eval/inference --datalist datalist.json [--split test]
[--case BraTS-GLI-00000-000] [--modality t1c]`` reads the prediction ``<case_id>.nii.gz`` of the inference
folder and the case's image and reference label from the datalist, and writes ``overlay_<case_id>.png``:
rows axial, coronal and sagittal slices through the tumour centre, columns the image, the reference and
the prediction, labels in the colours of the Slicer segments (:data:`~nnmamba_nets.segmentation.io.BRATS_SEGMENTS`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from scipy import ndimage

from nnmamba_nets.common.datalists import SPLITS, read_datalist
from nnmamba_nets.common.pictures import (
    PLANES,
    figure_title,
    intensity_window,
    new_figure,
    plane_slice,
    read_volume,
    save_figure,
    show_plane,
    voxel_spacing,
)
from nnmamba_nets.segmentation.datalist import MODALITIES
from nnmamba_nets.segmentation.io import BRATS_SEGMENTS

__all__ = ["segmentation_overlay", "tumour_centre"]
_MODALITY_NAMES = {"t1n": "T1n", "t1c": "T1c", "t2w": "T2w", "t2f": "T2-FLAIR"}


def tumour_centre(label_maps: Sequence[np.ndarray | None]) -> np.ndarray:
    """Voxel coordinates of the tumour centre: the centre of mass of the first non-empty label map.

    Args:
        label_maps: label maps in order of preference (e.g. reference, prediction); None entries (at most all
            but one) are skipped.

    Returns:
        (3,) voxel coordinates; the volume centre when every map is empty.
    """
    maps = [labels for labels in label_maps if labels is not None]
    for labels in maps:
        if np.any(labels > 0):
            return np.array(ndimage.center_of_mass(labels > 0))
    return (np.array(maps[0].shape) - 1) / 2


def _find_case(
    folder: Path, datalist: str | os.PathLike, split: str, case: str | None
) -> tuple[Mapping[str, Any], Path]:
    """The datalist item of ``case`` (default: the first of ``split`` with a prediction) and its prediction file."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder; expected an inference output folder (eval/inference).")
    items = read_datalist(datalist)[split]
    missing = [position for position, item in enumerate(items) if "case_id" not in item]
    if missing:
        raise ValueError(f"datalist {os.fspath(datalist)!r}: {split}{missing} have no 'case_id'.")
    if case is not None:
        chosen = [item for item in items if item["case_id"] == case]
        if not chosen:
            known = [item["case_id"] for item in items]
            raise ValueError(
                f"case {case!r} is not in the {split!r} list of datalist {os.fspath(datalist)!r}: {known}."
            )
    else:
        chosen = [item for item in items if (folder / f"{item['case_id']}.nii.gz").is_file()]
        if not chosen:
            raise ValueError(
                f"none of the {len(items)} cases of the {split!r} list of datalist {os.fspath(datalist)!r} has a "
                f"prediction <case_id>.nii.gz in {str(folder)!r}."
            )
    prediction = folder / f"{chosen[0]['case_id']}.nii.gz"
    if not prediction.is_file():
        raise ValueError(f"no prediction {str(prediction)!r} for case {chosen[0]['case_id']!r}.")
    return chosen[0], prediction


def _read_case(
    item: Mapping[str, Any], prediction: Path, modality: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """(image, reference labels or None, predicted labels, affine) of one case, on one RAS-oriented grid."""
    channel = MODALITIES.index(modality)
    image_files = item["image"]
    if isinstance(image_files, (list, tuple)):
        if len(image_files) != len(MODALITIES):
            raise ValueError(
                f"case {item['case_id']!r} lists {len(image_files)} image files; expected {len(MODALITIES)} "
                f"({', '.join(MODALITIES)}) or one 4-channel file."
            )
        image, affine = read_volume(image_files[channel])
    else:  # one 4-channel file, channels last
        image, affine = read_volume(image_files, channel=channel)
    volumes = {"prediction": (prediction, *read_volume(prediction))}
    if item.get("label"):
        volumes["reference"] = (item["label"], *read_volume(item["label"]))
    for what, (path, data, other_affine) in volumes.items():
        if data.shape != image.shape or not np.allclose(other_affine, affine, atol=1e-3):
            raise ValueError(
                f"{what} {os.fspath(path)!r} (shape {data.shape}) is not on the grid of the case's image "
                f"(shape {image.shape}) of case {item['case_id']!r}."
            )
    reference = np.rint(volumes["reference"][1]) if "reference" in volumes else None
    return image, reference, np.rint(volumes["prediction"][1]), affine


def _draw_labels(axes: Axes, labels: np.ndarray) -> None:
    """BraTS labels of a slice over the image already drawn on ``axes``."""
    colours = ListedColormap([segment.colour for segment in BRATS_SEGMENTS])  # labels 1, 2, 3 in order
    masked = np.ma.masked_equal(labels.T, 0)
    axes.imshow(
        masked,
        cmap=colours,
        vmin=0.5,
        vmax=len(BRATS_SEGMENTS) + 0.5,
        alpha=0.55,
        origin="lower",
        aspect=axes.get_aspect(),
        interpolation="nearest",
    )


def segmentation_overlay(
    folder: str | os.PathLike,
    datalist: str | os.PathLike,
    split: str = "test",
    case: str | None = None,
    modality: str = "t1c",
    output_dir: str | os.PathLike | None = None,
    title: str | None = None,
    dpi: float = 100,
) -> list[str]:
    """Image, reference and predicted BraTS labels of one case in three orthogonal slices through the tumour.

    The slices pass through the centre of mass of the reference tumour (of the predicted one when the
    reference is empty or the datalist has no label); images are reoriented to the closest RAS axes and drawn
    with the aspect of their voxel spacing.

    Args:
        folder: the inference output folder holding ``<case_id>.nii.gz`` label maps (0, 1 NCR, 2 ED, 3 ET).
        datalist: the datalist JSON that lists the case with its ``image`` (four files or one 4-channel
            file) and ``label``.
        split: the datalist list to look the case up in. Defaults to ``"test"``.
        case: the ``case_id`` to show. Defaults to None (the first case of ``split`` with a prediction).
        modality: the image shown, one of ``t1n``, ``t1c``, ``t2w``, ``t2f``. Defaults to ``"t1c"``.
        output_dir: where to write ``overlay_<case_id>.png``. Defaults to None (``folder``).
        title: first line of the figure title, e.g. the data set. Defaults to None.
        dpi: resolution. Defaults to 100.

    Returns:
        the path of the PNG.

    Raises:
        ValueError: a bad split or modality, a folder or datalist that cannot be read, a case not in the
            datalist or without a prediction, or volumes that are not on the image's grid.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}.")
    folder = Path(folder).expanduser()
    item, prediction_file = _find_case(folder, datalist, split, case)
    image, reference, prediction, affine = _read_case(item, prediction_file, modality)
    centre = tumour_centre([reference, prediction])
    spacing, window = voxel_spacing(affine), intensity_window(image)
    columns = [(_MODALITY_NAMES[modality], None), ("reference", reference), ("prediction", prediction)]
    figure, axes = new_figure(len(PLANES), len(columns), (2.6, 2.6))
    for row, (plane, _, _) in enumerate(PLANES):
        for column, (name, labels) in enumerate(columns):
            panel = axes[row, column]
            show_plane(panel, plane_slice(image, plane, centre), plane, spacing, window)
            if labels is not None:
                _draw_labels(panel, plane_slice(labels, plane, centre))
            elif name == "reference":
                panel.text(0.5, 0.5, "no reference label", transform=panel.transAxes, ha="center", color="w")
            panel.set_title(f"{name}, {plane}", fontsize=8)
    handles = [Patch(color=segment.colour, label=f"{segment.label} {segment.name}") for segment in BRATS_SEGMENTS]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    figure.suptitle(figure_title(f"{item['case_id']}: reference and predicted tumour labels", title), fontsize=9)
    name = f"overlay_{item['case_id']}.png"
    return [save_figure(figure, Path(output_dir or folder) / name, dpi)]
