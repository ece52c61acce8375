"""The one cache of the synthetic demo sets: build a named set once, atomically, and return its datalist.

A demo set lives in ``<cache root>/<name>/<settings>/`` with its files, ``datalist.json`` and
``manifest.json`` (the settings that made it). The cache root is ``$NNMAMBA_CACHE`` when the environment
variable is set and not empty, else ``~/.cache/nnmamba_nets``. A set is built in a hidden staging folder
beside its final place and renamed into place when complete, so an interrupted build leaves nothing
half-written and concurrent callers (DDP ranks, parallel runs) all get the same complete set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["CACHE_ENV_VAR", "DATALIST_FILE", "MANIFEST_FILE", "cache_root", "demo_datalist"]

CACHE_ENV_VAR = "NNMAMBA_CACHE"
DATALIST_FILE = "datalist.json"
MANIFEST_FILE = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def cache_root() -> Path:
    """``$NNMAMBA_CACHE``, or ``~/.cache/nnmamba_nets`` when the variable is unset or empty (not created here)."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "nnmamba_nets").expanduser().resolve()


def _folder_name(settings: Mapping[str, Any]) -> str:
    """``"num_cases24_size48_seed0"``: the settings in order, as one folder name."""
    name = "_".join(f"{key}{value}" for key, value in settings.items())
    if not _NAME.match(name):
        raise ValueError(f"demo settings must be plain names and numbers, got {dict(settings)}.")
    return name


def _is_complete(folder: Path, settings: Mapping[str, Any]) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return manifest.get("settings") == dict(settings) and (folder / DATALIST_FILE).is_file()


def demo_datalist(name: str, version: int, write: Callable[..., Any], **settings: Any) -> str:
    """The datalist JSON of the demo set ``name`` made with ``settings``, written once by ``write``.

    Args:
        name: the set's folder name, e.g. ``"brats_synthetic"``.
        version: the generator's version (bumped when its output changes, so old sets are not reused).
        write: ``write(folder, **settings)`` writes the set into the empty folder it is given, including
            ``datalist.json``.
        settings: everything else the content depends on, in a fixed order; with the version they name
            the sub-folder, so other settings never overwrite this set.

    Returns:
        the absolute path of the set's ``datalist.json``.

    Raises:
        ValueError: ``name`` or ``settings`` do not make a plain folder name.
        FileExistsError: the set's folder exists but is neither complete nor this set (it is never touched).
    """
    if not _NAME.match(name):
        raise ValueError(f"demo set name must be a plain folder name, got {name!r}.")
    settings = {**settings, "version": version}
    target = cache_root() / name / _folder_name(settings)
    if _is_complete(target, settings):
        return str(target / DATALIST_FILE)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{str(target)!r} exists, is not empty and is not a complete demo set; remove it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the finished set should not be
        write(staging, **{key: value for key, value in settings.items() if key != "version"})
        if not (staging / DATALIST_FILE).is_file():
            raise RuntimeError(f"building demo set {name!r} wrote no {DATALIST_FILE}.")
        (staging / MANIFEST_FILE).write_text(json.dumps({"name": name, "settings": dict(settings)}, indent=1) + "\n")
        try:
            if target.exists():
                target.rmdir()  # an empty folder, checked above
            os.rename(staging, target)
        except OSError:
            if not _is_complete(target, settings):  # another process did not win the race either
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target / DATALIST_FILE)
