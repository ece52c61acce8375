"""The mixer's depthwise causal convolution + SiLU as numba kernels, forwards and backwards in time.

``u[t] = silu(bias + sum_k w[k] x[t - (K - 1) + k])`` (causal, zero before the start) is the
convolution of ``mamba_ssm``; on a reversed sequence it equals, read in the original order, the
anti-causal ``u[t] = silu(bias + sum_k w[k] x[t + (K - 1) - k])``, so the token-flipped views of the
nnMamba mixer need no flipped copy; one pass computes both directions. Inputs are token-major
(position, channel) with the channels contiguous: every inner loop runs over channels and vectorises,
with the four taps (``d_conv`` <= 4, as in mamba_ssm's kernels; shorter ones are zero-padded)
unrolled. bfloat16 inputs and outputs are
read and written as bits (see :mod:`.cpu_math`); the sums are float32.

The backward pass uses that the transpose of a causal convolution is the anti-causal one with the
same taps (and the other way round).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from .cpu_math import kernel_array, narrow_like, new_kernel_tensor, prefer_wide_vectors, silu, silu_grad, widen

__all__ = ["MAX_TAPS", "conv_silu", "conv_silu_backward"]

_TILE = 256  # positions per task
MAX_TAPS = 4  # taps of the kernels: shorter convolutions are zero-padded at the front (mamba_ssm allows 2 to 4)


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _add_taps(src, seq, t, col0, weight, reverse, acc):
    """acc += sum_k weight[k] * src[seq, t + shift_k, col0 : col0 + len(acc)] over the taps inside the
    sequence; shift_k = k - (K - 1) (causal), or (K - 1) - k when ``reverse``."""
    length = src.shape[1]
    taps = weight.shape[0]
    for k in range(taps):
        pos = t + (taps - 1 - k if reverse else k - (taps - 1))
        if 0 <= pos < length:  # rows sliced first: direct 3D indexing would gather element by element
            row, taps_k = src[seq, pos, col0 : col0 + acc.shape[0]], weight[k]
            for w in range(acc.shape[0]):
                acc[w] += taps_k[w] * widen(row[w])


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _silu_of_taps(far, mid, near, here, w0, w1, w2, w3, bias, dst):
    """dst = silu(bias + w0 far + w1 mid + w2 near + w3 here): one vector loop over the channels, the four
    taps unrolled so that the sums stay in registers."""
    for w in range(dst.shape[0]):
        pre = bias[w] + w0[w] * widen(far[w]) + w1[w] * widen(mid[w]) + w2[w] * widen(near[w]) + w3[w] * widen(here[w])
        dst[w] = narrow_like(silu(pre), dst)


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _conv_positions(x, batch, col0, t0, t1, n_dir, weight, bias, out, seq0):
    """out[seq0 + r, t] = silu(conv_r(x[batch, :, col0:col0 + d])[t]) for t0 <= t < t1 and each direction
    r < n_dir: 0 causal, 1 anti-causal. weight: (MAX_TAPS, d)."""
    prefer_wide_vectors()
    length = x.shape[1]
    n_dim = out.shape[2]
    w0, w1, w2, w3 = weight[0], weight[1], weight[2], weight[3]
    acc = np.empty(n_dim, dtype=np.float32)
    for t in range(t0, t1):
        if t < MAX_TAPS - 1 or t > length - MAX_TAPS:  # a tap falls outside the sequence
            for r in range(n_dir):
                acc[:] = bias
                _add_taps(x, batch, t, col0, weight, r == 1, acc)
                for w in range(n_dim):
                    out[seq0 + r, t, w] = narrow_like(silu(acc[w]), out)
            continue
        cols = slice(col0, col0 + n_dim)  # contiguous row slices: numba then knows they are contiguous
        here = x[batch, t, cols]
        _silu_of_taps(
            x[batch, t - 3, cols],
            x[batch, t - 2, cols],
            x[batch, t - 1, cols],
            here,
            w0,
            w1,
            w2,
            w3,
            bias,
            out[seq0, t],
        )
        if n_dir == 2:
            after = out[seq0 + 1, t]
            _silu_of_taps(
                x[batch, t + 3, cols], x[batch, t + 2, cols], x[batch, t + 1, cols], here, w0, w1, w2, w3, bias, after
            )


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _conv_positions_backward(x, batch, col0, t0, t1, reverse, weight, bias, grad, seq, dweight, dbias):
    """In place, grad[seq, t] (gradient of the output) becomes the gradient of the pre-activation; adds this
    range's terms to dweight (K, d) and dbias (d,)."""
    prefer_wide_vectors()
    length = x.shape[1]
    taps = weight.shape[0]
    n_dim = grad.shape[2]
    acc = np.empty(n_dim, dtype=np.float32)
    for t in range(t0, t1):
        acc[:] = bias
        _add_taps(x, batch, t, col0, weight, reverse, acc)
        g = grad[seq, t]
        for w in range(n_dim):
            g[w] *= silu_grad(acc[w])
            dbias[w] += g[w]
        for k in range(taps):
            pos = t + (taps - 1 - k if reverse else k - (taps - 1))
            if 0 <= pos < length:
                row, dweight_k = x[batch, pos, col0 : col0 + n_dim], dweight[k]
                for w in range(n_dim):
                    dweight_k[w] += g[w] * row[w]


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _transpose_positions(grad, pair, n_dir, t0, t1, weight, dx, batch, col0):
    """dx[batch, t, col0:col0 + d] = sum over the pair's directions of the transposed convolution of grad."""
    prefer_wide_vectors()
    acc = np.empty(grad.shape[2], dtype=np.float32)
    for t in range(t0, t1):
        acc[:] = 0.0
        for r in range(n_dir):
            _add_taps(grad, pair * n_dir + r, t, 0, weight, r == 0, acc)
        dx[batch, t, col0 : col0 + acc.shape[0]] = acc


@numba.njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def _conv_forward(x, weight, bias, n_orient, n_dir, col_step, out):
    """out[s] = silu(conv(x)) of sequence s = (batch * O + o) * R + r: orientation o reads x columns
    o * col_step..., direction r = 1 is the anti-causal convolution. x: (b, l, *); out: (S, l, d)."""
    n_seq, length, _ = out.shape
    n_tiles = (length + _TILE - 1) // _TILE
    for task in numba.prange(n_seq // n_dir * n_tiles):
        pair = task // n_tiles
        t0 = task % n_tiles * _TILE
        col0 = pair % n_orient * col_step
        _conv_positions(x, pair // n_orient, col0, t0, min(length, t0 + _TILE), n_dir, weight, bias, out, pair * n_dir)


@numba.njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def _conv_backward(x, weight, bias, n_orient, n_dir, col_step, grad, dx, dweight_rows, dbias_rows):
    """Adjoint of :func:`_conv_forward` (float32). grad (S, l, d) is overwritten with the gradient of the
    pre-activation; dx (shape of x) receives the gradient in the columns that the forward pass read;
    dweight_rows (S * n_tiles, K, d) and dbias_rows (S * n_tiles, d) receive per-task partial sums."""
    n_seq, length, _ = grad.shape
    n_tiles = (length + _TILE - 1) // _TILE
    for task in numba.prange(n_seq * n_tiles):
        seq = task // n_tiles
        t0 = task % n_tiles * _TILE
        pair = seq // n_dir
        col0 = pair % n_orient * col_step
        dweight_rows[task] = 0.0
        dbias_rows[task] = 0.0
        _conv_positions_backward(
            x,
            pair // n_orient,
            col0,
            t0,
            min(length, t0 + _TILE),
            seq % n_dir == 1,
            weight,
            bias,
            grad,
            seq,
            dweight_rows[task],
            dbias_rows[task],
        )
    for task in numba.prange(n_seq // n_dir * n_tiles):
        pair = task // n_tiles
        t0 = task % n_tiles * _TILE
        col0 = pair % n_orient * col_step
        _transpose_positions(grad, pair, n_dir, t0, min(length, t0 + _TILE), weight, dx, pair // n_orient, col0)


def _taps(weight: torch.Tensor) -> np.ndarray:
    """conv1d weight (d, 1, K) as float32 (MAX_TAPS, d), channels contiguous, zero-padded at the front."""
    taps = weight.shape[2]
    if not 1 <= taps <= MAX_TAPS:
        raise ValueError(
            f"The cpu convolution kernels take 1 to {MAX_TAPS} taps, got a weight of shape {tuple(weight.shape)}."
        )
    padded = np.zeros((MAX_TAPS, weight.shape[0]), dtype=np.float32)
    padded[MAX_TAPS - taps :] = weight.detach().to(torch.float32)[:, 0].t().numpy()
    return padded


def _bias(bias: torch.Tensor | None, n_dim: int) -> np.ndarray:
    if bias is None:
        return np.zeros(n_dim, dtype=np.float32)
    return bias.detach().to(torch.float32).contiguous().numpy()


def conv_silu(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, orientations: int, directions: int
) -> torch.Tensor:
    """SiLU of the depthwise convolution of every orientation's channels, causal and (``directions=2``)
    anti-causal.

    Args:
        x: (b, l, orientations * col_step) token-major; orientation o's d channels start at column
            ``o * col_step`` with ``col_step = x.shape[2] // orientations``.
        weight: (d, 1, K) ``conv1d.weight``.
        bias: (d,) or None.
        orientations: 1 or 2.
        directions: 1 (causal) or 2 (causal, then anti-causal).

    Returns:
        (b * orientations * directions, l, d) in x's dtype (float32 unless bfloat16), sequence
        ``(batch * orientations + o) * directions + r``.
    """
    n_batch, length, cols = x.shape
    n_dim = weight.shape[0]
    out, out_array = new_kernel_tensor((n_batch * orientations * directions, length, n_dim), x.dtype)
    _conv_forward(
        kernel_array(x), _taps(weight), _bias(bias, n_dim), orientations, directions, cols // orientations, out_array
    )
    return out


def conv_silu_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    orientations: int,
    directions: int,
    dx: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradients of :func:`conv_silu`.

    Args:
        grad: (S, l, d) float32 contiguous gradient of the output; overwritten.
        x, weight, bias, orientations, directions: as given to :func:`conv_silu`.
        dx: float32 array of x's shape; receives the gradient of x in the columns the convolution reads.

    Returns:
        The gradients of ``weight`` (d, 1, K) and ``bias`` (None without a bias).
    """
    n_seq, length, n_dim = grad.shape
    n_tasks = n_seq * -(-length // _TILE)
    dweight_rows = np.empty((n_tasks, MAX_TAPS, n_dim), dtype=np.float32)
    dbias_rows = np.empty((n_tasks, n_dim), dtype=np.float32)
    _conv_backward(
        kernel_array(x.float()),
        _taps(weight),
        _bias(bias, n_dim),
        orientations,
        directions,
        x.shape[2] // orientations,
        grad.numpy(),
        dx,
        dweight_rows,
        dbias_rows,
    )
    taps = weight.shape[2]
    dweight = (
        torch.from_numpy(dweight_rows.sum(axis=0)[MAX_TAPS - taps :]).t()[:, None, :].to(weight.dtype)
    )  # (d, 1, K)
    dbias = None if bias is None else torch.from_numpy(dbias_rows.sum(axis=0)).to(bias.dtype)
    return dweight, dbias
