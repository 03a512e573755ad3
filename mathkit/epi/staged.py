r"""Epidemics that are not SIR: a latent period and gamma-distributed infectious periods.

A data generator for checking what an SIR fit does when the world is not SIR. The
infectious period is split into :math:`m` stages :math:`I_1, \dots, I_m`, each left at
rate :math:`m\gamma`, so its length is Erlang (gamma with shape :math:`m`) with mean
:math:`1/\gamma` and coefficient of variation :math:`1/\sqrt m` (Anderson and Watson,
*Biometrika* 1980); an optional latent compartment :math:`E`, left at rate
:math:`\sigma`, comes before it (the SEIR model):

.. math::

    \dot S = -\beta \frac{S I}{N}, \quad
    \dot E = \beta \frac{S I}{N} - \sigma E, \quad
    \dot I_1 = \sigma E - m\gamma I_1, \quad
    \dot I_j = m\gamma (I_{j-1} - I_j), \quad
    \dot R = m\gamma I_m,

with :math:`I = \sum_j I_j`. Without a latent period new infections enter :math:`I_1`
directly. With :math:`m = 1` and no latent period this is the SIR model of
:func:`mathkit.epi.simulate_sir`. Solved with scipy's adaptive Runge-Kutta method; not
differentiable (use :func:`mathkit.epi.simulate_sir` to fit).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.integrate import solve_ivp

__all__ = ["SEIRTrajectory", "simulate_seir"]


class SEIRTrajectory(NamedTuple):
    """Susceptible, exposed (latent), infectious (all stages) and recovered, each of shape ``(len(t),)``."""

    S: np.ndarray
    E: np.ndarray
    I: np.ndarray  # noqa: E741 (the compartment's standard name)
    R: np.ndarray


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return value


def simulate_seir(
    beta: float,
    gamma: float,
    population: float,
    i0: float,
    t: np.ndarray | list[float],
    *,
    latent_rate: float | None = None,
    stages: int = 1,
    rtol: float = 1e-8,
) -> SEIRTrajectory:
    r"""Solve the staged SEIR equations from :math:`I_1 = I_0` at time 0 (everyone else susceptible).

    Args:
        beta: transmission rate :math:`\beta \ge 0`.
        gamma: recovery rate :math:`\gamma > 0`; the infectious period has mean :math:`1/\gamma`.
        population: :math:`N > 0`.
        i0: infectious people at time 0, :math:`0 < I_0 < N` (all in the first stage).
        t: non-decreasing output times :math:`\ge 0`, shape ``(T,)``.
        latent_rate: :math:`\sigma > 0`, one over the mean latent period; ``None`` for no
            latent period (SIR with staged infection).
        stages: :math:`m \ge 1`, the shape of the Erlang infectious period.
        rtol: relative tolerance of the solver (positive).

    Returns:
        An :class:`SEIRTrajectory` of numpy arrays; ``E`` is zero without a latent period.
        :math:`R_0 = \beta/\gamma` whatever ``stages`` and ``latent_rate``.

    Raises:
        ValueError: a rate, size or time outside its range (named in the message).
        TypeError: a non-numeric rate or a non-integer ``stages``.
    """
    beta, gamma = _positive("beta", beta, allow_zero=True), _positive("gamma", gamma)
    population, i0 = _positive("population", population), _positive("i0", i0)
    if i0 >= population:
        raise ValueError(f"i0 must be below population, got i0={i0!r} and population={population!r}")
    sigma = None if latent_rate is None else _positive("latent_rate", latent_rate)
    if isinstance(stages, bool) or not isinstance(stages, (int, np.integer)):
        raise TypeError(f"stages must be an integer, got {type(stages).__name__}")
    if stages < 1:
        raise ValueError(f"stages must be >= 1, got {stages}")
    rtol = _positive("rtol", rtol)
    times = np.asarray(t, dtype=float)
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
        raise ValueError(f"t must be a non-empty 1-D array of finite times, got {t!r}")
    if (times < 0).any() or (np.diff(times) < 0).any():
        raise ValueError("t must be non-decreasing times >= 0 (the initial state is at time 0)")

    exit_rate = stages * gamma

    def derivative(_, state):
        s, e, infectious = state[0], state[1], state[2:]
        infection = beta * s * infectious.sum() / population
        into_first = sigma * e if sigma is not None else infection
        flows = np.empty_like(state)
        flows[0] = -infection
        flows[1] = infection - sigma * e if sigma is not None else 0.0
        flows[2] = into_first - exit_rate * infectious[0]
        flows[3:] = exit_rate * (infectious[:-1] - infectious[1:])
        return flows

    start = np.zeros(stages + 2)
    start[0], start[2] = population - i0, i0
    solution = solve_ivp(derivative, (0.0, float(times[-1])), start, t_eval=times, rtol=rtol,
                         atol=1e-10 * population, method="DOP853")
    if not solution.success:
        raise RuntimeError(f"the ODE solver failed: {solution.message}")
    s, e, infectious = solution.y[0], solution.y[1], solution.y[2:].sum(axis=0)
    return SEIRTrajectory(s, e, infectious, population - s - e - infectious)
