"""nnMambaEncoder: the nnMamba 3D classification network.

Paper: Gong et al., "nnMamba: 3D Biomedical Image Segmentation, Classification and Landmark
Detection with State Space Model", arXiv 2402.03526 (ISBI 2025). Module names (``in_conv``,
``mamba_layer_stem``, ``layer1``..``layer3``, ``mamba_seq``, ``mlp``) are the reference code's, so
its checkpoints load key for key.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import DoubleConv, MambaLayer, MambaSeq, check_input_shape, make_res_layer

__all__ = ["nnMambaEncoder"]

# Tokens of width 2c taken from the pooled features of layer1, layer2, layer3 (2c, 4c, 8c channels).
_SEQ_TOKENS = (1, 2, 4)


class nnMambaEncoder(nn.Module):
    """nnMamba for classification: a residual encoder with a single-view Mamba stem and an MLP on
    the pooled features of the last three stages.

    ``in_conv`` (1/2, c channels); ``c1 + mamba_layer_stem(c1)`` (single-view MambaLayer,
    ``d_state=8``); ``layer1..3`` (residual stages to 2c, 4c, 8c, no Mamba); global average pools
    of the three stages concatenated (14c features); ``mlp`` = Linear(14c, c), ReLU, Dropout(0.5),
    Linear(c, out_channels).

    Args:
        in_channels: input channels. Defaults to 1.
        out_channels: number of logits. Defaults to 1.
        channels: width c of the first stage. Defaults to 32.
        blocks: BasicBlocks per residual stage. Defaults to 3.
        mamba_seq: add the hierarchical sequence head of the earlier published variant: the pooled
            features are read as 7 tokens of width 2c (1 from layer1, 2 from layer2, 4 from
            layer3, laid out as the reference code does: pooled layer k is viewed as
            (2c, tokens), token t holding channels t, t + tokens, ...), mixed by
            ``MambaSeq(2c, d_state=8, d_conv=2)`` and added residually before the MLP. Defaults to False.
        backend: selective-scan backend of the Mamba mixers (see :class:`nnmamba_nets.ssm.Mamba`).
            Defaults to ``"auto"``.
        mamba: False builds the same network without its Mamba layer (``mamba_layer_stem`` removed:
            ``c1`` goes straight to ``layer1``), the "no Mamba" ablation. Defaults to True.

    Raises:
        ValueError: ``mamba_seq`` without ``mamba`` (the sequence head is a Mamba layer too).

    Examples::

        >>> net = nnMambaEncoder(in_channels=1, out_channels=2)
        >>> net(torch.randn(2, 1, 64, 64, 64)).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 32,
        blocks: int = 3,
        mamba_seq: bool = False,
        backend: str | None = "auto",
        mamba: bool = True,
    ) -> None:
        super().__init__()
        if mamba_seq and not mamba:
            raise ValueError("mamba_seq=True needs mamba=True: the sequence head is a Mamba layer.")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.token_width = 2 * channels
        self.in_conv = DoubleConv(in_channels, channels, stride=2)
        self.mamba_layer_stem = (
            MambaLayer(channels, d_state=8, d_conv=4, expand=2, views=1, backend=backend) if mamba else None
        )
        self.layer1 = make_res_layer(channels, 2 * channels, blocks, stride=2)
        self.layer2 = make_res_layer(2 * channels, 4 * channels, blocks, stride=2)
        self.layer3 = make_res_layer(4 * channels, 8 * channels, blocks, stride=2)
        self.pooling = nn.AdaptiveAvgPool3d(1)
        self.mamba_seq = (
            MambaSeq(self.token_width, d_state=8, d_conv=2, expand=2, backend=backend) if mamba_seq else None
        )
        self.mlp = nn.Sequential(
            nn.Linear(14 * channels, channels), nn.ReLU(), nn.Dropout(0.5), nn.Linear(channels, out_channels)
        )

    def _sequence_features(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        """Mix the pooled stage features as 7 tokens with ``mamba_seq``; (b, 14c) -> (b, 14c)."""
        batch = pooled[0].shape[0]
        tokens = torch.cat(
            [p.reshape(batch, self.token_width, n) for p, n in zip(pooled, _SEQ_TOKENS)], dim=2
        )  # (b, 2c, 7)
        return (self.mamba_seq(tokens) + tokens).reshape(batch, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify.

        Args:
            x: (batch, in_channels, d, h, w), any spatial size.

        Returns:
            (batch, out_channels) logits.
        """
        check_input_shape(x, self.in_channels, name=type(self).__name__)
        c1 = self.in_conv(x)
        if self.mamba_layer_stem is not None:
            c1 = self.mamba_layer_stem(c1) + c1
        c2 = self.layer1(c1)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        pooled = [self.pooling(c).flatten(1) for c in (c2, c3, c4)]  # (b, 2c), (b, 4c), (b, 8c)
        if self.mamba_seq is None:
            features = torch.cat(pooled, dim=1)  # (b, 14c)
        else:
            features = self._sequence_features(pooled)
        return self.mlp(features)
