r"""Wald intervals for positive parameters fitted on the log scale.

With :math:`\hat\theta` the log-parameters and :math:`\Sigma = \mathcal{I}(\hat\theta)^{-1}` the
inverse observed information, the interval for :math:`e^{\theta_j}` is
:math:`\exp(\hat\theta_j \pm z\sqrt{\Sigma_{jj}})`, and for :math:`R_0 = \beta/\gamma`, with
:math:`\log R_0 = \theta_1 - \theta_2` linear in :math:`\theta`, the delta method is exact:
:math:`\mathrm{Var} = \Sigma_{11} + \Sigma_{22} - 2\Sigma_{12}`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import warnings

import numpy as np
from scipy import stats

from mathkit.epi.optimise import Derivatives, levenberg_marquardt

__all__ = ["inverse_information", "wald_intervals", "profile_interval", "profile_intervals"]


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


def profile_interval(
    evaluate: Callable[[np.ndarray], Derivatives],
    theta: np.ndarray,
    information: np.ndarray,
    direction: np.ndarray,
    level: float,
    tol: float = 1e-2,
    max_steps: int = 8,
) -> tuple[float, float]:
    r"""Profile-likelihood interval for :math:`\psi = c^\top\theta` (on the log scale).

    The interval is :math:`\{\psi : 2(\ell(\hat\theta) - \max_{c^\top\theta = \psi}\ell(\theta))
    \le \chi^2_{1,\mathrm{level}}\}`. Each end solves :math:`r(\psi) = \pm z` for the signed root
    :math:`r(\psi) = \mathrm{sign}(\psi - \hat\psi)\sqrt{2(\ell(\hat\theta) - \ell_p(\psi))}`,
    nearly linear in :math:`\psi`, by secant steps from the Wald end, to :math:`|r \mp z| <`
    ``tol``. The other parameters are re-fitted at each :math:`\psi` (Levenberg-Marquardt on
    the plane :math:`c^\top\theta = \psi`), from their linear prediction under the Wald
    approximation. Unlike the Wald interval it follows a skewed likelihood, and it is the same
    whatever monotone scale :math:`\psi` is reported on. NaN ends where the root is not found.

    ``evaluate`` returns :class:`~mathkit.epi.optimise.Derivatives` of the negative
    log-likelihood; ``information`` is the observed information at the optimum ``theta``.
    """
    z = stats.norm.ppf(0.5 + level / 2)
    c = np.asarray(direction, dtype=float)
    basis = np.linalg.svd(c[None, :])[2][1:].T  # orthonormal, spans the plane c' theta = 0
    shift = c / (c @ c)
    reduced = basis.T @ information @ basis
    # where the other parameters go, per unit of psi, under the quadratic approximation
    slope = -np.linalg.solve(reduced, basis.T @ information @ shift)
    centre = float(c @ theta)
    best = evaluate(theta).value
    se = float(np.sqrt(c @ np.linalg.solve(information, c)))

    def signed_root(psi: float) -> float:
        offset = psi - centre
        start = offset * slope

        def on_plane(u: np.ndarray) -> Derivatives:
            d = evaluate(theta + offset * shift + basis @ u)
            return Derivatives(d.value, basis.T @ d.gradient, basis.T @ d.information @ basis, d.resolution)

        unbounded = np.full(len(start), np.inf)
        profile = levenberg_marquardt(on_plane, start, -unbounded, unbounded, tol=tol)
        return float(np.sign(offset) * np.sqrt(max(2 * (profile.value - best), 0.0)))

    ends = []
    for side in (-1.0, 1.0):
        previous = (centre, 0.0)
        psi = centre + side * z * se
        end = np.nan
        for _ in range(max_steps):
            try:
                root = signed_root(psi)
            except (RuntimeError, np.linalg.LinAlgError):
                break
            if abs(root - side * z) < tol:
                end = psi
                break
            if root * side <= 0 or root == previous[1]:  # the profile is flat or turned: no end here
                break
            previous, psi = (psi, root), psi + (side * z - root) * (psi - previous[0]) / (root - previous[1])
        ends.append(end)
    return float(ends[0]), float(ends[1])


def profile_intervals(
    evaluate: Callable[[np.ndarray], Derivatives],
    theta: np.ndarray,
    information: np.ndarray,
    names: Sequence[str],
    level: float,
    wald: dict[str, tuple[float, float]],
) -> dict[str, tuple[float, float]]:
    """Profile-likelihood intervals for every ``exp(theta_j)`` and for ``r0``, as :func:`wald_intervals`.

    Where the Wald interval is NaN (a parameter not identified) it stays NaN; an end the
    profile search does not find keeps the Wald end.
    """
    eye = np.eye(len(theta))
    directions = {name: eye[j] for j, name in enumerate(names)} | {"r0": eye[0] - eye[1]}
    ci = {}
    for name, direction in directions.items():
        if np.isnan(wald[name]).any():
            ci[name] = wald[name]
            continue
        ends = profile_interval(evaluate, theta, information, direction, level)
        ci[name] = tuple(
            float(np.exp(end)) if np.isfinite(end) else fallback for end, fallback in zip(ends, wald[name])
        )
    return ci
