"""The Mamba-1 mixer, parameter-compatible with ``mamba_ssm.modules.mamba_simple.Mamba``.

Paper: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023.
The parameter names, shapes, dtypes and initialisation follow ``mamba_ssm`` so that a state_dict
moves between the two with ``strict=True``; the selective scan runs on any backend of
:mod:`nnmamba_nets.ssm.backends`. On the ``cpu`` backend the whole mixer between ``in_proj`` and
``out_proj`` runs as fused numba kernels (:mod:`.cpu_mixer`), and :meth:`Mamba.forward_views` mixes
several flipped views of a sequence (nnMamba's channel-spatial Siamese input) without building them.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backends import BackendChoice, _log_auto_choice, get_scan_fn, probe_package, resolve_backend

__all__ = ["Mamba"]


def _view_flips(flip_channels: bool, flip_tokens: bool) -> list[tuple[int, ...]]:
    """The views of a (b, l, c) token sequence as the dims to flip: as is, then channels reversed, tokens
    reversed and both reversed where asked (the order of summation of the nnMamba reference)."""
    candidates = (((), True), ((2,), flip_channels), ((1,), flip_tokens), ((1, 2), flip_channels and flip_tokens))
    return [dims for dims, wanted in candidates if wanted]


def _flip(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return torch.flip(x, dims=dims) if dims else x


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
        use_fast_path: on the ``cpu`` backend, run the fused CPU kernels from ``in_proj``'s output to
            ``out_proj``'s input (no layout copies); ``False`` runs the same maths step by step
            (mamba_ssm's layout, the scan on the backend). The ``cuda`` backend always uses the fused
            kernels. Defaults to True.
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

    def uses_fused_path(self, device: torch.device) -> bool:
        """Whether tensors on ``device`` run the fused CPU kernels: ``cpu`` backend, ``use_fast_path`` and
        ``d_conv`` <= 4 (the kernels' taps, as mamba_ssm's causal_conv1d)."""
        if not (self.use_fast_path and self.backend_for(device).name == "cpu"):
            return False
        from .cpu_conv import MAX_TAPS

        return self.d_conv <= MAX_TAPS

    def _causal_conv(self, x: torch.Tensor, backend: str) -> torch.Tensor:
        """Depthwise causal conv + SiLU on (b, d_inner, l)."""
        if backend == "cuda" and probe_package("causal_conv1d")[0]:
            from causal_conv1d import causal_conv1d_fn

            return causal_conv1d_fn(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu")
        return self.act(self.conv1d(x)[..., : x.shape[-1]])

    def _check_width(self, x: torch.Tensor, dim: int, layout: str) -> None:
        if x.dim() != 3 or x.shape[dim] != self.d_model:
            raise ValueError(f"Mamba expects {layout.format(d_model=self.d_model)}, got {tuple(x.shape)}.")

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Mix a batch of sequences.

        Args:
            hidden_states: (B, L, d_model).

        Returns:
            (B, L, d_model), same shape.

        Raises:
            ValueError: not a (B, L, d_model) tensor.
        """
        self._check_width(hidden_states, 2, "(batch, length, d_model={d_model})")
        if self.uses_fused_path(hidden_states.device):
            return self._forward_fused(hidden_states, orientations=1, directions=1, channels_first=False)
        return self._forward_steps(hidden_states)

    def forward_views(
        self, x: torch.Tensor, flip_channels: bool = False, flip_tokens: bool = False, batch_views: bool = True
    ) -> torch.Tensor:
        """Mix channel-first sequences and their flipped views with shared weights, then average.

        The views are the sequence as is and, where asked, with its channels reversed, its tokens
        reversed, and both (nnMamba's channel-spatial Siamese input with both flags). Each view's output
        is flipped back before the mean. On the fused CPU path (see :meth:`uses_fused_path`) no view is
        built: the channel flip becomes flipped in_proj/out_proj weights and the token flip a backward
        scan; otherwise the views run through :meth:`forward`.

        Args:
            x: (b, d_model, l) channel-first tokens.
            flip_channels: add the channel-reversed views.
            flip_tokens: add the token-reversed views.
            batch_views: off the fused path, run the views as one call on a batch of (views * b)
                sequences (faster) instead of one call per view (lower peak memory). Same results.

        Returns:
            (b, d_model, l).

        Raises:
            ValueError: not a (b, d_model, l) tensor.
        """
        self._check_width(x, 1, "(batch, d_model={d_model}, length)")
        if self.uses_fused_path(x.device):
            return self._forward_fused(
                x.transpose(1, 2),
                orientations=2 if flip_channels else 1,
                directions=2 if flip_tokens else 1,
                channels_first=True,
            )
        tokens = x.transpose(1, 2)  # (b, l, d_model)
        flips = _view_flips(flip_channels, flip_tokens)
        views = [_flip(tokens, dims) for dims in flips]
        if batch_views and len(views) > 1:
            mixed = self(torch.cat(views, dim=0)).chunk(len(views), dim=0)  # views x (b, l, d_model)
        else:
            mixed = [self(view) for view in views]
        restored = [_flip(out, dims) for out, dims in zip(mixed, flips)]
        mean = restored[0] if len(restored) == 1 else sum(restored[1:], restored[0]) / len(restored)
        return mean.transpose(1, 2)  # (b, d_model, l)

    def _forward_fused(
        self, tokens: torch.Tensor, orientations: int, directions: int, channels_first: bool
    ) -> torch.Tensor:
        """The fused CPU path on (b, l, d_model) tokens (any strides), averaged over the views.

        Orientation 1 is the channel-reversed input: ``flip_c(t) @ W^T = t @ flip_1(W)^T``, so both come
        from one in_proj call with stacked weights, and reversing its outputs' channels is a row flip of
        ``out_proj.weight``. Direction 1 is the token-reversed sequence (see :mod:`.cpu_mixer`).

        Returns:
            (b, d_model, l) if ``channels_first``, else (b, l, d_model).
        """
        from .cpu_mixer import mixer_inner_cpu  # imports numba: only where the cpu backend was chosen

        n_batch = tokens.shape[0]
        w_in, b_in = self.in_proj.weight, self.in_proj.bias  # (2 d_inner, d_model)
        w_out, b_out = self.out_proj.weight, self.out_proj.bias  # (d_model, d_inner)
        if orientations == 2:
            w_in = torch.cat([w_in, w_in.flip(1)])  # (2 * 2 d_inner, d_model)
            b_in = None if b_in is None else b_in.repeat(2)
            w_out = torch.cat([w_out, w_out.flip(0)], dim=1)  # (d_model, 2 d_inner)
            b_out = None if b_out is None else (b_out + b_out.flip(0)) / 2  # half the views flip it
        if orientations * directions > 1:
            w_out = w_out / (orientations * directions)  # the mean over the views
        xz = torch.bmm(tokens, w_in.t().expand(n_batch, -1, -1))  # (b, l, orientations * 2 d_inner)
        if b_in is not None:
            xz = xz + b_in
        y = mixer_inner_cpu(
            xz,
            self.conv1d.weight,
            self.conv1d.bias,
            self.x_proj.weight,
            self.dt_proj.weight,
            self.dt_proj.bias,
            -torch.exp(self.A_log.float()),
            self.D.float(),
            orientations,
            directions,
        )  # (b, l, orientations * d_inner)
        if not channels_first:
            return F.linear(y, w_out, b_out)  # (b, l, d_model)
        out = torch.bmm(w_out.expand(n_batch, -1, -1), y.transpose(1, 2))  # (b, d_model, l)
        return out if b_out is None else out + b_out[:, None]

    def _forward_steps(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The step-by-step path (mamba_ssm's layout; the scan on this module's backend): (b, l, d_model)."""
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
