"""Boolean config values that may arrive from the command line as text."""

from __future__ import annotations

from typing import Any

from monai.utils import str2bool

__all__ = ["as_flag"]


def as_flag(value: Any, name: str) -> bool:
    """``value`` of the config id ``name`` as a bool: :func:`monai.utils.str2bool` that names the id.

    The MONAI bundle CLI (python-fire) passes ``--resume false`` on as the string ``"false"``, which a
    config expression would treat as true, and ``--resume 1`` as the int 1, which ``str2bool`` rejects.
    Ours adds the int case, surrounding blanks, and the config id in the error message.

    Args:
        value: a bool, 0 or 1, or a string ``str2bool`` reads (true/false, yes/no, t/f, y/n, 1/0, any case).
        name: the config id, for the error message.

    Returns:
        the flag.

    Raises:
        ValueError: ``value`` is none of the above.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    if isinstance(value, (bool, str)):
        try:
            return str2bool(value.strip() if isinstance(value, str) else value)
        except ValueError:
            pass
    raise ValueError(f"{name} must be True or False, got {value!r}.")
