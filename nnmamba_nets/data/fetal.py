"""Data for the fetal landmark bundle: a synthetic head-like demo set and a (image, landmarks) -> datalist preparer.

Landmarks (default order, the paper's six fetal cerebellum points; RAS axes x = right, y = anterior, z = superior):

========== ==========================================================================
name       position
========== ==========================================================================
TCD_start  transverse cerebellar diameter, right end (lateral tip of the right hemisphere)
TCD_end    transverse cerebellar diameter, left end (lateral tip of the left hemisphere)
HDV_start  height of the vermis, superior tip
HDV_end    height of the vermis, inferior tip
ADV_start  antero-posterior diameter of the vermis, anterior tip (at the fourth ventricle)
ADV_end    antero-posterior diameter of the vermis, posterior tip
========== ==========================================================================

**Synthetic demo set** (:func:`synthesize_case`, :func:`ensure_demo_dataset`): T2-like fetal heads (skull, extra-axial
CSF, brain, lateral ventricles, eyes, brainstem, cisterna magna, fourth ventricle) with a cerebellum made of two
hemispheres and a darker vermis. Each landmark is the tip of one of these ellipsoids along one of its axes, so it
sits on a definite image feature. Every case draws its own size, shape, cerebellum pose, head pose (rotation up to
15 degrees, shift), anisotropic voxel spacing (1 to 2 mm per axis), oblique grid (rotation up to 20 degrees, random
axis flips), bias field, contrast and noise. Images are NIfTI (RAS affine); landmarks are 3D Slicer markups JSON in
LPS, like files saved by Slicer.

**Your own data** (:func:`prepare_datalist`): pair image files with landmark files (``.mrk.json``, ``.fcsv`` or
Slicer control-point ``.csv``) by case name, check every pair (all landmarks present and inside the image) and
write a MONAI datalist (``training`` / ``validation`` / ``test``). Command line::

    python -m nnmamba_nets.data.fetal prepare_datalist --images DIR --landmarks DIR --output_file datalist.json
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from nnmamba_nets.common.cache import demo_data_dir
from nnmamba_nets.common.files import write_text_atomic
from nnmamba_nets.data.phantom import (
    add_rician_noise,
    bias_field,
    blob_mask,
    random_rotation,
    save_nifti,
    smooth_random_field,
    voxel_affine,
    voxel_coordinates,
)
from nnmamba_nets.landmarks.heatmap import check_inside, world_to_voxel
from nnmamba_nets.landmarks.io import (
    LANDMARK_SUFFIXES,
    Landmarks,
    case_name,
    read_landmarks,
    write_markups_json,
)

__all__ = [
    "DATASET_NAME",
    "LANDMARK_NAMES",
    "SPLIT_NAMES",
    "check_case",
    "ensure_demo_dataset",
    "pair_cases",
    "prepare_datalist",
    "synthesize_case",
]

LANDMARK_NAMES = ("TCD_start", "TCD_end", "HDV_start", "HDV_end", "ADV_start", "ADV_end")
DATASET_NAME = "fetal_landmarks_demo"
SPLIT_NAMES = ("training", "validation", "test")
_NIBABEL_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh")  # images whose header check_case reads
_GENERATOR_VERSION = 1
_MANIFEST = "manifest.json"
_logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# synthetic anatomy
# ---------------------------------------------------------------------------------------------------


def _head_structures(
    rng: np.random.Generator,
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray, float]], np.ndarray]:
    """Ellipsoids of one head in its own frame (mm, RAS axes, origin at the head centre) and its landmarks.

    Returns:
        ``(structures, landmarks)``: structures in painting order as ``(centre, radii, rotation, intensity)``
        (T2-like intensities: fluid bright, vermis dark) and the (6, 3) landmarks in LANDMARK_NAMES order.
    """
    scale = rng.uniform(0.9, 1.1)
    head_radii = np.array([30.0, 36.0, 32.0]) * scale * rng.uniform(0.95, 1.05, 3)
    identity = np.eye(3)
    structures = [
        (np.zeros(3), head_radii, identity, 0.3),  # scalp and skull
        (np.zeros(3), head_radii - 2.5, identity, 0.9),  # extra-axial CSF
        (np.zeros(3), head_radii - 4.5, identity, 0.6),  # brain
    ]
    for side in (-1.0, 1.0):  # lateral ventricles, anterior-superior
        structures.append(
            (np.array([side * 7.0, 5.0, 9.0]) * scale, np.array([3.5, 13.0, 5.0]) * scale, identity, 0.95)
        )
    for side in (-1.0, 1.0):  # eyes, anterior-inferior, just inside the head outline
        structures.append(
            (np.array([side * 14.0, 0.8 * head_radii[1], -12.0 * scale]), np.full(3, 5.0 * scale), identity, 0.95)
        )

    # cerebellum frame: posterior-inferior, its own small rotation
    centre = np.array([0.0, -17.0, -11.0]) * scale + rng.normal(0.0, 1.0, 3)
    rotation = random_rotation(rng, 8.0)

    def place(offset: Sequence[float]) -> np.ndarray:
        return centre + rotation @ np.asarray(offset, dtype=np.float64)

    vermis_radii = np.array([4.0, 7.0, 9.0]) * scale * rng.uniform(0.9, 1.1, 3)
    vermis_centre = place([0.0, 0.0, 0.5 * scale])
    structures += [
        (place([0.0, vermis_radii[1] + 8.0 * scale, -6.0 * scale]), np.array([5.5, 5.5, 13.0]) * scale, rotation, 0.45),
        (place([0.0, -8.0 * scale, -9.0 * scale]), np.array([7.0, 5.0, 4.0]) * scale, rotation, 0.95),  # cisterna magna
        (place([0.0, vermis_radii[1] + 2.0, -1.0]), np.array([2.5, 2.5, 3.5]) * scale, rotation, 0.95),  # 4th ventricle
    ]
    landmarks = []
    for side in (1.0, -1.0):  # right hemisphere (TCD_start), then left (TCD_end)
        offset = 9.5 * scale * rng.uniform(0.95, 1.05)
        radii = np.array([7.0, 7.5, 7.5]) * scale * rng.uniform(0.9, 1.1, 3)
        hemisphere_centre = place([side * offset, -1.0 * scale, 0.0])
        structures.append((hemisphere_centre, radii, rotation, 0.3))
        landmarks.append(hemisphere_centre + rotation @ np.array([side * radii[0], 0.0, 0.0]))
    structures.append((vermis_centre, vermis_radii, rotation, 0.1))
    for axis in (2, 1):  # HDV: superior then inferior tip; ADV: anterior then posterior tip
        for sign in (1.0, -1.0):
            tip = np.zeros(3)
            tip[axis] = sign * vermis_radii[axis]
            landmarks.append(vermis_centre + rotation @ tip)
    return structures, np.asarray(landmarks)


def synthesize_case(
    rng: np.random.Generator,
    field_of_view_mm: float = 100.0,
    spacing_range: tuple[float, float] = (1.0, 2.0),
    max_pose_deg: float = 15.0,
    max_grid_deg: float = 20.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one synthetic fetal head with its six cerebellum landmarks.

    Args:
        rng: random generator of this case.
        field_of_view_mm: extent of the voxel grid along each of its axes. Defaults to 100.
        spacing_range: voxel spacing per axis is drawn uniformly in this range (mm). Defaults to (1, 2).
        max_pose_deg: largest head rotation per axis (degrees). Defaults to 15.
        max_grid_deg: largest rotation of the voxel grid per axis, making the affine oblique. Defaults to 20.

    Returns:
        ``(image, affine, landmarks)``: float32 image, its (4, 4) voxel-to-world RAS affine and the
        (6, 3) RAS world coordinates (mm) of LANDMARK_NAMES.
    """
    structures, local_landmarks = _head_structures(rng)
    pose = random_rotation(rng, max_pose_deg)
    head_centre = rng.uniform(-5.0, 5.0, 3)
    spacing = rng.uniform(*spacing_range, 3)
    shape = tuple(int(np.ceil(field_of_view_mm / s)) for s in spacing)
    affine = voxel_affine(
        shape,
        spacing=spacing,
        flip=rng.random(3) < 0.3,
        rotation=random_rotation(rng, max_grid_deg),
        centre_world=head_centre + rng.uniform(-4.0, 4.0, 3),
    )
    world = np.einsum("ij,j...->i...", affine[:3, :3], voxel_coordinates(shape)) + affine[:3, 3, None, None, None]
    local = np.einsum("ji,j...->i...", pose, world - head_centre[:, None, None, None]).astype(np.float32)  # pose^T

    image = np.full(shape, 0.8, dtype=np.float32)  # amniotic fluid
    brain_texture = smooth_random_field(shape, rng, sigma=2.0)
    for index, (centre, radii, rotation, intensity) in enumerate(structures):
        mask = blob_mask(local, centre, radii, rotation)
        image[mask] = intensity
        if index == 2:  # brain parenchyma: mild texture
            image[mask] += 0.04 * brain_texture[mask]
    image = ndimage.gaussian_filter(image, sigma=0.6)  # point spread: partial-volume edges
    image = image ** rng.uniform(0.8, 1.25) * bias_field(shape, rng, strength=rng.uniform(0.05, 0.2))
    image = add_rician_noise(image, rng, sigma=rng.uniform(0.015, 0.04)) * rng.uniform(300.0, 1000.0)
    landmarks = (pose @ local_landmarks.T).T + head_centre
    return image.astype(np.float32), affine, landmarks


def ensure_demo_dataset(
    dataset_dir: str | None = None,
    num_training: int = 48,
    num_validation: int = 8,
    num_test: int = 16,
    seed: int = 0,
) -> str:
    """Generate the synthetic fetal landmark set once (deterministic) and return its datalist file.

    Data go to a sub-folder named after the settings, so other settings never overwrite it and nothing
    else in ``dataset_dir`` is touched; a complete folder (its manifest lists these settings) is reused.
    Files are written through atomic renames, so concurrent callers (DDP ranks) are safe.

    Args:
        dataset_dir: parent folder. Defaults to the demo cache
            (:func:`nnmamba_nets.common.cache.demo_data_dir` of ``"fetal_landmarks_demo"``).
        num_training: training cases. Defaults to 48.
        num_validation: validation cases. Defaults to 8.
        num_test: test cases. Defaults to 16.
        seed: seed of the whole set; case ``i`` uses ``numpy.random.default_rng([seed, i])``. Defaults to 0.

    Returns:
        path of ``datalist.json`` with keys training / validation / test, items
        ``{"image": "images/case_0000.nii.gz", "landmarks": "landmarks/case_0000.mrk.json"}`` relative to it.
    """
    counts = {"training": num_training, "validation": num_validation, "test": num_test}
    if num_training < 1 or num_validation < 0 or num_test < 0:
        raise ValueError(f"need at least one training case and non-negative split sizes, got {counts}.")
    settings = {"generator_version": _GENERATOR_VERSION, **{k: int(v) for k, v in counts.items()}, "seed": int(seed)}
    name = "synthetic-v{generator_version}_train{training}_val{validation}_test{test}_seed{seed}".format(**settings)
    folder = Path(dataset_dir or demo_data_dir(DATASET_NAME)) / name
    datalist_file, manifest_file = folder / "datalist.json", folder / _MANIFEST
    complete = manifest_file.is_file() and datalist_file.is_file()
    if complete and json.loads(manifest_file.read_text()).get("settings") == settings:
        return str(datalist_file)

    _logger.info("generating the synthetic fetal landmark demo set (%s) in %s", counts, folder)
    datalist: dict[str, list[dict[str, str]]] = {split: [] for split in SPLIT_NAMES}
    index = 0
    for split in SPLIT_NAMES:
        for _ in range(counts[split]):
            image, affine, landmarks = synthesize_case(np.random.default_rng([seed, index]))
            case = f"case_{index:04d}"
            image_file, landmark_file = f"images/{case}.nii.gz", f"landmarks/{case}.mrk.json"
            tmp_image = folder / "images" / f".tmp-{os.getpid()}-{case}.nii.gz"
            save_nifti(tmp_image, image, affine, description="synthetic fetal head (nnmamba_nets)")
            os.replace(tmp_image, folder / image_file)
            tmp_landmarks = folder / "landmarks" / f".tmp-{os.getpid()}-{case}.mrk.json"
            write_markups_json(tmp_landmarks, Landmarks(list(LANDMARK_NAMES), landmarks), coordinate_system="LPS")
            os.replace(tmp_landmarks, folder / landmark_file)
            datalist[split].append({"image": image_file, "landmarks": landmark_file})
            index += 1
    write_text_atomic(datalist_file, json.dumps(datalist, indent=1))
    write_text_atomic(
        manifest_file, json.dumps({"settings": settings, "landmark_names": list(LANDMARK_NAMES)}, indent=1)
    )
    return str(datalist_file)


# ---------------------------------------------------------------------------------------------------
# (image, landmarks) pairs -> datalist
# ---------------------------------------------------------------------------------------------------


def _list_files(
    source: str | os.PathLike | Sequence[str | os.PathLike], suffixes: Sequence[str], what: str
) -> list[str]:
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        files = sorted(
            str(p) for p in Path(source).iterdir() if p.is_file() and p.name.lower().endswith(tuple(suffixes))
        )
        if not files:
            raise ValueError(f"{what} folder {source} holds no file ending in {list(suffixes)}.")
        return files
    files = [str(source)] if isinstance(source, (str, os.PathLike)) else [str(p) for p in source]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise ValueError(f"{what}: files not found: {missing}.")
    return files


def pair_cases(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    landmarks: str | os.PathLike | Sequence[str | os.PathLike],
) -> list[tuple[str, str]]:
    """Match image files with landmark files by case name (file name without extension).

    Args:
        images: a folder of images or a list of image files.
        landmarks: a folder of landmark files or a list of them.

    Returns:
        sorted ``(image, landmarks)`` path pairs.

    Raises:
        ValueError: images without landmarks, landmarks without images, or two files of one case.
    """
    image_files = _list_files(images, _NIBABEL_SUFFIXES, "images")
    landmark_files = _list_files(landmarks, LANDMARK_SUFFIXES, "landmarks")
    by_case: dict[str, dict[str, str]] = {}
    for kind, files in (("image", image_files), ("landmarks", landmark_files)):
        for path in files:
            entry = by_case.setdefault(case_name(path), {})
            if kind in entry:
                raise ValueError(f"two {kind} files for case {case_name(path)!r}: {entry[kind]} and {path}.")
            entry[kind] = path
    unpaired = {case: next(iter(entry.values())) for case, entry in by_case.items() if len(entry) != 2}
    if unpaired:
        raise ValueError(
            f"files without a matching image or landmark file (paired by name): {sorted(unpaired.values())}."
        )
    return [(entry["image"], entry["landmarks"]) for _, entry in sorted(by_case.items())]


def check_case(
    image_file: str | os.PathLike, landmark_file: str | os.PathLike, names: Sequence[str] = LANDMARK_NAMES
) -> None:
    """Check that ``landmark_file`` has exactly ``names``, all defined and inside the image (header only).

    Raises:
        ValueError: naming the file and the problem (missing, extra or duplicated landmark, landmark outside
            the image, unreadable file).
    """
    points = read_landmarks(landmark_file).select(names, landmark_file)
    try:
        header_image = nib.load(os.fspath(image_file))
    except Exception as error:  # nibabel raises several types for unreadable files
        raise ValueError(f"{image_file}: cannot read the image header ({error}).") from error
    check_inside(
        world_to_voxel(points, header_image.affine),
        header_image.shape[:3],
        names,
        source=f"{landmark_file} on image {image_file}",
    )


def _relative(path: str, base: Path) -> str:
    try:
        return os.path.relpath(os.path.abspath(path), base)
    except ValueError:  # another drive on Windows
        return os.path.abspath(path)


def prepare_datalist(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    landmarks: str | os.PathLike | Sequence[str | os.PathLike],
    output_file: str | os.PathLike,
    names: Sequence[str] = LANDMARK_NAMES,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict[str, Any]:
    """Pair images with landmark files, check every pair, split the cases and write a MONAI datalist.

    Every pair is checked with :func:`check_case`; all problems are reported together (one ValueError
    listing each bad file) and nothing is written, so a bad case never slips into training silently.

    Args:
        images: folder of images (NIfTI/MGH) or a list of image files.
        landmarks: folder of landmark files (``.mrk.json``, ``.fcsv``, ``.csv``) or a list of them.
        output_file: the datalist JSON to write; paths in it are relative to its folder.
        names: landmark names expected in every file, in the model's channel order. Defaults to LANDMARK_NAMES.
        val_fraction: fraction of cases for validation. Defaults to 0.15.
        test_fraction: fraction of cases for testing. Defaults to 0.15.
        seed: seed of the case shuffle. Defaults to 0.

    Returns:
        the datalist ``{"training": [...], "validation": [...], "test": [...], "landmark_names": [...]}``.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction and test_fraction must be in [0, 1) with a sum below 1, got {val_fraction}, {test_fraction}."
        )
    pairs = pair_cases(images, landmarks)
    problems = []
    for image_file, landmark_file in pairs:
        try:
            check_case(image_file, landmark_file, names)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueError(f"{len(problems)} of {len(pairs)} cases are invalid:\n" + "\n".join(problems))
    order = np.random.default_rng(seed).permutation(len(pairs))
    num_val, num_test = round(val_fraction * len(pairs)), round(test_fraction * len(pairs))
    if len(pairs) - num_val - num_test < 1:
        raise ValueError(f"{len(pairs)} cases leave no training case with these fractions.")
    split_of = {}
    for rank, index in enumerate(order):
        split_of[index] = "validation" if rank < num_val else "test" if rank < num_val + num_test else "training"
    base = Path(os.path.abspath(output_file)).parent
    datalist: dict[str, Any] = {split: [] for split in SPLIT_NAMES}
    for index, (image_file, landmark_file) in enumerate(pairs):
        datalist[split_of[index]].append(
            {"image": _relative(image_file, base), "landmarks": _relative(landmark_file, base)}
        )
    datalist["landmark_names"] = list(names)
    write_text_atomic(output_file, json.dumps(datalist, indent=1))
    _logger.info("wrote %s: %s", output_file, {split: len(datalist[split]) for split in SPLIT_NAMES})
    return datalist


if __name__ == "__main__":
    import fire

    fire.Fire({"prepare_datalist": prepare_datalist, "ensure_demo_dataset": ensure_demo_dataset})
