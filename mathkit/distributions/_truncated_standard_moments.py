r"""Mean, variance and entropy of N(0, 1) truncated to :math:`[\alpha, \beta]`, in z-space.

``truncated_standard_moments`` splits by case, each without cancellation: tail intervals
through offsets from the near bound (the Mills-ratio continued fraction), central ones by
the closed forms, short ones by Gauss-Legendre quadrature.
"""

from __future__ import annotations

import math

import torch

from mathkit._standard_normal import (
    density_over_mass,
    gauss_legendre_on,
    inverse_mills,
    is_short,
    log_ndtr,
    log_normal_mass,
)

_HALF_LOG_2PI_E = 0.5 * math.log(2.0 * math.pi * math.e)


def finite_or_zero(x: torch.Tensor) -> torch.Tensor:
    """``x`` where finite, else 0: for products like :math:`\\alpha\\,\\phi(\\alpha)` that vanish at infinity."""
    return torch.where(torch.isfinite(x), x, 0.0)



def truncated_standard_moments(
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
    narrow = is_short(alpha, width).reshape(-1)
    if bool(narrow.any()):
        a, w = alpha.reshape(-1)[narrow], width.reshape(-1)[narrow]
        moments = [m.expand(shape).reshape(-1).index_put((narrow,), q).reshape(shape)
                   for m, q in zip(moments, _narrow_moments(a, w))]
    return tuple(moments)



def _central_moments(alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Moments of N(0,1) on :math:`[\alpha, \beta] \ni 0` from the ratios :math:`r = \phi/Z`.

    .. math::
        E = r_\alpha - r_\beta,\quad V = 1 + \alpha r_\alpha - \beta r_\beta - E^2,\quad
        H = \tfrac12\log(2\pi e) + \log Z + \tfrac12(\alpha r_\alpha - \beta r_\beta).

    Around 0 the ratios are moderate, so these do not cancel badly.
    """
    log_mass = log_normal_mass(alpha, beta)
    r_alpha, r_beta = density_over_mass(alpha, log_mass), density_over_mass(beta, log_mass)
    spread = finite_or_zero(alpha) * r_alpha - finite_or_zero(beta) * r_beta
    mean = r_alpha - r_beta
    return mean, 1.0 + spread - mean**2, _HALF_LOG_2PI_E + log_mass + 0.5 * spread


def _narrow_moments(alpha: torch.Tensor, width: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Mean, variance and entropy of N(0,1) on a short :math:`[\alpha, \alpha + w]`, by quadrature.

    With the midpoint :math:`c` and :math:`z = c + t`, the density is proportional to
    :math:`f(t) = e^{-ct - t^2/2}`, integrated to rounding by 32-point Gauss-Legendre
    on short intervals (:func:`mathkit._standard_normal.is_short`). The variance is taken
    about the computed mean (two passes), and the entropy is
    :math:`\log\int f + c\,E[t] + E[t^2]/2`.
    """
    centre, t, weights = gauss_legendre_on(alpha, width)
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
    eps = torch.exp(log_ndtr(-b) - log_ndtr(-a))  # 0 for b = inf
    one_minus = -torch.expm1(log_ndtr(-b) - log_ndtr(-a))
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
    lam = inverse_mills(-x, log_ndtr(-x))
    big = x >= _MILLS_CF_FROM
    x_cf = torch.where(big, x, _MILLS_CF_FROM)
    k_next, k = x_cf, x_cf
    for n in range(_MILLS_CF_TERMS, 0, -1):
        k_next, k = k, x_cf + (n + 1) / k
    delta = torch.where(big, 1.0 / k, lam - x)
    s = torch.where(big, 2.0 / (k * k_next), 1.0 - x * (lam - x))
    return lam, delta, s


