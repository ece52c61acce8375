"""The networks under ``torch.autocast("cpu", dtype=torch.bfloat16)``: the fused cpu path runs in bf16,
stays close to float32 and to the plain path (torch backend) in bf16, and trains."""

from __future__ import annotations

import pytest
import torch

from nnmamba_nets import nnMambaEncoder, nnMambaSeg
from nnmamba_nets.nets.blocks import MambaLayer
from nnmamba_nets.ssm import Mamba


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.float() - expected.float()).abs().max() / expected.float().abs().max()).item()


def test_mixer_runs_in_bf16_under_autocast():
    mixer = Mamba(d_model=16, d_state=8, backend="cpu")
    x = torch.randn(2, 16, 300)
    with torch.no_grad():
        expected = mixer.forward_views(x, flip_channels=True, flip_tokens=True)
        with bf16():
            got = mixer.forward_views(x, flip_channels=True, flip_tokens=True)
            single = mixer(x.transpose(1, 2))
    assert got.dtype == single.dtype == torch.bfloat16
    assert relative_error(got, expected) < 3e-2


@pytest.mark.parametrize("views", [1, 4])
def test_mamba_layer_bf16_matches_fp32_and_the_plain_path(views):
    torch.manual_seed(0)
    fused = MambaLayer(16, d_state=8, views=views).eval()
    plain = MambaLayer(16, d_state=8, views=views, backend="torch").eval()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(2, 16, 6, 8, 7)
    with torch.no_grad():
        exact = fused(x)
        with bf16():
            got, got_plain = fused(x), plain(x)
    assert relative_error(got, exact) < 3e-2
    assert relative_error(got, got_plain) < 3e-2
    assert relative_error(got_plain, exact) < 3e-2  # the plain path in bf16 is no closer to float32


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten().float(), b.flatten().float(), dim=0).item()


@pytest.mark.parametrize("views", [1, 4])
def test_mamba_layer_bf16_gradients_follow_fp32(views):
    """A training step of the layer under autocast: every gradient close in direction to float32's."""
    torch.manual_seed(0)
    layer = MambaLayer(16, d_state=8, views=views)
    x = torch.randn(2, 16, 6, 8, 7)
    weights = torch.randn(x.shape)
    grads = []
    for autocast in (False, True):
        layer.zero_grad(set_to_none=True)
        leaf = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = layer(leaf)
        (out.float() * weights).sum().backward()
        grads.append({"input": leaf.grad} | {name: p.grad for name, p in layer.named_parameters()})
    exact, low = grads
    for name in exact:
        assert low[name].dtype == exact[name].dtype, name
        assert cosine(low[name], exact[name]) > 0.99, name


def test_segmentation_network_trains_under_autocast():
    """Eval outputs close to float32; a training step gives finite float32 gradients. Through the deep stack
    of BatchNorms bf16 alone leaves the mixers' gradients at cosine 0.2-0.93 to float32's on this tiny
    case, on the plain path as on the fused one, so the check on them is loose."""
    torch.manual_seed(0)
    net = nnMambaSeg(in_channels=2, out_channels=3, channels=16, blocks=2, head="logits")
    x = torch.randn(1, 2, 32, 32, 32)
    net.eval()
    with torch.no_grad():
        exact = net(x)
        with bf16():
            low = net(x)
    assert low.shape == exact.shape and relative_error(low, exact) < 5e-2
    net.train()
    grads = []
    for autocast in (False, True):
        net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = net(x)
        out.float().square().mean().backward()
        grads.append({name: p.grad for name, p in net.named_parameters()})
    exact_grads, low_grads = grads
    mixer = [name for name in exact_grads if name.startswith("layer1.1.mamba_layer.mamba.")]
    assert len(mixer) == 9
    for name in mixer:
        assert low_grads[name].dtype == torch.float32 and torch.isfinite(low_grads[name]).all(), name
    assert sum(cosine(low_grads[name], exact_grads[name]) for name in mixer) / len(mixer) > 0.7
    assert cosine(low_grads["conv8.conv.3.weight"], exact_grads["conv8.conv.3.weight"]) > 0.99


def test_encoder_with_mamba_seq_runs_under_autocast():
    torch.manual_seed(0)
    net = nnMambaEncoder(1, 2, channels=8, blocks=2, mamba_seq=True).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        exact = net(x)
        with bf16():
            low = net(x)
    assert relative_error(low, exact) < 5e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_mamba_layer_on_cuda_matches_the_cpu_kernels(precision):
    """The GPU backend chosen by auto (mamba_ssm or Triton) against the fused CPU path, under autocast for bf16."""
    torch.manual_seed(0)
    cpu_layer = MambaLayer(32, d_state=16)
    gpu_layer = MambaLayer(32, d_state=16)
    gpu_layer.load_state_dict(cpu_layer.state_dict())
    gpu_layer.cuda()
    x = torch.randn(2, 32, 8, 16, 16)
    outs, grads = [], []
    for layer, device in ((cpu_layer, "cpu"), (gpu_layer, "cuda")):
        leaf = x.to(device).requires_grad_()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = layer(leaf)
        out.float().square().mean().backward()
        outs.append(out.float().cpu())
        grads.append({"input": leaf.grad.cpu()} | {n: p.grad.cpu() for n, p in layer.named_parameters()})
    tolerance = 1e-3 if precision == "fp32" else 5e-2
    assert relative_error(outs[1], outs[0]) < tolerance
    for name in grads[0]:
        assert cosine(grads[1][name], grads[0][name]) > (0.999 if precision == "fp32" else 0.98), name
