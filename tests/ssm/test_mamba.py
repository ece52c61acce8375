"""The Mamba mixer: mamba_ssm-compatible parameters, the equations, and backend interchangeability."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnmamba_nets.ssm import Mamba


def mamba_by_equations(mixer: Mamba, hidden: torch.Tensor) -> torch.Tensor:
    """Mamba's forward as a plain per-position loop written from the equations (no library scan)."""
    p = {k: v.detach().double() for k, v in mixer.state_dict().items()}
    batch, length, _ = hidden.shape
    d_inner, d_state, rank, width = mixer.d_inner, mixer.d_state, mixer.dt_rank, mixer.d_conv
    xz = hidden.double() @ p["in_proj.weight"].T  # (b, l, 2 d_inner)
    x, z = xz[..., :d_inner], xz[..., d_inner:]
    A = -torch.exp(p["A_log"])  # (d_inner, n)
    out = torch.zeros(batch, length, d_inner, dtype=torch.float64)
    for b in range(batch):
        state = torch.zeros(d_inner, d_state, dtype=torch.float64)
        for t in range(length):
            # causal depthwise conv over positions t-width+1..t (zero before the start), then SiLU
            conv = p["conv1d.bias"].clone()
            for k in range(width):
                src = t - (width - 1) + k
                if src >= 0:
                    conv += p["conv1d.weight"][:, 0, k] * x[b, src]
            xc = conv * torch.sigmoid(conv)
            proj = p["x_proj.weight"] @ xc
            dt = F.softplus(p["dt_proj.weight"] @ proj[:rank] + p["dt_proj.bias"])  # (d_inner,)
            B_t, C_t = proj[rank : rank + d_state], proj[rank + d_state :]
            state = torch.exp(dt[:, None] * A) * state + (dt * xc)[:, None] * B_t[None, :]
            y = state @ C_t + p["D"] * xc
            out[b, t] = y * F.silu(z[b, t])
    return (out @ p["out_proj.weight"].T).float()


@pytest.mark.parametrize("backend", ["cpu", "torch", "ref"])
def test_mamba_matches_equations(backend: str) -> None:
    torch.manual_seed(0)
    mixer = Mamba(d_model=12, d_state=4, d_conv=3, expand=2, backend=backend)
    hidden = torch.randn(2, 9, 12)
    torch.testing.assert_close(mixer(hidden), mamba_by_equations(mixer, hidden), rtol=1e-4, atol=1e-5)


def test_state_dict_matches_mamba_ssm_layout() -> None:
    mixer = Mamba(d_model=40, d_state=16, d_conv=4, expand=2)
    d_inner, rank = 80, math.ceil(40 / 16)
    expected = {  # nn.Module lists its own parameters before its submodules', as in mamba_ssm
        "A_log": (d_inner, 16),
        "D": (d_inner,),
        "in_proj.weight": (2 * d_inner, 40),
        "conv1d.weight": (d_inner, 1, 4),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (rank + 32, d_inner),
        "dt_proj.weight": (d_inner, rank),
        "dt_proj.bias": (d_inner,),
        "out_proj.weight": (40, d_inner),
    }
    state = mixer.state_dict()
    assert list(state) == list(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    half = Mamba(d_model=40, dtype=torch.bfloat16)
    assert half.A_log.dtype == torch.float32 and half.D.dtype == torch.float32
    assert half.in_proj.weight.dtype == torch.bfloat16


def test_initialisation_follows_mamba_ssm() -> None:
    torch.manual_seed(0)
    mixer = Mamba(d_model=64, d_state=8, dt_min=0.002, dt_max=0.05)
    torch.testing.assert_close(mixer.A_log, torch.log(torch.arange(1, 9.0)).repeat(128, 1))
    torch.testing.assert_close(mixer.D, torch.ones(128))
    dt = F.softplus(mixer.dt_proj.bias.detach())
    assert dt.min() >= 0.002 * 0.999 and dt.max() <= 0.05 * 1.001
    assert mixer.dt_proj.weight.abs().max() <= mixer.dt_rank**-0.5
    constant = Mamba(d_model=64, dt_init="constant", dt_scale=2.0)
    torch.testing.assert_close(constant.dt_proj.weight, torch.full((128, 4), 2.0 * 4**-0.5))
    with pytest.raises(ValueError, match="dt_init"):
        Mamba(d_model=8, dt_init="xavier")


def test_checkpoint_moves_between_backends(tmp_path) -> None:
    torch.manual_seed(1)
    trained_on_cpu_kernel = Mamba(d_model=16, backend="cpu")
    path = tmp_path / "mixer.pt"
    torch.save(trained_on_cpu_kernel.state_dict(), path)
    on_torch = Mamba(d_model=16, backend="torch")
    on_torch.load_state_dict(torch.load(path, weights_only=True), strict=True)
    hidden = torch.randn(2, 70, 16)
    torch.testing.assert_close(on_torch(hidden), trained_on_cpu_kernel(hidden), rtol=1e-4, atol=1e-5)
    assert "cpu=torch" in repr(on_torch) and "cpu=cpu" in repr(trained_on_cpu_kernel)


def test_gradients_reach_every_parameter() -> None:
    mixer = Mamba(d_model=8, d_state=4, backend="cpu")
    mixer(torch.randn(2, 20, 8)).square().mean().backward()
    for name, param in mixer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_bad_input_shape() -> None:
    with pytest.raises(ValueError, match=r"d_model=8"):
        Mamba(d_model=8)(torch.randn(2, 5, 7))
