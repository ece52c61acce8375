"""Read and write named 3D landmarks in the formats 3D Slicer opens.

Formats (picked from the file name by :func:`read_landmarks` / :func:`write_landmarks`):

* ``.mrk.json`` (or ``.json``): Slicer markups JSON, a ``Fiducial`` markup whose ``coordinateSystem`` is ``"LPS"``
  (Slicer's default for files) or ``"RAS"``. Confidences are stored as a measurement named ``confidence`` whose
  ``controlPointValues`` hold one value per control point (and repeated in each point's description for the eye).
* ``.fcsv``: Slicer's older fiducial list. The header line ``# CoordinateSystem = LPS`` (or ``RAS``) gives the
  system; Slicer before 4.11 wrote numeric codes (``0`` = RAS, ``1`` = LPS); files without the line are RAS.
* ``.csv`` / ``.tsv``: Slicer's control-point table: ``label,l,p,s,defined,...`` (LPS) or ``label,r,a,s,...`` (RAS).

In memory every point is in **RAS** world millimetres, the convention of nibabel affines (and so of MONAI's
``MetaTensor.affine`` when images are read with nibabel). LPS and RAS differ by the sign of the first two axes.
Undefined points (``positionStatus`` ``"undefined"``, ``defined = 0`` or empty coordinates) are kept as NaN rows.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "COORDINATE_SYSTEMS",
    "IMAGE_SUFFIXES",
    "LANDMARK_SUFFIXES",
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
MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
_FCSV_COLUMNS = "id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"
_FCSV_LEGACY_CODES = {"0": "RAS", "1": "LPS"}
_CSV_AXES = {"RAS": ("r", "a", "s"), "LPS": ("l", "p", "s")}
_LPS_RAS_SIGNS = np.array([-1.0, -1.0, 1.0])
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".nrrd", ".mha", ".mhd")
LANDMARK_SUFFIXES = (".mrk.json", ".json", ".fcsv", ".csv", ".tsv")


@dataclass
class Landmarks:
    """Named points in RAS world coordinates (millimetres).

    Args:
        names: one label per point.
        points: (K, 3) RAS coordinates; a NaN row marks a point whose position is undefined.
        confidence: optional (K,) confidence per point (e.g. a detector's heatmap peak), NaN where unknown.
    """

    names: list[str]
    points: np.ndarray
    confidence: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
        if len(self.names) != len(self.points):
            raise ValueError(f"got {len(self.names)} landmark names for {len(self.points)} points.")
        if self.confidence is not None:
            self.confidence = np.asarray(self.confidence, dtype=np.float64).reshape(-1)
            if len(self.confidence) != len(self.points):
                raise ValueError(f"got {len(self.confidence)} confidences for {len(self.points)} points.")

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
    """
    for system in (source, target):
        if system not in COORDINATE_SYSTEMS:
            raise ValueError(f"coordinate system must be one of {COORDINATE_SYSTEMS}, got {system!r}.")
    points = np.asarray(points, dtype=np.float64)
    return points.copy() if source == target else points * _LPS_RAS_SIGNS


def case_name(path: str | os.PathLike) -> str:
    """File name without its image or landmark extension (``case_01.nii.gz``, ``case_01.mrk.json`` -> ``case_01``)."""
    name = Path(path).name
    for suffix in sorted(IMAGE_SUFFIXES + LANDMARK_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def landmark_format(path: str | os.PathLike) -> str:
    """``"markups_json"``, ``"fcsv"`` or ``"csv"`` from the file name of ``path``."""
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


def write_landmarks(path: str | os.PathLike, landmarks: Landmarks, coordinate_system: str = "LPS") -> None:
    """Write :class:`Landmarks` in the format given by the name of ``path`` (see :func:`landmark_format`).

    Args:
        path: output file; parent folders are created.
        landmarks: points in RAS.
        coordinate_system: ``"LPS"`` (Slicer's default for files) or ``"RAS"``, the system used in the file.
    """
    writers = {"markups_json": write_markups_json, "fcsv": write_fcsv, "csv": write_landmarks_csv}
    writers[landmark_format(path)](path, landmarks, coordinate_system=coordinate_system)


def _check_system(system: object, path: str | os.PathLike) -> str:
    if system not in COORDINATE_SYSTEMS:
        raise ValueError(f"{path}: coordinate system must be one of {COORDINATE_SYSTEMS}, got {system!r}.")
    return str(system)


def _prepare_output(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _float(text: str, path: str | os.PathLike, what: str) -> float:
    if text is None or str(text).strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}: {what} must be a number, got {text!r}.") from None


def read_markups_json(path: str | os.PathLike) -> Landmarks:
    """Read the control points of the first point-list (``Fiducial``) markup of a Slicer ``.mrk.json`` file.

    Args:
        path: markups JSON file.

    Returns:
        :class:`Landmarks` in RAS; the ``confidence`` measurement is read back when present.
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
    names, points = [], []
    for index, control_point in enumerate(markup.get("controlPoints", [])):
        names.append(str(control_point.get("label", f"{index + 1}")))
        position = control_point.get("position")
        status = control_point.get("positionStatus", "defined")
        if status != "defined" or position is None:
            points.append([math.nan] * 3)
            continue
        if not isinstance(position, list) or len(position) != 3:
            raise ValueError(f"{path}: control point {names[-1]!r} position must be 3 numbers, got {position!r}.")
        points.append([_float(v, path, f"control point {names[-1]!r} position") for v in position])
    confidence = None
    for measurement in markup.get("measurements", []):
        if measurement.get("name") == "confidence" and "controlPointValues" in measurement:
            confidence = [_float(v, path, "confidence") for v in measurement["controlPointValues"]]
            if len(confidence) != len(names):
                raise ValueError(f"{path}: {len(confidence)} confidence values for {len(names)} control points.")
    points_array = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return Landmarks(names, convert_coordinate_system(points_array, system, "RAS"), confidence)


def write_markups_json(
    path: str | os.PathLike,
    landmarks: Landmarks,
    coordinate_system: str = "LPS",
    markup_name: str = "landmarks",
) -> None:
    """Write a Slicer markups JSON point list (``.mrk.json``) that Slicer 4.11+ loads by drag and drop.

    Args:
        path: output file.
        landmarks: points in RAS; undefined (NaN) points are written with ``positionStatus`` ``"undefined"``.
        coordinate_system: system of the positions in the file, ``"LPS"`` (Slicer's default) or ``"RAS"``.
        markup_name: the node name Slicer shows.
    """
    system = _check_system(coordinate_system, path)
    positions = convert_coordinate_system(landmarks.points, "RAS", system)
    control_points = []
    for index, (name, position, defined) in enumerate(zip(landmarks.names, positions, landmarks.defined)):
        point = {
            "id": str(index + 1),
            "label": name,
            "description": "",
            "associatedNodeID": "",
            "position": [float(v) for v in position] if defined else [0.0, 0.0, 0.0],
            "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
            "selected": True,
            "locked": False,
            "visibility": True,
            "positionStatus": "defined" if defined else "undefined",
        }
        if landmarks.confidence is not None:
            point["description"] = f"confidence={landmarks.confidence[index]:.4f}"
        control_points.append(point)
    markup = {
        "type": "Fiducial",
        "name": markup_name,
        "coordinateSystem": system,
        "coordinateUnits": "mm",
        "locked": False,
        "fixedNumberOfControlPoints": False,
        "labelFormat": "%N-%d",
        "lastUsedControlPointNumber": len(control_points),
        "controlPoints": control_points,
        "measurements": [],
    }
    if landmarks.confidence is not None:
        markup["measurements"].append(
            {
                "name": "confidence",
                "enabled": False,
                "units": "",
                "description": "detector confidence per control point (heatmap peak, 0..1)",
                "controlPointValues": [float(v) for v in landmarks.confidence],
            }
        )
    document = {"@schema": MARKUPS_SCHEMA, "markups": [markup]}
    with open(_prepare_output(path), "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=4, allow_nan=False)


def read_fcsv(path: str | os.PathLike) -> Landmarks:
    """Read a Slicer ``.fcsv`` fiducial list (any version; RAS when the header names no coordinate system).

    Args:
        path: ``.fcsv`` file.

    Returns:
        :class:`Landmarks` in RAS.
    """
    system = "RAS"
    columns = _FCSV_COLUMNS.split(",")
    rows = []
    with open(path, encoding="utf-8", newline="") as stream:
        lines = stream.read().splitlines()
    body = []
    for line in lines:
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            key, value = key.strip().lower(), value.strip()
            if key == "coordinatesystem":
                system = _check_system(_FCSV_LEGACY_CODES.get(value, value.upper()), path)
            elif key == "columns":
                columns = [c.strip() for c in value.split(",")]
        elif line.strip():
            body.append(line)
    for values in csv.reader(body):
        rows.append(dict(zip(columns, values)))
    for required in ("x", "y", "z", "label"):
        if required not in columns:
            raise ValueError(f"{path}: the fcsv columns {columns} lack {required!r}.")
    names = [row.get("label", "") for row in rows]
    points = np.asarray(
        [[_float(row.get(axis), path, f"fiducial {row.get('label')!r} {axis}") for axis in "xyz"] for row in rows],
        dtype=np.float64,
    ).reshape(-1, 3)
    return Landmarks(names, convert_coordinate_system(points, system, "RAS"))


def write_fcsv(path: str | os.PathLike, landmarks: Landmarks, coordinate_system: str = "LPS") -> None:
    """Write a Slicer ``.fcsv`` fiducial list (version 4.11 header, named coordinate system).

    Args:
        path: output file.
        landmarks: points in RAS; undefined points are written with empty coordinates.
        coordinate_system: ``"LPS"`` or ``"RAS"``.
    """
    system = _check_system(coordinate_system, path)
    positions = convert_coordinate_system(landmarks.points, "RAS", system)
    with open(_prepare_output(path), "w", encoding="utf-8", newline="") as stream:
        stream.write("# Markups fiducial file version = 4.11\n")
        stream.write(f"# CoordinateSystem = {system}\n")
        stream.write(f"# columns = {_FCSV_COLUMNS}\n")
        writer = csv.writer(stream, lineterminator="\n")
        for index, (name, position, defined) in enumerate(zip(landmarks.names, positions, landmarks.defined)):
            coordinates = [repr(float(v)) for v in position] if defined else ["", "", ""]
            writer.writerow([f"vtkMRMLMarkupsFiducialNode_{index}", *coordinates, 0, 0, 0, 1, 1, 1, 0, name, "", ""])


def read_landmarks_csv(path: str | os.PathLike) -> Landmarks:
    """Read a Slicer control-point table (``label`` and ``l,p,s`` or ``r,a,s`` columns; comma or tab separated).

    Args:
        path: ``.csv`` or ``.tsv`` file.

    Returns:
        :class:`Landmarks` in RAS; a ``defined`` column equal to 0 marks undefined points and a ``confidence``
        column is read back when present.
    """
    delimiter = "\t" if str(path).lower().endswith(".tsv") else ","
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream, delimiter=delimiter)
        header = [c.strip().lower() for c in reader.fieldnames or []]
        rows = list(reader)
    rows = [{k.strip().lower(): v for k, v in row.items() if k is not None} for row in rows]
    systems = [s for s, axes in _CSV_AXES.items() if all(a in header for a in axes)]
    if "label" not in header or len(systems) != 1:
        raise ValueError(
            f"{path}: expected a header with 'label' and either 'l,p,s' (LPS) or 'r,a,s' (RAS) columns, got {header}."
        )
    system = systems[0]
    names, points, confidence = [], [], []
    for row in rows:
        names.append(row["label"])
        defined = row.get("defined", "1").strip() not in ("0", "false", "False")
        coordinates = [_float(row[a], path, f"landmark {row['label']!r} {a}") for a in _CSV_AXES[system]]
        points.append(coordinates if defined else [math.nan] * 3)
        confidence.append(_float(row.get("confidence", ""), path, "confidence"))
    points_array = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    has_confidence = "confidence" in header
    return Landmarks(
        names, convert_coordinate_system(points_array, system, "RAS"), confidence if has_confidence else None
    )


def write_landmarks_csv(path: str | os.PathLike, landmarks: Landmarks, coordinate_system: str = "LPS") -> None:
    """Write a Slicer control-point table (``label,l,p,s,defined,selected,visible,locked,description``).

    Args:
        path: output ``.csv`` (comma) or ``.tsv`` (tab) file.
        landmarks: points in RAS; a ``confidence`` column is added when they carry confidences.
        coordinate_system: ``"LPS"`` (columns ``l,p,s``) or ``"RAS"`` (columns ``r,a,s``).
    """
    system = _check_system(coordinate_system, path)
    positions = convert_coordinate_system(landmarks.points, "RAS", system)
    delimiter = "\t" if str(path).lower().endswith(".tsv") else ","
    header = ["label", *_CSV_AXES[system], "defined", "selected", "visible", "locked", "description"]
    if landmarks.confidence is not None:
        header.append("confidence")
    with open(_prepare_output(path), "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        for index, (name, position, defined) in enumerate(zip(landmarks.names, positions, landmarks.defined)):
            coordinates = [repr(float(v)) for v in position] if defined else ["", "", ""]
            row = [name, *coordinates, int(defined), 1, 1, 0, ""]
            if landmarks.confidence is not None:
                row.append(repr(float(landmarks.confidence[index])))
            writer.writerow(row)
