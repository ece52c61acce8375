"""Segmentation metrics of the BraTS bundle.

- :class:`BratsHausdorffDistanceMetric`: HD95 with the BraTS rule for empty masks (MONAI returns NaN,
  which its mean then skips, so a model that predicts nothing would score a perfect 0).
- :func:`region_output_transform`: feeds one region channel to a MONAI metric handler, so each region
  gets its own Dice/HD95 entry in the logs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.handlers import from_engine
from monai.metrics import HausdorffDistanceMetric, compute_hausdorff_distance
from monai.metrics.utils import ignore_background

__all__ = ["BratsHausdorffDistanceMetric", "region_output_transform"]


class BratsHausdorffDistanceMetric(HausdorffDistanceMetric):
    """Percentile Hausdorff distance (in voxels) with the BraTS rule for empty masks.

    Per case and channel: 0 when prediction and reference are both empty; the diagonal of the image
    grid when only one of them is empty (BraTS uses 373.13 mm, the diagonal of its 240x240x155 grid);
    otherwise MONAI's :func:`~monai.metrics.compute_hausdorff_distance` (called only for pairs of non-empty
    masks, so MONAI never warns about an empty one).

    Args:
        include_background: whether to score the first channel. Defaults to True (the BraTS regions
            TC, WT, ET have no background channel).
        percentile: distance percentile. Defaults to 95.
        reduction: MONAI metric reduction. Defaults to ``"mean"``.
        get_not_nans: also return the number of values averaged. Defaults to False.
    """

    def __init__(
        self,
        include_background: bool = True,
        percentile: float = 95.0,
        reduction: str = "mean",
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(
            include_background=include_background,
            percentile=percentile,
            reduction=reduction,
            get_not_nans=get_not_nans,
        )

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """
        Args:
            y_pred: binarised prediction (B, C, spatial...).
            y: binarised reference of the same shape.

        Returns:
            (B, C) distances.
        """
        if not self.include_background:
            y_pred, y = ignore_background(y_pred=y_pred, y=y)
        pred_empty = y_pred.flatten(2).sum(-1) == 0  # (b, c)
        reference_empty = y.flatten(2).sum(-1) == 0
        diagonal = float(np.linalg.norm(np.asarray(y.shape[2:], dtype=np.float64)))
        distances = torch.where(pred_empty & reference_empty, 0.0, diagonal).double()  # the BraTS rule
        # MONAI's distance only where both masks have voxels: it would warn about (and return NaN for) the rest
        for b, c in (~pred_empty & ~reference_empty).nonzero().tolist():
            distances[b, c] = compute_hausdorff_distance(
                y_pred[b : b + 1, c : c + 1],
                y[b : b + 1, c : c + 1],
                include_background=True,
                distance_metric=self.distance_metric,
                percentile=self.percentile,
                directed=self.directed,
                **kwargs,
            )[0, 0]
        return distances


def region_output_transform(channel: int, keys: Sequence[str] = ("pred", "label")) -> Callable[[Any], tuple]:
    """Output transform for a MONAI metric handler that keeps one region channel of pred and label.

    Args:
        channel: region index (0 TC, 1 WT, 2 ET in :data:`BRATS_REGIONS` order).
        keys: engine output keys of prediction and ground truth. Defaults to ``("pred", "label")``.

    Returns:
        callable mapping the decollated engine output to ``([pred_i[channel:channel+1]], [label_i[...]])``.

    Example (YAML)::

        val_dice_wt:
          _target_: MeanDice
          output_transform: "$nnmamba_nets.segmentation.metrics.region_output_transform(1)"
    """
    if channel < 0:
        raise ValueError(f"channel must be >= 0, got {channel}.")
    select = from_engine(list(keys))

    def transform(output: Any) -> tuple:
        preds, labels = select(output)
        return [p[channel : channel + 1] for p in preds], [y[channel : channel + 1] for y in labels]

    return transform
