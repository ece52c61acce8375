"""The ``cpu`` backend: a fused selective scan compiled with numba.

Forward and backward are single parallel kernels. Each task takes a block of ``lanes`` channels
(8 to 64, see :func:`_lanes_for`) of one batch element and walks the sequence in chunks of
``_CHUNK`` positions. A chunk of ``delta`` and ``u`` is transposed into small (position, lane)
tiles, so every inner loop runs over the lanes: contiguous, independent and vectorised by LLVM
(with a branch-free ``exp``, :func:`_fast_exp`). The recurrence then keeps the whole block's
state, (d_state, lanes), in a local buffer, and the output ``C h`` accumulates per lane with no
horizontal sums. Element-wise work along the sequence (the gate, the softplus' derivative) runs on
contiguous rows. The hot loops live in separate small functions: that lets LLVM vectorise them
with cheap runtime alias checks, which it does not do once they are inlined into the parallel loop.

The forward pass never materialises a (batch, dim, L, d_state) tensor; for the backward pass it
keeps only the state at chunk boundaries, and the backward kernel recomputes each chunk from its
boundary state before running the adjoint recurrence in reverse. Gradients of ``B`` and ``C``
(shared by all channels) are summed per group of channel blocks into per-group buffers, so no two
threads write the same memory.

Everything is computed in float32 (like mamba_ssm's state); inputs of other dtypes are cast, and
results and gradients come back in each input's dtype. ``error_model="numpy"`` keeps divisions free
of Python's zero-division check, which would otherwise stop the loops from vectorising.
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

_CHUNK = 128  # positions per chunk; also the spacing of the states kept for the backward pass

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


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _fast_exp(x):
    """float32 exp with no branch or libm call, so loops over it vectorise (about 4 ulp)."""
    x = min(max(x, _EXP_MIN), _EXP_MAX)
    k = np.floor(x * _LOG2E + _HALF)
    r = x - k * _LN2_HI - k * _LN2_LO  # |r| <= ln(2) / 2
    poly = _ONE + r * (_ONE + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * _C6)))))
    return poly * _float_from_bits((np.int32(k) + 127) << 23)


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _log1p_unit(e):
    """log(1 + e) for e in [0, 1] as 2 atanh(e / (2 + e)) by its odd series (about 1e-7 relative)."""
    s = e / (_F(2.0) + e)  # s in [0, 1/3]
    s2 = s * s
    series = _ONE + s2 * (
        _F(1 / 3) + s2 * (_F(1 / 5) + s2 * (_F(1 / 7) + s2 * (_F(1 / 9) + s2 * (_F(1 / 11) + s2 * _F(1 / 13)))))
    )
    return _F(2.0) * s * series


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _softplus(raw):
    """softplus(raw) = max(raw, 0) + log(1 + exp(-|raw|)), branch-free (vectorisable)."""
    return max(raw, _F(0.0)) + _log1p_unit(_fast_exp(-abs(raw)))


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _sigmoid(x):
    return _ONE / (_ONE + _fast_exp(-x))


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _gate(y_row, z_row, has_z, out_row):
    """out_row = y_row * silu(z_row), or y_row without a gate (one vector loop)."""
    if has_z:
        for k in range(out_row.shape[0]):
            out_row[k] = y_row[k] * z_row[k] * _sigmoid(z_row[k])
    else:
        for k in range(out_row.shape[0]):
            out_row[k] = y_row[k]


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _load_tile(u, delta, b, d0, width, t0, steps, dts, xs):
    """Transpose positions t0..t0+steps-1 of channels d0..d0+width-1 of delta and u into (position, lane)
    tiles. Lanes at or beyond ``width`` are left untouched: callers keep ``xs`` zero there."""
    for w in range(width):
        for k in range(steps):
            dts[k, w] = delta[b, d0 + w, t0 + k]
            xs[k, w] = u[b, d0 + w, t0 + k]


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _tile_time_steps(dts, xs, bias_lanes, softplus, steps, drives):
    """In place: dts = softplus(dts + bias) (or dts + bias); and drives = dts * xs (vectorised over lanes).

    Padded lanes (zero A and x) get a time step but no drive and a decay of 1: their state stays zero.
    """
    lanes = bias_lanes.shape[0]
    for k in range(steps):
        for w in range(lanes):
            raw = dts[k, w] + bias_lanes[w]
            dt = _softplus(raw) if softplus else raw
            dts[k, w] = dt
            drives[k, w] = dt * xs[k, w]


@numba.njit(inline="always")
def _lane_params(A, D, delta_bias, block, lanes):
    """First channel and number of real lanes of the ``block``-th block of channels; its A transposed to
    (d_state, lanes), D and delta_bias as lanes (padded lanes are zero)."""
    n_dim, d_state = A.shape
    d0 = block * lanes
    width = min(lanes, n_dim - d0)
    a_lanes = np.zeros((d_state, lanes), dtype=np.float32)
    d_lanes = np.zeros(lanes, dtype=np.float32)
    bias_lanes = np.zeros(lanes, dtype=np.float32)
    for w in range(width):
        d_lanes[w] = D[d0 + w]
        bias_lanes[w] = delta_bias[d0 + w]
        for n in range(d_state):
            a_lanes[n, w] = A[d0 + w, n]
    return d0, width, a_lanes, d_lanes, bias_lanes


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _chunk_states(dts, xs, drives, a_lanes, d_lanes, Bt_b, Ct_b, t0, steps, states, decays, ys, keep):
    """Run the recurrence through one chunk: ys[k] = C h + D x at position t0 + k, per lane.

    states[0] (d_state, lanes) is the state before the chunk. With ``keep`` (1), states[k + 1] and
    decays[k] receive the state after and the decay at position t0 + k, for the backward pass; with
    ``keep`` = 0 (forward only), states[0] is advanced in place and decays[0] is scratch.
    """
    d_state, lanes = a_lanes.shape
    for k in range(steps):
        for w in range(lanes):
            ys[k, w] = d_lanes[w] * xs[k, w]
        for n in range(d_state):
            b_n = Bt_b[t0 + k, n]
            c_n = Ct_b[t0 + k, n]
            for w in range(lanes):
                decay = _fast_exp(dts[k, w] * a_lanes[n, w])
                s = decay * states[k * keep, n, w] + drives[k, w] * b_n
                decays[k * keep, n, w] = decay
                states[(k + 1) * keep, n, w] = s
                ys[k, w] += c_n * s


@numba.njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def _scan_forward(u, delta, A, Bt, Ct, D, z, delta_bias, softplus, has_z, lanes, out, boundary, store):
    """out[b, d, t] = gated scan output; boundary[b, d, c] = state before position c * _CHUNK.

    u, delta, z, out: (b, d, l); A: (d, n); Bt, Ct: (b, l, n); D, delta_bias: (d,);
    boundary: (b, d, ceil(l / _CHUNK), n), written only when ``store``. All float32.
    Each task runs ``lanes`` channels side by side, so the inner loops are one vector wide.
    """
    n_batch, n_dim, length = u.shape
    d_state = A.shape[1]
    n_blocks = (n_dim + lanes - 1) // lanes
    for task in numba.prange(n_batch * n_blocks):
        b = task // n_blocks
        d0, width, a_lanes, d_lanes, bias_lanes = _lane_params(A, D, delta_bias, task % n_blocks, lanes)
        state = np.zeros((1, d_state, lanes), dtype=np.float32)
        decay_scratch = np.empty((1, d_state, lanes), dtype=np.float32)
        dts = np.zeros((_CHUNK, lanes), dtype=np.float32)
        xs = np.zeros((_CHUNK, lanes), dtype=np.float32)
        drives = np.zeros((_CHUNK, lanes), dtype=np.float32)
        ys = np.empty((_CHUNK, lanes), dtype=np.float32)
        row = np.empty(_CHUNK, dtype=np.float32)
        for t0 in range(0, length, _CHUNK):
            steps = min(length - t0, _CHUNK)
            if store:
                for w in range(width):
                    for n in range(d_state):
                        boundary[b, d0 + w, t0 // _CHUNK, n] = state[0, n, w]
            _load_tile(u, delta, b, d0, width, t0, steps, dts, xs)
            _tile_time_steps(dts, xs, bias_lanes, softplus, steps, drives)
            _chunk_states(dts, xs, drives, a_lanes, d_lanes, Bt[b], Ct[b], t0, steps, state, decay_scratch, ys, 0)
            t1 = t0 + steps
            for w in range(width):
                for k in range(steps):
                    row[k] = ys[k, w]
                _gate(row[:steps], z[b, d0 + w, t0:t1] if has_z else row[:0], has_z, out[b, d0 + w, t0:t1])


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _chunk_adjoint(
    dts,
    xs,
    drives,
    dys,
    a_lanes,
    d_lanes,
    Bt_b,
    Ct_b,
    t0,
    steps,
    states,
    decays,
    adjoint,
    dA_acc,
    dxs,
    ddts,
    dB_b,
    dC_b,
):
    """Run the adjoint state ``adjoint`` backwards through one chunk, given the output gradients ``dys``.

    Writes dxs, ddts (gradients of u and of the time steps, per position and lane); adds to dA_acc
    (d_state, lanes) and to dB_b, dC_b (positions, d_state), summed over the lanes.
    """
    d_state, lanes = a_lanes.shape
    for k in range(steps - 1, -1, -1):
        t = t0 + k
        for w in range(lanes):
            dxs[k, w] = dys[k, w] * d_lanes[w]
            ddts[k, w] = 0.0
        for n in range(d_state):
            b_n = Bt_b[t, n]
            c_n = Ct_b[t, n]
            db_sum = _F(0.0)
            dc_sum = _F(0.0)
            for w in range(lanes):
                dh = adjoint[n, w] + dys[k, w] * c_n
                decayed = decays[k, n, w] * states[k, n, w]
                dc_sum += dys[k, w] * states[k + 1, n, w]
                db_sum += dh * drives[k, w]
                ddts[k, w] += dh * (a_lanes[n, w] * decayed + xs[k, w] * b_n)
                dA_acc[n, w] += dh * dts[k, w] * decayed
                dxs[k, w] += dh * dts[k, w] * b_n
                adjoint[n, w] = dh * decays[k, n, w]
            dB_b[t, n] += db_sum
            dC_b[t, n] += dc_sum


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _gate_backward(y_row, z_row, grad_row, u_row, dz_row, dy_row):
    """Gradients through out = y * silu(z): dz_row for z and dy_row for y (one vector loop).

    Returns:
        sum(dy_row * u_row), this row's part of the gradient of D.
    """
    d_skip = _F(0.0)
    for k in range(y_row.shape[0]):
        gate = z_row[k]
        sig = _sigmoid(gate)
        dz_row[k] = grad_row[k] * y_row[k] * sig * (_ONE + gate * (_ONE - sig))
        dy = grad_row[k] * gate * sig
        dy_row[k] = dy
        d_skip += dy * u_row[k]
    return d_skip


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _time_steps_backward(delta_row, bias, softplus, dt_grad_row, ddelta_row):
    """ddelta_row = gradient of delta from the gradient of the time steps (softplus' = sigmoid).

    Returns:
        sum(ddelta_row), this row's part of the gradient of delta_bias.
    """
    total = _F(0.0)
    for k in range(dt_grad_row.shape[0]):
        grad = dt_grad_row[k] * _sigmoid(delta_row[k] + bias) if softplus else dt_grad_row[k]
        ddelta_row[k] = grad
        total += grad
    return total


@numba.njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def _scan_backward(
    u,
    delta,
    A,
    Bt,
    Ct,
    D,
    z,
    delta_bias,
    softplus,
    has_z,
    lanes,
    boundary,
    grad_out,
    n_groups,
    du,
    ddelta,
    dz,
    dA_rows,
    dD_rows,
    dbias_rows,
    dB_groups,
    dC_groups,
):
    """Adjoint of :func:`_scan_forward`.

    Writes du, ddelta, dz: (b, d, l); dA_rows: (b, d, n); dD_rows, dbias_rows: (b, d);
    dB_groups, dC_groups: (n_groups, b, l, n) partial sums over each group's channels.
    """
    n_batch, n_dim, length = u.shape
    d_state = A.shape[1]
    n_blocks = (n_dim + lanes - 1) // lanes
    per_group = (n_blocks + n_groups - 1) // n_groups
    n_chunks = (length + _CHUNK - 1) // _CHUNK
    for task in numba.prange(n_batch * n_groups):
        b = task // n_groups
        group = task % n_groups
        dts = np.zeros((_CHUNK, lanes), dtype=np.float32)
        xs = np.zeros((_CHUNK, lanes), dtype=np.float32)
        drives = np.zeros((_CHUNK, lanes), dtype=np.float32)
        dys = np.zeros((_CHUNK, lanes), dtype=np.float32)
        dxs = np.empty((_CHUNK, lanes), dtype=np.float32)
        ddts = np.empty((_CHUNK, lanes), dtype=np.float32)
        ys = np.empty((_CHUNK, lanes), dtype=np.float32)
        row = np.empty(_CHUNK, dtype=np.float32)
        row2 = np.empty(_CHUNK, dtype=np.float32)
        decays = np.empty((_CHUNK, d_state, lanes), dtype=np.float32)
        states = np.empty((_CHUNK + 1, d_state, lanes), dtype=np.float32)  # states[k]: before t0 + k
        adjoint = np.empty((d_state, lanes), dtype=np.float32)  # dL/d state, carried backwards
        dA_acc = np.empty((d_state, lanes), dtype=np.float32)
        dB_g = dB_groups[group, b]
        dC_g = dC_groups[group, b]
        for block in range(group * per_group, min(n_blocks, (group + 1) * per_group)):
            d0, width, a_lanes, d_lanes, bias_lanes = _lane_params(A, D, delta_bias, block, lanes)
            adjoint[:] = 0.0
            dA_acc[:] = 0.0
            xs[:] = 0.0  # lanes past ``width`` must carry no input and no gradient (see _tile_time_steps)
            dys[:] = 0.0
            dD_acc = np.zeros(lanes, dtype=np.float32)
            dbias_acc = np.zeros(lanes, dtype=np.float32)
            for c in range(n_chunks - 1, -1, -1):
                t0 = c * _CHUNK
                steps = min(length - t0, _CHUNK)
                _load_tile(u, delta, b, d0, width, t0, steps, dts, xs)
                _tile_time_steps(dts, xs, bias_lanes, softplus, steps, drives)
                states[0] = 0.0
                for w in range(width):
                    for n in range(d_state):
                        states[0, n, w] = boundary[b, d0 + w, c, n]
                _chunk_states(dts, xs, drives, a_lanes, d_lanes, Bt[b], Ct[b], t0, steps, states, decays, ys, 1)
                t1 = t0 + steps
                for w in range(width):  # the output gradient dy, through the gate
                    if has_z:
                        for k in range(steps):
                            row[k] = ys[k, w]
                        dD_acc[w] += _gate_backward(
                            row[:steps],
                            z[b, d0 + w, t0:t1],
                            grad_out[b, d0 + w, t0:t1],
                            u[b, d0 + w, t0:t1],
                            dz[b, d0 + w, t0:t1],
                            row2[:steps],
                        )
                        for k in range(steps):
                            dys[k, w] = row2[k]
                    else:
                        for k in range(steps):
                            g = grad_out[b, d0 + w, t0 + k]
                            dys[k, w] = g
                            dD_acc[w] += g * u[b, d0 + w, t0 + k]
                _chunk_adjoint(
                    dts,
                    xs,
                    drives,
                    dys,
                    a_lanes,
                    d_lanes,
                    Bt[b],
                    Ct[b],
                    t0,
                    steps,
                    states,
                    decays,
                    adjoint,
                    dA_acc,
                    dxs,
                    ddts,
                    dB_g,
                    dC_g,
                )
                for w in range(width):
                    for k in range(steps):
                        row[k] = ddts[k, w]
                        du[b, d0 + w, t0 + k] = dxs[k, w]
                    dbias_acc[w] += _time_steps_backward(
                        delta[b, d0 + w, t0:t1], bias_lanes[w], softplus, row[:steps], ddelta[b, d0 + w, t0:t1]
                    )
            for w in range(width):
                for n in range(d_state):
                    dA_rows[b, d0 + w, n] = dA_acc[n, w]
                dD_rows[b, d0 + w] = dD_acc[w]
                dbias_rows[b, d0 + w] = dbias_acc[w]


def _as_array(tensor: torch.Tensor | None, shape_if_absent: tuple[int, ...]) -> np.ndarray:
    """A contiguous float32 numpy array of ``tensor``, or zeros of ``shape_if_absent`` when it is None."""
    if tensor is None:
        return np.zeros(shape_if_absent, dtype=np.float32)
    return tensor.detach().to(torch.float32).contiguous().numpy()


def _to_tensor(array: np.ndarray, like: torch.Tensor | None) -> torch.Tensor | None:
    """``array`` as a tensor in the dtype of ``like`` (None when ``like`` is None)."""
    return None if like is None else torch.from_numpy(array).to(like.dtype)


def _lanes_for(n_batch: int, n_dim: int, n_threads: int) -> int:
    """Channels per task: the width that gives the busiest thread the fewest lanes to run (padding
    included), and the widest among those (longer vector loops run faster)."""

    def busiest_thread(lanes: int) -> int:
        return -(-n_batch * -(-n_dim // lanes) // n_threads) * lanes

    return min((64, 32, 16, 8), key=lambda lanes: (busiest_thread(lanes), -lanes))


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
        lanes = _lanes_for(n_batch, n_dim, numba.get_num_threads())
        _scan_forward(*arrays, bool(delta_softplus), z is not None, lanes, out, boundary, store)
        if store:
            ctx.arrays = arrays
            ctx.boundary = boundary
            ctx.softplus = bool(delta_softplus)
            ctx.lanes = lanes
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
        lanes = ctx.lanes
        n_groups = max(1, min(-(-n_dim // lanes), 2 * numba.get_num_threads()))
        du = np.empty_like(u)
        ddelta = np.empty_like(u)
        dz = np.zeros_like(u) if has_z else np.zeros((1, 1, 1), dtype=np.float32)
        dA_rows = np.empty((n_batch, n_dim, d_state), dtype=np.float32)
        dD_rows = np.empty((n_batch, n_dim), dtype=np.float32)
        dbias_rows = np.empty((n_batch, n_dim), dtype=np.float32)
        dB_groups = np.zeros((n_groups, n_batch, length, d_state), dtype=np.float32)
        dC_groups = np.zeros((n_groups, n_batch, length, d_state), dtype=np.float32)
        _scan_backward(
            *ctx.arrays,
            ctx.softplus,
            has_z,
            lanes,
            ctx.boundary,
            _as_array(grad_out, ()),
            n_groups,
            du,
            ddelta,
            dz,
            dA_rows,
            dD_rows,
            dbias_rows,
            dB_groups,
            dC_groups,
        )
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
