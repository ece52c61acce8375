"""Heatmap losses for landmark detection."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HEATMAP_LOSSES", "HeatmapLoss"]

HEATMAP_LOSSES = ("softmax_ce", "mse")


class HeatmapLoss(nn.Module):
    """Loss between predicted and target heatmaps, (batch, K, d, h, w) each.

    Kinds:

    - ``"softmax_ce"`` (default): each output channel is read as logits of a distribution over voxels (spatial
      softmax) and compared with the target heatmap normalised to sum 1, by the Kullback-Leibler divergence
      (cross-entropy minus the target's entropy, so a perfect prediction scores 0). Every voxel gets a gradient
      that pushes probability towards the landmark from the first step (with MSE on sparse 3D heatmaps the early
      gradient mostly pushes the background to zero), and its optimum is the target Gaussian, whose peak the
      log-parabola refinement of
      :func:`~nnmamba_nets.landmarks.decode.decode_heatmaps` locates to sub-voxel precision. Decode with
      ``DecodeLandmarksd(activation="softmax")``.
    - ``"mse"``: the paper's loss, mean squared error against the target heatmaps multiplied by ``target_scale``
      (the paper used 255). Decode with ``DecodeLandmarksd(activation="none")``.

    Args:
        kind: ``"softmax_ce"`` or ``"mse"``. Defaults to ``"softmax_ce"``.
        target_scale: multiplier of the targets for ``"mse"``. Defaults to 1.
    """

    def __init__(self, kind: str = "softmax_ce", target_scale: float = 1.0) -> None:
        super().__init__()
        if kind not in HEATMAP_LOSSES:
            raise ValueError(f"kind must be one of {HEATMAP_LOSSES}, got {kind!r}.")
        self.kind = kind
        self.target_scale = float(target_scale)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over batch and landmarks.

        Args:
            prediction: (batch, K, d, h, w) network output.
            target: (batch, K, d, h, w) non-negative heatmaps (e.g. from ``LandmarkHeatmapd``).

        Returns:
            scalar loss.
        """
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape.")
        if self.kind == "mse":
            return torch.mean((prediction - self.target_scale * target) ** 2)
        log_probability = torch.log_softmax(prediction.flatten(2).float(), dim=-1)  # (b, k, l)
        mass = target.flatten(2).float().clamp(min=0)
        total = mass.sum(-1, keepdim=True)
        if bool((total <= 0).any()):
            raise ValueError("every target heatmap channel needs positive mass (is a landmark outside the image?).")
        distribution = mass / total
        entropy = torch.special.entr(distribution).sum(-1)  # -sum p log p, 0 log 0 = 0
        cross_entropy = -(distribution * log_probability).sum(-1)
        return (cross_entropy - entropy).mean()
