"""Reading legacy PyTorch checkpoints that pickle whole modules, without importing or running their code.

NVIDIA's WaveGlow checkpoints store the ``glow.WaveGlow`` module object itself. ``torch.load`` would have
to import NVIDIA's classes and trust the pickle. :func:`load_checkpoint` instead unpickles with an
allow-list: module classes become inert :class:`ModuleStub` records of their ``__dict__``, tensors are
rebuilt by this module from the raw storages, a few plain containers are allowed, and *any other global
is refused before anything runs*. :func:`state_dict_of` then walks ``_parameters`` / ``_buffers`` /
``_modules`` of the stubs into an ordinary ``state_dict``.

Both torch file formats are read:

* the zip archive of torch >= 1.6 (``data.pkl`` + ``data/<key>``);
* the legacy pre-1.6 stream (magic number, protocol, system info, the pickle, the storage keys, then each
  storage as an int64 element count and raw little-endian bytes). A whole module pickled in this format
  carries a persistent id ``('module', <class>, <source file>, <source>)`` for each module class: the class
  goes through the same allow-list as any global, the recorded source is ignored (never compiled, never
  printed).

Storages are never read into memory up front: the file is memory-mapped copy-on-write and every storage is
a tensor view on the mapping (read-ahead off), so a page is read only when a tensor that lives in it (or
next to it) is used: optimizer state and NVIDIA's cached weight-norm products are mostly never read.
Converting a synthetic 676 MB file in NVIDIA's legacy format this way peaked at 1.42x its size in resident
memory. Storages saved on a GPU (``torch.cuda.FloatStorage``, location ``cuda:0``) load on the CPU.
"""

from __future__ import annotations

import collections
import mmap
import pickle
import re
import struct
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.hub.weightnorm import strip_prefix

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
_STORAGE_MODULES = ("torch", "torch.cuda")

#: Module classes that become inert records (their code is never imported) whatever the caller allows:
#: torch's own layers. A converter adds its reference code's modules (``load_checkpoint(modules=...)``).
TORCH_MODULES = ("torch.nn.modules.",)
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
    if not isinstance(storage, torch.Tensor):
        raise UnsafePickleError(f"a tensor record whose storage is a {type(storage).__name__}")
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


def _short(value: Any, limit: int = 60) -> str:
    """A bounded one-line rendering of something found in a pickle (never a whole source file)."""
    text = value if isinstance(value, str) else type(value).__name__
    text = text.splitlines()[0] if text else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that imports nothing: allow-listed names map to inert local stand-ins."""

    def __init__(self, file: Any, load_storage: Callable[[_StorageType, str, int, Any], torch.Tensor],
                 modules: tuple[str, ...] = TORCH_MODULES) -> None:
        super().__init__(file)
        self._load_storage = load_storage
        self._modules = TORCH_MODULES + tuple(modules)
        self._stubs: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified in _FUNCTIONS:
            return _FUNCTIONS[qualified]
        if module in _STORAGE_MODULES and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if qualified in _INERT_CLASSES or (qualified.startswith(self._modules) and name[:1].isupper()):
            if qualified not in self._stubs:
                self._stubs[qualified] = _make_stub(qualified)
            return self._stubs[qualified]
        raise UnsafePickleError(
            f"refusing to unpickle global {_short(qualified, 120)!r}: it is not on the allow-list of tensor "
            f"containers and module records (nothing was executed)"
        )

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0] if isinstance(pid, tuple) and pid else None
        if kind == "module" and len(pid) == 4:
            # torch's legacy format: ('module', class, source file, source). The class was resolved by
            # find_class (so it is an allow-listed inert stub); the source text is ignored.
            if isinstance(pid[1], type) and issubclass(pid[1], ModuleStub):
                return pid[1]
            raise UnsafePickleError(f"a module record whose class is a {type(pid[1]).__name__}, not a module class")
        if kind != "storage" or len(pid) not in (5, 6):
            what = f"{_short(kind)!r}" if isinstance(kind, str) else f"a {type(pid).__name__}"
            raise UnsafePickleError(f"unsupported persistent id {what} (only storages and module classes)")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"unsupported storage type (a {type(storage_type).__name__})")
        if not isinstance(numel, int) or numel < 0:
            raise UnsafePickleError(f"storage {_short(key)!r} has an invalid size")
        view = pid[5] if len(pid) == 6 else None
        return self._load_storage(storage_type, key, numel, view)


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


class _Mapped:
    """A read-only file mapped copy-on-write (writable views, the file itself is never changed)."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size else None
        self.size = size
        if self.mm is not None and hasattr(mmap, "MADV_RANDOM"):
            # No read-ahead: the pages of tensors never used (optimizer state, NVIDIA's cached weight-norm
            # products) stay out of memory, even when they sit between the weights.
            self.mm.madvise(mmap.MADV_RANDOM)

    def tensor(self, offset: int, dtype: torch.dtype, numel: int, what: str) -> torch.Tensor:
        nbytes = numel * _element_size(dtype)
        if offset < 0 or offset + nbytes > self.size:
            raise ValueError(f"{what} reaches past the end of the file (truncated?)")
        if numel == 0 or self.mm is None:
            return torch.empty(0, dtype=dtype)
        return torch.frombuffer(self.mm, dtype=dtype, count=numel, offset=offset)


def _view(storages: dict[str, torch.Tensor], root: str, view: Any) -> torch.Tensor:
    """A storage view of the oldest legacy files: ``(view_key, offset, size)`` into the root storage."""
    if view is None:
        return storages[root]
    if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[1], int) and isinstance(view[2], int)):
        raise UnsafePickleError("a storage view record of the wrong shape")
    key, offset, numel = str(view[0]), view[1], view[2]
    if key not in storages:
        storages[key] = storages[root][offset:offset + numel]
    return storages[key]


def _load_zip(path: Path, modules: tuple[str, ...]) -> Any:
    mapped = _Mapped(path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ValueError("not a torch zip checkpoint (no single data.pkl)")
        root = pkl[0][: -len("data.pkl")]
        order = f"{root}byteorder"
        if order in names and zf.read(order).strip() not in (b"little", b""):
            raise ValueError(f"storages are {zf.read(order).decode(errors='replace')[:10]}-endian; only little-endian "
                             f"files are read")
        storages: dict[str, torch.Tensor] = {}

        def load_storage(st: _StorageType, key: str, numel: int, view: Any) -> torch.Tensor:
            if key not in storages:
                try:
                    info = zf.getinfo(f"{root}data/{key}")
                except KeyError:
                    raise ValueError(f"storage {_short(key)!r} is missing from the archive") from None
                storages[key] = _zip_member(zf, mapped, info, st.dtype, numel)
            return _view(storages, key, view)

        return RestrictedUnpickler(zf.open(pkl[0]), load_storage, modules).load()


def _zip_member(zf: zipfile.ZipFile, mapped: _Mapped, info: zipfile.ZipInfo, dtype: torch.dtype,
                numel: int) -> torch.Tensor:
    """A stored (uncompressed, as torch writes them) member as a view on the mapping, else a copy."""
    nbytes = numel * _element_size(dtype)
    if info.file_size < nbytes:
        raise ValueError(f"storage {_short(info.filename)!r} holds {info.file_size} bytes, {nbytes} expected")
    if info.compress_type == zipfile.ZIP_STORED and mapped.mm is not None:
        header = mapped.mm[info.header_offset:info.header_offset + 30]
        if len(header) == 30 and header[:4] == b"PK\x03\x04":
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            return mapped.tensor(info.header_offset + 30 + name_len + extra_len, dtype, numel, info.filename)
    raw = zf.read(info)[:nbytes]
    if not raw:
        return torch.empty(0, dtype=dtype)
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).copy()).view(dtype)


def _load_legacy(path: Path, modules: tuple[str, ...]) -> Any:
    mapped = _Mapped(path)
    if mapped.mm is None:
        raise ValueError("the file is empty")
    mm = mapped.mm

    def plain() -> Any:
        return RestrictedUnpickler(mm, _no_storage, modules).load()

    if plain() != LEGACY_MAGIC:
        raise ValueError("neither a torch zip archive nor a legacy torch file")
    if plain() != LEGACY_PROTOCOL:
        raise ValueError("a legacy torch file of an unknown protocol version")
    info = plain()
    if isinstance(info, dict) and info.get("little_endian") is False:
        raise ValueError("storages are big-endian; only little-endian files are read")
    start = mm.tell()
    # Pass 1 with storages on the meta device (no memory) to find where the pickle ends, then the
    # storage table; pass 2 builds the tensors as views on the mapped storages.
    dtypes: dict[str, tuple[torch.dtype, int]] = {}

    def meta_storage(st: _StorageType, key: str, numel: int, view: Any) -> torch.Tensor:
        dtypes.setdefault(key, (st.dtype, numel))
        return torch.empty(numel, dtype=st.dtype, device="meta")

    RestrictedUnpickler(mm, meta_storage, modules).load()
    keys = plain()
    if not isinstance(keys, list):
        raise ValueError("the storage table is missing")
    storages: dict[str, torch.Tensor] = {}
    for key in map(str, keys):
        if key not in dtypes:
            raise ValueError(f"storage {_short(key)!r} is listed but never used")
        dtype, numel = dtypes[key]
        head = mm.read(8)
        if len(head) != 8:
            raise ValueError(f"storage {_short(key)!r} is cut off (truncated file)")
        (count,) = struct.unpack("<q", head)
        if count < numel:
            raise ValueError(f"storage {_short(key)!r} holds {count} elements, {numel} expected")
        offset = mm.tell()
        storages[key] = mapped.tensor(offset, dtype, numel, f"storage {_short(key)!r}")
        mm.seek(offset + count * _element_size(dtype))
    missing = sorted(set(dtypes) - set(storages))
    if missing:
        raise ValueError(f"storage {_short(missing[0])!r} is used but not in the file's storage table")

    def mapped_storage(st: _StorageType, key: str, numel: int, view: Any) -> torch.Tensor:
        return _view(storages, key, view)

    mm.seek(start)
    return RestrictedUnpickler(mm, mapped_storage, modules).load()


def _no_storage(*_: Any) -> torch.Tensor:
    raise UnsafePickleError("unexpected storage reference in a header record")


def load_checkpoint(path: str | Path, modules: tuple[str, ...] = ()) -> Any:
    """Unpickle a torch checkpoint with the restricted unpickler (module objects become stubs).

    ``modules``: prefixes of the qualified class names (``"glow."``) whose classes become
    :class:`ModuleStub` records, besides torch's own layers: the modules of the reference code that pickled
    the file, named by the converter that reads it (this module knows no model).

    Both torch formats (zip and the legacy pre-1.6 stream) are read; tensors are views on a copy-on-write
    memory map of the file. Whatever is wrong with the file (empty, truncated, corrupt, tampered, a refused
    global) gives one ``ValueError`` of one line naming it; nothing from the file is ever executed.
    """
    path = Path(path)
    if sys.byteorder != "little":  # pragma: no cover - the views assume a little-endian host
        raise ValueError(f"{path}: reading torch checkpoints needs a little-endian machine")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, modules)
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                raise ValueError("a zip archive that cannot be read (truncated or corrupt)")
        return _load_legacy(path, modules)
    except OSError:
        raise
    except RecursionError:
        raise ValueError(f"{path}: not a readable torch checkpoint (nested too deeply)") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the restricted reader is a bad input file
        text = str(exc)
        reason = _short(text.splitlines()[0], 200) if text.strip() else type(exc).__name__
        # pickle's "invalid load key, '\xbc'." shows raw bytes; say what it means instead
        reason = re.sub(r"invalid load key, '.*?'\.?", "not a pickle stream (invalid first byte)", reason)
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
    ckpt = weights_only_load(path)
    state = ckpt.get(key, ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected {{'{key}': state_dict}} of tensors")
    return strip_prefix(state)
