"""The Mamba mixer: mamba_ssm-compatible parameters, the equations, and backend interchangeability."""

from __future__ import annotations

import itertools
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


FLIP_CASES = list(itertools.product((False, True), (False, True), (False, True)))
assert len(FLIP_CASES) == 8


def outputs_and_grads(mixer: Mamba, x: torch.Tensor, **views: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """forward_views' output and the gradients of its input and of every parameter."""
    mixer.zero_grad()
    leaf = x.clone().requires_grad_()
    out = mixer.forward_views(leaf, **views)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)))
    grads = {"input": leaf.grad} | {name: p.grad.clone() for name, p in mixer.named_parameters()}
    return out.detach(), grads


@pytest.mark.parametrize("flip_channels,flip_tokens,bias", FLIP_CASES)
def test_fused_views_match_the_plain_views(flip_channels: bool, flip_tokens: bool, bias: bool) -> None:
    """The fused cpu path against flipped copies run through the torch backend: outputs and all gradients."""
    torch.manual_seed(0)
    fused = Mamba(d_model=12, d_state=4, d_conv=3, bias=bias, backend="cpu")
    plain = Mamba(d_model=12, d_state=4, d_conv=3, bias=bias, backend="torch")
    plain.load_state_dict(fused.state_dict())
    assert fused.uses_fused_path(torch.device("cpu")) and not plain.uses_fused_path(torch.device("cpu"))
    x = torch.randn(2, 12, 150)
    out, grads = outputs_and_grads(fused, x, flip_channels=flip_channels, flip_tokens=flip_tokens)
    out_ref, grads_ref = outputs_and_grads(plain, x, flip_channels=flip_channels, flip_tokens=flip_tokens)
    assert out.shape == x.shape
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    assert grads.keys() == grads_ref.keys()
    for name, grad in grads.items():
        scale = grads_ref[name].abs().max().item() + 1e-6
        torch.testing.assert_close(grad / scale, grads_ref[name] / scale, rtol=1e-4, atol=1e-5, msg=name)


def test_plain_views_are_the_mean_of_flipped_forwards() -> None:
    mixer = Mamba(d_model=6, d_state=4, backend="torch")
    x = torch.randn(1, 6, 9)
    tokens = x.transpose(1, 2)
    expected = (
        mixer(tokens)
        + mixer(tokens.flip(2)).flip(2)
        + mixer(tokens.flip(1)).flip(1)
        + mixer(tokens.flip(1, 2)).flip(1, 2)
    ) / 4
    with torch.no_grad():
        for batch_views in (True, False):
            got = mixer.forward_views(x, flip_channels=True, flip_tokens=True, batch_views=batch_views)
            torch.testing.assert_close(got, expected.transpose(1, 2))
        torch.testing.assert_close(mixer.forward_views(x), mixer(tokens).transpose(1, 2))


def test_fast_path_switch_and_long_convolutions_use_the_plain_path() -> None:
    cpu = torch.device("cpu")
    assert Mamba(d_model=8, backend="cpu").uses_fused_path(cpu)
    assert not Mamba(d_model=8, backend="cpu", use_fast_path=False).uses_fused_path(cpu)
    long_conv = Mamba(d_model=8, d_conv=5, backend="cpu")
    assert not long_conv.uses_fused_path(cpu)
    assert long_conv(torch.randn(1, 7, 8)).shape == (1, 7, 8)


def test_forward_views_rejects_token_major_input() -> None:
    with pytest.raises(ValueError, match=r"\(batch, d_model=8, length\)"):
        Mamba(d_model=8).forward_views(torch.randn(2, 5, 7))
