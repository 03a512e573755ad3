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

The kernels themselves, without checks, live in ``mathkit._standard_normal``, shared
with :mod:`mathkit.distributions`.
"""

from __future__ import annotations

import math

import torch

from mathkit import _standard_normal as kernels
from mathkit._standard_normal import log_normal_pdf

__all__ = ["log_ndtr", "log1mexp", "log_diff_exp", "ndtri_exp", "log_normal_mass", "log_normal_pdf",
           "logsumexp"]

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
    return kernels.log_ndtr(x64).to(dtype)


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
    return kernels.log1mexp(x64).to(dtype)


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
    return kernels.log_diff_exp(a64, b64).to(dtype)


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
    return kernels.ndtri_exp(y64).to(dtype)


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
    return kernels.log_normal_mass(a64, b64).to(dtype)


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
