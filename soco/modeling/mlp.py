"""Projector / predictor MLPs shared by every method."""

from __future__ import annotations

from torch import nn


def get_norm1d(norm: str, channels: int) -> nn.Module | None:
    """A 1-D normalization layer by name: "" (none), "BN" or "SyncBN".

    torch's ``SyncBatchNorm`` behaves as plain batch norm when no process group is initialized,
    so "SyncBN" also runs in a single CPU process.
    """
    if norm == "":
        return None
    if norm == "BN":
        return nn.BatchNorm1d(channels)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(channels)
    raise ValueError(f"unknown 1-D norm {norm!r}; expected '', 'BN' or 'SyncBN'")


class MLP(nn.Sequential):
    """Linear -> [norm] -> ReLU -> Linear [-> norm]: the BYOL/SoCo projector and predictor, MoCo v2's head.

    Input ``(N, in_dim)``, output ``(N, out_dim)``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, norm: str = "BN", last_norm: bool = False):
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
        hidden_norm = get_norm1d(norm, hidden_dim)
        if hidden_norm is not None:
            layers.append(hidden_norm)
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        if last_norm:
            out_norm = get_norm1d(norm, out_dim)
            if out_norm is None:
                raise ValueError("last_norm=True needs a norm")
            layers.append(out_norm)
        super().__init__(*layers)
