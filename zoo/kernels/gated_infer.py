"""The gated WaveNet stack's inference path: the same math as :class:`zoo.nn.gated.GatedResidualStack`,
algebraically folded and run time-major on :mod:`zoo.kernels.timemajor`'s and :mod:`zoo.kernels.tapconv`'s
convolutions.

:func:`infer_layers` runs a stack's layers on a time-major residual buffer (:func:`residual_buffer`);
:func:`infer_conditioner` runs a whole :class:`zoo.nn.gated.WaveNetConditioner` (front, stack, head) with
its linear front and head folded into the stack's first and skip convs. Both agree with the readable
layers' ``forward`` to float32 rounding (``tests/test_fast_paths.py``) and are for inference only
(:func:`fast_inference`, :func:`require_inference`).

Why here and how the imports run: ``zoo.kernels`` sits below ``zoo.nn`` (``tests/test_architecture.py``),
so this module imports nothing from ``zoo.nn``. It reads the readable modules through the structural
types :class:`GatedStackLike`, :class:`GatedLayerLike` and :class:`ConditionerLike`, which name exactly
the attributes it uses (the parameter layout documented in :mod:`zoo.nn.gated`); ``zoo.nn.gated`` keeps
the readable layers and calls down into this module for ``WaveNetConditioner.infer``, and the plugins
whose own models hold a stack (Parallel WaveNet's IAF flows) call :func:`infer_layers` directly. Which
convolutions the layers run on, torch's products or the compiled kernel, is the choice every model shares
(:func:`zoo.kernels.tapconv.conv_backend`, the ``"gated_stack"`` schedule of :mod:`zoo.kernels.backend`),
in float32 and, for a stack with bfloat16 weights, in a bfloat16-operand form (:data:`FORMS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

from zoo.kernels import native, tapconv
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


class GatedLayerLike(Protocol):
    """What this module reads of one gated layer (:class:`zoo.nn.gated.GatedLayer`)."""

    dilation: int
    dilated: nn.Conv1d  # [gate, R, k]: the tanh half first, then the sigmoid half
    res: nn.Conv1d | None  # [R, gate / 2, 1]
    skip: nn.Conv1d  # [S, gate / 2, 1]

    @property
    def context(self) -> int: ...


class GatedStackLike(Protocol):
    """What this module reads of a gated stack (:class:`zoo.nn.gated.GatedResidualStack`)."""

    residual_channels: int
    gate_channels: int
    kernel_size: int
    causal: bool
    residual_scale: float
    skip_mode: str
    cond: nn.Conv1d | None  # [L * gate, cond, 1]: every layer's conditioning

    @property
    def layers(self) -> Sequence[GatedLayerLike]: ...

    @property
    def num_layers(self) -> int: ...


class ConditionerLike(Protocol):
    """What :func:`infer_conditioner` reads of a :class:`zoo.nn.gated.WaveNetConditioner`: ``front`` a 1x1
    conv or ``Sequential(conv, ReLU)``, ``head`` a 1x1 conv or ``Sequential(ReLU, conv 1x1, ReLU,
    ZeroConv1d)`` (a module with ``conv`` and ``scale``)."""

    stack: GatedStackLike
    front: nn.Module
    head: nn.Module

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


FORMS = (torch.float32, torch.bfloat16)
"""The operand dtypes the gated stack's schedule has compiled forms for (a model running it declares
``compiled_kernels = {"tapconv": FORMS}``). The bfloat16 form (a stack whose weights are bfloat16, on the
compiled kernel: :func:`zoo.kernels.backend.choose`) takes bfloat16 conv operands and keeps every sum, the
gate, the residual stream and the skips in float32 (:func:`infer_layers`); without the kernel a bfloat16
stack runs torch's bfloat16 products, every conv output rounded to bfloat16."""

def fast_inference() -> bool:
    """Whether the inference-only fast paths may run: no autograd, and not being traced or exported
    (their Python loop over the batch and in-place buffers would be frozen into a trace)."""
    return not (torch.is_grad_enabled() or torch.jit.is_tracing() or torch.jit.is_scripting()
                or torch.onnx.is_in_onnx_export())


def require_inference(module: nn.Module | ConditionerLike, name: str) -> None:
    """Refuse an inference-only path (``name``) while autograd would track ``module``'s parameters."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters()):
        raise RuntimeError(f"{name} is for inference: use it under torch.no_grad()")


def _gather_taps(col: Tensor, src: Tensor, start: int, dilation: int, t: int) -> None:
    """``col [T, C, k]``: tap ``j`` of output row ``r`` is ``src[start + r + j * dilation]``."""
    for j in range(col.shape[2]):
        col[:, :, j] = src[start + j * dilation: start + j * dilation + t]


def _tap_left(stack: GatedStackLike, layer: GatedLayerLike) -> int:
    """Rows before the output row that a layer's first tap reads (all of its context when causal)."""
    return layer.context if stack.causal else layer.context // 2


_WINO_MIN_CHANNELS = 64  # below this the transforms' memory traffic outweighs the products saved
_WINO_MAX_WASTE = 1.15  # at most 15% of the rows computed past the last output


def _winograd_rows(stack: GatedStackLike, layer: GatedLayerLike, t: int, reach: int | None = None) -> int:
    """Rows the Winograd path computes for ``layer`` on ``t`` steps (whole tiles), 0 where it does not pay
    or where the tiles would read past ``reach`` (rows of the buffer from the layer's first tap on)."""
    if (stack.kernel_size != 3 or layer.context == 0 or t < 4 * WINOGRAD_TILE
            or min(stack.residual_channels, stack.gate_channels) < _WINO_MIN_CHANNELS):
        return 0
    span = WINOGRAD_TILE * layer.dilation
    rows = span * -(-t // span)
    fits = reach is None or rows + span <= reach
    return rows if rows <= _WINO_MAX_WASTE * t and fits else 0


def stack_pad(stack: GatedStackLike) -> tuple[int, int]:
    """``(left, right)`` zero rows the time-major residual buffer of :func:`infer_layers` needs (on the
    right, enough for the Winograd tiles to read whole tiles past the last step)."""
    left = max(_tap_left(stack, layer) for layer in stack.layers)
    right = max(layer.context - _tap_left(stack, layer) for layer in stack.layers)
    if stack.kernel_size == 3:
        right = max(right, max(2 * WINOGRAD_TILE * layer.dilation - 1 - _tap_left(stack, layer)
                               for layer in stack.layers))
    return left, right


def residual_buffer(stack: GatedStackLike, t: int, like: Tensor) -> tuple[Tensor, int]:
    """``(buf, left)``: the time-major residual buffer of :func:`infer_layers` for ``t`` steps
    (``[left + t + right, R]``, dtype and device of ``like``), its padding rows zeroed; the caller fills
    rows ``left:left + t``."""
    left, right = stack_pad(stack)
    return padded(like, left, t, right, stack.residual_channels), left


def infer_layers(stack: GatedStackLike, buf: Tensor, left: int, t: int, cond_t: Tensor | None, *,
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
    covers its whole tiles). Where :func:`zoo.kernels.backend.choose` picks the compiled kernel (float32 on
    CPUs with AVX2 and FMA, or AVX-512) the dilated convs (taps and Winograd) run on :mod:`zoo.kernels.tapconv`
    instead of torch's products: every tap summed in registers, the Winograd transforms fused on blocks in cache.
    ``tanh(a) sigmoid(b)`` is ``(2 sigmoid(2a) - 1) sigmoid(b)``: the tanh half's weights are doubled
    (exact in floating point; or that half of ``h`` when it is the smaller), one sigmoid pass, and two
    half-width passes leave ``-tanh(a) sigmoid(b)``, whose sign the skip and residual products absorb.

    A stack whose weights are bfloat16 runs the bfloat16 form where the kernel is loaded (:func:`bf16_kernel`,
    :func:`_infer_layers_bf16`): bfloat16 conv operands, every sum, the gate, the residual stream and the
    skips in float32, and float32 skips returned; without the kernel it runs torch's bfloat16 products.

    ``first_h [T, gate]``, when given, replaces layer 0's dilated conv (a caller that composed it with its
    front; it is overwritten); ``skip_head [out, S]`` folds a linear head into every skip conv (the skips
    then come out as ``head(skips)`` without its bias).
    """
    if stack.skip_mode != "sum" and skip_head is not None:
        raise ValueError("a linear head folds into the skip convs only when the skips are summed")
    if bf16_kernel(stack):
        return _infer_layers_bf16(stack, buf, left, t, cond_t, first_h=first_h, skip_head=skip_head)
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
    # The dilated convs on the compiled kernel or torch's products: the choice every model shares.
    kernel = tapconv.conv_backend(buf.dtype, FORMS).compiled
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
        fold, w, wc, bias = _layer_weights(stack, i, t, double, has_cond, i == 0 and first_h is not None)
        h = hbuf[:t] if w is not None else _composed(first_h, bias)
        if w is not None:
            first = left - _tap_left(stack, layer)
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
        neg = _gate(h, half, fold)
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
        skip_bias = _skip_bias(stack, skips, b_skip, i, skip_bias)
        if layer.res is not None and i < n_layers - 1:  # the last residual update is never read
            h0.addmm_(neg, layer.res.weight[..., 0].t(), beta=scale, alpha=-scale)
            if layer.res.bias is not None:
                h0.add_(layer.res.bias * scale)
    assert skips is not None
    return _skips_out(stack, skips, skip_bias)


def _folds(stack: GatedStackLike, i: int, t: int, has_cond: bool, composed: bool) -> bool:
    """Whether layer ``i`` on ``t`` steps doubles its tanh half through its weights (they are smaller than
    that half of ``h``; else, e.g. FloWaveNet's last blocks: wide conditioning, few steps, ``h`` is doubled;
    both are exact), never where the caller composed its conv (``composed``)."""
    layer, gate = stack.layers[i], stack.gate_channels
    w_size = layer.dilated.weight.numel() + (gate * stack.cond.in_channels if has_cond and stack.cond else 0)
    return not composed and w_size <= t * (gate // 2)


def _layer_weights(stack: GatedStackLike, i: int, t: int, double: Tensor, has_cond: bool,
                   composed: bool) -> tuple[bool, Tensor | None, Tensor | None, Tensor | None]:
    """Layer ``i``'s dilated conv as :func:`infer_layers` runs it on ``t`` steps, in ``double``'s dtype:
    ``(fold, taps [k, R, gate] or None where the caller composed it, wc [cond, gate] or None, bias or
    None)``, the conditioning bias summed into the dilated one; where ``fold`` (:func:`_folds`) the tanh
    half is doubled (``double``: 2 on that half, 1 on the other) in the weights and the bias."""
    layer = stack.layers[i]
    gate, dtype = stack.gate_channels, double.dtype
    fold = _folds(stack, i, t, has_cond, composed)
    mult = double if fold else None
    bias = None if layer.dilated.bias is None else layer.dilated.bias.to(dtype)
    wc = None
    if has_cond:
        assert stack.cond is not None
        wc = stack.cond.weight[i * gate:(i + 1) * gate, :, 0].to(dtype)
        wc = (wc * mult[:, None] if mult is not None else wc).t()  # [cond, gate]
        if stack.cond.bias is not None:
            cb = stack.cond.bias[i * gate:(i + 1) * gate].to(dtype)
            bias = cb if bias is None else cb + bias
    if bias is not None and mult is not None:
        bias = bias * mult
    if composed:
        return fold, None, wc, bias
    w = layer.dilated.weight.to(dtype)
    return fold, tap_weights(w if mult is None else w * mult[:, None, None]), wc, bias  # taps [k, R, gate]


def _composed(first_h: Tensor | None, bias: Tensor | None) -> Tensor:
    """Layer 0's conv that the caller composed (``first_h``), its biases added."""
    assert first_h is not None
    return first_h if bias is None else first_h.add_(bias)


_Packs = tuple[Tensor | None, ...]


def _cached(stack: GatedStackLike, key: tuple[object, ...], sources: tuple[Tensor | None, ...],
            make: Callable[[], _Packs]) -> _Packs:
    """``make()`` (bfloat16 packs of the stack's weights), kept on the stack until one of ``sources`` (the
    parameters they are made of) changes; weights made under ``torch.inference_mode``, which keep no version
    counter, are packed on every call. FloWaveNet's last blocks have conditioning weights far larger than
    their few steps' products: packing them on every call would cost more than the convs."""
    return native.kept(stack, ("gated_bf16", *key), sources, make)


def _gate(h: Tensor, half: int, fold: bool) -> Tensor:
    """``-tanh(a) sigmoid(b)`` in place of ``h = [a | b]`` (``[a | b]``'s first half doubled already where
    ``fold``), as ``sigmoid(b) - 2 sigmoid(2a) sigmoid(b)``: one sigmoid pass; returns the view ``h[:, half:]``."""
    if not fold:
        h[:, :half].mul_(2.0)
    h.sigmoid_()
    sa, sb = h[:, :half], h[:, half:]
    sa.mul_(sb)
    return sb.sub_(sa, alpha=2.0)


def _skip_bias(stack: GatedStackLike, skips: Tensor, b_skip: Tensor | None, i: int,
               summed: Tensor | None) -> Tensor | None:
    """Layer ``i``'s skip bias ``b_skip``: added to ``skips`` now for ``skip_mode="legacy_iterative"`` (scaled
    as the skips were), else summed into ``summed``, the biases :func:`_skips_out` adds once; returns ``summed``."""
    if b_skip is None:
        return summed
    if stack.skip_mode == "legacy_iterative":
        skips.add_(b_skip * (math.sqrt(0.5) if i else 1.0))
        return summed
    return b_skip if summed is None else summed + b_skip


def _skips_out(stack: GatedStackLike, skips: Tensor, skip_bias: Tensor | None) -> Tensor:
    """The combined skips: their summed biases in, scaled for ``skip_mode="sum_sqrt_layers"``."""
    if skip_bias is not None:
        skips.add_(skip_bias)
    if stack.skip_mode == "sum_sqrt_layers":
        skips.mul_(math.sqrt(1.0 / stack.num_layers))
    return skips


def bf16_kernel(stack: GatedStackLike) -> bool:
    """Whether ``stack`` runs the bfloat16 form of :func:`infer_layers`: its weights are bfloat16 and the
    compiled kernel runs bfloat16 operands here (:func:`zoo.kernels.tapconv.conv_backend`). Its callers then
    run what is around the stack (fronts, heads, the flows' affine maps) in float32 on the float32 skips it
    returns."""
    return (stack.layers[0].dilated.weight.dtype == torch.bfloat16
            and tapconv.conv_backend(torch.bfloat16, FORMS).compiled)


def time_major_cond(stack: GatedStackLike, c: Tensor) -> Tensor:
    """The conditioning ``c [B, cond, T]`` as :func:`infer_conditioner` reads it on ``stack``, for a caller that
    passes the same conditioning to several nets of the same kind (WaveGlow's flows all read the same one,
    FloWaveNet's flows each half of a block's): where the stack runs the bfloat16 form (:func:`bf16_kernel`),
    a ``[B, cond, T]`` view of one time-major bfloat16 copy, which each net then reads in place instead of
    making its own; else ``c``."""
    if not bf16_kernel(stack) or c.dim() != 3:
        return c
    rows = torch.empty(c.shape[0], c.shape[2], c.shape[1], dtype=torch.bfloat16, device=c.device)
    rows.copy_(c.transpose(1, 2))
    return rows.transpose(1, 2)


def _infer_layers_bf16(stack: GatedStackLike, buf: Tensor, left: int, t: int, cond_t: Tensor | None, *,
                       first_h: Tensor | None, skip_head: Tensor | None) -> Tensor:
    """:func:`infer_layers`' bfloat16 form on :mod:`zoo.kernels.tapconv`: returns float32 skips ``[T, S]``.

    The same schedule (tanh half doubled, one sigmoid pass, ``-tanh(a) sigmoid(b)`` with its sign in the
    weights), with bfloat16 operands and float32 everything else: the residual stream is float32 (``buf``
    itself where it is float32, else a float32 copy, and ``buf`` is left as it was) and is rounded to a
    bfloat16 copy only as the next dilated conv's input; each dilated conv (its taps, direct) and the
    conditioning product sum bfloat16 operands in float32 into the float32 ``h``, in one kernel call that
    keeps both in the same registers (``conv_taps(plus=...)``); the gate is computed in float32 and rounded to
    bfloat16 only as the operand of the residual and skip 1x1 convs, whose sums go into the float32 residual
    stream and skip sum. Where the half is a multiple of 32 the gate is taken from the conv's registers
    (:func:`zoo.kernels.tapconv.conv_gate`, the weights' outputs in its panel order): ``h`` is never stored
    (FloWaveNet's first block wrote and read 45 MB per layer for it); else (a layer the caller composed, an
    odd width) the conv stores ``h`` and one pass (:func:`zoo.kernels.tapconv.gate`) reads it.
    A skip conv too narrow for the kernel's bfloat16 tiles (a linear head folded into it, e.g. WaveGlow's 8, 6
    or 4 outputs) stays a float32 product on the float32 gate: on the kernel's float32 tiles where it has them
    (its columns padded with zeros to 16; torch's product for so few columns ran at about 15 GFLOP/s, 8% of
    WaveGlow's dilated-conv time), else torch's. Weights are rounded once to bfloat16 after the exact folds
    (the doubled tanh half, negated 1x1s), or after the head's fold into the skip convs.

    No Winograd here: F(4, 3)'s transformed inputs and filters rounded to bfloat16 put about 1% of ``h``'s
    size into it (a 128-channel layer's output then ends further from float32 than torch's all-bfloat16
    convs), and the flows compound it; the direct taps keep the error at the operands' rounding.
    """
    bf = torch.bfloat16
    half, gate = stack.gate_channels // 2, stack.gate_channels
    res = buf if buf.dtype == torch.float32 else buf.float()  # the float32 residual stream
    src = torch.zeros(res.shape, dtype=bf)  # its bfloat16 operand copy (zero padding rows)
    h0, h0b = res[left:left + t], src[left:left + t]
    double = res.new_ones(gate)
    double[:half] = 2.0
    has_cond = stack.cond is not None and cond_t is not None
    cond_b = None
    if has_cond:
        assert cond_t is not None
        if cond_t.dtype == bf and cond_t.stride(1) == 1:  # made by time_major_cond: read in place
            cond_b = cond_t
        else:
            cond_b = torch.empty(t, cond_t.shape[1], dtype=bf)  # rows contiguous, as the kernel reads them
            cond_b.copy_(cond_t)
    hbuf = first_h if first_h is not None else res.new_empty(t, gate)
    gb = torch.empty(t, half, dtype=bf)  # the gate, rounded: the 1x1 convs' operand
    n_layers, scale = stack.num_layers, stack.residual_scale
    skips: Tensor | None = None
    skips_wide: Tensor | None = None  # a narrow skip product's buffer, its columns padded to the tiles' 16
    skip_bias: Tensor | None = None
    stale = True  # whether h0b must be refreshed from h0
    for i, layer in enumerate(stack.layers):
        d = layer.dilation
        composed = i == 0 and first_h is not None
        fold = _folds(stack, i, t, has_cond, composed)

        gated = not composed and half % 32 == 0  # conv and gate in one pass (tapconv.conv_gate)

        def conv_packs(i: int = i, composed: bool = composed, gated: bool = gated) -> _Packs:
            _, w, wc, bias = _layer_weights(stack, i, t, double, has_cond, composed)
            if gated:  # the outputs in the kernel's gate panels
                perm = tapconv.gate_panels(half)
                w, wc, bias = (None if x is None else x[..., perm] for x in (w, wc, bias))
            return (None if w is None else tapconv.pack(w, bf), None if wc is None else tapconv.pack(wc[None], bf),
                    bias)

        def skip_packs(layer: GatedLayerLike = layer) -> _Packs:
            w_skip, b_skip = layer.skip.weight[..., 0].float(), _f32(layer.skip.bias)
            if skip_head is not None:
                w_skip = skip_head.float() @ w_skip  # [out, half]
                b_skip = skip_head.float() @ b_skip if b_skip is not None else None
            if w_skip.shape[0] % 16 == 0:  # the kernel's tiles: bfloat16 operands
                return tapconv.pack(w_skip.t().neg()[None], bf), None, w_skip, b_skip
            if not tapconv.native_f32():  # torch's float32 product on the float32 gate
                return None, None, w_skip, b_skip
            # a float32 product on the kernel's float32 tiles, zero columns up to the next 16
            padded = w_skip.new_zeros(-(-w_skip.shape[0] // 16) * 16, w_skip.shape[1])
            padded[:w_skip.shape[0]] = w_skip
            return None, tapconv.pack(padded.t().neg()[None], torch.float32), w_skip, b_skip

        cond_w, cond_bias = (stack.cond.weight, stack.cond.bias) if has_cond and stack.cond else (None, None)
        pw, pwc, bias = _cached(stack, ("conv", i, fold, composed, has_cond, gated),
                                (layer.dilated.weight, layer.dilated.bias, cond_w, cond_bias), conv_packs)
        packed, packed_f32, w_skip, b_skip = _cached(stack, ("skip", i, skip_head is not None),
                                                     (layer.skip.weight, layer.skip.bias, skip_head), skip_packs)
        assert w_skip is not None
        plus = None if pwc is None or cond_b is None else (cond_b, pwc)
        # The gate (float32, rounded into gb), kept in float32 only for a float32 skip product: one pass over
        # h, or (gated) straight from the conv's registers, h never stored. The conditioning product joins the
        # taps' sums either way.
        if pw is not None:
            if stale:
                h0b.copy_(h0)
                stale = False
            first = left - _tap_left(stack, layer)
            if gated:
                neg = tapconv.conv_gate(gb, src, first, pw, d, bias, doubled=fold, plus=plus,
                                        keep=hbuf[:t, :half] if packed is None else None)
            else:
                h = tapconv.conv_taps(hbuf[:t], src, first, pw, d, bias, plus=plus)
                neg = tapconv.gate(h, fold, gb, keep=packed is None)
        else:
            h = _composed(first_h, bias)
            if plus is not None:
                assert cond_b is not None
                tapconv.conv_taps(h, cond_b, 0, pwc, 1, accumulate=True)
            neg = tapconv.gate(h, fold, gb, keep=packed is None)
        if packed is not None:
            if skips is None:
                skips = tapconv.conv_taps(res.new_empty(t, w_skip.shape[0]), gb, 0, packed, 1)
            else:
                tapconv.conv_taps(skips, gb, 0, packed, 1, accumulate=True)
        elif packed_f32 is not None:
            assert neg is not None
            if skips_wide is None:
                skips_wide = tapconv.conv_taps(res.new_empty(t, packed_f32.shape[2]), neg, 0, packed_f32, 1)
                skips = skips_wide[:, :w_skip.shape[0]]
            else:
                tapconv.conv_taps(skips_wide, neg, 0, packed_f32, 1, accumulate=True)
        elif skips is None:
            assert neg is not None
            skips = torch.mm(neg, w_skip.t().neg())
        else:
            assert neg is not None
            skips.addmm_(neg, w_skip.t(), alpha=-1.0)
        if stack.skip_mode == "legacy_iterative" and i:
            skips.mul_(math.sqrt(0.5))
        skip_bias = _skip_bias(stack, skips, b_skip, i, skip_bias)
        if layer.res is not None and i < n_layers - 1:  # h0 = scale (h0 + tanh(a) sigmoid(b) W + b)
            res_w, res_b = layer.res.weight, layer.res.bias
            packed_res, b_res = _cached(stack, ("res", i), (res_w, res_b), lambda w=res_w, b=res_b: (
                tapconv.pack(w[..., 0].float().t().neg()[None], bf), _f32(b)))
            assert packed_res is not None
            tapconv.conv_taps(h0, gb, 0, packed_res, 1, b_res, accumulate=True)
            if scale != 1.0:
                h0.mul_(scale)
            stale = True
    assert skips is not None
    return _skips_out(stack, skips, skip_bias)


def _f32(p: Tensor | None) -> Tensor | None:
    """``p`` in float32 (``None`` stays ``None``)."""
    return None if p is None else p.float()


def infer_conditioner(net: ConditionerLike, x: Tensor, c: Tensor | None = None) -> Tensor:
    """``net.forward`` for inference (no autograd), the same function evaluated faster.

    ``x`` ``[B, in, T]`` and ``c`` ``[B, cond, T]`` may be any strided views (the halves of a
    coupling's input are used as they are). Time-major inside: every conv is one matrix product on
    the parameters' own memory (no weight copies), the dilated taps gathered into one buffer, the
    conditioning read through a transposed view; ``tanh(a) sigmoid(b)`` as ``(2 sigmoid(2a) - 1)
    sigmoid(b)`` (one sigmoid pass); a linear head (WaveGlow's ``end``) folded into every layer's skip
    conv and a 1x1 front (WaveGlow's ``start``) into the first dilated conv, so the skip sum and the
    first layer's input taps are never formed at full width. Agrees with ``forward`` to float32
    rounding.
    """
    require_inference(net, "WaveNetConditioner.infer")
    return torch.stack([_infer_one(net, x[b], None if c is None else c[b]) for b in range(x.shape[0])])


def _infer_one(net: ConditionerLike, x: Tensor, c: Tensor | None) -> Tensor:
    """One item: ``x [in, T]``, ``c [cond, T]`` -> ``[out, T]`` (see :func:`infer_conditioner`).

    A bfloat16 net on the compiled kernel (:func:`bf16_kernel`) runs its front and head in float32 (``x``
    rounded to bfloat16 as the front's operand, the weights converted) around the bfloat16 form of the stack,
    and returns float32, so a flow's affine map on it runs in float32; only a ReLU head's first 1x1 (as wide
    as the skips, a tenth of FloWaveNet's float32 time before) takes bfloat16 operands on the kernel, its
    ReLU rounded in one pass, its sums float32."""
    stack: GatedStackLike = net.stack
    t = x.shape[-1]
    k, ch, gate = stack.kernel_size, stack.residual_channels, stack.gate_channels
    f32 = bf16_kernel(stack)
    if f32:
        x = x.to(torch.bfloat16).float()

    def wt(p: Tensor | None) -> Tensor | None:  # a parameter as the front and head use it
        return p.float() if f32 and p is not None else p

    xt = x.t()  # [T, in], a view
    linear_front = isinstance(net.front, nn.Conv1d)
    front_conv = net.front if linear_front else net.front[0]
    assert isinstance(front_conv, nn.Conv1d)
    front_w, front_b = wt(front_conv.weight), wt(front_conv.bias)
    buf, left = residual_buffer(stack, t, x)  # the residual stream, time-major
    h0 = buf[left:left + t]
    fk = front_conv.kernel_size[0]
    if fk == 1:
        torch.addmm(front_b, xt, front_w[..., 0].t(), out=h0)
    else:
        fcol = x.new_empty(t, x.shape[0], fk)
        _gather_taps(fcol, pad_rows(xt, fk // 2, fk // 2), 0, 1, t)
        torch.addmm(front_b, fcol.view(t, -1), front_w.reshape(ch, -1).t(), out=h0)
    if not linear_front:
        h0.relu_()
    layer0 = stack.layers[0]
    first_h = None
    if linear_front and fk == 1 and layer0.context:
        # The first dilated conv of a linear 1x1 front, composed: taps of the (narrow) input x.
        d = layer0.dilation
        w_dil = wt(layer0.dilated.weight)
        w0 = torch.einsum("gck,ci->gik", w_dil, front_w[..., 0])
        fcol = x.new_empty(t, x.shape[0], k)
        _gather_taps(fcol, pad_rows(xt, d * (k // 2), d * (k // 2)), 0, d, t)
        tap_bias = torch.einsum("gck,c->kg", w_dil, front_b)  # [k, gate]
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
        out = skips.add_(wt(net.head.bias)) if net.head.bias is not None else skips
    else:
        # ReLU, 1x1, ReLU, ZeroConv1d (its exp(3 scale) folded into the weights).
        relu1, conv1, _, zero = net.head
        if f32 and conv1.out_channels % 16 == 0:  # the kernel's tiles: the 1x1 on bfloat16 operands
            packed, b1 = _cached(stack, ("head",), (conv1.weight, conv1.bias), lambda: (
                tapconv.pack(conv1.weight[..., 0].float().t()[None], torch.bfloat16), _f32(conv1.bias)))
            assert packed is not None
            relu_b = tapconv.leaky_relu(skips, 0.0, torch.empty(skips.shape, dtype=torch.bfloat16))
            y = tapconv.conv_taps(skips.new_empty(t, conv1.out_channels), relu_b, 0, packed, 1, b1).relu_()
        else:
            y = torch.addmm(wt(conv1.bias), skips.relu_(), wt(conv1.weight)[..., 0].t()).relu_()
        e = torch.exp(wt(zero.scale).reshape(-1) * 3)
        out = torch.addmm(wt(zero.conv.bias) * e, y, (wt(zero.conv.weight)[..., 0] * e[:, None]).t())
    return out.t()
