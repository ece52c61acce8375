"""Landmark files: Slicer markups JSON, .fcsv and control-point CSV, with RAS/LPS handling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnmamba_nets.landmarks.io import (
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
