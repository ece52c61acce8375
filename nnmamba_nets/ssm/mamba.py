"""The Mamba-1 mixer, parameter-compatible with ``mamba_ssm.modules.mamba_simple.Mamba``.

Paper: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023.
The parameter names, shapes, dtypes and initialisation follow ``mamba_ssm`` so that a state_dict
moves between the two with ``strict=True``; the selective scan runs on any backend of
:mod:`nnmamba_nets.ssm.backends`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backends import BackendChoice, _log_auto_choice, get_scan_fn, probe_package, resolve_backend

__all__ = ["Mamba"]


class Mamba(nn.Module):
    """Mamba-1 selective state-space mixer.

    Args:
        d_model: width of the tokens (input and output channels).
        d_state: SSM state size N. Defaults to 16.
        d_conv: kernel size of the causal depthwise convolution. Defaults to 4.
        expand: inner width factor, ``d_inner = expand * d_model``. Defaults to 2.
        dt_rank: rank of the time-step projection; ``"auto"`` = ``ceil(d_model / 16)``.
        dt_min: smallest initial time step. Defaults to 0.001.
        dt_max: largest initial time step. Defaults to 0.1.
        dt_init: ``"random"`` (uniform) or ``"constant"`` initialisation of ``dt_proj.weight``.
        dt_scale: scale of the ``dt_proj.weight`` initialisation. Defaults to 1.0.
        dt_init_floor: floor of the initial time steps. Defaults to 1e-4.
        conv_bias: bias in ``conv1d``. Defaults to True.
        bias: bias in ``in_proj`` and ``out_proj``. Defaults to False.
        use_fast_path: accepted for ``mamba_ssm`` compatibility; the ``cuda`` backend always uses
            the fused kernels.
        layer_idx: accepted for ``mamba_ssm`` compatibility (inference caches are not supported).
        device: device of the parameters.
        dtype: dtype of the linear and conv parameters (``A_log`` and ``D`` stay fp32).
        backend: scan backend, ``"cuda"``, ``"triton"``, ``"cpu"``, ``"torch"``, ``"ref"`` or ``"auto"``
            (``NNMAMBA_SCAN_BACKEND`` if set, else the automatic choice). Resolved once per device type.

    Examples::

        >>> mixer = Mamba(d_model=64)
        >>> mixer(torch.randn(2, 100, 64)).shape
        torch.Size([2, 100, 64])
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        layer_idx: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str | None = "auto",
    ) -> None:
        super().__init__()
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}.")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"Need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}.")
        factory_kwargs = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx
        self.backend = backend
        self._choices: dict[str, BackendChoice] = {}

        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias, **factory_kwargs)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
            **factory_kwargs,
        )
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory_kwargs)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory_kwargs)
        self._init_dt_proj(dt_init, dt_scale, dt_min, dt_max, dt_init_floor)
        # S4D-real initialisation: A = -(1..d_state) for every channel, kept as log in fp32.
        a_init = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a_init))  # (d_inner, d_state)
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))  # (d_inner,) fp32
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory_kwargs)

    def _init_dt_proj(self, dt_init: str, dt_scale: float, dt_min: float, dt_max: float, floor: float) -> None:
        """mamba_ssm's time-step initialisation: bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max]."""
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        bias = self.dt_proj.bias
        dt = torch.exp(
            torch.rand(self.d_inner, device=bias.device, dtype=bias.dtype) * (math.log(dt_max) - math.log(dt_min))
            + math.log(dt_min)
        ).clamp(min=floor)
        inv_dt = dt + torch.log(-torch.expm1(-dt))  # inverse of softplus
        with torch.no_grad():
            bias.copy_(inv_dt)
        bias._no_reinit = True

    def backend_for(self, device: torch.device) -> BackendChoice:
        """The scan backend this module uses for tensors on ``device`` (resolved once per device type)."""
        choice = self._choices.get(device.type)
        if choice is None:
            choice = resolve_backend(self.backend, device)
            _log_auto_choice(device.type, choice)
            self._choices[device.type] = choice
        return choice

    def _causal_conv(self, x: torch.Tensor, backend: str) -> torch.Tensor:
        """Depthwise causal conv + SiLU on (b, d_inner, l)."""
        if backend == "cuda" and probe_package("causal_conv1d")[0]:
            from causal_conv1d import causal_conv1d_fn

            return causal_conv1d_fn(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu")
        return self.act(self.conv1d(x)[..., : x.shape[-1]])

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Mix a batch of sequences.

        Args:
            hidden_states: (B, L, d_model).

        Returns:
            (B, L, d_model), same shape.
        """
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(
                f"Mamba expects (batch, length, d_model={self.d_model}), got {tuple(hidden_states.shape)}."
            )
        choice = self.backend_for(hidden_states.device)
        xz = self.in_proj(hidden_states).transpose(1, 2)  # (b, 2 * d_inner, l)
        x, z = xz.chunk(2, dim=1)  # (b, d_inner, l) each
        x = self._causal_conv(x, choice.name)
        x_dbl = self.x_proj(x.transpose(1, 2))  # (b, l, dt_rank + 2 * d_state)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # (b, d_inner, l); bias is added in the scan
        B = B.transpose(1, 2).contiguous()  # (b, d_state, l)
        C = C.transpose(1, 2).contiguous()  # (b, d_state, l)
        A = -torch.exp(self.A_log.float())  # (d_inner, d_state)
        y = get_scan_fn(choice.name)(
            x.contiguous(),
            dt.contiguous(),
            A,
            B,
            C,
            self.D.float(),
            z.contiguous(),
            self.dt_proj.bias.float(),
            True,
        )  # (b, d_inner, l)
        return self.out_proj(y.transpose(1, 2))  # (b, l, d_model)

    def extra_repr(self) -> str:
        chosen = ", ".join(f"{dev}={c.name}" for dev, c in self._choices.items())
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, d_conv={self.d_conv}, expand={self.expand}, "
            f"dt_rank={self.dt_rank}, backend={self.backend!r}" + (f" [{chosen}]" if chosen else "")
        )
