"""Tests of nnmamba_nets.release: ``--verify`` refuses bad release zips before anything is extracted.

The end-to-end tests (a release built, downloaded with ``monai.bundle download`` and verified) are in
tests/scripts/test_build_release.py, next to the builder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from nnmamba_nets.release import check_version_changelog, verify_bundle_dir, verify_release_zip
from tests.utils import BUNDLES_DIR, run_bundle

BUNDLE = "nnmamba_brats_segmentation"
OUTSIDE_ENV = {"PYTHONPATH": "", "OMP_NUM_THREADS": "2"}


def metadata_of(version: str, changelog: dict) -> dict:
    return {"version": version, "changelog": changelog}


@pytest.mark.parametrize(
    "metadata, message",
    [
        (metadata_of("0.2.0", {"0.1.0": "first"}), "no entry for version '0.2.0'"),
        (metadata_of("0.1.0", {"0.1.0": " "}), "no entry for version '0.1.0'"),
        (metadata_of("0.1.0", {"0.2.0": "next", "0.1.0": "first"}), "newer versions ['0.2.0']"),
        (metadata_of("latest", {"latest": "?"}), "must be a version"),
        ({"changelog": {"0.1.0": "first"}}, "must be a version"),
    ],
)
def test_version_and_changelog_must_agree(metadata, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_version_changelog(metadata, "metadata.json")


def test_version_with_changelog_entry_is_accepted():
    assert check_version_changelog(metadata_of("0.2.0", {"0.2.0": "fix", "0.1.0": "first"}), "m") == "0.2.0"


def minimal_zip(path: Path, extra_members: dict[str, bytes]) -> Path:
    """A zip holding the segmentation bundle's metadata.json under its top folder plus ``extra_members``."""
    metadata = (BUNDLES_DIR / BUNDLE / "configs" / "metadata.json").read_bytes()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{BUNDLE}/configs/metadata.json", metadata)
        for name, data in extra_members.items():
            archive.writestr(name, data)
    return path


def test_path_traversal_member_is_refused_by_monai_download_and_by_verify(tmp_path):
    release = minimal_zip(tmp_path / f"{BUNDLE}_v0.1.0.zip", {"../evil.py": b"print('owned')\n"})
    downloads = tmp_path / "downloads" / "inner"
    result = run_bundle(
        "download",
        "--name",
        BUNDLE,
        "--url",
        release.as_uri(),
        "--bundle_dir",
        str(downloads),
        cwd=tmp_path,
        env=OUTSIDE_ENV,
        check=False,
    )
    assert result.returncode != 0
    assert "Unsafe path detected in archive: ../evil.py" in result.stdout + result.stderr  # MONAI's own refusal
    assert not (downloads.parent / "evil.py").exists()
    with pytest.raises(ValueError, match="path traversal"):
        verify_release_zip(release)


@pytest.mark.parametrize(
    "members, message",
    [
        ({f"/{BUNDLE}/x.py": b""}, "path traversal"),
        ({"other_bundle/configs/metadata.json": b"{}"}, "one top folder"),
        ({f"{BUNDLE}/large_files.yml": b"large_files:\n- path: models/model.pt\n  url: file:///x\n"}, "no usable hash"),
    ],
)
def test_verify_refuses_malformed_zips(tmp_path, members, message):
    with pytest.raises(ValueError, match=message):
        verify_release_zip(minimal_zip(tmp_path / "release.zip", members))


def test_verify_refuses_symbolic_link_members(tmp_path):
    release = minimal_zip(tmp_path / "release.zip", {})
    link = zipfile.ZipInfo(f"{BUNDLE}/configs/inference.yaml")
    link.external_attr = 0o120777 << 16  # a symbolic link to /etc/passwd
    with zipfile.ZipFile(release, "a") as archive:
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(ValueError, match="symbolic link"):
        verify_release_zip(release)


class Payload:
    """A pickle payload: unpickling it would run ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def weights_zip(tmp_path: Path, weights: bytes, recorded: bytes | None = None, name: str = "release.zip") -> Path:
    """A minimal release zip with ``models/model.pt`` = ``weights`` and a provenance recording ``recorded``."""
    sha256 = hashlib.sha256(weights if recorded is None else recorded).hexdigest()
    provenance = json.dumps({"weights": "models/model.pt", "weights_sha256": {"models/model.pt": sha256}})
    return minimal_zip(
        tmp_path / name,
        {f"{BUNDLE}/models/model.pt": weights, f"{BUNDLE}/models/provenance.json": provenance.encode()},
    )


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_verify_checks_every_weights_file_whatever_its_size(tmp_path):
    good = saved({"w": torch.ones(2)})
    assert verify_release_zip(weights_zip(tmp_path, good)) == BUNDLE
    swapped = saved({"w": torch.zeros(2)})
    with pytest.raises(ValueError, match="swapped, truncated or tampered with"):
        verify_release_zip(weights_zip(tmp_path, swapped, recorded=good))
    with pytest.raises(ValueError, match="swapped, truncated or tampered with"):
        verify_release_zip(weights_zip(tmp_path, good[: len(good) // 2], recorded=good))
    unrecorded = minimal_zip(tmp_path / "unrecorded.zip", {f"{BUNDLE}/models/model.pt": good})
    with pytest.raises(ValueError, match="no models/provenance.json"):
        verify_release_zip(unrecorded)


def test_a_pickle_payload_recorded_as_the_weights_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload_ran"
    payload = pickle.dumps({"w": Payload(marker)}, protocol=2)  # the protocol torch.save writes
    with pytest.raises(ValueError, match=r"does not load with torch.load\(weights_only=True\)"):
        verify_release_zip(weights_zip(tmp_path, payload))  # even with a matching hash
    assert not marker.exists()
    folder = tmp_path / "folder" / BUNDLE
    with zipfile.ZipFile(weights_zip(tmp_path, payload, name="payload.zip")) as archive:
        archive.extractall(tmp_path / "folder")
    with pytest.raises(ValueError, match="does not load"):
        verify_bundle_dir(folder)
    assert not marker.exists()
