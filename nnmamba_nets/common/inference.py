"""What every bundle's inference does around the network: check the inputs first, report the rejected ones.

:func:`partition_inputs` checks every input before anything reaches the network and keeps the reason for
each one it rejects; :func:`finish_inference` ends the run with one line (how many inputs were written
where, how many were rejected and where that list is), writes ``rejected_cases.json`` (always, empty
when nothing was rejected, so a rerun never leaves a stale list) and fails the run when anything was
rejected. The three bundles share these, so they behave and report alike.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nnmamba_nets.common.files import write_text_atomic
from nnmamba_nets.common.images import check_image_file

__all__ = ["REJECTED_FILE", "finish_inference", "image_check", "partition_inputs"]

REJECTED_FILE = "rejected_cases.json"
_logger = logging.getLogger(__name__)


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
    """End an inference run: write the rejected list, log one summary line, fail if anything was rejected.

    Args:
        rejected: ``{name: reason}`` from :func:`partition_inputs`.
        output_dir: the run's output folder; ``rejected_cases.json`` is written there (``{}`` when empty).
        processed: how many inputs went through the network.
        what: what the inputs are called in the line. Defaults to ``"cases"``.

    Raises:
        ValueError: when anything was rejected (so the run exits non-zero), listing the rejections.
    """
    report = os.path.join(os.fspath(output_dir), REJECTED_FILE)
    write_text_atomic(report, json.dumps(dict(rejected), indent=2) + "\n")
    _logger.info("%d %s written to %s; %d rejected (%s)", processed, what, os.fspath(output_dir), len(rejected), report)
    if rejected:
        raise ValueError(
            f"{len(rejected)} of {processed + len(rejected)} {what} were rejected (listed in {report!r}); "
            "the others were processed:\n" + "\n".join(f"{name}: {reason}" for name, reason in rejected.items())
        )
