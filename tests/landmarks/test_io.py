"""Landmark files: Slicer markups JSON, .fcsv and control-point CSV, with RAS/LPS handling."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nnmamba_nets.landmarks.io import (
    MARKUPS_SCHEMA,
    Landmarks,
    convert_coordinate_system,
    read_fcsv,
    read_landmarks,
    read_landmarks_csv,
    read_markups_json,
    write_landmarks,
)

NAMES = ["TCD_start", "TCD_end", "HDV_start"]
POINTS_RAS = np.array([[12.5, -30.25, 4.0], [-17.125, -28.0, 3.5], [0.3333333333333333, -25.0, 14.75]])
FORMATS = ["case.mrk.json", "case.fcsv", "case.csv", "case.tsv"]


def sample(confidence: bool = False) -> Landmarks:
    return Landmarks(NAMES, POINTS_RAS, np.array([0.9, 0.5, 0.25]) if confidence else None)


@pytest.mark.parametrize("file_name", FORMATS)
@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_round_trip_is_exact(tmp_path, file_name, system):
    path = tmp_path / file_name
    write_landmarks(path, sample(), coordinate_system=system)
    loaded = read_landmarks(path)
    assert loaded.names == NAMES
    np.testing.assert_array_equal(loaded.points, POINTS_RAS)


@pytest.mark.parametrize("file_name", ["case.mrk.json", "case.csv"])
def test_confidence_round_trip(tmp_path, file_name):
    write_landmarks(tmp_path / file_name, sample(confidence=True))
    np.testing.assert_array_equal(read_landmarks(tmp_path / file_name).confidence, [0.9, 0.5, 0.25])


def test_markups_json_stores_lps_positions_like_slicer(tmp_path):
    path = tmp_path / "case.mrk.json"
    write_landmarks(path, sample(confidence=True), coordinate_system="LPS")
    document = json.loads(path.read_text())
    assert document["@schema"].endswith("markups-schema-v1.0.3.json#")
    markup = document["markups"][0]
    assert markup["type"] == "Fiducial" and markup["coordinateSystem"] == "LPS" and markup["coordinateUnits"] == "mm"
    positions = np.array([point["position"] for point in markup["controlPoints"]])
    np.testing.assert_array_equal(positions, POINTS_RAS * [-1, -1, 1])
    assert [p["label"] for p in markup["controlPoints"]] == NAMES
    assert {p["positionStatus"] for p in markup["controlPoints"]} == {"defined"}
    assert markup["measurements"][0]["name"] == "confidence"


def test_reads_minimal_slicer_example(tmp_path):
    """The three-point example of Slicer's documentation (only labels and positions, LPS)."""
    path = tmp_path / "myexample.mrk.json"
    path.write_text(
        '{"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/'
        'Schema/markups-schema-v1.0.0.json#", "markups": [{"type": "Fiducial", "coordinateSystem": "LPS", '
        '"controlPoints": [{"label": "F-1", "position": [-53.388, -73.335, 0.0]}, '
        '{"label": "F-2", "position": [49.868, -88.589, 0.0]}]}]}'
    )
    loaded = read_markups_json(path)
    assert loaded.names == ["F-1", "F-2"]
    np.testing.assert_allclose(loaded.points, [[53.388, 73.335, 0.0], [-49.868, 88.589, 0.0]])


@pytest.mark.parametrize(
    "header, expected",
    [
        ("# CoordinateSystem = 1", "LPS"),
        ("# CoordinateSystem = 0", "RAS"),
        ("# CoordinateSystem = LPS", "LPS"),
        ("", "RAS"),
    ],
)
def test_fcsv_coordinate_system_header(tmp_path, header, expected):
    """Slicer before 4.11 wrote numeric codes (0 RAS, 1 LPS); files without the line are RAS."""
    path = tmp_path / "old.fcsv"
    lines = [
        "# Markups fiducial file version = 4.6",
        header,
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID",
        'vtkMRMLMarkupsFiducialNode_0,1.5,-40.0,60.0,0,0,0,1,1,1,0,"A, with comma",,',
    ]
    path.write_text("\n".join(line for line in lines if line) + "\n")
    loaded = read_fcsv(path)
    assert loaded.names == ["A, with comma"]
    in_file = np.array([[1.5, -40.0, 60.0]])
    np.testing.assert_array_equal(loaded.points, convert_coordinate_system(in_file, expected, "RAS"))


def test_csv_columns_name_the_system(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text(
        "label,l,p,s,defined,selected,visible,locked,description\nF-1,-19.5,13.25,29.0,1,1,1,0,\nF-2,,,,0,1,1,0,\n"
    )
    loaded = read_landmarks_csv(path)
    np.testing.assert_array_equal(loaded.points[0], [19.5, -13.25, 29.0])
    assert loaded.defined.tolist() == [True, False]


def test_undefined_points_round_trip(tmp_path):
    points = POINTS_RAS.copy()
    points[1] = np.nan
    for file_name in FORMATS:
        write_landmarks(tmp_path / file_name, Landmarks(NAMES, points))
        loaded = read_landmarks(tmp_path / file_name)
        assert loaded.defined.tolist() == [True, False, True], file_name


def test_select_reorders_by_name():
    landmarks = sample()
    np.testing.assert_array_equal(landmarks.select(["HDV_start", "TCD_start", "TCD_end"]), POINTS_RAS[[2, 0, 1]])


def test_select_errors_name_the_file_and_the_problem(tmp_path):
    path = tmp_path / "case_07.mrk.json"
    write_landmarks(path, sample())
    loaded = read_landmarks(path)
    with pytest.raises(ValueError, match=r"case_07\.mrk\.json.*missing \['ADV_end'\]"):
        loaded.select([*NAMES, "ADV_end"], path)  # missing landmark / wrong count
    with pytest.raises(ValueError, match=r"case_07\.mrk\.json.*unexpected \['HDV_start'\]"):
        loaded.select(NAMES[:2], path)  # too many landmarks in the file
    points = POINTS_RAS.copy()
    points[0] = np.nan
    write_landmarks(path, Landmarks(NAMES, points))
    with pytest.raises(ValueError, match=r"case_07\.mrk\.json.*\['TCD_start'\] have no defined position"):
        read_landmarks(path).select(NAMES, path)
    with pytest.raises(ValueError, match="appears more than once"):
        Landmarks(["A", "A"], POINTS_RAS[:2]).select(["A"], path)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown landmark file type"):
        read_landmarks(tmp_path / "points.txt")
    broken = tmp_path / "broken.mrk.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.mrk.json: not valid JSON"):
        read_landmarks(broken)
    curve = tmp_path / "curve.mrk.json"
    curve.write_text('{"markups": [{"type": "Curve", "controlPoints": []}]}')
    with pytest.raises(ValueError, match=r"curve.mrk.json: no point list .*\['Curve'\]"):
        read_landmarks(curve)
    table = tmp_path / "table.csv"
    table.write_text("label,x,y,z\nA,1,2,3\n")
    with pytest.raises(ValueError, match="table.csv: expected a header with 'label'"):
        read_landmarks(table)
    with pytest.raises(ValueError, match="coordinate system must be one of"):
        write_landmarks(tmp_path / "out.mrk.json", sample(), coordinate_system="XYZ")


# ---- files as 3D Slicer writes them: AFIDs-style numeric labels, anatomical descriptions, an undefined point ----
AFIDS = [  # label, description, RAS position (None: undefined)
    ("1", "AC", (-0.0360, 1.9917, -4.0235)),
    ("2", "PC", (0.0899, -24.5647, -1.014)),
    ("3", "infracollicular sulcus", None),
    ("4", "PMJ", (0.15494926666, -21.8540666, -21.18409)),
    ("5", 'superior "interpeduncular", fossa', (-0.0565, -13.7677, -10.95)),  # quotes and a comma
]
DISPLAY = {"visibility": True, "opacity": 1.0, "color": [0.4, 1.0, 1.0], "glyphType": "Sphere3D", "glyphScale": 1.0}
TILTED_RAS = [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]  # a control point rotated by 90 degrees about S


def _in_system(position: tuple[float, float, float] | None, system: str) -> list[float]:
    if position is None:
        return [0.0, 0.0, 0.0]  # what Slicer stores for a point that was never placed
    return [float(v) for v in convert_coordinate_system(np.array(position), "RAS", system)]


def slicer_markups_json(system: str) -> str:
    """A point list as Slicer 5 saves it (``.mrk.json``), positions and orientations in ``system``."""
    points = []
    for index, (label, description, position) in enumerate(AFIDS):
        orientation = TILTED_RAS if index == 1 else _IDENTITY
        points.append(
            {
                "id": str(index + 1),
                "label": label,
                "description": description,
                "associatedNodeID": "vtkMRMLScalarVolumeNode1",
                "position": _in_system(position, system),
                "orientation": orientation if system == "RAS" else [-v for v in orientation[:6]] + orientation[6:],
                "selected": index != 3,
                "locked": True,
                "visibility": True,
                "positionStatus": "defined" if position is not None else "undefined",
            }
        )
    markup = {
        "type": "Fiducial",
        "coordinateSystem": system,
        "coordinateUnits": "mm",
        "locked": True,
        "fixedNumberOfControlPoints": False,
        "labelFormat": "%N-%d",
        "lastUsedControlPointNumber": 5,
        "controlPoints": points,
        "measurements": [{"name": "length", "enabled": False, "units": "mm", "printFormat": "%-#4.4gmm"}],
        "display": DISPLAY,
    }
    return json.dumps({"@schema": MARKUPS_SCHEMA, "markups": [markup]}, indent=4)


def _fcsv_text(value: str) -> str:
    """A label or description as Slicer's fcsv writer stores it (quoted when it holds a comma or a quote)."""
    return '"' + value.replace('"', '""') + '"' if ("," in value or '"' in value) else value


def slicer_fcsv(system: str, version: str) -> str:
    """A fiducial list as Slicer saves it: ``"4.10"`` (numeric system code, AFIDs files), ``"5.6"`` (named system)
    or ``"5.8"`` (named system and the position-status and auto-created fields, so undefined points survive)."""
    code = {"RAS": "0", "LPS": "1"}[system] if version == "4.10" else system
    lines = [
        f"# Markups fiducial file version = {version}",
        f"# CoordinateSystem = {code}",
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID",
    ]
    for index, (label, description, position) in enumerate(AFIDS):
        if position is None and version != "5.8":
            continue  # older Slicer cannot store an undefined point in a .fcsv
        xyz = ",".join(repr(v) for v in _in_system(position, system))
        node = f"vtkMRMLMarkupsFiducialNode_{index + 1}" if version == "4.10" else str(index + 1)
        flags = f"1,{int(index != 3)},1"
        row = f"{node},{xyz},0,0,0,1,{flags},{_fcsv_text(label)},{_fcsv_text(description)},vtkMRMLScalarVolumeNode1"
        lines.append(row + (f",{2 if position is not None else 0},0" if version == "5.8" else ""))
    return "\n".join(lines) + "\n"


def slicer_csv(system: str) -> str:
    """A control-point table as Slicer's ``ExportControlPointsToCSV`` writes it."""
    axes = "r,a,s" if system == "RAS" else "l,p,s"
    lines = [f"label,{axes},defined,selected,visible,locked,description"]
    for index, (label, description, position) in enumerate(AFIDS):
        xyz = ",".join(repr(v) for v in _in_system(position, system))
        text = '"' + description.replace('"', '""') + '"' if "," in description or '"' in description else description
        lines.append(f"{label},{xyz},{int(position is not None)},{int(index != 3)},1,1,{text}")
    return "\n".join(lines) + "\n"


_IDENTITY = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
SLICER_FILES = {
    "case.mrk.json": slicer_markups_json,
    "case.fcsv": lambda system: slicer_fcsv(system, "5.6"),
    "afids.fcsv": lambda system: slicer_fcsv(system, "4.10"),
    "recent.fcsv": lambda system: slicer_fcsv(system, "5.8"),
    "case.csv": slicer_csv,
}


def expected_afids(file_name: str) -> tuple[list[str], list[str], np.ndarray]:
    rows = [row for row in AFIDS if row[2] is not None or file_name not in ("case.fcsv", "afids.fcsv")]
    points = np.array([position if position is not None else [np.nan] * 3 for _, _, position in rows], dtype=float)
    return [r[0] for r in rows], [r[1] for r in rows], points


def _fields(path, file_name: str) -> list[list[str]]:
    """The data rows of a Slicer table file, as cells."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return list(csv.reader(lines[1:] if file_name.endswith(".csv") else lines))


def _same_cell(original: str, written: str) -> bool:
    try:
        return abs(float(original) - float(written)) <= 1e-9
    except ValueError:
        return original == written


@pytest.mark.parametrize("system", ["LPS", "RAS"])
@pytest.mark.parametrize("file_name", list(SLICER_FILES))
def test_slicer_files_survive_read_write_read(tmp_path, file_name, system):
    original = tmp_path / "slicer" / file_name
    original.parent.mkdir()
    original.write_text(SLICER_FILES[file_name](system))
    names, descriptions, points = expected_afids(file_name)
    loaded = read_landmarks(original)
    assert loaded.names == names and loaded.descriptions == descriptions and loaded.coordinate_system == system
    np.testing.assert_allclose(loaded.points, points, atol=1e-9)  # NaN rows: the undefined point

    copy = tmp_path / "copy" / file_name
    write_landmarks(copy, loaded)  # in the file's own system
    again = read_landmarks(copy)
    assert again.names == names and again.descriptions == descriptions and again.coordinate_system == system
    np.testing.assert_allclose(again.points, loaded.points, atol=1e-6)
    assert again.properties == loaded.properties and again.markup == loaded.markup
    assert not list(copy.parent.glob(".tmp-*"))  # written whole, then renamed
    if file_name.endswith(".json"):  # every field of every control point and of the markup, as Slicer wrote it
        (source,), (written,) = json.loads(original.read_text())["markups"], json.loads(copy.read_text())["markups"]
        for before, after in zip(source.pop("controlPoints"), written.pop("controlPoints")):
            np.testing.assert_allclose(after.pop("position"), before.pop("position"), atol=1e-9)
            assert after == before
        assert written == source
    else:  # every cell of every row; Slicer's position of an undefined point is not kept in a .csv
        for before, after in zip(_fields(original, file_name), _fields(copy, file_name), strict=True):
            undefined = file_name.endswith(".csv") and before[4] == "0"
            assert len(after) == len(before)
            assert all(_same_cell(b, a) for i, (b, a) in enumerate(zip(before, after)) if not (undefined and i < 4))

    other = "RAS" if system == "LPS" else "LPS"  # and in the other system, on request
    write_landmarks(tmp_path / "other" / file_name, loaded, coordinate_system=other)
    converted = read_landmarks(tmp_path / "other" / file_name)
    assert converted.coordinate_system == other and converted.names == names and converted.descriptions == descriptions
    np.testing.assert_allclose(converted.points, points, atol=1e-6)
    assert converted.properties == loaded.properties  # orientations are kept in RAS in memory


@pytest.mark.parametrize("target", ["out.mrk.json", "out.fcsv", "out.csv"])
def test_labels_descriptions_and_status_carry_across_formats(tmp_path, target):
    source = tmp_path / "afids.fcsv"
    source.write_text(slicer_fcsv("RAS", "5.8"))
    loaded = read_landmarks(source)
    write_landmarks(tmp_path / target, loaded)
    converted = read_landmarks(tmp_path / target)
    assert converted.names == loaded.names and converted.descriptions == loaded.descriptions
    np.testing.assert_allclose(converted.points, loaded.points, atol=1e-9)
    assert converted.defined.tolist() == [True, True, False, True, True]
    assert [p.get("selected") for p in converted.properties] == [True, True, True, False, True]
    assert [p.get("locked") for p in converted.properties] == [True] * 5


def test_confidence_goes_into_the_measurement_not_the_description(tmp_path):
    path = tmp_path / "pred.mrk.json"
    write_landmarks(path, Landmarks(NAMES, POINTS_RAS, [0.9, 0.5, 0.25], ["a", "b", "c"]))
    markup = json.loads(path.read_text())["markups"][0]
    assert [p["description"] for p in markup["controlPoints"]] == ["a", "b", "c"]
    assert markup["measurements"] == [
        {
            "name": "confidence",
            "enabled": False,
            "units": "",
            "description": "detector confidence per control point (heatmap peak, 0..1)",
            "controlPointValues": [0.9, 0.5, 0.25],
        }
    ]
    assert read_landmarks(path).descriptions == ["a", "b", "c"]


def test_malformed_slicer_fields_name_the_file(tmp_path):
    path = tmp_path / "bad.fcsv"
    path.write_text(slicer_fcsv("LPS", "5.6").replace(",1,1,1,1,AC", ",1,yes,1,1,AC"))
    with pytest.raises(ValueError, match=r"bad\.fcsv: fiducial '1' sel must be 0 or 1, got 'yes'"):
        read_landmarks(path)
    status = tmp_path / "status.fcsv"
    status.write_text(slicer_fcsv("LPS", "5.8").replace("vtkMRMLScalarVolumeNode1,2,0", "vtkMRMLScalarVolumeNode1,7,0"))
    with pytest.raises(ValueError, match=r"status\.fcsv: fiducial '1' position status must be 0\.\.3, got '7'"):
        read_landmarks(status)
    with pytest.raises(ValueError, match="3 landmark descriptions for 2 points"):
        Landmarks(["a", "b"], POINTS_RAS[:2], descriptions=["x", "y", "z"])
