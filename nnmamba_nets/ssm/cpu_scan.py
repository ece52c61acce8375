"""The ``cpu`` backend: a fused selective scan compiled with numba.

Forward and backward are single kernels, parallel over (batch x channel) rows. Each row walks its
sequence in chunks of ``_CHUNK`` positions: first the chunk's decays ``exp(dt * A)`` and drives
``dt * B * u`` are computed in a flat loop that LLVM vectorises (with a branch-free ``exp``, see
:func:`_fast_exp`), then the recurrence runs over the chunk with the state in a small local
buffer. The forward pass never materialises a (batch, dim, L, d_state) tensor; for the backward
pass it keeps only the state at chunk boundaries, and the backward kernel recomputes each chunk
from its boundary state before running the adjoint recurrence in reverse. Gradients of ``B`` and
``C`` (shared by all channels) are summed per group of channels into per-group buffers, so no two
threads write the same memory.

Everything is computed in float32 (like mamba_ssm's state); inputs of other dtypes are cast, and
results and gradients come back in each input's dtype.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .reference import check_scan_inputs

__all__ = ["selective_scan_cpu"]

_CHUNK = 64  # positions per chunk; also the spacing of the states kept for the backward pass

_F = np.float32
_LOG2E = _F(1.4426950408889634)
_LN2_HI = _F(0.693359375)  # ln(2) split in two for an exact range reduction (Cody-Waite)
_LN2_LO = _F(-2.12194440e-4)
_EXP_MIN = _F(-87.0)  # exp underflows to ~0 below, overflows above _EXP_MAX
_EXP_MAX = _F(88.0)
_HALF = _F(0.5)
_ONE = _F(1.0)
_C2, _C3, _C4, _C5, _C6 = _F(1 / 2), _F(1 / 6), _F(1 / 24), _F(1 / 120), _F(1 / 720)


@intrinsic
def _float_from_bits(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (an LLVM bitcast; vectorisable)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@numba.njit(inline="always", fastmath=True)
def _fast_exp(x):
    """float32 exp with no branch or libm call, so loops over it vectorise (about 4 ulp)."""
    x = min(max(x, _EXP_MIN), _EXP_MAX)
    k = np.floor(x * _LOG2E + _HALF)
    r = x - k * _LN2_HI - k * _LN2_LO  # |r| <= ln(2) / 2
    poly = _ONE + r * (_ONE + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * _C6)))))
    return poly * _float_from_bits((np.int32(k) + 127) << 23)


@numba.njit(inline="always", fastmath=True)
def _log1p_unit(e):
    """log(1 + e) for e in [0, 1] as 2 atanh(e / (2 + e)) by its odd series (about 1e-7 relative)."""
    s = e / (_F(2.0) + e)  # s in [0, 1/3]
    s2 = s * s
    series = _ONE + s2 * (_F(1 / 3) + s2 * (_F(1 / 5) + s2 * (_F(1 / 7) + s2 * (_F(1 / 9) + s2 * (_F(1 / 11)
                                                                                            + s2 * _F(1 / 13))))))
    return _F(2.0) * s * series


@numba.njit(inline="always", fastmath=True)
def _softplus(raw):
    """softplus(raw) = max(raw, 0) + log(1 + exp(-|raw|)), branch-free (vectorisable)."""
    return max(raw, _F(0.0)) + _log1p_unit(_fast_exp(-abs(raw)))


@numba.njit(inline="always", fastmath=True)
def _sigmoid(x):
    return _ONE / (_ONE + _fast_exp(-x))


@numba.njit(inline="always", fastmath=True)
def _fill_chunk(u, delta, a_row, Bt, delta_bias_d, softplus, b, d, t0, t1, dts, decays, drives):
    """Time steps, decays exp(dt * A) and drives dt * u * B of positions t0..t1-1 of row (b, d)."""
    d_state = a_row.shape[0]
    for k in range(t1 - t0):
        raw = delta[b, d, t0 + k] + delta_bias_d
        dts[k] = _softplus(raw) if softplus else raw
    for k in range(t1 - t0):
        dt = dts[k]
        dt_x = dt * u[b, d, t0 + k]
        for n in range(d_state):
            decays[k, n] = _fast_exp(dt * a_row[n])
            drives[k, n] = dt_x * Bt[b, t0 + k, n]


@numba.njit(parallel=True, fastmath=True, cache=True)
def _scan_forward(u, delta, A, Bt, Ct, D, z, delta_bias, softplus, has_z, out, boundary, store):
    """out[b, d, t] = gated scan output; boundary[b, d, c] = state before position c * _CHUNK.

    u, delta, z, out: (b, d, l); A: (d, n); Bt, Ct: (b, l, n); D, delta_bias: (d,);
    boundary: (b, d, ceil(l / _CHUNK), n), written only when ``store``. All float32.
    """
    n_batch, n_dim, length = u.shape
    d_state = A.shape[1]
    for row in numba.prange(n_batch * n_dim):
        b = row // n_dim
        d = row % n_dim
        state = np.zeros(d_state, dtype=np.float32)
        dts = np.empty(_CHUNK, dtype=np.float32)
        decays = np.empty((_CHUNK, d_state), dtype=np.float32)
        drives = np.empty((_CHUNK, d_state), dtype=np.float32)
        for t0 in range(0, length, _CHUNK):
            t1 = min(length, t0 + _CHUNK)
            if store:
                boundary[b, d, t0 // _CHUNK, :] = state
            _fill_chunk(u, delta, A[d], Bt, delta_bias[d], softplus, b, d, t0, t1, dts, decays, drives)
            for k in range(t1 - t0):
                y = _F(0.0)
                for n in range(d_state):
                    state[n] = decays[k, n] * state[n] + drives[k, n]
                    y += Ct[b, t0 + k, n] * state[n]
                out[b, d, t0 + k] = y + D[d] * u[b, d, t0 + k]
            if has_z:
                for t in range(t0, t1):
                    gate = z[b, d, t]
                    out[b, d, t] *= gate * _sigmoid(gate)


@numba.njit(parallel=True, fastmath=True, cache=True)
def _scan_backward(u, delta, A, Bt, Ct, D, z, delta_bias, softplus, has_z, boundary, grad_out, n_groups,
                   du, ddelta, dz, dA_rows, dD_rows, dbias_rows, dB_groups, dC_groups):
    """Adjoint of :func:`_scan_forward`.

    Writes du, ddelta, dz: (b, d, l); dA_rows: (b, d, n); dD_rows, dbias_rows: (b, d);
    dB_groups, dC_groups: (n_groups, b, l, n) partial sums over each group's channels.
    """
    n_batch, n_dim, length = u.shape
    d_state = A.shape[1]
    per_group = (n_dim + n_groups - 1) // n_groups
    n_chunks = (length + _CHUNK - 1) // _CHUNK
    for task in numba.prange(n_batch * n_groups):
        b = task // n_groups
        group = task % n_groups
        dts = np.empty(_CHUNK, dtype=np.float32)
        decays = np.empty((_CHUNK, d_state), dtype=np.float32)
        drives = np.empty((_CHUNK, d_state), dtype=np.float32)
        states = np.empty((_CHUNK + 1, d_state), dtype=np.float32)  # states[k] = state before position t0 + k
        adjoint = np.empty(d_state, dtype=np.float32)  # dL/d state, carried backwards
        dA_acc = np.empty(d_state, dtype=np.float32)
        dB_g = dB_groups[group, b]
        dC_g = dC_groups[group, b]
        for d in range(group * per_group, min(n_dim, (group + 1) * per_group)):
            a_row = A[d]
            adjoint[:] = 0.0
            dA_acc[:] = 0.0
            dD_acc = _F(0.0)
            dbias_acc = _F(0.0)
            for c in range(n_chunks - 1, -1, -1):
                t0 = c * _CHUNK
                t1 = min(length, t0 + _CHUNK)
                _fill_chunk(u, delta, a_row, Bt, delta_bias[d], softplus, b, d, t0, t1, dts, decays, drives)
                states[0, :] = boundary[b, d, c, :]
                for k in range(t1 - t0):
                    for n in range(d_state):
                        states[k + 1, n] = decays[k, n] * states[k, n] + drives[k, n]
                for k in range(t1 - t0 - 1, -1, -1):
                    t = t0 + k
                    x = u[b, d, t]
                    dt = dts[k]
                    g = grad_out[b, d, t]
                    if has_z:
                        y = D[d] * x
                        for n in range(d_state):
                            y += Ct[b, t, n] * states[k + 1, n]
                        gate = z[b, d, t]
                        sig = _sigmoid(gate)
                        dz[b, d, t] = g * y * sig * (_ONE + gate * (_ONE - sig))
                        dy = g * gate * sig
                    else:
                        dy = g
                    dD_acc += dy * x
                    dx = dy * D[d]
                    ddt = _F(0.0)
                    for n in range(d_state):
                        decayed = decays[k, n] * states[k, n]
                        dh = adjoint[n] + dy * Ct[b, t, n]
                        dC_g[t, n] += dy * states[k + 1, n]
                        dB_g[t, n] += dh * dt * x
                        ddt += dh * (a_row[n] * decayed + x * Bt[b, t, n])
                        dA_acc[n] += dh * dt * decayed
                        dx += dh * dt * Bt[b, t, n]
                        adjoint[n] = dh * decays[k, n]
                    du[b, d, t] = dx
                    if softplus:
                        ddt *= _sigmoid(delta[b, d, t] + delta_bias[d])
                    ddelta[b, d, t] = ddt
                    dbias_acc += ddt
            dA_rows[b, d, :] = dA_acc
            dD_rows[b, d] = dD_acc
            dbias_rows[b, d] = dbias_acc


def _as_array(tensor: torch.Tensor | None, shape_if_absent: tuple[int, ...]) -> np.ndarray:
    """A contiguous float32 numpy array of ``tensor``, or zeros of ``shape_if_absent`` when it is None."""
    if tensor is None:
        return np.zeros(shape_if_absent, dtype=np.float32)
    return tensor.detach().to(torch.float32).contiguous().numpy()


def _to_tensor(array: np.ndarray, like: torch.Tensor | None) -> torch.Tensor | None:
    """``array`` as a tensor in the dtype of ``like`` (None when ``like`` is None)."""
    return None if like is None else torch.from_numpy(array).to(like.dtype)


class _SelectiveScanCpu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):  # type: ignore[override]
        n_batch, n_dim, length = u.shape
        d_state = A.shape[1]
        arrays = (
            _as_array(u, ()),
            _as_array(delta, ()),
            _as_array(A, ()),
            _as_array(B.transpose(1, 2), ()),  # (b, l, n)
            _as_array(C.transpose(1, 2), ()),  # (b, l, n)
            _as_array(D, (n_dim,)),
            _as_array(z, (1, 1, 1)),
            _as_array(delta_bias, (n_dim,)),
        )
        store = any(ctx.needs_input_grad)
        n_chunks = -(-length // _CHUNK)
        boundary = np.empty((n_batch, n_dim, n_chunks, d_state) if store else (1, 1, 1, d_state), np.float32)
        out = np.empty((n_batch, n_dim, length), dtype=np.float32)
        _scan_forward(*arrays, bool(delta_softplus), z is not None, out, boundary, store)
        if store:
            ctx.arrays = arrays
            ctx.boundary = boundary
            ctx.softplus = bool(delta_softplus)
            ctx.inputs_like = tuple(
                None if t is None else torch.empty(0, dtype=t.dtype) for t in (u, delta, A, B, C, D, z, delta_bias)
            )
        return torch.from_numpy(out).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        u = ctx.arrays[0]
        n_batch, n_dim, length = u.shape
        d_state = ctx.arrays[2].shape[1]
        like = ctx.inputs_like
        has_z = like[6] is not None
        n_groups = max(1, min(n_dim, 2 * numba.get_num_threads()))
        du = np.empty_like(u)
        ddelta = np.empty_like(u)
        dz = np.zeros_like(u) if has_z else np.zeros((1, 1, 1), dtype=np.float32)
        dA_rows = np.empty((n_batch, n_dim, d_state), dtype=np.float32)
        dD_rows = np.empty((n_batch, n_dim), dtype=np.float32)
        dbias_rows = np.empty((n_batch, n_dim), dtype=np.float32)
        dB_groups = np.zeros((n_groups, n_batch, length, d_state), dtype=np.float32)
        dC_groups = np.zeros((n_groups, n_batch, length, d_state), dtype=np.float32)
        _scan_backward(*ctx.arrays, ctx.softplus, has_z, ctx.boundary, _as_array(grad_out, ()), n_groups,
                       du, ddelta, dz, dA_rows, dD_rows, dbias_rows, dB_groups, dC_groups)
        del ctx.arrays, ctx.boundary
        return (
            _to_tensor(du, like[0]),
            _to_tensor(ddelta, like[1]),
            _to_tensor(dA_rows.sum(axis=0), like[2]),
            _to_tensor(dB_groups.sum(axis=0).transpose(0, 2, 1), like[3]),
            _to_tensor(dC_groups.sum(axis=0).transpose(0, 2, 1), like[4]),
            _to_tensor(dD_rows.sum(axis=0), like[5]),
            _to_tensor(dz, like[6]),
            _to_tensor(dbias_rows.sum(axis=0), like[7]),
            None,
        )


def selective_scan_cpu(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Selective scan of CPU tensors with the fused numba kernels (see :func:`~nnmamba_nets.ssm.selective_scan`).

    Returns:
        (batch, dim, L) tensor in the dtype of ``u``.

    Raises:
        ValueError: mismatched shapes, or tensors not on the CPU.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    if u.device.type != "cpu":
        raise ValueError(f"The cpu scan backend needs CPU tensors, got u on {u.device}.")
    return _SelectiveScanCpu.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
