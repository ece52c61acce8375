"""A synthetic fetal-head demo set with the paper's six cerebellum landmarks, as NIfTI images and Slicer markups.

Landmarks (channel order, as labels of the Slicer files; their descriptions are the positions below,
:data:`LANDMARK_DESCRIPTIONS`; RAS axes x = right, y = anterior, z = superior):

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

T2-like fetal heads (skull, extra-axial CSF, brain, lateral ventricles, eyes, brainstem, cisterna magna,
fourth ventricle) with a cerebellum made of two hemispheres and a darker vermis. Each landmark is the tip
of one of these ellipsoids along one of its axes, so it sits on a definite image feature. Every case
draws its own size, shape, cerebellum pose, head pose (rotation up to 15 degrees, shift), anisotropic
voxel spacing (1 to 2 mm per axis), oblique grid (rotation up to 20 degrees, random axis flips), bias
field, contrast and noise. Images are NIfTI (RAS affine) in ``images/``; landmarks are 3D Slicer markups
JSON in LPS with names and descriptions, like files saved by Slicer, in ``landmarks/`` (the layout
:func:`nnmamba_nets.landmarks.datalist.prepare_datalist` reads). :func:`demo_datalist` builds the set once
into the demo cache and is what the bundle calls.

Command line::

    python -m nnmamba_nets.demo.fetal write /tmp/fetal_demo --num_training 8 --num_validation 2 --num_test 2
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from nnmamba_nets.common.datalists import SPLITS, write_datalist
from nnmamba_nets.demo import cache
from nnmamba_nets.demo.phantom import (
    add_rician_noise,
    bias_field,
    blob_mask,
    random_rotation,
    save_nifti,
    smooth_random_field,
    voxel_affine,
    voxel_coordinates,
)
from nnmamba_nets.landmarks.datalist import PATH_KEYS
from nnmamba_nets.landmarks.io import Landmarks, write_markups_json
from nnmamba_nets.landmarks.protocol import LandmarkProtocol

__all__ = [
    "DEMO_NAME",
    "LANDMARK_DESCRIPTIONS",
    "LANDMARK_NAMES",
    "PROTOCOL",
    "demo_datalist",
    "synthesize_case",
    "write_demo_set",
]

LANDMARK_NAMES = ("TCD_start", "TCD_end", "HDV_start", "HDV_end", "ADV_start", "ADV_end")
LANDMARK_DESCRIPTIONS = (
    "transverse cerebellar diameter, right end",
    "transverse cerebellar diameter, left end",
    "height of the vermis, superior tip",
    "height of the vermis, inferior tip",
    "antero-posterior diameter of the vermis, anterior tip",
    "antero-posterior diameter of the vermis, posterior tip",
)
PROTOCOL = LandmarkProtocol(LANDMARK_NAMES, LANDMARK_DESCRIPTIONS, "the fetal demo set")
DEMO_NAME = "fetal_landmarks_synthetic"
GENERATOR_VERSION = 2  # bump when the generator's output changes, so old caches are not reused
_logger = logging.getLogger(__name__)


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


def write_demo_set(
    folder: str | os.PathLike, num_training: int = 48, num_validation: int = 8, num_test: int = 16, seed: int = 0
) -> str:
    """Write the synthetic fetal landmark set: ``images/``, ``landmarks/`` and ``datalist.json``.

    Cases are numbered through the splits in order (training first); case ``i`` uses
    ``numpy.random.default_rng([seed, i])``.

    Args:
        folder: an empty or new folder.
        num_training: training cases. Defaults to 48.
        num_validation: validation cases. Defaults to 8.
        num_test: test cases. Defaults to 16.
        seed: seed of the whole set. Defaults to 0.

    Returns:
        the path of ``<folder>/datalist.json`` (items ``{"image", "landmarks"}``, and the protocol:
        ``landmark_names`` and ``landmark_descriptions``).

    Raises:
        ValueError: no training case or a negative split size.
        FileExistsError: ``folder`` exists and is not empty.
    """
    counts = {"training": num_training, "validation": num_validation, "test": num_test}
    if num_training < 1 or num_validation < 0 or num_test < 0:
        raise ValueError(f"need at least one training case and non-negative split sizes, got {counts}.")
    root = Path(folder).expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{str(root)!r} is not empty; the demo set is written into an empty folder only.")
    _logger.info("generating the synthetic fetal landmark demo set (%s) in %s", counts, root)
    splits: dict[str, list[dict[str, str]]] = {split: [] for split in SPLITS}
    index = 0
    for split in SPLITS:
        for _ in range(counts[split]):
            image, affine, landmarks = synthesize_case(np.random.default_rng([seed, index]))
            case = f"case_{index:04d}"
            image_file, landmark_file = root / "images" / f"{case}.nii.gz", root / "landmarks" / f"{case}.mrk.json"
            save_nifti(image_file, image, affine, description="synthetic fetal head (nnmamba_nets)")
            points = Landmarks(PROTOCOL.names, landmarks, descriptions=PROTOCOL.descriptions)
            write_markups_json(landmark_file, points, coordinate_system="LPS")
            splits[split].append({"image": str(image_file), "landmarks": str(landmark_file)})
            index += 1
    return write_datalist(root / cache.DATALIST_FILE, {**PROTOCOL.to_dict(), **splits}, path_keys=PATH_KEYS)


def demo_datalist(num_training: int = 48, num_validation: int = 8, num_test: int = 16, seed: int = 0) -> str:
    """The datalist JSON of the demo set with these settings, generated once into the demo cache.

    Args:
        num_training: training cases. Defaults to 48.
        num_validation: validation cases. Defaults to 8.
        num_test: test cases. Defaults to 16.
        seed: seed of the set. Defaults to 0.

    Returns:
        the path of the set's ``datalist.json`` (see :func:`nnmamba_nets.demo.cache.demo_datalist`).
    """
    return cache.demo_datalist(
        DEMO_NAME,
        GENERATOR_VERSION,
        write_demo_set,
        num_training=int(num_training),
        num_validation=int(num_validation),
        num_test=int(num_test),
        seed=int(seed),
    )


if __name__ == "__main__":
    import fire

    fire.Fire({"write": write_demo_set})
