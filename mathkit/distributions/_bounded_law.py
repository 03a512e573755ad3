"""``BoundedLaw``: the template every law of this package follows.

A law on :math:`[\\ell, h]` sets its parameters with ``float_params``, calls ``_init_batch``,
and implements ``log_prob`` and ``_log_tail`` (the log of :math:`F` or of :math:`1 - F`);
the template supplies the bounds check, ``support``, ``expand``, ``log_cdf``, ``log_sf``,
``cdf``, and the validation of values and probabilities in torch's wording.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.distributions import Distribution, constraints
from torch.distributions.utils import broadcast_all

from mathkit._elementwise import all_true
from mathkit.distributions._constraints import Support


def float_params(names: tuple[str, ...], *values) -> tuple[torch.Tensor, ...]:
    """``broadcast_all`` of the parameters ``names`` in one floating dtype.

    Integer and bool tensors are promoted like Python numbers: to the floating dtype of
    the other tensors (float64 over float32), or to torch's default dtype if there is none,
    so an integer ``loc`` never truncates a mean or rounds a cdf to 0 or 1.
    """
    floating = [v.dtype for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()]
    dtype = functools.reduce(torch.promote_types, floating) if floating else torch.get_default_dtype()
    try:
        return broadcast_all(*(v.to(dtype) if isinstance(v, torch.Tensor) else v for v in values))
    except RuntimeError:
        shapes = ", ".join(f"{name} {tuple(torch.as_tensor(v).shape)}" for name, v in zip(names, values))
        raise ValueError(f"the parameters must have broadcastable shapes, got {shapes}") from None



class BoundedLaw(Distribution):
    """Shared plumbing of laws on :math:`[\\ell, h]`: bounds check, support, ``expand``, ``cdf``."""

    has_rsample = True

    def _init_batch(self, validate_args: bool | None) -> None:
        validate = self._validate_args if validate_args is None else validate_args  # (torch's default, if None)
        # Parameters that pass a one-reduction screen skip torch's elementwise checks (several
        # passes and n-sized temporaries: more than drawing a sample); torch runs them, and words
        # the error, whenever a screen fails.
        screened = validate and self._parameters_pass_screens()
        super().__init__(self.low.shape, validate_args=validate and not screened)
        self._validate_args = validate
        # (NaN bounds fail too: comparisons with NaN are false)
        if self._validate_args and not all_true(self.low < self.high):
            raise ValueError(
                f"Expected parameters low ({describe(self.low)}) and high ({describe(self.high)}) of "
                f"distribution {type(self).__name__} to satisfy the constraint low < high, "
                f"but found invalid values:\nlow={self.low}\nhigh={self.high}"
            )

    def _parameters_pass_screens(self) -> bool:
        """Whether every checkable parameter's constraint has a screen (``holds_everywhere``) and passes it."""
        checked = {name: c for name, c in self.arg_constraints.items() if not constraints.is_dependent(c)}
        return all(hasattr(c, "holds_everywhere") and c.holds_everywhere(getattr(self, name)) for name, c in checked.items())

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        return Support(self.low, self.high)

    def expand(self, batch_shape: torch.Size, _instance=None) -> BoundedLaw:
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        for name in self.arg_constraints:
            setattr(new, name, getattr(self, name).expand(batch_shape))
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _log_tail(self, value: torch.Tensor, upper: bool) -> torch.Tensor:
        r""":math:`\log(1-F)` if ``upper`` else :math:`\log F` at ``value``, relatively exact; NaN stays NaN."""
        raise NotImplementedError

    def log_cdf(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`\log F(x)`; ``-inf`` below the support, ``0`` at and above ``high``."""
        self._check_not_nan(value, "log_cdf")
        return self._out(self._log_tail(value, upper=False))

    def log_sf(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`\log(1 - F(x))`, the log survival function: ``0`` below the support, ``-inf`` at and above ``high``."""
        self._check_not_nan(value, "log_sf")
        return self._out(self._log_tail(value, upper=True))

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`F(x)` for any real ``x`` (0 below the support, 1 above it)."""
        self._check_tensor(value, "cdf")
        return torch.exp(self.log_cdf(value))

    def _check_tensor(self, value: torch.Tensor, method: str) -> None:
        if self._validate_args and not isinstance(value, torch.Tensor):
            raise ValueError(f"The value argument to {method} must be a Tensor")  # (torch's wording, as log_prob)

    def _check_not_nan(self, value: torch.Tensor, method: str) -> None:
        """Distribution functions accept any real value; with validation, NaN is an error (else it propagates)."""
        self._check_tensor(value, method)
        if self._validate_args and bool(torch.isnan(value).any()):
            raise ValueError(
                f"Expected value argument ({describe(value)}) to be within the support (Real()) of the "
                f"distribution functions of {self}, but found invalid values:\n{value}"
            )

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.low.dtype)

    def _check_probability(self, value: torch.Tensor) -> None:
        self._check_tensor(value, "icdf")
        if self._validate_args and not bool(((value >= 0) & (value <= 1)).all()):
            raise ValueError(
                f"Expected value argument ({describe(value)}) to be within the support "
                f"(Interval(lower_bound=0.0, upper_bound=1.0)) of icdf of distribution {self}, "
                f"but found invalid values:\n{value}"
            )


def outside_support(log_p: torch.Tensor, value: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``log_p`` with ``-inf`` where ``value`` is outside ``[low, high]``; a NaN value keeps its NaN."""
    return torch.where((value < low) | (value > high), -math.inf, log_p)


def describe(t: torch.Tensor) -> str:
    return f"{type(t).__name__} of shape {tuple(t.shape)}"


