r"""Minimising a likelihood within bounds by Levenberg-Marquardt steps on its information.

Each step solves :math:`(H + \lambda D)\,s = -g` on the parameters that are free (not held at a
bound by a gradient pointing outwards), with :math:`H` the information (a positive semi-definite
curvature of the objective), :math:`g` the gradient and :math:`D = \mathrm{diag}(H)`, so the
steps do not depend on the units of the parameters (Marquardt's scaling). :math:`\lambda` follows
the ratio of actual to predicted decrease (Nielsen's rule). The ratio is only read above the
objective's own resolution (an ODE solve is accurate to a tolerance, not to the last bit).

Convergence is judged by the projected gradient in the norm of the inverse information,

.. math::

    \delta = \sqrt{g_F^\top H_{FF}^{-1} g_F},

the Newton decrement: the distance to the optimum in standard errors, whatever the scale of the
objective or of the parameters. A likelihood whose gradient is 1e4 at the start is far from
its optimum only if that gradient is large against its curvature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple
import warnings

import numpy as np

__all__ = [
    "ConvergenceWarning",
    "Derivatives",
    "OptimisationResult",
    "MultiStartResult",
    "levenberg_marquardt",
    "minimise_from_starts",
]


class ConvergenceWarning(RuntimeWarning):
    """An optimisation stopped before its convergence test was met (the estimate may be off)."""


class Derivatives(NamedTuple):
    """What the optimiser needs at a point: the objective, its gradient and information.

    ``resolution`` is how precisely the objective is known (differences below it are noise).
    """

    value: float
    gradient: np.ndarray
    information: np.ndarray
    resolution: float


class OptimisationResult(NamedTuple):
    """Where an optimisation stopped, and whether its convergence test was met."""

    x: np.ndarray
    value: float
    decrement: float
    converged: bool
    n_iterations: int
    message: str


class MultiStartResult(NamedTuple):
    """The best of several runs, and how the runs went."""

    best: OptimisationResult
    n_starts: int
    n_converged: int
    best_start: int


def free_parameters(x: np.ndarray, gradient: np.ndarray, lower: np.ndarray, upper: np.ndarray):
    """Parameters not held at a bound by a gradient that pushes them out of the box."""
    at_lower = (x <= lower) & (gradient > 0)
    at_upper = (x >= upper) & (gradient < 0)
    return ~(at_lower | at_upper)


def newton_decrement(gradient: np.ndarray, information: np.ndarray) -> float:
    r""":math:`\sqrt{g^\top H^{-1} g}`; inf if :math:`H` is not positive definite."""
    if gradient.size == 0:
        return 0.0
    try:
        factor = np.linalg.cholesky(information)
    except np.linalg.LinAlgError:
        return np.inf
    return float(np.linalg.norm(np.linalg.solve(factor, gradient)))


def _marquardt_step(gradient: np.ndarray, information: np.ndarray, damping: float) -> np.ndarray:
    """Solve (H + damping diag|H|) s = -g in Marquardt's scaled coordinates.

    Where H is indefinite (an observed curvature far from the optimum), the damping is
    raised by its most negative scaled eigenvalue for this step only.
    """
    scale = np.sqrt(np.maximum(np.abs(np.diag(information)), 1e-12 * np.abs(information).max() + 1e-300))
    scaled = information / np.outer(scale, scale)
    shift = damping + max(0.0, -float(np.linalg.eigvalsh(scaled)[0]))
    return -np.linalg.solve(scaled + shift * np.eye(len(scale)), gradient / scale) / scale


def _computable(here: Derivatives) -> bool:
    """Whether the objective, its gradient and its information are all finite (a step can follow)."""
    return bool(
        np.isfinite(here.value) and np.isfinite(here.gradient).all() and np.isfinite(here.information).all()
    )


def levenberg_marquardt(
    evaluate: Callable[[np.ndarray], "Derivatives"],
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    tol: float = 1e-3,
    max_iterations: int = 100,
) -> OptimisationResult:
    """Minimise within the box [lower, upper] from ``x0``; converged when the decrement < ``tol``.

    ``evaluate(x)`` returns :class:`Derivatives`; it may raise ``RuntimeError`` or return a
    non-finite value, gradient or information where the objective cannot be computed (a step
    there is refused). Raises ``RuntimeError`` if that is so at ``x0``.
    """
    x = np.clip(np.asarray(x0, dtype=float), lower, upper)
    here = evaluate(x)
    if not _computable(here):
        raise RuntimeError(f"the objective, its gradient or its information is not finite at the start {x}")
    damping, growth = 1.0, 2.0
    for iteration in range(1, max_iterations + 1):
        free = free_parameters(x, here.gradient, lower, upper)
        gradient, information = here.gradient[free], here.information[np.ix_(free, free)]
        decrement = newton_decrement(gradient, information)
        if decrement < tol:
            return OptimisationResult(x, here.value, decrement, True, iteration - 1, "converged")
        while True:
            if damping > 1e12:
                return OptimisationResult(
                    x, here.value, decrement, False, iteration, "no step decreases the objective"
                )
            step = _marquardt_step(gradient, information, damping)
            trial = x.copy()
            trial[free] += step
            trial = np.clip(trial, lower, upper)
            move = trial - x
            predicted = -(here.gradient @ move + 0.5 * move @ here.information @ move)
            try:
                there = evaluate(trial)
            except RuntimeError:
                there = None
            actual = there.value if there is not None and _computable(there) else np.inf
            actual = here.value - actual if np.isfinite(actual) else -np.inf
            if actual > 1e-4 * predicted - here.resolution:
                ratio = min(max(actual / max(predicted, 1e-300), 0.0), 1.0)
                damping *= max(1 / 3, 1 - (2 * ratio - 1) ** 3)
                growth = 2.0
                x, here = trial, there
                break
            damping, growth = damping * growth, growth * 2
    free = free_parameters(x, here.gradient, lower, upper)
    decrement = newton_decrement(here.gradient[free], here.information[np.ix_(free, free)])
    converged = decrement < tol
    return OptimisationResult(
        x, here.value, decrement, converged, max_iterations,
        "converged" if converged else f"stopped after {max_iterations} iterations",
    )


def minimise_from_starts(
    evaluate: Callable[[np.ndarray], Derivatives],
    starts: Sequence[np.ndarray],
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    n_explore: int = 1,
    tol: float = 1e-3,
    max_iterations: int = 100,
) -> MultiStartResult:
    """Run :func:`levenberg_marquardt` from the first ``n_explore`` starts, then from the
    following ones only until a run converges; the lowest converged minimum wins (the
    earliest start that reached it, to within 1e-3).

    Several starts guard against local minima (a likelihood can have more than one); the
    later ones are restarts for runs that stopped early; a start where the objective cannot be
    computed counts as a run that stopped there. If none converged, the lowest objective reached
    is returned with a :class:`ConvergenceWarning`.
    """
    results = []
    for k, start in enumerate(starts):
        if k >= n_explore and any(r.converged for r in results):
            break
        try:
            result = levenberg_marquardt(evaluate, start, lower, upper, tol=tol, max_iterations=max_iterations)
        except RuntimeError as error:  # the objective cannot be computed at this start
            result = OptimisationResult(np.asarray(start, float), np.inf, np.inf, False, 0, str(error))
        results.append(result)
    n_converged = sum(r.converged for r in results)
    # a converged run beats any that stopped early; among those, the lowest objective, and of
    # minima equal to within 1e-3 (the same optimum, up to the objective's noise) the earliest
    pool = [k for k, r in enumerate(results) if r.converged] or list(range(len(results)))
    lowest = min(results[k].value for k in pool)
    best_start = next(k for k in pool if results[k].value <= lowest + 1e-3)
    best = results[best_start]
    if n_converged:
        return MultiStartResult(best, len(results), n_converged, best_start)
    warnings.warn(
        f"the fit did not converge from {len(results)} starts ({best.message}; the gradient is "
        f"{best.decrement:.3g} standard errors from zero, the test is {tol:g}): the estimates "
        "may be off",
        ConvergenceWarning,
        stacklevel=3,
    )
    return MultiStartResult(best, len(results), n_converged, best_start)
