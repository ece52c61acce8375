"""MONAI Label inference tasks for the three nnMamba bundles.

All three read the bundle's ``configs/inference.yaml`` (network, preprocessing, inferer) and its
``models/model.pt`` through MONAI Label's :class:`BundleInferTask`, and differ in what they return:

* :class:`SegmentationInferTask`: a label volume with BraTS labels (1 NCR, 2 ED, 3 ET) on the grid of
  the input image.
* :class:`ClassificationInferTask`: class names with probabilities, as JSON (no image).
* :class:`LandmarkInferTask`: landmark names and descriptions with RAS world coordinates and confidences as
  JSON (plus a 3D Slicer markups document when the request asks for ``"markups": true``) and a label volume
  that marks each landmark with a small ball (label k + 1 for landmark k).

An input that cannot be read, or that does not have the channels the network expects, raises
:class:`InputImageError`, which the app answers with HTTP 400.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, SaveImaged, SqueezeDimd
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.bundle import BundleInferTask

from nnmamba_nets.classification.transforms import class_probabilities
from nnmamba_nets.common.flags import as_flag
from nnmamba_nets.landmarks.io import Landmarks, write_markups_json
from nnmamba_nets.landmarks.protocol import LandmarkProtocol, MissingProtocolError
from nnmamba_nets.landmarks.transforms import DecodeLandmarksd
from nnmamba_nets.segmentation.io import BRATS_SEGMENTS
from nnmamba_nets.segmentation.transforms import SaveLikeReferenced

from .bundles import BundleOverrides

__all__ = [
    "InputImageError",
    "NNMambaInferTask",
    "SegmentationInferTask",
    "ClassificationInferTask",
    "LandmarkInferTask",
    "mark_landmarks",
]

logger = logging.getLogger(__name__)

MARKUPS_FILE_OPTION = "markups_file"
"""Landmark request option: answer with the markups file (true, the default) or the marks label volume."""
LANDMARKS_KEY = "nnmamba_landmarks"
"""Where the landmark task keeps the decoded :class:`~nnmamba_nets.landmarks.io.Landmarks` of a request."""


class InputImageError(ValueError):
    """The request's image cannot be read or does not fit the model (answered with HTTP 400)."""


def _as_array(value: Any) -> np.ndarray:
    """Plain numpy copy of a tensor, MetaTensor or array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().as_subclass(torch.Tensor).numpy()
    return np.asarray(value)


class NNMambaInferTask(BundleOverrides, BundleInferTask):
    """MONAI Label bundle inference with config overrides and input checks.

    Args:
        path: bundle folder.
        conf: the app's ``--conf`` settings (``preload`` is honoured).
        overrides: config id -> value applied to the bundle's inference config (``--id value``).
        task_type: MONAI Label model type shown by ``/info/``.
        post_filter: transform types dropped from the bundle's postprocessing: the bundle's file savers
            (MONAI Label's writer returns the result instead). Defaults to ``(SaveImaged,)``.
    """

    def __init__(
        self,
        path: str,
        conf: dict[str, str],
        overrides: dict[str, Any] | None = None,
        task_type: str | InferType = InferType.SEGMENTATION,
        post_filter: Sequence[type] = (SaveImaged,),
    ) -> None:
        self.overrides = dict(overrides or {})
        # no Restored step: the bundles' postprocessing inverts their own preprocessing
        super().__init__(
            path, conf, type=task_type, post_filter=list(post_filter), add_post_restore=False, load_strict=True
        )
        if self.valid:
            image_format = self._metadata()["network_data_format"]["inputs"][self.key_image]
            self.input_channels = int(image_format.get("num_channels", 1))
            self.channel_names = list(image_format.get("channel_def", {}).values())

    def _metadata(self) -> dict[str, Any]:
        with open(os.path.join(self.bundle_path, "configs", self.const.metadata_json())) as stream:
            return json.load(stream)

    def run_pre_transforms(self, data: dict[str, Any], transforms: Sequence[Callable]) -> dict[str, Any]:
        """Run the bundle's preprocessing; its first transform reads the file (MONAI bundle convention).

        Raises:
            InputImageError: the file cannot be read, or the preprocessed image has the wrong channel count.
        """
        source = data.get("image_path", data.get("image"))
        try:
            data = super().run_pre_transforms(data, transforms[:1])
        except Exception as error:  # readers raise many types for corrupt or unsupported files
            raise InputImageError(
                f"cannot read image {os.path.basename(str(source))!r}: {type(error).__name__}: {error}. "
                "Expected a NIfTI (.nii/.nii.gz) or another format MONAI's LoadImage reads."
            ) from error
        # MONAI's Spacingd updates every "image_*" entry as a metadata dict, MONAI Label's "image_path" is a str
        image_path = data.pop("image_path", None)
        data = super().run_pre_transforms(data, transforms[1:])
        if image_path is not None:
            data["image_path"] = image_path  # the writer names its output after it
        channels = data[self.key_image].shape[0]
        if channels != self.input_channels:
            names = f" ({', '.join(self.channel_names)})" if self.channel_names else ""
            raise InputImageError(
                f"model {os.path.basename(self.bundle_path)} expects {self.input_channels} image channel(s){names}, "
                f"image {os.path.basename(str(source))!r} has {channels}."
            )
        return data

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        """The bundle's postprocessing (a Compose or a single transform) without the file savers."""
        self._update_device(data)
        for key in self.const.key_postprocessing():
            if self.bundle_config.get(key):
                post = self.bundle_config.get_parsed_content(key, instantiate=True)
                post = list(post.transforms) if isinstance(post, Compose) else [post]
                return self._filter_transforms(post, self.post_filter)
        return []


class SegmentationInferTask(NNMambaInferTask):
    """BraTS segmentation: label volume with 0 background, 1 NCR, 2 ED, 3 ET on the input's grid.

    The bundle's postprocessing does the work (sigmoid, inverting the crop and padding, thresholding,
    TC/WT/ET regions -> labels); only its file saver is dropped, and the channel dim is squeezed.
    """

    def __init__(self, path: str, conf: dict[str, str], overrides: dict[str, Any] | None = None) -> None:
        super().__init__(
            path,
            conf,
            overrides,
            task_type=InferType.SEGMENTATION,
            post_filter=(SaveImaged, SaveLikeReferenced),
        )
        if self.valid:
            self.labels = {segment.name: segment.label for segment in BRATS_SEGMENTS}  # Slicer's segment names

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        return [*super().post_transforms(data), SqueezeDimd(keys=self.output_label_key, dim=0)]


class ClassificationInferTask(NNMambaInferTask):
    """Whole-image classification: ``{"prediction": [{"idx", "label", "score"}], "class", "probabilities"}``.

    The class names are the bundle config's ``class_names``.
    """

    def __init__(self, path: str, conf: dict[str, str], overrides: dict[str, Any] | None = None) -> None:
        super().__init__(path, conf, overrides, task_type=InferType.CLASSIFICATION)
        if self.valid:
            self.class_names = [str(n) for n in self.bundle_config.get_parsed_content("class_names")]
            self.labels = {name: index for index, name in enumerate(self.class_names)}

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[None, dict]:
        """JSON answer from the bundle's postprocessed output (sigmoid of one logit, or softmax)."""
        probabilities = class_probabilities(_as_array(data[self.output_label_key]))
        if len(probabilities) != len(self.class_names):
            raise ValueError(f"classifier gave {len(probabilities)} probabilities for classes {self.class_names}.")
        best = int(np.argmax(probabilities))
        result = {
            "prediction": [
                {"idx": i, "label": name, "score": float(p)}
                for i, (name, p) in enumerate(zip(self.class_names, probabilities))
            ],
            "class": self.class_names[best],
            "probabilities": {name: float(p) for name, p in zip(self.class_names, probabilities)},
        }
        return None, result


def mark_landmarks(
    world_ras: np.ndarray, affine: np.ndarray, spatial_shape: Sequence[int], radius_voxels: float = 1.5
) -> np.ndarray:
    """Label volume marking each landmark with a ball: label k + 1 around landmark k.

    Args:
        world_ras: (k, 3) RAS world coordinates.
        affine: (4, 4) voxel-to-world affine of the output grid.
        spatial_shape: output grid size (3 values).
        radius_voxels: ball radius in voxels of the output grid. Defaults to 1.5.

    Returns:
        uint8 array of ``spatial_shape``; a landmark outside the grid is marked at the nearest voxel,
        and later landmarks win where balls overlap.
    """
    shape = np.asarray(spatial_shape, dtype=np.int64)
    voxels = (np.linalg.inv(affine) @ np.c_[world_ras, np.ones(len(world_ras))].T)[:3].T  # (k, 3)
    reach = int(np.ceil(radius_voxels))
    offsets = np.stack(np.meshgrid(*[np.arange(-reach, reach + 1)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    offsets = offsets[np.linalg.norm(offsets, axis=1) <= radius_voxels]  # (n, 3) ball around 0
    marks = np.zeros(tuple(shape), dtype=np.uint8)
    for index, centre in enumerate(voxels):
        ball = np.clip(np.round(centre), 0, shape - 1).astype(np.int64) + offsets
        ball = ball[((ball >= 0) & (ball < shape)).all(axis=1)]
        marks[tuple(ball.T)] = index + 1
    return marks


def _cause(error: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """The first exception of type ``kind`` in the chain of ``error`` (MONAI wraps errors of config expressions)."""
    while error is not None and not isinstance(error, kind):
        error = error.__cause__ or error.__context__
    return error


class LandmarkInferTask(NNMambaInferTask):
    """Landmark detection: names, descriptions, RAS world coordinates and confidences, and a label volume.

    The landmarks (names in channel order, descriptions) are the bundle config's ``landmark_protocol``: what
    training recorded beside ``models/model.pt`` (or the ``landmark_names`` / ``landmark_descriptions``
    overrides); a bundle with weights but no such record is not served, with a log line saying what to pass.
    The bundle's postprocessing decodes the
    heatmaps (:class:`~nnmamba_nets.landmarks.transforms.DecodeLandmarksd`, i.e.
    :func:`~nnmamba_nets.landmarks.decode.decode_heatmaps` with the affine of the preprocessed image), so the
    coordinates are in the world space of the input file whatever the preprocessing resampled. The label
    volume is drawn on the input file's own grid.
    """

    def __init__(self, path: str, conf: dict[str, str], overrides: dict[str, Any] | None = None) -> None:
        try:  # "segmentation": 3D Slicer lists the model under Auto Segmentation and shows the marks as segments
            super().__init__(path, conf, overrides, task_type=InferType.SEGMENTATION)
        except Exception as error:  # MONAI's config parser wraps the error of the expression that raised it
            missing = _cause(error, MissingProtocolError)
            if missing is None:
                raise
            logger.warning(f"not serving {os.path.basename(path)}: {missing}")
            self.valid = False
            if path in sys.path:  # BundleInferTask adds the bundle folder while it reads the bundle
                sys.path.remove(path)
            return
        if self.valid:
            self.protocol: LandmarkProtocol = self.bundle_config.get_parsed_content("landmark_protocol")
            self.landmark_names = list(self.protocol.names)
            self.labels = {name: index + 1 for index, name in enumerate(self.landmark_names)}
            # a request option (3D Slicer shows it under the model's options): the result file is the markups
            # document, which Slicer's MONAI Label module loads as a point list; false: the marks volume
            self._config.update({MARKUPS_FILE_OPTION: True})

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        post = list(super().post_transforms(data))
        decoders = [t for t in post if isinstance(t, DecodeLandmarksd)]
        if len(decoders) != 1:
            raise ValueError(
                f"{self.bundle_config_path}: postprocessing must contain one DecodeLandmarksd, found {len(decoders)}."
            )
        return [*post, functools.partial(self._to_result, decoder=decoders[0])]

    def _to_result(self, data: dict[str, Any], decoder: DecodeLandmarksd) -> dict[str, Any]:
        """Landmark JSON (and markups when asked) into ``result``; the marks volume into ``pred``."""
        key = self.output_label_key
        world = _as_array(data[f"{key}{decoder.landmark_suffix}"]).astype(np.float64).reshape(-1, 3)
        confidence = _as_array(data[f"{key}{decoder.confidence_suffix}"]).astype(np.float64).reshape(-1)
        if len(world) != len(self.landmark_names):
            raise ValueError(f"network gave {len(world)} landmarks for {len(self.landmark_names)} landmark names.")
        image = data[self.key_image]
        original_affine = np.asarray(image.meta["original_affine"], dtype=np.float64)
        original_shape = [int(s) for s in image.meta["spatial_shape"]][:3]
        data[key] = mark_landmarks(world, original_affine, original_shape)
        data[f"{key}_meta_dict"] = {"affine": original_affine}  # MONAI Label's writer takes the affine from here
        result = {
            "landmarks": [
                {"name": name, "description": text, "position_ras": [float(v) for v in point], "confidence": float(c)}
                for name, text, point, c in zip(self.landmark_names, self.protocol.descriptions, world, confidence)
            ],
            "coordinate_system": "RAS",
            "units": "mm",
        }
        data[LANDMARKS_KEY] = Landmarks(self.landmark_names, world, confidence, self.protocol.descriptions)
        if as_flag(data.get("markups", False), "markups"):
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "landmarks.mrk.json")
                self._write_markups(data, path)
                result["markups"] = json.loads(Path(path).read_text(encoding="utf-8"))
        data[self.output_json_key] = result
        return data

    def _write_markups(self, data: dict[str, Any], path: str) -> None:
        """Write the request's landmarks to ``path`` as a 3D Slicer markups JSON file (LPS, as Slicer writes)."""
        write_markups_json(path, data[LANDMARKS_KEY], markup_name=os.path.basename(self.bundle_path))

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: str | None = None) -> tuple[Any, Any]:
        """The markups file (option ``markups_file``, default true) or MONAI Label's label-volume writer.

        Returns:
            (result file, result JSON); MONAI Label sends the file under its name and deletes it afterwards.
        """
        if not as_flag(data.get(MARKUPS_FILE_OPTION, True), MARKUPS_FILE_OPTION):
            return super().writer(data, extension, dtype)
        image_name = os.path.basename(str(data.get("image_path") or "image")).split(".")[0]
        handle, path = tempfile.mkstemp(prefix=f"{image_name}_", suffix="_landmarks.mrk.json")  # Slicer: a .json
        os.close(handle)
        self._write_markups(data, path)
        return path, data[self.output_json_key]
