"""The ``triton`` scan backend against the sequential reference.

Without a GPU the kernels run in Triton's CPU interpreter, which ``TRITON_INTERPRET=1`` selects only
when set before ``triton`` is imported: set for the whole test process, it would leak into every other
test. So ``test_interpreter_cases`` reruns this file in a pytest subprocess with it set, where the tests
marked ``interpreter_only`` run (small shapes keep them quick) and are skipped here. A compile test builds
the GPU kernels for sm_90 without a GPU; the ``gpu`` tests compare with the ``torch`` backend on CUDA.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

triton = pytest.importorskip("triton", reason="the triton scan backend needs the triton package (pip install triton)")

from nnmamba_nets.ssm import backends  # noqa: E402  (after the importorskip)
from nnmamba_nets.ssm.reference import selective_scan_ref, selective_scan_torch  # noqa: E402
from nnmamba_nets.ssm.triton_scan import (  # noqa: E402
    _INTERPRETED,
    _scan_bwd_kernel,
    _scan_fwd_kernel,
    selective_scan_triton,
)

interpreter_only = pytest.mark.skipif(
    not _INTERPRETED, reason="runs in the TRITON_INTERPRET=1 subprocess of test_interpreter_cases"
)
compiled_only = pytest.mark.skipif(_INTERPRETED, reason="TRITON_INTERPRET=1: triton builds interpreter kernels")

# (atol, rtol) by input dtype: max |triton - reference| <= atol + rtol * max |reference|, per output or gradient
TOLERANCES = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (1e-2, 1e-2), torch.float16: (2e-3, 2e-3)}
# on CUDA at full length, where fp32 sums over thousands of positions run in another order than the torch backend's
GPU_TOLERANCES = {torch.float32: (1e-4, 1e-4), torch.bfloat16: (1e-2, 1e-2)}

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_inputs(
    batch: int,
    dim: int,
    length: int,
    d_state: int,
    has_D: bool = True,
    has_z: bool = True,
    has_delta_bias: bool = True,
    dtype: torch.dtype = torch.float32,
    weight_dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, torch.Tensor | None]:
    """Leaf tensors needing gradients, distributed as in mamba_ssm's selective-scan tests.

    ``u``, ``delta``, ``B``, ``C``, ``z`` get ``dtype``; ``A``, ``D``, ``delta_bias`` get ``weight_dtype``.
    """
    gen = torch.Generator().manual_seed(seed)
    values = {
        "u": (torch.randn(batch, dim, length, generator=gen), dtype),
        "delta": (0.5 * torch.rand(batch, dim, length, generator=gen), dtype),
        "A": (-0.5 * torch.rand(dim, d_state, generator=gen), weight_dtype),
        "B": (torch.randn(batch, d_state, length, generator=gen), dtype),
        "C": (torch.randn(batch, d_state, length, generator=gen), dtype),
        "D": (torch.randn(dim, generator=gen), weight_dtype) if has_D else None,
        "z": (torch.randn(batch, dim, length, generator=gen), dtype) if has_z else None,
        "delta_bias": (0.5 * torch.rand(dim, generator=gen), weight_dtype) if has_delta_bias else None,
    }
    return {
        name: None if spec is None else spec[0].to(device=device, dtype=spec[1]).requires_grad_()
        for name, spec in values.items()
    }


def outputs_and_grads(scan, inputs: dict[str, torch.Tensor | None], seed: int = 1, **kwargs) -> dict[str, torch.Tensor]:
    """Run ``scan``, backpropagate a fixed random cotangent: ``{"out": ..., <name of an input needing grad>: grad}``."""
    out = scan(**inputs, **kwargs)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)
    present = {name: tensor for name, tensor in inputs.items() if tensor is not None and tensor.requires_grad}
    grads = torch.autograd.grad(out, list(present.values()), cotangent)
    return {"out": out, **dict(zip(present, grads))}


def assert_close(
    actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], tolerance: tuple[float, float]
) -> None:
    """Same keys and dtypes, and every tensor within ``tolerance = (atol, rtol)`` of the reference."""
    assert actual.keys() == expected.keys()
    atol, rtol = tolerance
    for name, want in expected.items():
        got = actual[name]
        assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, expected {want.dtype}"
        error = (got.float() - want.float()).abs().max().item()
        bound = atol + rtol * want.float().abs().max().item()
        assert error <= bound, f"{name}: max error {error:.3g} > {bound:.3g}"


# (batch, dim, length, d_state, chunk_size, block_d, has_D, has_z, has_delta_bias, delta_softplus)
FP32_CASES = [
    (1, 3, 1, 4, 8, None, False, False, False, False),  # one position, nothing optional
    (2, 3, 5, 4, 8, None, True, True, False, False),  # shorter than one chunk
    (2, 8, 37, 16, 16, None, True, True, True, True),  # three chunks, the last one partial
    (1, 8, 70, 4, 16, 4, False, False, True, True),  # two channel blocks, five chunks
    (2, 3, 70, 16, 64, None, True, False, False, True),  # the default chunk size: 64 + 6
    (1, 5, 20, 5, 8, 2, True, True, True, False),  # d_state and dim padded in every block
]


@interpreter_only
@pytest.mark.parametrize(
    "batch, dim, length, d_state, chunk_size, block_d, has_D, has_z, has_delta_bias, delta_softplus", FP32_CASES
)
def test_matches_reference_fp32(
    batch, dim, length, d_state, chunk_size, block_d, has_D, has_z, has_delta_bias, delta_softplus
) -> None:
    inputs = make_inputs(batch, dim, length, d_state, has_D, has_z, has_delta_bias)
    expected = outputs_and_grads(selective_scan_ref, inputs, delta_softplus=delta_softplus)
    actual = outputs_and_grads(
        selective_scan_triton, inputs, delta_softplus=delta_softplus, chunk_size=chunk_size, block_d=block_d
    )
    assert_close(actual, expected, TOLERANCES[torch.float32])


@interpreter_only
def test_softplus_threshold() -> None:
    """``softplus(x) = x`` above 20, with gradient 1, as in mamba_ssm and ``F.softplus``."""
    inputs = make_inputs(1, 4, 9, 4)
    with torch.no_grad():
        inputs["delta_bias"].copy_(torch.tensor([-30.0, 0.0, 19.9, 25.0]))
    expected = outputs_and_grads(selective_scan_ref, inputs, delta_softplus=True)
    actual = outputs_and_grads(selective_scan_triton, inputs, delta_softplus=True, chunk_size=4)
    assert_close(actual, expected, TOLERANCES[torch.float32])


@interpreter_only
@pytest.mark.parametrize(
    "dtype, weight_dtype", [(torch.bfloat16, torch.bfloat16), (torch.float16, torch.float32)], ids=["bf16", "fp16"]
)
def test_matches_reference_low_precision(dtype: torch.dtype, weight_dtype: torch.dtype) -> None:
    """Inputs in bf16/fp16 (weights too, or fp32 as in ``Mamba``); state in fp32, grads in each input's dtype."""
    inputs = make_inputs(2, 8, 37, 16, dtype=dtype, weight_dtype=weight_dtype)
    expected = outputs_and_grads(selective_scan_ref, inputs, delta_softplus=True)
    actual = outputs_and_grads(selective_scan_triton, inputs, delta_softplus=True, chunk_size=16)
    assert_close(actual, expected, TOLERANCES[dtype])


@interpreter_only
def test_without_grad_and_partial_grad() -> None:
    """Forward only (no boundary states kept) and a backward to one input give the reference values."""
    inputs = make_inputs(2, 3, 21, 4)
    expected = outputs_and_grads(selective_scan_ref, inputs, delta_softplus=True)
    with torch.no_grad():
        out = selective_scan_triton(**inputs, delta_softplus=True, chunk_size=8)
    assert not out.requires_grad
    torch.testing.assert_close(out, expected["out"], atol=1e-5, rtol=1e-5)
    detached = {name: t.detach() if t is not None and name != "C" else t for name, t in inputs.items()}
    actual = outputs_and_grads(selective_scan_triton, detached, delta_softplus=True, chunk_size=8)
    assert actual.keys() == {"out", "C"}
    torch.testing.assert_close(actual["C"], expected["C"], atol=1e-5, rtol=1e-5)


@interpreter_only
def test_keeps_only_chunk_boundary_states() -> None:
    """Beyond its inputs, autograd keeps ceil(L / chunk_size) fp32 states per channel, not L."""
    batch, dim, length, d_state, chunk_size = 2, 8, 40, 16, 16
    inputs = make_inputs(batch, dim, length, d_state)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        selective_scan_triton(**inputs, chunk_size=chunk_size)
    input_ptrs = {t.data_ptr() for t in inputs.values() if t is not None}
    extra = [t for t in saved if t.data_ptr() not in input_ptrs]
    assert [t.numel() for t in extra] == [batch * dim * -(-length // chunk_size) * d_state]


@interpreter_only
def test_backend_dispatch() -> None:
    """``selective_scan(..., backend="triton")`` runs these kernels and agrees with the torch backend."""
    inputs = make_inputs(1, 4, 12, 4)
    expected = outputs_and_grads(selective_scan_torch, inputs, delta_softplus=True)
    actual = outputs_and_grads(backends.selective_scan, inputs, delta_softplus=True, backend="triton")
    assert_close(actual, expected, TOLERANCES[torch.float32])


def test_auto_picks_triton_for_cuda_tensors_without_mamba_ssm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The choice only looks at the device type, so it is checked here without a GPU."""
    if backends.backend_status("cuda")[0]:
        pytest.skip("mamba_ssm is installed: auto prefers its kernels")
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    choice = backends.resolve_backend(None, torch.device("cuda"))
    assert choice.name == "triton", choice.reason
    assert "cuda unavailable" in choice.reason
    assert backends.get_scan_fn(choice.name) is selective_scan_triton


def test_bad_arguments() -> None:
    inputs = make_inputs(1, 3, 6, 4)
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan_triton(**{**inputs, "B": inputs["B"][:, :, :5]})
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan_triton(**inputs, chunk_size=0)
    with pytest.raises(ValueError, match="block_d"):
        selective_scan_triton(**inputs, block_d=3)


@compiled_only
def test_cpu_tensors_need_the_interpreter() -> None:
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        selective_scan_triton(**make_inputs(1, 3, 6, 4))


def _signature(kernel, args: dict[str, object]) -> tuple[dict[str, str], dict[tuple[int, ...], object]]:
    """Triton signature and constexprs of a launch with ``args`` (tensors, ints, None, constexpr values)."""
    type_names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    signature, constexprs = {}, {}
    for index, name in enumerate(kernel.arg_names):
        value = args[name]
        if isinstance(value, torch.Tensor):
            signature[name] = "*" + type_names[value.dtype]
        elif name.isupper() or value is None:
            signature[name], constexprs[(index,)] = "constexpr", value
        else:
            signature[name] = "i32"
    return signature, constexprs


@compiled_only
@pytest.mark.parametrize("optional_inputs", [True, False], ids=["all-inputs", "no-optional-inputs"])
def test_gpu_kernels_compile_without_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path, optional_inputs: bool) -> None:
    """Compile the kernels for sm_90 with bf16 inputs: the interpreter skips the GPU compiler's checks."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    bf16, fp32 = torch.empty(1, dtype=torch.bfloat16), torch.empty(1)
    optional = {"D_ptr": fp32, "z_ptr": bf16, "delta_bias_ptr": fp32}
    optional = optional if optional_inputs else dict.fromkeys(optional)
    flags = {"HAS_D": optional_inputs, "HAS_Z": optional_inputs, "HAS_DELTA_BIAS": optional_inputs}
    common = {
        "u_ptr": bf16,
        "delta_ptr": bf16,
        "A_ptr": fp32,
        "B_ptr": bf16,
        "C_ptr": bf16,
        **optional,
        "dim": 1,
        "length": 1,
        "d_state": 1,
        "n_chunks": 1,
        **flags,
        "DELTA_SOFTPLUS": True,
        "CHUNK": 64,
        "BLOCK_D": 16,
        "BLOCK_N": 16,
    }
    fwd_args = {**common, "out_ptr": bf16, "states_ptr": fp32, "SAVE_STATES": True}
    grads = {f"d{name}_ptr": fp32 for name in ("A", "B", "C", "D", "delta_bias")}
    bwd_args = {
        **common,
        **grads,
        "dout_ptr": bf16,
        "states_ptr": fp32,
        "scratch_ptr": fp32,
        "du_ptr": bf16,
        "ddelta_ptr": bf16,
        "dz_ptr": optional["z_ptr"],
    }
    for kernel, args in ((_scan_fwd_kernel, fwd_args), (_scan_bwd_kernel, bwd_args)):
        signature, constexprs = _signature(kernel, args)
        compiled = triton.compile(
            ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
            target=GPUTarget("cuda", 90, 32),
            options={"num_warps": 4, "enable_fp_fusion": True},
        )
        assert compiled.asm["cubin"], f"{kernel.__name__}: empty cubin"


@compiled_only
def test_interpreter_cases() -> None:
    """Run the ``interpreter_only`` tests of this file in a pytest subprocess with ``TRITON_INTERPRET=1``."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-m", "not gpu"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert "subprocess of test_interpreter_cases" not in report, f"interpreter tests skipped:\n{report[-6000:]}"


@pytest.mark.gpu
@compiled_only
@requires_cuda
@pytest.mark.parametrize("shape", [(2, 128, 4096, 16), (1, 256, 32768, 16)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_matches_torch_backend_on_cuda(shape: tuple[int, int, int, int], dtype: torch.dtype) -> None:
    inputs = make_inputs(*shape, dtype=dtype, device="cuda")
    expected = outputs_and_grads(selective_scan_torch, inputs, delta_softplus=True)
    actual = outputs_and_grads(selective_scan_triton, inputs, delta_softplus=True)
    assert_close(actual, expected, GPU_TOLERANCES[dtype])
