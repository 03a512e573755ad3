"""mathkit.epi: the SIR solver against scipy, gradients, and fits on outbreaks with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp
import torch

from mathkit.data import boarding_school_flu
from mathkit.epi import SIRFit, fit_sir, simulate_sir


def _reference_sir(beta, gamma, population, i0, t, r0=0.0, sensitivities=False):
    """SIR (and, optionally, dI/dbeta, dI/dgamma) by scipy's DOP853 at rtol 1e-10."""

    def rhs(time, y):
        s, i, r = y[:3]
        rate = beta(time) if callable(beta) else beta
        infection = rate * s * i / population
        out = [-infection, infection - gamma * i, gamma * i]
        if sensitivities:
            # forward sensitivity equations: d/dt (dS/dp, dI/dp) = J (dS/dp, dI/dp) + df/dp
            (sb, ib, sg, ig) = y[3:]
            ds = -rate / population * (sb * i + s * ib)
            dsg = -rate / population * (sg * i + s * ig)
            out += [ds - s * i / population, -ds + s * i / population - gamma * ib,
                    dsg, -dsg - gamma * ig - i]
        return out

    y0 = [population - i0 - r0, i0, r0] + ([0.0] * 4 if sensitivities else [])
    solution = solve_ivp(rhs, (0.0, float(t[-1])), y0, t_eval=t, method="DOP853",
                         rtol=1e-10, atol=1e-12 * population)
    assert solution.success
    return solution.y


@pytest.mark.parametrize(
    ("beta", "gamma", "population", "i0", "r0", "days"),
    [
        (1.7, 0.5, 763.0, 1.0, 0.0, 14),  # the boarding school
        (0.4, 0.1, 1e6, 10.0, 0.0, 120),  # slow epidemic in a city
        (3.0, 1.0, 5e3, 2.0, 500.0, 20),  # fast, some people immune at the start
        (0.3, 0.5, 1e3, 50.0, 0.0, 30),  # R0 < 1: dies out
    ],
)
def test_simulate_sir_matches_scipy(beta, gamma, population, i0, r0, days):
    t = np.linspace(0.0, days, 4 * days + 1)
    s, i, r = simulate_sir(beta, gamma, population, i0, t, r0)
    reference = _reference_sir(beta, gamma, population, i0, t, r0)
    for ours, theirs in zip((s, i, r), reference):
        assert isinstance(ours, np.ndarray) and ours.shape == t.shape
        big = np.abs(theirs) > 1e-3  # relative error is meaningless for R = 0 at t = 0
        np.testing.assert_allclose(ours[big], theirs[big], rtol=1e-6)


def test_simulate_sir_conserves_population_over_a_batch():
    beta = torch.tensor([[0.5], [1.0], [4.0]], dtype=torch.float64)
    gamma = torch.tensor([0.2, 0.9], dtype=torch.float64)
    population = 1e4
    s, i, r = simulate_sir(beta, gamma, population, 3.0, torch.arange(0.0, 60.0), r0=10.0)
    assert s.shape == i.shape == r.shape == (3, 2, 60)
    np.testing.assert_allclose((s + i + r).numpy(), population, rtol=1e-8)
    assert (s[..., 1:] <= s[..., :-1]).all() and (r[..., 1:] >= r[..., :-1]).all()


def test_initial_state_and_float32():
    t = torch.tensor([0.0, 1.0], dtype=torch.float32)
    s, i, r = simulate_sir(torch.tensor(2.0), 0.5, 100.0, 4.0, t, r0=6.0)
    assert s.dtype == torch.float32
    np.testing.assert_allclose([s[0].item(), i[0].item(), r[0].item()], [90.0, 4.0, 6.0], rtol=1e-6)


def test_time_varying_beta_matches_scipy():
    def beta(time):  # transmission halves around day 10 (an intervention)
        return 1.2 - 0.6 * torch.sigmoid(3.0 * (torch.as_tensor(time) - 10.0))

    t = np.arange(0.0, 41.0)
    reference = _reference_sir(lambda time: beta(time).item(), 0.3, 2e3, 1.0, t)
    ours = simulate_sir(beta, 0.3, 2e3, 1.0, torch.tensor(t))
    for mine, theirs in zip(ours, reference):
        big = np.abs(theirs) > 1e-3
        np.testing.assert_allclose(mine.numpy()[big], theirs[big], rtol=1e-6)


def test_gradients_match_the_sensitivity_equations():
    t = np.arange(1.0, 15.0)
    beta, gamma = torch.tensor(1.7, requires_grad=True), torch.tensor(0.5, requires_grad=True)
    _, infectious, _ = simulate_sir(beta, gamma, 763.0, 1.0, torch.tensor(t))
    reference = _reference_sir(1.7, 0.5, 763.0, 1.0, t, sensitivities=True)
    for k in (2, 5, 9, 13):
        d_beta, d_gamma = torch.autograd.grad(infectious[k], (beta, gamma), retain_graph=True)
        np.testing.assert_allclose([d_beta.item(), d_gamma.item()], reference[[4, 6], k], rtol=1e-5)


def test_gradcheck():
    params = (torch.tensor(1.3, dtype=torch.float64, requires_grad=True),
              torch.tensor(0.4, dtype=torch.float64, requires_grad=True),
              torch.tensor(2.0, dtype=torch.float64, requires_grad=True))
    t = torch.tensor([0.5, 3.0, 7.0], dtype=torch.float64)

    def infectious(beta, gamma, i0):
        # a tight tolerance keeps the adaptive step sequence from shifting under the probes
        return simulate_sir(beta, gamma, 200.0, i0, t, rtol=1e-12).I

    assert torch.autograd.gradcheck(infectious, params)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": -1.0}, "beta must be >= 0"),
        ({"gamma": -0.1}, "gamma must be >= 0"),
        ({"i0": 0.0}, "i0 must be > 0"),
        ({"i0": 60.0, "r0": 40.0}, "smaller than population"),
        ({"r0": -1.0}, "r0"),
        ({"population": 0.0}, "population must be > 0"),
        ({"t": [2.0, 1.0]}, "non-decreasing"),
        ({"t": [-1.0, 1.0]}, ">= 0"),
        ({"t": [[1.0]]}, "1-D"),
        ({"beta": float("nan")}, "beta must be finite"),
        ({"rtol": 0.0}, "rtol"),
    ],
)
def test_simulate_sir_rejects_bad_input(kwargs, message):
    args = {"beta": 1.0, "gamma": 0.5, "population": 100.0, "i0": 1.0, "t": [1.0, 2.0]} | kwargs
    with pytest.raises(ValueError, match=message):
        simulate_sir(**args)


def _outbreak(seed, likelihood, observed, beta=1.6, gamma=0.5, population=2000.0, i0=2.0, days=20):
    """Counts from a known SIR with Poisson or negative-binomial (size 20) noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(1.0, days + 1)
    s, i, _ = _reference_sir(beta, gamma, population, i0, np.concatenate([[0.0], t]))
    mean = i[1:] if observed == "prevalence" else -np.diff(s)
    if likelihood == "poisson":
        return t, rng.poisson(mean)
    size = 20.0
    return t, rng.negative_binomial(size, size / (size + mean))


def _check_recovery_and_coverage(fits: list[SIRFit], truth: dict[str, float], rtol: float):
    for name, value in truth.items():
        estimates = np.array([getattr(fit, name) for fit in fits])
        np.testing.assert_allclose(estimates, value, rtol=rtol if name != "i0" else 0.6)
        covered = sum(fit.ci[name][0] <= value <= fit.ci[name][1] for fit in fits)
        assert covered >= len(fits) - 1, f"{name}: covered {covered}/{len(fits)}"


TRUTH = {"beta": 1.6, "gamma": 0.5, "r0": 3.2}


def test_fit_recovers_poisson_prevalence_with_covering_intervals():
    fits = [fit_sir(*_outbreak(seed, "poisson", "prevalence"), 2000.0, i0=2.0) for seed in range(5)]
    _check_recovery_and_coverage(fits, TRUTH, rtol=0.1)
    assert all(fit.dispersion is None and "i0" not in fit.ci for fit in fits)


def test_fit_recovers_negbin_prevalence_and_i0_with_covering_intervals():
    fits = [
        fit_sir(*_outbreak(seed, "negbin", "prevalence", days=14), 2000.0, likelihood="negbin")
        for seed in range(4)
    ]
    _check_recovery_and_coverage(fits, TRUTH | {"i0": 2.0}, rtol=0.15)
    assert all(5.0 < fit.dispersion < 200.0 for fit in fits)  # the truth is 20


def test_fit_to_incidence_covers_the_truth():
    # new infections per day pin gamma down less well than prevalence: wider intervals
    fits = [
        fit_sir(*_outbreak(seed, "poisson", "incidence", days=14), 2000.0, "incidence", i0=2.0)
        for seed in range(4)
    ]
    _check_recovery_and_coverage(fits, TRUTH, rtol=0.35)


def test_fitted_curve_and_forecast_are_the_model_means():
    t, y = _outbreak(0, "poisson", "incidence")
    fit = fit_sir(t[:10], y[:10], 2000.0, observed="incidence", i0=2.0)
    s, _, _ = _reference_sir(fit.beta, fit.gamma, 2000.0, 2.0, np.concatenate([[0.0], t]))
    np.testing.assert_allclose(fit.forecast(t), -np.diff(s), rtol=1e-6)
    np.testing.assert_allclose(fit.fitted, -np.diff(s)[:10], rtol=1e-6)


def test_boarding_school_estimates_land_in_the_published_range():
    flu = boarding_school_flu()
    fit = fit_sir(flu.day, flu.in_bed, flu.population, likelihood="negbin", i0=1.0)
    # published for these data: beta ~ 1.7/day, gamma ~ 0.45-0.55/day, R0 ~ 3.2-3.7
    assert 1.6 < fit.beta < 1.85 and 0.45 < fit.gamma < 0.56 and 3.0 < fit.r0 < 3.8
    for name in ("beta", "gamma", "r0"):
        low, high = fit.ci[name]
        assert low < getattr(fit, name) < high


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y": [1, -2, 3]}, "non-negative integer counts"),
        ({"y": [1, 2.5, 3]}, "non-negative integer counts"),
        ({"y": [1, 2]}, "same length"),
        ({"population": 2}, "at least the largest count"),
        ({"population": 5, "observed": "incidence"}, "total of the counts"),
        ({"t": [0.0, 1.0, 2.0]}, "strictly increasing times > 0"),
        ({"t": [1.0, 1.0, 2.0]}, "strictly increasing"),
        ({"observed": "deaths"}, "observed must be one of"),
        ({"likelihood": "gaussian"}, "likelihood must be one of"),
        ({"i0": 0.0}, "i0 must be in"),
    ],
)
def test_fit_sir_rejects_bad_input(change, message):
    args = {"t": [1.0, 2.0, 3.0], "y": [1, 2, 3], "population": 100} | change
    with pytest.raises(ValueError, match=message):
        fit_sir(**args)


def test_unidentified_rate_is_flagged_not_given_an_interval():
    # five days of constant exponential growth fix beta - gamma but not gamma itself
    flu = boarding_school_flu()
    with pytest.warns(RuntimeWarning, match="gamma ran to the edge"):
        fit = fit_sir(flu.day[:5], flu.in_bed[:5], flu.population, i0=1.0)
    assert np.isnan(fit.ci["gamma"]).all() and np.isnan(fit.ci["r0"]).all()
    assert np.isfinite(fit.ci["beta"]).all()
