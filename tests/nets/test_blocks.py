"""Tests of nnmamba_nets.nets.blocks (the equations themselves are re-computed in test_nets.py)."""

from __future__ import annotations

import pytest
import torch

from nnmamba_nets.nets.blocks import (
    AttentionLayer,
    BasicBlock,
    DoubleConv,
    MambaLayer,
    MambaSeq,
    check_input_shape,
    conv1x1,
    conv3x3,
    make_res_layer,
)


def test_convs_have_no_bias_and_keep_or_stride_the_size():
    x = torch.randn(1, 2, 8, 8, 8)
    assert conv3x3(2, 4).bias is None and conv1x1(2, 4).bias is None
    assert conv3x3(2, 4)(x).shape == (1, 4, 8, 8, 8)
    assert conv3x3(2, 4, stride=2)(x).shape == conv1x1(2, 4, stride=2)(x).shape == (1, 4, 4, 4, 4)


@pytest.mark.parametrize("output_norm_act, layers", [(True, 6), (False, 4)])
def test_double_conv_layout(output_norm_act, layers):
    block = DoubleConv(3, 5, stride=2, output_norm_act=output_norm_act)
    assert len(block.conv) == layers and isinstance(block.conv[3], torch.nn.Conv3d)
    keys = {k.split(".")[1] for k in block.state_dict()}
    assert keys == ({"0", "1", "3", "4"} if output_norm_act else {"0", "1", "3"})
    assert block(torch.randn(2, 3, 8, 6, 4)).shape == (2, 5, 4, 3, 2)


def test_attention_layer_gates_and_rejects_tiny_widths():
    gate = AttentionLayer(32)
    assert gate.layer1.out_features == 2
    out = gate(torch.randn(3, 32))
    assert out.shape == (3, 32) and bool(((out > 0) & (out < 1)).all())
    with pytest.raises(ValueError, match="dim=8, r=16"):
        AttentionLayer(8)


def test_mamba_layer_rejects_other_view_counts():
    with pytest.raises(ValueError, match="views must be 1 .* or 4"):
        MambaLayer(8, views=2)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_batched_views_equal_four_separate_calls(backend):
    """Where the views are built (off the fused path), one mixer call on 4b sequences gives the outputs and
    gradients of the reference's four calls."""
    torch.manual_seed(0)
    batched = MambaLayer(8, d_state=4, batch_views=True, backend=backend)
    separate = MambaLayer(8, d_state=4, batch_views=False, backend=backend)
    separate.load_state_dict(batched.state_dict())
    for layer in (batched, separate):
        layer.mamba.use_fast_path = False
    x = torch.randn(2, 8, 3, 4, 5)
    inputs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outputs = [layer(inp) for layer, inp in zip((batched, separate), inputs)]
    torch.testing.assert_close(outputs[0], outputs[1])
    # The mixer sees four times the batch when batched, once per call otherwise.
    calls = []
    handle = separate.mamba.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    separate(x)
    handle.remove()
    handle = batched.mamba.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    batched(x)
    handle.remove()
    assert calls == [2, 2, 2, 2, 8]
    weights = torch.randn_like(outputs[0])
    for out in outputs:
        (out * weights).sum().backward()
    torch.testing.assert_close(inputs[0].grad, inputs[1].grad)
    for (name, p_batched), p_separate in zip(batched.named_parameters(), separate.parameters()):
        torch.testing.assert_close(p_batched.grad, p_separate.grad, msg=name)
    # Training-mode BatchNorm statistics are updated identically.
    torch.testing.assert_close(batched.norm2.running_var, separate.norm2.running_var)


def test_single_view_plain_path_calls_the_mixer_once_on_the_original_tokens():
    layer = MambaLayer(8, d_state=8, views=1).eval()
    layer.mamba.use_fast_path = False
    seen = []
    layer.mamba.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    x = torch.randn(1, 8, 2, 3, 4)
    assert layer(x).shape == x.shape
    assert len(seen) == 1 and seen[0].shape == (1, 24, 8)
    assert "views=1" in repr(layer)


def run_layer(layer: torch.nn.Module, x: torch.Tensor, grad_seed: int = 1):
    """Output, input gradient, parameter gradients and BatchNorm running statistics of a training step."""
    leaf = x.clone().requires_grad_()
    out = layer(leaf)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed)))
    grads = {"input": leaf.grad} | {name: p.grad for name, p in layer.named_parameters()}
    stats = {name: b.clone() for name, b in layer.named_buffers() if "running" in name}
    return out.detach(), grads, stats


@pytest.mark.parametrize("views", [1, 4])
def test_fused_mamba_layer_matches_the_plain_oracle(views):
    """The default cpu path (fused kernels, views never built) against the plain path on the torch backend."""
    torch.manual_seed(0)
    fused = MambaLayer(16, d_state=8, views=views)
    plain = MambaLayer(16, d_state=8, views=views, backend="torch")
    plain.load_state_dict(fused.state_dict())
    assert fused.mamba.uses_fused_path(torch.device("cpu"))
    x = torch.randn(2, 16, 5, 6, 7)
    out, grads, stats = run_layer(fused, x)
    out_ref, grads_ref, stats_ref = run_layer(plain, x)
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    assert grads.keys() == grads_ref.keys() and len(grads) == 1 + len(list(fused.parameters()))
    for name, grad in grads.items():
        scale = grads_ref[name].abs().max().item() + 1e-6
        torch.testing.assert_close(grad / scale, grads_ref[name] / scale, rtol=1e-4, atol=1e-5, msg=name)
    for name, stat in stats.items():
        torch.testing.assert_close(stat, stats_ref[name], rtol=1e-4, atol=1e-5, msg=name)
    assert fused.state_dict().keys() == plain.state_dict().keys()


def test_fused_mamba_seq_matches_the_plain_oracle():
    torch.manual_seed(0)
    fused = MambaSeq(16, d_state=8, d_conv=2)
    plain = MambaSeq(16, d_state=8, d_conv=2, backend="torch")
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(3, 16, 7)
    out, grads, _ = run_layer(fused, x)
    out_ref, grads_ref, _ = run_layer(plain, x)
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, grads_ref[name], rtol=1e-4, atol=1e-5, msg=name)


def test_mamba_seq_mixes_channel_first_tokens():
    seq = MambaSeq(16, d_state=8, d_conv=2)
    assert seq.mamba.d_conv == 2 and seq.mamba.d_state == 8
    x = torch.randn(3, 16, 7)
    assert seq(x).shape == (3, 16, 7)
    # ReLU first: negative inputs act as zeros.
    torch.testing.assert_close(seq(-x.abs()), seq(torch.zeros_like(x)))


def test_basic_block_identity_shortcut():
    block = BasicBlock(4, 4).eval()
    with torch.no_grad():
        block.conv2.weight.zero_()  # the residual branch then gives bn2's bias (0)
    x = torch.randn(2, 4, 3, 3, 3)
    torch.testing.assert_close(block(x.clone()), torch.relu(x))


def test_make_res_layer_shares_one_mamba_layer():
    mamba_layer = MambaLayer(8, d_state=4)
    stage = make_res_layer(4, 8, blocks=3, stride=2, mamba_layer=mamba_layer)
    assert stage[0].downsample is not None and stage[0].mamba_layer is None
    assert stage[1].mamba_layer is mamba_layer and stage[2].mamba_layer is mamba_layer
    assert stage[1].downsample is None
    keys = stage.state_dict().keys()
    assert "1.mamba_layer.nin.weight" in keys and "2.mamba_layer.nin.weight" in keys
    assert sum(p.numel() for p in stage.parameters()) < sum(
        t.numel() for k, t in stage.state_dict().items() if "running" not in k and "num_batches" not in k
    )
    assert stage(torch.randn(2, 4, 8, 8, 8)).shape == (2, 8, 4, 4, 4)
    with pytest.raises(ValueError, match="blocks >= 1"):
        make_res_layer(4, 8, blocks=0)


def test_check_input_shape_messages():
    check_input_shape(torch.zeros(1, 2, 16, 32, 48), in_channels=2, divisor=16)
    with pytest.raises(ValueError, match=r"Net expects a 5D input \(batch, 2, d, h, w\), got shape \(2, 16, 16\)"):
        check_input_shape(torch.zeros(2, 16, 16), in_channels=2, name="Net")
    with pytest.raises(ValueError, match="in_channels=2, got an input with 3 channels"):
        check_input_shape(torch.zeros(1, 3, 16, 16, 16), in_channels=2)
    with pytest.raises(ValueError) as error:
        check_input_shape(torch.zeros(1, 1, 100, 8, 32), in_channels=1, divisor=16)
    message = str(error.value)
    assert "(100, 8, 32)" in message
    assert "100 (nearest valid: 96 or 112)" in message and "8 (nearest valid: 16)" in message
    assert "32 (" not in message
