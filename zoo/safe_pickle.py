"""Reading legacy PyTorch checkpoints that pickle whole modules, without importing or running their code.

NVIDIA's WaveGlow checkpoints store the ``glow.WaveGlow`` module object itself. ``torch.load`` would have
to import NVIDIA's classes and trust the pickle. :func:`load_checkpoint` instead unpickles with an
allow-list: module classes become inert :class:`ModuleStub` records of their ``__dict__``, tensors are
rebuilt by this module from the raw storages, a few plain containers are allowed, and *any other global
is refused before anything runs*. :func:`state_dict_of` then walks ``_parameters`` / ``_buffers`` /
``_modules`` of the stubs into an ordinary ``state_dict``.

Both torch file formats are read: the zip archive (``data.pkl`` + ``data/<key>``) and the legacy
pre-1.6 stream (magic number, protocol, system info, pickle, storage keys, raw storages).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}

# Module classes that become inert records (their code is never imported).
_MODULE_PREFIXES = ("glow.", "glow_old.", "torch.nn.modules.", "model.", "modules.", "wavenet.", "wavenet_iaf.",
                    "waveglow.model.", "denoiser.")
_INERT_CLASSES = {"torch.nn.utils.weight_norm.WeightNorm", "torch.nn.utils.spectral_norm.SpectralNorm"}


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The pickle references something outside the allow-list; nothing was executed."""


class ModuleStub:
    """An inert stand-in for a pickled ``nn.Module`` (or hook object): only its state is kept."""

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __repr__(self) -> str:
        return f"<ModuleStub {self.__class__.__qualname__}>"


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _make_stub(qualified: str) -> type:
    return type(qualified.rsplit(".", 1)[-1], (ModuleStub,), {"qualified_name": qualified})


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    # A view on the storage (legacy files fill the storages after the pickle is read).
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "collections.OrderedDict": collections.OrderedDict,
    "__builtin__.set": set,
    "builtins.set": set,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that imports nothing: allow-listed names map to inert local stand-ins."""

    def __init__(self, file: io.BufferedIOBase, load_storage: Callable[[_StorageType, str, int], torch.Tensor]) -> None:
        super().__init__(file)
        self._load_storage = load_storage
        self._stubs: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified in _FUNCTIONS:
            return _FUNCTIONS[qualified]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if qualified in _INERT_CLASSES or (qualified.startswith(_MODULE_PREFIXES) and name[:1].isupper()):
            if qualified not in self._stubs:
                self._stubs[qualified] = _make_stub(qualified)
            return self._stubs[qualified]
        raise UnsafePickleError(
            f"refusing to unpickle global {qualified!r}: it is not on the allow-list of tensor containers and "
            f"module records (nothing was executed)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise UnsafePickleError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"unsupported storage type {storage_type!r}")
        return self._load_storage(storage_type, key, numel)


def _from_bytes(raw: bytes, dtype: torch.dtype, numel: int) -> torch.Tensor:
    if dtype == torch.bfloat16:
        return torch.frombuffer(bytearray(raw), dtype=torch.int16)[:numel].view(torch.bfloat16).clone()
    np_dtype = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16,
                torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16, torch.int8: np.int8,
                torch.uint8: np.uint8, torch.bool: np.bool_}[dtype]
    arr = np.frombuffer(raw, dtype=np.dtype(np_dtype).newbyteorder("<"), count=numel)
    return torch.from_numpy(arr.astype(np_dtype, copy=True))


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ValueError(f"{path}: not a torch zip checkpoint (no single data.pkl)")
        root = pkl[0][: -len("data.pkl")]
        cache: dict[str, torch.Tensor] = {}

        def load_storage(st: _StorageType, key: str, numel: int) -> torch.Tensor:
            if key not in cache:
                cache[key] = _from_bytes(zf.read(f"{root}data/{key}"), st.dtype, numel)
            return cache[key]

        return RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), load_storage).load()


def _load_legacy(path: Path) -> Any:
    data = path.read_bytes()
    f = io.BytesIO(data)

    def plain() -> Any:
        return RestrictedUnpickler(f, _no_storage).load()

    if plain() != LEGACY_MAGIC:
        raise ValueError(f"{path}: neither a torch zip archive nor a legacy torch file")
    plain()  # protocol version
    plain()  # system info
    pending: dict[str, tuple[_StorageType, int, torch.Tensor]] = {}

    def lazy_storage(st: _StorageType, key: str, numel: int) -> torch.Tensor:
        if key not in pending:
            pending[key] = (st, numel, torch.empty(numel, dtype=st.dtype))
        return pending[key][2]

    result = RestrictedUnpickler(f, lazy_storage).load()
    keys = plain()
    for key in keys:
        st, numel, target = pending[str(key)]
        (count,) = struct.unpack("<q", f.read(8))
        elsize = torch.empty(0, dtype=st.dtype).element_size()
        target.copy_(_from_bytes(f.read(count * elsize), st.dtype, count)[:numel])
    return result


def _no_storage(*_: Any) -> torch.Tensor:
    raise UnsafePickleError("unexpected storage reference in a header record")


def load_checkpoint(path: str | Path) -> Any:
    """Unpickle a torch checkpoint with the restricted unpickler (module objects become stubs).

    Whatever is wrong with the file (empty, truncated, corrupt, tampered, a refused global) gives one
    ``ValueError`` naming it; nothing from the file is ever executed.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                raise ValueError("a zip archive that cannot be read (truncated or corrupt)")
        return _load_legacy(path)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the restricted reader is a bad input file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if reason.startswith(f"{path}: "):
            reason = reason[len(f"{path}: "):]
        raise ValueError(f"{path}: not a readable torch checkpoint ({reason})") from None


def state_dict_of(obj: Any, prefix: str = "", _seen: frozenset[int] = frozenset()) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a stubbed module: parameters and persistent buffers, recursively."""
    where = prefix.rstrip(".") or "the checkpoint's module"
    if not isinstance(obj, ModuleStub):
        raise ValueError(f"expected a pickled module at {where}, got {type(obj).__name__}")
    if id(obj) in _seen:
        raise ValueError(f"{where}: a module that contains itself")
    seen = _seen | {id(obj)}
    state = obj.__dict__.get("state", {})
    if isinstance(state, tuple) and state:  # (dict, slotstate)
        state = state[0]
    if not isinstance(state, dict):
        raise ValueError(f"{where}: a module record whose state is {type(state).__name__}, not a dict")
    out: dict[str, torch.Tensor] = {}
    fields = {}
    for field in ("_parameters", "_buffers", "_modules"):
        value = state.get(field) or {}
        if not isinstance(value, dict):
            raise ValueError(f"{where}: {field} is {type(value).__name__}, not a dict")
        fields[field] = value
    non_persistent = set(state.get("_non_persistent_buffers_set", ()) or ())
    for kind in ("_parameters", "_buffers"):
        for name, value in fields[kind].items():
            if value is None or (kind == "_buffers" and name in non_persistent):
                continue
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{prefix}{name} is {type(value).__name__}, not a tensor")
            out[prefix + name] = value
    for name, child in fields["_modules"].items():
        if child is not None:
            out.update(state_dict_of(child, f"{prefix}{name}.", seen))
    return out


def module_attributes(obj: ModuleStub) -> dict[str, Any]:
    """Plain (non-tensor, non-module) attributes of a stubbed module, e.g. ``n_early_every``."""
    state = obj.__dict__.get("state", {})
    return {k: v for k, v in state.items() if not k.startswith("_") and isinstance(v, (int, float, str, bool, tuple))}


def weights_only_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)``; a file that needs more than tensors and plain containers
    (or is not a torch file at all) gives one ``ValueError`` naming it and the reason."""
    import re
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on old pickle protocols: the error says enough
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything that is not plain tensors is refused
        text = str(exc)
        found = re.search(r"(?:Unsupported global|unsupported GLOBAL)[: ]+(?:GLOBAL )?([\w.]+)", text)
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        if found:
            reason = f"it needs the global {found.group(1)}, which is not a tensor or plain container"
        elif detail:
            reason = f"the weights-only unpickler stopped at: {detail.group(1).strip()}"
        elif text.startswith("Weights only load failed"):
            reason = "it holds more than tensors and plain containers"
        else:
            reason = text.splitlines()[0] if text else type(exc).__name__
        raise ValueError(f"{path}: not a readable weights-only torch checkpoint ({reason}); refusing to unpickle "
                         f"it (nothing was executed)") from None


def load_state_dict(path: str | Path, key: str = "state_dict") -> dict[str, torch.Tensor]:
    """A checkpoint's state dict read with ``torch.load(weights_only=True)`` (``module.`` prefixes removed).

    Accepts ``{key: state_dict, ...}`` or a bare state dict; anything that needs more than tensors and
    plain containers to unpickle is refused with a ``ValueError``.
    """
    from zoo.weightnorm import strip_prefix

    ckpt = weights_only_load(path)
    state = ckpt.get(key, ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected {{'{key}': state_dict}} of tensors")
    return strip_prefix(state)
