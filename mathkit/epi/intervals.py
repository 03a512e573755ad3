r"""Wald intervals for positive parameters fitted on the log scale.

With :math:`\hat\theta` the log-parameters and :math:`\Sigma = \mathcal{I}(\hat\theta)^{-1}` the
inverse observed information, the interval for :math:`e^{\theta_j}` is
:math:`\exp(\hat\theta_j \pm z\sqrt{\Sigma_{jj}})`, and for :math:`R_0 = \beta/\gamma`, with
:math:`\log R_0 = \theta_1 - \theta_2` linear in :math:`\theta`, the delta method is exact:
:math:`\mathrm{Var} = \Sigma_{11} + \Sigma_{22} - 2\Sigma_{12}`.
"""

from __future__ import annotations

from collections.abc import Sequence
import warnings

import numpy as np
from scipy import stats

__all__ = ["inverse_information", "wald_intervals"]


def inverse_information(information: np.ndarray, unidentified: Sequence[bool]) -> np.ndarray:
    """Covariance of the log-parameters; NaN rows for unidentified ones, or all NaN if singular.

    The unidentified parameters (at a bound of the search) are held fixed: the covariance of
    the others is the inverse of their own block, and the unidentified rows are NaN.
    """
    held = np.asarray(unidentified, dtype=bool)
    free = ~held
    cov = np.full_like(information, np.nan)
    try:
        factor = np.linalg.cholesky(information[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        warnings.warn(
            "the observed information is not positive definite at the optimum "
            "(a parameter is not identified by these data); intervals are NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return cov
    inverse_factor = np.linalg.inv(factor)
    cov[np.ix_(free, free)] = inverse_factor.T @ inverse_factor
    return cov


def wald_intervals(
    theta: np.ndarray, cov: np.ndarray, names: Sequence[str], level: float
) -> dict[str, tuple[float, float]]:
    """Intervals ``name -> (low, high)`` for every ``exp(theta_j)`` and for ``r0 = exp(theta_0 - theta_1)``."""
    z = stats.norm.ppf(0.5 + level / 2)

    def interval(log_value: float, variance: float) -> tuple[float, float]:
        half = z * np.sqrt(variance)
        return float(np.exp(log_value - half)), float(np.exp(log_value + half))

    ci = {name: interval(theta[j], cov[j, j]) for j, name in enumerate(names)}
    ci["r0"] = interval(theta[0] - theta[1], cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return ci
