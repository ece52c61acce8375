"""Pictures of a run, made from its own outputs: the task-independent parts and the command line.

``python -m nnmamba_nets pictures <kind> <folder> [options]`` writes PNG files next to the outputs it
reads (or into ``--output_dir``) and prints their paths:

- ``curves``: a training output folder (``eval/train``) with TensorBoard event files ->
  ``training_curves.png`` (:func:`training_curves`);
- ``segmentation``: an inference output folder (``eval/inference``) plus the datalist that gives each
  case's image and reference label -> ``overlay_<case>.png``
  (:func:`nnmamba_nets.segmentation.pictures.segmentation_overlay`);
- ``classification``: an evaluation folder (``eval/test``) with ``predictions.csv`` -> ``roc_curve.png``
  and ``confusion_matrix.png`` (:func:`nnmamba_nets.classification.pictures.classification_pictures`);
- ``landmarks``: an evaluation folder with ``landmark_errors.csv`` -> ``landmarks_<case>.png``
  (:func:`nnmamba_nets.landmarks.pictures.landmark_views`).

Figures are drawn with matplotlib's non-interactive Agg canvas (no display, no pyplot state), so the
functions run on servers and inside other programs. The 3D helpers here (:func:`read_volume`,
:func:`show_plane`) show the three orthogonal planes of an image reoriented to the closest RAS axes,
with the aspect of its voxel spacing. Pass ``title`` (``--title``) to name the data in every figure,
e.g. ``"synthetic demo data"``.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

__all__ = [
    "PLANES",
    "figure_title",
    "intensity_window",
    "main",
    "new_figure",
    "plane_slice",
    "read_table",
    "read_volume",
    "save_figure",
    "show_plane",
    "training_curves",
    "voxel_spacing",
]

EVENT_FILE_PATTERN = "events.out.tfevents.*"
PLANES = (("axial", 2, (0, 1)), ("coronal", 1, (0, 2)), ("sagittal", 0, (1, 2)))
"""(name, the voxel axis the plane fixes, the voxel axes it shows as x and y) of a RAS-oriented volume."""
_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))  # low and high end of each RAS voxel axis


def read_table(path: str | os.PathLike) -> tuple[list[dict[str, str]], list[str]]:
    """The rows and the column names of a CSV report (an evaluation's predictions or per-case table).

    Args:
        path: the CSV file.

    Returns:
        one dict per row, and the column names in file order.

    Raises:
        ValueError: the file cannot be read or parsed (the message names it).
    """
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"cannot read {os.fspath(path)!r}: {error}") from error
    return rows, columns


def figure_title(what: str, title: str | None) -> str:
    """A figure's title: ``title`` (e.g. the data set) on the first line, then what the figure shows."""
    return f"{title}\n{what}" if title else what


def new_figure(nrows: int, ncols: int, panel_size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A matplotlib figure on the Agg canvas with an (nrows, ncols) array of axes.

    Args:
        nrows: rows of panels.
        ncols: columns of panels.
        panel_size: (width, height) of one panel in inches.

    Returns:
        (figure, axes as a 2D object array).
    """
    figure = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    return figure, axes


def save_figure(figure: Figure, path: str | os.PathLike, dpi: float) -> str:
    """Write ``figure`` as a PNG through a temporary file in the same folder and a rename.

    Args:
        figure: a matplotlib figure.
        path: the PNG file (parent folders are created).
        dpi: resolution in dots per inch.

    Returns:
        the absolute path of the written file.
    """
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        figure.savefig(partial, dpi=dpi, format="png")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return str(target)


def read_volume(path: str | os.PathLike, channel: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI image with nibabel, reoriented to the voxel axes closest to RAS.

    Args:
        path: the image file.
        channel: for a 4D file, the volume (last axis) to read. Defaults to None (a 3D file).

    Returns:
        (3D float32 array, its 4x4 RAS affine: world = affine @ [i, j, k, 1]).

    Raises:
        ValueError: the file does not exist, cannot be read, or is not 3D (4D with ``channel``).
    """
    try:
        image = nib.as_closest_canonical(nib.load(os.fspath(path)))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises many kinds (ImageFileError, OSError, EOFError, ...)
        raise ValueError(f"cannot read image {os.fspath(path)!r}: {error}") from error
    if channel is not None and data.ndim == 4:
        if not 0 <= channel < data.shape[3]:
            raise ValueError(f"image {os.fspath(path)!r} has {data.shape[3]} channels, channel {channel} requested.")
        data = data[..., channel]
    if data.ndim != 3:
        raise ValueError(f"image {os.fspath(path)!r} has shape {data.shape}; expected a 3D volume.")
    return data, image.affine


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """(3,) voxel sizes in mm of a 4x4 affine: the lengths of its first three columns."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def plane_slice(volume: np.ndarray, plane: str, position: Sequence[float]) -> np.ndarray:
    """The 2D slice of a RAS-oriented volume in ``plane`` (see :data:`PLANES`) through a voxel position.

    Args:
        volume: (i, j, k) array.
        plane: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        position: voxel coordinates (i, j, k); the fixed axis is rounded and clipped into the volume.

    Returns:
        the (x, y) slice: rows along the plane's x axis.
    """
    _, fixed, _ = _plane(plane)
    index = int(np.clip(round(float(position[fixed])), 0, volume.shape[fixed] - 1))
    return np.take(volume, index, axis=fixed)


def show_plane(
    axes: Axes, image: np.ndarray, plane: str, spacing: Sequence[float], intensity_range: tuple[float, float]
) -> tuple[int, int]:
    """Draw a grey-scale slice of :func:`plane_slice` with the aspect of its voxel spacing and RAS axis letters.

    Points drawn afterwards use voxel coordinates: x and y of the plane's axes (:data:`PLANES`).

    Args:
        axes: the matplotlib axes.
        image: the (x, y) slice.
        plane: its plane.
        spacing: the volume's voxel spacing (i, j, k) in mm.
        intensity_range: (black, white) intensities.

    Returns:
        the voxel axes (x, y) shown.
    """
    _, _, (x_axis, y_axis) = _plane(plane)
    axes.set_facecolor("black")  # outside the image, when a view reaches beyond it
    axes.imshow(
        image.T,
        cmap="gray",
        origin="lower",
        vmin=intensity_range[0],
        vmax=intensity_range[1],
        aspect=float(spacing[y_axis]) / float(spacing[x_axis]),
        interpolation="nearest",
    )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_xlabel("{} - {}".format(*_AXIS_LETTERS[x_axis]), fontsize=7, labelpad=1)
    axes.set_ylabel("{} - {}".format(*_AXIS_LETTERS[y_axis]), fontsize=7, labelpad=1)
    return x_axis, y_axis


def intensity_window(volume: np.ndarray) -> tuple[float, float]:
    """(black, white) display range: the 0.5th and 99.5th percentiles of the non-zero voxels."""
    values = volume[volume != 0] if np.any(volume) else volume.reshape(-1)
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _plane(plane: str) -> tuple[str, int, tuple[int, int]]:
    for entry in PLANES:
        if entry[0] == plane:
            return entry
    raise ValueError(f"plane must be one of {[name for name, _, _ in PLANES]}, got {plane!r}.")


def _read_scalars(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag of the event files in ``folder``: tag -> (steps, values), sorted by step.

    A step written twice (a rerun or a resumed run in the same folder) keeps the newer value.
    """
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder; expected a training output folder with TensorBoard logs.")
    files = sorted(folder.glob(EVENT_FILE_PATTERN))
    if not files:
        raise ValueError(
            f"no TensorBoard event files ({EVENT_FILE_PATTERN}) in {str(folder)!r}; expected the training "
            "output folder (output_dir of train.yaml, e.g. eval/train)."
        )
    points: dict[str, dict[int, tuple[float, float]]] = {}
    for path in files:
        accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every point
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            tag_points = points.setdefault(tag, {})
            for event in accumulator.Scalars(tag):
                if event.step not in tag_points or event.wall_time >= tag_points[event.step][0]:
                    tag_points[event.step] = (event.wall_time, event.value)
    if not points:
        raise ValueError(f"the event files in {str(folder)!r} hold no scalars: {[p.name for p in files]}.")
    return {
        tag: (np.array(sorted(steps)), np.array([steps[step][1] for step in sorted(steps)]))
        for tag, steps in sorted(points.items())
    }


def _metric_groups(scalars: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, list[str]]:
    """Epoch-level metric tags grouped into panels by their first word after ``train_``/``val_`` and ``mean_``.

    ``val_mean_dice``, ``val_dice_tc`` and ``train_mean_dice`` share the panel ``dice``. Metrics whose word no
    other metric shares form one panel ``scores`` when all their values lie in [0, 1] (accuracy, F1, ...), and
    keep a panel of their own otherwise.
    """

    def stem(tag: str) -> str:
        name = tag.split("_", 1)[1] if tag.startswith(("train_", "val_")) else tag
        return name[len("mean_") :] if name.startswith("mean_") else name

    words = {tag: stem(tag).split("_", 1)[0] for tag in scalars}
    groups: dict[str, list[str]] = {}
    for tag, word in words.items():
        if list(words.values()).count(word) == 1:
            values = scalars[tag][1]
            word = "scores" if np.all((values >= 0) & (values <= 1)) else stem(tag)
        groups.setdefault(word, []).append(tag)
    return groups


def training_curves(
    folder: str | os.PathLike, output_dir: str | os.PathLike | None = None, title: str | None = None, dpi: float = 100
) -> list[str]:
    """Training and validation curves of a training run, from its TensorBoard event files.

    Tags whose name ends in ``loss`` (``train_loss`` of MONAI's ``TensorBoardStatsHandler``) are drawn per
    iteration with a moving average; all other tags are epoch-level metrics (validation and training key
    metrics), one panel per metric family (Dice, HD95, MRE, SDR, AUC, ...) and one for the other scores in
    [0, 1] (accuracy, F1, ...).

    Args:
        folder: the training output folder (``eval/train``) holding ``events.out.tfevents.*`` files.
        output_dir: where to write ``training_curves.png``. Defaults to None (``folder``).
        title: first line of the figure title, e.g. the data set. Defaults to None.
        dpi: resolution. Defaults to 100.

    Returns:
        the path of ``training_curves.png``.

    Raises:
        ValueError: ``folder`` is not a folder, holds no event files, or they hold no scalars.
    """
    folder = Path(folder).expanduser()
    scalars = _read_scalars(folder)
    losses = [tag for tag in scalars if tag.endswith("loss")]
    groups = _metric_groups({tag: points for tag, points in scalars.items() if tag not in losses})
    panels = len(groups) + (1 if losses else 0)
    ncols = min(3, panels)
    figure, axes = new_figure(math.ceil(panels / ncols), ncols, (4.2, 3.0))
    flat = list(axes.flat)
    for unused in flat[panels:]:
        unused.set_axis_off()
    if losses:
        _draw_losses(flat.pop(0), {tag: scalars[tag] for tag in losses})
    for (group, tags), panel in zip(groups.items(), flat):
        for tag in tags:
            steps, values = scalars[tag]
            style = "--" if tag.startswith("train_") else "-"
            panel.plot(steps, values, marker="o", markersize=3, linestyle=style, label=tag)
        panel.set_title(group, fontsize=10)
        panel.set_xlabel("epoch")
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.legend(fontsize=7)
        panel.grid(alpha=0.3)
    figure.suptitle(figure_title("training curves", title), fontsize=10)
    return [save_figure(figure, Path(output_dir or folder) / "training_curves.png", dpi)]


def _draw_losses(panel: Axes, losses: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """The per-iteration losses, faint, and their moving averages over about a twentieth of the run."""
    for tag, (steps, values) in losses.items():
        (line,) = panel.plot(steps, values, alpha=0.3, linewidth=0.8, label=f"{tag} (per iteration)")
        window = max(1, len(values) // 20)
        if window > 1:
            average = np.convolve(values, np.ones(window) / window, mode="valid")
            panel.plot(steps[window - 1 :], average, color=line.get_color(), label=f"{tag}, mean of {window}")
    panel.set_title("loss", fontsize=10)
    panel.set_xlabel("iteration")
    panel.legend(fontsize=7)
    panel.grid(alpha=0.3)


# kind -> (module, function, help); the task modules are imported only when their kind is asked for
_KINDS = {
    "curves": ("nnmamba_nets.common.pictures", "training_curves", "training output folder -> training_curves.png"),
    "segmentation": (
        "nnmamba_nets.segmentation.pictures",
        "segmentation_overlay",
        "inference output folder + --datalist -> overlay_<case>.png (image, reference, prediction)",
    ),
    "classification": (
        "nnmamba_nets.classification.pictures",
        "classification_pictures",
        "evaluation folder with predictions.csv -> roc_curve.png, confusion_matrix.png",
    ),
    "landmarks": (
        "nnmamba_nets.landmarks.pictures",
        "landmark_views",
        "evaluation folder with landmark_errors.csv -> landmarks_<case>.png",
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nnmamba_nets pictures",
        description="Pictures (PNG) of a bundle run, made from its own outputs; prints the paths it wrote.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="kind")
    for kind, (_, _, help_text) in _KINDS.items():
        sub = kinds.add_parser(kind, help=help_text, description=help_text)
        sub.add_argument("folder", help="the run's output folder to read")
        sub.add_argument("--output_dir", default=None, help="where to write the PNGs (default: the folder)")
        sub.add_argument("--title", default=None, help="first title line of every figure, e.g. the data set")
        sub.add_argument("--dpi", type=float, default=100, help="resolution (default: 100)")
        if kind in ("segmentation", "landmarks"):
            sub.add_argument("--case", default=None, help="the case to show (default: the first)")
    segmentation = kinds.choices["segmentation"]
    segmentation.add_argument("--datalist", required=True, help="datalist JSON with the cases' images and labels")
    segmentation.add_argument("--split", default="test", help="the datalist list of the cases (default: test)")
    segmentation.add_argument("--modality", default="t1c", help="image shown: t1n, t1c, t2w or t2f (default: t1c)")
    kinds.choices["landmarks"].add_argument(
        "--view_mm", type=float, default=60.0, help="width of each view around the true point in mm (default: 60)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nnmamba_nets pictures <kind> <folder> [options]``: write the pictures, print their paths.

    Args:
        argv: the arguments after ``pictures`` (default: ``sys.argv[1:]``).

    Returns:
        0 when the pictures were written, 1 when the inputs are unusable (the message names the file and
        what was expected); usage errors exit with status 2.
    """
    parser = _parser()
    args = vars(parser.parse_args(argv))
    kind = args.pop("kind")
    module, function, _ = _KINDS[kind]
    try:
        paths = getattr(importlib.import_module(module), function)(**args)
    except ValueError as error:
        print(f"{parser.prog} {kind}: error: {error}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0
