"""Tests of nnmamba_nets.common.flags.as_flag: CLI text read as what it says, errors that name the id."""

from __future__ import annotations

import pytest

from nnmamba_nets.common.flags import as_flag


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True),
        (False, False),
        ("false", False),
        ("True", True),
        (" no ", False),
        ("1", True),
        (0, False),
        ("y", True),
    ],
)
def test_as_flag_reads_cli_text(value, expected):
    assert as_flag(value, "resume") is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, [True], 1.0])
def test_as_flag_names_the_id_on_bad_values(value):
    with pytest.raises(ValueError, match="resume must be True or False"):
        as_flag(value, "resume")
