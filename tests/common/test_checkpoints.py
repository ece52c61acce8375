"""Tests of nnmamba_nets.common.checkpoints."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.transforms import Compose, RandFlipd, RandGaussianNoised

from nnmamba_nets.common.checkpoints import (
    AtomicDiskSaver,
    BestModelSaver,
    RandomStates,
    latest_checkpoint,
    resume_checkpoint,
)


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


def test_atomic_saver_never_leaves_a_partial_file_and_removes_the_old_one_after_the_new(tmp_path, monkeypatch):
    network = torch.nn.Linear(2, 1)
    saver = AtomicDiskSaver(tmp_path)
    saver({"model": network.state_dict()}, "checkpoint_epoch=1.pt")
    saver.remove("checkpoint_epoch=1.pt")  # ignite asks for the removal before it saves the next one
    assert (tmp_path / "checkpoint_epoch=1.pt").is_file()  # ... which is kept until that save is complete

    def failing_save(obj, stream, *args, **kwargs):
        stream.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        saver({"model": network.state_dict()}, "checkpoint_epoch=2.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=1.pt"]  # no partial file, old one kept
    monkeypatch.undo()
    saver({"model": network.state_dict()}, "checkpoint_epoch=2.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=2.pt"]
    fixed = AtomicDiskSaver(tmp_path, "model.pt")
    fixed({"w": torch.ones(1)}, "whatever.pt")
    fixed.remove("whatever.pt")  # a fixed name is replaced atomically, never removed
    fixed({"w": torch.zeros(1)}, "whatever.pt")
    assert torch.load(tmp_path / "model.pt", weights_only=True)["w"].item() == 0.0


def test_resume_skips_a_damaged_newest_checkpoint_naming_it(tmp_path, caplog):
    torch.save({"trainer": {"epoch": 1}, "model": {}}, tmp_path / "checkpoint_epoch=1.pt")
    (tmp_path / "checkpoint_epoch=2.pt").write_bytes(b"")  # a crash left it empty
    torch.save({"model": {}}, tmp_path / "checkpoint_epoch=3.pt")  # no trainer state
    with caplog.at_level("WARNING"):
        assert resume_checkpoint(tmp_path, "True") == str(tmp_path / "checkpoint_epoch=1.pt")
    assert "checkpoint_epoch=3.pt (not a training checkpoint" in caplog.text
    assert "checkpoint_epoch=2.pt (EOFError" in caplog.text or "checkpoint_epoch=2.pt (RuntimeError" in caplog.text
    assert resume_checkpoint(tmp_path, False) is None
    (tmp_path / "checkpoint_epoch=1.pt").write_bytes(b"broken")
    with pytest.raises(FileNotFoundError, match=r"no checkpoint .* loads to resume from:\n.*checkpoint_epoch=3"):
        resume_checkpoint(tmp_path, True)


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    transform = Compose([RandFlipd(keys="image", prob=0.5), RandGaussianNoised(keys="image", prob=0.5)])
    states = RandomStates(transform)
    assert len(states.transforms) >= 2
    torch.save({"random_states": states.state_dict()}, tmp_path / "states.pt")

    def draws() -> list:
        return [
            random.random(),
            float(np.random.rand()),
            float(torch.rand(1)),
            *(t.R.rand() for t in states.transforms),
        ]

    expected = draws()
    states.load_state_dict(torch.load(tmp_path / "states.pt", weights_only=True)["random_states"])
    assert draws() == expected
    with pytest.raises(ValueError, match=r"random states of \d+ transforms, the training has 0"):
        RandomStates().load_state_dict(states.state_dict())
