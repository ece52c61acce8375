"""A synthetic ADNI-like demo set: 3D T1-weighted brain MRI of two classes, Alzheimer's disease (AD) and normal (NC).

"AD" subjects have enlarged ventricles, a wider subarachnoid space, a thinner cortex and wider sulci;
"NC" subjects are normal. Both classes vary in head size and shape, ventricle size, pose, tissue
contrast, bias field and noise, and a per-subject atrophy severity overlaps between the classes, so
the task is learnable but not trivial. About half the subjects have two or three scans (same anatomy,
new pose/contrast/noise), so a split by image would leak subjects: the set's ``dataset.csv`` assigns
whole subjects to the splits, and its ``datalist.json`` is made by the real-data preparer
:func:`nnmamba_nets.classification.datalist.prepare_datalist`. :func:`demo_datalist` builds the set once
into the demo cache and is what the bundle calls.

Command line::

    python -m nnmamba_nets.demo.adni write /tmp/adni_demo --num_subjects 40 --image_size 32
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.special import ndtri

from nnmamba_nets.classification.datalist import CSV_NAME, DEFAULT_CLASS_NAMES, prepare_datalist, split_by_subject
from nnmamba_nets.common.files import write_text_atomic
from nnmamba_nets.demo import cache
from nnmamba_nets.demo.phantom import (
    add_rician_noise,
    bias_field,
    random_rotation,
    save_nifti,
    smooth_random_field,
    voxel_affine,
    voxel_coordinates,
)

__all__ = ["DEMO_NAME", "SubjectAnatomy", "demo_datalist", "sample_subject", "synthesize_scan", "write_demo_set"]

DEMO_NAME = "adni_synthetic"
GENERATOR_VERSION = 2  # bump when the generator's output changes, so old caches are not reused
VAL_FRACTION, TEST_FRACTION = 0.2, 0.25  # the demo set's subject-level split
_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubjectAnatomy:
    """Anatomy of one synthetic subject, in millimetres of its own (canonical) head frame.

    ``severity`` in [0, 1] drives all atrophy effects; the AD class draws higher severities than NC,
    with overlap. ``field_seed`` seeds the subject's cortical folding pattern, fixed across scans.
    """

    label: int
    severity: float
    head_axes: tuple[float, float, float]
    scalp_mm: float
    skull_mm: float
    csf_gap_mm: float
    cortex_mm: float
    sulcal_fraction: float
    ventricle_scale: float
    ventricle_offset_mm: float
    field_seed: int


def sample_subject(rng: np.random.Generator, label: int) -> SubjectAnatomy:
    """Draw one subject's anatomy.

    Args:
        rng: random generator of this subject.
        label: 0 for "NC" (normal), 1 for "AD" (atrophy).

    Returns:
        the subject's anatomy.
    """
    if label not in (0, 1):
        raise ValueError(f"label must be 0 (NC) or 1 (AD), got {label!r}.")
    mean_severity = 0.25 if label == 0 else 0.75
    severity = float(np.clip(rng.normal(mean_severity, 0.15), 0.0, 1.0))
    head_scale = rng.uniform(0.9, 1.08)
    head_axes = tuple(float(a * head_scale * rng.uniform(0.95, 1.05)) for a in (68.0, 86.0, 72.0))
    return SubjectAnatomy(
        label=label,
        severity=severity,
        head_axes=head_axes,  # type: ignore[arg-type]
        scalp_mm=float(rng.uniform(4.0, 6.0)),
        skull_mm=float(rng.uniform(5.0, 7.0)),
        csf_gap_mm=float(1.5 + 6.0 * severity + rng.normal(0.0, 0.5)),
        cortex_mm=float(8.0 - 4.0 * severity + rng.normal(0.0, 0.5)),
        sulcal_fraction=float(np.clip(0.08 + 0.3 * severity + rng.normal(0.0, 0.04), 0.02, 0.5)),
        ventricle_scale=float(head_scale * (0.8 + 1.4 * severity) * rng.uniform(0.9, 1.1)),
        ventricle_offset_mm=float(rng.uniform(-3.0, 3.0)),
        field_seed=int(rng.integers(2**31)),
    )


def _soft_step(signed_mm: np.ndarray, width_mm: float = 0.8) -> np.ndarray:
    """Partial-volume indicator: ~1 where ``signed_mm`` > 0, ~0 below, a smooth ramp in between."""
    return 0.5 * (1.0 + np.tanh(signed_mm * np.float32(1.0 / width_mm)))


def _ellipsoid_depth(points: np.ndarray, centre: Sequence[float], axes: Sequence[float]) -> np.ndarray:
    """Approximate depth in mm inside an ellipsoid (negative outside) of points (n, 3) in mm."""
    radius = np.linalg.norm((points - np.asarray(centre, np.float32)) / np.asarray(axes, np.float32), axis=1)
    return (1.0 - radius) * float(np.mean(axes))


class _SubjectFields:
    """A subject's smooth random fields on a fixed grid of its head frame, sampled at points in mm.

    The fields (cortical folding patterns) depend only on the subject's seed, so every scan of the
    subject shows the same folds, whatever its pose.
    """

    extent_mm = 110.0
    step_mm = 2.5

    def __init__(self, seed: int, sigmas_mm: Sequence[float]) -> None:
        rng = np.random.default_rng(seed)
        shape = (int(2 * self.extent_mm / self.step_mm) + 1,) * 3
        self.fields = [smooth_random_field(shape, rng, sigma=sigma / self.step_mm) for sigma in sigmas_mm]

    @staticmethod
    @lru_cache(maxsize=2)
    def of_subject(seed: int) -> _SubjectFields:
        """The fields of the subject seeded ``seed`` (kept while its scans are rendered)."""
        return _SubjectFields(seed, sigmas_mm=(12.0, 4.0, 4.0))

    def sample(self, index: int, points: np.ndarray) -> np.ndarray:
        """Field ``index`` at ``points`` (n, 3) in mm of the head frame; returns (n,)."""
        grid_coords = ((points + self.extent_mm) / self.step_mm).T  # (3, n)
        return ndimage.map_coordinates(self.fields[index], grid_coords, order=1, mode="nearest")


def synthesize_scan(
    subject: SubjectAnatomy, rng: np.random.Generator, spatial_size: int = 64, fov_mm: float = 208.0
) -> tuple[np.ndarray, np.ndarray]:
    """Render one T1-weighted-like scan of ``subject`` with a random pose, contrast, bias and noise.

    Args:
        subject: the subject's anatomy (shared by all its scans).
        rng: random generator of this scan (pose, contrast, bias field, noise).
        spatial_size: voxels per side of the cubic output. Defaults to 64.
        fov_mm: field of view per side in mm. Defaults to 208.

    Returns:
        ``(image, affine)``: float32 image (spatial_size,) * 3 in RAS voxel order with arbitrary
        scanner units, and its 4x4 voxel-to-world (mm) affine.
    """
    if spatial_size < 8:
        raise ValueError(f"spatial_size must be at least 8 voxels, got {spatial_size}.")
    shape = (spatial_size,) * 3
    spacing = fov_mm / spatial_size
    affine = voxel_affine(shape, spacing=(spacing,) * 3)
    world = affine[:3, :3] @ voxel_coordinates(shape).reshape(3, -1) + affine[:3, 3:]  # (3, n) mm
    # pose: world = rotation @ head + translation, so head = rotation^T (world - translation)
    rotation = random_rotation(rng, max_angle_deg=10.0)
    head = np.ascontiguousarray((rotation.T @ (world - rng.uniform(-6.0, 6.0, size=(3, 1)))).T, dtype=np.float32)
    fields = _SubjectFields.of_subject(subject.field_seed)
    gyri, folding, sulcal_field = (fields.sample(index, head) for index in range(3))

    depth = _ellipsoid_depth(head, (0.0, 0.0, 0.0), subject.head_axes)
    skull_outer = depth - subject.scalp_mm
    skull_inner = skull_outer - subject.skull_mm
    brain_surface = skull_inner - subject.csf_gap_mm - 1.5 * gyri
    white_matter = brain_surface - subject.cortex_mm - 2.0 * gyri - 1.5 * folding
    # sulci: CSF where a fine random field exceeds the quantile that leaves `sulcal_fraction` as CSF
    sulci = _soft_step(sulcal_field - float(ndtri(1.0 - subject.sulcal_fraction)), width_mm=0.15)
    ventricle_axes = np.array([7.0, 22.0, 9.0]) * subject.ventricle_scale
    ventricle_x = 5.0 + 0.4 * ventricle_axes[0]
    ventricles = np.maximum(
        *(
            _ellipsoid_depth(head, (side * ventricle_x, subject.ventricle_offset_mm, 8.0), ventricle_axes)
            for side in (-1, 1)
        )
    )
    deep_grey = np.maximum(*(_ellipsoid_depth(head, (side * 20.0, -4.0, -2.0), (8.0, 14.0, 9.0)) for side in (-1, 1)))

    # tissue intensities of this scan (T1-like: WM > GM > CSF), painted from the outside in
    grey = rng.uniform(0.45, 0.62)
    csf = rng.uniform(0.08, 0.25)
    layers = (
        (_soft_step(depth), rng.uniform(0.6, 0.9)),  # scalp
        (_soft_step(skull_outer), rng.uniform(0.05, 0.15)),  # skull
        (_soft_step(skull_inner), csf),  # subarachnoid CSF
        (_soft_step(brain_surface) * (1.0 - sulci), grey),  # cortex, CSF in the sulci
        (_soft_step(white_matter), 1.0),
        (_soft_step(deep_grey), grey),
        (_soft_step(ventricles), csf),
    )
    image = np.zeros(len(head), dtype=np.float32)
    for weight, value in layers:
        image += (value - image) * weight
    image = image.reshape(shape) ** rng.uniform(0.8, 1.25)  # contrast (gamma)

    # acquisition: multiplicative bias field, Rician noise, arbitrary scanner scale
    image = image * bias_field(shape, rng, strength=rng.uniform(0.1, 0.3))
    image = add_rician_noise(image, rng, sigma=rng.uniform(0.02, 0.06)) * rng.uniform(200.0, 1000.0)
    return image.astype(np.float32), affine


def _scans_per_subject(rng: np.random.Generator) -> int:
    """1 scan for about half the subjects, 2 or 3 (follow-up visits) for the others."""
    return int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))


def write_demo_set(folder: str | os.PathLike, num_subjects: int = 160, image_size: int = 64, seed: int = 0) -> str:
    """Write the synthetic two-class set: ``images/``, ``dataset.csv``, ``datalist.json``, ``subjects.json``.

    Args:
        folder: an empty or new folder.
        num_subjects: number of subjects, half "NC" and half "AD"; about half of them get 2-3 scans.
            Defaults to 160.
        image_size: voxels per side of the cubic images (208 mm field of view). Defaults to 64.
        seed: seed of the whole set. Defaults to 0.

    Returns:
        the path of ``<folder>/datalist.json``.

    Raises:
        ValueError: fewer than two subjects.
        FileExistsError: ``folder`` exists and is not empty.
    """
    if num_subjects < 2:
        raise ValueError(f"num_subjects must be at least 2 (one per class), got {num_subjects}.")
    root = Path(folder).expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{str(root)!r} is not empty; the demo set is written into an empty folder only.")
    _logger.info(
        "generating the synthetic ADNI-like demo set (%d subjects, %d^3) in %s", num_subjects, image_size, root
    )
    records, subjects = [], {}
    for subject_index in range(num_subjects):
        subject_rng = np.random.default_rng([seed, subject_index])
        label = subject_index % 2
        subject_id = f"sub-{subject_index:04d}"
        subjects[subject_id] = subject = sample_subject(subject_rng, label)
        for scan_index in range(_scans_per_subject(subject_rng)):
            image, affine = synthesize_scan(
                subject, np.random.default_rng([seed, subject_index, scan_index]), image_size
            )
            file_name = f"images/{subject_id}_scan-{scan_index}.nii.gz"
            save_nifti(root / file_name, image, affine, description=f"synthetic ADNI-like {DEFAULT_CLASS_NAMES[label]}")
            records.append({"image": file_name, "label": DEFAULT_CLASS_NAMES[label], "subject_id": subject_id})
    splits = split_by_subject(
        [(record["subject_id"], DEFAULT_CLASS_NAMES.index(record["label"])) for record in records],
        val_fraction=VAL_FRACTION,
        test_fraction=TEST_FRACTION,
        seed=seed,
    )
    rows = ["image,label,subject_id,split"]
    rows += [f"{r['image']},{r['label']},{r['subject_id']},{splits[r['subject_id']]}" for r in records]
    write_text_atomic(root / CSV_NAME, "\n".join(rows) + "\n")
    anatomy = {subject_id: asdict(subject) for subject_id, subject in subjects.items()}
    write_text_atomic(root / "subjects.json", json.dumps(anatomy, indent=1) + "\n")
    return prepare_datalist(root, root / cache.DATALIST_FILE, class_names=DEFAULT_CLASS_NAMES)


def demo_datalist(num_subjects: int = 160, image_size: int = 64, seed: int = 0) -> str:
    """The datalist JSON of the demo set with these settings, generated once into the demo cache.

    Args:
        num_subjects: number of subjects. Defaults to 160.
        image_size: voxels per side of the images. Defaults to 64.
        seed: seed of the set. Defaults to 0.

    Returns:
        the path of the set's ``datalist.json`` (see :func:`nnmamba_nets.demo.cache.demo_datalist`).
    """
    return cache.demo_datalist(
        DEMO_NAME,
        GENERATOR_VERSION,
        write_demo_set,
        num_subjects=int(num_subjects),
        image_size=int(image_size),
        seed=int(seed),
    )


if __name__ == "__main__":
    import fire

    fire.Fire({"write": write_demo_set})
