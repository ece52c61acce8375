"""write_text_atomic / write_bytes_atomic: whole content, usual permissions, no temporary file left behind."""

from __future__ import annotations

import os
import stat

import pytest

from nnmamba_nets.common.files import write_bytes_atomic, write_text_atomic


def test_writes_with_the_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    target = tmp_path / "new" / "datalist.json"  # the parent folder is created
    write_text_atomic(target, '{"a": 1}\n')
    assert target.read_text() == '{"a": 1}\n'
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    write_text_atomic(target, "second\n")  # replaces
    assert target.read_text() == "second\n"
    assert os.listdir(target.parent) == ["datalist.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(TypeError):  # fails inside the write, after the temporary file was created
        write_bytes_atomic(target, None)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"]
