"""Small file helpers shared by the data generators and handlers."""

from __future__ import annotations

import os
import tempfile

__all__ = ["write_text_atomic"]


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file through a temporary file in the same folder and a rename.

    Readers (other processes, DDP ranks) never see a half-written file; parent folders are created.

    Args:
        path: destination file.
        text: the whole content.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
