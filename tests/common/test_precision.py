"""Mixed precision ids: autocast_device reads amp per device; CpuAutocastInferer runs bf16 and returns fp32."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer

from nnmamba_nets import nnMambaSeg
from nnmamba_nets.common.precision import CpuAutocastInferer, autocast_device


@pytest.mark.parametrize(
    "device, amp, expected",
    [("cuda:0", True, "cuda"), ("cpu", "true", "cpu"), ("cpu", False, None), ("cuda", "false", None), ("cpu", 0, None)],
)
def test_autocast_device_follows_amp_and_the_device(device, amp, expected):
    assert autocast_device(torch.device(device), amp) == expected


def test_autocast_device_names_the_id_of_a_bad_value():
    with pytest.raises(ValueError, match="amp must be True or False, got 'maybe'"):
        autocast_device("cpu", "maybe")
    with pytest.raises(ValueError, match="amp: mixed precision runs on cuda or cpu, the device is 'meta'"):
        autocast_device("meta", True)


def conv_output_dtypes(network: torch.nn.Module) -> list[torch.dtype]:
    """Records the dtype of every Conv3d output while the network runs."""
    seen: list[torch.dtype] = []
    for module in network.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.register_forward_hook(lambda _module, _inputs, output: seen.append(output.dtype))
    return seen


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_the_network_runs_in_bf16_and_the_output_is_float32(deep_supervision):
    torch.manual_seed(0)
    network = nnMambaSeg(
        in_channels=2, out_channels=3, channels=16, blocks=1, head="logits", deep_supervision=deep_supervision
    )
    seen = conv_output_dtypes(network)
    x = torch.randn(2, 2, 32, 32, 32)
    output = CpuAutocastInferer(SimpleInferer(), enabled=True)(x, network)  # training mode: a list with heads
    outputs = output if deep_supervision else [output]
    assert len(outputs) == (4 if deep_supervision else 1)
    assert all(o.dtype == torch.float32 for o in outputs)
    assert seen and set(seen) == {torch.bfloat16}
    outputs[0].float().mean().backward()  # gradients reach the float32 weights
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in network.parameters())
    seen.clear()
    network.eval()
    with torch.no_grad():
        plain = CpuAutocastInferer(SimpleInferer(), enabled=False)(x, network)
        assert seen and set(seen) == {torch.float32}  # disabled: float32 as without the wrapper
        seen.clear()
        bf16 = CpuAutocastInferer(SlidingWindowInferer(roi_size=(32, 32, 16)), enabled=True)(x, network)
        assert seen and set(seen) == {torch.bfloat16}
    assert plain.dtype == bf16.dtype == torch.float32
    assert (bf16 - plain).abs().max() < 0.05 * plain.abs().max()


def test_enabled_is_read_as_a_flag():
    with pytest.raises(ValueError, match="enabled must be True or False"):
        CpuAutocastInferer(SimpleInferer(), enabled="sometimes")  # type: ignore[arg-type]
