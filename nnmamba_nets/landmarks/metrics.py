"""Landmark metrics in millimetres: radial error, mean radial error (MRE) and success detection rate (SDR).

Errors are Euclidean distances between predicted and true **world** coordinates, so they are in millimetres
whatever the voxel grid the network saw. :class:`RadialErrorMetric` is a MONAI cumulative metric (distributed-safe);
:func:`landmark_metric_handlers` wraps it into ignite handlers for an evaluator (``val_mre`` as key metric,
per-landmark MRE and SDR at 2 / 2.5 / 3 / 4 mm).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import CumulativeIterationMetric

__all__ = [
    "SDR_THRESHOLDS_MM",
    "RadialErrorMetric",
    "landmark_metric_handlers",
    "radial_errors",
    "summarize_radial_errors",
]

SDR_THRESHOLDS_MM = (2.0, 2.5, 3.0, 4.0)


def radial_errors(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Euclidean distance per landmark.

    Args:
        predicted: (..., K, 3) world coordinates (mm).
        target: (..., K, 3) world coordinates (mm).

    Returns:
        (..., K) float64 distances in mm.
    """
    predicted, target = torch.as_tensor(predicted), torch.as_tensor(target)
    if predicted.shape != target.shape or predicted.shape[-1] != 3:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} must have the same (..., K, 3) shape."
        )
    return torch.linalg.vector_norm(predicted.double() - target.double(), dim=-1)


def summarize_radial_errors(
    errors: torch.Tensor,
    names: Sequence[str],
    thresholds: Sequence[float] = SDR_THRESHOLDS_MM,
    descriptions: Sequence[str] | None = None,
) -> list[dict[str, float | str | int]]:
    """Summary table of an (N cases, K landmarks) radial error matrix: one row per landmark, then ``"all"``.

    Args:
        errors: (N, K) radial errors in mm.
        names: K landmark names.
        thresholds: SDR thresholds in mm. Defaults to 2, 2.5, 3 and 4.
        descriptions: K landmark descriptions. Defaults to None (empty).

    Returns:
        rows with ``landmark``, ``description`` ("" for ``"all"``), ``n``, ``mre_mm``, ``sd_mm``, ``median_mm`` (of an
        even count, the mean of the middle two), ``max_mm`` and ``sdr_<t>mm`` (fraction of errors <= t).

    Raises:
        ValueError: the matrix does not have one column per name, or not one description per name.
    """
    errors = torch.as_tensor(errors, dtype=torch.float64)
    if errors.ndim != 2 or errors.shape[1] != len(names):
        raise ValueError(f"errors must be (cases, {len(names)}) for {len(names)} names, got {tuple(errors.shape)}.")
    descriptions = [""] * len(names) if descriptions is None else list(descriptions)
    if len(descriptions) != len(names):
        raise ValueError(f"got {len(descriptions)} descriptions for {len(names)} landmark names.")
    rows = []
    columns = [*zip(names, descriptions, errors.T), ("all", "", errors.flatten())]
    for name, description, column in columns:
        row: dict[str, float | str | int] = {
            "landmark": name,
            "description": description,
            "n": int(column.numel()),
            "mre_mm": float(column.mean()) if column.numel() else math.nan,
            "sd_mm": float(column.std(unbiased=False)) if column.numel() else math.nan,
            "median_mm": float(column.quantile(0.5)) if column.numel() else math.nan,  # mean of the middle two
            "max_mm": float(column.max()) if column.numel() else math.nan,
        }
        for threshold in thresholds:
            row[f"sdr_{threshold:g}mm"] = float((column <= threshold).double().mean()) if column.numel() else math.nan
        rows.append(row)
    return rows


class RadialErrorMetric(CumulativeIterationMetric):
    """Radial errors (mm) collected over iterations; aggregates to the MRE, one landmark's MRE or an SDR.

    Inputs per iteration: ``y_pred`` and ``y`` of world coordinates, (batch, K, 3) tensors or lists of (K, 3).
    The buffer (``get_buffer()``) holds the (cases, K) error matrix.

    Args:
        landmark_index: aggregate only this landmark (column). Defaults to None (all landmarks).
        sdr_threshold: when set, aggregate to the success detection rate, the fraction of errors <= this many mm,
            instead of the mean. Defaults to None.
    """

    def __init__(self, landmark_index: int | None = None, sdr_threshold: float | None = None) -> None:
        super().__init__()
        if sdr_threshold is not None and sdr_threshold <= 0:
            raise ValueError(f"sdr_threshold must be positive, got {sdr_threshold}.")
        self.landmark_index = landmark_index
        self.sdr_threshold = sdr_threshold

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None:
            raise ValueError("RadialErrorMetric needs the true landmarks y.")
        return radial_errors(y_pred, y)  # (batch, K)

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """The MRE (mm) or SDR (fraction) over all collected cases, as a 0-dim float64 tensor."""
        errors = self.get_buffer()
        if not isinstance(errors, torch.Tensor) or errors.numel() == 0:
            raise ValueError("RadialErrorMetric has no data to aggregate; call it on predictions first.")
        if self.landmark_index is not None:
            if not -errors.shape[1] <= self.landmark_index < errors.shape[1]:
                raise ValueError(f"landmark_index {self.landmark_index} out of range for {errors.shape[1]} landmarks.")
            errors = errors[:, self.landmark_index]
        if self.sdr_threshold is not None:
            return (errors <= self.sdr_threshold).double().mean()
        return errors.double().mean()


def landmark_metric_handlers(
    names: Sequence[str],
    prefix: str = "val_",
    pred_key: str = "pred_landmarks",
    label_key: str = "landmarks",
    thresholds: Sequence[float] = SDR_THRESHOLDS_MM,
    output_transform: Callable | None = None,
    include_mre: bool = True,
) -> dict[str, IgniteMetricHandler]:
    """Ignite metric handlers for an evaluator: ``<prefix>mre``, ``<prefix>mre_<name>`` and ``<prefix>sdr_<t>mm``.

    Use ``<prefix>mre`` as the key metric (lower is better) and pass the others as additional metrics (or build the
    key metric yourself and set ``include_mre=False``). The MRE handler also saves the per-case, per-landmark error
    matrix in ``engine.state.metric_details``.

    Args:
        names: landmark names in channel order.
        prefix: metric name prefix. Defaults to ``"val_"``.
        pred_key: output key of the predicted world coordinates (see ``DecodeLandmarksd``).
            Defaults to ``"pred_landmarks"``.
        label_key: output key of the true world coordinates. Defaults to ``"landmarks"``.
        thresholds: SDR thresholds in mm. Defaults to 2, 2.5, 3 and 4.
        output_transform: overrides ``from_engine([pred_key, label_key])``.
        include_mre: include the overall ``<prefix>mre``. Defaults to True.

    Returns:
        ordered dict name -> handler (``<prefix>mre`` first when included).
    """
    transform = output_transform or from_engine([pred_key, label_key])
    handlers = {}
    if include_mre:
        handlers[f"{prefix}mre"] = IgniteMetricHandler(RadialErrorMetric(), output_transform=transform)
    for index, name in enumerate(names):
        handlers[f"{prefix}mre_{name}"] = IgniteMetricHandler(
            RadialErrorMetric(landmark_index=index), output_transform=transform, save_details=False
        )
    for threshold in thresholds:
        handlers[f"{prefix}sdr_{threshold:g}mm"] = IgniteMetricHandler(
            RadialErrorMetric(sdr_threshold=threshold), output_transform=transform, save_details=False
        )
    return handlers
