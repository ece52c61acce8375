"""Check a bundle release before trusting it: a release zip (before extracting it) or a downloaded bundle folder.

    python -m nnmamba_nets.release --verify dist/nnmamba_brats_segmentation_v0.1.0.zip
    python -m nnmamba_nets.release --verify ~/bundles/nnmamba_brats_segmentation

A zip is checked without extracting it: no member outside the one top folder (no absolute or ``..``
path, no link), a ``configs/metadata.json`` whose version has a changelog entry and matches the
``_v<version>.zip`` file name, every ``large_files.yml`` entry that is in the zip with its sha256, and
every weights file (``models/*.pt``, whatever its size) with the sha256 that ``models/provenance.json``
records for it and loadable with ``torch.load(weights_only=True)``. A folder is checked the same way,
with every ``large_files.yml`` entry and every recorded weights file present. Releases are built by the
repository's ``scripts/build_release.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import re
import stat
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO

import torch
import yaml
from packaging.version import InvalidVersion, Version

__all__ = [
    "HASH_TYPE",
    "LARGE_FILES_NAME",
    "PROVENANCE_PATH",
    "WEIGHTS_PATH",
    "check_large_files",
    "check_version_changelog",
    "check_weights",
    "file_hash",
    "open_inside",
    "read_metadata",
    "verify_bundle_dir",
    "verify_release_zip",
]

LARGE_FILES_NAME = "large_files.yml"
WEIGHTS_PATH = "models/model.pt"
PROVENANCE_PATH = "models/provenance.json"
HASH_TYPE = "sha256"
WEIGHTS_SUFFIXES = (".pt", ".pth", ".ckpt")

logger = logging.getLogger(__name__)


def file_hash(stream: IO[bytes], hash_type: str = HASH_TYPE) -> str:
    """The hex digest of a stream (a file, or a zip member read without extracting it).

    Ours rather than :func:`monai.apps.utils.check_hash`, which reads only files on disk and answers
    only true or false: zip members are checked before anything is extracted, and a refusal names
    the hash found.
    """
    digest = hashlib.new(hash_type)
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def check_version_changelog(metadata: Mapping, source: str) -> str:
    """Check that ``version`` is a valid version with a changelog entry and that no changelog entry is newer.

    Args:
        metadata: the content of ``configs/metadata.json``.
        source: where it came from, for error messages.

    Returns:
        the version.

    Raises:
        ValueError: missing or invalid version, no changelog entry for it, or a newer changelog entry.
    """
    version, changelog = metadata.get("version"), metadata.get("changelog")
    try:
        parsed = Version(str(version))
    except InvalidVersion as error:
        raise ValueError(f"{source}: 'version' must be a version like '0.1.0', got {version!r}.") from error
    if not isinstance(changelog, Mapping) or not str(changelog.get(version, "")).strip():
        raise ValueError(f"{source}: 'changelog' has no entry for version {version!r}; add one before releasing.")
    newer = []
    for entry in changelog:
        try:
            if Version(str(entry)) > parsed:
                newer.append(entry)
        except InvalidVersion as error:
            raise ValueError(f"{source}: changelog key {entry!r} is not a version.") from error
    if newer:
        raise ValueError(f"{source}: 'version' is {version!r} but the changelog lists newer versions {newer}.")
    return str(version)


def read_metadata(bundle_dir: Path) -> dict:
    """The bundle's ``configs/metadata.json`` as a dict; ValueError naming the file when it cannot be read."""
    path = bundle_dir / "configs" / "metadata.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"bundle {bundle_dir}: cannot read {path}: {error}") from error


def open_inside(root: Path, relative: str) -> IO[bytes] | None:
    """Open ``root/relative`` for reading if it is a file inside ``root``, else None."""
    path = (root / relative).resolve()
    return open(path, "rb") if path.is_file() and root.resolve() in path.parents else None


def check_large_files(
    listing_text: str | None, open_file: Callable[[str], IO[bytes] | None], where: str, require_present: bool
) -> list[str]:
    """Problems with the ``large_files.yml`` entries of one bundle (empty list: all good).

    Args:
        listing_text: the content of ``large_files.yml``, or None when the bundle has none.
        open_file: opens a bundle-relative path for reading, or returns None when it is absent.
        where: the bundle (zip or folder) named in the messages.
        require_present: an absent file is a problem (a folder) or not (a zip, whose large files
            may be hosted elsewhere).

    Returns:
        one message per problem.
    """
    if listing_text is None:
        return []
    try:
        entries = (yaml.safe_load(listing_text) or {}).get("large_files", [])
    except yaml.YAMLError as error:
        return [f"{where}: unreadable {LARGE_FILES_NAME}: {error}"]
    problems = []
    for entry in entries:
        path = str(entry.get("path", ""))
        if not path or PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
            problems.append(f"{where}: large file path {path!r} is not inside the bundle")
            continue
        hash_type = str(entry.get("hash_type") or HASH_TYPE).lower()  # MONAI's download_url default when absent
        if not entry.get("hash_val") or hash_type not in hashlib.algorithms_guaranteed:
            problems.append(f"{where}: large file {path} has no usable hash (hash_val/hash_type)")
            continue
        stream = open_file(path)
        if stream is None:
            if require_present:
                problems.append(
                    f"{where}: large file {path} is missing; fetch it with "
                    f"`python -m monai.bundle download_large_files --bundle_path <bundle folder>`"
                )
            continue
        with stream:
            actual = file_hash(stream, hash_type)
        if actual != entry["hash_val"]:
            problems.append(
                f"{where}: {path} has {hash_type} {actual}, "
                f"large_files.yml expects {entry['hash_val']}: the file is corrupt or was tampered with"
            )
    return problems


def check_weights(
    provenance_text: str | None,
    weights_files: Sequence[str],
    open_file: Callable[[str], IO[bytes] | None],
    where: str,
    hosted: Sequence[str] = (),
) -> list[str]:
    """Problems with a bundle's weights files (empty list: all good).

    Every weights file must be recorded in ``models/provenance.json`` (``weights_sha256``: path -> sha256),
    every recorded one must be there (unless ``hosted``, i.e. listed in ``large_files.yml`` with a url),
    match its sha256 and load with ``torch.load(weights_only=True)``, so no pickle payload can run.

    Args:
        provenance_text: the content of ``models/provenance.json``, or None when the bundle has none.
        weights_files: the bundle-relative weights files present (``models/*.pt``, ...).
        open_file: opens a bundle-relative path for reading, or returns None when it is absent.
        where: the bundle (zip or folder) named in the messages.
        hosted: bundle-relative paths that ``large_files.yml`` lists (they may be fetched later).

    Returns:
        one message per problem.
    """
    if provenance_text is None:
        return [f"{where}: no {PROVENANCE_PATH}, so the weights' sha256 cannot be checked"] if weights_files else []
    try:
        recorded = json.loads(provenance_text).get("weights_sha256")
    except (ValueError, AttributeError) as error:
        return [f"{where}: unreadable {PROVENANCE_PATH}: {error}"]
    if not isinstance(recorded, dict):
        return [f"{where}: {PROVENANCE_PATH} records no weights_sha256 {{path: sha256}}"]
    problems = [f"{where}: weights file {path} is not recorded in {PROVENANCE_PATH}" for path in weights_files
                if path not in recorded]  # fmt: skip
    for path, expected in recorded.items():
        stream = open_file(path)
        if stream is None:
            if path not in hosted:
                problems.append(f"{where}: weights file {path} recorded in {PROVENANCE_PATH} is missing")
            continue
        with stream:
            data = stream.read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            problems.append(
                f"{where}: {path} has sha256 {actual}, {PROVENANCE_PATH} records {expected}: the weights were "
                "swapped, truncated or tampered with"
            )
            continue
        try:
            torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types; weights_only never runs the payload
            problems.append(f"{where}: {path} does not load with torch.load(weights_only=True): {error}")
    return problems


def _weights_files(relative_paths: Sequence[str]) -> list[str]:
    return sorted(p for p in relative_paths if p.startswith("models/") and p.endswith(WEIGHTS_SUFFIXES))


def _hosted(listing_text: str | None) -> list[str]:
    try:
        return [str(e.get("path")) for e in (yaml.safe_load(listing_text or "") or {}).get("large_files", [])]
    except yaml.YAMLError:
        return []


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    path = PurePosixPath(name)
    if "\\" in name or path.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        return f"member {name!r} would be written outside the extraction folder (path traversal)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"member {name!r} is a symbolic link"
    return None


def verify_release_zip(zip_path: str | os.PathLike) -> str:
    """Check a release zip without extracting it.

    Args:
        zip_path: the zip file.

    Returns:
        the bundle name (the zip's single top folder).

    Raises:
        ValueError: listing every problem: a member outside the top folder, path traversal or links, more
            than one top folder, no metadata, version/changelog disagreement (also with a ``_v<version>.zip``
            file name), large_files.yml entries whose member has another hash, weights files that are not
            recorded, have another sha256 or do not load with ``weights_only=True``.
    """
    zip_path = Path(zip_path)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"{zip_path} is not a readable zip file: {error}") from error
    with archive:
        infos = archive.infolist()
        problems = [problem for problem in map(_member_problem, infos) if problem]
        if problems:
            raise ValueError(f"refusing {zip_path}:\n  " + "\n  ".join(problems))
        tops = sorted({PurePosixPath(info.filename).parts[0] for info in infos})
        if len(tops) != 1 or not any(PurePosixPath(info.filename).parts[1:] for info in infos):
            raise ValueError(f"refusing {zip_path}: expected one top folder named after the bundle, found {tops}.")
        bundle = tops[0]
        names = {info.filename for info in infos}

        def open_member(relative: str) -> IO[bytes] | None:
            member = f"{bundle}/{relative}"
            return archive.open(member) if member in names else None

        meta_member = f"{bundle}/configs/metadata.json"
        if meta_member not in names:
            raise ValueError(f"refusing {zip_path}: no {meta_member}.")
        try:
            metadata = json.loads(archive.read(meta_member))
        except json.JSONDecodeError as error:
            raise ValueError(f"refusing {zip_path}: {meta_member} is not JSON: {error}") from error
        version = check_version_changelog(metadata, f"{zip_path}:{meta_member}")
        named = re.fullmatch(rf"{re.escape(bundle)}_v(.+)\.zip", zip_path.name)
        if named and named.group(1) != version:
            problems.append(f"file name says version {named.group(1)}, metadata.json says {version}")
        listing = f"{bundle}/{LARGE_FILES_NAME}"
        listing_text = archive.read(listing).decode("utf-8") if listing in names else None
        problems += check_large_files(listing_text, open_member, str(zip_path), require_present=False)
        provenance = f"{bundle}/{PROVENANCE_PATH}"
        members = [name[len(bundle) + 1 :] for name in names if name.startswith(f"{bundle}/")]
        problems += check_weights(
            archive.read(provenance).decode("utf-8") if provenance in names else None,
            _weights_files(members),
            open_member,
            str(zip_path),
            _hosted(listing_text),
        )
    if problems:
        raise ValueError(f"refusing {zip_path}:\n  " + "\n  ".join(problems))
    return bundle


def verify_bundle_dir(bundle_dir: str | os.PathLike) -> str:
    """Check a downloaded (extracted) bundle folder.

    Args:
        bundle_dir: the bundle folder, e.g. ``<bundle_dir>/<name>`` after ``monai.bundle download``.

    Returns:
        the bundle version.

    Raises:
        ValueError: version/changelog disagreement, a large_files.yml entry missing or with another hash, or
            weights files that are missing, not recorded, have another sha256 or do not load with
            ``weights_only=True``.
    """
    bundle_dir = Path(bundle_dir)
    version = check_version_changelog(read_metadata(bundle_dir), f"{bundle_dir}/configs/metadata.json")
    listing = bundle_dir / LARGE_FILES_NAME
    listing_text = listing.read_text(encoding="utf-8") if listing.is_file() else None
    problems = check_large_files(
        listing_text, lambda relative: open_inside(bundle_dir, relative), str(bundle_dir), require_present=True
    )
    provenance = bundle_dir / PROVENANCE_PATH
    present = [p.relative_to(bundle_dir).as_posix() for p in (bundle_dir / "models").glob("*") if p.is_file()]
    problems += check_weights(
        provenance.read_text(encoding="utf-8") if provenance.is_file() else None,
        _weights_files(present),
        lambda relative: open_inside(bundle_dir, relative),
        str(bundle_dir),
    )
    if problems:
        raise ValueError(f"refusing {bundle_dir}:\n  " + "\n  ".join(problems))
    return version


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: verify a release zip or a downloaded bundle folder.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        the exit status: 0 when the path verified, 1 otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="python -m nnmamba_nets.release", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verify", metavar="PATH", required=True, help="a release zip or a downloaded bundle folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = Path(args.verify)
    try:
        if path.is_file():
            verify_release_zip(path)
        else:
            verify_bundle_dir(path)
    except ValueError as error:
        logger.error("%s", error)
        return 1
    logger.info("%s: verified.", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
