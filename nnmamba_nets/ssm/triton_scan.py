"""The ``triton`` selective-scan backend: forward and backward Triton kernels, no CUDA build needed.

Each kernel program owns one batch element and ``BLOCK_D`` channels and walks the sequence in order,
holding the ``(BLOCK_D, d_state)`` state in registers (fp32 whatever the input dtype; ``d_state`` is
padded to a power of two and masked). The forward pass keeps only the state entering each chunk of
``chunk_size`` positions. The backward pass walks the chunks in reverse: it recomputes the states
inside a chunk from the kept boundary state into a small per-program scratch buffer, then runs the
adjoint recurrence ``g_t = dy_t C_t + exp(dt_{t+1} A) g_{t+1}`` backwards through the chunk. ``dB``
and ``dC`` sum over channels, so each program writes its channel block's partial sums and PyTorch
adds the blocks afterwards (no atomics, deterministic). Memory: O(batch * dim * L) for the inputs
and gradients, plus ``batch * dim * d_state * L / chunk_size`` boundary states and
``batch * dim * d_state * L / BLOCK_D`` partial sums for ``dB``/``dC``, never
O(batch * dim * L * d_state).

The kernels are compiled for the GPU when first launched. If ``TRITON_INTERPRET=1`` was set before
``triton`` was imported, they run in Triton's interpreter instead, also on CPU tensors (slow; used by
the CPU test suite).
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from .reference import check_scan_inputs

__all__ = ["selective_scan_triton"]


@triton.jit
def _time_step(delta_ptr, offsets, mask, delta_bias, DELTA_SOFTPLUS: tl.constexpr):
    """fp32 ``(dt, delta + delta_bias)`` at ``offsets``; ``dt = softplus(delta + delta_bias)`` if asked."""
    delta = tl.load(delta_ptr + offsets, mask=mask, other=0.0).to(tl.float32) + delta_bias
    if DELTA_SOFTPLUS:
        return tl.where(delta <= 20.0, tl.log(1.0 + tl.exp(delta)), delta), delta
    return delta, delta


@triton.jit
def _block_params(
    A_ptr,
    D_ptr,
    delta_bias_ptr,
    dim,
    d_state,
    HAS_D: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """This program's channel and state offsets and masks, and its fp32 ``A`` (BLOCK_D, BLOCK_N), ``D`` and
    ``delta_bias`` (BLOCK_D,) (zeros where absent or masked)."""
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_n = offs_n < d_state
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * d_state + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    D = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_D:
        D = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    delta_bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_DELTA_BIAS:
        delta_bias = tl.load(delta_bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    return offs_d, offs_n, mask_d, mask_n, mask_dn, A, D, delta_bias


@triton.jit
def _scan_fwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    delta_bias_ptr,  # inputs
    out_ptr,
    states_ptr,  # outputs: (b, dim, l) and (b, n_dim_blocks, n_chunks, BLOCK_D, BLOCK_N)
    dim,
    length,
    d_state,
    n_chunks,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    DELTA_SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d, offs_n, mask_d, mask_n, mask_dn, A, D, delta_bias = _block_params(
        A_ptr, D_ptr, delta_bias_ptr, dim, d_state, HAS_D, HAS_DELTA_BIAS, BLOCK_D, BLOCK_N
    )
    row = (pid_b * dim + offs_d) * length  # (BLOCK_D,) start of each channel's sequence
    bc_row = (pid_b * d_state + offs_n) * length  # (BLOCK_N,) start of each state's B/C sequence
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]  # (BLOCK_D, BLOCK_N) in a padded tile
    states_base = (pid_b * tl.num_programs(1) + pid_d) * n_chunks * (BLOCK_D * BLOCK_N)
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for chunk in range(n_chunks):
        if SAVE_STATES:
            tl.store(states_ptr + states_base + chunk * (BLOCK_D * BLOCK_N) + tile, h)
        start = chunk * CHUNK
        for t in range(start, tl.minimum(start + CHUNK, length)):
            u = tl.load(u_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
            dt, _ = _time_step(delta_ptr, row + t, mask_d, delta_bias, DELTA_SOFTPLUS)
            B = tl.load(B_ptr + bc_row + t, mask=mask_n, other=0.0).to(tl.float32)
            C = tl.load(C_ptr + bc_row + t, mask=mask_n, other=0.0).to(tl.float32)
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * B[None, :]
            y = tl.sum(h * C[None, :], axis=1)
            if HAS_D:
                y += D * u
            if HAS_Z:
                z = tl.load(z_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
                y *= z / (1.0 + tl.exp(-z))
            tl.store(out_ptr + row + t, y, mask=mask_d)


@triton.jit
def _scan_bwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    delta_bias_ptr,
    dout_ptr,
    states_ptr,  # inputs
    scratch_ptr,  # (b, n_dim_blocks, CHUNK, BLOCK_D, BLOCK_N) fp32 work space
    du_ptr,
    ddelta_ptr,
    dz_ptr,  # (b, dim, l) gradients
    dA_ptr,  # (b, dim, d_state) fp32 per-batch partial sums
    dB_ptr,
    dC_ptr,  # (b, n_dim_blocks, d_state, l) fp32 per-channel-block partial sums
    dD_ptr,
    ddelta_bias_ptr,  # (b, dim) fp32 per-batch partial sums
    dim,
    length,
    d_state,
    n_chunks,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    DELTA_SOFTPLUS: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    n_dim_blocks = tl.num_programs(1)
    offs_d, offs_n, mask_d, mask_n, mask_dn, A, D, delta_bias = _block_params(
        A_ptr, D_ptr, delta_bias_ptr, dim, d_state, HAS_D, HAS_DELTA_BIAS, BLOCK_D, BLOCK_N
    )
    dD = tl.zeros((BLOCK_D,), dtype=tl.float32)
    ddelta_bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    row = (pid_b * dim + offs_d) * length  # (BLOCK_D,)
    bc_row = (pid_b * d_state + offs_n) * length  # (BLOCK_N,)
    partial_row = ((pid_b * n_dim_blocks + pid_d) * d_state + offs_n) * length  # (BLOCK_N,) into dB/dC
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]  # (BLOCK_D, BLOCK_N)
    program = pid_b * n_dim_blocks + pid_d
    states_base = program * n_chunks * (BLOCK_D * BLOCK_N)
    scratch_base = program * CHUNK * (BLOCK_D * BLOCK_N)
    dA = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    g_next = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # exp(dt_{t+1} A) * g_{t+1}
    for chunk_from_end in range(n_chunks):
        start = (n_chunks - 1 - chunk_from_end) * CHUNK
        stop = tl.minimum(start + CHUNK, length)
        # recompute the states entering each position of the chunk: scratch[t - start] = h_{t-1}
        h = tl.load(states_ptr + states_base + (start // CHUNK) * (BLOCK_D * BLOCK_N) + tile)
        for t in range(start, stop):
            tl.store(scratch_ptr + scratch_base + (t - start) * (BLOCK_D * BLOCK_N) + tile, h)
            u = tl.load(u_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
            dt, _ = _time_step(delta_ptr, row + t, mask_d, delta_bias, DELTA_SOFTPLUS)
            B = tl.load(B_ptr + bc_row + t, mask=mask_n, other=0.0).to(tl.float32)
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * B[None, :]
        tl.debug_barrier()
        # reverse recurrence through the chunk
        for step in range(stop - start):
            t = stop - 1 - step
            h_prev = tl.load(scratch_ptr + scratch_base + (t - start) * (BLOCK_D * BLOCK_N) + tile)
            u = tl.load(u_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
            dt, delta = _time_step(delta_ptr, row + t, mask_d, delta_bias, DELTA_SOFTPLUS)
            B = tl.load(B_ptr + bc_row + t, mask=mask_n, other=0.0).to(tl.float32)
            C = tl.load(C_ptr + bc_row + t, mask=mask_n, other=0.0).to(tl.float32)
            dout = tl.load(dout_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
            decay = tl.exp(dt[:, None] * A)
            h = decay * h_prev + (dt * u)[:, None] * B[None, :]
            if HAS_Z:
                z = tl.load(z_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
                y = tl.sum(h * C[None, :], axis=1)
                if HAS_D:
                    y += D * u
                sig_z = 1.0 / (1.0 + tl.exp(-z))
                tl.store(dz_ptr + row + t, dout * y * sig_z * (1.0 + z * (1.0 - sig_z)), mask=mask_d)
                dy = dout * z * sig_z
            else:
                dy = dout
            g = g_next + dy[:, None] * C[None, :]  # dL/dh_t
            tl.store(dC_ptr + partial_row + t, tl.sum(dy[:, None] * h, axis=0), mask=mask_n)
            tl.store(dB_ptr + partial_row + t, tl.sum(g * (dt * u)[:, None], axis=0), mask=mask_n)
            g_B = tl.sum(g * B[None, :], axis=1)  # (BLOCK_D,)
            g_decay_h = g * decay * h_prev
            dA += g_decay_h * dt[:, None]
            ddt = tl.sum(g_decay_h * A, axis=1) + g_B * u
            du = dt * g_B
            if HAS_D:
                du += dy * D
                dD += dy * u
            if DELTA_SOFTPLUS:
                ddt = tl.where(delta <= 20.0, ddt / (1.0 + tl.exp(-delta)), ddt)
            if HAS_DELTA_BIAS:
                ddelta_bias += tl.where(mask_d, ddt, 0.0)
            tl.store(du_ptr + row + t, du, mask=mask_d)
            tl.store(ddelta_ptr + row + t, ddt, mask=mask_d)
            g_next = decay * g
        tl.debug_barrier()  # the next chunk overwrites the scratch buffer
    tl.store(dA_ptr + (pid_b * dim + offs_d[:, None]) * d_state + offs_n[None, :], dA, mask=mask_dn)
    if HAS_D:
        tl.store(dD_ptr + pid_b * dim + offs_d, dD, mask=mask_d)
    if HAS_DELTA_BIAS:
        tl.store(ddelta_bias_ptr + pid_b * dim + offs_d, ddelta_bias, mask=mask_d)


# with TRITON_INTERPRET=1 set when triton was imported, triton.jit made CPU-interpreter kernels instead
_INTERPRETED = not isinstance(_scan_fwd_kernel, triton.JITFunction)


def _launch_config(dim: int, d_state: int, block_d: int | None) -> tuple[int, int, int]:
    """``(BLOCK_D, BLOCK_N, num_warps)``: channels per program, padded state size, warps per program."""
    block_n = triton.next_power_of_2(d_state)
    if block_d is None:
        block_d = min(16, triton.next_power_of_2(dim))
    elif block_d < 1 or block_d & (block_d - 1):
        raise ValueError(f"block_d must be a power of two, got {block_d}.")
    # two state elements per thread: for BLOCK_N=16 and BLOCK_D in {8, 16}, ptxas -v reports no register
    # spills on sm_90 (not yet timed on a GPU)
    num_warps = max(1, min(8, block_d * block_n // 64))
    return block_d, block_n, num_warps


def _on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """Make ``device`` current for a launch: Triton launches on the current CUDA device."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


class _SelectiveScanTriton(torch.autograd.Function):
    """Autograd wrapper of the two kernels; inputs arrive contiguous (see :func:`selective_scan_triton`)."""

    @staticmethod
    def forward(
        ctx,
        u: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        D: torch.Tensor | None,
        z: torch.Tensor | None,
        delta_bias: torch.Tensor | None,
        delta_softplus: bool,
        chunk_size: int,
        launch_config: tuple[int, int, int],
    ) -> torch.Tensor:
        batch, dim, length = u.shape
        d_state = A.shape[1]
        block_d, block_n, num_warps = launch_config
        n_dim_blocks = triton.cdiv(dim, block_d)
        n_chunks = triton.cdiv(length, chunk_size)
        save_states = any(ctx.needs_input_grad)
        out = torch.empty_like(u)
        states_shape = (batch, n_dim_blocks, n_chunks, block_d, block_n)
        states = u.new_empty(states_shape, dtype=torch.float32) if save_states else None
        with _on_device(u.device):  # enable_fp_fusion: fused multiply-adds, whatever Triton's default
            _scan_fwd_kernel[(batch, n_dim_blocks)](
                u,
                delta,
                A,
                B,
                C,
                D,
                z,
                delta_bias,
                out,
                states,
                dim,
                length,
                d_state,
                n_chunks,
                HAS_D=D is not None,
                HAS_Z=z is not None,
                HAS_DELTA_BIAS=delta_bias is not None,
                DELTA_SOFTPLUS=delta_softplus,
                SAVE_STATES=save_states,
                CHUNK=chunk_size,
                BLOCK_D=block_d,
                BLOCK_N=block_n,
                num_warps=num_warps,
                enable_fp_fusion=True,
            )
        if save_states:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
            ctx.config = (delta_softplus, chunk_size, launch_config)
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        delta_softplus, chunk_size, (block_d, block_n, num_warps) = ctx.config
        batch, dim, length = u.shape
        d_state = A.shape[1]
        n_dim_blocks, n_chunks = states.shape[1], states.shape[2]
        dout = dout.contiguous()
        fp32 = {"dtype": torch.float32, "device": u.device}
        scratch = torch.empty((batch, n_dim_blocks, chunk_size, block_d, block_n), **fp32)
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = torch.empty_like(z) if z is not None else None
        dA = torch.empty((batch, dim, d_state), **fp32)
        dB = torch.empty((batch, n_dim_blocks, d_state, length), **fp32)
        dC = torch.empty((batch, n_dim_blocks, d_state, length), **fp32)
        dD = torch.empty((batch, dim), **fp32) if D is not None else None
        ddelta_bias = torch.empty((batch, dim), **fp32) if delta_bias is not None else None
        with _on_device(u.device):
            _scan_bwd_kernel[(batch, n_dim_blocks)](
                u,
                delta,
                A,
                B,
                C,
                D,
                z,
                delta_bias,
                dout,
                states,
                scratch,
                du,
                ddelta,
                dz,
                dA,
                dB,
                dC,
                dD,
                ddelta_bias,
                dim,
                length,
                d_state,
                n_chunks,
                HAS_D=D is not None,
                HAS_Z=z is not None,
                HAS_DELTA_BIAS=delta_bias is not None,
                DELTA_SOFTPLUS=delta_softplus,
                CHUNK=chunk_size,
                BLOCK_D=block_d,
                BLOCK_N=block_n,
                num_warps=num_warps,
                enable_fp_fusion=True,
            )
        return (
            du,
            ddelta,
            dA.sum(0).to(A.dtype),
            dB.sum(1).to(B.dtype),
            dC.sum(1).to(C.dtype),
            dD.sum(0).to(D.dtype) if D is not None else None,
            dz,
            ddelta_bias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None,
            None,
            None,
            None,
        )


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int = 64,
    block_d: int | None = None,
) -> torch.Tensor:
    """Selective scan with Triton kernels (the ``triton`` backend); same semantics as ``selective_scan_ref``.

    ``h_t = exp(dt_t * A) h_{t-1} + dt_t * B_t * u_t``; ``y_t = C_t . h_t + D * u_t``;
    ``out_t = y_t * silu(z_t)``, with ``dt = softplus(delta + delta_bias)`` if ``delta_softplus``
    (``softplus(x) = x`` for ``x > 20``). The state is accumulated in fp32; differentiable in every
    tensor argument, each gradient in its argument's dtype.

    Args:
        u: (batch, dim, L) input, fp32, bf16 or fp16.
        delta: (batch, dim, L) time steps (before bias and softplus).
        A: (dim, d_state) real, normally negative.
        B: (batch, d_state, L) input-dependent.
        C: (batch, d_state, L) input-dependent.
        D: optional (dim,) skip connection.
        z: optional (batch, dim, L) gate.
        delta_bias: optional (dim,) bias added to ``delta``.
        delta_softplus: apply softplus to ``delta + delta_bias``. Defaults to False.
        chunk_size: positions between the states kept for the backward pass. Defaults to 64.
        block_d: channels per kernel program (a power of two); ``None`` picks
            ``min(16, next_power_of_2(dim))``.

    Returns:
        (batch, dim, L) tensor in the dtype of ``u``.

    Raises:
        ValueError: mismatched shapes, tensors on different devices, CPU tensors without
            ``TRITON_INTERPRET=1`` (set before importing triton), or a bad ``chunk_size``/``block_d``.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
    tensors = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    for name, tensor in tensors.items():
        if tensor is not None and tensor.device != u.device:
            raise ValueError(f"{name} is on {tensor.device} but u is on {u.device}; move all inputs to one device.")
    launch_config = _launch_config(u.shape[1], A.shape[1], block_d)
    if u.device.type != "cuda" and not _INTERPRETED:
        raise ValueError(
            f"The triton scan backend needs CUDA tensors, got tensors on {u.device} (to run its "
            "kernels in the slow CPU interpreter, set TRITON_INTERPRET=1 before importing triton)."
        )
    contiguous = [t.contiguous() if t is not None else None for t in tensors.values()]
    return _SelectiveScanTriton.apply(*contiguous, delta_softplus, chunk_size, launch_config)
