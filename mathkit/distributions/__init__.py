r"""Bounded and censored laws as ``torch.distributions.Distribution`` subclasses.

- ``TruncatedNormal``: :math:`N(\mu, \sigma^2)` conditioned on :math:`[\ell, h]`;
- ``CensoredNormal``: the Tobit law of :math:`\mathrm{clamp}(X, \ell, h)`, :math:`X \sim N(\mu,\sigma^2)`;
- ``GeneralizedBeta``: :math:`\ell + (h - \ell)B`, :math:`B \sim \mathrm{Beta}(\alpha, \beta)`.

All follow torch's contract: ``arg_constraints``, a ``support`` that depends on
the bounds, broadcasting of every parameter into ``batch_shape``, ``expand``,
and ``validate_args`` errors in torch's wording. Each offers ``log_cdf`` and
``log_sf`` (log survival) besides ``log_prob``, so that censored likelihoods
(:func:`mathkit.losses.censored_nll`) compose with any of them.

Internally everything is computed in float64 with the log-space kernels of
``mathkit._standard_normal`` and returned in the parameters' dtype, so float32 models
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

Layout: one law per module (``truncated_normal``, ``censored_normal``, ``generalized_beta``);
``_bounded_law`` (the template all three follow), ``_normal_on_interval`` (the base of the
two normal laws), ``_constraints``, ``_standardization`` (z-space plumbing); the math of
N(0, 1) truncated to :math:`[\alpha, \beta]` in ``_truncated_standard_tails``, ``_quantile``,
``_draws`` and ``_moments``; the incomplete beta function in ``_incomplete_beta``. The
standard normal kernels they share with :mod:`mathkit.numerics` live in
``mathkit._standard_normal``.
"""

from mathkit.distributions.censored_normal import CensoredNormal
from mathkit.distributions.generalized_beta import GeneralizedBeta
from mathkit.distributions.truncated_normal import TruncatedNormal

__all__ = ["TruncatedNormal", "CensoredNormal", "GeneralizedBeta"]
