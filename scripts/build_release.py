"""Build bundle releases: check a bundle, add its weights and write the zip that ``monai.bundle download`` fetches.

Repository tooling, run from the repository root (the bundle name is looked up under ``bundles/``)::

    python scripts/build_release.py --bundle nnmamba_brats_segmentation --train-demo --out dist/

writes ``dist/<bundle>_v<version>.zip`` whose single top folder is the bundle name: the bundle's files
(no caches, ``__pycache__``, ``eval``/``runs``/``logs`` outputs or training checkpoints), ``models/model.pt``
(a plain state_dict, loadable with ``torch.load(..., weights_only=True)``), ``models/provenance.json``
(how the weights were made) and, for every file over ``--large-file-mb`` (25 MB), an entry in
``large_files.yml`` (path, url, sha256) plus a copy of that file next to the zip to upload as a release
asset. Before anything is trained or written, the bundle must pass: version and changelog agree;
``monai.bundle verify_metadata`` against the repository's schema (offline);
``ConfigWorkflow.check_properties()`` empty for the train config; ``nnmamba_nets`` and the ``ckpt_export``
(TorchScript) status declared in ``metadata.json`` and ``docs/README.md``; no config path that climbs out of
the bundle. Once the weights exist, the release as it will be downloaded (weights and the records training
writes beside them, e.g. a landmark protocol) must pass ``check_properties()`` of the inference config and
``monai.bundle verify_net_in_out``, before the zip is written.

``--train-demo`` trains the weights with the bundle's own command, ``python -m monai.bundle run training
--config_file configs/train.yaml ...``, in a scratch copy of the bundle, with the bundle's demo defaults
and any ``--train-override ID=VALUE`` (recorded in ``models/provenance.json``). Without it the bundle's
``models/model.pt`` is packaged. Users check what they downloaded with ``python -m nnmamba_nets.release
--verify`` (:mod:`nnmamba_nets.release`).
"""

from __future__ import annotations

import argparse
import csv
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
from collections.abc import Mapping, Sequence
from importlib.metadata import version as package_version
from pathlib import Path, PurePosixPath

import torch
import yaml

from nnmamba_nets import __version__
from nnmamba_nets.nets.pretrained import extract_state_dict, load_pretrained
from nnmamba_nets.release import (
    HASH_TYPE,
    LARGE_FILES_NAME,
    PROVENANCE_PATH,
    WEIGHTS_PATH,
    check_large_files,
    check_version_changelog,
    file_hash,
    open_inside,
    read_metadata,
    verify_release_zip,
)

__all__ = ["EXCLUDED_DIRS", "LARGE_FILE_MB", "build_release", "bundle_files", "check_bundle", "export_state_dict"]

LARGE_FILE_MB = 25.0
# Folders never packaged: caches, VCS data, training/evaluation outputs. ``models/`` is replaced by the weights.
EXCLUDED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".git", "eval", "runs", "logs"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".log")
REQUIRED_FILES = (
    "configs/metadata.json",
    "configs/train.yaml",
    "configs/inference.yaml",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
)
# Key of the checkpointer's own state in checkpoints saved with ignite's ``include_self=True``.
IGNITE_SELF_KEY = "checkpointer"
# A fixed timestamp makes the zip depend on the files only.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_CLI_OUTPUT_TAIL = 4000
META_FILE = "configs/metadata.json"

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
    metadata = read_metadata(bundle_dir)
    version = check_version_changelog(metadata, f"{bundle_dir}/configs/metadata.json")
    _check_layout_and_declarations(bundle_dir, metadata)
    with tempfile.TemporaryDirectory(prefix="nnmamba-release-check-") as scratch:
        missing = _missing_properties(bundle_dir, "train.yaml", "train", Path(scratch), train_overrides)
    if missing:
        raise ValueError(f"bundle {bundle_dir}: ConfigWorkflow.check_properties() of train.yaml lacks {missing}.")
    run_bundle_cli(["verify_metadata", "--meta_file", META_FILE, "--filepath", schema], cwd=bundle_dir)
    logger.info("%s %s: the checks before training passed.", bundle_dir.name, version)
    return version


def check_inference(staging: Path) -> None:
    """The checks of the release as it will be downloaded: its inference config's properties (with the
    packaged weights and the records training wrote beside them, e.g. a landmark protocol) and
    ``monai.bundle verify_net_in_out`` on its network.

    Raises:
        ValueError: ``check_properties()`` of ``inference.yaml`` reports missing ids.
        RuntimeError: ``verify_net_in_out`` failed (with its output).
    """
    missing = _missing_properties(staging, "inference.yaml", "infer", staging)
    if missing:
        raise ValueError(f"bundle {staging.name}: ConfigWorkflow.check_properties() of inference.yaml lacks {missing}.")
    run_bundle_cli(
        ["verify_net_in_out", "network_def", "--meta_file", META_FILE, "--config_file", "configs/inference.yaml"],
        cwd=staging,
    )


# ---- weights ---------------------------------------------------------------------------------------------------
def train_demo_weights(
    bundle_dir: Path, overrides: Mapping[str, str], work_dir: Path, capture: bool = False
) -> tuple[Path, list[str]]:
    """Train with the bundle's own command in a scratch copy ``work_dir/<bundle>``.

    Args:
        bundle_dir: the bundle folder.
        overrides: config overrides, passed as ``--ID VALUE``.
        work_dir: where the scratch copy goes.
        capture: keep the training's output instead of letting it through. Defaults to False.

    Returns:
        the copy's ``models/model.pt`` and the command that trained it.

    Raises:
        RuntimeError: the training failed or wrote no weights.
    """
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
    run_bundle_cli(args, cwd=copy, capture=capture)
    weights = copy / WEIGHTS_PATH
    if not weights.is_file():
        raise RuntimeError(
            f"training {bundle_dir.name} finished without writing {WEIGHTS_PATH} "
            "(no validation ran? check val_interval against max_epochs)."
        )
    return weights, ["python", "-m", "monai.bundle", *args]


def measure_metrics(bundle_copy: Path, overrides: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """The metrics of the weights in ``bundle_copy/models`` on its validation and test splits, by the bundle's own
    ``evaluate.yaml`` (``python -m monai.bundle run``) with the training's ``overrides`` (same data)."""
    measured = {}
    for split in ("validation", "test"):
        args = ["run", "--config_file", "['configs/train.yaml','configs/evaluate.yaml']", "--meta_file", META_FILE,
                "--logging_file", "configs/logging.conf", "--eval_split", split]  # fmt: skip
        for key, value in overrides.items():
            args += [f"--{key}", value]
        run_bundle_cli(args, cwd=bundle_copy)
        with open(bundle_copy / "eval" / split / "metrics.csv", newline="", encoding="utf-8") as stream:
            measured[split] = {name: float(value) for name, value in csv.reader(stream)}
    return measured


def _data_description(bundle: str, overrides: Mapping[str, str]) -> str:
    """What the released metrics were measured on, from the training overrides."""
    if any(key in overrides for key in ("dataset_dir", "datalist")):
        source = overrides.get("datalist") or overrides.get("dataset_dir")
        return f"the data the weights were trained on ({source}): the validation split selected them, test was held out"
    demo = {key: value for key, value in overrides.items() if key.startswith("demo#")}
    return (
        f"SYNTHETIC demo data of the bundle (nnmamba_nets.demo, {bundle}'s demo block"
        + (f", overridden: {demo}" if demo else ", defaults")
        + "); these figures show that the pipeline works, nothing about real images"
    )


def _json_configs(staging: Path) -> list[PurePosixPath]:
    """Write a JSON copy of every YAML config (MONAI's ``monai.bundle.load`` reads ``configs/<workflow>.json``)."""
    written = []
    for config in sorted((staging / "configs").glob("*.yaml")):
        target = config.with_suffix(".json")
        target.write_text(json.dumps(yaml.safe_load(config.read_text(encoding="utf-8")), indent=2) + "\n")
        written.append(PurePosixPath(target.relative_to(staging).as_posix()))
    return written


def _network(
    bundle_dir: Path, config: str = "inference.yaml", overrides: Mapping[str, str] | None = None
) -> torch.nn.Module:
    """The ``network_def`` of one of the bundle's configs, with ``bundle_root`` at ``bundle_dir``."""
    from fire.parser import DefaultParseValue
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle_dir / "configs" / config))
    parser.read_meta(str(bundle_dir / META_FILE))
    parser.update({key: DefaultParseValue(value) for key, value in (overrides or {}).items()})
    parser["bundle_root"] = str(bundle_dir)
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
    load_pretrained(_network(Path(bundle_dir)), state_dict, strict=True)  # raises with the misfits listed
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
            digest = file_hash(stream)
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
        problems = check_large_files(
            text, lambda relative: open_inside(staging, relative), str(listing), require_present=False
        )
        if problems:
            raise ValueError("refusing to package a mismatch:\n  " + "\n  ".join(problems))
        entries += [dict(entry) for entry in (yaml.safe_load(text) or {}).get("large_files", [])]
    return entries


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
    network = _network(bundle_dir, "train.yaml", overrides)  # inference may need what training records
    weights_bytes = sum(t.numel() * t.element_size() for t in network.state_dict().values())
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
            weights, command = train_demo_weights(bundle_dir, overrides, scratch / "training")
        else:
            weights, command = bundle_dir / WEIGHTS_PATH, None
            if not weights.is_file():
                raise ValueError(f"bundle {bundle}: no {WEIGHTS_PATH} to package; train it or pass --train-demo.")
        records = [p for p in sorted(weights.parent.glob("*.json")) if p.name != Path(PROVENANCE_PATH).name]
        for record in records:  # what training wrote beside the weights for inference (e.g. a landmark protocol)
            (staging / "models").mkdir(parents=True, exist_ok=True)
            shutil.copy2(record, staging / "models" / record.name)
        export_state_dict(weights, staging / WEIGHTS_PATH, staging)
        check_inference(staging)
        with open(staging / WEIGHTS_PATH, "rb") as stream:
            weights_sha256 = file_hash(stream)
        provenance = {
            "bundle": bundle,
            "version": version,
            "weights": WEIGHTS_PATH,
            "weights_sha256": {WEIGHTS_PATH: weights_sha256},  # every weights file: --verify compares them
            "records": [f"models/{record.name}" for record in records],
            "metrics": {"data": _data_description(bundle, overrides), **measure_metrics(weights.parents[1], overrides)}
            if train_demo
            else "not measured by the release build (it did not train these weights)",
            "trained_with": shlex.join(command) if command else "the bundle's models/model.pt (not trained here)",
            "train_overrides": overrides,
            "versions": {"nnmamba_nets": __version__, "monai": package_version("monai"), "torch": torch.__version__},
        }
        (staging / PROVENANCE_PATH).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        files = sorted(
            [*files, PurePosixPath(WEIGHTS_PATH), PurePosixPath(PROVENANCE_PATH), *_json_configs(staging)]
            + [PurePosixPath("models") / record.name for record in records]
        )
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
    """Command line: build release zips of the named bundles.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        the exit status: 0 when every bundle was built, 1 otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="python scripts/build_release.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--bundle", nargs="+", required=True, help="bundle names (under --bundles-dir) or bundle folders"
    )
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
