"""Fast incremental WaveNet sampling (Paine et al. 2016, "Fast Wavenet Generation Algorithm").

Each layer keeps the inputs it will need again in a ring buffer (``Q = max((k - 1) * d) + 1`` slots), so
one step costs O(layers): every dilated conv becomes one matmul on ``k`` gathered taps. Around that:

* the upsampled conditioning of *all* layers is projected once per block of steps (the stack's fused
  1x1 conv), the dilated-conv bias folded in, so a step only adds a precomputed row;
* all state lives in preallocated tensors (layer ring buffers, the front conv's input window, the
  random draws of a block);
* the per-step work is one TorchScript function (no Python loop over layers), and sampling reads
  pre-drawn uniforms (normals for a Gaussian), drawn by position from one seed (:mod:`zoo.core.noise`), so a
  ``torch.Generator`` makes the result reproducible, every item of a batch reads the draws it reads alone,
  and a run split into pieces (a stream) reads what one run reads;
* several utterances are sampled at once (batch dimension), each stopping at its own length: the run is split
  at each item's end and the state compacted to the items still running (:meth:`IncrementalSampler.keep`);
* the state is kept between :meth:`IncrementalSampler.run` calls, so a stream samples on where it stopped.

A bfloat16 model (``model.to(torch.bfloat16)``) samples with *bfloat16 weights and float32 activations*:
the state, the conditioning and every sum are float32, the weights are the model's bfloat16 values (stored
in bfloat16 by the compiled loop, which widens each as it is loaded; widened to float32 copies for the
TorchScript step). Both compute exactly what float32 sampling with the bfloat16-rounded weights computes.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from zoo.core.noise import draw_seed, noise_blocks, uniform_blocks
from zoo.kernels import native
from zoo.nn.distributions import DiscretizedMixLogistic, Gaussian, MuLawSoftmax

SKIP_CODES = {"sum": 0, "sum_sqrt_layers": 1, "legacy_iterative": 2}
BLOCK = 2048
"""Steps per block of sampling at batch 1 (each block's conditioning, ``[steps, B, L, G]`` float32, is made at
once: 100 MB for the r9y9 LJSpeech WaveNet); a batch of B takes ``BLOCK // B`` steps, at least
``MIN_BLOCK``, so a block's memory does not grow with the batch."""
MIN_BLOCK = 256


@torch.jit.script
def _step(x_in: Tensor, t: int, cond_t: Tensor, front_buf: Tensor, front_w: Tensor, front_b: Tensor,
          front_relu: bool, layer_buf: Tensor, offsets: Tensor, wd: Tensor, wr: Tensor, br: Tensor, ws: Tensor,
          bs: Tensor, has_res: Tensor, residual_scale: float, skip_mode: int, h1w: Tensor, h1b: Tensor, h2w: Tensor,
          h2b: Tensor) -> Tensor:
    """One sample for every batch item: returns the output parameters ``[B, C_out]``."""
    b = x_in.shape[0]
    f = front_buf.shape[1]
    if f > 1:
        front_buf[:, :-1] = front_buf[:, 1:].clone()
    front_buf[:, -1] = x_in
    h = torch.addmm(front_b, front_buf.reshape(b, -1), front_w)
    if front_relu:
        h = torch.relu(h)
    n_layers = layer_buf.shape[0]
    q = layer_buf.shape[2]
    half = wd.shape[2] // 2
    pos = t % q
    skips = torch.zeros(b, ws.shape[2], dtype=h.dtype, device=h.device)
    for i in range(n_layers):
        layer_buf[i, :, pos] = h
        idx = torch.remainder(t - offsets[i], q)
        taps = layer_buf[i].index_select(1, idx).reshape(b, -1)
        a = torch.addmm(cond_t[:, i], taps, wd[i])
        o = torch.tanh(a[:, :half]) * torch.sigmoid(a[:, half:])
        s = torch.addmm(bs[i], o, ws[i])
        if i == 0:
            skips = s
        elif skip_mode == 2:
            skips = (skips + s) * 0.7071067811865476
        else:
            skips = skips + s
        if bool(has_res[i]):
            h = (h + torch.addmm(br[i], o, wr[i])) * residual_scale
    if skip_mode == 1:
        skips = skips * (1.0 / float(n_layers)) ** 0.5
    out = torch.addmm(h1b, torch.relu(skips), h1w)
    return torch.addmm(h2b, torch.relu(out), h2w)


class IncrementalSampler:
    """Holds the repacked weights and preallocated state of one sampling run of ``model``."""

    def __init__(self, model: Any, batch: int, g: Tensor | None = None) -> None:
        stack = model.stack
        cfg = model.config
        p = next(model.parameters())
        dev, dt = p.device, p.dtype
        #: the weights' dtype; a bfloat16 model's state and sums are float32 (``dt``), see the module docstring
        self.weight_dtype = dt
        dt = activation_dtype(dt)
        k, layers = stack.kernel_size, stack.layers
        n = len(layers)
        r, gch = stack.residual_channels, stack.gate_channels
        self.model, self.batch, self.g = model, batch, g
        self.dist = model.distribution
        zeros_g = torch.zeros(gch, device=dev, dtype=dt)
        self.bd = torch.stack([lay.dilated.bias.to(dt) if lay.dilated.bias is not None else zeros_g for lay in layers])
        self.br = torch.stack([lay.res.bias.to(dt) if lay.res is not None and lay.res.bias is not None
                               else torch.zeros(r, device=dev, dtype=dt) for lay in layers])
        self.has_res = torch.tensor([lay.res is not None for lay in layers])
        self.bs = torch.stack([lay.skip.bias.to(dt) if lay.skip.bias is not None
                               else torch.zeros(stack.skip_channels, device=dev, dtype=dt) for lay in layers])
        self._dense: tuple[Tensor, ...] | None = None  # the TorchScript step's matrices, made when first needed
        self.offsets = torch.tensor([[(k - 1 - j) * lay.dilation for j in range(k)] for lay in layers], device=dev)
        q = max(int(self.offsets.max()), 0) + 1
        self.layer_buf = torch.zeros(n, batch, q, r, device=dev, dtype=dt)
        fk = cfg.front_kernel_size
        cin = model.front.weight.shape[1]
        self.front_w = model.front.weight.permute(2, 1, 0).reshape(fk * cin, r).to(dt).contiguous()
        self.front_b = model.front.bias.to(dt) if model.front.bias is not None else torch.zeros(r, device=dev, dtype=dt)
        self.front_buf = torch.zeros(batch, fk, cin, device=dev, dtype=dt)
        self.front_relu = cfg.front_activation == "relu"
        self.h1b, self.h2b = (None if b is None else b.to(dt) for b in (model.head1.bias, model.head2.bias))
        self.out_channels = model.head2.weight.shape[0]
        self.residual_scale = float(stack.residual_scale)
        self.skip_mode = SKIP_CODES[stack.skip_mode]
        self.n_layers, self.gate = n, gch
        self.kernel_size = k
        self.device, self.dtype = dev, dt
        self.use_kernel = True  # the compiled loop for free-running CPU float32 sampling (False: TorchScript)
        self.threads: int | None = None  # the compiled loop's threads; None: torch.get_num_threads()
        self._packed: list[Tensor] | None = None
        self._work: Tensor | None = None
        self._pre: Tensor | None = None  # the compiled loop's past-tap products, kept between blocks
        self.x_in: Tensor | None = None  # the next step's input (made at the first step)
        self.t = 0  # steps taken: the next step's position in the ring buffers
        self.noise_offset = 0  # position of step 0 in the noise (see zoo.core.noise.noise_at)
        self._cond32: SimpleNamespace | None = None  # bfloat16 weights: float32 copies of the conditioning projections

    def _dense_weights(self) -> tuple[Tensor, ...]:
        """``(wd [L, k * R, G], wr [L, G/2, R], ws [L, G/2, S], h1w, h2w)``: the layers' matrices as ``[in, out]``
        stacked over layers, dilated taps oldest first (matching the gathered buffer). Made on first use;
        the compiled loop packs its own copy from them and drops them."""
        if self._dense is None:
            stack, model = self.model.stack, self.model
            k, r, gch = stack.kernel_size, stack.residual_channels, stack.gate_channels
            zeros_r = torch.zeros(gch // 2, r, device=self.device, dtype=self.weight_dtype)
            self._dense = tuple(w.to(self.dtype).contiguous() for w in (
                torch.stack([lay.dilated.weight.permute(2, 1, 0).reshape(k * r, gch) for lay in stack.layers]),
                torch.stack([lay.res.weight[..., 0].T if lay.res is not None else zeros_r for lay in stack.layers]),
                torch.stack([lay.skip.weight[..., 0].T for lay in stack.layers]),
                model.head1.weight[..., 0].T, model.head2.weight[..., 0].T,
            ))
        return self._dense

    def _cond_block(self, c_up: Tensor, start: int, stop: int) -> Tensor:
        """``[T_block, B, L, G]``: every layer's conditioning plus its dilated-conv bias, made in that layout by
        one product of the block's ``[T_block * B, C]`` mel rows (a few channels to transpose) with the stack's
        projection, instead of the ``[B, L * G, T_block]`` projection copied into it transposed (at batch 8 a
        block is 800 MB, and that copy took a quarter of the sampling time)."""
        cond, gcond = self._cond_modules()
        b, t = c_up.shape[0], stop - start
        if cond is None:  # no local conditioning: the stack's own checks and layout
            proj = self._project_cond(c_up[..., start:stop])
            if proj is None:
                proj = torch.zeros(b, self.n_layers * self.gate, t, device=self.device, dtype=self.dtype)
            proj = proj.reshape(b, self.n_layers, self.gate, t) + self.bd[None, :, :, None]
            return proj.permute(3, 0, 1, 2).contiguous()
        bias = self.bd.reshape(-1) if cond.bias is None else self.bd.reshape(-1) + cond.bias
        rows = c_up[..., start:stop].to(self.dtype).permute(2, 0, 1).reshape(t * b, -1)
        out = torch.addmm(bias, rows, cond.weight[:, :, 0].t()).view(t, b, -1)
        if self.g is not None:
            if gcond is None:
                raise ValueError("this stack takes no global conditioning (global_cond_channels=0)")
            g = self.g.to(self.dtype)
            out.add_(gcond(g if g.dim() == 3 else g.unsqueeze(-1)).permute(2, 0, 1))
        return out.view(t, b, self.n_layers, self.gate)

    def _cond_modules(self) -> tuple[Any, Any]:
        """The stack's ``(cond, gcond)`` projections as the sampler computes them: the stack's own, or for
        bfloat16 weights float32 copies of them (small; made once)."""
        stack = self.model.stack
        if self.weight_dtype == self.dtype:
            return stack.cond, stack.gcond
        if self._cond32 is None:
            self._cond32 = SimpleNamespace(**{name: None if getattr(stack, name) is None else
                                              copy.deepcopy(getattr(stack, name)).to(self.dtype)
                                              for name in ("cond", "gcond")})
        return self._cond32.cond, self._cond32.gcond

    def _project_cond(self, c: Tensor) -> Tensor | None:
        """The stack's conditioning projection of ``c`` in the sampler's dtype: for bfloat16 weights, in float32
        with float32 copies of the projections' (bfloat16) weights."""
        stack = self.model.stack
        if self.weight_dtype == self.dtype:
            return stack.project_cond(c, self.g)
        cond, gcond = self._cond_modules()
        return type(stack).project_cond(SimpleNamespace(cond=cond, gcond=gcond), c.to(self.dtype),
                                        None if self.g is None else self.g.to(self.dtype))

    def _initial_input(self) -> Tensor:
        if isinstance(self.dist, MuLawSoftmax):
            x = torch.zeros(self.batch, self.dist.classes, device=self.device, dtype=self.dtype)
            x[:, int(self.dist.target_from_audio(torch.zeros(1))[0])] = 1.0
            return x
        return torch.zeros(self.batch, 1, device=self.device, dtype=self.dtype)

    def _draws(self, seed: int, start: int, steps: int) -> Any:
        """The random numbers of the steps at positions ``[start, start + steps)``, drawn by position
        (:mod:`zoo.core.noise`): they depend only on ``seed`` and the position, not on the batch, the item's
        place in it or how the run is split, so every item samples what it samples alone with that seed."""
        b, dev = self.batch, self.device
        if isinstance(self.dist, DiscretizedMixLogistic):
            m = self.dist.num_mixtures
            u = uniform_blocks(seed, 1, m + 1, start, steps, 1e-5, 1 - 1e-5)[0].t().to(dev)
            return u[:, None, None, :m].expand(steps, b, 1, m), u[:, None, m:].expand(steps, b, 1)
        if isinstance(self.dist, MuLawSoftmax):
            c = self.dist.classes
            u = uniform_blocks(seed, 1, c, start, steps, 1e-5, 1 - 1e-5)[0].t().to(dev)
            return u[:, None, None, :].expand(steps, b, 1, c)
        return noise_blocks(seed, 1, 1, start, steps)[0].t().to(dev)[:, None, :].expand(steps, b, 1)

    def _sample(self, y: Tensor, draws: Any, j: int, temperature: float) -> Tensor:
        y3 = y.unsqueeze(-1)
        if isinstance(self.dist, DiscretizedMixLogistic):
            return self.dist.sample(y3, uniforms=(draws[0][j].to(y.dtype), draws[1][j].to(y.dtype)),
                                    temperature=temperature)[:, 0]
        if isinstance(self.dist, MuLawSoftmax):
            return self.dist.sample(y3, uniforms=draws[j].to(y.dtype), temperature=temperature)[:, 0]
        assert isinstance(self.dist, Gaussian)
        return self.dist.sample(y3, noise=draws[j].to(y.dtype), temperature=temperature)[:, 0]

    def _as_input(self, x: Tensor) -> Tensor:
        if isinstance(self.dist, MuLawSoftmax):
            return torch.nn.functional.one_hot(x.long(), self.dist.classes).to(self.dtype)
        return x.to(self.dtype).unsqueeze(-1)

    def keep(self, items: Tensor | list[int]) -> None:
        """Carry on with only ``items`` (indices into the current batch): every piece of sampling state (the
        layers' ring buffers, the front conv's window, the next input, the speaker conditioning and the
        compiled loop's past-tap products) is compacted to them, so finished items cost nothing more."""
        idx = torch.as_tensor(items, dtype=torch.long).flatten()
        self.layer_buf = self.layer_buf.index_select(1, idx.to(self.layer_buf.device)).contiguous()
        self.front_buf = self.front_buf.index_select(0, idx.to(self.front_buf.device)).contiguous()
        if self.x_in is not None:
            self.x_in = self.x_in.index_select(0, idx.to(self.x_in.device)).contiguous()
        if self.g is not None and self.g.shape[0] == self.batch:
            self.g = self.g.index_select(0, idx.to(self.g.device))
        if self._pre is not None:
            # The past-tap state is min(offset, PRE_MAX) rows of [B, G] per tap reaching 2+ steps back, taps in
            # layer-major order (zoo_wavenet_pre_size in csrc/wavenet_dispatch.c): keep the items' columns.
            from zoo_plugins.wavenet.kernel import PRE_MAX

            parts, at = [], 0
            for off in self.offsets.flatten().tolist():
                if off >= 2:
                    rows = min(off, PRE_MAX) * self.batch * self.gate
                    block = self._pre[at: at + rows].view(-1, self.batch, self.gate)
                    parts.append(block.index_select(1, idx).reshape(-1))
                    at += rows
            assert at == self._pre.numel()
            self._pre = torch.cat(parts) if parts else self._pre[:0]
        self.batch = int(idx.numel())

    @torch.no_grad()
    def run(self, c_up: Tensor, *, inputs: Tensor | None = None, generator: torch.Generator | None = None,
            seed: int | None = None, lengths: list[int] | None = None, temperature: float = 1.0,
            progress: bool = False) -> tuple[Tensor, Tensor]:
        """``(samples [B, T], outputs [B, C_out, T])`` for the next ``T = c_up.shape[-1]`` steps.

        The sampling state is kept, so successive calls continue the same utterances (a stream): the draws
        are those of the positions reached, from ``seed`` (or one drawn from ``generator`` when ``seed`` is
        ``None``). ``lengths`` (steps per item of this call) stops each item at its own length: the run is
        split at each item's end and the state compacted to the items still running (:meth:`keep`), and the
        samples past an item's length are zero. With ``inputs`` ``[B, C_in, T]`` the model is teacher-forced
        (input ``t`` is fed at step ``t``, for testing against the full forward) and ``outputs`` is filled.
        """
        if inputs is not None:
            return self._teacher_forced(c_up, inputs)
        from tqdm.auto import tqdm

        total, first = c_up.shape[-1], self.t
        if seed is None:
            seed = draw_seed(generator)
        ends = [total] * self.batch if lengths is None else [int(n) for n in lengths]
        if len(ends) != self.batch or any(n < 0 or n > total for n in ends):
            raise ValueError(f"lengths must be {self.batch} step counts in [0, {total}], got {ends}")
        samples = torch.zeros(self.batch, total, device=self.device,
                              dtype=torch.long if isinstance(self.dist, MuLawSoftmax) else self.dtype)
        active = torch.arange(self.batch)  # rows of samples (and c_up) that the sampler's items are
        if self.x_in is None:
            self.x_in = self._initial_input()
        bar = tqdm(total=total, disable=not progress, unit="sample", desc="wavenet", dynamic_ncols=True)
        lib = self._kernel()
        wd, wr, ws, h1w, h2w = self._dense_weights() if lib is None else (None,) * 5
        for end in sorted(set(ends)):
            still = [i for i, row in enumerate(active.tolist()) if ends[row] >= end]
            if len(still) < len(active):  # the others have reached their length
                self.keep(still)
                active = active[still]
            while self.t - first < end:
                start = self.t - first
                stop = min(end, start + max(min(BLOCK, MIN_BLOCK), BLOCK // len(active)))
                c = c_up[..., start:stop] if len(active) == c_up.shape[0] else c_up[active.to(c_up.device), :,
                                                                                   start:stop]
                cond = self._cond_block(c, 0, stop - start)
                draws = self._draws(seed, self.noise_offset + self.t, stop - start)
                if lib is not None:
                    out = self._run_kernel(lib, self.t, cond, draws, self.x_in, temperature).t()
                else:
                    out = self._run_step(cond, draws, temperature, wd, wr, ws, h1w, h2w)
                samples[active.to(samples.device), start:stop] = out.to(samples.dtype)
                self.t += stop - start
                bar.update(stop - start)
        bar.close()
        return samples, torch.empty(0)

    def _run_step(self, cond: Tensor, draws: Any, temperature: float, wd: Tensor, wr: Tensor, ws: Tensor,
                  h1w: Tensor, h2w: Tensor) -> Tensor:
        """One block of steps with the TorchScript step; returns the samples ``[B, T_block]``."""
        out = []
        for j in range(cond.shape[0]):
            y = _step(self.x_in, self.t + j, cond[j], self.front_buf, self.front_w, self.front_b, self.front_relu,
                      self.layer_buf, self.offsets[:, :], wd, wr, self.br, ws, self.bs,
                      self.has_res, self.residual_scale, self.skip_mode, h1w, self.h1b, h2w, self.h2b)
            x = self._sample(y, draws, j, temperature)
            out.append(x)
            self.x_in = self._as_input(x)
        return torch.stack(out, -1)

    def _teacher_forced(self, c_up: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor]:
        total = c_up.shape[-1]
        outputs = torch.zeros(self.batch, self.dist.out_channels, total, device=self.device, dtype=self.dtype)
        wd, wr, ws, h1w, h2w = self._dense_weights()
        for start in range(0, total, BLOCK):
            stop = min(total, start + BLOCK)
            cond = self._cond_block(c_up, start, stop)
            for j in range(stop - start):
                t = start + j
                outputs[:, :, t] = _step(inputs[:, :, t].to(self.dtype), t, cond[j], self.front_buf, self.front_w,
                                         self.front_b, self.front_relu, self.layer_buf, self.offsets[:, :], wd, wr,
                                         self.br, ws, self.bs, self.has_res, self.residual_scale, self.skip_mode,
                                         h1w, self.h1b, h2w, self.h2b)
        return torch.empty(0), outputs

    def _kernel(self) -> Any:
        """The compiled loop (:mod:`zoo_plugins.wavenet.kernel`) when it applies: CPU, float32 activations
        (float32 or bfloat16 weights)."""
        if not self.use_kernel or self.device.type != "cpu" or self.dtype != torch.float32:
            return None
        from zoo_plugins.wavenet import kernel

        return kernel.load()

    def _run_kernel(self, lib: Any, start: int, cond: Tensor, draws: Any, x_in: Tensor, temperature: float) -> Tensor:
        """One block of steps in the compiled loop; returns the samples ``[T_block, B]`` (float)."""
        import ctypes

        from zoo_plugins.wavenet.kernel import WEIGHT_CODES, ptr

        steps = cond.shape[0]
        b, n, (_, q, r) = self.batch, self.n_layers, self.layer_buf.shape[1:]
        gate, s_ch, out_ch = self.gate, self.model.stack.skip_channels, self.out_channels
        fk, cin = self.front_buf.shape[1:]
        if isinstance(self.dist, DiscretizedMixLogistic):
            code, n_mix, log_min = 0, self.dist.num_mixtures, self.dist.log_scale_min
            d1, d2 = draws[0].contiguous(), draws[1].contiguous()
        elif isinstance(self.dist, Gaussian):
            code, n_mix, log_min = 1, 0, self.dist.log_std_min
            d1, d2 = draws.contiguous(), None
        else:
            code, n_mix, log_min = 2, 0, 0.0
            d1, d2 = draws.contiguous(), None
        if self._packed is None:
            zeros = torch.zeros(max(r, s_ch, out_ch))
            wd_p, wr_p, ws_p, h1w_p, h2w_p = self._streamed_matrices()
            self._packed = [self.front_w, self.front_b.contiguous(), wd_p, wr_p,
                            self.br.contiguous(), ws_p, self.bs.contiguous(),
                            self.has_res.to(torch.uint8), self.offsets.contiguous(), h1w_p,
                            (self.h1b if self.h1b is not None else zeros[:s_ch]).contiguous(), h2w_p,
                            (self.h2b if self.h2b is not None else zeros[:out_ch]).contiguous()]
            self._work = torch.empty(lib.zoo_wavenet_work_size(b, r, gate, s_ch, out_ch))
            self._dense = None  # the packed copies replace them
        fw, fb, wd, wr, br, ws, bs, has_res, offsets, h1w, h1b, h2w, h2b = self._packed
        if self._pre is None:
            self._pre = torch.zeros(lib.zoo_wavenet_pre_size(b, gate, n, self.kernel_size, ptr(offsets)))
        out = torch.empty(steps, b)
        cond = cond.contiguous()
        i, f = ctypes.c_int, ctypes.c_float
        rc = lib.zoo_wavenet_generate(
            i(b), i(steps), ctypes.c_long(start), i(n), i(r), i(gate), i(s_ch), i(self.kernel_size), i(q), i(fk),
            i(cin), i(out_ch), ptr(fw), ptr(fb), i(int(self.front_relu)), ptr(wd), ptr(wr), ptr(br), ptr(ws), ptr(bs),
            ptr(has_res), ptr(offsets), f(self.residual_scale), i(self.skip_mode), ptr(h1w), ptr(h1b), ptr(h2w),
            ptr(h2b), ptr(cond), ptr(self.layer_buf), ptr(self.front_buf), i(code), i(n_mix), f(log_min),
            f(temperature), ptr(d1), ptr(d2), ptr(x_in), ptr(out), ptr(self._work), ptr(self._pre),
            i(self.threads if self.threads is not None else torch.get_num_threads()),
            i(WEIGHT_CODES[self._packed_dtype()]))
        if rc != 0:
            raise RuntimeError(f"the compiled WaveNet loop failed ({rc})")
        return out.long() if code == 2 else out

    def _streamed_matrices(self) -> list[Tensor]:
        """The matrices the compiled loop streams every step, tile-packed in huge pages: ``[wd, wr, ws, h1w, h2w]``.

        Packing a published-size model takes 0.3-2 s, so the packs are kept per model (a weak-keyed table) and
        shared by every later sampler (each ``vocode`` call makes one): a server pays it once per model. They
        are made again when a parameter changes (:func:`zoo.kernels.native.kept`) or the packs' dtype differs.
        """
        from zoo_plugins.wavenet.kernel import tile_pack

        dtype = self._packed_dtype()

        def make() -> list[Tensor]:
            n, k, (r, gate) = self.n_layers, self.kernel_size, (self.layer_buf.shape[-1], self.gate)
            # bfloat16 weights are streamed as bfloat16 (exact: the dense copies hold bfloat16 values)
            wd, wr, ws, h1w, h2w = (w.to(dtype) for w in self._dense_weights())
            # The matrices the loop streams every step go in huge pages (a published-size model reads
            # about 56 MB per sample: with 4 KiB pages that is a TLB miss every 4 KiB).
            return native.huge_page_copies([tile_pack(wd.reshape(n * k, r, gate)), tile_pack(wr), tile_pack(ws),
                                            tile_pack(h1w[None]), tile_pack(h2w[None])])

        return native.kept(self.model, ("wavenet_streamed", dtype), list(self.model.parameters()), make)

    def _packed_dtype(self) -> torch.dtype:
        """The dtype of the compiled loop's streamed matrices: bfloat16 for a bfloat16 model, else float32."""
        return torch.bfloat16 if self.weight_dtype == torch.bfloat16 else torch.float32

    def generate(self, c_up: Tensor, *, generator: torch.Generator | None = None, seed: int | None = None,
                 lengths: list[int] | None = None, temperature: float = 1.0, progress: bool = False) -> Tensor:
        """Audio ``[B, T]`` sampled autoregressively for the upsampled conditioning ``c_up`` (see :meth:`run`;
        zero past each item's length)."""
        samples, _ = self.run(c_up, generator=generator, seed=seed, lengths=lengths, temperature=temperature,
                              progress=progress)
        audio = self.dist.to_audio(samples).to(self.dtype)
        if lengths is not None:
            for i, n in enumerate(lengths):
                audio[i, n:] = 0.0
        return audio


def activation_dtype(weight_dtype: torch.dtype) -> torch.dtype:
    """The dtype sampling computes in for weights of ``weight_dtype``: float32 for bfloat16 weights (bfloat16
    weights, float32 activations and sums), else the weights' own."""
    return torch.float32 if weight_dtype == torch.bfloat16 else weight_dtype

