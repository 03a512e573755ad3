r"""Log-space helpers for the standard normal law, in PyTorch.

Products of small probabilities underflow and differences of probabilities
near one cancel. Every function here works with logarithms so that the far
tails (``|x|`` up to hundreds of standard deviations) keep full relative
precision, and every gradient stays finite where the mathematical one is.

Notation: :math:`\phi` is the standard normal density and :math:`\Phi` its
distribution function.

- ``log_ndtr(x)``: :math:`\log \Phi(x)`, with a gradient :math:`\phi/\Phi` that stays
  accurate (:math:`\approx -x`) as :math:`x \to -\infty`;
- ``log1mexp(x)``: :math:`\log(1 - e^{x})` for :math:`x \le 0`;
- ``log_diff_exp(a, b)``: :math:`\log(e^{a} - e^{b})` for :math:`a \ge b`;
- ``ndtri_exp(y)``: :math:`\Phi^{-1}(e^{y})`, the inverse of ``log_ndtr``;
- ``log_normal_mass(a, b)``: :math:`\log(\Phi(b) - \Phi(a))` for :math:`a \le b`;
- ``log_normal_pdf(x)``: :math:`\log\phi(x)`;
- ``logsumexp(x, dim)``: :math:`\log\sum_i e^{x_i}`, with a zero (not NaN) gradient where every
  term is ``-inf``.

All functions accept tensors (or Python numbers, read as float64), broadcast
their arguments, and return the broadcast shape in the input's floating dtype.
Computation happens in float64 and is rounded once to the result dtype, because
the float32 kernels of the underlying special functions lose digits in the tails
(``torch.special.log_ndtr`` in float32 is off by ~4e-6 relative at x = 9). A
value outside a function's domain raises a ``ValueError`` naming the argument
and the constraint; NaN propagates as in torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["log_ndtr", "log1mexp", "log_diff_exp", "ndtri_exp", "log_normal_mass", "log_normal_pdf",
           "logsumexp"]

_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)
_SQRT_HALF = math.sqrt(0.5)
# Below this, exp(y) is subnormal in float64 and ndtri(exp(y)) loses digits:
# ndtri_exp switches to an asymptotic start refined by Newton steps in log space.
_NDTRI_EXP_ASYMPTOTIC_BELOW = -700.0
_NEWTON_STEPS = 4
# Normal masses below MASS_FLOOR are computed in log space: there the probabilities
# themselves approach the float64 underflow threshold (2.2e-308).
MASS_FLOOR = 1e-290
# erfc beyond this argument is below 2.2e-307, close to the float64 normal range (see _double_tail)
_ERFC_ARG_MAX = 26.5

Tensorlike = torch.Tensor | float | int


def _check_real(value: Tensorlike, name: str) -> None:
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(f"Expected {name} to be a real tensor, got dtype {value.dtype}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Expected {name} to be a torch.Tensor or a real number, got {type(value).__name__}")


def _as_float64(names: tuple[str, ...], *values: Tensorlike) -> tuple[torch.dtype, tuple[torch.Tensor, ...]]:
    """Broadcast float64 copies of ``values`` and the dtype to return results in.

    The result dtype follows torch's promotion (a Python number does not promote a
    float32 tensor); all-number or integer input gives float64, the numerics default.
    """
    for value, name in zip(values, names):
        _check_real(value, name)
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    dtype = torch.float64
    if tensors:
        dtype = torch.result_type(*values) if len(values) == 2 else tensors[0].dtype
    if not dtype.is_floating_point:
        dtype = torch.float64
    device = tensors[0].device if tensors else None
    as64 = [torch.as_tensor(v, dtype=torch.float64, device=device) for v in values]
    try:
        return dtype, tuple(torch.broadcast_tensors(*as64))
    except RuntimeError:
        shapes = ", ".join(f"{name} {tuple(v.shape)}" for name, v in zip(names, as64))
        raise ValueError(f"{' and '.join(names)} must have broadcastable shapes, got {shapes}") from None


def _require(condition: torch.Tensor, message: str) -> None:
    # NaN compares False, so `~(x > bound)` lets NaN through and only rejects real violations.
    if not bool(condition.all()):
        raise ValueError(message)


def _nonpositive_as_float64(value: Tensorlike, name: str, function: str) -> tuple[torch.dtype, torch.Tensor]:
    """``_as_float64`` for one argument that must be <= 0 (a log-probability)."""
    dtype, (value64,) = _as_float64((name,), value)
    _require(~(value64 > 0), f"Expected parameter {name} of {function} to satisfy the constraint {name} <= 0")
    return dtype, value64


def _chain(grad: torch.Tensor, derivative: torch.Tensor) -> torch.Tensor:
    """``grad * derivative`` for a custom backward, with exact zeros where ``grad`` is zero.

    An entry that a ``torch.where`` downstream masked out gets a zero upstream
    gradient; it must contribute zero, not ``0 * inf = NaN``, when its local
    derivative is infinite (an infinite bound, an empty interval).
    """
    return torch.where(grad == 0, 0.0, grad * derivative)


def log_normal_pdf(x: Tensorlike) -> torch.Tensor:
    r""":math:`\log\phi(x) = -x^2/2 - \tfrac12\log 2\pi`, elementwise (no domain restriction).

    Floating tensors keep their dtype; numbers and integer tensors give float64."""
    if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
        x = torch.as_tensor(x, dtype=torch.float64)
    return -0.5 * x * x - _HALF_LOG_2PI


def _inverse_mills(x: torch.Tensor, log_cdf: torch.Tensor) -> torch.Tensor:
    r""":math:`\phi(x)/\Phi(x)` for float64 ``x`` given ``log_cdf`` :math:`=\log\Phi(x)`.

    For :math:`x < 0` it is :math:`1/(\sqrt{\pi/2}\,\mathrm{erfcx}(-x/\sqrt2))`: the scaled
    complementary error function keeps it finite and relatively exact down to
    :math:`x \approx -10^{300}`, where it behaves like :math:`-x`. For :math:`x \ge 0`,
    :math:`\Phi \ge 1/2` and the quotient of logs is exact.
    """
    lower = 1.0 / (_SQRT_HALF_PI * torch.special.erfcx(-x.clamp(max=0.0) * _SQRT_HALF))
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
        return _chain(grad, _inverse_mills(x, out))


def _log_ndtr(x: torch.Tensor) -> torch.Tensor:
    """``log_ndtr`` on a float64 tensor, without argument checks."""
    return _LogNdtr.apply(x)


def log_ndtr(x: Tensorlike) -> torch.Tensor:
    r"""Logarithm of the standard normal distribution function, :math:`\log\Phi(x)`.

    The value comes from ``torch.special.log_ndtr`` (accurate to a few ulp in
    float64 over the whole real line). The gradient is the inverse Mills ratio

    .. math:: \frac{d}{dx}\log\Phi(x) = \frac{\phi(x)}{\Phi(x)},

    evaluated through ``erfcx`` for :math:`x<0`, so it stays finite and
    relatively accurate (:math:`\approx -x`) far in the lower tail, where
    torch's own backward returns ``inf`` (float64, :math:`x \lesssim -10^{10}`)
    or ``0``/``nan`` (float32). At :math:`x=-\infty` the gradient is ``+inf``.

    Args:
        x: any shape.

    Returns:
        :math:`\log\Phi(x)`, same shape and dtype as ``x``.
    """
    dtype, (x64,) = _as_float64(("x",), x)
    return _log_ndtr(x64).to(dtype)


class _Log1mexp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.where(x > -_LOG_2, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # d/dx log(1 - e^x) = -1/expm1(-x), -inf at x = 0
        return _chain(grad, -1.0 / torch.expm1(-x))


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log1mexp`` without argument checks."""
    return _Log1mexp.apply(x)


def log1mexp(x: Tensorlike) -> torch.Tensor:
    r""":math:`\log(1 - e^{x})` for :math:`x \le 0`, accurate everywhere.

    Uses ``log(-expm1(x))`` for :math:`x > -\log 2` and ``log1p(-exp(x))``
    otherwise, the switch point that keeps both relatively exact
    (Mächler, *Accurately computing log(1 - exp(-|a|))*, CRAN Rmpfr vignette, 2012).
    ``log1mexp(0) = -inf`` and ``log1mexp(-inf) = 0``.

    Raises:
        ValueError: if any element of ``x`` is positive.
    """
    dtype, x64 = _nonpositive_as_float64(x, "x", "log1mexp")
    return _log1mexp(x64).to(dtype)


def _log_diff_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log_diff_exp`` without argument checks (``a >= b`` assumed)."""
    a_finite = torch.isfinite(a)
    # a = -inf forces b = -inf and the result -inf; a = +inf makes the result +inf.
    # Give the unused branch a harmless input so neither the value nor the gradient is NaN.
    a_safe = torch.where(a_finite, a, 0.0)
    b_safe = torch.where(a_finite, b, -1.0)
    return torch.where(a_finite, a_safe + _log1mexp(b_safe - a_safe), a)


def log_diff_exp(a: Tensorlike, b: Tensorlike) -> torch.Tensor:
    r""":math:`\log(e^{a} - e^{b})` for :math:`a \ge b`, computed as :math:`a + \log(1 - e^{b-a})`.

    Equal arguments give ``-inf``; ``b = -inf`` gives ``a``. Gradients are finite
    unless the result is ``-inf``.

    Args:
        a, b: broadcastable tensors.

    Raises:
        ValueError: if any ``a < b``.
    """
    dtype, (a64, b64) = _as_float64(("a", "b"), a, b)
    _require(~(a64 < b64), "Expected parameters a, b of log_diff_exp to satisfy the constraint a >= b")
    return _log_diff_exp(a64, b64).to(dtype)


def _ndtri_exp_start(y: torch.Tensor) -> torch.Tensor:
    r"""A starting point for the Newton solve of :math:`\log\Phi(x) = y` when :math:`y \ll 0`.

    From :math:`\log\Phi(x) \approx -x^2/2 - \log(-x) - \tfrac12\log 2\pi`:
    with :math:`t = -2y - \log 2\pi`, :math:`x \approx -\sqrt{t - \log t}`.
    """
    t = -2.0 * y - 2.0 * _HALF_LOG_2PI
    return -torch.sqrt(t - torch.log(t))


def _ndtri_exp_value(y: torch.Tensor) -> torch.Tensor:
    """``ndtri_exp`` on float64 ``y <= 0``, no autograd."""
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
            z = z - (log_cdf - y_deep) / _inverse_mills(z, log_cdf)
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
        return _chain(grad, 1.0 / _inverse_mills(x, y))


def _ndtri_exp(y: torch.Tensor) -> torch.Tensor:
    """``ndtri_exp`` on a float64 tensor, without argument checks."""
    return _NdtriExp.apply(y)


def ndtri_exp(y: Tensorlike) -> torch.Tensor:
    r"""The standard normal quantile of :math:`e^{y}`: :math:`x = \Phi^{-1}(e^{y})`, :math:`y \le 0`.

    The inverse of :func:`log_ndtr`, as ``scipy.special.ndtri_exp``. Accurate
    where the probability itself is not representable: :math:`y = -800`
    (:math:`e^{y}` underflows) and :math:`y = -10^{-20}` (:math:`1 - e^{y}` is
    below the float64 spacing at 1). The bulk uses ``ndtri`` of
    :math:`e^{y}` or of :math:`-\mathrm{expm1}(y)`; below :math:`y=-700` an
    asymptotic start is refined by Newton steps on :math:`\log\Phi(x) = y`.
    The gradient is :math:`dx/dy = \Phi(x)/\phi(x)`.

    Args:
        y: log-probabilities, any shape.

    Returns:
        Quantiles, same shape and dtype as ``y``; ``-inf`` at ``y = -inf`` and ``+inf`` at ``y = 0``.

    Raises:
        ValueError: if any element of ``y`` is positive.
    """
    dtype, y64 = _nonpositive_as_float64(y, "y", "ndtri_exp")
    return _ndtri_exp(y64).to(dtype)


def _to_lower_side(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``[a, b]`` or its mirror ``[-b, -a]``, whichever has ``lo + hi <= 0`` (so ``lo <= 0``).

    On that side :math:`\Phi(lo)`, and :math:`\Phi(hi)` or :math:`\Phi(-hi)`, whichever
    is smaller, are lower tails, relatively exact. ``lo = min(a, -b)`` and
    ``hi = min(b, -a)`` pick the side without branching: ``torch.where`` on a
    random mask costs ~10 ns per element on a CPU, 10x a multiplication. The
    interval was mirrored iff ``a + b > 0``.
    """
    return torch.minimum(a, -b), torch.minimum(b, -a)


def _double_tail(x: torch.Tensor) -> torch.Tensor:
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
    return torch.mul(x, _SQRT_HALF).abs_().clamp_(max=_ERFC_ARG_MAX).erfc_()


def _double_mass(tail_a: torch.Tensor, tail_b: torch.Tensor, central: torch.Tensor) -> torch.Tensor:
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


# Elementwise work on long tensors is done in slices of this many elements: the dozen
# temporaries of a slice stay in the CPU caches and are recycled by the allocator, which
# halves the time of memory-bound passes over 10^6 elements; slices of 2^17 still let
# torch split each operation between threads (measured on 2 cores: 2^15 is slower with 2
# threads, 2^16 to 2^18 about equal).
_CHUNK = 1 << 17


def _chunked(fn: Callable[[slice], torch.Tensor], n: int, like: torch.Tensor) -> torch.Tensor:
    """``fn(slice)`` over consecutive slices of ``range(n)``, concatenated into a tensor like ``like``
    (dtype and device). ``fn`` must compute each element from its own slice only."""
    if n <= _CHUNK:
        return fn(slice(0, n))
    out = torch.empty(n, dtype=like.dtype, device=like.device)
    for start in range(0, n, _CHUNK):
        part = slice(start, min(start + _CHUNK, n))
        out[part] = fn(part)
    return out


def _log_normal_mass_value(
    a: torch.Tensor, b: torch.Tensor, width: torch.Tensor, tails: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """``log_normal_mass`` on float64 ``a <= b`` of one shape, no autograd; ``width`` is ``b - a``,
    possibly known more precisely than the difference of the rounded bounds (used for short intervals);
    ``tails``: ``_double_tail`` of ``a`` and ``b`` if the caller has them."""
    shape = a.shape
    a, b, width = (t.reshape(-1) for t in (a, b, width))
    tail_a, tail_b = (None, None) if tails is None else (t.reshape(-1) for t in tails)

    def part(rows: slice) -> torch.Tensor:
        lo, hi = a[rows], b[rows]
        t_lo, t_hi = (_double_tail(lo), _double_tail(hi)) if tails is None else (tail_a[rows], tail_b[rows])
        mass2 = _double_mass(t_lo, t_hi, (lo < 0) & (hi > 0))
        out = torch.log(mass2).sub_(_LOG_2)
        _refine_log_mass(out, mass2, lo, hi, width[rows], t_lo, t_hi)
        return out

    return _chunked(part, a.numel(), a).reshape(shape)


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
        lo, hi = _to_lower_side(a.index_select(0, deep), b.index_select(0, deep))
        far = hi <= -1.0
        deep, lo, hi = deep[far], lo[far], hi[far]
        out.index_copy_(0, deep, _log_diff_exp(torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)))
    # - masses small against the tails subtracted (short intervals, anywhere): quadrature.
    #   That needs a width below 0.11: a one-sided interval cancels only if its log tail
    #   ratio, at least 0.798 * width, is below -log 0.98; a central one only inside +-0.0502.
    (short,) = torch.nonzero(width < 0.11, as_tuple=True)
    if len(short):
        lo, hi, w = (t.index_select(0, short) for t in (a, b, width))
        central = ((lo < 0) & (hi > 0)).to(a.dtype)
        near = torch.maximum(tail_a.index_select(0, short), tail_b.index_select(0, short))
        cancelled = mass2.index_select(0, short) < 0.02 * torch.addcmul(near, central, 2.0 - near)
        cancelled &= _is_short(lo, w)
        out.index_copy_(0, short[cancelled], _log_mass_by_quadrature(lo[cancelled], w[cancelled]))


# 32-point Gauss-Legendre rule on [-1, 1]
_GAUSS_LEGENDRE = tuple(torch.from_numpy(v) for v in np.polynomial.legendre.leggauss(32))


def _is_short(a: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    r"""Whether :math:`e^{-z^2/2}` varies by at most a factor :math:`e` over :math:`[a, a + w]`.

    With the midpoint :math:`c`, the exponent moves by at most :math:`w|c|/2 + w^2/8 \le 1`
    when :math:`w(|c| + w) \le 2`: then the 32-point Gauss-Legendre rule integrates the
    normal density over the interval to rounding.
    """
    return width * ((a + 0.5 * width).abs() + width) <= 2.0


def _gauss_legendre_on(a: torch.Tensor, width: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    centre, t, weights = _gauss_legendre_on(a, width)
    integral = (weights * torch.exp(-centre.unsqueeze(-1) * t - 0.5 * t * t)).sum(-1)
    return log_normal_pdf(centre) + torch.log(integral)


class _LogNormalMass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, width: torch.Tensor, tails) -> torch.Tensor:
        out = _log_normal_mass_value(a, b, width, tails)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        a, b, out = ctx.saved_tensors
        # the width and tails only refine or speed up the value: derivatives are those in a and b
        return _chain(grad, -_density_over_mass(a, out)), _chain(grad, _density_over_mass(b, out)), None, None


def _density_over_mass(x: torch.Tensor, log_mass: torch.Tensor) -> torch.Tensor:
    r""":math:`\phi(x)/M` from :math:`\log M`, exactly ``0`` at infinite ``x`` (also when :math:`M = 0`).

    Differentiable with finite gradients at infinite ``x`` (the double-``where``
    trick: the unused branch only ever sees ``x = 0``).
    """
    finite = torch.isfinite(x)
    x_safe = torch.where(finite, x, 0.0)
    return torch.where(finite, torch.exp(log_normal_pdf(x_safe) - log_mass), 0.0)


def _log_normal_mass(
    a: torch.Tensor, b: torch.Tensor, width: torch.Tensor | None = None,
    tails: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``log_normal_mass`` on float64 tensors, without argument checks.

    ``width``: ``b - a`` computed more precisely by the caller (e.g. ``(high - low)/scale``
    before standardising the bounds), for short intervals far from 0. ``tails``: the
    caller's ``_double_tail`` of ``a`` and ``b`` (in the broadcast shape), to reuse them.
    """
    width = (b - a).detach() if width is None else width.detach()
    # broadcast outside the Function, so autograd reduces each gradient to its input's shape
    return _LogNormalMass.apply(*torch.broadcast_tensors(a, b, width), tails)


def log_normal_mass(a: Tensorlike, b: Tensorlike) -> torch.Tensor:
    r"""Log of the standard normal mass of :math:`[a, b]`: :math:`\log(\Phi(b) - \Phi(a))`.

    Stable for any :math:`a \le b` on the extended real line. Each endpoint
    contributes its small tail :math:`\Phi(-|x|)`, relatively exact via ``erfc``
    (the mass of an interval on one side of 0 is the difference of its tails,
    :math:`\Phi(b) - \Phi(a) = \Phi(-a) - \Phi(-b)` on the right; a central one is
    1 minus both); then, by index: ``log1p`` of the two tails (mass near 1), a
    Gauss-Legendre quadrature for short intervals whose tails cancel, and a
    difference in log space where the tails approach float64 underflow (masses
    below 1e-290, e.g. [38, 40]). Infinite bounds and :math:`a = b` (``-inf``)
    are exact. Accuracy degrades only for intervals far out and much narrower
    than their distance to 0 (width :math:`w` at :math:`|a|`: about
    :math:`10^{-16}/(|a| w)` relative), and a width below ~1e-300 underflows to
    ``-inf``. Gradients

    .. math:: \frac{\partial}{\partial a} = -\frac{\phi(a)}{\Phi(b)-\Phi(a)},\qquad
              \frac{\partial}{\partial b} = \frac{\phi(b)}{\Phi(b)-\Phi(a)}

    are formed from logs, so they are finite for every :math:`a < b` and exactly
    0 at an infinite bound. Scipy's ``scipy.stats._continuous_distns._log_gauss_mass``
    uses a similar case split; here the cases are blended without ``torch.where``
    on the bulk (a branch per element is slow on CPUs), long inputs are processed
    in cache-sized slices, and the rare cases are redone by index.

    Args:
        a, b: broadcastable lower and upper bounds.

    Returns:
        The log-mass, in the broadcast shape and promoted dtype.

    Raises:
        ValueError: if any ``a > b``.
    """
    dtype, (a64, b64) = _as_float64(("a", "b"), a, b)
    _require(~(a64 > b64), "Expected parameters a, b of log_normal_mass to satisfy the constraint a <= b")
    return _log_normal_mass(a64, b64).to(dtype)


def logsumexp(x: Tensorlike, dim: int | tuple[int, ...], keepdim: bool = False) -> torch.Tensor:
    r""":math:`\log\sum_i e^{x_i}` over ``dim``, as ``torch.logsumexp``, with a zero gradient on
    slices whose terms are all ``-inf``.

    The value is :math:`m + \log\sum_i e^{x_i - m}` with :math:`m = \max_i x_i`, so no term
    overflows and the largest one never underflows (Blanchard, Higham & Higham 2021); a slice of
    ``-inf`` terms (an empty sum) gives ``-inf``. The gradient is the softmax
    :math:`e^{x_i - \mathrm{LSE}(x)}`. On an all ``-inf`` slice torch evaluates it as
    :math:`e^{-\infty + \infty} = \text{NaN}`, and a NaN gradient survives multiplication by
    zero: a slice that a loss masks out (an empty set, a fully masked row) still turns every
    upstream gradient into NaN. Here such a slice gets gradient 0, the softmax weight of a
    ``-inf`` term in any slice with a finite one. A ``+inf`` term gives ``+inf`` (and a NaN
    gradient, as in torch).

    Args:
        x: a tensor (or number); computed in float64, returned in ``x``'s floating dtype.
        dim: the dimension or dimensions to reduce.
        keepdim: keep the reduced dimensions with size 1.
    """
    dtype, (x64,) = _as_float64(("x",), x)
    m = x64.detach().amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, 0.0)
    total = torch.exp(x64 - m).sum(dim=dim, keepdim=True)
    empty = total == 0
    out = torch.where(empty, -math.inf, torch.log(torch.where(empty, 1.0, total)) + m)
    return (out if keepdim else out.squeeze(dim)).to(dtype)
