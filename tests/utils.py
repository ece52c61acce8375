"""Helpers shared by the tests: running the MONAI bundle CLI (or any module) in a subprocess, bundle checks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLES_DIR = REPO_ROOT / "bundles"
# a line printed by the warnings module: "<file>:<line>: <Category>: <message>"
_WARNING_LINE = re.compile(r"^(?P<file>\S+?):\d+: (?P<category>[A-Za-z]*Warning): (?P<message>.*)$", re.MULTILINE)
# MONAI's own warnings a bundle run may print, once each (docs/console.md says why they are expected)
EXPECTED_WARNINGS = (
    "GHSA-873f-pvrv-4x83",  # MONAI: bundle configs are code (eval), only run trusted ones
    "Detected deprecated name 'optional_packages_version'",  # MONAI renames the schema's required field
)


def warnings_of(process: subprocess.CompletedProcess) -> Counter:
    """``(file, category, message)`` -> how often the warnings module printed it, in a run's output."""
    text = (process.stdout or "") + (process.stderr or "")
    return Counter((m["file"], m["category"], m["message"]) for m in _WARNING_LINE.finditer(text))


def assert_quiet(process: subprocess.CompletedProcess) -> None:
    """A bundle run printed no warning of ours and each of MONAI's expected ones at most once."""
    for (file, category, message), count in warnings_of(process).items():
        assert "nnmamba_nets" not in file and "/bundles/" not in file, f"our warning: {file}: {category}: {message}"
        assert any(expected in message for expected in EXPECTED_WARNINGS), (
            f"unexpected {category} from {file}: {message}"
        )
        assert count == 1, f"{count} times: {category}: {message}"


def cli_overrides(overrides: Mapping[str, Any]) -> list[str]:
    """``{"demo#size": 32, "roi_size": [32, 32, 32]}`` -> ``["--demo#size", "32", "--roi_size", "[32, 32, 32]"]``.

    Strings are passed as they are; other values as Python literals (``True``, ``None``, lists),
    which the MONAI bundle CLI (python-fire) parses back. JSON's ``true``/``false`` would reach the
    config as the strings "true"/"false", and both are truthy.
    """
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", value if isinstance(value, str) else repr(value)]
    return args


def merged_configs(configs: Path, *names: str) -> str:
    """A ``--config_file`` value that merges the bundle configs ``names`` of ``configs`` in this order."""
    return "[" + ",".join(f"'{configs / name}'" for name in names) + "]"


def run_module(module: str, *args: str, launcher: tuple[str, ...] = (), **kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``python [launcher...] -m <module> <args...>``; keyword arguments as for :func:`run_python`.

    Args:
        module: module to run, e.g. ``"monai.bundle"``.
        args: its command-line arguments.
        launcher: arguments between the interpreter and ``-m``, e.g.
            ``("-m", "torch.distributed.run", "--nproc_per_node", "2")`` (then ``-m <module>`` follows).
        kwargs: ``cwd``, ``env``, ``timeout``, ``check``.
    """
    return run_python(*launcher, "-m", module, *args, **kwargs)


def run_python(
    *args: str,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``python <args...>`` (a script or ``-m module``) with this interpreter and capture its output.

    Args:
        args: the interpreter's arguments, e.g. ``("scripts/build_release.py", "--bundle", ...)``.
        cwd: working folder. Defaults to the current one.
        env: variables added to (or replacing those of) the current environment.
        timeout: seconds before the run is killed.
        check: raise ``AssertionError`` with the output's tail when the exit status is not 0.

    Returns:
        the finished process (``stdout``/``stderr`` as text).
    """
    command = [sys.executable, *args]
    process = subprocess.run(  # the exit status is checked below, with the output in the message
        command,
        check=False,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and process.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited with {process.returncode}\n"
            f"--- stdout (tail) ---\n{process.stdout[-4000:]}\n--- stderr (tail) ---\n{process.stderr[-6000:]}"
        )
    return process


def run_bundle(command: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <command> <args...>``; keyword arguments as for :func:`run_module`.

    Every ``run`` (training, evaluation, inference) must be quiet: :func:`assert_quiet`.
    """
    process = run_module("monai.bundle", command, *args, **kwargs)
    if command == "run":
        assert_quiet(process)
    return process


def assert_workflow_properties(
    configs: Path, config_file: str | Sequence[str], workflow_type: str, **overrides: Any
) -> None:
    """Initialise the bundle workflow and check its required properties (``monai.bundle run`` never does).

    Args:
        configs: the bundle's ``configs`` folder (for ``metadata.json`` and ``logging.conf``).
        config_file: the config file(s) of the workflow.
        workflow_type: ``"train"`` or ``"infer"``.
        overrides: config ids to override.
    """
    workflow = ConfigWorkflow(
        config_file=config_file,
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    workflow.initialize()
    assert workflow.check_properties() == []


def assert_metadata_verifies(configs: Path) -> None:
    """``monai.bundle verify_metadata`` of ``configs/metadata.json`` against the repository's schema (offline)."""
    schema = REPO_ROOT / "schemas" / "monai_meta_schema.json"
    result = run_bundle(
        "verify_metadata", "--meta_file", str(configs / "metadata.json"), "--filepath", str(schema), timeout=300
    )
    assert "metadata is verified with no error" in result.stdout + result.stderr


def assert_net_in_out_verifies(configs: Path, config_name: str = "inference.yaml") -> None:
    """``monai.bundle verify_net_in_out`` of ``network_def`` in ``configs/config_name`` on CPU (2 random inputs)."""
    meta = ["--meta_file", str(configs / "metadata.json"), "--logging_file", str(configs / "logging.conf")]
    result = run_bundle(
        "verify_net_in_out",
        "network_def",
        *meta,
        "--config_file",
        str(configs / config_name),
        "--device",
        "cpu",
        "--n",
        "2",
        env={"OMP_NUM_THREADS": "2"},
    )
    assert "data shape of network is verified with no error" in result.stdout + result.stderr
