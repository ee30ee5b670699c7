"""The gated residual stack of WaveNet, shared by every architecture in the zoo.

One implementation, configured: the WaveNet vocoder (r9y9, causal), WaveGlow's ``WN`` coupling network
(non-causal), FloWaveNet's coupling networks and prior, and the ClariNet teacher and student.

Layer ``i`` (dilation ``d_i``)::

    h      = dilated_conv_i(x) + cond[i](c) (+ gcond[i](g))          # gate_channels outputs
    a, b   = split(h)                                                  # two halves of gate_channels/2
    o      = tanh(a) * sigmoid(b)
    x      = (x + res_i(o)) * residual_scale                           # not on the last layer if disabled
    skip_i = skip_conv_i(o)

Parameter layout (what converters map the references onto):

* ``layers.{i}.dilated.weight [gate_channels, residual_channels, kernel_size]`` (+ ``bias``): the filter
  (tanh) half first, then the gate (sigmoid) half. References with separate ``filter_conv``/``gate_conv``
  concatenate them along dim 0.
* ``cond.weight [L * gate_channels, cond_channels, 1]`` (+ ``bias``): ONE 1x1 conv computing every layer's
  local conditioning at once (WaveGlow's ``cond_layer``); per-layer layouts are concatenated in layer order.
  :meth:`GatedResidualStack.project_cond` exposes it so callers can precompute it once.
* ``gcond.weight [L * gate_channels, global_cond_channels, 1]``: optional global (speaker) conditioning.
* ``layers.{i}.res.weight [residual_channels, gate_channels // 2, 1]`` and
  ``layers.{i}.skip.weight [skip_channels, gate_channels // 2, 1]`` (+ biases).

Skip combination (``skip_mode``): ``"sum"`` (WaveGlow, FloWaveNet, ClariNet), ``"sum_sqrt_layers"``
(r9y9 HEAD: the sum times ``sqrt(1 / L)``), ``"legacy_iterative"`` (r9y9 2092a64:
``s = skip_0``, then ``s = (s + skip_i) * sqrt(0.5)``).

These are the readable layers, for training and reference; the same math folded for inference, time-major
on the kernels, is :mod:`zoo.kernels.gated_infer` (:meth:`WaveNetConditioner.infer` calls it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.kernels import gated_infer

SKIP_MODES = ("sum", "sum_sqrt_layers", "legacy_iterative")


class GatedLayer(nn.Module):
    """One dilated gated layer's own parameters (conditioning lives in the stack's fused conv)."""

    def __init__(self, residual_channels: int, gate_channels: int, skip_channels: int, kernel_size: int,
                 dilation: int, *, residual: bool = True, bias: bool = True) -> None:
        super().__init__()
        half = gate_channels // 2
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.dilated = nn.Conv1d(residual_channels, gate_channels, kernel_size, dilation=dilation, bias=bias)
        self.res = nn.Conv1d(half, residual_channels, 1, bias=bias) if residual else None
        self.skip = nn.Conv1d(half, skip_channels, 1, bias=bias)

    @property
    def context(self) -> int:
        """Input samples a dilated conv output spans, minus one: ``(k - 1) * d``."""
        return (self.kernel_size - 1) * self.dilation


class GatedResidualStack(nn.Module):
    """A stack of gated, dilated, conditioned residual layers; returns the combined skip outputs."""

    def __init__(
        self,
        residual_channels: int,
        gate_channels: int,
        skip_channels: int,
        cond_channels: int,
        kernel_size: int,
        dilations: Sequence[int],
        causal: bool,
        residual_scale: float = 1.0,
        skip_mode: str = "sum",
        last_layer_residual: bool = True,
        bias: bool = True,
        cond_bias: bool = True,
        global_cond_channels: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if gate_channels % 2:
            raise ValueError(f"gate_channels must be even (tanh and sigmoid halves), got {gate_channels}")
        if skip_mode not in SKIP_MODES:
            raise ValueError(f"skip_mode must be one of {SKIP_MODES}, got {skip_mode!r}")
        if not dilations:
            raise ValueError("need at least one layer")
        if not causal and kernel_size % 2 == 0:
            raise ValueError("a non-causal stack needs an odd kernel_size for symmetric padding")
        self.residual_channels = residual_channels
        self.gate_channels = gate_channels
        self.skip_channels = skip_channels
        self.cond_channels = cond_channels
        self.kernel_size = kernel_size
        self.dilations = [int(d) for d in dilations]
        self.causal = causal
        self.residual_scale = float(residual_scale)
        self.skip_mode = skip_mode
        self.dropout = dropout
        n = len(self.dilations)
        self.layers = nn.ModuleList(
            GatedLayer(residual_channels, gate_channels, skip_channels, kernel_size, d,
                       residual=last_layer_residual or i < n - 1, bias=bias)
            for i, d in enumerate(self.dilations)
        )
        self.cond = nn.Conv1d(cond_channels, n * gate_channels, 1, bias=cond_bias) if cond_channels > 0 else None
        self.gcond = (nn.Conv1d(global_cond_channels, n * gate_channels, 1, bias=False)
                      if global_cond_channels > 0 else None)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def receptive_field(self) -> int:
        """Input samples that one output sample depends on (``1 + sum((k - 1) * d)``)."""
        return 1 + sum(layer.context for layer in self.layers)

    def project_cond(self, c: Tensor | None, g: Tensor | None = None) -> Tensor | None:
        """Every layer's conditioning ``[B, L * gate_channels, T]`` from ``c`` (and global ``g``) in one matmul."""
        out = None
        if c is not None:
            if self.cond is None:
                raise ValueError("this stack takes no local conditioning (cond_channels=0)")
            out = self.cond(c)
        if g is not None:
            if self.gcond is None:
                raise ValueError("this stack takes no global conditioning (global_cond_channels=0)")
            gp = self.gcond(g if g.dim() == 3 else g.unsqueeze(-1))
            out = gp if out is None else out + gp
        return out

    def _pad(self, x: Tensor, layer: GatedLayer) -> Tensor:
        ctx = layer.context
        if ctx == 0:
            return x
        if self.causal:
            return F.pad(x, (ctx, 0))
        return F.pad(x, (ctx // 2, ctx - ctx // 2))

    def forward(self, x: Tensor, c: Tensor | None = None, g: Tensor | None = None,
                cond_proj: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """Skip output ``[B, skip_channels, T]`` of ``x`` ``[B, residual_channels, T]``.

        ``c`` ``[B, cond_channels, T]`` is the local conditioning (or pass ``cond_proj`` precomputed by
        :meth:`project_cond`); ``g`` ``[B, global_cond_channels(, 1)]`` the global one.
        """
        if cond_proj is None:
            cond_proj = self.project_cond(c, g)
        elif g is not None:
            raise ValueError("pass g to project_cond when giving cond_proj")
        if cond_proj is not None and cond_proj.shape[-1] != x.shape[-1]:
            if cond_proj.shape[-1] == 1:
                cond_proj = cond_proj.expand(-1, -1, x.shape[-1])
            else:
                raise ValueError(f"conditioning has {cond_proj.shape[-1]} steps, input {x.shape[-1]}")
        # ``split``/``chunk`` rather than slicing: the backward of one split concatenates the layers'
        # gradients once, where a slice per layer would zero-fill a tensor of the full size per layer.
        conds = cond_proj.split(self.gate_channels, dim=1) if cond_proj is not None else None
        skips: Tensor | None = None
        n = self.num_layers
        for i, layer in enumerate(self.layers):
            h = layer.dilated(self._pad(F.dropout(x, self.dropout, self.training) if self.dropout else x, layer))
            if conds is not None:
                h = h + conds[i]
            a, b = h.chunk(2, dim=1)
            o = torch.tanh(a) * torch.sigmoid(b)
            s = layer.skip(o)
            if skips is None:
                skips = s
            elif self.skip_mode == "legacy_iterative":
                skips = (skips + s) * math.sqrt(0.5)
            else:
                skips = skips + s
            if layer.res is not None:
                x = (x + layer.res(o)) * self.residual_scale
        assert skips is not None
        if self.skip_mode == "sum_sqrt_layers":
            skips = skips * math.sqrt(1.0 / n)
        return skips


class ZeroConv1d(nn.Module):
    """A zero-initialised 1x1 conv whose output is multiplied by ``exp(3 * scale)`` (FloWaveNet/Glow)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 1)
        self.scale = nn.Parameter(torch.zeros(1, out_channels, 1))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.conv(x) * torch.exp(self.scale * 3)


class WaveNetConditioner(nn.Module):
    """A non-causal WaveNet mapping ``(x, c)`` to the parameters of an affine coupling or a prior.

    ``front="conv1x1"`` (WaveGlow ``start``: a 1x1 conv) or ``"conv3_relu"`` (FloWaveNet: a kernel-3 conv
    then ReLU); ``head="linear_zero"`` (WaveGlow ``end``: a zero-initialised 1x1 conv) or
    ``"relu_conv_relu_zeroconv"`` (FloWaveNet: ReLU, 1x1 conv, ReLU, :class:`ZeroConv1d`).
    """

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int, *, channels: int = 256,
                 gate_channels: int | None = None, skip_channels: int | None = None, num_layers: int = 8,
                 kernel_size: int = 3, front: str = "conv1x1", head: str = "linear_zero",
                 residual_scale: float = 1.0, last_layer_residual: bool = False, dilation_base: int = 2) -> None:
        super().__init__()
        gate = gate_channels or 2 * channels
        skip = skip_channels or channels
        if front == "conv1x1":
            self.front: nn.Module = nn.Conv1d(in_channels, channels, 1)
        elif front == "conv3_relu":
            self.front = nn.Sequential(nn.Conv1d(in_channels, channels, 3, padding=1), nn.ReLU())
        else:
            raise ValueError(f"front must be 'conv1x1' or 'conv3_relu', got {front!r}")
        self.stack = GatedResidualStack(channels, gate, skip, cond_channels, kernel_size,
                                        [dilation_base**i for i in range(num_layers)], causal=False,
                                        residual_scale=residual_scale, skip_mode="sum",
                                        last_layer_residual=last_layer_residual)
        if head == "linear_zero":
            self.head: nn.Module = nn.Conv1d(skip, out_channels, 1)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        elif head == "relu_conv_relu_zeroconv":
            self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip, skip, 1), nn.ReLU(), ZeroConv1d(skip, out_channels))
        else:
            raise ValueError(f"head must be 'linear_zero' or 'relu_conv_relu_zeroconv', got {head!r}")

    def forward(self, x: Tensor, c: Tensor | None = None, cond_proj: Tensor | None = None) -> Tensor:  # type: ignore[override]
        return self.head(self.stack(self.front(x), c, cond_proj=cond_proj))

    def infer(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """:meth:`forward` for inference (no autograd), the same function evaluated faster: the stack
        time-major with the linear front and head folded into its convs
        (:func:`zoo.kernels.gated_infer.infer_conditioner`; agrees with :meth:`forward` to float32 rounding)."""
        return gated_infer.infer_conditioner(self, x, c)
