"""Checkpoint file helpers for resuming bundle training."""

from __future__ import annotations

import os
import re
from typing import Any

from monai.handlers import CheckpointSaver

from nnmamba_nets.common.flags import as_flag

__all__ = ["BestModelSaver", "latest_checkpoint", "resume_checkpoint"]

_EPOCH_PATTERN = re.compile(r"checkpoint_epoch=(\d+)\.pt$")


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> str:
    """The newest interval checkpoint that MONAI's ``CheckpointSaver(save_interval=N)`` wrote.

    ``CheckpointSaver`` names them ``[<prefix>_]checkpoint_epoch=<epoch>.pt``; this returns the one with the
    highest epoch, to resume training from (model, optimiser, scheduler and trainer state).

    Args:
        ckpt_dir: the checkpoint folder.

    Returns:
        path of the checkpoint with the highest epoch.

    Raises:
        FileNotFoundError: when ``ckpt_dir`` holds no such file.
    """
    folder = os.fspath(ckpt_dir)
    candidates = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            match = _EPOCH_PATTERN.search(name)
            if match:
                candidates.append((int(match.group(1)), name))
    if not candidates:
        raise FileNotFoundError(
            f"no checkpoint named like 'checkpoint_epoch=<n>.pt' in {os.path.abspath(folder)!r} to resume from; "
            "train without resume first."
        )
    return os.path.join(folder, max(candidates)[1])


def resume_checkpoint(ckpt_dir: str | os.PathLike, resume: Any) -> str | None:
    """The checkpoint a training resumes from: the newest in ``ckpt_dir`` when ``resume`` is true, else None.

    The bundles' ``resume`` id is read here once (:func:`~nnmamba_nets.common.flags.as_flag`), and the
    result drives both the ``CheckpointLoader``'s ``load_path`` and whether it runs at all.

    Args:
        ckpt_dir: the checkpoint folder.
        resume: the ``resume`` config value (a bool or CLI text).

    Returns:
        the path of the checkpoint to load, or None (train from scratch).

    Raises:
        ValueError: ``resume`` is not a boolean.
        FileNotFoundError: resuming was asked for but ``ckpt_dir`` holds no checkpoint.
    """
    return latest_checkpoint(ckpt_dir) if as_flag(resume, "resume") else None


class BestModelSaver(CheckpointSaver):
    """``CheckpointSaver`` for the best model whose record of the best score can be checkpointed.

    MONAI's saver restores that record (``load_state_dict``) but only stores it inside the best-model
    file, which then is no plain ``state_dict`` any more. This adds ``state_dict()``, so the record can
    travel in the trainer's last checkpoint instead: after resuming, ``model.pt`` is only replaced by a
    better model. Arguments are those of ``CheckpointSaver`` with ``save_key_metric=True``.
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        kwargs["save_key_metric"] = True
        super().__init__(save_dir, save_dict, **kwargs)

    def state_dict(self) -> dict:
        """The best-score record (the saved items and their scores)."""
        return dict(self._key_metric_checkpoint.state_dict())
