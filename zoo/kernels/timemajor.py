"""Convolutions on time-major ``[T, C]`` buffers, for the inference fast paths.

A 1-D conv with ``k`` taps of dilation ``d`` over a buffer whose rows are time steps is ``k`` matrix
products on shifted row ranges of the buffer (contiguous views: no im2col, no weight copies beyond one
``[k, C_in, C_out]`` layout), accumulated in place into the output rows. Zero rows around the data stand
for the conv's zero padding. 3-tap convs can instead go through Winograd F(4, 3), which makes 6 products
where the direct form makes 12, and wider convs through it three taps at a time
(:func:`conv_taps_winograd`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: Outputs per Winograd F(4, 3) tile.
WINOGRAD_TILE = 4


def padded(like: Tensor, left: int, t: int, right: int, channels: int) -> Tensor:
    """``[left + t + right, channels]`` (dtype and device of ``like``): zero rows around ``t`` rows left for
    the caller to fill (``buf[left:left + t]``)."""
    buf = like.new_empty(left + t + right, channels)
    buf[:left].zero_()
    buf[left + t:].zero_()
    return buf


def pad_rows(x: Tensor, left: int, right: int) -> Tensor:
    """``[T, C] -> [left + T + right, C]`` with zero rows."""
    out = padded(x, left, x.shape[0], right, x.shape[1])
    out[left:left + x.shape[0]] = x
    return out


def tap_weights(weight: Tensor) -> Tensor:
    """A conv's ``weight [C_out, C_in, k]`` as ``[k, C_in, C_out]`` (tap ``j`` is one right-hand matrix)."""
    return weight.permute(2, 1, 0).contiguous()


def conv_taps(out: Tensor, src: Tensor, first: int, taps: Tensor, dilation: int, bias: Tensor | None = None,
              *, accumulate: bool = False) -> Tensor:
    """``out[r] (+)= bias + sum_j src[first + r + j * dilation] @ taps[j]`` for every row ``r`` of ``out``.

    ``out [T, C_out]`` must be contiguous in its rows (a row range of a buffer is); ``taps`` is
    :func:`tap_weights`' layout. With ``accumulate`` the products are added to what ``out`` holds.
    """
    t = out.shape[0]
    for j in range(taps.shape[0]):
        rows = src[first + j * dilation:first + j * dilation + t]
        if j == 0 and not accumulate:
            if bias is None:
                torch.mm(rows, taps[0], out=out)
            else:
                torch.addmm(bias, rows, taps[0], out=out)
        else:
            out.addmm_(rows, taps[j])
    if accumulate and bias is not None:
        out.add_(bias)
    return out


WINOGRAD_CHUNK_ROWS = 4096
"""About how many rows one :func:`winograd_conv3` call takes (:func:`winograd_chunk`). Large enough that
its six products and the transforms' elementwise ops (``rows / 4`` rows each) keep every thread busy: at
1024 rows the 128-channel stage of HiFi-GAN ran its transforms on one thread (torch splits elementwise
ops only past 32768 elements), and in-process A/B runs (2 threads) read HiFi-GAN V1 0.98 -> 0.77 s for 2 s
of audio and WaveGlow 3.04 -> 2.80 s for 1 s, with one thread about the same; small enough that the
scratch (``7 * rows / 4`` rows of each width, 15 MB for WaveGlow's 512-wide gate) stays small."""


def winograd_chunk(d: int) -> int:
    """Rows per :func:`winograd_conv3` call: whole tiles of ``4 d`` rows, about :data:`WINOGRAD_CHUNK_ROWS`."""
    span = WINOGRAD_TILE * d
    return span * max(1, WINOGRAD_CHUNK_ROWS // span)


def winograd_weights(taps: Tensor) -> Tensor:
    """``[6, C_in, C_out]`` transformed filters ``G g`` of 3 taps ``[3, C_in, C_out]`` for :func:`winograd_conv3`."""
    w0, w1, w2 = taps.unbind(0)
    return torch.stack([w0 / 4, (w0 + w1 + w2) / -6, (w0 - w1 + w2) / -6,
                        (w0 + 2 * w1 + 4 * w2) / 24, (w0 - 2 * w1 + 4 * w2) / 24, w2])


def winograd_conv3(src: Tensor, first: int, d: int, rows: int, u: Tensor, bias: Tensor | None, out: Tensor,
                   work_v: Tensor, work_m: Tensor, *, accumulate: bool = False) -> None:
    """``out[:rows] (+)= bias + sum_j src[first + r + j d] @ w[j]``, a 3-tap dilated conv by Winograd F(4, 3)
    (with ``accumulate`` added to what ``out`` holds).

    Output rows are tiled as ``r = 4 d k + o d + i`` (``o < 4``, ``i < d``): the four outputs ``o`` of one
    tile read six input rows ``d`` apart (points 0, 1, -1, 2, -2 and infinity), transformed (``B^T d``,
    additions only), multiplied by the transformed filters ``u`` (:func:`winograd_weights`) in six
    products of ``rows / 4`` rows each, and combined (``A^T m``), in calls of :func:`winograd_chunk` rows.
    ``rows`` is a multiple of ``4 d``; ``src`` must have ``first + rows + 4 d`` rows (zeros past the data)
    and ``out`` at least ``rows``; ``work_v [7, >= n, C_in]`` and ``work_m [7, >= n, C_out]`` are scratch,
    ``n = min(rows, winograd_chunk(d)) / 4`` (:func:`winograd_work`).
    """
    span = WINOGRAD_TILE * d
    step = min(winograd_chunk(d), max(span, work_v.shape[1] * WINOGRAD_TILE // span * span))  # what fits
    for r0 in range(0, rows, step):
        _winograd_tiles(src, first + r0, d, min(step, rows - r0), u, bias, out[r0:], work_v, work_m, accumulate)


def _winograd_tiles(src: Tensor, first: int, d: int, rows: int, u: Tensor, bias: Tensor | None, out: Tensor,
                    work_v: Tensor, work_m: Tensor, accumulate: bool) -> None:
    """One call's worth of :func:`winograd_conv3` (``rows`` at most :func:`winograd_chunk`)."""
    span = WINOGRAD_TILE * d
    nb, n = rows // span, rows // WINOGRAD_TILE
    c_in, c_out = src.shape[1], out.shape[1]
    x = src[first:first + span * (nb + 1)].view(nb + 1, WINOGRAD_TILE, d, c_in)
    d0, d1, d2, d3, d4, d5 = x[:-1, 0], x[:-1, 1], x[:-1, 2], x[:-1, 3], x[1:, 0], x[1:, 1]
    v0, v1, v2, v3, v4, v5, tmp = work_v[:, :n].view(7, nb, d, c_in).unbind(0)
    # B^T d, rows (4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0), (0, -2, -1, 2, 1, 0),
    # (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1), through shared sums.
    torch.add(d4, d2, alpha=-4.0, out=tmp)
    torch.add(d3, d1, alpha=-4.0, out=v2)
    torch.add(tmp, v2, out=v1)
    torch.sub(tmp, v2, out=v2)
    torch.sub(d4, d2, out=tmp)
    torch.sub(d3, d1, out=v4)
    torch.add(tmp, v4, alpha=2.0, out=v3)
    torch.add(tmp, v4, alpha=-2.0, out=v4)
    torch.sub(d0, d2, out=v0)
    torch.add(tmp, v0, alpha=4.0, out=v0)
    torch.sub(d1, d3, out=v5)
    torch.sub(d5, d3, out=tmp)
    torch.add(tmp, v5, alpha=4.0, out=v5)
    vm, m = work_v[:6, :n], work_m[:, :n]
    for j in range(6):
        if j == 1 and bias is not None:  # the bias reaches every output through m1 (A^T column 1 is all ones)
            torch.addmm(bias, vm[j], u[j], out=m[j])
        else:
            torch.mm(vm[j], u[j], out=m[j])
    m0, m1, m2, m3, m4, m5, e = m.view(7, nb, d, c_out).unbind(0)
    hv = out[:rows].view(nb, WINOGRAD_TILE, d, c_out)
    # A^T m, rows (1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1).
    torch.add(m1, m2, out=e)
    torch.sub(m1, m2, out=m2)
    torch.add(m3, m4, out=m1)
    torch.sub(m3, m4, out=m4)
    if accumulate:
        hv[:, 0].add_(m0).add_(e).add_(m1)
        hv[:, 1].add_(m2).add_(m4, alpha=2.0)
        hv[:, 2].add_(e).add_(m1, alpha=4.0)
        hv[:, 3].add_(m2).add_(m4, alpha=8.0).add_(m5)
        return
    torch.add(m0, e, out=hv[:, 0]).add_(m1)
    torch.add(m2, m4, alpha=2.0, out=hv[:, 1])
    torch.add(e, m1, alpha=4.0, out=hv[:, 2])
    torch.add(m2, m4, alpha=8.0, out=hv[:, 3]).add_(m5)


def winograd_group_weights(taps: Tensor) -> Tensor:
    """``[k // 3, 6, C_in, C_out]``: :func:`winograd_weights` of each group of three consecutive taps of
    ``taps [k, C_in, C_out]`` (the ``k % 3`` last taps are left to direct products)."""
    return torch.stack([winograd_weights(taps[j:j + 3]) for j in range(0, taps.shape[0] - 2, 3)])


def winograd_work(like: Tensor, dilation: int, c_in: int, c_out: int) -> tuple[Tensor, Tensor]:
    """Scratch ``(work_v, work_m)`` for :func:`winograd_conv3` calls of :func:`winograd_chunk` rows."""
    n = winograd_chunk(dilation) // WINOGRAD_TILE
    return like.new_empty(7, n, c_in), like.new_empty(7, n, c_out)


#: ``winograd(group, out, first, rows, bias, accumulate)``: group ``group``'s 3-tap conv by Winograd F(4, 3) on
#: ``out[:rows]``, reading the source from row ``first`` (see :func:`winograd_taps`).
WinogradFn = Callable[[int, Tensor, int, int, "Tensor | None", bool], object]
#: ``direct(out, first, taps, bias, accumulate)``: the taps ``taps`` (a slice) by direct products into ``out``.
DirectFn = Callable[[Tensor, int, slice, "Tensor | None", bool], object]


def winograd_taps(out: Tensor, src_rows: int, first: int, k: int, dilation: int, bias: Tensor | None,
                  winograd: WinogradFn, direct: DirectFn, *, tile_reach: int, accumulate: bool = False) -> Tensor:
    """A conv of ``k`` taps into ``out [T, C_out]`` with its taps three at a time through Winograd F(4, 3):
    the grouping shared by torch's products (:func:`conv_taps_winograd`) and the compiled kernel
    (HiFi-GAN's residual blocks on :func:`zoo.kernels.tapconv.winograd3`).

    Taps ``3g .. 3g + 2`` form a 3-tap conv of the same dilation reading from ``first + 3 g d``; each runs
    ``winograd`` on the whole tiles (``4 d`` rows) that every group's reads fit in the source's ``src_rows``
    rows (a tile reads ``tile_reach`` rows past its last output: ``4 d`` for :func:`winograd_conv3`, ``2 d``
    for the kernel's), then the rows past them take the grouped taps and the ``k % 3`` last taps take all
    rows by ``direct`` products. The bias goes in once, with the first products into each row.
    """
    t, d = out.shape[0], dilation
    groups, span = k // 3, WINOGRAD_TILE * dilation
    add = accumulate
    if groups:
        # the last group reads furthest: whole tiles that its reads fit in the source
        rows = span * max(0, min(t // span, (src_rows - first - 3 * (groups - 1) * d - tile_reach) // span))
        for g in range(groups):
            winograd(g, out, first + 3 * g * d, rows, bias if g == 0 else None, add)
            add = True
        if rows < t:  # the rows past the whole tiles: the grouped taps by direct products
            direct(out[rows:], first + rows, slice(0, 3 * groups), bias, accumulate)
    if k > 3 * groups:  # the k % 3 last taps, every row
        direct(out, first + 3 * groups * d, slice(3 * groups, k), None if groups else bias, add)
    return out


def conv_taps_winograd(out: Tensor, src: Tensor, first: int, taps: Tensor, groups: Tensor, dilation: int,
                       bias: Tensor | None, work: tuple[Tensor, Tensor], *, accumulate: bool = False) -> Tensor:
    """:func:`conv_taps` for a conv of ``k >= 3`` taps, its taps taken three at a time through Winograd F(4, 3)
    (:func:`winograd_taps`, on torch's products).

    Each group of three taps goes through :func:`winograd_conv3` (``groups`` from
    :func:`winograd_group_weights`; 6 products of a quarter of the rows instead of 3 of all rows) on the
    whole tiles that ``src`` holds, the rows past them and the ``k % 3`` last taps through direct products.
    ``work`` is :func:`winograd_work`'s scratch for this dilation and these widths.
    """
    d = dilation

    def winograd(g: int, o: Tensor, f: int, rows: int, b: Tensor | None, add: bool) -> None:
        winograd_conv3(src, f, d, rows, groups[g], b, o, work[0], work[1], accumulate=add)

    def direct(o: Tensor, f: int, j: slice, b: Tensor | None, add: bool) -> None:
        conv_taps(o, src, f, taps[j], d, b, accumulate=add)

    return winograd_taps(out, src.shape[0], first, taps.shape[0], d, bias, winograd, direct,
                         tile_reach=WINOGRAD_TILE * d, accumulate=accumulate)
