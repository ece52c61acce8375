"""Boolean config values that may arrive from the command line as text."""

from __future__ import annotations

from typing import Any

__all__ = ["as_flag"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def as_flag(value: Any, name: str) -> bool:
    """``value`` of the config id ``name`` as a bool.

    The MONAI bundle CLI (python-fire) passes ``--resume false`` on as the string ``"false"``, which a
    config expression would treat as true; this reads such strings (any case) as what they say.

    Args:
        value: a bool, 0 or 1, or one of the strings true/false, yes/no, on/off, 1/0.
        name: the config id, for the error message.

    Returns:
        the flag.

    Raises:
        ValueError: ``value`` is none of the above.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError(f"{name} must be True or False, got {value!r}.")
