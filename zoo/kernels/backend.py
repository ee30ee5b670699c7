"""The one choice between torch's convolutions and the compiled ones, shared by every model's CPU fast path.

The time-major inference schedules (the gated WaveNet stack of :mod:`zoo.kernels.gated_infer`, a plugin's
own generator such as HiFi-GAN's) run their convolutions either as torch's matrix
products (:mod:`zoo.kernels.timemajor`) or on the compiled kernel (:mod:`zoo.kernels.tapconv`). Which one,
per operand dtype and the ISA level of the kernel variant loaded on this CPU, and why:

* **float32**: the compiled kernel where its variant has float32 tiles (``avx2``: AVX2 FMA, 8-wide;
  ``avx512``, ``avx512bf16``: 16-wide): every tap summed in registers, one store per output, the Winograd
  transforms fused on blocks in cache. Elsewhere (the plain C ``generic`` variant) torch's products
  (oneDNN/MKL sgemm), which plain C would not beat.
* **bfloat16** (a schedule that has a bfloat16 form: HiFi-GAN's): the compiled kernel in every variant,
  ``vdpbf16ps`` on ``avx512bf16``, plain C elsewhere. torch on CPU has no bfloat16 x bfloat16 -> float32
  product, so without the kernel there is no time-major bfloat16 path (the model runs its torch layers).
* anything else, or a kernel that was not built or is disabled: torch.

:func:`choose` makes the choice from the loaded library (:func:`zoo.kernels.tapconv.conv_backend` asks it
for the library loaded here, and the models ask that, naming their schedule's compiled ``forms``). The
report that ``zoo info --kernels`` prints and ``zoo bench`` records is the same call: each architecture
declares the kernels and operand dtypes it uses (``Vocoder.compiled_kernels``), and the tapconv kernel's
``paths`` describes :func:`choose`'s answer, so what is reported is what runs. This module knows no model.
"""

from __future__ import annotations

import dataclasses

import torch

from zoo.kernels import native

BOTH = (torch.float32, torch.bfloat16)
"""The operand dtypes the compiled convolutions have forms for."""

@dataclasses.dataclass(frozen=True)
class ConvBackend:
    """The convolutions a schedule runs for operands of ``dtype``: compiled (:mod:`zoo.kernels.tapconv`) or
    torch's, and why (``reason``: the variant and its tiles, or what the kernel lacks)."""

    dtype: torch.dtype
    compiled: bool
    reason: str

    def describe(self) -> str:
        """One line for reports: the path and its reason."""
        return self.reason if self.compiled else f"torch's convs ({self.reason})"


def choose(dtype: torch.dtype, lib: native.KernelLibrary | None, missing: str,
           forms: tuple[torch.dtype, ...] = BOTH) -> ConvBackend:
    """The backend a schedule whose compiled forms are ``forms`` (operand dtypes) uses for ``dtype`` operands
    with the kernel library ``lib`` (``None``: not loaded here, ``missing`` says why)."""
    if dtype not in forms or dtype not in BOTH:
        return ConvBackend(dtype, False, f"no compiled {native.dtype_name(dtype)} form of this schedule")
    if lib is None:
        return ConvBackend(dtype, False, missing)
    if dtype == torch.float32:
        if lib.zoo_f32_native():
            tiles = "AVX2 FMA" if lib.isa == "avx2" else "AVX-512"
            return ConvBackend(dtype, True, f"compiled float32 {tiles} tiles ({lib.isa} variant)")
        return ConvBackend(dtype, False, f"the {lib.isa} variant has no float32 tiles: they need AVX2 and FMA")
    if lib.zoo_bf16_native():
        return ConvBackend(dtype, True, f"compiled bfloat16 convs, AVX-512 BF16 tiles ({lib.isa} variant)")
    return ConvBackend(dtype, True, f"compiled bfloat16 convs, plain C vectorised for {lib.isa} (no AVX-512 BF16)")
