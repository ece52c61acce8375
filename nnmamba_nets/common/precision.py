"""Mixed precision in the bundles: float16 autocast on CUDA (MONAI's engines), bfloat16 autocast on CPU (ours).

Every bundle has one ``amp`` id. :func:`autocast_device` turns it and the run's device into where the
run autocasts; MONAI's trainers and evaluators get ``amp`` true only on CUDA (where they also scale the
loss), and :class:`CpuAutocastInferer` wraps the bundle's inferer so that on CPU the network runs under
``torch.autocast("cpu", dtype=torch.bfloat16)``. The Mamba scan accumulates in float32 either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

from nnmamba_nets.common.flags import as_flag

__all__ = ["CpuAutocastInferer", "autocast_device"]


def autocast_device(device: torch.device | str, amp: Any) -> str | None:
    """Where a run with mixed precision ``amp`` on ``device`` autocasts.

    Args:
        device: the run's device (``cuda``, ``cuda:0``, ``cpu``).
        amp: the bundle's ``amp`` id: a bool or text :func:`~nnmamba_nets.common.flags.as_flag` reads.

    Returns:
        ``"cuda"`` (float16, by MONAI's engines), ``"cpu"`` (bfloat16, by :class:`CpuAutocastInferer`)
        or None (float32).

    Raises:
        ValueError: ``amp`` is not a boolean, or ``device`` is neither CUDA nor CPU while ``amp`` is on.
    """
    if not as_flag(amp, "amp"):
        return None
    device_type = torch.device(device).type
    if device_type not in ("cuda", "cpu"):
        raise ValueError(f"amp: mixed precision runs on cuda or cpu, the device is {device_type!r}; set amp false.")
    return device_type


def _to_float32(output: Any) -> Any:
    """Floating tensors of a network output (a tensor, or a list/tuple/dict of them) as float32."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, Mapping):
        return {key: _to_float32(value) for key, value in output.items()}
    if isinstance(output, Sequence) and not isinstance(output, str):
        return type(output)(_to_float32(value) for value in output)
    return output


class CpuAutocastInferer(Inferer):
    """Run another inferer under ``torch.autocast("cpu", dtype=torch.bfloat16)``; its outputs come back float32.

    Ours because MONAI's engines autocast on CUDA only (their ``amp_kwargs`` go to ``torch.autocast("cuda")``).
    The network (convolutions, matmuls, the Mamba mixers) runs in bfloat16 and the loss, post-processing and
    metrics see float32. Disabled, it calls the wrapped inferer unchanged.

    Args:
        inferer: the inferer to wrap (``SimpleInferer``, ``SlidingWindowInferer``, ...).
        enabled: autocast or not, usually ``autocast_device(device, amp) == "cpu"``.
    """

    def __init__(self, inferer: Inferer, enabled: bool) -> None:
        super().__init__()
        self.inferer = inferer
        self.enabled = as_flag(enabled, "enabled")

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        """The wrapped inferer's output for ``inputs``; floating tensors as float32.

        Args:
            inputs: the network input, (batch, channels, *spatial).
            network: the network (or any callable the wrapped inferer takes).
            args: passed on to the wrapped inferer.
            kwargs: passed on to the wrapped inferer.

        Returns:
            what the wrapped inferer returns, floating tensors converted to float32 when autocast ran.
        """
        if not self.enabled:
            return self.inferer(inputs, network, *args, **kwargs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = self.inferer(inputs, network, *args, **kwargs)
        return _to_float32(output)
