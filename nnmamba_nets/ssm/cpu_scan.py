"""The ``cpu`` backend: fused selective scans compiled with numba.

Forward and backward are single parallel kernels. Each task takes a block of ``lanes`` channels
(8 to 64, see :func:`_lanes_for`) of one sequence and walks it in chunks of ``_CHUNK`` positions. A
chunk of every input is copied into small (position, lane) tiles (:func:`~.cpu_math.load_tile`), so
every inner loop runs over the lanes: contiguous, independent and vectorised by LLVM (with a
branch-free ``exp``). The recurrence keeps the whole block's state, (d_state, lanes), in a local
buffer, and the output ``C h`` accumulates per lane with no horizontal sums. The hot loops live in
separate small functions: that lets LLVM vectorise them with cheap runtime alias checks, which it
does not do once they are inlined into the parallel loop.

The kernels read their inputs in place, in the logical order ``(sequence, position, channel)``
whatever the memory layout: mamba_ssm's channel-major ``(batch, dim, L)`` tensors are passed as
transposed views, the fused mixer (:mod:`.cpu_mixer`) passes token-major ones, whose tiles are
plain copies. Beyond :func:`~nnmamba_nets.ssm.selective_scan`'s semantics they can

* run a sequence backwards (``directions=2``: sequence ``2 p + 1`` is the reversed twin of
  ``2 p``; its outputs land at the original positions) and add the two directions before the
  gate, which is shared: the token-flipped views of the nnMamba mixer without a flipped copy;
* compute the time steps from a low-rank projection inside the kernel
  (``delta = dtlow @ w_dt``, so the (b, d, l) ``delta`` is never materialised);
* read and write bfloat16 (as bits) while computing in float32.

The forward pass never materialises a (batch, dim, L, d_state) tensor; for the backward pass it
keeps only the state at chunk boundaries (and the ungated output), and the backward kernel
recomputes each chunk from its boundary state before running the adjoint recurrence in reverse.
Gradients of ``B``, ``C`` and the low-rank time steps (shared by all channels) are summed per
group of channel blocks into per-group buffers, so no two threads write the same memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch

from .cpu_math import (
    fast_exp,
    kernel_array,
    load_tile,
    new_kernel_tensor,
    prefer_wide_vectors,
    sigmoid,
    silu,
    silu_grad,
    softplus,
    store_tile,
)
from .reference import check_scan_inputs

__all__ = ["ScanProblem", "selective_scan_cpu"]

_CHUNK = 128  # positions per chunk; also the spacing of the states kept for the backward pass
_ONE = np.float32(1.0)


@numba.njit(inline="always")
def _lane_params(A, D, delta_bias, w_dt, block, lanes):
    """First channel and number of real lanes of the ``block``-th block of channels; its A transposed to
    (d_state, lanes), D, delta_bias and the time-step projection w_dt (rank, lanes) as lanes (padded lanes
    are zero, so their state stays zero)."""
    n_dim, d_state = A.shape
    rank = w_dt.shape[0]
    d0 = block * lanes
    width = min(lanes, n_dim - d0)
    a_lanes = np.zeros((d_state, lanes), dtype=np.float32)
    d_lanes = np.zeros(lanes, dtype=np.float32)
    bias_lanes = np.zeros(lanes, dtype=np.float32)
    wdt_lanes = np.zeros((rank, lanes), dtype=np.float32)
    for w in range(width):
        d_lanes[w] = D[d0 + w]
        bias_lanes[w] = delta_bias[d0 + w]
        for n in range(d_state):
            a_lanes[n, w] = A[d0 + w, n]
        for j in range(rank):
            wdt_lanes[j, w] = w_dt[j, d0 + w]
    return d0, width, a_lanes, d_lanes, bias_lanes, wdt_lanes


@numba.njit(inline="always")
def _load_inputs(u, delta, proj, seq, t_first, steps, reverse, d0, width, rank, d_state, xs, raws, lows, bs, cs):
    """Tiles of one chunk: xs from u, raws from delta (rank 0: no projection) or lows = the ``rank`` low-rank
    time steps, bs and cs from B and C, which follow the low-rank part in ``proj``."""
    load_tile(u, seq, t_first, steps, reverse, d0, width, xs)
    if rank == 0:
        load_tile(delta, seq, t_first, steps, reverse, d0, width, raws)
    else:
        load_tile(proj, seq, t_first, steps, reverse, 0, rank, lows)
    load_tile(proj, seq, t_first, steps, reverse, rank, d_state, bs)
    load_tile(proj, seq, t_first, steps, reverse, rank + d_state, d_state, cs)


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _time_steps(raws, lows, wdt_lanes, bias_lanes, xs, use_softplus, steps, dts, drives):
    """raws = delta_bias + (loaded delta, without a projection) + lows @ wdt: the raw time steps (kept for the
    backward pass); dts = softplus(raws) or raws; drives = dts * xs (vectorised over lanes)."""
    prefer_wide_vectors()
    lanes = bias_lanes.shape[0]
    rank = wdt_lanes.shape[0]
    keep = _ONE if rank == 0 else np.float32(0.0)
    for k in range(steps):
        for w in range(lanes):
            raws[k, w] = bias_lanes[w] + keep * raws[k, w]
        for j in range(rank):
            low = lows[k, j]
            for w in range(lanes):
                raws[k, w] += low * wdt_lanes[j, w]
        for w in range(lanes):
            dt = softplus(raws[k, w]) if use_softplus else raws[k, w]
            dts[k, w] = dt
            drives[k, w] = dt * xs[k, w]


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _chunk_states(dts, xs, drives, a_lanes, d_lanes, bs, cs, steps, states, decays, ys, keep):
    """Run the recurrence through one chunk: ys[k] = C h + D x at its k-th position, per lane.

    states[0] (d_state, lanes) is the state before the chunk. With ``keep`` (1), states[k + 1] and
    decays[k] receive the state after and the decay at position k, for the backward pass; with
    ``keep`` 0 the state is updated in place in states[0] (decays[0] is scratch).
    """
    prefer_wide_vectors()
    d_state, lanes = a_lanes.shape
    for k in range(steps):
        for w in range(lanes):
            ys[k, w] = d_lanes[w] * xs[k, w]
        for n in range(d_state):
            b_n = bs[k, n]
            c_n = cs[k, n]
            for w in range(lanes):
                decay = fast_exp(dts[k, w] * a_lanes[n, w])
                s = decay * states[k * keep, n, w] + drives[k, w] * b_n
                decays[k * keep, n, w] = decay
                states[(k + 1) * keep, n, w] = s
                ys[k, w] += c_n * s


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _add_tile(tile, other, steps):
    """tile += other on the first ``steps`` positions."""
    prefer_wide_vectors()
    for k in range(steps):
        for w in range(tile.shape[1]):
            tile[k, w] += other[k, w]


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _gate_tile(tile, zs, steps):
    """tile *= silu(zs) on the first ``steps`` positions."""
    prefer_wide_vectors()
    for k in range(steps):
        for w in range(tile.shape[1]):
            tile[k, w] *= silu(zs[k, w])


@numba.njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def _scan_forward(u, delta, proj, z, A, D, delta_bias, w_dt, layout, use_softplus, lanes, out, ysum, boundary, store):
    """out = gated sum over directions of the scans; boundary = states before each chunk (when ``store``).

    u: (S, l, d); delta: (S, l, d), or empty when the time steps come from ``proj``; proj: (S, l, rank +
    2 n), the low-rank time steps (rank = w_dt.shape[0], 0 without a projection) then B then C; z: (b, l,
    *) gates, or empty; out, ysum: (b, l, O * d). A: (d, n); D, delta_bias: (d,); w_dt: (rank, d).
    ``layout`` = (O, R, z_col0, z_col_step): sequence s = (batch * O + o) * R + r; with R = 2, r = 1 runs
    from the last position to the first. Pair (batch, o) writes out columns o * d.. and is gated by z
    columns z_col0 + o * z_col_step... With R = 2 each task keeps the first direction's (l, lanes) output
    in a scratch buffer of its own (below the size where malloc maps fresh pages). When ``store``, ysum
    receives the ungated sum and boundary (S, n_chunks, n, d) the states, in scan order, for the backward
    pass. float32 maths throughout.
    """
    n_seq, length, n_dim = u.shape
    n_orient, n_dir, z_col0, z_col_step = layout
    d_state = A.shape[1]
    rank = w_dt.shape[0]
    has_z = z.shape[0] > 0
    n_blocks = (n_dim + lanes - 1) // lanes
    n_chunks = (length + _CHUNK - 1) // _CHUNK
    for task in numba.prange(n_seq // n_dir * n_blocks):
        pair = task // n_blocks
        batch = pair // n_orient
        o = pair % n_orient
        block = task % n_blocks
        d0, width, a_lanes, d_lanes, bias_lanes, wdt_lanes = _lane_params(A, D, delta_bias, w_dt, block, lanes)
        state = np.zeros((1, d_state, lanes), dtype=np.float32)
        decay_scratch = np.empty((1, d_state, lanes), dtype=np.float32)
        xs = np.zeros((_CHUNK, lanes), dtype=np.float32)
        raws = np.zeros((_CHUNK, lanes), dtype=np.float32)
        dts = np.empty((_CHUNK, lanes), dtype=np.float32)
        drives = np.empty((_CHUNK, lanes), dtype=np.float32)
        ys = np.empty((_CHUNK, lanes), dtype=np.float32)
        other = np.zeros((_CHUNK, lanes), dtype=np.float32)
        lows = np.empty((_CHUNK, max(1, rank)), dtype=np.float32)
        bs = np.empty((_CHUNK, d_state), dtype=np.float32)
        cs = np.empty((_CHUNK, d_state), dtype=np.float32)
        first = np.empty((1, length if n_dir > 1 else 0, lanes), dtype=np.float32)  # first direction's ys
        out_col = o * n_dim + d0
        for r in range(n_dir):
            seq = pair * n_dir + r
            reverse = r == 1
            state[:] = 0.0
            for c in range(n_chunks):
                steps = min(length - c * _CHUNK, _CHUNK)
                t_first = length - 1 - c * _CHUNK if reverse else c * _CHUNK
                if store:
                    boundary[seq, c, :, d0 : d0 + width] = state[0, :, :width]
                _load_inputs(
                    u, delta, proj, seq, t_first, steps, reverse, d0, width, rank, d_state, xs, raws, lows, bs, cs
                )
                _time_steps(raws, lows, wdt_lanes, bias_lanes, xs, use_softplus, steps, dts, drives)
                _chunk_states(dts, xs, drives, a_lanes, d_lanes, bs, cs, steps, state, decay_scratch, ys, 0)
                if r + 1 < n_dir:
                    store_tile(ys, 0, t_first, steps, reverse, 0, lanes, first)
                    continue
                if n_dir > 1:
                    load_tile(first, 0, t_first, steps, reverse, 0, lanes, other)
                    _add_tile(ys, other, steps)
                if store:
                    store_tile(ys, batch, t_first, steps, reverse, out_col, width, ysum)
                if has_z:
                    load_tile(z, batch, t_first, steps, reverse, z_col0 + o * z_col_step + d0, width, other)
                    _gate_tile(ys, other, steps)
                store_tile(ys, batch, t_first, steps, reverse, out_col, width, out)


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _chunk_adjoint(
    dts, xs, drives, dys, a_lanes, d_lanes, bs, cs, steps, states, decays, adjoint, dA_acc, dxs, ddts, dbs, dcs
):
    """Run the adjoint state ``adjoint`` backwards through one chunk, given the output gradients ``dys``.

    Writes dxs, ddts (gradients of x and of the time steps, per position and lane) and dbs, dcs (per
    position and state, summed over the lanes); adds to dA_acc (d_state, lanes).
    """
    prefer_wide_vectors()
    d_state, lanes = a_lanes.shape
    for k in range(steps - 1, -1, -1):
        for w in range(lanes):
            dxs[k, w] = dys[k, w] * d_lanes[w]
            ddts[k, w] = 0.0
        for n in range(d_state):
            b_n = bs[k, n]
            c_n = cs[k, n]
            db_sum = np.float32(0.0)
            dc_sum = np.float32(0.0)
            for w in range(lanes):
                dh = adjoint[n, w] + dys[k, w] * c_n
                decayed = decays[k, n, w] * states[k, n, w]
                dc_sum += dys[k, w] * states[k + 1, n, w]
                db_sum += dh * drives[k, w]
                ddts[k, w] += dh * (a_lanes[n, w] * decayed + xs[k, w] * b_n)
                dA_acc[n, w] += dh * dts[k, w] * decayed
                dxs[k, w] += dh * dts[k, w] * b_n
                adjoint[n, w] = dh * decays[k, n, w]
            dbs[k, n] = db_sum
            dcs[k, n] = dc_sum


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _gate_backward_tile(gs, ytotal, zs, has_z, xs, steps, dzs, d_acc):
    """Gradients through out = ytotal * silu(z): dzs for z (when ``has_z``) and, in place, gs becomes the
    gradient of ytotal; adds sum_k gs * xs (the gradient of D) to d_acc."""
    prefer_wide_vectors()
    for k in range(steps):
        for w in range(gs.shape[1]):
            if has_z:
                dzs[k, w] = gs[k, w] * ytotal[k, w] * silu_grad(zs[k, w])
                gs[k, w] *= silu(zs[k, w])
            d_acc[w] += gs[k, w] * xs[k, w]


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _time_step_grads(ddts, raws, lows, wdt_lanes, use_softplus, steps, dbias_acc, dwdt_acc, dlows):
    """In place: ddts becomes the gradient of the raw time steps (softplus' = sigmoid); adds it to dbias_acc
    and, with a projection, its products with lows to dwdt_acc (rank, lanes) and writes dlows[k, j] =
    sum_w ddts[k, w] wdt[j, w], the gradient of the low-rank time steps."""
    prefer_wide_vectors()
    lanes = ddts.shape[1]
    for k in range(steps):
        for w in range(lanes):
            grad = ddts[k, w] * sigmoid(raws[k, w]) if use_softplus else ddts[k, w]
            ddts[k, w] = grad
            dbias_acc[w] += grad
        for j in range(wdt_lanes.shape[0]):
            low = lows[k, j]
            total = np.float32(0.0)
            for w in range(lanes):
                dwdt_acc[j, w] += ddts[k, w] * low
                total += ddts[k, w] * wdt_lanes[j, w]
            dlows[k, j] = total


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _accumulate_tile(tile, seq, t_first, steps, reverse, c0, width, dst):
    """dst[seq, t_k, c0 + w] += tile[k, w] (dst float32, channels contiguous; see load_tile)."""
    prefer_wide_vectors()
    step = -1 if reverse else 1
    for k in range(steps):
        row, values = dst[seq, t_first + step * k, c0 : c0 + width], tile[k]
        for w in range(width):
            row[w] += values[w]


@numba.njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def _scan_backward(
    u,
    delta,
    proj,
    z,
    A,
    D,
    delta_bias,
    w_dt,
    layout,
    use_softplus,
    lanes,
    ysum,
    boundary,
    grad_out,
    n_groups,
    du,
    ddelta,
    dz,
    dA_rows,
    dD_rows,
    dbias_rows,
    dwdt_rows,
    dproj_groups,
):
    """Adjoint of :func:`_scan_forward` (same arguments; float32 arrays).

    grad_out: (b, l, O * d). Writes du (S, l, d); ddelta (S, l, d) without a projection; dz's gate columns
    (shape of z) when z is given; dA_rows (S, d, n); dD_rows, dbias_rows (S, d); dwdt_rows (S, rank, d);
    dproj_groups (n_groups, S, l, rank + 2 n): partial sums over each group's channels (zero on entry).
    """
    n_seq, length, n_dim = u.shape
    n_orient, n_dir, z_col0, z_col_step = layout
    d_state = A.shape[1]
    rank = w_dt.shape[0]
    has_z = z.shape[0] > 0
    n_blocks = (n_dim + lanes - 1) // lanes
    per_group = (n_blocks + n_groups - 1) // n_groups
    n_chunks = (length + _CHUNK - 1) // _CHUNK
    for task in numba.prange(n_seq * n_groups):
        seq = task // n_groups
        group = task % n_groups
        pair = seq // n_dir
        batch = pair // n_orient
        o = pair % n_orient
        reverse = seq % n_dir == 1
        xs = np.zeros((_CHUNK, lanes), dtype=np.float32)
        raws = np.zeros((_CHUNK, lanes), dtype=np.float32)
        dts = np.empty((_CHUNK, lanes), dtype=np.float32)
        drives = np.empty((_CHUNK, lanes), dtype=np.float32)
        ys = np.empty((_CHUNK, lanes), dtype=np.float32)
        gs = np.zeros((_CHUNK, lanes), dtype=np.float32)
        zs = np.zeros((_CHUNK, lanes), dtype=np.float32)
        ytotal = np.zeros((_CHUNK, lanes), dtype=np.float32)
        dzs = np.empty((_CHUNK, lanes), dtype=np.float32)
        dxs = np.empty((_CHUNK, lanes), dtype=np.float32)
        ddts = np.empty((_CHUNK, lanes), dtype=np.float32)
        lows = np.empty((_CHUNK, max(1, rank)), dtype=np.float32)
        dlows = np.empty((_CHUNK, max(1, rank)), dtype=np.float32)
        bs = np.empty((_CHUNK, d_state), dtype=np.float32)
        cs = np.empty((_CHUNK, d_state), dtype=np.float32)
        dbs = np.empty((_CHUNK, d_state), dtype=np.float32)
        dcs = np.empty((_CHUNK, d_state), dtype=np.float32)
        decays = np.empty((_CHUNK, d_state, lanes), dtype=np.float32)
        states = np.empty((_CHUNK + 1, d_state, lanes), dtype=np.float32)  # states[k]: before position k
        adjoint = np.empty((d_state, lanes), dtype=np.float32)  # dL/d state, carried backwards
        dA_acc = np.empty((d_state, lanes), dtype=np.float32)
        dwdt_acc = np.empty((rank, lanes), dtype=np.float32)
        dproj_g = dproj_groups[group]
        for block in range(group * per_group, min(n_blocks, (group + 1) * per_group)):
            d0, width, a_lanes, d_lanes, bias_lanes, wdt_lanes = _lane_params(A, D, delta_bias, w_dt, block, lanes)
            out_col = o * n_dim + d0
            z_col = z_col0 + o * z_col_step + d0
            adjoint[:] = 0.0
            dA_acc[:] = 0.0
            dwdt_acc[:] = 0.0
            xs[:] = 0.0  # lanes past ``width`` must carry no input and no gradient (see _lane_params)
            gs[:] = 0.0
            dD_acc = np.zeros(lanes, dtype=np.float32)
            dbias_acc = np.zeros(lanes, dtype=np.float32)
            for c in range(n_chunks - 1, -1, -1):
                steps = min(length - c * _CHUNK, _CHUNK)
                t_first = length - 1 - c * _CHUNK if reverse else c * _CHUNK
                _load_inputs(
                    u, delta, proj, seq, t_first, steps, reverse, d0, width, rank, d_state, xs, raws, lows, bs, cs
                )
                _time_steps(raws, lows, wdt_lanes, bias_lanes, xs, use_softplus, steps, dts, drives)
                states[0] = 0.0
                states[0, :, :width] = boundary[seq, c, :, d0 : d0 + width]
                _chunk_states(dts, xs, drives, a_lanes, d_lanes, bs, cs, steps, states, decays, ys, 1)
                load_tile(grad_out, batch, t_first, steps, reverse, out_col, width, gs)
                if has_z:
                    load_tile(z, batch, t_first, steps, reverse, z_col, width, zs)
                    load_tile(ysum, batch, t_first, steps, reverse, out_col, width, ytotal)
                _gate_backward_tile(gs, ytotal, zs, has_z, xs, steps, dzs, dD_acc)
                if has_z and not reverse:  # one direction writes the gate's gradient
                    store_tile(dzs, batch, t_first, steps, reverse, z_col, width, dz)
                _chunk_adjoint(
                    dts,
                    xs,
                    drives,
                    gs,
                    a_lanes,
                    d_lanes,
                    bs,
                    cs,
                    steps,
                    states,
                    decays,
                    adjoint,
                    dA_acc,
                    dxs,
                    ddts,
                    dbs,
                    dcs,
                )
                store_tile(dxs, seq, t_first, steps, reverse, d0, width, du)
                _time_step_grads(ddts, raws, lows, wdt_lanes, use_softplus, steps, dbias_acc, dwdt_acc, dlows)
                if rank == 0:
                    store_tile(ddts, seq, t_first, steps, reverse, d0, width, ddelta)
                else:
                    _accumulate_tile(dlows, seq, t_first, steps, reverse, 0, rank, dproj_g)
                _accumulate_tile(dbs, seq, t_first, steps, reverse, rank, d_state, dproj_g)
                _accumulate_tile(dcs, seq, t_first, steps, reverse, rank + d_state, d_state, dproj_g)
            for w in range(width):
                for n in range(d_state):
                    dA_rows[seq, d0 + w, n] = dA_acc[n, w]
                for j in range(rank):
                    dwdt_rows[seq, j, d0 + w] = dwdt_acc[j, w]
                dD_rows[seq, d0 + w] = dD_acc[w]
                dbias_rows[seq, d0 + w] = dbias_acc[w]


def _lanes_for(n_tasks: int, n_dim: int, n_threads: int) -> int:
    """Channels per task: the width that gives the busiest thread the fewest lanes to run (padding
    included), and the widest among those (longer vector loops run faster)."""

    def busiest_thread(lanes: int) -> int:
        return -(-n_tasks * -(-n_dim // lanes) // n_threads) * lanes

    return min((64, 32, 16, 8), key=lambda lanes: (busiest_thread(lanes), -lanes))


_EMPTY = np.zeros((0, 0, 0), dtype=np.float32)


@dataclass
class ScanProblem:
    """The arrays of one fused scan in the kernels' logical layout (see :func:`_scan_forward`).

    Attributes:
        u: (S, l, d) inputs; S = batch * orientations * directions sequences.
        delta: (S, l, d) time steps, or empty when ``proj`` holds low-rank ones.
        proj: (S, l, rank + 2 d_state): low-rank time steps (rank = ``w_dt.shape[0]``), B, C.
        z: (batch, l, *) gates (columns set by ``layout``), or empty.
        A: (d, d_state) float32.
        D: (d,) float32.
        delta_bias: (d,) float32.
        w_dt: (rank, d) float32 projection of the low-rank time steps (rank 0: none).
        layout: (orientations, directions, z_col0, z_col_step).
        softplus: apply softplus to the raw time steps.
    """

    u: np.ndarray
    delta: np.ndarray
    proj: np.ndarray
    z: np.ndarray
    A: np.ndarray
    D: np.ndarray
    delta_bias: np.ndarray
    w_dt: np.ndarray
    layout: tuple[int, int, int, int]
    softplus: bool

    @property
    def n_pairs(self) -> int:
        return self.u.shape[0] // self.layout[1]

    def _common(self) -> tuple:
        return (self.u, self.delta, self.proj, self.z, self.A, self.D, self.delta_bias, self.w_dt, self.layout)

    def forward(self, out: np.ndarray, store: bool) -> tuple[np.ndarray, np.ndarray]:
        """Run the forward kernel into ``out`` (batch, l, O * d) of any strides and float dtype.

        Returns:
            The ungated output summed over directions and the chunk-boundary states, both float32,
            both needed by :meth:`backward` (empty placeholders unless ``store``).
        """
        n_seq, length, n_dim = self.u.shape
        d_state = self.A.shape[1]
        n_chunks = -(-length // _CHUNK)
        ysum = np.empty(out.shape if store else (1, 1, 1), dtype=np.float32)
        boundary = np.empty((n_seq, n_chunks, d_state, n_dim) if store else (1, 1, 1, 1), dtype=np.float32)
        lanes = _lanes_for(self.n_pairs, n_dim, numba.get_num_threads())
        _scan_forward(*self._common(), self.softplus, lanes, out, ysum, boundary, store)
        return ysum, boundary

    def backward(
        self,
        grad_out: np.ndarray,
        ysum: np.ndarray,
        boundary: np.ndarray,
        du: np.ndarray,
        ddelta: np.ndarray,
        dz: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Run the backward kernel (all arrays float32).

        Args:
            grad_out: (batch, l, O * d) gradient of the output.
            ysum: the ungated output kept by :meth:`forward`.
            boundary: the states kept by :meth:`forward`.
            du: (S, l, d) receives the gradient of u.
            ddelta: (S, l, d) receives the gradient of delta (without a projection; else empty).
            dz: receives the gradient of z in its gate columns (shape of z; empty without z).

        Returns:
            ``A``, ``D``, ``delta_bias``, ``w_dt`` and ``proj``: the gradients of those arrays.
        """
        n_seq, length, n_dim = self.u.shape
        d_state = self.A.shape[1]
        rank = self.w_dt.shape[0]
        lanes = _lanes_for(self.n_pairs, n_dim, numba.get_num_threads())
        n_groups = max(1, min(-(-n_dim // lanes), 2 * numba.get_num_threads()))
        dA_rows = np.empty((n_seq, n_dim, d_state), dtype=np.float32)
        dD_rows = np.empty((n_seq, n_dim), dtype=np.float32)
        dbias_rows = np.empty((n_seq, n_dim), dtype=np.float32)
        dwdt_rows = np.empty((n_seq, rank, n_dim), dtype=np.float32)
        dproj_groups = np.zeros((n_groups, n_seq, length, self.proj.shape[2]), dtype=np.float32)
        _scan_backward(
            *self._common(),
            self.softplus,
            lanes,
            ysum,
            boundary,
            grad_out,
            n_groups,
            du,
            ddelta,
            dz,
            dA_rows,
            dD_rows,
            dbias_rows,
            dwdt_rows,
            dproj_groups,
        )
        return {
            "A": dA_rows.sum(axis=0),
            "D": dD_rows.sum(axis=0),
            "delta_bias": dbias_rows.sum(axis=0),
            "w_dt": dwdt_rows.sum(axis=0),
            "proj": dproj_groups.sum(axis=0),
        }


def _params(tensor: torch.Tensor | None, shape_if_absent: tuple[int, ...]) -> np.ndarray:
    """A float32 array of a parameter-sized tensor, or zeros of ``shape_if_absent`` when it is None."""
    if tensor is None:
        return np.zeros(shape_if_absent, dtype=np.float32)
    return tensor.detach().to(torch.float32).contiguous().numpy()


def _channel_major(array: np.ndarray) -> np.ndarray:
    """(b, d, l) -> the kernels' (b, l, d) order, as a view."""
    return array.transpose(0, 2, 1)


def _scan_problem(u, delta, A, proj, D, z, delta_bias, softplus, as_float32) -> ScanProblem:
    """The :class:`ScanProblem` of mamba_ssm-layout tensors (u, delta, z: (b, d, l); proj: (b, 2 n, l))."""

    def view(tensor: torch.Tensor) -> np.ndarray:
        return _channel_major(kernel_array(tensor.float() if as_float32 else tensor))

    n_dim = u.shape[1]
    return ScanProblem(
        u=view(u),
        delta=view(delta),
        proj=view(proj),
        z=_EMPTY if z is None else view(z),
        A=_params(A, ()),
        D=_params(D, (n_dim,)),
        delta_bias=_params(delta_bias, (n_dim,)),
        w_dt=np.zeros((0, n_dim), dtype=np.float32),
        layout=(1, 1, 0, 0),
        softplus=bool(softplus),
    )


def _like(array: np.ndarray, like: torch.Tensor | None) -> torch.Tensor | None:
    """``array`` as a tensor in the dtype of ``like`` (None when ``like`` is None)."""
    return None if like is None else torch.from_numpy(np.ascontiguousarray(array)).to(like.dtype)


class _SelectiveScanCpu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):  # type: ignore[override]
        proj = torch.cat([B, C], dim=1)  # (b, 2 n, l)
        problem = _scan_problem(u, delta, A, proj, D, z, delta_bias, delta_softplus, as_float32=False)
        out, out_array = new_kernel_tensor(tuple(u.shape), u.dtype)  # (b, d, l)
        store = any(ctx.needs_input_grad)
        ysum, boundary = problem.forward(_channel_major(out_array), store)
        if store:
            ctx.save_for_backward(u, delta, A, proj, D, z, delta_bias)
            ctx.kept = (ysum, boundary)
            ctx.softplus = bool(delta_softplus)
            ctx.input_dtypes = tuple(None if t is None else torch.empty(0, dtype=t.dtype) for t in (B, C))
        return out.to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        u, delta, A, proj, D, z, delta_bias = ctx.saved_tensors
        problem = _scan_problem(u, delta, A, proj, D, z, delta_bias, ctx.softplus, as_float32=True)
        du, ddelta = (torch.empty(u.shape, dtype=torch.float32) for _ in range(2))  # (b, d, l)
        dz = None if z is None else torch.empty(z.shape, dtype=torch.float32)
        grads = problem.backward(
            _channel_major(kernel_array(grad_out.float())),
            *ctx.kept,
            _channel_major(du.numpy()),
            _channel_major(ddelta.numpy()),
            _EMPTY if dz is None else _channel_major(dz.numpy()),
        )
        del ctx.kept
        d_state = A.shape[1]
        dproj = grads["proj"].transpose(0, 2, 1)  # (b, 2 n, l)
        like_b, like_c = ctx.input_dtypes
        return (
            du.to(u.dtype),
            ddelta.to(delta.dtype),
            _like(grads["A"], A),
            _like(dproj[:, :d_state], like_b),
            _like(dproj[:, d_state:], like_c),
            _like(grads["D"], D),
            None if dz is None else dz.to(z.dtype),
            _like(grads["delta_bias"], delta_bias),
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

    Inputs are read in place (float32 and bfloat16 without a cast); the maths is float32.

    Returns:
        (batch, dim, L) tensor in the dtype of ``u``.

    Raises:
        ValueError: mismatched shapes, or tensors not on the CPU.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    if u.device.type != "cpu":
        raise ValueError(f"The cpu scan backend needs CPU tensors, got u on {u.device}.")
    return _SelectiveScanCpu.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
