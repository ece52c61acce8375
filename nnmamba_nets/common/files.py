"""Small file helpers shared by the data generators and handlers."""

from __future__ import annotations

import os
import secrets

__all__ = ["write_bytes_atomic", "write_text_atomic"]


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write a file through a temporary file in the same folder and a rename.

    Readers (other processes, DDP ranks) never see a half-written file; parent folders are created.

    Args:
        path: destination file.
        data: the whole content.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # a fresh, exclusive name; created by open() so the file gets the usual umask-based permissions
    tmp_path = os.path.join(folder, f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{os.path.basename(path)}")
    try:
        with open(tmp_path, "xb") as stream:
            stream.write(data)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a UTF-8 text file whole, as :func:`write_bytes_atomic` does.

    Args:
        path: destination file.
        text: the whole content.
    """
    write_bytes_atomic(path, text.encode("utf-8"))
