"""The inner part of the Mamba mixer on CPU as one autograd function over the numba kernels.

:func:`mixer_inner_cpu` maps the output of ``in_proj`` to the input of ``out_proj``: causal
convolution + SiLU (:mod:`.cpu_conv`), ``x_proj`` (a PyTorch matmul), then the selective scan with
``dt_proj``, softplus, the skip ``D``, the gate and the sum over directions inside the kernel
(:mod:`.cpu_scan`). Everything is token-major, (batch, position, channel), and no tensor is
transposed, flipped or split by a copy:

* ``orientations=2`` runs a second set of in_proj channels through the same weights (the
  channel-flipped views of the nnMamba mixer: ``flip_c(t) @ W^T = t @ flip_1(W)^T``, so they come
  from one in_proj call with stacked weights);
* ``directions=2`` adds, per orientation, the same mixer run on the reversed sequence (the
  token-flipped views): anti-causal convolution and a backward scan, written at the original
  positions and summed with the forward direction before the shared gate.

Activations may be float32 or bfloat16 (under ``torch.autocast``): the kernels read and write
them in that dtype and compute in float32. The backward pass recomputes the convolution, keeps the
scan's chunk-boundary states and ungated sum, and runs the adjoint kernels in float32.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .cpu_conv import conv_silu, conv_silu_backward
from .cpu_math import kernel_array, new_kernel_tensor
from .cpu_scan import ScanProblem

__all__ = ["mixer_inner_cpu"]

_EMPTY = np.zeros((0, 0, 0), dtype=np.float32)


def _problem(
    u: torch.Tensor,
    proj: torch.Tensor,
    xz: torch.Tensor,
    dt_weight: torch.Tensor,
    dt_bias: torch.Tensor,
    A: torch.Tensor,
    D: torch.Tensor,
    orientations: int,
    directions: int,
) -> ScanProblem:
    """The scan of the mixer: time steps from proj's first dt_rank columns, gates from xz's z columns."""
    n_dim = dt_weight.shape[0]
    return ScanProblem(
        u=kernel_array(u),
        delta=_EMPTY,
        proj=kernel_array(proj),
        z=kernel_array(xz),
        A=A.detach().float().contiguous().numpy(),
        D=D.detach().float().contiguous().numpy(),
        delta_bias=dt_bias.detach().float().contiguous().numpy(),
        w_dt=dt_weight.detach().float().t().contiguous().numpy(),
        layout=(orientations, directions, n_dim, 2 * n_dim),
        softplus=True,
    )


class _MixerInnerCpu(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, xz, conv_weight, conv_bias, x_proj_weight, dt_weight, dt_bias, A, D, orientations, directions
    ):
        n_batch, length, _ = xz.shape
        n_dim = dt_weight.shape[0]
        u = conv_silu(xz, conv_weight, conv_bias, orientations, directions)  # (S, l, d)
        proj = F.linear(u, x_proj_weight)  # (S, l, dt_rank + 2 d_state)
        problem = _problem(u, proj, xz, dt_weight, dt_bias, A, D, orientations, directions)
        y, y_array = new_kernel_tensor((n_batch, length, orientations * n_dim), xz.dtype)
        store = any(ctx.needs_input_grad)
        kept = problem.forward(y_array, store)
        if store:
            ctx.save_for_backward(xz, conv_weight, conv_bias, x_proj_weight, dt_weight, dt_bias, A, D, proj)
            ctx.kept = kept
            ctx.views = (orientations, directions)
        return y

    @staticmethod
    def backward(ctx, grad_y):  # type: ignore[override]
        xz, conv_weight, conv_bias, x_proj_weight, dt_weight, dt_bias, A, D, proj = ctx.saved_tensors
        orientations, directions = ctx.views
        u = conv_silu(xz, conv_weight, conv_bias, orientations, directions).float()  # as in forward
        x32 = xz.float()
        problem = _problem(u, proj.float(), x32, dt_weight, dt_bias, A, D, orientations, directions)
        du = torch.empty(u.shape, dtype=torch.float32)
        dxz = torch.empty(x32.shape, dtype=torch.float32)  # z columns from the scan, x columns from the conv
        grads = problem.backward(kernel_array(grad_y.float()), *ctx.kept, du.numpy(), _EMPTY, dxz.numpy())
        del ctx.kept
        dproj = torch.from_numpy(grads["proj"])  # (S, l, dt_rank + 2 d_state)
        du += torch.matmul(dproj, x_proj_weight.detach().float())
        dx_proj = torch.matmul(dproj.reshape(-1, dproj.shape[2]).t(), u.reshape(-1, u.shape[2]))
        dconv_weight, dconv_bias = conv_silu_backward(
            du, x32, conv_weight, conv_bias, orientations, directions, dxz.numpy()
        )
        return (
            dxz.to(xz.dtype),
            dconv_weight,
            dconv_bias,
            dx_proj.to(x_proj_weight.dtype),
            torch.from_numpy(grads["w_dt"]).t().to(dt_weight.dtype),
            torch.from_numpy(grads["delta_bias"]).to(dt_bias.dtype),
            torch.from_numpy(grads["A"]).to(A.dtype),
            torch.from_numpy(grads["D"]).to(D.dtype),
            None,
            None,
        )


def mixer_inner_cpu(
    xz: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    x_proj_weight: torch.Tensor,
    dt_weight: torch.Tensor,
    dt_bias: torch.Tensor,
    A: torch.Tensor,
    D: torch.Tensor,
    orientations: int = 1,
    directions: int = 1,
) -> torch.Tensor:
    """From in_proj's output to out_proj's input, with the fused CPU kernels (differentiable).

    Args:
        xz: (b, l, orientations * 2 * d) CPU tensor, float32 or bfloat16: per orientation, the d
            channels of x then the d channels of the gate z.
        conv_weight: (d, 1, K) depthwise ``conv1d.weight``.
        conv_bias: (d,) ``conv1d.bias``, or None.
        x_proj_weight: (dt_rank + 2 * d_state, d).
        dt_weight: (d, dt_rank) ``dt_proj.weight``.
        dt_bias: (d,) ``dt_proj.bias`` (added before the softplus).
        A: (d, d_state), normally ``-exp(A_log)``.
        D: (d,) skip.
        orientations: 1, or 2 for a second set of channels (see the module docstring).
        directions: 1 (causal), or 2 to add the reversed-sequence mixer.

    Returns:
        (b, l, orientations * d) in xz's dtype: per orientation, the gated sum over directions.

    Raises:
        ValueError: a shape that does not fit the others, or non-CPU tensors.
    """
    if orientations not in (1, 2) or directions not in (1, 2):
        raise ValueError(f"orientations and directions must be 1 or 2, got {orientations} and {directions}.")
    n_dim = dt_weight.shape[0]
    if xz.dim() != 3 or xz.shape[2] != orientations * 2 * n_dim:
        raise ValueError(
            f"xz must be (batch, length, {orientations * 2 * n_dim}) for {orientations} orientation(s) of "
            f"d_inner={n_dim}, got {tuple(xz.shape)}."
        )
    if xz.device.type != "cpu":
        raise ValueError(f"mixer_inner_cpu needs CPU tensors, got xz on {xz.device}.")
    return _MixerInnerCpu.apply(
        xz, conv_weight, conv_bias, x_proj_weight, dt_weight, dt_bias, A, D, orientations, directions
    )
