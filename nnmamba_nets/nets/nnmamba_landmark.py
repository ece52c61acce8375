"""nnMambaLandmark: nnMambaSeg as a heatmap regressor, one output channel per landmark.

As in the paper (fetal cerebellum landmarks): trained by MSE against Gaussian heatmaps; each
channel is decoded to a coordinate by its argmax (here with an optional sub-voxel refinement).
"""

from __future__ import annotations

import numpy as np
import torch

from ..landmarks.decode import decode_heatmaps
from .nnmamba_seg import nnMambaSeg

__all__ = ["nnMambaLandmark"]


class nnMambaLandmark(nnMambaSeg):
    """nnMambaSeg predicting one heatmap per landmark, with :meth:`decode` to coordinates.

    Args:
        in_channels: input channels. Defaults to 1.
        out_channels: number of landmarks (one heatmap each). Defaults to 6 (the paper's fetal
            cerebellum landmarks).
        channels: width of the first stage (>= 16). Defaults to 32.
        blocks: BasicBlocks per residual stage. Defaults to 3.
        head: ``"reference"`` (non-negative heatmaps through BN + ReLU, as in the paper and its
            checkpoints) or ``"logits"`` (plain last convolution). See :class:`nnMambaSeg`.
            Defaults to ``"reference"``.
        backend: selective-scan backend of the Mamba mixers. Defaults to ``"auto"``.
        batch_views: batch the four Siamese views into one mixer call. Defaults to True.
        variant, deep_supervision, mamba: as for :class:`nnMambaSeg` (the paper's landmark network is the
            default ``"css"`` variant; ``mamba=False`` is the "no Mamba" ablation).

    Examples::

        >>> net = nnMambaLandmark(out_channels=6).eval()
        >>> image = torch.randn(1, 1, 64, 64, 64)
        >>> net.decode(net(image), affine=torch.eye(4))["world"].shape
        torch.Size([1, 6, 3])
    """

    def decode(
        self,
        heatmaps: torch.Tensor | np.ndarray,
        affine: torch.Tensor | np.ndarray | None = None,
        refine: bool = True,
    ) -> dict[str, torch.Tensor | None]:
        """Landmark coordinates from this network's heatmaps (see :func:`~nnmamba_nets.landmarks.decode_heatmaps`).

        Args:
            heatmaps: (batch, out_channels, d, h, w) output of the network.
            affine: optional (4, 4) or (batch, 4, 4) voxel-to-world affine of the input image.
            refine: sub-voxel refinement around the argmax. Defaults to True.

        Returns:
            dict with ``voxel`` (batch, out_channels, 3), ``world`` (same, or None without an
            affine) and ``confidence`` (batch, out_channels).
        """
        if heatmaps.shape[1:2] != (self.out_channels,):
            raise ValueError(
                f"{type(self).__name__} has {self.out_channels} landmarks, got heatmaps of shape "
                f"{tuple(heatmaps.shape)}."
            )
        return decode_heatmaps(heatmaps, affine=affine, refine=refine)
