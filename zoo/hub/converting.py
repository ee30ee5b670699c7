"""The steps every converter from an original checkpoint shares, with one format for what does not fit.

A converter (``zoo_register_converters``) reads a legacy checkpoint and returns a ready zoo model. The
pipeline is the same for every architecture, only the layout differs:

1. :func:`read_checkpoint`: the state dict, read safely (``torch.load(weights_only=True)``, never a plain
   unpickle), DataParallel ``module.`` prefixes stripped, the layout recognised by marker keys, weight norm
   folded;
2. the config, inferred from the tensor shapes (the converter's own code);
3. :func:`map_checkpoint`: the reference-to-zoo key map, refusing a checkpoint key the map never read (a weight
   the converted model would silently drop) and naming a key the map needed but the checkpoint lacks;
4. :func:`load_converted`: the mapped weights checked against the model (missing and unexpected keys, shapes),
   loaded, and the model prepared for inference.

:func:`convert_checkpoint` runs the four steps. Every mismatch is reported by :func:`key_mismatch` in one
format: ``<source> does not fit <target>: missing keys that the model needs (...); unexpected keys that
have no place in the model (...); shape mismatches (...)``, as a ``ValueError`` (model loading,
``Vocoder.load_state_dict_checked``, uses the same format).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from torch import Tensor

from zoo.core.config import VocoderConfig
from zoo.core.vocoder import Vocoder, key_mismatch
from zoo.hub.safe_pickle import load_state_dict
from zoo.hub.weightnorm import fold_state_dict

State = dict[str, Tensor]
V = TypeVar("V", bound=Vocoder)
C = TypeVar("C", bound=VocoderConfig)
def shapes(state: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a state dict."""
    return {k: tuple(v.shape) for k, v in state.items()}


def check_keys(got: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]], source: str,
               target: str) -> None:
    """Raise ``ValueError("<source> does not fit <target>: ...")`` when the key shapes ``got`` differ from
    ``expected`` (see :func:`key_mismatch`)."""
    problem = key_mismatch(got, expected)
    if problem:
        raise ValueError(f"{source} does not fit {target}: {problem}")


def read_checkpoint(path: str | Path, *, layout: str, markers: Iterable[str] = (), key: str = "state_dict",
                    fold: bool = True) -> State:
    """The state dict of the checkpoint at ``path`` (``{key: state_dict, ...}`` or a bare state dict), read
    with ``torch.load(weights_only=True)``, ``module.`` prefixes removed; refused with a ``ValueError`` naming
    ``layout`` unless it holds one of the ``markers`` keys. ``fold`` folds weight norm (``W = g v / ||v||``)."""
    state = load_state_dict(path, key=key)
    markers = tuple(markers)
    if markers and not any(m in state for m in markers):
        raise ValueError(f"{path}: not a {layout} checkpoint (its state dict has none of {', '.join(markers)})")
    return fold_state_dict(state) if fold else state


def map_checkpoint(state: Mapping[str, Tensor], mapping: Callable[[Mapping[str, Tensor]], State],
                   source: str) -> State:
    """``mapping(state)``, a converter's reference-to-zoo key map, checked both ways: a checkpoint key the map
    never read is refused (the converted model would silently drop that weight: a config that disagrees with
    the checkpoint, or another layout), and so is a key the map needed that the checkpoint lacks."""
    read: set[str] = set()

    class _Reads(dict):  # type: ignore[type-arg]
        def __getitem__(self, key: str) -> Tensor:
            read.add(key)
            return super().__getitem__(key)

        def get(self, key: str, default: Any = None) -> Any:
            read.add(key)
            return super().get(key, default)

    try:
        out = mapping(_Reads(state))
    except KeyError as exc:
        problem = key_mismatch({}, {exc.args[0]: ()})
        raise ValueError(f"{source} does not fit the converter's layout: {problem}") from None
    unused = sorted(set(state) - read)
    if unused:
        problem = key_mismatch({k: () for k in unused}, {}, "the converted model")
        raise ValueError(f"{source} does not fit the converter's layout: {problem}; the config given does not match "
                         f"the checkpoint, or it is not this converter's layout")
    return out


def load_converted(model: V, state: Mapping[str, Tensor], source: str) -> V:
    """Load converted weights into ``model`` (float32, contiguous), every key and shape checked
    (``Vocoder.load_state_dict_checked``), and return it prepared for inference."""
    model.load_state_dict_checked({k: v.float().contiguous() if v.is_floating_point() else v
                                   for k, v in state.items()}, source=source)
    return model.prepare_for_inference()


def convert_checkpoint(path: str | Path, config: dict[str, Any] | None, *, read: Callable[[str | Path], State],
                       infer_config: Callable[[State, dict[str, Any] | None], C],
                       model_class: Callable[[C], V],
                       map_keys: Callable[[Mapping[str, Tensor], C], State]) -> V:
    """The whole pipeline: ``read(path)``, ``infer_config(state, config)``, ``model_class(cfg)``,
    ``map_keys(state, cfg)`` through :func:`map_checkpoint`, then :func:`load_converted`."""
    state = read(path)
    cfg = infer_config(state, config)
    model = model_class(cfg)
    return load_converted(model, map_checkpoint(state, lambda s: map_keys(s, cfg), str(path)), str(path))
