r"""Float64 kernels for the standard normal law, in z-space, without argument checks.

The careful numerics behind :mod:`mathkit.numerics` (which adds the argument checks and
dtype handling of its public functions) and :mod:`mathkit.distributions` (which
standardises the laws' bounds and values, then calls these). Every function takes float64
tensors of one shape (or broadcastable, where stated) and keeps the far tails relatively
exact; those with gradients have them finite wherever the mathematical one is.

- tails and masses: ``double_tail`` (:math:`2\Phi(-|x|)`), ``double_cdf`` (:math:`2\Phi(x)`), ``double_mass``, ``to_lower_side``,
  ``log_normal_mass`` (autograd) and ``log_normal_mass_value`` (values only), ``MASS_FLOOR``;
- the bulk (masses of at least ``BULK``): ``half_erf`` (:math:`\mathrm{erf}(x/\sqrt2)`), ``split_bulk``,
  ``log_normal_mass_bulk`` (values) and ``log_normal_mass_in_bulk`` (autograd);
- log-space: ``log_ndtr``, ``inverse_mills``, ``log1mexp``, ``log_diff_exp``, ``ndtri_exp``,
  ``log_normal_pdf``, ``density_over_mass`` (:math:`\phi(x)/M` from :math:`\log M`);
- short intervals: ``is_short`` and ``gauss_legendre_on`` (a 32-point rule about the midpoint).

Public within mathkit (no leading underscores), private to it (the module's name).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from mathkit._elementwise import ALL, chain, chunked, within

_LOG_2 = math.log(2.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)
SQRT_HALF = math.sqrt(0.5)
# Below this, exp(y) is subnormal in float64 and ndtri(exp(y)) loses digits:
# ndtri_exp switches to an asymptotic start refined by Newton steps in log space.
_NDTRI_EXP_ASYMPTOTIC_BELOW = -700.0
_NEWTON_STEPS = 4
# Normal masses below MASS_FLOOR are computed in log space: there the probabilities
# themselves approach the float64 underflow threshold (2.2e-308).
MASS_FLOOR = 1e-290
# erfc beyond this argument is below 2.2e-307, close to the float64 normal range (see double_tail)
_ERFC_ARG_MAX = 26.5


def log_normal_pdf(x: torch.Tensor | float) -> torch.Tensor:
    r""":math:`\log\phi(x) = -x^2/2 - \tfrac12\log 2\pi`, elementwise (no domain restriction).

    Floating tensors keep their dtype; numbers and integer tensors give float64."""
    if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
        x = torch.as_tensor(x, dtype=torch.float64)
    return -0.5 * x * x - HALF_LOG_2PI


def inverse_mills(x: torch.Tensor, log_cdf: torch.Tensor) -> torch.Tensor:
    r""":math:`\phi(x)/\Phi(x)` for float64 ``x`` given ``log_cdf`` :math:`=\log\Phi(x)`.

    For :math:`x < 0` it is :math:`1/(\sqrt{\pi/2}\,\mathrm{erfcx}(-x/\sqrt2))`: the scaled
    complementary error function keeps it finite and relatively exact down to
    :math:`x \approx -10^{300}`, where it behaves like :math:`-x`. For :math:`x \ge 0`,
    :math:`\Phi \ge 1/2` and the quotient of logs is exact.
    """
    lower = 1.0 / (_SQRT_HALF_PI * torch.special.erfcx(-x.clamp(max=0.0) * SQRT_HALF))
    upper = torch.exp(log_normal_pdf(x.clamp(min=0.0)) - log_cdf.clamp(min=-_LOG_2))
    return torch.where(x < 0, lower, upper)


class _LogNdtr(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = torch.special.log_ndtr(x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, out = ctx.saved_tensors
        return chain(grad, inverse_mills(x, out))


def log_ndtr(x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log\Phi(x)` with the gradient :math:`\phi/\Phi` from ``inverse_mills`` (see :func:`mathkit.numerics.log_ndtr`)."""
    return _LogNdtr.apply(x)


class _Log1mexp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.where(x > -_LOG_2, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # d/dx log(1 - e^x) = -1/expm1(-x), -inf at x = 0
        return chain(grad, -1.0 / torch.expm1(-x))


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log(1 - e^{x})`, :math:`x \le 0` (see :func:`mathkit.numerics.log1mexp`)."""
    return _Log1mexp.apply(x)


def log_diff_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`\log(e^{a} - e^{b})` for :math:`a \ge b` (see :func:`mathkit.numerics.log_diff_exp`)."""
    a_finite = torch.isfinite(a)
    # a = -inf forces b = -inf and the result -inf; a = +inf makes the result +inf.
    # Give the unused branch a harmless input so neither the value nor the gradient is NaN.
    a_safe = torch.where(a_finite, a, 0.0)
    b_safe = torch.where(a_finite, b, -1.0)
    return torch.where(a_finite, a_safe + log1mexp(b_safe - a_safe), a)


def _ndtri_exp_start(y: torch.Tensor) -> torch.Tensor:
    r"""A starting point for the Newton solve of :math:`\log\Phi(x) = y` when :math:`y \ll 0`.

    From :math:`\log\Phi(x) \approx -x^2/2 - \log(-x) - \tfrac12\log 2\pi`:
    with :math:`t = -2y - \log 2\pi`, :math:`x \approx -\sqrt{t - \log t}`.
    """
    t = -2.0 * y - 2.0 * HALF_LOG_2PI
    return -torch.sqrt(t - torch.log(t))


def _ndtri_exp_value(y: torch.Tensor) -> torch.Tensor:
    """``ndtri_exp``'s value, no autograd."""
    # exp(y) and -expm1(y) are both exact in relative terms on their side of -log 2,
    # and torch's ndtri (the Cephes algorithm) is accurate down to the smallest normal p.
    x = torch.where(
        y > -_LOG_2,
        -torch.special.ndtri(-torch.expm1(y.clamp(min=-_LOG_2))),
        torch.special.ndtri(torch.exp(y.clamp(max=-_LOG_2))),
    )
    deep = y < _NDTRI_EXP_ASYMPTOTIC_BELOW
    if bool(deep.any()):
        y_deep = y[deep]
        z = _ndtri_exp_start(y_deep)
        for _ in range(_NEWTON_STEPS):
            # Newton on the concave log Phi: its slope is the inverse Mills ratio.
            log_cdf = torch.special.log_ndtr(z)
            z = z - (log_cdf - y_deep) / inverse_mills(z, log_cdf)
        x[deep] = torch.where(torch.isneginf(y_deep), y_deep, z)
    return x


class _NdtriExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        x = _ndtri_exp_value(y)
        ctx.save_for_backward(x, y)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # dx/dy = Phi(x)/phi(x), the reciprocal of d log Phi / dx.
        x, y = ctx.saved_tensors
        return chain(grad, 1.0 / inverse_mills(x, y))


def ndtri_exp(y: torch.Tensor) -> torch.Tensor:
    r""":math:`\Phi^{-1}(e^{y})`, :math:`y \le 0` (see :func:`mathkit.numerics.ndtri_exp`)."""
    return _NdtriExp.apply(y)


def to_lower_side(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``[a, b]`` or its mirror ``[-b, -a]``, whichever has ``lo + hi <= 0`` (so ``lo <= 0``).

    On that side :math:`\Phi(lo)`, and :math:`\Phi(hi)` or :math:`\Phi(-hi)`, whichever
    is smaller, are lower tails, relatively exact. ``lo = min(a, -b)`` and
    ``hi = min(b, -a)`` pick the side without branching: ``torch.where`` on a
    random mask costs ~10 ns per element on a CPU, 10x a multiplication. The
    interval was mirrored iff ``a + b > 0``.
    """
    return torch.minimum(a, -b), torch.minimum(b, -a)


def double_tail(x: torch.Tensor) -> torch.Tensor:
    r""":math:`2\Phi(-|x|) = \mathrm{erfc}(|x|/\sqrt2)`, the smaller tail at ``x`` (doubled), relatively exact
    down to :math:`\mathrm{erfc}(26.5) = 2.2 \times 10^{-307}` (:math:`|x| = 37.5`), and that value beyond.

    Not ``torch.special.ndtr``, which forms :math:`(1 + \mathrm{erf})/2` and cancels for
    :math:`x < 0` (4e-11 relative error at -5, 0 at -10). Tails are only ever combined into
    masses, and masses below ``MASS_FLOOR`` are recomputed in log space, so an error under
    2.2e-307 is below one rounding of any mass that uses them (equal tails, as at two infinite
    arguments, still cancel exactly); in exchange torch's erfc keeps its fast path (arguments
    past 26.5 cost it 2-3x) and no subnormal number reaches the arithmetic downstream.
    No autograd (in-place steps).
    """
    return torch.mul(x, SQRT_HALF).abs_().clamp_(max=_ERFC_ARG_MAX).erfc_()


def double_cdf(x: torch.Tensor) -> torch.Tensor:
    r""":math:`2\Phi(x) = \mathrm{erfc}(-x/\sqrt2)`, relatively exact for :math:`x \le 0` down to
    float64's smallest numbers (then 0, exactly 0 at :math:`-\infty`); for :math:`x > 0` exact only in
    absolute terms. Unlike ``double_tail``, not clamped: callers sample or invert it and redo by index
    what falls below ``MASS_FLOOR``. No autograd (in-place steps)."""
    return torch.mul(x, -SQRT_HALF).erfc_()


#: Intervals whose doubled mass :math:`\mathrm{erf}(b/\sqrt2) - \mathrm{erf}(a/\sqrt2)` is at least
#: this are "in the bulk": torch's erf is within an ulp, so the difference is within ~3.3e-16
#: absolutely, 2.2e-14 relatively. Below it, the tails and log space of ``log_normal_mass_value``.
BULK = 1.0 / 64.0


def half_erf(x: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{erf}(x/\sqrt2) = 2\Phi(x) - 1`, exact in absolute terms (not in the tails' relative
    ones): torch vectorises erf (~1.2 ns per float64 on a CPU core, against ~12 ns for ``ndtri``, and
    erfc's clamped path costs more). No autograd (in place)."""
    return torch.mul(x, SQRT_HALF).erf_()


class BulkSplit(NamedTuple):
    """Where the doubled masses of a batch are below ``BULK``, as the flat indices of the smaller side:
    ``index`` lists the entries outside the bulk if ``outside``, else those inside it (None: all are in)."""

    index: torch.Tensor | None
    outside: bool


def split_bulk(mass2: torch.Tensor) -> BulkSplit:
    """``BulkSplit`` of the doubled masses ``mass2`` (flat; NaN ones count as inside, their results stay NaN).

    One reduction when, as usual, every mass is in the bulk; else a count and one ``nonzero`` of the
    smaller side (``nonzero`` on an irregular mask costs up to ~6 ns per element on a CPU, so the
    side that is not enumerated is never enumerated). When most entries are outside, redoing every
    entry carefully and replacing the few in the bulk costs less than gathering the others."""
    if not len(mass2) or bool(mass2.min() >= BULK):
        return BulkSplit(None, True)
    below = mass2 < BULK
    n_below = int(torch.count_nonzero(below))
    if 2 * n_below <= len(mass2):
        return BulkSplit(torch.nonzero(below, as_tuple=True)[0] if n_below else None, True)
    return BulkSplit(torch.nonzero(below.logical_not_(), as_tuple=True)[0], False)


def log_normal_mass_bulk(a: torch.Tensor, b: torch.Tensor, width_at) -> torch.Tensor:
    r""":math:`\log(\Phi(b) - \Phi(a))` as ``log_normal_mass_value`` (flat float64, no autograd), faster: in
    the bulk (``BULK``) from one difference of ``half_erf``'s (relative error below 2.3e-14), elsewhere
    by ``log_normal_mass_value``; ``width_at(index)`` gives :math:`b - a` at flat indices or a slice.
    Each entry's value depends on that entry alone, never on the rest of the batch."""
    mass2 = half_erf(b).sub_(half_erf(a))
    index, outside = split_bulk(mass2)
    if outside:
        out = torch.log(mass2).sub_(_LOG_2)
        if index is None:
            return out
        return out.index_copy_(0, index, log_normal_mass_value(a.index_select(0, index), b.index_select(0, index), width_at(index)))
    # mostly outside the bulk: the careful values everywhere (no large gathers; no logs of the
    # zero masses that the far tails round to, each ~10x a normal log), the bulk ones replaced
    out = log_normal_mass_value(a, b, width_at(ALL))
    return out.index_copy_(0, index, mass2.index_select(0, index).log_().sub_(_LOG_2))


def double_mass(tail_a: torch.Tensor, tail_b: torch.Tensor, central: torch.Tensor) -> torch.Tensor:
    r"""Twice the normal mass of :math:`[a, b]` from the doubled small tails at ``a`` and ``b``.

    ``central`` is :math:`a < 0 < b`. A one-sided interval's mass is the difference of
    its two tails on the same side of 0 (positive terms); a central one is :math:`2` minus
    both tails, written as the difference of the tails plus :math:`2 - 2 t_{near}` (``t_near``
    the larger tail), whose terms are exact for intervals near 0. Blended with the 0/1
    mask instead of ``torch.where`` (a branch per element is slow on CPUs) and in place.
    No autograd; exact to ~1e-16 relative to the larger tail.
    """
    # a float mask: multiplying by a bool tensor is ~10x slower on CPUs
    near = torch.maximum(tail_a, tail_b).mul_(-2.0).add_(2.0).mul_(central.to(tail_a.dtype))
    return torch.sub(tail_a, tail_b).abs_().add_(near)


def log_normal_mass_value(
    a: torch.Tensor, b: torch.Tensor, width: torch.Tensor, tails: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    r""":math:`\log(\Phi(b) - \Phi(a))` on float64 ``a <= b`` of one shape, no autograd; ``width`` is ``b - a``,
    possibly known more precisely than the difference of the rounded bounds (used for short intervals);
    ``tails``: ``double_tail`` of ``a`` and ``b`` if the caller has them."""
    shape = a.shape
    a, b, width = (t.reshape(-1) for t in (a, b, width))
    tail_a, tail_b = (None, None) if tails is None else (t.reshape(-1) for t in tails)

    def part(rows: slice) -> torch.Tensor:
        lo, hi = a[rows], b[rows]
        t_lo, t_hi = (double_tail(lo), double_tail(hi)) if tails is None else (tail_a[rows], tail_b[rows])
        mass2 = double_mass(t_lo, t_hi, (lo < 0) & (hi > 0))
        out = torch.log(mass2).sub_(_LOG_2)
        _refine_log_mass(out, mass2, lo, hi, width[rows], t_lo, t_hi)
        return out

    return chunked(part, a.numel(), a).reshape(shape)


def _refine_log_mass(
    out: torch.Tensor, mass2: torch.Tensor, a: torch.Tensor, b: torch.Tensor, width: torch.Tensor,
    tail_a: torch.Tensor, tail_b: torch.Tensor,
) -> None:
    """Redo, in place and by index, the entries of ``out = log(mass2 / 2)`` (flat) where the
    sum of tails is not precise enough. Each case is first screened with one reduction or
    comparison, so the bulk pays a few cheap passes."""
    if out.numel() == 0:
        return
    smallest, largest = torch.aminmax(mass2)
    # (index_select/index_copy_: ~3x faster than t[index] and t[index] = v on CPUs)
    # - mass near 1 (central intervals only): log1p of the tails keeps log M relatively exact;
    if largest > 2.0 - 2e-3:
        (full,) = torch.nonzero(mass2 > 2.0 - 2e-3, as_tuple=True)
        tails = tail_a.index_select(0, full) + tail_b.index_select(0, full)
        out.index_copy_(0, full, torch.log1p(-0.5 * tails))
    # - masses near the float64 underflow threshold, far out: log space;
    if smallest < 2.0 * MASS_FLOOR:
        (deep,) = torch.nonzero(mass2 < 2.0 * MASS_FLOOR, as_tuple=True)
        lo, hi = to_lower_side(a.index_select(0, deep), b.index_select(0, deep))
        far = hi <= -1.0
        deep, lo, hi = deep[far], lo[far], hi[far]
        out.index_copy_(0, deep, log_diff_exp(torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)))
    # - masses small against the tails subtracted (short intervals, anywhere): quadrature.
    #   That needs a width below 0.11: a one-sided interval cancels only if its log tail
    #   ratio, at least 0.798 * width, is below -log 0.98; a central one only inside +-0.0502.
    (short,) = torch.nonzero(width < 0.11, as_tuple=True)
    if len(short):
        lo, hi, w = (t.index_select(0, short) for t in (a, b, width))
        central = ((lo < 0) & (hi > 0)).to(a.dtype)
        near = torch.maximum(tail_a.index_select(0, short), tail_b.index_select(0, short))
        cancelled = mass2.index_select(0, short) < 0.02 * torch.addcmul(near, central, 2.0 - near)
        cancelled &= is_short(lo, w)
        out.index_copy_(0, short[cancelled], _log_mass_by_quadrature(lo[cancelled], w[cancelled]))


# 32-point Gauss-Legendre rule on [-1, 1]
_GAUSS_LEGENDRE = tuple(torch.from_numpy(v) for v in np.polynomial.legendre.leggauss(32))


def is_short(a: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    r"""Whether :math:`e^{-z^2/2}` varies by at most a factor :math:`e` over :math:`[a, a + w]`.

    With the midpoint :math:`c`, the exponent moves by at most :math:`w|c|/2 + w^2/8 \le 1`
    when :math:`w(|c| + w) \le 2`: then the 32-point Gauss-Legendre rule integrates the
    normal density over the interval to rounding.
    """
    return width * ((a + 0.5 * width).abs() + width) <= 2.0


def gauss_legendre_on(a: torch.Tensor, width: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The rule for :math:`\int_a^{a+w}` about the midpoint: ``(c, t, weights)`` with nodes
    :math:`z = c + t`; ``t`` and ``weights`` (which include the half width) have a trailing axis of 32.
    Offsets ``t`` come from the width alone, so they are as precise as ``width`` is."""
    nodes, weights = (v.to(a.device) for v in _GAUSS_LEGENDRE)
    half = (0.5 * width).unsqueeze(-1)
    return a + 0.5 * width, half * nodes, half * weights


def _log_mass_by_quadrature(a: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    r""":math:`\log\int_a^b \phi = \log\phi(c) + \log\int_{-h}^{h} e^{-ct - t^2/2}\,dt` for a short interval.

    Exact to the rounding of :math:`c^2/2`, whatever the interval's distance to 0:
    a difference of two tail probabilities would lose :math:`\sim\log_{10}(1/(|c|w))` digits.
    """
    centre, t, weights = gauss_legendre_on(a, width)
    integral = (weights * torch.exp(-centre.unsqueeze(-1) * t - 0.5 * t * t)).sum(-1)
    return log_normal_pdf(centre) + torch.log(integral)


class _LogNormalMass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, width: torch.Tensor, tails) -> torch.Tensor:
        out = log_normal_mass_value(a, b, width, tails)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        # the width and tails only refine or speed up the value: derivatives are those in a and b
        return *_log_mass_gradients(grad, *ctx.saved_tensors), None, None


class _LogNormalMassBulk(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, width_at) -> torch.Tensor:
        def part(rows: slice) -> torch.Tensor:
            return log_normal_mass_bulk(a[rows], b[rows], lambda index: width_at(within(index, rows)))

        out = chunked(part, a.numel(), a)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        return *_log_mass_gradients(grad, *ctx.saved_tensors), None


def _log_mass_gradients(grad, a, b, log_mass) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The chain rule for :math:`\log M`, :math:`M = \Phi(b) - \Phi(a)`: :math:`\partial_a = -\phi(a)/M`, :math:`\partial_b = \phi(b)/M`."""
    return chain(grad, -density_over_mass(a, log_mass)), chain(grad, density_over_mass(b, log_mass))


def log_normal_mass_in_bulk(a: torch.Tensor, b: torch.Tensor, width_at) -> torch.Tensor:
    r""":math:`\log(\Phi(b) - \Phi(a))` by ``log_normal_mass_bulk``, with gradients (flat float64 ``a``, ``b``;
    ``width_at(index)``: :math:`b - a` at those indices, as precise as the caller has it)."""
    return _LogNormalMassBulk.apply(a, b, width_at)


def density_over_mass(x: torch.Tensor, log_mass: torch.Tensor) -> torch.Tensor:
    r""":math:`\phi(x)/M` from :math:`\log M`, exactly ``0`` at infinite ``x`` (also when :math:`M = 0`).

    Differentiable with finite gradients at infinite ``x`` (the double-``where``
    trick: the unused branch only ever sees ``x = 0``).
    """
    finite = torch.isfinite(x)
    x_safe = torch.where(finite, x, 0.0)
    return torch.where(finite, torch.exp(log_normal_pdf(x_safe) - log_mass), 0.0)


def log_normal_mass(
    a: torch.Tensor, b: torch.Tensor, width: torch.Tensor | None = None,
    tails: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    r""":math:`\log(\Phi(b) - \Phi(a))` with gradients (see :func:`mathkit.numerics.log_normal_mass`).

    ``width``: ``b - a`` computed more precisely by the caller (e.g. ``(high - low)/scale``
    before standardising the bounds), for short intervals far from 0. ``tails``: the
    caller's ``double_tail`` of ``a`` and ``b`` (in the broadcast shape), to reuse them.
    """
    width = (b - a).detach() if width is None else width.detach()
    # broadcast outside the Function, so autograd reduces each gradient to its input's shape
    return _LogNormalMass.apply(*torch.broadcast_tensors(a, b, width), tails)

