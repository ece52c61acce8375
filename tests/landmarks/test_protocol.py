"""The landmark protocol (names in channel order, descriptions): from a datalist, beside the weights, overrides."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnmamba_nets.landmarks.io import Landmarks, write_landmarks
from nnmamba_nets.landmarks.protocol import (
    PROTOCOL_FILE,
    LandmarkProtocol,
    MissingProtocolError,
    trained_protocol,
)

AFIDS = LandmarkProtocol(("1", "2", "3"), ("AC", "PC", "infracollicular sulcus"))


def test_record_round_trip_and_keys(tmp_path):
    path = tmp_path / "models" / PROTOCOL_FILE
    AFIDS.save(path)
    assert json.loads(path.read_text()) == {
        "landmark_names": ["1", "2", "3"],
        "landmark_descriptions": ["AC", "PC", "infracollicular sulcus"],
    }
    assert LandmarkProtocol.load(path) == AFIDS and len(AFIDS) == 3
    assert not list(path.parent.glob(".tmp-*"))


def test_bad_protocols_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"landmark names must be non-empty and unique, got \['1', '1'\]"):
        LandmarkProtocol(("1", "1"))
    with pytest.raises(ValueError, match=r"1 landmark descriptions for the 2 landmark names"):
        LandmarkProtocol(("1", "2"), ("AC",))
    with pytest.raises(ValueError, match="landmark_names must be a list of strings, got 'AC'"):
        LandmarkProtocol("AC")
    broken = tmp_path / PROTOCOL_FILE
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=f"cannot read the landmark protocol '{broken}'"):
        LandmarkProtocol.load(broken)
    broken.write_text('{"landmark_descriptions": ["AC"]}')
    with pytest.raises(ValueError, match=f"{broken}: no 'landmark_names' recorded"):
        LandmarkProtocol.load(broken)


def test_from_datalist_with_overrides_that_win():
    datalist = {**AFIDS.to_dict(), "training": []}
    assert LandmarkProtocol.from_datalist(datalist) == AFIDS
    reordered = LandmarkProtocol.from_datalist(datalist, names=["3", "1", "2"])
    assert reordered.descriptions == ("infracollicular sulcus", "AC", "PC")  # follow their labels
    renamed = LandmarkProtocol.from_datalist(datalist, descriptions=["a", "b", "c"])
    assert renamed == LandmarkProtocol(("1", "2", "3"), ("a", "b", "c"))
    with pytest.raises(ValueError, match=r"landmark_names \['1', '2'\] are not the landmark labels \['1', '2', '3'\]"):
        LandmarkProtocol.from_datalist(datalist, names=["1", "2"], source="lists/datalist.json")
    old = {"landmark_names": ["a", "b"], "training": []}  # written before descriptions were recorded
    assert LandmarkProtocol.from_datalist(old).descriptions == ("", "")


def test_from_datalist_without_a_record_reads_the_first_training_file(tmp_path):
    landmark_file = tmp_path / "case.fcsv"
    write_landmarks(landmark_file, Landmarks(["1", "2"], np.zeros((2, 3)), descriptions=["AC", "PC"]))
    datalist = {"training": [{"image": "case.nii.gz", "landmarks": str(landmark_file)}], "test": []}
    assert LandmarkProtocol.from_datalist(datalist) == LandmarkProtocol(("1", "2"), ("AC", "PC"))
    with pytest.raises(ValueError, match="lists.json: records no 'landmark_names' and has no training case"):
        LandmarkProtocol.from_datalist({"training": [], "test": []}, source="lists.json")


def test_trained_protocol_reads_the_record_and_says_what_to_pass_without_one(tmp_path):
    record = tmp_path / PROTOCOL_FILE
    with pytest.raises(MissingProtocolError, match=f"no landmark protocol at '{record}'.*--landmark_names"):
        trained_protocol(record)
    assert trained_protocol(record, ["a", "b"]) == LandmarkProtocol(("a", "b"))  # weights trained elsewhere
    AFIDS.save(record)
    assert trained_protocol(record) == AFIDS
    assert trained_protocol(record, descriptions=["x", "y", "z"]).descriptions == ("x", "y", "z")
