"""Pure-PyTorch selective scans.

* :func:`selective_scan_ref`: the plain sequential loop of ``mamba_ssm``'s ``selective_scan_ref``
  (materialises ``(batch, dim, L, d_state)``); the readable oracle and the benchmarks' baseline.
* :func:`selective_scan_torch`: the ``torch`` backend. It splits the sequence into chunks, solves
  each chunk in closed form (a lower-triangular decay matrix) and checkpoints chunk by chunk, so its
  memory is bounded by one chunk's work plus the chunk-boundary states on any device.

Shapes (as in ``mamba_ssm.ops.selective_scan_interface``):
``u``, ``delta``, ``z``: (batch, dim, L); ``A``: (dim, d_state); ``B``, ``C``: (batch, d_state, L);
``D``, ``delta_bias``: (dim,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ["selective_scan_ref", "selective_scan_torch", "check_scan_inputs"]


def check_scan_inputs(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
) -> None:
    """Raise ``ValueError`` naming the first argument whose shape does not fit the others.

    Args:
        u: (batch, dim, L) input.
        delta: (batch, dim, L) time steps.
        A: (dim, d_state) real state matrix (diagonal per channel).
        B: (batch, d_state, L) input-dependent input matrix.
        C: (batch, d_state, L) input-dependent output matrix.
        D: optional (dim,) skip.
        z: optional (batch, dim, L) gate.
        delta_bias: optional (dim,) bias added to ``delta``.
    """
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, L), got shape {tuple(u.shape)}.")
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim or A.is_complex():
        raise ValueError(f"A must be a real (dim={dim}, d_state) tensor, got shape {tuple(A.shape)}, dtype {A.dtype}.")
    d_state = A.shape[1]
    expected = {
        "delta": (delta, (batch, dim, length)),
        "B": (B, (batch, d_state, length)),
        "C": (C, (batch, d_state, length)),
        "D": (D, (dim,)),
        "z": (z, (batch, dim, length)),
        "delta_bias": (delta_bias, (dim,)),
    }
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(
                f"{name} must have shape {shape} to match u {tuple(u.shape)} and A {tuple(A.shape)}, "
                f"got {tuple(tensor.shape)}."
            )


def _prepare_delta(delta: torch.Tensor, delta_bias: torch.Tensor | None, delta_softplus: bool) -> torch.Tensor:
    """Return the effective fp32 time step: ``softplus(delta + delta_bias)`` or ``delta + delta_bias``."""
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    return F.softplus(delta) if delta_softplus else delta


def _skip_and_gate(y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """``(y + D * u) * silu(z)`` with the optional parts left out when absent."""
    if D is not None:
        y = y + u * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y


def selective_scan_ref(
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
    """Sequential selective scan, one PyTorch step per position (mamba_ssm's ``selective_scan_ref``).

    ``h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t``, ``y_t = C_t . h_t + D * u_t``,
    ``out_t = y_t * silu(z_t)``.

    Returns:
        (batch, dim, L) tensor in the dtype of ``u``.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    u32 = u.float()
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    B, C, A = B.float(), C.float(), A.float()
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))  # (b, d, l, n)
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u32)  # (b, d, l, n)
    state = u32.new_zeros((u.shape[0], A.shape[0], A.shape[1]))  # (b, d, n)
    ys = []
    # unbind (not indexing) so that the backward pass costs O(L), not O(L^2) full-size gradient copies
    for decay, drive, c_t in zip(delta_a.unbind(2), delta_b_u.unbind(2), C.unbind(2)):
        state = decay * state + drive
        ys.append(torch.einsum("bdn,bn->bd", state, c_t))
    y = torch.stack(ys, dim=2)  # (b, d, l)
    return _skip_and_gate(y, u32, D, z).to(dtype_in)


def _scan_chunk(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form scan of one chunk of length t from the entering ``state``.

    ``h_t = exp(cum_t) h_in + sum_{s<=t} exp(cum_t - cum_s) delta_s B_s u_s`` with
    ``cum_t = sum_{s<=t} delta_s A`` (all exponents are <= 0 for A < 0: no overflow).

    Args:
        u, delta: (b, d, t) fp32. A: (d, n). B, C: (b, n, t). state: (b, d, n).

    Returns:
        y (b, d, t) without skip and gate, and the state after the chunk (b, d, n).
    """
    length = u.shape[2]
    log_decay = delta.unsqueeze(-1) * A[:, None, :]  # (b, d, t, n)
    cum = log_decay.cumsum(dim=2)  # (b, d, t, n)
    segment = cum.unsqueeze(3) - cum.unsqueeze(2)  # (b, d, t, s, n): cum_t - cum_s
    causal = torch.ones(length, length, dtype=torch.bool, device=u.device).tril()
    decay = torch.exp(segment.masked_fill(~causal[:, :, None], float("-inf")))  # (b, d, t, s, n)
    drive = (delta * u).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1)  # (b, d, s, n)
    states = torch.einsum("bdtsn,bdsn->bdtn", decay, drive) + torch.exp(cum) * state.unsqueeze(2)  # (b, d, t, n)
    y = torch.einsum("bdtn,bnt->bdt", states, C)
    return y, states[:, :, -1]


def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int = 32,
) -> torch.Tensor:
    """Chunked, memory-bounded selective scan in plain PyTorch (the ``torch`` backend).

    Same semantics as :func:`selective_scan_ref`. Each chunk of ``chunk_size`` positions is solved
    in closed form and, when gradients are needed, recomputed in the backward pass
    (``torch.utils.checkpoint``), so memory grows as O(batch * dim * L * d_state / chunk_size) for
    the kept states plus one chunk's O(batch * dim * chunk_size**2 * d_state) work.

    Returns:
        (batch, dim, L) tensor in the dtype of ``u``.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    u32 = u.float()
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    A32, B32, C32 = A.float(), B.float(), C.float()
    state = u32.new_zeros((u.shape[0], A.shape[0], A.shape[1]))
    use_checkpoint = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, delta, A, B, C))
    ys = []
    for start in range(0, u.shape[2], chunk_size):
        part = slice(start, start + chunk_size)
        args = (u32[:, :, part], delta[:, :, part], A32, B32[:, :, part], C32[:, :, part], state)
        y, state = checkpoint(_scan_chunk, *args, use_reentrant=False) if use_checkpoint else _scan_chunk(*args)
        ys.append(y)
    y = torch.cat(ys, dim=2)
    return _skip_and_gate(y, u32, D, z).to(dtype_in)
