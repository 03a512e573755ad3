r"""Log-gamma differences without cancellation, shared by the Beta law's tails and the
negative-binomial loss.

``lgamma(a) + lgamma(b) - lgamma(a + b)`` and its relatives subtract numbers of size
:math:`a \ln a`: at :math:`a = 10^6` each carries an error of ~1e-10, at :math:`10^{15}` of
several nats. From 10 on, Stirling's series (``stirling_remainder``) and the remainder
:math:`t - \log(1+t)` (``log1p_remainder``) give the same quantities from small terms:

- ``log_beta_kernel``: :math:`a \log x + b \log(1-x) - \log B(a, b)`;
- ``log_beta``: :math:`\log B(a, b)` (``log_beta_one_large`` when one argument is 10 or more);
- ``log_negative_binomial``: the log-pmf of the negative binomial with a given mean.

Public within mathkit (no leading underscores), private to it (the module's name).
"""

from __future__ import annotations

import math

import torch

#: coefficients B_{2k} / (2k (2k - 1)) of Stirling's series for lgamma, k = 1..8
STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156, -3617 / 122400)
#: from here on Stirling's series (8 terms: error below 1e-17) replaces lgamma differences
LARGE = 10.0


def stirling_remainder(z: torch.Tensor) -> torch.Tensor:
    r""":math:`\ln\Gamma(z) - \big((z - \tfrac12)\ln z - z + \tfrac12\ln 2\pi\big)` for :math:`z \ge` ``LARGE``."""
    w = 1.0 / (z * z)
    poly = torch.full_like(z, STIRLING[-1])
    for c in reversed(STIRLING[:-1]):
        poly = c + w * poly
    return poly / z


def log1p_remainder(t: torch.Tensor, log1p_t: torch.Tensor) -> torch.Tensor:
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

    Both at least ``LARGE`` (DiDonato & Morris 1992, the prefactor of TOMS 708): with
    :math:`s = a + b` and :math:`n = xs - a`, Stirling's formula gives
    :math:`-a\,\rho(n/a) - b\,\rho(-n/b) + \tfrac12\ln\frac{ab}{2\pi s} - \Delta`, where
    :math:`\rho(t) = t - \log(1+t)` and :math:`\Delta` is the remainders' combination
    :math:`c(a) + c(b) - c(s)`. One of them large (say :math:`b`): :math:`\ln\Gamma(b) - \ln\Gamma(s) =
    -(b - \tfrac12)\,\mathrm{log1p}(a/b) - a \ln s + a + c(b) - c(s)`. Both small: ``lgamma``.
    """
    both = (a >= LARGE) & (b >= LARGE)
    safe = [torch.where(both, v, LARGE) for v in (a, b)]
    a2, b2 = safe
    n = x * (a2 + b2) - a2
    # 1 + n/a = x s/a and 1 - n/b = (1-x) s/b, their logs from those factors
    log_ratio_a = torch.log(x) + torch.log1p(b2 / a2)
    log_ratio_b = torch.log1p(-x) + torch.log1p(a2 / b2)
    stirling = (-a2 * log1p_remainder(n / a2, log_ratio_a) - b2 * log1p_remainder(-n / b2, log_ratio_b)
                + 0.5 * torch.log(a2 * b2 / (2 * math.pi * (a2 + b2)))
                - (stirling_remainder(a2) + stirling_remainder(b2) - stirling_remainder(a2 + b2)))
    plain = a * torch.log(x) + b * torch.log1p(-x) - log_beta(a, b)
    return torch.where(both, stirling, plain)


def log_beta(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`\log B(a, b)`: with one argument ``LARGE`` or more, ``log_beta_one_large``; both
    below, ``lgamma`` (terms of a few units, no cancellation to speak of). (Both large: the
    :math:`\log B` alone is as large as its terms; ``log_beta_kernel`` avoids needing it.)"""
    big_a, big_b = a >= LARGE, b >= LARGE
    large = torch.where(big_b, b, a).clamp(min=LARGE)
    small = torch.where(big_b, a, b)
    return torch.where(big_a | big_b, log_beta_one_large(small, large),
                       torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b))


def log_beta_one_large(small: torch.Tensor, large: torch.Tensor) -> torch.Tensor:
    r""":math:`\log B(\text{small}, \text{large})` for :math:`\text{large} \ge` ``LARGE``:
    :math:`\ln\Gamma(l) - \ln\Gamma(l + s) = -(l - \tfrac12)\,\mathrm{log1p}(s/l) - s\ln(l + s) + s +
    c(l) - c(l + s)` (Stirling's formula, :math:`c` = ``stirling_remainder``), plus :math:`\ln\Gamma(s)`."""
    total = small + large
    return (torch.lgamma(small) - (large - 0.5) * torch.log1p(small / large) - small * torch.log(total) + small
            + stirling_remainder(large) - stirling_remainder(total))




def log_negative_binomial(y: torch.Tensor, mean: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    r""":math:`\log p(y)` of the negative binomial with mean :math:`\mu` and concentration :math:`r`
    (float64, same shapes; ``y`` non-negative integers):

    .. math:: p(y) = \frac{q^y (1-q)^r}{y\,B(y, r)}, \qquad q = \frac{\mu}{\mu + r},

    with :math:`\log q = -\mathrm{log1p}(r/\mu)`, :math:`\log(1-q) = -\mathrm{log1p}(\mu/r)` and
    :math:`p(0) = (1-q)^r`. For :math:`y, r \ge` ``LARGE`` the saddle-point form (Loader 2000, as
    ``log_beta_kernel``): with :math:`s = y + r`, :math:`e_1 = r(\mu - y)/(y(\mu + r))`,
    :math:`e_2 = -(\mu - y)/(\mu + r)`,
    :math:`\log p = -y\,\rho(e_1) - r\,\rho(e_2) + \tfrac12\log\frac{yr}{2\pi s} - \Delta - \log y`;
    otherwise :math:`\log B` from ``log_beta``. The textbook ``lgamma`` form is off by nats at
    :math:`r = 10^{15}` (where the law is a Poisson) or counts of :math:`10^{15}`; this one keeps
    ~1e-14 relative, and tends to the Poisson log-pmf as :math:`r \to \infty`.
    """
    log_q, log_1mq = -torch.log1p(r / mean), -torch.log1p(mean / r)
    positive = y > 0
    both = positive & (y >= LARGE) & (r >= LARGE)
    y1 = torch.where(positive, y, 1.0)  # (the y = 0 entries take p(0); 1 keeps their other branches finite)
    ys, rs = torch.where(both, y, LARGE), torch.where(both, r, LARGE)
    ms = torch.where(both, mean, LARGE)
    gap = (ms - ys) / (ms + rs)
    e1, e2 = rs * gap / ys, -gap
    # log(1 + e1) = log q - log(y/s), log(1 + e2) = log(1 - q) - log(r/s): from the factors
    log1p_e1 = -torch.log1p(rs / ms) + torch.log1p(rs / ys)
    log1p_e2 = -torch.log1p(ms / rs) + torch.log1p(ys / rs)
    saddle = (-ys * log1p_remainder(e1, log1p_e1) - rs * log1p_remainder(e2, log1p_e2)
              + 0.5 * torch.log(ys * rs / (2 * math.pi * (ys + rs)))
              - (stirling_remainder(ys) + stirling_remainder(rs) - stirling_remainder(ys + rs)) - torch.log(ys))
    plain = y1 * log_q + r * log_1mq - log_beta(y1, r) - torch.log(y1)
    return torch.where(positive, torch.where(both, saddle, plain), r * log_1mq)
