"""Selective-scan backends: cpu (numba) and torch (chunked) against each other and the sequential oracle."""

from __future__ import annotations

import itertools

import pytest
import torch

from nnmamba_nets.ssm import resolve_backend, selective_scan, selective_scan_ref
from nnmamba_nets.ssm.backends import ENV_VAR

ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_scan_inputs(
    batch: int,
    dim: int,
    length: int,
    d_state: int,
    with_d: bool,
    with_z: bool,
    with_bias: bool,
    softplus: bool,
    seed: int = 0,
) -> dict[str, torch.Tensor | None]:
    """Random scan inputs in the regime Mamba uses (A < 0, time steps > 0), all requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    delta = (
        torch.randn(batch, dim, length, generator=gen) if softplus else torch.rand(batch, dim, length, generator=gen)
    )
    inputs = {
        "u": torch.randn(batch, dim, length, generator=gen),
        "delta": delta * 0.5,
        "A": -torch.rand(dim, d_state, generator=gen) * 2 - 0.1,
        "B": torch.randn(batch, d_state, length, generator=gen),
        "C": torch.randn(batch, d_state, length, generator=gen),
        "D": torch.randn(dim, generator=gen) if with_d else None,
        "z": torch.randn(batch, dim, length, generator=gen) if with_z else None,
        # Without softplus the time steps must stay positive (negative ones make the recurrence explode).
        "delta_bias": (torch.randn(dim, generator=gen) if softplus else torch.rand(dim, generator=gen)) * 0.5
        if with_bias
        else None,
    }
    return {k: None if v is None else v.requires_grad_() for k, v in inputs.items()}


def run_with_grads(backend: str, inputs: dict, softplus: bool, grad_out: torch.Tensor | None = None):
    """Output and the gradient of every tensor input under ``backend`` (inputs are cloned)."""
    leaves = {k: None if v is None else v.detach().clone().requires_grad_() for k, v in inputs.items()}
    out = selective_scan(**leaves, delta_softplus=softplus, backend=backend)
    if grad_out is None:
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(grad_out)
    return out.detach(), {k: v.grad for k, v in leaves.items() if v is not None}


OPTION_SETS = [
    (True, True, True, True),
    (False, False, False, False),
    (True, False, True, False),
    (False, True, False, True),
]  # (D, z, delta_bias, softplus)
CPU_CASES = list(itertools.product((1, 3), (1, 7, 1000), (8, 16), OPTION_SETS))
assert len(CPU_CASES) == 2 * 3 * 2 * 4


@pytest.mark.parametrize("batch,length,d_state,options", CPU_CASES)
def test_cpu_backend_matches_torch_backend(batch: int, length: int, d_state: int, options: tuple) -> None:
    with_d, with_z, with_bias, softplus = options
    inputs = make_scan_inputs(batch, 6, length, d_state, with_d, with_z, with_bias, softplus)
    out_cpu, grads_cpu = run_with_grads("cpu", inputs, softplus)
    out_torch, grads_torch = run_with_grads("torch", inputs, softplus)
    torch.testing.assert_close(out_cpu, out_torch, rtol=1e-4, atol=1e-4)
    assert set(grads_cpu) == {k for k, v in inputs.items() if v is not None}
    for name in grads_cpu:
        scale = grads_torch[name].abs().max().item() + 1e-6
        torch.testing.assert_close(
            grads_cpu[name] / scale,
            grads_torch[name] / scale,
            rtol=1e-4,
            atol=1e-4,
            msg=lambda m, n=name: f"gradient of {n}: {m}",
        )


@pytest.mark.parametrize("lanes", [8, 16, 32, 64])
def test_cpu_backend_channel_blocks(lanes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every block width the kernels may pick, with a part-filled last block and 3 chunks of positions."""
    from nnmamba_nets.ssm import cpu_scan

    monkeypatch.setattr(cpu_scan, "_lanes_for", lambda n_batch, n_dim, n_threads: lanes)
    inputs = make_scan_inputs(2, 70, 2 * cpu_scan._CHUNK + 5, 16, True, True, True, True, seed=7)
    out_cpu, grads_cpu = run_with_grads("cpu", inputs, True)
    out_torch, grads_torch = run_with_grads("torch", inputs, True)
    torch.testing.assert_close(out_cpu, out_torch, rtol=1e-4, atol=1e-4)
    for name in ARG_NAMES:
        scale = grads_torch[name].abs().max().item() + 1e-6
        torch.testing.assert_close(
            grads_cpu[name] / scale,
            grads_torch[name] / scale,
            rtol=1e-4,
            atol=1e-4,
            msg=lambda m, n=name: f"gradient of {n}: {m}",
        )


@pytest.mark.parametrize(
    "n_batch,n_dim,n_threads,expected",
    [(1, 128, 2, 64), (1, 192, 2, 32), (1, 6, 2, 8), (1, 128, 16, 8), (3, 1000, 16, 64)],
)
def test_cpu_backend_block_width(n_batch: int, n_dim: int, n_threads: int, expected: int) -> None:
    from nnmamba_nets.ssm.cpu_scan import _lanes_for

    assert _lanes_for(n_batch, n_dim, n_threads) == expected


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_backends_match_sequential_oracle(backend: str) -> None:
    inputs = make_scan_inputs(2, 5, 150, 16, True, True, True, True, seed=3)
    out, grads = run_with_grads(backend, inputs, True)
    out_ref, grads_ref = run_with_grads("ref", inputs, True)
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-4)
    for name in ARG_NAMES:
        scale = grads_ref[name].abs().max().item() + 1e-6
        torch.testing.assert_close(grads[name] / scale, grads_ref[name] / scale, rtol=1e-4, atol=1e-4)


def test_oracle_matches_explicit_recurrence() -> None:
    """The sequential oracle against the equations written out for one (batch, channel) row."""
    inputs = make_scan_inputs(1, 2, 9, 3, True, True, True, True, seed=5)
    t = {k: v.detach() for k, v in inputs.items()}
    out = selective_scan_ref(**t, delta_softplus=True)
    for d in range(2):
        state = torch.zeros(3)
        for step in range(9):
            dt = torch.nn.functional.softplus(t["delta"][0, d, step] + t["delta_bias"][d])
            state = torch.exp(dt * t["A"][d]) * state + dt * t["B"][0, :, step] * t["u"][0, d, step]
            y = (t["C"][0, :, step] * state).sum() + t["D"][d] * t["u"][0, d, step]
            expected = y * torch.nn.functional.silu(t["z"][0, d, step])
            torch.testing.assert_close(out[0, d, step], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_cpu_backend_keeps_dtypes(dtype: torch.dtype) -> None:
    inputs = make_scan_inputs(1, 4, 33, 8, True, True, True, True)
    cast = {k: None if v is None else v.detach().to(dtype).requires_grad_() for k, v in inputs.items()}
    out = selective_scan(**cast, delta_softplus=True, backend="cpu")
    assert out.dtype == dtype
    out.float().sum().backward()
    assert all(v.grad.dtype == dtype for v in cast.values() if v is not None)
    expected = selective_scan(
        **{k: None if v is None else v.detach().to(dtype).float() for k, v in inputs.items()},
        delta_softplus=True,
        backend="torch",
    )
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)


def test_torch_backend_chunk_size_does_not_change_result() -> None:
    from nnmamba_nets.ssm import selective_scan_torch

    t = {k: v.detach() for k, v in make_scan_inputs(2, 3, 100, 8, True, True, True, True).items()}
    a = selective_scan_torch(**t, delta_softplus=True, chunk_size=7)
    b = selective_scan_torch(**t, delta_softplus=True, chunk_size=64)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,bad_shape", [("delta", (2, 3, 9)), ("B", (2, 5, 10)), ("D", (4,)), ("z", (1, 3, 10))])
def test_shape_mismatch_names_the_argument(name: str, bad_shape: tuple) -> None:
    t = {k: v.detach() for k, v in make_scan_inputs(2, 3, 10, 4, True, True, True, True).items()}
    t[name] = torch.zeros(bad_shape)
    for backend in ("cpu", "torch"):
        with pytest.raises(ValueError, match=rf"^{name} must have shape"):
            selective_scan(**t, backend=backend)


def test_backend_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_backend(None, "cpu").name == "cpu"
    assert resolve_backend("torch", "cpu").name == "torch"
    monkeypatch.setenv(ENV_VAR, "torch")
    choice = resolve_backend("auto", "cpu")
    assert choice.name == "torch" and ENV_VAR in choice.reason
    assert resolve_backend("cpu", "cpu").name == "cpu", "an explicit argument overrides the environment"
    monkeypatch.setenv(ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="Unknown scan backend 'fastest'"):
        resolve_backend(None, "cpu")
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        resolve_backend("cuda", "cpu")
    with pytest.raises(RuntimeError, match="CPU tensors"):
        resolve_backend("cpu", "cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_backend_on_cuda_matches_cpu_results() -> None:
    inputs = make_scan_inputs(2, 64, 4096, 16, True, True, True, True)
    out_cpu, grads_cpu = run_with_grads("cpu", inputs, True)
    cuda_inputs = {k: None if v is None else v.detach().cuda() for k, v in inputs.items()}
    out_gpu, grads_gpu = run_with_grads(
        "torch",
        cuda_inputs,
        True,
        grad_out=torch.randn(out_cpu.shape, generator=torch.Generator().manual_seed(1)).cuda(),
    )
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-3, atol=1e-3)
    for name in grads_cpu:
        scale = grads_cpu[name].abs().max().item() + 1e-6
        torch.testing.assert_close(grads_gpu[name].cpu() / scale, grads_cpu[name] / scale, rtol=1e-3, atol=1e-3)
