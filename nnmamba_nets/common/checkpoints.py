"""Crash-safe training checkpoints: atomic saves, a resume that survives a damaged file, random states.

MONAI's ``CheckpointSaver`` (through ignite's ``Checkpoint``) deletes the previous file before it
writes the new one, and writes in place: a crash at the wrong moment leaves no checkpoint, or a
truncated one, or no ``model.pt``. :class:`CrashSafeCheckpointSaver` keeps MONAI's saver (its
arguments, file names and ``n_saved`` bookkeeping) and replaces how files are written: each file is
written to a temporary file in the same folder, flushed to disk and renamed over its final name, and a
file the saver drops is deleted only after the new one is complete. So, at every moment after the first
save, a complete checkpoint exists, and ``model.pt``, once written, is always a complete file.

:func:`resume_checkpoint` picks the newest checkpoint that loads (naming any damaged one it skips), and
:class:`RandomStates` puts the random generators (python, numpy, torch, the data transforms') into the
checkpoint, so that a resumed run continues the random stream the interrupted run would have used.
"""

from __future__ import annotations

import logging
import os
import random
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver
from monai.transforms import Randomizable

from nnmamba_nets.common.flags import as_flag

__all__ = [
    "AtomicDiskSaver",
    "BestModelSaver",
    "CrashSafeCheckpointSaver",
    "RandomStates",
    "latest_checkpoint",
    "resume_checkpoint",
]

_EPOCH_PATTERN = re.compile(r"checkpoint_epoch=(\d+)\.pt$")
_TEMP_PREFIX = ".tmp-ckpt-"
_logger = logging.getLogger(__name__)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk, where the platform allows it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class AtomicDiskSaver(BaseSaveHandler):
    """An ignite save handler that writes atomically and deletes dropped files only after the next save.

    Ours because ignite's ``DiskSaver`` as MONAI uses it (``atomic=False``) writes in place, and ignite's
    ``Checkpoint`` asks for the old file's removal before it saves the new one.

    Args:
        dirname: the checkpoint folder (created).
        filename: a fixed file name for every save (e.g. ``"model.pt"``), as MONAI's ``key_metric_filename``;
            None uses the name ignite gives. Defaults to None.
        keep_newest: for interval checkpoints (``checkpoint_epoch=<n>.pt``): after each save, keep only this
            many of them in the folder, also those of an earlier, resumed run that ignite does not track.
            Defaults to None (only what ignite drops is deleted).
    """

    def __init__(self, dirname: str | os.PathLike, filename: str | None = None, keep_newest: int | None = None) -> None:
        self.dirname = Path(dirname)
        self.filename = filename
        self.keep_newest = keep_newest
        self._pending_removal: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        """Write ``checkpoint`` under ``filename`` (or the fixed name), then delete the files dropped before."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return  # rank 0 writes, as ignite's DiskSaver
        name = self.filename or filename
        self.dirname.mkdir(parents=True, exist_ok=True)
        target = self.dirname / name
        partial = self.dirname / f"{_TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}"
        try:
            with open(partial, "wb") as stream:
                torch.save(checkpoint, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()
        _fsync_folder(self.dirname)
        dropped = list(self._pending_removal)
        if self.keep_newest is not None:
            dropped += [Path(path).name for _, path in _epoch_checkpoints(str(self.dirname))[self.keep_newest :]]
        for old in dict.fromkeys(dropped):
            if old != name and (self.dirname / old).is_file():
                (self.dirname / old).unlink()
        self._pending_removal = []

    def remove(self, filename: str) -> None:
        """Remember ``filename`` for deletion once the next save is complete (a fixed name is replaced instead)."""
        name = self.filename or filename
        if name != self.filename:
            self._pending_removal.append(name)


class CrashSafeCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` whose files are written by :class:`AtomicDiskSaver`.

    Arguments are those of :class:`monai.handlers.CheckpointSaver`; only how the files are written changes,
    and ``n_saved`` of the interval checkpoints also counts those an earlier (resumed) run left.
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir, save_dict, **kwargs)
        handlers = {
            "_final_checkpoint": AtomicDiskSaver(save_dir, kwargs.get("final_filename")),
            "_key_metric_checkpoint": AtomicDiskSaver(save_dir, kwargs.get("key_metric_filename")),
            "_interval_checkpoint": AtomicDiskSaver(save_dir, keep_newest=kwargs.get("n_saved")),
        }
        for attribute, handler in handlers.items():
            checkpoint = getattr(self, attribute, None)
            if checkpoint is not None:
                checkpoint.save_handler = handler


class BestModelSaver(CrashSafeCheckpointSaver):
    """Crash-safe saver of the best model whose record of the best score can be checkpointed.

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


def _randomizables(obj: Any, seen: set[int]) -> Iterator[Randomizable]:
    """The MONAI randomizable objects reachable from ``obj`` (transforms and the transforms they wrap)."""
    if id(obj) in seen or isinstance(obj, (str, bytes, torch.Tensor, np.ndarray)):
        return
    seen.add(id(obj))
    if isinstance(obj, Randomizable) and isinstance(getattr(obj, "R", None), np.random.RandomState):
        yield obj
    children = obj if isinstance(obj, (list, tuple)) else getattr(obj, "__dict__", {}).values()
    for child in children:
        yield from _randomizables(child, seen)


def _numpy_state(state: tuple) -> dict[str, Any]:
    """A numpy ``RandomState`` state as plain values ``torch.load(weights_only=True)`` accepts."""
    kind, keys, position, has_gauss, cached = state
    return {"kind": kind, "keys": torch.as_tensor(keys.astype(np.int64)), "pos": int(position),
            "has_gauss": int(has_gauss), "cached": float(cached)}  # fmt: skip


def _numpy_tuple(state: Mapping[str, Any]) -> tuple:
    keys = np.asarray(state["keys"].numpy(), dtype=np.uint32)
    return state["kind"], keys, state["pos"], state["has_gauss"], state["cached"]


class RandomStates:
    """The random generators of a training, as a checkpoint entry (``state_dict`` / ``load_state_dict``).

    Holds python's, numpy's and torch's global generators (and CUDA's where present) and the random state
    of every MONAI randomizable transform of ``transform`` (with ``num_workers=0`` the data loader draws
    its augmentations from those in the main process; with workers, from seeds drawn from torch's
    generator). Saved at the end of an epoch and restored when the resumed run starts, the next epoch
    gets the random numbers it would have had without the interruption.

    Args:
        transform: the training preprocessing (e.g. ``@train#preprocessing``). Defaults to None (globals only).
    """

    def __init__(self, transform: Any = None) -> None:
        self.transforms = list(_randomizables(transform, set())) if transform is not None else []

    def state_dict(self) -> dict[str, Any]:
        """The current states."""
        return {
            "python": random.getstate(),
            "numpy": _numpy_state(np.random.get_state()),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "transforms": [_numpy_state(item.R.get_state()) for item in self.transforms],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the states.

        Raises:
            ValueError: the checkpoint holds the states of another number of random transforms.
        """
        if len(state["transforms"]) != len(self.transforms):
            raise ValueError(
                f"the checkpoint holds random states of {len(state['transforms'])} transforms, the training has "
                f"{len(self.transforms)}: resume with the preprocessing the checkpoint was trained with."
            )
        random.setstate(tuple(tuple(v) if isinstance(v, list) else v for v in state["python"]))
        np.random.set_state(_numpy_tuple(state["numpy"]))
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        for item, item_state in zip(self.transforms, state["transforms"]):
            item.R.set_state(_numpy_tuple(item_state))


def _epoch_checkpoints(folder: str) -> list[tuple[int, str]]:
    """``(epoch, path)`` of the interval checkpoints in ``folder``, newest first."""
    found = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            match = _EPOCH_PATTERN.search(name)
            if match and not name.startswith("."):
                found.append((int(match.group(1)), os.path.join(folder, name)))
    return sorted(found, reverse=True)


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> str:
    """The newest interval checkpoint that MONAI's ``CheckpointSaver(save_interval=N)`` wrote.

    ``CheckpointSaver`` names them ``[<prefix>_]checkpoint_epoch=<epoch>.pt``; this returns the one with the
    highest epoch, whether or not it loads (see :func:`resume_checkpoint` for that).

    Args:
        ckpt_dir: the checkpoint folder.

    Returns:
        path of the checkpoint with the highest epoch.

    Raises:
        FileNotFoundError: when ``ckpt_dir`` holds no such file.
    """
    candidates = _epoch_checkpoints(os.fspath(ckpt_dir))
    if not candidates:
        raise FileNotFoundError(
            f"no checkpoint named like 'checkpoint_epoch=<n>.pt' in {os.path.abspath(ckpt_dir)!r} to resume from; "
            "train without resume first."
        )
    return candidates[0][1]


def _load_failure(path: str) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from, or None when it loads."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files; nothing runs (weights_only)
        return f"{type(error).__name__}: {error}"
    if not isinstance(content, Mapping) or "trainer" not in content:
        return "not a training checkpoint (no 'trainer' entry)"
    return None


def resume_checkpoint(ckpt_dir: str | os.PathLike, resume: Any) -> str | None:
    """The checkpoint a training resumes from: the newest one that loads, when ``resume`` is true, else None.

    The bundles' ``resume`` id is read here once (:func:`~nnmamba_nets.common.flags.as_flag`), and the
    result drives both the ``CheckpointLoader``'s ``load_path`` and whether it runs at all. A newer
    checkpoint that does not load (e.g. truncated by a crash) is skipped with a warning naming it.

    Args:
        ckpt_dir: the checkpoint folder.
        resume: the ``resume`` config value (a bool or CLI text).

    Returns:
        the path of the checkpoint to load, or None (train from scratch).

    Raises:
        ValueError: ``resume`` is not a boolean.
        FileNotFoundError: resuming was asked for but ``ckpt_dir`` holds no checkpoint that loads
            (the message names every damaged one and why).
    """
    if not as_flag(resume, "resume"):
        return None
    latest_checkpoint(ckpt_dir)  # raises when there is none at all
    damaged = {}
    for _, path in _epoch_checkpoints(os.fspath(ckpt_dir)):  # newest first
        reason = _load_failure(path)
        if reason is None:
            if damaged:
                _logger.warning("resuming from %s, the newest checkpoint that loads", path)
            return path
        damaged[path] = reason
        _logger.warning("cannot resume from %s (%s); trying an older checkpoint", path, reason)
    raise FileNotFoundError(
        f"no checkpoint in {os.path.abspath(ckpt_dir)!r} loads to resume from:\n"
        + "\n".join(f"{path}: {reason}" for path, reason in damaged.items())
    )
