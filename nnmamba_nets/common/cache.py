"""Where the bundles keep generated demo data.

Demo datasets are generated once, deterministically, and reused: under ``$NNMAMBA_CACHE/<dataset>``
when the environment variable ``NNMAMBA_CACHE`` is set, else under ``~/.cache/nnmamba_nets/<dataset>``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV_VAR", "demo_data_dir"]

CACHE_ENV_VAR = "NNMAMBA_CACHE"


def demo_data_dir(dataset: str) -> str:
    """Cache folder of one demo dataset (not created here).

    Args:
        dataset: the dataset's folder name, e.g. ``"adni_demo"``; a plain name, not a path.

    Returns:
        absolute path ``$NNMAMBA_CACHE/<dataset>``, or ``~/.cache/nnmamba_nets/<dataset>`` when the
        variable is unset or empty.
    """
    if not dataset or Path(dataset).name != dataset or dataset in (".", ".."):
        raise ValueError(f"dataset must be a plain folder name, got {dataset!r}.")
    root = os.environ.get(CACHE_ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "nnmamba_nets")
    return os.path.abspath(os.path.join(root, dataset))
