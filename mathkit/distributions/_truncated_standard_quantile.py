r"""The quantile of N(0, 1) truncated to :math:`[\alpha, \beta]`, in z-space.

``standard_quantile`` solves :math:`F(z) = q` in probability space where the endpoint
probabilities are relatively exact, and in log space (``quantile_in_log_space``, also used
by the sampler) where they approach underflow; ``StandardQuantile`` adds the gradients of
the implicit equation.
"""

from __future__ import annotations

import math

import torch

from mathkit._elementwise import chain
from mathkit._standard_normal import (
    MASS_FLOOR,
    SQRT_HALF,
    density_over_mass,
    log_ndtr,
    log_normal_mass_value,
    log_normal_pdf,
    ndtri_exp,
    to_lower_side,
)


def standard_quantile(alpha: torch.Tensor, beta: torch.Tensor, q: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    r"""The :math:`z` in :math:`[\alpha, \beta]` with :math:`F(z) = q` (flat float64; ``width`` =
    :math:`\beta - \alpha` as precise as the caller has it), differentiable in :math:`\alpha, \beta, q`."""
    return StandardQuantile.apply(alpha, beta, q, width.detach())


def _quantile_from_probabilities(
    alpha: torch.Tensor, beta: torch.Tensor, below: torch.Tensor, above: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Solve :math:`F(z) = q` for N(0,1) on :math:`[\alpha, \beta]` in probability space (fast).

    On the side of 0 where :math:`\Phi(lo)` and the smaller of :math:`\Phi(\pm hi)`
    are relatively exact (:func:`mathkit._standard_normal.to_lower_side`),
    :math:`\Phi(z) = (1-q)\Phi(lo) + q\Phi(hi)` and
    :math:`\Phi(-z) = (1-q)\Phi(-lo) + q\Phi(-hi)` are sums of positive terms, with
    no subtraction even for narrow intervals; the smaller is inverted by ``ndtri``.
    Returns :math:`z` and the ``deep`` entries, whose probabilities (the endpoints' or the
    target's) approach underflow: they get a placeholder (with a finite gradient), to be replaced by
    the log-space solution. Selections are arithmetic, not ``torch.where``, for speed.
    """
    lo, hi = to_lower_side(alpha, beta)
    mirrored = (alpha + beta > 0).to(lo.dtype)
    # a mirrored interval holds the fraction 1 - q below the mirrored quantile
    frac_below = torch.addcmul((1.0 - mirrored) * below, mirrored, above)
    frac_above = torch.addcmul((1.0 - mirrored) * above, mirrored, below)
    cdf_lo = 0.5 * torch.erfc(lo * -SQRT_HALF)
    small_hi = 0.5 * torch.erfc((hi * SQRT_HALF).abs())  # Phi(hi) if hi <= 0, else Phi(-hi)
    positive_hi = (hi > 0).to(lo.dtype)
    gap = 1.0 - 2.0 * small_hi
    cdf_hi = torch.addcmul(small_hi, positive_hi, gap)
    sf_hi = torch.addcmul(small_hi, 1.0 - positive_hi, gap)
    p_below = torch.addcmul(frac_above * cdf_lo, frac_below, cdf_hi)
    p_above = torch.addcmul(frac_above * (1.0 - cdf_lo), frac_below, sf_hi)
    p = torch.minimum(p_below, p_above)
    # the target itself near underflow (a tiny q on a lower tail): q * Z loses digits, then all
    deep = (cdf_hi < MASS_FLOOR) | (p < MASS_FLOOR)
    if bool(deep.any()):
        p = torch.where(deep, 0.25, p)
    # ndtri(p) <= 0 solves for the smaller probability: its sign says which it was
    z = torch.copysign(torch.special.ndtri(p), p_below - p_above)
    return z * (1.0 - 2.0 * mirrored), deep


class StandardQuantile(torch.autograd.Function):
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
            z = z.index_put((deep,), quantile_in_log_space(a, b, log_normal_mass_value(a, b, width[deep]),
                                                              below[deep], above[deep]))
        z = torch.clamp(z, min=alpha, max=beta)
        ctx.save_for_backward(alpha, beta, q, width, z)
        return z

    @staticmethod
    def backward(ctx, grad):
        alpha, beta, q, width, z = ctx.saved_tensors
        log_pdf_z = log_normal_pdf(z)
        d_alpha = density_over_mass(alpha, log_pdf_z - torch.log1p(-q))
        d_beta = density_over_mass(beta, log_pdf_z - torch.log(q))
        d_q = torch.exp(log_normal_mass_value(alpha, beta, width) - log_pdf_z)
        return chain(grad, d_alpha), chain(grad, d_beta), chain(grad, d_q), None



def quantile_in_log_space(
    alpha: torch.Tensor, beta: torch.Tensor, log_mass: torch.Tensor, below: torch.Tensor, above: torch.Tensor
) -> torch.Tensor:
    r"""Solve :math:`F(z) = q` in log space, for masses too small for probabilities.

    :math:`\log\Phi(z) = \mathrm{logaddexp}(\log\Phi(\alpha), \log q + \log Z)`, or reflected,
    :math:`\log\Phi(-z) = \mathrm{logaddexp}(\log\Phi(-\beta), \log(1-q) + \log Z)`, whichever
    is below :math:`\log\frac12`, inverted by :func:`mathkit.numerics.ndtri_exp`.
    """
    lower = torch.logaddexp(log_ndtr(alpha), torch.log(below) + log_mass)
    upper = torch.logaddexp(log_ndtr(-beta), torch.log(above) + log_mass)
    right = (alpha > 0) | (lower > -math.log(2.0))
    z = ndtri_exp(torch.where(right, upper, lower).clamp(max=0.0))
    return torch.where(right, -z, z)


