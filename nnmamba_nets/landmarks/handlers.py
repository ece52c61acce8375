"""Ignite handlers that write landmark predictions: Slicer files per case, CSV tables, an error report.

Both read the decollated ``engine.state.batch`` (file names, true landmarks) and ``engine.state.output``
(predictions) of a MONAI evaluator whose post-processing ran
:class:`~nnmamba_nets.landmarks.transforms.DecodeLandmarksd`. Each case's Slicer files are written as soon as
the case is done; the tables are written whole when the run completes. Every file goes through a temporary
file and a rename, so no reader ever sees half a file. They are meant for single-process runs (inference and
evaluation); under DDP attach them on rank 0 only and give that rank the whole dataset.

Ours because MONAI's savers know no landmark: ``MetricsSaver`` writes the per-case error matrix (columns
``class0..``) and its summary (no success detection rate), and no MONAI writer makes Slicer markups.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import torch
from monai.utils import min_version, optional_import

from nnmamba_nets.common.files import write_text_atomic
from nnmamba_nets.landmarks.io import (
    LANDMARK_SUFFIXES,
    Landmarks,
    case_name,
    convert_coordinate_system,
    write_landmarks,
)
from nnmamba_nets.landmarks.metrics import SDR_THRESHOLDS_MM, radial_errors, summarize_radial_errors

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["LandmarkErrorReport", "LandmarkWriter", "case_name_of"]

_AXES = {"RAS": ("r", "a", "s"), "LPS": ("l", "p", "s")}


def case_name_of(item: dict, image_key: str = "image", name_key: str | None = None) -> tuple[str, str]:
    """``(image file, case name)`` of one decollated item.

    Args:
        item: one case of ``engine.state.batch``.
        image_key: key of the input image, whose ``filename_or_obj`` metadata names the file.
        name_key: key of the input file name, used first when given.

    Returns:
        the file and its name without the image extension.
    """
    source = str(item.get(name_key) or "") if name_key is not None else ""
    if not source:
        meta = getattr(item.get(image_key), "meta", None) or {}
        source = str(meta.get("filename_or_obj", ""))
    if not source:
        raise ValueError(
            f"cannot name the case: no {name_key!r} and no {image_key!r} file name metadata; keys: {list(item)}."
        )
    return source, case_name(source)


def _write_table(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Write a whole CSV table atomically (a temporary file in the same folder, then a rename)."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, stream.getvalue())


def _format(value: float) -> str:
    return f"{value:.4f}"


def _cell(value: object, float_format: str) -> str:
    """A summary-table cell: text and counts as they are, floats with ``float_format``."""
    return float_format.format(value) if isinstance(value, float) else str(value)


def _cases(engine: Engine) -> list[tuple[dict, dict]]:
    """``(batch item, output item)`` pairs of the current iteration."""
    batch, output = engine.state.batch, engine.state.output
    if not isinstance(batch, list) or not isinstance(output, list):
        raise TypeError("landmark handlers need decollated batches: create the evaluator with decollate=True.")
    return list(zip(batch, output))


class LandmarkWriter:
    """Write each predicted case as 3D Slicer landmark files (``<case>.mrk.json``, ...) and one row of a CSV table.

    The files carry the landmark names as labels and their descriptions; a markups JSON also the confidences
    (its ``confidence`` measurement). Table columns: ``image``, ``case``, per landmark its three coordinates
    (``<name>_l``, ``_p``, ``_s`` in LPS or ``_r``, ``_a``, ``_s`` in RAS) and ``<name>_confidence``. Two inputs
    with the same file name (from different folders) are written as ``<case>`` and ``<case>_2``. Inputs that
    cannot be trusted are rejected before the network (:func:`nnmamba_nets.common.inference.partition_inputs`),
    so every case here has a prediction.

    Args:
        output_dir: output folder.
        names: landmark names in channel order.
        descriptions: one description per name (e.g. the anatomical names of the training files).
            Defaults to None (empty descriptions).
        pred_key: prefix of the decoded keys (``<pred_key>_landmarks`` world RAS coordinates and
            ``<pred_key>_confidence``). Defaults to ``"pred"``.
        image_key: key of the input image (for its file name metadata). Defaults to ``"image"``.
        name_key: key of the input file name, used before the image metadata. Defaults to None.
        coordinate_system: ``"LPS"`` (Slicer's file default) or ``"RAS"`` for the JSON and the CSV.
            Defaults to ``"LPS"``.
        csv_name: name of the CSV table in ``output_dir``. Defaults to ``"landmarks.csv"``.
        heatmap_key: when set, key of (K, d, h, w) heatmaps to save as ``<case>_heatmaps.nii.gz`` (4D, one volume
            per landmark, on the network input grid). Defaults to None (not saved).
        affine_key: output key of the network input image (``MetaTensor``) or its (4, 4) affine, for the heatmap
            files. Defaults to ``"image"``.
        formats: the Slicer files written per case, by suffix: any of ``.mrk.json``, ``.fcsv`` and ``.csv``
            (a ``.fcsv`` has no place for confidences). Defaults to ``(".mrk.json",)``.

    Raises:
        ValueError: an unknown coordinate system or file suffix, no suffix, or not one description per name.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        names: Sequence[str],
        descriptions: Sequence[str] | None = None,
        pred_key: str = "pred",
        image_key: str = "image",
        name_key: str | None = None,
        coordinate_system: str = "LPS",
        csv_name: str = "landmarks.csv",
        heatmap_key: str | None = None,
        affine_key: str = "image",
        formats: Sequence[str] = (".mrk.json",),
    ) -> None:
        if coordinate_system not in _AXES:
            raise ValueError(f"coordinate_system must be one of {tuple(_AXES)}, got {coordinate_system!r}.")
        self.formats = [formats] if isinstance(formats, str) else list(formats)
        if not self.formats or any(suffix not in LANDMARK_SUFFIXES for suffix in self.formats):
            raise ValueError(f"formats must be one or more of {LANDMARK_SUFFIXES}, got {formats!r}.")
        self.output_dir = Path(output_dir)
        self.names = list(names)
        self.descriptions = [""] * len(self.names) if descriptions is None else [str(d) for d in descriptions]
        if len(self.descriptions) != len(self.names):
            raise ValueError(f"got {len(self.descriptions)} descriptions for the landmark names {self.names}.")
        self.pred_key = pred_key
        self.image_key = image_key
        self.name_key = name_key
        self.coordinate_system = coordinate_system
        self.csv_name = csv_name
        self.heatmap_key = heatmap_key
        self.affine_key = affine_key
        self.rows: list[list[object]] = []
        self.written: set[str] = set()
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        """Start when the run starts, write every case at the end of its iteration and the table at the end."""
        engine.add_event_handler(Events.STARTED, self.start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write_table)

    def start(self, engine: Engine | None = None) -> None:
        """Forget the cases of an earlier run (a case named like the table is never written over it)."""
        self.rows = []
        self.written = {self.csv_name[: -len(s)] for s in self.formats if self.csv_name.endswith(s)}

    def write_table(self, engine: Engine | None = None) -> None:
        """Write the CSV table of all cases of the run."""
        header = ["image", "case"]
        for name in self.names:
            header += [f"{name}_{axis}" for axis in _AXES[self.coordinate_system]] + [f"{name}_confidence"]
        _write_table(self.output_dir / self.csv_name, header, self.rows)

    def _unique(self, case: str, source: str) -> str:
        """``case``, or ``case_<n>`` when an earlier input of this run had the same name (never overwrite it)."""
        unique, number = case, 1
        while unique in self.written:
            number += 1
            unique = f"{case}_{number}"
        if unique != case:
            self.logger.warning("%s: another input is also named %r; writing it as %r", source, case, unique)
        self.written.add(unique)
        return unique

    def _write_case(self, item: dict, source: str, case: str) -> list[object]:
        """Write one predicted case (an output item) and return its CSV row."""
        points = item[f"{self.pred_key}_landmarks"].detach().cpu().double().numpy()
        confidence = item[f"{self.pred_key}_confidence"].detach().cpu().double().numpy()
        if points.shape != (len(self.names), 3):
            raise ValueError(f"{source}: expected {len(self.names)} predicted landmarks, got shape {points.shape}.")
        landmarks = Landmarks(self.names, points, confidence, self.descriptions, markup={"name": case})
        files = [self.output_dir / f"{case}{suffix}" for suffix in self.formats]
        for landmark_file in files:
            write_landmarks(landmark_file, landmarks, self.coordinate_system)
        if self.heatmap_key is not None:
            affine = item[self.affine_key]
            affine = getattr(affine, "affine", affine).detach().cpu().double().numpy()
            heatmaps = item[self.heatmap_key].detach().cpu().float().numpy()
            heatmap_file = self.output_dir / f"{case}_heatmaps.nii.gz"
            partial = heatmap_file.with_name(f".tmp-{os.getpid()}-{heatmap_file.name}")
            nib.save(nib.Nifti1Image(np.moveaxis(heatmaps, 0, -1), affine), partial)
            os.replace(partial, heatmap_file)
        self.logger.info("%s: wrote %s", case, ", ".join(str(f) for f in files))
        row: list[object] = [source, case]
        for position, value in zip(convert_coordinate_system(points, "RAS", self.coordinate_system), confidence):
            row += [_format(v) for v in position] + [_format(value)]
        return row

    def __call__(self, engine: Engine) -> None:
        """Write the cases of the current iteration."""
        for batch_item, output_item in _cases(engine):
            source, case = case_name_of(batch_item, self.image_key, self.name_key)
            self.rows.append(self._write_case(output_item, source, self._unique(case, source)))


class LandmarkErrorReport:
    """Per-case, per-landmark radial errors to CSV, and a summary (MRE, SD, median, max, SDR) per landmark.

    Files in ``output_dir``, written when the run completes: ``landmark_errors.csv`` (one row per case and
    landmark: its name and description, true and predicted RAS coordinates, error in mm, confidence),
    ``landmark_summary.csv`` (one row per landmark name, then ``all``: description, n, MRE, SD, median, max and
    the SDR at every threshold; also logged as a table) and ``landmark_summary.json`` (the same rows, unrounded).

    Args:
        output_dir: output folder.
        names: landmark names in channel order.
        descriptions: one description per name. Defaults to None (empty descriptions).
        pred_key: prefix of the decoded keys (``<pred_key>_landmarks``, ``<pred_key>_confidence``).
            Defaults to ``"pred"``.
        label_key: batch key of the true (K, 3) world RAS landmarks. Defaults to ``"landmarks"``.
        image_key: key of the input image (for the file name). Defaults to ``"image"``.
        thresholds: SDR thresholds in mm. Defaults to 2, 2.5, 3 and 4.

    Raises:
        ValueError: not one description per name.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        names: Sequence[str],
        descriptions: Sequence[str] | None = None,
        pred_key: str = "pred",
        label_key: str = "landmarks",
        image_key: str = "image",
        thresholds: Sequence[float] = SDR_THRESHOLDS_MM,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.names = list(names)
        self.descriptions = [""] * len(self.names) if descriptions is None else [str(d) for d in descriptions]
        if len(self.descriptions) != len(self.names):
            raise ValueError(f"got {len(self.descriptions)} descriptions for the landmark names {self.names}.")
        self.pred_key = pred_key
        self.label_key = label_key
        self.image_key = image_key
        self.thresholds = tuple(thresholds)
        self.errors: list[torch.Tensor] = []
        self.rows: list[list[object]] = []
        self.summary: list[dict] = []
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        """Reset at the start, record every iteration, summarise at the end of the run."""
        engine.add_event_handler(Events.STARTED, self.start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write_summary)

    def start(self, engine: Engine | None = None) -> None:
        """Forget the cases of an earlier run."""
        self.errors = []
        self.rows = []

    def __call__(self, engine: Engine) -> None:
        """Record the errors of the cases of the current iteration."""
        for batch_item, output_item in _cases(engine):
            source, case = case_name_of(batch_item, self.image_key)
            predicted = output_item[f"{self.pred_key}_landmarks"].detach().cpu().double()
            target = torch.as_tensor(batch_item[self.label_key]).detach().cpu().double()
            confidence = output_item[f"{self.pred_key}_confidence"].detach().cpu().double()
            errors = radial_errors(predicted, target)
            if errors.shape != (len(self.names),):
                raise ValueError(
                    f"{source}: expected {len(self.names)} landmarks, got errors of shape {tuple(errors.shape)}."
                )
            self.errors.append(errors)
            landmarks = zip(self.names, self.descriptions, target, predicted, errors, confidence)
            for name, description, true_point, point, error, value in landmarks:
                self.rows.append(
                    [
                        source,
                        case,
                        name,
                        description,
                        *map(_format, true_point.tolist()),
                        *map(_format, point.tolist()),
                        _format(float(error)),
                        _format(float(value)),
                    ]
                )

    def write_summary(self, engine: Engine | None = None) -> list[dict]:
        """Write ``landmark_errors.csv``, ``landmark_summary.csv`` and ``.json``, log the summary, return its rows.

        Raises:
            ValueError: no case was seen.
        """
        if not self.errors:
            raise ValueError("LandmarkErrorReport saw no cases; nothing to summarise.")
        header = ["image", "case", "landmark", "description", "true_r", "true_a", "true_s", "pred_r", "pred_a"]
        _write_table(self.output_dir / "landmark_errors.csv", header + ["pred_s", "error_mm", "confidence"], self.rows)
        self.summary = summarize_radial_errors(
            torch.stack(self.errors), self.names, self.thresholds, descriptions=self.descriptions
        )
        header = list(self.summary[0])
        _write_table(
            self.output_dir / "landmark_summary.csv",
            header,
            [[_cell(row[k], "{:.4g}") for k in header] for row in self.summary],
        )
        rows = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in self.summary]
        write_text_atomic(self.output_dir / "landmark_summary.json", json.dumps(rows, indent=1) + "\n")
        widths = [max(9, len(h), *(len(_cell(row[h], "{:.3f}")) for row in self.summary)) for h in header]
        lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
        for row in self.summary:
            lines.append("  ".join(_cell(row[k], "{:.3f}").rjust(w) for k, w in zip(header, widths)))
        self.logger.info(
            "landmark errors over %d cases (mm; SDR = fraction within the threshold):\n%s",
            len(self.errors),
            "\n".join(lines),
        )
        return self.summary
