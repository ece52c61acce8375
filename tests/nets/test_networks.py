"""Tests of the three nnMamba networks against the architecture facts (docs: nnmamba-architecture.md).

The expected state_dict layout and a functional re-computation of the forward pass are written
here from the documented equations, independently of ``nnmamba_nets.nets.blocks``.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from nnmamba_nets import load_pretrained, nnMambaEncoder, nnMambaLandmark, nnMambaSeg
from nnmamba_nets.nets.blocks import BasicBlock, MambaLayer, make_res_layer

Layout = dict[str, tuple[int, ...]]
StateDict = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------------------------
# Documented state_dict layout (key -> shape), from the architecture facts.
# ----------------------------------------------------------------------------------------------
def bn_layout(prefix: str, c: int) -> Layout:
    return {
        prefix + "weight": (c,),
        prefix + "bias": (c,),
        prefix + "running_mean": (c,),
        prefix + "running_var": (c,),
        prefix + "num_batches_tracked": (),
    }


def double_conv_layout(prefix: str, cin: int, cout: int, output_norm: bool = True) -> Layout:
    layout = {prefix + "conv.0.weight": (cout, cin, 3, 3, 3), prefix + "conv.0.bias": (cout,)}
    layout |= bn_layout(prefix + "conv.1.", cout)
    layout |= {prefix + "conv.3.weight": (cout, cout, 3, 3, 3), prefix + "conv.3.bias": (cout,)}
    if output_norm:
        layout |= bn_layout(prefix + "conv.4.", cout)
    return layout


def mamba_layout(prefix: str, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2) -> Layout:
    d_inner, dt_rank = expand * d_model, math.ceil(d_model / 16)
    return {
        prefix + "in_proj.weight": (2 * d_inner, d_model),
        prefix + "conv1d.weight": (d_inner, 1, d_conv),
        prefix + "conv1d.bias": (d_inner,),
        prefix + "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        prefix + "dt_proj.weight": (d_inner, dt_rank),
        prefix + "dt_proj.bias": (d_inner,),
        prefix + "A_log": (d_inner, d_state),
        prefix + "D": (d_inner,),
        prefix + "out_proj.weight": (d_model, d_inner),
    }


def mamba_layer_layout(prefix: str, dim: int, d_state: int = 16, variant: str = "css") -> Layout:
    """MICCSS (css) or the nnU-Net v1 MambaLayer: nin, norm and mamba only."""
    layout = {prefix + "nin.weight": (dim, dim, 1, 1, 1)} | bn_layout(prefix + "norm.", dim)
    if variant == "css":
        layout |= {prefix + "nin2.weight": (dim, dim, 1, 1, 1)} | bn_layout(prefix + "norm2.", dim)
    return layout | mamba_layout(prefix + "mamba.", dim, d_state)


def res_layer_layout(prefix: str, cin: int, cout: int, blocks: int, with_mamba: bool, variant: str = "css") -> Layout:
    layout: Layout = {}
    for i in range(blocks):
        block, block_in = f"{prefix}{i}.", cin if i == 0 else cout
        layout[block + "conv1.weight"] = (cout, block_in, 3, 3, 3)
        layout |= bn_layout(block + "bn1.", cout)
        layout[block + "conv2.weight"] = (cout, cout, 3, 3, 3)
        layout |= bn_layout(block + "bn2.", cout)
        if i == 0:
            layout[block + "downsample.0.weight"] = (cout, cin, 1, 1, 1)
            layout |= bn_layout(block + "downsample.1.", cout)
        elif with_mamba:
            layout |= mamba_layer_layout(block + "mamba_layer.", cout, variant=variant)
    return layout


def seg_layout(
    in_ch: int,
    out_ch: int,
    c: int,
    blocks: int,
    head: str = "reference",
    variant: str = "css",
    mamba: bool = True,
    heads: bool = False,
) -> Layout:
    """nnMambaSeg; ``heads``: the deep-supervision heads (always there in the nnU-Net variant)."""
    layout = double_conv_layout("in_conv.", in_ch, c)
    for k, (cin, cout) in enumerate([(c, 2 * c), (2 * c, 4 * c), (4 * c, 8 * c)], start=1):
        layout |= res_layer_layout(f"layer{k}.", cin, cout, blocks, with_mamba=mamba, variant=variant)
        layout |= {
            f"att{k}.layer1.weight": (cin // 16, cin),
            f"att{k}.layer1.bias": (cin // 16,),
            f"att{k}.layer2.weight": (cin, cin // 16),
            f"att{k}.layer2.bias": (cin,),
        }
    layout |= double_conv_layout("conv5.", 12 * c, 4 * c) | double_conv_layout("conv6.", 6 * c, 2 * c)
    layout |= double_conv_layout("conv7.", 3 * c, c)
    layout |= double_conv_layout("conv8.", c, out_ch, output_norm=head == "reference")
    if variant == "nnunet" or heads:  # 1x1x1 with bias on c7 (c), c6 (2c), c5 (4c)
        for k, width in enumerate((c, 2 * c, 4 * c), start=1):
            layout |= {f"ds{k}_cls_conv.weight": (out_ch, width, 1, 1, 1), f"ds{k}_cls_conv.bias": (out_ch,)}
    return layout


def encoder_layout(in_ch: int, out_ch: int, c: int, blocks: int, mamba_seq: bool = False, mamba: bool = True) -> Layout:
    layout = double_conv_layout("in_conv.", in_ch, c)
    if mamba:
        layout |= mamba_layer_layout("mamba_layer_stem.", c, d_state=8)
    for k, (cin, cout) in enumerate([(c, 2 * c), (2 * c, 4 * c), (4 * c, 8 * c)], start=1):
        layout |= res_layer_layout(f"layer{k}.", cin, cout, blocks, with_mamba=False)
    if mamba_seq:
        layout |= mamba_layout("mamba_seq.mamba.", 2 * c, d_state=8, d_conv=2)
    return layout | {
        "mlp.0.weight": (c, 14 * c),
        "mlp.0.bias": (c,),
        "mlp.3.weight": (out_ch, c),
        "mlp.3.bias": (out_ch,),
    }


def shape_layout(state_dict: StateDict) -> Layout:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def shared_owner(key: str) -> str:
    """The key of block 1 of the stage for a shared MambaLayer entry (``layerK.N.mamba_layer.*``), else ``key``."""
    return re.sub(r"(^|\.)\d+\.mamba_layer\.", r"\g<1>1.mamba_layer.", key)


def unique_parameter_count(layout: Layout) -> int:
    """Parameters of a layout: no BN buffers, each shared MambaLayer counted once."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(
        math.prod(shape) for key, shape in layout.items() if not key.endswith(buffers) and shared_owner(key) == key
    )


def random_reference_state_dict(layout: Layout, seed: int = 0) -> StateDict:
    """Random values in the reference layout; the shared MambaLayer entries get equal values."""
    gen = torch.Generator().manual_seed(seed)
    state: StateDict = {}
    for key, shape in layout.items():
        shared_source = shared_owner(key)
        if shared_source != key:
            state[key] = state[shared_source].clone()
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("A_log"):
            state[key] = torch.log(torch.rand(shape, generator=gen) * 15 + 1)
        elif len(shape) == 1:  # 1D weights are BatchNorm scales; then biases and the SSM skip D
            state[key] = 0.1 * torch.randn(shape, generator=gen) + (1.0 if key.endswith(("weight", "D")) else 0.0)
        else:
            state[key] = torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
    return state


# ----------------------------------------------------------------------------------------------
# Functional re-computation from the documented equations (float64, sequential scan).
# ----------------------------------------------------------------------------------------------
def f_bn(x: torch.Tensor, sd: StateDict, p: str) -> torch.Tensor:
    return F.batch_norm(
        x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"], training=False, eps=1e-5
    )


def f_double_conv(x: torch.Tensor, sd: StateDict, p: str, stride: int = 1) -> torch.Tensor:
    x = F.relu(f_bn(F.conv3d(x, sd[p + "conv.0.weight"], sd[p + "conv.0.bias"], stride, 1), sd, p + "conv.1."))
    x = F.conv3d(x, sd[p + "conv.3.weight"], sd[p + "conv.3.bias"], 1, 1)
    return F.relu(f_bn(x, sd, p + "conv.4.")) if p + "conv.4.weight" in sd else x


def f_mamba(h: torch.Tensor, sd: StateDict, p: str) -> torch.Tensor:
    """Mamba-1 on (b, l, d_model) tokens: projections, causal conv, sequential selective scan."""
    d_inner, d_state = sd[p + "A_log"].shape
    dt_rank = sd[p + "x_proj.weight"].shape[0] - 2 * d_state
    x, z = (h @ sd[p + "in_proj.weight"].T).split(d_inner, dim=-1)  # (b, l, d_inner) each
    kernel = sd[p + "conv1d.weight"]
    x = F.conv1d(F.pad(x.transpose(1, 2), (kernel.shape[-1] - 1, 0)), kernel, sd[p + "conv1d.bias"], groups=d_inner)
    x = F.silu(x).transpose(1, 2)  # causal: output t sees inputs <= t
    dt, B, C = (x @ sd[p + "x_proj.weight"].T).split([dt_rank, d_state, d_state], dim=-1)
    dt = F.softplus(dt @ sd[p + "dt_proj.weight"].T + sd[p + "dt_proj.bias"])  # (b, l, d_inner)
    A = -torch.exp(sd[p + "A_log"])
    state = h.new_zeros(h.shape[0], d_inner, d_state)
    ys = []
    for t in range(h.shape[1]):
        state = torch.exp(dt[:, t, :, None] * A) * state + dt[:, t, :, None] * B[:, t, None, :] * x[:, t, :, None]
        ys.append((state * C[:, t, None, :]).sum(-1) + sd[p + "D"] * x[:, t])
    y = torch.stack(ys, dim=1) * F.silu(z)
    return y @ sd[p + "out_proj.weight"].T


def f_mamba_layer(x: torch.Tensor, sd: StateDict, p: str, views: int = 4) -> torch.Tensor:
    a = F.relu(f_bn(F.conv3d(x, sd[p + "nin.weight"]), sd, p + "norm."))
    b, c = a.shape[:2]
    t = a.reshape(b, c, -1).transpose(1, 2)  # (b, l, c)
    if p + "nin2.weight" not in sd:  # the nnU-Net v1 MambaLayer: one view, no output block, no residual
        return f_mamba(t, sd, p + "mamba.").transpose(1, 2).reshape(a.shape)
    flips = [[], [2], [1], [1, 2]][:views]
    outs = [f_mamba(t.flip(f) if f else t, sd, p + "mamba.") for f in flips]
    mixed = sum(o.flip(f) if f else o for o, f in zip(outs, flips)) / views
    out = mixed.transpose(1, 2).reshape(a.shape) + a
    return F.relu(f_bn(F.conv3d(out, sd[p + "nin2.weight"]), sd, p + "norm2."))


def f_basic_block(x: torch.Tensor, sd: StateDict, p: str, stride: int = 1) -> torch.Tensor:
    out = F.relu(f_bn(F.conv3d(x, sd[p + "conv1.weight"], stride=stride, padding=1), sd, p + "bn1."))
    out = f_bn(F.conv3d(out, sd[p + "conv2.weight"], padding=1), sd, p + "bn2.")
    if p + "mamba_layer.nin.weight" in sd:
        out = out + f_mamba_layer(x, sd, p + "mamba_layer.")
    if p + "downsample.0.weight" in sd:
        x = f_bn(F.conv3d(x, sd[p + "downsample.0.weight"], stride=stride), sd, p + "downsample.1.")
    return F.relu(out + x)


def f_res_layer(x: torch.Tensor, sd: StateDict, p: str, blocks: int) -> torch.Tensor:
    for i in range(blocks):
        x = f_basic_block(x, sd, f"{p}{i}.", stride=2 if i == 0 else 1)
    return x


def f_seg(x: torch.Tensor, sd: StateDict, blocks: int) -> torch.Tensor | list[torch.Tensor]:
    """The network's output; with deep-supervision heads in ``sd`` the list [output, ds1, ds2, ds3]."""

    def gate(skip: torch.Tensor, p: str) -> torch.Tensor:
        v = skip.mean(dim=(2, 3, 4))
        s = torch.sigmoid(
            F.linear(
                F.relu(F.linear(v, sd[p + "layer1.weight"], sd[p + "layer1.bias"])),
                sd[p + "layer2.weight"],
                sd[p + "layer2.bias"],
            )
        )
        return skip * s[:, :, None, None, None]

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, scale_factor=2, mode="trilinear", align_corners=False)

    c1 = f_double_conv(x, sd, "in_conv.", stride=2)
    c2 = f_res_layer(c1, sd, "layer1.", blocks)
    c3 = f_res_layer(c2, sd, "layer2.", blocks)
    c4 = f_res_layer(c3, sd, "layer3.", blocks)
    c5 = f_double_conv(torch.cat([up(c4), gate(c3, "att3.")], 1), sd, "conv5.")
    c6 = f_double_conv(torch.cat([up(c5), gate(c2, "att2.")], 1), sd, "conv6.")
    c7 = f_double_conv(torch.cat([up(c6), gate(c1, "att1.")], 1), sd, "conv7.")
    out = f_double_conv(up(c7), sd, "conv8.")
    if "ds1_cls_conv.weight" not in sd:
        return out
    heads = [
        F.conv3d(c, sd[f"ds{k}_cls_conv.weight"], sd[f"ds{k}_cls_conv.bias"]) for k, c in ((1, c7), (2, c6), (3, c5))
    ]
    return [out, *heads]


def f_encoder(x: torch.Tensor, sd: StateDict, blocks: int) -> torch.Tensor:
    c1 = f_double_conv(x, sd, "in_conv.", stride=2)
    if "mamba_layer_stem.nin.weight" in sd:
        c1 = f_mamba_layer(c1, sd, "mamba_layer_stem.", views=1) + c1
    c2 = f_res_layer(c1, sd, "layer1.", blocks)
    c3 = f_res_layer(c2, sd, "layer2.", blocks)
    c4 = f_res_layer(c3, sd, "layer3.", blocks)
    pooled = [c.mean(dim=(2, 3, 4)) for c in (c2, c3, c4)]
    if "mamba_seq.mamba.A_log" in sd:  # reference layout: (b, 2c, 7) from reshapes of the pooled vectors
        width = pooled[0].shape[1]
        seq = torch.cat([p.reshape(p.shape[0], width, -1) for p in pooled], dim=2)  # (b, 2c, 7)
        mixed = f_mamba(F.relu(seq).transpose(1, 2), sd, "mamba_seq.mamba.").transpose(1, 2)
        features = (mixed + seq).reshape(seq.shape[0], -1)
    else:
        features = torch.cat(pooled, dim=1)
    hidden = F.relu(F.linear(features, sd["mlp.0.weight"], sd["mlp.0.bias"]))
    return F.linear(hidden, sd["mlp.3.weight"], sd["mlp.3.bias"])


def as_float64(state_dict: StateDict) -> StateDict:
    return {k: v.double() if v.is_floating_point() else v for k, v in state_dict.items()}


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------
def test_parameter_counts_at_reference_settings():
    seg, encoder = nnMambaSeg(in_channels=1, out_channels=6, channels=32), nnMambaEncoder(in_channels=1, out_channels=1)
    assert sum(p.numel() for p in seg.parameters()) == 15_944_958
    assert sum(p.numel() for p in encoder.parameters()) == 12_876_321
    assert sum(p.numel() for p in nnMambaLandmark(out_channels=6).parameters()) == 15_944_958
    # The documented layout agrees with the documented counts.
    assert unique_parameter_count(seg_layout(1, 6, 32, 3)) == 15_944_958
    assert unique_parameter_count(encoder_layout(1, 1, 32, 3)) == 12_876_321


@pytest.mark.parametrize(
    "net, layout",
    [
        (lambda: nnMambaSeg(1, 6, 32, 3), lambda: seg_layout(1, 6, 32, 3)),
        (lambda: nnMambaSeg(4, 3, 16, 2, head="logits"), lambda: seg_layout(4, 3, 16, 2, head="logits")),
        (lambda: nnMambaLandmark(1, 5, 16, 3), lambda: seg_layout(1, 5, 16, 3)),
        (lambda: nnMambaEncoder(1, 1, 32, 3), lambda: encoder_layout(1, 1, 32, 3)),
        (lambda: nnMambaEncoder(2, 3, 8, 2, mamba_seq=True), lambda: encoder_layout(2, 3, 8, 2, mamba_seq=True)),
    ],
    ids=["seg-reference", "seg-logits", "landmark", "encoder", "encoder-mamba_seq"],
)
def test_state_dict_matches_documented_layout(net, layout):
    assert shape_layout(net().state_dict()) == layout()


def test_stage_mamba_layer_is_shared_and_listed_per_block():
    net = nnMambaSeg(channels=16)
    state = net.state_dict(keep_vars=True)
    for k in (1, 2, 3):
        stage = getattr(net, f"layer{k}")
        assert stage[0].mamba_layer is None and stage[1].mamba_layer is stage[2].mamba_layer
        assert state[f"layer{k}.1.mamba_layer.mamba.A_log"] is state[f"layer{k}.2.mamba_layer.mamba.A_log"]


@pytest.fixture(scope="module")
def seg_reference():
    """A small nnMambaSeg loaded strictly from a random state_dict in the reference layout."""
    layout = seg_layout(2, 3, 16, 3)
    state = random_reference_state_dict(layout)
    net = load_pretrained(nnMambaSeg(in_channels=2, out_channels=3, channels=16, blocks=3), state).eval()
    return net, state


def test_reference_checkpoint_loads_and_matches_functional_recomputation(seg_reference):
    net, state = seg_reference
    x = torch.randn(2, 2, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, again = net(x), net(x)
    torch.testing.assert_close(out, again, rtol=0, atol=0)  # deterministic
    expected = f_seg(x.double(), as_float64(state), blocks=3).float()
    assert out.min() >= 0  # the reference head ends in ReLU
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_mamba_basic_block_matches_functional_recomputation(seg_reference):
    net, state = seg_reference
    block = net.layer1[1]  # BasicBlock(32, 32) with the stage's shared MambaLayer
    x = torch.rand(2, 32, 4, 6, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got_block, got_layer = block(x.clone()), block.mamba_layer(x)
    sd = as_float64(state)
    torch.testing.assert_close(
        got_layer, f_mamba_layer(x.double(), sd, "layer1.1.mamba_layer.").float(), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(got_block, f_basic_block(x.double(), sd, "layer1.1.").float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mamba_seq", [False, True])
def test_reference_encoder_matches_functional_recomputation(mamba_seq):
    state = random_reference_state_dict(encoder_layout(1, 2, 8, 2, mamba_seq=mamba_seq), seed=3)
    net = load_pretrained(nnMambaEncoder(1, 2, channels=8, blocks=2, mamba_seq=mamba_seq), state).eval()
    x = torch.randn(2, 1, 20, 24, 18, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = net(x)
    expected = f_encoder(x.double(), as_float64(state), blocks=2).float()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_batched_and_separate_views_give_the_same_network_output(seg_reference):
    net, state = seg_reference
    separate = load_pretrained(nnMambaSeg(2, 3, 16, 3, batch_views=False), state).eval()
    x = torch.randn(2, 2, 16, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), separate(x))


@pytest.mark.parametrize(
    "make_net, shape, expected",
    [
        (lambda: nnMambaSeg(2, 3, channels=16, blocks=2, head="logits"), (2, 2, 16, 32, 16), (2, 3, 16, 32, 16)),
        (lambda: nnMambaLandmark(1, 4, channels=16, blocks=2), (1, 1, 16, 16, 48), (1, 4, 16, 16, 48)),
        (lambda: nnMambaEncoder(3, 5, channels=8, blocks=2), (2, 3, 17, 9, 30), (2, 5)),
        (lambda: nnMambaEncoder(1, 1, channels=8, blocks=2, mamba_seq=True), (1, 1, 16, 16, 16), (1, 1)),
    ],
    ids=["seg-logits", "landmark", "encoder-any-size", "encoder-mamba_seq"],
)
def test_output_shapes(make_net, shape, expected):
    with torch.no_grad():
        assert tuple(make_net().eval()(torch.randn(shape)).shape) == expected


def test_logits_head_can_go_negative_and_reference_head_cannot():
    """With a strongly negative last bias, only the logits head can predict sigmoid < 0.5 (background)."""
    x = torch.randn(1, 1, 16, 16, 16)
    outputs = {}
    for head in ("logits", "reference"):
        net = nnMambaSeg(1, 2, channels=16, blocks=2, head=head).eval()
        assert isinstance(net.conv8.conv[-1], torch.nn.Conv3d if head == "logits" else torch.nn.ReLU)
        with torch.no_grad():
            net.conv8.conv[3].bias.fill_(-100.0)
            outputs[head] = net(x)
    assert outputs["logits"].max() < 0 and (torch.sigmoid(outputs["logits"]) < 0.5).all()
    assert outputs["reference"].min() >= 0 and (torch.sigmoid(outputs["reference"]) >= 0.5).all()


@pytest.mark.parametrize(
    "make_net, shape",
    [
        (lambda: nnMambaSeg(1, 2, channels=16, blocks=3, head="logits"), (1, 1, 32, 32, 32)),
        (lambda: nnMambaSeg(2, 2, channels=16, blocks=2, head="reference"), (1, 2, 32, 32, 32)),
        (lambda: nnMambaEncoder(1, 3, channels=8, blocks=2, mamba_seq=True), (2, 1, 32, 32, 32)),
    ],
    ids=["seg-logits", "seg-reference", "encoder-mamba_seq"],
)
def test_training_step_reaches_every_parameter(make_net, shape):
    torch.manual_seed(0)
    net = make_net().train()
    with torch.no_grad():  # keep the one or two hidden units of the small SE gates out of the dead ReLU zone
        for name, param in net.named_parameters():
            if name.startswith("att") and name.endswith("layer1.bias"):
                param.fill_(1.0)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    loss = net(torch.randn(shape)).pow(2).mean()
    loss.backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    optimizer.step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in net.parameters())


def test_backend_is_passed_to_every_mixer():
    net = nnMambaSeg(channels=16, backend="torch")
    encoder = nnMambaEncoder(channels=8, mamba_seq=True, backend="ref")
    assert {m.backend for n, m in net.named_modules() if n.endswith("mamba")} == {"torch"}
    assert {m.backend for n, m in encoder.named_modules() if n.endswith("mamba")} == {"ref"}


@pytest.mark.parametrize("make_net", [lambda: nnMambaSeg(channels=16), lambda: nnMambaLandmark(channels=16)])
def test_dense_input_errors(make_net):
    net = make_net()
    with pytest.raises(ValueError, match="5D"):
        net(torch.zeros(1, 32, 32, 32))
    with pytest.raises(ValueError, match="in_channels=1.*3 channels"):
        net(torch.zeros(1, 3, 32, 32, 32))
    with pytest.raises(ValueError, match=r"100 \(nearest valid: 96 or 112\)") as error:
        net(torch.zeros(1, 1, 32, 100, 32))
    assert "(32, 100, 32)" in str(error.value)


def test_encoder_input_errors():
    with pytest.raises(ValueError, match="5D"):
        nnMambaEncoder(channels=8)(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="in_channels=2.*1 channels"):
        nnMambaEncoder(in_channels=2, channels=8)(torch.zeros(2, 1, 16, 16, 16))


def test_constructor_errors():
    with pytest.raises(ValueError, match="head must be one of"):
        nnMambaSeg(head="sigmoid")
    with pytest.raises(ValueError, match="channels must be >= 16"):
        nnMambaLandmark(channels=8)


def test_landmark_decode_of_network_output():
    net = nnMambaLandmark(in_channels=1, out_channels=3, channels=16, blocks=2).eval()
    image = torch.randn(2, 1, 16, 16, 16)
    affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0]))
    with torch.no_grad():
        heatmaps = net(image)
    result = net.decode(heatmaps, affine=affine)
    assert result["voxel"].shape == result["world"].shape == (2, 3, 3)
    torch.testing.assert_close(result["world"], result["voxel"] * torch.tensor([2.0, 2.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(result["confidence"], heatmaps.amax(dim=(2, 3, 4)))
    with pytest.raises(ValueError, match="3 landmarks"):
        net.decode(heatmaps[:, :2])


def test_mamba_layer_views_match_functional_recomputation():
    """Single-view (classification) and four-view MambaLayer against the equations, train-mode BN off."""
    for views in (1, 4):
        layer = MambaLayer(8, d_state=4, views=views).eval()
        state = random_reference_state_dict(shape_layout(layer.state_dict()), seed=views)
        layer.load_state_dict(state)
        x = torch.rand(2, 8, 3, 4, 5)
        with torch.no_grad():
            torch.testing.assert_close(
                layer(x), f_mamba_layer(x.double(), as_float64(state), "", views).float(), rtol=1e-4, atol=1e-5
            )


def test_res_layer_matches_functional_recomputation():
    layer = make_res_layer(4, 8, blocks=3, stride=2, mamba_layer=MambaLayer(8, d_state=4)).eval()
    assert isinstance(layer[0], BasicBlock) and layer[0].downsample is not None
    state = random_reference_state_dict(shape_layout(layer.state_dict()), seed=5)
    layer.load_state_dict(state)
    x = torch.rand(1, 4, 8, 6, 4)
    with torch.no_grad():
        torch.testing.assert_close(
            layer(x), f_res_layer(x.double(), as_float64(state), "", 3).float(), rtol=1e-4, atol=1e-5
        )


def test_importing_the_networks_does_not_import_monai():
    """The networks need only torch (and numba), also to decode landmarks in voxels; MONAI comes with the tasks."""
    code = (
        "import sys, torch, nnmamba_nets; assert 'monai' not in sys.modules, 'monai imported'; "
        "net = nnmamba_nets.nnMambaLandmark(out_channels=2, channels=16, blocks=2); "
        "net.decode(torch.rand(1, 2, 16, 16, 16)); assert 'monai' not in sys.modules, 'monai imported by decode'; "
        "from nnmamba_nets.landmarks.transforms import LoadLandmarksd; assert 'monai' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


# ----------------------------------------------------------------------------------------------
# The nnU-Net v1 variant, deep supervision and the no-Mamba ablation
# ----------------------------------------------------------------------------------------------
def test_nnunet_variant_counts_and_layout_at_the_authors_settings():
    for in_ch, classes, parameters in ((1, 16, 15_876_318), (4, 4, 15_859_266)):
        net = nnMambaSeg(in_ch, classes, channels=32, blocks=3, variant="nnunet")
        layout = seg_layout(in_ch, classes, 32, 3, variant="nnunet")
        assert shape_layout(net.state_dict()) == layout and len(layout) == 304
        assert sum(p.numel() for p in net.parameters()) == parameters == unique_parameter_count(layout)


def _frozen_norms(net: torch.nn.Module) -> torch.nn.Module:
    """Training mode (deep-supervision outputs) with BatchNorm on its running statistics, for exact comparisons."""
    net.train()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.eval()
    return net


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_nnunet_variant_loads_strictly_and_matches_functional_recomputation(deep_supervision):
    state = random_reference_state_dict(seg_layout(4, 4, 16, 2, variant="nnunet"), seed=5)
    net = nnMambaSeg(4, 4, channels=16, blocks=2, variant="nnunet", deep_supervision=deep_supervision)
    net = load_pretrained(net, state).eval()
    x = torch.randn(1, 4, 32, 16, 16, generator=torch.Generator().manual_seed(6))
    expected = [t.float() for t in f_seg(x.double(), as_float64(state), blocks=2)]
    with torch.no_grad():
        out = net(x)  # eval: the full-resolution output alone, as nnU-Net with do_ds off
        torch.testing.assert_close(out, expected[0], rtol=1e-4, atol=1e-4 * expected[0].abs().max().item())
        got = _frozen_norms(net)(x)
    if not deep_supervision:
        torch.testing.assert_close(got, expected[0], rtol=1e-4, atol=1e-4 * expected[0].abs().max().item())
        return
    assert [tuple(t.shape) for t in got] == [(1, 4, 32, 16, 16), (1, 4, 16, 8, 8), (1, 4, 8, 4, 4), (1, 4, 4, 2, 2)]
    for mine, theirs in zip(got, expected):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max().item())


def test_nnunet_mamba_layer_has_no_output_block_and_no_residual():
    net = nnMambaSeg(1, 2, channels=16, blocks=2, variant="nnunet")
    layer = net.layer1[1].mamba_layer
    assert not hasattr(layer, "nin2") and not hasattr(layer, "norm2")
    state = as_float64(net.state_dict())
    x = torch.rand(2, 32, 4, 3, 5, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        got = layer.eval()(x)
    expected = f_mamba_layer(x.double(), state, "layer1.1.mamba_layer.").float()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_deep_supervision_trains_every_head_with_monai_loss():
    from monai.losses import DeepSupervisionLoss, DiceCELoss

    torch.manual_seed(0)
    net = nnMambaSeg(2, 3, channels=16, blocks=2, head="logits", deep_supervision=True)
    assert shape_layout(net.state_dict()) == seg_layout(2, 3, 16, 2, head="logits", heads=True)
    loss_function = DeepSupervisionLoss(DiceCELoss(sigmoid=True))
    outputs = net.train()(torch.randn(2, 2, 32, 32, 32))
    assert isinstance(outputs, list) and len(outputs) == 4
    loss = loss_function(outputs, torch.randint(0, 2, (2, 3, 32, 32, 32)).float())
    loss.backward()
    for k in (1, 2, 3):
        assert getattr(net, f"ds{k}_cls_conv").weight.grad.abs().sum() > 0, k
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 2, 32, 32, 32)).shape == (1, 3, 32, 32, 32)  # inference: one output
    plain = nnMambaSeg(2, 3, channels=16, blocks=2)
    plain.deep_supervision = True
    with pytest.raises(ValueError, match="without the deep-supervision heads"):
        plain.train()(torch.randn(1, 2, 16, 16, 16))


@pytest.mark.parametrize(
    "make_net, layout, functional",
    [
        (
            lambda: nnMambaSeg(2, 3, 16, 2, mamba=False),
            lambda: seg_layout(2, 3, 16, 2, mamba=False),
            lambda x, sd: f_seg(x, sd, blocks=2),
        ),
        (
            lambda: nnMambaSeg(2, 3, 16, 2, variant="nnunet", mamba=False),
            lambda: seg_layout(2, 3, 16, 2, variant="nnunet", mamba=False),
            lambda x, sd: f_seg(x, sd, blocks=2)[0],
        ),
        (
            lambda: nnMambaLandmark(1, 4, 16, 2, mamba=False),
            lambda: seg_layout(1, 4, 16, 2, mamba=False),
            lambda x, sd: f_seg(x, sd, blocks=2),
        ),
        (
            lambda: nnMambaEncoder(1, 2, 8, 2, mamba=False),
            lambda: encoder_layout(1, 2, 8, 2, mamba=False),
            lambda x, sd: f_encoder(x, sd, blocks=2),
        ),
    ],
    ids=["seg", "seg-nnunet", "landmark", "encoder"],
)
def test_no_mamba_ablation_is_the_same_network_without_mamba(make_net, layout, functional):
    net = make_net()
    assert not any("mamba" in key for key in net.state_dict())
    assert shape_layout(net.state_dict()) == layout()
    state = random_reference_state_dict(layout(), seed=8)
    net = load_pretrained(net, state).eval()
    in_channels = net.in_channels
    x = torch.randn(2, in_channels, 16, 16, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        out = net(x)
    expected = functional(x.double(), as_float64(state)).float()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_variant_and_ablation_errors():
    with pytest.raises(ValueError, match="variant must be one of"):
        nnMambaSeg(variant="nnunet_v2")
    with pytest.raises(ValueError, match="mamba_seq=True needs mamba=True"):
        nnMambaEncoder(mamba_seq=True, mamba=False)


@pytest.mark.parametrize("head", ["logits", "reference"])
@pytest.mark.parametrize("slab", [1, 5, 32])
def test_inference_head_by_slabs_equals_the_whole_head(head, slab, monkeypatch):
    """Without autograd the output block runs in depth slabs (less memory); the output is the whole head's."""
    from nnmamba_nets.nets import nnmamba_seg

    torch.manual_seed(0)
    net = nnMambaSeg(in_channels=2, out_channels=3, channels=16, blocks=1, head=head)
    net.train()(torch.randn(2, 2, 32, 32, 32))  # BatchNorm statistics that are not the identity
    net.eval()
    x = torch.randn(1, 2, 80, 16, 32)  # depth 80: a last, shorter slab for slab 32
    with torch.no_grad():
        monkeypatch.setattr(nnmamba_seg, "HEAD_SLAB", slab)
        got = net(x)
        monkeypatch.setattr(nnmamba_seg, "HEAD_SLAB", 10**6)  # one slab: conv8(upsample(c7)) as written
        whole = net(x)
    assert got.shape == whole.shape == (1, 3, 80, 16, 32)
    torch.testing.assert_close(got, whole, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(nnmamba_seg, "HEAD_SLAB", slab)
    with_grad = net(x)  # with autograd the whole head runs, so gradients are the usual ones
    assert with_grad.requires_grad
    torch.testing.assert_close(with_grad.detach(), whole, rtol=1e-5, atol=1e-6)
