"""Tests of nnmamba_nets.common.checkpoints."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from nnmamba_nets.common.checkpoints import BestModelSaver, latest_checkpoint


def test_latest_checkpoint_picks_the_highest_epoch(tmp_path):
    for name in ("checkpoint_epoch=2.pt", "checkpoint_epoch=10.pt", "model.pt", "checkpoint_epoch=9.pt"):
        (tmp_path / name).write_bytes(b"")
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint_epoch=10.pt")
    with pytest.raises(FileNotFoundError, match="to resume from"):
        latest_checkpoint(tmp_path / "empty")


def test_best_model_saver_state_round_trip(tmp_path):
    network = torch.nn.Linear(2, 1)
    scores = iter([0.5, 0.9, 0.7])
    engine = Engine(lambda engine, batch: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def score(engine: Engine) -> None:
        engine.state.metrics["val_mean_dice"] = next(scores)

    saver = BestModelSaver(
        str(tmp_path), {"model": network}, key_metric_name="val_mean_dice", key_metric_filename="model.pt"
    )
    saver.attach(engine)
    engine.run([0], max_epochs=3)
    state = saver.state_dict()
    assert [item[0] for item in state["_saved"]] == [0.9] and (tmp_path / "model.pt").is_file()
    # a fresh saver that restored the record keeps model.pt when the next score is worse
    restored = BestModelSaver(
        str(tmp_path), {"model": network}, key_metric_name="val_mean_dice", key_metric_filename="model.pt"
    )
    restored.load_state_dict(state)
    stamp = (tmp_path / "model.pt").stat().st_mtime_ns
    engine.state.metrics["val_mean_dice"] = 0.8
    restored.metrics_completed(engine)
    assert (tmp_path / "model.pt").stat().st_mtime_ns == stamp
    engine.state.metrics["val_mean_dice"] = 0.95
    restored.metrics_completed(engine)
    assert [item[0] for item in restored.state_dict()["_saved"]] == [0.95]
