"""Configuration dataclasses with a strict JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, ClassVar, TypeVar

from zoo.core.fields import check_known_keys, field_type_problem
from zoo.core.mel import MelConfig

T = TypeVar("T", bound="VocoderConfig")


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, MelConfig):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    return value


def _like(value: Any, template: Any) -> Any:
    """Coerce JSON ``value`` to the container type of ``template`` (lists back to tuples)."""
    if isinstance(template, tuple) and isinstance(value, list):
        inner = template[0] if template else None
        return tuple(_like(v, inner) for v in value)
    if isinstance(template, MelConfig) and isinstance(value, dict):
        return MelConfig.from_dict(value)
    if isinstance(template, MelConfig) and isinstance(value, str):
        return MelConfig.preset(value)
    return value


def check_field_types(obj: Any, what: str = "setting") -> None:
    """Raise ``ValueError`` for a field of the dataclass ``obj`` annotated ``int``, ``float`` or ``bool``
    (optionally ``| None``) whose value is not of that type (ints pass as floats; bools never as numbers)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        kind = {"int": int, "float": (int, float), "bool": bool}.get(annotation.replace(" | None", ""))
        if kind is None or (value is None and annotation.endswith("| None")):
            continue
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise ValueError(f"{what} {f.name} must be {annotation}, got {value!r}")


@dataclasses.dataclass
class VocoderConfig:
    """Base of every architecture's hyperparameters. ``mel`` is the feature contract of the model."""

    mel: MelConfig = dataclasses.field(default_factory=MelConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (the ``mel`` config included)."""
        return _to_jsonable(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected a dict of hyperparameters, got {type(data).__name__}")
        check_known_keys(cls, data, f"{cls.__name__}: unknown config keys")
        defaults = cls()
        annotations = {f.name: f.type if isinstance(f.type, str) else str(f.type) for f in dataclasses.fields(cls)}
        for k, v in data.items():
            problem = field_type_problem(v, getattr(defaults, k), annotations[k])
            if problem is not None:
                raise ValueError(f"{cls.__name__}: {k} must be {problem}, got {v!r}")
        kwargs = {k: _like(v, getattr(defaults, k)) for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        return cls.from_dict(json.loads(text))

    def replace(self: T, **changes: Any) -> T:
        """A copy with some fields changed (``mel`` may be given as a dict or a preset name)."""
        check_known_keys(type(self), changes, f"{type(self).__name__}: unknown config keys")
        if "mel" in changes:
            mel = changes["mel"]
            if isinstance(mel, str):
                changes["mel"] = MelConfig.preset(mel)
            elif isinstance(mel, dict):
                changes["mel"] = MelConfig.from_dict(mel)
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass
class UpsamplerConfig:
    """The mel-conditioning upsampler of the WaveNet family, as config fields shared by every architecture that
    uses one (WaveNet, and the Parallel WaveNet student, which copies its teacher's). Mix it into the config
    first, so that ``mel`` stays the first field: ``class WaveNetConfig(UpsamplerConfig, VocoderConfig)``;
    override a default by redeclaring the field, and call :meth:`check_upsampler` in ``__post_init__``.
    ``zoo.nn.upsample.build_upsampler`` builds the module.

    * ``upsample``: ``"stretch2d"`` (r9y9 HEAD: a stretch by each scale + a 2-D conv, ``cin_pad`` edge frames
      on each side) or ``"transposed2d"`` (ClariNet/FloWaveNet/r9y9 2092a64: ``ConvTranspose2d(1, 1,
      (upsample_freq_kernel, upsample_time_kernel or 2 s), stride (1, s))`` per scale).
    * ``upsample_scales``: one per stage; their product is the mel hop.
    * ``upsample_activation`` after each transposed conv: ``"none"``, ``"relu"`` or ``"leaky_relu"`` (with
      ``upsample_negative_slope``).
    """

    UPSAMPLERS: ClassVar[tuple[str, ...]] = ("stretch2d", "transposed2d")
    ACTIVATIONS: ClassVar[tuple[str, ...]] = ("none", "relu", "leaky_relu")

    upsample: str = "stretch2d"
    upsample_scales: tuple[int, ...] = (4, 4, 4, 4)
    cin_pad: int = 2
    upsample_freq_kernel: int = 3
    upsample_time_kernel: int | None = None
    upsample_activation: str = "none"
    upsample_negative_slope: float = 0.4

    def check_upsampler(self, hop_length: int) -> None:
        """Raise ``ValueError`` naming the first upsampler field that is wrong (the scales must multiply to
        ``hop_length``)."""
        if self.upsample not in self.UPSAMPLERS:
            raise ValueError(f"upsample must be one of {self.UPSAMPLERS}, got {self.upsample!r}")
        if not self.upsample_scales or any(int(s) < 1 for s in self.upsample_scales):
            raise ValueError(f"upsample_scales must be positive integers, got {self.upsample_scales}")
        if math.prod(self.upsample_scales) != hop_length:
            raise ValueError(f"the product of upsample_scales {tuple(self.upsample_scales)} is "
                             f"{math.prod(self.upsample_scales)} but the mel hop_length is {hop_length}")
        if int(self.upsample_freq_kernel) < 1 or int(self.cin_pad) < 0:
            raise ValueError(f"upsample_freq_kernel must be >= 1 and cin_pad >= 0, got "
                             f"{self.upsample_freq_kernel} and {self.cin_pad}")
        if self.upsample_activation not in self.ACTIVATIONS:
            raise ValueError(f"upsample_activation must be one of {self.ACTIVATIONS}, got "
                             f"{self.upsample_activation!r}")

    def upsampler_settings(self) -> dict[str, Any]:
        """The upsampler fields as ``{name: value}`` (scales as a tuple of ints): what makes another config's
        upsampler the same as this one's."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(UpsamplerConfig)}
        out["upsample_scales"] = tuple(int(s) for s in out["upsample_scales"])
        return out


UPSAMPLER_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(UpsamplerConfig))
"""The names of the :class:`UpsamplerConfig` fields."""
