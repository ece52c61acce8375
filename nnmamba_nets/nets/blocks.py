"""Building blocks of the nnMamba networks.

Paper: Gong et al., "nnMamba: 3D Biomedical Image Segmentation, Classification and Landmark
Detection with State Space Model", arXiv 2402.03526 (ISBI 2025).

Module attribute names (``conv``, ``nin``, ``nin2``, ``norm``, ``norm2``, ``mamba``, ``layer1``,
``layer2``, ``bn1``, ...) are the reference code's, because they are the state_dict keys of
checkpoints trained with it; keep them fixed. Shape letters in comments: b, c, d, h, w, and
l = d * h * w tokens.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..ssm import Mamba

__all__ = [
    "AttentionLayer",
    "BasicBlock",
    "DoubleConv",
    "MambaLayer",
    "MambaSeq",
    "NnUNetMambaLayer",
    "check_input_shape",
    "conv1x1",
    "conv3x3",
    "make_res_layer",
]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    """3x3x3 convolution, padding 1, no bias."""
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    """1x1x1 convolution, no bias."""
    return nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class DoubleConv(nn.Module):
    """Two convolutions with BatchNorm and ReLU: ``conv-BN-ReLU-conv-BN-ReLU`` in ``self.conv``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first convolution. Defaults to 1.
        kernel_size: kernel of the first convolution (the second is 3). Defaults to 3.
        output_norm_act: end with BN + ReLU (the reference block). ``False`` drops them, so the
            block ends in the second convolution and gives unbounded outputs (a logits head);
            ``self.conv`` then holds ``[conv, BN, ReLU, conv]``. Defaults to True.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        kernel_size: int = 3,
        output_norm_act: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1),
        ]
        if output_norm_act:
            layers += [nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, in_channels, d, h, w) -> (b, out_channels, d', h', w')."""
        return self.conv(x)


class AttentionLayer(nn.Module):
    """Squeeze-and-excitation gate scaling the skip connections (reference name ``Attentionlayer``).

    ``sigmoid(layer2(relu(layer1(v))))`` on a pooled feature vector ``v``.

    Args:
        dim: feature width.
        r: reduction ratio; the hidden width is ``dim // r``. Defaults to 16.

    Raises:
        ValueError: ``dim // r`` is 0 (the gate would have no hidden units).
    """

    def __init__(self, dim: int, r: int = 16) -> None:
        super().__init__()
        if r < 1 or dim // r < 1:
            raise ValueError(f"AttentionLayer needs dim >= r >= 1 (hidden width dim // r), got dim={dim}, r={r}.")
        self.layer1 = nn.Linear(dim, dim // r)
        self.layer2 = nn.Linear(dim // r, dim)
        self.relu = nn.ReLU()

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """(b, dim) pooled features -> (b, dim) gates in (0, 1)."""
        return torch.sigmoid(self.layer2(self.relu(self.layer1(v))))


class MambaLayer(nn.Module):
    """Mamba-In-Convolution with Channel-Spatial Siamese input (MICCSS).

    ``a = relu(norm(nin(x)))``; the tokens of ``a`` (and, with ``views=4``, their flips along
    channels, tokens and both) go through the one shared ``mamba``; the outputs are flipped back,
    averaged, added to ``a``, and passed through ``relu2(norm2(nin2(.)))``. The mixing is
    :meth:`nnmamba_nets.ssm.Mamba.forward_views`: on the ``cpu`` backend its fused kernels compute
    the four views together without building them.

    Args:
        dim: channels of the input (the mixer's ``d_model``).
        d_state: SSM state size. Defaults to 16.
        d_conv: mixer's causal convolution width. Defaults to 4.
        expand: mixer's inner width factor. Defaults to 2.
        views: 4 for the four Siamese views of the segmentation network, 1 for the single-view
            variant of the classification network. Defaults to 4.
        batch_views: where the views are built (any backend but the fused ``cpu`` path), run the
            four views as one mixer call on a batch of 4b sequences (faster); ``False`` runs four
            calls as the reference code does (lower peak memory). The results are the same.
            Defaults to True.
        backend: selective-scan backend of the mixer (see :class:`nnmamba_nets.ssm.Mamba`).
            Defaults to ``"auto"``.

    Raises:
        ValueError: ``views`` is not 1 or 4.
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        views: int = 4,
        batch_views: bool = True,
        backend: str | None = "auto",
    ) -> None:
        super().__init__()
        if views not in (1, 4):
            raise ValueError(f"MambaLayer views must be 1 (single view) or 4 (channel-spatial Siamese), got {views}.")
        self.dim = dim
        self.views = views
        self.batch_views = batch_views
        # Registration order follows the reference so that state_dict keys come in the same order.
        self.nin = conv1x1(dim, dim)
        self.nin2 = conv1x1(dim, dim)
        self.norm2 = nn.BatchNorm3d(dim)
        self.relu2 = nn.ReLU(inplace=True)
        self.norm = nn.BatchNorm3d(dim)
        self.relu = nn.ReLU(inplace=True)
        self.mamba = Mamba(d_model=dim, d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, dim, d, h, w) -> (b, dim, d, h, w)."""
        a = self.relu(self.norm(self.nin(x)))
        b, c = a.shape[:2]
        tokens = a.reshape(b, c, -1)  # (b, c, l), channel-first
        siamese = self.views == 4
        mixed = self.mamba.forward_views(
            tokens, flip_channels=siamese, flip_tokens=siamese, batch_views=self.batch_views
        )  # (b, c, l)
        out = (mixed + tokens).reshape(a.shape)  # (b, c, d, h, w)
        return self.relu2(self.norm2(self.nin2(out)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, views={self.views}, batch_views={self.batch_views}"


class NnUNetMambaLayer(nn.Module):
    """The MambaLayer of the reference nnU-Net v1 network (the authors' BraTS 2023 trainers).

    ``a = relu(norm(nin(x)))``, its tokens through ``mamba`` once (one view: no flips, no averaging),
    back to (b, dim, d, h, w). Unlike :class:`MambaLayer` there is no ``nin2``/``norm2`` output block and
    no residual add of ``a``.

    Args:
        dim: channels of the input (the mixer's ``d_model``).
        d_state: SSM state size. Defaults to 16.
        d_conv: mixer's causal convolution width. Defaults to 4.
        expand: mixer's inner width factor. Defaults to 2.
        backend: selective-scan backend of the mixer (see :class:`nnmamba_nets.ssm.Mamba`).
            Defaults to ``"auto"``.
    """

    def __init__(
        self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, backend: str | None = "auto"
    ) -> None:
        super().__init__()
        self.dim = dim
        self.nin = conv1x1(dim, dim)
        self.norm = nn.BatchNorm3d(dim)
        self.relu = nn.ReLU(inplace=True)
        self.mamba = Mamba(d_model=dim, d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, dim, d, h, w) -> (b, dim, d, h, w)."""
        a = self.relu(self.norm(self.nin(x)))
        b, c = a.shape[:2]
        return self.mamba.forward_views(a.reshape(b, c, -1)).reshape(a.shape)  # one view of (b, c, l) tokens

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class MambaSeq(nn.Module):
    """ReLU then a Mamba mixer over a short sequence of feature tokens (hierarchical sequence head).

    Args:
        dim: token width (the mixer's ``d_model``).
        d_state: SSM state size. Defaults to 16.
        d_conv: mixer's causal convolution width. Defaults to 4.
        expand: mixer's inner width factor. Defaults to 2.
        backend: selective-scan backend of the mixer. Defaults to ``"auto"``.
    """

    def __init__(
        self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, backend: str | None = "auto"
    ) -> None:
        super().__init__()
        self.dim = dim
        self.relu = nn.ReLU()
        self.mamba = Mamba(d_model=dim, d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, dim, l) channel-first tokens -> (b, dim, l)."""
        return self.mamba.forward_views(self.relu(x))


class BasicBlock(nn.Module):
    """ResNet basic block with an optional MambaLayer branch on the block input.

    ``out = bn2(conv2(relu(bn1(conv1(x))))) [+ mamba_layer(x)] + (downsample(x) or x)``, then ReLU.

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of ``conv1``. Defaults to 1.
        downsample: projection of the shortcut when shapes change. Defaults to None (identity).
        mamba_layer: MambaLayer added to the residual sum; the same instance may be shared by
            several blocks. Defaults to None.
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        mamba_layer: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.mamba_layer = mamba_layer
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, inplanes, d, h, w) -> (b, planes, d / stride, h / stride, w / stride)."""
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.mamba_layer is not None:
            out += self.mamba_layer(x)
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


def make_res_layer(
    inplanes: int, planes: int, blocks: int, stride: int = 1, mamba_layer: nn.Module | None = None
) -> nn.Sequential:
    """A residual stage: a strided projection block, then ``blocks - 1`` blocks sharing ``mamba_layer``.

    The one ``mamba_layer`` instance is attached to blocks 1..blocks-1 (weights and BatchNorm
    statistics shared by design), so a state_dict lists it once per block.

    Args:
        inplanes: input channels.
        planes: output channels.
        blocks: number of BasicBlocks (>= 1).
        stride: stride of the first block. Defaults to 1.
        mamba_layer: shared MambaLayer of the stage, or None. Defaults to None.

    Returns:
        ``nn.Sequential`` of the blocks (keys ``0``, ``1``, ...).
    """
    if blocks < 1:
        raise ValueError(f"make_res_layer needs blocks >= 1, got {blocks}.")
    downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm3d(planes))
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes, mamba_layer=mamba_layer) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _nearest_multiples(size: int, divisor: int) -> str:
    lower = size // divisor * divisor
    upper = lower + divisor
    return f"{lower} or {upper}" if lower > 0 else f"{upper}"


def check_input_shape(x: torch.Tensor, in_channels: int, divisor: int = 1, name: str = "network") -> None:
    """Check that ``x`` is a (batch, in_channels, d, h, w) tensor with spatial sizes divisible by ``divisor``.

    Args:
        x: the network input.
        in_channels: expected number of channels.
        divisor: every spatial size must be a multiple of it. Defaults to 1 (any size).
        name: the network's name for the error message.

    Raises:
        ValueError: wrong number of dimensions or channels, or a spatial size not divisible by
            ``divisor`` (the message names the offending sizes and the nearest valid ones).
    """
    shape = tuple(x.shape)
    if len(shape) != 5:
        raise ValueError(f"{name} expects a 5D input (batch, {in_channels}, d, h, w), got shape {shape}.")
    if shape[1] != in_channels:
        raise ValueError(
            f"{name} was built with in_channels={in_channels}, got an input with {shape[1]} channels (shape {shape})."
        )
    bad = [f"{size} (nearest valid: {_nearest_multiples(size, divisor)})" for size in shape[2:] if size % divisor]
    if bad:
        raise ValueError(
            f"{name} needs every spatial size divisible by {divisor}, got spatial shape {shape[2:]}: "
            + ", ".join(bad)
            + ". Crop or pad the input (e.g. monai.transforms.DivisiblePad)."
        )
