"""Landmark writers on an ignite engine: Slicer markups per case, tables written whole at the end, error report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from nnmamba_nets.landmarks.handlers import LandmarkErrorReport, LandmarkWriter
from nnmamba_nets.landmarks.io import read_landmarks

NAMES = ["A", "B"]
DESCRIPTIONS = ["anterior commissure", "posterior commissure, centre"]
TRUE = torch.tensor([[10.0, -20.0, 30.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
PRED = TRUE + torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)  # errors 5 and 1 mm


def engine_over(cases: list[tuple[dict, dict]]) -> Engine:
    """An engine whose iterations expose one decollated (batch, output) case each, like a MONAI evaluator."""

    def step(engine: Engine, case: tuple[dict, dict]) -> list[dict]:
        engine.state.batch = [case[0]]
        return [case[1]]

    engine = Engine(step)
    return engine


def image(name: str) -> MetaTensor:
    return MetaTensor(torch.zeros(1, 4, 4, 4), affine=torch.eye(4), meta={"filename_or_obj": f"/data/{name}.nii.gz"})


def test_writer_and_report(tmp_path):
    good = (
        {"image": image("case_1"), "landmarks": TRUE},
        {
            "pred_landmarks": PRED,
            "pred_confidence": torch.tensor([0.9, 0.4]),
            "image": image("case_1"),
            "pred_heatmaps": torch.rand(2, 4, 4, 4),
        },
    )
    engine = engine_over([good])
    formats = [".mrk.json", ".fcsv", ".csv"]
    LandmarkWriter(tmp_path / "out", NAMES, DESCRIPTIONS, heatmap_key="pred_heatmaps", formats=formats).attach(engine)
    report = LandmarkErrorReport(tmp_path / "report", NAMES, DESCRIPTIONS)
    report.attach(engine)
    engine.run([good])

    for suffix in formats:  # every Slicer file carries the names and descriptions
        written = read_landmarks(tmp_path / "out" / f"case_1{suffix}")
        assert written.names == NAMES and written.descriptions == DESCRIPTIONS and written.coordinate_system == "LPS"
        np.testing.assert_allclose(written.points, PRED.numpy())
    written = read_landmarks(tmp_path / "out" / "case_1.mrk.json")
    np.testing.assert_allclose(written.confidence, [0.9, 0.4], atol=1e-6)
    assert written.markup["name"] == "case_1"
    with open(tmp_path / "out" / "landmarks.csv") as stream:
        row = next(csv.DictReader(stream))
    assert row["case"] == "case_1" and float(row["A_l"]) == -13.0 and float(row["A_p"]) == 16.0
    assert not list((tmp_path / "out").glob(".tmp-*")) and not list((tmp_path / "report").glob(".tmp-*"))
    assert (tmp_path / "out" / "case_1_heatmaps.nii.gz").is_file()
    with open(tmp_path / "report" / "landmark_errors.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [float(r["error_mm"]) for r in rows] == [5.0, 1.0] and [r["description"] for r in rows] == DESCRIPTIONS
    assert report.summary[-1]["landmark"] == "all" and report.summary[-1]["mre_mm"] == 3.0
    with open(tmp_path / "report" / "landmark_summary.csv") as stream:
        table = list(csv.DictReader(stream))
    summary = json.loads((tmp_path / "report" / "landmark_summary.json").read_text())
    assert [r["landmark"] for r in table] == [r["landmark"] for r in summary] == [*NAMES, "all"]
    assert [r["description"] for r in summary] == [*DESCRIPTIONS, ""]
    expected = {"n": 1, "mre_mm": 5.0, "median_mm": 5.0, "sdr_2mm": 0.0, "sdr_2.5mm": 0.0, "sdr_3mm": 0.0}
    assert {key: summary[0][key] for key in expected} == expected and summary[0]["sdr_4mm"] == 0.0
    assert summary[1]["median_mm"] == 1.0 and summary[1]["sdr_2mm"] == 1.0  # per landmark name
    assert summary[2]["n"] == 2 and summary[2]["median_mm"] == 3.0 and summary[2]["sdr_4mm"] == 0.5
    assert float(table[0]["mre_mm"]) == 5.0 and float(table[2]["sdr_4mm"]) == 0.5  # the CSV holds the same


def test_writer_keeps_two_inputs_of_the_same_name_and_writes_ras(tmp_path):
    first = ({"name": "/data/case_2.nii.gz"}, {"pred_landmarks": PRED, "pred_confidence": torch.ones(2)})
    same_name = ({"name": "/other/case_2.nii.gz"}, {"pred_landmarks": TRUE, "pred_confidence": torch.ones(2)})
    engine = engine_over([first, same_name])
    LandmarkWriter(tmp_path, NAMES, name_key="name", coordinate_system="RAS").attach(engine)
    engine.run([first, same_name])
    with open(tmp_path / "landmarks.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [r["case"] for r in rows] == ["case_2", "case_2_2"]
    np.testing.assert_allclose(read_landmarks(tmp_path / "case_2.mrk.json").points, PRED.numpy())  # not overwritten
    np.testing.assert_allclose(read_landmarks(tmp_path / "case_2_2.mrk.json").points, TRUE.numpy())
    assert float(rows[0]["A_r"]) == 13.0  # RAS columns


def test_writer_never_writes_a_case_over_its_table(tmp_path):
    case = ({"name": "/data/landmarks.nii.gz"}, {"pred_landmarks": PRED, "pred_confidence": torch.ones(2)})
    engine = engine_over([case])
    LandmarkWriter(tmp_path, NAMES, name_key="name", formats=[".csv"]).attach(engine)
    engine.run([case])
    assert read_landmarks(tmp_path / "landmarks_2.csv").names == NAMES
    with open(tmp_path / "landmarks.csv") as stream:
        assert next(csv.DictReader(stream))["case"] == "landmarks_2"


def test_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"formats must be one or more of .*got \['.nii.gz'\]"):
        LandmarkWriter(tmp_path, NAMES, formats=[".nii.gz"])
    with pytest.raises(ValueError, match=r"got 1 descriptions for the landmark names \['A', 'B'\]"):
        LandmarkWriter(tmp_path, NAMES, ["only one"])
    with pytest.raises(ValueError, match=r"got 3 descriptions for the landmark names"):
        LandmarkErrorReport(tmp_path, NAMES, ["a", "b", "c"])
