r"""The SIR equations solved differentiably in torch (adaptive Dormand-Prince 5(4)).

The state is carried as (log I, log S, R): early exponential growth is then a straight line,
which the Runge-Kutta stages integrate almost exactly, and the step control bounds the relative
error of I and S. Gradients with respect to the rates, the initial state, or the parameters of a
time-varying rate (a neural network, say) flow through the solver by autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["SIRTrajectory", "SolveBudgetError", "simulate_sir", "check_times", "solve_log_sir"]

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
RateFunction = Callable[[torch.Tensor], torch.Tensor | float]
Times = np.ndarray | torch.Tensor | list[float]


class SolveBudgetError(RuntimeError):
    """A solve needed more Runge-Kutta steps than its budget (``max_steps``) allows.

    The step count grows with the rates times the time span: at extreme rates (an outbreak that
    takes off and burns out within a fraction of a reporting interval) the solution changes
    on time scales far below the span's, and an explicit solver crawls. A caller that explores
    such rates (the profile-likelihood search) sets a budget and treats this error as "the
    likelihood is not computable here", instead of waiting for the solve.
    """


class SIRTrajectory(NamedTuple):
    """Susceptible, infectious and recovered counts, each of shape ``batch + (len(t),)``."""

    S: np.ndarray | torch.Tensor
    I: np.ndarray | torch.Tensor  # noqa: E741 (the compartment's standard name)
    R: np.ndarray | torch.Tensor


def _as_tensor(name: str, value: Rate, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        array = np.array(value)  # a copy: torch refuses numpy's negative strides (a reversed view)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric, got {value!r}")
        tensor = torch.from_numpy(array)
    tensor = tensor.to(dtype)
    if not torch.isfinite(tensor.detach()).all():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return tensor


def check_times(t: Times, dtype: torch.dtype, start: float = 0.0) -> torch.Tensor:
    """``t`` as a detached 1-D tensor of non-decreasing times >= ``start`` (the time of the
    initial state), or a ValueError."""
    t = _as_tensor("t", t, dtype).detach()
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"t must be a non-empty 1-D array of times, got shape {tuple(t.shape)}")
    if (t < start).any() or (t.diff() < 0).any():
        raise ValueError(f"t must be non-decreasing times >= {start:g} (the initial state is at time {start:g})")
    return t


def _result_dtype(*values: object) -> torch.dtype:
    floats = [v.dtype for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return torch.float32 if floats and all(d == torch.float32 for d in floats) else torch.float64


def _rate_at(name: str, rate: RateFunction, time: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A time-varying rate evaluated at ``time``, or a ValueError naming it and the time.

    Checked at every stage: a NaN or negative rate would otherwise send the step control
    into ever smaller steps (NaN) or let S grow (negative), far from the cause.
    """
    value = rate(time)
    value = value.to(dtype) if isinstance(value, torch.Tensor) else torch.tensor(value, dtype=dtype)
    detached = value.detach()
    if not torch.isfinite(detached).all():
        raise ValueError(f"{name}(t) must be finite, got {detached.tolist()} at t = {float(time):.6g}")
    if (detached < 0).any():
        raise ValueError(f"{name}(t) must be >= 0, got {detached.min().item():.6g} at t = {float(time):.6g}")
    return value


def solve_log_sir(
    beta: torch.Tensor | RateFunction,
    gamma: torch.Tensor | RateFunction,
    population: torch.Tensor,
    i0: torch.Tensor,
    r0: torch.Tensor,
    t: torch.Tensor,
    rtol: float,
    max_steps: int | None = None,
) -> torch.Tensor:
    """Solve the SIR equations in the state (log I, log S, R); shape ``batch + (len(t), 3)``.

    In logarithms the early exponential growth is a straight line, which the
    Runge-Kutta stages integrate almost exactly, and the error of log I and log S
    is the relative error of I and S: the step control keeps it below ``rtol``.
    The step sequence is shared by the whole batch, so members that differ by a small
    parameter change are discretised alike (their differences are smooth in the parameters).

    Raises :class:`SolveBudgetError` after ``max_steps`` steps (accepted and rejected; ``None``:
    100,000), and a ``RuntimeError`` when the step size is not finite (rates or state that are
    not; callers validate them, this stops a NaN from running to the budget) or falls below
    1e-12 of the time reached.
    """
    dtype = t.dtype
    max_steps = _MAX_STEPS if max_steps is None else max_steps
    # d(log I, log S, R)/dt = (I, S) @ [[0, -b, g], [b, 0, 0]] + (-g, 0, 0), b = beta/N, g = gamma:
    # one matrix product per stage, because tiny torch ops cost their overhead, not their flops.
    infection = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
    recovery = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=dtype)
    loss = torch.tensor([-1.0, 0.0, 0.0], dtype=dtype)

    def rates(time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = _rate_at("beta", beta, time, dtype) if callable(beta) else beta
        g = _rate_at("gamma", gamma, time, dtype) if callable(gamma) else gamma
        matrix = (b / population)[..., None, None] * infection + g[..., None, None] * recovery
        return matrix, g[..., None] * loss

    constant = None if callable(beta) or callable(gamma) else rates(t)

    def derivative(time: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        matrix, offset = constant if constant is not None else rates(time)
        return (state[..., None, :2].exp() @ matrix).squeeze(-2) + offset

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
            # a non-finite error (overflow on too long a step) counts as a rejected step
            ratio = float(error[..., :2].detach().abs().max().nan_to_num(np.inf)) / rtol
            if ratio <= 1.0:
                # the last stage was evaluated at the 5th-order solution (FSAL)
                now, state, slope = now + trial, candidate, stages[6]
            step = trial * min(5.0, max(0.2, 0.9 * max(ratio, 1e-12) ** -0.2))
            steps += 1
            if not np.isfinite(step):  # non-finite rates or state: no step size will do
                raise RuntimeError(
                    f"the SIR solve got a non-finite step size at t = {float(now):.6g}: "
                    "the rates or the initial state are not finite"
                )
            if steps > max_steps:
                raise SolveBudgetError(
                    f"the SIR solve took more than max_steps = {max_steps} steps and reached only "
                    f"t = {float(now):.6g} of {float(t[-1]):.6g}: the rates are too large for the "
                    "time span (rescale time), or rtol is too small"
                )
            if step < 1e-12 * max(1.0, float(now)):
                raise RuntimeError(
                    f"simulate_sir could not step past t = {float(now):.6g} ({steps} steps, step "
                    f"{step:.3g}): the rates are too large for the time span (rescale time) "
                    "or rtol is too small"
                )
        out.append(state)
    return torch.stack(out, -2)


def simulate_sir(
    beta: Rate | RateFunction,
    gamma: Rate | RateFunction,
    population: Rate,
    i0: Rate,
    t: Times,
    r0: Rate = 0.0,
    *,
    rtol: float = 1e-8,
) -> SIRTrajectory:
    r"""Solve the SIR equations from the state at time 0 and return S, I, R at times ``t``.

    .. math::

        \dot S = -\beta(t) \frac{S I}{N}, \qquad
        \dot I = \beta(t) \frac{S I}{N} - \gamma(t) I, \qquad
        \dot R = \gamma(t) I.

    Args:
        beta: transmission rate :math:`\beta \ge 0`, or a callable ``beta(time)``
            returning the rate at a scalar tensor ``time`` (a time-varying
            :math:`\beta(t)`, e.g. a small network).
        gamma: recovery rate :math:`\gamma \ge 0`, or a callable ``gamma(time)``.
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
    outputs; if any input is a torch tensor or a rate is a callable, outputs are tensors.

    Raises:
        ValueError: for a negative or non-finite rate, population, ``i0`` or ``r0``,
            times that decrease, or a callable rate that returns a negative or
            non-finite value (the message names the rate and the time).
    """
    values = (beta, gamma, population, i0, t, r0)
    want_numpy = not any(isinstance(v, torch.Tensor) or callable(v) for v in values)
    dtype = _result_dtype(*values)
    population = _as_tensor("population", population, dtype)
    i0, r0 = _as_tensor("i0", i0, dtype), _as_tensor("r0", r0, dtype)
    times = check_times(t, dtype)
    rates = {"beta": beta, "gamma": gamma}
    for name, rate in rates.items():
        if not callable(rate):
            rates[name] = rate = _as_tensor(name, rate, dtype)
            if (rate.detach() < 0).any():
                raise ValueError(f"{name} must be >= 0, got {rate.detach().min().item()}")
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
    state = solve_log_sir(rates["beta"], rates["gamma"], population, i0, r0, times, rtol)
    trajectory = SIRTrajectory(state[..., 1].exp(), state[..., 0].exp(), state[..., 2])
    if want_numpy:
        return SIRTrajectory(*(x.detach().numpy() for x in trajectory))
    return trajectory
