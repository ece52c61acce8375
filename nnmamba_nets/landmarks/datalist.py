"""Landmark data: pair images with 3D Slicer landmark files, check every pair, and write a MONAI datalist.

A bundle's ``dataset_dir`` holds ``images/`` (NIfTI/MGH) and ``landmarks/`` (``.mrk.json``, ``.fcsv`` or
Slicer control-point ``.csv``), paired by case name (the file name without its extension), the layout
of the synthetic demo set (:mod:`nnmamba_nets.demo.fetal`). :func:`prepare_datalist` checks every pair
(all landmarks present and inside the image) and writes ``training`` / ``validation`` / ``test`` lists
of ``{"image", "landmarks"}``, with the landmark protocol: the labels in channel order (``landmark_names``) and
their descriptions (``landmark_descriptions``), as the files give them
(:class:`~nnmamba_nets.landmarks.protocol.LandmarkProtocol`). Files whose labels are numbers and whose
descriptions are the anatomical names (the AFIDs protocol) work as they are.

Command line::

    python -m nnmamba_nets.landmarks.datalist prepare --images DIR --landmarks DIR --output_file datalist.json
    python -m nnmamba_nets.landmarks.datalist prepare --dataset_dir DIR --output_file datalist.json \
        [--names "['1', '2', ...]"] [--descriptions "['AC', 'PC', ...]"]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib

from nnmamba_nets.common.datalists import SPLITS, split_indices, write_datalist
from nnmamba_nets.landmarks.coordinates import check_inside, world_to_voxel
from nnmamba_nets.landmarks.io import LANDMARK_SUFFIXES, Landmarks, case_name, read_landmarks
from nnmamba_nets.landmarks.protocol import LandmarkProtocol

__all__ = ["PATH_KEYS", "check_case", "pair_cases", "prepare_datalist"]

PATH_KEYS = ("image", "landmarks")
"""The path keys of a landmark datalist item."""
_NIBABEL_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh")  # images whose header check_case reads
_logger = logging.getLogger(__name__)


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


def check_case(image_file: str | os.PathLike, landmark_file: str | os.PathLike, names: Sequence[str]) -> Landmarks:
    """Check that ``landmark_file`` has exactly ``names``, all defined and inside the image (header only).

    Returns:
        the landmarks read from ``landmark_file``.

    Raises:
        ValueError: naming the file and the problem (missing, extra or duplicated landmark, landmark outside
            the image, unreadable file).
    """
    landmarks = read_landmarks(landmark_file)
    points = landmarks.select(names, landmark_file)
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
    return landmarks


def _record_descriptions(landmarks: Landmarks, source: str | os.PathLike, recorded: dict[str, tuple[str, str]]) -> None:
    """Add the non-empty descriptions of ``landmarks`` to ``recorded`` (label -> (description, where from)).

    Raises:
        ValueError: naming ``source`` and the other file when a label's description differs from the recorded one.
    """
    conflicts = []
    for name, description in zip(landmarks.names, landmarks.descriptions):
        if not description:
            continue
        known, origin = recorded.setdefault(name, (description, os.fspath(source)))
        if known != description:
            conflicts.append(f"landmark {name!r} is described as {description!r}, {origin} has {known!r}")
    if conflicts:
        raise ValueError(f"{source}: " + "; ".join(conflicts) + ".")


def prepare_datalist(
    dataset_dir: str | os.PathLike | None,
    output_file: str | os.PathLike,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    names: Sequence[str] | None = None,
    images: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    landmarks: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    descriptions: Sequence[str] | None = None,
) -> str:
    """Pair images with landmark files, check every pair, split the cases and write a MONAI datalist.

    Every pair is checked with :func:`check_case`, and a label must have the same description in every file
    that gives one; all problems are reported together (one ValueError listing each bad file) and nothing is
    written, so a bad case never slips into training silently. The datalist records the protocol
    (``landmark_names``, ``landmark_descriptions``: each label's description, "" where no file gives one).

    Args:
        dataset_dir: folder with ``images/`` and ``landmarks/`` sub-folders; may be None when ``images``
            and ``landmarks`` are given.
        output_file: the datalist JSON to write; paths in it are relative to its folder.
        val_fraction: fraction of cases for validation. Defaults to 0.15.
        test_fraction: fraction of cases for testing. Defaults to 0.15.
        seed: seed of the case shuffle (:func:`~nnmamba_nets.common.datalists.split_indices`). Defaults to 0.
        names: landmark names expected in every file, in the model's channel order. Defaults to None:
            the labels of the first landmark file (by case name), in its order.
        images: folder of images or a list of image files, instead of ``<dataset_dir>/images``.
        landmarks: folder of landmark files or a list of them, instead of ``<dataset_dir>/landmarks``.
        descriptions: one description per name to record; files that describe a label must agree with it.
            Defaults to None: the descriptions the files give.

    Returns:
        the absolute path of ``output_file``.

    Raises:
        ValueError: no images or landmarks given, unpaired files, ``descriptions`` not one per name, or invalid
            cases (all listed: other landmark labels than the expected ones, duplicated or undefined labels,
            landmarks outside the image, descriptions that disagree).
    """
    if images is None or landmarks is None:
        if dataset_dir is None:
            raise ValueError("give dataset_dir (with images/ and landmarks/) or both images and landmarks.")
        images = Path(dataset_dir) / "images" if images is None else images
        landmarks = Path(dataset_dir) / "landmarks" if landmarks is None else landmarks
    pairs = pair_cases(images, landmarks)
    reference = "the given names" if names is not None else pairs[0][1]
    names = list(names) if names is not None else read_landmarks(pairs[0][1]).names
    if descriptions is not None and len(descriptions) != len(names):
        raise ValueError(f"got {len(descriptions)} descriptions for the {len(names)} landmark names {names}.")
    recorded = {name: (str(d), "the given descriptions") for name, d in zip(names, descriptions or []) if d}
    problems = []
    for image_file, landmark_file in pairs:
        try:
            _record_descriptions(check_case(image_file, landmark_file, names), landmark_file, recorded)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueError(
            f"{len(problems)} of {len(pairs)} cases are invalid (every landmark file must hold the labels {names} "
            f"of {reference}, each once, defined, inside its image, and describe a label as the other files do):\n"
            + "\n".join(problems)
        )
    protocol = LandmarkProtocol(names, [recorded.get(name, ("",))[0] for name in names], str(reference))
    positions = split_indices(len(pairs), val_fraction, test_fraction, seed)
    splits = {split: [{"image": pairs[i][0], "landmarks": pairs[i][1]} for i in positions[split]] for split in SPLITS}
    written = write_datalist(output_file, {**protocol.to_dict(), **splits}, path_keys=PATH_KEYS)
    _logger.info("wrote %s: %s", written, {split: len(splits[split]) for split in SPLITS})
    return written


def _prepare_command(
    output_file: str,
    dataset_dir: str | None = None,
    images: str | None = None,
    landmarks: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    names: Sequence[str] | None = None,
    descriptions: Sequence[str] | None = None,
) -> str:
    """Command-line ``prepare``: write the datalist and say where."""
    written = prepare_datalist(
        dataset_dir, output_file, val_fraction, test_fraction, seed, names, images, landmarks, descriptions
    )
    return f"wrote {written}"


if __name__ == "__main__":
    import fire

    fire.Fire({"prepare": _prepare_command})
