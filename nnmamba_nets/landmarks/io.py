"""Read and write named 3D landmarks in the formats 3D Slicer opens, without losing what the files carry.

Formats (picked from the file name by :func:`read_landmarks` / :func:`write_landmarks`):

* ``.mrk.json`` (or ``.json``): Slicer markups JSON, a ``Fiducial`` markup whose ``coordinateSystem`` is ``"LPS"``
  (Slicer's default for files) or ``"RAS"``. Confidences are kept where Slicer keeps measurements: a measurement
  named ``confidence`` whose ``controlPointValues`` hold one value per control point.
* ``.fcsv``: Slicer's fiducial list. The header line ``# CoordinateSystem = LPS`` (or ``RAS``) gives the system;
  Slicer before 4.11 wrote numeric codes (``0`` = RAS, ``1`` = LPS); files without the line are RAS. Recent Slicer
  versions add two fields after ``associatedNodeID``, the position status (0 undefined, 1 preview, 2 defined,
  3 missing) and the auto-created flag.
* ``.csv`` / ``.tsv``: Slicer's control-point table: ``label,l,p,s,defined,...`` (LPS) or ``label,r,a,s,...`` (RAS).

In memory every point is in **RAS** world millimetres, the convention of nibabel affines (and so of MONAI's
``MetaTensor.affine`` when images are read with nibabel). LPS and RAS differ by the sign of the first two axes.
Undefined points (``positionStatus`` other than ``"defined"``, ``defined = 0`` or empty coordinates) are NaN rows.

Nothing a Slicer file carries is lost on a read -> write in the same format: every point keeps its label (the
landmark's identity, e.g. ``"1"``..``"32"`` in the AFIDs protocol), its description (e.g. the anatomical name
``"AC"``), its position and status, and its other Slicer properties (:attr:`Landmarks.properties`); a markups JSON
also keeps its markup-level fields (:attr:`Landmarks.markup`: name, display, other measurements, ...). The
coordinate system of the file read is kept too, and writers use it unless told another. Every writer writes the
whole file to a temporary file and renames it, so no reader sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnmamba_nets.common.files import write_text_atomic

__all__ = [
    "COORDINATE_SYSTEMS",
    "IMAGE_SUFFIXES",
    "LANDMARK_SUFFIXES",
    "POSITION_STATUSES",
    "Landmarks",
    "case_name",
    "convert_coordinate_system",
    "landmark_format",
    "read_fcsv",
    "read_landmarks",
    "read_landmarks_csv",
    "read_markups_json",
    "write_fcsv",
    "write_landmarks",
    "write_landmarks_csv",
    "write_markups_json",
]

COORDINATE_SYSTEMS = ("RAS", "LPS")
POSITION_STATUSES = ("undefined", "preview", "defined", "missing")
"""Slicer's control-point position states, in the order of their ``.fcsv`` codes 0..3."""
MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
_FCSV_COLUMNS = "id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID".split(",")
_FCSV_TRAILING = ("positionStatus", "autoCreated")  # fields recent Slicer writes after the listed columns
_FCSV_LEGACY_CODES = {"0": "RAS", "1": "LPS"}
_FCSV_FLAGS = {"visibility": "vis", "selected": "sel", "locked": "lock"}  # property -> fcsv column
_CSV_FLAGS = {"selected": "selected", "visibility": "visible", "locked": "locked"}  # property -> csv column
_CSV_AXES = {"RAS": ("r", "a", "s"), "LPS": ("l", "p", "s")}
_FLAG_DEFAULTS = {"selected": True, "locked": False, "visibility": True}  # Slicer's defaults
_FCSV_ONLY = ("orientation_wxyz", "autoCreated")  # properties no markups JSON control point has
_JSON_POINT_KEYS = ("label", "description", "position", "positionStatus")  # read into Landmarks fields
_JSON_MARKUP_KEYS = ("type", "coordinateSystem", "controlPoints")  # written from Landmarks fields
_IDENTITY_ORIENTATION = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
_FCSV_DEFAULT_WXYZ = ["0", "0", "0", "1"]  # what Slicer writes for a point never rotated
_LPS_RAS_SIGNS = np.array([-1.0, -1.0, 1.0])
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".nrrd", ".mha", ".mhd")
LANDMARK_SUFFIXES = (".mrk.json", ".json", ".fcsv", ".csv", ".tsv")


@dataclass
class Landmarks:
    """Named points in RAS world coordinates (millimetres), with what a 3D Slicer file keeps beside them.

    Args:
        names: one label per point (Slicer's control-point ``label``; the landmark's identity).
        points: (K, 3) RAS coordinates; a NaN row marks a point whose position is undefined.
        confidence: optional (K,) confidence per point (e.g. a detector's heatmap peak), NaN where unknown.
        descriptions: one description per point (Slicer's ``description``, e.g. an anatomical name).
            Defaults to None: empty descriptions.
        coordinate_system: ``"RAS"`` or ``"LPS"``, the system of the file the points were read from; writers use
            it when not given another. Defaults to None (writers use LPS, Slicer's default).
        properties: per point, the other Slicer control-point properties under their markups JSON names:
            ``id``, ``associatedNodeID`` (str), ``selected``, ``locked``, ``visibility`` (bool), ``orientation``
            (9 floats, row-major 3x3 matrix in RAS), ``positionStatus`` (one of :data:`POSITION_STATUSES`) and any
            further key of a markups JSON control point; from ``.fcsv`` files also ``orientation_wxyz`` (the
            quaternion as in the file) and ``autoCreated``. Writers write those their format has and Slicer's
            defaults for the rest. Defaults to None: no properties.
        markup: the markup-level fields of a markups JSON point list other than its type, coordinate system and
            control points (``name``, ``display``, ``labelFormat``, measurements other than ``confidence``, ...),
            written back by :func:`write_markups_json`. Defaults to None: none.
    """

    names: list[str]
    points: np.ndarray
    confidence: np.ndarray | None = field(default=None)
    descriptions: list[str] | None = field(default=None)
    coordinate_system: str | None = field(default=None)
    properties: list[dict[str, Any]] | None = field(default=None)
    markup: dict[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
        count = len(self.points)
        if len(self.names) != count:
            raise ValueError(f"got {len(self.names)} landmark names for {count} points.")
        if self.confidence is not None:
            self.confidence = np.asarray(self.confidence, dtype=np.float64).reshape(-1)
            if len(self.confidence) != count:
                raise ValueError(f"got {len(self.confidence)} confidences for {count} points.")
        self.descriptions = [""] * count if self.descriptions is None else [str(d) for d in self.descriptions]
        if len(self.descriptions) != count:
            raise ValueError(f"got {len(self.descriptions)} landmark descriptions for {count} points.")
        self.properties = [{} for _ in range(count)] if self.properties is None else [dict(p) for p in self.properties]
        if len(self.properties) != count:
            raise ValueError(f"got {len(self.properties)} property sets for {count} points.")
        if self.coordinate_system is not None and self.coordinate_system not in COORDINATE_SYSTEMS:
            raise ValueError(f"coordinate_system must be one of {COORDINATE_SYSTEMS}, got {self.coordinate_system!r}.")
        self.markup = {} if self.markup is None else dict(self.markup)

    @property
    def defined(self) -> np.ndarray:
        """(K,) bool: whether each point has a position."""
        return np.isfinite(self.points).all(axis=1)

    def select(self, names: Sequence[str], source: str | os.PathLike = "landmarks") -> np.ndarray:
        """The RAS coordinates of exactly ``names``, in that order.

        Args:
            names: the expected landmark labels (the model's channel order).
            source: file (or other description) named in error messages.

        Returns:
            (len(names), 3) float64 RAS coordinates.

        Raises:
            ValueError: when a name is missing or undefined, a label is duplicated, or the file holds other points.
        """
        found = {}
        for index, name in enumerate(self.names):
            if name in found:
                raise ValueError(f"{source}: landmark label {name!r} appears more than once.")
            found[name] = index
        expected = list(names)
        missing = [n for n in expected if n not in found]
        extra = [n for n in self.names if n not in expected]
        if missing or extra:
            raise ValueError(
                f"{source}: expected {len(expected)} landmarks {expected}, found {len(self.names)} {self.names}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {extra}" if extra else "")
                + "."
            )
        points = self.points[[found[n] for n in expected]]
        undefined = [n for n, ok in zip(expected, np.isfinite(points).all(axis=1)) if not ok]
        if undefined:
            raise ValueError(f"{source}: landmarks {undefined} have no defined position.")
        return points


def convert_coordinate_system(points: np.ndarray, source: str, target: str) -> np.ndarray:
    """Convert (..., 3) world points between RAS and LPS (a sign flip of the first two axes).

    Args:
        points: world coordinates in ``source``.
        source: ``"RAS"`` or ``"LPS"``.
        target: ``"RAS"`` or ``"LPS"``.

    Returns:
        float64 array of the same shape in ``target``.

    Raises:
        ValueError: a system is neither RAS nor LPS.
    """
    for system in (source, target):
        if system not in COORDINATE_SYSTEMS:
            raise ValueError(f"coordinate system must be one of {COORDINATE_SYSTEMS}, got {system!r}.")
    points = np.asarray(points, dtype=np.float64)
    return points.copy() if source == target else points * _LPS_RAS_SIGNS


def _convert_orientation(values: Sequence[float], source: str, target: str) -> list[float]:
    """A row-major 3x3 control-point orientation between RAS and LPS (its first two rows change sign).

    The columns of Slicer's orientation matrix are the point's axes in world coordinates, so a change of world
    system multiplies it from the left; Slicer writes RAS's identity as ``[-1, -0, -0, -0, -1, -0, 0, 0, 1]`` in LPS.
    """
    values = [float(v) for v in values]
    return values if source == target else [-v for v in values[:6]] + values[6:]


def case_name(path: str | os.PathLike) -> str:
    """File name without its image or landmark extension (``case_01.nii.gz``, ``case_01.mrk.json`` -> ``case_01``)."""
    name = Path(path).name
    for suffix in sorted(IMAGE_SUFFIXES + LANDMARK_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def landmark_format(path: str | os.PathLike) -> str:
    """``"markups_json"``, ``"fcsv"`` or ``"csv"`` from the file name of ``path``.

    Raises:
        ValueError: the name ends in none of :data:`LANDMARK_SUFFIXES`.
    """
    name = Path(path).name.lower()
    if name.endswith(".json"):
        return "markups_json"
    if name.endswith(".fcsv"):
        return "fcsv"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    raise ValueError(f"{path}: unknown landmark file type; expected .mrk.json, .json, .fcsv, .csv or .tsv.")


def read_landmarks(path: str | os.PathLike) -> Landmarks:
    """Read a Slicer markups JSON, ``.fcsv`` or control-point CSV/TSV file into RAS :class:`Landmarks`."""
    readers = {"markups_json": read_markups_json, "fcsv": read_fcsv, "csv": read_landmarks_csv}
    return readers[landmark_format(path)](path)


def write_landmarks(path: str | os.PathLike, landmarks: Landmarks, coordinate_system: str | None = None) -> None:
    """Write :class:`Landmarks` in the format given by the name of ``path`` (see :func:`landmark_format`).

    Args:
        path: output file; parent folders are created.
        landmarks: points in RAS.
        coordinate_system: ``"LPS"`` or ``"RAS"``, the system used in the file. Defaults to None: the system the
            landmarks were read in, else LPS (Slicer's default for files).
    """
    writers = {"markups_json": write_markups_json, "fcsv": write_fcsv, "csv": write_landmarks_csv}
    writers[landmark_format(path)](path, landmarks, coordinate_system=coordinate_system)


def _check_system(system: object, path: str | os.PathLike) -> str:
    if system not in COORDINATE_SYSTEMS:
        raise ValueError(f"{path}: coordinate system must be one of {COORDINATE_SYSTEMS}, got {system!r}.")
    return str(system)


def _output_system(coordinate_system: str | None, landmarks: Landmarks, path: str | os.PathLike) -> str:
    """The system a writer uses: the one asked for, else the one the landmarks were read in, else LPS."""
    return _check_system(coordinate_system or landmarks.coordinate_system or "LPS", path)


def _float(text: object, path: str | os.PathLike, what: str) -> float:
    if text is None or str(text).strip() == "":
        return math.nan
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {what} must be a number, got {text!r}.") from None


def _flag(text: str, path: str | os.PathLike, what: str) -> bool:
    """A 0/1 (or true/false) table cell as a bool."""
    value = text.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ValueError(f"{path}: {what} must be 0 or 1, got {text!r}.")


def _status(landmarks: Landmarks, index: int) -> str:
    """The Slicer position status of point ``index``: defined when it has a position, else the status read."""
    if landmarks.defined[index]:
        return "defined"
    status = landmarks.properties[index].get("positionStatus")
    return status if status in POSITION_STATUSES and status != "defined" else "undefined"


def _table_text(rows: Sequence[Sequence[object]], delimiter: str = ",", header_lines: Sequence[str] = ()) -> str:
    """The text of a delimited table (quoted like Slicer's files), after optional comment lines."""
    stream = io.StringIO()
    stream.writelines(f"{line}\n" for line in header_lines)
    csv.writer(stream, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return stream.getvalue()


def read_markups_json(path: str | os.PathLike) -> Landmarks:
    """Read the first point-list (``Fiducial``) markup of a Slicer ``.mrk.json`` file.

    Args:
        path: markups JSON file.

    Returns:
        :class:`Landmarks` in RAS with labels, descriptions, the file's coordinate system, the other control-point
        properties and markup fields; the ``confidence`` measurement is read back when present.

    Raises:
        ValueError: naming the file: not JSON, no point list, other units than mm, malformed positions.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}).") from None
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list) or not markups:
        raise ValueError(f"{path}: no 'markups' list; expected a 3D Slicer markups JSON file.")
    point_lists = [m for m in markups if isinstance(m, dict) and m.get("type") == "Fiducial"]
    if not point_lists:
        types = [m.get("type") for m in markups if isinstance(m, dict)]
        raise ValueError(f"{path}: no point list ('Fiducial') markup, found types {types}.")
    markup = point_lists[0]
    system = _check_system(markup.get("coordinateSystem", "LPS"), path)
    units = markup.get("coordinateUnits", "mm")
    if units not in ("mm", ["mm", "UCUM", "millimeter"]):
        raise ValueError(f"{path}: coordinateUnits must be millimetres ('mm'), got {units!r}.")
    names, descriptions, points, properties = [], [], [], []
    for index, control_point in enumerate(markup.get("controlPoints", [])):
        name = str(control_point.get("label", f"{index + 1}"))
        names.append(name)
        descriptions.append(str(control_point.get("description", "")))
        status = control_point.get("positionStatus", "defined")
        if status not in POSITION_STATUSES:
            raise ValueError(f"{path}: control point {name!r} positionStatus must be one of {POSITION_STATUSES}.")
        extra = {k: v for k, v in control_point.items() if k not in _JSON_POINT_KEYS}
        extra["positionStatus"] = status
        if "orientation" in extra:
            orientation = extra["orientation"]
            if not isinstance(orientation, list) or len(orientation) != 9:
                raise ValueError(f"{path}: control point {name!r} orientation must be 9 numbers, got {orientation!r}.")
            extra["orientation"] = _convert_orientation(orientation, system, "RAS")
        properties.append(extra)
        position = control_point.get("position")
        if status != "defined" or position is None:
            points.append([math.nan] * 3)
            continue
        if not isinstance(position, list) or len(position) != 3:
            raise ValueError(f"{path}: control point {name!r} position must be 3 numbers, got {position!r}.")
        points.append([_float(v, path, f"control point {name!r} position") for v in position])
    confidence, measurements = None, []
    for measurement in markup.get("measurements", []):
        if measurement.get("name") == "confidence" and "controlPointValues" in measurement:
            confidence = [_float(v, path, "confidence") for v in measurement["controlPointValues"]]
            if len(confidence) != len(names):
                raise ValueError(f"{path}: {len(confidence)} confidence values for {len(names)} control points.")
        else:
            measurements.append(measurement)
    fields = {k: v for k, v in markup.items() if k not in _JSON_MARKUP_KEYS}
    fields["measurements"] = measurements
    points_array = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return Landmarks(
        names,
        convert_coordinate_system(points_array, system, "RAS"),
        confidence,
        descriptions,
        system,
        properties,
        fields,
    )


def _json_control_point(landmarks: Landmarks, index: int, position: np.ndarray, system: str) -> dict[str, Any]:
    """One markups JSON control point: Slicer's keys in Slicer's order, the point's properties over the defaults."""
    extra = {k: v for k, v in landmarks.properties[index].items() if k not in _FCSV_ONLY}
    status = _status(landmarks, index)
    point = {
        "id": str(extra.pop("id", index + 1)),
        "label": landmarks.names[index],
        "description": landmarks.descriptions[index],
        "associatedNodeID": str(extra.pop("associatedNodeID", "")),
        "position": [float(v) for v in position] if status == "defined" else [0.0, 0.0, 0.0],
        "orientation": _convert_orientation(extra.pop("orientation", _IDENTITY_ORIENTATION), "RAS", system),
    }
    point.update({key: bool(extra.pop(key, default)) for key, default in _FLAG_DEFAULTS.items()})
    extra.pop("positionStatus", None)
    point["positionStatus"] = status
    point.update(extra)  # keys this module does not know, as they were read
    return point


def write_markups_json(
    path: str | os.PathLike,
    landmarks: Landmarks,
    coordinate_system: str | None = None,
    markup_name: str | None = None,
) -> None:
    """Write a Slicer markups JSON point list (``.mrk.json``) that Slicer 4.11+ loads by drag and drop.

    Args:
        path: output file.
        landmarks: points in RAS; undefined (NaN) points are written with their status (``"undefined"`` unless
            read as ``"preview"`` or ``"missing"``). Confidences become the ``confidence`` measurement.
        coordinate_system: system of the positions in the file, ``"LPS"`` or ``"RAS"``. Defaults to None: the
            system the landmarks were read in, else LPS (Slicer's default).
        markup_name: the node name Slicer shows. Defaults to None: the name read with the landmarks, if any
            (Slicer names a point list without one after its file).
    """
    system = _output_system(coordinate_system, landmarks, path)
    positions = convert_coordinate_system(landmarks.points, "RAS", system)
    control_points = [_json_control_point(landmarks, i, p, system) for i, p in enumerate(positions)]
    fields = dict(landmarks.markup)
    measurements = list(fields.pop("measurements", []))
    if landmarks.confidence is not None:
        measurements.append(
            {
                "name": "confidence",
                "enabled": False,
                "units": "",
                "description": "detector confidence per control point (heatmap peak, 0..1)",
                "controlPointValues": [float(v) for v in landmarks.confidence],
            }
        )
    markup = {
        "type": "Fiducial",
        "coordinateSystem": system,
        "coordinateUnits": "mm",
        "locked": False,
        "fixedNumberOfControlPoints": False,
        "labelFormat": "%N-%d",
        "lastUsedControlPointNumber": len(control_points),
    }
    markup.update(fields)
    if markup_name is not None:  # the name given wins over the one read, and comes first, as in Slicer's files
        markup.pop("name", None)
        markup = {"type": "Fiducial", "name": markup_name, **markup}
    markup.update(controlPoints=control_points, measurements=measurements)
    document = {"@schema": MARKUPS_SCHEMA, "markups": [markup]}
    write_text_atomic(path, json.dumps(document, indent=4, allow_nan=False) + "\n")


def _fcsv_header(path: str | os.PathLike, lines: Sequence[str]) -> tuple[str, list[str]]:
    """``(coordinate system, column names)`` from the ``#`` lines of an ``.fcsv`` file."""
    system, columns = "RAS", list(_FCSV_COLUMNS)
    for line in lines:
        key, _, value = line[1:].partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "coordinatesystem":
            system = _check_system(_FCSV_LEGACY_CODES.get(value, value.upper()), path)
        elif key == "columns":
            columns = [c.strip() for c in value.split(",")]
    for required in ("x", "y", "z", "label"):
        if required not in columns:
            raise ValueError(f"{path}: the fcsv columns {columns} lack {required!r}.")
    return system, columns


def _fcsv_point(row: dict[str, str], path: str | os.PathLike) -> tuple[list[float], dict[str, Any]]:
    """(position in the file's system, NaN when undefined; properties) of one ``.fcsv`` row."""
    label = row.get("label", "")
    position = [_float(row.get(axis), path, f"fiducial {label!r} {axis}") for axis in "xyz"]
    properties: dict[str, Any] = {key: row[key] for key in ("id", "associatedNodeID") if key in row}
    for key, column in _FCSV_FLAGS.items():
        if row.get(column, "").strip():
            properties[key] = _flag(row[column], path, f"fiducial {label!r} {column}")
    wxyz = [row.get(column, "").strip() for column in ("ow", "ox", "oy", "oz")]
    if all(wxyz):
        properties["orientation_wxyz"] = [_float(v, path, f"fiducial {label!r} orientation") for v in wxyz]
    if row.get("autoCreated", "").strip():
        properties["autoCreated"] = _flag(row["autoCreated"], path, f"fiducial {label!r} autoCreated")
    code = row.get("positionStatus", "").strip()
    if code:
        if code not in ("0", "1", "2", "3"):
            raise ValueError(f"{path}: fiducial {label!r} position status must be 0..3, got {code!r}.")
        properties["positionStatus"] = POSITION_STATUSES[int(code)]
    elif not all(np.isfinite(position)):
        properties["positionStatus"] = "undefined"
    if properties.get("positionStatus", "defined") != "defined":
        position = [math.nan] * 3
    return position, properties


def read_fcsv(path: str | os.PathLike) -> Landmarks:
    """Read a Slicer ``.fcsv`` fiducial list (any version; RAS when the header names no coordinate system).

    Args:
        path: ``.fcsv`` file.

    Returns:
        :class:`Landmarks` in RAS with labels, descriptions, the file's coordinate system and the other columns
        as properties.

    Raises:
        ValueError: naming the file: missing columns, values that are not numbers or flags.
    """
    with open(path, encoding="utf-8", newline="") as stream:
        lines = stream.read().splitlines()
    system, columns = _fcsv_header(path, [line for line in lines if line.startswith("#")])
    names, descriptions, points, properties = [], [], [], []
    for values in csv.reader(line for line in lines if line.strip() and not line.startswith("#")):
        trailing = list(_FCSV_TRAILING[: max(0, len(values) - len(columns))]) if columns == _FCSV_COLUMNS else []
        row = dict(zip(columns + trailing, values))
        names.append(row.get("label", ""))
        descriptions.append(row.get("desc", ""))
        position, point_properties = _fcsv_point(row, path)
        points.append(position)
        properties.append(point_properties)
    points_array = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return Landmarks(
        names, convert_coordinate_system(points_array, system, "RAS"), None, descriptions, system, properties
    )


def write_fcsv(path: str | os.PathLike, landmarks: Landmarks, coordinate_system: str | None = None) -> None:
    """Write a Slicer ``.fcsv`` fiducial list (version 4.11 header, named coordinate system).

    The file has no place for confidences. The position-status and auto-created fields of recent Slicer versions
    are added when a point is undefined (its coordinates are then written as 0, as Slicer does) or when the
    landmarks were read from a file that had them.

    Args:
        path: output file.
        landmarks: points in RAS.
        coordinate_system: ``"LPS"`` or ``"RAS"``. Defaults to None: the system the landmarks were read in, else
            LPS.
    """
    system = _output_system(coordinate_system, landmarks, path)
    positions = convert_coordinate_system(landmarks.points, "RAS", system)
    with_status = not landmarks.defined.all() or any("autoCreated" in p for p in landmarks.properties)
    rows = []
    for index, (name, position, properties) in enumerate(zip(landmarks.names, positions, landmarks.properties)):
        status = _status(landmarks, index)
        wxyz = properties.get("orientation_wxyz")
        row = [
            properties.get("id", f"vtkMRMLMarkupsFiducialNode_{index}"),
            *([repr(float(v)) for v in position] if status == "defined" else ["0", "0", "0"]),
            *([repr(float(v)) for v in wxyz] if wxyz is not None else _FCSV_DEFAULT_WXYZ),
            *(int(bool(properties.get(key, _FLAG_DEFAULTS[key]))) for key in _FCSV_FLAGS),
            name,
            landmarks.descriptions[index],
            properties.get("associatedNodeID", ""),
        ]
        if with_status:
            row += [POSITION_STATUSES.index(status), int(bool(properties.get("autoCreated", False)))]
        rows.append(row)
    header = [
        "# Markups fiducial file version = 4.11",
        f"# CoordinateSystem = {system}",
        f"# columns = {','.join(_FCSV_COLUMNS)}",
    ]
    write_text_atomic(path, _table_text(rows, header_lines=header))


def read_landmarks_csv(path: str | os.PathLike) -> Landmarks:
    """Read a Slicer control-point table (``label`` and ``l,p,s`` or ``r,a,s`` columns; comma or tab separated).

    Args:
        path: ``.csv`` or ``.tsv`` file.

    Returns:
        :class:`Landmarks` in RAS with labels, descriptions, the table's coordinate system and the ``selected``,
        ``visible``, ``locked`` flags; a ``defined`` column equal to 0 marks undefined points and a ``confidence``
        column is read back when present.

    Raises:
        ValueError: naming the file: no label or coordinate columns, values that are not numbers or flags.
    """
    delimiter = "\t" if str(path).lower().endswith(".tsv") else ","
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream, delimiter=delimiter)
        header = [c.strip().lower() for c in reader.fieldnames or []]
        rows = [{k.strip().lower(): v or "" for k, v in row.items() if k is not None} for row in reader]
    systems = [s for s, axes in _CSV_AXES.items() if all(a in header for a in axes)]
    if "label" not in header or len(systems) != 1:
        raise ValueError(
            f"{path}: expected a header with 'label' and either 'l,p,s' (LPS) or 'r,a,s' (RAS) columns, got {header}."
        )
    system = systems[0]
    names, descriptions, points, confidence, properties = [], [], [], [], []
    for row in rows:
        label = row["label"]
        names.append(label)
        descriptions.append(row.get("description", ""))
        defined = _flag(row["defined"], path, f"landmark {label!r} defined") if row.get("defined", "").strip() else True
        coordinates = [_float(row[a], path, f"landmark {label!r} {a}") for a in _CSV_AXES[system]]
        points.append(coordinates if defined else [math.nan] * 3)
        confidence.append(_float(row.get("confidence", ""), path, "confidence"))
        properties.append(
            {
                key: _flag(row[column], path, f"landmark {label!r} {column}")
                for key, column in _CSV_FLAGS.items()
                if row.get(column, "").strip()
            }
        )
    points_array = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return Landmarks(
        names,
        convert_coordinate_system(points_array, system, "RAS"),
        confidence if "confidence" in header else None,
        descriptions,
        system,
        properties,
    )


def write_landmarks_csv(path: str | os.PathLike, landmarks: Landmarks, coordinate_system: str | None = None) -> None:
    """Write a Slicer control-point table (``label,l,p,s,defined,selected,visible,locked,description``).

    Args:
        path: output ``.csv`` (comma) or ``.tsv`` (tab) file.
        landmarks: points in RAS (undefined points get empty coordinates); a ``confidence`` column is added when
            they carry confidences.
        coordinate_system: ``"LPS"`` (columns ``l,p,s``) or ``"RAS"`` (columns ``r,a,s``). Defaults to None: the
            system the landmarks were read in, else LPS.
    """
    system = _output_system(coordinate_system, landmarks, path)
    positions = convert_coordinate_system(landmarks.points, "RAS", system)
    header = ["label", *_CSV_AXES[system], "defined", *_CSV_FLAGS.values(), "description"]
    if landmarks.confidence is not None:
        header.append("confidence")
    rows: list[list[object]] = [header]
    for index, (name, position, defined) in enumerate(zip(landmarks.names, positions, landmarks.defined)):
        flags = [int(bool(landmarks.properties[index].get(key, _FLAG_DEFAULTS[key]))) for key in _CSV_FLAGS]
        coordinates = [repr(float(v)) for v in position] if defined else ["", "", ""]
        row = [name, *coordinates, int(defined), *flags, landmarks.descriptions[index]]
        if landmarks.confidence is not None:
            row.append(repr(float(landmarks.confidence[index])))
        rows.append(row)
    write_text_atomic(path, _table_text(rows, delimiter="\t" if str(path).lower().endswith(".tsv") else ","))
