"""The landmark protocol of a model: its landmark names in channel order, and a description of each.

A name is the label of a control point in the landmark files (the landmark's identity: ``"TCD_start"`` in the
fetal demo, ``"1"``..``"32"`` in the AFIDs protocol), a description what Slicer shows beside it (the anatomical
name, ``"AC"``, ``"infracollicular sulcus"``, ...). The protocol travels with the data and the weights under two
keys, ``landmark_names`` and ``landmark_descriptions``, the same in every file that records it:

* :func:`nnmamba_nets.landmarks.datalist.prepare_datalist` reads it from the landmark files and records it in the
  datalist;
* training takes it from the datalist (:meth:`LandmarkProtocol.from_datalist`; the bundle ids ``landmark_names``
  and ``landmark_descriptions`` override it) and writes it beside the weights (:data:`PROTOCOL_FILE` in
  ``ckpt_dir``, :meth:`LandmarkProtocol.save`);
* inference and evaluation read it from beside the weights they run (:func:`trained_protocol`), so they write the
  same names and descriptions without being told again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnmamba_nets.common.files import write_text_atomic
from nnmamba_nets.landmarks.io import read_landmarks

__all__ = [
    "DESCRIPTIONS_KEY",
    "NAMES_KEY",
    "PROTOCOL_FILE",
    "LandmarkProtocol",
    "MissingProtocolError",
    "trained_protocol",
]

PROTOCOL_FILE = "landmark_protocol.json"
"""The protocol record that training writes beside ``model.pt``."""
NAMES_KEY = "landmark_names"
DESCRIPTIONS_KEY = "landmark_descriptions"


class MissingProtocolError(ValueError):
    """No protocol record beside the weights and none given: the landmark names are unknown."""


def _strings(values: object, what: str, source: str) -> tuple[str, ...]:
    """``values`` as a tuple of strings; a single string or a non-list is an error naming ``source``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{source}: {what} must be a list of strings, got {values!r}.")
    return tuple(str(v) for v in values)


@dataclass(frozen=True)
class LandmarkProtocol:
    """Landmark names in the network's channel order and one description per name.

    Args:
        names: the landmark labels, unique, in channel order.
        descriptions: one description per name. Defaults to empty descriptions.
        source: what the protocol was read from, named in error messages. Defaults to ``"landmark protocol"``.

    Raises:
        ValueError: no name, a duplicated name, or as many descriptions as names.
    """

    names: tuple[str, ...]
    descriptions: tuple[str, ...] = ()
    source: str = field(default="landmark protocol", compare=False)

    def __post_init__(self) -> None:
        names = _strings(self.names, NAMES_KEY, self.source)
        descriptions = _strings(self.descriptions, DESCRIPTIONS_KEY, self.source) or ("",) * len(names)
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if not names or duplicated:
            raise ValueError(f"{self.source}: landmark names must be non-empty and unique, got {list(names)}.")
        if len(descriptions) != len(names):
            raise ValueError(
                f"{self.source}: {len(descriptions)} landmark descriptions for the {len(names)} landmark names "
                f"{list(names)}."
            )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "descriptions", descriptions)

    def __len__(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, list[str]]:
        """``{"landmark_names": [...], "landmark_descriptions": [...]}``, as datalists and the record hold it."""
        return {NAMES_KEY: list(self.names), DESCRIPTIONS_KEY: list(self.descriptions)}

    @classmethod
    def from_mapping(cls, content: Mapping[str, Any], source: str) -> LandmarkProtocol:
        """The protocol recorded under :data:`NAMES_KEY` and :data:`DESCRIPTIONS_KEY` (optional) of ``content``.

        Raises:
            ValueError: naming ``source`` when the names are missing or malformed.
        """
        if NAMES_KEY not in content:
            raise ValueError(f"{source}: no {NAMES_KEY!r} recorded.")
        return cls(content[NAMES_KEY], content.get(DESCRIPTIONS_KEY) or (), source)

    def save(self, path: str | os.PathLike) -> None:
        """Write the protocol as JSON (atomically: a temporary file, then a rename)."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> LandmarkProtocol:
        """Read a protocol written by :meth:`save`.

        Raises:
            ValueError: naming the file when it cannot be read or holds no protocol.
        """
        try:
            content = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read the landmark protocol {os.fspath(path)!r}: {error}") from error
        if not isinstance(content, dict):
            raise ValueError(f"{os.fspath(path)}: a landmark protocol is a JSON object, got {type(content).__name__}.")
        return cls.from_mapping(content, os.fspath(path))

    def with_overrides(
        self, names: Sequence[str] | None = None, descriptions: Sequence[str] | None = None
    ) -> LandmarkProtocol:
        """This protocol with explicitly given names and/or descriptions, which win.

        Args:
            names: other names (channel order); their descriptions are this protocol's for the same names ("" for
                names it lacks). Defaults to None: this protocol's names.
            descriptions: other descriptions, one per name. Defaults to None: as above.

        Returns:
            the resulting protocol.
        """
        if names is None and descriptions is None:
            return self
        chosen = self.names if names is None else _strings(names, NAMES_KEY, "the given landmark_names")
        if descriptions is None:
            known = dict(zip(self.names, self.descriptions))
            descriptions = [known.get(name, "") for name in chosen]
        return LandmarkProtocol(chosen, _strings(descriptions, DESCRIPTIONS_KEY, "the given landmark_descriptions"))

    @classmethod
    def from_datalist(
        cls,
        datalist: Mapping[str, Any],
        names: Sequence[str] | None = None,
        descriptions: Sequence[str] | None = None,
        source: str | os.PathLike = "datalist",
    ) -> LandmarkProtocol:
        """The protocol of a datalist (what ``prepare_datalist`` recorded), with explicit names/descriptions winning.

        A datalist that records no ``landmark_names`` (written by hand) gives the labels and descriptions of its
        first training case's landmark file.

        Args:
            datalist: the datalist's content (:func:`~nnmamba_nets.common.datalists.read_datalist`).
            names: the landmarks in the channel order wanted; the same labels as recorded, in any order.
                Defaults to None: as recorded.
            descriptions: one description per name. Defaults to None: as recorded.
            source: the datalist file, named in error messages.

        Returns:
            the protocol.

        Raises:
            ValueError: no protocol recorded and no training case to read it from, or ``names`` that are not the
                recorded labels.
        """
        source = os.fspath(source)
        if NAMES_KEY in datalist:
            recorded = cls.from_mapping(datalist, source)
        elif datalist.get("training"):
            landmark_file = datalist["training"][0].get("landmarks")
            if landmark_file is None:
                raise ValueError(f"{source}: records no {NAMES_KEY!r} and its first training case has no 'landmarks'.")
            found = read_landmarks(landmark_file)
            recorded = cls(found.names, found.descriptions, os.fspath(landmark_file))
        else:
            raise ValueError(f"{source}: records no {NAMES_KEY!r} and has no training case to read them from.")
        if names is not None and set(_strings(names, NAMES_KEY, "landmark_names")) != set(recorded.names):
            raise ValueError(
                f"landmark_names {list(names)} are not the landmark labels {list(recorded.names)} of "
                f"{recorded.source}; give the same labels (in the channel order you want) or leave landmark_names null."
            )
        return recorded.with_overrides(names, descriptions)


def trained_protocol(
    protocol_file: str | os.PathLike, names: Sequence[str] | None = None, descriptions: Sequence[str] | None = None
) -> LandmarkProtocol:
    """The protocol of trained weights: the record beside them, with explicit names/descriptions winning.

    Args:
        protocol_file: the record (``<folder of model.pt>/landmark_protocol.json``, written by training).
        names: the weights' channel order, for weights trained without the record. Defaults to None: as recorded.
        descriptions: one description per name. Defaults to None: as recorded (empty without a record).

    Returns:
        the protocol.

    Raises:
        MissingProtocolError: no record and no ``names``, naming the file and what to pass instead.
        ValueError: the record cannot be read.
    """
    if Path(protocol_file).is_file():
        return LandmarkProtocol.load(protocol_file).with_overrides(names, descriptions)
    if names is None:
        raise MissingProtocolError(
            f"no landmark protocol at {os.fspath(protocol_file)!r}: training writes it beside model.pt; for weights "
            "trained without it pass the channel order, e.g. --landmark_names \"['TCD_start', 'TCD_end', ...]\" "
            "(and --landmark_descriptions for their descriptions)."
        )
    return LandmarkProtocol(names, descriptions or (), "the given landmark_names")
