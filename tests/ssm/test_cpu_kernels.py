"""The fused CPU kernels: bf16 conversions, the bidirectional causal convolution and the fused mixer, each
against plain PyTorch (outputs and every gradient)."""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nnmamba_nets.ssm import cpu_has_native_bf16, selective_scan_torch
from nnmamba_nets.ssm.cpu_conv import MAX_TAPS, conv_silu
from nnmamba_nets.ssm.cpu_math import kernel_array, narrow_like, new_kernel_tensor, widen
from nnmamba_nets.ssm.cpu_mixer import mixer_inner_cpu


@numba.njit
def _round_trip(values, bits, widened):
    for i in range(values.shape[0]):
        bits[i] = narrow_like(values[i], bits)
        widened[i] = widen(bits[i])


def test_bf16_conversions_match_torch() -> None:
    """float32 -> bf16 bits rounds to nearest even like torch, and bits -> float32 is exact."""
    gen = torch.Generator().manual_seed(0)
    values = torch.cat(
        [
            torch.randn(10_000, generator=gen) * 10.0 ** torch.randint(-30, 30, (10_000,), generator=gen),
            torch.tensor([0.0, -0.0, 1.0, -2.5, 1.00390625, 1.01171875, 3.0e38, -1e-40, float("inf")]),
        ]
    )
    bits = np.empty(values.shape[0], dtype=np.int16)
    widened = np.empty(values.shape[0], dtype=np.float32)
    _round_trip(values.numpy(), bits, widened)
    expected = values.to(torch.bfloat16)
    assert np.array_equal(bits, expected.view(torch.int16).numpy())
    assert torch.equal(torch.from_numpy(widened), expected.float())


def test_kernel_arrays_share_memory() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        tensor = torch.randn(3, 4).to(dtype).t()  # non-contiguous
        array = kernel_array(tensor)
        assert array.shape == (4, 3) and array.strides[0] < array.strides[1]
        assert array.ctypes.data == tensor.data_ptr()
    out, out_array = new_kernel_tensor((2, 5), torch.bfloat16)
    assert out.dtype == torch.bfloat16 and out_array.dtype == np.int16 and out_array.ctypes.data == out.data_ptr()
    assert kernel_array(torch.ones(2, dtype=torch.float64)).dtype == np.float32


def conv_reference(
    xz: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, orientations: int, directions: int
) -> torch.Tensor:
    """conv_silu by torch ops: conv1d on each orientation's channels, and on the flipped sequence."""
    n_dim, _, taps = weight.shape
    step = xz.shape[2] // orientations
    outs = []
    for batch, o in itertools.product(range(xz.shape[0]), range(orientations)):
        x = xz[batch, :, o * step : o * step + n_dim].t()[None]  # (1, d, l)
        for r in range(directions):
            seq = x.flip(-1) if r else x
            conv = F.conv1d(seq, weight, bias, padding=taps - 1, groups=n_dim)[..., : x.shape[-1]]
            conv = conv.flip(-1) if r else conv
            outs.append(F.silu(conv)[0].t())  # (l, d)
    return torch.stack(outs)


CONV_CASES = list(itertools.product((1, 2), (1, 2), (2, 4), (1, 3, 300), (True, False)))
assert len(CONV_CASES) == 2 * 2 * 2 * 3 * 2


@pytest.mark.parametrize("orientations,directions,taps,length,with_bias", CONV_CASES)
def test_conv_matches_torch_conv1d(orientations: int, directions: int, taps: int, length: int, with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(taps + length)
    n_dim = 20
    xz = torch.randn(2, length, orientations * 2 * n_dim, generator=gen, requires_grad=True)
    weight = torch.randn(n_dim, 1, taps, generator=gen, requires_grad=True)
    bias = torch.randn(n_dim, generator=gen, requires_grad=True) if with_bias else None
    torch.testing.assert_close(
        conv_silu(xz, weight, bias, orientations, directions),
        conv_reference(xz, weight, bias, orientations, directions),
        rtol=1e-5,
        atol=1e-5,
    )
    low = conv_silu(xz.bfloat16(), weight, bias, orientations, directions)
    assert low.dtype == torch.bfloat16
    expected = conv_reference(xz.bfloat16().float(), weight, bias, orientations, directions)
    torch.testing.assert_close(low.float(), expected, rtol=1e-2, atol=1e-2)


def test_conv_rejects_long_kernels() -> None:
    with pytest.raises(ValueError, match=f"1 to {MAX_TAPS} taps"):
        conv_silu(torch.randn(1, 8, 8), torch.randn(4, 1, MAX_TAPS + 1), None, 1, 1)


def mixer_reference(xz, conv_weight, conv_bias, x_proj_weight, dt_weight, dt_bias, A, D, orientations, directions):
    """mixer_inner_cpu by torch ops: every (orientation, direction) view built by flips, scanned by the torch
    backend, flipped back, summed over directions and gated."""
    n_dim, rank = dt_weight.shape
    d_state = A.shape[1]
    ys = []
    for o in range(orientations):
        x, z = xz[..., 2 * o * n_dim : (2 * o + 1) * n_dim], xz[..., (2 * o + 1) * n_dim : (2 * o + 2) * n_dim]
        total = 0
        for r in range(directions):
            seq = (x.flip(1) if r else x).transpose(1, 2)  # (b, d, l)
            u = F.silu(F.conv1d(seq, conv_weight, conv_bias, padding=conv_weight.shape[2] - 1, groups=n_dim))
            u = u[..., : seq.shape[-1]]
            low, B, C = torch.split(F.linear(u.transpose(1, 2), x_proj_weight), [rank, d_state, d_state], dim=-1)
            delta = F.linear(low, dt_weight).transpose(1, 2)
            y = selective_scan_torch(u, delta, A, B.transpose(1, 2), C.transpose(1, 2), D, None, dt_bias, True)
            total = total + (y.flip(-1) if r else y)
        ys.append(total.transpose(1, 2) * F.silu(z))
    return torch.cat(ys, dim=2)


MIXER_CASES = list(itertools.product((1, 2), (1, 2), (1, 130, 300), (True, False)))
assert len(MIXER_CASES) == 2 * 2 * 3 * 2


@pytest.mark.parametrize("orientations,directions,length,with_conv_bias", MIXER_CASES)
def test_fused_mixer_matches_torch_ops(orientations: int, directions: int, length: int, with_conv_bias: bool) -> None:
    """Outputs and the gradients of all eight inputs, with more channels than one 64-lane block."""
    gen = torch.Generator().manual_seed(length)
    n_dim, d_state, rank, taps = 70, 8, 3, 4
    inputs = {
        "xz": torch.randn(2, length, orientations * 2 * n_dim, generator=gen),
        "conv_weight": torch.randn(n_dim, 1, taps, generator=gen) * 0.5,
        "conv_bias": torch.randn(n_dim, generator=gen) if with_conv_bias else None,
        "x_proj_weight": torch.randn(rank + 2 * d_state, n_dim, generator=gen) * 0.2,
        "dt_weight": torch.randn(n_dim, rank, generator=gen) * 0.5,
        "dt_bias": torch.randn(n_dim, generator=gen) * 0.5 - 2.0,
        "A": -torch.rand(n_dim, d_state, generator=gen) * 2 - 0.1,
        "D": torch.randn(n_dim, generator=gen),
    }
    results = []
    for fn in (mixer_inner_cpu, mixer_reference):
        leaves = {k: None if v is None else v.clone().requires_grad_() for k, v in inputs.items()}
        out = fn(*leaves.values(), orientations, directions)
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)))
        results.append((out.detach(), {k: v.grad for k, v in leaves.items() if v is not None}))
    (out, grads), (out_ref, grads_ref) = results
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-4)
    for name, grad in grads.items():
        scale = grads_ref[name].abs().max().item() + 1e-6
        torch.testing.assert_close(grad / scale, grads_ref[name] / scale, rtol=1e-4, atol=1e-4, msg=name)


def test_fused_mixer_in_bf16_computes_in_fp32() -> None:
    """bf16 activations give the float32 result of the bf16 inputs, up to bf16 rounding of u, proj and y."""
    gen = torch.Generator().manual_seed(3)
    n_dim, d_state, rank = 16, 4, 2
    args = (
        torch.randn(1, 2000, 4 * n_dim, generator=gen).bfloat16(),
        torch.randn(n_dim, 1, 4, generator=gen) * 0.5,
        torch.randn(n_dim, generator=gen),
        (torch.randn(rank + 2 * d_state, n_dim, generator=gen) * 0.2).bfloat16(),
        torch.randn(n_dim, rank, generator=gen) * 0.5,
        torch.randn(n_dim, generator=gen) - 3.0,
        -torch.rand(n_dim, d_state, generator=gen) * 0.1 - 0.01,  # slow decays: a long memory
        torch.randn(n_dim, generator=gen),
    )
    out = mixer_inner_cpu(*args, 2, 2)
    assert out.dtype == torch.bfloat16
    expected = mixer_reference(*(a.float() for a in args), 2, 2)
    torch.testing.assert_close(out.float(), expected, rtol=3e-2, atol=3e-2 * expected.abs().max().item())


def test_fused_mixer_rejects_bad_layouts() -> None:
    args = [torch.randn(8, 1, 4), None, torch.randn(6, 8), torch.randn(8, 2), torch.randn(8), -torch.ones(8, 2)]
    with pytest.raises(ValueError, match=r"xz must be \(batch, length, 32\)"):
        mixer_inner_cpu(torch.randn(1, 5, 16), *args, torch.ones(8), 2, 1)
    with pytest.raises(ValueError, match="must be 1 or 2"):
        mixer_inner_cpu(torch.randn(1, 5, 16), *args, torch.ones(8), 3, 1)


def test_cpu_has_native_bf16_follows_the_cpu_flags() -> None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = {word for line in cpuinfo if line.startswith("flags") for word in line.split()}
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert isinstance(cpu_has_native_bf16(), bool)
    assert cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})


def test_bf16_scan_reads_inputs_exactly_and_accumulates_in_fp32() -> None:
    """The cpu scan of bf16 tensors equals its float32 scan of the same values, rounded once at the end."""
    from nnmamba_nets.ssm.cpu_scan import selective_scan_cpu

    gen = torch.Generator().manual_seed(4)
    batch, dim, length, d_state = 2, 24, 3000, 8
    low = {
        "u": torch.randn(batch, dim, length, generator=gen),
        "delta": torch.randn(batch, dim, length, generator=gen) - 4.0,  # small steps: long memory
        "B": torch.randn(batch, d_state, length, generator=gen),
        "C": torch.randn(batch, d_state, length, generator=gen),
        "z": torch.randn(batch, dim, length, generator=gen),
    }
    low = {k: v.bfloat16() for k, v in low.items()}
    params = {"A": -torch.rand(dim, d_state, generator=gen), "D": torch.randn(dim, generator=gen)}
    out = selective_scan_cpu(**low, **params, delta_softplus=True)
    exact = selective_scan_cpu(**{k: v.float() for k, v in low.items()}, **params, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), exact, rtol=2**-8, atol=1e-6)
