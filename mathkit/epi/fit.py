r"""Maximum-likelihood fit of the SIR model to counts: :func:`fit_sir` and its result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import warnings

import numpy as np
import torch

from mathkit.epi.intervals import (
    interval_quantile,
    inverse_information,
    profile_intervals,
    wald_intervals,
)
from mathkit.epi.objective import LIKELIHOODS, OBSERVED, SIRObjective, log_expected_counts
from mathkit.epi.optimise import minimise_from_starts
from mathkit.epi.solver import SIRTrajectory, Times, check_times, simulate_sir

__all__ = ["SIRFit", "fit_sir"]

# the likelihood can have several local maxima: the fit always runs from this many grid starts
# (the best of each of as many recovery rates), and from up to _MAX_STARTS until one converges
_EXPLORE_STARTS = 3
_INTERVALS = ("wald", "profile")
_MAX_STARTS = 5
# steps per ODE solve in the profile search: every solve of the fits of ten outbreaks of the
# coverage study (its slowest profiles included) took at most ~500 steps, and even R0 = 10^4 over
# 40 days takes ~170 (log coordinates); a solve over the budget is stopped (SolveBudgetError) and
# its point treated as not computable, rather than run for seconds
_PROFILE_MAX_STEPS = 5_000


@dataclass(frozen=True)
class SIRFit:
    r"""Maximum-likelihood fit of the SIR model (returned by :func:`fit_sir`).

    Attributes:
        beta: the fitted transmission rate (per unit of ``t``).
        gamma: the fitted recovery rate (per unit of ``t``).
        r0: the basic reproduction number :math:`\beta/\gamma`.
        i0: infectious at time ``t0`` (fitted if ``"i0"`` is in ``ci``, else as given).
        dispersion: negative-binomial size :math:`\phi` (variance
            :math:`\mu + \mu^2/\phi`); ``None`` for Poisson.
        ci: 95% (or ``level``) profile (or Wald) intervals, ``name -> (low, high)``, for
            ``"beta"``, ``"gamma"``, ``"r0"`` and every other fitted parameter.
        log_likelihood: the maximised log-likelihood.
        fitted: expected counts at the observation times, shape ``(T,)``.
        t: the observation times.
        y: the observed counts.
        population: :math:`N`.
        observed: ``"prevalence"`` or ``"incidence"``.
        likelihood: ``"poisson"`` or ``"negbin"``.
        names: the fitted parameters, in the order of ``cov``.
        cov: covariance of the fitted log-parameters (inverse observed information),
            rows and columns ordered as ``names``.
        converged: whether the optimiser met its convergence test (the projected
            gradient below 1e-3 standard errors, see ``mathkit.epi.optimise``).
        n_iterations: optimiser iterations of the run that gave the estimate.
        n_starts: grid starting points the optimiser ran from (three, more when runs
            stopped early).
        best_start: which of them gave the estimate (0: the best point of the grid; another
            when the likelihood has a higher maximum elsewhere).
        t0: the time of the initial state (``I0`` infectious, no one recovered).
    """

    beta: float
    gamma: float
    r0: float
    i0: float
    dispersion: float | None
    ci: dict[str, tuple[float, float]]
    log_likelihood: float
    fitted: np.ndarray
    t: np.ndarray
    y: np.ndarray
    population: float
    observed: str
    likelihood: str
    names: tuple[str, ...]
    cov: np.ndarray = field(repr=False)
    converged: bool
    n_iterations: int
    n_starts: int
    best_start: int
    t0: float = 0.0

    def _since_start(self, t: Times) -> torch.Tensor:
        """``t - t0`` as checked times (non-decreasing, none before ``t0``)."""
        times = check_times(t, torch.float64, start=self.t0)
        return times - self.t0

    def trajectory(self, t: Times) -> SIRTrajectory:
        """S, I, R of the fitted model at times ``t`` (numpy arrays)."""
        return simulate_sir(self.beta, self.gamma, self.population, self.i0, self._since_start(t).numpy())

    def forecast(self, t: Times) -> np.ndarray:
        """Expected counts at times ``t``, observed as in the fit.

        For ``"incidence"``, entry k is the expected number of new infections in
        ``(t[k-1], t[k]]``, with ``t[-1] = t0`` for the first entry (as in :func:`fit_sir`).
        """
        times = self._since_start(t)
        beta, gamma, population, i0 = (
            torch.tensor(v, dtype=torch.float64)
            for v in (self.beta, self.gamma, self.population, self.i0)
        )
        return log_expected_counts(beta, gamma, population, i0, times, self.observed).exp().numpy()


def _check_counts(t: Times, y: np.ndarray, population: float, observed: str, likelihood: str, t0: float):
    """The observation times (as given, and since ``t0``) and the counts as tensors, or a ValueError."""
    if observed not in OBSERVED:
        raise ValueError(f"observed must be one of {OBSERVED}, got {observed!r}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if not (_is_number(t0) and np.isfinite(t0)):
        raise ValueError(f"t0 must be a finite number, got {t0!r}")
    times = check_times(t, torch.float64, start=t0)
    y = np.asarray(y)
    if y.dtype.kind not in "iuf":
        raise ValueError(f"y must hold non-negative integer counts, got {y.dtype} values")
    y = y.astype(float)
    if y.shape != tuple(times.shape):
        raise ValueError(
            f"y and t must have the same length, got {y.shape} and {tuple(times.shape)}"
        )
    if (times[0] <= t0) or (times.diff() <= 0).any():
        raise ValueError(f"t must be strictly increasing times after t0 = {t0:g} (the time of the initial state)")
    if not np.isfinite(y).all() or (y < 0).any() or (y != np.round(y)).any():
        raise ValueError("y must hold non-negative integer counts")
    if not (y > 0).any():
        raise ValueError("y has no positive count: there is no outbreak to fit")
    if not (_is_number(population) and np.isfinite(population) and population > 0):
        raise ValueError(f"population must be a positive number, got {population!r}")
    total = y.max() if observed == "prevalence" else y.sum()
    if total > population:
        raise ValueError(
            f"population ({population}) must be at least the "
            + ("largest count" if observed == "prevalence" else "total of the counts")
            + f" ({total:g})"
        )
    return times, times - t0, torch.as_tensor(y)


def _is_number(value: object) -> bool:
    """A real number: a Python or numpy scalar (or 0-d array), not a bool or a string."""
    return np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iuf"


def _search_bounds(objective: SIRObjective) -> tuple[np.ndarray, np.ndarray]:
    """Box for the log-parameters: rates from 1e-4 to 20 per observation interval, and so on."""
    times = objective.times
    spacing = float(times.diff().min()) if len(times) > 1 else float(times[0])
    bounds = [(np.log(1e-4 / spacing), np.log(20.0 / spacing))] * 2
    if objective.i0 is None:
        bounds.append((np.log(1e-9 * objective.population), np.log(0.5 * objective.population)))
    if objective.negbin:
        bounds.append((np.log(1e-3), np.log(1e8)))
    return tuple(np.array(b, dtype=float) for b in zip(*bounds))


def _grid_starts(objective: SIRObjective, lower: np.ndarray, upper: np.ndarray) -> list[np.ndarray]:
    """Log-parameters at the best points of a coarse (gamma, R0) grid, best first.

    The grid is solved in one batch. Each start has its own gamma (the best R0 for it), so
    that the starts lie in different parts of the likelihood's long beta-gamma ridge. The
    initial number infectious (when fitted) starts from the early exponential growth, the
    negative-binomial size at its moment estimate given the grid point's curve.
    """
    times, y, population = objective.times, objective.counts, objective.population
    spacing = float(times[-1] / len(times))
    gammas = torch.tensor([0.05, 0.1, 0.2, 0.4, 0.8, 1.6], dtype=torch.float64) / spacing
    reproduction = torch.tensor([1.2, 1.6, 2.5, 4.0, 7.0], dtype=torch.float64)
    gamma, r0 = (g.flatten() for g in torch.meshgrid(gammas, reproduction, indexing="ij"))
    beta = gamma * r0
    if objective.i0 is None:
        # early exponential growth: I(t1) ~ i0 exp((beta - gamma) t1)
        first = max(float(y[0]), 0.5) * (1.0 if objective.observed == "prevalence" else 0.5)
        start = first * torch.exp(-(beta - gamma) * times[0])
        start = start.clamp(1e-6 * population, 0.1 * population)
    else:
        start = torch.full_like(beta, float(objective.i0))
    curve = torch.stack([beta.log(), gamma.log(), start.log()], -1)[:, : objective.n_curve]
    with torch.no_grad():
        log_mean = objective.log_means(curve)
        loglik = torch.distributions.Poisson(log_mean.exp(), validate_args=False).log_prob(y).sum(-1)
    loglik = torch.nan_to_num(loglik, nan=-np.inf).reshape(len(gammas), len(reproduction))
    best_per_gamma = loglik.argmax(1) + len(reproduction) * torch.arange(len(gammas))
    order = best_per_gamma[torch.argsort(loglik.max(1).values, descending=True)]
    starts = []
    for best in order[:_MAX_STARTS]:
        x0 = curve[best].numpy()
        if objective.negbin:
            mean = log_mean[best].exp()
            excess = float(((y - mean) ** 2 - mean).sum())
            size = np.clip(float((mean**2).sum()) / max(excess, 1e-12), 1.0, 1e4)
            x0 = np.append(x0, np.log(size))
        starts.append(np.clip(x0, lower, upper))
    return starts


def fit_sir(
    t: Times,
    y: np.ndarray,
    population: float,
    observed: str = "prevalence",
    likelihood: str = "poisson",
    i0: float | None = None,
    *,
    level: float = 0.95,
    interval: str = "profile",
    t0: float = 0.0,
) -> SIRFit:
    r"""Fit the SIR model to counts by maximum likelihood, with profile-likelihood intervals.

    The counts ``y[k]`` at times ``t[k] > t0`` are either the number infectious,
    :math:`\mu_k = I(t_k)` (``observed="prevalence"``), or the new infections since
    the previous time, :math:`\mu_k = S(t_{k-1}) - S(t_k)` with :math:`t_{-1} = t_0`
    (``"incidence"``). They are Poisson with mean :math:`\mu_k`, or negative
    binomial with mean :math:`\mu_k` and variance :math:`\mu_k + \mu_k^2/\phi`.
    The initial state at time ``t0`` (default 0) is :math:`I_0` infectious, no one recovered;
    ``i0`` fixes :math:`I_0`, ``None`` fits it. Give ``t0`` when the times are on a clock that
    starts long before the outbreak (dates, days of the year): the fitted :math:`I_0` is
    searched down to :math:`10^{-9}` of the population at ``t0``, and an outbreak that starts
    later than that allows is reported (a ``RuntimeWarning`` naming ``t0``) rather than fitted
    with distorted rates. Shifting ``t`` and ``t0`` together changes nothing.

    Three steps, each in its own module of :mod:`mathkit.epi`:

    1. the objective (``mathkit.epi.objective``): the negative log-likelihood over the
       log-parameters :math:`\theta = (\log\beta, \log\gamma, [\log I_0], [\log\phi])`, with
       its gradient and information;
    2. the optimisation (``mathkit.epi.optimise``): Levenberg-Marquardt steps on the
       information, within a box, from the best point of a coarse grid; converged when the
       projected gradient is below 1e-3 standard errors; if a run stops before that, the next
       best grid points are tried, and a :class:`ConvergenceWarning` says when
       none converged (the result's ``converged`` is then False);
    3. the intervals (``mathkit.epi.intervals``), with :math:`q` the normal quantile for Poisson
       counts and Student's :math:`t_{n-p}` quantile for negative-binomial ones (:math:`n` counts,
       :math:`p` fitted parameters: the size is a scale estimated from the same counts,
       :cite:p:`bates1988nonlinear`). By default (``interval="profile"``) the intervals for
       :math:`\beta`, :math:`\gamma` and :math:`R_0` are profile-likelihood intervals
       :cite:p:`venzon1988method`,
       :math:`\{\psi : 2(\ell(\hat\theta) - \max_{c^\top\theta = \psi}\ell(\theta)) \le q^2\}`
       for :math:`\psi = \log\beta`, :math:`\log\gamma` or :math:`\log R_0 = \theta_1 -
       \theta_2`, the other parameters re-fitted within the search box; an end is 0 or inf
       where the likelihood does not fall that far within a factor 1,000 of the estimate (or
       within the box), or where it cannot be computed further out (an ODE solve over its step
       budget, at rates far beyond the data's). ``interval="wald"`` gives
       Wald intervals on the log scale from the observed information,
       :math:`\exp(\hat\theta_j \pm q\,\mathrm{se}_j)` (exact delta method for
       :math:`\log R_0`), about four times faster. :math:`I_0` and :math:`\phi` always get
       Wald intervals.

    Why the profile: for short or noisy series (incidence counts of a fast outbreak,
    negative-binomial noise) the likelihood has a long ridge along which :math:`\beta - \gamma`
    stays fixed, and the Wald interval, from the curvature at the top, is far too narrow. On
    simulated outbreaks (``python -m benchmarks.sir_coverage``, benchmarks/RESULTS.md) the Wald
    intervals covered the truth 89-90% of the time (79-80% for negative-binomial incidence
    series); the profile intervals with the :math:`t` quantile 93.3 / 94.2 / 93.3% for
    :math:`\beta` / :math:`\gamma` / :math:`R_0` (91-95% for negative-binomial incidence series;
    one of their misses there is a profile with two separate basins, of which the search
    reports the one around the estimate).

    A parameter that runs to the edge of the search box is not identified by the data: a
    ``RuntimeWarning`` says so and its interval (and :math:`R_0`'s if it is a rate) is NaN.

    Raises:
        ValueError: for negative, non-integer or all-zero counts, ``t`` and ``y`` of
            different lengths, times not increasing or not after ``t0``, a population
            smaller than the counts, or an unknown ``observed``/``likelihood``/``interval``.

    Warns:
        ConvergenceWarning: when no run met the convergence test (``converged`` is False).
    """
    given_times, times, counts = _check_counts(t, y, population, observed, likelihood, t0)
    if i0 is not None and not 0 < i0 < population:
        raise ValueError(f"i0 must be in (0, population), got {i0!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if interval not in _INTERVALS:
        raise ValueError(f"interval must be one of {_INTERVALS}, got {interval!r}")
    objective = SIRObjective(
        times, counts, float(population), observed, likelihood == "negbin",
        None if i0 is None else float(i0),
    )
    names = objective.names
    lower, upper = _search_bounds(objective)
    starts = _grid_starts(objective, lower, upper)
    runs = minimise_from_starts(objective.derivatives, starts, lower, upper, n_explore=_EXPLORE_STARTS)
    solution = runs.best
    theta = solution.x
    stuck = (theta <= lower + 1e-6) | (theta >= upper - 1e-6)
    if stuck.any():
        # a Wald interval around a boundary optimum says nothing: flag, do not report one
        warnings.warn(_edge_message(names, stuck, theta <= lower + 1e-6, float(t0)), RuntimeWarning, stacklevel=2)
    information = objective.derivatives(theta, observed_information=True).information
    cov = inverse_information(information, stuck)
    # a fitted dispersion is a scale estimated from the same n counts: Student's t on n - p
    quantile = interval_quantile(level, len(counts) - len(theta) if objective.negbin else None)
    ci = wald_intervals(theta, cov, names, quantile)
    if interval == "profile":
        budgeted = dataclasses.replace(objective, max_steps=_PROFILE_MAX_STEPS)
        ci = profile_intervals(budgeted.derivatives, theta, information, quantile, ci, lower, upper)
    estimate = dict(zip(names, np.exp(theta)))
    fitted_i0 = float(estimate.get("i0", i0))
    fitted = objective.log_means(torch.as_tensor(theta[: objective.n_curve])).exp().numpy()
    return SIRFit(
        beta=float(estimate["beta"]),
        gamma=float(estimate["gamma"]),
        r0=float(estimate["beta"] / estimate["gamma"]),
        i0=fitted_i0,
        dispersion=float(estimate["dispersion"]) if objective.negbin else None,
        ci=ci,
        log_likelihood=-solution.value,
        fitted=fitted,
        t=given_times.numpy(),
        y=counts.numpy(),
        population=float(population),
        observed=observed,
        likelihood=likelihood,
        names=names,
        cov=cov,
        converged=solution.converged,
        n_iterations=solution.n_iterations,
        n_starts=runs.n_starts,
        best_start=runs.best_start,
        t0=float(t0),
    )


def _edge_message(names: tuple[str, ...], stuck: np.ndarray, at_lower: np.ndarray, t0: float) -> str:
    """The warning for parameters that ran to the edge of the search box."""
    floor_i0 = "i0" in names and bool(at_lower[names.index("i0")])
    others = [n for n, s in zip(names, stuck) if s and not (n == "i0" and floor_i0)]
    parts = []
    if others:
        parts.append(f"{', '.join(others)} ran to the edge of the search range: not identified by these data "
                     "(its interval, and R0's if it is a rate, are NaN)")
    if floor_i0:
        # fewer than the floor infectious at t0: the data start long after it, and the rates
        # bend to make up for the missing growth
        parts.append(f"i0 ran to its floor, 1e-9 of the population at t0 = {t0:g}, and the rates fitted with it "
                     "may be off (its interval is NaN): if the outbreak began long after t0, pass t0 = a time "
                     "shortly before the first counts")
    return "; ".join(parts)
