"""BraTS 2023 glioma data: folder preparer, case checks and a synthetic BraTS-like demo dataset.

BraTS 2023 layout (one folder per case, four MRI contrasts and an optional label map)::

    BraTS-GLI-00000-000/
        BraTS-GLI-00000-000-t1n.nii.gz   # native T1
        BraTS-GLI-00000-000-t1c.nii.gz   # contrast-enhanced T1
        BraTS-GLI-00000-000-t2w.nii.gz   # T2
        BraTS-GLI-00000-000-t2f.nii.gz   # T2-FLAIR
        BraTS-GLI-00000-000-seg.nii.gz   # labels: 0 background, 1 NCR, 2 ED (SNFH), 3 ET

:func:`prepare_brats_datalist` turns such a folder into a MONAI datalist (``training``, ``validation``
and ``test`` lists of ``{"case_id", "image": [4 files], "label"}``) with a fixed, seeded split.
:func:`generate_synthetic_brats` writes a deterministic BraTS-like dataset in the same layout (brain
phantom, four contrasts, tumour with necrotic core, enhancing rim and oedema, bias field, Rician noise),
so demo and real data go through the same code. :func:`brats_datalist` is what the bundle calls.

Command line::

    python -m nnmamba_nets.data.brats prepare /data/BraTS2023 --output_file /data/BraTS2023/datalist.json
    python -m nnmamba_nets.data.brats generate /tmp/brats_demo --num_cases 8 --size 64
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from nnmamba_nets.common.cache import demo_data_dir
from nnmamba_nets.common.files import write_text_atomic
from nnmamba_nets.data import phantom

__all__ = [
    "DATALIST_KEYS",
    "LABEL_ED",
    "LABEL_ET",
    "LABEL_NCR",
    "MODALITIES",
    "brats_datalist",
    "brats_inference_cases",
    "check_brats_case",
    "demo_brats_dir",
    "find_brats_cases",
    "generate_synthetic_brats",
    "load_datalist",
    "partition_valid_cases",
    "prepare_brats_datalist",
    "raise_for_rejected_cases",
    "require_valid_cases",
    "split_cases",
    "synthetic_brats_case",
]

MODALITIES = ("t1n", "t1c", "t2w", "t2f")
"""Contrast suffixes in channel order: T1n, T1c, T2w, T2-FLAIR."""
LABEL_SUFFIX = "seg"
LABEL_NCR, LABEL_ED, LABEL_ET = 1, 2, 3
DATALIST_KEYS = ("training", "validation", "test")
CASE_ID_PATTERN = re.compile(r"^BraTS-[A-Za-z]+-\d{5}-\d{3}$")
DEMO_DATASET_NAME = "brats_synthetic"
DEMO_GENERATOR_VERSION = 1  # bump when the generator's output changes, so old caches are not reused
DATALIST_FILENAME = "datalist.json"
_COMPLETE_MARKER = ".complete"

_logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# preparer: folder -> datalist
# ----------------------------------------------------------------------------------------------


def find_brats_cases(dataset_dir: str | os.PathLike, require_label: bool = True) -> list[dict]:
    """List the BraTS case folders of ``dataset_dir`` (sorted by case id).

    File paths are built from the naming convention, not checked here (see :func:`check_brats_case`),
    so a case with a missing file is still listed and reported by name later.

    Args:
        dataset_dir: folder holding ``BraTS-XXX-xxxxx-xxx`` case folders.
        require_label: add the ``label`` entry (``-seg.nii.gz``) to each case. Defaults to True.

    Returns:
        list of ``{"case_id": str, "image": [t1n, t1c, t2w, t2f paths], "label": path}``, paths absolute.

    Raises:
        FileNotFoundError: when ``dataset_dir`` is not a folder or holds no case folder.
    """
    root = Path(dataset_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset_dir {str(root)!r} is not a folder.")
    cases = []
    for case_dir in sorted(p for p in root.iterdir() if p.is_dir() and CASE_ID_PATTERN.match(p.name)):
        case = {"case_id": case_dir.name, "image": [str(case_dir / f"{case_dir.name}-{m}.nii.gz") for m in MODALITIES]}
        if require_label:
            case["label"] = str(case_dir / f"{case_dir.name}-{LABEL_SUFFIX}.nii.gz")
        cases.append(case)
    if not cases:
        raise FileNotFoundError(
            f"no BraTS case folder (named like 'BraTS-GLI-00000-000') found in dataset_dir {str(root)!r}."
        )
    return cases


def split_cases(
    cases: Sequence[dict], val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> dict[str, list[dict]]:
    """Fixed random split into training / validation / test.

    The cases are sorted by ``case_id`` and shuffled with ``seed``, so the split depends only on the
    set of case ids. Validation and test get at least one case each when there are 3 or more cases.

    Args:
        cases: case dicts with a ``case_id``.
        val_fraction: fraction of cases for validation. Defaults to 0.15.
        test_fraction: fraction of cases for the test split. Defaults to 0.15.
        seed: shuffle seed. Defaults to 0.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction and test_fraction must be >= 0 with a sum < 1, got {val_fraction} and {test_fraction}."
        )
    if len(cases) < 3:
        raise ValueError(f"need at least 3 cases for a training/validation/test split, got {len(cases)}.")
    ordered = sorted(cases, key=lambda c: c["case_id"])
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_val = max(1, round(len(ordered) * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(len(ordered) * test_fraction)) if test_fraction > 0 else 0
    picked = [ordered[i] for i in order]
    return {
        "training": sorted(picked[n_val + n_test :], key=lambda c: c["case_id"]),
        "validation": sorted(picked[:n_val], key=lambda c: c["case_id"]),
        "test": sorted(picked[n_val : n_val + n_test], key=lambda c: c["case_id"]),
    }


def _relative_paths(case: dict, base_dir: Path) -> dict:
    out = dict(case)
    out["image"] = [os.path.relpath(p, base_dir) for p in case["image"]]
    if "label" in case:
        out["label"] = os.path.relpath(case["label"], base_dir)
    return out


def prepare_brats_datalist(
    dataset_dir: str | os.PathLike,
    output_file: str | os.PathLike | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict[str, list[dict]]:
    """Turn a BraTS 2023 folder into a MONAI datalist with fixed training/validation/test splits.

    Args:
        dataset_dir: folder of ``BraTS-GLI-xxxxx-xxx`` case folders (all with ``-seg.nii.gz`` labels).
        output_file: optional JSON file to write; its paths are relative to the file's folder, as
            :func:`monai.data.load_decathlon_datalist` expects. The dataset folder itself is never written to
            unless ``output_file`` points there.
        val_fraction: fraction of cases for validation. Defaults to 0.15.
        test_fraction: fraction of cases for the test split. Defaults to 0.15.
        seed: split seed. Defaults to 0.

    Returns:
        the datalist with absolute paths.
    """
    splits = split_cases(find_brats_cases(dataset_dir), val_fraction, test_fraction, seed)
    if output_file is not None:
        output = Path(output_file).expanduser().resolve()
        relative = {k: [_relative_paths(c, output.parent) for c in v] for k, v in splits.items()}
        content = {"name": "BraTS 2023 glioma", "modalities": list(MODALITIES), "seed": seed, **relative}
        write_text_atomic(output, json.dumps(content, indent=2))
    return splits


def load_datalist(datalist_file: str | os.PathLike) -> dict[str, list[dict]]:
    """Read a datalist JSON (paths relative to its folder or absolute) with training/validation/test lists.

    Args:
        datalist_file: JSON file as written by :func:`prepare_brats_datalist`.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` with absolute paths; a missing key
        gives an empty list.
    """
    path = Path(datalist_file).expanduser().resolve()
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read datalist {str(path)!r}: {error}") from error
    if not isinstance(content, dict) or not any(key in content for key in DATALIST_KEYS):
        raise ValueError(f"datalist {str(path)!r} has none of the keys {DATALIST_KEYS}.")

    def absolute(item: str) -> str:
        return item if os.path.isabs(item) else str(path.parent / item)

    splits = {}
    for key in DATALIST_KEYS:
        splits[key] = []
        for case in content.get(key, []):
            if not isinstance(case, dict) or "image" not in case:
                raise ValueError(f"datalist {str(path)!r}: an item of {key!r} has no 'image' entry: {case!r}.")
            images = case["image"] if isinstance(case["image"], list) else [case["image"]]
            entry = {**case, "image": [absolute(p) for p in images]}
            entry.setdefault("case_id", _case_id_from_path(entry["image"][0]))
            if "label" in case:
                entry["label"] = absolute(case["label"])
            splits[key].append(entry)
    return splits


def _case_id_from_path(path: str) -> str:
    name = os.path.basename(path)
    for suffix in (".nii.gz", ".nii"):
        name = name.removesuffix(suffix)
    return re.sub(rf"-({'|'.join(MODALITIES)})$", "", name)


# ----------------------------------------------------------------------------------------------
# case checks
# ----------------------------------------------------------------------------------------------


def _spatial_shape_and_channels(path: str, read_data: bool) -> tuple[tuple[int, ...], int]:
    image = nib.load(path)
    shape = tuple(int(s) for s in image.shape)
    if read_data:
        data = np.asanyarray(image.dataobj)  # decompresses the whole file: finds truncated/corrupt data
        if not np.all(np.isfinite(data)):
            raise ValueError(f"{path!r} contains NaN or infinite values")
    if len(shape) == 3:
        return shape, 1
    if len(shape) == 4:
        return shape[:3], shape[3]
    if len(shape) == 5 and shape[3] == 1:  # NIfTI vector images keep channels in dim 5
        return shape[:3], shape[4]
    raise ValueError(f"{path!r} has shape {shape}, expected a 3D volume (or 4D with channels last)")


def check_brats_case(
    case: dict, num_channels: int = len(MODALITIES), require_label: bool = True, read_data: bool = False
) -> None:
    """Check one case's files before loading: present, readable NIfTI, right channel count, same grid.

    Args:
        case: ``{"case_id", "image": path or list of paths, "label": path}``.
        num_channels: total image channels expected (files x channels per file). Defaults to 4.
        require_label: the case must have a readable ``label`` of the same grid. Defaults to True.
        read_data: also decompress the voxel data (slower; finds truncated files). Defaults to False
            (header only).

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
    channels, grids = 0, {}
    for kind, path in files:
        try:
            shape, file_channels = _spatial_shape_and_channels(path, read_data)
        except Exception as error:  # nibabel raises many types for corrupt files
            raise ValueError(f"case {case_id}: cannot read NIfTI file {path!r}: {error}") from error
        grids[path] = shape
        if kind == "image":
            channels += file_channels
        elif file_channels != 1:
            raise ValueError(f"case {case_id}: label {path!r} has {file_channels} channels, expected 1.")
    if channels != num_channels:
        raise ValueError(
            f"case {case_id}: the image files have {channels} channel(s) in total, expected {num_channels} "
            f"({', '.join(MODALITIES)})."
        )
    if len(set(grids.values())) > 1:
        raise ValueError(f"case {case_id}: files have different voxel grids: {grids}.")


def partition_valid_cases(
    cases: Sequence[dict], num_channels: int = len(MODALITIES), require_label: bool = False, read_data: bool = True
) -> tuple[list[dict], dict[str, str]]:
    """Split cases into those that pass :func:`check_brats_case` and error messages for the others.

    Args:
        cases: case dicts.
        num_channels: total image channels expected. Defaults to 4.
        require_label: whether a label file is required. Defaults to False (inference).
        read_data: decompress the voxel data in the check. Defaults to True.

    Returns:
        (valid cases, ``{case_id: error message}`` for the rejected ones).
    """
    valid, errors = [], {}
    for case in cases:
        try:
            check_brats_case(case, num_channels, require_label, read_data)
        except ValueError as error:
            errors[case.get("case_id") or str(case.get("image"))] = str(error)
            _logger.error("skipping a case: %s", error)
        else:
            valid.append(case)
    return valid, errors


def require_valid_cases(
    cases: Sequence[dict], num_channels: int = len(MODALITIES), require_label: bool = True, read_data: bool = False
) -> list[dict]:
    """Check every case (header only by default) and fail before training if any is bad.

    Args:
        cases: case dicts.
        num_channels: total image channels expected. Defaults to 4.
        require_label: whether a label file is required. Defaults to True.
        read_data: decompress the voxel data in the check. Defaults to False.

    Returns:
        ``cases`` unchanged (as a list) when all pass.

    Raises:
        ValueError: listing every bad case with its problem.
    """
    valid, errors = partition_valid_cases(cases, num_channels, require_label, read_data)
    if errors:
        raise ValueError(f"{len(errors)} of {len(cases)} case(s) are not usable:\n" + "\n".join(errors.values()))
    return valid


def raise_for_rejected_cases(errors: dict[str, str], report_file: str | os.PathLike | None = None) -> None:
    """Report the cases that :func:`partition_valid_cases` rejected, after the others were processed.

    Args:
        errors: ``{case_id: message}``; nothing happens when empty.
        report_file: optional JSON file to write ``errors`` to.

    Raises:
        ValueError: listing the rejected cases, when there are any.
    """
    if not errors:
        return
    if report_file is not None:
        write_text_atomic(report_file, json.dumps(errors, indent=2))
    where = f" (details in {os.fspath(report_file)!r})" if report_file is not None else ""
    raise ValueError(
        f"{len(errors)} case(s) were skipped{where}; the other cases were processed:\n" + "\n".join(errors.values())
    )


# ----------------------------------------------------------------------------------------------
# synthetic BraTS-like cases
# ----------------------------------------------------------------------------------------------

# mean intensity of each tissue per contrast (t1n, t1c, t2w, t2f), relative to white matter on T1
_TISSUE_MEANS = {
    "csf": (0.25, 0.25, 1.00, 0.12),
    "grey": (0.62, 0.62, 0.55, 0.55),
    "white": (0.90, 0.90, 0.38, 0.42),
    "necrosis": (0.30, 0.28, 0.85, 0.55),
    "oedema": (0.55, 0.55, 0.80, 0.95),
    "enhancing": (0.58, 1.35, 0.62, 0.75),
}


def synthetic_brats_case(rng: np.random.Generator, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic skull-stripped BraTS-like case.

    Args:
        rng: random generator.
        shape: grid size (d, h, w); 32 or more per axis is sensible.

    Returns:
        (images (4, d, h, w) float32 in MRI-like units with background exactly 0, in :data:`MODALITIES`
        order; labels (d, h, w) uint8 with 0, 1 NCR, 2 ED, 3 ET).
    """
    tissues = phantom.brain_tissue_labels(shape, rng)
    brain = tissues > phantom.TISSUE_BACKGROUND
    coords = phantom.voxel_coordinates(shape)
    scale = float(min(shape))

    # tumour centre: a brain voxel far enough from the brain surface
    depth = ndimage.distance_transform_edt(brain)
    candidates = np.argwhere(depth > 0.12 * scale)
    centre = candidates[rng.integers(len(candidates))].astype(np.float32)
    core_radius = rng.uniform(0.09, 0.17) * scale
    rotation = phantom.random_rotation(rng, 90.0)
    roughness = phantom.smooth_random_field(shape, rng, sigma=max(1.5, scale / 20))
    core = brain & phantom.blob_mask(
        coords, centre, core_radius * rng.uniform(0.75, 1.25, 3), rotation, roughness, rng.uniform(0.1, 0.3)
    )
    oedema_radius = core_radius * rng.uniform(1.5, 2.3) * rng.uniform(0.8, 1.2, 3)
    spread = phantom.smooth_random_field(shape, rng, sigma=max(2.0, scale / 10))
    oedema = brain & phantom.blob_mask(coords, centre, oedema_radius, rotation, spread, 0.25)
    oedema &= tissues != phantom.TISSUE_CSF
    labels = np.zeros(tuple(shape), dtype=np.uint8)
    labels[oedema] = LABEL_ED
    if rng.random() < 0.9:  # most glioblastomas enhance: a rim of ET around a necrotic core
        rim = phantom.shell(core, thickness=max(1, round(rng.uniform(0.025, 0.045) * scale)))
        labels[core] = LABEL_NCR
        labels[rim] = LABEL_ET
    else:  # non-enhancing tumour core
        labels[core] = LABEL_NCR

    tissue_names = {
        phantom.TISSUE_CSF: "csf",
        phantom.TISSUE_GREY_MATTER: "grey",
        phantom.TISSUE_WHITE_MATTER: "white",
    }
    region_names = {LABEL_ED: "oedema", LABEL_NCR: "necrosis", LABEL_ET: "enhancing"}
    texture = phantom.smooth_random_field(shape, rng, sigma=1.5)
    images = np.zeros((len(MODALITIES), *shape), dtype=np.float32)
    for channel in range(len(MODALITIES)):
        clean = np.zeros(tuple(shape), dtype=np.float32)
        for value, name in tissue_names.items():
            clean[tissues == value] = _TISSUE_MEANS[name][channel]
        for value, name in region_names.items():
            region = labels == value
            contrast = _TISSUE_MEANS[name][channel] * rng.uniform(0.9, 1.1)
            clean[region] = contrast * (1 + 0.12 * texture[region])
        clean = ndimage.gaussian_filter(clean, sigma=0.6)  # partial-volume blur
        clean *= phantom.bias_field(shape, rng, strength=rng.uniform(0.1, 0.3))
        noisy = phantom.add_rician_noise(clean, rng, sigma=rng.uniform(0.02, 0.04))
        images[channel] = noisy * brain * rng.uniform(400.0, 2000.0)  # arbitrary scanner units
    return images, labels


def generate_synthetic_brats(output_dir: str | os.PathLike, num_cases: int = 24, size: int = 48, seed: int = 0) -> str:
    """Write a deterministic synthetic BraTS-like dataset in the BraTS 2023 layout plus ``datalist.json``.

    Each case has its own grid (``size`` +- a few voxels per axis), voxel spacing and LPS-style affine.
    Nothing is written when ``output_dir`` already holds a complete dataset; otherwise the dataset is
    built in a temporary sibling folder and renamed into place, so an interrupted run leaves nothing
    half-written and an existing non-empty folder is never overwritten.

    Args:
        output_dir: folder to create.
        num_cases: number of cases (>= 3 for the splits). Defaults to 24.
        size: nominal grid size per axis (>= 24). Defaults to 48.
        seed: random seed; the same arguments give the same files. Defaults to 0.

    Returns:
        ``output_dir`` as an absolute path.
    """
    if num_cases < 3:
        raise ValueError(f"num_cases must be >= 3 (training, validation and test), got {num_cases}.")
    if size < 24:
        raise ValueError(f"size must be >= 24 voxels, got {size}.")
    target = Path(output_dir).expanduser().resolve()
    if (target / _COMPLETE_MARKER).is_file():
        return str(target)
    # (the marker is checked again: another process may have completed the folder meanwhile)
    if target.exists() and any(target.iterdir()) and not (target / _COMPLETE_MARKER).is_file():
        raise FileExistsError(f"{str(target)!r} exists, is not empty and is not a complete synthetic dataset.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the final dataset folder should not be
    try:
        rng = np.random.default_rng(seed)
        for index in range(num_cases):
            case_id = f"BraTS-GLI-{index:05d}-000"
            shape = tuple(int(s) for s in size + rng.integers(-size // 10, size // 16 + 1, 3))
            spacing = (1.0, 1.0, float(rng.choice([1.0, 1.0, 1.2, 1.5])))
            affine = phantom.voxel_affine(
                shape, spacing, flip=(True, True, False), centre_world=rng.uniform(-20, 20, 3)
            )
            images, labels = synthetic_brats_case(rng, shape)
            for modality, image in zip(MODALITIES, images):
                phantom.save_nifti(
                    staging / case_id / f"{case_id}-{modality}.nii.gz",
                    np.round(image).astype(np.int16),
                    affine,
                    description=f"synthetic BraTS-like {modality}",
                )
            phantom.save_nifti(staging / case_id / f"{case_id}-{LABEL_SUFFIX}.nii.gz", labels, affine)
        prepare_brats_datalist(staging, staging / DATALIST_FILENAME)
        (staging / _COMPLETE_MARKER).write_text(
            json.dumps({"num_cases": num_cases, "size": size, "seed": seed, "version": DEMO_GENERATOR_VERSION})
        )
        try:
            if target.exists():
                target.rmdir()  # an empty folder, checked above
            os.rename(staging, target)
        except OSError:
            if not (target / _COMPLETE_MARKER).is_file():  # another process did not win the race either
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def demo_brats_dir(num_cases: int = 24, size: int = 48, seed: int = 0) -> str:
    """Cache folder of the synthetic demo dataset with these settings (see :mod:`nnmamba_nets.common.cache`)."""
    name = f"v{DEMO_GENERATOR_VERSION}-n{num_cases}-size{size}-seed{seed}"
    return os.path.join(demo_data_dir(DEMO_DATASET_NAME), name)


def brats_datalist(
    dataset_dir: str | os.PathLike | None = None,
    datalist: str | os.PathLike | None = None,
    demo_num_cases: int = 24,
    demo_size: int = 48,
    demo_seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    check_cases: bool = False,
) -> dict[str, list[dict]]:
    """The bundles' data source: a given datalist, a BraTS folder, or the synthetic demo dataset.

    Args:
        datalist: datalist JSON with training/validation/test lists; used when given.
        dataset_dir: BraTS 2023 folder, split with ``val_fraction``/``test_fraction``/``split_seed``;
            used when given and ``datalist`` is not.
        demo_num_cases: cases of the demo dataset generated when neither is given. Defaults to 24.
        demo_size: nominal grid size of the demo cases. Defaults to 48.
        demo_seed: seed of the demo dataset. Defaults to 0.
        val_fraction: validation fraction for ``dataset_dir``. Defaults to 0.15.
        test_fraction: test fraction for ``dataset_dir``. Defaults to 0.15.
        split_seed: split seed for ``dataset_dir``. Defaults to 0.
        check_cases: check every case's files (headers, with labels) and raise one error listing all
            bad cases, before any training starts. Defaults to False.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` with absolute paths.
    """
    if datalist:
        splits = load_datalist(datalist)
    elif dataset_dir:
        splits = prepare_brats_datalist(dataset_dir, None, val_fraction, test_fraction, split_seed)
    else:
        demo_dir = demo_brats_dir(demo_num_cases, demo_size, demo_seed)
        generate_synthetic_brats(demo_dir, demo_num_cases, demo_size, demo_seed)
        splits = load_datalist(os.path.join(demo_dir, DATALIST_FILENAME))
    if check_cases:
        require_valid_cases([case for key in DATALIST_KEYS for case in splits[key]])
    return splits


def brats_inference_cases(
    dataset_dir: str | os.PathLike | None = None,
    datalist: str | os.PathLike | None = None,
    split: str = "test",
    demo_num_cases: int = 24,
    demo_size: int = 48,
    demo_seed: int = 0,
) -> list[dict]:
    """Cases to segment: every case folder of ``dataset_dir`` (labels not needed), else one split of a
    datalist, else that split of the synthetic demo dataset.

    Args:
        dataset_dir: BraTS-style folder of ``BraTS-XXX-xxxxx-xxx`` case folders.
        datalist: datalist JSON; ``split`` selects the list.
        split: ``"training"``, ``"validation"`` or ``"test"``. Defaults to ``"test"``.
        demo_num_cases: see :func:`brats_datalist`.
        demo_size: see :func:`brats_datalist`.
        demo_seed: see :func:`brats_datalist`.

    Returns:
        case dicts ``{"case_id", "image": [...]}`` (plus ``label`` where known).
    """
    if dataset_dir:
        return find_brats_cases(dataset_dir, require_label=False)
    if split not in DATALIST_KEYS:
        raise ValueError(f"split must be one of {DATALIST_KEYS}, got {split!r}.")
    return brats_datalist(None, datalist, demo_num_cases, demo_size, demo_seed)[split]


def _prepare_command(
    dataset_dir: str, output_file: str, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> str:
    """Command-line ``prepare``: write the datalist and report the split sizes."""
    splits = prepare_brats_datalist(dataset_dir, output_file, val_fraction, test_fraction, seed)
    return f"wrote {output_file}: " + ", ".join(f"{len(splits[key])} {key}" for key in DATALIST_KEYS)


if __name__ == "__main__":
    import fire

    fire.Fire({"prepare": _prepare_command, "generate": generate_synthetic_brats})
