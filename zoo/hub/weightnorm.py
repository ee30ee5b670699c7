"""Folding weight normalisation (``weight = g * v / ||v||``) into plain weights, for every converter.

All the reference implementations use ``torch.nn.utils.weight_norm`` with ``dim=0``: the norm is taken
over every dimension except 0 (output channels of a Conv, input channels of a ConvTranspose), and
``weight_g`` has shape ``[d0, 1, 1, ...]``.
"""

from __future__ import annotations

from torch import Tensor


def fold_weight_norm(g: Tensor, v: Tensor, dim: int = 0) -> Tensor:
    """``g * v / ||v||`` with the norm over every dimension but ``dim``."""
    if dim != 0:
        v_t = v.transpose(0, dim)
        return fold_weight_norm(g.transpose(0, dim), v_t, 0).transpose(0, dim)
    norm = v.reshape(v.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))
    return g.reshape(-1, *([1] * (v.dim() - 1))) * v / norm


def fold_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Replace every ``X.weight_g`` / ``X.weight_v`` pair by ``X.weight`` (other keys unchanged)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key == "weight_g" or key.endswith(".weight_g"):
            base = key[: -len("_g")]
            v_key = base + "_v"
            if v_key not in state:
                raise ValueError(f"{key} has no matching {v_key}")
            g, v = value, state[v_key]
            if v.dim() == 0 or g.numel() != v.shape[0]:
                raise ValueError(f"{key} has {g.numel()} values but {v_key} has shape {tuple(v.shape)}: they do "
                                 f"not form one weight-normalised weight")
            out[base] = fold_weight_norm(g, v)
        elif key == "weight_v" or key.endswith(".weight_v"):
            if key[: -len("_v")] + "_g" not in state:
                raise ValueError(f"{key} has no matching weight_g")
        else:
            out[key] = value
    return out


def strip_prefix(state: dict[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """Remove a DataParallel/DDP ``module.`` prefix from every key that has it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
