"""Tests of nnmamba_nets.demo.cache: one demo set built once, atomically, shared by concurrent callers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from nnmamba_nets.demo import cache


def writer(calls: list) -> callable:
    """A write function that records its calls and writes one file and a datalist."""

    def build(folder: Path, **settings) -> None:
        calls.append((folder, settings))
        (folder / "data.txt").write_text("content")
        (folder / cache.DATALIST_FILE).write_text(json.dumps({"training": [{"image": "data.txt"}]}))

    return build


def test_built_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path))
    calls: list = []
    path = cache.demo_datalist("toy", 2, writer(calls), size=8, seed=0)
    assert path == str(tmp_path / "toy" / "size8_seed0_version2" / cache.DATALIST_FILE)
    manifest = json.loads((tmp_path / "toy" / "size8_seed0_version2" / cache.MANIFEST_FILE).read_text())
    assert manifest["settings"] == {"size": 8, "seed": 0, "version": 2} and calls[0][1] == {"size": 8, "seed": 0}
    assert cache.demo_datalist("toy", 2, writer(calls), size=8, seed=0) == path and len(calls) == 1
    cache.demo_datalist("toy", 2, writer(calls), size=8, seed=1)  # other settings: another set
    assert len(calls) == 2
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == ["size8_seed0_version2", "size8_seed1_version2"]


def test_a_failed_build_leaves_nothing_and_a_foreign_folder_is_never_touched(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path))

    def failing(folder: Path, **settings) -> None:
        (folder / "half.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.demo_datalist("toy", 1, failing, seed=0)
    assert list((tmp_path / "toy").iterdir()) == []  # no staging folder, no half set
    foreign = tmp_path / "toy" / "seed1_version1"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not a complete demo set"):
        cache.demo_datalist("toy", 1, writer([]), seed=1)
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"]
    with pytest.raises(ValueError, match="plain folder name"):
        cache.demo_datalist("../escape", 1, writer([]), seed=0)


def test_concurrent_callers_get_one_complete_set(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path))
    calls: list = []
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.demo_datalist("toy", 1, writer(calls), seed=3)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 4
    folder = Path(results[0]).parent
    assert sorted(p.name for p in folder.iterdir()) == sorted([cache.DATALIST_FILE, "data.txt", cache.MANIFEST_FILE])
    assert [p.name for p in folder.parent.iterdir()] == ["seed3_version1"]  # no staging folder left behind


def test_cache_root_default_and_override(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV_VAR, "")
    assert cache.cache_root() == Path.home().resolve() / ".cache" / "nnmamba_nets"
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path))
    assert cache.cache_root() == tmp_path.resolve()
