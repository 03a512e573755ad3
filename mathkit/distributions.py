r"""Bounded and censored laws as ``torch.distributions.Distribution`` subclasses.

- ``TruncatedNormal``: :math:`N(\mu, \sigma^2)` conditioned on :math:`[\ell, h]`;
- ``CensoredNormal``: the Tobit law of :math:`\mathrm{clamp}(X, \ell, h)`, :math:`X \sim N(\mu,\sigma^2)`;
- ``GeneralizedBeta``: :math:`\ell + (h - \ell)B`, :math:`B \sim \mathrm{Beta}(\alpha, \beta)`.

All follow torch's contract: ``arg_constraints``, a ``support`` that depends on
the bounds, broadcasting of every parameter into ``batch_shape``, ``expand``,
and ``validate_args`` errors in torch's wording. Each offers ``log_cdf`` and
``log_sf`` (log survival) besides ``log_prob``, so that censored likelihoods
(:func:`mathkit.losses.censored_nll`) compose with any of them.

Internally everything is computed in float64 with the log-space helpers of
:mod:`mathkit.numerics` and returned in the parameters' dtype, so float32 models
get float32 results that are exact to float32 rounding.

Bad input follows one rule. Parameters: integer and bool tensors are promoted to a
floating dtype like Python numbers; locations, scales and concentrations must be finite
(torch's ``real`` and ``positive`` admit infinities); NaN anywhere fails validation.
Values: ``log_prob`` validates the support like torch's distributions; without
validation it is ``-inf`` outside the support. ``cdf``, ``log_cdf`` and ``log_sf``
accept any real value (0 / 1, ``-inf`` / 0 outside the support, with validation on or
off). NaN data raise a ``ValueError`` in torch's wording when validating, and come out
as NaN otherwise. ``torch.distributions.transform_to(d.support)`` (and ``biject_to``)
map the real line onto the support element by element, with infinite bounds handled as
torch's ``real``, ``greater_than`` and ``less_than`` do, so parameters can be optimised
inside the support.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch.distributions import Beta, Distribution, biject_to, constraints, transform_to, transforms
from torch.distributions.utils import broadcast_all, lazy_property

from mathkit.numerics import (
    _SQRT_HALF,
    MASS_FLOOR,
    _CHUNK,
    _chunked,
    _chain,
    _density_over_mass,
    _double_mass,
    _double_tail,
    _inverse_mills,
    _log1mexp,
    _log_ndtr,
    _log_normal_mass,
    _log_normal_mass_value,
    _ndtri_exp,
    _to_lower_side,
    _gauss_legendre_on,
    _is_short,
    log_normal_pdf,
)

__all__ = ["TruncatedNormal", "CensoredNormal", "GeneralizedBeta"]

_HALF_LOG_2PI_E = 0.5 * math.log(2.0 * math.pi * math.e)
_F64 = torch.float64


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.to(_F64)


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _standardize(bound: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """:math:`(b - \\mu)/\\sigma` in float64, infinite bounds kept infinite without NaN gradients."""
    if not _needs_grad(bound, loc, scale):
        return (_f64(bound) - _f64(loc)) / _f64(scale)
    finite = torch.isfinite(bound)
    # double where: (inf - loc)/scale would send inf * 0 = NaN into d/dscale
    z = (_f64(torch.where(finite, bound, 0.0)) - _f64(loc)) / _f64(scale)
    return torch.where(finite, z, _f64(bound))


def _float_params(names: tuple[str, ...], *values) -> tuple[torch.Tensor, ...]:
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


class _FiniteReal(constraints._Real):
    """Finite real numbers: torch's ``real`` admits infinities, which make every result NaN here."""

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return value.abs() < math.inf  # (false for NaN; two passes, where isfinite makes four)


class _FinitePositive(constraints._GreaterThan):
    """Finite positive numbers (a scale or a concentration)."""

    def __init__(self) -> None:
        super().__init__(0.0)

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (value > 0) & (value < math.inf)

    def __repr__(self) -> str:
        return "FinitePositive()"


class _Support(constraints._Interval):
    """``interval(low, high)`` whose ends may be infinite, with a transform that handles them."""


class _SupportTransform(transforms.Transform):
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
        return _Support(self.low, self.high)

    def with_cache(self, cache_size: int = 1) -> "_SupportTransform":
        return self if self._cache_size == cache_size else _SupportTransform(self.low, self.high, cache_size)

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


@biject_to.register(_Support)
@transform_to.register(_Support)
def _support_transform(constraint: _Support) -> transforms.Transform:
    return _SupportTransform(constraint.lower_bound, constraint.upper_bound)


@biject_to.register(_FiniteReal)
@transform_to.register(_FiniteReal)
def _real_transform(constraint: _FiniteReal) -> transforms.Transform:
    return transforms.identity_transform


@biject_to.register(_FinitePositive)
@transform_to.register(_FinitePositive)
def _positive_transform(constraint: _FinitePositive) -> transforms.Transform:
    return transforms.ExpTransform()


_finite_real, _finite_positive = _FiniteReal(), _FinitePositive()


def _finite_or_zero(x: torch.Tensor) -> torch.Tensor:
    """``x`` where finite, else 0: for products like :math:`\\alpha\\,\\phi(\\alpha)` that vanish at infinity."""
    return torch.where(torch.isfinite(x), x, 0.0)


class _BoundedLaw(Distribution):
    """Shared plumbing of laws on :math:`[\\ell, h]`: bounds check, support, ``expand``, ``cdf``."""

    has_rsample = True

    def _init_batch(self, validate_args: bool | None) -> None:
        super().__init__(self.low.shape, validate_args=validate_args)
        # (NaN bounds fail too: comparisons with NaN are false)
        if self._validate_args and not bool((self.low < self.high).all()):
            raise ValueError(
                f"Expected parameters low ({_describe(self.low)}) and high ({_describe(self.high)}) of "
                f"distribution {type(self).__name__} to satisfy the constraint low < high, "
                f"but found invalid values:\nlow={self.low}\nhigh={self.high}"
            )

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        return _Support(self.low, self.high)

    def expand(self, batch_shape: torch.Size, _instance=None) -> _BoundedLaw:
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
        self._check_not_nan(value)
        return self._out(self._log_tail(value, upper=False))

    def log_sf(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`\log(1 - F(x))`, the log survival function: ``0`` below the support, ``-inf`` at and above ``high``."""
        self._check_not_nan(value)
        return self._out(self._log_tail(value, upper=True))

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`F(x)` for any real ``x`` (0 below the support, 1 above it)."""
        return torch.exp(self.log_cdf(value))

    def _check_not_nan(self, value: torch.Tensor) -> None:
        """Distribution functions accept any real value; with validation, NaN is an error (else it propagates)."""
        if self._validate_args and bool(torch.isnan(value).any()):
            raise ValueError(
                f"Expected value argument ({_describe(value)}) to be within the support (Real()) of the "
                f"distribution functions of {self}, but found invalid values:\n{value}"
            )

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.low.dtype)

    def _check_probability(self, value: torch.Tensor) -> None:
        if self._validate_args and not bool(((value >= 0) & (value <= 1)).all()):
            raise ValueError(
                f"Expected value argument ({_describe(value)}) to be within the support "
                f"(Interval(lower_bound=0.0, upper_bound=1.0)) of icdf of distribution {self}, "
                f"but found invalid values:\n{value}"
            )


def _outside_support(log_p: torch.Tensor, value: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``log_p`` with ``-inf`` where ``value`` is outside ``[low, high]``; a NaN value keeps its NaN."""
    return torch.where((value < low) | (value > high), -math.inf, log_p)


def _describe(t: torch.Tensor) -> str:
    return f"{type(t).__name__} of shape {tuple(t.shape)}"


class _Chunk(NamedTuple):
    """Float64 slices of a law's parameters and of the derived quantities (see ``_fused``)."""

    loc: torch.Tensor
    scale: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    value: torch.Tensor | None

    @property
    def width(self) -> torch.Tensor:
        """:math:`\\beta - \\alpha` from the unstandardised bounds (see ``TruncatedNormal._std_width``)."""
        return (self.high - self.low) / self.scale

    @property
    def tails(self) -> tuple[torch.Tensor, torch.Tensor]:
        return _double_tail(self.alpha), _double_tail(self.beta)


def _uniform_open(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Uniform draws in (0, 1), float64: u = 0 (probability 2^-53) would put a draw at an infinite bound."""
    return torch.rand(shape, dtype=_F64, device=device).clamp_(min=2.0**-54)


class TruncatedNormal(_BoundedLaw):
    r"""The normal law :math:`N(\mu, \sigma^2)` restricted to :math:`[\ell, h]`.

    With :math:`\alpha = (\ell-\mu)/\sigma`, :math:`\beta = (h-\mu)/\sigma` and the
    mass :math:`Z = \Phi(\beta) - \Phi(\alpha)`,

    .. math::
        p(x) = \frac{\phi\big((x-\mu)/\sigma\big)}{\sigma Z}, \quad
        F(x) = \frac{\Phi\big((x-\mu)/\sigma\big) - \Phi(\alpha)}{Z}, \qquad \ell \le x \le h.

    :math:`\log Z`, :math:`\log F` and :math:`\log(1-F)` come from
    :func:`mathkit.numerics.log_normal_mass` (tail reflection, log space where
    probabilities underflow), and the smaller of :math:`F`, :math:`1-F` is always
    computed directly, so bounds 40 standard deviations out, one-sided or
    two-sided, keep ~1e-13 accuracy in float64 and finite gradients; an infinite
    bound gets a zero gradient, never NaN. The moments

    .. math::
        E[X] = \mu + \sigma\,\frac{\phi(\alpha)-\phi(\beta)}{Z}, \quad
        \mathrm{Var}[X] = \sigma^2\Big[1 + \frac{\alpha\phi(\alpha)-\beta\phi(\beta)}{Z}
        - \Big(\frac{\phi(\alpha)-\phi(\beta)}{Z}\Big)^2\Big]

    are evaluated as written (ratios :math:`\exp(\log\phi - \log Z)`) when the
    interval contains 0, and for tail intervals through offsets from the near
    bound taken from the Mills-ratio continued fraction, which do not cancel
    (the textbook form loses 7 digits of the variance on [38, 40]).

    ``icdf`` and ``rsample`` invert the cdf: on the side of 0 where the endpoint
    probabilities are relatively exact, :math:`\Phi(z)` and :math:`\Phi(-z)` are
    formed as sums of positive terms and the smaller is inverted by ``ndtri``;
    where those probabilities approach underflow (masses below 1e-290), the same
    equation is solved in log space by :func:`mathkit.numerics.ndtri_exp`. Draws
    are exact in the far tails, reparameterised (gradients reach all four
    parameters), and clamped into :math:`[\ell, h]` against the last rounding.
    Without gradients (``sample``, or ``rsample`` under ``torch.no_grad``), intervals
    whose near end is 8 or more standard deviations out are drawn instead by Robert's
    (1995) exponential rejection sampler, exact and free of special functions, and
    long batches are processed in cache-sized slices with no full-size intermediates
    (also for ``log_prob``, ``log_cdf`` and ``log_sf``). The two samplers give different
    draws for the same seed, each from the same law; which one runs depends only on whether
    gradients are needed, never on what an earlier call cached, so ``sample()`` after a
    seed gives the same draws whatever was computed before. ``icdf`` has the implicit
    gradients of :math:`F(x) = q` in all four parameters and in :math:`q`.
    Burkardt, *The truncated normal distribution* (2014) collects the formulas.

    Args:
        loc, scale: :math:`\mu` and :math:`\sigma > 0`.
        low, high: the bounds :math:`\ell < h`; ``-inf``/``inf`` for one-sided or no truncation.
        validate_args: as in ``torch.distributions``.

    All four parameters broadcast to ``batch_shape``; Python numbers and integer or bool
    tensors become the floating dtype of the other parameters (torch's default dtype if
    none is floating). ``loc`` must be finite, ``scale`` finite and positive.
    """

    arg_constraints = {
        "loc": _finite_real,
        "scale": _finite_positive,
        "low": constraints.dependent(is_discrete=False, event_dim=0),
        "high": constraints.dependent(is_discrete=False, event_dim=0),
    }

    def __init__(self, loc, scale, low=-math.inf, high=math.inf, validate_args: bool | None = None) -> None:
        self.loc, self.scale, self.low, self.high = _float_params(("loc", "scale", "low", "high"), loc, scale, low, high)
        self._init_batch(validate_args)

    # ------------------------------------------------------------- standardised quantities (float64)
    @lazy_property
    def _alpha(self) -> torch.Tensor:
        return _standardize(self.low, self.loc, self.scale)

    @lazy_property
    def _beta(self) -> torch.Tensor:
        return _standardize(self.high, self.loc, self.scale)

    @lazy_property
    def _tails(self) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`2\Phi(-|\alpha|)`, :math:`2\Phi(-|\beta|)`: shared by the mass and the cdf (values only)."""
        alpha, beta = self._alpha.detach().reshape(-1), self._beta.detach().reshape(-1)
        return tuple(_chunked(lambda rows: _double_tail(t[rows]), t.numel(), t).reshape(self._alpha.shape)
                     for t in (alpha, beta))

    @lazy_property
    def _log_mass(self) -> torch.Tensor:
        return _log_normal_mass(self._alpha, self._beta, self._std_width, self._tails)

    @lazy_property
    def _std_width(self) -> torch.Tensor:
        return _standard_width(self.low, self.high, self.scale)

    def _z(self, value: torch.Tensor) -> torch.Tensor:
        return (_f64(value) - _f64(self.loc)) / _f64(self.scale)

    def _clamped_z(self, value: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self._z(value), min=self._alpha, max=self._beta)

    # ------------------------------------------------------------- fused path (no autograd)
    def _fused(self, value: torch.Tensor | None, sample_shape: torch.Size, fn) -> torch.Tensor | None:
        r"""``fn(chunk)`` over cache-sized slices of the flattened batch, into one output; or
        ``None`` when gradients are needed (then the autograd path applies). The choice depends
        on that alone, never on what earlier calls cached, so the same seed gives the same draws.

        Every float64 intermediate lives in one slice only: on a CPU, a fresh 8 MB tensor per
        intermediate costs page faults comparable to the arithmetic (10^6 values: ~40% of
        ``log_prob``'s time), while the slices' temporaries are recycled by the allocator.
        ``chunk`` holds float64 slices ``loc, scale, low, high, alpha, beta`` and ``value``
        (if any), and computes ``width`` and ``tails`` on request.
        """
        params = (self.loc, self.scale, self.low, self.high)
        if _needs_grad(*params, *(() if value is None else (value,))):
            return None
        shape = self._extended_shape(sample_shape)
        if value is not None:
            shape = torch.broadcast_shapes(shape, value.shape)
        flat = [t.expand(shape).reshape(-1) for t in (params if value is None else (*params, value))]
        out = torch.empty(shape.numel(), dtype=self.low.dtype, device=self.low.device)
        for start in range(0, len(out), _CHUNK):
            rows = slice(start, min(start + _CHUNK, len(out)))
            loc, scale, low, high, *x = (_f64(t[rows]) for t in flat)
            alpha, beta = (low - loc) / scale, (high - loc) / scale
            out[rows] = fn(_Chunk(loc, scale, low, high, alpha, beta, x[0] if x else None))
        return out.reshape(shape)

    # ------------------------------------------------------------- densities and distribution functions
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)  # every value is inside the support
        fused = self._fused(value, torch.Size(), self._chunk_log_prob)
        if fused is not None:
            return fused
        log_p = log_normal_pdf(self._z(value)) - torch.log(_f64(self.scale)) - self._log_mass
        return self._out(self._minus_inf_outside(log_p, value, self.low, self.high))

    def _minus_inf_outside(self, log_p, value, low, high) -> torch.Tensor:
        """``log_p``, with ``-inf`` outside ``[low, high]`` (already excluded when validating); NaN stays NaN."""
        if self._validate_args:
            return log_p
        return _outside_support(log_p, value, low, high)

    def _chunk_log_prob(self, c: _Chunk) -> torch.Tensor:
        log_mass = _log_normal_mass_value(c.alpha, c.beta, c.width, c.tails)
        log_p = log_normal_pdf((c.value - c.loc) / c.scale).sub_(torch.log(c.scale)).sub_(log_mass)
        return self._minus_inf_outside(log_p, c.value, c.low, c.high)

    def _log_tail(self, value: torch.Tensor, upper: bool) -> torch.Tensor:
        fused = self._fused(value, torch.Size(), lambda c: self._chunk_log_tail(c, upper))
        if fused is not None:
            return fused
        z = self._clamped_z(value)
        shape = z.shape

        def flat(t: torch.Tensor) -> torch.Tensor:
            return _f64(t).expand(shape).reshape(-1)

        def offsets(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return _offsets_from_bounds(*(flat(t).index_select(0, index)
                                          for t in (value, self.low, self.high, self.scale, self._std_width)))

        out = _LogTail.apply(
            flat(self._alpha), flat(self._beta), z.reshape(-1), *(flat(t) for t in self._tails),
            flat(self._log_mass).detach(), offsets, upper,
        )
        return out.reshape(shape)

    @staticmethod
    def _chunk_log_tail(c: _Chunk, upper: bool) -> torch.Tensor:
        z = ((c.value - c.loc) / c.scale).clamp_(min=c.alpha, max=c.beta)
        tails, width = c.tails, c.width
        log_mass = _log_normal_mass_value(c.alpha, c.beta, width, tails)

        def offsets(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return _offsets_from_bounds(*(t.index_select(0, index) for t in (c.value, c.low, c.high, c.scale, width)))

        return _log_tail_value(c.alpha, c.beta, z, tails, log_mass, offsets, upper)

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        self._check_probability(value)
        q = _f64(value)
        shape = torch.broadcast_shapes(self._alpha.shape, q.shape)

        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.expand(shape).reshape(-1)

        z = _StandardQuantile.apply(flat(self._alpha), flat(self._beta), flat(q), flat(self._std_width).detach())
        x = _f64(self.loc) + _f64(self.scale) * z.reshape(shape)
        return self._out(torch.clamp(x, min=_f64(self.low), max=_f64(self.high)))

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        fused = self._fused(None, torch.Size(sample_shape), self._chunk_draw)
        if fused is not None:
            return fused
        shape = self._extended_shape(sample_shape)
        u = _uniform_open(shape, self.loc.device).reshape(-1)

        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.expand(shape).reshape(-1)

        z = _StandardDraw.apply(flat(self._alpha), flat(self._beta), u, *(flat(t) for t in self._tails))
        x = torch.addcmul(_f64(self.loc), _f64(self.scale), z.reshape(shape))
        # float64 -> dtype rounds monotonically, so a draw inside [low, high] stays inside
        return self._out(torch.clamp(x, min=_f64(self.low), max=_f64(self.high)))

    @staticmethod
    def _chunk_draw(c: _Chunk) -> torch.Tensor:
        """Draws for ``sample``: tail intervals by rejection, the others by inverting the cdf."""
        tail = (c.alpha >= _REJECTION_FROM) | (c.beta <= -_REJECTION_FROM)
        (by_rejection,) = torch.nonzero(tail, as_tuple=True)
        if not len(by_rejection):
            z = _draws_by_inversion(c.alpha, c.beta)
        else:
            z = torch.empty_like(c.alpha)
            (by_inversion,) = torch.nonzero(~tail, as_tuple=True)
            if len(by_inversion):
                near = (t.index_select(0, by_inversion) for t in (c.alpha, c.beta))
                z.index_copy_(0, by_inversion, _draws_by_inversion(*near))
            a, b = c.alpha.index_select(0, by_rejection), c.beta.index_select(0, by_rejection)
            # left tails are mirrored to the right of 0, drawn there, and mirrored back (b < 0)
            draws = _right_tail_by_rejection(torch.maximum(a, -b), torch.maximum(b, -a))
            z.index_copy_(0, by_rejection, draws.copysign_(b))
        return torch.addcmul(c.loc, c.scale, z).clamp_(min=c.low, max=c.high)

    # ------------------------------------------------------------- moments
    @lazy_property
    def _standard_moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and entropy of N(0, 1) truncated to [alpha, beta] (float64)."""
        return _truncated_standard_moments(self._alpha, self._beta, self._std_width)

    @property
    def mean(self) -> torch.Tensor:
        return self._out(_f64(self.loc) + _f64(self.scale) * self._standard_moments[0])

    @property
    def mode(self) -> torch.Tensor:
        return torch.maximum(torch.minimum(self.loc, self.high), self.low)

    @property
    def variance(self) -> torch.Tensor:
        return self._out(_f64(self.scale) ** 2 * self._standard_moments[1])

    def entropy(self) -> torch.Tensor:
        return self._out(torch.log(_f64(self.scale)) + self._standard_moments[2])


def _standard_width(low: torch.Tensor, high: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """:math:`\\beta - \\alpha` from the unstandardised bounds: exact to one rounding, however far out."""
    low64, high64, scale64 = _f64(low), _f64(high), _f64(scale)
    if not _needs_grad(low, high, scale):
        return (high64 - low64) / scale64
    # double where, as in _standardize: an infinite width must not send inf * 0 into the gradients
    finite = torch.isfinite(high64 - low64)
    return torch.where(finite, torch.where(finite, high64 - low64, 0.0) / scale64, math.inf)


def _truncated_standard_moments(
    alpha: torch.Tensor, beta: torch.Tensor, width: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and entropy of N(0, 1) truncated to [alpha, beta] (float64), ``width`` = beta - alpha
    as precise as the caller has it: tail intervals without cancellation, central ones by the
    closed forms, short ones by quadrature."""
    right, left = alpha >= 0, beta <= 0
    tail = right | left
    # Tail intervals, mirrored to the right of 0 when left of it; central entries
    # get a harmless [1, 2] so the unused branch stays finite (and so its gradient).
    near = torch.where(tail, torch.where(right, alpha, -beta), 1.0)
    far = torch.where(tail, torch.where(right, beta, -alpha), 2.0)
    tail_mean, tail_var, tail_entropy = _right_tail_moments(near, far)
    tail_mean = torch.where(right, tail_mean, -tail_mean)
    central = _central_moments(torch.where(tail, -1.0, alpha), torch.where(tail, 1.0, beta))
    moments = [torch.where(tail, t, c) for t, c in zip((tail_mean, tail_var, tail_entropy), central)]
    # Narrow intervals: both closed forms subtract nearly equal terms (the variance
    # ~ width^2/12 comes out of O(1) numbers); a quadrature over the interval does not.
    shape = torch.broadcast_shapes(alpha.shape, width.shape)
    alpha, width = alpha.expand(shape), width.expand(shape)
    narrow = _is_short(alpha, width).reshape(-1)
    if bool(narrow.any()):
        a, w = alpha.reshape(-1)[narrow], width.reshape(-1)[narrow]
        moments = [m.expand(shape).reshape(-1).index_put((narrow,), q).reshape(shape)
                   for m, q in zip(moments, _narrow_moments(a, w))]
    return tuple(moments)


def _offsets_from_bounds(x, low, high, scale, width) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised distances from ``x`` up from ``low`` and down from ``high``, within [0, width].

    Taken in original units (exact subtractions near a bound), so that short intervals far
    out keep their precision (see :func:`mathkit.numerics.log_normal_mass`).
    """
    return ((x - low) / scale).clamp(min=0.0).minimum(width), ((high - x) / scale).clamp(min=0.0).minimum(width)


def _from_smaller(log_smaller: torch.Tensor, direct: torch.Tensor) -> torch.Tensor:
    r""":math:`\log F` (or :math:`\log(1-F)`) from the log of the smaller of :math:`F` and :math:`1-F`,
    computed directly: where ``direct`` (the wanted one is the smaller) it is that log, else
    :math:`\log(1 - e^{s})`, relatively exact near 0, as a plain difference of log-masses is not."""
    log_smaller = log_smaller.clamp(max=-math.log(2.0))
    return torch.where(direct, log_smaller, torch.log1p(-torch.exp(log_smaller)))  # log1mexp's branch for <= -log 2


def _may_cancel(mass2: torch.Tensor, tail_p: torch.Tensor, tail_q: torch.Tensor) -> torch.Tensor:
    """Whether a doubled mass from :func:`mathkit.numerics._double_mass` may have lost digits:
    below 4.5% of the larger tail subtracted (one-sided), or of 2 (central: there both tails
    exceed 0.96). A superset of the cases that numerics._refine_log_mass redoes."""
    return mass2 < 0.045 * torch.maximum(tail_p, tail_q)


def _log_tail_value(alpha, beta, z, tails, log_mass, offsets, upper: bool) -> torch.Tensor:
    r""":math:`\log(1 - F(z))` if ``upper`` else :math:`\log F(z)`, for N(0,1) on :math:`[\alpha, \beta]`
    (flat float64, no autograd; ``tails``: ``_double_tail`` of :math:`\alpha, \beta`).

    The bulk costs one ``erfc``, at ``z``: the masses of :math:`[\alpha, z]` and :math:`[z, \beta]`
    and :math:`[\alpha, \beta]` are differences of the doubled tails at the three points
    (:func:`mathkit.numerics._double_mass`), and :math:`F` or :math:`1 - F`, whichever is smaller,
    is their ratio. Short intervals (whose masses may cancel) and masses near underflow are redone
    by index in log space from ``offsets(index)`` (the distances to the bounds, computed precisely
    in original units) and ``log_mass``.
    """
    tail_a, tail_b = tails
    tail_z = _double_tail(z)
    negative_a, positive_b = alpha < 0, beta > 0
    mass_az = _double_mass(tail_a, tail_z, negative_a & (z > 0))
    mass_zb = _double_mass(tail_z, tail_b, (z < 0) & positive_b)
    smaller = torch.minimum(mass_az, mass_zb)
    direct = mass_zb <= mass_az if upper else mass_az <= mass_zb
    out = _from_smaller(torch.log(smaller / _double_mass(tail_a, tail_b, negative_a & positive_b)), direct)
    redo = _may_cancel(mass_az, tail_a, tail_z) | _may_cancel(mass_zb, tail_z, tail_b) | (smaller < 2.0 * MASS_FLOOR)
    (index,) = torch.nonzero(redo, as_tuple=True)
    if len(index):
        a, b, x, log_z = (t.index_select(0, index) for t in (alpha, beta, z, log_mass))
        above_low, below_high = offsets(index)
        below = _log_normal_mass_value(a, x, above_low) - log_z
        above = _log_normal_mass_value(x, b, below_high) - log_z
        out.index_copy_(0, index, _from_smaller(torch.minimum(below, above), above <= below if upper else below <= above))
    return out


class _LogTail(torch.autograd.Function):
    r"""``_log_tail_value`` with its gradients in :math:`\alpha, \beta, z`, formed from logs: for
    :math:`\log F = \log M_{\alpha z} - \log M`, :math:`\partial_z = \phi(z)/M_{\alpha z}`,
    :math:`\partial_\alpha = \phi(\alpha)/M - \phi(\alpha)/M_{\alpha z}`, :math:`\partial_\beta = -\phi(\beta)/M`;
    :math:`\log(1-F)` mirrors it (:math:`\alpha \leftrightarrow \beta`, signs flipped)."""

    @staticmethod
    def forward(ctx, alpha, beta, z, tail_a, tail_b, log_mass, offsets, upper):
        def part(rows: slice) -> torch.Tensor:
            def offsets_in_part(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return offsets(index + rows.start)

            return _log_tail_value(alpha[rows], beta[rows], z[rows], (tail_a[rows], tail_b[rows]),
                                   log_mass[rows], offsets_in_part, upper)

        out = _chunked(part, z.numel(), z)
        ctx.save_for_backward(alpha, beta, z, log_mass, out)
        ctx.upper = upper
        return out

    @staticmethod
    def backward(ctx, grad):
        alpha, beta, z, log_mass, out = ctx.saved_tensors
        near, far = (beta, alpha) if ctx.upper else (alpha, beta)
        sign = -1.0 if ctx.upper else 1.0
        log_part = out + log_mass
        d_z = _chain(grad, sign * _density_over_mass(z, log_part))
        d_near = _chain(grad, sign * (_density_over_mass(near, log_mass) - _density_over_mass(near, log_part)))
        d_far = _chain(grad, -sign * _density_over_mass(far, log_mass))
        d_alpha, d_beta = (d_far, d_near) if ctx.upper else (d_near, d_far)
        return d_alpha, d_beta, d_z, None, None, None, None, None


def _quantile_from_probabilities(
    alpha: torch.Tensor, beta: torch.Tensor, below: torch.Tensor, above: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Solve :math:`F(z) = q` for N(0,1) on :math:`[\alpha, \beta]` in probability space (fast).

    On the side of 0 where :math:`\Phi(lo)` and the smaller of :math:`\Phi(\pm hi)`
    are relatively exact (:func:`mathkit.numerics._to_lower_side`),
    :math:`\Phi(z) = (1-q)\Phi(lo) + q\Phi(hi)` and
    :math:`\Phi(-z) = (1-q)\Phi(-lo) + q\Phi(-hi)` are sums of positive terms, with
    no subtraction even for narrow intervals; the smaller is inverted by ``ndtri``.
    Returns :math:`z` and the ``deep`` entries, whose probabilities approach
    underflow: they get a placeholder (with a finite gradient), to be replaced by
    the log-space solution. Selections are arithmetic, not ``torch.where``, for speed.
    """
    lo, hi = _to_lower_side(alpha, beta)
    mirrored = (alpha + beta > 0).to(lo.dtype)
    # a mirrored interval holds the fraction 1 - q below the mirrored quantile
    frac_below = torch.addcmul((1.0 - mirrored) * below, mirrored, above)
    frac_above = torch.addcmul((1.0 - mirrored) * above, mirrored, below)
    cdf_lo = 0.5 * torch.erfc(lo * -_SQRT_HALF)
    small_hi = 0.5 * torch.erfc((hi * _SQRT_HALF).abs())  # Phi(hi) if hi <= 0, else Phi(-hi)
    positive_hi = (hi > 0).to(lo.dtype)
    gap = 1.0 - 2.0 * small_hi
    cdf_hi = torch.addcmul(small_hi, positive_hi, gap)
    sf_hi = torch.addcmul(small_hi, 1.0 - positive_hi, gap)
    p_below = torch.addcmul(frac_above * cdf_lo, frac_below, cdf_hi)
    p_above = torch.addcmul(frac_above * (1.0 - cdf_lo), frac_below, sf_hi)
    deep = cdf_hi < MASS_FLOOR
    p = torch.minimum(p_below, p_above)
    if bool(deep.any()):
        p = torch.where(deep, 0.25, p)
    # ndtri(p) <= 0 solves for the smaller probability: its sign says which it was
    z = torch.copysign(torch.special.ndtri(p), p_below - p_above)
    return z * (1.0 - 2.0 * mirrored), deep


class _StandardQuantile(torch.autograd.Function):
    r"""The standard quantile :math:`z` with :math:`F(z) = q` on :math:`[\alpha, \beta]` (flat float64),
    with the gradients of the implicit equation :math:`\Phi(z) = (1-q)\Phi(\alpha) + q\Phi(\beta)`:
    :math:`\partial z/\partial\alpha = (1-q)\phi(\alpha)/\phi(z)`, :math:`\partial z/\partial\beta =
    q\phi(\beta)/\phi(z)`, :math:`\partial z/\partial q = Z/\phi(z)`, formed from logs.

    Autograd through the value's case split would be wrong where the split breaks a tie: for an
    interval centred on 0, ``minimum(alpha, -beta)`` hands half of each gradient to the wrong
    bound (an interval around ``loc`` got d/dloc = 1 instead of 0.85, or 1 instead of 0)."""

    @staticmethod
    def forward(ctx, alpha, beta, q, width):
        below, above = q, 1.0 - q  # 1 - q is exact for q >= 1/2, where it matters
        z, deep = _quantile_from_probabilities(alpha, beta, below, above)
        if bool(deep.any()):
            a, b = alpha[deep], beta[deep]
            z = z.index_put((deep,), _quantile_in_log_space(a, b, _log_normal_mass_value(a, b, width[deep]),
                                                              below[deep], above[deep]))
        z = torch.clamp(z, min=alpha, max=beta)
        ctx.save_for_backward(alpha, beta, q, width, z)
        return z

    @staticmethod
    def backward(ctx, grad):
        alpha, beta, q, width, z = ctx.saved_tensors
        log_pdf_z = log_normal_pdf(z)
        d_alpha = _density_over_mass(alpha, log_pdf_z - torch.log1p(-q))
        d_beta = _density_over_mass(beta, log_pdf_z - torch.log(q))
        d_q = torch.exp(_log_normal_mass_value(alpha, beta, width) - log_pdf_z)
        return _chain(grad, d_alpha), _chain(grad, d_beta), _chain(grad, d_q), None


def _standard_draw_value(alpha, beta, u, tails) -> torch.Tensor:
    r"""Solve :math:`\Phi(z) = (1-u)\Phi(\alpha) + u\Phi(\beta)` for N(0,1) draws on :math:`[\alpha, \beta]`
    (flat float64, no autograd; ``tails``: ``_double_tail`` of :math:`\alpha, \beta`).

    With the doubled small tails :math:`t = 2\Phi(-|x|)` at the bounds, a one-sided interval
    gives :math:`2\Phi(\mp z) = (1-u)t_\alpha + u t_\beta` (the sign of the side: below 0,
    :math:`\Phi(z)`; above, :math:`\Phi(-z)`, the same equation); a central one gives both
    :math:`2\Phi(z) = (1-u)t_\alpha + u(2 - t_\beta)` and :math:`2\Phi(-z) = (1-u)(2 - t_\alpha) + u t_\beta`.
    All are sums of positive terms; the smaller probability is inverted by ``ndtri``. Masses
    whose bound probabilities approach underflow are solved in log space, by index.
    """
    tail_a, tail_b = tails
    central = ((alpha < 0) & (beta > 0)).to(u.dtype)  # a float mask: multiplying by a bool one is slow
    v = 1.0 - u
    # 2 Phi(beta) and 2 Phi(-alpha) for central intervals (2 - tail), the tails otherwise
    twice_central = torch.mul(central, 2.0)
    sign = torch.sub(1.0, twice_central)
    far_b = torch.addcmul(twice_central, tail_b, sign)
    far_a = torch.addcmul(twice_central, tail_a, sign)
    below = torch.mul(v, tail_a).addcmul_(u, far_b)
    above = torch.mul(v, far_a).addcmul_(u, tail_b)  # equal to `below` for one-sided intervals
    # ndtri(p <= 1/2) <= 0: positive draws are those of right tails and central draws above the median
    positive = (below > above) | (alpha >= 0)
    z = torch.special.ndtri(torch.minimum(below, above).mul_(0.5))
    z.copysign_(positive.to(z.dtype).sub_(0.5))
    # bound probabilities below MASS_FLOOR (one-sided intervals only): log space
    largest_tail = torch.maximum(tail_a, tail_b).add_(twice_central)
    if len(largest_tail) and largest_tail.min() < 2.0 * MASS_FLOOR:
        (deep,) = torch.nonzero(largest_tail < 2.0 * MASS_FLOOR, as_tuple=True)
        a, b = alpha[deep], beta[deep]
        z[deep] = _quantile_in_log_space(a, b, _log_normal_mass_value(a, b, b - a), u[deep], v[deep])
    return z


def _draws_by_inversion(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Standard draws on :math:`[\\alpha, \\beta]` by ``_standard_draw_value`` (flat float64, no autograd)."""
    return _standard_draw_value(alpha, beta, _uniform_open(alpha.shape, alpha.device),
                                (_double_tail(alpha), _double_tail(beta)))


#: ``sample`` draws intervals whose near end is at least this many standard deviations from
#: the mean by rejection (Robert 1995; measured acceptance 0.88 from 1, 0.96 from 3, 0.993
#: from 8). Nearer intervals cost about the same either way, and keeping them whole avoids
#: splitting a slice in two (typical laws: 43 ms per 10^6 at 2 threads with 8, 52-54 with 3).
_REJECTION_FROM = 8.0


def _right_tail_by_rejection(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    r"""Draws of N(0,1) truncated to :math:`[lo, hi]`, :math:`0 < lo < hi \le \infty` (flat float64),
    by Robert's (1995) exponential rejection sampler.

    Proposals are :math:`lo + \mathrm{Exp}(\lambda)` truncated to the interval (by inversion,
    :math:`z = lo - \log(1 - u(1 - e^{-\lambda(hi - lo)}))/\lambda`), with the rate
    :math:`\lambda = (lo + \sqrt{lo^2 + 4})/2` that maximises the acceptance of one-sided tails.
    With :math:`g(z) = \lambda z - z^2/2`, the density ratio is largest at
    :math:`m = \min(\lambda, hi)`, so a proposal is accepted with probability
    :math:`e^{g(z) - g(m)}` (:math:`e^{-(z-\lambda)^2/2}` when the interval contains
    :math:`\lambda`). No special function is evaluated, so the far tails cost what the near
    ones do, and the draws are exact; rejected entries are redrawn by index. No gradient:
    ``rsample`` with gradients inverts the cdf instead.
    """
    rate = torch.mul(lo, lo).add_(4.0).sqrt_().add_(lo).mul_(0.5)
    inside = torch.sub(lo, hi).mul_(rate).expm1_().neg_()  # 1 - e^{-rate (hi - lo)}: 1 for hi = inf
    peak = torch.minimum(rate, hi)
    params = (lo, rate, inside, peak, rate - peak)  # the last: 0 unless the interval ends before the rate
    out, accept = _exponential_proposals(*params)
    (pending,) = torch.nonzero(~accept, as_tuple=True)
    while len(pending):
        z, accept = _exponential_proposals(*(t.index_select(0, pending) for t in params))
        out.index_copy_(0, pending[accept], z[accept])
        pending = pending[~accept]
    return torch.minimum(out, hi, out=out)  # against the last rounding (z >= lo holds exactly)


def _exponential_proposals(lo, rate, inside, peak, excess) -> tuple[torch.Tensor, torch.Tensor]:
    """One round of ``_right_tail_by_rejection``: proposals and whether each is accepted."""
    u = torch.rand((2, len(lo)), dtype=lo.dtype, device=lo.device)
    z = torch.mul(u[0], inside).neg_().log1p_().div_(rate).neg_().add_(lo)
    # accept if log u <= g(z) - g(peak) = d (excess - d/2), d = z - peak
    d = z - peak
    return z, torch.log(u[1]) <= torch.mul(d, -0.5).add_(excess).mul_(d)


class _StandardDraw(torch.autograd.Function):
    r"""``_standard_draw_value`` with the implicit reparameterisation gradient: differentiating
    :math:`\Phi(z) = (1-u)\Phi(\alpha) + u\Phi(\beta)` at fixed :math:`u`,
    :math:`\partial z/\partial\alpha = (1-u)\,\phi(\alpha)/\phi(z)` and
    :math:`\partial z/\partial\beta = u\,\phi(\beta)/\phi(z)`, formed from logs (finite far out,
    0 at an infinite bound)."""

    @staticmethod
    def forward(ctx, alpha, beta, u, tail_a, tail_b):
        def part(rows: slice) -> torch.Tensor:
            return _standard_draw_value(alpha[rows], beta[rows], u[rows], (tail_a[rows], tail_b[rows]))

        z = _chunked(part, u.numel(), u)
        ctx.save_for_backward(alpha, beta, u, z)
        return z

    @staticmethod
    def backward(ctx, grad):
        alpha, beta, u, z = ctx.saved_tensors
        log_pdf_z = log_normal_pdf(z)
        d_alpha = _density_over_mass(alpha, log_pdf_z - torch.log1p(-u))
        d_beta = _density_over_mass(beta, log_pdf_z - torch.log(u))
        return _chain(grad, d_alpha), _chain(grad, d_beta), None, None, None


def _quantile_in_log_space(
    alpha: torch.Tensor, beta: torch.Tensor, log_mass: torch.Tensor, below: torch.Tensor, above: torch.Tensor
) -> torch.Tensor:
    r"""Solve :math:`F(z) = q` in log space, for masses too small for probabilities.

    :math:`\log\Phi(z) = \mathrm{logaddexp}(\log\Phi(\alpha), \log q + \log Z)`, or reflected,
    :math:`\log\Phi(-z) = \mathrm{logaddexp}(\log\Phi(-\beta), \log(1-q) + \log Z)`, whichever
    is below :math:`\log\frac12`, inverted by :func:`mathkit.numerics.ndtri_exp`.
    """
    lower = torch.logaddexp(_log_ndtr(alpha), torch.log(below) + log_mass)
    upper = torch.logaddexp(_log_ndtr(-beta), torch.log(above) + log_mass)
    right = (alpha > 0) | (lower > -math.log(2.0))
    z = _ndtri_exp(torch.where(right, upper, lower).clamp(max=0.0))
    return torch.where(right, -z, z)


def _central_moments(alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Moments of N(0,1) on :math:`[\alpha, \beta] \ni 0` from the ratios :math:`r = \phi/Z`.

    .. math::
        E = r_\alpha - r_\beta,\quad V = 1 + \alpha r_\alpha - \beta r_\beta - E^2,\quad
        H = \tfrac12\log(2\pi e) + \log Z + \tfrac12(\alpha r_\alpha - \beta r_\beta).

    Around 0 the ratios are moderate, so these do not cancel badly.
    """
    log_mass = _log_normal_mass(alpha, beta)
    r_alpha, r_beta = _density_over_mass(alpha, log_mass), _density_over_mass(beta, log_mass)
    spread = _finite_or_zero(alpha) * r_alpha - _finite_or_zero(beta) * r_beta
    mean = r_alpha - r_beta
    return mean, 1.0 + spread - mean**2, _HALF_LOG_2PI_E + log_mass + 0.5 * spread


def _narrow_moments(alpha: torch.Tensor, width: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Mean, variance and entropy of N(0,1) on a short :math:`[\alpha, \alpha + w]`, by quadrature.

    With the midpoint :math:`c` and :math:`z = c + t`, the density is proportional to
    :math:`f(t) = e^{-ct - t^2/2}`, integrated to rounding by 32-point Gauss-Legendre
    on short intervals (:func:`mathkit.numerics._is_short`). The variance is taken
    about the computed mean (two passes), and the entropy is
    :math:`\log\int f + c\,E[t] + E[t^2]/2`.
    """
    centre, t, weights = _gauss_legendre_on(alpha, width)
    f = weights * torch.exp(-centre.unsqueeze(-1) * t - 0.5 * t * t)
    total = f.sum(-1)
    offset = (f * t).sum(-1) / total
    variance = (f * (t - offset.unsqueeze(-1)) ** 2).sum(-1) / total
    second = (f * t * t).sum(-1) / total
    entropy = torch.log(total) + centre * offset + 0.5 * second
    return centre + offset, variance, entropy


def _right_tail_moments(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Mean, variance and entropy of N(0,1) on :math:`[a, b]`, :math:`0 \le a < b \le \infty`, without cancellation.

    With :math:`\delta(x) = E[Z-x \mid Z>x]`, :math:`s(x) = E[(Z-x)^2 \mid Z>x]`,
    :math:`\varepsilon = Q(b)/Q(a)` (:math:`Q = 1-\Phi`) and :math:`w = b - a`, the law on
    :math:`[a, b]` is the tail law at :math:`a` minus :math:`\varepsilon` times the tail law at :math:`b`:

    .. math::
        E[Z-a] = \frac{\delta_a - \varepsilon(\delta_b + w)}{1-\varepsilon},\quad
        E[(Z-a)^2] = \frac{s_a - \varepsilon(s_b + 2w\delta_b + w^2)}{1-\varepsilon},

    and the entropy :math:`\tfrac12 - \log\lambda_a + \log(1-\varepsilon)
    + \tfrac12\,(a\delta_a - \varepsilon(w(a+b) + b\delta_b))/(1-\varepsilon)`, with
    :math:`\lambda_a = \phi(a)/Q(a)`. Far out (:math:`a = 38`) the textbook formula
    subtracts numbers near :math:`a^2` to get a variance near :math:`1/a^2`, losing
    ~7 digits; here :math:`\delta` and :math:`s` come from the continued fraction of
    the Mills ratio and the variance keeps full precision.
    """
    lam_a, delta_a, s_a = _upper_tail_offsets(a)
    finite_b = torch.isfinite(b)
    b_safe = torch.where(finite_b, b, a + 1.0)
    _, delta_b, s_b = _upper_tail_offsets(b_safe)
    width = torch.where(finite_b, b - a, 0.0)
    eps = torch.exp(_log_ndtr(-b) - _log_ndtr(-a))  # 0 for b = inf
    one_minus = -torch.expm1(_log_ndtr(-b) - _log_ndtr(-a))
    first = (delta_a - eps * (delta_b + width)) / one_minus
    second = (s_a - eps * (s_b + 2.0 * width * delta_b + width**2)) / one_minus
    spread = (a * delta_a - eps * (width * (a + b_safe) + b_safe * delta_b)) / one_minus
    entropy = 0.5 - torch.log(lam_a) + torch.log(one_minus) + 0.5 * spread
    return a + first, second - first**2, entropy


_MILLS_CF_FROM = 3.0
_MILLS_CF_TERMS = 64


def _upper_tail_offsets(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r""":math:`\lambda(x) = \phi(x)/Q(x)`, :math:`\delta(x) = \lambda - x`, :math:`s(x) = 1 - x\delta` for :math:`x \ge 0`.

    For :math:`x \ge 3` the differences come straight from Laplace's continued
    fraction :math:`\lambda = x + 1/K_1`, :math:`K_n = x + (n+1)/K_{n+1}`:
    :math:`\delta = 1/K_1`, :math:`s = 2/(K_1 K_2)` (64 terms reach float64
    precision from :math:`x = 3`); below, the direct differences lose at most
    a factor :math:`x^2 \le 9`.
    """
    lam = _inverse_mills(-x, _log_ndtr(-x))
    big = x >= _MILLS_CF_FROM
    x_cf = torch.where(big, x, _MILLS_CF_FROM)
    k_next, k = x_cf, x_cf
    for n in range(_MILLS_CF_TERMS, 0, -1):
        k_next, k = k, x_cf + (n + 1) / k
    delta = torch.where(big, 1.0 / k, lam - x)
    s = torch.where(big, 2.0 / (k * k_next), 1.0 - x * (lam - x))
    return lam, delta, s


class CensoredNormal(_BoundedLaw):
    r"""The Tobit law: :math:`Y = \mathrm{clamp}(X, \ell, h)` with :math:`X \sim N(\mu, \sigma^2)` (Tobin, 1958).

    A mixture of point masses at the finite bounds and a density inside:

    .. math::
        \log p(y) = \begin{cases}
            \log\Phi(\alpha) & y = \ell \\
            \log\phi\big((y-\mu)/\sigma\big) - \log\sigma & \ell < y < h \\
            \log\Phi(-\beta) & y = h
        \end{cases}

    with :math:`\alpha = (\ell-\mu)/\sigma`, :math:`\beta = (h-\mu)/\sigma`. This
    ``log_prob`` is the censored-regression likelihood of Tobin (1958): a sale
    recorded at a stock level ``h`` counts as "demand at least ``h``". The cdf is
    :math:`\Phi((y-\mu)/\sigma)` below ``h`` and 1 from ``h`` on. ``rsample`` clamps a
    reparameterised normal draw.

    Args:
        loc, scale: of the latent normal :math:`X`, ``scale > 0``.
        low, high: censoring points :math:`\ell < h` (``-inf``/``inf`` for none).
    """

    arg_constraints = TruncatedNormal.arg_constraints

    def __init__(self, loc, scale, low=-math.inf, high=math.inf, validate_args: bool | None = None) -> None:
        self.loc, self.scale, self.low, self.high = _float_params(("loc", "scale", "low", "high"), loc, scale, low, high)
        self._init_batch(validate_args)

    def _z(self, value: torch.Tensor) -> torch.Tensor:
        return (_f64(value) - _f64(self.loc)) / _f64(self.scale)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        z = self._z(value)
        density = log_normal_pdf(z) - torch.log(_f64(self.scale))
        at_low = (value == self.low) & torch.isfinite(self.low)
        at_high = (value == self.high) & torch.isfinite(self.high)
        # z at the bounds is alpha or beta; the masses Phi(alpha), Phi(-beta) come from it
        log_p = torch.where(at_low, _log_ndtr(z), torch.where(at_high, _log_ndtr(-z), density))
        return self._out(_outside_support(log_p, value, self.low, self.high))

    def _log_tail(self, value: torch.Tensor, upper: bool) -> torch.Tensor:
        r""":math:`\log P(Y \le y) = \log\Phi((y-\mu)/\sigma)` for :math:`\ell \le y < h` (``-inf`` below
        :math:`\ell`, 0 from :math:`h` on), or :math:`\log P(Y > y) = \log\Phi(-(y-\mu)/\sigma)` there
        (0 below :math:`\ell`, ``-inf`` from :math:`h` on)."""
        z = self._z(value)
        below, above = (-math.inf, 0.0) if not upper else (0.0, -math.inf)
        inside = _log_ndtr(-z if upper else z)
        return torch.where(value < self.low, below, torch.where(value >= self.high, above, inside))

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        """The smallest ``y`` with :math:`P(Y \\le y) \\ge q`: the normal quantile clamped to the bounds."""
        self._check_probability(value)
        x = _f64(self.loc) + _f64(self.scale) * torch.special.ndtri(_f64(value))
        return self._out(torch.clamp(x, min=_f64(self.low), max=_f64(self.high)))

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return torch.clamp(self.loc + self.scale * eps, min=self.low, max=self.high)

    @lazy_property
    def _standard_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`E[C]` and :math:`\log\mathrm{Var}[C]` for :math:`C = \mathrm{clamp}(Z, \alpha, \beta)`, :math:`Z \sim N(0,1)`.

        :math:`C` mixes the atom :math:`\alpha` (mass :math:`p_\ell = \Phi(\alpha)`), the normal law
        truncated to :math:`[\alpha, \beta]` (mass :math:`p_m`, mean :math:`m`, variance :math:`v`,
        from :func:`_truncated_standard_moments`) and the atom :math:`\beta` (:math:`p_h = \Phi(-\beta)`).
        By the law of total variance, with the spread of the component means written pairwise,

        .. math::
            \mathrm{Var}[C] = p_m v + p_\ell p_m (m - \alpha)^2 + p_m p_h (\beta - m)^2
            + p_\ell p_h (\beta - \alpha)^2,

        a sum of positive terms, taken in log space: :math:`E[C^2] - E[C]^2` cancels to 0 when one
        atom holds nearly all the mass, and its square root then has a NaN gradient.
        """
        alpha, beta = (_standardize(b, self.loc, self.scale) for b in (self.low, self.high))
        width = _standard_width(self.low, self.high, self.scale)
        finite_a, finite_b = torch.isfinite(alpha), torch.isfinite(beta)
        a, b = _finite_or_zero(alpha), _finite_or_zero(beta)
        log_low, log_high = _log_ndtr(alpha), _log_ndtr(-beta)
        log_inner = _log_normal_mass(alpha, beta, width)
        inner_mean, inner_var, _ = _truncated_standard_moments(alpha, beta, width)
        mean = torch.exp(log_low) * a + torch.exp(log_inner) * inner_mean + torch.exp(log_high) * b
        # gaps between the component means; infinite ones belong to atoms of mass 0 (terms masked below)
        gap_low = torch.where(finite_a, inner_mean - a, 1.0)
        gap_high = torch.where(finite_b, b - inner_mean, 1.0)
        gap_both = torch.where(finite_a & finite_b, width, 1.0)
        terms = torch.stack([
            log_inner + torch.log(inner_var),
            torch.where(finite_a, log_low + log_inner + 2.0 * torch.log(gap_low), -math.inf),
            torch.where(finite_b, log_inner + log_high + 2.0 * torch.log(gap_high), -math.inf),
            torch.where(finite_a & finite_b, log_low + log_high + 2.0 * torch.log(gap_both), -math.inf),
        ])
        return mean, torch.logsumexp(terms, dim=0)

    @property
    def mean(self) -> torch.Tensor:
        return self._out(_f64(self.loc) + _f64(self.scale) * self._standard_moments[0])

    @property
    def variance(self) -> torch.Tensor:
        return self._out(torch.exp(self._log_variance))

    @property
    def stddev(self) -> torch.Tensor:
        return self._out(torch.exp(0.5 * self._log_variance))

    @property
    def _log_variance(self) -> torch.Tensor:
        return 2.0 * torch.log(_f64(self.scale)) + self._standard_moments[1]


class GeneralizedBeta(_BoundedLaw):
    r"""The four-parameter Beta law: :math:`Y = \ell + (h-\ell) B`, :math:`B \sim \mathrm{Beta}(a, b)`.

    .. math::
        p(y) = \frac{(y-\ell)^{a-1}(h-y)^{b-1}}{B(a, b)\,(h-\ell)^{a+b-1}}, \qquad
        F(y) = I_{(y-\ell)/(h-\ell)}(a, b),

    with :math:`I_x(a, b)` the regularised incomplete beta function, evaluated in
    log space by its continued fraction (modified Lentz), on whichever of
    :math:`I_x(a, b)` and :math:`1 - I_x(a,b) = I_{1-x}(b, a)` converges fast
    (:math:`x < (a+1)/(a+b+2)`); the other follows through ``log1mexp``. Moments:
    :math:`E[Y] = \ell + (h-\ell)\,a/(a+b)` and
    :math:`\mathrm{Var}[Y] = (h-\ell)^2 ab/((a+b)^2(a+b+1))`. ``rsample`` scales
    torch's reparameterised Beta draw (gradients reach all four parameters).

    Args:
        concentration1, concentration0: :math:`a, b > 0` (torch's ``Beta`` names).
        low, high: finite bounds :math:`\ell < h`.
    """

    arg_constraints = {
        "concentration1": _finite_positive,
        "concentration0": _finite_positive,
        "low": constraints.dependent(is_discrete=False, event_dim=0),
        "high": constraints.dependent(is_discrete=False, event_dim=0),
    }
    _MAX_TERMS = 2000

    def __init__(self, concentration1, concentration0, low=0.0, high=1.0, validate_args: bool | None = None) -> None:
        self.concentration1, self.concentration0, self.low, self.high = _float_params(
            ("concentration1", "concentration0", "low", "high"), concentration1, concentration0, low, high
        )
        self._init_batch(validate_args)
        if self._validate_args and not bool((torch.isfinite(self.low) & torch.isfinite(self.high)).all()):
            raise ValueError(
                f"Expected parameters low and high of distribution {type(self).__name__} to be finite, "
                f"but found low={self.low}, high={self.high}"
            )

    @lazy_property
    def _unit(self) -> Beta:
        return Beta(self.concentration1, self.concentration0, validate_args=False)

    @property
    def _width(self) -> torch.Tensor:
        return self.high - self.low

    def _to_unit(self, value: torch.Tensor) -> torch.Tensor:
        return (value - self.low) / self._width

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        unit = self._to_unit(value)
        log_p = self._unit.log_prob(unit.clamp(0.0, 1.0)) - torch.log(self._width)
        return _outside_support(log_p, unit, 0.0, 1.0)  # (clamp keeps NaN, so NaN stays NaN)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.low + self._width * self._unit.rsample(sample_shape)

    @property
    def mean(self) -> torch.Tensor:
        return self.low + self._width * self._unit.mean

    @property
    def mode(self) -> torch.Tensor:
        return self.low + self._width * self._unit.mode

    @property
    def variance(self) -> torch.Tensor:
        return self._width**2 * self._unit.variance

    def entropy(self) -> torch.Tensor:
        return self._unit.entropy() + torch.log(self._width)

    def _log_tail(self, value: torch.Tensor, upper: bool) -> torch.Tensor:
        a, b = _f64(self.concentration1), _f64(self.concentration0)
        x = _f64(self._to_unit(value))
        inside = (x > 0) & (x < 1)
        x_in = torch.where(inside, x, 0.5)
        # evaluate the fraction where it converges fast: I_x(a, b) or I_{1-x}(b, a)
        flip = x_in > (a + 1) / (a + b + 2)
        direct = _log_betainc_cf(
            torch.where(flip, 1 - x_in, x_in), torch.where(flip, b, a), torch.where(flip, a, b), self._MAX_TERMS
        )
        other = _log1mexp(direct.clamp(max=0.0))
        inner = torch.where(flip, direct, other) if upper else torch.where(flip, other, direct)
        below, above = (0.0, -math.inf) if upper else (-math.inf, 0.0)
        out = torch.where(x <= 0, below, torch.where(x >= 1, above, inner))
        return torch.where(torch.isnan(x), x, out)


# a whole step of the continued fraction within this of 1 (a few ulp) counts as converged,
# tested every _CF_CHECK_EVERY terms
_CF_TOLERANCE = 1e-15
_CF_CHECK_EVERY = 4


def _log_betainc_cf(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, max_terms: int) -> torch.Tensor:
    r""":math:`\log I_x(a, b)` for :math:`0 < x < 1` by the continued fraction (fast for :math:`x < (a+1)/(a+b+2)`).

    .. math::
        I_x(a,b) = \frac{x^a (1-x)^b}{a\,B(a,b)}\cdot
        \cfrac{1}{1+\cfrac{d_1}{1+\cfrac{d_2}{1+\cdots}}},\quad
        d_{2m+1} = -\frac{(a+m)(a+b+m)x}{(a+2m)(a+2m+1)},\;
        d_{2m} = \frac{m(b-m)x}{(a+2m-1)(a+2m)},

    evaluated by the modified Lentz method (Press et al., *Numerical Recipes*, §6.4) on the
    flattened input. Every few terms, the entries whose last step moved the fraction by less
    than a few ulp are final and leave the computation, so a batch costs what its entries need
    (on that side of the switch, :math:`O(\sqrt{\max(a, b)})` terms), not what its slowest one
    needs times its size. (A stopping test below one ulp is never met by a step that rounds to
    the float next to 1: a quarter of batches used to run all ``max_terms`` terms.)
    Differentiable in all three arguments (autograd through the terms).
    """
    tiny = 1e-300
    shape = x.shape
    x, a, b = (t.reshape(-1) for t in torch.broadcast_tensors(x, a, b))
    log_front = a * torch.log(x) + b * torch.log1p(-x) - torch.log(a) - (torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b))
    if not x.numel():
        return log_front.reshape(shape)
    index = torch.arange(x.numel(), device=x.device)
    done_index, done_value = [], []
    c = torch.ones_like(x)
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / torch.where(d.abs() < tiny, tiny, d)
    fraction = d
    for m in range(1, max_terms + 1):
        step = 1.0
        for coefficient in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + coefficient * d
            d = 1.0 / torch.where(d.abs() < tiny, tiny, d)
            c = 1.0 + coefficient / c
            c = torch.where(c.abs() < tiny, tiny, c)
            step = step * (c * d)
        fraction = fraction * step
        if m % _CF_CHECK_EVERY and m < max_terms:
            continue
        converged = (step.detach() - 1.0).abs() < _CF_TOLERANCE
        if m == max_terms:
            converged = torch.ones_like(converged)
        if bool(converged.any()):
            done_index.append(index[converged])
            done_value.append(fraction[converged])
            keep = ~converged
            index, x, a, b, c, d, fraction = (t[keep] for t in (index, x, a, b, c, d, fraction))
            if not len(index):
                break
    # back to the input's order: entry i finished at position order[i] of the concatenation
    finished = torch.cat(done_index)
    order = torch.empty_like(finished)
    order[finished] = torch.arange(len(finished), device=finished.device)
    return (log_front + torch.log(torch.cat(done_value)[order])).reshape(shape)
