"""BraTS 2023 glioma data: the folder layout, the datalist preparer, case checks and the inference inputs.

BraTS 2023 layout (one folder per case, four MRI contrasts and an optional label map)::

    BraTS-GLI-00000-000/
        BraTS-GLI-00000-000-t1n.nii.gz   # native T1
        BraTS-GLI-00000-000-t1c.nii.gz   # contrast-enhanced T1
        BraTS-GLI-00000-000-t2w.nii.gz   # T2
        BraTS-GLI-00000-000-t2f.nii.gz   # T2-FLAIR
        BraTS-GLI-00000-000-seg.nii.gz   # labels: 0 background, 1 NCR, 2 ED (SNFH), 3 ET

:func:`prepare_datalist` turns such a folder into a MONAI datalist JSON (``training``, ``validation``
and ``test`` lists of ``{"case_id", "image": [4 files], "label"}``) with a fixed, seeded split.
The synthetic demo set (:mod:`nnmamba_nets.demo.brats`) is written in the same layout, so demo and
real data go through the same code.

Command line::

    python -m nnmamba_nets.segmentation.datalist prepare /data/BraTS2023 --output_file /data/brats_datalist.json
    # one 4-channel NIfTI per case (T1n, T1c, T2w, T2-FLAIR, channels last) plus labels/final/: a MONAI Label studies
    # folder (nnmamba_nets.segmentation.io.stack_modalities)
    python -m nnmamba_nets.segmentation.datalist stack /data/BraTS2023 --output_dir /data/studies
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnmamba_nets.common.datalists import SPLITS, inference_inputs, split_indices, write_datalist
from nnmamba_nets.common.images import check_image_file
from nnmamba_nets.common.inference import partition_inputs

__all__ = [
    "LABEL_ED",
    "LABEL_ET",
    "LABEL_NCR",
    "MODALITIES",
    "case_inputs",
    "check_brats_case",
    "check_datalist",
    "check_inference_case",
    "find_brats_cases",
    "prepare_datalist",
    "require_valid_cases",
]

MODALITIES = ("t1n", "t1c", "t2w", "t2f")
"""Contrast suffixes in channel order: T1n, T1c, T2w, T2-FLAIR."""
LABEL_SUFFIX = "seg"
LABEL_NCR, LABEL_ED, LABEL_ET = 1, 2, 3
"""BraTS 2023 labels: necrotic tumour core, peritumoral oedema (SNFH), enhancing tumour."""
CASE_ID_PATTERN = re.compile(r"^BraTS-[A-Za-z]+-\d{5}-\d{3}$")

_logger = logging.getLogger(__name__)


def _case_of_folder(case_dir: Path, require_label: bool) -> dict:
    case = {"case_id": case_dir.name, "image": [str(case_dir / f"{case_dir.name}-{m}.nii.gz") for m in MODALITIES]}
    if require_label:
        case["label"] = str(case_dir / f"{case_dir.name}-{LABEL_SUFFIX}.nii.gz")
    return case


def _other_folders(root: Path) -> list[str]:
    """Sub-folders of ``root`` not named like BraTS cases (hidden ones aside)."""
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and not CASE_ID_PATTERN.match(p.name)
    )


def find_brats_cases(
    dataset_dir: str | os.PathLike, require_label: bool = True, warn_other_folders: bool = True
) -> list[dict]:
    """List the BraTS case folders of ``dataset_dir`` (sorted by case id).

    File paths are built from the naming convention, not checked here (see :func:`check_brats_case`),
    so a case with a missing file is still listed and reported by name later. Sub-folders not named
    like a case are named in a warning.

    Args:
        dataset_dir: folder holding ``BraTS-XXX-xxxxx-xxx`` case folders.
        require_label: add the ``label`` entry (``-seg.nii.gz``) to each case. Defaults to True.
        warn_other_folders: name the sub-folders not named like a case in a warning. Defaults to True.

    Returns:
        list of ``{"case_id": str, "image": [t1n, t1c, t2w, t2f paths], "label": path}``, paths absolute.

    Raises:
        FileNotFoundError: when ``dataset_dir`` is not a folder or holds no case folder.
    """
    root = Path(dataset_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset_dir {str(root)!r} is not a folder.")
    cases = [
        _case_of_folder(case_dir, require_label)
        for case_dir in sorted(p for p in root.iterdir() if p.is_dir() and CASE_ID_PATTERN.match(p.name))
    ]
    if not cases:
        raise FileNotFoundError(
            f"no BraTS case folder (named like 'BraTS-GLI-00000-000') found in dataset_dir {str(root)!r}."
        )
    others = _other_folders(root) if warn_other_folders else []
    if others:
        _logger.warning("%s: %d folder(s) not named like a BraTS case are left out: %s", root, len(others), others)
    return cases


def prepare_datalist(
    dataset_dir: str | os.PathLike,
    output_file: str | os.PathLike,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> str:
    """Write the datalist JSON of a BraTS 2023 folder with fixed training/validation/test splits.

    The cases are sorted by ``case_id`` and shuffled with ``seed``
    (:func:`~nnmamba_nets.common.datalists.split_indices`), so the split depends only on the set of case
    ids. Paths in the file are relative to its folder. The dataset folder itself is never written to
    unless ``output_file`` points there.

    Args:
        dataset_dir: folder of ``BraTS-GLI-xxxxx-xxx`` case folders (all with ``-seg.nii.gz`` labels).
        output_file: the JSON file to write.
        val_fraction: fraction of cases for validation. Defaults to 0.15.
        test_fraction: fraction of cases for the test split. Defaults to 0.15.
        seed: split seed. Defaults to 0.

    Returns:
        the absolute path of ``output_file``.
    """
    cases = find_brats_cases(dataset_dir)
    positions = split_indices(len(cases), val_fraction, test_fraction, seed)
    splits = {split: [cases[i] for i in positions[split]] for split in SPLITS}
    metadata = {"name": "BraTS 2023 glioma", "modalities": list(MODALITIES), "seed": seed}
    written = write_datalist(output_file, {**metadata, **splits})
    _logger.info("wrote %s: %s", written, ", ".join(f"{len(splits[k])} {k}" for k in SPLITS))
    return written


def _case_id_from_path(path: str) -> str:
    name = os.path.basename(os.path.normpath(path))
    for suffix in (".nii.gz", ".nii"):
        name = name.removesuffix(suffix)
    return re.sub(rf"-({'|'.join(MODALITIES)})$", "", name)


def check_brats_case(
    case: Mapping[str, Any], num_channels: int = len(MODALITIES), require_label: bool = True, read_data: bool = False
) -> None:
    """Check one case's files before loading: present, intact NIfTI, right channel count, one grid and affine.

    Args:
        case: ``{"case_id", "image": path or list of paths, "label": path}``.
        num_channels: total image channels expected (files x channels per file). Defaults to 4.
        require_label: the case must have a readable ``label`` of the same grid. Defaults to True.
        read_data: also decompress the voxel data (slower; finds truncated or corrupt files, gzip CRC
            errors and NaN/Inf voxels, see :func:`~nnmamba_nets.common.images.check_image_file`).
            Defaults to False (headers only).

    Raises:
        ValueError: naming the case and the file, with what was expected.
    """
    images = case.get("image")
    images = [images] if isinstance(images, (str, os.PathLike)) else list(images or [])
    case_id = case.get("case_id") or (_case_id_from_path(str(images[0])) if images else "<unnamed case>")
    if not images:
        raise ValueError(f"case {case_id}: no image files listed.")
    files = [("image", str(p)) for p in images]
    if require_label:
        if not case.get("label"):
            raise ValueError(f"case {case_id}: no label file listed.")
        files.append(("label", str(case["label"])))
    missing = [p for _, p in files if not os.path.isfile(p)]
    if missing:
        raise ValueError(
            f"case {case_id}: missing file(s) {missing}; expected the modalities {list(MODALITIES)}"
            + (" and the -seg label" if require_label else "")
            + " as <case>-<modality>.nii.gz."
        )
    channels, infos = 0, {}
    for kind, path in files:
        try:
            infos[path] = info = check_image_file(path, read_data)
        except ValueError as error:
            raise ValueError(f"case {case_id}: {error}") from error
        if kind == "image":
            channels += info.channels
        elif info.channels != 1:
            raise ValueError(f"case {case_id}: label {path!r} has {info.channels} channels, expected 1.")
    if channels != num_channels:
        raise ValueError(
            f"case {case_id}: the image files have {channels} channel(s) in total, expected {num_channels} "
            f"({', '.join(MODALITIES)})."
        )
    if len({info.spatial_shape for info in infos.values()}) > 1:
        grids = {path: info.spatial_shape for path, info in infos.items()}
        raise ValueError(f"case {case_id}: files have different voxel grids: {grids}.")
    reference = next(iter(infos.values())).affine
    moved = [path for path, info in infos.items() if not np.allclose(info.affine, reference, atol=1e-3)]
    if moved:
        raise ValueError(
            f"case {case_id}: files on the same grid have different affines (not co-registered?): {moved} differ "
            f"from {next(iter(infos))!r}."
        )


def check_inference_case(case: Mapping[str, Any]) -> None:
    """The check of an inference input: :func:`check_brats_case` of all its voxels, no label needed.

    Raises:
        ValueError: the case's problem (e.g. a folder not named like a case), or what the check finds.
    """
    if case.get("problem"):
        raise ValueError(str(case["problem"]))
    check_brats_case(case, require_label=False, read_data=True)


def require_valid_cases(
    cases: Sequence[Mapping[str, Any]],
    num_channels: int = len(MODALITIES),
    require_label: bool = True,
    read_data: bool = False,
) -> list[dict]:
    """Check every case (header only by default) and fail before training if any is bad.

    Args:
        cases: case dicts.
        num_channels: total image channels expected. Defaults to 4.
        require_label: whether a label file is required. Defaults to True.
        read_data: decompress the voxel data in the check. Defaults to False.

    Returns:
        ``cases`` as a list when all pass.

    Raises:
        ValueError: listing every bad case with its problem.
    """
    valid, errors = partition_inputs(
        cases, lambda case: check_brats_case(case, num_channels, require_label, read_data), name_key="case_id"
    )
    if errors:
        raise ValueError(f"{len(errors)} of {len(cases)} case(s) are not usable:\n" + "\n".join(errors.values()))
    return valid


def check_datalist(datalist: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle's training data: every case of every split named and checked before training starts.

    Args:
        datalist: as read by :func:`~nnmamba_nets.common.datalists.read_datalist`.

    Returns:
        the datalist with a ``case_id`` in every item (from the first image's file name where missing).

    Raises:
        ValueError: listing every case whose files are missing, unreadable or inconsistent.
    """
    named = {
        split: [{"case_id": _case_id_from_path(str(_first(case["image"]))), **case} for case in datalist[split]]
        for split in SPLITS
    }
    require_valid_cases([case for split in SPLITS for case in named[split]])
    return {**datalist, **named}


def _first(image: str | Sequence[str]) -> str:
    return image if isinstance(image, (str, os.PathLike)) else image[0]


def _case_of_path(path: str) -> dict:
    """A case from a case folder (its four modality files) or from one 4-channel NIfTI file."""
    folder = Path(path)
    if folder.is_dir():
        return _case_of_folder(folder.resolve(), require_label=False)
    return {"case_id": _case_id_from_path(path), "image": str(folder.resolve())}


def _cases_of_folder(folder: Path) -> list[dict]:
    """The case itself when ``folder`` is one case folder, else its case folders, and an input with a
    ``problem`` for every sub-folder not named like a case (so that it is reported, not skipped)."""
    if CASE_ID_PATTERN.match(folder.name) and any(folder.glob(f"{folder.name}-*.nii.gz")):
        return [_case_of_folder(folder.resolve(), require_label=False)]
    root = folder.resolve()
    misnamed = [
        {"case_id": name, "image": [], "problem": f"folder {str(root / name)!r} is not named like a BraTS case "
         "('BraTS-GLI-00000-000', files '<case>-t1n.nii.gz', ...); rename it to segment it."}
        for name in _other_folders(root)
    ]  # fmt: skip
    return find_brats_cases(root, require_label=False, warn_other_folders=False) + misnamed


def case_inputs(dataset_dir: str | os.PathLike | Sequence[str], split: str | None = "test") -> list[dict]:
    """The cases an inference run segments (see :func:`~nnmamba_nets.common.datalists.inference_inputs`).

    Args:
        dataset_dir: a folder of BraTS case folders (labels not needed) or one case folder; a datalist
            JSON; a CSV whose ``image`` column names case folders or 4-channel NIfTI files; one such
            file; or a list of case folders and 4-channel files.
        split: datalist key / CSV split; None or ``""`` takes everything. Defaults to ``"test"``.

    Returns:
        case dicts ``{"case_id", "image": [4 files] or a 4-channel file}`` (plus ``label`` where known).
    """
    return inference_inputs(dataset_dir, split, _cases_of_folder, _case_of_path)


def _prepare_command(
    dataset_dir: str, output_file: str, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> str:
    """Command-line ``prepare``: write the datalist and say where."""
    return f"wrote {prepare_datalist(dataset_dir, output_file, val_fraction, test_fraction, seed)}"


def _stack_command(dataset_dir: str, output_dir: str) -> str:
    """Command-line ``stack``: write the 4-channel files and say how many and where."""
    from nnmamba_nets.segmentation.io import stack_modalities  # io builds on this module

    return f"wrote {len(stack_modalities(dataset_dir, output_dir))} 4-channel file(s) to {output_dir}"


if __name__ == "__main__":
    import fire

    fire.Fire({"prepare": _prepare_command, "stack": _stack_command})
