"""Radial error, MRE and SDR metrics and their ignite handlers."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine

from nnmamba_nets.landmarks.metrics import (
    RadialErrorMetric,
    landmark_metric_handlers,
    radial_errors,
    summarize_radial_errors,
)

TARGET = torch.zeros(2, 3, 3, dtype=torch.float64)
# errors: case 0 -> (1, 2, 3) mm, case 1 -> (3, 4, 5) mm (along different axes)
PREDICTED = torch.tensor([[[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]], [[0, 3.0, 0], [0, 0, 4.0], [3.0, 4.0, 0]]])
NAMES = ["a", "b", "c"]


def test_radial_errors():
    torch.testing.assert_close(
        radial_errors(PREDICTED, TARGET), torch.tensor([[1.0, 2, 3], [3, 4, 5]], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="same"):
        radial_errors(PREDICTED, TARGET[:, :2])


def test_metric_aggregates_mre_per_landmark_and_sdr():
    cases = [(None, None, 3.0), (1, None, 3.0), (None, 2.5, 2 / 6), (None, 4.0, 5 / 6), (2, 4.0, 0.5)]
    for landmark_index, threshold, expected in cases:
        metric = RadialErrorMetric(landmark_index=landmark_index, sdr_threshold=threshold)
        metric(PREDICTED[:1], TARGET[:1])  # batch-first tensors
        metric([PREDICTED[1]], [TARGET[1]])  # a list of (K, 3) items, as from_engine gives
        assert math.isclose(float(metric.aggregate()), expected), (landmark_index, threshold)
    assert metric.get_buffer().shape == (2, 3)


def test_summary_table():
    rows = summarize_radial_errors(radial_errors(PREDICTED, TARGET), NAMES)
    assert [row["landmark"] for row in rows] == [*NAMES, "all"]
    overall = rows[-1]
    assert overall["n"] == 6 and math.isclose(overall["mre_mm"], 3.0) and overall["max_mm"] == 5.0
    assert math.isclose(overall["sdr_2mm"], 2 / 6) and math.isclose(rows[0]["sdr_2.5mm"], 0.5)
    described = summarize_radial_errors(radial_errors(PREDICTED, TARGET), NAMES, descriptions=["AC", "PC", "PMJ"])
    assert [row["description"] for row in described] == ["AC", "PC", "PMJ", ""]
    assert [row["median_mm"] for row in described] == [2.0, 3.0, 4.0, 3.0]  # of two values: their mean
    with pytest.raises(ValueError, match="got 1 descriptions for 3 landmark names"):
        summarize_radial_errors(radial_errors(PREDICTED, TARGET), NAMES, descriptions=["AC"])


def test_ignite_handlers_on_an_engine():
    outputs = [[{"pred_landmarks": p, "landmarks": t}] for p, t in zip(PREDICTED, TARGET)]
    engine = Engine(lambda engine, batch: batch)
    handlers = landmark_metric_handlers(NAMES)
    assert list(handlers) == [
        "val_mre",
        "val_mre_a",
        "val_mre_b",
        "val_mre_c",
        "val_sdr_2mm",
        "val_sdr_2.5mm",
        "val_sdr_3mm",
        "val_sdr_4mm",
    ]
    for name, handler in handlers.items():
        handler.attach(engine, name)
    metrics = engine.run(outputs).metrics
    assert math.isclose(metrics["val_mre"], 3.0) and math.isclose(metrics["val_mre_c"], 4.0)
    assert math.isclose(metrics["val_sdr_3mm"], 4 / 6)
    assert engine.state.metric_details["val_mre"].shape == (2, 3)
    assert "val_mre" not in landmark_metric_handlers(NAMES, include_mre=False)
