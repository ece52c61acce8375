"""Which nnMamba bundles the MONAI Label app serves, and the app's ``--conf`` settings for them.

A bundle's task comes from its folder name, as in MONAI Label's bundle app:
``*_segmentation`` -> segmentation, ``*_classification`` -> classification,
``*_landmarks`` -> landmark detection. The model name shown by ``/info/`` is the folder name.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

__all__ = ["TASK_BY_SUFFIX", "BundleEntry", "BundleOverrides", "find_bundles", "parse_bundle_overrides"]

logger = logging.getLogger(__name__)

TASK_BY_SUFFIX = {"_segmentation": "segmentation", "_classification": "classification", "_landmarks": "landmarks"}
"""Folder-name suffix -> task of the bundle."""


@dataclass(frozen=True)
class BundleEntry:
    """One servable bundle.

    Args:
        name: folder name, used as the MONAI Label model name.
        path: absolute path of the bundle folder.
        task: ``"segmentation"``, ``"classification"`` or ``"landmarks"``.
    """

    name: str
    path: str
    task: str


def _task_of(folder_name: str) -> str | None:
    for suffix, task in TASK_BY_SUFFIX.items():
        if folder_name.endswith(suffix):
            return task
    return None


def find_bundles(bundles_dir: str | os.PathLike, models: str = "all") -> dict[str, BundleEntry]:
    """List the bundles of ``bundles_dir`` that the app can serve.

    A bundle qualifies when its folder name ends in one of :data:`TASK_BY_SUFFIX` and it has
    ``configs/inference.yaml`` (or ``.json``); other folders are skipped with a log line.

    Args:
        bundles_dir: folder holding bundle folders (the repository's ``bundles/`` by default).
        models: ``"all"`` or a comma-separated list of bundle folder names to serve.

    Returns:
        model name -> :class:`BundleEntry`, sorted by name.

    Raises:
        ValueError: ``bundles_dir`` is not a folder, or ``models`` names a bundle that is not there.
    """
    root = Path(bundles_dir).expanduser().resolve()
    if not root.is_dir():
        raise ValueError(f"--conf bundles: {str(root)!r} is not a folder of MONAI bundles.")
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        task = _task_of(folder.name)
        has_inference = any((folder / "configs" / f"inference.{ext}").is_file() for ext in ("yaml", "json"))
        if task is None or not has_inference:
            logger.info(
                f"skipping {folder}: not a *_segmentation/_classification/_landmarks bundle with an inference config"
            )
            continue
        found[folder.name] = BundleEntry(folder.name, str(folder), task)
    if models.strip().lower() == "all":
        return found
    wanted = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in found]
    if unknown:
        raise ValueError(f"--conf models: {unknown} not found in {str(root)!r}; available: {sorted(found)}.")
    return {m: found[m] for m in wanted}


def parse_bundle_overrides(value: str, bundle_names: list[str]) -> dict[str, dict[str, Any]]:
    """Read the ``bundle_overrides`` setting: config ids to override per bundle.

    The overrides are applied to the bundle's inference config and, for trainable bundles, to its
    train config, like ``--id value`` arguments of ``python -m monai.bundle run``.

    Args:
        value: JSON text or the path of a JSON file, e.g.
            ``{"nnmamba_brats_segmentation": {"channels": 8, "roi_size": [32, 32, 32]}}``.
        bundle_names: names of the served bundles (keys must be among them).

    Returns:
        bundle name -> {config id: value}.

    Raises:
        ValueError: the text is neither valid JSON nor a readable JSON file, has the wrong shape, or
            names a bundle that is not served.
    """
    text = value.strip()
    if not text:
        return {}
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text()
        except OSError as error:
            raise ValueError(f"--conf bundle_overrides: cannot read JSON file {value!r}: {error}") from error
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--conf bundle_overrides: invalid JSON ({error}) in {value!r}") from error
    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        raise ValueError(
            f"--conf bundle_overrides must be a JSON object {{bundle name: {{config id: value}}}}, got {value!r}."
        )
    unknown = sorted(set(overrides) - set(bundle_names))
    if unknown:
        raise ValueError(
            f"--conf bundle_overrides names bundles {unknown} that are not served; served: {bundle_names}."
        )
    return overrides


class BundleOverrides:
    """Mixin for MONAI Label's bundle tasks: apply ``self.overrides`` (config id -> value) to the bundle config.

    Set ``self.overrides`` before calling the task's ``__init__``, which reads the config.
    """

    overrides: dict[str, Any]

    def _load_bundle_config(self, path: str, config: str) -> ConfigParser:
        parser = super()._load_bundle_config(path, config)  # type: ignore[misc]
        for key, value in self.overrides.items():
            parser[key] = value
        return parser
