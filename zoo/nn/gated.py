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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.kernels import tapconv
from zoo.kernels.timemajor import (
    WINOGRAD_TILE,
    conv_taps,
    pad_rows,
    padded,
    tap_weights,
    winograd_chunk,
    winograd_conv3,
    winograd_weights,
)

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
        """:meth:`forward` for inference (no autograd), the same function evaluated faster.

        ``x`` ``[B, in, T]`` and ``c`` ``[B, cond, T]`` may be any strided views (the halves of a
        coupling's input are used as they are). Time-major inside: every conv is one matrix product on
        the parameters' own memory (no weight copies), the dilated taps gathered into one buffer, the
        conditioning read through a transposed view; ``tanh(a) sigmoid(b)`` as ``(2 sigmoid(2a) - 1)
        sigmoid(b)`` (one sigmoid pass); a linear head (WaveGlow's ``end``) folded into every layer's skip
        conv and a 1x1 front (WaveGlow's ``start``) into the first dilated conv, so the skip sum and the
        first layer's input taps are never formed at full width. Agrees with :meth:`forward` to float32
        rounding.
        """
        require_inference(self, "WaveNetConditioner.infer")
        return torch.stack([_infer_one(self, x[b], None if c is None else c[b]) for b in range(x.shape[0])])


def fast_inference() -> bool:
    """Whether the inference-only fast paths may run: no autograd, and not being traced or exported
    (their Python loop over the batch and in-place buffers would be frozen into a trace)."""
    return not (torch.is_grad_enabled() or torch.jit.is_tracing() or torch.jit.is_scripting()
                or torch.onnx.is_in_onnx_export())


def require_inference(module: nn.Module, name: str) -> None:
    """Refuse an inference-only path (``name``) while autograd would track ``module``'s parameters."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters()):
        raise RuntimeError(f"{name} is for inference: use it under torch.no_grad()")


def _gather_taps(col: Tensor, src: Tensor, start: int, dilation: int, t: int) -> None:
    """``col [T, C, k]``: tap ``j`` of output row ``r`` is ``src[start + r + j * dilation]``."""
    for j in range(col.shape[2]):
        col[:, :, j] = src[start + j * dilation: start + j * dilation + t]


def _tap_left(stack: GatedResidualStack, layer: GatedLayer) -> int:
    """Rows before the output row that a layer's first tap reads (all of its context when causal)."""
    return layer.context if stack.causal else layer.context // 2


_WINO_MIN_CHANNELS = 64  # below this the transforms' memory traffic outweighs the products saved
_WINO_MAX_WASTE = 1.15  # at most 15% of the rows computed past the last output


def _winograd_rows(stack: GatedResidualStack, layer: GatedLayer, t: int, reach: int | None = None) -> int:
    """Rows the Winograd path computes for ``layer`` on ``t`` steps (whole tiles), 0 where it does not pay
    or where the tiles would read past ``reach`` (rows of the buffer from the layer's first tap on)."""
    if (stack.kernel_size != 3 or layer.context == 0 or t < 4 * WINOGRAD_TILE
            or min(stack.residual_channels, stack.gate_channels) < _WINO_MIN_CHANNELS):
        return 0
    span = WINOGRAD_TILE * layer.dilation
    rows = span * -(-t // span)
    fits = reach is None or rows + span <= reach
    return rows if rows <= _WINO_MAX_WASTE * t and fits else 0


def stack_pad(stack: GatedResidualStack) -> tuple[int, int]:
    """``(left, right)`` zero rows the time-major residual buffer of :func:`infer_layers` needs (on the
    right, enough for the Winograd tiles to read whole tiles past the last step)."""
    left = max(_tap_left(stack, layer) for layer in stack.layers)
    right = max(layer.context - _tap_left(stack, layer) for layer in stack.layers)
    if stack.kernel_size == 3:
        right = max(right, max(2 * WINOGRAD_TILE * layer.dilation - 1 - _tap_left(stack, layer)
                               for layer in stack.layers))
    return left, right


def residual_buffer(stack: GatedResidualStack, t: int, like: Tensor) -> tuple[Tensor, int]:
    """``(buf, left)``: the time-major residual buffer of :func:`infer_layers` for ``t`` steps
    (``[left + t + right, R]``, dtype and device of ``like``), its padding rows zeroed; the caller fills
    rows ``left:left + t``."""
    left, right = stack_pad(stack)
    return padded(like, left, t, right, stack.residual_channels), left


def infer_layers(stack: GatedResidualStack, buf: Tensor, left: int, t: int, cond_t: Tensor | None, *,
                 first_h: Tensor | None = None, skip_head: Tensor | None = None) -> Tensor:
    """The stack's layers run time-major for inference; returns the combined skips ``[T, S]`` (biases in).

    ``buf [left + T + right, R]`` holds the residual stream in rows ``left:left + T`` with zero rows around
    it (:func:`stack_pad`); it is updated in place, up to the input of the last layer (the residual update
    after the last layer, which only a next layer would read, is skipped). ``cond_t [T, cond]`` is the
    local conditioning (any strided view, read in place).

    Each dilated conv is one matrix product per tap on shifted row ranges of ``buf`` (contiguous views, no
    im2col) plus one for the conditioning, all into one ``[T, gate]`` buffer reused by every layer (a
    fresh tensor per layer would be page-faulted in each time, which costs as much as a product), the
    biases (dilated and conditioning, summed) written by the first product. A 3-tap conv of at least 64
    channels goes through Winograd F(4, 3) instead (:func:`zoo.kernels.timemajor.winograd_conv3`: 6 products of a
    quarter of the rows where the taps make 3 of all rows; the buffer's right padding, :func:`stack_pad`,
    covers its whole tiles). On CPUs with AVX-512 the dilated convs (taps and Winograd) run on
    :mod:`zoo.kernels.tapconv`'s compiled kernel instead of torch's products: every tap summed in registers, the
    Winograd transforms fused on blocks that stay in cache. ``tanh(a) sigmoid(b)`` is
    ``(2 sigmoid(2a) - 1) sigmoid(b)``: the tanh half's weights are doubled (exact in floating point; or
    that half of ``h`` when it is the smaller), one sigmoid pass, and two half-width passes leave
    ``-tanh(a) sigmoid(b)``, whose sign the skip and residual products absorb.

    ``first_h [T, gate]``, when given, replaces layer 0's dilated conv (a caller that composed it with its
    front; it is overwritten); ``skip_head [out, S]`` folds a linear head into every skip conv (the skips
    then come out as ``head(skips)`` without its bias).
    """
    if stack.skip_mode != "sum" and skip_head is not None:
        raise ValueError("a linear head folds into the skip convs only when the skips are summed")
    half, gate = stack.gate_channels // 2, stack.gate_channels
    h0 = buf[left:left + t]
    # [gate] multipliers: 2 on the tanh half (sigmoid(2a)), 1 on the sigmoid half.
    double = buf.new_ones(gate)
    double[:half] = 2.0
    has_cond = stack.cond is not None and cond_t is not None
    # Winograd rows per layer (0: direct taps); the tiles read whole tiles, so the buffer must reach them.
    wino = [0 if i == 0 and first_h is not None
            else _winograd_rows(stack, layer, t, buf.shape[0] - left + _tap_left(stack, layer))
            for i, layer in enumerate(stack.layers)]
    rows_max = max([t, *wino])
    hbuf = first_h if first_h is not None and rows_max == t else buf.new_empty(rows_max, gate)
    work_v = work_m = None
    # With AVX-512 the dilated convs run on the compiled kernel (its Winograd transforms fused, in cache).
    kernel = buf.dtype == torch.float32 and tapconv.native_f32()
    if any(wino) and not kernel:
        n_max = max(min(r, winograd_chunk(layer.dilation))
                    for r, layer in zip(wino, stack.layers, strict=True) if r) // WINOGRAD_TILE
        work_v = buf.new_empty(7, n_max, stack.residual_channels)
        work_m = buf.new_empty(7, n_max, gate)
    n_layers = stack.num_layers
    skips: Tensor | None = None
    skip_bias: Tensor | None = None
    scale = stack.residual_scale
    for i, layer in enumerate(stack.layers):
        d = layer.dilation
        # Double the tanh half through the weights when they are smaller than that half of ``h`` (else,
        # e.g. FloWaveNet's last blocks: wide conditioning, few steps, double ``h``); both are exact.
        w_size = layer.dilated.weight.numel() + (gate * stack.cond.in_channels if has_cond else 0)
        fold = not (i == 0 and first_h is not None) and w_size <= t * half
        mult = double if fold else None
        bias = layer.dilated.bias
        wc = None
        if has_cond:
            assert stack.cond is not None
            wc = stack.cond.weight[i * gate:(i + 1) * gate, :, 0]
            wc = (wc * mult[:, None] if mult is not None else wc).t()  # [cond, gate]
            if stack.cond.bias is not None:
                cb = stack.cond.bias[i * gate:(i + 1) * gate]
                bias = cb if bias is None else cb + bias
        if bias is not None and mult is not None:
            bias = bias * mult
        if i == 0 and first_h is not None:
            h = first_h
            if bias is not None:
                h.add_(bias)
        else:
            w = layer.dilated.weight if mult is None else layer.dilated.weight * mult[:, None, None]
            w = tap_weights(w)  # [k, R, gate]
            first = left - _tap_left(stack, layer)
            h = hbuf[:t]
            if kernel and wino[i]:
                tapconv.winograd3(hbuf, buf, first, d, wino[i], winograd_weights(w).contiguous(), bias)
            elif wino[i]:
                assert work_v is not None and work_m is not None
                winograd_conv3(buf, first, d, wino[i], winograd_weights(w), bias, hbuf, work_v, work_m)
            elif kernel:
                tapconv.conv_taps(h, buf, first, w, d, bias)
            else:
                conv_taps(h, buf, first, w, d, bias)
        if wc is not None:
            h.addmm_(cond_t, wc)
        if not fold:
            h[:, :half].mul_(2.0)
        h.sigmoid_()
        sa, sb = h[:, :half], h[:, half:]
        sa.mul_(sb)
        neg = sb.sub_(sa, alpha=2.0)  # sigmoid(b) - 2 sigmoid(2a) sigmoid(b) = -tanh(a) sigmoid(b)
        w_skip, b_skip = layer.skip.weight[..., 0], layer.skip.bias
        if skip_head is not None:
            w_skip = skip_head @ w_skip  # [out, half]
            b_skip = skip_head @ b_skip if b_skip is not None else None
        if skips is None:
            skips = torch.mm(neg, w_skip.t().neg())
        elif stack.skip_mode == "legacy_iterative":
            skips.addmm_(neg, w_skip.t(), alpha=-1.0).mul_(math.sqrt(0.5))
        else:
            skips.addmm_(neg, w_skip.t(), alpha=-1.0)
        if b_skip is not None:
            if stack.skip_mode == "legacy_iterative":
                skips.add_(b_skip * (math.sqrt(0.5) if i else 1.0))
            else:
                skip_bias = b_skip if skip_bias is None else skip_bias + b_skip
        if layer.res is not None and i < n_layers - 1:  # the last residual update is never read
            h0.addmm_(neg, layer.res.weight[..., 0].t(), beta=scale, alpha=-scale)
            if layer.res.bias is not None:
                h0.add_(layer.res.bias * scale)
    assert skips is not None
    if skip_bias is not None:
        skips.add_(skip_bias)
    if stack.skip_mode == "sum_sqrt_layers":
        skips.mul_(math.sqrt(1.0 / n_layers))
    return skips


def _infer_one(net: WaveNetConditioner, x: Tensor, c: Tensor | None) -> Tensor:
    """One item: ``x [in, T]``, ``c [cond, T]`` -> ``[out, T]`` (see :meth:`WaveNetConditioner.infer`)."""
    stack: GatedResidualStack = net.stack
    t = x.shape[-1]
    k, ch, gate = stack.kernel_size, stack.residual_channels, stack.gate_channels
    xt = x.t()  # [T, in], a view
    linear_front = isinstance(net.front, nn.Conv1d)
    front_conv = net.front if linear_front else net.front[0]
    assert isinstance(front_conv, nn.Conv1d)
    buf, left = residual_buffer(stack, t, x)  # the residual stream, time-major
    h0 = buf[left:left + t]
    fk = front_conv.kernel_size[0]
    if fk == 1:
        torch.addmm(front_conv.bias, xt, front_conv.weight[..., 0].t(), out=h0)
    else:
        fcol = x.new_empty(t, x.shape[0], fk)
        _gather_taps(fcol, pad_rows(xt, fk // 2, fk // 2), 0, 1, t)
        torch.addmm(front_conv.bias, fcol.view(t, -1), front_conv.weight.reshape(ch, -1).t(), out=h0)
    if not linear_front:
        h0.relu_()
    layer0 = stack.layers[0]
    first_h = None
    if linear_front and fk == 1 and layer0.context:
        # The first dilated conv of a linear 1x1 front, composed: taps of the (narrow) input x.
        d = layer0.dilation
        w0 = torch.einsum("gck,ci->gik", layer0.dilated.weight, front_conv.weight[..., 0])
        fcol = x.new_empty(t, x.shape[0], k)
        _gather_taps(fcol, pad_rows(xt, d * (k // 2), d * (k // 2)), 0, d, t)
        tap_bias = torch.einsum("gck,c->kg", layer0.dilated.weight, front_conv.bias)  # [k, gate]
        first_h = torch.addmm(tap_bias.sum(0), fcol.view(t, -1), w0.reshape(gate, -1).t())
        for j in range(k):  # the front's output is zero-padded, not bias-padded: remove missing taps
            off = (j - k // 2) * d
            if off < 0:
                first_h[:min(-off, t)] -= tap_bias[j]
            elif off > 0:
                first_h[max(t - off, 0):] -= tap_bias[j]
    linear_head = isinstance(net.head, nn.Conv1d) and stack.skip_mode == "sum"
    cond_t = c.t() if c is not None else None  # [T, cond], a view
    skips = infer_layers(stack, buf, left, t, cond_t, first_h=first_h,
                         skip_head=net.head.weight[..., 0] if linear_head else None)
    if linear_head:
        out = skips.add_(net.head.bias) if net.head.bias is not None else skips
    else:
        # ReLU, 1x1, ReLU, ZeroConv1d (its exp(3 scale) folded into the weights).
        relu1, conv1, _, zero = net.head
        y = torch.addmm(conv1.bias, skips.relu_(), conv1.weight[..., 0].t()).relu_()
        e = torch.exp(zero.scale.reshape(-1) * 3)
        out = torch.addmm(zero.conv.bias * e, y, (zero.conv.weight[..., 0] * e[:, None]).t())
    return out.t()
