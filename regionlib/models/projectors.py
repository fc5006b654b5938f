"""Vision-to-LM projectors (LLaVA / VILA), shared by the models that feed patch tokens to an LM.

===================  ==========================================================================
``kind``             module
===================  ==========================================================================
``linear``           ``Linear(C, D)``
``mlp2x_gelu``       ``Linear(C, D) -> GELU -> Linear(D, D)`` (LLaVA-1.5)
``mlp_downsample``   VILA's 2x2 token merge, then ``LayerNorm(4C) -> Linear(4C, D) -> GELU -> Linear(D, D)``
                     (DAM-3B: 27x27 = 729 SigLIP tokens -> 14x14 = 196 LM tokens)
===================  ==========================================================================

The 2x2 merge (`merge_2x2`) of a ``g x g`` grid: zero-pad to even size (a row at the bottom, a
column at the right), concatenate each 2x2 block's tokens as ``[(2i, 2j), (2i, 2j+1), (2i+1, 2j),
(2i+1, 2j+1)]`` (4C channels), blocks in **column-major** order (block ``(i, j)`` at ``j * h' + i``),
as VILA's ``DownSampleBlock.flat_square`` leaves them.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..errors import ConfigError, RegionLibError

__all__ = ["PROJECTORS", "build_projector", "merge_2x2", "DownsampleProjector"]

PROJECTORS = ("linear", "mlp2x_gelu", "mlp_downsample")


def merge_2x2(tokens: torch.Tensor) -> torch.Tensor:
    """``(B, g*g, C)`` row-major patch tokens -> ``(B, ceil(g/2)^2, 4C)`` merged tokens (module docstring)."""
    b, n, c = tokens.shape
    g = math.isqrt(n)
    if g * g != n:
        raise RegionLibError(f"the 2x2 merge needs a square token grid, got {n} tokens")
    x = tokens.reshape(b, g, g, c)
    if g % 2:
        x = nn.functional.pad(x, (0, 0, 0, 1, 0, 1))  # one zero column (dim 2), one zero row (dim 1)
    h = x.shape[1] // 2
    # (B, rows, cols, C) -> (B, rows, cols/2, 2C): [(r, 2j), (r, 2j+1)]; then pair the rows of each column pair
    x = x.reshape(b, 2 * h, h, 2 * c).permute(0, 2, 1, 3).reshape(b, h, h, 4 * c)  # (B, j, i, 4C)
    return x.reshape(b, h * h, 4 * c)


class DownsampleProjector(nn.Module):
    """VILA's ``mlp_downsample``: `merge_2x2`, then ``LayerNorm -> Linear -> GELU -> Linear``.

    Args: in_dim: vision width C; out_dim: LM width D. ``forward``: ``(B, g*g, C)`` -> ``(B, ceil(g/2)^2, D)``.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * in_dim)
        self.fc1 = nn.Linear(4 * in_dim, out_dim)
        self.fc2 = nn.Linear(out_dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(self.norm(merge_2x2(tokens)))))


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """The projector ``kind`` (one of `PROJECTORS`) from vision width ``in_dim`` to LM width ``out_dim``."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    if kind == "mlp_downsample":
        return DownsampleProjector(in_dim, out_dim)
    raise ConfigError(f"projector must be one of {list(PROJECTORS)}, got {kind!r}")
