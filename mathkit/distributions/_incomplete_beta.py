r"""The regularised incomplete beta function in log space, by its continued fraction."""

from __future__ import annotations

import math

import torch

# a whole step of the continued fraction within this of 1 (a few ulp) counts as converged,
# tested every _CF_CHECK_EVERY terms
_CF_TOLERANCE = 1e-15
_CF_CHECK_EVERY = 4


#: coefficients B_{2k} / (2k (2k - 1)) of Stirling's series for lgamma, k = 1..8
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156, -3617 / 122400)
#: from here on Stirling's series (8 terms: error below 1e-17) replaces lgamma differences
_LARGE = 10.0


def _stirling_remainder(z: torch.Tensor) -> torch.Tensor:
    r""":math:`\ln\Gamma(z) - \big((z - \tfrac12)\ln z - z + \tfrac12\ln 2\pi\big)` for :math:`z \ge` ``_LARGE``."""
    w = 1.0 / (z * z)
    poly = torch.full_like(z, _STIRLING[-1])
    for c in reversed(_STIRLING[:-1]):
        poly = c + w * poly
    return poly / z


def _log1p_remainder(t: torch.Tensor, log1p_t: torch.Tensor) -> torch.Tensor:
    r""":math:`t - \log(1 + t) \ge 0` for :math:`t > -1`, relatively exact near 0, where the difference
    cancels: with :math:`r = t/(2+t)`, :math:`\log(1+t) = 2\,\mathrm{atanh}\,r`, so
    :math:`t - \log(1+t) = 2r\big(r/(1-r) - \sum_{k \ge 1} r^{2k}/(2k+1)\big)` (nine terms for
    :math:`|t| \le 1/4`); beyond, :math:`t` minus ``log1p_t``, the caller's :math:`\log(1+t)` (taken from
    the factors of :math:`1 + t`: near :math:`t = -1` a rounded :math:`t` has lost it), at most a digit lost."""
    small = t.abs() <= 0.25
    r = torch.where(small, t, 0.0) / (2.0 + torch.where(small, t, 0.0))
    w = r * r
    series = torch.zeros_like(r)
    for k in range(9, 0, -1):
        series = w * (1.0 / (2 * k + 1) + series)
    return torch.where(small, 2.0 * r * (r / (1.0 - r) - series), t - log1p_t)


def log_beta_kernel(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`a \log x + b \log(1-x) - \log B(a, b)` for :math:`0 < x < 1`, without the cancellation of
    its large terms when :math:`a` or :math:`b` is large (``lgamma`` differences lose ~1e-16 of
    :math:`a \ln a` each: 1e-10 at 1e6).

    Both at least ``_LARGE`` (DiDonato & Morris 1992, the prefactor of TOMS 708): with
    :math:`s = a + b` and :math:`n = xs - a`, Stirling's formula gives
    :math:`-a\,\rho(n/a) - b\,\rho(-n/b) + \tfrac12\ln\frac{ab}{2\pi s} - \Delta`, where
    :math:`\rho(t) = t - \log(1+t)` and :math:`\Delta` is the remainders' combination
    :math:`c(a) + c(b) - c(s)`. One of them large (say :math:`b`): :math:`\ln\Gamma(b) - \ln\Gamma(s) =
    -(b - \tfrac12)\,\mathrm{log1p}(a/b) - a \ln s + a + c(b) - c(s)`. Both small: ``lgamma``.
    """
    s = a + b
    big_a, big_b = a >= _LARGE, b >= _LARGE
    both = big_a & big_b
    safe = [torch.where(both, v, _LARGE) for v in (a, b)]
    a2, b2 = safe
    n = x * (a2 + b2) - a2
    # 1 + n/a = x s/a and 1 - n/b = (1-x) s/b, their logs from those factors
    log_ratio_a = torch.log(x) + torch.log1p(b2 / a2)
    log_ratio_b = torch.log1p(-x) + torch.log1p(a2 / b2)
    stirling = (-a2 * _log1p_remainder(n / a2, log_ratio_a) - b2 * _log1p_remainder(-n / b2, log_ratio_b)
                + 0.5 * torch.log(a2 * b2 / (2 * math.pi * (a2 + b2)))
                - (_stirling_remainder(a2) + _stirling_remainder(b2) - _stirling_remainder(a2 + b2)))
    # one large parameter, the other (``small``) below _LARGE: log B from lgamma(small) and the series
    large = torch.where(big_b, b, a).clamp(min=_LARGE)
    small = torch.where(big_b, a, b)
    log_b_one = (torch.lgamma(small) - (large - 0.5) * torch.log1p(small / large) - small * torch.log(s) + small
                 + _stirling_remainder(large) - _stirling_remainder(small + large))
    log_b_small = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(s)
    log_b = torch.where(big_a | big_b, log_b_one, log_b_small)
    plain = a * torch.log(x) + b * torch.log1p(-x) - log_b
    return torch.where(both, stirling, plain)


def log_betainc_cf(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, max_terms: int) -> torch.Tensor:
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
    log_front = log_beta_kernel(x, a, b) - torch.log(a)
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
