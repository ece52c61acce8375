"""Landmark pictures: each landmark of one case in three orthogonal slices through its true position.

``python -m nnmamba_nets pictures landmarks eval/test [--case <case>] [--view_mm 60]`` reads
``landmark_errors.csv`` (the per-case, per-landmark table of
:class:`~nnmamba_nets.landmarks.handlers.LandmarkErrorReport`: true and predicted RAS world coordinates in
mm, error in mm) and the case's image, and writes ``landmarks_<case>.png``: one row per landmark, columns
the axial, coronal and sagittal slices through the true point, with the true point (+) and the predicted
point (x, projected onto the slice) and the error in each title.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from nnmamba_nets.common.pictures import (
    PLANES,
    figure_title,
    intensity_window,
    new_figure,
    plane_slice,
    read_table,
    read_volume,
    save_figure,
    show_plane,
    voxel_spacing,
)

__all__ = ["ERRORS_FILE", "landmark_views", "read_landmark_errors", "world_to_voxel"]

ERRORS_FILE = "landmark_errors.csv"
_TRUE_COLUMNS, _PREDICTED_COLUMNS = ("true_r", "true_a", "true_s"), ("pred_r", "pred_a", "pred_s")
_REQUIRED_COLUMNS = ("image", "case", "landmark", *_TRUE_COLUMNS, *_PREDICTED_COLUMNS, "error_mm")
_TRUE_STYLE = {"marker": "+", "color": "#00ff00", "markersize": 11, "markeredgewidth": 1.6}
_PREDICTED_STYLE = {"marker": "x", "color": "#ff3030", "markersize": 8, "markeredgewidth": 1.6}


def world_to_voxel(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Voxel coordinates of RAS world points: ``inv(affine) @ [x, y, z, 1]``.

    Args:
        affine: the image's 4x4 RAS affine (as nibabel reads it).
        points: (n, 3) world coordinates in mm.

    Returns:
        (n, 3) voxel coordinates.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    homogeneous = np.c_[points, np.ones(len(points))]  # (n, 4)
    return (np.linalg.inv(affine) @ homogeneous.T).T[:, :3]


def read_landmark_errors(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a ``landmark_errors.csv``.

    Args:
        path: the CSV file.

    Returns:
        one dict per case and landmark, with at least the columns ``image``, ``case``, ``landmark``,
        ``true_r/a/s``, ``pred_r/a/s`` and ``error_mm``.

    Raises:
        ValueError: the file cannot be read, lacks one of those columns, or has no rows.
    """
    rows, columns = read_table(path)
    missing = [name for name in _REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ValueError(
            f"{os.fspath(path)!r} lacks the column(s) {missing} (evaluate.yaml writes {list(_REQUIRED_COLUMNS)}, "
            f"description and confidence); its header has {columns}."
        )
    if not rows:
        raise ValueError(f"{os.fspath(path)!r} has no rows.")
    return rows


def _numbers(rows: Sequence[dict[str, str]], columns: Sequence[str], source: Path) -> np.ndarray:
    """(n, len(columns)) float array of these columns of the rows."""
    try:
        return np.array([[float(row[column]) for column in columns] for row in rows])
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{str(source)!r}: a value of the columns {list(columns)} is not a number: {error}."
        ) from error


def landmark_views(
    folder: str | os.PathLike,
    case: str | None = None,
    view_mm: float = 60.0,
    output_dir: str | os.PathLike | None = None,
    title: str | None = None,
    dpi: float = 100,
) -> list[str]:
    """One case's landmarks, each in three orthogonal slices of its image through the true point.

    The image (the ``image`` column; relative paths are relative to the CSV's folder) is reoriented to the
    closest RAS axes and drawn with the aspect of its voxel spacing; world points map to voxels with
    :func:`world_to_voxel`. The predicted point is drawn where it projects onto each slice.

    Args:
        folder: the evaluation output folder (``eval/test``) holding ``landmark_errors.csv``.
        case: the ``case`` to show. Defaults to None (the first case of the table).
        view_mm: width and height of each view, centred on the true point, in mm. Defaults to 60.
        output_dir: where to write ``landmarks_<case>.png``. Defaults to None (``folder``).
        title: first line of the figure title, e.g. the data set. Defaults to None.
        dpi: resolution. Defaults to 100.

    Returns:
        the path of the PNG.

    Raises:
        ValueError: ``landmark_errors.csv`` is missing or unusable, the case is not in it, its image cannot
            be read, or ``view_mm`` is not positive.
    """
    if not view_mm > 0:
        raise ValueError(f"view_mm must be positive, got {view_mm}.")
    folder = Path(folder).expanduser()
    source = folder / ERRORS_FILE
    if not source.is_file():
        raise ValueError(f"no {ERRORS_FILE} in {str(folder)!r}; expected an evaluation output folder (eval/test).")
    rows = read_landmark_errors(source)
    cases = list(dict.fromkeys(row["case"] for row in rows))
    case = cases[0] if case is None else case
    rows = [row for row in rows if row["case"] == case]
    if not rows:
        raise ValueError(f"case {case!r} is not in {str(source)!r}; its cases: {cases}.")
    image_file = source.parent / rows[0]["image"]  # an absolute image path stays as it is
    volume, affine = read_volume(image_file)
    spacing, window = voxel_spacing(affine), intensity_window(volume)
    true_voxels = world_to_voxel(affine, _numbers(rows, _TRUE_COLUMNS, source))
    predicted_voxels = world_to_voxel(affine, _numbers(rows, _PREDICTED_COLUMNS, source))
    errors = _numbers(rows, ("error_mm",), source)[:, 0]
    half = view_mm / 2 / spacing  # (3,) half view in voxels per axis
    figure, axes = new_figure(len(rows), len(PLANES), (2.3, 2.3))
    for index, (row, true_voxel, predicted_voxel) in enumerate(zip(rows, true_voxels, predicted_voxels)):
        for column, (plane, _, _) in enumerate(PLANES):
            panel = axes[index, column]
            x, y = show_plane(panel, plane_slice(volume, plane, true_voxel), plane, spacing, window)
            panel.plot(true_voxel[x], true_voxel[y], linestyle="none", **_TRUE_STYLE)
            panel.plot(predicted_voxel[x], predicted_voxel[y], linestyle="none", **_PREDICTED_STYLE)
            panel.set_xlim(true_voxel[x] - half[x], true_voxel[x] + half[x])
            panel.set_ylim(true_voxel[y] - half[y], true_voxel[y] + half[y])
            panel.set_title(f"{row['landmark']} ({plane}): {errors[index]:.2f} mm", fontsize=8)
    handles = [
        Line2D([], [], linestyle="none", label="true", **_TRUE_STYLE),
        Line2D([], [], linestyle="none", label="predicted (projected onto the slice)", **_PREDICTED_STYLE),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, facecolor="0.8")
    what = f"{case}: true and predicted landmarks, mean radial error {np.mean(errors):.2f} mm"
    figure.suptitle(figure_title(what, title), fontsize=9)
    return [save_figure(figure, Path(output_dir or folder) / f"landmarks_{case}.png", dpi)]
