"""The one choice between torch's convolutions and the compiled ones, shared by every model's CPU fast path.

The time-major inference schedules (:data:`SCHEDULES`: the gated WaveNet stack of
:mod:`zoo.kernels.gated_infer`, HiFi-GAN's generator) run their convolutions either as torch's matrix
products (:mod:`zoo.kernels.timemajor`) or on the compiled kernel (:mod:`zoo.kernels.tapconv`). Which one,
per operand dtype and the ISA level of the kernel variant loaded on this CPU, and why:

* **float32**: the compiled kernel where its variant has AVX-512 float32 tiles (``avx512``,
  ``avx512bf16``): every tap summed in registers, one store per output, the Winograd transforms fused on
  blocks in cache. Elsewhere torch's products (oneDNN/MKL sgemm), which the ``avx2`` and plain C variants
  would not beat.
* **bfloat16** (a schedule that has a bfloat16 form: HiFi-GAN's): the compiled kernel in every variant,
  ``vdpbf16ps`` on ``avx512bf16``, plain C elsewhere. torch on CPU has no bfloat16 x bfloat16 -> float32
  product, so without the kernel there is no time-major bfloat16 path (the model runs its torch layers).
* anything else, or a kernel that was not built or is disabled: torch.

:func:`choose` makes the choice from the loaded library (:func:`zoo.kernels.tapconv.conv_backend` asks it
for the library loaded here, and the models ask that); :func:`model_paths` writes the same choices as the
report that ``zoo info --kernels`` prints and ``zoo bench`` records (the tapconv kernel registers it as its
``paths``), so what is reported is what runs.
"""

from __future__ import annotations

import dataclasses

import torch

from zoo.kernels import native

SCHEDULES: dict[str, tuple[torch.dtype, ...]] = {
    "gated_stack": (torch.float32,),
    "hifigan": (torch.float32, torch.bfloat16),
}
"""The time-major inference schedules and the operand dtypes each has a compiled form for."""

ARCHITECTURES: dict[str, str] = {
    "hifigan": "hifigan",
    "waveglow": "gated_stack",
    "flowavenet": "gated_stack",
    "parallel_wavenet": "gated_stack",
}
"""The schedule each architecture's CPU inference runs (for the report)."""


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


def choose(dtype: torch.dtype, schedule: str, lib: native.KernelLibrary | None, missing: str) -> ConvBackend:
    """The backend ``schedule`` (a key of :data:`SCHEDULES`) uses for ``dtype`` operands with the kernel
    library ``lib`` (``None``: not loaded here, ``missing`` says why)."""
    if dtype not in SCHEDULES[schedule]:
        name = str(dtype).replace("torch.", "")
        return ConvBackend(dtype, False, f"the {schedule} schedule has no compiled {name} form")
    if lib is None:
        return ConvBackend(dtype, False, missing)
    if dtype == torch.float32:
        if lib.zoo_f32_native():
            return ConvBackend(dtype, True, f"compiled float32 AVX-512 tiles ({lib.isa} variant)")
        return ConvBackend(dtype, False, f"the {lib.isa} variant has no float32 tiles: they need AVX-512")
    if lib.zoo_bf16_native():
        return ConvBackend(dtype, True, f"compiled bfloat16 convs, AVX-512 BF16 tiles ({lib.isa} variant)")
    return ConvBackend(dtype, True, f"compiled bfloat16 convs, plain C vectorised for {lib.isa} (no AVX-512 BF16)")


def model_paths(lib: native.KernelLibrary | None, missing: str) -> dict[tuple[str, str], str]:
    """For each ``(architecture, dtype)`` whose schedule has a compiled form, the path :func:`choose` takes
    (the tapconv kernel's ``paths`` for ``zoo info --kernels`` and ``zoo bench``)."""
    return {(arch, str(dtype).replace("torch.", "")): choose(dtype, schedule, lib, missing).describe()
            for arch, schedule in ARCHITECTURES.items() for dtype in SCHEDULES[schedule]}
