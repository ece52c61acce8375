"""Bundle releases: check a MONAI bundle, add its weights and write the zip that ``monai.bundle download`` fetches.

Build (from the repository root; the bundle name is looked up under ``bundles/``)::

    python -m nnmamba_nets.release --bundle nnmamba_brats_segmentation --train-demo --out dist/

writes ``dist/<bundle>_v<version>.zip`` whose single top folder is the bundle name: the bundle's files
(no caches, ``__pycache__``, ``eval``/``runs``/``logs`` outputs or training checkpoints), ``models/model.pt``
(a plain state_dict, loadable with ``torch.load(..., weights_only=True)``), ``models/provenance.json``
(how the weights were made) and, for every file over ``--large-file-mb`` (25 MB), an entry in
``large_files.yml`` (path, url, sha256) plus a copy of that file next to the zip to upload as a release
asset. Before anything is trained or written, the bundle must pass: version and changelog agree;
``monai.bundle verify_metadata`` against the repository's schema (offline); ``monai.bundle
verify_net_in_out`` on the inference network; ``ConfigWorkflow.check_properties()`` empty for the train
and the inference config; ``nnmamba_nets`` and the ``ckpt_export`` (TorchScript) status declared in
``metadata.json`` and ``docs/README.md``; no config path that climbs out of the bundle.

``--train-demo`` trains the weights with the bundle's own command, ``python -m monai.bundle run training
--config_file configs/train.yaml ...``, in a scratch copy of the bundle, with the bundle's demo defaults
and any ``--train-override ID=VALUE`` (recorded in ``models/provenance.json``). Without it the bundle's
``models/model.pt`` is packaged.

Verify a release zip before extracting it, or a downloaded bundle folder (every ``large_files.yml`` entry
present with the right sha256, version and changelog agree, no member outside the top folder)::

    python -m nnmamba_nets.release --verify dist/nnmamba_brats_segmentation_v0.1.0.zip
    python -m nnmamba_nets.release --verify ~/bundles/nnmamba_brats_segmentation
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import version as package_version
from pathlib import Path, PurePosixPath
from typing import IO

import torch
import yaml
from packaging.version import InvalidVersion, Version

from . import __version__
from .nets.pretrained import extract_state_dict, load_pretrained

__all__ = [
    "EXCLUDED_DIRS",
    "LARGE_FILE_MB",
    "build_release",
    "check_bundle",
    "check_version_changelog",
    "export_state_dict",
    "run_bundle_cli",
    "verify_bundle_dir",
    "verify_release_zip",
]

LARGE_FILE_MB = 25.0
# Folders never packaged: caches, VCS data, training/evaluation outputs. ``models/`` is replaced by the weights.
EXCLUDED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".git", "eval", "runs", "logs"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".log")
LARGE_FILES_NAME = "large_files.yml"
WEIGHTS_PATH = "models/model.pt"
PROVENANCE_PATH = "models/provenance.json"
REQUIRED_FILES = (
    "configs/metadata.json",
    "configs/train.yaml",
    "configs/inference.yaml",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
)
HASH_TYPE = "sha256"
# Key of the checkpointer's own state in checkpoints saved with ignite's ``include_self=True``.
IGNITE_SELF_KEY = "checkpointer"
# A fixed timestamp makes the zip depend on the files only.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_CLI_OUTPUT_TAIL = 4000

logger = logging.getLogger(__name__)


# ---- shared helpers --------------------------------------------------------------------------------------------
def run_bundle_cli(args: Sequence[str], cwd: str | os.PathLike, capture: bool = True) -> str:
    """Run ``python -m monai.bundle <args>`` in a subprocess with this interpreter.

    Args:
        args: the command (``"verify_metadata"``, ``"run"``, ...) and its arguments.
        cwd: working directory (bundle configs use ``bundle_root: .``).
        capture: capture the output and return it; False lets it through to this process's output
            (long training runs). Defaults to True.

    Returns:
        the captured output ("" when not captured).

    Raises:
        RuntimeError: non-zero exit; the message holds the command and the end of its output.
    """
    command = [sys.executable, "-m", "monai.bundle", *map(str, args)]
    result = subprocess.run(
        command,
        check=False,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
    )
    output = result.stdout or ""
    if result.returncode != 0:
        shown = output[-_CLI_OUTPUT_TAIL:] if capture else "(see the output above)"
        raise RuntimeError(f"`{' '.join(command)}` failed in {cwd} (exit {result.returncode}):\n{shown}")
    return output


def _file_hash(stream: IO[bytes], hash_type: str = HASH_TYPE) -> str:
    digest = hashlib.new(hash_type)
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _is_excluded(relative: PurePosixPath) -> bool:
    """Whether a path inside a bundle stays out of the release (caches, outputs, hidden files, old weights)."""
    parts = relative.parts
    return (
        any(part in EXCLUDED_DIRS or part.startswith(".") for part in parts)
        or parts[0] == "models"
        or relative.name.endswith(EXCLUDED_SUFFIXES)
        or relative.name.startswith("events.out.tfevents")
        or relative.name.startswith("large_files.")
    )


def bundle_files(bundle_dir: Path) -> list[PurePosixPath]:
    """The bundle's own files that go into a release (sorted, relative, POSIX separators)."""
    files = []
    for path in sorted(bundle_dir.rglob("*")):
        relative = PurePosixPath(path.relative_to(bundle_dir).as_posix())
        if path.is_symlink():
            raise ValueError(f"bundle {bundle_dir}: {relative} is a symbolic link; releases hold plain files only.")
        if path.is_file() and not _is_excluded(relative):
            files.append(relative)
    return files


# ---- metadata, layout and declarations -------------------------------------------------------------------------
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


def _read_metadata(bundle_dir: Path) -> dict:
    path = bundle_dir / "configs" / "metadata.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"bundle {bundle_dir}: cannot read {path}: {error}") from error


def _check_layout_and_declarations(bundle_dir: Path, metadata: Mapping) -> None:
    """Required files, the ``nnmamba_nets`` requirement, the ckpt_export statement, self-contained configs."""
    problems = [f"missing {name}" for name in REQUIRED_FILES if not (bundle_dir / name).is_file()]
    if "nnmamba_nets" not in metadata.get("required_packages_version", {}):
        problems.append("metadata.json required_packages_version does not declare nnmamba_nets")
    readme = bundle_dir / "docs" / "README.md"
    readme_text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    if readme_text and not re.search(r"nnmamba[_-]nets", readme_text):
        problems.append("docs/README.md does not say that the nnmamba_nets package must be installed")
    for name, text in (("metadata.json", json.dumps(metadata)), ("docs/README.md", readme_text)):
        if text and "ckpt_export" not in text:
            problems.append(f"{name} does not state whether `monai.bundle ckpt_export` (TorchScript) works")
    climbing = re.compile(r"(^|[\s'\"/=(\[,])\.\.[/\\]")
    repo_dir = str(bundle_dir.resolve().parent)
    for config in sorted((bundle_dir / "configs").glob("*")):
        if config.suffix not in _CONFIG_SUFFIXES:
            continue
        for number, line in enumerate(config.read_text(encoding="utf-8").splitlines(), start=1):
            if climbing.search(line) or repo_dir in line:
                problems.append(f"configs/{config.name}:{number} points outside the bundle: {line.strip()}")
    if problems:
        raise ValueError(f"bundle {bundle_dir} is not releasable:\n  " + "\n  ".join(problems))


def _missing_properties(
    bundle_dir: Path, config: str, workflow_type: str, scratch_root: Path, overrides: Mapping[str, str] | None = None
) -> list[str]:
    """``ConfigWorkflow.check_properties()`` of one config, with ``bundle_root`` set to ``scratch_root`` (building
    the properties may write outputs, e.g. TensorBoard files) and ``overrides`` parsed as the bundle CLI does."""
    from fire.parser import DefaultParseValue
    from monai.bundle import ConfigWorkflow

    parsed = {key: DefaultParseValue(value) for key, value in (overrides or {}).items()}
    workflow = ConfigWorkflow(
        config_file=str(bundle_dir / "configs" / config),
        meta_file=str(bundle_dir / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        **{**parsed, "bundle_root": str(scratch_root)},
    )
    workflow.initialize()  # properties are read as parsed content (the trainer and its data are built)
    return list(workflow.check_properties() or [])


def check_bundle(
    bundle_dir: str | os.PathLike, schema: str | os.PathLike, train_overrides: Mapping[str, str] | None = None
) -> str:
    """Run every release check on a bundle folder; nothing is written into it.

    Args:
        bundle_dir: the bundle folder (``configs/``, ``docs/``, ``LICENSE``).
        schema: the bundle metadata JSON schema file (checked offline).
        train_overrides: config id -> value (command-line syntax) applied to the train config's properties
            check, as they will be to the training run (checking the properties builds the trainer and its
            data, e.g. generates the demo data set).

    Returns:
        the bundle version.

    Raises:
        ValueError: a check failed (the message names the bundle and what is wrong).
        RuntimeError: ``verify_metadata`` or ``verify_net_in_out`` failed (with their output).
    """
    bundle_dir = Path(bundle_dir).resolve()
    schema = Path(schema).resolve()
    if not schema.is_file():
        raise ValueError(f"schema file {schema} not found (--schema).")
    metadata = _read_metadata(bundle_dir)
    version = check_version_changelog(metadata, f"{bundle_dir}/configs/metadata.json")
    _check_layout_and_declarations(bundle_dir, metadata)
    with tempfile.TemporaryDirectory(prefix="nnmamba-release-check-") as scratch:
        missing = {
            "train": _missing_properties(bundle_dir, "train.yaml", "train", Path(scratch), train_overrides),
            "infer": _missing_properties(bundle_dir, "inference.yaml", "infer", Path(scratch)),
        }
    if any(missing.values()):
        raise ValueError(f"bundle {bundle_dir}: ConfigWorkflow.check_properties() reports missing ids {missing}.")
    meta_file = "configs/metadata.json"
    run_bundle_cli(["verify_metadata", "--meta_file", meta_file, "--filepath", schema], cwd=bundle_dir)
    run_bundle_cli(
        ["verify_net_in_out", "network_def", "--meta_file", meta_file, "--config_file", "configs/inference.yaml"],
        cwd=bundle_dir,
    )
    logger.info("%s %s: all release checks passed.", bundle_dir.name, version)
    return version


# ---- weights ---------------------------------------------------------------------------------------------------
def _train_demo_weights(bundle_dir: Path, overrides: Mapping[str, str], work_dir: Path) -> tuple[Path, list[str]]:
    """Train with the bundle's own command in a scratch copy; returns (model.pt, the command run there)."""
    copy = work_dir / bundle_dir.name
    for relative in bundle_files(bundle_dir):
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle_dir / relative, copy / relative)
    args = [
        "run",
        "training",
        "--config_file",
        "configs/train.yaml",
        "--meta_file",
        "configs/metadata.json",
        "--logging_file",
        "configs/logging.conf",
    ]
    for key, value in overrides.items():
        args += [f"--{key}", value]
    logger.info("training %s: python -m monai.bundle %s", bundle_dir.name, " ".join(args))
    run_bundle_cli(args, cwd=copy, capture=False)
    weights = copy / WEIGHTS_PATH
    if not weights.is_file():
        raise RuntimeError(
            f"training {bundle_dir.name} finished without writing {WEIGHTS_PATH} "
            "(no validation ran? check val_interval against max_epochs)."
        )
    return weights, ["python", "-m", "monai.bundle", *args]


def _inference_network(bundle_dir: Path) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle_dir / "configs" / "inference.yaml"))
    parser.read_meta(str(bundle_dir / "configs" / "metadata.json"))
    return parser.get_parsed_content("network_def")


def export_state_dict(source: str | os.PathLike, target: str | os.PathLike, bundle_dir: str | os.PathLike) -> None:
    """Save the network weights of a checkpoint as a plain state_dict that fits the inference network strictly.

    Containers (``{"model": ...}``) are unwrapped, and the ``checkpointer`` entry that ignite's
    ``Checkpoint(include_self=True)`` (MONAI ``CheckpointSaver(key_metric_save_state=True)``) puts next to the
    weights is dropped.

    Args:
        source: the checkpoint, read with ``torch.load(..., weights_only=True)``.
        target: the state_dict file to write (parent folders are created).
        bundle_dir: the bundle whose ``configs/inference.yaml`` ``network_def`` the weights must fit.

    Raises:
        ValueError: unreadable checkpoint, no state_dict in it, or keys/shapes that do not fit the network.
    """
    source, target = Path(source), Path(target)
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for unsafe or corrupt files
        raise ValueError(f"{source} cannot be loaded with torch.load(weights_only=True): {error}") from error
    if isinstance(checkpoint, Mapping) and IGNITE_SELF_KEY in checkpoint:
        checkpoint = {key: value for key, value in checkpoint.items() if key != IGNITE_SELF_KEY}
    state_dict = extract_state_dict(checkpoint, str(source))
    load_pretrained(_inference_network(Path(bundle_dir)), state_dict, strict=True)  # raises with the misfits listed
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, target)


# ---- large files -----------------------------------------------------------------------------------------------
def _asset_name(bundle: str, version: str, relative: str) -> str:
    return f"{bundle}_v{version}_{relative.replace('/', '_')}"


def _large_file_entries(
    staging: Path,
    files: Sequence[PurePosixPath],
    bundle: str,
    version: str,
    threshold_bytes: float,
    asset_base_url: str | None,
) -> list[dict]:
    entries = []
    for relative in files:
        path = staging / relative
        if path.stat().st_size <= threshold_bytes:
            continue
        if not asset_base_url:
            raise ValueError(
                f"{bundle}: {relative} is over the large-file limit and needs a download url in "
                "large_files.yml: pass --repo <owner>/<repo>/<tag> or --asset-base-url URL."
            )
        with open(path, "rb") as stream:
            digest = _file_hash(stream)
        entries.append(
            {
                "path": str(relative),
                "url": f"{asset_base_url.rstrip('/')}/{_asset_name(bundle, version, str(relative))}",
                "hash_val": digest,
                "hash_type": HASH_TYPE,
            }
        )
    return entries


def _source_large_file_entries(bundle_dir: Path, staging: Path) -> list[dict]:
    """Entries of the bundle's own large_files.* (if any); those for packaged files must match their hash."""
    entries = []
    for listing in sorted(bundle_dir.glob("large_files.*")):
        text = listing.read_text(encoding="utf-8")
        problems = _check_large_files(
            text, lambda relative: _open_inside(staging, relative), str(listing), require_present=False
        )
        if problems:
            raise ValueError("refusing to package a mismatch:\n  " + "\n  ".join(problems))
        entries += [dict(entry) for entry in (yaml.safe_load(text) or {}).get("large_files", [])]
    return entries


def _open_inside(root: Path, relative: str) -> IO[bytes] | None:
    """Open ``root/relative`` for reading if it is a file inside ``root``, else None."""
    path = (root / relative).resolve()
    return open(path, "rb") if path.is_file() and root.resolve() in path.parents else None


# ---- verification of zips and downloaded folders ---------------------------------------------------------------
def _check_large_files(
    listing_text: str | None, open_file: Callable[[str], IO[bytes] | None], where: str, require_present: bool
) -> list[str]:
    """Problems with the large_files.yml entries of one bundle (empty list: all good)."""
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
            actual = _file_hash(stream, hash_type)
        if actual != entry["hash_val"]:
            problems.append(
                f"{where}: {path} has {hash_type} {actual}, "
                f"large_files.yml expects {entry['hash_val']}: the file is corrupt or was tampered with"
            )
    return problems


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
            file name), large_files.yml entries whose member has another hash.
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
        problems += _check_large_files(listing_text, open_member, str(zip_path), require_present=False)
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
        ValueError: version/changelog disagreement, or a large_files.yml entry missing or with another hash.
    """
    bundle_dir = Path(bundle_dir)
    version = check_version_changelog(_read_metadata(bundle_dir), f"{bundle_dir}/configs/metadata.json")
    listing = bundle_dir / LARGE_FILES_NAME
    problems = _check_large_files(
        listing.read_text(encoding="utf-8") if listing.is_file() else None,
        lambda relative: _open_inside(bundle_dir, relative),
        str(bundle_dir),
        require_present=True,
    )
    if problems:
        raise ValueError(f"refusing {bundle_dir}:\n  " + "\n  ".join(problems))
    return version


# ---- building --------------------------------------------------------------------------------------------------
def _write_zip(staging: Path, files: Sequence[PurePosixPath], bundle: str, target: Path) -> None:
    """Write the zip in a temporary folder beside ``target``, verify it, then move it into place.

    Nothing half-written or unverified is left under ``target``'s name.
    """
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".tmp-") as folder:
        written = Path(folder) / target.name
        with zipfile.ZipFile(written, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for relative in sorted(files):
                info = zipfile.ZipInfo(f"{bundle}/{relative}", date_time=_ZIP_DATE)
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(staging / relative, "rb") as source, archive.open(info, "w") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
        verify_release_zip(written)
        os.replace(written, target)


def resolve_bundle(bundle: str, bundles_dir: str | os.PathLike) -> Path:
    """A bundle folder from a path, or from a name under ``bundles_dir``."""
    for candidate in (Path(bundle), Path(bundles_dir) / bundle):
        if (candidate / "configs").is_dir():
            return candidate.resolve()
    raise ValueError(
        f"bundle {bundle!r}: neither {bundle} nor {Path(bundles_dir) / bundle} is a bundle folder (one with configs/)."
    )


def build_release(
    bundle_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    schema: str | os.PathLike,
    train_demo: bool = False,
    train_overrides: Mapping[str, str] | None = None,
    large_file_mb: float = LARGE_FILE_MB,
    asset_base_url: str | None = None,
) -> Path:
    """Check a bundle and write its release zip ``<out_dir>/<bundle>_v<version>.zip``.

    Args:
        bundle_dir: the bundle folder.
        out_dir: output folder (created); large files are also copied there as release assets.
        schema: metadata JSON schema file, for the offline ``verify_metadata``.
        train_demo: train the weights with the bundle's own training command (demo defaults plus
            ``train_overrides``); False packages the bundle's existing ``models/model.pt``. Defaults to False.
        train_overrides: config id -> value passed to the training command as ``--id value``.
        large_file_mb: files over this size (MB) get a large_files.yml entry. Defaults to 25.
        asset_base_url: URL prefix the large files are published under (needed only when there are some).

    Returns:
        the zip path.

    Raises:
        ValueError: a check failed, no weights, weights that do not fit the inference network strictly.
        RuntimeError: a MONAI CLI step (checks, training) failed.
    """
    bundle_dir = Path(bundle_dir).resolve()
    overrides = dict(train_overrides or {})
    if overrides and not train_demo:
        raise ValueError("training overrides were given without --train-demo.")
    version = check_bundle(bundle_dir, schema, overrides)
    bundle = bundle_dir.name
    threshold_bytes = large_file_mb * 1024 * 1024
    weights_bytes = sum(t.numel() * t.element_size() for t in _inference_network(bundle_dir).state_dict().values())
    if weights_bytes > threshold_bytes and not asset_base_url:  # refuse before hours of training, not after
        raise ValueError(
            f"{bundle}: the weights will be about {weights_bytes / 2**20:.0f} MB, over the large-file "
            f"limit ({large_file_mb:g} MB); pass --repo <owner>/<repo>/<tag> or --asset-base-url URL."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nnmamba-release-") as folder:
        scratch = Path(folder)
        staging = scratch / "staging"
        files = bundle_files(bundle_dir)
        for relative in files:
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle_dir / relative, staging / relative)
        if train_demo:
            weights, command = _train_demo_weights(bundle_dir, overrides, scratch / "training")
        else:
            weights, command = bundle_dir / WEIGHTS_PATH, None
            if not weights.is_file():
                raise ValueError(f"bundle {bundle}: no {WEIGHTS_PATH} to package; train it or pass --train-demo.")
        export_state_dict(weights, staging / WEIGHTS_PATH, bundle_dir)
        with open(staging / WEIGHTS_PATH, "rb") as stream:
            weights_sha256 = _file_hash(stream)
        provenance = {
            "bundle": bundle,
            "version": version,
            "weights": WEIGHTS_PATH,
            "weights_sha256": weights_sha256,
            "trained_with": shlex.join(command) if command else "the bundle's models/model.pt (not trained here)",
            "train_overrides": overrides,
            "versions": {"nnmamba_nets": __version__, "monai": package_version("monai"), "torch": torch.__version__},
        }
        (staging / PROVENANCE_PATH).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        files = sorted([*files, PurePosixPath(WEIGHTS_PATH), PurePosixPath(PROVENANCE_PATH)])
        entries = {entry["path"]: entry for entry in _source_large_file_entries(bundle_dir, staging)}
        new_entries = _large_file_entries(staging, files, bundle, version, threshold_bytes, asset_base_url)
        entries.update({entry["path"]: entry for entry in new_entries})
        if entries:
            (staging / LARGE_FILES_NAME).write_text(
                yaml.safe_dump({"large_files": list(entries.values())}, sort_keys=False), encoding="utf-8"
            )
            files.append(PurePosixPath(LARGE_FILES_NAME))
        target = out_dir / f"{bundle}_v{version}.zip"
        _write_zip(staging, files, bundle, target)
        for entry in new_entries:
            shutil.copy2(staging / entry["path"], out_dir / _asset_name(bundle, version, entry["path"]))
    logger.info("wrote %s (%d large file entries)", target, len(entries))
    return target


def _parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--train-override expects ID=VALUE (e.g. max_epochs=1), got {pair!r}.")
        overrides[key] = value
    return overrides


def _asset_base_url(repo: str | None, asset_base_url: str | None) -> str | None:
    if asset_base_url:
        return asset_base_url
    if repo is None:
        return None
    parts = repo.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"--repo must be <owner>/<repo>/<tag> (as for monai.bundle download), got {repo!r}.")
    owner, name, tag = parts
    return f"https://github.com/{owner}/{name}/releases/download/{tag}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build release zips (``--bundle``) or verify a zip or downloaded bundle (``--verify``).

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        the exit status: 0 when every bundle was built or the path verified, 1 otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="python -m nnmamba_nets.release", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--bundle", nargs="+", help="bundle names (under --bundles-dir) or bundle folders to release")
    mode.add_argument("--verify", metavar="PATH", help="verify a release zip or a downloaded bundle folder")
    parser.add_argument("--out", default="dist", help="output folder (default: dist)")
    parser.add_argument("--bundles-dir", default="bundles", help="where bundle names are looked up (default: bundles)")
    parser.add_argument(
        "--schema",
        default="schemas/monai_meta_schema.json",
        help="metadata schema for the offline verify_metadata (default: %(default)s)",
    )
    parser.add_argument(
        "--train-demo",
        action="store_true",
        help="train models/model.pt with the bundle's own training command and demo defaults",
    )
    parser.add_argument(
        "--train-override",
        action="append",
        default=[],
        metavar="ID=VALUE",
        help="config override for --train-demo, passed as --ID VALUE (repeatable)",
    )
    parser.add_argument(
        "--large-file-mb",
        type=float,
        default=LARGE_FILE_MB,
        help=f"files over this size get a large_files.yml entry (default: {LARGE_FILE_MB:g})",
    )
    parser.add_argument("--repo", help="<owner>/<repo>/<tag> of the GitHub release the large files are uploaded to")
    parser.add_argument("--asset-base-url", help="URL prefix of the large-file assets (instead of --repo)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.verify:
        try:
            path = Path(args.verify)
            if path.is_file():
                verify_release_zip(path)
            else:
                verify_bundle_dir(path)
        except ValueError as error:
            logger.error("%s", error)
            return 1
        logger.info("%s: verified.", path)
        return 0
    try:
        overrides = _parse_overrides(args.train_override)
        base_url = _asset_base_url(args.repo, args.asset_base_url)
    except ValueError as error:
        parser.error(str(error))
    failures = {}
    for bundle in args.bundle:  # one bundle's failure does not stop the others
        try:
            build_release(
                resolve_bundle(bundle, args.bundles_dir),
                args.out,
                args.schema,
                args.train_demo,
                overrides,
                args.large_file_mb,
                base_url,
            )
        except (ValueError, RuntimeError) as error:
            failures[bundle] = error
            logger.error("%s: not released:\n%s", bundle, error)
    if failures:
        logger.error("failed: %s", ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
