"""Datalist JSON files (MONAI's decathlon format) and the inference inputs of the three bundles.

A datalist is a JSON object with the lists ``training``, ``validation`` and ``test`` of items (dicts),
plus any metadata keys (e.g. ``landmark_names``). Paths in an item are relative to the JSON file's
folder or absolute. Every bundle reads its data through :func:`read_datalist` and its inference
inputs (the ``dataset_dir`` of ``inference.yaml``) through :func:`inference_inputs`, so ``datalist`` and
``dataset_dir`` mean the same in all three.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnmamba_nets.common.files import write_text_atomic

__all__ = [
    "NIFTI_SUFFIXES",
    "SPLITS",
    "image_inputs",
    "inference_inputs",
    "read_datalist",
    "split_indices",
    "write_datalist",
]

SPLITS = ("training", "validation", "test")
"""The datalist keys of the three splits, in MONAI's naming."""
NIFTI_SUFFIXES = (".nii", ".nii.gz")
"""Image files of an input folder (what MONAI's default reader loads)."""


def _resolve(value: Any, base: Path) -> Any:
    """``value`` (a path or a list of paths) made absolute against ``base``."""
    if isinstance(value, (list, tuple)):
        return [_resolve(item, base) for item in value]
    if isinstance(value, (str, os.PathLike)):
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())
    return value


def _relative(value: Any, base: Path) -> Any:
    """``value`` (a path or a list of paths) made relative to ``base`` where possible."""
    if isinstance(value, (list, tuple)):
        return [_relative(item, base) for item in value]
    if isinstance(value, (str, os.PathLike)):
        try:
            return os.path.relpath(os.path.abspath(value), base)
        except ValueError:  # another drive (Windows)
            return os.path.abspath(value)
    return value


def read_datalist(datalist_file: str | os.PathLike, path_keys: Sequence[str] = ("image", "label")) -> dict[str, Any]:
    """Read a datalist JSON file with the paths of ``path_keys`` made absolute.

    Ours rather than :func:`monai.data.load_decathlon_datalist`: MONAI's also turns any other string
    field that happens to name an existing file or folder into an absolute path (a ``case_id``
    ``"BraTS-GLI-00000-000"`` beside its case folder becomes that folder's path), and fails on an
    empty ``test`` list. Here only ``path_keys`` are paths.

    Args:
        datalist_file: the JSON file.
        path_keys: item keys holding a path or a list of paths. Defaults to ``("image", "label")``.

    Returns:
        the file's content with every split of :data:`SPLITS` present (an empty list when missing)
        and the metadata keys as they are.

    Raises:
        ValueError: the file cannot be read, is not a JSON object with at least one split, or holds an
            item that is not an object with an ``image`` (naming the file, the split and the item).
    """
    path = Path(datalist_file).expanduser().resolve()
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read datalist {str(path)!r}: {error}") from error
    if not isinstance(content, dict) or not any(isinstance(content.get(key), list) for key in SPLITS):
        raise ValueError(f"datalist {str(path)!r} must be a JSON object with a list under one of the keys {SPLITS}.")
    datalist = dict(content)
    for split in SPLITS:
        items = []
        for position, item in enumerate(content.get(split) or []):
            if isinstance(item, str):  # the decathlon format allows bare image paths (e.g. for test)
                item = {"image": item}
            if not isinstance(item, dict) or "image" not in item:
                raise ValueError(f"datalist {str(path)!r}: {split}[{position}] has no 'image' entry: {item!r}.")
            items.append(
                {key: _resolve(value, path.parent) if key in path_keys else value for key, value in item.items()}
            )
        datalist[split] = items
    return datalist


def write_datalist(
    datalist_file: str | os.PathLike, datalist: Mapping[str, Any], path_keys: Sequence[str] = ("image", "label")
) -> str:
    """Write a datalist JSON file atomically, with the paths of ``path_keys`` relative to its folder.

    Args:
        datalist_file: the JSON file to write (parent folders are created).
        datalist: splits (lists of items) and metadata keys.
        path_keys: item keys holding a path or a list of paths. Defaults to ``("image", "label")``.

    Returns:
        the absolute path of the written file.
    """
    path = Path(datalist_file).expanduser().resolve()
    content = {
        key: [{k: _relative(v, path.parent) if k in path_keys else v for k, v in item.items()} for item in value]
        if key in SPLITS
        else value
        for key, value in datalist.items()
    }
    write_text_atomic(path, json.dumps(content, indent=1) + "\n")
    return str(path)


def split_indices(count: int, val_fraction: float, test_fraction: float, seed: int = 0) -> dict[str, list[int]]:
    """A fixed random split of ``count`` sorted items into training / validation / test positions.

    Validation and test get ``round(count * fraction)`` items, at least one each when their fraction
    is positive; training keeps the rest (at least one).

    Args:
        count: number of items (in a fixed, e.g. sorted, order).
        val_fraction: fraction for validation.
        test_fraction: fraction for the test split.
        seed: shuffle seed. Defaults to 0.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` sorted positions.

    Raises:
        ValueError: bad fractions, or too few items to give every requested split one.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            "val_fraction and test_fraction must be in [0, 1) with a sum below 1, "
            f"got {val_fraction} and {test_fraction}."
        )
    sizes = {
        split: max(1, round(count * fraction)) if fraction > 0 else 0
        for split, fraction in (("validation", val_fraction), ("test", test_fraction))
    }
    if count - sum(sizes.values()) < 1:
        raise ValueError(
            f"{count} item(s) are too few for val_fraction={val_fraction} and test_fraction={test_fraction}: "
            "training, validation and test need one each."
        )
    order = np.random.default_rng(seed).permutation(count).tolist()
    n_val, n_test = sizes["validation"], sizes["test"]
    return {
        "training": sorted(order[n_val + n_test :]),
        "validation": sorted(order[:n_val]),
        "test": sorted(order[n_val : n_val + n_test]),
    }


def _csv_paths(csv_file: Path, split: str | None) -> list[str]:
    """The ``image`` column of a CSV (relative to its folder), only the rows of ``split`` when given."""
    with open(csv_file, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = columns
        if "image" not in columns:
            raise ValueError(f"CSV file {str(csv_file)!r} lacks the column 'image'; its header has {columns}.")
        if split is not None and "split" not in columns:
            raise ValueError(f"CSV file {str(csv_file)!r} has no 'split' column to select {split!r} from.")
        rows = [row for row in reader if split is None or (row.get("split") or "").strip() == split]
    return [str(_resolve(row["image"].strip(), csv_file.parent)) for row in rows]


def inference_inputs(
    dataset_dir: str | os.PathLike | Sequence[str | os.PathLike],
    split: str | None,
    folder_items: Callable[[Path], list[dict]],
    path_item: Callable[[str], dict],
    path_keys: Sequence[str] = ("image", "label"),
) -> list[dict]:
    """The items an inference run processes, from the one input id of every bundle's inference (``dataset_dir``).

    Args:
        dataset_dir: one of

            - a folder: ``folder_items(folder)`` (the task's own layout, e.g. BraTS case folders or
              image files);
            - a datalist ``.json``: its ``split`` list (all splits when ``split`` is empty);
            - a ``.csv`` with an ``image`` column (relative paths are relative to the CSV's folder),
              only the rows whose ``split`` column equals ``split`` when both are given;
            - another existing file, or a list of paths (the bundle CLI parses ``"['a.nii.gz', ...]"``
              into a list): ``path_item(path)`` for each.

        split: datalist key or CSV ``split`` value; None or ``""`` takes everything.
        folder_items: the items of a folder.
        path_item: the item of one path (an image file, or for segmentation a case folder).
        path_keys: path keys of datalist items (see :func:`read_datalist`).

    Returns:
        the items, in order.

    Raises:
        ValueError: naming ``dataset_dir`` when it is none of the above, holds nothing, or lacks the split.
    """
    split = split or None
    if isinstance(dataset_dir, (list, tuple)):
        items = [path_item(str(path)) for path in dataset_dir]
    else:
        source = Path(os.fspath(dataset_dir)).expanduser()
        if source.is_dir():
            items = folder_items(source)
        elif source.is_file() and source.name.lower().endswith(".json"):
            datalist = read_datalist(source, path_keys)
            if split is not None and split not in SPLITS:
                raise ValueError(f"input_split must be one of {SPLITS} (or empty) for datalist {str(source)!r}.")
            items = datalist[split] if split is not None else [item for key in SPLITS for item in datalist[key]]
        elif source.is_file() and source.name.lower().endswith(".csv"):
            items = [path_item(path) for path in _csv_paths(source, split)]
        elif source.is_file():
            items = [path_item(str(source))]
        else:
            raise ValueError(
                f"dataset_dir {str(dataset_dir)!r} does not exist; expected a folder, a datalist .json, a .csv with "
                "an 'image' column, a file, or a list of files."
            )
    if not items:
        raise ValueError(
            f"dataset_dir {dataset_dir!r} holds nothing to process" + (f" for split {split!r}." if split else ".")
        )
    return items


def _image_item(path: str) -> dict:
    absolute = str(Path(path).expanduser().resolve())
    return {"image": absolute, "name": absolute}


def _folder_images(folder: Path) -> list[dict]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES))
    return [_image_item(str(p)) for p in files]


def image_inputs(
    dataset_dir: str | os.PathLike | Sequence[str | os.PathLike], split: str | None = "test"
) -> list[dict]:
    """One-image-per-item inference inputs (classification, landmarks), see :func:`inference_inputs`.

    Args:
        dataset_dir: a folder (its ``.nii``/``.nii.gz`` files, sorted), a datalist JSON, a CSV with an
            ``image`` column, one image file, or a list of image files.
        split: datalist key / CSV split; None or ``""`` takes everything. Defaults to ``"test"``.

    Returns:
        items ``{"image": path, "name": path}`` (datalist items keep their other keys).
    """
    items = inference_inputs(dataset_dir, split, _folder_images, _image_item, path_keys=("image",))
    return [{"name": item["image"], **item} for item in items]
