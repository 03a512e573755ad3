"""``TruncatedNormal``: the normal law conditioned on an interval.

The torch plumbing lives here; the math, in standard form, in the ``_truncated_standard_*``
modules (tails, quantile, draws, moments) and in ``mathkit._standard_normal``.
"""

from __future__ import annotations

import torch
from torch.distributions.utils import lazy_property

from mathkit._standard_normal import HALF_LOG_2PI, log_normal_mass_in_bulk
from mathkit.distributions._bounded_law import outside_support
from mathkit.distributions._normal_on_interval import NormalOnInterval
from mathkit.distributions._standardization import Standardized, f64
from mathkit.distributions._truncated_standard_draws import standard_draws
from mathkit.distributions._truncated_standard_moments import truncated_standard_moments
from mathkit.distributions._truncated_standard_quantile import standard_quantile
from mathkit.distributions._truncated_standard_tails import log_tail

__all__ = ["TruncatedNormal"]


class TruncatedNormal(NormalOnInterval):
    r"""The normal law :math:`N(\mu, \sigma^2)` restricted to :math:`[\ell, h]`.

    With :math:`\alpha = (\ell-\mu)/\sigma`, :math:`\beta = (h-\mu)/\sigma` and the
    mass :math:`Z = \Phi(\beta) - \Phi(\alpha)`,

    .. math::
        p(x) = \frac{\phi\big((x-\mu)/\sigma\big)}{\sigma Z}, \quad
        F(x) = \frac{\Phi\big((x-\mu)/\sigma\big) - \Phi(\alpha)}{Z}, \qquad \ell \le x \le h.

    :math:`\log Z`, :math:`\log F` and :math:`\log(1-F)` come, in the bulk (masses of at least
    1/128 between the points involved), from differences of :math:`\mathrm{erf}` values
    (relative error below 2.3e-14, a few vectorised passes), elsewhere from
    :func:`mathkit.numerics.log_normal_mass` (tail reflection, log space where
    probabilities underflow); the smaller of :math:`F`, :math:`1-F` is always
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

    ``rsample`` inverts the cdf at one uniform :math:`u` per draw,
    :math:`\Phi(z) = (1-u)\Phi(\alpha) + u\Phi(\beta)`: by ``erfinv`` of the same equation in
    erf terms where :math:`|z| \le 3`, else, as ``icdf`` always does,
    on the side of 0 where the endpoint
    probabilities are lower tails, relatively exact (the interval or its mirror image):
    there :math:`\Phi(z) = (1-u)\Phi(\alpha) + u\Phi(\beta)` (for the mirror image,
    :math:`-\beta` and :math:`-\alpha`) is a sum of positive terms, inverted by
    ``ndtri``; where those probabilities approach underflow (masses below 1e-290), the same
    equation is solved in log space by :func:`mathkit.numerics.ndtri_exp`. Draws
    are exact in the far tails, reparameterised (gradients reach all four
    parameters), and clamped into :math:`[\ell, h]` against the last rounding.
    Without gradients (``sample``, or ``rsample`` under ``torch.no_grad``), in a batch
    (slice) that holds an interval whose near end is 8 or more standard deviations out,
    the intervals from 3 standard deviations out are drawn instead by Robert's
    (1995) exponential rejection sampler, exact and free of special functions. Every
    operation runs the same math with or without gradients; without them, long batches
    are processed in cache-sized slices with no full-size intermediates. Both paths first draw
    one uniform per element, so for a given seed they agree except where rejection runs (there
    the draws differ, each from the same law); which path runs depends
    only on whether gradients are needed, never on what an earlier call computed, so
    ``sample()`` after a seed gives the same draws whatever was computed before. ``icdf`` has
    the implicit gradients of :math:`F(x) = q` in all four parameters and in :math:`q`.
    Burkardt, *The truncated normal distribution* (2014) collects the formulas.

    Args:
        loc, scale: :math:`\mu` and :math:`\sigma > 0`.
        low, high: the bounds :math:`\ell < h`; ``-inf``/``inf`` for one-sided or no truncation.
        validate_args: as in ``torch.distributions``.

    All four parameters broadcast to ``batch_shape``; Python numbers and integer or bool
    tensors become the floating dtype of the other parameters (torch's default dtype if
    none is floating). ``loc`` must be finite, ``scale`` finite and positive.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)  # every value is inside the support
        return self._in_z_space(self._standard_log_prob, value)

    def _standard_log_prob(self, s: Standardized) -> torch.Tensor:
        r""":math:`\log\phi(z) - \log\sigma - \log Z`; ``-inf`` outside :math:`[\ell, h]` (excluded when validating)."""
        log_mass = log_normal_mass_in_bulk(s.alpha, s.beta, s.width_at)
        z = s.z
        # -(log sigma + log Z) - log(2 pi)/2 - z^2/2, in four passes
        log_p = torch.rsub(torch.log(s.scale).add_(log_mass), -HALF_LOG_2PI).addcmul_(z, z, value=-0.5)
        return log_p if self._validate_args else outside_support(log_p, s.value, s.low, s.high)

    def _log_tail(self, value: torch.Tensor, upper: bool) -> torch.Tensor:
        return self._in_z_space(lambda s: log_tail(s, upper), value)

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        self._check_probability(value)
        return self._in_z_space(self._standard_icdf, value)

    @staticmethod
    def _standard_icdf(s: Standardized) -> torch.Tensor:
        """:math:`\\mu + \\sigma z_q`, clamped into :math:`[\\ell, h]` against the last rounding (``s.value`` is q)."""
        z = standard_quantile(s.alpha, s.beta, s.value, s.width)
        return torch.clamp(torch.addcmul(s.loc, s.scale, z), min=s.low, max=s.high)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self._in_z_space(self._standard_draw, sample_shape=torch.Size(sample_shape))

    @staticmethod
    def _standard_draw(s: Standardized) -> torch.Tensor:
        # float64 -> dtype rounds monotonically, so a draw inside [low, high] stays inside
        return torch.clamp(torch.addcmul(s.loc, s.scale, standard_draws(s.alpha, s.beta)), min=s.low, max=s.high)

    # ------------------------------------------------------------- moments
    @lazy_property
    def _standard_moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and entropy of N(0, 1) truncated to [alpha, beta] (float64)."""
        return truncated_standard_moments(*self._standard_bounds())

    @property
    def mean(self) -> torch.Tensor:
        return self._out(f64(self.loc) + f64(self.scale) * self._standard_moments[0])

    @property
    def mode(self) -> torch.Tensor:
        return torch.maximum(torch.minimum(self.loc, self.high), self.low)

    @property
    def variance(self) -> torch.Tensor:
        return self._out(f64(self.scale) ** 2 * self._standard_moments[1])

    def entropy(self) -> torch.Tensor:
        return self._out(torch.log(f64(self.scale)) + self._standard_moments[2])
