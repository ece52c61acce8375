"""Data for the ADNI-style classification bundle (Alzheimer's disease vs normal cognition).

Two parts:

* A deterministic synthetic T1-weighted brain MRI set with two classes that differ in anatomy, the
  bundle's embedded demo (no download): "AD" subjects have enlarged ventricles, a wider subarachnoid
  space, a thinner cortex and wider sulci; "NC" subjects are normal. Both classes vary in head size
  and shape, ventricle size, pose, tissue contrast, bias field and noise, and a per-subject atrophy
  severity overlaps between the classes, so the task is learnable but not trivial. Some subjects have
  two or three scans (same anatomy, new pose/contrast/noise), so a split by image would leak subjects.
* A preparer from a CSV (image path, label, optional subject id and split) to a MONAI datalist, with
  train/validation/test splits made **by subject**, stratified by label.

The CSV format (header row required; the column names are arguments):

.. code-block:: text

    image,label,subject_id,split
    images/sub-001_scan-0.nii.gz,AD,sub-001,train
    images/sub-001_scan-1.nii.gz,AD,sub-001,train

``label`` is a class name (``class_names``) or a class index; relative image paths are relative to
the CSV's folder; ``subject_id`` defaults to the image path (one scan per subject) and ``split``
(``train``/``training``, ``val``/``validation``, ``test``) is drawn by subject when the column is absent.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import ndtri

from nnmamba_nets.common.cache import demo_data_dir
from nnmamba_nets.common.files import write_text_atomic
from nnmamba_nets.data.phantom import (
    add_rician_noise,
    bias_field,
    random_rotation,
    save_nifti,
    smooth_random_field,
    voxel_affine,
    voxel_coordinates,
)

__all__ = [
    "DEFAULT_CLASS_NAMES",
    "SPLIT_NAMES",
    "SubjectAnatomy",
    "sample_subject",
    "synthesize_scan",
    "ensure_demo_data",
    "read_classification_csv",
    "split_by_subject",
    "check_subject_disjoint",
    "prepare_datalist",
]

DEFAULT_CLASS_NAMES = ("NC", "AD")
# datalist keys, in MONAI's naming, and the spellings accepted in a CSV's split column
SPLIT_NAMES = ("training", "validation", "test")
_SPLIT_ALIASES = {
    "train": "training",
    "training": "training",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "testing": "test",
}
_GENERATOR_VERSION = 2  # bump when the generator's output changes, so old caches are not reused
_MANIFEST = "manifest.json"
_logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# synthetic anatomy
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# the demo dataset
# ---------------------------------------------------------------------------------------------------


def _scans_per_subject(rng: np.random.Generator) -> int:
    """1 scan for about half the subjects, 2 or 3 (follow-up visits) for the others."""
    return int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))


def ensure_demo_data(
    dataset_dir: str | None = None,
    num_subjects: int = 160,
    spatial_size: int = 64,
    val_fraction: float = 0.2,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> str:
    """Generate the synthetic two-class brain MRI set once (deterministic) and return its CSV file.

    The data go to a sub-folder named after the generator settings, so different settings never
    overwrite each other and nothing else in ``dataset_dir`` is touched. A complete folder (its
    manifest lists these settings) is reused as is. Several processes (e.g. DDP ranks) may call this
    at once: files are written through atomic renames and the result is the same.

    Args:
        dataset_dir: parent folder. Defaults to the demo cache
            (:func:`nnmamba_nets.common.cache.demo_data_dir` of ``"adni_demo"``).
        num_subjects: number of subjects, half "NC" and half "AD"; about half of them get 2-3 scans.
            Defaults to 160.
        spatial_size: voxels per side of the cubic images (208 mm field of view). Defaults to 64.
        val_fraction: fraction of subjects in the validation split. Defaults to 0.2.
        test_fraction: fraction of subjects in the test split. Defaults to 0.25.
        seed: seed of the whole set. Defaults to 0.

    Returns:
        path of ``dataset.csv`` with columns image (relative path), label (class name), subject_id
        and split (drawn by subject with :func:`split_by_subject`).
    """
    if num_subjects < 2:
        raise ValueError(f"num_subjects must be at least 2 (one per class), got {num_subjects}.")
    settings = {
        "generator_version": _GENERATOR_VERSION,
        "num_subjects": int(num_subjects),
        "spatial_size": int(spatial_size),
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
        "seed": int(seed),
    }
    name = "synthetic-v{generator_version}_n{num_subjects}_s{spatial_size}"
    name += "_val{val_fraction}_test{test_fraction}_seed{seed}"
    folder = os.path.join(dataset_dir or demo_data_dir("adni_demo"), name.format(**settings))
    csv_file = os.path.join(folder, "dataset.csv")
    manifest_file = os.path.join(folder, _MANIFEST)
    if os.path.isfile(manifest_file) and os.path.isfile(csv_file):
        with open(manifest_file) as stream:
            if json.load(stream).get("settings") == settings:
                return csv_file

    _logger.info(
        "generating the synthetic ADNI-like demo set (%d subjects, %d^3) in %s", num_subjects, spatial_size, folder
    )
    records = []
    subjects = {}
    for subject_index in range(num_subjects):
        subject_rng = np.random.default_rng([seed, subject_index])
        label = subject_index % 2
        subject_id = f"sub-{subject_index:04d}"
        subjects[subject_id] = subject = sample_subject(subject_rng, label)
        for scan_index in range(_scans_per_subject(subject_rng)):
            image, affine = synthesize_scan(
                subject, np.random.default_rng([seed, subject_index, scan_index]), spatial_size
            )
            file_name = f"{subject_id}_scan-{scan_index}.nii.gz"
            tmp_path = os.path.join(folder, "images", f".tmp-{os.getpid()}-{file_name}")
            save_nifti(tmp_path, image, affine, description=f"synthetic ADNI-like {DEFAULT_CLASS_NAMES[label]}")
            os.replace(tmp_path, os.path.join(folder, "images", file_name))
            records.append(
                {"image": f"images/{file_name}", "label": DEFAULT_CLASS_NAMES[label], "subject_id": subject_id}
            )
    splits = split_by_subject(
        [(record["subject_id"], DEFAULT_CLASS_NAMES.index(record["label"])) for record in records],
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    rows = ["image,label,subject_id,split"]
    rows += [f"{r['image']},{r['label']},{r['subject_id']},{splits[r['subject_id']]}" for r in records]
    write_text_atomic(csv_file, "\n".join(rows) + "\n")
    manifest = {
        "settings": settings,
        "class_names": list(DEFAULT_CLASS_NAMES),
        "subjects": {subject_id: asdict(subject) for subject_id, subject in subjects.items()},
    }
    write_text_atomic(manifest_file, json.dumps(manifest, indent=1))
    return csv_file


# ---------------------------------------------------------------------------------------------------
# CSV -> datalist with subject-level splits
# ---------------------------------------------------------------------------------------------------


def _parse_label(value: str, class_names: Sequence[str], where: str) -> int:
    """Class index of a CSV label given as a class name or an index."""
    text = value.strip()
    if text in class_names:
        return list(class_names).index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(class_names):
        return int(text)
    raise ValueError(
        f"{where}: unknown label {value!r}; expected one of the class names {list(class_names)} "
        f"or an index 0..{len(class_names) - 1}."
    )


def read_classification_csv(
    csv_file: str,
    class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
    image_column: str = "image",
    label_column: str = "label",
    subject_column: str = "subject_id",
    split_column: str = "split",
) -> list[dict[str, Any]]:
    """Read and check a classification CSV (see the module docstring for the format).

    Args:
        csv_file: the CSV file (header row required).
        class_names: class names; a label is one of them or its index. Defaults to ("NC", "AD").
        image_column: column of image paths (absolute or relative to the CSV's folder).
        label_column: column of labels.
        subject_column: optional column of subject ids; without it every image is its own subject.
        split_column: optional column assigning rows to train/validation/test.

    Returns:
        one dict per row: ``image`` (absolute path), ``label`` (class index), ``subject_id`` (str)
        and ``split`` (a name of :data:`SPLIT_NAMES`, or None when the CSV has no split column).

    Raises:
        ValueError: the file is missing or empty, a required column is missing, a label or split is
            unknown, an image is listed twice, or image files do not exist (all of them are named).
    """
    if len(class_names) < 2 or len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names must be at least two distinct names, got {list(class_names)}.")
    if not os.path.isfile(csv_file):
        raise ValueError(f"CSV file {csv_file!r} does not exist.")
    base_dir = os.path.dirname(os.path.abspath(csv_file))
    with open(csv_file, newline="") as stream:
        reader = csv.DictReader(stream)
        columns = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in (image_column, label_column) if name not in columns]
        if missing:
            raise ValueError(f"CSV file {csv_file!r} lacks the column(s) {missing}; its header has {columns}.")
        reader.fieldnames = columns
        rows = list(reader)
    if not rows:
        raise ValueError(f"CSV file {csv_file!r} has a header but no rows.")

    records: list[dict[str, Any]] = []
    missing_files: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        where = f"{csv_file}, line {line}"
        image = (row.get(image_column) or "").strip()
        if not image:
            raise ValueError(f"{where}: empty {image_column!r}.")
        path = os.path.normpath(os.path.join(base_dir, image))
        if path in seen:
            raise ValueError(f"{where}: image {image!r} is already listed on line {seen[path]}.")
        seen[path] = line
        if not os.path.isfile(path):
            missing_files.append(f"{image} (line {line})")
        split = None
        if split_column in columns:
            split_text = (row.get(split_column) or "").strip().lower()
            if split_text not in _SPLIT_ALIASES:
                raise ValueError(
                    f"{where}: unknown {split_column!r} value {row.get(split_column)!r}; expected one of "
                    f"{sorted(set(_SPLIT_ALIASES))}."
                )
            split = _SPLIT_ALIASES[split_text]
        subject_id = (row.get(subject_column) or "").strip() if subject_column in columns else ""
        records.append(
            {
                "image": path,
                "label": _parse_label(row.get(label_column) or "", class_names, where),
                "subject_id": subject_id or image,
                "split": split,
            }
        )
    if missing_files:
        shown = ", ".join(missing_files[:20]) + (
            f" and {len(missing_files) - 20} more" if len(missing_files) > 20 else ""
        )
        raise ValueError(f"CSV file {csv_file!r} lists {len(missing_files)} image file(s) that do not exist: {shown}.")
    return records


def split_by_subject(
    subject_labels: Sequence[tuple[str, int]], val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, str]:
    """Assign whole subjects to training/validation/test, stratified by label.

    Args:
        subject_labels: one ``(subject_id, label)`` per scan; a subject's stratum is its most
            frequent label (ties: the lower index), so converters stay in one split.
        val_fraction: fraction of each class's subjects in validation (rounded; at least one from
            each class with 3 or more subjects when > 0). Defaults to 0.2.
        test_fraction: fraction of each class's subjects in test, rounded the same way. Defaults to 0.2.
        seed: seed of the shuffle. Defaults to 0.

    Returns:
        mapping subject_id -> split name ("training", "validation" or "test").

    Raises:
        ValueError: bad fractions, or a requested split would get no subject.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            "val_fraction and test_fraction must be in [0, 1) with a sum below 1, "
            f"got {val_fraction} and {test_fraction}."
        )
    label_counts: dict[str, Counter] = defaultdict(Counter)
    for subject_id, label in subject_labels:
        label_counts[subject_id][int(label)] += 1
    strata: dict[int, list[str]] = defaultdict(list)
    for subject_id in sorted(label_counts):
        counts = label_counts[subject_id]
        strata[max(sorted(counts), key=lambda label: counts[label])].append(subject_id)

    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for label in sorted(strata):
        subjects = [strata[label][index] for index in rng.permutation(len(strata[label]))]
        # at least one subject per requested split from every class with 3 or more subjects
        minimum = 1 if len(subjects) >= 3 else 0
        num_test = max(int(round(len(subjects) * test_fraction)), minimum if test_fraction > 0 else 0)
        num_val = max(int(round(len(subjects) * val_fraction)), minimum if val_fraction > 0 else 0)
        for position, subject_id in enumerate(subjects):
            assignment[subject_id] = (
                "test" if position < num_test else "validation" if position < num_test + num_val else "training"
            )
    sizes = Counter(assignment.values())
    wanted = {"training": True, "validation": val_fraction > 0, "test": test_fraction > 0}
    empty = [split for split, needed in wanted.items() if needed and not sizes[split]]
    if empty:
        raise ValueError(
            f"{len(assignment)} subjects are too few for val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}: the split(s) {empty} would be empty."
        )
    return assignment


def check_subject_disjoint(datalist: dict[str, list[dict[str, Any]]]) -> None:
    """Raise ValueError naming the subjects whose scans appear in more than one split of ``datalist``."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for split, items in datalist.items():
        for item in items:
            splits_of[str(item["subject_id"])].add(split)
    leaking = {subject: sorted(splits) for subject, splits in splits_of.items() if len(splits) > 1}
    if leaking:
        shown = dict(list(sorted(leaking.items()))[:10])
        raise ValueError(f"{len(leaking)} subject(s) have scans in more than one split (subject leakage): {shown}.")


def prepare_datalist(
    csv_file: str,
    class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    output_file: str | None = None,
    image_column: str = "image",
    label_column: str = "label",
    subject_column: str = "subject_id",
    split_column: str = "split",
) -> dict[str, list[dict[str, Any]]]:
    """Turn a classification CSV into a MONAI datalist with subject-level splits.

    A ``split`` column is used as given (and checked for subject leakage); without one, whole
    subjects are drawn into the splits by :func:`split_by_subject`.

    Args:
        csv_file: the CSV file (see :func:`read_classification_csv`).
        class_names: class names. Defaults to ("NC", "AD").
        val_fraction: validation fraction of subjects when the CSV has no split column.
        test_fraction: test fraction of subjects when the CSV has no split column.
        seed: seed of the drawn split.
        output_file: optional JSON file to write the datalist to (a record of the split).
        image_column: column of image paths.
        label_column: column of labels.
        subject_column: column of subject ids (optional in the CSV).
        split_column: column of splits (optional in the CSV).

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, items
        ``{"image": path, "label": class index, "subject_id": str}``.

    Raises:
        ValueError: for any problem of :func:`read_classification_csv`, a subject found in more than
            one split of the CSV's split column, or a split without images.
    """
    records = read_classification_csv(
        csv_file,
        class_names,
        image_column=image_column,
        label_column=label_column,
        subject_column=subject_column,
        split_column=split_column,
    )
    if records[0]["split"] is None:
        assignment = split_by_subject(
            [(record["subject_id"], record["label"]) for record in records], val_fraction, test_fraction, seed
        )
        for record in records:
            record["split"] = assignment[record["subject_id"]]
    datalist: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLIT_NAMES}
    for record in records:
        datalist[record["split"]].append({key: record[key] for key in ("image", "label", "subject_id")})
    check_subject_disjoint(datalist)
    if not datalist["training"]:
        raise ValueError(f"CSV file {csv_file!r} gives no training images.")
    for split, items in datalist.items():
        counts = Counter(class_names[item["label"]] for item in items)
        _logger.info(
            "%s: %d images of %d subjects %s", split, len(items), len({i["subject_id"] for i in items}), dict(counts)
        )
    if output_file:
        write_text_atomic(output_file, json.dumps(datalist, indent=1))
    return datalist


if __name__ == "__main__":
    import fire

    fire.Fire({"prepare": prepare_datalist, "generate": ensure_demo_data})
