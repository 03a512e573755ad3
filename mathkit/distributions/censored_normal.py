"""``CensoredNormal``: the Tobit law of a normal variable clamped to an interval."""

from __future__ import annotations

import math

import torch
from torch.distributions.utils import lazy_property

from mathkit._standard_normal import log_ndtr, log_normal_mass, log_normal_pdf
from mathkit.distributions._bounded_law import outside_support
from mathkit.distributions._normal_on_interval import NormalOnInterval
from mathkit.distributions._standardization import Standardized, f64
from mathkit.distributions._truncated_standard_moments import finite_or_zero, truncated_standard_moments

__all__ = ["CensoredNormal"]


class CensoredNormal(NormalOnInterval):
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


    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self._in_z_space(_standard_log_prob, value)

    def _log_tail(self, value: torch.Tensor, upper: bool) -> torch.Tensor:
        return self._in_z_space(lambda s: _standard_log_tail(s, upper), value)

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        """The smallest ``y`` with :math:`P(Y \\le y) \\ge q`: the normal quantile clamped to the bounds."""
        self._check_probability(value)
        return self._in_z_space(_standard_icdf, value)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return torch.clamp(self.loc + self.scale * eps, min=self.low, max=self.high)

    @lazy_property
    def _standard_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`E[C]` and :math:`\log\mathrm{Var}[C]` for :math:`C = \mathrm{clamp}(Z, \alpha, \beta)`, :math:`Z \sim N(0,1)`.

        :math:`C` mixes the atom :math:`\alpha` (mass :math:`p_\ell = \Phi(\alpha)`), the normal law
        truncated to :math:`[\alpha, \beta]` (mass :math:`p_m`, mean :math:`m`, variance :math:`v`,
        from :func:`truncated_standard_moments`) and the atom :math:`\beta` (:math:`p_h = \Phi(-\beta)`).
        By the law of total variance, with the spread of the component means written pairwise,

        .. math::
            \mathrm{Var}[C] = p_m v + p_\ell p_m (m - \alpha)^2 + p_m p_h (\beta - m)^2
            + p_\ell p_h (\beta - \alpha)^2,

        a sum of positive terms, taken in log space: :math:`E[C^2] - E[C]^2` cancels to 0 when one
        atom holds nearly all the mass, and its square root then has a NaN gradient.
        """
        alpha, beta, width = self._standard_bounds()
        finite_a, finite_b = torch.isfinite(alpha), torch.isfinite(beta)
        a, b = finite_or_zero(alpha), finite_or_zero(beta)
        log_low, log_high = log_ndtr(alpha), log_ndtr(-beta)
        log_inner = log_normal_mass(alpha, beta, width)
        inner_mean, inner_var, _ = truncated_standard_moments(alpha, beta, width)
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
        return self._out(f64(self.loc) + f64(self.scale) * self._standard_moments[0])

    @property
    def variance(self) -> torch.Tensor:
        return self._out(torch.exp(self._log_variance))

    @property
    def stddev(self) -> torch.Tensor:
        return self._out(torch.exp(0.5 * self._log_variance))

    @property
    def _log_variance(self) -> torch.Tensor:
        return 2.0 * torch.log(f64(self.scale)) + self._standard_moments[1]




def _standard_log_prob(s: Standardized) -> torch.Tensor:
    r""":math:`\log\Phi(\alpha)` at :math:`y = \ell`, :math:`\log\Phi(-\beta)` at :math:`y = h`, the normal
    log density inside, ``-inf`` outside."""
    z = s.z
    density = log_normal_pdf(z) - torch.log(s.scale)
    at_low = (s.value == s.low) & torch.isfinite(s.low)
    at_high = (s.value == s.high) & torch.isfinite(s.high)
    # z at the bounds is alpha or beta; the masses Phi(alpha), Phi(-beta) come from it
    log_p = torch.where(at_low, log_ndtr(z), torch.where(at_high, log_ndtr(-z), density))
    return outside_support(log_p, s.value, s.low, s.high)


def _standard_log_tail(s: Standardized, upper: bool) -> torch.Tensor:
    r""":math:`\log P(Y \le y) = \log\Phi(z)` for :math:`\ell \le y < h` (``-inf`` below :math:`\ell`, 0 from
    :math:`h` on), or :math:`\log P(Y > y) = \log\Phi(-z)` there (0 below :math:`\ell`, ``-inf`` from :math:`h` on)."""
    z = s.z
    below, above = (-math.inf, 0.0) if not upper else (0.0, -math.inf)
    inside = log_ndtr(-z if upper else z)
    return torch.where(s.value < s.low, below, torch.where(s.value >= s.high, above, inside))


def _standard_icdf(s: Standardized) -> torch.Tensor:
    """:math:`\\mu + \\sigma\\,\\Phi^{-1}(q)` clamped to :math:`[\\ell, h]` (``s.value`` is q)."""
    return torch.clamp(s.loc + s.scale * torch.special.ndtri(s.value), min=s.low, max=s.high)
