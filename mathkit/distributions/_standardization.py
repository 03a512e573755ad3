r"""A location-scale law's bounds and values in standard form (z-space), in float64.

With :math:`\alpha = (\ell - \mu)/\sigma`, :math:`\beta = (h - \mu)/\sigma` and
:math:`z = (x - \mu)/\sigma`, the normal laws on :math:`[\ell, h]` reduce to N(0, 1) on
:math:`[\alpha, \beta]`; their math (the ``_truncated_standard_*`` modules) works there.
``standardize`` and ``standard_width`` keep infinite bounds infinite without sending
``inf * 0 = NaN`` into gradients; ``Standardized`` carries one batch (or slice of it).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from mathkit._elementwise import take
from mathkit._standard_normal import double_tail

_F64 = torch.float64


def f64(x: torch.Tensor) -> torch.Tensor:
    return x.to(_F64)


def needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)



def standardize(bound: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """:math:`(b - \\mu)/\\sigma` in float64, infinite bounds kept infinite without NaN gradients."""
    if not needs_grad(bound, loc, scale):
        return torch.sub(f64(bound), f64(loc)).div_(f64(scale))  # (in place: one temporary fewer)
    finite = torch.isfinite(bound)
    # double where: (inf - loc)/scale would send inf * 0 = NaN into d/dscale
    z = (f64(torch.where(finite, bound, 0.0)) - f64(loc)) / f64(scale)
    return torch.where(finite, z, f64(bound))



def standard_width(low: torch.Tensor, high: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """:math:`\\beta - \\alpha` from the unstandardised bounds: exact to one rounding, however far out."""
    low64, high64, scale64 = f64(low), f64(high), f64(scale)
    if not needs_grad(low, high, scale):
        return (high64 - low64) / scale64
    # double where, as in standardize: an infinite width must not send inf * 0 into the gradients
    finite = torch.isfinite(high64 - low64)
    return torch.where(finite, torch.where(finite, high64 - low64, 0.0) / scale64, math.inf)



def offsets_from_bounds(x, low, high, scale, width) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised distances from ``x`` up from ``low`` and down from ``high``, within [0, width].

    Taken in original units (exact subtractions near a bound), so that short intervals far
    out keep their precision (see :func:`mathkit.numerics.log_normal_mass`).
    """
    return ((x - low) / scale).clamp(min=0.0).minimum(width), ((high - x) / scale).clamp(min=0.0).minimum(width)



class Standardized(NamedTuple):
    """Flat float64 parameters of a location-scale law on :math:`[\\ell, h]`, its standardised
    bounds, and a value (``None`` when drawing): all of one length."""

    loc: torch.Tensor
    scale: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    value: torch.Tensor | None

    @property
    def z(self) -> torch.Tensor:
        """The standardised value :math:`(x - \\mu)/\\sigma`."""
        if needs_grad(self.value, self.loc, self.scale):
            return (self.value - self.loc) / self.scale
        return torch.sub(self.value, self.loc).div_(self.scale)

    @property
    def width(self) -> torch.Tensor:
        """:math:`\\beta - \\alpha` from the unstandardised bounds (``standard_width``)."""
        return standard_width(self.low, self.high, self.scale)

    def width_at(self, index: torch.Tensor | slice) -> torch.Tensor:
        """``width`` at the flat indices or slice ``index``, without gradients."""
        return standard_width(*(take(t.detach(), index) for t in (self.low, self.high, self.scale)))

    def tails(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``double_tail`` of :math:`\\alpha` and :math:`\\beta` (values only)."""
        return double_tail(self.alpha.detach()), double_tail(self.beta.detach())


def standardized(loc, scale, low, high, value=None) -> Standardized:
    """``Standardized`` from float64 parameters (and value) of one shape."""
    return Standardized(loc, scale, low, high, standardize(low, loc, scale), standardize(high, loc, scale), value)
