"""nnMambaSeg: the nnMamba 3D segmentation network (also the landmark heatmap regressor).

Paper: Gong et al., "nnMamba: 3D Biomedical Image Segmentation, Classification and Landmark
Detection with State Space Model", arXiv 2402.03526 (ISBI 2025). Module names (``in_conv``,
``layer1``..``layer3``, ``att1``..``att3``, ``conv5``..``conv8``) are the reference code's, so its
checkpoints load key for key.

Two variants of the reference code:

* ``variant="css"``: the network of the reference ``nnMamba.py`` (also used by its landmark code): every
  MambaLayer is MICCSS (:class:`~nnmamba_nets.nets.blocks.MambaLayer`: four channel-spatial Siamese views
  averaged, ``nin2``/``norm2`` output block, residual add).
* ``variant="nnunet"``: the network of the reference ``nnunet/network_architecture/nnMamba.py``, built by the
  authors' nnU-Net v1 trainers (``nnUNetTrainerV2_*_mamba``) for their BraTS 2023 results. Its MambaLayer
  (:class:`~nnmamba_nets.nets.blocks.NnUNetMambaLayer`) is single-view with no ``nin2``/``norm2`` and no residual
  add, and it has three deep-supervision heads ``ds1_cls_conv``/``ds2_cls_conv``/``ds3_cls_conv`` (Conv3d kernel
  1 with bias) on the decoder features at 1/2, 1/4 and 1/8 resolution. Everything else is the same. Its
  nnU-Net checkpoints (``model_final_checkpoint.model``) load with :func:`~nnmamba_nets.nets.load_pretrained`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import AttentionLayer, DoubleConv, MambaLayer, NnUNetMambaLayer, check_input_shape, make_res_layer

__all__ = ["HEADS", "VARIANTS", "nnMambaSeg"]

HEADS = ("reference", "logits")
HEAD_SLAB = 32  # full-resolution depth rows the output block computes at a time in inference
VARIANTS = ("css", "nnunet")
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
        variant: ``"css"`` (the reference ``nnMamba.py``) or ``"nnunet"`` (the reference nnU-Net v1 network,
            with its deep-supervision heads); see the module docstring. Defaults to ``"css"``.
        deep_supervision: in training mode, return ``[full resolution, 1/2, 1/4, 1/8]`` outputs (the last three
            from the heads ``ds1_cls_conv``, ``ds2_cls_conv``, ``ds3_cls_conv`` on the decoder features), for
            MONAI's ``DeepSupervisionLoss``; in eval mode the full-resolution output alone (as MONAI's
            ``DynUNet``; nnU-Net v1 switches ``do_ds`` off for inference the same way). The heads are built
            for ``variant="nnunet"`` always (its checkpoints hold them) and for ``"css"`` when this is True.
            The attribute can be changed after construction. Defaults to False.
        mamba: False builds the same network without its Mamba layers (the MICCSS branch of every
            residual block is removed, everything else unchanged): the "no Mamba" ablation. Defaults to True.

    Raises:
        ValueError: unknown ``head`` or ``variant``, or ``channels`` < 16.

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
        variant: str = "css",
        deep_supervision: bool = False,
        mamba: bool = True,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}.")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
        if channels < 16:
            raise ValueError(f"channels must be >= 16 (the skip gates reduce it 16-fold), got {channels}.")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.head = head
        self.variant = variant
        self.deep_supervision = deep_supervision
        self.with_mamba = mamba
        widths = (channels, 2 * channels, 4 * channels, 8 * channels)

        def mamba_layer(dim: int) -> nn.Module | None:
            if not mamba:
                return None
            if variant == "nnunet":
                return NnUNetMambaLayer(dim, backend=backend)
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
        if variant == "nnunet" or deep_supervision:  # on c7 (1/2), c6 (1/4), c5 (1/8)
            self.ds1_cls_conv = nn.Conv3d(widths[0], out_channels, kernel_size=1)
            self.ds2_cls_conv = nn.Conv3d(widths[1], out_channels, kernel_size=1)
            self.ds3_cls_conv = nn.Conv3d(widths[2], out_channels, kernel_size=1)

    def _gated(self, skip: torch.Tensor, gate: AttentionLayer) -> torch.Tensor:
        """Scale the skip features channel-wise by the SE gate of their global average."""
        scale = gate(self.pooling(skip).flatten(1))  # (b, c)
        return skip * scale[:, :, None, None, None]

    def _fuse(self, conv: DoubleConv, deep: torch.Tensor, skip: torch.Tensor, gate: AttentionLayer) -> torch.Tensor:
        """``conv(cat[upsample(deep), gated skip])``: one decoder stage."""
        return conv(torch.cat([self.upsample(deep), self._gated(skip, gate)], dim=1))

    def _head(self, c7: torch.Tensor) -> torch.Tensor:
        """``conv8(upsample(c7))``; in inference, slab by slab along depth.

        The full-resolution ``upsample(c7)`` (``channels`` wide) is the largest tensor of the network: at a
        128^3 window it and the first convolution's working copies take most of the peak memory. Without
        autograd and with BatchNorm in eval mode every part of ``conv8`` is local along depth (convolutions
        with a halo of ``padding`` rows, pointwise BN and ReLU, a trilinear upsampling that reads one input
        row either side), so slabs of :data:`HEAD_SLAB` output rows computed from slightly wider input slabs,
        cropped, give the same output while only one slab is upsampled at a time.

        Args:
            c7: (b, channels, d/2, h/2, w/2), the last decoder features.

        Returns:
            (b, out_channels, d, h, w).
        """
        depth = 2 * c7.shape[2]
        if self.training or torch.is_grad_enabled() or depth <= HEAD_SLAB:
            return self.conv8(self.upsample(c7))
        halo = sum(m.padding[0] for m in self.conv8.modules() if isinstance(m, nn.Conv3d))  # rows each side
        slabs = []
        for start in range(0, depth, HEAD_SLAB):
            stop = min(start + HEAD_SLAB, depth)
            up_start, up_stop = max(0, start - halo), min(depth, stop + halo)  # upsampled rows conv8 reads
            # input rows whose upsampling gives rows up_start..up_stop-1 exactly (one more row either side,
            # so the slab's own edge rows, which clamp, are cropped away)
            in_start, in_stop = max(0, up_start // 2 - 1), min(c7.shape[2], (up_stop - 1) // 2 + 2)
            upsampled = self.upsample(c7[:, :, in_start:in_stop])  # rows 2*in_start .. 2*in_stop-1
            upsampled = upsampled[:, :, up_start - 2 * in_start : up_stop - 2 * in_start]
            slabs.append(self.conv8(upsampled)[:, :, start - up_start : stop - up_start])
        return torch.cat(slabs, dim=2)  # (b, out_channels, d, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Dense prediction.

        Args:
            x: (batch, in_channels, d, h, w), every spatial size divisible by 16.

        Returns:
            (batch, out_channels, d, h, w); with ``deep_supervision`` in training mode the list of that and the
            (batch, out_channels, d / 2**k, h / 2**k, w / 2**k) outputs of the heads, k = 1, 2, 3.

        Raises:
            ValueError: a wrong channel count or a spatial size not divisible by 16; ``deep_supervision`` set on
                a network built without the heads.
        """
        check_input_shape(x, self.in_channels, SIZE_DIVISOR, type(self).__name__)
        supervise = self.deep_supervision and self.training
        if supervise and not hasattr(self, "ds1_cls_conv"):
            raise ValueError(
                "deep_supervision was switched on for a network built without the deep-supervision heads; "
                "build it with deep_supervision=True (or variant='nnunet')."
            )
        c1 = self.in_conv(x)  # (b, c, d/2, h/2, w/2)
        c2 = self.layer1(c1)  # (b, 2c, d/4, ...)
        c3 = self.layer2(c2)  # (b, 4c, d/8, ...)
        c4 = self.layer3(c3)  # (b, 8c, d/16, ...)
        c5 = self._fuse(self.conv5, c4, c3, self.att3)  # (b, 4c, d/8, ...)
        c6 = self._fuse(self.conv6, c5, c2, self.att2)  # (b, 2c, d/4, ...)
        c7 = self._fuse(self.conv7, c6, c1, self.att1)  # (b, c, d/2, ...)
        out = self._head(c7)  # (b, out_channels, d, h, w)
        if not supervise:
            return out
        return [out, self.ds1_cls_conv(c7), self.ds2_cls_conv(c6), self.ds3_cls_conv(c5)]
