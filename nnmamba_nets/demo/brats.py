"""A synthetic BraTS-like demo set: four MRI contrasts and tumour labels, written in the BraTS 2023 layout.

Each case is a brain phantom (lobed brain, grey/white matter, ventricles) with a tumour: necrotic core,
enhancing rim and surrounding oedema, tissue-dependent intensities per contrast (ET bright on T1c,
oedema bright on T2-FLAIR), bias field, Rician noise, background exactly 0 (skull-stripped). The set
is deterministic given its settings. :func:`write_demo_set` writes it into a folder (with
``datalist.json``, made by the real-data preparer :func:`nnmamba_nets.segmentation.datalist.prepare_datalist`);
:func:`demo_datalist` builds it once into the demo cache and is what the bundle calls.

Command line::

    python -m nnmamba_nets.demo.brats write /tmp/brats_demo --num_cases 8 --size 64
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from nnmamba_nets.demo import cache, phantom
from nnmamba_nets.segmentation.datalist import LABEL_ED, LABEL_ET, LABEL_NCR, LABEL_SUFFIX, MODALITIES, prepare_datalist

__all__ = ["DEMO_NAME", "demo_datalist", "synthetic_brats_case", "write_demo_set"]

DEMO_NAME = "brats_synthetic"
GENERATOR_VERSION = 1  # bump when the generator's output changes, so old caches are not reused

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


def write_demo_set(folder: str | os.PathLike, num_cases: int = 24, size: int = 48, seed: int = 0) -> str:
    """Write a deterministic synthetic BraTS-like dataset in the BraTS 2023 layout plus ``datalist.json``.

    Each case has its own grid (``size`` +- a few voxels per axis), voxel spacing and LPS-style affine;
    the datalist splits the cases 70 / 15 / 15 % (at least one validation and one test case).

    Args:
        folder: an empty or new folder.
        num_cases: number of cases (>= 3 for the splits). Defaults to 24.
        size: nominal grid size per axis (>= 24). Defaults to 48.
        seed: random seed; the same arguments give the same files. Defaults to 0.

    Returns:
        the path of ``<folder>/datalist.json``.

    Raises:
        ValueError: too few cases or too small a size.
        FileExistsError: ``folder`` exists and is not empty.
    """
    if num_cases < 3:
        raise ValueError(f"num_cases must be >= 3 (training, validation and test), got {num_cases}.")
    if size < 24:
        raise ValueError(f"size must be >= 24 voxels, got {size}.")
    root = Path(folder).expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{str(root)!r} is not empty; the demo set is written into an empty folder only.")
    rng = np.random.default_rng(seed)
    for index in range(num_cases):
        case_id = f"BraTS-GLI-{index:05d}-000"
        shape = tuple(int(s) for s in size + rng.integers(-size // 10, size // 16 + 1, 3))
        spacing = (1.0, 1.0, float(rng.choice([1.0, 1.0, 1.2, 1.5])))
        affine = phantom.voxel_affine(shape, spacing, flip=(True, True, False), centre_world=rng.uniform(-20, 20, 3))
        images, labels = synthetic_brats_case(rng, shape)
        for modality, image in zip(MODALITIES, images):
            phantom.save_nifti(
                root / case_id / f"{case_id}-{modality}.nii.gz",
                np.round(image).astype(np.int16),
                affine,
                description=f"synthetic BraTS-like {modality}",
            )
        phantom.save_nifti(root / case_id / f"{case_id}-{LABEL_SUFFIX}.nii.gz", labels, affine)
    return prepare_datalist(root, root / cache.DATALIST_FILE)


def demo_datalist(num_cases: int = 24, size: int = 48, seed: int = 0) -> str:
    """The datalist JSON of the demo set with these settings, generated once into the demo cache.

    Args:
        num_cases: number of cases. Defaults to 24 (16 training / 4 validation / 4 test).
        size: nominal grid size per axis. Defaults to 48.
        seed: random seed. Defaults to 0.

    Returns:
        the path of the set's ``datalist.json`` (see :func:`nnmamba_nets.demo.cache.demo_datalist`).
    """
    return cache.demo_datalist(
        DEMO_NAME, GENERATOR_VERSION, write_demo_set, num_cases=int(num_cases), size=int(size), seed=int(seed)
    )


if __name__ == "__main__":
    import fire

    fire.Fire({"write": write_demo_set})
