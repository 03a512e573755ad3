"""Constraints of the bounded laws, and their transforms from the real line.

Torch's ``real`` and ``positive`` admit infinities, which make every result of these laws
NaN; ``finite_real`` and ``finite_positive`` do not. ``Support`` is ``interval(low, high)``
with ends that may be infinite, and ``SupportTransform`` maps the real line onto it element
by element (registered with ``biject_to`` and ``transform_to``).
"""

from __future__ import annotations

import math

import torch
from torch.distributions import biject_to, constraints, transform_to, transforms


def _extremes(value: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """The smallest and largest element (NaN if any is NaN); ``(inf, -inf)``-like for an empty tensor."""
    if value.numel() == 0:
        return math.inf, -math.inf  # vacuously valid: every comparison below is then true
    return torch.aminmax(value)


class FiniteReal(constraints._Real):
    """Finite real numbers: torch's ``real`` admits infinities, which make every result NaN here."""

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return value.abs() < math.inf  # (false for NaN; two passes, where isfinite makes four)

    def holds_everywhere(self, value: torch.Tensor) -> bool:
        """Whether ``check`` holds for every element, from one reduction (no temporaries; NaN fails)."""
        low, high = _extremes(value)
        return bool(low > -math.inf and high < math.inf)

    def __repr__(self) -> str:
        return "FiniteReal()"


class FinitePositive(constraints._GreaterThan):
    """Finite positive numbers (a scale or a concentration)."""

    def __init__(self) -> None:
        super().__init__(0.0)

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (value > 0) & (value < math.inf)

    def holds_everywhere(self, value: torch.Tensor) -> bool:
        """Whether ``check`` holds for every element, from one reduction (no temporaries; NaN fails)."""
        low, high = _extremes(value)
        return bool(low > 0 and high < math.inf)

    def __repr__(self) -> str:
        return "FinitePositive()"


class Support(constraints._Interval):
    """``interval(low, high)`` whose ends may be infinite, with a transform that handles them."""

    def __repr__(self) -> str:
        return f"Support(lower_bound={self.lower_bound}, upper_bound={self.upper_bound})"


class SupportTransform(transforms.Transform):
    r"""The real line onto :math:`[\ell, h]`, element by element, as torch picks per constraint:
    :math:`\ell + (h - \ell)\,\sigma(x)` for two finite ends (``interval``), :math:`\ell + e^{x}`
    (``greater_than``), :math:`h - e^{x}` (``less_than``), and :math:`x` (``real``). Torch's
    interval transform would give ``inf - inf = NaN`` at an infinite end."""

    domain = constraints.real
    bijective = True

    def __init__(self, low: torch.Tensor, high: torch.Tensor, cache_size: int = 0) -> None:
        super().__init__(cache_size=cache_size)
        self.low, self.high = low, high
        self.finite_low, self.finite_high = torch.isfinite(low), torch.isfinite(high)
        self.both = self.finite_low & self.finite_high
        # the ends with infinities replaced by 0: the unused branches stay finite (and their gradients)
        self.low0 = torch.where(self.finite_low, low, 0.0)
        self.high0 = torch.where(self.finite_high, high, 0.0)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def codomain(self) -> constraints.Constraint:
        return Support(self.low, self.high)

    def with_cache(self, cache_size: int = 1) -> "SupportTransform":
        return self if self._cache_size == cache_size else SupportTransform(self.low, self.high, cache_size)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        width = self.high0 - self.low0
        y = torch.where(self.both, self.low0 + width * torch.sigmoid(x),
                        torch.where(self.finite_low, self.low0 + torch.exp(x),
                                    torch.where(self.finite_high, self.high0 - torch.exp(x), x)))
        return torch.clamp(y, min=self.low, max=self.high)  # against the last rounding

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        above, below = torch.where(self.finite_low, y - self.low0, 1.0), torch.where(self.finite_high, self.high0 - y, 1.0)
        return torch.where(self.both, torch.log(above) - torch.log(below),
                           torch.where(self.finite_low, torch.log(above),
                                       torch.where(self.finite_high, torch.log(below), y)))

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        width = torch.where(self.both, self.high0 - self.low0, 1.0)
        sigmoid_part = torch.log(width) + torch.nn.functional.logsigmoid(x) + torch.nn.functional.logsigmoid(-x)
        return torch.where(self.both, sigmoid_part, torch.where(self.finite_low | self.finite_high, x, 0.0 * x))


@biject_to.register(Support)
@transform_to.register(Support)
def _support_transform(constraint: Support) -> transforms.Transform:
    return SupportTransform(constraint.lower_bound, constraint.upper_bound)


@biject_to.register(FiniteReal)
@transform_to.register(FiniteReal)
def _real_transform(constraint: FiniteReal) -> transforms.Transform:
    return transforms.identity_transform


@biject_to.register(FinitePositive)
@transform_to.register(FinitePositive)
def _positive_transform(constraint: FinitePositive) -> transforms.Transform:
    return transforms.ExpTransform()


finite_real, finite_positive = FiniteReal(), FinitePositive()


