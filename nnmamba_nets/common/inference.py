"""What every bundle's inference does around the network: own its output folder, check the inputs first,
report the rejected ones.

:func:`begin_inference` takes the output folder for this run: it refuses when another run holds it (a lock
that the operating system releases when a run ends, also by a crash) and deletes what the previous run
wrote there (and only that, from the folder's record), so the folder always holds one run's outputs.
:func:`partition_inputs` checks every input before anything reaches the network and keeps the reason for
each one it rejects; :func:`finish_inference` ends the run with one line (how many inputs were written
where, how many were rejected and where that list is), writes ``rejected_cases.json`` (always, empty
when nothing was rejected, so a rerun never leaves a stale list), records what the run wrote and fails
the run when anything was rejected. The three bundles share these, so they behave and report alike.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nnmamba_nets.common.files import write_text_atomic
from nnmamba_nets.common.images import check_image_file

__all__ = ["REJECTED_FILE", "begin_inference", "finish_inference", "image_check", "partition_inputs"]

REJECTED_FILE = "rejected_cases.json"
LOCK_FILE = ".nnmamba-inference.lock"
RECORD_FILE = ".nnmamba-inference.json"
_logger = logging.getLogger(__name__)
_held_locks: dict[str, int] = {}  # output folder -> file descriptor of its lock, for this process


def _files(folder: Path) -> dict[str, float]:
    """The regular files directly in ``folder`` (but the lock and the record) and their modification times."""
    return {
        entry.name: entry.stat().st_mtime
        for entry in folder.iterdir()
        if entry.is_file() and entry.name not in (LOCK_FILE, RECORD_FILE)
    }


def begin_inference(output_dir: str | os.PathLike) -> str:
    """Take ``output_dir`` for an inference run and clear the previous run's outputs from it.

    The folder's record (``.nnmamba-inference.json``) lists the files the last run wrote (or, when that
    run did not finish, the files that were there before it started); those files are deleted and
    nothing else, so the user's own files stay.

    Args:
        output_dir: the run's output folder (created).

    Returns:
        the folder, absolute.

    Raises:
        RuntimeError: another inference run is writing into the folder now.
    """
    folder = Path(output_dir).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise RuntimeError(
            f"another inference run is writing into {str(folder)!r} (it holds {LOCK_FILE}); wait for it to end "
            "or choose another output_dir."
        ) from None
    _held_locks[str(folder)] = descriptor
    try:
        record = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    present = _files(folder)
    if isinstance(record, dict):
        written = record.get("written")
        stale = written if isinstance(written, list) else [name for name in present if name not in record["before"]]
        for name in stale:
            if name in present and Path(name).name == name:
                (folder / name).unlink()
        if stale:
            _logger.info("removed %d output file(s) of the previous run in %s", len(stale), folder)
    record = {"started": time.time(), "before": sorted(_files(folder)), "written": None}
    write_text_atomic(folder / RECORD_FILE, json.dumps(record, indent=1) + "\n")
    return str(folder)


def _record_written(folder: Path) -> None:
    """Record the files this run wrote (new since it began, or rewritten) and release the folder."""
    try:
        record = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
        started, before = float(record["started"]), set(record["before"])
    except (OSError, ValueError, KeyError, TypeError):
        started, before = 0.0, set()
    written = sorted(name for name, mtime in _files(folder).items() if name not in before or mtime >= started)
    write_text_atomic(
        folder / RECORD_FILE,
        json.dumps({"started": started, "before": sorted(before), "written": written}, indent=1) + "\n",
    )
    descriptor = _held_locks.pop(str(folder), None)
    if descriptor is not None:
        os.close(descriptor)


def partition_inputs(
    items: Sequence[Mapping[str, Any]], check: Callable[[Mapping[str, Any]], None], name_key: str = "name"
) -> tuple[list[dict], dict[str, str]]:
    """Split inference inputs into those ``check`` accepts and the reasons for the others.

    Args:
        items: the inputs (dicts), e.g. from :func:`nnmamba_nets.common.datalists.inference_inputs`.
        check: raises ValueError with the reason when an input cannot be trusted.
        name_key: key of the input's name in the report (a case id or a file). Defaults to ``"name"``.

    Returns:
        (accepted inputs, ``{name: reason}`` for the rejected ones, in input order).
    """
    accepted, rejected = [], {}
    for item in items:
        name = str(item.get(name_key) or item.get("image"))
        try:
            check(item)
        except ValueError as error:
            rejected[name] = str(error)
            _logger.error("rejected %s: %s", name, error)
        else:
            accepted.append(dict(item))
    return accepted, rejected


def image_check(channels: int = 1) -> Callable[[Mapping[str, Any]], None]:
    """The check of a one-image input (``item["image"]``): :func:`~nnmamba_nets.common.images.check_image_file`
    and the channel count.

    Args:
        channels: channels the network takes. Defaults to 1.

    Returns:
        a check for :func:`partition_inputs`.
    """

    def check(item: Mapping[str, Any]) -> None:
        info = check_image_file(item["image"])
        if info.channels != channels:
            raise ValueError(f"{item['image']!r}: {info.channels} channel(s), the network takes {channels}.")

    return check


def finish_inference(
    rejected: Mapping[str, str], output_dir: str | os.PathLike, processed: int, what: str = "cases"
) -> None:
    """End an inference run: write the rejected list, record what the run wrote, log one summary line, fail
    if anything was rejected.

    Args:
        rejected: ``{name: reason}`` from :func:`partition_inputs`.
        output_dir: the run's output folder (see :func:`begin_inference`); ``rejected_cases.json`` is written
            there (``{}`` when empty).
        processed: how many inputs went through the network.
        what: what the inputs are called in the line. Defaults to ``"cases"``.

    Raises:
        ValueError: when anything was rejected (so the run exits non-zero), listing the rejections.
    """
    report = os.path.join(os.fspath(output_dir), REJECTED_FILE)
    write_text_atomic(report, json.dumps(dict(rejected), indent=2) + "\n")
    _record_written(Path(output_dir).expanduser().resolve())
    _logger.info("%d %s written to %s; %d rejected (%s)", processed, what, os.fspath(output_dir), len(rejected), report)
    if rejected:
        raise ValueError(
            f"{len(rejected)} of {processed + len(rejected)} {what} were rejected (listed in {report!r}); "
            "the others were processed:\n" + "\n".join(f"{name}: {reason}" for name, reason in rejected.items())
        )
