"""nnMambaSeg: the nnMamba 3D segmentation network (also the landmark heatmap regressor).

Paper: Gong et al., "nnMamba: 3D Biomedical Image Segmentation, Classification and Landmark
Detection with State Space Model", arXiv 2402.03526 (ISBI 2025). Module names (``in_conv``,
``layer1``..``layer3``, ``att1``..``att3``, ``conv5``..``conv8``) are the reference code's, so its
checkpoints load key for key.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import AttentionLayer, DoubleConv, MambaLayer, check_input_shape, make_res_layer

__all__ = ["HEADS", "nnMambaSeg"]

HEADS = ("reference", "logits")
# Four stride-2 stages: every spatial size must be a multiple of 2**4.
SIZE_DIVISOR = 16


class nnMambaSeg(nn.Module):
    """nnMamba for dense prediction: residual encoder with shared MICCSS Mamba layers, gated skips,
    and a U-Net style decoder; the output has the input's spatial size.

    Encoder: ``in_conv`` (1/2, ``channels``), ``layer1..3`` (1/4, 1/8, 1/16; 2, 4, 8 x ``channels``),
    each a residual stage whose blocks 1..blocks-1 share one :class:`MambaLayer`. Skips are scaled
    by the SE gates ``att1..3``; ``conv5..7`` fuse them with the upsampled deeper features and
    ``conv8`` is the head at full resolution.

    Args:
        in_channels: input channels. Defaults to 1.
        out_channels: output channels (classes, or landmarks for heatmaps). Defaults to 6.
        channels: width of the first stage (>= 16, the gates reduce it 16-fold). Defaults to 32.
        blocks: BasicBlocks per residual stage. Defaults to 3.
        head: the output block ``conv8``:

            - ``"reference"``: a DoubleConv ending in BatchNorm + ReLU, as in the reference code.
              Outputs are never negative. Use it to load reference checkpoints (strict) and
              for heatmap regression as in the paper.
            - ``"logits"``: the same DoubleConv without the final BatchNorm + ReLU, so outputs are
              plain logits. Use it to train new segmentation models: a softmax over non-negative
              logits is biased, and ``sigmoid`` of a non-negative logit is never below 0.5, so
              a sigmoid (multi-label) head with the reference block cannot predict background.

            Defaults to ``"reference"``.
        backend: selective-scan backend of the Mamba mixers (``"auto"``, ``"cuda"``, ``"triton"``,
            ``"cpu"``, ``"torch"``, ``"ref"``; None reads ``NNMAMBA_SCAN_BACKEND``). Defaults to ``"auto"``.
        batch_views: run the four Siamese views of each MambaLayer as one batched mixer call
            (faster); False runs four calls as the reference does (lower peak memory). Same
            results. Defaults to True.

    Raises:
        ValueError: unknown ``head`` or ``channels`` < 16.

    Examples::

        >>> net = nnMambaSeg(in_channels=4, out_channels=3, head="logits")
        >>> net(torch.randn(1, 4, 64, 64, 64)).shape
        torch.Size([1, 3, 64, 64, 64])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 6,
        channels: int = 32,
        blocks: int = 3,
        head: str = "reference",
        backend: str | None = "auto",
        batch_views: bool = True,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}.")
        if channels < 16:
            raise ValueError(f"channels must be >= 16 (the skip gates reduce it 16-fold), got {channels}.")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.head = head
        widths = (channels, 2 * channels, 4 * channels, 8 * channels)

        def mamba_layer(dim: int) -> MambaLayer:
            return MambaLayer(dim, views=4, batch_views=batch_views, backend=backend)

        # Registration order follows the reference so that state_dict keys come in the same order.
        self.in_conv = DoubleConv(in_channels, widths[0], stride=2)
        self.pooling = nn.AdaptiveAvgPool3d(1)
        self.att1 = AttentionLayer(widths[0])
        self.layer1 = make_res_layer(widths[0], widths[1], blocks, stride=2, mamba_layer=mamba_layer(widths[1]))
        self.att2 = AttentionLayer(widths[1])
        self.layer2 = make_res_layer(widths[1], widths[2], blocks, stride=2, mamba_layer=mamba_layer(widths[2]))
        self.att3 = AttentionLayer(widths[2])
        self.layer3 = make_res_layer(widths[2], widths[3], blocks, stride=2, mamba_layer=mamba_layer(widths[3]))
        self.upsample = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.conv5 = DoubleConv(widths[3] + widths[2], widths[2])
        self.conv6 = DoubleConv(widths[2] + widths[1], widths[1])
        self.conv7 = DoubleConv(widths[1] + widths[0], widths[0])
        self.conv8 = DoubleConv(widths[0], out_channels, output_norm_act=head == "reference")

    def _gated(self, skip: torch.Tensor, gate: AttentionLayer) -> torch.Tensor:
        """Scale the skip features channel-wise by the SE gate of their global average."""
        scale = gate(self.pooling(skip).flatten(1))  # (b, c)
        return skip * scale[:, :, None, None, None]

    def _fuse(self, conv: DoubleConv, deep: torch.Tensor, skip: torch.Tensor, gate: AttentionLayer) -> torch.Tensor:
        """``conv(cat[upsample(deep), gated skip])``: one decoder stage."""
        return conv(torch.cat([self.upsample(deep), self._gated(skip, gate)], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense prediction.

        Args:
            x: (batch, in_channels, d, h, w), every spatial size divisible by 16.

        Returns:
            (batch, out_channels, d, h, w).
        """
        check_input_shape(x, self.in_channels, SIZE_DIVISOR, type(self).__name__)
        c1 = self.in_conv(x)  # (b, c, d/2, h/2, w/2)
        c2 = self.layer1(c1)  # (b, 2c, d/4, ...)
        c3 = self.layer2(c2)  # (b, 4c, d/8, ...)
        c4 = self.layer3(c3)  # (b, 8c, d/16, ...)
        c5 = self._fuse(self.conv5, c4, c3, self.att3)  # (b, 4c, d/8, ...)
        c6 = self._fuse(self.conv6, c5, c2, self.att2)  # (b, 2c, d/4, ...)
        c7 = self._fuse(self.conv7, c6, c1, self.att1)  # (b, c, d/2, ...)
        return self.conv8(self.upsample(c7))  # (b, out_channels, d, h, w)
