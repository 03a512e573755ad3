r"""Compartmental epidemic models: the SIR model, solved differentiably and fitted.

The SIR model of Kermack and McKendrick :cite:p:`kermack1927contribution` splits a
closed population of size :math:`N` into susceptible, infectious and recovered
people,

.. math::

    \dot S = -\beta(t) \frac{S I}{N}, \qquad
    \dot I = \beta(t) \frac{S I}{N} - \gamma I, \qquad
    \dot R = \gamma I,

with transmission rate :math:`\beta` and recovery rate :math:`\gamma` (so
:math:`1/\gamma` is the mean infectious period and :math:`R_0 = \beta/\gamma`
the basic reproduction number).

:func:`simulate_sir` integrates the equations in torch with an adaptive
Dormand-Prince 5(4) method, so gradients with respect to the rates, the initial
state, or the parameters of a time-varying rate :math:`\beta(t)` (a neural
network, say) flow through the solver by autograd. :func:`fit_sir` fits
:math:`\beta`, :math:`\gamma` (and optionally the initial number infectious)
to counts by maximum likelihood, with Wald intervals from the observed Fisher
information.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple
import warnings

import numpy as np
from scipy import optimize, stats
import torch

__all__ = ["SIRTrajectory", "SIRFit", "simulate_sir", "fit_sir"]

# Dormand & Prince (1980) 5(4) tableau: stage weights, the 5th-order solution
# (which equals the last stage's input, "first same as last"), and the
# difference between the 5th- and embedded 4th-order weights (the error estimate).
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_E = (
    71 / 57600,
    0.0,
    -71 / 16695,
    71 / 1920,
    -17253 / 339200,
    22 / 525,
    -1 / 40,
)
_MAX_STEPS = 100_000

Rate = float | np.ndarray | torch.Tensor
Times = np.ndarray | torch.Tensor | list[float]


class SIRTrajectory(NamedTuple):
    """Susceptible, infectious and recovered counts, each of shape ``batch + (len(t),)``."""

    S: np.ndarray | torch.Tensor
    I: np.ndarray | torch.Tensor  # noqa: E741 (the compartment's standard name)
    R: np.ndarray | torch.Tensor


def _as_tensor(name: str, value: Rate, dtype: torch.dtype) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.tensor(np.asarray(value))
    tensor = tensor.to(dtype)
    if not torch.isfinite(tensor.detach()).all():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return tensor


def _check_times(t: Times, dtype: torch.dtype) -> torch.Tensor:
    t = _as_tensor("t", t, dtype).detach()
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"t must be a non-empty 1-D array of times, got shape {tuple(t.shape)}")
    if (t < 0).any() or (t.diff() < 0).any():
        raise ValueError("t must be non-decreasing times >= 0 (the initial state is at time 0)")
    return t


def _result_dtype(*values: object) -> torch.dtype:
    floats = [v.dtype for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return torch.float32 if floats and all(d == torch.float32 for d in floats) else torch.float64


def _log_state_sir(
    beta: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    gamma: torch.Tensor,
    population: torch.Tensor,
    i0: torch.Tensor,
    r0: torch.Tensor,
    t: torch.Tensor,
    rtol: float,
) -> torch.Tensor:
    """Solve the SIR equations in the state (log I, log S, R); shape ``batch + (len(t), 3)``.

    In logarithms the early exponential growth is a straight line, which the
    Runge-Kutta stages integrate almost exactly, and the error of log I and log S
    is the relative error of I and S: the step control keeps it below ``rtol``.
    """
    dtype = t.dtype
    # d(log I, log S, R)/dt = (I, S) @ [[0, -b, g], [b, 0, 0]] + (-g, 0, 0), b = beta/N, g = gamma:
    # one matrix product per stage, because tiny torch ops cost their overhead, not their flops.
    infection = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
    recovery_pattern = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=dtype)
    recovery = gamma[..., None, None] * recovery_pattern
    offset = gamma[..., None] * torch.tensor([-1.0, 0.0, 0.0], dtype=dtype)

    def matrix(time: torch.Tensor) -> torch.Tensor:
        rate = beta(time) if callable(beta) else beta
        return (rate / population)[..., None, None] * infection + recovery

    constant = None if callable(beta) else matrix(t)

    def derivative(time: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        rates = constant if constant is not None else matrix(time)
        return (state[..., None, :2].exp() @ rates).squeeze(-2) + offset

    weights = [torch.tensor(a, dtype=dtype) for a in _DP_A[1:]]
    error_weights = torch.tensor(_DP_E, dtype=dtype)
    log_i0, log_s0 = i0.log(), (population - i0 - r0).log()
    state = torch.stack(torch.broadcast_tensors(log_i0, log_s0, r0), -1)
    now = t.new_zeros(())
    slope = derivative(now, state)
    state = state.expand(slope.shape)  # the rates may carry a larger batch shape
    step = float(rtol**0.2 / slope[..., :2].detach().abs().max().clamp_min(1e-3))
    out, steps = [], 0
    for target in t:
        while float(target - now) > 1e-13 * max(1.0, float(target)):
            trial = min(step, float(target - now))
            stages = [slope]
            for a, c in zip(weights, _DP_C[1:]):
                candidate = state + trial * (torch.stack(stages, -1) @ a)
                stages.append(derivative(now + c * trial, candidate))
            error = trial * (torch.stack(stages, -1) @ error_weights)
            ratio = float(error[..., :2].detach().abs().max()) / rtol
            if ratio <= 1.0:
                # the last stage was evaluated at the 5th-order solution (FSAL)
                now, state, slope = now + trial, candidate, stages[6]
            step = trial * min(5.0, max(0.2, 0.9 * max(ratio, 1e-12) ** -0.2))
            steps += 1
            if steps > _MAX_STEPS:
                raise RuntimeError(
                    f"simulate_sir took more than {_MAX_STEPS} steps: the rates are too large "
                    "for the time span (rescale time) or rtol is too small"
                )
        out.append(state)
    return torch.stack(out, -2)


def simulate_sir(
    beta: Rate | Callable[[torch.Tensor], torch.Tensor],
    gamma: Rate,
    population: Rate,
    i0: Rate,
    t: Times,
    r0: Rate = 0.0,
    *,
    rtol: float = 1e-8,
) -> SIRTrajectory:
    r"""Solve the SIR equations from the state at time 0 and return S, I, R at times ``t``.

    Args:
        beta: transmission rate :math:`\beta \ge 0`, or a callable ``beta(time)``
            returning the rate at a scalar tensor ``time`` (a time-varying
            :math:`\beta(t)`, e.g. a small network).
        gamma: recovery rate :math:`\gamma \ge 0`.
        population: :math:`N > 0`, constant (S + I + R = N).
        i0: infectious people at time 0, :math:`0 < I_0`.
        t: non-decreasing output times :math:`\ge 0`, shape ``(T,)``.
        r0: recovered people at time 0 (not the reproduction number);
            :math:`I_0 + R_0 < N`.
        rtol: bound on the local relative error of S and I per step (at least
            50 machine epsilons of the dtype). The default gives about 1e-7
            relative accuracy on typical outbreaks.

    ``beta``, ``gamma``, ``population``, ``i0``, ``r0`` broadcast to a batch shape;
    each output has shape ``batch + (T,)``. Gradients flow to every tensor input by
    autograd (discretise, then differentiate). Numpy or float inputs give numpy
    outputs; if any input is a torch tensor, outputs are tensors.
    """
    values = (beta, gamma, population, i0, t, r0)
    want_numpy = not any(isinstance(v, torch.Tensor) for v in values) and not callable(beta)
    dtype = _result_dtype(*values)
    gamma = _as_tensor("gamma", gamma, dtype)
    population = _as_tensor("population", population, dtype)
    i0, r0 = _as_tensor("i0", i0, dtype), _as_tensor("r0", r0, dtype)
    times = _check_times(t, dtype)
    if not callable(beta):
        beta = _as_tensor("beta", beta, dtype)
        if (beta.detach() < 0).any():
            raise ValueError(f"beta must be >= 0, got {beta.detach().min().item()}")
    if (gamma.detach() < 0).any():
        raise ValueError(f"gamma must be >= 0, got {gamma.detach().min().item()}")
    if (population.detach() <= 0).any():
        raise ValueError("population must be > 0")
    if (i0.detach() <= 0).any():
        raise ValueError("i0 must be > 0: an outbreak needs someone infectious at time 0")
    if (r0.detach() < 0).any():
        raise ValueError("r0 (recovered at time 0) must be >= 0")
    if (i0.detach() + r0.detach() >= population.detach()).any():
        raise ValueError("i0 + r0 must be smaller than population (someone must be susceptible)")
    if not 0.0 < rtol < 1.0:
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")
    # float32 cannot resolve relative errors much below its epsilon
    rtol = max(rtol, 50 * torch.finfo(dtype).eps)
    state = _log_state_sir(beta, gamma, population, i0, r0, times, rtol)
    trajectory = SIRTrajectory(state[..., 1].exp(), state[..., 0].exp(), state[..., 2])
    if want_numpy:
        return SIRTrajectory(*(x.detach().numpy() for x in trajectory))
    return trajectory


_OBSERVED = ("prevalence", "incidence")
_LIKELIHOODS = ("poisson", "negbin")


@dataclass(frozen=True)
class SIRFit:
    r"""Maximum-likelihood fit of the SIR model (returned by :func:`fit_sir`).

    Attributes:
        beta: the fitted transmission rate (per unit of ``t``).
        gamma: the fitted recovery rate (per unit of ``t``).
        r0: the basic reproduction number :math:`\beta/\gamma`.
        i0: infectious at time 0 (fitted if ``"i0"`` is in ``ci``, else as given).
        dispersion: negative-binomial size :math:`\phi` (variance
            :math:`\mu + \mu^2/\phi`); ``None`` for Poisson.
        ci: 95% (or ``level``) Wald intervals, ``name -> (low, high)``, for
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

    def trajectory(self, t: Times) -> SIRTrajectory:
        """S, I, R of the fitted model at times ``t`` (numpy arrays)."""
        return simulate_sir(self.beta, self.gamma, self.population, self.i0, np.asarray(t, float))

    def forecast(self, t: Times) -> np.ndarray:
        """Expected counts at times ``t``, observed as in the fit.

        For ``"incidence"``, entry k is the expected number of new infections in
        ``(t[k-1], t[k]]``, with ``t[-1] = 0`` for the first entry (as in :func:`fit_sir`).
        """
        times = _check_times(t, torch.float64)
        beta, gamma, population, i0 = (
            torch.tensor(v, dtype=torch.float64)
            for v in (self.beta, self.gamma, self.population, self.i0)
        )
        log_mean = _log_expected_counts(beta, gamma, population, i0, times, self.observed)
        return log_mean.exp().numpy()


def _log_expected_counts(
    beta: torch.Tensor,
    gamma: torch.Tensor,
    population: torch.Tensor,
    i0: torch.Tensor,
    t: torch.Tensor,
    observed: str,
    rtol: float = 1e-7,
) -> torch.Tensor:
    """Log of the expected count at each time: log I(t), or log of S's drop since the last time."""
    times = t if observed == "prevalence" else torch.cat((t.new_zeros(1), t))
    state = _log_state_sir(beta, gamma, population, i0, torch.zeros_like(i0), times, rtol)
    if observed == "prevalence":
        return state[..., 0]
    log_s = state[..., 1]
    # S(t_{k-1}) - S(t_k) = -S(t_{k-1}) expm1(log S(t_k) - log S(t_{k-1})), without cancellation
    drop = (-torch.expm1(log_s.diff(dim=-1))).clamp_min(torch.finfo(log_s.dtype).tiny)
    return log_s[..., :-1] + drop.log()


def _log_likelihood(y: torch.Tensor, log_mean: torch.Tensor, log_size: torch.Tensor | None):
    if log_size is None:
        return torch.distributions.Poisson(log_mean.exp(), validate_args=False).log_prob(y).sum(-1)
    size = log_size.exp()
    law = torch.distributions.NegativeBinomial(
        size.unsqueeze(-1), logits=log_mean - log_size.unsqueeze(-1), validate_args=False
    )
    return law.log_prob(y).sum(-1)


def _check_counts(t: Times, y: np.ndarray, population: float, observed: str, likelihood: str):
    if observed not in _OBSERVED:
        raise ValueError(f"observed must be one of {_OBSERVED}, got {observed!r}")
    if likelihood not in _LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
    times = _check_times(t, torch.float64)
    y = np.asarray(y, dtype=float)
    if y.shape != tuple(times.shape):
        raise ValueError(
            f"y and t must have the same length, got {y.shape} and {tuple(times.shape)}"
        )
    if (times[0] <= 0) or (times.diff() <= 0).any():
        raise ValueError("t must be strictly increasing times > 0 (the initial state is at time 0)")
    if not np.isfinite(y).all() or (y < 0).any() or (y != np.round(y)).any():
        raise ValueError("y must hold non-negative integer counts")
    if not np.isfinite(population) or population <= 0:
        raise ValueError(f"population must be a positive number, got {population!r}")
    total = y.max() if observed == "prevalence" else y.sum()
    if total > population:
        raise ValueError(
            f"population ({population}) must be at least the "
            + ("largest count" if observed == "prevalence" else "total of the counts")
            + f" ({total:g})"
        )
    return times, torch.as_tensor(y)


def _starting_point(times, y, population, observed, i0, negbin):
    """Log-parameters at the best point of a coarse (gamma, R0) grid, solved in one batch.

    The negative-binomial size starts at its moment estimate given the grid's best curve.
    """
    spacing = float(times[-1] / len(times))
    gamma = torch.tensor([0.1, 0.2, 0.4, 0.8, 1.6], dtype=torch.float64) / spacing
    reproduction = torch.tensor([1.3, 2.0, 3.5, 6.0], dtype=torch.float64)
    gamma, reproduction = (g.flatten() for g in torch.meshgrid(gamma, reproduction, indexing="ij"))
    beta = gamma * reproduction
    if i0 is None:
        # early exponential growth: I(t1) ~ i0 exp((beta - gamma) t1)
        first = max(float(y[0]), 0.5) * (1.0 if observed == "prevalence" else 0.5)
        start = first * torch.exp(-(beta - gamma) * times[0])
        start = start.clamp(1e-6 * population, 0.1 * population)
    else:
        start = torch.full_like(beta, float(i0))
    population_t = torch.tensor(float(population), dtype=torch.float64)
    with torch.no_grad():
        log_mean = _log_expected_counts(
            beta, gamma, population_t, start, times, observed, rtol=1e-5
        )
        loglik = torch.nan_to_num(_log_likelihood(y, log_mean, None), nan=-np.inf)
    best = int(loglik.argmax())
    x0 = [float(beta[best].log()), float(gamma[best].log())]
    if i0 is None:
        x0.append(float(start[best].log()))
    if negbin:
        mean = log_mean[best].exp()
        excess = float(((y - mean) ** 2 - mean).sum())
        x0.append(float(np.log(np.clip(float((mean**2).sum()) / max(excess, 1e-12), 1.0, 1e4))))
    return np.array(x0)


def fit_sir(
    t: Times,
    y: np.ndarray,
    population: float,
    observed: str = "prevalence",
    likelihood: str = "poisson",
    i0: float | None = None,
    *,
    level: float = 0.95,
) -> SIRFit:
    r"""Fit the SIR model to counts by maximum likelihood, with Wald intervals.

    The counts ``y[k]`` at times ``t[k] > 0`` are either the number infectious,
    :math:`\mu_k = I(t_k)` (``observed="prevalence"``), or the new infections since
    the previous time, :math:`\mu_k = S(t_{k-1}) - S(t_k)` with :math:`t_0 = 0`
    (``"incidence"``). They are Poisson with mean :math:`\mu_k`, or negative
    binomial with mean :math:`\mu_k` and variance :math:`\mu_k + \mu_k^2/\phi`.
    The initial state at time 0 is :math:`I_0` infectious, no one recovered; ``i0``
    fixes :math:`I_0`, ``None`` fits it.

    The likelihood is maximised over the log-parameters
    :math:`\theta = (\log\beta, \log\gamma, [\log I_0], [\log\phi])` by L-BFGS-B
    with exact gradients (autograd through :func:`simulate_sir`, solved to a
    relative 1e-7, far below any sampling noise), from the best point of a
    coarse grid. A parameter that runs to the edge of the search range is not
    identified by the data: a warning says so and its interval is NaN.

    The intervals are Wald intervals on the log scale,
    :math:`\exp(\hat\theta_j \pm z\,\mathrm{se}_j)`, with standard errors from the
    inverse of the observed Fisher information (the autograd Hessian of the
    negative log-likelihood at :math:`\hat\theta`); for
    :math:`\log R_0 = \theta_1 - \theta_2` the delta method is exact,
    :math:`\mathrm{Var} = \Sigma_{11} + \Sigma_{22} - 2\Sigma_{12}`.

    Raises:
        ValueError: for negative or non-integer counts, ``t`` and ``y`` of
            different lengths, times not increasing and positive, a population
            smaller than the counts, or an unknown ``observed``/``likelihood``.
    """
    times, counts = _check_counts(t, y, population, observed, likelihood)
    if i0 is not None and not 0 < i0 < population:
        raise ValueError(f"i0 must be in (0, population), got {i0!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    negbin = likelihood == "negbin"
    names = ("beta", "gamma") + (("i0",) if i0 is None else ())
    names += ("dispersion",) if negbin else ()
    population_t = torch.tensor(float(population), dtype=torch.float64)
    x0 = _starting_point(times, counts, population, observed, i0, negbin)

    def negative_log_likelihood(theta: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, theta))
        infectious = params["i0"].exp() if "i0" in params else theta.new_tensor(float(i0))
        log_mean = _log_expected_counts(
            params["beta"].exp(), params["gamma"].exp(), population_t, infectious, times, observed
        )
        return -_log_likelihood(counts, log_mean, params.get("dispersion"))

    def value_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        value = negative_log_likelihood(theta)
        (gradient,) = torch.autograd.grad(value, theta)
        return float(value.detach()), gradient.numpy()

    spacing = float(times.diff().min()) if len(times) > 1 else float(times[0])
    rate_bounds = (np.log(1e-4 / spacing), np.log(20.0 / spacing))
    bounds = [rate_bounds, rate_bounds]
    if i0 is None:
        bounds.append((np.log(1e-9 * population), np.log(0.5 * population)))
    if negbin:
        bounds.append((np.log(1e-3), np.log(1e8)))
    solution = optimize.minimize(
        value_and_gradient, x0, jac=True, method="L-BFGS-B", bounds=bounds,
        options={"maxiter": 1000, "ftol": 1e-10, "gtol": 1e-3},
    )
    theta = torch.tensor(solution.x, dtype=torch.float64)
    hessian = torch.autograd.functional.hessian(negative_log_likelihood, theta).numpy()
    cov = _inverse_information(hessian)
    lower, upper = np.array(bounds).T
    stuck = [
        name
        for name, x, lo, hi in zip(names, solution.x, lower, upper)
        if not lo + 1e-6 < x < hi - 1e-6
    ]
    if stuck:
        # a Wald interval around a boundary optimum says nothing: flag, do not report one
        warnings.warn(
            f"{', '.join(stuck)} ran to the edge of the search range: not identified by these "
            "data (its interval, and R0's if it is a rate, are NaN)",
            RuntimeWarning,
            stacklevel=2,
        )
        for j, name in enumerate(names):
            if name in stuck:
                cov[j, :] = cov[:, j] = np.nan
    estimate = dict(zip(names, np.exp(solution.x)))
    z = stats.norm.ppf(0.5 + level / 2)

    def interval(log_value: float, variance: float) -> tuple[float, float]:
        half = z * np.sqrt(variance)
        return float(np.exp(log_value - half)), float(np.exp(log_value + half))

    ci = {name: interval(solution.x[j], cov[j, j]) for j, name in enumerate(names)}
    ci["r0"] = interval(solution.x[0] - solution.x[1], cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    with torch.no_grad():
        fitted_i0 = estimate.get("i0", i0)
        log_mean = _log_expected_counts(
            torch.tensor(estimate["beta"]), torch.tensor(estimate["gamma"]), population_t,
            torch.tensor(float(fitted_i0)), times, observed,
        )
    return SIRFit(
        beta=float(estimate["beta"]),
        gamma=float(estimate["gamma"]),
        r0=float(estimate["beta"] / estimate["gamma"]),
        i0=float(fitted_i0),
        dispersion=float(estimate["dispersion"]) if negbin else None,
        ci=ci,
        log_likelihood=-float(solution.fun),
        fitted=log_mean.exp().numpy(),
        t=times.numpy(),
        y=counts.numpy(),
        population=float(population),
        observed=observed,
        likelihood=likelihood,
        names=names,
        cov=cov,
    )


def _inverse_information(hessian: np.ndarray) -> np.ndarray:
    """Covariance from the observed information; NaN (with a warning) if not positive definite."""
    try:
        factor = np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        warnings.warn(
            "the observed information is not positive definite at the optimum "
            "(a parameter is not identified by these data); intervals are NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return np.full_like(hessian, np.nan)
    inverse_factor = np.linalg.inv(factor)
    return inverse_factor.T @ inverse_factor
