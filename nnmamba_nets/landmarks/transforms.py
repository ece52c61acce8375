"""MONAI dictionary transforms of landmarks: load files into world coordinates, make heatmap targets, decode heatmaps.

Spatial transforms (resampling, orientation, cropping, padding, flips, rotations) change the voxel grid and
update the image's ``affine``; they never move the anatomy in world space. The heatmap target is therefore
made at the end, from the world points and the affine of the *transformed* image (:class:`LandmarkHeatmapd`),
so it always sits on the right voxels, and predictions are decoded back to world coordinates with the affine
of the network input (:class:`DecodeLandmarksd`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from nnmamba_nets.landmarks.coordinates import check_inside, world_to_voxel
from nnmamba_nets.landmarks.decode import decode_heatmaps
from nnmamba_nets.landmarks.heatmap import gaussian_heatmaps
from nnmamba_nets.landmarks.io import read_landmarks

__all__ = ["DecodeLandmarksd", "LandmarkHeatmapd", "LoadLandmarksd", "heatmap_activation"]

ACTIVATIONS = ("none", "softmax")


class LoadLandmarksd(MapTransform):
    """Replace a landmark file path by its (K, 3) float32 RAS world coordinates, in the order of ``names``.

    Reads Slicer markups JSON, ``.fcsv`` and control-point CSV (see :mod:`nnmamba_nets.landmarks.io`), converting
    LPS files to RAS, the convention of image affines read by MONAI's default (nibabel) reader.

    Args:
        keys: keys holding landmark file paths.
        names: landmark names in the model's channel order; each file must hold exactly these.
        allow_missing_keys: don't raise if a key is absent (e.g. inference without ground truth).

    Raises:
        ValueError: naming the file when a landmark is missing, undefined, duplicated or unexpected.
    """

    def __init__(self, keys: KeysCollection, names: Sequence[str], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(names) == 0 or len(set(names)) != len(names):
            raise ValueError(f"names must be non-empty and unique, got {list(names)}.")
        self.names = list(names)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            points = read_landmarks(path).select(self.names, path)
            d[key] = torch.as_tensor(points, dtype=torch.float32)
        return d


def heatmap_activation(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Map network outputs (..., K, d, h, w) to heatmaps.

    Args:
        logits: network output.
        activation: ``"none"`` (outputs already are heatmaps, e.g. trained with MSE) or ``"softmax"`` (a spatial
            softmax per channel: a probability map over voxels, the output of a network trained with
            :class:`~nnmamba_nets.landmarks.losses.HeatmapLoss` ``"softmax_ce"``).

    Returns:
        heatmaps of the same shape.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
    if activation == "none":
        return logits
    spatial = logits.shape[-3:]
    return torch.softmax(logits.flatten(-3), dim=-1).reshape(*logits.shape[:-3], *spatial)


class DecodeLandmarksd(MapTransform):
    """Decode a predicted (K, d, h, w) heatmap into world landmarks and confidences (post-processing).

    The peak is located by :func:`~nnmamba_nets.landmarks.decode.decode_heatmaps` (argmax + sub-voxel refinement)
    and mapped to world (RAS) coordinates with the affine of the network input after all preprocessing (the
    heatmap shares its voxel grid), so no transform needs inverting.

    Confidence: with ``activation="softmax"``, the probability mass within ``confidence_radius`` voxels of the
    peak: low when the probability is spread or split between places; a prediction shaped like a Gaussian
    target of width sigma scores 0.97 with a radius of 3 sigma (0.74 with 2 sigma). With ``"none"``, the heatmap
    value at the peak clipped to [0, 1].

    Args:
        keys: keys of predicted heatmaps (network outputs, channel-first, one sample).
        affine_key: key of the network input image (a ``MetaTensor``) or of its (4, 4) affine; None takes the
            prediction's own ``MetaTensor.affine``. Defaults to ``"image"``.
        activation: ``"softmax"`` or ``"none"``, see :func:`heatmap_activation`. Defaults to ``"softmax"``.
        refine: sub-voxel refinement. Defaults to True.
        confidence_radius: radius (voxels) of the confidence ball for ``"softmax"``, best 3 x the training
            heatmap sigma. Defaults to 4.5.
        landmark_suffix: output key suffix of the (K, 3) world coordinates. Defaults to ``"_landmarks"``.
        confidence_suffix: output key suffix of the (K,) confidences. Defaults to ``"_confidence"``.
        heatmap_suffix: when set, also store the activated heatmaps under ``key + heatmap_suffix`` (e.g. for
            :class:`~nnmamba_nets.landmarks.handlers.LandmarkWriter` to save them as NIfTI). Defaults to None.
    """

    def __init__(
        self,
        keys: KeysCollection,
        affine_key: str | None = "image",
        activation: str = "softmax",
        refine: bool = True,
        confidence_radius: float = 4.5,
        landmark_suffix: str = "_landmarks",
        confidence_suffix: str = "_confidence",
        heatmap_suffix: str | None = None,
    ) -> None:
        super().__init__(keys)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
        if confidence_radius <= 0:
            raise ValueError(f"confidence_radius must be positive, got {confidence_radius}.")
        self.affine_key = affine_key
        self.activation = activation
        self.refine = refine
        self.confidence_radius = confidence_radius
        self.landmark_suffix = landmark_suffix
        self.confidence_suffix = confidence_suffix
        self.heatmap_suffix = heatmap_suffix

    def _mass_near(self, probabilities: torch.Tensor, voxel: torch.Tensor) -> torch.Tensor:
        """(K,) probability mass within ``confidence_radius`` of each (K, 3) voxel point."""
        axes = [torch.arange(s, dtype=torch.float64, device=probabilities.device) for s in probabilities.shape[1:]]
        squared = sum(
            (axis.reshape([-1 if a == i else 1 for a in range(3)])[None] - voxel[:, i].reshape(-1, 1, 1, 1)) ** 2
            for i, axis in enumerate(axes)
        )  # (K, d, h, w)
        return (probabilities.double() * (squared <= self.confidence_radius**2)).flatten(1).sum(1)

    def _affine(self, data: Mapping[Hashable, torch.Tensor], prediction: torch.Tensor, key: Hashable) -> torch.Tensor:
        """The (4, 4) voxel-to-world affine of the prediction's grid."""
        source = prediction if self.affine_key is None else data.get(self.affine_key)
        affine = source.affine if isinstance(source, MetaTensor) else source
        if self.affine_key is None and not isinstance(prediction, MetaTensor):
            raise ValueError(f"{key!r} is no MetaTensor; give affine_key, the key of the input image or its affine.")
        if not isinstance(affine, torch.Tensor) or tuple(affine.shape) != (4, 4):
            found = None if affine is None else tuple(getattr(affine, "shape", ()))
            raise ValueError(f"no (4, 4) affine under {self.affine_key!r} to decode {key!r} (found {found}).")
        return affine.as_subclass(torch.Tensor)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            prediction = d[key]
            if prediction.ndim != 4:
                raise ValueError(f"{key!r} must be one (K, d, h, w) heatmap, got shape {tuple(prediction.shape)}.")
            affine = self._affine(d, prediction, key)
            heatmaps = heatmap_activation(prediction.as_subclass(torch.Tensor).float(), self.activation)
            decoded = decode_heatmaps(heatmaps[None], affine=affine, refine=self.refine)
            voxel = decoded["voxel"][0]
            if self.activation == "softmax":
                confidence = self._mass_near(heatmaps, voxel)
            else:
                confidence = decoded["confidence"][0].double().clamp(0.0, 1.0)
            d[f"{key}{self.landmark_suffix}"] = decoded["world"][0]  # float64 RAS mm
            d[f"{key}{self.confidence_suffix}"] = confidence.float()
            if self.heatmap_suffix is not None:
                d[f"{key}{self.heatmap_suffix}"] = heatmaps
        return d


def _image_source(image: torch.Tensor) -> str:
    if isinstance(image, MetaTensor):
        return str(image.meta.get("filename_or_obj", "image"))
    return "image"


class LandmarkHeatmapd(MapTransform):
    """Gaussian heatmap targets from world landmarks and the (transformed) image's affine.

    Put it after every spatial transform: the heatmap sits where the landmarks are on the image as it is now.

    Args:
        keys: keys of (K, 3) world (RAS) landmark coordinates, e.g. from
            :class:`~nnmamba_nets.landmarks.transforms.LoadLandmarksd`.
        ref_image_key: key of the image (a ``MetaTensor`` whose ``affine`` maps voxels to world).
        heatmap_keys: output keys, one per key. Defaults to ``"<key>_heatmap"``.
        sigma: Gaussian standard deviation in voxels of the image. Defaults to 2.
        voxel_keys: optional output keys for the (K, 3) voxel coordinates. Defaults to None (not stored).
        names: landmark names for error messages. Defaults to indices.
        allow_missing_keys: don't raise if a key is absent.

    Raises:
        ValueError: when a landmark lies outside the image (the message names the image file).
    """

    def __init__(
        self,
        keys: KeysCollection,
        ref_image_key: str = "image",
        heatmap_keys: KeysCollection | None = None,
        sigma: float | Sequence[float] = 2.0,
        voxel_keys: KeysCollection | None = None,
        names: Sequence[str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_image_key = ref_image_key
        self.heatmap_keys = self._per_key(heatmap_keys, "heatmap", "_heatmap")
        self.voxel_keys = self._per_key(voxel_keys, "voxel", None)
        self.sigma = sigma
        self.names = list(names) if names is not None else None

    def _per_key(self, keys: KeysCollection | None, what: str, suffix: str | None) -> list[Hashable | None]:
        if keys is None:
            return [f"{k}{suffix}" if suffix else None for k in self.keys]
        keys = [keys] if isinstance(keys, (str, int)) else list(keys)
        if len(keys) != len(self.keys):
            raise ValueError(f"got {len(keys)} {what} keys for {len(self.keys)} landmark keys.")
        return keys

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        image = d[self.ref_image_key]
        if not isinstance(image, MetaTensor):
            raise TypeError(f"{self.ref_image_key!r} must be a MetaTensor with an affine, got {type(image).__name__}.")
        spatial_shape = tuple(image.shape[1:])
        for key, heatmap_key, voxel_key in self.key_iterator(d, self.heatmap_keys, self.voxel_keys):
            voxels = world_to_voxel(d[key], image.affine)
            check_inside(voxels, spatial_shape, self.names, _image_source(image))
            heatmap = MetaTensor(gaussian_heatmaps(voxels, spatial_shape, self.sigma), affine=image.affine)
            d[heatmap_key] = heatmap
            if voxel_key is not None:
                d[voxel_key] = voxels.to(torch.float32)
        return d
