r"""Wald and profile-likelihood intervals for positive parameters fitted on the log scale.

With :math:`\hat\theta` the log-parameters and :math:`\Sigma = \mathcal{I}(\hat\theta)^{-1}` the
inverse observed information, the Wald interval for :math:`e^{\theta_j}` is
:math:`\exp(\hat\theta_j \pm q\sqrt{\Sigma_{jj}})`, and for :math:`R_0 = \beta/\gamma`, with
:math:`\log R_0 = \theta_1 - \theta_2` linear in :math:`\theta`, the delta method is exact:
:math:`\mathrm{Var} = \Sigma_{11} + \Sigma_{22} - 2\Sigma_{12}`.

The profile-likelihood interval for :math:`\psi = c^\top\theta` is the set of :math:`\psi` whose
signed root :math:`r(\psi) = \mathrm{sign}(\psi - \hat\psi)\sqrt{2(\ell(\hat\theta) - \ell_p(\psi))}`,
with :math:`\ell_p(\psi) = \max_{c^\top\theta = \psi}\ell(\theta)`, lies within :math:`\pm q`. It
follows a likelihood that is not quadratic (a long ridge, as the SIR likelihood has along
:math:`\beta - \gamma` fixed when the series is short), where the Wald interval is too narrow.

The quantile :math:`q` is the normal one, :math:`z_{(1+\mathrm{level})/2}`, when the count law
has no free scale (Poisson); when a dispersion is estimated as well, it is Student's
:math:`t_{n-p,(1+\mathrm{level})/2}` on the residual degrees of freedom (:math:`n` counts,
:math:`p` fitted parameters), the small-sample reference of the profile-:math:`t` statistic of
nonlinear regression with an estimated scale :cite:p:`bates1988nonlinear`: the normal reference
ignores that the scale is itself estimated from few points (and the maximum-likelihood size of a
short negative-binomial series is biased upwards, so the curvature is too large).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import warnings

import numpy as np
from scipy import stats

from mathkit.epi.optimise import Derivatives, levenberg_marquardt

__all__ = [
    "inverse_information",
    "interval_quantile",
    "wald_intervals",
    "profile_interval",
    "profile_intervals",
]

# secant steps per end of a profile interval, and Levenberg-Marquardt iterations per profile point
_PROFILE_STEPS = 12
_PROFILE_ITERATIONS = 50
# the profile search moves psi at most this factor from its estimate (and stays within the box):
# along the beta-gamma ridge of a short series, R0 at k times its estimate needs gamma near 1/k
# of its own, and a factor 20 cut some intervals short (benchmarks/RESULTS.md)
PROFILE_REACH = 1000.0


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


def interval_quantile(level: float, residual_df: float | None = None) -> float:
    r"""The two-sided quantile of an interval: normal, or Student's t on ``residual_df`` (>= 1).

    ``residual_df`` is ``None`` when no scale is estimated (the normal quantile), else
    :math:`n - p`; fewer than one residual degree of freedom counts as one.
    """
    if residual_df is None:
        return float(stats.norm.ppf(0.5 + level / 2))
    return float(stats.t.ppf(0.5 + level / 2, max(residual_df, 1.0)))


def wald_intervals(
    theta: np.ndarray, cov: np.ndarray, names: Sequence[str], quantile: float
) -> dict[str, tuple[float, float]]:
    """Intervals ``name -> (low, high)`` for every ``exp(theta_j)`` and for ``r0 = exp(theta_0 - theta_1)``."""

    def interval(log_value: float, variance: float) -> tuple[float, float]:
        half = quantile * np.sqrt(variance)
        return float(np.exp(log_value - half)), float(np.exp(log_value + half))

    ci = {name: interval(theta[j], cov[j, j]) for j, name in enumerate(names)}
    ci["r0"] = interval(theta[0] - theta[1], cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return ci


def profile_interval(
    evaluate: Callable[[np.ndarray], Derivatives],
    theta: np.ndarray,
    information: np.ndarray,
    direction: np.ndarray,
    quantile: float,
    lower: np.ndarray,
    upper: np.ndarray,
    tol: float = 1e-2,
    reach: float = PROFILE_REACH,
) -> tuple[float, float]:
    r"""Profile-likelihood interval for :math:`\psi = c^\top\theta` (on the log scale).

    Each end solves :math:`r(\psi) = \pm q` (``quantile``) for the signed root
    :math:`r(\psi)`, by secant steps from the Wald end (once the end is bracketed, regula falsi,
    with a bisection whenever the outer point has stayed put for two steps), to
    :math:`|r \mp q| <` ``tol``; if the steps run out with the end bracketed, the end is the
    bracket's outer point. At each :math:`\psi` the parameters other than a pivot
    :math:`j` (with :math:`c_j \ne 0`) are re-fitted within their box ``[lower, upper]`` by
    Levenberg-Marquardt, and :math:`\theta_j = (\psi - \sum_{i \ne j} c_i\theta_i)/c_j`. The
    starts are the linear predictions of the Wald (quadratic) approximation from the last point
    inside :math:`\pm q` and from the last point computed, the nearer first (those points' own
    solutions where neither can be computed); the first run that lands inside :math:`\pm q` is
    taken, else the lower minimum (a run stuck in a poor local minimum makes :math:`r` too
    large, a false end).
    :math:`\psi` stays within a factor ``reach`` of its estimate,
    :math:`|\psi - \hat\psi| \le \log` ``reach``, and within what the box allows; the re-fitted
    parameters are bounded by the box alone (a tighter bound on them would make :math:`r`
    rise where the likelihood does not, and give a false end). Where :math:`r` stays inside
    :math:`\pm q` up to the edge of that range, the likelihood does not bound :math:`\psi` on that side and the
    end is :math:`\mp\infty`. A :math:`\psi` where the likelihood cannot be computed
    (``evaluate`` raises ``RuntimeError`` from every start: for the SIR likelihood, an ODE solve over its step budget,
    :class:`~mathkit.epi.solver.SolveBudgetError`, at rates far beyond the data's) counts as
    the edge of the range: beyond the points computed, so the end is open (:math:`\mp\infty`)
    if :math:`r` is still inside :math:`\pm q` there. NaN where the search fails otherwise (a
    singular system, or no end within its steps).

    ``evaluate`` returns :class:`~mathkit.epi.optimise.Derivatives` of the negative
    log-likelihood; ``information`` is the observed information at the optimum ``theta``.
    """
    c = np.asarray(direction, dtype=float)
    pivot = int(np.flatnonzero(c)[0])
    others = np.delete(np.arange(len(theta)), pivot)
    # theta(psi, u) = psi * a + G u: the others are u, the pivot is what c'theta = psi leaves
    a = np.zeros(len(theta))
    a[pivot] = 1.0 / c[pivot]
    embed = np.zeros((len(theta), len(others)))
    embed[others, np.arange(len(others))] = 1.0
    embed[pivot] = -c[others] / c[pivot]
    reduced = embed.T @ information @ embed
    # where the others go, per unit of psi, under the quadratic approximation
    slope = -np.linalg.solve(reduced, embed.T @ information @ a)
    centre = float(c @ theta)
    best = evaluate(theta).value
    se = float(np.sqrt(c @ np.linalg.solve(information, c)))
    near = np.log(reach)
    box = (lower[others], upper[others])
    # the range of psi that the box allows, and the reach
    span = (
        max(np.where(c > 0, lower, upper) @ c, centre - near),
        min(np.where(c > 0, upper, lower) @ c, centre + near),
    )

    def signed_root(
        psi: float, starts: list[np.ndarray], fallbacks: list[np.ndarray]
    ) -> tuple[float, np.ndarray]:
        """r(psi) and the re-fitted others: the lowest minimum from ``starts``, in turn until one
        lands inside +-q (a point inside needs no second opinion; one outside does, since a run
        stuck in a poor local minimum makes r too large and would end the interval early); from
        ``fallbacks`` only where the likelihood cannot be computed from any of ``starts``."""

        def on_plane(u: np.ndarray) -> Derivatives:
            d = evaluate(psi * a + embed @ u)
            # an information with inf entries (a solve that underflowed) gives NaN here, which the
            # optimiser refuses as not computable: no warning for the user
            with np.errstate(invalid="ignore", over="ignore"):
                return Derivatives(d.value, embed.T @ d.gradient, embed.T @ d.information @ embed, d.resolution)

        value, x = np.inf, None
        for group in (starts, fallbacks):
            for start in group:
                try:
                    profile = levenberg_marquardt(
                        on_plane, np.clip(start, *box), *box, tol=tol, max_iterations=_PROFILE_ITERATIONS
                    )
                except RuntimeError:
                    continue
                if profile.value < value:
                    value, x = profile.value, profile.x
                if 2 * (value - best) < quantile**2:
                    break
            if x is not None:
                break
        if x is None:
            raise RuntimeError(f"the likelihood cannot be computed at psi = {psi:.6g} from any start")
        return float(np.sign(psi - centre) * np.sqrt(max(2 * (value - best), 0.0))), x

    ends = []
    for side in (-1.0, 1.0):
        edge = float(span[0] if side < 0 else span[1])
        # the two last points with |r| < q (the centre first), and the first one with |r| > q
        inside, previous, outside = (centre, 0.0), None, None
        last, u = centre, theta[others].copy()
        u_inside = u  # the others at the last point inside
        psi, end = centre + side * quantile * se, np.nan
        kept = 0  # steps since the outer point of the bracket last moved
        for _ in range(_PROFILE_STEPS):
            psi = float(np.clip(psi, min(centre, edge), max(centre, edge)))
            # starts: linear predictions from the nearer of the last point inside and the last
            # point, then from the other; those points' own solutions if neither can be computed
            known = [(inside[0], u_inside), (last, u)] if last != inside[0] else [(last, u)]
            known.sort(key=lambda point: abs(psi - point[0]))
            try:
                root, u = signed_root(psi, [v + (psi - p) * slope for p, v in known], [v for _, v in known])
            except RuntimeError:  # not computable at psi: the edge of the range, beyond the last point
                end = side * np.inf if outside is None else np.nan
                break
            except np.linalg.LinAlgError:
                break
            last = psi
            if abs(root - side * quantile) < tol:
                end = psi
                break
            if side * root >= quantile:
                outside, kept = (psi, root), 0
            elif psi == edge:  # the likelihood does not fall far enough within the box
                end = side * np.inf
                break
            else:
                inside, previous, u_inside = (psi, root), inside, u
                kept += outside is not None
            psi = _next_point(inside, previous, outside, side * quantile, centre, bisect=kept >= 2)
        else:
            if outside is not None:  # bracketed, not yet to tol: the outer end of the bracket
                end = outside[0]
        ends.append(end)
    return float(ends[0]), float(ends[1])


def _next_point(inside, previous, outside, target: float, centre: float, bisect: bool = False) -> float:
    """The next psi of the root search for r(psi) = target, from the points found so far.

    Bracketed (a point beyond the target): regula falsi, or the midpoint if ``bisect`` (regula
    falsi creeps when r is far from linear between the two, e.g. flat, then steep). Not yet: the secant through the last
    two points inside, moving at least 1.5 and at most 4 times as far from the centre (a
    profile that flattens along a ridge needs long steps).
    """
    if outside is not None:
        (p0, r0), (p1, r1) = inside, outside
        return (p0 + p1) / 2 if bisect else p0 + (target - r0) * (p1 - p0) / (r1 - r0)
    (p1, r1), (p0, r0) = inside, previous if previous is not None else (centre, 0.0)
    distance = p1 - centre
    secant = p1 + (target - r1) * (p1 - p0) / (r1 - r0) if r1 != r0 else np.inf
    if not np.isfinite(secant) or (secant - p1) * distance <= 0:
        return centre + 4 * distance
    return float(np.clip(secant - centre, *sorted((1.5 * distance, 4 * distance)))) + centre


def profile_intervals(
    evaluate: Callable[[np.ndarray], Derivatives],
    theta: np.ndarray,
    information: np.ndarray,
    quantile: float,
    wald: dict[str, tuple[float, float]],
    lower: np.ndarray,
    upper: np.ndarray,
) -> dict[str, tuple[float, float]]:
    """``wald`` with the intervals of ``beta``, ``gamma`` and ``r0`` replaced by profile ones.

    The other parameters (the initial number infectious, the dispersion) keep their Wald
    intervals. Where the Wald interval is NaN (a parameter not identified) it stays NaN; an end
    the profile search does not find keeps the Wald end.
    """
    eye = np.eye(len(theta))
    directions = {"beta": eye[0], "gamma": eye[1], "r0": eye[0] - eye[1]}
    ci = dict(wald)
    for name, direction in directions.items():
        if np.isnan(wald[name]).any():
            continue
        ends = profile_interval(evaluate, theta, information, direction, quantile, lower, upper)
        ci[name] = tuple(
            float(np.exp(end)) if not np.isnan(end) else fallback for end, fallback in zip(ends, wald[name])
        )
    return ci
